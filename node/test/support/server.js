// One redis-server for a test file and the three clients connected to it,
// all stopped after the file's tests.
import { after } from "node:test";
import { startRedis } from "./redis-server.js";
import { makeClients } from "./clients.js";

export async function redisForTests() {
  const server = await startRedis();
  const closers = [];
  after(async () => {
    for (const c of closers) await c();
    await server.stop();
  });
  return { server, CLIENTS: makeClients(closers) };
}
