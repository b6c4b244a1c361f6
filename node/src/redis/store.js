// A Redis (through the caller's client) running ratebound's Lua code: the
// library loaded once, calls with one timeout each, admissions carrying a
// deadline in Redis time so that a call Redis starts after the caller gave
// up changes nothing. Port of the Rust store's transport
// (std-adapters/src/redis/store.rs); the decisions are the scripts'.

import { ENTRY, LIBRARY } from "./code.js";
import { RedisUnavailableError, classify } from "./errors.js";
import { integer, options } from "../validate.js";
import { raw as wasm } from "../redis-wasm.js";

/** How often the store learns Redis's clock again (for call deadlines). */
const CLOCK_SYNC_MS = 10_000;

const localUs = () => performance.now() * 1000;

/** Redis's clock as seen from here: `redisUs ≈ localUs + offset`, a lower bound. */
class ServerClock {
  #offset = 0;
  #synced = -Infinity;
  #syncing = false;
  get stale() {
    return !this.#syncing && performance.now() - this.#synced > CLOCK_SYNC_MS;
  }
  async sync(send) {
    this.#syncing = true;
    try {
      const reply = await send(["TIME"]);
      const received = localUs();
      if (!Array.isArray(reply) || reply.length !== 2) throw new TypeError(`unexpected TIME reply ${JSON.stringify(reply)}`);
      this.#offset = Number(reply[0]) * 1e6 + Number(reply[1]) - received;
      this.#synced = performance.now();
    } finally {
      this.#syncing = false;
    }
  }
  /** Redis's clock now (µs), as last learned (a lower bound). */
  now() {
    return Math.floor(localUs() + this.#offset);
  }
  /** The Redis time (µs) by which a call started at `startedUs` is given up. */
  deadline(startedUs, timeoutMs) {
    return Math.max(0, Math.floor(startedUs + timeoutMs * 1000 + this.#offset));
  }
}

const STORE_OPTIONS = ["prefix", "timeoutMs", "ttlMarginMs", "maxTagLength", "time", "withState"];

export class RedisStore {
  #client;
  #timeoutMs;
  #clock = new ServerClock();
  /** "functions" or "scripts", once known. */
  #invocation = "functions";
  /** The code loaded and the clock learned (again after a failure). */
  #ready = null;
  /** A reload in flight (after "Function not found"). */
  #loading = null;

  /**
   * @param client an adapter: `ioredisClient(redis)`, `nodeRedisClient(client)`
   *   or any `{ send(argv), replyCode(err) }`.
   */
  constructor(client, opts) {
    if (client === null || typeof client !== "object" || typeof client.send !== "function" || typeof client.replyCode !== "function") {
      throw new TypeError("client must be an adapter: ioredisClient(redis), nodeRedisClient(client), or { send(argv), replyCode(err) }");
    }
    const o = options(opts, "RedisStore options", STORE_OPTIONS);
    this.#client = client;
    const prefix = o.prefix ?? "rb:";
    if (typeof prefix !== "string") throw new TypeError("prefix must be a string");
    /** The key prefix's bytes. */
    this.prefix = new TextEncoder().encode(prefix);
    // Core's rule for a key's parts: no { or } (they would move the hash tag).
    if (!wasm.redisKeyPartsValid(this.prefix, new Uint8Array())) throw new RangeError("the key prefix must not contain { or }");
    this.#timeoutMs = integer("timeoutMs", o.timeoutMs ?? 1000, 1);
    if (this.#timeoutMs > 3_600_000) throw new RangeError("timeoutMs must be at most an hour");
    const margin = integer("ttlMarginMs", o.ttlMarginMs ?? 60_000);
    if (margin > 366 * 86_400_000) throw new RangeError("ttlMarginMs must be at most 366 days");
    this.ttlMargin = String(margin);
    this.maxTagLength = integer("maxTagLength", o.maxTagLength ?? 1024, 1);
    const time = o.time ?? "redis";
    if (time !== "redis" && time !== "caller") throw new RangeError(`time must be "redis" or "caller", got ${time}`);
    this.callerTime = time === "caller";
    this.withState = o.withState === undefined ? false : Boolean(o.withState);
  }

  /** How the Lua code runs on this server: `"functions"` (a library) or `"scripts"` (EVALSHA). */
  get invocation() {
    return this.#invocation;
  }

  /**
   * The `now` (µs) a reply's times are measured from where the reply does
   * not carry it: the caller's `nowUs`, else Redis's clock as learned.
   */
  nowFor(nowUs) {
    return nowUs ?? this.#clock.now();
  }

  /** Load the code and learn Redis's clock now (otherwise the first call does). */
  async ready() {
    await this.#withTimeout(this.#prepare());
  }

  #send(argv) {
    return this.#client.send(argv);
  }

  #prepare() {
    if (this.#ready === null) {
      const ready = (async () => {
        await this.#load();
        await this.#clock.sync((argv) => this.#send(argv));
      })();
      this.#ready = ready;
      ready.catch(() => {
        if (this.#ready === ready) this.#ready = null;
      });
    }
    return this.#ready;
  }

  /** `#load`, once at a time: concurrent callers share the load in flight. */
  #reload() {
    if (this.#loading === null) {
      this.#loading = this.#load().finally(() => {
        this.#loading = null;
      });
    }
    return this.#loading;
  }

  /** `FUNCTION LOAD REPLACE`; scripts where Functions are unknown or refused. */
  async #load() {
    try {
      await this.#send(["FUNCTION", "LOAD", "REPLACE", LIBRARY]);
      this.#invocation = "functions";
    } catch (e) {
      const code = this.#client.replyCode(e);
      if (code === "NOPERM" || (code === "ERR" && /^ERR unknown (sub)?command/i.test(e.message))) this.#invocation = "scripts";
      else throw e;
    }
  }

  #withTimeout(promise) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new RedisUnavailableError(`Redis did not answer within ${this.#timeoutMs} ms`, "timeout")), this.#timeoutMs);
    });
    promise.catch(() => {}); // a late failure of a call given up on is not an unhandled rejection
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  /**
   * Call `entry` (`"limit"`, `"gcra"`, `"budget"`, `"model"`) with `keys`
   * (byte arrays) and `args`, the `now` argument first: the caller's
   * `nowUs` (or Redis TIME when undefined) and, for an admission
   * (`refuseLate`), the deadline after which the script changes nothing.
   * Errors: RedisUnavailableError when Redis could not answer; the reply
   * error itself for an answer about this call.
   */
  async invoke(entry, readOnly, refuseLate, keys, args, nowUs) {
    const started = localUs();
    const e = ENTRY[entry];
    // A call given up on (timed out) sends nothing it has not sent yet: a
    // refund or settle waiting for the code to load must not be applied
    // after its caller was told it failed.
    let givenUp = false;
    const send = (argv) => {
      if (givenUp) return Promise.reject(new RedisUnavailableError("the call was given up on before it was sent", "timeout"));
      return this.#send(argv);
    };
    const call = (async () => {
      await this.#prepare();
      if (refuseLate && this.#clock.stale) await this.#clock.sync(send);
      let now = nowUs === undefined ? "" : String(nowUs);
      if (refuseLate) now += `@${this.#clock.deadline(started, this.#timeoutMs)}`;
      const fcall = () => send([readOnly ? "FCALL_RO" : "FCALL", readOnly ? e.ro : e.rw, String(keys.length), ...keys, now, ...args]);
      const evalsha = () => send(["EVALSHA", e.sha, String(keys.length), ...keys, now, ...args]);
      const evalWhole = () => send(["EVAL", e.script, String(keys.length), ...keys, now, ...args]);
      const how = this.#invocation;
      try {
        return await (how === "functions" ? fcall() : evalsha());
      } catch (err) {
        const code = this.#client.replyCode(err);
        if (how === "functions" && code === "ERR" && /^ERR Function not found/i.test(err.message)) {
          // The server restarted, its functions were flushed, or it is a new
          // node. One load for all the calls that found it missing at once.
          await this.#reload();
          return await (this.#invocation === "functions" ? fcall() : evalWhole());
        }
        if (how === "scripts" && code === "NOSCRIPT") return await evalWhole();
        throw err;
      }
    })();
    try {
      return await this.#withTimeout(call);
    } catch (err) {
      givenUp = true;
      const c = classify(err, (x) => this.#client.replyCode(x));
      // The server unreachable or silent: load the code and learn the clock
      // again on the next call (it may be another server by then). A "not
      // now" answer (BUSY, LOADING, LATE) came over a working connection.
      if (c instanceof RedisUnavailableError && (c.reason === "unreachable" || c.reason === "timeout")) this.#ready = null;
      throw c;
    }
  }
}

/** An integer of a script's reply (-1 stands for u64::MAX, as the scripts write it). */
export function replyInt(v) {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < -1) throw new TypeError(`unexpected reply from Redis: ${v}`);
  return n;
}
