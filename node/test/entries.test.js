// Each Node entry loads its own wasm module and no other (ratebound/redis
// also loads ratebound's: its limiters are RedisLimiter's configs and local
// fallback), as node/README.md says: a fresh process per entry records every
// .wasm file it reads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";

const probe = (entry) => `
const fs = require("node:fs");
const read = fs.readFileSync;
const wasm = [];
fs.readFileSync = (p, ...rest) => {
  const s = String(p);
  if (s.endsWith(".wasm")) wasm.push(s.split("/node/dist/")[1]);
  return read(p, ...rest);
};
require("node:module").syncBuiltinESMExports();
import(${JSON.stringify(entry)}).then(() => console.log(JSON.stringify(wasm)));
`;

for (const [entry, modules] of [
  ["ratebound", ["web/ratebound_wasm_bg.wasm"]],
  ["ratebound/budget", ["budget/ratebound_wasm_bg.wasm"]],
  ["ratebound/model-quota", ["model-quota/ratebound_wasm_bg.wasm"]],
  ["ratebound/redis", ["web/ratebound_wasm_bg.wasm", "redis/ratebound_wasm_bg.wasm"].sort()],
]) {
  test(`${entry} loads ${modules.join(" and ")}`, () => {
    const r = spawnSync(process.execPath, ["-e", probe(entry)], { cwd: new URL(".", import.meta.url), encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout).sort(), modules);
  });
}
