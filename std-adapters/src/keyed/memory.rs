//! The in-memory side of the keyed seam: a bounded store of a
//! [`LimitSet`]'s states per key, with a lane of its own for the commonest
//! set, one GCRA (its state checked in place, no set bookkeeping).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ratebound_core::{CarryOver, ConfigError, CostError, Gcra};
use smallvec::SmallVec;

use super::{KeyedConfig, KeyedDecision, KeyedError, KeyedLimiter};
use crate::clock::Clock;
use crate::fallback::Source;
use crate::limiter::{AnyLimiter, LimitSet};

/// A key as the in-memory stores hold it: its bytes, in place up to 24
/// (an IP address's text, a short id), else on the heap.
#[derive(Clone, Default)]
pub struct KeyBytes(SmallVec<[u8; 24]>);

/// Equal when the bytes are (as `[u8]`, which `Borrow` requires); keys of
/// 4 to 16 bytes, as most are (an IPv4 address's text), compared inline
/// in two overlapping words rather than by a call to `memcmp`.
impl PartialEq for KeyBytes {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.as_bytes(), other.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        if a.len() <= 16 {
            if let Some(same) = same_ends::<8>(a, b).or_else(|| same_ends::<4>(a, b)) {
                return same;
            }
        }
        a == b
    }
}

impl Eq for KeyBytes {}

/// Hashed as its bytes, as `[u8]` is (`Borrow` requires it).
impl std::hash::Hash for KeyBytes {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

/// For slices of one length from `N` to `2 × N` bytes: whether their first
/// `N` and last `N` bytes (which cover them) agree; `None` when shorter.
#[inline]
fn same_ends<const N: usize>(a: &[u8], b: &[u8]) -> Option<bool> {
    Some(
        a.first_chunk::<N>()? == b.first_chunk::<N>()?
            && a.last_chunk::<N>()? == b.last_chunk::<N>()?,
    )
}

impl KeyBytes {
    /// The bytes.
    #[inline]
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

    /// The first `len` bytes of `buf` (all of them if `len` is larger),
    /// kept in place.
    #[inline]
    pub(crate) fn from_buf(buf: [u8; 24], len: usize) -> Self {
        debug_assert!(len <= 24, "a key of {len} bytes from a 24-byte buffer");
        KeyBytes(SmallVec::from_buf_and_len(buf, len.min(24)))
    }

    /// Append one byte.
    pub(crate) fn push(&mut self, b: u8) {
        self.0.push(b);
    }
}

// Hashes and compares as its bytes (SmallVec hashes as a slice), so maps
// keyed by it are searched with a plain `&[u8]`.
impl std::borrow::Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        &self.0
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
/// Its limits can change while it runs, for every key
/// ([`reconfigure`](Self::reconfigure)) or one
/// ([`set_override`](Self::set_override)), keeping every key's state.
#[derive(Debug)]
pub struct MemoryKeyed<C> {
    /// What the store decides by, as reported (the store's shards hold
    /// their own copies); written only while a config changes, and always
    /// together with the store.
    limits: RwLock<Limits>,
    store: Store<C>,
}

/// The limits of a store and of the keys with their own.
#[derive(Debug)]
struct Limits {
    base: Arc<LimitSet>,
    overrides: HashMap<KeyBytes, Arc<LimitSet>>,
}

const NOT_ONE_GCRA: ConfigError = ConfigError::Invalid {
    field: "limits",
    reason: "of one GCRA can only change to one GCRA",
};

/// The GCRA of a set of one GCRA.
fn single_gcra(limits: &LimitSet) -> Option<Gcra> {
    match limits.limiter(0) {
        Some(AnyLimiter::Gcra(g)) if limits.len() == 1 => Some(*g),
        _ => None,
    }
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
        let store = match single_gcra(&limits) {
            Some(g) => Store::Gcra(KeyedLimiter::new(g, config, clock)?),
            None => Store::Set(KeyedLimiter::new(limits.clone(), config, clock)?),
        };
        Ok(MemoryKeyed {
            limits: RwLock::new(Limits {
                base: Arc::new(limits),
                overrides: HashMap::new(),
            }),
            store,
        })
    }

    /// The limits keys are decided by (but those with an override).
    pub fn limits(&self) -> Arc<LimitSet> {
        Arc::clone(&self.limits.read().unwrap_or_else(|p| p.into_inner()).base)
    }

    /// The limits `key` is decided by: its override, else the store's.
    pub fn limits_for(&self, key: &[u8]) -> Arc<LimitSet> {
        let limits = self.limits.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(limits.overrides.get(key).unwrap_or(&limits.base))
    }

    /// Count a call as a use of `key` (its recency, for eviction) without
    /// deciding anything: a key not held stays absent.
    #[cfg(feature = "redis")]
    pub(crate) fn touch(&self, key: &KeyBytes) {
        // A fresh state is idle, so nothing is inserted and no slot is
        // needed: the update cannot be refused.
        let _ = match &self.store {
            Store::Gcra(s) => s.update(key, |_, _, _| ()),
            Store::Set(s) => s.update(key, |_, _, _| ()),
        };
    }

    /// Decide every key by `limits` from now on, keeping every key's
    /// state; refused, changing nothing, when the states would not carry
    /// over ([`LimitSet`]'s rule: same members, names and kinds, a sliding
    /// counter's window unchanged).
    pub fn reconfigure(&self, limits: LimitSet) -> Result<(), ConfigError> {
        let mut current = self.limits.write().unwrap_or_else(|p| p.into_inner());
        limits.carries_over_from(&current.base)?;
        match (&self.store, single_gcra(&limits)) {
            (Store::Gcra(s), Some(g)) => s.reconfigure(g)?,
            (Store::Set(s), _) => s.reconfigure(limits.clone())?,
            // A set of one GCRA carries over only to another (checked above).
            (Store::Gcra(_), None) => return Err(NOT_ONE_GCRA),
        }
        current.base = Arc::new(limits);
        Ok(())
    }

    /// Decide `key` by `limits` (e.g. a premium key's larger quota) until
    /// the override is removed, keeping its state; refused like
    /// [`reconfigure`](Self::reconfigure) when the state would not carry
    /// over between the store's limits and these.
    pub fn set_override(&self, key: &[u8], limits: LimitSet) -> Result<(), ConfigError> {
        let mut current = self.limits.write().unwrap_or_else(|p| p.into_inner());
        // The set's rule (names too: the one-GCRA lane only sees the GCRA).
        limits.carries_over_from(&current.base)?;
        current.base.carries_over_from(&limits)?;
        let key = KeyBytes::from(key);
        match (&self.store, single_gcra(&limits)) {
            (Store::Gcra(s), Some(g)) => s.set_override(key.clone(), g)?,
            (Store::Set(s), _) => s.set_override(key.clone(), limits.clone())?,
            (Store::Gcra(_), None) => return Err(NOT_ONE_GCRA),
        }
        current.overrides.insert(key, Arc::new(limits));
        Ok(())
    }

    /// Decide `key` by the store's limits again; false when it had no override.
    pub fn remove_override(&self, key: &[u8]) -> bool {
        let mut current = self.limits.write().unwrap_or_else(|p| p.into_inner());
        let key = KeyBytes::from(key);
        current.overrides.remove(&key);
        match &self.store {
            Store::Gcra(s) => s.remove_override(&key),
            Store::Set(s) => s.remove_override(&key),
        }
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

/// True when `key`, held, could take `cost` now, and took it: the
/// commonest answer, found without working out the decision's figures
/// (core's [`Gcra::allow`]) in a store of one GCRA. `false` says only "not
/// that": a denial (which wrote nothing), an error, a key not held (a new
/// key's rule — room, eviction, refusal — runs once, in the full
/// decision), or a store of several limits; the caller decides again in
/// full with [`memory_decision`].
#[cfg(feature = "http")]
#[inline]
pub(crate) fn memory_admits<C: Clock>(m: &MemoryKeyed<C>, key: &KeyBytes, cost: u64) -> bool {
    match &m.store {
        Store::Gcra(s) => matches!(
            s.update_held(key, |g, state, now| g.allow(state, now, cost)),
            Some(Ok(true))
        ),
        Store::Set(_) => false,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use ratebound_core::{Duration, Instant};

    fn gcra_store(per_minute: u64, clock: &ManualClock) -> MemoryKeyed<ManualClock> {
        let g = Gcra::per_minute(per_minute).unwrap();
        let set = LimitSet::one("per_minute", AnyLimiter::Gcra(g)).unwrap();
        MemoryKeyed::new(set, KeyedConfig::default(), clock.clone()).unwrap()
    }

    fn left(m: &MemoryKeyed<ManualClock>, key: &KeyBytes) -> u64 {
        memory_decision(m, key, 0, false)
            .unwrap()
            .decision
            .remaining
    }

    #[test]
    fn keys_are_equal_exactly_when_their_bytes_are() {
        let bytes: Vec<u8> = (1..=20).collect();
        for len in 0..=20 {
            let key = KeyBytes::from(&bytes[..len]);
            assert!(key == KeyBytes::from(&bytes[..len]), "len {len}");
            for at in 0..len {
                let mut other = bytes[..len].to_vec();
                other[at] ^= 0x80;
                assert!(key != KeyBytes::from(other), "len {len}, byte {at}");
            }
            if len > 0 {
                assert!(key != KeyBytes::from(&bytes[..len - 1]), "len {len}");
            }
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn admits_takes_what_a_check_would_and_a_refusal_takes_nothing() {
        let clock = ManualClock::new(Instant::from_secs(1_000));
        let m = gcra_store(3, &clock);
        let key = KeyBytes::from(&b"203.0.113.9"[..]);
        // A new key is the full decision's (its rule for room runs once).
        assert!(!memory_admits(&m, &key, 1));
        assert_eq!(m.held(), 0);
        assert!(memory_decision(&m, &key, 1, true).unwrap().decision.allowed);
        for left_after in [1, 0] {
            assert!(memory_admits(&m, &key, 1));
            assert_eq!(left(&m, &key), left_after);
        }
        // Refused: nothing taken, and the full decision says why.
        assert!(!memory_admits(&m, &key, 1));
        assert_eq!(left(&m, &key), 0);
        let d = memory_decision(&m, &key, 1, true).unwrap();
        assert!(!d.decision.allowed);
        assert_eq!(d.decision.retry_at, Instant::from_secs(1_020));
        // One token back after 20 s: one admission, not two.
        clock.advance(Duration::from_secs(20));
        assert!(memory_admits(&m, &key, 1));
        assert!(!memory_admits(&m, &key, 1));
    }

    #[cfg(feature = "http")]
    #[test]
    fn admits_leaves_costs_that_never_fit_and_sets_to_the_full_decision() {
        let clock = ManualClock::new(Instant::from_secs(1_000));
        let m = gcra_store(3, &clock);
        let key = KeyBytes::from(&b"k"[..]);
        assert!(memory_decision(&m, &key, 1, true).unwrap().decision.allowed);
        assert!(!memory_admits(&m, &key, 4));
        assert_eq!(left(&m, &key), 2, "a cost above capacity takes nothing");
        assert!(memory_decision(&m, &key, 4, true).is_err());

        let set = LimitSet::new([
            ("burst", AnyLimiter::Gcra(Gcra::per_second(5).unwrap())),
            ("minute", AnyLimiter::Gcra(Gcra::per_minute(3).unwrap())),
        ])
        .unwrap();
        let m = MemoryKeyed::new(set, KeyedConfig::default(), clock).unwrap();
        assert!(memory_decision(&m, &key, 1, true).unwrap().decision.allowed);
        assert!(!memory_admits(&m, &key, 1));
        assert_eq!(
            left(&m, &key),
            2,
            "a set's state is left to the full decision"
        );
    }
}
