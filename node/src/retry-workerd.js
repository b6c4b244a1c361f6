// `ratebound/retry` for Cloudflare Workers: the .wasm imported as a WebAssembly.Module.
import wasmModule from "../dist/retry/ratebound_wasm_bg.wasm";
import { bindRetryAbi } from "./retry-abi.js";
import { makeRetryApi } from "./retry-api.js";

const wasm = bindRetryAbi(new WebAssembly.Instance(wasmModule, {}));

export const { Backoff, RetrySequence, RetryBudget, retry, raw } = makeRetryApi(wasm);
