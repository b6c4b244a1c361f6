//! Room for new keys: the store's one count of keys held, and the
//! eviction of idle keys (near the shard's hand, by a sweep of the shard,
//! or of every shard) that a new key's rule runs when the store is full.

use std::hash::Hash;
use std::sync::atomic::Ordering;

use ratebound_core::{Instant, Limiter};

use super::{limiter_for, KeyedLimiter, OnFull, Shard};
use crate::clock::Clock;
use crate::wait::AcquireError;

/// How many entries from the eviction hand are inspected for an idle one
/// before a sweep or [`OnFull`] applies.
const IDLE_PROBE: usize = 8;

/// A shard's share of `max_keys` when keys spread evenly, plus three
/// standard deviations of that spread, so a table rarely doubles past it.
pub(super) fn shard_share(max_keys: usize, shards: usize) -> usize {
    if shards == 1 {
        return max_keys;
    }
    let mean = max_keys.div_ceil(shards);
    mean + 3 * mean.isqrt() + 8
}

impl<K, L, C> KeyedLimiter<K, L, C>
where
    K: Hash + Eq + Clone,
    L: Limiter + Clone,
    C: Clock,
{
    /// Take one of the `max_keys` slots, if any is free.
    pub(super) fn take_slot(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.config.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    pub(super) fn free_slots(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// [`apply_at`](KeyedLimiter::apply_at) for a key the shard does not
    /// hold: apart, so the path for held keys stays small.
    #[cold]
    #[inline(never)]
    pub(super) fn apply_new<R>(
        &self,
        shard: &mut Shard<K, L>,
        h: u64,
        key: &K,
        now: Instant,
        f: impl FnOnce(&L, &mut L::State) -> R,
    ) -> Result<R, AcquireError> {
        let mut fresh = L::State::default();
        let l = limiter_for(&shard.limiter, &shard.overrides, key);
        let r = f(l, &mut fresh);
        if l.is_idle(&fresh, now) {
            return Ok(r); // nothing worth remembering (zero cost, or a denial)
        }
        let have_slot = self.take_slot() || self.make_room(shard, now);
        if !have_slot {
            // Under EvictLru reuse the slot of a key not used recently;
            // never evict an active key under DenyNewKeys.
            let evicted = self.config.on_full == OnFull::EvictLru && shard.map.evict_unreferenced();
            if !evicted {
                tracing::debug!("keyed store full: refusing a new key");
                return Err(AcquireError::StoreFull {
                    capacity: self.config.max_keys,
                });
            }
            tracing::debug!("keyed store full: evicted an active key not used recently");
        }
        if !shard.map.has_room() {
            // A slot is held for this key, so the store is below max_keys,
            // and one table can hold them all: unreachable, but never
            // admit a key the store cannot count.
            self.free_slots(1);
            return Err(AcquireError::StoreFull {
                capacity: self.config.max_keys,
            });
        }
        shard.map.insert_new(h, key.clone(), fresh);
        Ok(r)
    }

    /// Make room for one new key by evicting idle keys of this shard: first
    /// one among the next few from the eviction hand; failing that, a full
    /// sweep of the shard, run on the first refusal and then once every
    /// `max(16, keys per shard / 16)` refusals, so a flood of new keys costs
    /// O(1) amortized while idle keys never hold slots for long. True when
    /// something was evicted: the caller then holds one of the freed slots
    /// (never released to the global count, where another thread could take
    /// it first).
    pub(super) fn make_room(&self, shard: &mut Shard<K, L>, now: Instant) -> bool {
        let (limiter, overrides) = (&shard.limiter, &shard.overrides);
        if shard.map.evict_idle_near_hand(IDLE_PROBE, |k, s| {
            limiter_for(limiter, overrides, k).is_idle(s, now)
        }) {
            return true;
        }
        let sweep = shard.refusals == 0;
        shard.refusals =
            (shard.refusals + 1) % (self.config.max_keys / self.shards.len() / 16).max(16);
        if !sweep {
            return false;
        }
        let dropped = self.drop_idle(shard, now);
        if dropped == 0 {
            return false;
        }
        self.free_slots(dropped - 1);
        true
    }

    /// Drop every idle key of `shard`; returns how many went. The caller
    /// frees their slots in the global count.
    pub(super) fn drop_idle(&self, shard: &mut Shard<K, L>, now: Instant) -> usize {
        let (limiter, overrides) = (&shard.limiter, &shard.overrides);
        shard
            .map
            .retain(|k, s| !limiter_for(limiter, overrides, k).is_idle(s, now))
    }

    pub(super) fn sweep(&self, shard: &mut Shard<K, L>, now: Instant) -> usize {
        let dropped = self.drop_idle(shard, now);
        self.free_slots(dropped);
        dropped
    }

    /// Drop every idle key (a periodic sweep keeps room for new keys);
    /// returns how many were dropped.
    pub fn evict_idle(&self) -> usize {
        let now = self.clock.now();
        self.shards
            .iter()
            .map(|shard| self.sweep(&mut shard.0.lock().unwrap_or_else(|p| p.into_inner()), now))
            .sum()
    }
}
