// The idiomatic JavaScript API over the wasm classes. Validates every input
// (TypeError for wrong types, RangeError for bad values), converts
// milliseconds (Date.now()) to the microseconds core counts in, and returns
// plain decision objects. All decisions are made by ratebound-core in wasm.

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function integer(name, v, min = 0) {
  if (typeof v !== "number") throw new TypeError(`${name} must be a number, got ${v === null ? "null" : typeof v}`);
  if (!Number.isFinite(v)) throw new RangeError(`${name} must be finite, got ${v}`);
  if (!Number.isInteger(v)) throw new RangeError(`${name} must be an integer, got ${v}`);
  if (v < min) throw new RangeError(`${name} must be at least ${min}, got ${v}`);
  if (v > MAX_SAFE) throw new RangeError(`${name} must be at most ${MAX_SAFE}, got ${v}`);
  return v;
}

function milliseconds(name, v, min = 0) {
  if (typeof v !== "number") throw new TypeError(`${name} must be a number of milliseconds, got ${v === null ? "null" : typeof v}`);
  if (!Number.isFinite(v) || v < min) throw new RangeError(`${name} must be a finite number ≥ ${min} (milliseconds), got ${v}`);
  const us = Math.round(v * 1000);
  if (us > MAX_SAFE) throw new RangeError(`${name} is too large: ${v} ms`);
  return us;
}

function nowMicros(now) {
  return now === undefined ? Math.floor(Date.now() * 1000) : milliseconds("now", now);
}

function options(o, name) {
  if (o === undefined) return {};
  if (o === null || typeof o !== "object") throw new TypeError(`${name} must be an object, got ${o === null ? "null" : typeof o}`);
  return o;
}

function configError(e, kind) {
  if (typeof e === "string") return new RangeError(`invalid ${kind} config: \`${e}\` is out of range (zero, too large, or inconsistent)`);
  return e;
}

/** Validate `{cost, now}` and run `op(nowUs, cost)` → status. */
function costed(opts, at, op, decide) {
  const o = options(opts, "options");
  const cost = integer("cost", o.cost === undefined ? 1 : o.cost);
  const now = nowMicros(o.now);
  return decide(at, op(now, cost), now);
}

export function makeApi(wasm, memory) {
  // Each wasm object keeps its last decision as four f64s; one view of wasm
  // memory reads them without further calls (renewed if memory grows).
  let view = new Float64Array(memory.buffer);
  const f64 = () => (view.buffer === memory.buffer ? view : (view = new Float64Array(memory.buffer)));

  function decision(at, status, nowUs) {
    if (status < 0) {
      throw new RangeError(`cost can never be allowed: it exceeds the limiter's capacity`);
    }
    const v = f64();
    return {
      allowed: status === 1,
      remaining: v[at],
      limit: v[at + 1],
      resetAt: Math.ceil(v[at + 2] / 1000),
      retryAfterMs: status === 1 ? 0 : Math.ceil(Math.max(0, v[at + 3] - nowUs) / 1000),
    };
  }

  /** A token bucket (GCRA): `capacity` tokens, refilled `refillAmount` per `refillPeriodMs`. */
  class TokenBucket {
    #inner;
    #at;
    constructor(config) {
      const c = options(config, "config");
      const capacity = integer("capacity", c.capacity, 1);
      const amount = integer("refillAmount", c.refillAmount ?? capacity, 1);
      const period = milliseconds("refillPeriodMs", c.refillPeriodMs ?? 1000, 0.001);
      try {
        this.#inner = new wasm.Gcra(capacity, amount, period);
      } catch (e) {
        throw configError(e, "TokenBucket");
      }
      this.#at = this.#inner.outPtr() >>> 3;
      this.config = Object.freeze({ capacity, refillAmount: amount, refillPeriodMs: period / 1000 });
    }
    /** Take `cost` tokens if available at `now` (ms, default Date.now()). */
    check(opts) {
      return costed(opts, this.#at, (now, cost) => this.#inner.check(now, cost), decision);
    }
    /** What `check` would decide, consuming nothing. */
    peek(opts) {
      return costed(opts, this.#at, (now, cost) => this.#inner.peek(now, cost), decision);
    }
    /** Take as many as available, up to `max`; `{taken, ...decision}`. */
    take(opts) {
      const o = options(opts, "options");
      const max = integer("max", o.max ?? 1);
      const now = nowMicros(o.now);
      const status = this.#inner.atMost(now, max);
      return { taken: this.#inner.taken(), ...decision(this.#at, status, now) };
    }
    /** Give back up to `amount` tokens (never above capacity). */
    refund(opts) {
      const o = options(opts, "options");
      const amount = integer("amount", o.amount ?? 1);
      const now = nowMicros(o.now);
      return decision(this.#at, this.#inner.refund(now, amount), now);
    }
    /** Plain, JSON-serializable state (store it in a Durable Object or KV). */
    exportState() {
      const [tat, rem] = this.#inner.exportState();
      return { v: 1, tat, rem };
    }
    /** Restore a state from `exportState()`. */
    importState(state) {
      const s = options(state, "state");
      if (s.v !== 1 || !this.#inner.importState(new Float64Array([integer("state.tat", s.tat), integer("state.rem", s.rem)]))) {
        throw new TypeError("state is not a TokenBucket state from exportState()");
      }
      return this;
    }
  }

  function windowLimiter(Inner, kind) {
    return class {
      #inner;
      #at;
      constructor(config) {
        const c = options(config, "config");
        const limit = integer("limit", c.limit, 1);
        const window = milliseconds("windowMs", c.windowMs, 0.001);
        const slots = c.slots === undefined ? 64 : integer("slots", c.slots, 1);
        if (Inner === wasm.SlidingLog && ![8, 64, 256].includes(slots)) throw new RangeError(`slots must be 8, 64 or 256, got ${slots}`);
        try {
          this.#inner = Inner === wasm.SlidingLog ? new Inner(limit, window, slots) : new Inner(limit, window);
        } catch (e) {
          throw configError(e, kind);
        }
        this.#at = this.#inner.outPtr() >>> 3;
        this.config = Object.freeze({ limit, windowMs: window / 1000 });
      }
      check(opts) {
        return costed(opts, this.#at, (now, cost) => this.#inner.check(now, cost), decision);
      }
      peek(opts) {
        return costed(opts, this.#at, (now, cost) => this.#inner.peek(now, cost), decision);
      }
      exportState() {
        return { v: 1, data: Array.from(this.#inner.exportState()) };
      }
    };
  }

  /** An exact sliding log: at most `limit` per `windowMs`, remembering `slots` (8, 64 default, 256) admissions. */
  const SlidingLog = windowLimiter(wasm.SlidingLog, "SlidingLog");
  /** An O(1) sliding window counter: about `limit` per `windowMs`. */
  const SlidingWindow = windowLimiter(wasm.SlidingCounter, "SlidingWindow");

  return { TokenBucket, SlidingLog, SlidingWindow, raw: wasm };
}
