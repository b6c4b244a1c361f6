//! Model quotas (feature `budget`, in the module `ratebound/budget` that
//! carries the JSON codec): total and success counts with holds, decided by
//! core. JSON in for the limits and state, JSON out for results, in the
//! shapes of `fixtures/traces/model_quota.json`.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use ratebound_core::model_quota::{ModelQuota as CoreQuota, ModelState, Outcome};
use ratebound_core::{Instant, MAX_SAFE_INTEGER};
use wasm_bindgen::prelude::*;

use crate::int;

/// One model-quota state, decided under the limits of one of several scopes
/// (a group's, a model's, the global ones) per call.
#[wasm_bindgen]
pub struct ModelQuota {
    scopes: Vec<CoreQuota>,
    st: Box<ModelState>,
}

fn json<T: serde::Serialize>(t: &T) -> String {
    serde_json::to_string(t).unwrap_or_else(|_| "null".to_string())
}

#[wasm_bindgen]
impl ModelQuota {
    /// The scopes' limits as a JSON array of core's config
    /// (`{total, success, period_us, window, hold_ttl_us}`); throws a message
    /// naming what is wrong.
    #[wasm_bindgen(constructor)]
    pub fn new(scopes_json: &str) -> Result<ModelQuota, JsValue> {
        let scopes: Vec<CoreQuota> =
            serde_json::from_str(scopes_json).map_err(|e| JsValue::from_str(&e.to_string()))?;
        let Some(first) = scopes.first() else {
            return Err(JsValue::from_str("at least one scope's limits are needed"));
        };
        // One state is counted under every scope's limits: they must forget alike.
        if scopes
            .iter()
            .any(|q| q.period() != first.period() || q.window() != first.window())
        {
            return Err(JsValue::from_str(
                "every scope must have the same period and window",
            ));
        }
        Ok(ModelQuota {
            scopes,
            st: Box::default(),
        })
    }

    fn scope(&self, i: f64) -> Result<CoreQuota, JsValue> {
        let i = usize::try_from(int(i)).unwrap_or(usize::MAX);
        self.scopes
            .get(i)
            .copied()
            .ok_or_else(|| JsValue::from_str("no such scope"))
    }

    /// Scope `scope`'s model-script arguments for `ratebound/redis` (core's
    /// `wire::model_script_config`): the three counts, then the nine after
    /// the window's name (see [`window_name`](Self::window_name)).
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = redisConfig)]
    pub fn redis_config(&self, scope: f64) -> Result<Vec<f64>, JsValue> {
        let (counts, _, rest) = ratebound_core::wire::model_script_config(&self.scope(scope)?);
        Ok(counts.iter().chain(&rest).map(|&x| x as f64).collect())
    }

    /// One of `replicas` replicas' share of scope `scope`'s limits, as the
    /// JSON this constructor takes (core's `ModelQuota::share`), for the
    /// local fallback of `ratebound/redis`.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = shareConfig)]
    pub fn share_config(&self, scope: f64, replicas: u32) -> Result<String, JsValue> {
        let q = self.scope(scope)?.share(replicas).map_err(|_| {
            JsValue::from_str("the limits cannot be divided among that many replicas")
        })?;
        Ok(json(&[q]))
    }

    /// Scope `scope`'s window, as the model script takes it.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = windowName)]
    pub fn window_name(&self, scope: f64) -> Result<String, JsValue> {
        Ok(self.scope(scope)?.window().name().to_string())
    }

    /// Admit one request under scope `scope`'s limits: the decision as JSON.
    pub fn admit(&mut self, scope: f64, now_us: f64) -> Result<String, JsValue> {
        let q = self.scope(scope)?;
        Ok(json(
            &q.admit(&mut self.st, Instant::from_micros(int(now_us))),
        ))
    }

    /// What `admit` would decide, changing nothing.
    pub fn peek(&self, scope: f64, now_us: f64) -> Result<String, JsValue> {
        let q = self.scope(scope)?;
        Ok(json(&q.peek(&self.st, Instant::from_micros(int(now_us)))))
    }

    /// Settle hold `id` as a success or a failure: `"held"` or `"lapsed"` (JSON).
    pub fn settle(
        &mut self,
        scope: f64,
        id: f64,
        success: bool,
        now_us: f64,
    ) -> Result<String, JsValue> {
        let q = self.scope(scope)?;
        let outcome = if success {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let now = Instant::from_micros(int(now_us));
        Ok(json(&q.settle(&mut self.st, now, int(id), outcome)))
    }

    /// The state as JSON (core's serde form).
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self) -> String {
        json(&*self.st)
    }

    /// Replace the state with one from `exportState`; false (and nothing
    /// changed) when it does not parse.
    #[wasm_bindgen(js_name = importState)]
    pub fn import_state(&mut self, state_json: &str) -> bool {
        match serde_json::from_str::<ModelState>(state_json) {
            // Ids and times travel as JS numbers: exact below 2^53 only.
            Ok(s) if s.next_id <= MAX_SAFE_INTEGER && s.last <= MAX_SAFE_INTEGER => {
                *self.st = s;
                true
            }
            _ => false,
        }
    }
}
