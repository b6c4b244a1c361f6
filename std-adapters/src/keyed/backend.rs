//! The keyed limiter's seam: one type over the in-memory store and Redis,
//! chosen at run time, with one decision and one error type.

use ratebound_core::{CostError, Decision};

use super::KeyedLimiter;
use crate::clock::Clock;
use crate::fallback::Source;
use crate::limiter::AnyLimiter;
use crate::AcquireError;

/// A decision and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedDecision {
    /// The decision.
    pub decision: Decision,
    /// Redis, or the failure policy's answer.
    pub source: Source,
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
#[derive(Debug)]
pub enum AnyKeyedLimiter<C: Clock + Clone> {
    /// In this process, bounded.
    Memory(Box<KeyedLimiter<Vec<u8>, AnyLimiter, C>>),
    /// In Redis, shared by every server.
    #[cfg(feature = "redis")]
    Redis(Box<super::RedisKeyedLimiter<C>>),
}

impl<C: Clock + Clone> AnyKeyedLimiter<C> {
    /// Check `cost` for `key`.
    pub async fn check(&self, key: &[u8], cost: u64) -> Result<KeyedDecision, KeyedError> {
        match self {
            AnyKeyedLimiter::Memory(m) => Ok(KeyedDecision {
                decision: m.check(&key.to_vec(), cost)?,
                source: Source::Memory,
            }),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.check(key, cost).await,
        }
    }

    /// What [`check`](Self::check) would decide, changing nothing.
    pub async fn peek(&self, key: &[u8], cost: u64) -> Result<KeyedDecision, KeyedError> {
        match self {
            AnyKeyedLimiter::Memory(m) => Ok(KeyedDecision {
                decision: m.peek(&key.to_vec(), cost)?,
                source: Source::Memory,
            }),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.peek(key, cost).await,
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &AnyLimiter {
        match self {
            AnyKeyedLimiter::Memory(m) => m.limiter(),
            #[cfg(feature = "redis")]
            AnyKeyedLimiter::Redis(r) => r.limiter(),
        }
    }
}
