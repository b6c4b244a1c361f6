#!/usr/bin/env bash
# Builds the minimal GCRA firmware for thumbv7em-none-eabihf (opt-level z,
# LTO, panic=abort) and reports its .text size and whether core::fmt is linked.
# Exits non-zero if .text exceeds the 1.5 KB goal or core::fmt is present.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx thumbv7em-none-eabihf || rustup target add thumbv7em-none-eabihf
RUSTFLAGS="-C link-arg=-Tlink.x" cargo build -q --release --target thumbv7em-none-eabihf
elf=target/thumbv7em-none-eabihf/release/ratebound-embedded-size
section_size() { readelf -S --wide "$elf" | awk -v s="$1" '{ for (i = 1; i <= NF; i++) if ($i == s) print $(i + 4) }'; }
text=$((16#$(section_size .text)))
ro=$(section_size .rodata)
rodata=$((16#${ro:-0}))
fmt=$(readelf -s --wide "$elf" | grep -c '4core3fmt' || true)
echo "embedded GCRA firmware (thumbv7em-none-eabihf, opt-level z, LTO): .text = ${text} bytes, .rodata = ${rodata:-0} bytes, core::fmt symbols = ${fmt}"
[ "$fmt" -eq 0 ] || { echo "core::fmt is linked"; exit 1; }
[ "$text" -le 1536 ] || { echo ".text above 1.5 KB"; exit 1; }
