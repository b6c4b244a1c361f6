#!/usr/bin/env bash
# Runs the benchmarks and writes the summary table into benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p ratebound-benches --bench limiters
cargo bench -p ratebound-benches --bench http_layer
cargo run -q --release -p ratebound-benches --bin bytes_per_key > target/bytes_per_key.json
# Nine processes: one process's figures can differ from the next one's by ±10 %.
cargo run -q --release -p ratebound-benches --bin interleaved 15 9 > target/interleaved.json
if command -v gungraun-runner >/dev/null && command -v valgrind >/dev/null; then
  cargo bench -q -p ratebound-benches --bench instructions | tee target/instructions.txt
else
  echo "gungraun-runner or valgrind missing: skipping instruction counts (cargo install gungraun-runner --version 0.20.0)" > target/instructions.txt
fi
python3 benches/report.py target/bytes_per_key.json target/instructions.txt target/interleaved.json
