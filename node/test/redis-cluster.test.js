// ratebound/redis on a 3-master Redis Cluster, through ioredis's Cluster and
// node-redis's createCluster: every core trace (limiters, policy sets,
// budgets, model quotas) replays exactly, the library is loaded on every
// master (and again on one that lost it), and concurrent calls spread over
// the nodes admit exactly the limit.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import Redis from "ioredis";
import { createCluster } from "redis";
import { TokenBucket } from "ratebound";
import { RedisStore, RedisLimiter, ioredisClient, nodeRedisClient, LIBRARY_NAME } from "ratebound/redis";
import { startCluster } from "./support/redis-server.js";
import { replayLimiters, replayPolicies, replayBudgets, replayModels } from "./support/replays.js";

let cluster;
const closers = [];
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  for (const c of closers) await c();
  await cluster?.stop();
});

const CLIENTS = {
  "ioredis Cluster": async () => {
    const c = new Redis.Cluster(cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })));
    closers.push(() => c.disconnect());
    c.on("error", () => {});
    if (c.status !== "ready") await new Promise((r) => c.once("ready", r));
    return ioredisClient(c);
  },
  "node-redis createCluster": async () => {
    const c = createCluster({ rootNodes: cluster.nodes.map((n) => ({ url: n.url })) });
    c.on("error", () => {});
    await c.connect();
    closers.push(() => c.destroy());
    return nodeRedisClient(c);
  },
};

for (const [client, connect] of Object.entries(CLIENTS)) {
  test(`${client}: every core trace replays exactly (limiters, policy sets, budgets, model quotas)`, async () => {
    const store = new RedisStore(await connect(), { time: "caller", withState: true });
    const steps = (await replayLimiters(store, client)) + (await replayPolicies(store, client)) + (await replayBudgets(store, client)) + (await replayModels(store, client));
    assert.equal(steps, 3586); // 1240 + 578 + 328 + 1440, as on one server
    // The keys spread over the masters (one hash tag per call, many tags).
    const counts = cluster.nodes.map((n) => Number(n.cli("dbsize")));
    assert.ok(counts.every((k) => k > 0), `keys on every master: ${counts}`);
  });

  test(`${client}: the library is on every master, and loaded again (once) on one that lost it; concurrent calls admit exactly the limit`, async () => {
    const store = new RedisStore(await connect());
    await store.ready();
    for (const n of cluster.nodes) assert.match(n.cli("function", "list"), new RegExp(LIBRARY_NAME), `on :${n.port}`);
    // One node loses the library (a restart, a flush): the calls that find it
    // missing share one load, which goes to every master.
    const [lost] = cluster.nodes;
    const loads = (n) => Number(/cmdstat_function\|load:calls=(\d+)/.exec(n.cli("info", "commandstats"))?.[1] ?? 0);
    const before = loads(lost);
    lost.cli("function", "flush");
    const l = new RedisLimiter(store, { x: new TokenBucket({ capacity: 40, refillPeriodMs: 3_600_000 }) });
    const keys = Array.from({ length: 12 }, (_, i) => `${client} crowd ${i}`);
    const admitted = await Promise.all(keys.map(async (k) => (await Promise.all(Array.from({ length: 60 }, () => l.allow(k)))).filter(Boolean).length));
    assert.deepEqual(admitted, keys.map(() => 40));
    for (const n of cluster.nodes) assert.match(n.cli("function", "list"), new RegExp(LIBRARY_NAME), `loaded again on :${n.port}`);
    const reloads = loads(lost) - before;
    assert.ok(reloads >= 1 && reloads <= 3, `${reloads} loads for 720 calls, about a third of which found the library missing`);
  });
}
