// Backoff and retry budget, retry(), policy sets, keyed limiters, window
// state persistence, and the budget module's API.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { TokenBucket, SlidingLog, SlidingWindow, Policy, KeyedLimiter, StoreFullError } from "ratebound";
import { Backoff, RetryBudget, retry } from "ratebound/retry";
import { Budget, BudgetError } from "ratebound/budget";
import { ModelQuota } from "ratebound/model-quota";

const T = 1_790_000_000_000; // a fixed "now" in ms

test("backoff: exponential without jitter, hints, give-up reasons", () => {
  const b = new Backoff({ initialMs: 100, capMs: 1000, jitter: "none", maxRetries: 5 });
  const seq = b.start({ now: T, seed: 1 });
  const delays = [];
  for (let i = 0; i < 5; i++) {
    const s = seq.next({ now: T });
    assert.equal(s.retry, true);
    assert.equal(s.attempt, i + 1);
    assert.equal(s.retryAt, T + s.delayMs);
    delays.push(s.delayMs);
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1000]);
  assert.deepEqual(seq.next({ now: T }), { retry: false, reason: "max_retries", attempt: 5 });

  const hinted = b.start({ now: T, seed: 1 });
  assert.equal(hinted.next({ now: T, hintMs: 750 }).delayMs, 750, "a hint raises the wait");
  assert.equal(hinted.next({ now: T, hintMs: 5000 }).reason, "hint_beyond_cap");

  const elapsed = new Backoff({ initialMs: 100, capMs: 1000, jitter: "none", maxRetries: Infinity, maxElapsedMs: 250 }).start({ now: T });
  assert.equal(elapsed.next({ now: T }).retry, true);
  assert.equal(elapsed.next({ now: T + 100 }).reason, "max_elapsed");
});

test("backoff: jitter stays within bounds and a seed repeats it", () => {
  const b = new Backoff({ initialMs: 100, capMs: 10_000, factor: 1.5, jitter: "full", maxRetries: 8 });
  const run = (seed) => {
    const seq = b.start({ now: T, seed });
    return Array.from({ length: 8 }, (_, n) => {
      const s = seq.next({ now: T });
      assert.ok(s.delayMs >= 0 && s.delayMs <= Math.min(10_000, 100 * 1.5 ** n) + 0.001, `${n}: ${s.delayMs}`);
      return s.delayMs;
    });
  };
  assert.deepEqual(run(42), run(42));
  assert.notDeepEqual(run(42), run(43));
});

test("retry budget: failures spend, successes earn back, the backoff gives up", () => {
  const budget = new RetryBudget({ maxTokens: 3, tokenRatio: 0.5 });
  assert.equal(budget.tokens, 3);
  const seq = new Backoff({ initialMs: 1, capMs: 10, maxRetries: Infinity }).start({ now: T });
  assert.equal(seq.next({ now: T, budget }).retry, true); // 2 left: above half (1.5)
  assert.equal(seq.next({ now: T, budget }).reason, "retry_budget"); // 1 left
  assert.equal(budget.canRetry(), false);
  budget.onSuccess();
  assert.equal(budget.tokens, 1.5);
  assert.equal(budget.canRetry(), false, "exactly half is not above half");
  budget.onSuccess();
  assert.equal(budget.canRetry(), true);
  const saved = JSON.parse(JSON.stringify(budget.exportState()));
  assert.equal(new RetryBudget({ maxTokens: 3, tokenRatio: 0.5 }).importState(saved).tokens, budget.tokens);
});

test("retry(): retries retryable failures with the hint, stops on the others", async () => {
  let calls = 0;
  const started = Date.now();
  const out = await retry(async () => {
    if (++calls < 3) throw Object.assign(new Error("429"), { retryAfterMs: 30 });
    return "ok";
  }, { backoff: new Backoff({ initialMs: 1, capMs: 1000, jitter: "none" }), hintMs: (e) => e.retryAfterMs });
  assert.equal(out, "ok");
  assert.equal(calls, 3);
  assert.ok(Date.now() - started >= 55, "waited at least the two 30 ms hints");

  calls = 0;
  await assert.rejects(retry(async () => { calls++; throw new Error("400"); }, { retryable: (e) => e.message !== "400" }), /400/);
  // A hint that is not a wait is the caller's bug: a RangeError, the failure it was about as its cause.
  const failure = new Error("503");
  await assert.rejects(retry(async () => { throw failure; }, { hintMs: () => NaN }), (e) => e instanceof RangeError && /hintMs/.test(e.message) && e.cause === failure);
  assert.equal(calls, 1);

  calls = 0;
  const err = await retry(async () => { calls++; throw new Error("down"); }, { backoff: new Backoff({ initialMs: 1, capMs: 2, maxRetries: 2 }) }).catch((e) => e);
  assert.equal(calls, 3);
  assert.equal(err.retryGaveUp, "max_retries");
});

test("policy sets: all or nothing, naming the binding member", () => {
  const perSecond = new TokenBucket({ capacity: 5, refillPeriodMs: 1000 });
  const perMinute = new SlidingLog({ limit: 8, windowMs: 60_000 });
  const p = new Policy([perSecond, perMinute]);
  for (let i = 0; i < 5; i++) assert.equal(p.check({ now: T }).allowed, true);
  const d = p.check({ now: T });
  assert.equal(d.allowed, false);
  assert.equal(d.binding, 0, "the per-second bucket binds");
  assert.equal(d.retryAfterMs, 200);
  // Nothing was taken from the minute log by the denial.
  assert.equal(perMinute.peek({ now: T }).remaining, 2);
  for (let i = 0; i < 3; i++) p.check({ now: T + 1000 + i });
  const m = p.check({ now: T + 1010 });
  assert.equal(m.allowed, false);
  assert.equal(m.binding, 1, "now the minute log binds");
  assert.equal(m.remaining, 0);
  // 2 tokens left (5 - 3): a peek of 1 leaves 1, so the denied set took nothing.
  assert.equal(perSecond.peek({ now: T + 1010 }).remaining, 1);
  // Per-member costs.
  const weighted = new Policy([{ limiter: new TokenBucket({ capacity: 10 }), cost: 4 }, new SlidingWindow({ limit: 100, windowMs: 1000 })]);
  assert.equal(weighted.check({ now: T, cost: 50 }).decisions[1].remaining, 50);
  assert.equal(weighted.check({ now: T, cost: 50 }).allowed, true);
  const both = weighted.check({ now: T, cost: 1 });
  assert.deepEqual(both.decisions.map((d) => d.allowed), [false, false]);
  assert.equal(both.binding, 1, "both deny: the later retry binds");
  assert.equal(both.retryAfterMs, Math.max(...both.decisions.map((d) => d.retryAfterMs)));
  assert.throws(() => new Policy([]), TypeError);
  assert.throws(() => new Policy([{}]), /members\[0\]/);
  // A cost no member can ever take is an error naming the member.
  assert.throws(() => weighted.check({ now: T, cost: 101 }), /members\[1\]: cost 101 can never be allowed/);
});

test("policy sets refuse the same limiter twice (one state decided twice)", () => {
  const b = new TokenBucket({ capacity: 1 });
  assert.throws(() => new Policy([b, b]), /members\[1\] is the same limiter as members\[0\]/);
  assert.throws(() => new Policy([b, { limiter: b, cost: 2 }]), TypeError);
  // Distinct limiters with the same config are fine, and each keeps its own state.
  const p = new Policy([b, new TokenBucket({ capacity: 1 })]);
  assert.equal(p.check({ now: T }).allowed, true);
  const d = p.check({ now: T });
  assert.equal(d.allowed, false);
  assert.deepEqual(d.decisions.map((x) => x.allowed), [false, false]);
});

test("policy sets decide as core's fold does (binding, remaining, reset)", () => {
  // Three members; the set's numbers come from core: the least remaining,
  // the latest reset, the binding member's limit.
  const a = new TokenBucket({ capacity: 10, refillPeriodMs: 1000 });
  const b = new SlidingLog({ limit: 4, windowMs: 2000, slots: 8 });
  const c = new SlidingWindow({ limit: 7, windowMs: 5000 });
  const p = new Policy([a, b, c]);
  const d = p.check({ now: T, cost: 3 });
  assert.equal(d.allowed, true);
  assert.equal(d.binding, 1);
  assert.equal(d.remaining, 1);
  assert.equal(d.limit, 4);
  assert.equal(d.resetAt, Math.max(...d.decisions.map((x) => x.resetAt)));
});

test("keyed limiter: per key, bounded, idle keys dropped, full store refuses", () => {
  const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 2, refillPeriodMs: 1000 }), { maxKeys: 3 });
  assert.equal(keyed.check("alice", { now: T }).allowed, true);
  assert.equal(keyed.check("alice", { now: T }).allowed, true);
  assert.equal(keyed.check("alice", { now: T }).allowed, false);
  assert.equal(keyed.check("bob", { now: T }).allowed, true);
  keyed.check("carol", { now: T });
  assert.equal(keyed.size, 3);
  assert.throws(() => keyed.check("dave", { now: T }), (e) => e instanceof StoreFullError && e.code === "store_full");
  assert.equal(keyed.size, 3);
  // Later, bob and carol are full again (idle): dave gets a slot.
  assert.equal(keyed.check("dave", { now: T + 600 }).allowed, true);
  assert.ok(keyed.size <= 3);
  const held = keyed.size;
  assert.ok(held > 0);
  assert.equal(keyed.evictIdle({ now: T + 10_000 }), held);
  assert.equal(keyed.size, 0);
  // evictLru: the least recently used active key gives way.
  const lru = new KeyedLimiter(() => new SlidingLog({ limit: 1, windowMs: 60_000, slots: 8 }), { maxKeys: 2, onFull: "evictLru" });
  lru.check("a", { now: T });
  lru.check("b", { now: T });
  lru.check("a", { now: T }); // touch a: b is now the oldest
  assert.equal(lru.check("c", { now: T }).allowed, true);
  assert.equal(lru.check("a", { now: T }).allowed, false, "a kept its count");
  assert.equal(lru.check("b", { now: T }).allowed, true, "b was evicted (fresh again)");
  // Bad keys.
  assert.throws(() => keyed.check(42), TypeError);
  assert.throws(() => keyed.check("x".repeat(2000)), RangeError);
  assert.throws(() => new KeyedLimiter(() => ({}), {}).check("k"), /factory/);
});

test("window limiters persist their state through JSON", () => {
  const log = new SlidingLog({ limit: 3, windowMs: 10_000, slots: 8 });
  log.check({ now: T, cost: 2 });
  const copy = new SlidingLog({ limit: 3, windowMs: 10_000, slots: 8 }).importState(JSON.parse(JSON.stringify(log.exportState())));
  assert.deepEqual(copy.check({ now: T + 1 }), log.check({ now: T + 1 }));
  assert.equal(copy.check({ now: T + 2 }).allowed, false);
  const w = new SlidingWindow({ limit: 10, windowMs: 1000 });
  w.check({ now: T, cost: 7 });
  const w2 = new SlidingWindow({ limit: 10, windowMs: 1000 }).importState(w.exportState());
  assert.deepEqual(w2.peek({ now: T + 500, cost: 3 }), w.peek({ now: T + 500, cost: 3 }));
  // Malformed states are refused, not half-applied.
  assert.throws(() => log.importState({ v: 1, data: [1, 2] }), TypeError);
  assert.throws(() => log.importState({ v: 1, data: [5e15, 6e15, 1] }), TypeError, "entry after last");
  assert.throws(() => log.importState({ v: 1, data: [10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] }), TypeError, "more than 8 entries");
  assert.throws(() => w.importState({ v: 1, data: [1.5, 0, 0] }), RangeError);
  assert.throws(() => w.importState({ v: 2, data: [0, 0, 0] }), TypeError);
});

test("budget: reserve, settle, release, alerts, status, errors", () => {
  const b = new Budget({
    limits: [{ dimension: "tokens", window: "minute", max: 10_000 }, { dimension: "cost", window: "day", max: 2_000_000 }],
    maxTokensPerRequest: 4000,
    alertThresholds: [0.5, 0.8],
    holdTtlMs: 20_000,
  });
  const r = b.reserve({ tokens: 3000, cost: 300_000, now: T });
  assert.equal(r.allowed, true);
  assert.equal(r.expiresAt, T + 20_000);
  const s = b.settle(r.id, { tokens: 5500, cost: 100_000, now: T + 1 });
  assert.deepEqual(s.charged, { requests: 1, tokens: 5500, cost: 100_000 });
  assert.deepEqual(s.alerts.map((a) => [a.kind, a.threshold]), [["threshold", 0.5]]);
  const r2 = b.reserve({ tokens: 4000, now: T + 2 });
  assert.equal(r2.allowed, true);
  const denied = b.reserve({ tokens: 1000, now: T + 3 });
  assert.equal(denied.allowed, false);
  assert.equal(denied.limitIndex, 0);
  assert.ok(denied.retryAfterMs > 0);
  b.release(r2.id, { now: T + 4 });
  assert.throws(() => b.release(r2.id, { now: T + 5 }), (e) => e instanceof BudgetError && e.code === "unknown_reservation");
  assert.throws(() => b.reserve({ tokens: 4001, now: T }), (e) => e.code === "exceeds_limit");
  const st = b.status({ now: T + 6 });
  assert.equal(st.limits[0].used, 5500);
  assert.equal(st.limits[0].reserved, 0);
  assert.equal(st.limits[0].utilization, 0.55);
  assert.equal(st.holds, 0);
  const copy = new Budget(b.config).importState(JSON.parse(JSON.stringify(b.exportState())));
  assert.deepEqual(copy.status({ now: T + 7 }), b.status({ now: T + 7 }));
  assert.equal(b.trySpend({ tokens: 4000, now: T + 8 }).allowed, true);
  assert.equal(b.trySpend({ tokens: 1000, now: T + 9 }).allowed, false);
});

test("budget: a config change keeps usage and re-evaluates alerts; windows follow their limits; a new offset is refused", () => {
  const tokens = (max) => ({ limits: [{ dimension: "tokens", window: "hour", max }], alertThresholds: [0.8] });
  const b = new Budget(tokens(1000));
  assert.equal(b.record({ tokens: 900, now: T }).alerts.length, 1);
  b.reconfigure(tokens(2000));
  assert.equal(b.config.limits[0].max, 2000);
  assert.equal(b.status({ now: T + 2 }).limits[0].used, 900);
  assert.equal(b.record({ tokens: 600, now: T + 3 }).alerts.length, 0);
  assert.deepEqual(b.record({ tokens: 100, now: T + 4 }).alerts.map((a) => a.threshold), [0.8]);
  assert.equal(b.trySpend({ tokens: 400, now: T + 5 }).allowed, true);
  assert.equal(b.trySpend({ tokens: 1, now: T + 6 }).allowed, false);
  // Moving the UTC offset or changing holdSlots: refused, nothing changed.
  assert.throws(() => b.reconfigure({ ...tokens(5000), utcOffsetMinutes: 60 }), /utc_offset/);
  assert.throws(() => b.reconfigure({ ...tokens(5000), holdSlots: 4 }), /holdSlots/);
  assert.equal(b.config.limits[0].max, 2000);
  assert.equal(b.trySpend({ tokens: 1, now: T + 7 }).allowed, false);
  // A limit added before it: the token window follows its limit.
  b.reconfigure({ limits: [{ dimension: "requests", window: "minute", max: 100 }, tokens(2000).limits[0]] });
  const st = b.status({ now: T + 8 });
  assert.deepEqual([st.limits[0].used, st.limits[1].used], [0, 2000]);
  assert.equal(b.trySpend({ tokens: 1, now: T + 9 }).allowed, false);
});

test("budget: bad configs and inputs are clear errors", () => {
  assert.throws(() => new Budget({}), TypeError);
  assert.throws(() => new Budget({ limits: [{ dimension: "gold", window: "day", max: 1 }] }), /dimension/);
  assert.throws(() => new Budget({ limits: [{ dimension: "cost", window: "week", max: 1 }] }), /window/);
  assert.throws(() => new Budget({ limits: [{ dimension: "cost", window: "day", max: 0 }] }), RangeError);
  assert.throws(() => new Budget({ limits: [{ dimension: "cost", window: "day", max: 1.5 }] }), RangeError);
  assert.throws(() => new Budget({ limits: [{ dimension: "cost", window: "day", max: 1 }], alertThresholds: [1.5] }), RangeError);
  assert.throws(() => new Budget({ limits: [{ dimension: "cost", window: "day", max: 2 ** 60 }] }), RangeError);
  assert.throws(() => new Budget({ limits: [{ dimension: "cost", window: "day", max: 1 }], holdSlots: 5 }), /holdSlots/);
  const b = new Budget({ limits: [{ dimension: "tokens", window: "month", max: 100 }] });
  assert.throws(() => b.reserve({ tokens: -1 }), RangeError);
  assert.throws(() => b.reserve({ tokens: "5" }), TypeError);
  assert.throws(() => b.settle(NaN, {}), RangeError);
  assert.throws(() => b.importState({ v: 1, state: { nope: true } }), TypeError);
});

test("backoff/keyed/policy bad input", () => {
  assert.throws(() => new Backoff({ initialMs: 10, capMs: 5 }), RangeError);
  assert.throws(() => new Backoff({ jitter: "wild" }), /jitter/);
  assert.throws(() => new Backoff({ factor: 0.5 }), /factor/);
  assert.throws(() => new RetryBudget({ tokenRatio: 2 }), /tokenRatio/);
  assert.throws(() => new Backoff().start({ now: NaN }), RangeError);
  assert.throws(() => new KeyedLimiter(() => null, { onFull: "drop" }), /onFull/);
});

test("CommonJS require of ratebound/budget, ratebound/model-quota and ratebound/retry", () => {
  const require = createRequire(import.meta.url);
  const budget = require("ratebound/budget");
  assert.equal(budget.Budget, Budget);
  assert.equal(budget.ModelQuota, undefined);
  const retries = require("ratebound/retry");
  assert.equal(retries.Backoff, Backoff);
  assert.equal(retries.TokenBucket, undefined);
  // node/README: ratebound itself no longer has them.
  const main = require("ratebound");
  assert.deepEqual(["Backoff", "RetrySequence", "RetryBudget", "retry"].filter((name) => name in main), []);
  const quota = new (require("ratebound/model-quota").ModelQuota)({ successMax: 1, periodMs: 1000 });
  assert.equal(quota.admit({ now: T }).allowed, true);
  assert.equal(quota.admit({ now: T }).allowed, false);
});

test("a sliding log admits its whole limit whatever its slots (remaining is true)", () => {
  const log = new SlidingLog({ limit: 100, windowMs: 60_000 }); // 64 slots
  let admitted = 0;
  for (let i = 0; i < 105; i++) {
    const d = log.check({ now: T + i });
    if (d.allowed) {
      admitted++;
      assert.equal(d.remaining, 100 - admitted, `request ${i}`);
    }
  }
  assert.equal(admitted, 100);
  const big = new SlidingLog({ limit: 1000, windowMs: 60_000, slots: 256 });
  let n = 0;
  for (let i = 0; i < 1200; i++) n += big.check({ now: T + i }).allowed ? 1 : 0;
  assert.equal(n, 1000);
  // Nothing comes back within the window, everything after it.
  assert.equal(log.check({ now: T + 59_000 }).allowed, false);
  assert.equal(log.check({ now: T + 60_200 }).allowed, true);
});

test("model quotas: holds, successes counted, in-flight denials retry within a second", () => {
  const q = new ModelQuota({ totalMax: 5, successMax: 2, periodMs: 60_000 });
  const a = q.admit({ now: T });
  const b = q.admit({ now: T });
  assert.equal(a.allowed && b.allowed, true);
  const c = q.admit({ now: T });
  assert.equal(c.allowed, false);
  assert.equal(c.blocked, "in_flight");
  assert.equal(c.inFlight, 2);
  assert.ok(c.retryAfterMs > 0 && c.retryAfterMs <= 1000);
  assert.equal(q.settle(a.hold, { success: false, now: T }), "held");
  const d = q.admit({ now: T + 10 });
  assert.equal(d.allowed, true);
  q.settle(b.hold, { success: true, now: T + 20 });
  q.settle(d.hold, { success: true, now: T + 30 });
  const e = q.admit({ now: T + 40 });
  assert.equal(e.blocked, "success");
  assert.equal(e.retryAfterMs, 60_000 - 20); // at most 2 successes in any minute
  assert.equal(q.settle(12345, { success: true, now: T + 50 }), "lapsed");
  const saved = q.exportState();
  const r = new ModelQuota({ totalMax: 5, successMax: 2, periodMs: 60_000 }).importState(saved);
  assert.deepEqual(r.peek({ now: T + 60 }), q.peek({ now: T + 60 }));
  assert.throws(() => new ModelQuota({ successMax: 0, periodMs: 1 }), RangeError);
  assert.throws(() => new ModelQuota({ successMax: 1, periodMs: 1, window: "fixed" }), /window must be/);
  assert.throws(() => q.settle(1, {}), /success must be/);
});

test("a misspelt config or option key is a TypeError naming it, not a silent default", async () => {
  const unknown = (key) => ({ name: "TypeError", message: new RegExp(`unknown key \`${key}\``) });
  assert.throws(() => new TokenBucket({ capacity: 10, refillMs: 500 }), unknown("refillMs"));
  assert.throws(() => new SlidingLog({ limit: 10, windowMs: 1000, slot: 8 }), unknown("slot"));
  assert.throws(() => new SlidingWindow({ limit: 10, windowMs: 1000, slots: 8 }), unknown("slots"));
  assert.throws(() => new Backoff({ initialMs: 100, cap: 1000 }), unknown("cap"));
  assert.throws(() => new RetryBudget({ maxToken: 5 }), unknown("maxToken"));
  assert.throws(() => new KeyedLimiter(() => new TokenBucket({ capacity: 1 }), { maxKey: 5 }), unknown("maxKey"));
  assert.throws(() => new Budget({ limits: [{ dimension: "tokens", window: "minute", max: 10, min: 1 }] }), unknown("min"));
  assert.throws(() => new Budget({ limits: [{ dimension: "tokens", window: "minute", max: 10 }], maxTokens: 5 }), unknown("maxTokens"));
  assert.throws(() => new ModelQuota({ successMax: 1, periodMs: 1000, period: 5 }), unknown("period"));
  const b = new TokenBucket({ capacity: 10 });
  assert.throws(() => new Policy([{ limiter: b, cots: 4 }]), unknown("cots"));
  assert.throws(() => b.check({ cots: 5, now: T }), unknown("cots"));
  assert.deepEqual(b.peek({ now: T }), new TokenBucket({ capacity: 10 }).peek({ now: T }), "the refused call charged nothing");
  const budget = new Budget({ limits: [{ dimension: "tokens", window: "minute", max: 10 }] });
  assert.throws(() => budget.reserve({ token: 5, now: T }), unknown("token"));
  await assert.rejects(retry(async () => 1, { retriable: () => false }), unknown("retriable"));
});

test("an object used after free() says so; free() twice is harmless", () => {
  const freed = (kind) => ({ name: "TypeError", message: new RegExp(`this ${kind} was freed`) });
  const b = new TokenBucket({ capacity: 10 });
  b.free();
  assert.throws(() => b.check(), freed("TokenBucket"));
  assert.throws(() => b.exportState(), freed("TokenBucket"));
  b.free();
  const log = new SlidingLog({ limit: 10, windowMs: 1000 });
  log.free();
  assert.throws(() => log.peek(), freed("SlidingLog"));
  const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 1 }));
  keyed.free();
  assert.throws(() => keyed.check("a"), freed("KeyedLimiter"));
  assert.throws(() => keyed.size, freed("KeyedLimiter"));
  const rb = new RetryBudget();
  rb.free();
  assert.throws(() => rb.onFailure(), freed("RetryBudget"));
  assert.throws(() => new Backoff().start().next({ budget: rb }), freed("RetryBudget"));
  const budget = new Budget({ limits: [{ dimension: "tokens", window: "minute", max: 10 }] });
  budget.free();
  assert.throws(() => budget.reserve({ tokens: 1 }), freed("Budget"));
  const quota = new ModelQuota({ successMax: 1, periodMs: 1000 });
  quota.free();
  assert.throws(() => quota.admit(), freed("ModelQuota"));
});

test("ModelQuota: an admitted decision carries a hold, a refused one names the count and holds nothing; a peek holds nothing", () => {
  const quota = new ModelQuota({ successMax: 1, periodMs: 60_000 });
  const peek = quota.peek({ now: T });
  assert.equal(peek.allowed, true);
  assert.equal(peek.hold, null);
  const ok = quota.admit({ now: T });
  assert.equal(ok.allowed, true);
  assert.equal(ok.blocked, null);
  assert.equal(typeof ok.hold, "number");
  const no = quota.admit({ now: T });
  assert.equal(no.allowed, false);
  assert.equal(no.hold, null);
  assert.equal(no.blocked, "in_flight"); // the one success slot is held by `ok`
  assert.equal(quota.peek({ now: T }).hold, null);
});
