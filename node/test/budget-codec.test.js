// `ratebound/budget` and `ratebound/model-quota` pass config, state and
// results to their wasm modules as flat numbers (no JSON codec in the
// modules): what a malformed state or an invalid config does there, and that
// every state survives JSON.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Budget, BudgetError } from "../src/budget-node.js";
import { ModelQuota } from "../src/model-quota-node.js";

const T = 1_795_392_000_000;
const config = { limits: [{ dimension: "tokens", window: "minute", max: 1000 }, { dimension: "cost", window: "month", max: 5_000_000 }], alertThresholds: [0.5], holdSlots: 4 };

function used() {
  const b = new Budget(config);
  const r = b.reserve({ tokens: 300, cost: 1000, now: T });
  b.reserve({ tokens: 100, now: T + 1 });
  b.settle(r.id, { tokens: 250, cost: 900, now: T + 2 });
  return b;
}

test("a Budget state survives JSON and restores every window and hold", () => {
  const b = used();
  const copy = new Budget(config).importState(JSON.parse(JSON.stringify(b.exportState())));
  assert.deepEqual(copy.status({ now: T + 3 }), b.status({ now: T + 3 }));
  assert.deepEqual(copy.exportState(), b.exportState());
  // The restored hold settles as the original would.
  const id = b.exportState().state.holds[0].id;
  assert.deepEqual(copy.settle(id, { tokens: 50, now: T + 4 }), b.settle(id, { tokens: 50, now: T + 4 }));
});

test("a malformed Budget state is refused whole and changes nothing", () => {
  const b = used();
  const before = b.exportState();
  const good = before.state;
  const bad = [
    null,
    {},
    { ...good, windows: good.windows.slice(1) }, // not one window per possible limit
    { ...good, last: -1 },
    { ...good, next_id: 1.5 },
    { ...good, next_id: 2 ** 53 },
    { ...good, throttle_until: "0" },
    { ...good, windows: good.windows.map((w, i) => (i === 0 ? { ...w, fired: 256 } : w)) },
    { ...good, holds: [{ ...good.holds[0], lapsed: "no" }] },
    { ...good, holds: [{ ...good.holds[0], usage: null }] },
    { ...good, holds: Array.from({ length: 5 }, (_, i) => ({ ...good.holds[0], id: i })) }, // 4 slots
  ];
  for (const state of bad) {
    assert.throws(() => b.importState({ v: 1, state }), TypeError, JSON.stringify(state)?.slice(0, 80));
  }
  assert.throws(() => b.importState({ v: 2, state: good }), TypeError);
  assert.deepEqual(b.exportState(), before);
  // As in core's serde form, a usage's missing amount is 0.
  assert.equal(good.holds[0].usage.cost, 0);
  const { cost, ...noCost } = good.holds[0].usage;
  b.importState({ v: 1, state: { ...good, holds: [{ ...good.holds[0], usage: noCost }] } });
  assert.deepEqual(b.exportState(), before);
});

test("config errors found by core carry its message, field and numbers", () => {
  assert.throws(() => new Budget({ limits: [{ dimension: "tokens", window: "day", max: 10 }], alertThresholds: [0.9, 0.5] }), (e) => e instanceof RangeError && /invalid Budget config: invalid config: `alert_thresholds_bp`/.test(e.message));
  assert.throws(() => new ModelQuota({ successMax: 2 ** 31, periodMs: 1000 }), (e) => e instanceof RangeError && e.message === "invalid ModelQuota config: invalid config: `success_max` is too large (at most 2147483647)");
  const many = Array.from({ length: 13 }, (_, i) => ({ dimension: "tokens", window: (i + 1) * 60_000, max: 10 }));
  assert.throws(() => new Budget({ limits: many }), (e) => e instanceof RangeError && /`limits \/ alert_thresholds_bp` has more entries than fit \(at most 12 limits and 4 thresholds\)/.test(e.message));
  assert.throws(() => new Budget({ limits: many.slice(0, 1), alertThresholds: [0.1, 0.2, 0.3, 0.4, 0.5] }), /at most 12 limits and 4 thresholds/);
  const b = used();
  const before = b.exportState();
  assert.throws(() => b.reconfigure({ ...config, utcOffsetMinutes: 60 }), (e) => e instanceof RangeError && /^Budget config change refused: invalid config: `utc_offset_secs`/.test(e.message));
  assert.deepEqual(b.exportState(), before);
});

test("a ModelQuota state survives JSON; a malformed one is refused whole", () => {
  const q = new ModelQuota({ totalMax: 5, successMax: 3, periodMs: 60_000 });
  const a = q.admit({ now: T });
  q.admit({ now: T + 1 });
  q.settle(a.hold, { success: true, now: T + 2 });
  const saved = JSON.parse(JSON.stringify(q.exportState()));
  const copy = new ModelQuota(q.config).importState(saved);
  assert.deepEqual(copy.peek({ now: T + 3 }), q.peek({ now: T + 3 }));
  const good = saved.state;
  for (const state of [null, { ...good, total: null }, { ...good, holds: [{ id: -1, expires: 0 }] }, { ...good, success: { ...good.success, log: [{ at: 1 }] } }, { ...good, holds: Array.from({ length: 65 }, (_, i) => ({ id: i, expires: T })) }]) {
    assert.throws(() => copy.importState({ v: 1, state }), TypeError);
  }
  assert.deepEqual(copy.exportState(), q.exportState());
});

test("ratebound/redis throws ratebound/budget's BudgetError class (their wasm modules are apart)", async () => {
  const redis = await import("../src/redis.js");
  assert.equal(redis.BudgetError, BudgetError);
});
