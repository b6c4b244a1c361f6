//! The table behind each shard of a [`KeyedLimiter`](super::KeyedLimiter):
//! open addressing with linear probing over keys and states held in place,
//! beside one control byte per slot that marks it empty, removed or full,
//! carries 6 bits of the key's hash (so most probes never touch a key) and
//! the key's CLOCK reference bit.
//!
//! Why not `hashbrown`: its slot count is a power of two, so 100,000 keys
//! sit in 131,072 slots (33 B per key for a `u64` key and a GCRA state,
//! before any recency). Here a shard's slots are sized to what it may hold
//! (`capacity × 19/16`): 30 B per key. Finding a key held reads its run of
//! control bytes (by the standard estimate for linear probing, about 4 slots
//! on average when full) and the slot, as
//! `hashbrown` does; a key not held reads control bytes up to the next
//! empty slot.
//!
//! Safe Rust cannot leave a slot uninitialised, so slots never used hold a
//! copy of the first key the table saw (the *filler*) and a default state,
//! and a removed slot keeps its old key until reused or rebuilt; a key type
//! that owns heap memory pays for those copies too.

use std::hash::{BuildHasher, Hash};

/// A slot never used since the last rebuild: probes end here.
const EMPTY: u8 = 0;
/// A slot whose key was removed: probes go on past it.
const TOMBSTONE: u8 = 1;
/// A slot holding a key: the high bit, with the key's tag in the low six.
const FULL: u8 = 0x80;
/// Set when the slot's key is used, cleared as the CLOCK hand passes.
const REFERENCED: u8 = 0x40;
/// The hash bits kept in a full slot's control byte.
const TAG: u8 = 0x3F;

/// Smallest table allocated on the first insert.
const MIN_CAPACITY: usize = 16;

/// Largest capacity a table supports (and so the largest `max_keys`).
pub(super) const MAX_CAPACITY: usize = 1 << 30;

/// Keys and their states for one shard.
pub(super) struct Table<K, S, H> {
    /// One control byte per slot: [`EMPTY`], [`TOMBSTONE`], or [`FULL`] with
    /// the [`REFERENCED`] bit and a [`TAG`].
    ctrl: Box<[u8]>,
    /// Keys and states in place; a slot not full holds the filler or the
    /// key last removed from it, which nothing reads.
    slots: Box<[(K, S)]>,
    /// A copy of the first key inserted, for slots not full.
    filler: Option<K>,
    len: usize,
    /// Keys the table holds before it grows (`slots` has `capacity × 19/16 + 1`).
    capacity: usize,
    /// Removed slots not yet reclaimed by a rebuild.
    tombstones: usize,
    /// The CLOCK hand: the slot eviction looked at last.
    hand: usize,
    /// Capacity to stop at when growing before doubling further: the
    /// shard's share of the store's keys, so an evenly spread store fills
    /// its tables instead of doubling past them.
    share: usize,
    /// The most keys the table may ever hold.
    limit: usize,
    hasher: H,
}

impl<K: Hash + Eq + Clone, S: Default, H: BuildHasher> Table<K, S, H> {
    /// An empty table (no allocation until the first insert) that grows
    /// towards `share` keys, then doubles up to `limit` (≤ [`MAX_CAPACITY`]).
    pub(super) fn new(share: usize, limit: usize, hasher: H) -> Self {
        let limit = limit.min(MAX_CAPACITY);
        Table {
            ctrl: Box::new([]),
            slots: Box::new([]),
            filler: None,
            len: 0,
            capacity: 0,
            tombstones: 0,
            hand: 0,
            share: share.min(limit),
            limit,
            hasher,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The tag for hash `h`: hash bits 32 to 37, which the home slot (the
    /// top bits, by multiply-shift) does not depend on much, nor the shard
    /// choice (the top bits of the hash times an odd constant).
    #[inline]
    fn tag(h: u64) -> u8 {
        (h >> 32) as u8 & TAG
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        ((u128::from(h) * self.ctrl.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next_slot(&self, i: usize) -> usize {
        if i + 1 == self.ctrl.len() {
            0
        } else {
            i + 1
        }
    }

    /// The slot holding `key`, or `Err` with the slot a new key would take
    /// (the first tombstone or empty slot on its probe).
    #[inline]
    fn find(&self, h: u64, key: &K) -> Result<usize, usize> {
        let tag = Self::tag(h);
        let mut free = None;
        let mut i = self.home(h);
        // Ends: the table always keeps empty slots (see `fits`).
        loop {
            let c = self.ctrl[i];
            if c == EMPTY {
                return Err(free.unwrap_or(i));
            }
            if c == TOMBSTONE {
                free.get_or_insert(i);
            } else if c & TAG == tag && self.slots[i].0 == *key {
                return Ok(i);
            }
            i = self.next_slot(i);
        }
    }

    /// The slot holding `key`, if the table holds it: [`find`](Self::find)
    /// without looking for a free slot on the way: an empty slot ends the
    /// probe, and one masked comparison tests a full slot's high bit and
    /// tag together (a removed slot has neither). Inlined where a held key
    /// is looked up on every request.
    #[inline(always)]
    fn position(&self, h: u64, key: &K) -> Option<usize> {
        let wanted = FULL | Self::tag(h);
        let mut i = self.home(h);
        // Ends: the table always keeps empty slots (see `fits`).
        loop {
            let c = *self.ctrl.get(i)?;
            if c == EMPTY {
                return None;
            }
            if c & (FULL | TAG) == wanted && self.slots.get(i).is_some_and(|s| s.0 == *key) {
                return Some(i);
            }
            i = self.next_slot(i);
        }
    }

    /// `key`'s state, without marking it used.
    #[inline]
    pub(super) fn get(&self, h: u64, key: &K) -> Option<&S> {
        if self.len == 0 {
            return None;
        }
        self.position(h, key).map(|i| &self.slots[i].1)
    }

    /// `key`'s state, marking it used.
    #[inline(always)]
    pub(super) fn get_mut(&mut self, h: u64, key: &K) -> Option<&mut S> {
        if self.len == 0 {
            return None;
        }
        let i = self.position(h, key)?;
        let c = self.ctrl.get_mut(i)?;
        *c |= REFERENCED;
        self.slots.get_mut(i).map(|s| &mut s.1)
    }

    /// True when the table can take one more key: below its limit.
    pub(super) fn has_room(&self) -> bool {
        self.len < self.limit
    }

    /// Hold `state` for `key`, which the table does not hold and has room
    /// for ([`has_room`](Table::has_room)). A new key starts unreferenced:
    /// a key seen once is evicted before keys seen again.
    pub(super) fn insert_new(&mut self, h: u64, key: K, state: S) {
        if self.filler.is_none() {
            self.filler = Some(key.clone());
        }
        if self.len == self.capacity {
            let next = if self.capacity == 0 {
                MIN_CAPACITY
            } else {
                self.capacity.saturating_mul(2)
            };
            let next = if self.capacity < self.share {
                next.min(self.share)
            } else {
                next
            };
            self.rebuild(next.min(self.limit));
        } else if !self.fits() {
            self.rebuild(self.capacity);
        }
        let i = match self.find(h, &key) {
            Err(i) => i,
            Ok(_) => unreachable!("insert_new: the caller checked the key is absent"),
        };
        if self.ctrl[i] == TOMBSTONE {
            self.tombstones -= 1;
        }
        self.ctrl[i] = FULL | Self::tag(h);
        self.slots[i] = (key, state);
        self.len += 1;
    }

    /// Whether one more key keeps half the slots beyond the capacity empty
    /// (tombstones count as used), so probes stay short.
    fn fits(&self) -> bool {
        let spare = self.ctrl.len() - self.capacity;
        self.len + self.tombstones < self.capacity + spare / 2
    }

    /// A fresh slot's content.
    fn vacant(&self) -> (K, S) {
        match &self.filler {
            Some(k) => (k.clone(), S::default()),
            None => unreachable!("vacant: the filler is set by the first insert"),
        }
    }

    /// Re-create the table for `capacity` keys (≥ those held), dropping
    /// tombstones and keeping reference bits.
    fn rebuild(&mut self, capacity: usize) {
        debug_assert!(capacity >= self.len);
        let n = capacity + capacity * 3 / 16 + 1;
        let slots: Vec<(K, S)> = (0..n).map(|_| self.vacant()).collect();
        let old_ctrl = std::mem::replace(&mut self.ctrl, vec![EMPTY; n].into_boxed_slice());
        let old_slots = std::mem::replace(&mut self.slots, slots.into_boxed_slice());
        // The hand keeps its place in proportion, so eviction goes on
        // sweeping the whole table rather than its start.
        self.hand = if old_ctrl.is_empty() {
            0
        } else {
            ((self.hand as u128 * n as u128) / old_ctrl.len() as u128) as usize
        };
        self.capacity = capacity;
        self.tombstones = 0;
        for (c, (k, st)) in old_ctrl.iter().zip(old_slots.into_vec()) {
            if c & FULL == 0 {
                continue;
            }
            let mut i = self.home(self.hasher.hash_one(&k));
            while self.ctrl[i] != EMPTY {
                i = self.next_slot(i);
            }
            self.ctrl[i] = *c;
            self.slots[i] = (k, st);
        }
    }

    /// Drop the key in slot `i`. Its key and state stay in the slot, unread,
    /// until an insert reuses it or a rebuild drops it: no allocation per
    /// eviction.
    fn remove(&mut self, i: usize) {
        self.ctrl[i] = TOMBSTONE;
        self.tombstones += 1;
        self.len -= 1;
    }

    fn advance_hand(&mut self) {
        self.hand = self.next_slot(self.hand.min(self.ctrl.len() - 1));
    }

    /// Drop the first idle key among the next `probe` from the hand; true
    /// if one was dropped. The hand moves past those looked at but leaves
    /// their reference bits: only [`evict_unreferenced`](Table::evict_unreferenced),
    /// which evicts by them, spends a key's second chance (else a shard of
    /// `probe` keys or fewer would lose every bit to each probe and evict
    /// by hand order alone).
    pub(super) fn evict_idle_near_hand(
        &mut self,
        probe: usize,
        mut is_idle: impl FnMut(&K, &S) -> bool,
    ) -> bool {
        let mut looked = 0;
        for _ in 0..self.ctrl.len() {
            if looked == probe || looked == self.len {
                break;
            }
            self.advance_hand();
            if self.ctrl[self.hand] & FULL != 0 {
                let (k, s) = &self.slots[self.hand];
                if is_idle(k, s) {
                    self.remove(self.hand);
                    return true;
                }
                looked += 1;
            }
        }
        false
    }

    /// Drop the key CLOCK picks: the first from the hand not used since the
    /// hand last passed it (clearing the bits of those passed); false only
    /// when the table is empty.
    pub(super) fn evict_unreferenced(&mut self) -> bool {
        if self.len == 0 {
            return false;
        }
        // Within two turns every bit passed has been cleared.
        for _ in 0..=2 * self.ctrl.len() {
            self.advance_hand();
            let c = self.ctrl[self.hand];
            if c & FULL != 0 {
                if c & REFERENCED == 0 {
                    self.remove(self.hand);
                    return true;
                }
                self.ctrl[self.hand] = c & !REFERENCED;
            }
        }
        false
    }

    /// Keep only the keys whose state `keep` accepts; returns how many were
    /// dropped. One pass over the slots; the tombstones it leaves are
    /// reclaimed by the next insert that needs them.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&K, &S) -> bool) -> usize {
        let mut dropped = 0;
        for i in 0..self.ctrl.len() {
            if self.ctrl[i] & FULL != 0 && !keep(&self.slots[i].0, &self.slots[i].1) {
                self.remove(i);
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests;
