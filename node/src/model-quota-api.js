// The model-quota API (`ratebound/model-quota`) over its own wasm module:
// an LLM gateway's total and success counts with holds. Validates inputs,
// converts milliseconds to the microseconds core counts in, and turns core's
// flat decisions (read by budget-codec.js) into camelCase objects.

import { integer, milliseconds as micros, nowMicros, options, NOW, freed } from "./validate.js";
import { modelScopesFlat, modelDecisionOf, modelStateFlat, modelStateOf, CORE, FROM_CORE, built } from "./budget-codec.js";

const ms = (us) => Math.ceil(us / 1000);

const decisionOut = (d, now) => ({
  allowed: d.allowed,
  remaining: d.remaining,
  limit: d.limit,
  resetAt: ms(d.reset_at),
  retryAfterMs: d.allowed ? 0 : ms(Math.max(0, d.retry_at - now)),
});
/** Core's model decision (serde form) as the API returns it. */
export const modelDecisionOut = (d) => {
  const now = d.now;
  const total = d.total === null ? null : decisionOut(d.total, now);
  const success = decisionOut(d.success, now);
  const waits = [total, success].filter((x) => x && !x.allowed).map((x) => x.retryAfterMs);
  return {
    allowed: d.blocked === null,
    hold: d.hold,
    inFlight: d.in_flight,
    blocked: d.blocked,
    retryAfterMs: waits.length ? Math.max(...waits) : 0,
    total,
    success,
  };
};

export function makeModelQuotaApi(wasm) {
  /**
   * Model quotas for LLM gateways: a total count of admitted requests and a
   * success count settled by each request's outcome, with holds for the
   * requests in flight. Every decision is core's (`model_quota`).
   */
  class ModelQuota {
    #inner;
    constructor(config, core) {
      if (config === FROM_CORE) {
        this.#inner = new wasm.ModelQuota(core.flat);
        this.config = null;
        return;
      }
      const c = options(config, "ModelQuota config", ["totalMax", "successMax", "periodMs", "window", "holdTtlMs"]);
      const total = c.totalMax === undefined || c.totalMax === null ? null : integer("totalMax", c.totalMax, 1);
      const window = c.window ?? "sliding";
      if (window !== "sliding" && window !== "bucket") throw new RangeError(`window must be "sliding" or "bucket", got ${window}`);
      const scope = {
        total,
        success: integer("successMax", c.successMax, 1),
        period_us: micros("periodMs", c.periodMs, 0.001),
        window,
        hold_ttl_us: micros("holdTtlMs", c.holdTtlMs ?? 600_000, 0.001),
      };
      this.#inner = built("ModelQuota", () => new wasm.ModelQuota(modelScopesFlat([scope])));
      this.config = Object.freeze({ totalMax: total, successMax: scope.success, periodMs: c.periodMs, window, holdTtlMs: scope.hold_ttl_us / 1000 });
    }
    /** Admit one request: `{allowed, hold, inFlight, blocked, retryAfterMs, total, success}`. Settle `hold` when the outcome is known. */
    admit(opts) {
      return modelDecisionOut(modelDecisionOf(this.#inner.admit(0, nowMicros(options(opts, "options", NOW).now))));
    }
    /** What `admit` would decide, changing nothing. */
    peek(opts) {
      return modelDecisionOut(modelDecisionOf(this.#inner.peek(0, nowMicros(options(opts, "options", NOW).now))));
    }
    /** Settle `hold` (`{success: true}` counts it): "held", or "lapsed" when its hold had expired (a success still counts). */
    settle(hold, opts) {
      const o = options(opts, "options", ["success", "now"]);
      if (typeof o.success !== "boolean") throw new TypeError("options.success must be true or false");
      return this.#inner.settle(0, integer("hold", hold), o.success, nowMicros(o.now)) ? "held" : "lapsed";
    }
    /** Plain, JSON-serializable state. */
    exportState() { return { v: 1, state: modelStateOf(this.#inner.exportState()) }; }
    /** Restore a state from `exportState()`. */
    importState(state) {
      const s = options(state, "state", ["v", "state"]);
      const flat = s.v === 1 ? modelStateFlat(s.state) : null;
      if (!flat || !this.#inner.importState(flat)) throw new TypeError("state is not a ModelQuota state from exportState()");
      return this;
    }
    /** @internal the wasm quota */
    get [CORE]() { return this.#inner; }
    free() { this.#inner.free(); this.#inner = freed("ModelQuota"); }
  }

  return { ModelQuota, raw: wasm };
}
