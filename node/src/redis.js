// `ratebound/redis` (Node): limits shared through Redis by the caller's
// client (ioredis, node-redis), running the very Lua code of the Rust
// Redis backend, with the same key layout: Node and Rust services share
// one limit. Core decides (in the scripts, and in wasm for the local
// fallback and the set's fold); these files convert and transport.

export { RedisStore } from "./redis/store.js";
export { RedisLimiter } from "./redis/limiter.js";
export { RedisBudget } from "./redis/budget.js";
export { RedisModelQuota } from "./redis/model.js";
export { BudgetError } from "./budget-api.js";
export { RedisUnavailableError } from "./redis/errors.js";
export { ioredisClient, nodeRedisClient, upstashClient } from "./redis/clients.js";
export { LIBRARY_NAME } from "./redis/code.js";
