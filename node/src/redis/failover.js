// The failure policy of a shared limit (port of std-adapters/src/fallback.rs):
// after a failure Redis is skipped for `retryAfterMs`; then one call (the
// probe) tries it while the others keep skipping, until the probe answers.

import { RedisUnavailableError } from "./errors.js";
import { integer, milliseconds, options } from "../validate.js";

export class Failover {
  #retryAfterMs;
  #downUntil = null;
  #probing = false;
  constructor(retryAfterMs) {
    this.#retryAfterMs = retryAfterMs;
  }
  /** True while the last call found Redis unavailable. */
  get down() {
    return this.#downUntil !== null;
  }
  /**
   * `call()` unless Redis failed recently: its answer, or the
   * RedisUnavailableError (thrown by the call, or for a call skipped). Any
   * other error is the caller's and is rethrown.
   */
  async run(call) {
    let probe = false;
    if (this.#downUntil !== null) {
      if (performance.now() < this.#downUntil || this.#probing) {
        return { unavailable: new RedisUnavailableError(`Redis failed less than ${this.#retryAfterMs} ms ago: not tried`, "skipped") };
      }
      this.#probing = probe = true;
    }
    try {
      const value = await call();
      this.#downUntil = null;
      return { value };
    } catch (err) {
      if (!(err instanceof RedisUnavailableError)) throw err;
      this.#downUntil = performance.now() + this.#retryAfterMs;
      return { unavailable: err };
    } finally {
      if (probe) this.#probing = false;
    }
  }
}

/**
 * The failure-policy options every shared limit takes, checked:
 * `{ onUnavailable, retryAfterMs, replicas, local }` as `{ policy,
 * failover, retryAfterUs, replicas, localMaxKeys }` (`localMaxKeys` null
 * unless the policy is "local").
 */
export function failoverOptions(o) {
  const policy = o.onUnavailable ?? "closed";
  if (!["closed", "open", "local"].includes(policy)) throw new RangeError(`onUnavailable must be "closed", "open" or "local", got ${policy}`);
  const retryAfterUs = milliseconds("retryAfterMs", o.retryAfterMs ?? 1000);
  if (retryAfterUs > 86_400_000_000) throw new RangeError("retryAfterMs must be at most a day");
  const replicas = integer("replicas", o.replicas ?? 1, 1);
  if (replicas > 2 ** 32 - 1) throw new RangeError("replicas must be below 2^32");
  let localMaxKeys = null;
  if (policy === "local") localMaxKeys = integer("local.maxKeys", options(o.local, "local", ["maxKeys"]).maxKeys ?? 10_000, 1);
  else if (o.local !== undefined) throw new TypeError('local is only taken with onUnavailable: "local"');
  return { policy, failover: new Failover(retryAfterUs / 1000), retryAfterUs, replicas, localMaxKeys };
}
