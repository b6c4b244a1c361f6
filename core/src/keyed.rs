//! A fixed-capacity table of per-key limiter states (no allocator).
//!
//! Up to `N` keys (a power of two, ≥ 2: `heapless::FnvIndexMap`). When a new
//! key arrives and the table is full, an idle entry — one whose state has
//! fully recovered, so dropping it grants nothing — is evicted. If none is
//! idle, the call fails with [`KeyedError::TableFull`]: new keys are refused,
//! never admitted unlimited, and existing keys keep working.
//!
//! ```
//! use ratebound_core::keyed::{KeyedError, KeyedTable};
//! use ratebound_core::{Gcra, Instant};
//!
//! let limiter = Gcra::per_second(1)?;
//! let mut table: KeyedTable<u32, _, 2> = KeyedTable::new();
//! let now = Instant::from_secs(1);
//! assert!(table.check(&limiter, 1, now, 1)?.allowed);
//! assert!(table.check(&limiter, 2, now, 1)?.allowed);
//! assert!(matches!(table.check(&limiter, 3, now, 1), Err(KeyedError::TableFull { .. })));
//! // A second later keys 1 and 2 are idle again, so key 3 takes a slot.
//! assert!(table.check(&limiter, 3, Instant::from_secs(2), 1)?.allowed);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use core::fmt;
use core::hash::Hash;

use heapless::index_map::FnvIndexMap;

use crate::{CostError, Decision, Instant, Limiter};

/// Why a keyed check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyedError {
    /// A new key found every slot taken by a key that is not idle.
    TableFull {
        /// The table's capacity.
        capacity: usize,
    },
    /// The cost can never fit this limiter.
    Cost(CostError),
}

impl From<CostError> for KeyedError {
    fn from(e: CostError) -> Self {
        KeyedError::Cost(e)
    }
}

impl fmt::Display for KeyedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyedError::TableFull { capacity } => {
                write!(
                    f,
                    "keyed table full: all {capacity} keys are active; new keys are refused"
                )
            }
            KeyedError::Cost(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for KeyedError {}

/// What a bounded store does when a new key finds every slot held by a key
/// that is not idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnFull {
    /// Refuse the new key ([`KeyedError::TableFull`]): it is never admitted
    /// uncounted, and the keys held keep their exact counts.
    #[default]
    Deny,
    /// Evict the least recently used key (which then regains its full
    /// capacity early) and take the new one.
    EvictLeastRecent,
}

/// A store of per-key states bounded to a number of keys: what
/// [`check_new_key`] needs of it. [`KeyedTable`] is one; the wasm build's
/// keyed store another.
pub trait BoundedStore {
    /// The key type.
    type Key;
    /// The per-key state.
    type State;
    /// Keys held.
    fn held(&self) -> usize;
    /// The most keys it may hold.
    fn max_keys(&self) -> usize;
    /// Drop one key whose state is idle at `now` — the least recently used
    /// of them, where the store keeps recency — so that every store with
    /// recency keeps the same keys; false when none is idle.
    fn evict_one_idle(&mut self, now: Instant) -> bool;
    /// Drop the least recently used key; false when it cannot (or holds none).
    fn evict_least_recent(&mut self) -> bool;
    /// Hold `state` for `key` (there is room: the caller made sure); false
    /// if it could not, and then the key is refused.
    fn insert(&mut self, key: Self::Key, state: Self::State) -> bool;
}

/// Check `cost` for a key `store` does not hold, by the one rule every
/// bounded store follows: decide on a fresh state; keep it only if it now
/// holds something (an idle state is as good as none); when the store is
/// full, drop an idle key first, else per `on_full` refuse (the check's
/// effect is dropped: nothing is admitted uncounted) or evict the least
/// recently used key.
pub fn check_new_key<L: Limiter, S: BoundedStore<State = L::State>>(
    store: &mut S,
    limiter: &L,
    key: S::Key,
    now: Instant,
    cost: u64,
    on_full: OnFull,
) -> Result<Decision, KeyedError>
where
    L::State: Default,
{
    let mut fresh = L::State::default();
    let d = limiter.check(&mut fresh, now, cost)?;
    if limiter.is_idle(&fresh, now) {
        return Ok(d); // nothing to remember
    }
    if store.held() >= store.max_keys()
        && !store.evict_one_idle(now)
        && !(on_full == OnFull::EvictLeastRecent && store.evict_least_recent())
    {
        return Err(KeyedError::TableFull {
            capacity: store.max_keys(),
        });
    }
    if !store.insert(key, fresh) {
        return Err(KeyedError::TableFull {
            capacity: store.max_keys(),
        });
    }
    Ok(d)
}

/// Per-key states of type `S` for up to `N` keys.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound(
        serialize = "K: serde::Serialize + Eq + Hash, S: serde::Serialize",
        deserialize = "K: serde::Deserialize<'de> + Eq + Hash, S: serde::Deserialize<'de>"
    ))
)]
pub struct KeyedTable<K: Eq + Hash, S, const N: usize> {
    map: FnvIndexMap<K, S, N>,
}

impl<K: Eq + Hash, S: Default, const N: usize> Default for KeyedTable<K, S, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash, S: Default, const N: usize> KeyedTable<K, S, N> {
    /// An empty table.
    pub const fn new() -> Self {
        KeyedTable {
            map: FnvIndexMap::new(),
        }
    }
    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }
    /// A key's state, if held.
    pub fn get(&self, key: &K) -> Option<&S> {
        self.map.get(key)
    }
    /// Forget a key (the last key in the table takes its place in the order).
    pub fn remove(&mut self, key: &K) -> Option<S> {
        self.map.swap_remove(key)
    }

    /// Drop every idle key; returns how many were dropped.
    pub fn evict_idle<L: Limiter<State = S>>(&mut self, limiter: &L, now: Instant) -> usize {
        let before = self.map.len();
        self.map.retain(|_, s| !limiter.is_idle(s, now));
        before - self.map.len()
    }

    /// What `check` would decide for `key`, changing nothing.
    pub fn peek<L: Limiter<State = S>>(
        &self,
        limiter: &L,
        key: &K,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        match self.map.get(key) {
            Some(s) => limiter.peek(s, now, cost),
            None => limiter.peek(&S::default(), now, cost),
        }
    }

    /// Check `cost` for `key`, creating its state if new (evicting one idle
    /// key if the table is full; see [`check_new_key`]).
    pub fn check<L: Limiter<State = S>>(
        &mut self,
        limiter: &L,
        key: K,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, KeyedError> {
        if let Some(s) = self.map.get_mut(&key) {
            return Ok(limiter.check(s, now, cost)?);
        }
        let mut table = Idle {
            table: self,
            limiter,
        };
        check_new_key(&mut table, limiter, key, now, cost, OnFull::Deny)
    }
}

/// A [`KeyedTable`] seen with the limiter that tells its idle keys.
struct Idle<'a, K: Eq + Hash, S, L, const N: usize> {
    table: &'a mut KeyedTable<K, S, N>,
    limiter: &'a L,
}

impl<K: Eq + Hash, S: Default, L: Limiter<State = S>, const N: usize> BoundedStore
    for Idle<'_, K, S, L, N>
{
    type Key = K;
    type State = S;
    fn held(&self) -> usize {
        self.table.map.len()
    }
    fn max_keys(&self) -> usize {
        N
    }
    /// The table keeps no recency: the first idle key in its order goes.
    fn evict_one_idle(&mut self, now: Instant) -> bool {
        let mut evicted = false;
        let limiter = self.limiter;
        self.table.map.retain(|_, s| {
            if !evicted && limiter.is_idle(s, now) {
                evicted = true;
                false
            } else {
                true
            }
        });
        evicted
    }
    fn evict_least_recent(&mut self) -> bool {
        false // no recency kept: a full table of active keys refuses
    }
    fn insert(&mut self, key: K, state: S) -> bool {
        self.table.map.insert(key, state).is_ok()
    }
}
