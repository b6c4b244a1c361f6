// An example Worker: one rate limit per key, held by a Durable Object whose
// state lives in Durable Object storage (rebuilt from it on every request).
import { DurableObject } from "cloudflare:workers";
import { TokenBucket } from "../../src/workerd.js"; // in your Worker: from "ratebound"

const CONFIG = { capacity: 3, refillAmount: 1, refillPeriodMs: 60_000 };

export class Limiter extends DurableObject {
  async fetch(request) {
    const bucket = new TokenBucket(CONFIG);
    const saved = await this.ctx.storage.get("bucket");
    if (saved) bucket.importState(saved);
    const cost = Number(new URL(request.url).searchParams.get("cost") ?? "1");
    let d;
    try {
      d = bucket.check({ cost });
    } catch (e) {
      return Response.json({ error: e.name, message: e.message }, { status: 400 });
    }
    await this.ctx.storage.put("bucket", bucket.exportState());
    const headers = { "RateLimit-Remaining": String(d.remaining) };
    if (!d.allowed) headers["Retry-After"] = String(Math.ceil(d.retryAfterMs / 1000));
    return Response.json(d, { status: d.allowed ? 200 : 429, headers });
  }
}

export default {
  async fetch(request, env) {
    const key = new URL(request.url).searchParams.get("key") ?? "anonymous";
    return env.LIMITER.get(env.LIMITER.idFromName(key)).fetch(request);
  },
};
