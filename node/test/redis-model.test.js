// RedisModelQuota against a real redis-server through the three clients:
// the core model-quota traces replay exactly (every decision and state,
// several scopes' limits over one state), concurrent admissions never
// overshoot the success count, and the failure policies answer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ModelQuota } from "ratebound/model-quota";
import { RedisStore, RedisModelQuota, RedisUnavailableError } from "ratebound/redis";
import { startRedis } from "./support/redis-server.js";
import { redisForTests } from "./support/server.js";
import { replayModels } from "./support/replays.js";

const { server, CLIENTS } = await redisForTests();

for (const [client, connect] of Object.entries(CLIENTS)) {
  test(`${client}: the model-quota traces replay exactly through Redis (decisions and states)`, async () => {
    const store = new RedisStore(await connect(server.port), { time: "caller", withState: true });
    assert.equal(await replayModels(store, client), 1440);
  });
}

const CONFIG = { totalMax: 100, successMax: 10, periodMs: 60_000 };

test("results equal ratebound/model-quota's ModelQuota, call for call; concurrent admissions over the three clients never overshoot", async () => {
  const store = new RedisStore(await CLIENTS.ioredis(server.port), { time: "caller" });
  const shared = new RedisModelQuota(store, CONFIG);
  const local = new ModelQuota(CONFIG);
  let now = 1_795_000_000_000;
  const holds = [];
  for (let i = 0; i < 60; i++) {
    now += 700;
    if (i % 3 === 2 && holds.length) {
      const [a, b] = holds.shift();
      const success = i % 2 === 0;
      assert.equal(await shared.settle("diff", a, { success, now }), local.settle(b.hold, { success, now }), `settle ${i}`);
      continue;
    }
    const a = await shared.admit("diff", { now });
    const b = local.admit({ now });
    const { source, ...rest } = a;
    assert.deepEqual(rest, b, `admit ${i}`);
    if (b.allowed) holds.push([a, b]);
  }
  const quotas = await Promise.all(Object.values(CLIENTS).map(async (c) => new RedisModelQuota(new RedisStore(await c(server.port)), CONFIG)));
  const admitted = (await Promise.all(Array.from({ length: 60 }, (_, i) => quotas[i % 3].admit("crowd")))).filter((d) => d.allowed);
  assert.equal(admitted.length, 10, "the success count reserves at admission: 10 in flight at most");
  await Promise.all(admitted.map((d, i) => quotas[i % 3].settle("crowd", d, { success: false })));
  assert.equal((await quotas[0].admit("crowd")).allowed, true, "failures give their slots back");
});

test("model-quota failure policies: closed throws, open admits uncounted, local runs this replica's share", async () => {
  const own = await startRedis();
  const store = new RedisStore(await CLIENTS.ioredis(own.port, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 20 }), { timeoutMs: 200 });
  const closed = new RedisModelQuota(store, CONFIG, { retryAfterMs: 300 });
  const open = new RedisModelQuota(store, CONFIG, { onUnavailable: "open" });
  const local = new RedisModelQuota(store, CONFIG, { onUnavailable: "local", replicas: 5 });
  assert.equal((await closed.admit("k")).source, "redis");
  await own.stop();
  await assert.rejects(closed.admit("k"), RedisUnavailableError);
  const o = await open.admit("k");
  assert.deepEqual([o.allowed, o.source, o.hold], [true, "failOpen", null]);
  assert.equal(await open.settle("k", o, { success: true }), "held");
  const seen = [];
  for (let i = 0; i < 3; i++) seen.push((await local.admit("k")).allowed);
  assert.deepEqual(seen, [true, true, false], "10 successes a minute over 5 replicas: 2 here");
  const d = await local.admit("k2");
  assert.equal(await local.settle("k2", d, { success: false }), "held");
});
