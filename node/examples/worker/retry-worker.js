// An example Worker: calls an upstream service with retry(). Exponential
// backoff with full jitter between attempts, the upstream's Retry-After as
// the least wait (a wait beyond the cap gives up at once), and one retry
// budget for every request this isolate serves, so an upstream that keeps
// failing gets fewer and fewer retries instead of three times the load.
import { Backoff, RetryBudget, retry } from "../../src/retry-workerd.js"; // in your Worker: from "ratebound/retry"

const backoff = new Backoff({ initialMs: 10, capMs: 200, maxRetries: 5 });
const budget = new RetryBudget({ maxTokens: 10, tokenRatio: 0.1 });

/** Retry-After as ms from now: delay-seconds or an HTTP date (RFC 9110); undefined when absent or unreadable. */
function retryAfterMs(header, now = Date.now()) {
  if (header === null) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header) * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

class UpstreamError extends Error {
  constructor(status, retryAfterMs) {
    super(`upstream answered ${status}`);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

export default {
  async fetch(request, env) {
    let attempts = 0;
    try {
      const body = await retry(
        async () => {
          attempts++;
          const r = await env.UPSTREAM.fetch(request.url);
          if (r.status === 429 || r.status >= 500) throw new UpstreamError(r.status, retryAfterMs(r.headers.get("Retry-After")));
          return r.text();
        },
        { backoff, budget, retryable: (e) => e instanceof UpstreamError, hintMs: (e) => e.retryAfterMs },
      );
      return Response.json({ body, attempts });
    } catch (e) {
      return Response.json({ error: e.message, gaveUp: e.retryGaveUp ?? null, attempts }, { status: 502 });
    }
  },
};
