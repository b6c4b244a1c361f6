//! A bounded per-key store for the JS `KeyedLimiter`: states live here, by
//! slot, and every rule — each decision, which new key is kept, what makes
//! room when the store is full — is core's (`keyed::check_new_key`). The
//! keys themselves stay in JS, which maps each to its slot (a `Map` lookup,
//! no string copied into wasm per call) and mirrors what this store reports:
//! the slot a new key was given, the slot a full store emptied.

use alloc::vec::Vec;

use crate::int;
use crate::limiters::Last;
use ratebound_core::keyed::{check_new_key, BoundedStore, KeyedError, OnFull};
use ratebound_core::{CostError, Decision, Instant, Limiter};

use crate::machine::{Machine, State};

/// Which slots are in use, and when each was last used: one copy of this
/// code for every kind of limiter (the states are in a plain `Vec`).
/// Finding the least recently used slot is a scan, as finding an idle one
/// is: both happen only when a new key meets a full store.
#[derive(Default)]
struct Index {
    /// Per slot: when it was last used (`None`: free).
    slots: Vec<Option<u64>>,
    free: Vec<usize>,
    held: usize,
    tick: u64,
    /// What the last new key did: the slot it was given, the slot emptied
    /// to make room for it (for JS to mirror).
    inserted: Option<usize>,
    evicted: Option<usize>,
}

impl Index {
    fn in_use(&self, i: usize) -> bool {
        matches!(self.slots.get(i), Some(Some(_)))
    }
    fn touch(&mut self, i: usize) {
        self.tick += 1;
        if let Some(Some(used)) = self.slots.get_mut(i) {
            *used = self.tick;
        }
    }
    /// A slot for a new key (the caller puts its state there).
    fn add(&mut self) -> usize {
        self.tick += 1;
        let i = self.free.pop().unwrap_or(self.slots.len());
        match self.slots.get_mut(i) {
            Some(s) => *s = Some(self.tick),
            None => self.slots.push(Some(self.tick)),
        }
        self.held += 1;
        self.inserted = Some(i);
        i
    }
    fn remove(&mut self, i: usize) {
        if let Some(slot) = self.slots.get_mut(i) {
            if slot.take().is_some() {
                self.free.push(i);
                self.held -= 1;
            }
        }
    }
    /// The least recently used slot in use for which `pick` holds.
    fn least_recent(&self, pick: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(t) = s {
                if best.is_none_or(|(b, _)| *t < b) && pick(i) {
                    best = Some((*t, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }
}

/// The states by slot, with the slots' use.
struct Store {
    machine: Machine,
    index: Index,
    states: Vec<State>,
    max: usize,
}

impl Store {
    fn new(machine: Machine, max: usize) -> Self {
        Store {
            machine,
            index: Index::default(),
            states: Vec::new(),
            max,
        }
    }

    /// Check the key held in `slot`; a slot not in use is a new key's.
    fn check(
        &mut self,
        slot: Option<usize>,
        now: Instant,
        cost: u64,
        on_full: OnFull,
    ) -> Result<Decision, KeyedError> {
        self.index.inserted = None;
        self.index.evicted = None;
        if let Some(i) = slot.filter(|&i| self.index.in_use(i)) {
            self.index.touch(i);
            let st = self
                .states
                .get_mut(i)
                .ok_or(KeyedError::TableFull { capacity: self.max })?;
            return Ok(self.machine.check(st, now, cost)?);
        }
        let machine = self.machine;
        check_new_key(self, &machine, (), now, cost, on_full)
    }

    /// A held key's status (1, 0, -1 as `check`), or -3: not held.
    fn allow(&mut self, slot: usize, now: Instant, cost: u64) -> i32 {
        if !self.index.in_use(slot) {
            return -3;
        }
        self.index.touch(slot);
        match self
            .states
            .get_mut(slot)
            .map(|st| self.machine.allow(st, now, cost))
        {
            Some(Ok(allowed)) => i32::from(allowed),
            Some(Err(_)) => -1,
            None => -3,
        }
    }

    fn peek(&self, slot: Option<usize>, now: Instant, cost: u64) -> Result<Decision, CostError> {
        let held = slot
            .filter(|&i| self.index.in_use(i))
            .and_then(|i| self.states.get(i));
        self.machine.peek(held.unwrap_or(&State::Fresh), now, cost)
    }

    fn evict_idle(&mut self, now: Instant, mut emptied: impl FnMut(u32)) {
        for i in 0..self.states.len() {
            let idle = self.index.in_use(i)
                && self
                    .states
                    .get(i)
                    .is_some_and(|st| self.machine.is_idle(st, now));
            if idle {
                self.index.remove(i);
                emptied(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
    }

    fn evict(&mut self, slot: Option<usize>) -> bool {
        match slot {
            Some(i) => {
                self.index.remove(i);
                self.index.evicted = Some(i);
                true
            }
            None => false,
        }
    }
}

impl BoundedStore for Store {
    type Key = ();
    type State = State;
    fn held(&self) -> usize {
        self.index.held
    }
    fn max_keys(&self) -> usize {
        self.max
    }
    fn evict_one_idle(&mut self, now: Instant) -> bool {
        let (machine, states) = (self.machine, &self.states);
        let found = self
            .index
            .least_recent(|i| states.get(i).is_some_and(|st| machine.is_idle(st, now)));
        self.evict(found)
    }
    fn evict_least_recent(&mut self) -> bool {
        let found = self.index.least_recent(|_| true);
        self.evict(found)
    }
    fn insert(&mut self, (): (), state: State) -> bool {
        let i = self.index.add();
        match self.states.get_mut(i) {
            Some(st) => *st = state,
            None => self.states.push(state),
        }
        true
    }
}

/// One limiter per key in bounded memory (`max_keys`); `evict_lru` picks
/// what a full store of active keys does with a new key (evict the least
/// recently used, or refuse it).
pub struct KeyedStore {
    store: Store,
    on_full: OnFull,
    last: Last,
}

fn on_full(evict_lru: bool) -> OnFull {
    if evict_lru {
        OnFull::EvictLeastRecent
    } else {
        OnFull::Deny
    }
}

fn max_keys(n: f64) -> usize {
    usize::try_from(int(n)).unwrap_or(usize::MAX).max(1)
}

impl KeyedStore {
    /// A store of `machine`'s states for at most `max` keys, evicting the
    /// least recently used when `evict_lru` (else refusing new keys when
    /// full); `abi/limiters.rs`'s `keyed_new` makes one of each kind.
    pub(crate) fn of(machine: Machine, max: f64, evict_lru: bool) -> KeyedStore {
        KeyedStore {
            store: Store::new(machine, max_keys(max)),
            on_full: on_full(evict_lru),
            last: Last::default(),
        }
    }

    /// Check `cost` for the key in `slot` (`-1`: a new key): 1 allowed, 0
    /// denied, -1 the cost can never fit, -2 the store is full of active
    /// keys (the key is refused), -3 `slot` holds no key (nothing done).
    /// After a new key, `inserted()` and `evicted()` say which slots changed.
    pub fn check(&mut self, slot: f64, now_us: f64, cost: f64) -> i32 {
        let (now, cost, on_full) = (Instant::from_micros(int(now_us)), int(cost), self.on_full);
        let slot = slot_of(slot);
        if slot.is_some_and(|i| !self.store.index.in_use(i)) {
            return -3; // not a held key's slot: JS's map and this store disagree
        }
        match self.store.check(slot, now, cost, on_full) {
            Ok(d) => self.last.set(Ok(d)),
            Err(KeyedError::Cost(e)) => self.last.set(Err(e)),
            Err(_) => -2,
        }
    }

    /// `check`'s status for the key held in `slot`, the decision's numbers
    /// not kept (the JS `allow()`); -3 when `slot` holds no key (then the
    /// caller goes through `check`, which handles new keys).
    pub fn allow(&mut self, slot: f64, now_us: f64, cost: f64) -> i32 {
        let (now, cost) = (Instant::from_micros(int(now_us)), int(cost));
        let Some(slot) = slot_of(slot) else { return -3 };
        self.store.allow(slot, now, cost)
    }

    /// The slot the last `check` gave a new key (-1: none; an idle state
    /// is not kept).
    pub fn inserted(&self) -> f64 {
        self.store.index.inserted.map_or(-1.0, |i| i as f64)
    }

    /// The slot the last `check` emptied to make room (-1: none).
    pub fn evicted(&self) -> f64 {
        self.store.index.evicted.map_or(-1.0, |i| i as f64)
    }

    /// What `check` would decide for the key in `slot` (-1: a new key),
    /// changing nothing.
    pub fn peek(&mut self, slot: f64, now_us: f64, cost: f64) -> i32 {
        let now = Instant::from_micros(int(now_us));
        let slot = slot_of(slot);
        let r = self.store.peek(slot, now, int(cost));
        self.last.set(r)
    }

    /// Drop every idle key, handing `emptied` each slot it empties.
    pub fn evict_idle(&mut self, now_us: f64, emptied: impl FnMut(u32)) {
        let now = Instant::from_micros(int(now_us));
        self.store.evict_idle(now, emptied)
    }

    /// Count a use of the key in `slot` without deciding anything (it
    /// becomes the most recently used): a call refused by the set this
    /// store is a member of, whichever member refused it. Nothing for a
    /// slot not in use.
    pub fn touch(&mut self, slot: f64) {
        if let Some(i) = slot_of(slot) {
            self.store.index.touch(i);
        }
    }

    /// Keys held.
    pub fn size(&self) -> f64 {
        self.store.index.held as f64
    }
}

/// A slot from JS: negative or NaN means none (JS passes whole numbers).
fn slot_of(x: f64) -> Option<usize> {
    (x >= 0.0).then_some(x as usize)
}
decision_getters!(KeyedStore);
