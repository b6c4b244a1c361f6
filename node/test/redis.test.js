// ratebound/redis against real redis-servers on free loopback ports,
// through ioredis, node-redis and @upstash/redis (over HTTP to a local
// stand-in of Upstash's REST API in front of the redis-server: Upstash
// itself is not reachable from here): the core fixtures replay exactly, the
// decisions equal the in-memory limiters', the code is (re)loaded as
// Functions or scripts, and the failure policies, deadlines and bad input
// behave as documented.
import { test } from "node:test";
import assert from "node:assert/strict";
import Redis from "ioredis";
import { createClient } from "redis";
import { TokenBucket, SlidingLog, SlidingWindow } from "ratebound";
import { Redis as UpstashRedis } from "@upstash/redis";
import { RedisStore, RedisLimiter, RedisUnavailableError, ioredisClient, LIBRARY_NAME } from "ratebound/redis";
import { startRedis } from "./support/redis-server.js";
import { redisForTests } from "./support/server.js";
import { replayLimiters, replayPolicies } from "./support/replays.js";

const { server, CLIENTS } = await redisForTests();

for (const [client, connect] of Object.entries(CLIENTS)) {
  test(`${client}: every core trace (GCRA, sliding log, sliding counter, policy sets, configs changed live) replays exactly through Redis`, async () => {
    const store = new RedisStore(await connect(server.port), { time: "caller", withState: true });
    assert.equal(await replayLimiters(store, client), 1240); // 480 + 440 + 320: every step
    assert.equal(await replayPolicies(store, client), 578); // 270 + 309, but for the one refused reconfiguration
  });
}

test("decisions equal the in-memory limiters' over random traffic (Redis TIME vs a local twin at the reply's now)", async () => {
  const store = new RedisStore(await CLIENTS.ioredis(server.port), { withState: true });
  let seed = 7;
  const rnd = (n) => {
    seed = (seed * 48271) % 2147483647; // Park–Miller: exact in doubles
    return seed % n;
  };
  const makers = [
    () => new TokenBucket({ capacity: 7, refillAmount: 3, refillPeriodMs: 50 }),
    () => new SlidingLog({ limit: 9, windowMs: 80, slots: 8 }),
    () => new SlidingWindow({ limit: 11, windowMs: 60 }),
  ];
  for (const [k, make] of makers.entries()) {
    const shared = new RedisLimiter(store, { x: make() });
    const twin = make();
    for (let i = 0; i < 150; i++) {
      const cost = rnd(4);
      const op = rnd(5) === 0 ? "peek" : "check";
      const d = await shared[op](`differential ${k}`, { cost });
      // The twin decides at the instant Redis decided (its TIME).
      const m = twin[op]({ cost, now: d.exact.now / 1000 });
      assert.deepEqual({ allowed: d.allowed, remaining: d.remaining, limit: d.limit, resetAt: d.resetAt, retryAfterMs: d.retryAfterMs }, m, `${k} step ${i}`);
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, rnd(20)));
    }
  }
});

test("keys are the Rust backend's: prefix{tag}:name with the tag escaped; binary tags; names and prefixes checked", async () => {
  const store = new RedisStore(await CLIENTS.ioredis(server.port), { prefix: "layout:" });
  const l = new RedisLimiter(store, { api: new TokenBucket({ capacity: 5, refillPeriodMs: 60_000 }) });
  await l.check("a{b}%c");
  await l.check(new Uint8Array([0, 255, 123]));
  await l.check("");
  const keys = server.cli("--no-raw", "keys", "layout:*").split("\n").map((s) => s.replace(/^\d+\) /, "")).sort();
  assert.deepEqual(keys, ['"layout:{%}:api"', '"layout:{\\x00\\xff%7B}:api"', '"layout:{a%7Bb%7D%25c}:api"']);
  assert.throws(() => new RedisStore(ioredisClient(new Redis({ lazyConnect: true })), { prefix: "a{" }), RangeError);
  assert.throws(() => new RedisLimiter(store, { "a}": new TokenBucket({ capacity: 1 }) }), RangeError);
  assert.throws(() => new RedisLimiter(store, { ["x".repeat(65)]: new TokenBucket({ capacity: 1 }) }), RangeError);
  assert.throws(() => new RedisLimiter(store, new TokenBucket({ capacity: 1 })), TypeError);
  assert.throws(() => new RedisLimiter(store, {}), TypeError);
  await assert.rejects(l.check("\ud800"), TypeError); // a lone surrogate would share a key with U+FFFD
  await assert.rejects(l.check(42), TypeError);
  await assert.rejects(l.check("x".repeat(1025)), RangeError);
  await assert.rejects(l.check("k", { cost: 6 }), (e) => e instanceof RangeError && e.member === 0 && /capacity 5/.test(e.message));
  await assert.rejects(l.check("k", { cost: 1.5 }), RangeError);
  await assert.rejects(l.check("k", { costs: 1 }), TypeError);
  await assert.rejects(l.check("k", { now: Date.now() }), /time: "caller"/);
  assert.equal(server.cli("exists", "layout:{k}:api"), "0", "nothing written by refused input");
});

test("many concurrent calls over the three clients admit exactly the limit", async () => {
  const stores = await Promise.all(Object.values(CLIENTS).map(async (connect) => new RedisStore(await connect(server.port))));
  const limiters = stores.map((s) => new RedisLimiter(s, { hour: new TokenBucket({ capacity: 250, refillPeriodMs: 3_600_000 }), log: new SlidingLog({ limit: 300, windowMs: 3_600_000, slots: 256 }) }));
  const calls = [];
  for (let i = 0; i < 800; i++) calls.push(limiters[i % 3].allow("crowd"));
  const admitted = (await Promise.all(calls)).filter(Boolean).length;
  assert.equal(admitted, 250);
  const d = await limiters[0].peek("crowd", { cost: 0 });
  assert.equal(d.decisions[0].remaining, 0);
  assert.equal(d.decisions[1].remaining, 50, "the log counted exactly the 250 admitted");
});

test("the code: one library shared with the Rust backend, loaded again after FUNCTION FLUSH; scripts where FUNCTION is refused, EVAL after SCRIPT FLUSH", async () => {
  for (const [client, connect] of Object.entries(CLIENTS)) {
    const store = new RedisStore(await connect(server.port));
    const l = new RedisLimiter(store, { x: new TokenBucket({ capacity: 3, refillPeriodMs: 60_000 }) });
    await store.ready();
    assert.equal(store.invocation, "functions");
    assert.match(server.cli("function", "list"), new RegExp(LIBRARY_NAME));
    assert.equal(server.cli("function", "flush"), "OK");
    assert.equal((await l.check(`${client} flush`)).remaining, 2, `${client}: decided after the library was flushed`);
    assert.match(server.cli("function", "list"), new RegExp(LIBRARY_NAME), "loaded again");
  }
  const bare = await startRedis(["--rename-command", "FUNCTION", ""]);
  try {
    for (const [client, connect] of Object.entries(CLIENTS)) {
      const store = new RedisStore(await connect(bare.port));
      const l = new RedisLimiter(store, { x: new TokenBucket({ capacity: 3, refillPeriodMs: 60_000 }), y: new SlidingWindow({ limit: 9, windowMs: 1000 }) });
      await store.ready();
      assert.equal(store.invocation, "scripts", client);
      assert.equal((await l.check(client)).remaining, 2);
      assert.equal(bare.cli("script", "flush"), "OK");
      assert.equal((await l.check(client)).remaining, 1, `${client}: EVAL after NOSCRIPT`);
      assert.equal((await l.check(client, { cost: 1 })).decisions[1].remaining, 6);
    }
  } finally {
    await bare.stop();
  }
});

test("an answer about the call (a key of another type) is thrown, never failed over, by every client; a read-only replica is unavailable", async () => {
  server.cli("rpush", "rb:{wrongtype}:x", "a");
  const replica = await startRedis(["--replicaof", "127.0.0.1", String(server.port)]);
  try {
    for (const [client, connect] of Object.entries(CLIENTS)) {
      const l = new RedisLimiter(new RedisStore(await connect(server.port)), { x: new TokenBucket({ capacity: 3 }) }, { onUnavailable: "open" });
      await assert.rejects(l.check("wrongtype"), (e) => !(e instanceof RedisUnavailableError) && /WRONGTYPE|wrong kind/i.test(e.message), client);
      assert.equal(l.unavailable, false, client);
      // A replica refuses writes (READONLY): "not now", as in the Rust backend.
      const onReplica = new RedisLimiter(new RedisStore(await connect(replica.port)), { x: new TokenBucket({ capacity: 3 }) }, { onUnavailable: "open" });
      const d = await onReplica.check("k");
      assert.deepEqual([d.allowed, d.source], [true, "failOpen"], client);
      const closed = new RedisLimiter(new RedisStore(await connect(replica.port)), { x: new TokenBucket({ capacity: 3 }) });
      await assert.rejects(closed.check("k"), (e) => e instanceof RedisUnavailableError && e.reason === "server" && /READONLY/.test(e.message), client);
    }
  } finally {
    await replica.stop();
  }
});

test("a custom client (a class using `this`): its replies are classified as the adapters' are; LATE is unavailable and charged nothing", async () => {
  class Commander {
    constructor(inner) {
      this.inner = inner;
      this.late = false;
    }
    async send(argv) {
      if (this.late && argv[0] === "FCALL") throw Object.assign(new Error("LATE the call reached the server after its deadline"), { reply: true });
      return this.inner.send(argv);
    }
    replyCode(err) {
      return err?.reply ? err.message.split(" ")[0] : this.inner.replyCode(err);
    }
  }
  const commander = new Commander(await CLIENTS.ioredis(server.port));
  const l = new RedisLimiter(new RedisStore(commander), { x: new TokenBucket({ capacity: 3, refillPeriodMs: 60_000 }) }, { onUnavailable: "open", retryAfterMs: 1 });
  assert.equal((await l.check("custom")).remaining, 2);
  commander.late = true;
  const d = await l.check("custom");
  assert.deepEqual([d.allowed, d.source], [true, "failOpen"]);
  commander.late = false;
  await new Promise((r) => setTimeout(r, 5));
  assert.equal((await l.peek("custom", { cost: 0 })).remaining, 2, "nothing was charged by the late call");
});

test("failure policies: closed throws, open admits uncounted, local decides on this replica's share; Redis is skipped for retryAfterMs, then probed, and shared again", async () => {
  const own = await startRedis();
  const bucket = () => new TokenBucket({ capacity: 10, refillPeriodMs: 3_600_000 });
  const store = new RedisStore(await CLIENTS.ioredis(own.port, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 20 }), { timeoutMs: 200 });
  const closed = new RedisLimiter(store, { x: bucket() }, { retryAfterMs: 300 });
  const open = new RedisLimiter(store, { x: bucket() }, { onUnavailable: "open", retryAfterMs: 300 });
  const openSet = new RedisLimiter(store, { wide: bucket(), narrow: new TokenBucket({ capacity: 5, refillPeriodMs: 3_600_000 }) }, { onUnavailable: "open", retryAfterMs: 300 });
  const local = new RedisLimiter(store, { x: bucket(), y: new SlidingWindow({ limit: 40, windowMs: 3_600_000 }) }, { onUnavailable: "local", replicas: 4, retryAfterMs: 300 });
  assert.equal((await closed.check("k")).source, "redis");
  await own.stop();
  await assert.rejects(closed.check("k"), (e) => e instanceof RedisUnavailableError && e.code === "unavailable");
  assert.equal(closed.unavailable, true);
  await assert.rejects(closed.check("k"), (e) => e instanceof RedisUnavailableError && e.reason === "skipped");
  // After the skip window, one call probes Redis while the others keep skipping.
  await new Promise((r) => setTimeout(r, 350));
  const reasons = (await Promise.allSettled(Array.from({ length: 5 }, () => closed.check("k")))).map((r) => r.reason?.reason);
  assert.deepEqual(reasons.filter((r) => r !== "skipped").length, 1, `one probe: ${reasons}`);
  assert.equal(reasons.filter((r) => r === "skipped").length, 4);
  const o = await open.check("k", { cost: 4 });
  assert.deepEqual([o.allowed, o.source, o.remaining, o.limit, o.retryAfterMs], [true, "failOpen", 6, 10, 0]);
  // A set failing open binds the member with least left, as a counted decision does (and as the Rust backend answers).
  const os = await openSet.check("k", { cost: 3 });
  assert.deepEqual([os.allowed, os.binding, os.remaining, os.limit], [true, "narrow", 2, 5]);
  assert.deepEqual(os.decisions.map((d) => [d.remaining, d.limit]), [[7, 10], [2, 5]]);
  // Local: a quarter of each limit (10 → 2, 40 → 10), all or nothing, then refused.
  const seen = [];
  for (let i = 0; i < 4; i++) {
    const d = await local.check("k");
    seen.push([d.allowed, d.source, d.decisions[0].limit, d.decisions[1].limit]);
  }
  assert.deepEqual(seen, [[true, "local", 2, 10], [true, "local", 2, 10], [false, "local", 2, 10], [false, "local", 2, 10]]);
  const big = await local.check("k", { cost: 3 }); // fits the whole limit, never the share
  // Core's refusal is the call's decision, until Redis may be back; y's row is what its own share says (8 left, 3 asked).
  assert.deepEqual([big.allowed, big.binding, big.remaining, big.limit, big.retryAfterMs], [false, "x", 0, 2, 300]);
  assert.deepEqual(big.decisions.map((d) => [d.allowed, d.remaining, d.limit]), [[false, 0, 2], [true, 5, 10]]);
  // Back: after the skip window one call probes, and the limits are shared again.
  const back = await startRedis([], own.port);
  try {
    await new Promise((r) => setTimeout(r, 400));
    let d;
    for (let i = 0; i < 50 && (d = await closed.check("k").catch((e) => e)) instanceof Error; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(d.source, "redis", "shared again once Redis is back (the library loaded into the new server)");
    assert.equal(d.remaining, 9, "a new server: a fresh count");
    assert.equal(closed.unavailable, false);
  } finally {
    await back.stop();
  }
});

test("deadlines: a check Redis starts after the caller gave up (timeout) changes nothing", async () => {
  for (const [client, connect] of Object.entries(CLIENTS)) {
    const store = new RedisStore(await connect(server.port), { timeoutMs: 150 });
    const l = new RedisLimiter(store, { x: new TokenBucket({ capacity: 5, refillPeriodMs: 3_600_000 }) });
    assert.equal((await l.check(`${client} paused`)).remaining, 4);
    // Redis stalls for 600 ms: the call times out, then reaches the script after its deadline.
    assert.equal(server.cli("client", "pause", "600", "ALL"), "OK");
    const started = Date.now();
    await assert.rejects(l.check(`${client} paused`, { cost: 3 }), (e) => e instanceof RedisUnavailableError && e.reason === "timeout");
    assert.ok(Date.now() - started < 500, "answered at the timeout, not when Redis came back");
    await new Promise((r) => setTimeout(r, 700));
    const after = await new RedisLimiter(new RedisStore(await connect(server.port)), { x: new TokenBucket({ capacity: 5, refillPeriodMs: 3_600_000 }) }).peek(`${client} paused`, { cost: 0 });
    assert.equal(after.remaining, 4, `${client}: the late call charged nothing`);
  }
});

test("@upstash/redis: a key that is not UTF-8 is refused as the caller's error (never failed over); a non-JSON body is unavailable", async () => {
  const l = new RedisLimiter(new RedisStore(await CLIENTS["@upstash/redis"](server.port)), { x: new TokenBucket({ capacity: 3 }) }, { onUnavailable: "open" });
  await assert.rejects(l.check(new Uint8Array([0xff, 0xfe])), (e) => e instanceof TypeError && /UTF-8/.test(e.message));
  assert.equal(l.unavailable, false);
  assert.equal((await l.check("fine")).source, "redis");
  // A proxy's HTML error page in place of Upstash's JSON: not an answer from Redis.
  const { createServer } = await import("node:http");
  const proxy = createServer((req, res) => {
    res.writeHead(502, { "content-type": "text/html" });
    res.end("<html>502 Bad Gateway</html>");
  });
  await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
  try {
    const { Redis: Upstash } = await import("@upstash/redis");
    const { upstashClient } = await import("ratebound/redis");
    const behind = new RedisLimiter(new RedisStore(upstashClient(new Upstash({ url: `http://127.0.0.1:${proxy.address().port}`, token: "t", retry: false, enableTelemetry: false }))), { x: new TokenBucket({ capacity: 3 }) }, { onUnavailable: "open" });
    const d = await behind.check("k");
    assert.deepEqual([d.allowed, d.source], [true, "failOpen"]);
  } finally {
    await new Promise((r) => proxy.close(r));
  }
});
