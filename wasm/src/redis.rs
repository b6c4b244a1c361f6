//! What the npm package's Redis path (`ratebound/redis`) takes from core:
//! the key layout, a GCRA's derived script arguments, and one replica's
//! share of a limit for the local fallback. The scripts decide; these are
//! the numbers and bytes they are called with.

use alloc::vec::Vec;

use ratebound_core::{share::share_of, wire, Duration, Gcra as CoreGcra};
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
