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
  peek(options?: CheckOptions): Decision;
  take(options?: { max?: number; now?: number }): Decision & { taken: number };
  refund(options?: { amount?: number; now?: number }): Decision;
  exportState(): TokenBucketState;
  importState(state: TokenBucketState): this;
}

export interface WindowConfig {
  /** Units per window (integer ≥ 1). */
  limit: number;
  /** Window length in ms. */
  windowMs: number;
}

/** An exact sliding log (remembers up to `slots` admissions: 8, 64 (default) or 256). */
export class SlidingLog {
  constructor(config: WindowConfig & { slots?: 8 | 64 | 256 });
  readonly config: Readonly<WindowConfig>;
  check(options?: CheckOptions): Decision;
  peek(options?: CheckOptions): Decision;
  exportState(): { v: 1; data: number[] };
}

/** An O(1) sliding window counter. */
export class SlidingWindow {
  constructor(config: WindowConfig);
  readonly config: Readonly<WindowConfig>;
  check(options?: CheckOptions): Decision;
  peek(options?: CheckOptions): Decision;
  exportState(): { v: 1; data: number[] };
}

/** The low-level wasm classes (times in µs), for replaying traces. */
export const raw: unknown;
