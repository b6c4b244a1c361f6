/** A rate-limit decision. Times are milliseconds since the Unix epoch. */
export interface Decision {
  /** True when the cost was (for `check`) or would be (for `peek`) admitted. */
  allowed: boolean;
  /** Units that could still be admitted now. */
  remaining: number;
  /** The limiter's capacity. */
  limit: number;
  /** When the limiter is full again (ms since the epoch, rounded up). */
  resetAt: number;
  /** How long to wait before the same cost is allowed (0 when allowed). */
  retryAfterMs: number;
}

export interface CheckOptions {
  /** Units to consume (default 1). An integer ≥ 0. */
  cost?: number;
  /** The current time in ms since the epoch (default `Date.now()`). */
  now?: number;
}

export interface TokenBucketConfig {
  /** Bucket size: the largest burst (integer ≥ 1). */
  capacity: number;
  /** Tokens added per period (default: capacity). */
  refillAmount?: number;
  /** Refill period in ms (default 1000). */
  refillPeriodMs?: number;
}

export interface TokenBucketState {
  v: 1;
  tat: number;
  rem: number;
}

/** A token bucket (GCRA), exact to the token. */
export class TokenBucket {
  constructor(config: TokenBucketConfig);
  readonly config: Readonly<Required<TokenBucketConfig>>;
  check(options?: CheckOptions): Decision;
  /** `check(options).allowed` without building the decision (the fast path). */
  allow(options?: CheckOptions): boolean;
  peek(options?: CheckOptions): Decision;
  take(options?: { max?: number; now?: number }): Decision & { taken: number };
  refund(options?: { amount?: number; now?: number }): Decision;
  exportState(): TokenBucketState;
  importState(state: TokenBucketState): this;
  isIdle(options?: NowOption): boolean;
  free(): void;
}

export interface WindowConfig {
  /** Units per window (integer ≥ 1). */
  limit: number;
  /** Window length in ms. */
  windowMs: number;
}

export interface NowOption {
  /** The current time in ms since the epoch (default `Date.now()`). */
  now?: number;
}

/** The state of a window limiter: plain JSON-serializable data. */
export interface WindowState {
  v: 1;
  data: number[];
}

/** A sliding log in `slots` entries (8, 64 (default) or 256): exact while a window's admissions fit, merged conservatively beyond (never over `limit`). */
export class SlidingLog {
  constructor(config: WindowConfig & { slots?: 8 | 64 | 256 });
  readonly config: Readonly<WindowConfig>;
  check(options?: CheckOptions): Decision;
  /** `check(options).allowed` without building the decision (the fast path). */
  allow(options?: CheckOptions): boolean;
  peek(options?: CheckOptions): Decision;
  exportState(): WindowState;
  importState(state: WindowState): this;
  /** True when nothing counts any more: dropping it grants nothing. */
  isIdle(options?: NowOption): boolean;
  /** Free the wasm memory now (otherwise the garbage collector does). */
  free(): void;
}

/** An O(1) sliding window counter. */
export class SlidingWindow {
  constructor(config: WindowConfig);
  readonly config: Readonly<WindowConfig>;
  check(options?: CheckOptions): Decision;
  /** `check(options).allowed` without building the decision (the fast path). */
  allow(options?: CheckOptions): boolean;
  peek(options?: CheckOptions): Decision;
  exportState(): WindowState;
  importState(state: WindowState): this;
  isIdle(options?: NowOption): boolean;
  free(): void;
}

export type Limiter = TokenBucket | SlidingLog | SlidingWindow;

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
  /** A server hint (e.g. from Retry-After) as a minimum wait. */
  hintMs?: (error: E) => number | undefined;
  onRetry?: (event: { error: E; delayMs: number; retryAt: number; attempt: number }) => void;
  signal?: AbortSignal;
  seed?: number;
}

/** Run `op` until it succeeds or the backoff gives up (the error then has `retryGaveUp`). */
export function retry<T, E = any>(op: () => Promise<T>, options?: RetryOptions<E>): Promise<T>;

export interface PolicyDecision extends Decision {
  /** The index of the member that binds (denies, or has least left). */
  binding: number;
  /** Each member's own decision. */
  decisions: Decision[];
}

/** Several limits checked all-or-nothing. */
/** All or nothing; a limiter may be a member once (a second entry throws TypeError). */
export class Policy {
  constructor(members: Array<Limiter | { limiter: Limiter; cost?: number }>);
  check(options?: CheckOptions): PolicyDecision;
  peek(options?: CheckOptions): PolicyDecision;
}

/** Thrown by `KeyedLimiter.check` and `allow` when the store is full under `onFull: "deny"`. */
export class StoreFullError extends Error {
  readonly code: "store_full";
}

/**
 * One limiter per key, in bounded memory. `make` is called once, to learn
 * the limiter every key gets; the states live in wasm.
 */
export class KeyedLimiter<L extends Limiter = Limiter> {
  /** `maxKeys` (default 10000) at most 2^24, the most entries a V8 `Map` holds. */
  constructor(make: () => L, config?: { maxKeys?: number; onFull?: "deny" | "evictLru"; maxKeyLength?: number });
  readonly size: number;
  check(key: string, options?: CheckOptions): Decision;
  /** `check(key, options).allowed` without building the decision (the fast path). */
  allow(key: string, options?: CheckOptions): boolean;
  peek(key: string, options?: CheckOptions): Decision;
  /** Drop every idle key; returns how many. */
  evictIdle(options?: NowOption): number;
  /** Free the wasm memory now (otherwise the garbage collector does it). */
  free(): void;
}

/** The low-level wasm classes (times in µs) and the module's `memory` (a decision's four numbers at each object's `outPtr()`), for replaying traces. */
export const raw: unknown;
