// An example Worker: an LLM token budget per user (10 000 tokens and 1 USD
// per day), held by a Durable Object. Each call reserves its estimate
// before the (simulated) model call and settles the actual usage after.
import { DurableObject } from "cloudflare:workers";
import { Budget } from "../../src/budget-workerd.js"; // in your Worker: from "ratebound/budget"

const CONFIG = {
  limits: [
    { dimension: "tokens", window: "day", max: 10_000 },
    { dimension: "cost", window: "day", max: 1_000_000 }, // micro-USD
  ],
  alertThresholds: [0.8],
  holdTtlMs: 60_000,
  holdSlots: 4,
};

export class UserBudget extends DurableObject {
  async fetch(request) {
    const q = new URL(request.url).searchParams;
    const budget = new Budget(CONFIG);
    const saved = await this.ctx.storage.get("budget");
    if (saved) budget.importState(saved);
    try {
      if (q.has("status")) return Response.json(budget.status());
      const estimate = Number(q.get("estimate") ?? "1000");
      const r = budget.reserve({ tokens: estimate, cost: estimate * 10 });
      if (!r.allowed) {
        await this.ctx.storage.put("budget", budget.exportState());
        return Response.json(r, { status: 429, headers: { "Retry-After": String(Math.ceil(r.retryAfterMs / 1000)) } });
      }
      // ... call the model here; it reports what it really used:
      const used = Number(q.get("used") ?? String(estimate));
      const s = budget.settle(r.id, { tokens: used, cost: used * 10 });
      await this.ctx.storage.put("budget", budget.exportState());
      return Response.json({ charged: s.charged, alerts: [...r.alerts, ...s.alerts] });
    } catch (e) {
      return Response.json({ error: e.name, code: e.code, message: e.message }, { status: 400 });
    } finally {
      budget.free();
    }
  }
}

export default {
  async fetch(request, env) {
    const user = new URL(request.url).searchParams.get("user") ?? "anonymous";
    return env.BUDGET.get(env.BUDGET.idFromName(user)).fetch(request);
  },
};
