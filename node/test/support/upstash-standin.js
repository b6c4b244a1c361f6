// A local stand-in for Upstash's Redis REST API, served on loopback in
// front of a real redis-server: `POST /` with a command as a JSON array
// (`Authorization: Bearer <token>`) answers `{ result }` or, for a server
// error, HTTP 400 `{ error }`; `POST /pipeline` takes an array of commands
// and answers an array of those (the client's auto-pipelining uses it);
// with `Upstash-Encoding: base64` every string in a result is base64 (as
// @upstash/redis asks by default).
import { createServer } from "node:http";
import Redis from "ioredis";

const encode = (v, b64) => {
  if (Array.isArray(v)) return v.map((x) => encode(x, b64));
  if (typeof v === "string") return b64 ? Buffer.from(v, "utf8").toString("base64") : v;
  return v;
};

export async function startUpstashStandin(redisPort, token = "test-token") {
  const redis = new Redis({ port: redisPort, host: "127.0.0.1" });
  redis.on("error", () => {}); // the server stopped by a test: each command answers its error
  const server = createServer(async (req, res) => {
    let body = "";
    for await (const chunk of req) body += chunk;
    const reply = (status, obj) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(obj));
    };
    if (req.method !== "POST" || (req.url !== "/" && req.url !== "/pipeline")) return reply(404, { error: `not served by the stand-in: ${req.method} ${req.url}` });
    if (req.headers.authorization !== `Bearer ${token}`) return reply(401, { error: "Unauthorized" });
    let body2;
    try {
      body2 = JSON.parse(body);
    } catch {
      return reply(400, { error: "ERR invalid JSON" });
    }
    const b64 = req.headers["upstash-encoding"] === "base64";
    const run = async (argv) => {
      if (!Array.isArray(argv) || argv.length === 0) return { error: "ERR not a command" };
      try {
        return { result: encode(await redis.call(String(argv[0]), ...argv.slice(1).map(String)), b64) };
      } catch (e) {
        return { error: e.message };
      }
    };
    if (req.url === "/pipeline") {
      // Commands in order, one answer each (errors in place), HTTP 200.
      if (!Array.isArray(body2)) return reply(400, { error: "ERR a pipeline is an array of commands" });
      const out = [];
      for (const argv of body2) out.push(await run(argv));
      return reply(200, out);
    }
    const one = await run(body2);
    reply(one.error === undefined ? 200 : 400, one);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    token,
    stop: async () => {
      await new Promise((r) => server.close(r));
      redis.disconnect();
    },
  };
}
