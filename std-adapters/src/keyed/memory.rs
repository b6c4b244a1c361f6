//! The in-memory side of the keyed seam: a bounded store of a
//! [`LimitSet`]'s states per key, with a lane of its own for the commonest
//! set, one GCRA (its state checked in place, no set bookkeeping).

use ratebound_core::{ConfigError, CostError, Gcra};
use smallvec::SmallVec;

use super::{KeyedConfig, KeyedDecision, KeyedError, KeyedLimiter};
use crate::clock::Clock;
use crate::fallback::Source;
use crate::limiter::{AnyLimiter, LimitSet};

/// A key as the in-memory stores hold it: its bytes, in place up to 24
/// (an IP address's text, a short id), else on the heap.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyBytes(SmallVec<[u8; 24]>);

impl KeyBytes {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: it may be an API secret.
        write!(f, "KeyBytes({} bytes)", self.0.len())
    }
}

#[cfg(feature = "http")]
impl KeyBytes {
    /// Append `b`.
    pub(crate) fn extend(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }

    /// Append one byte.
    pub(crate) fn push(&mut self, b: u8) {
        self.0.push(b);
    }
}

impl From<Vec<u8>> for KeyBytes {
    fn from(v: Vec<u8>) -> Self {
        KeyBytes(SmallVec::from_vec(v))
    }
}

impl From<&[u8]> for KeyBytes {
    fn from(b: &[u8]) -> Self {
        KeyBytes(SmallVec::from_slice(b))
    }
}

/// A [`LimitSet`] per key in this process, bounded by [`KeyedConfig`].
#[derive(Debug)]
pub struct MemoryKeyed<C> {
    limits: LimitSet,
    store: Store<C>,
}

#[derive(Debug)]
enum Store<C> {
    /// A set of one GCRA: the same decisions as the set's (core folds one
    /// member's decision into itself), without the set around it.
    Gcra(KeyedLimiter<KeyBytes, Gcra, C>),
    Set(KeyedLimiter<KeyBytes, LimitSet, C>),
}

impl<C: Clock> MemoryKeyed<C> {
    /// `limits` per key, in a store sized by `config`.
    pub fn new(limits: LimitSet, config: KeyedConfig, clock: C) -> Result<Self, ConfigError> {
        let store = match limits.limiter(0) {
            Some(AnyLimiter::Gcra(g)) if limits.len() == 1 => {
                Store::Gcra(KeyedLimiter::new(*g, config, clock)?)
            }
            _ => Store::Set(KeyedLimiter::new(limits.clone(), config, clock)?),
        };
        Ok(MemoryKeyed { limits, store })
    }

    /// The limits held per key.
    pub fn limits(&self) -> &LimitSet {
        &self.limits
    }

    /// Keys held, read without locking (see [`KeyedLimiter::held`]).
    pub fn held(&self) -> usize {
        match &self.store {
            Store::Gcra(s) => s.held(),
            Store::Set(s) => s.held(),
        }
    }

    /// Keys held, counted under the locks.
    pub fn len(&self) -> usize {
        match &self.store {
            Store::Gcra(s) => s.len(),
            Store::Set(s) => s.len(),
        }
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop every idle key; returns how many were dropped.
    pub fn evict_idle(&self) -> usize {
        match &self.store {
            Store::Gcra(s) => s.evict_idle(),
            Store::Set(s) => s.evict_idle(),
        }
    }
}

/// The set's decision for `key` (`take`: check, else peek): made at once,
/// without waiting.
#[inline]
pub(crate) fn memory_decision<C: Clock>(
    m: &MemoryKeyed<C>,
    key: &KeyBytes,
    cost: u64,
    take: bool,
) -> Result<KeyedDecision, KeyedError> {
    // A cost that never fits errors from the check, leaving a new key's
    // state fresh: such a key is not inserted.
    let (decision, binding, (binding_remaining, binding_reset_at), now) = match &m.store {
        Store::Gcra(s) => {
            let (d, now) = if take {
                s.check_now(key, cost)?
            } else {
                s.peek_now(key, cost)?
            };
            (d, 0, (d.remaining, d.reset_at), now)
        }
        Store::Set(s) => {
            let (d, own, now) = if take {
                s.update(key, |set, state, now| {
                    let d = set.check_set(state, now, cost)?;
                    Ok::<_, CostError>((d, set.binding_figures(state, d, now), now))
                })??
            } else {
                s.inspect(key, |set, state, now| {
                    let d = set.peek_set(state, now, cost)?;
                    Ok::<_, CostError>((d, set.binding_figures(state, d, now), now))
                })?
            };
            (d.decision, d.binding.unwrap_or(0), own, now)
        }
    };
    Ok(KeyedDecision {
        decision,
        binding,
        binding_remaining,
        binding_reset_at,
        source: Source::Memory,
        now,
    })
}
