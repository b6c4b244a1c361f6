//! The table behind each shard of a [`KeyedLimiter`](super::KeyedLimiter):
//! keys and states side by side in one dense vector, found through an
//! open-addressing index of 32-bit slots that also carry each key's CLOCK
//! reference bit.
//!
//! Why not `hashbrown`: its bucket count is a power of two, so 100,000 keys
//! sit in 131,072 buckets (33 B per key for a `u64` key and a GCRA state,
//! before any recency). Here the entries are stored densely at exactly the
//! capacity planned for the shard, and the index costs 5 B per key at 80 %
//! load: 29 B per key in all. A lookup touches the slot and the entry, and
//! marking a key used writes only the slot it already read.

use std::hash::{BuildHasher, Hash};

/// An index slot holding neither an entry nor a tombstone.
const EMPTY: u32 = 0;

/// The slot bit set when its key is used, cleared as the CLOCK hand passes.
const REFERENCED: u32 = 1 << 31;

/// Smallest table allocated on the first insert.
const MIN_CAPACITY: usize = 16;

/// Largest capacity a table supports: `entry + 1` and the tombstone value
/// must fit the 31 bits below [`REFERENCED`].
pub(super) const MAX_CAPACITY: usize = 1 << 30;

/// Keys and their states for one shard.
pub(super) struct Table<K, S, H> {
    /// Keys and states, densely: entry `e` is `entries[e]`.
    entries: Vec<(K, S)>,
    /// The index, `capacity × 5/4 + 1` slots by linear probing: `EMPTY`, a
    /// tombstone (all index bits set, nothing else), or [`REFERENCED`], a
    /// tag from the key's hash, and `entry + 1` in the low `index_bits`.
    slots: Box<[u32]>,
    /// Low bits of a slot holding `entry + 1`.
    index_bits: u32,
    /// Entries the index is sized for; `entries` never holds more.
    capacity: usize,
    /// Removed slots not yet reclaimed by a rebuild.
    tombstones: usize,
    /// The CLOCK hand: the next slot eviction looks at.
    hand: usize,
    /// Capacity to stop at when growing before doubling further: the
    /// shard's share of the store's keys, so an evenly spread store fills
    /// its tables instead of doubling past them.
    share: usize,
    /// The most entries the table may ever hold.
    limit: usize,
    hasher: H,
}

impl<K: Hash + Eq, S, H: BuildHasher> Table<K, S, H> {
    /// An empty table (no allocation until the first insert) that grows
    /// towards `share` entries, then doubles up to `limit` (≤ [`MAX_CAPACITY`]).
    pub(super) fn new(share: usize, limit: usize, hasher: H) -> Self {
        let limit = limit.min(MAX_CAPACITY);
        Table {
            entries: Vec::new(),
            slots: Box::new([]),
            index_bits: 0,
            capacity: 0,
            tombstones: 0,
            hand: 0,
            share: share.min(limit),
            limit,
            hasher,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Also the tombstone.
    #[inline]
    fn index_mask(&self) -> u32 {
        (1 << self.index_bits) - 1
    }

    /// The entry an occupied slot points at, or `None` for an empty slot or
    /// a tombstone.
    fn entry_at(&self, slot: usize) -> Option<usize> {
        let i = self.slots[slot] & self.index_mask();
        (i != 0 && i != self.index_mask()).then(|| i as usize - 1)
    }

    /// The tag bits of a slot for hash `h`: hash bits 32 and up, which
    /// neither the shard choice (low bits) nor the home slot (the top bits,
    /// by multiply-shift) use.
    #[inline]
    fn tag(&self, h: u64) -> u32 {
        ((h >> 32) as u32).checked_shl(self.index_bits).unwrap_or(0) & !REFERENCED
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        ((u128::from(h) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next_slot(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// The slot and entry holding `key`, or `Err` with the slot a new entry
    /// for it would take (the first tombstone or empty slot on its probe).
    #[inline]
    fn find(&self, h: u64, key: &K) -> Result<(usize, usize), usize> {
        let mask = self.index_mask();
        let tag = self.tag(h);
        let mut free = None;
        let mut i = self.home(h);
        // Ends: the index always keeps empty slots (see `fits`).
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return Err(free.unwrap_or(i));
            }
            if s == mask {
                free.get_or_insert(i);
            } else if s & !mask & !REFERENCED == tag {
                let e = (s & mask) as usize - 1;
                if self.entries[e].0 == *key {
                    return Ok((i, e));
                }
            }
            i = self.next_slot(i);
        }
    }

    /// `key`'s state, without marking it used.
    #[inline]
    pub(super) fn get(&self, h: u64, key: &K) -> Option<&S> {
        if self.entries.is_empty() {
            return None;
        }
        self.find(h, key).ok().map(|(_, e)| &self.entries[e].1)
    }

    /// `key`'s state, marking it used.
    #[inline]
    pub(super) fn get_mut(&mut self, h: u64, key: &K) -> Option<&mut S> {
        if self.entries.is_empty() {
            return None;
        }
        let (slot, e) = self.find(h, key).ok()?;
        self.slots[slot] |= REFERENCED;
        Some(&mut self.entries[e].1)
    }

    /// True when the table can take one more entry: below its limit.
    pub(super) fn has_room(&self) -> bool {
        self.entries.len() < self.limit
    }

    /// Hold `state` for `key`, which the table does not hold and has room
    /// for ([`has_room`](Table::has_room)). A new entry starts unreferenced:
    /// a key seen once is evicted before keys seen again.
    pub(super) fn insert_new(&mut self, h: u64, key: K, state: S) {
        if self.entries.len() == self.capacity {
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
            self.reindex(next.min(self.limit), None);
        } else if !self.fits() {
            self.reindex(self.capacity, None);
        }
        let slot = match self.find(h, &key) {
            Err(slot) => slot,
            Ok(_) => unreachable!("insert_new: the caller checked the key is absent"),
        };
        if self.slots[slot] != EMPTY {
            self.tombstones -= 1;
        }
        self.slots[slot] = self.tag(h) | (self.entries.len() as u32 + 1);
        self.entries.push((key, state));
    }

    /// Whether one more entry keeps an eighth of the slots empty, counting
    /// tombstones as full (probes end soon).
    fn fits(&self) -> bool {
        self.entries.len() + self.tombstones < self.capacity + self.capacity / 8
    }

    /// Re-create the index for `capacity` entries (≥ those held), dropping
    /// tombstones and keeping reference bits. `moved[e]` is where entry `e`
    /// now is, plus one (0: dropped), after the entries were compacted.
    fn reindex(&mut self, capacity: usize, moved: Option<&[u32]>) {
        debug_assert!(capacity >= self.entries.len());
        self.entries.reserve_exact(capacity - self.entries.len());
        let old_mask = self.index_mask();
        let old = std::mem::replace(
            &mut self.slots,
            vec![EMPTY; capacity + capacity / 4 + 1].into_boxed_slice(),
        );
        self.capacity = capacity;
        self.index_bits = usize::BITS - (capacity + 1).leading_zeros();
        self.tombstones = 0;
        self.hand = 0;
        for s in old.iter().copied() {
            let i = s & old_mask;
            if i == 0 || i == old_mask {
                continue;
            }
            let e = match moved {
                Some(m) if m[i as usize - 1] == 0 => continue,
                Some(m) => m[i as usize - 1] as usize - 1,
                None => i as usize - 1,
            };
            let h = self.hasher.hash_one(&self.entries[e].0);
            let mut slot = self.home(h);
            while self.slots[slot] != EMPTY {
                slot = self.next_slot(slot);
            }
            self.slots[slot] = (s & REFERENCED) | self.tag(h) | (e as u32 + 1);
        }
    }

    /// Drop the entry at `slot` (entry `e`): the slot becomes a tombstone
    /// and the last entry takes `e`'s place in the vector.
    fn remove(&mut self, slot: usize, e: usize) {
        let mask = self.index_mask();
        self.slots[slot] = mask;
        self.tombstones += 1;
        let last = self.entries.len() - 1;
        if e != last {
            let h = self.hasher.hash_one(&self.entries[last].0);
            let moved = match self.find(h, &self.entries[last].0) {
                Ok((moved, _)) => moved,
                Err(_) => unreachable!("remove: every entry is indexed"),
            };
            self.slots[moved] = (self.slots[moved] & !mask) | (e as u32 + 1);
        }
        self.entries.swap_remove(e);
    }

    /// Drop the first idle entry among the next `probe` from the hand; true
    /// if one was dropped. The hand moves past those looked at.
    pub(super) fn evict_idle_near_hand(
        &mut self,
        probe: usize,
        mut is_idle: impl FnMut(&S) -> bool,
    ) -> bool {
        let mut looked = 0;
        for _ in 0..self.slots.len() {
            if looked == probe || looked == self.entries.len() {
                break;
            }
            self.hand = if self.hand + 1 >= self.slots.len() {
                0
            } else {
                self.hand + 1
            };
            if let Some(e) = self.entry_at(self.hand) {
                if is_idle(&self.entries[e].1) {
                    self.remove(self.hand, e);
                    return true;
                }
                looked += 1;
            }
        }
        false
    }

    /// Drop the entry CLOCK picks: the first from the hand not used since
    /// the hand last passed it (clearing the bits of those passed); false
    /// only when the table is empty.
    pub(super) fn evict_unreferenced(&mut self) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        // Within two turns every bit passed has been cleared.
        for _ in 0..=2 * self.slots.len() {
            self.hand = if self.hand + 1 >= self.slots.len() {
                0
            } else {
                self.hand + 1
            };
            if let Some(e) = self.entry_at(self.hand) {
                if self.slots[self.hand] & REFERENCED == 0 {
                    self.remove(self.hand, e);
                    return true;
                }
                self.slots[self.hand] &= !REFERENCED;
            }
        }
        false
    }

    /// Keep only the entries whose state `keep` (a pure test) accepts;
    /// returns how many were dropped. One pass over the entries; when some
    /// go, a second that compacts them, then one index rebuild.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&S) -> bool) -> usize {
        let dropped = self.entries.iter().filter(|(_, s)| !keep(s)).count();
        if dropped > 0 {
            let mut kept = 0u32;
            let moved: Vec<u32> = self
                .entries
                .iter()
                .map(|(_, s)| {
                    if keep(s) {
                        kept += 1;
                        kept
                    } else {
                        0
                    }
                })
                .collect();
            let mut e = 0;
            self.entries.retain(|_| {
                e += 1;
                moved[e - 1] != 0
            });
            self.reindex(self.capacity, Some(&moved));
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::hash::BuildHasherDefault;

    /// A deliberately weak hash (the key itself) so probes collide, wrap
    /// around and cross tombstones.
    #[derive(Default)]
    struct Identity(u64);
    impl std::hash::Hasher for Identity {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, _: &[u8]) {
            unreachable!("u64 keys only")
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }

    type Weak = BuildHasherDefault<Identity>;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        Touch(u64),
        EvictIdle(u8),
        EvictClock,
        RetainEven,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys spread over the hash range by the multiply, or packed in a
        // few home slots (small values all map to slot 0).
        let key = prop_oneof![
            0u64..64,
            (0u64..64).prop_map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        ];
        prop_oneof![
            4 => key.clone().prop_map(Op::Insert),
            2 => key.prop_map(Op::Touch),
            1 => any::<u8>().prop_map(Op::EvictIdle),
            1 => Just(Op::EvictClock),
            1 => Just(Op::RetainEven),
        ]
    }

    proptest! {
        /// Every operation leaves the table holding exactly what a plain
        /// map holds, within its limit, with the index consistent.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec(op(), 1..400), limit in 1usize..40, share in 1usize..40) {
            let mut t: Table<u64, u64, Weak> = Table::new(share, limit, Weak::default());
            let mut model: HashMap<u64, u64> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k) => {
                        let h = t.hasher.hash_one(k);
                        if t.get(h, &k).is_none() && t.has_room() {
                            t.insert_new(h, k, k);
                            model.insert(k, k);
                        }
                    }
                    Op::Touch(k) => {
                        let h = t.hasher.hash_one(k);
                        match t.get_mut(h, &k) {
                            Some(s) => {
                                *s += 1;
                                *model.get_mut(&k).expect("model holds it") += 1;
                            }
                            None => prop_assert!(!model.contains_key(&k)),
                        }
                    }
                    Op::EvictIdle(p) => {
                        let before = t.len();
                        // "Idle" = an odd state.
                        if t.evict_idle_near_hand(usize::from(p % 8), |s| s % 2 == 1) {
                            prop_assert_eq!(t.len(), before - 1);
                            model.retain(|k, _| t.get(t.hasher.hash_one(*k), k).is_some());
                        }
                    }
                    Op::EvictClock => {
                        let before = t.len();
                        prop_assert_eq!(t.evict_unreferenced(), before > 0);
                        model.retain(|k, _| t.get(t.hasher.hash_one(*k), k).is_some());
                    }
                    Op::RetainEven => {
                        let dropped = t.retain(|s| s % 2 == 0);
                        let before = model.len();
                        model.retain(|_, s| *s % 2 == 0);
                        prop_assert_eq!(dropped, before - model.len());
                    }
                }
                prop_assert!(t.len() <= limit);
                prop_assert_eq!(t.len(), model.len());
                for (k, v) in &model {
                    prop_assert_eq!(t.get(t.hasher.hash_one(*k), k), Some(v));
                }
                // Every slot points at a distinct live entry or is free.
                let mask = t.index_mask();
                let mut seen = vec![false; t.len()];
                for &s in t.slots.iter() {
                    if s != EMPTY && s != mask {
                        let e = (s & mask) as usize - 1;
                        prop_assert!(e < t.len() && !seen[e]);
                        seen[e] = true;
                    }
                }
                prop_assert!(seen.iter().all(|&b| b));
            }
        }
    }

    #[test]
    fn clock_spares_keys_used_again() {
        let mut t: Table<u64, (), Weak> = Table::new(8, 8, Weak::default());
        for k in 0..8 {
            t.insert_new(t.hasher.hash_one(k), k, ());
        }
        for k in [0, 2, 4, 6] {
            assert!(t.get_mut(t.hasher.hash_one(k), &k).is_some());
        }
        for _ in 0..4 {
            assert!(t.evict_unreferenced());
        }
        let mut left: Vec<u64> = (0..8)
            .filter(|k| t.get(t.hasher.hash_one(*k), k).is_some())
            .collect();
        left.sort_unstable();
        assert_eq!(left, [0, 2, 4, 6], "keys seen once go first");
    }

    #[test]
    fn grows_to_the_share_then_doubles() {
        let mut t: Table<u64, (), Weak> = Table::new(100, 1_000, Weak::default());
        let mut caps = Vec::new();
        for k in 0..300u64 {
            t.insert_new(t.hasher.hash_one(k), k, ());
            if caps.last() != Some(&t.capacity) {
                caps.push(t.capacity);
            }
        }
        assert_eq!(caps, [16, 32, 64, 100, 200, 400]);
        assert_eq!(t.entries.capacity(), 400);
    }
}
