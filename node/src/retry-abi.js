// `ratebound/retry`'s module (wasm/src/abi/retry.rs: plain functions over
// handles) as the objects retry-api.js uses, bound as abi.js binds the main
// module's. Nothing here decides: each method is one call of core's code.

import { handles } from "./abi.js";

/** The objects over an instance of the retry module. */
export function bindRetryAbi(instance) {
  const { x, memory, adopt, release } = handles(instance);

  class Backoff {
    constructor(initialUs, capUs, factorNum, factorDen, jitter, maxRetries, maxElapsedUs) {
      adopt(this, x.backoff_new(initialUs, capUs, factorNum, factorDen, jitter, maxRetries, maxElapsedUs), x.backoff_free);
    }
    start(now, seed) { x.backoff_start(this.h, now, seed); }
    next(now, hint) { return x.backoff_next(this.h, now, hint); }
    nextWithBudget(now, hint, budget) { return x.backoff_next_with_budget(this.h, now, hint, budget.h); }
    attempt() { return x.backoff_attempt(this.h); }
    outPtr() { return x.backoff_out(this.h) >>> 0; }
    free() { release(this, x.backoff_free); }
  }

  class RetryBudget {
    constructor(maxTokens, ratioMilli) { adopt(this, x.retry_budget_new(maxTokens, ratioMilli), x.retry_budget_free); }
    canRetry() { return x.retry_budget_can_retry(this.h) !== 0; }
    onFailure() { return x.retry_budget_on_failure(this.h) !== 0; }
    onSuccess() { x.retry_budget_on_success(this.h); }
    tokensMilli() { return x.retry_budget_tokens_milli(this.h); }
    exportState() { return x.retry_budget_export(this.h); }
    importState(spentMilli) { return x.retry_budget_import(this.h, spentMilli) !== 0; }
    free() { release(this, x.retry_budget_free); }
  }

  return { Backoff, RetryBudget, memory };
}
