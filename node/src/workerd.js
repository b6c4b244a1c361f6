// Cloudflare Workers (workerd): the runtime forbids compiling wasm from bytes,
// so the .wasm is imported as a WebAssembly.Module by the bundler/runtime.
import wasmModule from "../dist/web/ratebound_wasm_bg.wasm";
import { bindAbi } from "./abi.js";
import { makeApi } from "./api.js";

const wasm = bindAbi(new WebAssembly.Instance(wasmModule, {}));

export const { TokenBucket, SlidingLog, SlidingWindow, Policy, KeyedLimiter, StoreFullError, raw } = makeApi(wasm, wasm.memory);
