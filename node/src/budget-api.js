// The budget-window API (`ratebound/budget`) over its own wasm module.
// Validates inputs, converts milliseconds to the microseconds core counts
// in, and turns core's results (flat numbers, read by budget-codec.js into
// core's serde shapes) into camelCase objects.

import { integer, milliseconds as micros, nowMicros, options, NOW, freed } from "./validate.js";
import {
  budgetConfigFlat, budgetStateFlat, budgetStateOf, reservedOf, settledOf, alertsOf, spentOf, peekedOf, statusOf, configErrorOf,
  CORE, FROM_CORE, built,
} from "./budget-codec.js";

const DIMENSIONS = ["requests", "tokens", "cost"];
const WINDOWS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

const ms = (us) => Math.ceil(us / 1000);
const fraction = (name, f) => {
  if (typeof f !== "number" || !(f > 0 && f <= 1)) throw new RangeError(`${name} must be a number in (0, 1], got ${f}`);
  return Math.round(f * 10000);
};

/** Core's serde config from the camelCase one. */
function coreConfig(c) {
  if (!Array.isArray(c.limits) || c.limits.length === 0) throw new TypeError("limits must be a non-empty array of {dimension, window, max}");
  const limits = c.limits.map((l, i) => {
    const o = options(l, `limits[${i}]`, ["dimension", "window", "max"]);
    if (!DIMENSIONS.includes(o.dimension)) throw new RangeError(`limits[${i}].dimension must be one of ${DIMENSIONS.join(", ")}, got ${o.dimension}`);
    let horizon;
    if (o.window === "month") horizon = "calendar_month";
    else if (typeof o.window === "string" && WINDOWS[o.window]) horizon = { fixed: WINDOWS[o.window] * 1000 };
    else if (typeof o.window === "number") horizon = { fixed: micros(`limits[${i}].window`, o.window, 0.001) };
    else throw new RangeError(`limits[${i}].window must be "minute", "hour", "day", "month" or milliseconds, got ${o.window}`);
    return { dimension: o.dimension, horizon, max: integer(`limits[${i}].max`, o.max, 1) };
  });
  const opt = (name, v) => (v === undefined || v === null ? null : integer(name, v, 1));
  const throttle = c.throttle === undefined || c.throttle === null ? null : (() => {
    const t = options(c.throttle, "throttle", ["after", "minDelayMs"]);
    return { after_bp: fraction("throttle.after", t.after), min_delay: micros("throttle.minDelayMs", t.minDelayMs ?? 0) };
  })();
  const thresholds = c.alertThresholds ?? [];
  if (!Array.isArray(thresholds)) throw new TypeError("alertThresholds must be an array of fractions");
  return {
    alert_thresholds_bp: thresholds.map((t, i) => fraction(`alertThresholds[${i}]`, t)),
    hold_ttl: micros("holdTtlMs", c.holdTtlMs ?? 600_000, 0.001),
    limits,
    max_cost_per_request: opt("maxCostPerRequest", c.maxCostPerRequest),
    max_tokens_per_request: opt("maxTokensPerRequest", c.maxTokensPerRequest),
    throttle,
    utc_offset_secs: Math.round(((c.utcOffsetMinutes ?? 0) * 60)),
  };
}

const USAGE = ["requests", "tokens", "cost", "now"];

/** `{requests = 1, tokens = 0, cost = 0}` validated, as core's three amounts. */
export function usageArgs(o) {
  return [
    integer("requests", o.requests ?? 1),
    integer("tokens", o.tokens ?? 0),
    integer("cost", o.cost ?? 0),
  ];
}

const horizonOut = (h) => (h === "calendar_month" ? "month" : h.fixed / 1000);
const limitOut = (l) => ({ dimension: l.dimension, window: horizonOut(l.horizon), max: l.max });
export const alertOut = (a) => ({
  kind: a.kind === "limit_hit" ? "limitHit" : "threshold",
  limitIndex: a.limit,
  dimension: a.dimension,
  window: horizonOut(a.horizon),
  threshold: a.threshold_bp / 10000,
  utilization: a.utilization_bp / 10000,
  at: ms(a.at),
  windowStart: ms(a.window_start),
});
const usageOut = (u) => ({ requests: u.requests, tokens: u.tokens, cost: u.cost });
export const denialOut = (d, now) => ({
  allowed: false,
  reason: d.reason,
  limitIndex: d.limit,
  retryAt: ms(d.retry_at),
  retryAfterMs: Math.max(0, ms(d.retry_at - now)),
});

const ERRORS = {
  exceeds_limit: "the usage can never fit: it exceeds a per-request maximum or a whole window limit",
  unknown_reservation: "no such reservation (settled, released, lapsed, or never made)",
  no_reservation_slots: "this budget has no reservation slots",
};

/** A budget error: `code` is core's (`exceeds_limit`, `unknown_reservation`, …). */
export class BudgetError extends Error {
  constructor(code) {
    super(ERRORS[code] ?? code);
    this.name = "BudgetError";
    this.code = code;
  }
}

/** Core's results (serde form) as the API returns them; `now` in µs. */
export function reservedOut(r, now) {
  const alerts = r.alerts.map(alertOut);
  if (r.admission.granted) {
    const g = r.admission.granted;
    return { allowed: true, id: g.id, expiresAt: ms(g.expires), usage: usageOut(g.usage), alerts };
  }
  return { ...denialOut(r.admission.denied, now), alerts };
}
export const settledOut = (r) => ({ charged: usageOut(r.charged), late: r.late, alerts: r.alerts.map(alertOut) });
export function spentOut(r, now) {
  const alerts = r.alerts.map(alertOut);
  return r.denied ? { ...denialOut(r.denied, now), alerts } : { allowed: true, alerts };
}
export const statusOut = (s) => ({
  limits: s.limits.map((l) => ({
    ...limitOut(l.limit),
    used: l.used,
    reserved: l.reserved,
    utilization: l.utilization_bp / 10000,
    windowStart: ms(l.window_start),
    windowEnd: ms(l.window_end),
  })),
  throttled: s.throttled,
  throttleUntil: s.throttle_until === null ? null : ms(s.throttle_until),
  holds: s.holds,
});

/** `f()`, with core's error codes thrown by the module as `BudgetError`s. */
export function run(f) {
  try {
    return f();
  } catch (e) {
    throw typeof e === "string" ? new BudgetError(e) : e;
  }
}

export function makeBudgetApi(wasm) {

  /**
   * Budget windows: requests, LLM tokens and money (integer micro-units) per
   * minute / hour / day / calendar month (at a UTC offset), with
   * reserve → settle, alerts and auto-throttle. Every decision is core's.
   */
  class Budget {
    #inner;
    constructor(config, core) {
      if (config === FROM_CORE) {
        this.#inner = new wasm.Budget(core.flat, core.slots);
        this.config = null;
        return;
      }
      const c = options(config, "Budget config", ["limits", "maxTokensPerRequest", "maxCostPerRequest", "alertThresholds", "throttle", "holdTtlMs", "utcOffsetMinutes", "holdSlots"]);
      const slots = c.holdSlots ?? 64;
      if (slots !== 4 && slots !== 64) throw new RangeError(`holdSlots must be 4 or 64, got ${slots}`);
      const flat = budgetConfigFlat(coreConfig(c));
      this.#inner = built("Budget", () => new wasm.Budget(flat, slots));
      this.config = Object.freeze({ ...c, holdSlots: slots });
    }
    /**
     * Hold an estimate (`{requests = 1, tokens, cost}`) until settled or
     * released (or it lapses after `holdTtlMs`). `{allowed: true, id,
     * expiresAt, alerts}` or `{allowed: false, reason, retryAfterMs, …}`.
     */
    reserve(usage) {
      const o = options(usage, "usage", USAGE);
      const now = nowMicros(o.now);
      return reservedOut(reservedOf(run(() => this.#inner.reserve(now, ...usageArgs(o)))), now);
    }
    /** Charge the actual usage of reservation `id`: `{charged, late, alerts}`. */
    settle(id, usage) {
      const o = options(usage, "usage", USAGE);
      return settledOut(settledOf(run(() => this.#inner.settle(nowMicros(o.now), integer("id", id), ...usageArgs(o)))));
    }
    /** Free reservation `id` unused. */
    release(id, opts) {
      run(() => this.#inner.release(nowMicros(options(opts, "options", NOW).now), integer("id", id)));
    }
    /** Record usage that already happened (never refused): `{alerts}`. */
    record(usage) {
      const o = options(usage, "usage", USAGE);
      return { alerts: alertsOf(this.#inner.record(nowMicros(o.now), ...usageArgs(o))).map(alertOut) };
    }
    /** Spend if it fits now: `{allowed, alerts, …}`. */
    trySpend(usage) {
      const o = options(usage, "usage", USAGE);
      const now = nowMicros(o.now);
      return spentOut(spentOf(run(() => this.#inner.trySpend(now, ...usageArgs(o)))), now);
    }
    /** What `reserve` / `trySpend` would decide, changing nothing: `{allowed: true}` or the denial. */
    peek(usage) {
      const o = options(usage, "usage", USAGE);
      const now = nowMicros(o.now);
      const d = peekedOf(run(() => this.#inner.peek(now, ...usageArgs(o))));
      return d ? denialOut(d, now) : { allowed: true };
    }
    /** Usage per limit, holds and throttling at `now`. */
    status(opts) {
      return statusOut(statusOf(this.#inner.status(nowMicros(options(opts, "options", NOW).now))));
    }
    /**
     * Change the config, keeping usage, holds and throttling: the new limits
     * (added, removed, reordered or with new maxima) read them and the
     * alerts of the limits that changed are re-evaluated (core's
     * `Budget::reconfigure`). A new UTC offset or another `holdSlots` is
     * refused with a RangeError and changes nothing.
     */
    reconfigure(config) {
      const c = options(config, "Budget config", ["limits", "maxTokensPerRequest", "maxCostPerRequest", "alertThresholds", "throttle", "holdTtlMs", "utcOffsetMinutes", "holdSlots"]);
      const slots = c.holdSlots ?? this.config.holdSlots;
      if (slots !== this.config.holdSlots) throw new RangeError(`holdSlots cannot change (${this.config.holdSlots})`);
      const flat = budgetConfigFlat(coreConfig(c));
      try {
        this.#inner.reconfigure(flat);
      } catch (e) {
        const refused = configErrorOf(e);
        throw refused ? new RangeError(`Budget config change refused: ${refused.message}`) : e;
      }
      this.config = Object.freeze({ ...c, holdSlots: slots });
      return this;
    }
    /** Forget all usage and holds. */
    reset() { this.#inner.reset(); }
    /** Plain, JSON-serializable state. */
    exportState() { return { v: 1, state: budgetStateOf(this.#inner.exportState()) }; }
    /** Restore a state from `exportState()`. */
    importState(state) {
      const s = options(state, "state", ["v", "state"]);
      const flat = s.v === 1 ? budgetStateFlat(s.state) : null;
      if (!flat || !this.#inner.importState(flat)) throw new TypeError("state is not a Budget state from exportState()");
      return this;
    }
    /** @internal the wasm budget */
    get [CORE]() { return this.#inner; }
    free() { this.#inner.free(); this.#inner = freed("Budget"); }
  }

  return { Budget, BudgetError, raw: wasm };
}
