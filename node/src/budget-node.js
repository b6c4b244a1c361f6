// `ratebound/budget` for Node (ESM).
import { readFileSync } from "node:fs";
import * as wasm from "../dist/budget/ratebound_wasm.js";
import { makeBudgetApi } from "./budget-api.js";

wasm.initSync({ module: new WebAssembly.Module(readFileSync(new URL("../dist/budget/ratebound_wasm_bg.wasm", import.meta.url))) });

export const { Budget, BudgetError, raw } = makeBudgetApi(wasm);
