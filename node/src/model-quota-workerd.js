// `ratebound/model-quota` for Cloudflare Workers.
import wasmModule from "../dist/model-quota/ratebound_wasm_bg.wasm";
import * as wasm from "../dist/model-quota/ratebound_wasm.js";
import { makeModelQuotaApi } from "./model-quota-api.js";

wasm.initSync({ module: wasmModule });

export const { ModelQuota, raw } = makeModelQuotaApi(wasm);
