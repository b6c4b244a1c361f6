//! The flat layouts of `ratebound/budget`'s config, state and results
//! ([`flat`](crate::flat)), read and written here and by
//! `node/src/budget-codec.js`.
//!
//! Layouts (µs for times; `-1` for none; dimensions by core's
//! `wire::dimension_code`, 1 requests, 2 tokens, 3 cost; a horizon as its
//! length in µs, 0 for a calendar month):
//! - config: `max_tokens_per_request, max_cost_per_request, utc_offset_secs,
//!   hold_ttl, throttle_after_bp, throttle_min_delay, n, threshold_bp × n,
//!   m, (dimension, horizon, max) × m`;
//! - alerts: `n, (kind (0 threshold, 1 limit hit), limit, dimension,
//!   horizon, threshold_bp, utilization_bp, at, window_start) × n`;
//! - a denial: `reason (0 limit, 1 throttled, 2 too many reservations),
//!   retry_at, limit`;
//! - state: `last, next_id, throttle_until, w (core's `MAX_LIMITS`),
//!   (start, used, reserved, fired, kind, limit) × w, n, (id, at, expires,
//!   requests, tokens, cost, lapsed) × n`.

use alloc::vec::Vec;

use ratebound_core::budget::{
    Alert, AlertKind, BudgetConfig, BudgetError, BudgetState, Denial, DenyReason, Dimension, Hold,
    Horizon, Throttle, Usage, WindowLimit, WindowUsage, MAX_LIMITS,
};
use ratebound_core::{wire, Duration};
use wasm_bindgen::prelude::*;

use crate::flat::{Out, Reader};
use crate::int;

pub(crate) fn usage(requests: f64, tokens: f64, cost: f64) -> Usage {
    Usage {
        requests: int(requests),
        tokens: int(tokens),
        cost: int(cost),
    }
}

fn dimension(code: u64) -> Option<Dimension> {
    [Dimension::Requests, Dimension::Tokens, Dimension::Cost]
        .into_iter()
        .find(|&d| wire::dimension_code(d) == code)
}

pub(crate) fn horizon_us(h: Horizon) -> u64 {
    match h {
        Horizon::Fixed(d) => d.as_micros(),
        Horizon::CalendarMonth => 0,
    }
}

/// A config from its flat layout; `None` when malformed.
pub(crate) fn read_config(v: &[f64]) -> Option<BudgetConfig> {
    let mut r = Reader::new(v);
    let mut c = BudgetConfig::new();
    c.max_tokens_per_request = r.opt()?;
    c.max_cost_per_request = r.opt()?;
    c.utc_offset_secs = i32::try_from(r.signed()?).ok()?;
    c.hold_ttl = Duration::from_micros(r.int()?);
    let after = r.opt()?;
    let min_delay = Duration::from_micros(r.int()?);
    c.throttle = match after {
        Some(bp) => Some(Throttle {
            after_bp: u16::try_from(bp).ok()?,
            min_delay,
        }),
        None => None,
    };
    // Through the builder, so that too many limits or thresholds are core's
    // config error (naming them) rather than a malformed array.
    for _ in 0..r.int()? {
        c = c.alert_threshold_bp(u16::try_from(r.int()?).ok()?);
    }
    for _ in 0..r.int()? {
        let dimension = dimension(r.int()?)?;
        let horizon = match r.int()? {
            0 => Horizon::CalendarMonth,
            us => Horizon::Fixed(Duration::from_micros(us)),
        };
        let max = r.int()?;
        c = c.push_limit(WindowLimit {
            dimension,
            horizon,
            max,
        });
    }
    r.done().then_some(c)
}

pub(crate) fn write_config(c: &BudgetConfig) -> Vec<f64> {
    let mut o = Out::default();
    o.opt(c.max_tokens_per_request).opt(c.max_cost_per_request);
    o.0.push(f64::from(c.utc_offset_secs));
    o.int(c.hold_ttl.as_micros())
        .opt(c.throttle.map(|t| u64::from(t.after_bp)))
        .int(c.throttle.map_or(0, |t| t.min_delay.as_micros()))
        .int(c.alert_thresholds_bp.len() as u64);
    for &bp in &c.alert_thresholds_bp {
        o.int(u64::from(bp));
    }
    o.int(c.limits.len() as u64);
    for l in &c.limits {
        o.int(wire::dimension_code(l.dimension))
            .int(horizon_us(l.horizon))
            .int(l.max);
    }
    o.0
}

pub(crate) fn alerts(o: &mut Out, alerts: &[Alert]) {
    o.int(alerts.len() as u64);
    for a in alerts {
        o.flag(a.kind == AlertKind::LimitHit)
            .int(u64::from(a.limit))
            .int(wire::dimension_code(a.dimension))
            .int(horizon_us(a.horizon))
            .int(u64::from(a.threshold_bp))
            .int(a.utilization_bp)
            .int(a.at.as_micros())
            .int(a.window_start.as_micros());
    }
}

pub(crate) fn denial(o: &mut Out, d: &Denial) {
    let reason = match d.reason {
        DenyReason::Limit => 0,
        DenyReason::Throttled => 1,
        DenyReason::TooManyReservations => 2,
        DenyReason::AboveShare => 3,
    };
    o.int(reason)
        .int(d.retry_at.as_micros())
        .opt(d.limit.map(u64::from));
}

pub(crate) fn usage_out(o: &mut Out, u: &Usage) {
    o.int(u.requests).int(u.tokens).int(u.cost);
}

pub(crate) fn error(e: BudgetError) -> JsValue {
    JsValue::from_str(e.code())
}

pub(crate) fn read_state<const R: usize>(v: &[f64]) -> Option<BudgetState<R>> {
    let mut r = Reader::new(v);
    let mut s = BudgetState::<R> {
        last: r.int()?,
        next_id: r.int()?,
        throttle_until: r.int()?,
        ..BudgetState::default()
    };
    if r.int()? != MAX_LIMITS as u64 {
        return None;
    }
    for w in s.windows.iter_mut() {
        *w = WindowUsage {
            start: r.int()?,
            used: r.int()?,
            reserved: r.int()?,
            fired: u8::try_from(r.int()?).ok()?,
            kind: r.int()?,
            limit: r.int()?,
        };
    }
    for _ in 0..r.int()? {
        let hold = Hold {
            id: r.int()?,
            at: r.int()?,
            expires: r.int()?,
            usage: Usage {
                requests: r.int()?,
                tokens: r.int()?,
                cost: r.int()?,
            },
            lapsed: match r.int()? {
                0 => false,
                1 => true,
                _ => return None,
            },
        };
        s.holds.push(hold).ok()?;
    }
    r.done().then_some(s)
}

pub(crate) fn write_state<const R: usize>(s: &BudgetState<R>) -> Vec<f64> {
    let mut o = Out::default();
    o.int(s.last)
        .int(s.next_id)
        .int(s.throttle_until)
        .int(s.windows.len() as u64);
    for w in &s.windows {
        o.int(w.start)
            .int(w.used)
            .int(w.reserved)
            .int(u64::from(w.fired))
            .int(w.kind)
            .int(w.limit);
    }
    o.int(s.holds.len() as u64);
    for h in &s.holds {
        o.int(h.id).int(h.at).int(h.expires);
        usage_out(&mut o, &h.usage);
        o.flag(h.lapsed);
    }
    o.0
}
