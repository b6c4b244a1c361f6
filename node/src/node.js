// Node (ESM): load the wasm synchronously from the package files.
import { readFileSync } from "node:fs";
import * as wasm from "../dist/web/ratebound_wasm.js";
import { makeApi } from "./api.js";

const exports = wasm.initSync({ module: new WebAssembly.Module(readFileSync(new URL("../dist/web/ratebound_wasm_bg.wasm", import.meta.url))) });

export const { TokenBucket, SlidingLog, SlidingWindow, Backoff, RetrySequence, RetryBudget, retry, Policy, KeyedLimiter, StoreFullError, raw } = makeApi(wasm, exports.memory);
