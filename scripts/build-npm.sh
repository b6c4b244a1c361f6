#!/usr/bin/env bash
# Builds the npm package `ratebound` (node/) from source: the wasm crate with
# the pinned wasm-bindgen CLI, optimized by wasm-opt from npm `binaryen`.
# Prints the .wasm and JS glue sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
WB=0.2.130 # must equal the `wasm-bindgen = "=…"` pin in wasm/Cargo.toml
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if ! wasm-bindgen --version 2>/dev/null | grep -q " $WB"; then
  echo "==> cargo install wasm-bindgen-cli --version $WB"
  cargo install wasm-bindgen-cli --version "$WB"
fi
[ -d node/node_modules/miniflare ] && [ -d node/node_modules/binaryen ] && [ -d node/node_modules/typescript ] || (cd node && npm ci --no-audit --no-fund)
rm -rf node/dist
# Two modules: the limiters (`ratebound`, kept small) and budget windows
# (`ratebound/budget`, which carries a JSON codec).
build() { # features out-dir
  cargo build -q -p ratebound-wasm --target wasm32-unknown-unknown --profile wasm $1
  wasm-bindgen target/wasm32-unknown-unknown/wasm/ratebound_wasm.wasm --target web --out-dir "node/dist/$2" --out-name ratebound_wasm
  node/node_modules/.bin/wasm-opt -Oz --strip-debug --strip-producers "node/dist/$2/ratebound_wasm_bg.wasm" -o "node/dist/$2/ratebound_wasm_bg.wasm"
  local w="node/dist/$2/ratebound_wasm_bg.wasm" j="node/dist/$2/ratebound_wasm.js"
  echo "$3: .wasm $(stat -c %s "$w") bytes raw, $(gzip -9c "$w" | wc -c) gzipped; JS glue $(stat -c %s "$j") raw, $(gzip -9c "$j" | wc -c) gzipped"
}
build "--no-default-features" web "ratebound (limiters)"
build "--no-default-features --features budget" budget "ratebound/budget"
# CommonJS declarations: the same declarations as `.d.cts`, so TypeScript
# before 5.8 lets a CommonJS file `require` the package (a `.d.ts` in a
# "type": "module" package is an ES module to it).
mkdir -p node/dist/types
cp node/src/index.d.ts node/dist/types/index.d.cts
cp node/src/budget.d.ts node/dist/types/budget.d.cts
