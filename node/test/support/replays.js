// The core trace fixtures replayed through ratebound/redis on a store made
// with `{ time: "caller", withState: true }`: every decision and every
// state must equal what ratebound-core recorded. Each returns the steps it
// checked; `label` keeps keys apart between runs on one server.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { TokenBucket, SlidingLog, SlidingWindow } from "ratebound";
import { RedisLimiter, RedisBudget, RedisModelQuota, BudgetError } from "ratebound/redis";
import { NOW_US } from "../../src/redis/keys.js";

export const load = (kind) => JSON.parse(readFileSync(new URL(`../../../fixtures/traces/${kind}.json`, import.meta.url), "utf8"));
const sorted = (x) => JSON.parse(JSON.stringify(x, (k, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v)));

const limiterState = (kind, s) => {
  if (kind === "gcra") return { rem: s[1], tat: s[0] };
  if (kind === "sliding_log") {
    const entries = [];
    for (let i = 1; i < s.length; i += 2) entries.push({ at: s[i], cost: s[i + 1] });
    return { entries, last: s[0] };
  }
  return { curr: s[2], prev: s[1], start: s[0] };
};

export const limiterOf = (kind, c) => {
  if (kind === "gcra") return new TokenBucket({ capacity: c.capacity, refillAmount: c.amount, refillPeriodMs: c.period_us / 1000 });
  if (kind === "sliding_log") return new SlidingLog({ limit: c.limit, windowMs: c.window_us / 1000, slots: 8 });
  return new SlidingWindow({ limit: c.limit, windowMs: c.window_us / 1000 });
};

/** A decision's member `i` in core's units (the fixtures' µs). */
function exact(d, i) {
  const m = d.exact.members[i];
  return { allowed: m[0] === 1, limit: m[2], remaining: m[1], reset_at: m[3], retry_at: m[4] };
}

/** GCRA, sliding log and sliding counter traces (check, peek, take, refund). */
export async function replayLimiters(store, label) {
  let steps = 0;
  for (const kind of ["gcra", "sliding_log", "sliding_counter"]) {
    for (const [t, trace] of load(kind).traces.entries()) {
      const limiter = new RedisLimiter(store, { x: limiterOf(kind, trace.config) });
      // A fresh key per trace; braces and spaces on purpose.
      const key = `${label} ${kind} {trace} ${t}`;
      for (const [i, step] of trace.steps.entries()) {
        const what = `${label} ${kind}/${trace.name} step ${i} (${step.op})`;
        const now = step.now; // µs: near 2^52 a number of ms cannot carry every µs
        let got, state;
        try {
          if (step.op === "check" || step.op === "peek") {
            const d = await limiter[step.op](key, { cost: step.cost, [NOW_US]: now });
            [got, state] = [{ ok: exact(d, 0) }, d.states[0]];
          } else if (step.op === "at_most") {
            const d = await limiter.take(key, { max: step.cost, [NOW_US]: now });
            [got, state] = [{ decision: exact(d, 0), taken: d.taken }, d.states[0]];
          } else {
            const d = await limiter.refund(key, { amount: step.cost, [NOW_US]: now });
            [got, state] = [exact(d, 0), d.states[0]];
          }
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
          got = { error: "insufficient_capacity" };
          state = (await limiter.peek(key, { cost: 0, [NOW_US]: now })).states[0];
        }
        assert.deepEqual(got, step.expect, `${what}: decision`);
        assert.deepEqual(limiterState(kind, state), step.state, `${what}: state`);
        steps++;
      }
    }
  }
  return steps;
}

const memberOf = (m) => {
  const kind = ["gcra", "sliding_log", "sliding_counter"].find((k) => m[k]);
  const limiter = limiterOf(kind, m[kind]);
  return { kind, limiter, entry: m.cost === undefined ? limiter : { limiter, cost: m.cost } };
};

/** Policy-set traces (fixed member costs; configs changed by `reconfigure` steps, the states staying in Redis). */
export async function replayPolicies(store, label) {
  let steps = 0;
  for (const file of ["policy", "reconfigure"]) {
    for (const [t, trace] of load(file).traces.entries()) {
      let members = trace.config.members.map(memberOf);
      const make = (cost) => new RedisLimiter(store, Object.fromEntries(members.map((m, i) => [`m${i}`, cost === undefined ? m.entry : { limiter: m.limiter, cost }])));
      let limiter = make();
      const key = `${label} ${file} {${t}}`;
      for (const [i, step] of trace.steps.entries()) {
        const what = `${label} ${file}/${trace.name} step ${i} (${step.op})`;
        if (step.op === "reconfigure") {
          // A limiter of the new configs reads the states (a refused change
          // is core's carry-over rule, checked in Rust: not replayed here).
          if (step.expect.ok) {
            members = step.members.map(memberOf);
            limiter = make();
            steps++;
          }
          continue;
        }
        let got, states;
        try {
          const d = await limiter[step.op](key, { cost: step.cost, [NOW_US]: step.now });
          const [allowed, binding, remaining, limit, reset, retry] = d.exact.set;
          got = { ok: { binding: binding < 0 ? null : binding, decision: { allowed: allowed === 1, limit, remaining, reset_at: reset, retry_at: retry } } };
          states = d.states;
        } catch (e) {
          if (!(e instanceof RangeError)) throw e;
          got = { error: { code: "insufficient_capacity", member: e.member } };
          states = (await make(0).peek(key, { [NOW_US]: step.now })).states;
        }
        assert.deepEqual(got, step.expect, `${what}: decision`);
        assert.deepEqual(states.map((s, j) => limiterState(members[j].kind, s)), step.state, `${what}: states`);
        steps++;
      }
    }
  }
  return steps;
}

/** Core's serde budget config as the API's (camelCase, ms, fractions). */
export const budgetConfig = (c) => ({
  limits: c.limits.map((l) => ({ dimension: l.dimension, window: l.horizon === "calendar_month" ? "month" : l.horizon.fixed / 1000, max: l.max })),
  maxTokensPerRequest: c.max_tokens_per_request,
  maxCostPerRequest: c.max_cost_per_request,
  alertThresholds: c.alert_thresholds_bp.map((bp) => bp / 10000),
  throttle: c.throttle && { after: c.throttle.after_bp / 10000, minDelayMs: c.throttle.min_delay / 1000 },
  holdTtlMs: c.hold_ttl / 1000,
  utcOffsetMinutes: c.utc_offset_secs / 60,
});

/** A raw budget state from Redis as core's BudgetState<4> (serde form). */
function budgetState(v) {
  const [last, next_id, throttle_until] = v;
  const windows = [];
  for (let i = 0; i < 12; i++) {
    const [start, used, reserved, fired, kind, limit] = v.slice(3 + i * 6, 9 + i * 6);
    windows.push({ fired, kind, limit, reserved, start, used });
  }
  const holds = [];
  for (let i = 75; i < v.length; i += 7) {
    const [id, at, expires, requests, tokens, cost, lapsed] = v.slice(i, i + 7);
    holds.push({ at, expires, id, lapsed: lapsed === 1, usage: { cost, requests, tokens } });
  }
  return { holds, last, next_id, throttle_until, windows };
}

/** Budget traces (reserve, settle, release, record, try_spend, status, reconfigure). */
export async function replayBudgets(store, label) {
  let steps = 0;
  for (const [t, tr] of load("budget").traces.entries()) {
    const budget = new RedisBudget(store, budgetConfig(tr.config), { holdSlots: 4, name: "b" });
    const key = `${label} budget {${t}}`;
    for (const [i, s] of tr.steps.entries()) {
      const what = `${label} budget/${tr.name} step ${i} (${s.op})`;
      const at = { [NOW_US]: s.now };
      const usage = { ...(s.usage ?? {}), ...at };
      if (s.op === "reconfigure") {
        let got;
        try {
          budget.reconfigure(budgetConfig(s.config));
          got = { ok: "kept" };
        } catch (e) {
          assert.ok(e instanceof RangeError, what);
          got = { error: "refused" };
        }
        assert.deepEqual(got, s.expect.ok ? { ok: "kept" } : { error: "refused" }, what);
        steps++;
        continue;
      }
      let got, state;
      try {
        let r;
        switch (s.op) {
          case "reserve": r = await budget.reserve(key, usage); got = { ok: r.core }; break;
          case "settle": r = await budget.settle(key, s.id, usage); got = { ok: r.core }; break;
          case "release": r = await budget.release(key, s.id, at); got = { ok: null }; break;
          case "record": r = await budget.record(key, usage); got = { ok: r.core }; break;
          case "try_spend": r = await budget.trySpend(key, usage); got = { ok: r.core }; break;
          case "status": r = await budget.status(key, at); got = { ok: r.core }; break;
          default: throw new Error(`unknown op ${s.op}`);
        }
        state = r.state;
      } catch (e) {
        if (!(e instanceof BudgetError)) throw e;
        got = { error: e.code };
        state = (await budget.peek(key, { requests: 0, ...at })).state;
      }
      assert.deepEqual(sorted(got), sorted(s.expect), `${what}: result`);
      assert.deepEqual(sorted(budgetState(state)), sorted(s.state), `${what}: state`);
      steps++;
    }
  }
  return steps;
}

const modelConfig = (q) => ({ totalMax: q.total, successMax: q.success, periodMs: q.period_us / 1000, window: q.window, holdTtlMs: q.hold_ttl_us / 1000 });

/** The model script's flat state as core's ModelState (serde form). */
function modelState(flat) {
  let i = 0;
  const next = () => flat[i++];
  const count = () => {
    const log = [];
    for (let n = next(); n > 0; n--) log.push({ at: next(), cost: next() });
    return { bucket: { tat: next(), rem: next() }, log };
  };
  const last = next();
  const next_id = next();
  const total = count();
  const success = count();
  const holds = [];
  for (let n = next(); n > 0; n--) holds.push({ id: next(), expires: next() });
  assert.equal(i, flat.length, "the whole state read");
  return { holds, last, next_id, success, total };
}

/** Model-quota traces (several scopes' limits over one state). */
export async function replayModels(store, label) {
  let steps = 0;
  for (const [t, trace] of load("model_quota").traces.entries()) {
    const scopes = trace.config.quotas.map((q) => new RedisModelQuota(store, modelConfig(q)));
    const key = `${label} model {${t}}`;
    for (const [i, s] of trace.steps.entries()) {
      const what = `${label} model/${trace.name} step ${i} (${s.op})`;
      const q = scopes[s.scope];
      let got, state;
      if (s.op === "settle") {
        const r = await q.settle(key, s.id, { success: s.outcome === "success", [NOW_US]: s.now });
        [got, state] = [r.settled, r.state];
      } else {
        const r = await q[s.op](key, { [NOW_US]: s.now });
        [got, state] = [r.core, r.state];
      }
      assert.deepEqual(sorted(got), sorted(s.expect), `${what}: result`);
      assert.deepEqual(sorted(modelState(state)), sorted(s.state), `${what}: state`);
      steps++;
    }
  }
  return steps;
}
