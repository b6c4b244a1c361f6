/** `ratebound/model-quota`: an LLM gateway's model limits — total and success counts with holds. Times are ms since the Unix epoch. */

/** One count's decision. */
export interface CountDecision {
  allowed: boolean;
  remaining: number;
  limit: number;
  resetAt: number;
  retryAfterMs: number;
}

export interface ModelQuotaConfig {
  /** Admitted requests per period; null or absent = unlimited. */
  totalMax?: number | null;
  /** Successful requests per period. */
  successMax: number;
  periodMs: number;
  /** "sliding" (default): at most the limit in any period; "bucket": refilled smoothly. */
  window?: "sliding" | "bucket";
  /** How long an unsettled request holds its success slot (default 600000). */
  holdTtlMs?: number;
}

interface ModelDecisionFields {
  inFlight: number;
  retryAfterMs: number;
  total: CountDecision | null;
  success: CountDecision;
}

/** What `admit` decided: admitted with a `hold` to settle, or refused naming the count. */
export type ModelDecision =
  | (ModelDecisionFields & { allowed: true; /** Pass to `settle`. */ hold: number; blocked: null })
  | (ModelDecisionFields & { allowed: false; hold: null; blocked: "total" | "success" | "in_flight" });

/** What `peek` sees: `admit`'s decision without a hold (nothing is held). */
export type ModelPeek = ModelDecisionFields & { allowed: boolean; hold: null; blocked: null | "total" | "success" | "in_flight" };

export class ModelQuota {
  constructor(config: ModelQuotaConfig);
  readonly config: Readonly<Required<Omit<ModelQuotaConfig, "totalMax">> & { totalMax: number | null }>;
  admit(options?: { now?: number }): ModelDecision;
  peek(options?: { now?: number }): ModelPeek;
  settle(hold: number, options: { success: boolean; now?: number }): "held" | "lapsed";
  exportState(): { v: 1; state: unknown };
  importState(state: { v: 1; state: unknown }): this;
  free(): void;
}

/** The low-level wasm class (times in µs), for replaying traces. */
export const raw: unknown;
