#!/usr/bin/env bash
# Builds one-limiter firmware images (opt-level z, LTO, panic=abort, the same
# linker script) for thumbv6m, thumbv7em and riscv32imc: ratebound's `Gcra`
# (built at run time, and in a `const`), ratebound's `AtomicGcra` and
# governor's direct limiter (its newest release
# that builds bare-metal; where it does not build, the first error is shown).
# Prints the footprint table for benches/README.md. Exits non-zero if a
# ratebound image links core::fmt, or if the `Gcra` image on thumbv7em has
# more than 512 bytes of .text (a check read for its verdict alone needs no
# division, so none is linked).
set -euo pipefail
cd "$(dirname "$0")"
targets="thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imc-unknown-none-elf"
for t in $targets; do
  rustup target list --installed | grep -qx "$t" || rustup target add "$t"
done
export RUSTFLAGS="-C link-arg=-Tlink.x"

section() { # elf name: the section's size in bytes (0 if absent)
  local hex
  hex=$(readelf -S --wide "$1" | awk -v s="$2" '{ for (i = 1; i <= NF; i++) if ($i == s) print $(i + 4) }')
  echo $((16#${hex:-0}))
}

rows="" fail=""
for t in $targets; do
  cargo build -q --release --target "$t" --bins
  images="ratebound-gcra ratebound-gcra-const ratebound-atomic governor-direct"
  if ! err=$(cargo build -q --release --target "$t" --features governor --bin governor-direct 2>&1); then
    why=$(grep -m1 -E '^error' <<<"$err" | tr -d '`|')
    rows="$rows| $t | governor 0.7.0 direct | does not build (${why}) | | | |"$'\n'
    images="ratebound-gcra ratebound-gcra-const ratebound-atomic"
  fi
  for image in $images; do
    elf="target/$t/release/$image"
    text=$(section "$elf" .text)
    rodata=$(section "$elf" .rodata)
    ram=$(( $(section "$elf" .data) + $(section "$elf" .bss) ))
    fmt=$(readelf -s --wide "$elf" | grep -c '4core3fmt' || true)
    case $image in
      ratebound-gcra) name="ratebound \`Gcra\`, built at run time" ;;
      ratebound-gcra-const) name="ratebound \`Gcra\`, built in a \`const\`" ;;
      ratebound-atomic) name="ratebound \`AtomicGcra\`, in a \`static\`" ;;
      governor-direct) name="governor 0.7.0 direct" ;;
    esac
    rows="$rows| $t | $name | $text | $rodata | $ram | $([ "$fmt" -eq 0 ] && echo no || echo "yes ($fmt symbols)") |"$'\n'
    if [ "${image%%-*}" = ratebound ] && [ "$fmt" -ne 0 ]; then fail="$fail $image on $t links core::fmt;"; fi
    if [ "$image" = ratebound-gcra ] && [ "$t" = thumbv7em-none-eabihf ] && [ "$text" -gt 512 ]; then
      fail="$fail $image on $t has $text bytes of .text, above 512;"
    fi
  done
done
echo "| target | one limiter, one check | .text (B) | .rodata (B) | RAM: .data + .bss (B) | core::fmt linked |"
echo "|---|---|---|---|---|---|"
printf '%s' "$rows"
[ -z "$fail" ] || { echo "embedded footprint:$fail"; exit 1; }
