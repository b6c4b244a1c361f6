/**
 * `ratebound/redis` (Node): limits shared through Redis by your own client
 * (ioredis, node-redis, @upstash/redis), running the Lua code of ratebound's Rust Redis
 * backend with the same key layout, so Node and Rust services share one
 * limit. Times are ms since the Unix epoch.
 */
import type { TokenBucket, SlidingLog, SlidingWindow, Decision } from "ratebound";
import type { BudgetConfig, Usage, Alert, Denied, BudgetStatus } from "ratebound/budget";
import type { ModelQuotaConfig, ModelDecision, ModelPeek } from "ratebound/model-quota";

export { BudgetError } from "ratebound/budget";

/** What a store needs from a Redis client: one command at a time, and which errors are server replies. */
export interface RedisCommander {
  /** Send one command (`["FCALL", name, ...]`); resolves to its reply. */
  send(argv: Array<string | Uint8Array>): Promise<unknown>;
  /** A server error reply's code (`"ERR"`, `"NOSCRIPT"`, `"LATE"`…); `null` when the server was not reached. */
  replyCode(err: unknown): string | null;
}

/** An `ioredis` client (`new Redis(...)` or `new Cluster(...)`) as a RedisCommander. */
export function ioredisClient(client: { call(command: string, ...args: any[]): Promise<unknown> }): RedisCommander;
/** A connected `node-redis` (v4 or later) client (`createClient(...)` or `createCluster(...)`) as a RedisCommander. */
export function nodeRedisClient(client: { sendCommand(...args: any[]): Promise<unknown> }): RedisCommander;
/** An `@upstash/redis` client (`new Redis({ url, token })`, over HTTP) as a RedisCommander; keys must be valid UTF-8. */
export function upstashClient(client: { evalsha(...args: any[]): Promise<unknown>; eval(...args: any[]): Promise<unknown>; time(): Promise<unknown> }): RedisCommander;

export interface RedisStoreOptions {
  /** Prepended to every key (default `"rb:"`; no `{` or `}`). Keys are `prefix{key}:name`. */
  prefix?: string;
  /** The longest call, loading the code included (default 1000 ms). An admission Redis starts after it changes nothing. */
  timeoutMs?: number;
  /** Extra time before an idle key expires (default 60000 ms). */
  ttlMarginMs?: number;
  /** The longest key accepted, in UTF-8 bytes (default 1024). */
  maxTagLength?: number;
  /** Where `now` comes from: Redis `TIME` (default; one clock for every server) or the caller (each call's `now`, else `Date.now()`; the local fallback uses it too). */
  time?: "redis" | "caller";
  /** Return each member's state and core's exact numbers with each decision (tests, replays). */
  withState?: boolean;
}

/** One Redis (through your client) running ratebound's Lua code; share one per process. */
export class RedisStore {
  constructor(client: RedisCommander, options?: RedisStoreOptions);
  /** How the code runs there: a function library (Redis 7+), or scripts by SHA where `FUNCTION` is unknown or refused. */
  readonly invocation: "functions" | "scripts";
  /** Load the code and learn Redis's clock now (otherwise the first call does). */
  ready(): Promise<void>;
}

export type RedisLimit = TokenBucket | SlidingLog | SlidingWindow | { limiter: TokenBucket | SlidingLog | SlidingWindow; cost?: number };

export interface RedisLimiterOptions {
  /** While Redis is unavailable: throw (`"closed"`, default), admit uncounted (`"open"`), or decide in this process on this replica's share (`"local"`). */
  onUnavailable?: "closed" | "open" | "local";
  /** After a failure, skip Redis for this long, then let one call probe it (default 1000 ms). */
  retryAfterMs?: number;
  /** Replicas sharing the limits: under `"local"` each enforces 1/replicas of every limit (at least 1). Default 1. */
  replicas?: number;
  /** The local fallback (`"local"` only): at most `maxKeys` keys per limit (default 10000), the least recently used evicted when full. */
  local?: { maxKeys?: number };
}

export interface RedisCheckOptions {
  /** Units to consume (default 1) for members without a fixed cost. */
  cost?: number;
  /** Only with `time: "caller"`: the time in ms since the epoch. */
  now?: number;
}

export interface RedisDecision extends Decision {
  /** The member that binds (the denying one, else the one with least left). */
  binding: string | null;
  /** Redis decided, or the failure policy answered. */
  source: "redis" | "failOpen" | "local";
  /** Each member's own decision, in the order the limits were given. */
  decisions: Decision[];
  /** With `withState`: each member's state as core's numbers. */
  states?: number[][];
  /** With `withState`: core's exact numbers (µs): the set `[allowed, binding, remaining, limit, resetAt, retryAt]` and each member's `[status, remaining, limit, resetAt, retryAt]`. */
  exact?: { now: number; set: number[]; members: number[][] };
}

/**
 * Limits per key shared through Redis: one limiter, or several decided all
 * or nothing in one round trip. Each limit's name (its key in `limits`) is
 * 1 to 64 characters of visible ASCII, no spaces, but `{ } " \` (core's
 * rule, as in Rust); any other is a RangeError.
 */
export class RedisLimiter {
  constructor(store: RedisStore, limits: Record<string, RedisLimit>, options?: RedisLimiterOptions);
  readonly names: readonly string[];
  /** True while the last call found Redis unavailable. */
  readonly unavailable: boolean;
  /** Check `cost` for `key` (a string, or bytes) against every limit. Throws RedisUnavailableError under `"closed"` while Redis is unavailable. */
  check(key: string | Uint8Array, options?: RedisCheckOptions): Promise<RedisDecision>;
  /** `(await check(key, options)).allowed`. */
  allow(key: string | Uint8Array, options?: RedisCheckOptions): Promise<boolean>;
  /** What `check` would decide, changing nothing. */
  peek(key: string | Uint8Array, options?: RedisCheckOptions): Promise<RedisDecision>;
  /** One TokenBucket only: take as many as available, up to `max`. Throws RedisUnavailableError while Redis is unavailable, whatever `onUnavailable`. */
  take(key: string | Uint8Array, options?: { max?: number; now?: number }): Promise<RedisDecision & { taken: number }>;
  /** One TokenBucket only: give back up to `amount` tokens. Throws RedisUnavailableError while Redis is unavailable, whatever `onUnavailable`. */
  refund(key: string | Uint8Array, options?: { amount?: number; now?: number }): Promise<RedisDecision & { taken: number }>;
}

export type Source = "redis" | "failOpen" | "local";

export interface RedisBudgetOptions {
  /** The key's last part: states are `prefix{key}:name` (default `"budget"`; a limit name, as `RedisLimiter`'s). */
  name?: string;
  /** Reservations held at once per key (default 64, at most 1024). */
  holdSlots?: number;
  /** While Redis is unavailable: throw (`"closed"`, default), admit and count nothing (`"open"`), or run this replica's share in memory (`"local"`). */
  onUnavailable?: "closed" | "open" | "local";
  /** After a failure, skip Redis for this long, then let one call probe it (default 1000 ms). */
  retryAfterMs?: number;
  /** Replicas sharing the budget: under `"local"` each runs 1/replicas of every limit. Default 1. */
  replicas?: number;
  /** The local fallback: at most this many keys' budgets (default 10000; the least recently used dropped for a new one), each holding up to 64 reservations (4 when holdSlots ≤ 4). */
  local?: { maxKeys?: number };
}

export type RedisReserved =
  | { allowed: true; id: number | null; expiresAt: number | null; usage: Required<Omit<Usage, "now">>; alerts: Alert[]; source: Source }
  | (Denied & { source: Source });

/**
 * A budget per key shared through Redis (the Rust backend's `budget.lua`):
 * the windows, holds, alerts and throttling of `ratebound/budget`'s Budget.
 * `now` in a usage is taken only by a store with `time: "caller"`.
 */
export class RedisBudget {
  constructor(store: RedisStore, config: Omit<BudgetConfig, "holdSlots">, options?: RedisBudgetOptions);
  readonly config: Readonly<Omit<BudgetConfig, "holdSlots"> & { holdSlots: number }>;
  readonly unavailable: boolean;
  /** Hold an estimate until settled or released; pass the whole result to `settle` / `release`. Throws BudgetError for usage that can never fit. */
  reserve(key: string | Uint8Array, usage?: Usage): Promise<RedisReserved>;
  /** Charge the actual usage of a reservation (the result of `reserve`, or a Redis hold's id). */
  settle(key: string | Uint8Array, reservation: RedisReserved | number, usage?: Usage): Promise<{ charged: Required<Omit<Usage, "now">>; late: boolean; alerts: Alert[]; source: Source }>;
  release(key: string | Uint8Array, reservation: RedisReserved | number, options?: { now?: number }): Promise<{ source: Source }>;
  record(key: string | Uint8Array, usage?: Usage): Promise<{ alerts: Alert[]; source: Source }>;
  trySpend(key: string | Uint8Array, usage?: Usage): Promise<({ allowed: true; alerts: Alert[] } | Denied) & { source: Source }>;
  /** What `reserve` / `trySpend` would decide, changing nothing (`retryAfterMs` from Redis's clock as last learned, or the caller's `now`). */
  peek(key: string | Uint8Array, usage?: Usage): Promise<({ allowed: true } | Omit<Denied, "alerts">) & { source: Source }>;
  status(key: string | Uint8Array, options?: { now?: number }): Promise<BudgetStatus & { source: Source }>;
  /** Change the config for every key, keeping each key's usage, holds and throttling (core's reconfigure rule). */
  reconfigure(config: Omit<BudgetConfig, "holdSlots">): this;
  /** Forget `key`'s usage and holds. */
  reset(key: string | Uint8Array): Promise<void>;
}

export interface RedisModelQuotaOptions {
  /** The key's last part: states are `prefix{key}:name` (default `"m"`, the Rust backend's; a limit name, as `RedisLimiter`'s). */
  name?: string;
  /** While Redis is unavailable: throw (`"closed"`, default), admit uncounted (`"open"`), or run this replica's share in memory (`"local"`). */
  onUnavailable?: "closed" | "open" | "local";
  /** After a failure, skip Redis for this long, then let one call probe it (default 1000 ms). */
  retryAfterMs?: number;
  /** Replicas sharing the quota: under `"local"` each runs 1/replicas of both counts. Default 1. */
  replicas?: number;
  /** The local fallback: at most this many keys (default 10000; the least recently used dropped for a new one). */
  local?: { maxKeys?: number };
}

export type RedisModelDecision =
  | ((ModelDecision | ModelPeek) & { source: "redis" | "local" })
  | { allowed: true; hold: null; inFlight: 0; blocked: null; retryAfterMs: 0; total: null; success: null; source: "failOpen" };

/**
 * Model quotas per key (a user and model) shared through Redis (the Rust
 * backend's `model.lua`): `ratebound/model-quota`'s ModelQuota, with the key first.
 */
export class RedisModelQuota {
  constructor(store: RedisStore, config: ModelQuotaConfig, options?: RedisModelQuotaOptions);
  readonly unavailable: boolean;
  /** Admit one request; settle the result when its outcome is known. */
  admit(key: string | Uint8Array, options?: { now?: number }): Promise<RedisModelDecision>;
  /** What `admit` would decide, changing nothing. */
  peek(key: string | Uint8Array, options?: { now?: number }): Promise<RedisModelDecision>;
  /** Settle an admission (the result of `admit`, or a Redis hold's id): "held", or "lapsed" when its hold had expired. Never fails over. (With the store's `withState`, for tests: `{ settled, state }`.) */
  settle(key: string | Uint8Array, admission: RedisModelDecision | number, options: { success: boolean; now?: number }): Promise<"held" | "lapsed">;
}

/** Redis could not decide (unreachable, too slow, busy, or the call arrived after its deadline and changed nothing). */
export class RedisUnavailableError extends Error {
  readonly code: "unavailable";
  readonly reason: "timeout" | "late" | "skipped" | "unreachable" | "server";
}

/** The function library's name (`FUNCTION LIST`), the same as the Rust backend's for the same code. */
export const LIBRARY_NAME: string;
