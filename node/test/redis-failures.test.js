// ratebound/redis when Redis stalls or is gone, for every kind of call
// (node/README.md and redis.d.ts promise each of these): a call Redis
// starts after the caller gave up changes nothing; take / refund, a model
// quota's peek and a Redis hold's settle never fail over; an answer about
// the call itself is thrown under every policy; the local fallback keeps
// at most `maxKeys` keys, the least recently used forgotten.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TokenBucket, SlidingLog, SlidingWindow } from "ratebound";
import { BudgetError } from "ratebound/budget";
import { RedisStore, RedisLimiter, RedisBudget, RedisModelQuota, RedisUnavailableError } from "ratebound/redis";
import { startRedis } from "./support/redis-server.js";
import { redisForTests } from "./support/server.js";

const { server, CLIENTS } = await redisForTests();

// The budgets here count per UTC day: a test run just before midnight waits
// it out, so no test straddles a window's end.
const toMidnight = 86_400_000 - (Date.now() % 86_400_000);
if (toMidnight < 60_000) await new Promise((r) => setTimeout(r, toMidnight + 100));

const BUDGET = { limits: [{ dimension: "tokens", window: "day", max: 10_000 }] };
const QUOTA = { totalMax: 100, successMax: 10, periodMs: 60_000 };
const timedOut = (e) => e instanceof RedisUnavailableError && e.reason === "timeout";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `FCALL`'s calls and failed calls so far (INFO commandstats). */
function fcalls() {
  const line = server.cli("info", "commandstats").split("\n").find((l) => l.startsWith("cmdstat_fcall:")) ?? "";
  const field = (name) => Number(new RegExp(`${name}=(\\d+)`).exec(line)?.[1] ?? 0);
  return [field("calls"), field("failed_calls")];
}

/**
 * Run `call` while Redis stalls for 1.5 s (timeout 150 ms): it must time
 * out; then Redis runs it late, and it refuses itself (one more FCALL, one
 * more failed).
 */
async function stalled(call) {
  const [calls, failed] = fcalls();
  assert.equal(server.cli("client", "pause", "1500", "ALL"), "OK");
  const started = Date.now();
  await assert.rejects(call(), timedOut);
  assert.ok(Date.now() - started < 1_200, "answered at the timeout, not when Redis came back");
  await sleep(1_700);
  assert.deepEqual(fcalls(), [calls + 1, failed + 1], "Redis ran the late call, which refused itself");
}

test("deadlines: every kind of call that Redis starts after the caller gave up changes nothing", async () => {
  const store = new RedisStore(await CLIENTS.ioredis(server.port), { timeoutMs: 150 });
  const fresh = async () => new RedisStore(await CLIENTS.ioredis(server.port));
  const hour = 3_600_000;
  const set = { a: new TokenBucket({ capacity: 5, refillPeriodMs: hour }), b: new SlidingWindow({ limit: 9, windowMs: hour }) };
  const limiters = [
    ["a policy set", set, (l) => l.check("set", { cost: 2 })],
    ["a sliding log", { x: new SlidingLog({ limit: 5, windowMs: hour }) }, (l) => l.check("log", { cost: 2 })],
    ["take", { x: new TokenBucket({ capacity: 5, refillPeriodMs: hour }) }, (l) => l.take("take", { max: 3 })],
  ];
  for (const [what, members, call] of limiters) {
    const l = new RedisLimiter(store, members, { retryAfterMs: 1 });
    const key = what === "take" ? "take" : what === "a policy set" ? "set" : "log";
    await l.check(key);
    const before = await new RedisLimiter(await fresh(), members).peek(key, { cost: 0 });
    await stalled(() => call(l));
    const after = await new RedisLimiter(await fresh(), members).peek(key, { cost: 0 });
    assert.deepEqual(after.decisions.map((d) => d.remaining), before.decisions.map((d) => d.remaining), `${what}: the late call charged nothing`);
  }
  const budget = new RedisBudget(store, BUDGET, { retryAfterMs: 1 });
  await budget.reserve("b", { tokens: 100 });
  const status = async () => (await new RedisBudget(await fresh(), BUDGET).status("b")).limits.map((l) => [l.used, l.reserved]);
  const was = await status();
  await stalled(() => budget.reserve("b", { tokens: 500 }));
  await budget.status("b"); // Redis is up again for this budget: the next call goes straight to FCALL
  await stalled(() => budget.trySpend("b", { tokens: 500 }));
  assert.deepEqual(await status(), was, "the late reserve and trySpend charged nothing");
  const quota = new RedisModelQuota(store, QUOTA, { retryAfterMs: 1 });
  await quota.admit("m");
  const inFlight = async () => (await new RedisModelQuota(await fresh(), QUOTA).peek("m")).inFlight;
  assert.equal(await inFlight(), 1);
  await stalled(() => quota.admit("m"));
  assert.equal(await inFlight(), 1, "the late admission holds nothing");
});

test("while Redis is gone: take and refund throw, a model quota's peek throws under closed and open, a Redis hold's settle throws under every policy", async () => {
  const own = await startRedis();
  const store = new RedisStore(await CLIENTS.ioredis(own.port, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null }), { timeoutMs: 200 });
  const bucket = { x: new TokenBucket({ capacity: 5, refillPeriodMs: 60_000 }) };
  const buckets = ["open", "local"].map((p) => new RedisLimiter(store, bucket, { onUnavailable: p, retryAfterMs: 300 }));
  const quotas = Object.fromEntries(["closed", "open", "local"].map((p) => [p, new RedisModelQuota(store, QUOTA, { onUnavailable: p, retryAfterMs: 300 })]));
  const held = await quotas.local.admit("m");
  assert.equal(held.source, "redis");
  await own.stop();
  for (const l of buckets) {
    await assert.rejects(l.take("k", { max: 2 }), RedisUnavailableError);
    await assert.rejects(l.refund("k", { amount: 1 }), RedisUnavailableError);
    assert.equal((await l.check("k")).source, l === buckets[0] ? "failOpen" : "local", "check fails over as its policy says");
  }
  await assert.rejects(quotas.closed.peek("m"), RedisUnavailableError);
  await assert.rejects(quotas.open.peek("m"), RedisUnavailableError);
  assert.equal((await quotas.local.peek("m")).source, "local");
  for (const q of Object.values(quotas)) await assert.rejects(q.settle("m", held, { success: true }), RedisUnavailableError);
});

test("an answer about the call itself (a key of another type) is thrown by budgets and model quotas under every policy, never failed over", async () => {
  server.cli("rpush", "rb:{wrongtype}:budget", "a");
  server.cli("rpush", "rb:{wrongtype}:m", "a");
  const store = new RedisStore(await CLIENTS.ioredis(server.port));
  const wrongType = (e) => !(e instanceof RedisUnavailableError) && /WRONGTYPE|wrong kind/i.test(e.message);
  for (const policy of ["closed", "open", "local"]) {
    const budget = new RedisBudget(store, BUDGET, { onUnavailable: policy });
    await assert.rejects(budget.reserve("wrongtype", { tokens: 1 }), wrongType, `budget, ${policy}`);
    assert.equal(budget.unavailable, false);
    const quota = new RedisModelQuota(store, QUOTA, { onUnavailable: policy });
    await assert.rejects(quota.admit("wrongtype"), wrongType, `model quota, ${policy}`);
    assert.equal(quota.unavailable, false);
  }
});

test("the local fallback keeps at most maxKeys keys: the least recently used is forgotten and starts fresh", async () => {
  const own = await startRedis();
  const store = new RedisStore(await CLIENTS.ioredis(own.port, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null }), { timeoutMs: 200 });
  const opts = { onUnavailable: "local", local: { maxKeys: 2 }, retryAfterMs: 60_000 };
  const limiter = new RedisLimiter(store, { x: new TokenBucket({ capacity: 1, refillPeriodMs: 3_600_000 }) }, opts);
  const budget = new RedisBudget(store, { limits: [{ dimension: "tokens", window: "day", max: 100 }] }, opts);
  const quota = new RedisModelQuota(store, { successMax: 1, periodMs: 3_600_000 }, opts);
  await own.stop();
  const uses = [
    ["RedisLimiter", async (k) => (await limiter.check(k)).allowed],
    ["RedisBudget", async (k) => (await budget.trySpend(k, { tokens: 100 })).allowed],
    ["RedisModelQuota", async (k) => (await quota.admit(k)).allowed],
  ];
  for (const [what, use] of uses) {
    assert.deepEqual([await use("a"), await use("b"), await use("a")], [true, true, false], `${what}: a and b counted`);
    assert.equal(await use("c"), true, `${what}: c takes the place of b, the least recently used`);
    assert.equal(await use("a"), false, `${what}: a kept its count`);
    assert.equal(await use("b"), true, `${what}: b was forgotten: fresh again`);
  }
});

test("the local fallback: a call a set refuses is a use of its key in every member's store, so the key keeps its counts", async () => {
  const own = await startRedis();
  const store = new RedisStore(await CLIENTS.ioredis(own.port, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null }), { timeoutMs: 200 });
  const hour = 3_600_000;
  const limits = { strict: new TokenBucket({ capacity: 1, refillPeriodMs: hour }), loose: new TokenBucket({ capacity: 3, refillPeriodMs: hour }) };
  const limiter = new RedisLimiter(store, limits, { onUnavailable: "local", local: { maxKeys: 2 }, retryAfterMs: 60_000 });
  await own.stop();
  const use = async (k) => {
    const d = await limiter.check(k);
    assert.equal(d.source, "local");
    return [d.allowed, ...d.decisions.map((m) => m.remaining)];
  };
  assert.deepEqual(await use("a"), [true, 0, 2]);
  assert.deepEqual(await use("b"), [true, 0, 2]);
  // A refused set charges nothing: loose reports what would remain had it taken 1.
  assert.deepEqual(await use("a"), [false, 0, 1], "strict refuses a; loose would admit it");
  assert.deepEqual(await use("c"), [true, 0, 2], "c takes the place of b, the least recently used in both stores");
  assert.deepEqual(await use("a"), [false, 0, 1], "a kept its counts in both stores (loose forgetting it would say 2)");
  assert.deepEqual(await use("b"), [true, 0, 2], "b was forgotten: fresh again");
});

test("the local fallback of a budget: three replicas spend within their shares, and an amount only the whole budget fits waits for Redis", async () => {
  const own = await startRedis();
  const replicas = [];
  for (let i = 0; i < 3; i++) {
    const store = new RedisStore(await CLIENTS.ioredis(own.port, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null }), { timeoutMs: 200 });
    replicas.push(new RedisBudget(store, { limits: [{ dimension: "tokens", window: "day", max: 900 }] }, { onUnavailable: "local", replicas: 3, retryAfterMs: 300 }));
  }
  await own.stop();
  const spent = [];
  for (const budget of replicas) {
    // 400 tokens: within the 900, never within this replica's 300.
    for (const d of [await budget.reserve("team", { tokens: 400 }), await budget.trySpend("team", { tokens: 400 }), await budget.peek("team", { tokens: 400 })]) {
      assert.deepEqual([d.allowed, d.source, d.reason, d.limitIndex], [false, "local", "above_share", 0]);
      assert.equal(d.retryAfterMs, 300, "retry once Redis may be back");
    }
    await assert.rejects(budget.reserve("team", { tokens: 901 }), (e) => e instanceof BudgetError && e.code === "exceeds_limit");
    let tokens = 0;
    for (let i = 0; i < 5; i++) if ((await budget.trySpend("team", { tokens: 100 })).allowed) tokens += 100;
    spent.push(tokens);
  }
  assert.deepEqual(spent, [300, 300, 300], "each replica within its share of 900 / 3");
});

test("the local fallback of a budget: a share refusal at the caller's time, and a use of its key", async () => {
  const own = await startRedis();
  const store = new RedisStore(await CLIENTS.ioredis(own.port, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null }), { timeoutMs: 200, time: "caller" });
  const budget = new RedisBudget(store, { limits: [{ dimension: "tokens", window: "day", max: 900 }] }, { onUnavailable: "local", replicas: 3, retryAfterMs: 300, local: { maxKeys: 2 } });
  await own.stop();
  const now = Date.UTC(2026, 11, 5, 12);
  const d = await budget.trySpend("a", { tokens: 400, now });
  assert.deepEqual([d.allowed, d.reason, d.retryAt, d.retryAfterMs], [false, "above_share", now + 300, 300]);
  // a spends its share; b comes; a is refused above its share (a use); c comes: b, not a, is forgotten.
  assert.equal((await budget.trySpend("a", { tokens: 300, now })).allowed, true);
  assert.equal((await budget.trySpend("b", { tokens: 300, now })).allowed, true);
  assert.equal((await budget.trySpend("a", { tokens: 400, now })).reason, "above_share");
  assert.equal((await budget.trySpend("c", { tokens: 300, now })).allowed, true);
  assert.equal((await budget.trySpend("a", { tokens: 1, now })).allowed, false, "a kept its count");
  assert.equal((await budget.trySpend("b", { tokens: 300, now })).allowed, true, "b was forgotten: fresh again");
});

test("limit names follow core's rule, as the Rust backend's do: 1 to 64 bytes of visible ASCII but { } \" \\", async () => {
  const store = new RedisStore(await CLIENTS.ioredis(server.port));
  const bucket = new TokenBucket({ capacity: 1 });
  for (const ok of ["a".repeat(64), "per-minute", "!#$%&'()*+,-./:;<=>?@[]^_`|~"]) new RedisLimiter(store, { [ok]: bucket });
  for (const bad of ["", "a".repeat(65), "a b", 'a"b', "a\\b", "a{", "b}", "é", "a\tb"]) {
    assert.throws(() => new RedisLimiter(store, { [bad]: bucket }), RangeError, JSON.stringify(bad));
    assert.throws(() => new RedisBudget(store, BUDGET, { name: bad }), RangeError, JSON.stringify(bad));
  }
  assert.throws(() => new RedisBudget(store, BUDGET, { name: 7 }), TypeError);
});
