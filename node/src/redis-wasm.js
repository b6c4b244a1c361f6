// The wasm module of `ratebound/redis` (Node): core's budget windows and
// model quotas with the Redis helpers, apart from the modules of
// `ratebound/budget` and `ratebound/model-quota` so that those do not carry
// them.
import { readFileSync } from "node:fs";
import * as wasm from "../dist/redis/ratebound_wasm.js";
import { makeBudgetApi } from "./budget-api.js";
import { makeModelQuotaApi } from "./model-quota-api.js";

wasm.initSync({ module: new WebAssembly.Module(readFileSync(new URL("../dist/redis/ratebound_wasm_bg.wasm", import.meta.url))) });

export const { Budget, raw } = makeBudgetApi(wasm);
export const { ModelQuota } = makeModelQuotaApi(wasm);
