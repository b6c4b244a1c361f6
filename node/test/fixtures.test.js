// Replays the core trace fixtures through the wasm build: every decision and
// every state must equal what ratebound-core recorded, field by field.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { raw } from "../src/node.js";
import { raw as retries } from "../src/retry-node.js";

const load = (kind) => JSON.parse(readFileSync(new URL(`../../fixtures/traces/${kind}.json`, import.meta.url), "utf8"));

const { memory } = raw;

/** A wasm limiter's last decision: its status, then the numbers it keeps at `outPtr()` (as api.js reads them). */
function decisionOf(inner, status) {
  if (status < 0) return { error: "insufficient_capacity" };
  const [remaining, limit, reset_at, retry_at] = new Float64Array(memory.buffer, inner.outPtr(), 4);
  return { allowed: status === 1, limit, remaining, reset_at, retry_at };
}

// Steps replayed per fixture file, checked against the files at the end.
const replayed = new Map();
const counted = (kind, n) => {
  replayed.set(kind, (replayed.get(kind) ?? 0) + n);
  return n;
};

const sorted = (o) => JSON.parse(JSON.stringify(o, Object.keys(o).sort()));

function replay(kind, make, stateOf, apply) {
  const file = load(kind);
  assert.equal(file.machine, kind);
  let steps = 0;
  for (const trace of file.traces) {
    const inner = make(trace.config);
    trace.steps.forEach((step, i) => {
      const got = apply(inner, step);
      assert.deepEqual(got, step.expect, `${kind}/${trace.name} step ${i}: decision`);
      assert.deepEqual(stateOf(inner), step.state, `${kind}/${trace.name} step ${i}: state`);
      steps++;
    });
  }
  return counted(kind, steps);
}

const checkOrPeek = (inner, step) => {
  const status = step.op === "check" ? inner.check(step.now, step.cost) : inner.peek(step.now, step.cost);
  const d = decisionOf(inner, status);
  return d.error ? d : { ok: d };
};

test("gcra traces replay exactly", () => {
  const n = replay(
    "gcra",
    (c) => new raw.Gcra(c.capacity, c.amount, c.period_us),
    (g) => { const [tat, rem] = g.exportState(); return { rem, tat }; },
    (g, step) => {
      switch (step.op) {
        case "check":
        case "peek":
          return checkOrPeek(g, step);
        case "at_most": {
          const status = g.atMost(step.now, step.cost); // core's own `allowed`
          return { decision: decisionOf(g, status), taken: g.taken() };
        }
        case "refund":
          return decisionOf(g, g.refund(step.now, step.cost));
        default:
          throw new Error(`unknown op ${step.op}`);
      }
    },
  );
  assert.ok(n >= 400, `${n} steps`);
});

test("sliding log traces replay exactly", () => {
  const n = replay(
    "sliding_log",
    (c) => new raw.SlidingLog(c.limit, c.window_us, 8), // the fixtures use 8 slots
    (l) => {
      const [last, ...flat] = l.exportState();
      const entries = [];
      for (let i = 0; i < flat.length; i += 2) entries.push({ at: flat[i], cost: flat[i + 1] });
      return { entries, last };
    },
    checkOrPeek,
  );
  assert.ok(n >= 300, `${n} steps`);
});

test("sliding counter traces replay exactly", () => {
  const n = replay(
    "sliding_counter",
    (c) => new raw.SlidingCounter(c.limit, c.window_us),
    (k) => { const [start, prev, curr] = k.exportState(); return { curr, prev, start }; },
    checkOrPeek,
  );
  assert.ok(n >= 300, `${n} steps`);
});

// The budget and model-quota modules' results are flat numbers; budget-codec.js reads them
// into core's serde shapes, which the fixtures record.
const ok = (f) => {
  try {
    return { ok: f() };
  } catch (e) {
    if (typeof e !== "string") throw e;
    return { error: e };
  }
};

test("budget traces replay exactly (ratebound/budget)", async () => {
  const { raw: b } = await import("../src/budget-node.js");
  const c = await import("../src/budget-codec.js");
  const n = replay(
    "budget",
    (cfg) => new b.Budget(c.budgetConfigFlat(cfg), 4), // the fixtures use 4 hold slots
    (x) => c.budgetStateOf(x.exportState()),
    (x, s) => {
      const u = s.usage ?? {};
      switch (s.op) {
        case "reserve": return ok(() => c.reservedOf(x.reserve(s.now, u.requests, u.tokens, u.cost)));
        case "settle": return ok(() => c.settledOf(x.settle(s.now, s.id, u.requests, u.tokens, u.cost)));
        case "release": return ok(() => x.release(s.now, s.id) ?? null);
        case "record": return ok(() => c.alertsOf(x.record(s.now, u.requests, u.tokens, u.cost)));
        case "try_spend": return ok(() => c.spentOf(x.trySpend(s.now, u.requests, u.tokens, u.cost)));
        case "status": return ok(() => c.statusOf(x.status(s.now)));
        case "reconfigure":
          try {
            x.reconfigure(c.budgetConfigFlat(s.config));
            return { ok: "kept" };
          } catch (e) {
            return { error: { field: c.configErrorOf(e).field } };
          }
        default: throw new Error(`unknown op ${s.op}`);
      }
    },
  );
  assert.ok(n >= 200, `${n} steps`);
});

test("model quota traces replay exactly (ratebound/model-quota)", async () => {
  const { raw: b } = await import("../src/model-quota-node.js");
  const c = await import("../src/budget-codec.js");
  const n = replay(
    "model_quota",
    (cfg) => new b.ModelQuota(c.modelScopesFlat(cfg.quotas)),
    (x) => c.modelStateOf(x.exportState()),
    (x, s) => {
      switch (s.op) {
        case "admit": return c.modelDecisionOf(x.admit(s.scope, s.now));
        case "peek": return c.modelDecisionOf(x.peek(s.scope, s.now));
        case "settle": return x.settle(s.scope, s.id, s.outcome === "success", s.now) ? "held" : "lapsed";
        default: throw new Error(`unknown op ${s.op}`);
      }
    },
  );
  assert.equal(n, 1440);
});

test("backoff traces replay exactly (results, the sequence's attempt and the budget's state: what the wasm exposes)", async () => {
  const JITTER = { none: 0, full: 1, equal: 2, decorrelated: 3 };
  const GIVE_UP = [null, "max_retries", "max_elapsed", "hint_beyond_cap", "retry_budget"];
  const file = load("backoff");
  assert.equal(file.machine, "backoff");
  let steps = 0;
  for (const trace of file.traces) {
    const c = trace.config.backoff;
    const seq = new retries.Backoff(c.initial_us, c.cap_us, c.factor_num, c.factor_den, JITTER[c.jitter], c.max_retries ?? -1, c.max_elapsed_us ?? 0);
    const b = trace.config.budget;
    const budget = b ? new retries.RetryBudget(b.max_tokens, b.token_ratio_milli) : null;
    const outcome = (status, step) => {
      const v = new Float64Array(retries.memory.buffer);
      const at = seq.outPtr() / 8;
      if (status === 1) return { retry: { at: v[at], attempt: v[at + 2], delay: v[at + 1] } };
      const reason = GIVE_UP[v[at + 3]];
      // The wasm reports the reason's code; the hint it refused is the step's.
      return { give_up: reason === "hint_beyond_cap" ? { hint_beyond_cap: { hint: step.hint_us } } : reason };
    };
    trace.steps.forEach((step, i) => {
      const hint = step.hint_us ?? -1;
      let got = null;
      switch (step.op) {
        case "start": seq.start(step.now, step.seed); break;
        case "next": got = outcome(seq.next(step.now, hint), step); break;
        case "next_with_budget": got = outcome(seq.nextWithBudget(step.now, hint, budget), step); break;
        case "success": budget.onSuccess(); break;
        default: throw new Error(`unknown op ${step.op}`);
      }
      const where = `backoff/${trace.name} step ${i}`;
      assert.deepEqual(got, step.expect, `${where}: result`);
      assert.equal(seq.attempt(), step.state.attempt, `${where}: attempt`);
      assert.equal(budget ? budget.exportState() : 0, step.state.budget_spent_milli, `${where}: budget`);
      steps++;
    });
    seq.free();
    budget?.free();
  }
  assert.equal(counted("backoff", steps), 505);
});

// A policy fixture's member as the public classes build it.
function policyMember(m, { TokenBucket, SlidingLog, SlidingWindow }) {
  if (m.gcra) return { kind: "gcra", cfg: m.gcra, limiter: new TokenBucket({ capacity: m.gcra.capacity, refillAmount: m.gcra.amount, refillPeriodMs: m.gcra.period_us / 1000 }), cost: m.cost };
  if (m.sliding_log) return { kind: "log", cfg: m.sliding_log, limiter: new SlidingLog({ limit: m.sliding_log.limit, windowMs: m.sliding_log.window_us / 1000, slots: 8 }), cost: m.cost };
  return { kind: "counter", cfg: m.sliding_counter, limiter: new SlidingWindow({ limit: m.sliding_counter.limit, windowMs: m.sliding_counter.window_us / 1000 }), cost: m.cost };
}

// A member's state in the fixtures' form.
function policyStateOf({ kind, limiter }) {
  const s = limiter.exportState();
  if (kind === "gcra") return { rem: s.rem, tat: s.tat };
  if (kind === "log") {
    const [last, ...flat] = s.data;
    const entries = [];
    for (let i = 0; i < flat.length; i += 2) entries.push({ at: flat[i], cost: flat[i + 1] });
    return { entries, last };
  }
  const [start, prev, curr] = s.data;
  return { curr, prev, start };
}

const policyOf = (Policy, members) => new Policy(members.map(({ limiter, cost }) => (cost === undefined ? limiter : { limiter, cost })));

// One check or peek step of a policy fixture, through `policy`.
function checkPolicyStep(policy, step, what) {
  const args = { now: step.now / 1000, cost: step.cost };
  const run = () => (step.op === "check" ? policy.check(args) : policy.peek(args));
  if (step.expect.error) {
    assert.throws(run, new RegExp(`members\\[${step.expect.error.member}\\]: cost \\d+ can never be allowed`), what);
    return;
  }
  const got = run();
  const d = step.expect.ok.decision;
  assert.deepEqual(
    { allowed: got.allowed, binding: got.binding, remaining: got.remaining, limit: got.limit, resetAt: got.resetAt, retryAfterMs: got.retryAfterMs },
    {
      allowed: d.allowed,
      binding: step.expect.ok.binding,
      remaining: d.remaining,
      limit: d.limit,
      resetAt: Math.ceil(d.reset_at / 1000),
      retryAfterMs: d.allowed ? 0 : Math.ceil(Math.max(0, d.retry_at - step.now) / 1000),
    },
    what,
  );
}

test("policy set traces replay exactly through the public Policy", async () => {
  const api = await import("../src/node.js");
  const file = load("policy");
  let steps = 0;
  for (const trace of file.traces) {
    const members = trace.config.members.map((m) => policyMember(m, api));
    const policy = policyOf(api.Policy, members);
    trace.steps.forEach((step, i) => {
      const what = `policy/${trace.name} step ${i} (${step.op})`;
      checkPolicyStep(policy, step, what);
      assert.deepEqual(members.map(policyStateOf), step.state, `${what}: states`);
      steps++;
    });
  }
  assert.equal(counted("policy", steps), 270);
});

test("reconfigured policy traces replay exactly: new limiters importing the old states", async () => {
  const api = await import("../src/node.js");
  const file = load("reconfigure");
  let steps = 0;
  for (const trace of file.traces) {
    let members = trace.config.members.map((m) => policyMember(m, api));
    let policy = policyOf(api.Policy, members);
    trace.steps.forEach((step, i) => {
      const what = `reconfigure/${trace.name} step ${i} (${step.op})`;
      if (step.op === "reconfigure") {
        // Core refuses a sliding counter a new window; this replay expects
        // exactly that refusal, and otherwise carries every state over.
        const next = step.members.map((m) => policyMember(m, api));
        const refused = next.findIndex((n, m) => n.kind === "counter" && n.cfg.window_us !== members[m].cfg.window_us);
        if (refused >= 0) {
          assert.deepEqual(step.expect, { error: { member: refused, field: "window" } }, what);
        } else {
          assert.deepEqual(step.expect, { ok: "kept" }, what);
          next.forEach((n, m) => n.limiter.importState(members[m].limiter.exportState()));
          members = next;
          policy = policyOf(api.Policy, members);
        }
      } else {
        checkPolicyStep(policy, step, what);
      }
      assert.deepEqual(members.map(policyStateOf), step.state, `${what}: states`);
      steps++;
    });
  }
  assert.equal(counted("reconfigure", steps), 309);
});

test("keyed store traces replay exactly through the public KeyedLimiter", async () => {
  const { KeyedLimiter, TokenBucket, StoreFullError } = await import("../src/node.js");
  const file = load("keyed");
  let steps = 0;
  for (const trace of file.traces) {
    const c = trace.config;
    const keyed = new KeyedLimiter(
      () => new TokenBucket({ capacity: c.gcra.capacity, refillAmount: c.gcra.amount, refillPeriodMs: c.gcra.period_us / 1000 }),
      { maxKeys: c.max_keys, onFull: c.on_full === "evict_lru" ? "evictLru" : "deny" },
    );
    trace.steps.forEach((step, i) => {
      const what = `keyed/${trace.name} step ${i} (${step.op})`;
      const args = { now: step.now / 1000, cost: step.cost };
      if (step.op === "evict_idle") {
        assert.equal(keyed.evictIdle({ now: step.now / 1000 }), step.expect.evicted, what);
      } else if (step.expect.error === "store_full") {
        assert.throws(() => keyed.check(step.key, args), StoreFullError, what);
      } else if (step.expect.error) {
        assert.throws(() => (step.op === "check" ? keyed.check(step.key, args) : keyed.peek(step.key, args)), RangeError, what);
      } else {
        const got = step.op === "check" ? keyed.check(step.key, args) : keyed.peek(step.key, args);
        const d = step.expect.ok;
        assert.deepEqual(got, {
          allowed: d.allowed,
          remaining: d.remaining,
          limit: d.limit,
          resetAt: Math.ceil(d.reset_at / 1000),
          retryAfterMs: d.allowed ? 0 : Math.ceil(Math.max(0, d.retry_at - step.now) / 1000),
        }, what);
      }
      assert.equal(keyed.size, step.state.keys.length, `${what}: keys held`);
      steps++;
    });
  }
  assert.equal(counted("keyed", steps), 360);
});

test("every step of every fixture file was replayed", () => {
  const dir = new URL("../../fixtures/traces/", import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();
  const total = (kind) => load(kind).traces.reduce((n, t) => n + t.steps.length, 0);
  assert.deepEqual([...replayed.keys()].sort(), files);
  for (const kind of files) assert.equal(replayed.get(kind), total(kind), kind);
  assert.equal([...replayed.values()].reduce((a, b) => a + b, 0), 4_452); // node/README.md and fixtures/README.md say so
});
