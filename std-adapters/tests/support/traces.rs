//! Replaying core's trace fixtures through Redis: loading them, reading
//! their integers, and a store on the caller's (the trace's) clock.

use std::sync::Arc;

use ratebound_std::clock::ManualClock;
use ratebound_std::redis::{RedisOptions, TimeSource};
use serde_json::Value;

/// `fixtures/traces/<kind>.json`.
pub fn fixtures(kind: &str) -> Value {
    let path = format!(
        "{}/../fixtures/traces/{kind}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The integer field `k` of `v`.
pub fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// Options for a store deciding at `clock`'s time and returning states.
pub fn caller_time(clock: &ManualClock) -> RedisOptions {
    RedisOptions {
        time: TimeSource::Caller(Arc::new(clock.clone())),
        timeout: std::time::Duration::from_secs(5),
        with_state: true,
        ..RedisOptions::default()
    }
}
