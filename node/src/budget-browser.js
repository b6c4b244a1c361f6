// `ratebound/budget` for browsers and bundlers.
import init, * as wasm from "../dist/budget/ratebound_wasm.js";
import { makeBudgetApi } from "./budget-api.js";

await init({ module_or_path: new URL("../dist/budget/ratebound_wasm_bg.wasm", import.meta.url) });

export const { Budget, BudgetError, raw } = makeBudgetApi(wasm);
