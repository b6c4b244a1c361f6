// The browser/bundler entries, as a browser runs them: the package's
// "browser" condition names them; each fetches its own .wasm from the
// package (here `fetch` serves the package's files, as a web server would,
// with the wasm MIME type) and then decides like the Node entries.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
const root = fileURLToPath(new URL("..", import.meta.url));
const fetched = [];
globalThis.fetch = async (url) => {
  const u = new URL(url);
  assert.equal(u.protocol, "file:", `fetched ${u}`);
  fetched.push(relative(root, fileURLToPath(u)));
  return new Response(readFileSync(u), { headers: { "content-type": "application/wasm" } });
};

const T = 1_790_000_000_000;

test("ratebound's browser entry fetches dist/web's module and decides", async () => {
  assert.equal(pkg.exports["."].browser, "./src/browser.js");
  const { TokenBucket, KeyedLimiter } = await import("../src/browser.js");
  const b = new TokenBucket({ capacity: 1, refillPeriodMs: 1000 });
  assert.equal(b.check({ now: T }).allowed, true);
  assert.deepEqual(b.check({ now: T }), { allowed: false, remaining: 0, limit: 1, resetAt: T + 1000, retryAfterMs: 1000 });
  const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 1 }), { maxKeys: 1 });
  assert.equal(keyed.allow("a", { now: T }), true);
  assert.deepEqual(fetched.splice(0), ["dist/web/ratebound_wasm_bg.wasm"]);
});

test("ratebound/retry's browser entry fetches dist/retry's module and decides", async () => {
  assert.equal(pkg.exports["./retry"].browser, "./src/retry-browser.js");
  const { Backoff, RetryBudget } = await import("../src/retry-browser.js");
  const seq = new Backoff({ initialMs: 100, capMs: 1000, jitter: "none", maxRetries: 2 }).start({ now: T });
  assert.deepEqual(seq.next({ now: T }), { retry: true, delayMs: 100, retryAt: T + 100, attempt: 1 });
  const budget = new RetryBudget({ maxTokens: 2, tokenRatio: 1 });
  assert.deepEqual(seq.next({ now: T, budget }), { retry: false, reason: "retry_budget", attempt: 1 });
  assert.deepEqual(fetched.splice(0), ["dist/retry/ratebound_wasm_bg.wasm"]);
});

test("ratebound/budget's browser entry fetches dist/budget's module and decides", async () => {
  assert.equal(pkg.exports["./budget"].browser, "./src/budget-browser.js");
  const { Budget, BudgetError } = await import("../src/budget-browser.js");
  const b = new Budget({ limits: [{ dimension: "tokens", window: "minute", max: 100 }] });
  const r = b.reserve({ tokens: 60, now: T });
  assert.equal(r.allowed, true);
  assert.equal(b.trySpend({ tokens: 50, now: T }).allowed, false);
  assert.throws(() => b.settle(r.id + 1, { tokens: 1, now: T }), (e) => e instanceof BudgetError && e.code === "unknown_reservation");
  assert.deepEqual(fetched.splice(0), ["dist/budget/ratebound_wasm_bg.wasm"]);
});

test("ratebound/model-quota's browser entry fetches dist/model-quota's module and decides", async () => {
  assert.equal(pkg.exports["./model-quota"].browser, "./src/model-quota-browser.js");
  const { ModelQuota } = await import("../src/model-quota-browser.js");
  const q = new ModelQuota({ successMax: 1, periodMs: 60_000 });
  const d = q.admit({ now: T });
  assert.equal(d.allowed, true);
  assert.equal(q.admit({ now: T }).blocked, "in_flight"); // the one success slot is held
  assert.equal(q.settle(d.hold, { success: false, now: T }), "held");
  assert.equal(q.admit({ now: T }).allowed, true, "a failure gave the slot back");
  assert.deepEqual(fetched.splice(0), ["dist/model-quota/ratebound_wasm_bg.wasm"]);
});
