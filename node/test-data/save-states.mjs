// Records a Budget and a ModelQuota state exported by the package at
// `node save-states.mjs <package dir>`, and what that package answers after
// the export, for node/test/saved-state.test.js to replay on a later build.
const dir = process.argv[2];
const budget = await import(`${dir}/src/budget-node.js`);
const { Budget } = budget;
// Builds before ratebound/model-quota held ModelQuota in ratebound/budget.
const { ModelQuota } = budget.ModelQuota ? budget : await import(`${dir}/src/model-quota-node.js`);
const T = 1_795_392_000_000;
const budgetConfig = {
  limits: [
    { dimension: "requests", window: "minute", max: 10 },
    { dimension: "tokens", window: 3_600_000, max: 5_000 },
    { dimension: "cost", window: "month", max: 2_000_000 },
  ],
  maxTokensPerRequest: 2_000,
  alertThresholds: [0.5, 0.8],
  throttle: { after: 0.9, minDelayMs: 100 },
  utcOffsetMinutes: 60,
  holdTtlMs: 30_000,
  holdSlots: 4,
};
const b = new Budget(budgetConfig);
b.record({ requests: 1, tokens: 400, cost: 150_000, now: T });
b.trySpend({ tokens: 900, cost: 250_000, now: T + 1 });
const r1 = b.reserve({ tokens: 1_500, cost: 400_000, now: T + 2 });
const r2 = b.reserve({ tokens: 700, cost: 100_000, now: T + 3 });
b.reserve({ tokens: 1_900, now: T + 4 }); // denied: over the hour's tokens
b.settle(r1.id, { tokens: 1_200, cost: 380_000, now: T + 5 });
const budgetState = b.exportState();
const budgetOps = [
  ["status", { now: T + 10 }],
  ["peek", { tokens: 1_000, now: T + 11 }],
  ["settle", r2.id, { tokens: 800, cost: 120_000, now: T + 12 }],
  ["reserve", { tokens: 300, cost: 10_000, now: T + 13 }],
  ["trySpend", { tokens: 2_000, now: T + 14 }],
  ["status", { now: T + 40_000 }],
  ["record", { tokens: 100, now: T + 3_700_000 }],
  ["status", { now: T + 3_700_001 }],
  ["exportState"],
].map(([op, ...args]) => ({ op, args, result: b[op](...structuredClone(args)) }));

const quotaConfig = { totalMax: 10, successMax: 5, periodMs: 60_000, window: "sliding", holdTtlMs: 5_000 };
const q = new ModelQuota(quotaConfig);
const h1 = q.admit({ now: T }).hold;
const h2 = q.admit({ now: T + 1 }).hold;
const h3 = q.admit({ now: T + 2 }).hold;
q.settle(h1, { success: true, now: T + 3 });
q.settle(h2, { success: false, now: T + 4 });
const quotaState = q.exportState();
const quotaOps = [
  ["peek", { now: T + 10 }],
  ["admit", { now: T + 11 }],
  ["settle", h3, { success: true, now: T + 12 }],
  ["peek", { now: T + 6_000 }],
  ["admit", { now: T + 61_000 }],
  ["exportState"],
].map(([op, ...args]) => ({ op, args, result: q[op](...structuredClone(args)) }));

console.log(JSON.stringify({
  budget: { config: budgetConfig, state: budgetState, after: budgetOps },
  modelQuota: { config: quotaConfig, state: quotaState, after: quotaOps },
}, null, 1));
