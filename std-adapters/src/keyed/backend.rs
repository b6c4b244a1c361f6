//! The keyed limiter's seam: one type over the in-memory store and Redis,
//! chosen at run time, with one decision and one error type. What it holds
//! per key is a [`LimitSet`]: one limiter, or several decided all or nothing.

use ratebound_core::{ConfigError, CostError, Decision};

use std::sync::Arc;

use super::memory::{memory_decision, MemoryKeyed};
use super::KeyedConfig;
use crate::clock::Clock;
use crate::fallback::Source;
use crate::limiter::LimitSet;
use crate::AcquireError;

/// A decision and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedDecision {
    /// The decision (a set's, folded by core: allowed only if every member
    /// allows).
    pub decision: Decision,
    /// The member it binds: on denial the denying one with the latest
    /// `retry_at`, else the one with least left (0 for a single limiter).
    pub binding: usize,
    /// What the binding member alone has left (the set's
    /// `decision.remaining` is the least of any member's).
    pub binding_remaining: u64,
    /// When the binding member alone is full again (the set's
    /// `decision.reset_at` is when every member is).
    pub binding_reset_at: ratebound_core::Instant,
    /// Redis, or the failure policy's answer.
    pub source: Source,
    /// When it was made (Redis's clock for a decision made there): what
    /// `decision.retry_after(now)` and `reset_after(now)` are measured from.
    pub now: ratebound_core::Instant,
}

/// Why a keyed limiter gave no decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyedError {
    /// The cost can never fit (more than the limiter's capacity).
    #[error(transparent)]
    Cost(#[from] CostError),
    /// The in-memory store is full of active keys (see [`KeyedConfig`](super::KeyedConfig)).
    #[error("the keyed store is full of active keys")]
    Full,
    /// The shared store is unavailable (under `closed`) or refused the call.
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Store(#[from] crate::redis::StoreError),
}

impl KeyedError {
    /// True when the shared store was unavailable (under `closed`), as
    /// opposed to a bad call.
    pub fn is_unavailable(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            KeyedError::Store(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

impl From<AcquireError> for KeyedError {
    fn from(e: AcquireError) -> Self {
        match e {
            AcquireError::Cost(c) => KeyedError::Cost(c),
            _ => KeyedError::Full,
        }
    }
}

/// A keyed limiter in memory or in Redis, chosen at run time (e.g. from
/// config): the same calls and answers either way. A single shared limit is
/// a keyed one used with one key.
///
/// ```
/// use ratebound_core::Gcra;
/// use ratebound_std::clock::SystemClock;
/// use ratebound_std::keyed::{AnyKeyedLimiter, KeyedConfig};
/// use ratebound_std::limiter::{AnyLimiter, LimitSet};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limits = LimitSet::new([
///     ("per_second", AnyLimiter::Gcra(Gcra::per_second(5)?)),
///     ("per_minute", AnyLimiter::Gcra(Gcra::per_minute(100)?)),
/// ])?;
/// let per_client = AnyKeyedLimiter::memory(limits, KeyedConfig::default(), SystemClock)?;
/// let d = per_client.check(b"203.0.113.7", 1).await?;
/// assert!(d.decision.allowed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub enum AnyKeyedLimiter<C: Clock + Clone> {
    /// In this process, bounded.
    Memory(Box<MemoryKeyed<C>>),
    /// In Redis, shared by every server.
    #[cfg(feature = "redis")]
    Redis(Box<super::RedisKeyedLimiter<C>>),
}

impl<C: Clock + Clone> AnyKeyedLimiter<C> {
    /// `limits` per key in this process, in a store sized by `config`.
    pub fn memory(limits: LimitSet, config: KeyedConfig, clock: C) -> Result<Self, ConfigError> {
        Ok(AnyKeyedLimiter::Memory(Box::new(MemoryKeyed::new(
            limits, config, clock,
        )?)))
    }

    /// Check `cost` for `key`: every member of the set, all or nothing.
    pub async fn check(&self, key: &[u8], cost: u64) -> Result<KeyedDecision, KeyedError> {
        match self {
            AnyKeyedLimiter::Memory(m) => memory_decision(m, &key.into(), cost, true),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.check(key, cost).await,
        }
    }

    /// What [`check`](Self::check) would decide, changing nothing.
    pub async fn peek(&self, key: &[u8], cost: u64) -> Result<KeyedDecision, KeyedError> {
        match self {
            AnyKeyedLimiter::Memory(m) => memory_decision(m, &key.into(), cost, false),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.peek(key, cost).await,
        }
    }

    /// The limits keys are decided by (but those with an override).
    pub fn limits(&self) -> Arc<LimitSet> {
        match self {
            AnyKeyedLimiter::Memory(m) => m.limits(),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.limits(),
        }
    }

    /// The limits `key` is decided by: its override, else the common ones.
    pub fn limits_for(&self, key: &[u8]) -> Arc<LimitSet> {
        match self {
            AnyKeyedLimiter::Memory(m) => m.limits_for(key),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.limits_for(key),
        }
    }

    /// The longest key this backend takes, if it bounds keys: Redis's
    /// [`max_tag_len`](crate::redis::RedisOptions::max_tag_len); memory
    /// takes keys of any length.
    pub fn max_key_len(&self) -> Option<usize> {
        match self {
            AnyKeyedLimiter::Memory(_) => None,
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => Some(r.max_key_len()),
        }
    }

    /// How long the shared store is skipped after it fails (the fail-over's
    /// [`retry_after`](crate::fallback::FailoverOptions::retry_after)): a
    /// client refused because it is away may try again after this. `None`
    /// in memory.
    pub fn store_retry_after(&self) -> Option<std::time::Duration> {
        match self {
            AnyKeyedLimiter::Memory(_) => None,
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => Some(r.failover().retry_after),
        }
    }

    /// The limits that made a decision from `source` for `key`: under the
    /// local fail-over ([`Source::Local`]) this replica's share of them,
    /// else [`limits_for`](Self::limits_for). Answers describe these, so a
    /// client pacing itself by them is not refused.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub fn limits_deciding(&self, key: &[u8], source: Source) -> Arc<LimitSet> {
        match self {
            AnyKeyedLimiter::Memory(m) => m.limits_for(key),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.limits_deciding(key, source),
        }
    }

    /// Decide every key by `limits` from now on, keeping every key's state
    /// (core's [`reconfigure`](ratebound_core::reconfigure) rule: the state
    /// is kept and the new limits read it). Refused, changing nothing, when
    /// the members' names, order or kinds differ or a sliding counter's
    /// window changes — such a set is a new limit. In Redis the change is
    /// this replica's: apply it on each (while replicas differ, each
    /// decides by its own limits on the one shared state).
    pub fn reconfigure(&self, limits: LimitSet) -> Result<(), ConfigError> {
        match self {
            AnyKeyedLimiter::Memory(m) => m.reconfigure(limits),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.reconfigure(limits),
        }
    }

    /// Decide `key` by `limits` (e.g. a premium key's larger quota) until
    /// [`remove_override`](Self::remove_override), keeping its state;
    /// refused like [`reconfigure`](Self::reconfigure).
    pub fn set_override(&self, key: &[u8], limits: LimitSet) -> Result<(), ConfigError> {
        match self {
            AnyKeyedLimiter::Memory(m) => m.set_override(key, limits),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.set_override(key, limits),
        }
    }

    /// Decide `key` by the common limits again; false when it had no override.
    pub fn remove_override(&self, key: &[u8]) -> bool {
        match self {
            AnyKeyedLimiter::Memory(m) => m.remove_override(key),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.remove_override(key),
        }
    }

    /// Keys held in this process (the in-memory store, or under `local`
    /// the fallback's; 0 for Redis otherwise), read without locking.
    pub fn keys_held(&self) -> usize {
        match self {
            AnyKeyedLimiter::Memory(m) => m.held(),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.local_keys_held(),
        }
    }
}
