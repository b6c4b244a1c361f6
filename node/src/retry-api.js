// `ratebound/retry` over its module (retry-abi.js): backoff with jitter,
// retry sequences, a shared retry budget and `retry()`. Validates inputs and converts
// milliseconds; every delay and give-up is core's (backoff, retry_budget).

import { integer, milliseconds, nowMicros, options, freed, configError } from "./validate.js";

export function makeRetryApi(wasm) {
  // Each sequence keeps its last step as four f64s in wasm memory; one view
  // reads them (renewed if memory grows).
  const memory = wasm.memory;
  let view = new Float64Array(memory.buffer);
  const f64 = () => (view.buffer === memory.buffer ? view : (view = new Float64Array(memory.buffer)));
  // Core's codes (ratebound_core::wire; std-adapters/tests/wire.rs checks these copies).
  const JITTER = { none: 0, full: 1, equal: 2, decorrelated: 3 };
  const GIVE_UP = [null, "max_retries", "max_elapsed", "hint_beyond_cap", "retry_budget"];

  /** A gRPC-style retry budget shared by many calls: failures spend a token, successes earn back `tokenRatio`. */
  class RetryBudget {
    #inner;
    constructor(config) {
      const c = options(config, "RetryBudget config", ["maxTokens", "tokenRatio"]);
      const maxTokens = integer("maxTokens", c.maxTokens ?? 10, 1);
      const ratio = c.tokenRatio ?? 0.1;
      if (typeof ratio !== "number" || !(ratio > 0 && ratio <= 1)) throw new RangeError(`tokenRatio must be a number in (0, 1], got ${ratio}`);
      try {
        this.#inner = new wasm.RetryBudget(Math.min(maxTokens, 2 ** 32 - 1), Math.max(1, Math.round(ratio * 1000)));
      } catch (e) {
        throw configError(e, "RetryBudget");
      }
    }
    get tokens() { return this.#inner.tokensMilli() / 1000; }
    canRetry() { return this.#inner.canRetry(); }
    /** Record a failure; true when a retry is still allowed. */
    onFailure() { return this.#inner.onFailure(); }
    onSuccess() { this.#inner.onSuccess(); }
    exportState() { return { v: 1, spentMilli: this.#inner.exportState() }; }
    importState(state) {
      const s = options(state, "state", ["v", "spentMilli"]);
      if (s.v !== 1 || !this.#inner.importState(integer("state.spentMilli", s.spentMilli))) throw new TypeError("state is not a RetryBudget state from exportState()");
      return this;
    }
    /** @internal */ get _inner() { return this.#inner; }
    free() { this.#inner.free(); this.#inner = freed("RetryBudget"); }
  }

  function rational(name, f) {
    if (typeof f !== "number" || !Number.isFinite(f) || f < 1 || f > 1e6) throw new RangeError(`${name} must be a finite number from 1 to 1e6, got ${f}`);
    let num = Math.round(f * 1000), den = 1000;
    const gcd = (a, b) => (b ? gcd(b, a % b) : a);
    const g = gcd(num, den);
    return [num / g, den / g];
  }

  /** Exponential backoff with jitter; `start()` begins a retry sequence. */
  class Backoff {
    #args;
    constructor(config) {
      const c = options(config, "Backoff config", ["initialMs", "capMs", "factor", "jitter", "maxRetries", "maxElapsedMs"]);
      const initial = milliseconds("initialMs", c.initialMs ?? 1000);
      const cap = milliseconds("capMs", c.capMs ?? 30000, 0.001);
      const [num, den] = rational("factor", c.factor ?? 2);
      const jitter = JITTER[c.jitter ?? "full"];
      if (jitter === undefined) throw new RangeError(`jitter must be one of ${Object.keys(JITTER).join(", ")}, got ${c.jitter}`);
      const maxRetries = c.maxRetries === null || c.maxRetries === Infinity ? -1 : integer("maxRetries", c.maxRetries ?? 3);
      const maxElapsed = c.maxElapsedMs === undefined || c.maxElapsedMs === null ? 0 : milliseconds("maxElapsedMs", c.maxElapsedMs, 0.001);
      this.#args = [initial, cap, num, den, jitter, Math.min(maxRetries, 2 ** 32 - 1), maxElapsed];
      try {
        new wasm.Backoff(...this.#args).free(); // validate now
      } catch (e) {
        throw configError(e, "Backoff");
      }
      this.config = Object.freeze({ initialMs: initial / 1000, capMs: cap / 1000, factor: num / den, jitter: c.jitter ?? "full", maxRetries: maxRetries < 0 ? Infinity : maxRetries, maxElapsedMs: maxElapsed ? maxElapsed / 1000 : null });
    }
    /** A new retry sequence starting at `now`; `seed` (integer) makes the jitter repeatable. */
    start(opts) {
      const o = options(opts, "options", ["seed", "now"]);
      const seed = o.seed === undefined ? Math.floor(Math.random() * 2 ** 53) : integer("seed", o.seed);
      const inner = new wasm.Backoff(...this.#args);
      inner.start(nowMicros(o.now), seed);
      return new RetrySequence(inner);
    }
  }

  /** One retry sequence: call `next()` after each failure. */
  class RetrySequence {
    #inner;
    #at;
    constructor(inner) {
      this.#inner = inner;
      this.#at = inner.outPtr() >>> 3;
    }
    /**
     * After a failure at `now`: `{retry: true, delayMs, retryAt, attempt}` or
     * `{retry: false, reason, attempt}`. `hintMs` (e.g. Retry-After) is a
     * minimum wait; `budget` (a RetryBudget) is charged first.
     */
    next(opts) {
      const o = options(opts, "options", ["now", "hintMs", "budget"]);
      const now = nowMicros(o.now);
      const hint = o.hintMs === undefined || o.hintMs === null ? -1 : milliseconds("hintMs", o.hintMs);
      let status;
      if (o.budget !== undefined) {
        if (!(o.budget instanceof RetryBudget)) throw new TypeError("budget must be a RetryBudget");
        status = this.#inner.nextWithBudget(now, hint, o.budget._inner);
      } else {
        status = this.#inner.next(now, hint);
      }
      const v = f64();
      const at = this.#at;
      if (status === 1) return { retry: true, delayMs: v[at + 1] / 1000, retryAt: Math.ceil(v[at] / 1000), attempt: v[at + 2] };
      return { retry: false, reason: GIVE_UP[v[at + 3]] ?? "unknown", attempt: v[at + 2] };
    }
    free() { this.#inner.free(); this.#inner = freed("RetrySequence"); }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /**
   * Run `op` until it succeeds, retrying failures that `retryable(err)`
   * (default: all) after the backoff's delay, at least `hintMs(err)`.
   */
  async function retry(op, opts) {
    if (typeof op !== "function") throw new TypeError("op must be a function");
    const o = options(opts, "retry options", ["backoff", "budget", "retryable", "hintMs", "seed", "signal", "onRetry"]);
    const backoff = o.backoff ?? new Backoff();
    if (!(backoff instanceof Backoff)) throw new TypeError("backoff must be a Backoff");
    const retryable = o.retryable ?? (() => true);
    const hintOf = o.hintMs ?? (() => undefined);
    const seq = backoff.start({ seed: o.seed });
    try {
      for (;;) {
        try {
          const out = await op();
          o.budget?.onSuccess();
          return out;
        } catch (err) {
          if (!retryable(err)) throw err;
          if (o.signal?.aborted) throw err;
          let step;
          try {
            step = seq.next({ hintMs: hintOf(err), budget: o.budget });
          } catch (bad) {
            // A hint that is not a wait (NaN, negative) or a freed budget:
            // a caller's bug, thrown with the failure it was about as its cause.
            throw bad instanceof Error ? new bad.constructor(bad.message, { cause: err }) : bad;
          }
          if (!step.retry) {
            if (err && typeof err === "object") err.retryGaveUp = step.reason;
            throw err;
          }
          o.onRetry?.({ error: err, ...step });
          await sleep(step.delayMs);
        }
      }
    } finally {
      seq.free();
    }
  }

  return { RetryBudget, Backoff, RetrySequence, retry, raw: { ...wasm } };
}
