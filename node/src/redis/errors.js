// The errors of `ratebound/redis`.

/**
 * Redis could not decide: unreachable, too slow, loading, busy, or the call
 * reached it after its deadline (then it changed nothing). Under
 * `onUnavailable: "closed"` (the default) the limiter throws this; the other
 * policies answer instead.
 */
export class RedisUnavailableError extends Error {
  /**
   * @param {string} message
   * @param {"timeout" | "late" | "skipped" | "unreachable" | "server"} reason
   * @param {unknown} [cause]
   */
  constructor(message, reason, cause) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RedisUnavailableError";
    this.code = "unavailable";
    this.reason = reason;
  }
}

/** Server error codes that say "not now" (the failure policy applies), as in the Rust backend. */
const NOT_NOW = new Set(["LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "BUSY", "LATE"]);

/**
 * `err` as the failure policy sees it: a RedisUnavailableError when Redis
 * could not answer (no reply, or a "not now" reply), else `err` itself (an
 * answer about this call — a script error, WRONGTYPE, NOPERM — which
 * falling back would hide).
 */
export function classify(err, replyCode) {
  if (err instanceof RedisUnavailableError || err?.callerError) return err;
  const code = replyCode(err);
  if (code === null) return new RedisUnavailableError(`Redis is unreachable: ${err?.message ?? err}`, "unreachable", err);
  if (code === "LATE") return new RedisUnavailableError("the call reached Redis after its deadline: it changed nothing", "late", err);
  if (NOT_NOW.has(code)) return new RedisUnavailableError(`Redis cannot answer now: ${err.message}`, "server", err);
  return err;
}
