// Node (ESM): load the wasm synchronously from the package files.
import { readFileSync } from "node:fs";
import { bindAbi } from "./abi.js";
import { makeApi } from "./api.js";

const wasm = bindAbi(new WebAssembly.Instance(new WebAssembly.Module(readFileSync(new URL("../dist/web/ratebound_wasm_bg.wasm", import.meta.url))), {}));

export const { TokenBucket, SlidingLog, SlidingWindow, Policy, KeyedLimiter, StoreFullError, raw } = makeApi(wasm, wasm.memory);
