// RedisBudget against a real redis-server through the three clients: the
// core budget traces replay exactly (every result and every state, limits
// changed live included), concurrent reservations never overshoot, and the
// failure policies answer as documented.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Budget } from "ratebound/budget";
import { RedisStore, RedisBudget, BudgetError, RedisUnavailableError } from "ratebound/redis";
import { startRedis } from "./support/redis-server.js";
import { redisForTests } from "./support/server.js";
import { replayBudgets } from "./support/replays.js";

const { server, CLIENTS } = await redisForTests();

for (const [client, connect] of Object.entries(CLIENTS)) {
  test(`${client}: the budget traces replay exactly through Redis (results and states, live reconfiguration included)`, async () => {
    const store = new RedisStore(await connect(server.port), { time: "caller", withState: true });
    assert.equal(await replayBudgets(store, client), 328); // every step
  });
}

const CONFIG = {
  limits: [
    { dimension: "tokens", window: "minute", max: 10_000 },
    { dimension: "cost", window: "day", max: 2_000_000 },
  ],
  maxTokensPerRequest: 4000,
  alertThresholds: [0.5, 0.8],
};

test("results equal ratebound/budget's Budget, call for call (caller time, random traffic)", async () => {
  const store = new RedisStore(await CLIENTS.ioredis(server.port), { time: "caller" });
  const shared = new RedisBudget(store, CONFIG, { holdSlots: 4 });
  const local = new Budget({ ...CONFIG, holdSlots: 4 });
  let seed = 11;
  const rnd = (n) => {
    seed = (seed * 48271) % 2147483647; // Park–Miller: exact in doubles
    return seed % n;
  };
  let now = 1_795_000_000_000;
  const held = [];
  const strip = ({ source, ...rest }) => rest;
  const seen = { denied: 0, alerts: 0, granted: 0 };
  for (let i = 0; i < 300; i++) {
    now += rnd(3000);
    const u = { tokens: rnd(3000), cost: rnd(90_000), now };
    const op = rnd(6);
    const what = `step ${i} op ${op}`;
    const both = async (mem, red) => {
      let a, b;
      try { a = mem(); } catch (e) { a = { threw: e.constructor.name, code: e.code }; }
      try { b = strip(await red()); } catch (e) { b = { threw: e.constructor.name, code: e.code }; }
      assert.deepEqual(b, a, what);
      if (a.allowed === false) seen.denied++;
      if (a.allowed === true && a.id) seen.granted++;
      seen.alerts += a.alerts?.length ?? 0;
      return a;
    };
    if (op <= 1) {
      const r = await both(() => local.reserve(u), () => shared.reserve("diff", u));
      if (r.allowed) held.push(r.id);
    } else if (op === 2 && held.length) {
      const id = held.splice(rnd(held.length), 1)[0];
      const actual = { tokens: rnd(4000), cost: rnd(100_000), now };
      if (rnd(4) === 0) await both(() => local.release(id, { now }) ?? { released: true }, async () => (await shared.release("diff", id, { now }), { released: true, source: "redis" }));
      else await both(() => local.settle(id, actual), () => shared.settle("diff", id, actual));
    } else if (op === 3) {
      await both(() => local.trySpend(u), () => shared.trySpend("diff", u));
    } else if (op === 4) {
      await both(() => local.record(u), () => shared.record("diff", u));
    } else {
      await both(() => local.status({ now }), () => shared.status("diff", { now }));
    }
  }
  assert.ok(seen.denied > 10 && seen.granted > 10 && seen.alerts > 3, JSON.stringify(seen));
});

test("a whole reservation from a store with withState settles; peek answers with its source", async () => {
  const budget = new RedisBudget(new RedisStore(await CLIENTS.ioredis(server.port), { withState: true }), CONFIG);
  const r = await budget.reserve("whole", { tokens: 100 });
  assert.equal((await budget.settle("whole", r, { tokens: 50 })).charged.tokens, 50);
  await budget.record("whole", { tokens: 9000 });
  const p = await budget.peek("whole", { tokens: 3000 });
  assert.deepEqual([p.allowed, p.reason, p.source], [false, "limit", "redis"]);
});

test("concurrent reservations over the three clients never overshoot: exactly the estimates that fit are granted", async () => {
  const budgets = await Promise.all(Object.values(CLIENTS).map(async (connect) => new RedisBudget(new RedisStore(await connect(server.port)), CONFIG, { holdSlots: 256 })));
  const calls = [];
  for (let i = 0; i < 120; i++) calls.push(budgets[i % 3].reserve("crowd", { tokens: 300 }));
  const results = await Promise.all(calls);
  const granted = results.filter((r) => r.allowed);
  assert.equal(granted.length, 33, "10 000 tokens a minute hold 33 estimates of 300");
  assert.equal(new Set(granted.map((r) => r.id)).size, 33, "every hold id is unique");
  const s = await budgets[0].status("crowd");
  assert.deepEqual([s.limits[0].reserved, s.limits[0].used, s.holds], [9900, 0, 33]);
  // Settled for less by all three clients: the rest comes back.
  await Promise.all(granted.map((r, i) => budgets[i % 3].settle("crowd", r, { tokens: 100 })));
  const after = await budgets[1].status("crowd");
  assert.deepEqual([after.limits[0].reserved, after.limits[0].used, after.holds], [0, 3300, 0]);
});

test("budget failure policies: closed throws; open admits and counts nothing; local runs this replica's share, holds settle where they were made", async () => {
  const own = await startRedis();
  const store = new RedisStore(await CLIENTS.ioredis(own.port, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 20 }), { timeoutMs: 200 });
  const closed = new RedisBudget(store, CONFIG, { retryAfterMs: 300 });
  const open = new RedisBudget(store, CONFIG, { onUnavailable: "open", retryAfterMs: 300 });
  const local = new RedisBudget(store, CONFIG, { onUnavailable: "local", replicas: 4, retryAfterMs: 300 });
  const before = await local.reserve("k", { tokens: 2000 });
  assert.equal(before.source, "redis");
  await own.stop();
  await assert.rejects(closed.reserve("k", { tokens: 10 }), (e) => e instanceof RedisUnavailableError);
  const o = await open.reserve("k", { tokens: 10 });
  assert.deepEqual([o.allowed, o.source, o.id], [true, "failOpen", null]);
  assert.deepEqual((await open.settle("k", o, { tokens: 10 })).charged, { requests: 0, tokens: 0, cost: 0 });
  await assert.rejects(open.status("k"), RedisUnavailableError);
  // A quarter of 10 000 tokens: 2 500 a minute here.
  const a = await local.reserve("k", { tokens: 2000 });
  const b = await local.reserve("k", { tokens: 600 });
  assert.deepEqual([a.allowed, a.source, b.allowed, b.reason], [true, "local", false, "limit"]);
  assert.equal((await local.settle("k", a, { tokens: 500 })).source, "local");
  const s = await local.status("k");
  assert.deepEqual([s.source, s.limits[0].max, s.limits[0].used], ["local", 2500, 500]);
  // The hold made in Redis before it went down cannot settle while it is down (settles never fail over).
  await assert.rejects(local.settle("k", before, { tokens: 1 }), RedisUnavailableError);
  assert.deepEqual([(await open.peek("k", { tokens: 10 })).source, (await local.peek("k", { tokens: 2100 })).allowed], ["failOpen", false], "peek follows the policy too");
  // The local budgets are bounded: the least recently used key is dropped for a new one.
  const few = new RedisBudget(store, CONFIG, { onUnavailable: "local", local: { maxKeys: 2 }, retryAfterMs: 300 });
  for (const k of ["a", "b", "c", "a"]) assert.equal((await few.reserve(k, { tokens: 100 })).source, "local", k);
  // A Buffer key is copied at the call: reusing the buffer while it runs changes nothing.
  const buf = Buffer.from("user-1");
  const pending = local.reserve(buf, { tokens: 700 });
  buf.write("user-2");
  await pending;
  assert.deepEqual([(await local.status("user-1")).limits[0].reserved, (await local.status("user-2")).limits[0].reserved], [700, 0]);
  // Usage that can never fit is refused before any call, whatever the policy.
  await assert.rejects(local.reserve("k", { tokens: 4001 }), (e) => e instanceof BudgetError && e.code === "exceeds_limit");
});
