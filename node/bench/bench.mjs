// checks/s of the ratebound package next to rate-limiter-flexible's
// RateLimiterMemory, in the same process, reported as a ratio.
//   node bench/bench.mjs [seconds-per-case]
import { RateLimiterMemory } from "rate-limiter-flexible";
import { TokenBucket, KeyedLimiter } from "ratebound";

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
const aa = await measure("ratebound, awaited like a promise", (i) => ours.get(i & (KEYS - 1)).check());
const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 1e9, refillAmount: 1e9, refillPeriodMs: 1000 }), { maxKeys: 4096 });
const names = Array.from({ length: KEYS }, (_, k) => `user-${k}`);
const c = measureSync("ratebound KeyedLimiter.check (1024 string keys)", (i) => keyed.check(names[i & (KEYS - 1)]));
const b = await measure("rate-limiter-flexible RateLimiterMemory.consume", (i) => theirs.consume(names[i & (KEYS - 1)], 1));
console.log(`ratio: ratebound ${(a / b).toFixed(2)}x the checks/s of RateLimiterMemory as each is called (${(aa / b).toFixed(2)}x if awaited; KeyedLimiter ${(c / b).toFixed(2)}x); same process, Node ${process.versions.node}`);
