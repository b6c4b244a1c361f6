// Runs the example Worker in the real workerd runtime (via miniflare) on
// loopback: limits hold across requests, per key, with the limiter's state
// persisted through Durable Object storage.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";

const root = fileURLToPath(new URL("..", import.meta.url));

/** examples/worker/`script` in workerd on loopback, with the package's files as its modules. */
const worker = (script, options) =>
  new Miniflare({
    modules: true,
    modulesRoot: root,
    scriptPath: fileURLToPath(new URL(`../examples/worker/${script}`, import.meta.url)),
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2025-01-01",
    host: "127.0.0.1",
    ...options,
  });

test("a Worker with a Durable Object enforces the limit across requests", async () => {
  const mf = worker("worker.js", {
    durableObjects: { LIMITER: "Limiter" },
  });
  try {
    const hit = async (q) => {
      const r = await mf.dispatchFetch(`http://127.0.0.1/?${q}`);
      return { status: r.status, body: await r.json(), retryAfter: r.headers.get("Retry-After") };
    };
    const alice = [];
    for (let i = 0; i < 5; i++) alice.push(await hit("key=alice"));
    assert.deepEqual(alice.map((r) => r.status), [200, 200, 200, 429, 429]);
    assert.deepEqual(alice.slice(0, 3).map((r) => r.body.remaining), [2, 1, 0]);
    assert.ok(Number(alice[3].retryAfter) > 0 && Number(alice[3].retryAfter) <= 60, alice[3].retryAfter);
    // Another key has its own bucket.
    assert.equal((await hit("key=bob")).status, 200);
    // Bad input becomes a clear error from the package, not a crash.
    const bad = await hit("key=carol&cost=-1");
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, "RangeError");
    // A cost above capacity can never be allowed.
    assert.equal((await hit("key=dave&cost=4")).status, 400);
  } finally {
    await mf.dispose();
  }
});

test("a Worker keeps an LLM token budget per user in a Durable Object (ratebound/budget)", async () => {
  const mf = worker("budget-worker.js", {
    durableObjects: { BUDGET: "UserBudget" },
  });
  try {
    const call = async (q) => {
      const r = await mf.dispatchFetch(`http://127.0.0.1/?${q}`);
      return { status: r.status, body: await r.json() };
    };
    // Estimates of 3000 settle at 2000 actual: 4 calls use 8000 tokens; the
    // 5th estimate of 3000 no longer fits, one of 2000 does.
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await call("user=ann&estimate=3000&used=2000"));
    assert.equal((await call("user=ann&estimate=3000")).status, 429);
    got.push(await call("user=ann&estimate=2000"));
    assert.deepEqual(got.map((r) => r.status), [200, 200, 200, 200, 200]);
    assert.deepEqual(got[0].body.charged, { requests: 1, tokens: 2000, cost: 20000 });
    // The 80% alert fired once, on the call that crossed 8000 tokens.
    assert.deepEqual(got.map((r) => r.body.alerts.length), [0, 0, 0, 1, 0]);
    const denied = await call("user=ann&estimate=1");
    assert.equal(denied.status, 429);
    assert.equal(denied.body.reason, "limit");
    assert.equal(denied.body.limitIndex, 0);
    // Usage survived in Durable Object storage across requests.
    const st = await call("user=ann&status=1");
    assert.equal(st.body.limits[0].used, 10_000);
    assert.equal(st.body.limits[1].used, 100_000);
    // Another user has their own budget; an impossible estimate is a clear error.
    assert.equal((await call("user=ben&estimate=500")).status, 200);
    const bad = await call("user=ben&estimate=20000");
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, "exceeds_limit");
  } finally {
    await mf.dispose();
  }
});

test("a Worker keeps a model quota per user in a Durable Object (ratebound/model-quota)", async () => {
  const mf = worker("model-quota-worker.js", {
    durableObjects: { QUOTA: "UserQuota" },
  });
  try {
    const call = async (q) => {
      const r = await mf.dispatchFetch(`http://127.0.0.1/?${q}`);
      return { status: r.status, retryAfter: r.headers.get("Retry-After"), body: await r.json() };
    };
    // A failed call gives its success slot back; two successes use the
    // minute's two; the next call is refused on the success count.
    const got = [await call("user=ann&ok=0"), await call("user=ann"), await call("user=ann&ok=0"), await call("user=ann")];
    assert.deepEqual(got.map((r) => r.status), [502, 200, 502, 200]);
    assert.deepEqual(got.map((r) => r.body.held), ["held", "held", "held", "held"]);
    const refused = await call("user=ann");
    assert.equal(refused.status, 429);
    assert.equal(refused.body.blocked, "success");
    assert.ok(refused.body.retryAfterMs > 0 && refused.body.retryAfterMs <= 60_000, `${refused.body.retryAfterMs}`);
    assert.equal(refused.retryAfter, String(Math.ceil(refused.body.retryAfterMs / 1000)));
    // Four admitted calls counted against the total of 5 survived in storage:
    // the fifth admission is the last.
    assert.equal(refused.body.total.remaining, 1);
    // Another user has their own quota.
    assert.equal((await call("user=ben")).status, 200);
  } finally {
    await mf.dispose();
  }
});

test("a Worker retries a flaky upstream with backoff, its Retry-After and a shared retry budget (ratebound/retry)", async () => {
  // The upstream fails a key's first `fail` calls with 503 (and the
  // Retry-After `after`, in seconds, when given), then answers 200.
  const calls = new Map();
  const mf = worker("retry-worker.js", {
    serviceBindings: {
      UPSTREAM: (request) => {
        const q = new URL(request.url).searchParams;
        const key = q.get("key");
        const n = (calls.get(key) ?? 0) + 1;
        calls.set(key, n);
        if (n <= Number(q.get("fail") ?? 0)) {
          const headers = q.has("after") ? { "Retry-After": q.get("after") } : {};
          return new Response("unavailable", { status: 503, headers });
        }
        return new Response(`ok ${key}`);
      },
    },
  });
  try {
    const call = async (q) => {
      const r = await mf.dispatchFetch(`http://127.0.0.1/?${q}`);
      return { status: r.status, body: await r.json() };
    };
    // The budget holds 10 tokens; a failure spends one, a success earns 0.1
    // back; retries only while more than 5 are left.
    // A wait of 1 s asked by the upstream is beyond the 200 ms cap: no retry (9 left).
    assert.deepEqual(await call("key=d&fail=1&after=1"), { status: 502, body: { error: "upstream answered 503", gaveUp: "hint_beyond_cap", attempts: 1 } });
    // The same as an HTTP date, a minute away (8 left).
    const date = encodeURIComponent(new Date(Date.now() + 60_000).toUTCString());
    assert.deepEqual(await call(`key=e&fail=1&after=${date}`), { status: 502, body: { error: "upstream answered 503", gaveUp: "hint_beyond_cap", attempts: 1 } });
    // Two failures, retried after the backoff's delays, then the answer (6.1 left).
    assert.deepEqual(await call("key=a&fail=2"), { status: 200, body: { body: "ok a", attempts: 3 } });
    // An upstream that keeps failing: one retry (5.1 left), then the budget
    // refuses the second (4.1), before the backoff's 5 retries are used.
    assert.deepEqual(await call("key=b&fail=99"), { status: 502, body: { error: "upstream answered 503", gaveUp: "retry_budget", attempts: 2 } });
    // The next request is not retried at all: the upstream gets one call, not six.
    assert.deepEqual(await call("key=c&fail=99"), { status: 502, body: { error: "upstream answered 503", gaveUp: "retry_budget", attempts: 1 } });
    assert.deepEqual(Object.fromEntries(calls), { d: 1, e: 1, a: 3, b: 2, c: 1 });
  } finally {
    await mf.dispose();
  }
});
