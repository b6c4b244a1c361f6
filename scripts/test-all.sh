#!/usr/bin/env bash
# Runs every ratebound test, installing what it needs first and skipping what
# is already there. This is the README's test command and what .ci/run calls.
#
#   bash scripts/test-all.sh            # everything
#   RATEBOUND_SKIP_EMBEDDED=1 ...       # skip the cross-target builds, the firmware
#                                       # footprint and the QEMU runs (no QEMU install)
#   RATEBOUND_SKIP_FUZZ=1 ...           # skip the fuzz smoke runs
#   FUZZ_SECONDS=60 ...                 # seconds per fuzz target (default 20)
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
if [ -z "${RATEBOUND_SKIP_FUZZ:-}" ]; then
  rustup toolchain list | grep -q '^nightly' || { say "rustup toolchain install nightly"; rustup toolchain install nightly --profile minimal; }
  command -v cargo-fuzz >/dev/null || [ -x "$HOME/.cargo/bin/cargo-fuzz" ] || { say "cargo install cargo-fuzz"; cargo install cargo-fuzz --version 0.13.2; }
fi
MSRV=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
rustup toolchain list | grep -q "^$MSRV-" || { say "rustup toolchain install $MSRV (the minimum Rust the crates declare)"; rustup toolchain install "$MSRV" --profile minimal; }
command -v cargo-hack >/dev/null || [ -x "$HOME/.cargo/bin/cargo-hack" ] || { say "cargo install cargo-hack"; cargo install cargo-hack --version 0.6.46 --locked; }

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
apt_updated=""
apt_install() { # packages...: apt-get install, updating the index once per run
  [ -n "$apt_updated" ] || { $SUDO apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  say "apt-get install redis-server (the Redis backend's tests start real servers on loopback)"
  apt_install redis-server
fi
if [ -z "${RATEBOUND_SKIP_EMBEDDED:-}" ] && { ! command -v qemu-system-arm >/dev/null || ! command -v qemu-system-riscv32 >/dev/null; }; then
  # Debian's QEMU 7.2. On a machine with the qemu-utils 10 backport, apt
  # removes that package to install it (seen on this project's machines).
  say "apt-get install qemu-system-arm qemu-system-misc (the fixtures replay on emulated Cortex-M and RISC-V chips)"
  apt_install qemu-system-arm qemu-system-misc
fi
# The package starts a system redis-server on 6379 on install; the tests never
# use it (each starts its own on a free port), so leave it as it is.

# ---------------------------------------------------------------- checks
say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, all features, -D warnings)"
cargo clippy --workspace --all-targets --all-features -- -D warnings
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
for f in limiters retry budget model-quota budget,model-quota,redis; do
  cargo clippy -p ratebound-wasm --target wasm32-unknown-unknown --no-default-features --features "$f" -- -D warnings
done

say "cargo test --workspace --all-features"
cargo test --workspace --all-features

say "cargo test -p ratebound-core (default features)"
cargo test -p ratebound-core

say "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

say "every feature on its own and none (cargo hack, clippy -D warnings): both crates on the host"
cargo hack clippy -p ratebound-core -p ratebound-std --each-feature --no-dev-deps -- -D warnings

say "the newest compatible dependencies (cargo update in a scratch copy), clippy -D warnings"
# An upstream deprecation or break shows here before a user's fresh resolve hits it.
newest=$(mktemp -d) root=$PWD
trap 'rm -rf "$newest"' EXIT
tar --exclude=./target --exclude=./on-target/target --exclude=./.git --exclude=node_modules --exclude=./node/dist -cf - . | tar -xf - -C "$newest"
(cd "$newest" && cargo update -q && cargo clippy -q --workspace --all-targets --all-features --target-dir "$root/target" -- -D warnings)
rm -rf "$newest"; trap - EXIT

say "the minimum Rust the crates declare ($MSRV): both crates, all features"
cargo "+$MSRV" check -q -p ratebound-core -p ratebound-std --all-features

say "cargo publish --dry-run of both crates, in dependency order (packaged, then built from the package)"
# The staging registry has the same path every run, and cargo treats what
# it serves as immutable: it would reuse the copy of a packaged crate it
# extracted, and the build of it, from an earlier run (same version, older
# source). Remove the extracted copies and verify in a target dir of its own.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ratebound-core-* \
  "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/ratebound-std-* \
  "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/ratebound-core-* \
  "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/ratebound-std-* \
  "$root/target/publish-check"
cargo publish --workspace --dry-run --allow-dirty --exclude ratebound-benches --exclude ratebound-wasm \
  --target-dir "$root/target/publish-check"

if [ -z "${RATEBOUND_SKIP_EMBEDDED:-}" ]; then
  for t in $TARGETS; do
    say "core for $t (no default features: no allocator, no std, no 64-bit atomics needed; then embassy alone)"
    cargo build -p ratebound-core --no-default-features --target "$t"
    cargo build -p ratebound-core --no-default-features --features embassy --target "$t"
  done
  for t in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    say "core for $t with AtomicGcra via critical-section, and serde"
    cargo build -p ratebound-core --features critical-section,serde --target "$t"
  done
  say "core for thumbv7em-none-eabihf with default features (AtomicGcra via portable-atomic fallback)"
  cargo build -p ratebound-core --features serde --target thumbv7em-none-eabihf
  say "core: every feature on its own and none, per embedded target (cargo hack, clippy -D warnings)"
  # thumbv6m and riscv32imc have no CAS: `atomic` needs `critical-section` there (checked with it).
  for t in thumbv6m-none-eabi riscv32imc-unknown-none-elf; do
    cargo hack clippy -p ratebound-core --each-feature --no-dev-deps --target "$t" \
      --exclude-features atomic,default --exclude-all-features -- -D warnings
  done
  for t in thumbv7em-none-eabihf wasm32-unknown-unknown; do
    cargo hack clippy -p ratebound-core --each-feature --no-dev-deps --target "$t" -- -D warnings
  done
fi

say "benchmarks compile and run once (criterion test mode); bytes per key"
cargo test -q -p ratebound-benches --bench limiters
cargo test -q -p ratebound-benches --bench http_layer
cargo run -q -p ratebound-benches --bin bytes_per_key

if [ -z "${RATEBOUND_SKIP_EMBEDDED:-}" ]; then
  say "embedded footprint: one limiter, one check, on thumbv6m, thumbv7em and riscv32imc, next to governor's"
  bash benches/embedded/size.sh
  say "on-target: every trace fixture replayed under QEMU on Cortex-M0, Cortex-M4F and RISC-V (fmt, clippy, run)"
  cargo fmt --manifest-path on-target/Cargo.toml -- --check
  for t in thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf; do
    (cd on-target && cargo clippy -q --release --target "$t" -- -D warnings)
  done
  (cd on-target && cargo clippy -q --release --features embassy --bin embassy-wait --target thumbv7em-none-eabihf -- -D warnings)
  bash on-target/run.sh
fi

if [ -z "${RATEBOUND_SKIP_FUZZ:-}" ]; then
  secs="${FUZZ_SECONDS:-20}"
  say "fuzz: every target for ${secs}s (nightly cargo-fuzz), starting from the committed seeds (fuzz/seeds)"
  (cd fuzz && cargo +nightly fuzz build -O)
  for t in $(cd fuzz && cargo +nightly fuzz list); do
    work=$(mktemp -d)
    (cd fuzz && cargo +nightly fuzz run -O "$t" "$work" "seeds/$t" -- -max_total_time="$secs" -print_final_stats=1) > "$work.log" 2>&1 || {
      tail -60 "$work.log"
      echo "fuzz target $t failed"
      exit 1
    }
    echo "fuzz $t: $(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work.log" | grep -oE '[0-9]+$') executions, no crash"
    rm -rf "$work" "$work.log"
  done
fi

say "wasm + npm package: build (pinned wasm-bindgen-cli, wasm-opt from npm binaryen), then node --test"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' \
  || { echo "Node 20.19+, 22.12+ or 23+ is required for the npm package tests (require(esm) unflagged)"; exit 1; }
bash scripts/build-npm.sh
say "wasm-bindgen-test: the wasm classes in a real wasm runtime (Node)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p ratebound-wasm --target wasm32-unknown-unknown --all-features
say "node --test (API, fixture replay, ratebound/redis on real redis-servers, TypeScript types, real workerd)"
(cd node && node --test test/)
say "one limit shared by a Rust process and a Node process through one redis-server (std example shared_limit + ratebound/redis)"
(cd node && node --test test-rust/)
say "npm README: every marked snippet against the packed tarball (ESM, CommonJS, tsc --strict 5.9 and 5.4), the Worker through wrangler dev"
[ -d node/readme-check/node_modules/wrangler ] && [ -d node/readme-check/node_modules/typescript ] \
  && [ -d node/readme-check/node_modules/typescript-5.4 ] \
  || (cd node/readme-check && npm ci --no-audit --no-fund)
(cd node/readme-check && node run.mjs)

say "examples: core tour, std limiter / keyed / retry / budget_manager / go_policy"
cargo run -q -p ratebound-core --example tour >/dev/null
for e in limiter keyed retry budget_manager go_policy; do
  cargo run -q -p ratebound-std --example "$e" >/dev/null
done
say "the demo gateway three ways at once: in memory; its limits in a real redis-server on a free loopback port; with Redis down (it serves on its local fallback)"
# Each run waits out a 60 s Retry-After; side by side they take one wait.
cargo build -q -p ratebound-std --features http,redis --example gateway
gateway=target/debug/examples/gateway
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
down=$(free_port) # nothing listens there
while [ "$down" = "$port" ]; do down=$(free_port); done
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes >/dev/null
demo_logs=$(mktemp -d)
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$demo_logs"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
"$gateway" --demo >"$demo_logs/in-memory" 2>&1 & in_memory=$!
"$gateway" --demo --redis "redis://127.0.0.1:$port/" >"$demo_logs/redis" 2>&1 & on_redis=$!
"$gateway" --demo --redis "redis://127.0.0.1:$down/" --on-unavailable local >"$demo_logs/redis-down" 2>&1 & redis_down=$!
for run in "in-memory $in_memory" "redis $on_redis" "redis-down $redis_down"; do
  set -- $run
  wait "$2" || {
    kill "$in_memory" "$on_redis" "$redis_down" 2>/dev/null || true
    tail -60 "$demo_logs/$1"
    echo "the demo gateway ($1) failed"
    exit 1
  }
done
test "$(redis-cli -p "$port" dbsize)" -gt 0
redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
rm -rf "$demo_logs"
trap - EXIT
say "redis_bench (1 s per case, best of 2): server µs per call next to a floor GCRA, end to end next to redis-benchmark EVALSHA"
cargo run -q --release -p ratebound-benches --bin redis_bench 1 50 2

say "all tests passed"
