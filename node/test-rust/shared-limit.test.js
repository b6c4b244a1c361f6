// One limit shared by a Rust process and this Node process through one
// real redis-server: together they admit exactly what the limit allows,
// and a state written by one is read and continued by the other. The Rust
// half is the std example `shared_limit` (built here with cargo); both run
// the same limits: `api` 300 an hour, `log` 400 an hour, all or nothing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Redis from "ioredis";
import { createClient } from "redis";
import { TokenBucket, SlidingLog } from "ratebound";
import { RedisStore, RedisLimiter, ioredisClient, nodeRedisClient } from "ratebound/redis";
import { startRedis } from "../test/support/redis-server.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const bin = `${root}target/debug/examples/shared_limit`;
const run = promisify(execFile);
let server;
const clients = [];

before(async () => {
  execFileSync("cargo", ["build", "-q", "-p", "ratebound-std", "--features", "redis", "--example", "shared_limit"], { cwd: root, stdio: "inherit" });
  server = await startRedis();
});
after(async () => {
  for (const c of clients) await c();
  await server?.stop();
});

const limits = () => ({
  api: new TokenBucket({ capacity: 300, refillPeriodMs: 3_600_000 }),
  log: new SlidingLog({ limit: 400, windowMs: 3_600_000, slots: 256 }),
});

async function viaIoredis() {
  const c = new Redis({ port: server.port, host: "127.0.0.1" });
  clients.push(() => c.disconnect());
  return new RedisLimiter(new RedisStore(ioredisClient(c)), limits());
}
async function viaNodeRedis() {
  const c = createClient({ socket: { port: server.port, host: "127.0.0.1" } });
  await c.connect();
  clients.push(() => c.destroy());
  return new RedisLimiter(new RedisStore(nodeRedisClient(c)), limits());
}

const rust = async (...args) => JSON.parse((await run(bin, [server.url, ...args])).stdout);
const remaining = (d) => d.decisions.map((m) => m.remaining);

test("a Rust process and a Node process hammering one limit together admit exactly the limit", async () => {
  const node = await viaIoredis();
  let next = 0;
  const nodeHalf = async () => {
    let ok = 0;
    while (next++ < 500) if (await node.allow("shared")) ok++;
    return ok;
  };
  const [rustHalf, ...nodeCounts] = await Promise.all([rust("shared", "check", "500", "16"), ...Array.from({ length: 16 }, nodeHalf)]);
  const nodeAdmitted = nodeCounts.reduce((a, b) => a + b, 0);
  assert.ok(rustHalf.admitted > 0 && nodeAdmitted > 0, `both took part: Rust ${rustHalf.admitted}, Node ${nodeAdmitted}`);
  assert.equal(rustHalf.admitted + nodeAdmitted, 300, `Rust ${rustHalf.admitted} + Node ${nodeAdmitted}`);
  assert.deepEqual(remaining(await node.peek("shared", { cost: 0 })), [0, 100], "the log counted exactly the admitted");
  assert.deepEqual((await rust("shared", "peek")).remaining, [0, 100], "Rust reads the same state");
  const libraries = server.cli("function", "list").split("\n").filter((l) => l.startsWith("ratebound_"));
  assert.equal(libraries.length, 1, `one function library for both languages: ${libraries}`);
});

test("a state written by Rust is read and continued by Node, and back (both Node clients)", async () => {
  for (const [name, make] of [["ioredis", viaIoredis], ["node-redis", viaNodeRedis]]) {
    const key = `continued ${name}`;
    const node = await make();
    assert.deepEqual(await rust(key, "check", "3", "1"), { admitted: 3, remaining: [297, 397] });
    assert.deepEqual(remaining(await node.peek(key, { cost: 0 })), [297, 397], `${name} reads Rust's state`);
    const d = await node.check(key, { cost: 2 });
    assert.deepEqual([d.allowed, ...remaining(d)], [true, 295, 395]);
    assert.deepEqual((await rust(key, "peek")).remaining, [295, 395], `Rust reads ${name}'s state`);
    assert.deepEqual(await rust(key, "check", "1", "1"), { admitted: 1, remaining: [294, 394] });
  }
});
