//! A bounded keyed store as the fixtures define it (and npm's `KeyedLimiter`
//! exposes it): a GCRA per key, at most `max_keys`, new keys admitted by
//! core's rule (`keyed::check_new_key`), recency kept here for
//! `evict_least_recent`. Fixed capacity, keys borrowed from the image.
use heapless::Vec;
use ratebound_core::keyed::{check_new_key, BoundedStore, KeyedError, OnFull};
use ratebound_core::{CostError, Decision, Gcra, GcraState, Instant, Limiter};

use crate::records::MAX_KEYS;

pub(crate) struct KeyedStore {
    limiter: Gcra,
    max_keys: usize,
    on_full: OnFull,
    /// (key, state, last use), in insertion order.
    held: Vec<(&'static str, GcraState, u64), MAX_KEYS>,
    tick: u64,
}

impl BoundedStore for KeyedStore {
    type Key = &'static str;
    type State = GcraState;
    fn held(&self) -> usize {
        self.held.len()
    }
    fn max_keys(&self) -> usize {
        self.max_keys
    }
    fn evict_one_idle(&mut self, now: Instant) -> bool {
        let idle = (0..self.held.len()).filter(|&i| self.limiter.is_idle(&self.held[i].1, now));
        match idle.min_by_key(|&i| self.held[i].2) {
            Some(i) => {
                self.held.remove(i);
                true
            }
            None => false,
        }
    }
    fn evict_least_recent(&mut self) -> bool {
        match (0..self.held.len()).min_by_key(|&i| self.held[i].2) {
            Some(i) => {
                self.held.remove(i);
                true
            }
            None => false,
        }
    }
    fn insert(&mut self, key: &'static str, state: GcraState) -> bool {
        self.held.push((key, state, self.tick)).is_ok()
    }
}

impl KeyedStore {
    pub(crate) fn new(limiter: Gcra, max_keys: u32, evict_least_recent: bool) -> KeyedStore {
        KeyedStore {
            limiter,
            max_keys: max_keys as usize,
            on_full: if evict_least_recent {
                OnFull::EvictLeastRecent
            } else {
                OnFull::Deny
            },
            held: Vec::new(),
            tick: 0,
        }
    }

    fn find(&self, key: &str) -> Option<usize> {
        self.held.iter().position(|(k, _, _)| *k == key)
    }

    /// The decision, or the fixtures' error code.
    pub(crate) fn check(
        &mut self,
        key: &'static str,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, &'static str> {
        self.tick += 1;
        let r = match self.find(key) {
            Some(i) => {
                self.held[i].2 = self.tick;
                self.limiter
                    .check(&mut self.held[i].1, now, cost)
                    .map_err(KeyedError::Cost)
            }
            None => {
                let limiter = self.limiter;
                let on_full = self.on_full;
                check_new_key(self, &limiter, key, now, cost, on_full)
            }
        };
        r.map_err(|e| match e {
            KeyedError::Cost(e) => e.code(),
            // `TableFull` and whatever a later core adds: the store refused the key.
            _ => "store_full",
        })
    }

    pub(crate) fn peek(&self, key: &str, now: Instant, cost: u64) -> Result<Decision, CostError> {
        let state = self.find(key).map(|i| self.held[i].1).unwrap_or_default();
        self.limiter.peek(&state, now, cost)
    }

    /// Removes every idle key; returns how many.
    pub(crate) fn evict_idle(&mut self, now: Instant) -> u64 {
        let before = self.held.len();
        let limiter = self.limiter;
        self.held.retain(|(_, st, _)| !limiter.is_idle(st, now));
        (before - self.held.len()) as u64
    }

    /// The keys held, sorted.
    pub(crate) fn keys(&self) -> Vec<&'static str, MAX_KEYS> {
        let mut keys: Vec<&'static str, MAX_KEYS> = self.held.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        keys
    }
}
