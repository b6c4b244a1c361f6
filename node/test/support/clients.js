// The three Redis clients ratebound/redis adapts, each connected to a
// redis-server's port (@upstash/redis over HTTP, through the local stand-in
// of its REST API); `closers` collects what to close after the tests.
import Redis from "ioredis";
import { createClient } from "redis";
import { Redis as UpstashRedis } from "@upstash/redis";
import { ioredisClient, nodeRedisClient, upstashClient } from "ratebound/redis";
import { startUpstashStandin } from "./upstash-standin.js";

export function makeClients(closers) {
  return {
    ioredis: async (port, opts = {}) => {
      const c = new Redis({ port, host: "127.0.0.1", ...opts });
      closers.push(() => c.disconnect());
      c.on("error", () => {}); // reconnection errors while a test has stopped the server
      if (c.status !== "ready") await new Promise((r) => c.once("ready", r));
      return ioredisClient(c);
    },
    "node-redis": async (port) => {
      const c = createClient({ socket: { port, host: "127.0.0.1", reconnectStrategy: () => 50 } });
      c.on("error", () => {}); // reconnection errors while a test has stopped the server
      await c.connect();
      closers.push(() => c.destroy());
      return nodeRedisClient(c);
    },
    "@upstash/redis": async (port) => {
      const standin = await startUpstashStandin(port);
      closers.push(standin.stop);
      return upstashClient(new UpstashRedis({ url: standin.url, token: standin.token, retry: false, enableTelemetry: false }));
    },
  };
}
