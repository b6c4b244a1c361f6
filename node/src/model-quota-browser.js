// `ratebound/model-quota` for browsers and bundlers.
import init, * as wasm from "../dist/model-quota/ratebound_wasm.js";
import { makeModelQuotaApi } from "./model-quota-api.js";

await init({ module_or_path: new URL("../dist/model-quota/ratebound_wasm_bg.wasm", import.meta.url) });

export const { ModelQuota, raw } = makeModelQuotaApi(wasm);
