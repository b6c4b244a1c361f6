// Each Node entry loads its own wasm module and no other (ratebound/redis
// also loads ratebound's: its limiters are RedisLimiter's configs and local
// fallback), as node/README.md says: a fresh process per entry records every
// .wasm file it reads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const dist = fileURLToPath(new URL("../dist", import.meta.url));
const probe = (entry) => `
const fs = require("node:fs");
const read = fs.readFileSync;
const wasm = [];
fs.readFileSync = (p, ...rest) => {
  const s = String(p);
  const file = s.startsWith("file:") ? require("node:url").fileURLToPath(s) : s;
  if (file.endsWith(".wasm")) wasm.push(require("node:path").relative(${JSON.stringify(dist)}, file));
  return read(p, ...rest);
};
require("node:module").syncBuiltinESMExports();
import(${JSON.stringify(entry)}).then(() => console.log(JSON.stringify(wasm)));
`;

for (const [entry, modules] of [
  ["ratebound", ["web/ratebound_wasm_bg.wasm"]],
  ["ratebound/retry", ["retry/ratebound_wasm_bg.wasm"]],
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

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

/** Every file of src/ that `file` (relative to src/) imports, directly or through others: static, relative imports. */
function importsOf(file, seen = new Set()) {
  const text = readFileSync(join(SRC, file), "utf8");
  for (const [, spec] of text.matchAll(/^\s*(?:import|export)\b[^"']*["'](\.{1,2}\/[^"']+)["']/gm)) {
    const path = relative(SRC, join(SRC, dirname(file), spec));
    if (!path.startsWith("..") && !seen.has(path)) {
      seen.add(path);
      importsOf(path, seen);
    }
  }
  return seen;
}

test("ratebound/model-quota's entries import the codecs they share with ratebound/budget, not the Budget wrapper", () => {
  for (const entry of ["model-quota-node.js", "model-quota-browser.js", "model-quota-workerd.js"]) {
    const files = importsOf(entry);
    assert.ok(files.has("budget-codec.js"), `${entry}: ${[...files]}`);
    assert.ok(!files.has("budget-api.js"), `${entry} imports budget-api.js: ${[...files]}`);
  }
  assert.ok(importsOf("budget-node.js").has("budget-api.js"), "the walk finds the wrapper where it is imported");
});
