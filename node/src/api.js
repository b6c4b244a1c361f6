// The idiomatic JavaScript API over the wasm objects (src/abi.js). Validates every input
// (TypeError for wrong types, RangeError for bad values), converts
// milliseconds (Date.now()) to the microseconds core counts in, and returns
// plain decision objects. All decisions are made by ratebound-core in wasm.

import { integer, milliseconds, nowMicros, options, NOW, costOptions, freed, configError } from "./validate.js";

/** `allow` with options: validated, then core's status as a boolean. */
function allowed(opts, op) {
  const o = costOptions(opts);
  const cost = integer("cost", o.cost === undefined ? 1 : o.cost);
  return allowedStatus(op(nowMicros(o.now), cost));
}

/** Core's status as a boolean; a cost that can never fit is a RangeError. */
function allowedStatus(status) {
  if (status < 0) throw new RangeError(`cost can never be allowed: it exceeds the limiter's capacity`);
  return status === 1;
}

/** Validate `{cost, now}` and run `op(nowUs, cost)` → status. */
function costed(opts, at, op, decide) {
  const o = costOptions(opts);
  const cost = integer("cost", o.cost === undefined ? 1 : o.cost);
  const now = nowMicros(o.now);
  return decide(at, op(now, cost), now);
}

/** Package-private: a member's decision in core's units, for `Policy` and `ratebound/redis`. */
export const RAW = Symbol("ratebound.raw");
/** Package-private: how to build a keyed store of this limiter (kind and core's arguments). */
export const SPEC = Symbol("ratebound.spec");
/** Package-private: count a use of a held key without deciding (for `ratebound/redis`'s local sets). */
export const TOUCH = Symbol("ratebound.touch");

export function makeApi(wasm, memory) {
  // Each wasm object keeps its last decision as four f64s; one view of wasm
  // memory reads them without further calls (renewed if memory grows).
  let view = new Float64Array(memory.buffer);
  const f64 = () => (view.buffer === memory.buffer ? view : (view = new Float64Array(memory.buffer)));

  function decision(at, status, nowUs) {
    const allowed = allowedStatus(status);
    const v = f64();
    return {
      allowed,
      remaining: v[at],
      limit: v[at + 1],
      resetAt: Math.ceil(v[at + 2] / 1000),
      retryAfterMs: status === 1 ? 0 : Math.ceil(Math.max(0, v[at + 3] - nowUs) / 1000),
    };
  }

  /** `[status, remaining, limit, resetAtUs, retryAtUs]` of a call on a wasm limiter. */
  function raw(at, status) {
    const v = f64();
    return [status, v[at], v[at + 1], v[at + 2], v[at + 3]];
  }

  /** A token bucket (GCRA): `capacity` tokens, refilled `refillAmount` per `refillPeriodMs`. */
  class TokenBucket {
    #inner;
    #at;
    constructor(config) {
      const c = options(config, "TokenBucket config", ["capacity", "refillAmount", "refillPeriodMs"]);
      const capacity = integer("capacity", c.capacity, 1);
      const amount = integer("refillAmount", c.refillAmount ?? capacity, 1);
      const period = milliseconds("refillPeriodMs", c.refillPeriodMs ?? 1000, 0.001);
      try {
        this.#inner = new wasm.Gcra(capacity, amount, period);
      } catch (e) {
        throw configError(e, "TokenBucket");
      }
      this.#at = this.#inner.outPtr() >>> 3;
      this[SPEC] = ["gcra", capacity, amount, period];
      this.config = Object.freeze({ capacity, refillAmount: amount, refillPeriodMs: period / 1000 });
    }
    /** Take `cost` tokens if available at `now` (ms, default Date.now()). */
    check(opts) {
      return costed(opts, this.#at, (now, cost) => this.#inner.check(now, cost), decision);
    }
    /**
     * `check(opts).allowed`, without building the decision: the fast path
     * (with no options, one clock read and one wasm call).
     */
    allow(opts) {
      if (opts === undefined) return allowedStatus(this.#inner.allow(Date.now() * 1000, 1));
      return allowed(opts, (now, cost) => this.#inner.allow(now, cost));
    }
    /** What `check` would decide, consuming nothing. */
    peek(opts) {
      return costed(opts, this.#at, (now, cost) => this.#inner.peek(now, cost), decision);
    }
    [RAW](nowUs, cost, consume) {
      return raw(this.#at, consume ? this.#inner.check(nowUs, cost) : this.#inner.peek(nowUs, cost));
    }
    /** Take as many as available, up to `max`; `{taken, ...decision}`. */
    take(opts) {
      const o = options(opts, "options", ["max", "now"]);
      const max = integer("max", o.max ?? 1);
      const now = nowMicros(o.now);
      const status = this.#inner.atMost(now, max);
      return { taken: this.#inner.taken(), ...decision(this.#at, status, now) };
    }
    /** Give back up to `amount` tokens (never above capacity). */
    refund(opts) {
      const o = options(opts, "options", ["amount", "now"]);
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
      const s = options(state, "state", ["v", "tat", "rem"]);
      if (s.v !== 1 || !this.#inner.importState(new Float64Array([integer("state.tat", s.tat), integer("state.rem", s.rem)]))) {
        throw new TypeError("state is not a TokenBucket state from exportState()");
      }
      return this;
    }
    /** True when the bucket is full at `now`: dropping it grants nothing. */
    isIdle(opts) {
      return this.#inner.isIdle(nowMicros(options(opts, "options", NOW).now));
    }
    /** Free the wasm memory now (otherwise the garbage collector does it). */
    free() {
      this.#inner.free();
      this.#inner = freed("TokenBucket");
    }
  }

  function windowLimiter(Inner, kind) {
    return class {
      #inner;
      #at;
      constructor(config) {
        const c = options(config, `${kind} config`, Inner === wasm.SlidingLog ? ["limit", "windowMs", "slots"] : ["limit", "windowMs"]);
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
        this[SPEC] = Inner === wasm.SlidingLog ? ["log", limit, window, slots] : ["counter", limit, window];
        this.config = Object.freeze({ limit, windowMs: window / 1000 });
      }
      check(opts) {
        return costed(opts, this.#at, (now, cost) => this.#inner.check(now, cost), decision);
      }
      allow(opts) {
        if (opts === undefined) return allowedStatus(this.#inner.allow(Date.now() * 1000, 1));
        return allowed(opts, (now, cost) => this.#inner.allow(now, cost));
      }
      peek(opts) {
        return costed(opts, this.#at, (now, cost) => this.#inner.peek(now, cost), decision);
      }
      [RAW](nowUs, cost, consume) {
        return raw(this.#at, consume ? this.#inner.check(nowUs, cost) : this.#inner.peek(nowUs, cost));
      }
      exportState() {
        return { v: 1, data: Array.from(this.#inner.exportState()) };
      }
      importState(state) {
        const s = options(state, "state", ["v", "data"]);
        if (s.v !== 1 || !Array.isArray(s.data) || !this.#inner.importState(new Float64Array(s.data.map((x, i) => integer(`state.data[${i}]`, x))))) {
          throw new TypeError(`state is not a ${kind} state from exportState()`);
        }
        return this;
      }
      /** True when nothing counts any more at `now`: dropping it grants nothing. */
      isIdle(opts) {
        return this.#inner.isIdle(nowMicros(options(opts, "options", NOW).now));
      }
      /** Free the wasm memory now (otherwise the garbage collector does it). */
      free() {
        this.#inner.free();
        this.#inner = freed(kind);
      }
    };
  }

  /**
   * A sliding log: at most `limit` per `windowMs`, in `slots` (8, 64 default, 256) entries.
   * Exact while a window's admissions fit in the slots; beyond, the closest
   * entries merge into the later one (capacity comes back later, never
   * sooner): the slots never lower `limit`, and `remaining` is what can
   * really still be sent.
   */
  const SlidingLog = windowLimiter(wasm.SlidingLog, "SlidingLog");
  /** An O(1) sliding window counter: about `limit` per `windowMs`. */
  const SlidingWindow = windowLimiter(wasm.SlidingCounter, "SlidingWindow");

  const LIMITERS = [TokenBucket, SlidingLog, SlidingWindow];
  const isLimiter = (l) => LIMITERS.some((C) => l instanceof C);

  /**
   * Several limits checked all-or-nothing: admitted only if every member
   * admits; then every member is charged. The binding member is named.
   * Core decides: each member through its own wasm object, the set through
   * core's `policy::fold`. A limiter can be a member once (a second entry
   * for the same limiter would decide on one state twice).
   */
  class Policy {
    #members;
    constructor(members) {
      if (!Array.isArray(members) || members.length === 0) throw new TypeError("members must be a non-empty array of limiters or {limiter, cost}");
      const seen = new Map();
      this.#members = members.map((m, i) => {
        const limiter = isLimiter(m) ? m : options(m, `members[${i}]`, ["limiter", "cost"]).limiter;
        if (!isLimiter(limiter)) throw new TypeError(`members[${i}] is not a TokenBucket, SlidingLog or SlidingWindow`);
        if (seen.has(limiter)) throw new TypeError(`members[${i}] is the same limiter as members[${seen.get(limiter)}]: a limiter can be a member once (give it the summed cost instead)`);
        seen.set(limiter, i);
        const cost = isLimiter(m) || m.cost === undefined ? null : integer(`members[${i}].cost`, m.cost);
        return { limiter, cost };
      });
    }
    #decide(nowUs, cost, consume) {
      const raws = this.#members.map(({ limiter, cost: c }, i) => {
        const r = limiter[RAW](nowUs, c ?? cost, consume);
        if (r[0] < 0) throw new RangeError(`members[${i}]: cost ${c ?? cost} can never be allowed: it exceeds the limiter's capacity`);
        return r;
      });
      return { raws, set: wasm.policyFold(nowUs, new Float64Array(raws.flat())) };
    }
    #run(opts, consume) {
      const o = costOptions(opts);
      const cost = integer("cost", o.cost === undefined ? 1 : o.cost);
      const now = nowMicros(o.now);
      let r = this.#decide(now, cost, false);
      if (consume && r.set[0] === 1) r = this.#decide(now, cost, true);
      const [allowed, binding, remaining, limit, resetAt, retryAt] = r.set;
      const ms = (status, reset, retry) => ({
        resetAt: Math.ceil(reset / 1000),
        retryAfterMs: status === 1 ? 0 : Math.ceil(Math.max(0, retry - now) / 1000),
      });
      return {
        allowed: allowed === 1,
        binding,
        remaining,
        limit,
        ...ms(allowed, resetAt, retryAt),
        decisions: r.raws.map(([s, rem, lim, reset, retry]) => ({ allowed: s === 1, remaining: rem, limit: lim, ...ms(s, reset, retry) })),
      };
    }
    /** Admit `cost` (default 1, or each member's own) if every member allows it. */
    check(opts) { return this.#run(opts, true); }
    /** What `check` would decide, consuming nothing. */
    peek(opts) { return this.#run(opts, false); }
  }

  /** Thrown when a KeyedLimiter is full of active keys under `onFull: "deny"`. */
  class StoreFullError extends Error {
    constructor(max) {
      super(`keyed limiter full: ${max} active keys (raise maxKeys, or use onFull: "evictLru")`);
      this.name = "StoreFullError";
      this.code = "store_full";
    }
  }

  /**
   * One limiter per key (user, API key, IP…) in bounded memory: at most
   * `maxKeys` keys; idle keys (fully recovered) are dropped first, then a
   * full store refuses new keys (`onFull: "deny"`, default: it never admits
   * a key it cannot count) or evicts the least recently used (`"evictLru"`).
   * The states live in wasm; every decision and the eviction rule are
   * core's. The keys stay here, each mapped to its state's slot.
   */
  class KeyedLimiter {
    #inner;
    #at;
    #max;
    #maxKeyLength;
    /** Each held key's slot in the wasm store, and each slot's key. */
    #slots = new Map();
    #keys = [];
    constructor(make, config) {
      if (typeof make !== "function") throw new TypeError("the first argument must be a function making a limiter per key");
      const c = options(config, "KeyedLimiter config", ["maxKeys", "onFull", "maxKeyLength"]);
      this.#max = integer("maxKeys", c.maxKeys ?? 10000, 1);
      // The keys live in a JS Map, which holds at most 2^24 entries in V8.
      if (this.#max > 2 ** 24) throw new RangeError(`maxKeys must be at most ${2 ** 24}, got ${this.#max}`);
      const onFull = c.onFull ?? "deny";
      if (onFull !== "deny" && onFull !== "evictLru") throw new RangeError(`onFull must be "deny" or "evictLru", got ${onFull}`);
      this.#maxKeyLength = integer("maxKeyLength", c.maxKeyLength ?? 1024, 1);
      const sample = make();
      if (!isLimiter(sample)) throw new TypeError("the factory must return a TokenBucket, SlidingLog or SlidingWindow");
      const [kind, ...args] = sample[SPEC]; // the sample is the caller's: left to the GC
      const lru = onFull === "evictLru";
      if (kind === "gcra") this.#inner = wasm.KeyedStore.gcra(...args, this.#max, lru);
      else if (kind === "log") this.#inner = wasm.KeyedStore.slidingLog(...args, this.#max, lru);
      else this.#inner = wasm.KeyedStore.slidingCounter(...args, this.#max, lru);
      this.#at = this.#inner.outPtr() >>> 3;
    }
    get size() { return this.#inner.size(); }
    #key(key) {
      if (typeof key !== "string") throw new TypeError(`key must be a string, got ${key === null ? "null" : typeof key}`);
      if (key.length > this.#maxKeyLength) throw new RangeError(`key is ${key.length} characters, over maxKeyLength ${this.#maxKeyLength}`);
      return key;
    }
    /**
     * Core's status for `key` (checked, `key` validated): a held key by its
     * slot; a new one through core's rule for new keys, then the slots it
     * reports (given, emptied) mirrored here.
     */
    #check(key, now, cost) {
      const slot = this.#slots.get(key);
      if (slot !== undefined) {
        const status = this.#inner.check(slot, now, cost);
        if (status !== -3) return status;
        this.#forget(slot); // never expected: the store holds no key there; the key is new again
      }
      const status = this.#inner.check(-1, now, cost);
      if (status === -2) throw new StoreFullError(this.#max);
      const evicted = this.#inner.evicted();
      if (evicted >= 0) this.#forget(evicted);
      const given = this.#inner.inserted();
      if (given >= 0) {
        this.#slots.set(key, given);
        this.#keys[given] = key;
      }
      return status;
    }
    #forget(slot) {
      this.#slots.delete(this.#keys[slot]);
      this.#keys[slot] = undefined;
    }
    /** Check `cost` for `key`. Throws StoreFullError when a new key finds no room under `onFull: "deny"`. */
    check(key, opts) {
      const k = this.#key(key);
      return costed(opts, this.#at, (now, cost) => this.#check(k, now, cost), decision);
    }
    /** `check(key, opts).allowed`, without building the decision: the fast path. */
    allow(key, opts) {
      const k = this.#key(key);
      if (opts === undefined) return allowedStatus(this.#allow(k, Date.now() * 1000, 1));
      return allowed(opts, (now, cost) => this.#allow(k, now, cost));
    }
    /** `#check`'s status; a held key's without keeping the decision's numbers. */
    #allow(key, now, cost) {
      const slot = this.#slots.get(key);
      const status = slot === undefined ? -3 : this.#inner.allow(slot, now, cost);
      return status === -3 ? this.#check(key, now, cost) : status;
    }
    /** What `check` would decide for `key`, changing nothing. */
    peek(key, opts) {
      const k = this.#key(key);
      return costed(opts, this.#at, (now, cost) => this.#inner.peek(this.#slots.get(k) ?? -1, now, cost), decision);
    }
    /** `[status, remaining, limit, resetAtUs, retryAtUs]` for `key` (throws StoreFullError as `check` does). */
    [RAW](key, nowUs, cost, consume) {
      const k = this.#key(key);
      return raw(this.#at, consume ? this.#check(k, nowUs, cost) : this.#inner.peek(this.#slots.get(k) ?? -1, nowUs, cost));
    }
    /** A use of `key`, if held, without a decision: it becomes the most recently used. */
    [TOUCH](key) {
      const slot = this.#slots.get(key);
      if (slot !== undefined) this.#inner.touch(slot);
    }
    /** Drop every idle key; returns how many. */
    evictIdle(opts) {
      const emptied = this.#inner.evictIdle(nowMicros(options(opts, "options", NOW).now));
      for (const slot of emptied) this.#forget(slot);
      return emptied.length;
    }
    /** Free the wasm memory now (otherwise the garbage collector does it). */
    free() {
      this.#inner.free();
      this.#inner = freed("KeyedLimiter");
    }
  }

  return { TokenBucket, SlidingLog, SlidingWindow, Policy, KeyedLimiter, StoreFullError, raw: { ...wasm, memory } };
}
