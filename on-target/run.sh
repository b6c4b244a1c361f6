#!/usr/bin/env bash
# Replays every trace fixture on three emulated chips (QEMU), runs the embassy
# example on the Cortex-M4F, then checks that a wrong expected value makes the
# replay fail. Exits non-zero on any
# mismatch, panic, fault or hang. Needs qemu-system-arm, qemu-system-misc and
# the three Rust targets (scripts/test-all.sh installs them).
set -euo pipefail
cd "$(dirname "$0")"
targets="thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf"

replay() { # target [fixture dir]: runs the replay, prints its output, returns its status
  local status=0
  # Build first, so that the timeout below counts the emulation only.
  RATEBOUND_FIXTURES="${2:-}" cargo build -q --release --bin replay --target "$1"
  RATEBOUND_FIXTURES="${2:-}" timeout 300 cargo run -q --release --bin replay --target "$1" || status=$?
  return "$status"
}

for t in $targets; do
  replay "$t" || { echo "on-target replay failed on $t"; exit 1; }
done

# The embassy example: tasks waiting on a limiter with embassy_time::Timer.
cargo build -q --release --features embassy --bin embassy-wait --target thumbv7em-none-eabihf
timeout 120 cargo run -q --release --features embassy --bin embassy-wait --target thumbv7em-none-eabihf ||
  { echo "the embassy example failed on thumbv7em-none-eabihf"; exit 1; }

# The same replay with one `remaining` changed in a copy of gcra.json must fail.
wrong=$(mktemp -d)
trap 'rm -rf "$wrong"' EXIT
cp ../fixtures/traces/*.json "$wrong/"
sed -i '0,/"remaining":1,/s//"remaining":2,/' "$wrong/gcra.json"
cmp -s ../fixtures/traces/gcra.json "$wrong/gcra.json" && { echo "the wrong fixture was not changed"; exit 1; }
if out=$(replay thumbv6m-none-eabi "$wrong" 2>&1); then
  echo "$out"
  echo "a wrong expected value did not fail the on-target replay"
  exit 1
fi
grep -q '^MISMATCH gcra/three_per_second step 1 (result)' <<<"$out" || {
  echo "$out"
  echo "the wrong expected value failed the replay, but not with the expected mismatch"
  exit 1
}
echo "a wrong expected value (gcra/three_per_second step 1) fails the replay, as it must:"
grep -A2 '^MISMATCH' <<<"$out" | head -3
