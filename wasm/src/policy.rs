//! Policy sets for the JS `Policy`: the members are decided one by one
//! through their own objects, and core's [`fold`] combines their decisions,
//! so the binding member and the set's numbers are core's.

#[cfg(feature = "redis")]
use alloc::vec::Vec;

use ratebound_core::policy::fold;
use ratebound_core::{Decision, Instant};
#[cfg(feature = "redis")]
use wasm_bindgen::prelude::*;

use crate::int;

/// Fold members' decisions, packed as `[status (1 allowed, 0 denied),
/// remaining, limit, reset_at_us, retry_at_us]` per member, into the set's:
/// `[allowed (1/0), binding member (-1: none), remaining, limit, reset_at_us,
/// retry_at_us]` (core's `policy::fold`).
pub fn policy_fold(now_us: f64, members: &[f64]) -> [f64; 6] {
    let now = Instant::from_micros(int(now_us));
    let decisions = members.chunks_exact(5).enumerate().map(|(i, m)| {
        let at = |j: usize| m.get(j).copied().map_or(0, int);
        (
            i,
            Decision {
                allowed: at(0) == 1,
                remaining: at(1),
                limit: at(2),
                reset_at: Instant::from_micros(at(3)),
                retry_at: Instant::from_micros(at(4)),
            },
        )
    });
    let p = fold(now, decisions);
    let d = p.decision;
    let binding = p.binding.map_or(-1.0, |b| b as f64);
    [
        f64::from(u8::from(d.allowed)),
        binding,
        d.remaining as f64,
        d.limit as f64,
        d.reset_at.as_micros() as f64,
        d.retry_at.as_micros() as f64,
    ]
}

/// Fold members' decisions, packed as `[status (1 allowed, 0 denied),
/// remaining, limit, reset_at_us, retry_at_us]` per member, into the set's:
/// `[allowed (1/0), binding member (-1: none), remaining, limit, reset_at_us,
/// retry_at_us]` (core's `policy::fold`; [`policy_fold`] for `ratebound/redis`,
/// through wasm-bindgen, which returns arrays as `Vec`s).
#[cfg(feature = "redis")]
#[wasm_bindgen(js_name = policyFold)]
pub fn policy_fold_for_js(now_us: f64, members: &[f64]) -> Vec<f64> {
    policy_fold(now_us, members).to_vec()
}
