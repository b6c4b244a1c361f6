//! Model quotas (feature `model-quota`, the module `ratebound/model-quota`):
//! total and success counts with holds, decided by core. Limits, state and
//! decisions as flat arrays of numbers ([`flat`](crate::flat)), read and
//! written by `node/src/budget-codec.js`.
//!
//! Layouts (µs for times; `-1` for none):
//! - limits: `(total, success, period, window (0 sliding, 1 bucket),
//!   hold_ttl) × scopes`;
//! - a decision: `total? (1/0), (allowed, remaining, limit, reset_at,
//!   retry_at) of the total (zeros without one), the same of the success
//!   count, now, hold, in_flight, blocked (-1 admitted, 0 total, 1
//!   success, 2 in flight)`;
//! - state: `last, next_id, (n, (at, cost) × n, tat, rem) for the total
//!   then the success count, h, (id, expires) × h`.

use alloc::boxed::Box;
use alloc::vec::Vec;

use ratebound_core::model_quota::{
    Blocked, CountState, ModelDecision, ModelHold, ModelQuota as CoreQuota, ModelState, Outcome,
    Settled, Window,
};
use ratebound_core::{Decision, Duration, GcraState, Instant, LogEntry};
use wasm_bindgen::prelude::*;

use crate::flat::{config_error, malformed, Out, Reader};
use crate::int;

/// One model-quota state, decided under the limits of one of several scopes
/// (a group's, a model's, the global ones) per call.
#[wasm_bindgen]
pub struct ModelQuota {
    scopes: Vec<CoreQuota>,
    st: Box<ModelState>,
}

fn read_scopes(v: &[f64]) -> Result<Vec<CoreQuota>, JsValue> {
    let mut r = Reader::new(v);
    let mut scopes = Vec::new();
    while !r.done() {
        let (Some(total), Some(success), Some(period), Some(window), Some(ttl)) =
            (r.opt(), r.int(), r.int(), r.int(), r.int())
        else {
            return Err(malformed());
        };
        let window = match window {
            0 => Window::Sliding,
            1 => Window::Bucket,
            _ => return Err(malformed()),
        };
        scopes.push(
            CoreQuota::new(
                total,
                success,
                Duration::from_micros(period),
                window,
                Duration::from_micros(ttl),
            )
            .map_err(config_error)?,
        );
    }
    Ok(scopes)
}

#[cfg(feature = "redis")]
fn write_scope(o: &mut Out, q: &CoreQuota) {
    o.opt(q.total_max())
        .int(q.success_max())
        .int(q.period().as_micros())
        .flag(q.window() == Window::Bucket)
        .int(q.hold_ttl().as_micros());
}

fn decision(o: &mut Out, d: Option<&Decision>) {
    match d {
        Some(d) => {
            o.flag(d.allowed)
                .int(d.remaining)
                .int(d.limit)
                .int(d.reset_at.as_micros())
                .int(d.retry_at.as_micros());
        }
        None => o.0.extend([0.0; 5]),
    }
}

fn decided(d: &ModelDecision) -> Vec<f64> {
    let mut o = Out::default();
    o.flag(d.total.is_some());
    decision(&mut o, d.total.as_ref());
    decision(&mut o, Some(&d.success));
    o.int(d.now.as_micros()).opt(d.hold).int(d.in_flight);
    o.0.push(match d.blocked {
        None => -1.0,
        Some(Blocked::Total) => 0.0,
        Some(Blocked::Success) => 1.0,
        Some(Blocked::InFlight) => 2.0,
    });
    o.0
}

fn read_count(r: &mut Reader<'_>) -> Option<CountState> {
    let mut c = CountState::default();
    for _ in 0..r.int()? {
        let e = LogEntry {
            at: r.int()?,
            cost: r.int()?,
        };
        c.log.push(e).ok()?;
    }
    c.bucket = GcraState {
        tat: r.int()?,
        rem: r.int()?,
    };
    Some(c)
}

fn write_count(o: &mut Out, c: &CountState) {
    o.int(c.log.len() as u64);
    for e in &c.log {
        o.int(e.at).int(e.cost);
    }
    o.int(c.bucket.tat).int(c.bucket.rem);
}

fn read_state(v: &[f64]) -> Option<ModelState> {
    let mut r = Reader::new(v);
    let mut s = ModelState {
        last: r.int()?,
        next_id: r.int()?,
        total: read_count(&mut r)?,
        success: read_count(&mut r)?,
        ..ModelState::default()
    };
    for _ in 0..r.int()? {
        let h = ModelHold {
            id: r.int()?,
            expires: r.int()?,
        };
        s.holds.push(h).ok()?;
    }
    r.done().then_some(s)
}

#[wasm_bindgen]
impl ModelQuota {
    /// The scopes' limits, flat; throws `field`, a tab and core's message.
    #[wasm_bindgen(constructor)]
    pub fn new(scopes: &[f64]) -> Result<ModelQuota, JsValue> {
        let scopes = read_scopes(scopes)?;
        let Some(first) = scopes.first() else {
            return Err(JsValue::from_str(
                "scopes\tat least one scope's limits are needed",
            ));
        };
        // One state is counted under every scope's limits: they must forget alike.
        if scopes
            .iter()
            .any(|q| q.period() != first.period() || q.window() != first.window())
        {
            return Err(JsValue::from_str(
                "scopes\tevery scope must have the same period and window",
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

    /// One of `replicas` replicas' share of scope `scope`'s limits, flat as
    /// this constructor takes them (core's `ModelQuota::share`), for the
    /// local fallback of `ratebound/redis`.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = shareConfig)]
    pub fn share_config(&self, scope: f64, replicas: u32) -> Result<Vec<f64>, JsValue> {
        let q = self.scope(scope)?.share(replicas).map_err(|_| {
            JsValue::from_str("the limits cannot be divided among that many replicas")
        })?;
        let mut o = Out::default();
        write_scope(&mut o, &q);
        Ok(o.0)
    }

    /// Scope `scope`'s window, as the model script takes it.
    #[cfg(feature = "redis")]
    #[wasm_bindgen(js_name = windowName)]
    pub fn window_name(&self, scope: f64) -> Result<alloc::string::String, JsValue> {
        Ok(self.scope(scope)?.window().name().into())
    }

    /// Admit one request under scope `scope`'s limits: the decision, flat.
    pub fn admit(&mut self, scope: f64, now_us: f64) -> Result<Vec<f64>, JsValue> {
        let q = self.scope(scope)?;
        Ok(decided(
            &q.admit(&mut self.st, Instant::from_micros(int(now_us))),
        ))
    }

    /// What `admit` would decide, changing nothing.
    pub fn peek(&self, scope: f64, now_us: f64) -> Result<Vec<f64>, JsValue> {
        let q = self.scope(scope)?;
        Ok(decided(
            &q.peek(&self.st, Instant::from_micros(int(now_us))),
        ))
    }

    /// Settle hold `id` as a success or a failure: true when its hold was
    /// live, false when it had lapsed.
    pub fn settle(
        &mut self,
        scope: f64,
        id: f64,
        success: bool,
        now_us: f64,
    ) -> Result<bool, JsValue> {
        let q = self.scope(scope)?;
        let outcome = if success {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let now = Instant::from_micros(int(now_us));
        Ok(q.settle(&mut self.st, now, int(id), outcome) == Settled::Held)
    }

    /// The state, flat.
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self) -> Vec<f64> {
        let s = &*self.st;
        let mut o = Out::default();
        o.int(s.last).int(s.next_id);
        write_count(&mut o, &s.total);
        write_count(&mut o, &s.success);
        o.int(s.holds.len() as u64);
        for h in &s.holds {
            o.int(h.id).int(h.expires);
        }
        o.0
    }

    /// Replace the state with one from `exportState`; false (and nothing
    /// changed) when it is malformed.
    #[wasm_bindgen(js_name = importState)]
    pub fn import_state(&mut self, v: &[f64]) -> bool {
        read_state(v).map(|s| *self.st = s).is_some()
    }
}
