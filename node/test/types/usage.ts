// Type-checked by test/types.test.js (tsc --noEmit): the public API is typed,
// and wrong uses are compile errors (each @ts-expect-error must be needed).
import { TokenBucket, SlidingLog, SlidingWindow, Policy, KeyedLimiter, StoreFullError, type Decision } from "ratebound";
import { Backoff, RetryBudget, retry, type RetryStep } from "ratebound/retry";
import { Budget, BudgetError, type Reserved } from "ratebound/budget";
import { ModelQuota, type ModelDecision } from "ratebound/model-quota";

const bucket = new TokenBucket({ capacity: 10, refillAmount: 5, refillPeriodMs: 1000 });
const d: Decision = bucket.check({ cost: 2, now: Date.now() });
const fast: boolean = bucket.allow() && bucket.allow({ cost: 1 });
const ok: boolean = d.allowed;
const wait: number = d.retryAfterMs;
const taken: number = bucket.take({ max: 3 }).taken;
bucket.importState(bucket.exportState());
const log = new SlidingLog({ limit: 5, windowMs: 60_000, slots: 64 });
const win = new SlidingWindow({ limit: 100, windowMs: 1000 });
log.importState(log.exportState());

const step: RetryStep = new Backoff({ jitter: "equal", maxRetries: Infinity }).start({ seed: 1 }).next({ hintMs: 10, budget: new RetryBudget() });
if (step.retry) {
  const ms: number = step.delayMs;
} else {
  const why: "max_retries" | "max_elapsed" | "hint_beyond_cap" | "retry_budget" = step.reason;
}
const answer: Promise<string> = retry(async () => "x", { retryable: (e) => e instanceof Error });

const p = new Policy([bucket, { limiter: win, cost: 3 }, log]);
const binding: number = p.check().binding;
const keyed = new KeyedLimiter(() => new TokenBucket({ capacity: 2 }), { maxKeys: 100, onFull: "evictLru" });
keyed.check("user-1");
const keyedFast: boolean = keyed.allow("user-1", { cost: 1 });
const e: "store_full" = new StoreFullError().code;

const budget = new Budget({ limits: [{ dimension: "tokens", window: "minute", max: 10_000 }, { dimension: "cost", window: "month", max: 5_000_000 }], alertThresholds: [0.8] });
const r: Reserved = budget.reserve({ tokens: 500, cost: 1000 });
if (r.allowed) budget.settle(r.id, { tokens: 420 });
const code: string = new BudgetError().code;

// @ts-expect-error: capacity is required
new TokenBucket({});
// @ts-expect-error: cost is a number
bucket.check({ cost: "1" });
// @ts-expect-error: no such jitter
new Backoff({ jitter: "wild" });
// @ts-expect-error: slots are 8, 64 or 256
new SlidingLog({ limit: 1, windowMs: 1, slots: 10 });
// @ts-expect-error: keys are strings
keyed.check(42);
// @ts-expect-error: no such dimension
new Budget({ limits: [{ dimension: "gold", window: "day", max: 1 }] });
// @ts-expect-error: a denied reservation has no id
if (!r.allowed) r.id;

export { ok, wait, taken, answer, binding, e, code };

const quota = new ModelQuota({ totalMax: null, successMax: 10, periodMs: 60_000, window: "bucket" });
const admitted: ModelDecision = quota.admit();
if (admitted.hold !== null) {
  const how: "held" | "lapsed" = quota.settle(admitted.hold, { success: true });
  void how;
}
const blockedBy: null | "total" | "success" | "in_flight" = admitted.blocked;
void blockedBy;

