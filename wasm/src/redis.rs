//! What the npm package's Redis path (`ratebound/redis`) takes from core:
//! the key layout, a GCRA's derived script arguments, and one replica's
//! share of a limit for the local fallback. The scripts decide; these are
//! the numbers and bytes they are called with.

use alloc::vec::Vec;

use ratebound_core::share::{limits_share_refusal, share_of};
use ratebound_core::{wire, Decision, Duration, Gcra as CoreGcra, Instant};
use wasm_bindgen::prelude::*;

use crate::{config_field, int};

/// `prefix{tag}:name` with the tag escaped (core's `wire::redis_key`).
#[wasm_bindgen(js_name = redisKey)]
pub fn redis_key(prefix: &[u8], tag: &[u8], name: &[u8]) -> Vec<u8> {
    wire::redis_key(prefix, tag, name).collect()
}

/// Whether `name` may name a limit (core's `wire::limit_name_valid`).
#[wasm_bindgen(js_name = limitNameValid)]
pub fn limit_name_valid(name: &[u8]) -> bool {
    wire::limit_name_valid(name)
}

/// Whether `prefix` and `name` can form a key (no `{` or `}`).
#[wasm_bindgen(js_name = redisKeyPartsValid)]
pub fn redis_key_parts_valid(prefix: &[u8], name: &[u8]) -> bool {
    wire::redis_key_parts_valid(prefix, name)
}

/// A GCRA's script arguments `[p, a, tau_us, tau_rem]` (core's
/// `wire::gcra_args`); throws the offending field on a bad config.
#[wasm_bindgen(js_name = gcraRedisArgs)]
pub fn gcra_redis_args(capacity: f64, amount: f64, period_us: f64) -> Result<Vec<f64>, JsValue> {
    let g = CoreGcra::new(
        int(capacity),
        int(amount),
        Duration::from_micros(int(period_us)),
    )
    .map_err(config_field)?;
    Ok(wire::gcra_args(&g).iter().map(|&x| x as f64).collect())
}

/// One of `replicas` replicas' share of a GCRA: `[capacity, amount,
/// period_us]` (core's `Gcra::share`).
#[wasm_bindgen(js_name = gcraShare)]
pub fn gcra_share(
    capacity: f64,
    amount: f64,
    period_us: f64,
    replicas: u32,
) -> Result<Vec<f64>, JsValue> {
    let g = CoreGcra::new(
        int(capacity),
        int(amount),
        Duration::from_micros(int(period_us)),
    )
    .and_then(|g| g.share(replicas))
    .map_err(config_field)?;
    Ok(Vec::from([
        g.capacity() as f64,
        g.amount() as f64,
        g.period().as_micros() as f64,
    ]))
}

/// One of `replicas` replicas' share of a window's `limit` (core's
/// `share_of`: divided, rounded down, at least 1).
#[wasm_bindgen(js_name = shareOf)]
pub fn share_of_limit(limit: f64, replicas: u32) -> f64 {
    share_of(int(limit), replicas) as f64
}

/// Before one of `replicas` replicas decides a call alone on its share of
/// a set of limits, `members` packed `[whole capacity, cost]` per member:
/// empty to decide it there, or the call's refusal until `retry_at_us` in
/// `policyFold`'s layout (`[0, member, remaining, limit, reset_at_us,
/// retry_at_us]`) when a whole limit fits its cost and its share never can
/// (core's `share::limits_share_refusal`); throws `"cost"` when a whole
/// limit cannot fit its cost.
#[wasm_bindgen(js_name = limitsShareRefusal)]
pub fn limits_share_refusal_of(
    replicas: u32,
    now_us: f64,
    retry_at_us: f64,
    members: &[f64],
) -> Result<Vec<f64>, JsValue> {
    let pairs = members.chunks_exact(2).map(|m| (int(m[0]), int(m[1])));
    let now = Instant::from_micros(int(now_us));
    let retry_at = Instant::from_micros(int(retry_at_us));
    match limits_share_refusal(pairs, replicas, now, retry_at) {
        Ok(None) => Ok(Vec::new()),
        Ok(Some((member, d))) => Ok(Vec::from([
            0.0,
            member as f64,
            d.remaining as f64,
            d.limit as f64,
            d.reset_at.as_micros() as f64,
            d.retry_at.as_micros() as f64,
        ])),
        Err(_) => Err(JsValue::from_str("cost")),
    }
}

/// Each member's answer when Redis is unavailable and the policy admits
/// uncounted (core's `Decision::uncounted`), `members` packed `[capacity,
/// cost]`: `[1, remaining, limit, now_us, now_us]` per member, for
/// `policyFold` (which with them gives core's `policy::uncounted`).
#[wasm_bindgen(js_name = uncountedRows)]
pub fn uncounted_rows(now_us: f64, members: &[f64]) -> Vec<f64> {
    let now = Instant::from_micros(int(now_us));
    let mut rows = Vec::with_capacity(members.len() / 2 * 5);
    for m in members.chunks_exact(2) {
        let d = Decision::uncounted(now, int(m[0]), int(m[1]));
        rows.extend([
            1.0,
            d.remaining as f64,
            d.limit as f64,
            d.reset_at.as_micros() as f64,
            d.retry_at.as_micros() as f64,
        ]);
    }
    rows
}
