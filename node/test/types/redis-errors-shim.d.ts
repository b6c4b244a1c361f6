// ioredis's declarations import the untyped `redis-errors` package; an
// ambient module stands in so that the rest is checked strictly (no skipLibCheck).
declare module "redis-errors";
