// The failure policy of a shared limit (port of std-adapters/src/fallback.rs):
// after a failure Redis is skipped for `retryAfterMs`; then one call (the
// probe) tries it while the others keep skipping, until the probe answers.

import { RedisUnavailableError } from "./errors.js";

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
