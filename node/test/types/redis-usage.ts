// Type-checked by test/types.test.js (tsc --noEmit, with Node's types as
// ioredis and node-redis users have them): ratebound/redis is typed, and
// wrong uses are compile errors.
import { TokenBucket, SlidingWindow } from "ratebound";
import { RedisStore, RedisLimiter, RedisUnavailableError, ioredisClient, nodeRedisClient, upstashClient, type RedisDecision } from "ratebound/redis";
import { Redis as Upstash } from "@upstash/redis";
import { Redis } from "ioredis";
import { createClient } from "redis";
const shared = new RedisLimiter(new RedisStore(ioredisClient(new Redis({ lazyConnect: true })), { prefix: "app:", timeoutMs: 50 }), {
  perSecond: new TokenBucket({ capacity: 10 }),
  perMinute: { limiter: new SlidingWindow({ limit: 100, windowMs: 60_000 }), cost: 1 },
}, { onUnavailable: "local", replicas: 3 });
new RedisStore(nodeRedisClient(createClient()));
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
