// States exported by an earlier build of `ratebound/budget` — commit
// 863e5d4, whose wasm module wrote core's serde JSON itself and which also
// held `ModelQuota`, now `ratebound/model-quota`'s — import into this one, which then answers every later call as that build answered
// (test-data/saved-states-863e5d4.json: the earlier build's exports, then
// its answers; written by test-data/save-states.mjs run on that build).
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { Budget } from "../src/budget-node.js";
import { ModelQuota } from "../src/model-quota-node.js";

const saved = JSON.parse(fs.readFileSync(new URL("../test-data/saved-states-863e5d4.json", import.meta.url), "utf8"));

for (const [name, Class] of [["budget", Budget], ["modelQuota", ModelQuota]]) {
  test(`a ${Class.name} state the earlier build exported imports and goes on as that build did`, () => {
    const { config, state, after } = saved[name];
    const restored = new Class(config).importState(state);
    assert.ok(after.length >= 6);
    for (const { op, args, result } of after) {
      assert.deepEqual(restored[op](...structuredClone(args)), result, `${op}(${JSON.stringify(args)})`);
    }
  });
}
