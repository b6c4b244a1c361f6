// Browsers and bundlers (ESM with top-level await): fetch the .wasm next to
// the package's sources (bundlers resolve `new URL(…, import.meta.url)` as an asset).
import { bindAbi } from "./abi.js";
import { makeApi } from "./api.js";

const url = new URL("../dist/web/ratebound_wasm_bg.wasm", import.meta.url);
const response = await fetch(url);
if (!response.ok) throw new Error(`ratebound: fetching ${url} answered ${response.status}`);
const { instance } = await WebAssembly.instantiate(await response.arrayBuffer(), {});
const wasm = bindAbi(instance);

export const { TokenBucket, SlidingLog, SlidingWindow, Policy, KeyedLimiter, StoreFullError, raw } = makeApi(wasm, wasm.memory);
