// Limiters and policy sets whose per-key states live in Redis: the
// in-memory limiters' configs as script arguments (core's derived numbers
// through wasm), one round trip per decision (a set all or nothing), the
// replies folded by core (`policyFold`), and the failure policy.

import { TokenBucket, SlidingLog, SlidingWindow, KeyedLimiter } from "../node.js";
// The key layout, GCRA arguments, shares and the fold: core, through
// ratebound/redis's own wasm module (the limiters' module stays small).
import { raw as wasm } from "../redis-wasm.js";
import { RAW, SPEC, TOUCH } from "../api.js";
import { integer, milliseconds, options, costOptions } from "../validate.js";
import { RedisUnavailableError } from "./errors.js";
import { failoverOptions } from "./failover.js";
import { RedisStore, replyInt as int } from "./store.js";
import { LATIN1, callNow, tagOf, utf8, validName } from "./keys.js";

const isLimiter = (l) => l instanceof TokenBucket || l instanceof SlidingLog || l instanceof SlidingWindow;

/** One member: its name, key suffix, script arguments and capacity. */
function member(name, entry) {
  validName(name);
  const limiter = isLimiter(entry) ? entry : options(entry, `limits.${name}`, ["limiter", "cost"]).limiter;
  if (!isLimiter(limiter)) throw new TypeError(`limits.${name} is not a TokenBucket, SlidingLog or SlidingWindow (or { limiter, cost })`);
  // A fixed cost per call (e.g. 1 request) beside members charged the call's cost (e.g. tokens).
  const fixed = isLimiter(entry) || entry.cost === undefined ? null : integer(`limits.${name}.cost`, entry.cost);
  const nameBytes = utf8.encode(name);
  const [kind, ...cfg] = limiter[SPEC];
  const m = { name, nameBytes, kind, cfg, fixed };
  if (kind === "gcra") {
    const [capacity, amount, periodUs] = cfg;
    const [p, a, tauUs, tauRem] = wasm.gcraRedisArgs(capacity, amount, periodUs);
    m.capacity = capacity;
    m.gcra = { p, a, tauUs, tauRem };
    m.args = (cost) => ["g", String(cost), String(capacity), String(p), String(a), String(tauUs), String(tauRem)];
  } else if (kind === "log") {
    const [limit, windowUs, slots] = cfg;
    m.capacity = limit;
    m.args = (cost) => ["l", String(cost), String(limit), String(windowUs), String(slots)];
  } else {
    const [limit, windowUs] = cfg;
    m.capacity = limit;
    m.args = (cost) => ["c", String(cost), String(limit), String(windowUs)];
  }
  return m;
}

/** A limiter of this replica's share of `m` (core's share), for the local fallback. */
function shareOf(m, replicas) {
  if (m.kind === "gcra") {
    const [capacity, amount, periodUs] = wasm.gcraShare(...m.cfg, replicas);
    return { capacity, make: () => new TokenBucket({ capacity, refillAmount: amount, refillPeriodMs: periodUs / 1000 }) };
  }
  const [limit, windowUs, slots] = m.cfg;
  const capacity = wasm.shareOf(limit, replicas);
  if (m.kind === "log") return { capacity, make: () => new SlidingLog({ limit: capacity, windowMs: windowUs / 1000, slots }) };
  return { capacity, make: () => new SlidingWindow({ limit: capacity, windowMs: windowUs / 1000 }) };
}

function costError(cost, m, i) {
  const e = new RangeError(`${cost === null ? "the cost" : `cost ${cost}`} can never be allowed: it exceeds ${m.name}'s capacity ${m.capacity}`);
  e.member = i;
  return e;
}


const LIMITER_OPTIONS = ["onUnavailable", "retryAfterMs", "replicas", "local"];

/**
 * Limits per key shared through Redis: one limiter, or several decided all
 * or nothing in one round trip, each key's state under `prefix{key}:name`
 * (the Rust backend's layout: a Rust and a Node service share one limit).
 */
export class RedisLimiter {
  #store;
  #members;
  #policy;
  #failover;
  /** Per member, this replica's share in memory (`local` only): `{ keyed }`. */
  #local = null;
  #replicas;
  #retryAfterUs;

  /**
   * @param store a RedisStore
   * @param limits `{ name: limiter }`: TokenBucket, SlidingLog or SlidingWindow
   * @param opts `{ onUnavailable: "closed" | "open" | "local", retryAfterMs, replicas, local: { maxKeys } }`
   */
  constructor(store, limits, opts) {
    if (!(store instanceof RedisStore)) throw new TypeError("store must be a RedisStore");
    if (limits === null || typeof limits !== "object" || isLimiter(limits)) {
      throw new TypeError("limits must be an object of named limiters, e.g. { api: new TokenBucket(...) }");
    }
    const names = Object.keys(limits);
    if (names.length === 0) throw new TypeError("limits must name at least one limiter");
    this.#store = store;
    this.#members = names.map((n) => member(n, limits[n]));
    const o = options(opts, "RedisLimiter options", LIMITER_OPTIONS);
    const f = failoverOptions(o);
    [this.#policy, this.#failover, this.#replicas, this.#retryAfterUs] = [f.policy, f.failover, f.replicas, f.retryAfterUs];
    if (f.localMaxKeys !== null) {
      // Each member's store evicts its least recently used key when full: a
      // store that refused new keys could refuse one member of a set after
      // another was charged (the members' stores forget idle keys at
      // different times), and a fallback must answer.
      this.#local = this.#members.map((m) => {
        const share = shareOf(m, this.#replicas);
        return { keyed: new KeyedLimiter(share.make, { maxKeys: f.localMaxKeys, onFull: "evictLru", maxKeyLength: Number.MAX_SAFE_INTEGER }) };
      });
    }
    this.names = Object.freeze(names);
  }

  /** True while the last call found Redis unavailable (the failure policy answers). */
  get unavailable() {
    return this.#failover.down;
  }

  #tag(key) {
    return tagOf(key, this.#store.maxTagLength);
  }

  #now(o) {
    return callNow(o, this.#store.callerTime, milliseconds);
  }

  /** Each member's cost: its fixed one, else the call's; a cost above a capacity is a RangeError naming the member. */
  #costs(cost) {
    return this.#members.map((m, i) => {
      const c = m.fixed ?? cost;
      if (c > m.capacity) throw costError(c, m, i);
      return c;
    });
  }

  /** One call of the scripts: `mode` over the members; the reply as core's numbers. */
  async #shared(mode, tag, costs, nowUs, members = this.#members) {
    const store = this.#store;
    const keys = members.map((m) => wasm.redisKey(store.prefix, tag, m.nameBytes));
    const state = store.withState ? "1" : "0";
    const admission = mode === "check" || mode === "at_most";
    const [one] = members;
    // The common call, one GCRA checked whose interval is whole µs, has a lean entry point.
    if (mode === "check" && members.length === 1 && one.gcra && one.gcra.a === 1) {
      const g = one.gcra;
      const reply = await store.invoke("gcra", false, true, keys, [store.ttlMargin, state, String(costs[0]), String(one.capacity), String(g.p), String(g.tauUs)], nowUs);
      if (!Array.isArray(reply) || reply.length < 5) throw new TypeError(`unexpected reply from Redis: ${JSON.stringify(reply)}`);
      const v = reply.map(int);
      return { now: v[0], rows: [[v[1], v[2], one.capacity, v[3], v[4], 0, ...v.slice(5)]] };
    }
    const args = [store.ttlMargin, mode, state, String(members.length), ...members.flatMap((m, i) => m.args(costs[i]))];
    const reply = await store.invoke("limit", mode === "peek", admission, keys, args, nowUs);
    if (!Array.isArray(reply) || reply.length !== members.length + 1) throw new TypeError(`unexpected reply from Redis: ${JSON.stringify(reply)}`);
    return { now: int(reply[0]), rows: reply.slice(1).map((r) => (Array.isArray(r) ? r.map(int) : int(r))) };
  }

  /** The answer of this replica's share, in memory (`local`). */
  #localDecision(tag, costs, consume, nowUs) {
    // The in-memory store is keyed by strings: the tag's bytes, one char each.
    const key = LATIN1.decode(tag);
    const now = nowUs ?? Math.floor(Date.now() * 1000);
    const local = this.#local;
    const decide = (take) => local.map(({ keyed }, i) => keyed[RAW](key, now, costs[i], take));
    const retryAt = now + this.#retryAfterUs;
    const refusal = (ids) => wasm.limitsShareRefusal(this.#replicas, now, retryAt, new Float64Array(ids.flatMap((i) => [this.#members[i].capacity, costs[i]])));
    // A cost that fits a whole limit but never its share: only Redis can
    // decide the call, refused until it may be back (core's rule); each
    // member's row says what its own share would.
    const set = refusal(local.map((_, i) => i));
    if (set.length > 0) {
      const rows = local.map((_, i) => {
        const own = refusal([i]);
        return own.length > 0 ? [0, ...own.slice(2), 0] : local[i].keyed[RAW](key, now, costs[i], false);
      });
      if (consume) this.#touch(key);
      return { now, rows, set };
    }
    let rows = decide(false);
    if (consume && rows.every((r) => r[0] === 1)) rows = decide(true);
    else if (consume) this.#touch(key);
    return { now, rows };
  }

  /**
   * A refused call is a use of the key too, in every member's store: a key
   * refused while it keeps calling stays recently used, not the first one
   * forgotten (with its counts).
   */
  #touch(key) {
    for (const { keyed } of this.#local) keyed[TOUCH](key);
  }

  async #run(mode, key, opts) {
    const members = this.#members;
    const tag = this.#tag(key);
    const o = costOptions(opts);
    const cost = integer("cost", o.cost === undefined ? 1 : o.cost);
    const costs = this.#costs(cost);
    const nowUs = this.#now(o);
    const r = await this.#failover.run(() => this.#shared(mode, tag, costs, nowUs, members));
    if ("value" in r) return this.#decision(r.value, "redis", members);
    if (this.#policy === "closed") throw r.unavailable;
    if (this.#policy === "open") {
      // Admitted uncounted (core's Decision::uncounted per member, folded: the binding member has least left).
      const now = nowUs ?? Math.floor(Date.now() * 1000);
      const flat = wasm.uncountedRows(now, new Float64Array(members.flatMap((m, i) => [m.capacity, costs[i]])));
      const rows = members.map((_, i) => [...flat.slice(5 * i, 5 * i + 5), 0]);
      return this.#decision({ now, rows }, "failOpen", members);
    }
    return this.#decision(this.#localDecision(tag, costs, mode === "check", nowUs), "local", members);
  }

  #decision({ now, rows, set: given }, source, members) {
    rows.forEach((row, i) => {
      if (row[0] === -1) throw costError(null, members[i], i);
    });
    const set = given ?? wasm.policyFold(now, new Float64Array(rows.flatMap((r) => r.slice(0, 5))));
    const ms = (status, reset, retry) => ({ resetAt: Math.ceil(reset / 1000), retryAfterMs: status === 1 ? 0 : Math.ceil(Math.max(0, retry - now) / 1000) });
    const out = {
      allowed: set[0] === 1,
      remaining: set[2],
      limit: set[3],
      ...ms(set[0], set[4], set[5]),
      binding: set[1] >= 0 ? members[set[1]].name : null,
      source,
      decisions: rows.map(([s, remaining, limit, reset, retry]) => ({ allowed: s === 1, remaining, limit, ...ms(s, reset, retry) })),
    };
    if (this.#store.withState) {
      // For tests and replays: the states, and every number in core's µs.
      out.states = rows.map((r) => r.slice(6));
      out.exact = { now, set: Array.from(set), members: rows.map((r) => r.slice(0, 5)) };
    }
    return out;
  }

  /** Check `cost` (default 1) for `key` against every limit, all or nothing. */
  check(key, opts) {
    return this.#run("check", key, opts);
  }
  /** `(await check(key, opts)).allowed`. */
  async allow(key, opts) {
    return (await this.#run("check", key, opts)).allowed;
  }
  /** What `check` would decide, changing nothing. */
  peek(key, opts) {
    return this.#run("peek", key, opts);
  }
  /** One TokenBucket only: take as many as available, up to `max`; `{taken, ...decision}`. */
  async take(key, opts) {
    const o = options(opts, "options", ["max", "now"]);
    return this.#gcraOp("at_most", key, integer("max", o.max ?? 1), o);
  }
  /** One TokenBucket only: give back up to `amount` tokens (never above capacity). */
  async refund(key, opts) {
    const o = options(opts, "options", ["amount", "now"]);
    return this.#gcraOp("refund", key, integer("amount", o.amount ?? 1), o);
  }
  async #gcraOp(mode, key, cost, o) {
    if (this.#members.length !== 1 || this.#members[0].kind !== "gcra") throw new TypeError(`${mode === "refund" ? "refund" : "take"} needs a RedisLimiter of one TokenBucket`);
    const tag = this.#tag(key);
    const nowUs = this.#now(o);
    // Capped as core caps them: larger never changes the answer (and stays exact in Lua).
    const r = await this.#failover.run(() => this.#shared(mode, tag, [Math.min(cost, Number.MAX_SAFE_INTEGER)], nowUs));
    if (!("value" in r)) throw r.unavailable;
    const d = this.#decision(r.value, "redis", this.#members);
    return { taken: r.value.rows[0][5], ...d };
  }
}
