// The wasm modules of `ratebound/budget`, `ratebound/model-quota` and
// `ratebound/redis` take and return config, state and results as flat
// arrays of numbers (layouts written down in wasm/src/budget_layout.rs and
// wasm/src/model_quota.rs); these functions turn them into objects shaped as
// core's serde form (the shapes of the trace fixtures) and back. Conversion
// only: every decision is core's.

// core's `wire::dimension_code`: 1 requests, 2 tokens, 3 cost.
const DIMENSIONS = [null, "requests", "tokens", "cost"];
const REASONS = ["limit", "throttled", "too_many_reservations", "above_share"];
const BLOCKED = ["total", "success", "in_flight"];
const WINDOWS = ["sliding", "bucket"];
const WINDOW_FIELDS = ["start", "used", "reserved", "fired", "kind", "limit"];

const none = (x) => (x === null || x === undefined ? -1 : x);
const orNull = (x) => (x === -1 ? null : x);

/** Reads a flat array front to back. */
class Reader {
  #v; #i = 0;
  constructor(v) { this.#v = v; }
  next() { return this.#v[this.#i++]; }
  many(read) { const n = this.next(); const out = []; for (let k = 0; k < n; k++) out.push(read(this)); return out; }
}

const horizonOf = (us) => (us === 0 ? "calendar_month" : { fixed: us });
const horizonUs = (h) => (h === "calendar_month" ? 0 : h.fixed);
const dimensionCode = (d) => {
  const i = DIMENSIONS.indexOf(d);
  if (i < 1) throw new RangeError(`unknown dimension ${d}`);
  return i;
};

/** A budget config (core's serde form) as the module takes it. */
export function budgetConfigFlat(c) {
  const t = c.throttle ?? null;
  if (t !== null && (typeof t.after_bp !== "number" || typeof t.min_delay !== "number")) throw new TypeError("throttle needs after_bp and min_delay");
  const out = [none(c.max_tokens_per_request), none(c.max_cost_per_request), c.utc_offset_secs ?? 0, c.hold_ttl ?? 600_000_000, t === null ? -1 : t.after_bp, t === null ? 0 : t.min_delay];
  const thresholds = c.alert_thresholds_bp ?? [];
  out.push(thresholds.length, ...thresholds);
  const limits = c.limits ?? [];
  out.push(limits.length);
  for (const l of limits) out.push(dimensionCode(l.dimension), horizonUs(l.horizon), l.max);
  return out;
}

/** The module's flat budget config in core's serde form. */
export function budgetConfigOf(v) {
  const r = new Reader(v);
  const maxTokens = orNull(r.next()), maxCost = orNull(r.next()), offset = r.next(), ttl = r.next();
  const after = orNull(r.next()), minDelay = r.next();
  return {
    max_tokens_per_request: maxTokens,
    max_cost_per_request: maxCost,
    utc_offset_secs: offset,
    hold_ttl: ttl,
    throttle: after === null ? null : { after_bp: after, min_delay: minDelay },
    alert_thresholds_bp: r.many((x) => x.next()),
    limits: r.many((x) => ({ dimension: DIMENSIONS[x.next()], horizon: horizonOf(x.next()), max: x.next() })),
  };
}

const alert = (r) => ({
  kind: r.next() === 1 ? "limit_hit" : "threshold",
  limit: r.next(),
  dimension: DIMENSIONS[r.next()],
  horizon: horizonOf(r.next()),
  threshold_bp: r.next(),
  utilization_bp: r.next(),
  at: r.next(),
  window_start: r.next(),
});
const alerts = (r) => r.many(alert);
const denial = (r) => ({ reason: REASONS[r.next()], retry_at: r.next(), limit: orNull(r.next()) });
const usage = (r) => ({ requests: r.next(), tokens: r.next(), cost: r.next() });

/** `reserve`'s result: `{admission: {granted} | {denied}, alerts}`. */
export function reservedOf(v) {
  const r = new Reader(v);
  const admission = r.next() === 1
    ? { granted: { id: r.next(), usage: usage(r), expires: r.next() } }
    : { denied: denial(r) };
  return { admission, alerts: alerts(r) };
}
/** `settle`'s result: `{charged, late, alerts}`. */
export function settledOf(v) {
  const r = new Reader(v);
  return { charged: usage(r), late: r.next() === 1, alerts: alerts(r) };
}
/** `record`'s result: the alerts. */
export const alertsOf = (v) => alerts(new Reader(v));
/** `trySpend`'s result: `{denied: null | denial, alerts}`. */
export function spentOf(v) {
  const r = new Reader(v);
  const denied = r.next() === 1 ? denial(r) : null;
  return { denied, alerts: alerts(r) };
}
/** `peek`'s result: null (it fits) or the denial. */
export const peekedOf = (v) => (v.length === 0 ? null : denial(new Reader(v)));
/** `status`'s result. */
export function statusOf(v) {
  const r = new Reader(v);
  const throttled = r.next() === 1, until = orNull(r.next()), holds = r.next();
  const limits = r.many((x) => ({
    limit: { dimension: DIMENSIONS[x.next()], horizon: horizonOf(x.next()), max: x.next() },
    used: x.next(),
    reserved: x.next(),
    utilization_bp: x.next(),
    window_start: x.next(),
    window_end: x.next(),
  }));
  return { limits, throttled, throttle_until: until, holds };
}

/** A budget state (core's serde form) as the module takes it; `null` when it is not one. */
export function budgetStateFlat(s) {
  if (!s || typeof s !== "object" || !Array.isArray(s.windows) || !Array.isArray(s.holds)) return null;
  const out = [s.last, s.next_id, s.throttle_until, s.windows.length];
  for (const w of s.windows) {
    if (!w || typeof w !== "object") return null;
    // `kind` and `limit` are missing from states written before windows recorded them.
    out.push(w.start, w.used, w.reserved, w.fired, w.kind ?? 0, w.limit ?? 0);
  }
  out.push(s.holds.length);
  for (const h of s.holds) {
    if (!h || typeof h !== "object" || !h.usage || typeof h.lapsed !== "boolean") return null;
    // A usage's missing amounts are 0 (as core's serde form reads them).
    const u = h.usage;
    out.push(h.id, h.at, h.expires, u.requests ?? 0, u.tokens ?? 0, u.cost ?? 0, h.lapsed ? 1 : 0);
  }
  return out.every((x) => typeof x === "number") ? out : null;
}

/** The module's flat budget state in core's serde form. */
export function budgetStateOf(v) {
  const r = new Reader(v);
  const last = r.next(), nextId = r.next(), until = r.next();
  const windows = r.many((x) => Object.fromEntries(WINDOW_FIELDS.map((f) => [f, x.next()])));
  const holds = r.many((x) => ({ id: x.next(), at: x.next(), expires: x.next(), usage: usage(x), lapsed: x.next() === 1 }));
  return { last, next_id: nextId, throttle_until: until, windows, holds };
}

/** Model-quota scopes (core's serde form, `{total, success, period_us, window, hold_ttl_us}`) as the module takes them. */
export function modelScopesFlat(scopes) {
  return scopes.flatMap((q) => [none(q.total), q.success, q.period_us, WINDOWS.indexOf(q.window ?? "sliding"), q.hold_ttl_us]);
}

const decision = (r) => ({ allowed: r.next() === 1, remaining: r.next(), limit: r.next(), reset_at: r.next(), retry_at: r.next() });
/** A model decision in core's serde form. */
export function modelDecisionOf(v) {
  const r = new Reader(v);
  const hasTotal = r.next() === 1;
  const total = decision(r);
  const success = decision(r);
  const now = r.next(), hold = orNull(r.next()), inFlight = r.next(), blocked = r.next();
  return { total: hasTotal ? total : null, success, now, hold, in_flight: inFlight, blocked: blocked === -1 ? null : BLOCKED[blocked] };
}

const countFlat = (c, out) => {
  if (!c || !Array.isArray(c.log) || !c.bucket) return false;
  out.push(c.log.length);
  for (const e of c.log) out.push(e?.at, e?.cost);
  out.push(c.bucket.tat, c.bucket.rem);
  return true;
};
/** A model state (core's serde form) as the module takes it; `null` when it is not one. */
export function modelStateFlat(s) {
  if (!s || typeof s !== "object" || !Array.isArray(s.holds)) return null;
  const out = [s.last, s.next_id];
  if (!countFlat(s.total, out) || !countFlat(s.success, out)) return null;
  out.push(s.holds.length);
  for (const h of s.holds) out.push(h?.id, h?.expires);
  return out.every((x) => typeof x === "number") ? out : null;
}
const count = (r) => ({ log: r.many((x) => ({ at: x.next(), cost: x.next() })), bucket: { tat: r.next(), rem: r.next() } });
/** The module's flat model state in core's serde form. */
export function modelStateOf(v) {
  const r = new Reader(v);
  const last = r.next(), nextId = r.next(), total = count(r), success = count(r);
  return { last, next_id: nextId, total, success, holds: r.many((x) => ({ id: x.next(), expires: x.next() })) };
}

/**
 * A config error thrown by the module (`field`, a tab, core's message) as
 * `{field, message}`; anything else is not one (`null`).
 */
export function configErrorOf(e) {
  if (typeof e !== "string") return null;
  const tab = e.indexOf("\t");
  return tab < 0 ? { field: "config", message: e } : { field: e.slice(0, tab), message: e.slice(tab + 1) };
}

/** Package-private: the wasm object of a `Budget` or `ModelQuota` (for `ratebound/redis`). */
export const CORE = Symbol("ratebound.budget.core");
/** Package-private: `new Budget(FROM_CORE, { flat, slots })` (or `new ModelQuota(FROM_CORE, { flat })`) builds one from a flat core config (`shareConfig`). */
export const FROM_CORE = Symbol("ratebound.budget.fromCore");

/** `make()`, with a config error thrown by the module as a RangeError. */
export function built(what, make) {
  try {
    return make();
  } catch (e) {
    const c = configErrorOf(e);
    throw c ? new RangeError(`invalid ${what} config: ${c.message}`) : e;
  }
}
