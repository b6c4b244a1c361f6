// `ratebound/retry` for browsers and bundlers (ESM with top-level await).
import { bindRetryAbi } from "./retry-abi.js";
import { makeRetryApi } from "./retry-api.js";

const url = new URL("../dist/retry/ratebound_wasm_bg.wasm", import.meta.url);
const response = await fetch(url);
if (!response.ok) throw new Error(`ratebound/retry: fetching ${url} answered ${response.status}`);
const { instance } = await WebAssembly.instantiate(await response.arrayBuffer(), {});

export const { Backoff, RetrySequence, RetryBudget, retry, raw } = makeRetryApi(bindRetryAbi(instance));
