#!/usr/bin/env bash
# Runs the benchmarks and writes the summary table into benches/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p ratebound-benches --bench limiters
cargo run -q --release -p ratebound-benches --bin bytes_per_key > target/bytes_per_key.json
python3 benches/report.py target/bytes_per_key.json
