// Budget windows whose state lives in Redis (core's budget module as the
// Rust backend's `budget.lua` runs it): many services share one budget per
// key, reserve → settle cannot overshoot. The script's config arguments and
// the usage check are core's (through wasm); replies become the results
// `ratebound/budget`'s Budget returns, through its own converters.

import { Budget, raw as wasm } from "../redis-wasm.js";
import { BudgetError, usageArgs, alertOut, reservedOut, settledOut, spentOut, statusOut, denialOut, run } from "../budget-api.js";
import { budgetConfigOf, configErrorOf, peekedOf, CORE, FROM_CORE } from "../budget-codec.js";
import { integer, milliseconds, options } from "../validate.js";
import { RedisUnavailableError } from "./errors.js";
import { failoverOptions } from "./failover.js";
import { RedisStore, replyInt as int } from "./store.js";
import { LocalKeys, callNow, tagOf, utf8, validName } from "./keys.js";

const USAGE = ["requests", "tokens", "cost", "now"];
const BUDGET_OPTIONS = ["name", "holdSlots", "onUnavailable", "retryAfterMs", "replicas", "local"];
/** Core's codes (ratebound_core::wire; the replay of the fixtures checks them). */
const UNKNOWN_RESERVATION = 2;
const REASONS = { 1: "throttled", 2: "too_many_reservations" };
const MAX_AMOUNT = wasm.Budget.maxAmount();

/** An alert row as core's (serde) alert, under the limits the call ran with. */
function alert([kind, i, bp, util, at, start], limits) {
  const l = limits[i];
  if (l === undefined) throw new TypeError(`an alert for limit ${i} from Redis, beyond the config`);
  return { kind: kind === 1 ? "limit_hit" : "threshold", limit: i, dimension: l.dimension, horizon: l.horizon, threshold_bp: bp, utilization_bp: util, at, window_start: start };
}


/**
 * A budget per key (a user, a team, a project) shared through Redis: the
 * same config, windows, holds, alerts and throttling as
 * `ratebound/budget`'s Budget, one state per key under `prefix{key}:name`
 * (the Rust backend's layout: Rust and Node services share it).
 */
export class RedisBudget {
  #store;
  #budget;
  #slots;
  #config;
  #name;
  #policy;
  #failover;
  #replicas;
  #retryAfterUs;
  /** This replica's share per key, in memory (`local` only). */
  #local = null;

  constructor(store, config, opts) {
    if (!(store instanceof RedisStore)) throw new TypeError("store must be a RedisStore");
    const o = options(opts, "RedisBudget options", BUDGET_OPTIONS);
    this.#slots = integer("holdSlots", o.holdSlots ?? 64, 1);
    if (this.#slots > 1024) throw new RangeError("holdSlots must be at most 1024");
    this.#budget = new Budget({ ...config, holdSlots: 64 });
    this.#name = validName(o.name ?? "budget");
    this.#store = store;
    const f = failoverOptions(o);
    [this.#policy, this.#failover, this.#replicas, this.#retryAfterUs] = [f.policy, f.failover, f.replicas, f.retryAfterUs];
    if (f.localMaxKeys !== null) {
      // In-memory budgets hold 4 or 64 reservations: the nearest that covers holdSlots, at most 64.
      const slots = this.#slots <= 4 ? 4 : 64;
      this.#local = new LocalKeys(f.localMaxKeys, () => new Budget(FROM_CORE, { flat: this.#budget[CORE].shareConfig(this.#replicas), slots }));
    }
    this.#configured();
    this.config = Object.freeze({ ...this.#budget.config, holdSlots: this.#slots });
  }

  /** The script's arguments and the limits its replies index, swapped together (a call in flight keeps the pair it started with). */
  #configured() {
    const inner = this.#budget[CORE];
    this.#config = { args: Array.from(inner.redisConfig(this.#slots), (x) => String(x)), limits: budgetConfigOf(inner.config()).limits };
  }

  /** True while the last call found Redis unavailable. */
  get unavailable() {
    return this.#failover.down;
  }

  /**
   * Change the config for every key, keeping each key's usage, holds and
   * throttling in Redis (core's `Budget::reconfigure`, read by the script
   * on each key's next call); refused with a RangeError (nothing changed)
   * for a new UTC offset. This replica's: make the change on each.
   */
  reconfigure(config) {
    this.#budget.reconfigure({ ...config, holdSlots: 64 });
    this.#configured();
    const share = this.#budget[CORE].shareConfig(this.#replicas);
    for (const local of this.#local?.values() ?? []) {
      // The same change as the whole budget's, which core accepted: a refusal here is a bug.
      try {
        local[CORE].reconfigure(share);
      } catch (e) {
        throw new Error(`the local fallback refused the share of an accepted change: ${configErrorOf(e)?.message ?? e}`);
      }
    }
    this.config = Object.freeze({ ...this.#budget.config, holdSlots: this.#slots });
    return this;
  }

  #usage(u, check) {
    const o = options(u, "usage", USAGE);
    const amounts = usageArgs(o);
    if (check) {
      const e = this.#budget[CORE].usageError(...amounts);
      if (e) throw new BudgetError(e);
    }
    return { amounts: amounts.map((x) => Math.min(x, MAX_AMOUNT)), nowUs: this.#now(o) };
  }

  #now(o) {
    return callNow(o, this.#store.callerTime, milliseconds);
  }

  /** One call of the budget script: `[code, result, alerts, state]` as numbers, alerts as core's. */
  async #call(tag, op, id, amounts, nowUs) {
    const store = this.#store;
    const { args: config, limits } = this.#config;
    const key = wasm.redisKey(store.prefix, tag, utf8.encode(this.#name));
    const args = [store.ttlMargin, op, String(Math.min(id, Number.MAX_SAFE_INTEGER)), ...amounts.map(String), store.withState ? "1" : "0", ...config];
    const admission = op === "reserve" || op === "try_spend";
    const reply = await store.invoke("budget", op === "peek" || op === "status", admission, [key], args, nowUs);
    if (!Array.isArray(reply) || reply.length !== 4 || !Array.isArray(reply[1]) || !Array.isArray(reply[2]) || !Array.isArray(reply[3])) {
      throw new TypeError(`unexpected budget reply from Redis: ${JSON.stringify(reply)}`);
    }
    return { code: int(reply[0]), result: reply[1].map(int), alerts: reply[2].map((a) => alert(a.map(int), limits)), state: reply[3].map(int), limits };
  }

  #denial(reason, retry, limit) {
    return { reason: REASONS[reason] ?? "limit", retry_at: retry, limit: limit < 0 ? null : limit };
  }

  /** This replica's in-memory share of `key`'s budget (`local`). */
  #localBudget(tag) {
    return this.#local.get(tag);
  }

  /**
   * Before the local share decides: a denial until Redis may be back when
   * the budget fits the usage but the share never can (core's
   * `Budget::share_refusal`), or null to decide it locally. Callers take
   * the key's local budget first: a refused call is a use of the key too.
   */
  #shareRefusal(amounts, nowUs) {
    const now = nowUs ?? Math.floor(Date.now() * 1000);
    const d = peekedOf(run(() => this.#budget[CORE].shareRefusal(this.#replicas, now + this.#retryAfterUs, ...amounts)));
    return d && { ...denialOut(d, now), source: "local" };
  }

  /**
   * Run `op` on Redis through the failure policy: `{value}` from Redis, or
   * `{fallback: "failOpen" | "local"}`; throws under `closed`.
   */
  async #shared(call) {
    const r = await this.#failover.run(call);
    if ("value" in r) return r;
    if (this.#policy === "closed") throw r.unavailable;
    return { fallback: this.#policy === "open" ? "failOpen" : "local" };
  }

  /** With `withState` (tests, replays): the state after the call and core's own result (µs, serde form). */
  #withState(out, r, core) {
    if (this.#store.withState) {
      out.state = r.state;
      out.core = core;
    }
    return out;
  }

  /**
   * Hold an estimate (`{requests = 1, tokens, cost}`) for `key` until
   * settled or released (or it lapses): `{allowed: true, id, expiresAt,
   * usage, alerts, source}` or `{allowed: false, reason, retryAfterMs, …}`.
   * Pass the whole result to `settle` / `release` (it says where the hold is).
   */
  async reserve(key, usage) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const { amounts, nowUs } = this.#usage(usage, true);
    const r = await this.#shared(() => this.#call(tag, "reserve", 0, amounts, nowUs));
    if (r.fallback === "failOpen") return { allowed: true, id: null, expiresAt: null, usage: { requests: amounts[0], tokens: amounts[1], cost: amounts[2] }, alerts: [], source: "failOpen" };
    if (r.fallback === "local") {
      const local = this.#localBudget(tag);
      const refused = this.#shareRefusal(amounts, nowUs);
      if (refused) return { ...refused, alerts: [] };
      return { ...local.reserve(this.#localUsage(amounts, nowUs)), source: "local" };
    }
    const { result: n, alerts, state } = r.value;
    const core = {
      admission: n[0] === 1 ? { granted: { id: n[1], expires: n[2], usage: { requests: amounts[0], tokens: amounts[1], cost: amounts[2] } } } : { denied: this.#denial(n[1], n[2], n[3]) },
      alerts,
    };
    return this.#withState({ ...reservedOut(core, this.#store.nowFor(nowUs)), source: "redis" }, { state }, core);
  }

  /** Usage for the local fallback, at the caller's time when it gives one. */
  #localUsage([requests, tokens, cost], nowUs) {
    return nowUs === undefined ? { requests, tokens, cost } : { requests, tokens, cost, now: nowUs / 1000 };
  }

  /** `reservation`: what `reserve` returned (or a Redis hold's id). */
  #hold(reservation) {
    if (typeof reservation === "number") return { id: integer("id", reservation), source: "redis" };
    const h = options(reservation, "reservation", ["allowed", "id", "expiresAt", "usage", "alerts", "source", "state", "core"]);
    if (h.allowed !== true || !["redis", "local", "failOpen"].includes(h.source)) throw new TypeError("reservation must be a granted reservation from reserve() (or a hold id)");
    return { id: h.source === "failOpen" ? null : integer("id", h.id), source: h.source };
  }

  /** Charge the actual usage of a reservation: `{charged, late, alerts, source}`. */
  async settle(key, reservation, usage) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const hold = this.#hold(reservation);
    const { amounts, nowUs } = this.#usage(usage, false);
    if (hold.source === "failOpen") return { charged: { requests: 0, tokens: 0, cost: 0 }, late: false, alerts: [], source: "failOpen" };
    if (hold.source === "local") return { ...this.#localBudget(tag).settle(hold.id, this.#localUsage(amounts, nowUs)), source: "local" };
    // Settles are applied whenever they arrive, and never fail over: the
    // usage happened, and only Redis holds the reservation.
    const r = await this.#call(tag, "settle", hold.id, amounts, nowUs);
    if (r.code === UNKNOWN_RESERVATION) throw new BudgetError("unknown_reservation");
    const core = { charged: { requests: amounts[0], tokens: amounts[1], cost: amounts[2] }, late: r.result[0] === 1, alerts: r.alerts };
    return this.#withState({ ...settledOut(core), source: "redis" }, r, core);
  }

  /** Free a reservation unused: `{source}`. */
  async release(key, reservation, opts) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const hold = this.#hold(reservation);
    const nowUs = this.#now(options(opts, "options", ["now"]));
    if (hold.source === "failOpen") return { source: "failOpen" };
    if (hold.source === "local") {
      this.#localBudget(tag).release(hold.id, nowUs === undefined ? undefined : { now: nowUs / 1000 });
      return { source: "local" };
    }
    const r = await this.#call(tag, "release", hold.id, [0, 0, 0], nowUs);
    if (r.code === UNKNOWN_RESERVATION) throw new BudgetError("unknown_reservation");
    return this.#withState({ source: "redis" }, r, null);
  }

  /** Record usage that already happened (never refused): `{alerts, source}`. */
  async record(key, usage) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const { amounts, nowUs } = this.#usage(usage, false);
    const r = await this.#shared(() => this.#call(tag, "record", 0, amounts, nowUs));
    if (r.fallback === "failOpen") return { alerts: [], source: "failOpen" };
    if (r.fallback === "local") return { ...this.#localBudget(tag).record(this.#localUsage(amounts, nowUs)), source: "local" };
    const { alerts } = r.value;
    return this.#withState({ alerts: alerts.map(alertOut), source: "redis" }, r.value, alerts);
  }

  /** Spend if it fits now: `{allowed, alerts, source, …}`. */
  async trySpend(key, usage) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const { amounts, nowUs } = this.#usage(usage, true);
    const r = await this.#shared(() => this.#call(tag, "try_spend", 0, amounts, nowUs));
    if (r.fallback === "failOpen") return { allowed: true, alerts: [], source: "failOpen" };
    if (r.fallback === "local") {
      const local = this.#localBudget(tag);
      const refused = this.#shareRefusal(amounts, nowUs);
      if (refused) return { ...refused, alerts: [] };
      return { ...local.trySpend(this.#localUsage(amounts, nowUs)), source: "local" };
    }
    const n = r.value.result;
    const core = { denied: n[0] === 1 ? this.#denial(n[1], n[2], n[3]) : null, alerts: r.value.alerts };
    return this.#withState({ ...spentOut(core, this.#store.nowFor(nowUs)), source: "redis" }, r.value, core);
  }

  /** What `reserve` / `trySpend` would decide, changing nothing: `{allowed: true}` or the denial. */
  async peek(key, usage) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const { amounts, nowUs } = this.#usage(usage, true);
    const r = await this.#shared(() => this.#call(tag, "peek", 0, amounts, nowUs));
    if (r.fallback === "failOpen") return { allowed: true, source: "failOpen" };
    if (r.fallback === "local") {
      const local = this.#localBudget(tag);
      const refused = this.#shareRefusal(amounts, nowUs);
      if (refused) return refused;
      return { ...local.peek(this.#localUsage(amounts, nowUs)), source: "local" };
    }
    const n = r.value.result;
    const denial = n[0] === 1 ? this.#denial(n[1], n[2], n[3]) : null;
    const out = denial ? denialOut(denial, this.#store.nowFor(nowUs)) : { allowed: true };
    return this.#withState({ ...out, source: "redis" }, r.value, denial);
  }

  /** Usage per limit, holds and throttling of `key` (the local share's while it stands in). */
  async status(key, opts) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const nowUs = this.#now(options(opts, "options", ["now"]));
    const r = await this.#shared(() => this.#call(tag, "status", 0, [0, 0, 0], nowUs));
    if (r.fallback === "local") return { ...this.#localBudget(tag).status(nowUs === undefined ? undefined : { now: nowUs / 1000 }), source: "local" };
    if (r.fallback === "failOpen") throw new RedisUnavailableError("Redis is unavailable, and under onUnavailable: \"open\" nothing is counted: no status to report", "skipped");
    const [throttled, until, holds, ...per] = r.value.result;
    const limits = r.value.limits.map((limit, i) => {
      const [used, reserved, util, start, end] = per.slice(i * 5, i * 5 + 5);
      return { limit, used, reserved, utilization_bp: util, window_start: start, window_end: end };
    });
    const core = { limits, throttled: throttled === 1, throttle_until: throttled === 1 ? until : null, holds };
    return this.#withState({ ...statusOut(core), source: "redis" }, r.value, core);
  }

  /** Forget `key`'s usage and holds (ids stay unique), in Redis and in the local fallback. */
  async reset(key) {
    const tag = tagOf(key, this.#store.maxTagLength);
    this.#local?.peek(tag)?.reset();
    await this.#call(tag, "reset", 0, [0, 0, 0], undefined);
  }
}
