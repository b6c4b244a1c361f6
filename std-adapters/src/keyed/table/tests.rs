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
                    if t.evict_idle_near_hand(usize::from(p % 8), |_, s| s % 2 == 1) {
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
                    let dropped = t.retain(|_, s| s % 2 == 0);
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
            // The full slots are exactly the keys held, each once.
            let mut held: Vec<u64> = t
                .ctrl
                .iter()
                .zip(t.slots.iter())
                .filter(|(c, _)| **c & FULL != 0)
                .map(|(_, (k, _))| *k)
                .collect();
            held.sort_unstable();
            let mut expected: Vec<u64> = model.keys().copied().collect();
            expected.sort_unstable();
            prop_assert_eq!(held, expected);
            prop_assert_eq!(
                t.ctrl.iter().filter(|c| **c == TOMBSTONE).count(),
                t.tombstones
            );
        }
    }
}

/// The keys left after four CLOCK evictions in a table of 8 where
/// 0, 2, 4 and 6 were used again (`get_mut`) or only looked at (`get`,
/// what `KeyedLimiter::peek` reads through).
fn left_after_four_evictions(used_again: bool) -> Vec<u64> {
    let mut t: Table<u64, (), Weak> = Table::new(8, 8, Weak::default());
    for k in 0..8 {
        t.insert_new(t.hasher.hash_one(k), k, ());
    }
    for k in [0, 2, 4, 6] {
        let h = t.hasher.hash_one(k);
        let found = if used_again {
            t.get_mut(h, &k).is_some()
        } else {
            t.get(h, &k).is_some()
        };
        assert!(found);
    }
    for _ in 0..4 {
        assert!(t.evict_unreferenced());
    }
    let mut left: Vec<u64> = (0..8)
        .filter(|k| t.get(t.hasher.hash_one(*k), k).is_some())
        .collect();
    left.sort_unstable();
    left
}

#[test]
fn clock_spares_keys_used_again_not_keys_only_looked_at() {
    assert_eq!(
        left_after_four_evictions(true),
        [0, 2, 4, 6],
        "keys seen once go first"
    );
    assert_eq!(
        left_after_four_evictions(false),
        [0, 5, 6, 7],
        "the next four from the hand go, 2 and 4 though looked at"
    );
}

/// A probe for idle keys that finds none passes every key but spends
/// no second chance: CLOCK still evicts the keys seen once.
#[test]
fn a_probe_for_idle_keys_leaves_reference_bits() {
    let mut t: Table<u64, (), Weak> = Table::new(8, 8, Weak::default());
    for k in 0..8 {
        t.insert_new(t.hasher.hash_one(k), k, ());
    }
    for k in [1, 3, 5, 7] {
        assert!(t.get_mut(t.hasher.hash_one(k), &k).is_some());
    }
    assert!(!t.evict_idle_near_hand(8, |_, _| false));
    for _ in 0..4 {
        assert!(t.evict_unreferenced());
    }
    let left: Vec<u64> = (0..8)
        .filter(|k| t.get(t.hasher.hash_one(*k), k).is_some())
        .collect();
    assert_eq!(left, [1, 3, 5, 7]);
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
    assert_eq!(t.slots.len(), 400 + 400 * 3 / 16 + 1);
}

/// Runs of keys whose tags differ in the lowest bit, at the start of the
/// table and at its end (wrapping to the start): each key is told apart
/// from its neighbours by comparing keys, and a removed key (its slot
/// keeps the key) is not found.
#[test]
fn keys_with_neighbouring_tags_are_told_apart() {
    let mut t: Table<u64, u64, Weak> = Table::new(64, 64, Weak::default());
    // With the identity hash, bits 32.. are the tag and the home slot is
    // the hash's top bits: small hashes start at slot 0, the largest at
    // the last slot.
    let at_start = (0..24u64).map(|i| ((i % 2) << 32) | i);
    let at_end = (0..24u64).map(|i| (u64::MAX - i) ^ ((i % 2) << 32));
    let keys: Vec<u64> = at_start.chain(at_end).collect();
    let hash = |k: u64| Weak::default().hash_one(k);
    for &k in &keys {
        t.insert_new(hash(k), k, k / 2);
    }
    for &k in &keys {
        assert_eq!(t.get(hash(k), &k), Some(&(k / 2)), "key {k:#x}");
    }
    assert_eq!(t.retain(|k, _| k % 3 != 0), 16);
    for &k in &keys {
        let held = (k % 3 != 0).then_some(k / 2);
        assert_eq!(t.get(hash(k), &k).copied(), held, "key {k:#x}");
        assert_eq!(t.get_mut(hash(k), &k).copied(), held, "key {k:#x}");
    }
    for absent in [
        2u64 << 32,
        (1 << 32) | 99,
        u64::MAX - 99,
        u64::MAX ^ (1 << 32),
    ] {
        assert_eq!(t.get(hash(absent), &absent), None, "key {absent:#x}");
    }
}
