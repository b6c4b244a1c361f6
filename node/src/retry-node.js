// `ratebound/retry` for Node (ESM): load its wasm synchronously from the package files.
import { readFileSync } from "node:fs";
import { bindRetryAbi } from "./retry-abi.js";
import { makeRetryApi } from "./retry-api.js";

const wasm = bindRetryAbi(new WebAssembly.Instance(new WebAssembly.Module(readFileSync(new URL("../dist/retry/ratebound_wasm_bg.wasm", import.meta.url))), {}));

export const { Backoff, RetrySequence, RetryBudget, retry, raw } = makeRetryApi(wasm);
