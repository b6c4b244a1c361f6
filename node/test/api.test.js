// The idiomatic API: decisions, persistence, and clear errors for bad input.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { TokenBucket, SlidingLog, SlidingWindow } from "ratebound";

const T0 = 1_795_392_000_000; // ms

test("token bucket: burst, exact refill, retryAfterMs", () => {
  const b = new TokenBucket({ capacity: 3, refillAmount: 3, refillPeriodMs: 1000 });
  for (const left of [2, 1, 0]) assert.deepEqual(b.check({ now: T0 }).remaining, left);
  const d = b.check({ now: T0 });
  assert.equal(d.allowed, false);
  assert.equal(d.retryAfterMs, 334); // 333 334 µs, rounded up
  assert.equal(d.resetAt, T0 + 1000);
  assert.equal(b.check({ now: T0 + 333.334 }).allowed, true);
  assert.equal(b.peek({ now: T0 + 333.334 }).allowed, false);
  assert.equal(b.refund({ amount: 10, now: T0 + 333.334 }).remaining, 3, "a refund never lifts above capacity");
});

test("take, and state persistence through JSON", () => {
  const b = new TokenBucket({ capacity: 10, refillPeriodMs: 1000 });
  assert.equal(b.take({ max: 7, now: T0 }).taken, 7);
  const saved = JSON.parse(JSON.stringify(b.exportState()));
  const c = new TokenBucket({ capacity: 10, refillPeriodMs: 1000 }).importState(saved);
  assert.deepEqual(c.check({ cost: 3, now: T0 }), b.check({ cost: 3, now: T0 }));
  assert.equal(c.check({ now: T0 }).allowed, false);
  assert.throws(() => c.importState({ v: 1, tat: -1, rem: 0 }), RangeError);
  assert.throws(() => c.importState({ v: 2, tat: 1, rem: 0 }), TypeError);
});

test("windows", () => {
  const log = new SlidingLog({ limit: 2, windowMs: 1000 });
  assert.equal(log.check({ now: T0 }).allowed, true);
  assert.equal(log.check({ now: T0 + 500 }).allowed, true);
  const d = log.check({ now: T0 + 600 });
  assert.equal(d.allowed, false);
  assert.equal(d.retryAfterMs, 400);
  const w = new SlidingWindow({ limit: 10, windowMs: 60_000 });
  assert.equal(w.check({ cost: 10, now: T0 }).remaining, 0);
  assert.equal(w.check({ now: T0 }).allowed, false);
});

test("bad input gives clear errors of the right class", () => {
  const b = new TokenBucket({ capacity: 5 });
  for (const cost of [NaN, -1, 1.5, Infinity, 2 ** 53]) assert.throws(() => b.check({ cost, now: T0 }), RangeError, String(cost));
  for (const cost of ["1", null, {}]) assert.throws(() => b.check({ cost, now: T0 }), TypeError, String(cost));
  assert.throws(() => b.check({ now: -1 }), RangeError);
  assert.throws(() => b.check({ now: "now" }), TypeError);
  assert.throws(() => b.check("cost"), TypeError);
  assert.throws(() => b.check({ cost: 6, now: T0 }), /can never be allowed/);
  assert.throws(() => new TokenBucket({ capacity: 0 }), /capacity must be at least 1/);
  assert.throws(() => new TokenBucket(), TypeError);
  assert.throws(() => new TokenBucket({ capacity: 2 ** 52, refillAmount: 1, refillPeriodMs: 1000 }), /invalid TokenBucket config: `capacity`/);
  assert.throws(() => new SlidingLog({ limit: 1, windowMs: 0 }), RangeError);
  assert.throws(() => new SlidingWindow({ limit: 1.5, windowMs: 10 }), RangeError);
});

test("CommonJS require gives the same API", () => {
  const require = createRequire(import.meta.url);
  const cjs = require("ratebound");
  const b = new cjs.TokenBucket({ capacity: 1 });
  assert.equal(b.check({ now: T0 }).allowed, true);
  assert.equal(b.check({ now: T0 }).allowed, false);
});

test("allow: the boolean fast path decides exactly as check, and checks its input the same way", async () => {
  const { KeyedLimiter, StoreFullError } = await import("ratebound");
  const makers = [
    () => new TokenBucket({ capacity: 5, refillAmount: 2, refillPeriodMs: 700 }),
    () => new SlidingLog({ limit: 4, windowMs: 900, slots: 8 }),
    () => new SlidingWindow({ limit: 6, windowMs: 800 }),
  ];
  for (const make of makers) {
    const [a, b] = [make(), make()];
    let now = T0, rng = 7;
    for (let i = 0; i < 300; i++) {
      rng = (rng * 48271) % 2147483647; // Park–Miller: exact in doubles
      now += rng % 97;
      const cost = 1 + (rng % 3);
      assert.equal(a.allow({ cost, now }), b.check({ cost, now }).allowed, `step ${i}`);
    }
    assert.throws(() => a.allow({ cost: 100, now }), RangeError, "a cost that can never fit");
    assert.throws(() => a.allow({ cost: -1 }), RangeError);
    assert.throws(() => a.allow({ cots: 1 }), TypeError);
    assert.equal(typeof make().allow(), "boolean");
    assert.equal(make().allow(), true, "a fresh limiter at Date.now()");
  }
  // With no options (Date.now()), on limiters slow enough that no unit comes back meanwhile.
  for (const make of [
    () => new TokenBucket({ capacity: 3, refillPeriodMs: 600_000 }),
    () => new SlidingLog({ limit: 3, windowMs: 600_000, slots: 8 }),
    () => new SlidingWindow({ limit: 3, windowMs: 600_000 }),
  ]) {
    const [a, b] = [make(), make()];
    const got = [0, 1, 2, 3, 4].map(() => a.allow());
    assert.deepEqual(got, [0, 1, 2, 3, 4].map(() => b.check().allowed));
    assert.deepEqual(got, [true, true, true, false, false]);
  }
  const twin = () => new KeyedLimiter(() => new TokenBucket({ capacity: 2, refillPeriodMs: 60_000 }), { maxKeys: 2 });
  const [k, c] = [twin(), twin()];
  for (const key of ["a", "a", "a", "b"]) {
    assert.equal(k.allow(key, { now: T0 }), c.check(key, { now: T0 }).allowed);
  }
  assert.throws(() => k.allow("c", { now: T0 }), StoreFullError, "a new key finds no room");
  const live = twin();
  assert.equal(live.allow("a") && live.allow("b"), true);
  assert.throws(() => live.allow("c"), StoreFullError, "the fast path too");
  assert.throws(() => k.allow(3), TypeError);
  // Many keys through a small store that evicts: the slots the store reports
  // (given, emptied) keep each key on its own state on both paths.
  for (const onFull of ["evictLru", "deny"]) {
    const pair = () => new KeyedLimiter(() => new SlidingLog({ limit: 3, windowMs: 500, slots: 8 }), { maxKeys: 5, onFull });
    const [fast, full] = [pair(), pair()];
    let now = T0, rng = 3, refused = 0, fullAt = 0;
    for (let i = 0; i < 600; i++) {
      rng = (rng * 48271) % 2147483647; // Park–Miller: exact in doubles
      now += rng % 40;
      const key = `user-${rng % 12}`;
      if (rng % 50 === 0) {
        assert.equal(fast.evictIdle({ now }), full.evictIdle({ now }), `evictIdle ${i}`);
        continue;
      }
      const outcome = (f) => { try { return f(); } catch (e) { return e.name; } };
      const got = outcome(() => fast.allow(key, { now }));
      assert.equal(got, outcome(() => full.check(key, { now }).allowed), `${onFull} step ${i} (${key})`);
      assert.equal(fast.size, full.size, `${onFull} step ${i}: keys held`);
      assert.ok(fast.size <= 5);
      if (got === "StoreFullError") refused++;
      if (fast.size === 5) fullAt++;
    }
    // The paths this is about were taken: a full store, and (under deny) refusals.
    assert.ok(fullAt > 50, `${onFull}: full ${fullAt} times`);
    if (onFull === "deny") assert.ok(refused > 10, `refused ${refused}`);
    else assert.equal(refused, 0);
  }
});

test("arrays larger than the scratch buffer cross whole: a full 256-slot log's state, 100 idle keys evicted, a wide policy set", async () => {
  const { KeyedLimiter, Policy } = await import("ratebound");
  const T = 1_790_000_000_000;
  const log = new SlidingLog({ limit: 1000, windowMs: 60_000, slots: 256 });
  for (let i = 0; i < 300; i++) assert.equal(log.check({ now: T + i }).allowed, true);
  const state = log.exportState();
  assert.equal(state.data.length, 1 + 2 * 256, "last, then 256 (at, cost) entries");
  const copy = new SlidingLog({ limit: 1000, windowMs: 60_000, slots: 256 });
  copy.importState(JSON.parse(JSON.stringify(state)));
  assert.deepEqual(copy.exportState(), state);
  assert.deepEqual(copy.check({ now: T + 400, cost: 700 }), log.check({ now: T + 400, cost: 700 }));
  const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 2 }), { maxKeys: 1000 });
  for (let k = 0; k < 100; k++) assert.equal(keyed.allow(`k${k}`, { now: T }), true);
  assert.equal(keyed.evictIdle({ now: T + 5_000 }), 100);
  assert.equal(keyed.size, 0);
  const members = Array.from({ length: 20 }, (_, i) => new TokenBucket({ capacity: 100 + i }));
  const set = new Policy(members);
  const d = set.check({ now: T, cost: 50 });
  assert.deepEqual([d.allowed, d.remaining, d.limit], [true, 50, 100]);
});

test("a freed wasm object cannot reach wasm again: its methods and a second free throw", async () => {
  const { raw } = await import("ratebound");
  const { raw: retries } = await import("ratebound/retry");
  for (const make of [() => new raw.Gcra(2, 1, 1e6), () => new raw.SlidingLog(2, 1e6, 8), () => new raw.SlidingCounter(2, 1e6), () => raw.KeyedStore.gcra(2, 1, 1e6, 10, false), () => new retries.RetryBudget(10, 100), () => new retries.Backoff(1e3, 1e6, 2, 1, 0, 3, 0)]) {
    const o = make();
    o.free();
    assert.throws(() => o.free(), TypeError);
    const method = ["check", "canRetry", "start"].find((m) => typeof o[m] === "function");
    assert.throws(() => o[method](1.79e15, 1), /freed/);
  }
  const budget = new retries.RetryBudget(10, 100);
  const backoff = new retries.Backoff(1e3, 1e6, 2, 1, 0, 3, 0);
  backoff.start(1.79e15, 1);
  budget.free();
  assert.throws(() => backoff.nextWithBudget(1.79e15, -1, budget), /freed/);
});

test("a log's state imports only into a log with room for it, and a refused import changes nothing", async () => {
  const T = 1_790_000_000_000;
  for (const slots of [8, 64, 256]) {
    const log = new SlidingLog({ limit: 1000, windowMs: 60_000, slots });
    for (let i = 0; i < 3; i++) log.check({ now: T + i });
    const held = log.exportState();
    const entries = (n) => Array.from({ length: n }, (_, i) => [(T + i) * 1000, 1]).flat();
    const bad = [
      [(T + slots) * 1000, ...entries(slots + 1)], // one entry more than its slots
      [(T + 5) * 1000, (T + 2) * 1000, 1, (T + 1) * 1000, 1], // out of time order
      [(T + 1) * 1000, (T + 2) * 1000, 1], // an entry after the last check
      [(T + 1) * 1000, (T + 1) * 1000], // half an entry
    ];
    for (const data of bad) {
      assert.throws(() => log.importState({ v: 1, data }), TypeError, `${slots} slots: ${data.length}`);
      assert.deepEqual(log.exportState(), held, `${slots} slots: unchanged`);
    }
    const full = [(T + slots) * 1000, ...entries(slots)];
    log.importState({ v: 1, data: full });
    assert.deepEqual(log.exportState().data, full, `${slots} slots: a full log`);
  }
});
