//! Changing a [`KeyedLimiter`]'s config while its states live on: for every
//! key, or for one (an override).

use std::hash::Hash;

use ratebound_core::{CarryOver, ConfigError, Limiter};

use super::KeyedLimiter;
use crate::clock::Clock;

impl<K, L, C> KeyedLimiter<K, L, C>
where
    K: Hash + Eq + Clone,
    L: Limiter + Clone + CarryOver,
    C: Clock,
{
    /// Change the config every key is decided by, keeping every key's state
    /// (core's [`reconfigure`](ratebound_core::reconfigure) rule: the new
    /// config reads the kept state). Refused, changing nothing, when the
    /// states would not carry over (against the current config or any
    /// override). Shards switch one after another, each locked only to
    /// swap its copy of the config: a key sees the change from its next
    /// decision on, and the states are not touched (O(shards + overrides)).
    pub fn reconfigure(&self, limiter: L) -> Result<(), ConfigError> {
        let _one_change = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        limiter.carries_over_from(&self.limiter())?;
        for i in 0..self.shards.len() {
            for o in self.lock(i).overrides.values() {
                limiter.carries_over_from(o)?;
            }
        }
        for i in 0..self.shards.len() {
            self.lock(i).limiter = limiter.clone();
        }
        Ok(())
    }

    /// Decide `key` by `limiter` instead of the store's config (a premium
    /// key's larger quota), from its next decision on, keeping its state.
    /// Refused when the state would not carry over between the two. A key
    /// with an override has its state held and evicted like any other; the
    /// override itself is never evicted (overrides are set by the operator
    /// and held apart from `max_keys`) and stays until removed.
    pub fn set_override(&self, key: K, limiter: L) -> Result<(), ConfigError> {
        let _one_change = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let (_, mut shard) = self.shard(&key);
        // Both ways: the override reads the key's state now, the store's
        // config reads it again once the override is removed.
        limiter.carries_over_from(&shard.limiter)?;
        shard.limiter.carries_over_from(&limiter)?;
        shard.overrides.insert(key, limiter);
        Ok(())
    }

    /// Decide `key` by the store's config again; false when it had no override.
    pub fn remove_override(&self, key: &K) -> bool {
        let _one_change = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        self.shard(key).1.overrides.remove(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use ratebound_core::{Gcra, Instant};

    use crate::clock::ManualClock;
    use crate::keyed::{KeyedConfig, KeyedLimiter, OnFull};

    /// "A key with an override has its state held and evicted like any
    /// other; the override itself is never evicted": a key evicted from a
    /// full store comes back decided by its override.
    #[test]
    fn an_override_outlives_its_key_s_eviction() {
        let store = KeyedLimiter::new(
            Gcra::per_hour(10).unwrap(),
            KeyedConfig::default()
                .with_max_keys(1)
                .with_shards(1)
                .with_on_full(OnFull::EvictLru),
            ManualClock::new(Instant::from_secs(1_000)),
        )
        .unwrap();
        store
            .set_override(7u64, Gcra::per_hour(100).unwrap())
            .unwrap();
        assert!(store.check(&7, 1).unwrap().allowed);
        assert!(store.check(&8, 1).unwrap().allowed); // evicts 7's state
        assert_eq!(store.len(), 1);
        // 50 never fits 10 an hour: only the override can admit it.
        assert!(store.check(&7, 50).unwrap().allowed);
        assert!(store.check(&8, 50).is_err());
        assert!(store.remove_override(&7));
        assert!(!store.remove_override(&7));
    }
}
