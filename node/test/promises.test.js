// Promises made by node/README.md and the declarations, each checked as it
// is worded: a bounded keyed map under "deny" decides exactly as an
// unbounded one; a refused state or config changes nothing; the stated
// defaults; a shared retry budget bounds retry().
import { test } from "node:test";
import assert from "node:assert/strict";
import { TokenBucket, SlidingLog, SlidingWindow, KeyedLimiter, StoreFullError } from "ratebound";
import { Backoff, RetryBudget, retry } from "ratebound/retry";
import { Budget } from "ratebound/budget";

const T = 1_790_000_000_000;

/** A small deterministic generator (mulberry32), so a failure replays. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const makers = {
  TokenBucket: () => new TokenBucket({ capacity: 3, refillAmount: 1, refillPeriodMs: 200 }),
  SlidingLog: () => new SlidingLog({ limit: 3, windowMs: 500, slots: 8 }),
  SlidingWindow: () => new SlidingWindow({ limit: 4, windowMs: 400 }),
};

for (const [kind, make] of Object.entries(makers)) {
  test(`KeyedLimiter under "deny" never admits a key it cannot count: every answer equals an unbounded map's (${kind})`, () => {
    const keyed = new KeyedLimiter(make, { maxKeys: 4 });
    const unbounded = new Map();
    const next = rng(kind.length * 7919);
    // A key refused when the map was full and admitted later: room was made
    // by dropping idle keys (under "deny" nothing else frees a slot).
    const refusedKeys = new Set();
    let now = T, refused = 0, answered = 0, dropped = 0;
    for (let i = 0; i < 5_000; i++) {
      now += Math.floor(next() * 150); // idle keys appear as time passes
      const key = `k${Math.floor(next() * 9)}`;
      const cost = 1 + Math.floor(next() * 2);
      if (!unbounded.has(key)) unbounded.set(key, make());
      const sizeBefore = keyed.size;
      let got;
      try {
        got = keyed.check(key, { now, cost });
      } catch (e) {
        assert.ok(e instanceof StoreFullError, `step ${i}: ${e}`);
        assert.equal(keyed.size, sizeBefore, `step ${i}: a refused key changed the map`);
        refused++;
        refusedKeys.add(key);
        continue; // refused whole: the unbounded map is not asked either
      }
      if (refusedKeys.delete(key)) dropped++;
      assert.deepEqual(got, unbounded.get(key).check({ now, cost }), `step ${i}: ${key} at +${now - T} ms, cost ${cost}`);
      answered++;
    }
    assert.ok(refused > 100 && answered > 1_000 && dropped > 100, `refused ${refused}, answered ${answered}, idle drops ${dropped}`);
  });
}

test('KeyedLimiter under "evictLru" makes room by forgetting the least recently used key: it starts fresh', () => {
  const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 1, refillPeriodMs: 60_000 }), { maxKeys: 2, onFull: "evictLru" });
  assert.equal(keyed.check("a", { now: T }).allowed, true);
  assert.equal(keyed.check("b", { now: T }).allowed, true);
  assert.equal(keyed.check("a", { now: T }).allowed, false, "a refused: a use all the same"); // a is now the most recent
  assert.equal(keyed.check("c", { now: T }).allowed, true); // b, the least recently used (not a, the oldest), is forgotten
  assert.equal(keyed.check("a", { now: T }).allowed, false, "a kept its count");
  assert.equal(keyed.check("b", { now: T }).allowed, true, "b starts fresh");
});

test("a malformed state is refused whole: the limiter's state is unchanged", () => {
  const cases = [
    [new TokenBucket({ capacity: 5 }), [{ v: 1, tat: 1.5, rem: 0 }, { v: 2, tat: 0, rem: 0 }, { v: 1, tat: 0 }, { v: 1, tat: -1, rem: 0 }]],
    [new SlidingLog({ limit: 3, windowMs: 10_000, slots: 8 }), [{ v: 1, data: [1, 2] }, { v: 1, data: [5e15, 6e15, 1] }, { v: 1, data: Array(19).fill(1) }]],
    [new SlidingWindow({ limit: 10, windowMs: 1000 }), [{ v: 1, data: [1.5, 0, 0] }, { v: 2, data: [0, 0, 0] }, { v: 1, data: [0, 0] }]],
  ];
  for (const [limiter, bad] of cases) {
    limiter.check({ now: T, cost: 2 });
    const before = limiter.exportState();
    for (const state of bad) {
      assert.throws(() => limiter.importState(state), (e) => e instanceof TypeError || e instanceof RangeError, JSON.stringify(state));
      assert.deepEqual(limiter.exportState(), before, JSON.stringify(state));
    }
  }
  const rb = new RetryBudget({ maxTokens: 5 });
  rb.onFailure();
  const before = rb.exportState();
  for (const state of [{ v: 1, spentMilli: -1 }, { v: 1, spentMilli: 0.5 }, { v: 2, spentMilli: 0 }]) {
    assert.throws(() => rb.importState(state), (e) => e instanceof TypeError || e instanceof RangeError, JSON.stringify(state));
    assert.deepEqual(rb.exportState(), before, JSON.stringify(state));
  }
});

test("Budget.reconfigure: a new UTC offset, another holdSlots or an invalid config is refused (RangeError; a value of the wrong type, TypeError) and changes nothing", () => {
  const config = { limits: [{ dimension: "tokens", window: "hour", max: 1000 }], alertThresholds: [0.5] };
  const b = new Budget(config);
  b.reserve({ tokens: 300, now: T });
  b.record({ tokens: 200, now: T + 1 });
  const state = b.exportState();
  const held = b.config;
  for (const bad of [
    { ...config, utcOffsetMinutes: 60 },
    { ...config, holdSlots: 4 },
    { ...config, alertThresholds: [0.9, 0.5] },
    { ...config, limits: [{ dimension: "tokens", window: "hour", max: 0 }] },
    { ...config, limits: [] },
  ]) {
    assert.throws(() => b.reconfigure(bad), (e) => e instanceof RangeError || e instanceof TypeError, JSON.stringify(bad));
    assert.deepEqual(b.exportState(), state, JSON.stringify(bad));
    assert.equal(b.config, held);
  }
  assert.throws(() => b.reconfigure({ ...config, utcOffsetMinutes: 60 }), RangeError);
  assert.throws(() => b.reconfigure({ ...config, holdSlots: 4 }), RangeError);
  assert.throws(() => b.reconfigure({ ...config, alertThresholds: [0.9, 0.5] }), RangeError);
});

test("the stated defaults: Backoff 1 s doubling to 30 s, full jitter, 3 retries; KeyedLimiter 10,000 keys, at most 2^24", () => {
  assert.deepEqual(new Backoff().config, { initialMs: 1000, capMs: 30_000, factor: 2, jitter: "full", maxRetries: 3, maxElapsedMs: null });
  const seq = new Backoff().start({ now: T, seed: 7 });
  const steps = [1, 2, 3, 4].map(() => seq.next({ now: T }));
  assert.deepEqual(steps.map((s) => s.retry), [true, true, true, false]);
  assert.equal(steps[3].reason, "max_retries");
  // Full jitter: each delay is within [0, min(cap, 1 s · 2^n)].
  steps.slice(0, 3).forEach((s, n) => assert.ok(s.delayMs >= 0 && s.delayMs <= 1000 * 2 ** n, `retry ${n + 1}: ${s.delayMs} ms`));
  assert.ok(steps.slice(0, 3).some((s, n) => s.delayMs !== 1000 * 2 ** n), "jittered: not every delay is the full 1, 2, 4 s");
  const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 1, refillPeriodMs: 60_000 }));
  for (let i = 0; i < 10_000; i++) assert.equal(keyed.allow(`k${i}`, { now: T }), true);
  assert.throws(() => keyed.check("one more", { now: T }), StoreFullError);
  assert.throws(() => new KeyedLimiter(() => new TokenBucket({ capacity: 1 }), { maxKeys: 2 ** 24 + 1 }), RangeError);
  new KeyedLimiter(() => new TokenBucket({ capacity: 1 }), { maxKeys: 2 ** 24 }).free();
});

test("retry() with a shared RetryBudget: a failing upstream is not hammered", async () => {
  const budget = new RetryBudget({ maxTokens: 3, tokenRatio: 0.1 });
  const backoff = new Backoff({ initialMs: 0, capMs: 0.001, jitter: "none", maxRetries: 50 });
  let calls = 0;
  const failing = async () => {
    calls++;
    throw new Error("upstream down");
  };
  const runs = await Promise.allSettled([retry(failing, { backoff, budget }), retry(failing, { backoff, budget })]);
  for (const r of runs) {
    assert.equal(r.status, "rejected");
    assert.equal(r.reason.retryGaveUp, "retry_budget");
  }
  // Two first attempts and fewer retries than the budget's 3 tokens (each
  // failure spends one; retries stop once at most half are left: core's rule).
  assert.ok(calls >= 2 && calls <= 2 + 3, `${calls} calls`);
  assert.equal(budget.canRetry(), false);
});

test("use after free() is a TypeError naming the class (a limiter, a retry sequence)", () => {
  const freed = (kind) => ({ name: "TypeError", message: new RegExp(`this ${kind} was freed`) });
  const w = new SlidingWindow({ limit: 1, windowMs: 1000 });
  w.free();
  assert.throws(() => w.check(), freed("SlidingWindow"));
  const seq = new Backoff().start();
  seq.free();
  assert.throws(() => seq.next(), freed("RetrySequence"));
});
