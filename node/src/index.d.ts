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
