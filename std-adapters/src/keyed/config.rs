//! A keyed store's sizing: how many keys, in how many shards, and what a
//! full store does with a new key.

use ratebound_core::ConfigError;
use serde::{Deserialize, Serialize};

/// What a full store does with a new key when no key is idle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Refuse the new key (safe default).
    #[default]
    DenyNewKeys,
    /// Drop a key not used recently, even if active (CLOCK: the first from
    /// the shard's hand not used since the hand last passed it).
    EvictLru,
}

/// Sizing of a [`KeyedLimiter`](super::KeyedLimiter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyedConfig {
    /// Most keys held at once (≥ 1, ≤ 2^30).
    pub max_keys: usize,
    /// Independent locks (≥ 1, at most `max_keys`); more shards, less contention.
    pub shards: usize,
    /// Behaviour of a full store.
    pub on_full: OnFull,
}

impl Default for KeyedConfig {
    fn default() -> Self {
        KeyedConfig {
            max_keys: 100_000,
            shards: 16,
            on_full: OnFull::DenyNewKeys,
        }
    }
}

impl KeyedConfig {
    /// Set `max_keys`.
    pub fn with_max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }
    /// Set `shards`.
    pub fn with_shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }
    /// Set `on_full`.
    pub fn with_on_full(mut self, on_full: OnFull) -> Self {
        self.on_full = on_full;
        self
    }
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::Zero { field: "max_keys" });
        }
        if self.max_keys > super::table::MAX_CAPACITY {
            return Err(ConfigError::TooLarge {
                field: "max_keys",
                max: super::table::MAX_CAPACITY as u64,
            });
        }
        if self.shards == 0 {
            return Err(ConfigError::Zero { field: "shards" });
        }
        if self.shards > self.max_keys {
            return Err(ConfigError::Invalid {
                field: "shards",
                reason: "must not exceed max_keys",
            });
        }
        Ok(())
    }
}
