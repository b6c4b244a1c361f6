/** `ratebound/retry`: backoff with jitter, retry sequences, a shared retry budget and `retry()`. Times are ms since the Unix epoch. */

export interface NowOption {
  /** The current time in ms since the epoch (default `Date.now()`). */
  now?: number;
}

export interface BackoffConfig {
  /** The first delay (default 1000 ms). */
  initialMs?: number;
  /** The largest delay, and the largest server hint obeyed (default 30000 ms). */
  capMs?: number;
  /** Growth per retry, ≥ 1 (default 2; kept to 1/1000). */
  factor?: number;
  /** Default "full". */
  jitter?: "none" | "full" | "equal" | "decorrelated";
  /** Default 3; `Infinity` or `null` for no limit. */
  maxRetries?: number | null;
  /** Give up when the next retry would start later than this after the start. */
  maxElapsedMs?: number | null;
}

export type RetryStep =
  | { retry: true; delayMs: number; retryAt: number; attempt: number }
  | { retry: false; reason: "max_retries" | "max_elapsed" | "hint_beyond_cap" | "retry_budget"; attempt: number };

/** Exponential backoff with jitter (the seed's default: 1 s doubling to 30 s, full jitter, 3 retries). */
export class Backoff {
  constructor(config?: BackoffConfig);
  readonly config: Readonly<Required<BackoffConfig>>;
  /** A new retry sequence; an integer `seed` makes the jitter repeatable. */
  start(options?: NowOption & { seed?: number }): RetrySequence;
}

/** One retry sequence: call `next()` after each failure. */
export class RetrySequence {
  next(options?: NowOption & { hintMs?: number | null; budget?: RetryBudget }): RetryStep;
  free(): void;
}

/** A gRPC-style retry budget: failures spend a token, successes earn `tokenRatio` back; retries only above half. */
export class RetryBudget {
  constructor(config?: { maxTokens?: number; tokenRatio?: number });
  readonly tokens: number;
  canRetry(): boolean;
  onFailure(): boolean;
  onSuccess(): void;
  exportState(): { v: 1; spentMilli: number };
  importState(state: { v: 1; spentMilli: number }): this;
  free(): void;
}

/**
 * `E` is what `op` throws. JavaScript can throw anything, so it is `any`
 * unless given (`retry<Answer, HttpError>(...)`): the callbacks then read
 * `e.status` without a cast, as in plain JavaScript.
 */
export interface RetryOptions<E = any> {
  backoff?: Backoff;
  budget?: RetryBudget;
  /** Default: every error is retryable. */
  retryable?: (error: E) => boolean;
  /** A server hint (e.g. from Retry-After) as a minimum wait, in ms; `undefined` or `null` for none. Anything else that is not a finite number ≥ 0 rejects with a RangeError whose `cause` is `error`. */
  hintMs?: (error: E) => number | null | undefined;
  onRetry?: (event: { error: E; delayMs: number; retryAt: number; attempt: number }) => void;
  signal?: AbortSignal;
  seed?: number;
}

/** Run `op` until it succeeds or the backoff gives up (the error then has `retryGaveUp`). */
export function retry<T, E = any>(op: () => Promise<T>, options?: RetryOptions<E>): Promise<T>;

/** The low-level wasm classes (times in µs) and the module's `memory` (a step's four numbers at each sequence's `outPtr()`), for replaying traces. */
export const raw: unknown;
