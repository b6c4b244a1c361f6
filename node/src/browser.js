// Browsers and bundlers (ESM with top-level await): fetch the .wasm next to
// the glue (bundlers resolve `new URL(…, import.meta.url)` as an asset).
import init, * as wasm from "../dist/web/ratebound_wasm.js";
import { makeApi } from "./api.js";

const exports = await init({ module_or_path: new URL("../dist/web/ratebound_wasm_bg.wasm", import.meta.url) });

export const { TokenBucket, SlidingLog, SlidingWindow, Backoff, RetrySequence, RetryBudget, retry, Policy, KeyedLimiter, StoreFullError, raw } = makeApi(wasm, exports.memory);
