// Type-checked by test/types.test.js (tsc --noEmit, with Node's types as
// ioredis and node-redis users have them): ratebound/redis is typed, and
// wrong uses are compile errors.
import { TokenBucket, SlidingWindow } from "ratebound";
import { RedisStore, RedisLimiter, RedisBudget, RedisModelQuota, BudgetError, RedisUnavailableError, ioredisClient, nodeRedisClient, upstashClient, type RedisDecision } from "ratebound/redis";
import { Redis as Upstash } from "@upstash/redis";
import { Redis } from "ioredis";
import { createClient, createCluster } from "redis";
import { Cluster } from "ioredis";
const shared = new RedisLimiter(new RedisStore(ioredisClient(new Redis({ lazyConnect: true })), { prefix: "app:", timeoutMs: 50 }), {
  perSecond: new TokenBucket({ capacity: 10 }),
  perMinute: { limiter: new SlidingWindow({ limit: 100, windowMs: 60_000 }), cost: 1 },
}, { onUnavailable: "local", replicas: 3 });
new RedisStore(nodeRedisClient(createClient()));
new RedisStore(nodeRedisClient(createCluster({ rootNodes: [{ url: "redis://127.0.0.1:7000" }] })));
new RedisStore(ioredisClient(new Cluster([{ host: "127.0.0.1", port: 7000 }], { lazyConnect: true })));
new RedisStore(upstashClient(new Upstash({ url: "http://127.0.0.1:1", token: "t" })));
async function sharedUse() {
  const r: RedisDecision = await shared.check("user-42", { cost: 2 });
  const source: "redis" | "failOpen" | "local" = r.source;
  const yes: boolean = await shared.allow(new Uint8Array([1, 2]));
  try { await shared.peek("k"); } catch (e) { if (e instanceof RedisUnavailableError) { const why: string = e.reason; } }
  // @ts-expect-error a limiter must be named
  new RedisLimiter(new RedisStore(ioredisClient(new Redis())), new TokenBucket({ capacity: 1 }));
  // @ts-expect-error onUnavailable is one of three
  new RedisLimiter(new RedisStore(ioredisClient(new Redis())), { a: new TokenBucket({ capacity: 1 }) }, { onUnavailable: "maybe" });
}

async function budgetUse(store: RedisStore) {
  const b = new RedisBudget(store, { limits: [{ dimension: "tokens", window: "minute", max: 10_000 }] }, { onUnavailable: "local", replicas: 2 });
  const r = await b.reserve("team-7", { tokens: 3000 });
  if (r.allowed) {
    const s = await b.settle("team-7", r, { tokens: 1834 });
    const late: boolean = s.late;
  } else {
    const wait: number = r.retryAfterMs;
  }
  try { await b.trySpend("team-7", { cost: 5 }); } catch (e) { if (e instanceof BudgetError) { const code: string = e.code; } }
  const used: number = (await b.status("team-7")).limits[0].used;
  // @ts-expect-error the key comes first
  await b.reserve({ tokens: 1 });
}

async function modelUse(store: RedisStore) {
  const q = new RedisModelQuota(store, { totalMax: 100, successMax: 10, periodMs: 60_000 }, { onUnavailable: "open" });
  const d = await q.admit("user-1:gpt");
  if (d.allowed) {
    const how: "held" | "lapsed" = await q.settle("user-1:gpt", d, { success: true });
  }
  // @ts-expect-error success is required
  await q.settle("k", 1, {});
}
