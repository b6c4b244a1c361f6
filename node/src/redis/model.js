// Model quotas whose state lives in Redis (core's model_quota as the Rust
// backend's `model.lua` runs it): an LLM gateway's total and success counts
// per key (a user and model), shared by every replica, with holds for the
// requests in flight. Arguments from core (wasm); replies shaped as
// `ratebound/model-quota`'s ModelQuota answers.

import { ModelQuota, raw as wasm } from "../redis-wasm.js";
import { CORE, FROM_CORE } from "../budget-codec.js";
import { modelDecisionOut } from "../model-quota-api.js";
import { integer, milliseconds, options } from "../validate.js";
import { failoverOptions } from "./failover.js";
import { RedisStore, replyInt as int } from "./store.js";
import { LocalKeys, callNow, tagOf, utf8, validName } from "./keys.js";

const MODEL_OPTIONS = ["name", "onUnavailable", "retryAfterMs", "replicas", "local"];
/** Core's blocked codes (ratebound_core::wire::blocked_code; std-adapters/tests/wire.rs checks this copy). */
const BLOCKED = [null, "total", "success", "in_flight"];


const row = (r) => {
  if (!Array.isArray(r)) throw new TypeError(`unexpected reply row from Redis: ${JSON.stringify(r)}`);
  if (r.length === 0) return null;
  const [status, remaining, limit, reset, retry] = r.map(int);
  return { allowed: status === 1, remaining, limit, reset_at: reset, retry_at: retry };
};

/**
 * Model quotas per key shared through Redis: at most `successMax`
 * successful requests (and `totalMax` admitted) in any `periodMs`, holds
 * reserved at admission so concurrent requests cannot overshoot; one state
 * per key under `prefix{key}:m` (the Rust backend's layout).
 */
export class RedisModelQuota {
  #store;
  #quota;
  #args;
  #name;
  #policy;
  #failover;
  #replicas;
  /** This replica's share per key, in memory (`local` only). */
  #local = null;

  constructor(store, config, opts) {
    if (!(store instanceof RedisStore)) throw new TypeError("store must be a RedisStore");
    const o = options(opts, "RedisModelQuota options", MODEL_OPTIONS);
    this.#quota = new ModelQuota(config);
    const inner = this.#quota[CORE];
    const nums = Array.from(inner.redisConfig(0), (x) => String(x));
    this.#args = [...nums.slice(0, 3), inner.windowName(0), ...nums.slice(3)];
    this.#name = validName(o.name ?? "m");
    this.#store = store;
    const f = failoverOptions(o);
    [this.#policy, this.#failover, this.#replicas] = [f.policy, f.failover, f.replicas];
    if (f.localMaxKeys !== null) {
      let share;
      try {
        share = inner.shareConfig(0, this.#replicas);
      } catch (e) {
        throw typeof e === "string" ? new RangeError(`replicas: ${e}`) : e;
      }
      this.#local = new LocalKeys(f.localMaxKeys, () => new ModelQuota(FROM_CORE, { flat: share }));
    }
    this.config = this.#quota.config;
  }

  /** True while the last call found Redis unavailable. */
  get unavailable() {
    return this.#failover.down;
  }

  #now(o) {
    return callNow(o, this.#store.callerTime, milliseconds);
  }

  async #call(tag, op, hold, success, nowUs) {
    const store = this.#store;
    const key = wasm.redisKey(store.prefix, tag, utf8.encode(this.#name));
    const args = [store.ttlMargin, op, String(hold), success ? "success" : "failure", store.withState ? "1" : "0", ...this.#args];
    const reply = await store.invoke("model", op === "peek", op === "admit", [key], args, nowUs);
    if (!Array.isArray(reply)) throw new TypeError(`unexpected model reply from Redis: ${JSON.stringify(reply)}`);
    return reply;
  }

  #decision(reply) {
    const [now, hold, inFlight, blocked, total, success, state] = reply;
    const code = int(blocked);
    if (!(code in BLOCKED)) throw new TypeError(`unknown blocked code ${code} from Redis`);
    const core = { blocked: BLOCKED[code], hold: int(hold) < 0 ? null : int(hold), in_flight: int(inFlight), now: int(now), success: row(success), total: row(total) };
    const out = { ...modelDecisionOut(core), source: "redis" };
    if (this.#store.withState) {
      out.core = core;
      out.state = state.map(int);
    }
    return out;
  }

  #localQuota(tag) {
    return this.#local.get(tag);
  }

  async #admission(op, key, opts) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const nowUs = this.#now(options(opts, "options", ["now"]));
    const r = await this.#failover.run(() => this.#call(tag, op, 0, false, nowUs));
    if ("value" in r) return this.#decision(r.value);
    if (this.#policy === "closed") throw r.unavailable;
    if (this.#policy === "open") {
      if (op === "peek") throw r.unavailable;
      return { allowed: true, hold: null, inFlight: 0, blocked: null, retryAfterMs: 0, total: null, success: null, source: "failOpen" };
    }
    const local = this.#localQuota(tag);
    const at = nowUs === undefined ? undefined : { now: nowUs / 1000 };
    return { ...(op === "admit" ? local.admit(at) : local.peek(at)), source: "local" };
  }

  /** Admit one request for `key`: `{allowed, hold, inFlight, blocked, retryAfterMs, total, success, source}`. Settle the result when the outcome is known. */
  admit(key, opts) {
    return this.#admission("admit", key, opts);
  }

  /** What `admit` would decide, changing nothing (throws RedisUnavailableError while Redis is unavailable under "closed" and "open"). */
  peek(key, opts) {
    return this.#admission("peek", key, opts);
  }

  /**
   * Settle an admission (what `admit` returned, or a Redis hold's id) with
   * `{success}`: "held", or "lapsed" when its hold had expired (a success
   * still counts). Settles never fail over: the outcome happened, and only
   * the place that holds the hold can settle it.
   */
  async settle(key, admission, opts) {
    const tag = tagOf(key, this.#store.maxTagLength);
    const o = options(opts, "options", ["success", "now"]);
    if (typeof o.success !== "boolean") throw new TypeError("options.success must be true or false");
    const nowUs = this.#now(o);
    let hold, source;
    if (typeof admission === "number") [hold, source] = [integer("hold", admission), "redis"];
    else {
      const a = options(admission, "admission", ["allowed", "hold", "inFlight", "blocked", "retryAfterMs", "total", "success", "source", "core", "state"]);
      if (a.allowed !== true || !["redis", "local", "failOpen"].includes(a.source)) throw new TypeError("admission must be an allowed result of admit() (or a hold id)");
      [hold, source] = [a.source === "failOpen" ? null : integer("hold", a.hold), a.source];
    }
    if (source === "failOpen") return "held";
    if (source === "local") return this.#localQuota(tag).settle(hold, { success: o.success, ...(nowUs === undefined ? {} : { now: nowUs / 1000 }) });
    const reply = await this.#call(tag, "settle", hold, o.success, nowUs);
    if (!Array.isArray(reply) || reply.length < 2) throw new TypeError(`unexpected settle reply from Redis: ${JSON.stringify(reply)}`);
    const settled = int(reply[1]) === 1 ? "held" : "lapsed";
    if (this.#store.withState) return { settled, state: (reply[2] ?? []).map(int) };
    return settled;
  }
}


