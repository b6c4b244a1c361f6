// An example Worker: a model's quota per user (at most 2 successful calls
// and 5 admitted calls a minute), held by a Durable Object. Each call is
// admitted first, which holds a success slot while the (simulated) model
// call runs, and settled with its outcome: a failure gives the slot back.
import { DurableObject } from "cloudflare:workers";
import { ModelQuota } from "../../src/model-quota-workerd.js"; // in your Worker: from "ratebound/model-quota"

const CONFIG = { totalMax: 5, successMax: 2, periodMs: 60_000 };

export class UserQuota extends DurableObject {
  async fetch(request) {
    const q = new URL(request.url).searchParams;
    const quota = new ModelQuota(CONFIG);
    const saved = await this.ctx.storage.get("quota");
    if (saved) quota.importState(saved);
    try {
      const d = quota.admit();
      if (!d.allowed) {
        await this.ctx.storage.put("quota", quota.exportState());
        return Response.json(d, { status: 429, headers: { "Retry-After": String(Math.ceil(d.retryAfterMs / 1000)) } });
      }
      // ... call the model here; `ok=0` plays a failed call.
      const ok = q.get("ok") !== "0";
      const held = quota.settle(d.hold, { success: ok });
      await this.ctx.storage.put("quota", quota.exportState());
      return Response.json({ ok, held, inFlight: d.inFlight }, { status: ok ? 200 : 502 });
    } finally {
      quota.free();
    }
  }
}

export default {
  async fetch(request, env) {
    const user = new URL(request.url).searchParams.get("user") ?? "anonymous";
    return env.QUOTA.get(env.QUOTA.idFromName(user)).fetch(request);
  },
};
