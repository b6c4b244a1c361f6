// checks/s of the ratebound package next to rate-limiter-flexible's
// RateLimiterMemory, in the same process, reported as a ratio.
//   node bench/bench.mjs [seconds-per-case]
import { RateLimiterMemory } from "rate-limiter-flexible";
import { TokenBucket, KeyedLimiter, raw } from "ratebound";

const seconds = Number(process.argv[2] ?? 2);
const KEYS = 1024;

function measureSync(name, fn) {
  for (let i = 0; i < 10_000; i++) fn(i);
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 1_000; i++) fn(n + i);
    n += 1_000;
  }
  const perSec = n / seconds;
  console.log(`${name.padEnd(48)} ${Math.round(perSec).toLocaleString("en-US").padStart(14)} ops/s`);
  return perSec;
}

async function measure(name, fn) {
  // warm-up, then count operations for `seconds`
  for (let i = 0; i < 10_000; i++) await fn(i);
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 1_000; i++) await fn(n + i);
    n += 1_000;
  }
  const perSec = n / seconds;
  console.log(`${name.padEnd(48)} ${Math.round(perSec).toLocaleString("en-US").padStart(14)} ops/s`);
  return perSec;
}

// Plenty of capacity so both stay on the admitting path.
const ours = new Map();
for (let k = 0; k < KEYS; k++) ours.set(k, new TokenBucket({ capacity: 1e9, refillAmount: 1e9, refillPeriodMs: 1000 }));
const theirs = new RateLimiterMemory({ points: 1e9, duration: 1 });

// ratebound decides synchronously; RateLimiterMemory.consume returns a promise.
const a = measureSync("ratebound TokenBucket.check (1024 keys)", (i) => ours.get(i & (KEYS - 1)).check());
const fast = measureSync("ratebound TokenBucket.allow (boolean)", (i) => ours.get(i & (KEYS - 1)).allow());
const aa = await measure("ratebound, awaited like a promise", (i) => ours.get(i & (KEYS - 1)).check());
const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 1e9, refillAmount: 1e9, refillPeriodMs: 1000 }), { maxKeys: 4096 });
const names = Array.from({ length: KEYS }, (_, k) => `user-${k}`);
const c = measureSync("ratebound KeyedLimiter.check (1024 string keys)", (i) => keyed.check(names[i & (KEYS - 1)]));
const cf = measureSync("ratebound KeyedLimiter.allow (boolean)", (i) => keyed.allow(names[i & (KEYS - 1)]));
// The floors: one wasm call that only returns a field, and one clock read.
const inner = Array.from({ length: KEYS }, () => new raw.Gcra(1, 1, 1_000_000));
const call = measureSync("floor: one wasm call (Gcra.outPtr)", (i) => inner[i & (KEYS - 1)].outPtr());
const clock = measureSync("floor: one Date.now()", () => Date.now());
const b = await measure("rate-limiter-flexible RateLimiterMemory.consume", (i) => theirs.consume(names[i & (KEYS - 1)], 1));
console.log(`ratio: ratebound ${(a / b).toFixed(2)}x the checks/s of RateLimiterMemory as each is called (${(aa / b).toFixed(2)}x if awaited; KeyedLimiter ${(c / b).toFixed(2)}x); same process, Node ${process.versions.node}`);
console.log(`ratio, boolean fast path: TokenBucket.allow ${(fast / b).toFixed(2)}x, KeyedLimiter.allow ${(cf / b).toFixed(2)}x RateLimiterMemory (goals 5x and 3x)`);
console.log(`floors: one wasm call ${(1e9 / call).toFixed(1)} ns, one Date.now() ${(1e9 / clock).toFixed(1)} ns; TokenBucket.allow ${(1e9 / fast).toFixed(1)} ns, RateLimiterMemory.consume ${(1e9 / b).toFixed(1)} ns`);
