//! How a store talks to Redis: [`RedisOptions`] and where `now` comes from.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use crate::clock::Clock;

/// Where the scripts' `now` comes from.
#[derive(Clone)]
pub enum TimeSource {
    /// Redis `TIME`: one clock for every server (default).
    Redis,
    /// The caller's clock, sent with each call.
    Caller(Arc<dyn Clock>),
}

impl std::fmt::Debug for TimeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeSource::Redis => "Redis",
            TimeSource::Caller(_) => "Caller",
        })
    }
}

/// How a [`RedisStore`](super::RedisStore) talks to Redis.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Prepended to every key (default `rb:`).
    pub prefix: String,
    /// The longest call, reconnecting included, before it fails with
    /// [`StoreError::Timeout`](super::StoreError::Timeout) (default 1 s). An admission that Redis starts
    /// after this changes nothing ([`StoreError::Late`](super::StoreError::Late)).
    pub timeout: StdDuration,
    /// Connections used in turn (default 1; each is multiplexed, so one
    /// carries many concurrent calls).
    pub connections: usize,
    /// Where `now` comes from (default Redis `TIME`).
    pub time: TimeSource,
    /// Extra time before an idle key expires (default 60 s).
    pub ttl_margin: StdDuration,
    /// The longest key tag accepted, in bytes (default 1024).
    pub max_tag_len: usize,
    /// Return each limiter's state with its decision
    /// ([`ChargeOutcome::state`](super::ChargeOutcome)): for tests and
    /// replays; off by default, which keeps replies small.
    pub with_state: bool,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "rb:".into(),
            timeout: StdDuration::from_secs(1),
            connections: 1,
            time: TimeSource::Redis,
            ttl_margin: StdDuration::from_secs(60),
            max_tag_len: 1024,
            with_state: false,
        }
    }
}
