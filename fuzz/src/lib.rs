//! Shared pieces of the fuzz targets: arbitrary time walks and the invariants
//! every rate limiter must keep.

use arbitrary::Arbitrary;
use ratebound_core::{Decision, Duration, Instant, Limiter};

/// A realistic Unix-µs start, so calendar code and 2^52 bounds are exercised.
pub const T0: u64 = 1_795_392_000_000_000;

/// A step of time: forward, backward, or a jump to an extreme.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Dt {
    /// Forward by up to ~65 ms.
    Fwd(u16),
    /// Forward by up to ~4295 s.
    Far(u32),
    /// Backward by up to ~65 ms.
    Back(u16),
    /// Backward by up to ~4295 s.
    FarBack(u32),
    /// Absolute, anything (saturates at `Instant::MAX`).
    Abs(u64),
    /// Stand still.
    Same,
}

impl Dt {
    /// The next `now`.
    pub fn apply(self, now: Instant) -> Instant {
        match self {
            Dt::Fwd(d) => now + Duration::from_micros(u64::from(d)),
            Dt::Far(d) => now + Duration::from_micros(u64::from(d) * 1_000),
            Dt::Back(d) => now - Duration::from_micros(u64::from(d)),
            Dt::FarBack(d) => now - Duration::from_micros(u64::from(d) * 1_000),
            Dt::Abs(t) => Instant::from_micros(t),
            Dt::Same => now,
        }
    }
}

/// Core invariants of one decision `d` for `cost` made at `now` by a limiter of `capacity`.
pub fn check_decision(d: &Decision, now: Instant, capacity: u64) {
    assert!(d.remaining <= capacity, "remaining {} > capacity {capacity}", d.remaining);
    assert_eq!(d.limit, capacity);
    if d.allowed {
        assert_eq!(d.retry_at, now);
    } else {
        // Times saturate at Instant::MAX, so a denial there cannot point later.
        assert!(d.retry_at > now || d.retry_at == Instant::MAX, "denied but retry_at {:?} <= now {:?}", d.retry_at, now);
    }
}

/// `peek` then `check` on the same state agree, a denial writes nothing, and
/// the denial's `retry_at` is exact where the time is representable.
pub fn peek_check_agree<L: Limiter>(l: &L, s: &mut L::State, now: Instant, cost: u64) -> Option<Decision>
where
    L::State: Clone + PartialEq + core::fmt::Debug,
{
    let before = s.clone();
    let p = l.peek(s, now, cost);
    assert_eq!(&before, s, "peek changed the state");
    let c = l.check(s, now, cost);
    assert_eq!(p, c, "peek and check disagree");
    match c {
        Ok(d) => {
            if !d.allowed {
                assert_eq!(&before, s, "a denial changed the state");
            }
            Some(d)
        }
        Err(_) => {
            assert_eq!(&before, s, "an error changed the state");
            None
        }
    }
}

/// Going back in time never shows more remaining capacity.
pub fn monotone_in_time<L: Limiter>(l: &L, s: &L::State, now: Instant) {
    let at = |t: Instant| l.peek(s, t, 0).map(|d| d.remaining).unwrap_or(0);
    let r = at(now);
    for back in [1, 1_000, 1_000_000, 1_000_000_000] {
        assert!(at(now - Duration::from_micros(back)) <= r, "earlier time shows more capacity");
    }
}
