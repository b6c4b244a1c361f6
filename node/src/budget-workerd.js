// `ratebound/budget` for Cloudflare Workers.
import wasmModule from "../dist/budget/ratebound_wasm_bg.wasm";
import * as wasm from "../dist/budget/ratebound_wasm.js";
import { makeBudgetApi } from "./budget-api.js";

wasm.initSync({ module: wasmModule });

export const { Budget, BudgetError, raw } = makeBudgetApi(wasm);
