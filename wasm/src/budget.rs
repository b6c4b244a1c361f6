//! Budget windows (feature `budget`, shipped as the separate module
//! `ratebound/budget`): config, state and results as flat arrays of
//! numbers ([`flat`](crate::flat)); `node/src/budget-codec.js` reads and
//! writes the same layouts. Errors throw core's code (`exceeds_limit`,
//! `unknown_reservation`, `no_reservation_slots`); config errors throw
//! `field`, a tab and core's message.
//!
//! The layouts are in [`budget_layout`](crate::budget_layout).

use alloc::boxed::Box;
use alloc::vec::Vec;

use ratebound_core::budget::{Admission, Budget as CoreBudget, BudgetState, Reservation, Usage};
use ratebound_core::{wire, Instant};
use wasm_bindgen::prelude::*;

use crate::budget_layout::{
    alerts, denial, error, horizon_us, read_config, read_state, usage, usage_out, write_config,
    write_state,
};
use crate::flat::{config_error, malformed, Out};
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

#[wasm_bindgen]
impl Budget {
    /// A budget from its flat config; `hold_slots` 4 or 64 concurrent
    /// reservations. Throws `field`, a tab and core's message.
    #[wasm_bindgen(constructor)]
    pub fn new(config: &[f64], hold_slots: u32) -> Result<Budget, JsValue> {
        let cfg = read_config(config).ok_or_else(malformed)?;
        let cfg = CoreBudget::new(cfg).map_err(config_error)?;
        let st = match hold_slots {
            4 => State::S4(Box::default()),
            64 => State::S64(Box::default()),
            _ => return Err(JsValue::from_str("holdSlots\tholdSlots must be 4 or 64")),
        };
        Ok(Budget { cfg, st })
    }

    /// The Redis budget script's config arguments for `hold_slots`
    /// reservations (core's `wire::budget_script_config`), for
    /// `ratebound/redis`.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = redisConfig)]
    pub fn redis_config(&self, hold_slots: u32) -> Vec<f64> {
        let mut out = Vec::new();
        wire::budget_script_config(&self.cfg, u64::from(hold_slots), |x| out.push(x as f64));
        out
    }

    /// One of `replicas` replicas' share of this budget's config, flat
    /// (core's `BudgetConfig::share`), for `ratebound/redis`'s local
    /// fallback.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = shareConfig)]
    pub fn share_config(&self, replicas: u32) -> Vec<f64> {
        write_config(&self.cfg.config().share(replicas))
    }

    /// Before one of `replicas` replicas decides a usage alone on its share:
    /// empty to decide it there, or a denial until `retry_at_us` when this
    /// budget fits the usage but the share never can (core's
    /// `Budget::share_refusal`); throws core's code when nothing fits it.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = shareRefusal)]
    pub fn share_refusal(
        &self,
        replicas: u32,
        retry_at_us: f64,
        requests: f64,
        tokens: f64,
        cost: f64,
    ) -> Result<Vec<f64>, JsValue> {
        let retry_at = Instant::from_micros(int(retry_at_us));
        let refused = self
            .cfg
            .share_refusal(replicas, &usage(requests, tokens, cost), retry_at)
            .map_err(error)?;
        let mut o = Out::default();
        if let Some(d) = &refused {
            denial(&mut o, d);
        }
        Ok(o.0)
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
    /// call goes to Redis (on a state of the 4-slot kind this module has
    /// code for already: the slots play no part in it).
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = usageError)]
    pub fn usage_error(&self, requests: f64, tokens: f64, cost: f64) -> alloc::string::String {
        match self.cfg.peek(
            &BudgetState::<4>::default(),
            Instant::ZERO,
            usage(requests, tokens, cost),
        ) {
            Ok(_) => alloc::string::String::new(),
            Err(e) => e.code().into(),
        }
    }

    /// The validated config, flat.
    pub fn config(&self) -> Vec<f64> {
        write_config(self.cfg.config())
    }

    /// Change the config, keeping the state (core's
    /// `Budget::reconfigure`); throws `field`, a tab and core's message
    /// when the config is invalid or the state would not keep its meaning
    /// under it (nothing changes then).
    pub fn reconfigure(&mut self, config: &[f64]) -> Result<(), JsValue> {
        let cfg = read_config(config).ok_or_else(malformed)?;
        self.cfg = self.cfg.reconfigure(cfg).map_err(config_error)?;
        Ok(())
    }

    /// Hold an estimate until settled, released or lapsed: `1, id,
    /// requests, tokens, cost, expires, alerts…` or `0, denial…, alerts…`.
    pub fn reserve(
        &mut self,
        now_us: f64,
        requests: f64,
        tokens: f64,
        cost: f64,
    ) -> Result<Vec<f64>, JsValue> {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        let r = with_state!(&mut self.st, |s| self.cfg.reserve(&mut **s, now, u)).map_err(error)?;
        let mut o = Out::default();
        match r.admission {
            Admission::Granted(h) => {
                o.int(1).int(h.id);
                usage_out(&mut o, &h.usage);
                o.int(h.expires.as_micros());
            }
            Admission::Denied(d) => {
                o.int(0);
                denial(&mut o, &d);
            }
        }
        alerts(&mut o, &r.alerts);
        Ok(o.0)
    }

    /// Charge the actual usage of reservation `id`, freeing its hold:
    /// `requests, tokens, cost (charged), late, alerts…`.
    pub fn settle(
        &mut self,
        now_us: f64,
        id: f64,
        requests: f64,
        tokens: f64,
        cost: f64,
    ) -> Result<Vec<f64>, JsValue> {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        let r = held(id, now);
        let v =
            with_state!(&mut self.st, |s| self.cfg.settle(&mut **s, now, r, u)).map_err(error)?;
        let mut o = Out::default();
        usage_out(&mut o, &v.charged);
        o.flag(v.late);
        alerts(&mut o, &v.alerts);
        Ok(o.0)
    }

    /// Free reservation `id` unused.
    pub fn release(&mut self, now_us: f64, id: f64) -> Result<(), JsValue> {
        let now = Instant::from_micros(int(now_us));
        let r = held(id, now);
        with_state!(&mut self.st, |s| self.cfg.release(&mut **s, now, r)).map_err(error)
    }

    /// Record usage that already happened (never refused): `alerts…`.
    pub fn record(&mut self, now_us: f64, requests: f64, tokens: f64, cost: f64) -> Vec<f64> {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        let a = with_state!(&mut self.st, |s| self.cfg.record(&mut **s, now, u));
        let mut o = Out::default();
        alerts(&mut o, &a);
        o.0
    }

    /// Spend if it fits now (reserve and settle in one): `0, alerts…`
    /// (charged) or `1, denial…, alerts…`.
    #[wasm_bindgen(js_name = trySpend)]
    pub fn try_spend(
        &mut self,
        now_us: f64,
        requests: f64,
        tokens: f64,
        cost: f64,
    ) -> Result<Vec<f64>, JsValue> {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        let v =
            with_state!(&mut self.st, |s| self.cfg.try_spend(&mut **s, now, u)).map_err(error)?;
        let mut o = Out::default();
        o.flag(v.denied.is_some());
        if let Some(d) = &v.denied {
            denial(&mut o, d);
        }
        alerts(&mut o, &v.alerts);
        Ok(o.0)
    }

    /// What `reserve` / `trySpend` would decide at `now_us`, changing
    /// nothing: empty (it fits) or a denial.
    pub fn peek(
        &self,
        now_us: f64,
        requests: f64,
        tokens: f64,
        cost: f64,
    ) -> Result<Vec<f64>, JsValue> {
        let now = Instant::from_micros(int(now_us));
        let u = usage(requests, tokens, cost);
        let v = with_state!(&self.st, |s| self.cfg.peek(&**s, now, u)).map_err(error)?;
        let mut o = Out::default();
        if let Some(d) = &v {
            denial(&mut o, d);
        }
        Ok(o.0)
    }

    /// Usage, reservations and windows at `now_us`: `throttled,
    /// throttle_until, holds, n, (dimension, horizon, max, used, reserved,
    /// utilization_bp, window_start, window_end) × n`.
    pub fn status(&self, now_us: f64) -> Vec<f64> {
        let now = Instant::from_micros(int(now_us));
        let s = with_state!(&self.st, |s| self.cfg.status(&**s, now));
        let mut o = Out::default();
        o.flag(s.throttled)
            .opt(s.throttle_until.map(Instant::as_micros))
            .int(s.holds as u64)
            .int(s.limits.len() as u64);
        for l in &s.limits {
            o.int(wire::dimension_code(l.limit.dimension))
                .int(horizon_us(l.limit.horizon))
                .int(l.limit.max)
                .int(l.used)
                .int(l.reserved)
                .int(l.utilization_bp)
                .int(l.window_start.as_micros())
                .int(l.window_end.as_micros());
        }
        o.0
    }

    /// Forget all usage and holds (reservation ids stay unique).
    pub fn reset(&mut self) {
        with_state!(&mut self.st, |s| self.cfg.reset(&mut **s));
    }

    /// The state, flat.
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self) -> Vec<f64> {
        with_state!(&self.st, |s| write_state(&**s))
    }

    /// Restore `exportState`; false (unchanged) if malformed.
    #[wasm_bindgen(js_name = importState)]
    pub fn import_state(&mut self, v: &[f64]) -> bool {
        match &mut self.st {
            State::S4(s) => read_state(v).map(|n| **s = n).is_some(),
            State::S64(s) => read_state(v).map(|n| **s = n).is_some(),
        }
    }
}

/// The reservation `id` as settle/release need it (they look it up by id).
fn held(id: f64, now: Instant) -> Reservation {
    Reservation {
        id: if valid(id) { int(id) } else { u64::MAX },
        usage: Usage::default(),
        expires: now,
    }
}
