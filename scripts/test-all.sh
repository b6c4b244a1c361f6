#!/usr/bin/env bash
# Runs every ratebound test, installing what it needs first and skipping what
# is already there. This is the README's test command and what .ci/run calls.
#
#   bash scripts/test-all.sh            # everything
#   RATEBOUND_SKIP_EMBEDDED=1 ...       # skip the cross-target builds
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# ---------------------------------------------------------------- installs
TARGETS="wasm32-unknown-unknown thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf"
installed=$(rustup target list --installed)
missing=""
for t in $TARGETS; do
  grep -qx "$t" <<<"$installed" || missing="$missing $t"
done
if [ -n "$missing" ]; then
  say "rustup target add$missing"
  rustup target add $missing
fi
for c in rustfmt clippy; do
  rustup component list --installed | grep -q "^$c" || rustup component add "$c"
done

# ---------------------------------------------------------------- checks
say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

say "cargo test --workspace --all-features"
cargo test --workspace --all-features

say "cargo test -p ratebound-core (default features)"
cargo test -p ratebound-core

say "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

if [ -z "${RATEBOUND_SKIP_EMBEDDED:-}" ]; then
  for t in $TARGETS; do
    say "core for $t (no default features: no allocator, no std, no 64-bit atomics needed)"
    cargo build -p ratebound-core --no-default-features --target "$t"
  done
  for t in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    say "core for $t with AtomicGcra via critical-section, and serde"
    cargo build -p ratebound-core --features critical-section,serde --target "$t"
  done
  say "core for thumbv7em-none-eabihf with default features (AtomicGcra via portable-atomic fallback)"
  cargo build -p ratebound-core --features serde --target thumbv7em-none-eabihf
fi

say "examples: core tour, std limiter / keyed / retry / budget_manager"
cargo run -q -p ratebound-core --example tour >/dev/null
for e in limiter keyed retry budget_manager; do
  cargo run -q -p ratebound-std --example "$e" >/dev/null
done

say "all tests passed"
