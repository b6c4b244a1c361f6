/** `ratebound/budget`: budget windows for requests, LLM tokens and money. Times are ms since the Unix epoch. */

export type Dimension = "requests" | "tokens" | "cost";
/** "minute" | "hour" | "day" | "month" (calendar, at the UTC offset) | a fixed length in ms. */
export type Window = "minute" | "hour" | "day" | "month" | number;

export interface BudgetConfig {
  limits: Array<{ dimension: Dimension; window: Window; max: number }>;
  maxTokensPerRequest?: number | null;
  /** Integer micro-units (1 USD = 1 000 000). */
  maxCostPerRequest?: number | null;
  /** Fractions in (0, 1], e.g. [0.5, 0.8]: an alert fires once per window when crossed. */
  alertThresholds?: number[];
  /** Pace admissions once utilization passes `after`, at least `minDelayMs` apart. */
  throttle?: { after: number; minDelayMs?: number } | null;
  utcOffsetMinutes?: number;
  /** How long a reservation holds before it lapses (default 600000). */
  holdTtlMs?: number;
  /** Concurrent reservations: 4 or 64 (default). */
  holdSlots?: 4 | 64;
}

export interface Usage {
  requests?: number;
  tokens?: number;
  /** Integer micro-units. */
  cost?: number;
  now?: number;
}

export interface Alert {
  kind: "threshold" | "limitHit";
  limitIndex: number;
  dimension: Dimension;
  window: "month" | number;
  threshold: number;
  utilization: number;
  at: number;
  windowStart: number;
}

export interface Denied {
  allowed: false;
  /**
   * Core's reason: `"limit"` (a window limit has no room), `"throttled"`
   * (auto-throttle pacing), `"too_many_reservations"` (every hold slot is
   * live), or `"above_share"` (`ratebound/redis`'s local fallback: the
   * amount fits the whole limit but never this replica's share; retry once
   * Redis may be back).
   */
  reason: "limit" | "throttled" | "too_many_reservations" | "above_share";
  limitIndex: number | null;
  retryAt: number;
  retryAfterMs: number;
  alerts: Alert[];
}

export type Reserved =
  | { allowed: true; id: number; expiresAt: number; usage: Required<Omit<Usage, "now">>; alerts: Alert[] }
  | Denied;

export interface BudgetStatus {
  limits: Array<{ dimension: Dimension; window: "month" | number; max: number; used: number; reserved: number; utilization: number; windowStart: number; windowEnd: number }>;
  throttled: boolean;
  throttleUntil: number | null;
  holds: number;
}

/** A budget error; `code` is core's: "exceeds_limit", "unknown_reservation", "no_reservation_slots". */
export class BudgetError extends Error {
  readonly code: string;
}

export class Budget {
  constructor(config: BudgetConfig);
  readonly config: Readonly<BudgetConfig>;
  reserve(usage?: Usage): Reserved;
  settle(id: number, usage?: Usage): { charged: Required<Omit<Usage, "now">>; late: boolean; alerts: Alert[] };
  release(id: number, options?: { now?: number }): void;
  record(usage?: Usage): { alerts: Alert[] };
  trySpend(usage?: Usage): { allowed: true; alerts: Alert[] } | Denied;
  /** What `reserve` / `trySpend` would decide, changing nothing. */
  peek(usage?: Usage): { allowed: true } | Omit<Denied, "alerts">;
  status(options?: { now?: number }): BudgetStatus;
  /**
   * Change the config, keeping usage, holds and throttling (limits may be
   * added, removed, reordered or given new maxima; alerts of the limits that
   * changed are re-evaluated). Throws a RangeError, changing nothing, when
   * the UTC offset or holdSlots would change, or the config is invalid.
   */
  reconfigure(config: BudgetConfig): this;
  reset(): void;
  exportState(): { v: 1; state: unknown };
  importState(state: { v: 1; state: unknown }): this;
  free(): void;
}

/** The low-level wasm classes (times in µs), for replaying traces. */
export const raw: unknown;
