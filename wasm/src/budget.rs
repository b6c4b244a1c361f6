//! Budget windows (feature `budget`, shipped as the separate module
//! `ratebound/budget` so the limiters stay small): JSON in for the config and
//! state, JSON out for results, in exactly the shapes of the core trace
//! fixtures (`fixtures/README.md`): `{"ok": …}` or `{"error": "<code>"}`.

use alloc::boxed::Box;
use alloc::string::{String, ToString};

use ratebound_core::budget::{
    Admission, Budget as CoreBudget, BudgetConfig, BudgetState, Reservation, Usage,
};
use ratebound_core::Instant;
use serde::Serialize;
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use crate::{int, valid};

enum State {
    S4(Box<BudgetState<4>>),
    S64(Box<BudgetState<64>>),
}

macro_rules! with_state {
    ($st:expr, |$s:ident| $body:expr) => {
        match $st {
            State::S4($s) => $body,
            State::S64($s) => $body,
        }
    };
}

/// Budget windows with their state: requests, tokens and money (integer
/// micro-units) per minute / hour / day / calendar month, reserve → settle.
#[wasm_bindgen]
pub struct Budget {
    cfg: CoreBudget,
    st: State,
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn ok(v: Value) -> String {
    json!({ "ok": v }).to_string()
}

fn usage(requests: f64, tokens: f64, cost: f64) -> Usage {
    Usage {
        requests: int(requests),
        tokens: int(tokens),
        cost: int(cost),
    }
}

#[wasm_bindgen]
impl Budget {
    /// A budget from its config as JSON (core's serde form); `hold_slots` 4
    /// or 64 concurrent reservations. Throws a message naming what is wrong.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, hold_slots: u32) -> Result<Budget, JsValue> {
        let cfg: BudgetConfig =
            serde_json::from_str(config_json).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let cfg = CoreBudget::new(cfg).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let st = match hold_slots {
            4 => State::S4(Box::default()),
            64 => State::S64(Box::default()),
            _ => return Err(JsValue::from_str("holdSlots must be 4 or 64")),
        };
        Ok(Budget { cfg, st })
    }

    /// The Redis budget script's config arguments for `hold_slots`
    /// reservations (core's `wire::budget_script_config`), for
    /// `ratebound/redis`.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = redisConfig)]
    pub fn redis_config(&self, hold_slots: u32) -> alloc::vec::Vec<f64> {
        let mut out = alloc::vec::Vec::new();
        ratebound_core::wire::budget_script_config(&self.cfg, u64::from(hold_slots), |x| {
            out.push(x as f64)
        });
        out
    }

    /// One of `replicas` replicas' share of this budget's config, as JSON
    /// (core's `BudgetConfig::share`), for `ratebound/redis`'s local
    /// fallback.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = shareConfig)]
    pub fn share_config(&self, replicas: u32) -> String {
        to_value(&self.cfg.config().share(replicas)).to_string()
    }

    /// The largest amount of one dimension a call may carry (core's
    /// `MAX_AMOUNT`; larger amounts are clamped to it, as in Rust).
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = maxAmount)]
    pub fn max_amount() -> f64 {
        ratebound_core::budget::MAX_AMOUNT as f64
    }

    /// `""` when `usage` can fit this budget at all, else core's error code
    /// (`exceeds_limit`): core's own check, on an empty state, made before a
    /// call goes to Redis.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = usageError)]
    pub fn usage_error(&self, requests: f64, tokens: f64, cost: f64) -> String {
        match self.cfg.peek(
            &BudgetState::<0>::default(),
            Instant::ZERO,
            usage(requests, tokens, cost),
        ) {
            Ok(_) => String::new(),
            Err(e) => e.code().to_string(),
        }
    }

    /// The validated config, as JSON.
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> String {
        to_value(&self.cfg).to_string()
    }

    /// Change the config, keeping the state (core's
    /// `Budget::reconfigure`): `{"ok":"kept"}`, or `{"error":{"field",
    /// "message"}}` when the config is invalid or the state would not keep
    /// its meaning under it (nothing changes then).
    pub fn reconfigure(&mut self, config_json: &str) -> String {
        let refused = |field: &str, message: String| {
            json!({ "error": { "field": field, "message": message } }).to_string()
        };
        let cfg: BudgetConfig = match serde_json::from_str(config_json) {
            Ok(c) => c,
            Err(e) => return refused("config", e.to_string()),
        };
        match self.cfg.reconfigure(cfg) {
            Ok(new) => {
                self.cfg = new;
                ok(json!("kept"))
            }
            Err(e) => {
                let field = match e {
                    ratebound_core::ConfigError::Zero { field }
                    | ratebound_core::ConfigError::TooLarge { field, .. }
                    | ratebound_core::ConfigError::Invalid { field, .. } => field,
                    _ => "config",
                };
                refused(field, e.to_string())
            }
        }
    }

    /// Hold an estimate until settled, released or lapsed.
    pub fn reserve(&mut self, now_us: f64, requests: f64, tokens: f64, cost: f64) -> String {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        let r = with_state!(&mut self.st, |s| self.cfg.reserve(&mut **s, now, u));
        match r {
            Ok(r) => {
                let admission = match r.admission {
                    Admission::Granted(h) => json!({ "granted": to_value(&h) }),
                    Admission::Denied(d) => json!({ "denied": to_value(&d) }),
                };
                ok(json!({ "admission": admission, "alerts": to_value(&r.alerts) }))
            }
            Err(e) => error(e.code()),
        }
    }

    /// Charge the actual usage of reservation `id`, freeing its hold.
    pub fn settle(
        &mut self,
        now_us: f64,
        id: f64,
        requests: f64,
        tokens: f64,
        cost: f64,
    ) -> String {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        let r = held(id, now);
        match with_state!(&mut self.st, |s| self.cfg.settle(&mut **s, now, r, u)) {
            Ok(v) => ok(to_value(&v)),
            Err(e) => error(e.code()),
        }
    }

    /// Free reservation `id` unused.
    pub fn release(&mut self, now_us: f64, id: f64) -> String {
        let now = Instant::from_micros(int(now_us));
        let r = held(id, now);
        match with_state!(&mut self.st, |s| self.cfg.release(&mut **s, now, r)) {
            Ok(()) => ok(Value::Null),
            Err(e) => error(e.code()),
        }
    }

    /// Record usage that already happened (never refused).
    pub fn record(&mut self, now_us: f64, requests: f64, tokens: f64, cost: f64) -> String {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        ok(to_value(&with_state!(&mut self.st, |s| self
            .cfg
            .record(&mut **s, now, u))))
    }

    /// Spend if it fits now (reserve and settle in one).
    #[wasm_bindgen(js_name = trySpend)]
    pub fn try_spend(&mut self, now_us: f64, requests: f64, tokens: f64, cost: f64) -> String {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        match with_state!(&mut self.st, |s| self.cfg.try_spend(&mut **s, now, u)) {
            Ok(v) => ok(to_value(&v)),
            Err(e) => error(e.code()),
        }
    }

    /// What `reserve` / `trySpend` would decide at `now_us`, changing
    /// nothing: `{"ok": null}` (it fits) or `{"ok": <denial>}`.
    pub fn peek(&self, now_us: f64, requests: f64, tokens: f64, cost: f64) -> String {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        match with_state!(&self.st, |s| self.cfg.peek(&**s, now, u)) {
            Ok(v) => ok(to_value(&v)),
            Err(e) => error(e.code()),
        }
    }

    /// Usage, reservations and windows at `now_us`.
    pub fn status(&self, now_us: f64) -> String {
        let now = Instant::from_micros(int(now_us));
        ok(to_value(&with_state!(&self.st, |s| self
            .cfg
            .status(&**s, now))))
    }

    /// Forget all usage and holds (reservation ids stay unique).
    pub fn reset(&mut self) {
        with_state!(&mut self.st, |s| self.cfg.reset(&mut **s));
    }

    /// The state as JSON (core's serde form).
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self) -> String {
        with_state!(&self.st, |s| to_value(&**s)).to_string()
    }

    /// Restore `exportState`; false (unchanged) if malformed.
    #[wasm_bindgen(js_name = importState)]
    pub fn import_state(&mut self, json: &str) -> bool {
        match &mut self.st {
            State::S4(s) => match serde_json::from_str(json) {
                Ok(v) => {
                    **s = v;
                    true
                }
                Err(_) => false,
            },
            State::S64(s) => match serde_json::from_str(json) {
                Ok(v) => {
                    **s = v;
                    true
                }
                Err(_) => false,
            },
        }
    }
}

fn error(code: &str) -> String {
    json!({ "error": code }).to_string()
}

/// The reservation `id` as settle/release need it (they look it up by id).
fn held(id: f64, now: Instant) -> Reservation {
    Reservation {
        id: if valid(id) { int(id) } else { u64::MAX },
        usage: Usage::default(),
        expires: now,
    }
}
