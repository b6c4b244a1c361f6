// `ratebound/model-quota` for Node (ESM).
import { readFileSync } from "node:fs";
import * as wasm from "../dist/model-quota/ratebound_wasm.js";
import { makeModelQuotaApi } from "./model-quota-api.js";

wasm.initSync({ module: new WebAssembly.Module(readFileSync(new URL("../dist/model-quota/ratebound_wasm_bg.wasm", import.meta.url))) });

export const { ModelQuota, raw } = makeModelQuotaApi(wasm);
