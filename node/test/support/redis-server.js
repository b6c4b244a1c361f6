// redis-server processes for the tests, each on a free loopback port, no
// persistence; stopped by the returned function.
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const ping = (port) => spawnSync("redis-cli", ["-p", String(port), "ping"], { encoding: "utf8" }).stdout.trim() === "PONG";

/** Start a redis-server; `extra` arguments are passed through (e.g. `--rename-command FUNCTION ""`). */
export async function startRedis(extra = [], port) {
  port ??= await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extra], { stdio: "ignore" });
  for (let i = 0; i < 100 && !ping(port); i++) await new Promise((r) => setTimeout(r, 50));
  if (!ping(port)) {
    child.kill("SIGKILL");
    throw new Error(`redis-server did not start on port ${port}`);
  }
  const cli = (...args) => spawnSync("redis-cli", ["-p", String(port), ...args], { encoding: "utf8" }).stdout.trim();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  };
  return { port, url: `redis://127.0.0.1:${port}`, cli, stop, child };
}
