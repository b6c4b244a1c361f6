//! Changing a limiter's config while its states live on.
//!
//! Every state core keeps is absolute plain data — instants and counts,
//! never "tokens left" — so the carry-over rule is one for every machine:
//! **the state is kept as it is, and the new config reads it.** Nothing is
//! rewritten when a config changes, so a store holding millions of keys
//! (in memory or in Redis) changes config without touching one, and a
//! state last touched before the change and one touched after it are read
//! alike. What each machine does with its kept state:
//!
//! | Machine | Kept | Under the new config |
//! |---|---|---|
//! | [`Gcra`] | the instant the bucket is full again (TAT) | still full again at that instant: what it owes is the same time, read at the new rate, so capacity and rate changed together keep the fraction used (8 of 10 used → 80 of 100 raised, 4 of 5 lowered) |
//! | [`SlidingLog`] | the entries it holds (time, cost) | each counts while inside the new window, against the new limit; entries the old window had already let go are gone, so a longer window counts, until it has been running that long, only what the old one still held |
//! | [`SlidingCounter`] | its windows' counts | counted against the new limit; the window length cannot change (refused) |
//! | [`Budget`] | each window's usage, the holds, the throttle | read against the new maxima, thresholds and throttle; each window records what its limit counts, so windows follow their limits when limits are added, removed or reordered, and under a changed max or thresholds their alerts are re-armed; the UTC offset cannot change (refused) ([`Budget::reconfigure`]) |
//!
//! So lowering a sliding limit below what a key has used forgives nothing:
//! the key waits until its usage is under the new limit; lowering a GCRA's
//! rate keeps the time the key must wait for a full bucket, which at the
//! lower rate is fewer tokens (the example below: 8 of 10 a minute used,
//! then 5 a minute, leaves 1). Raising a limit grants the difference at
//! once (the sliding machines) or as the bucket's new rate re-reads its
//! debt (GCRA).
//!
//! A GCRA TAT is kept to the microsecond; its sub-microsecond part, in
//! units of the config's `1/a` µs ([`Gcra::reduced_rate`]), is read in the
//! new config's units (and a value out of range for them as the next whole
//! µs), so the instant it names moves by less than 1 µs.
//!
//! [`CarryOver::carries_over_from`] says whether a change keeps state
//! meaningful; stores call it before they swap a config and refuse the
//! change when it does not.
//!
//! ```
//! use ratebound_core::{CarryOver, Gcra, GcraState, Instant, Limiter};
//!
//! let old = Gcra::per_minute(10)?;
//! let mut state = GcraState::default();
//! let t0 = Instant::from_secs(1_000);
//! assert!(old.check(&mut state, t0, 8)?.allowed); // 2 of 10 left
//!
//! // Raised tenfold: 80 of 100 used, 20 left, full again when it would have been.
//! let raised = Gcra::per_minute(100)?;
//! raised.carries_over_from(&old)?;
//! let d = raised.peek(&state, t0, 0)?;
//! assert_eq!(d.remaining, 20);
//! assert_eq!(d.reset_at, old.peek(&state, t0, 0)?.reset_at);
//!
//! // Lowered to 5 a minute: the 48 s it owes are 4 of 5, leaving 1 (one per 12 s).
//! let lowered = Gcra::per_minute(5)?;
//! assert_eq!(lowered.peek(&state, t0, 0)?.remaining, 1);
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use crate::budget::Budget;
use crate::{ConfigError, Gcra, SlidingCounter, SlidingLog};

/// A limiter whose states can outlive a change of its config.
pub trait CarryOver {
    /// `Ok` when states written under `old` keep their meaning under
    /// `self` (see the [module](self) for what each machine keeps); the
    /// reason otherwise.
    fn carries_over_from(&self, old: &Self) -> Result<(), ConfigError>;
}

impl CarryOver for Gcra {
    /// Always: the TAT is an instant, whatever the rate.
    fn carries_over_from(&self, _old: &Self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl<const N: usize> CarryOver for SlidingLog<N> {
    /// Always: entries are instants and costs.
    fn carries_over_from(&self, _old: &Self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl CarryOver for SlidingCounter {
    /// When the window length is unchanged: the counts belong to windows
    /// of that length, aligned to the epoch, and would mean something else
    /// under another one.
    fn carries_over_from(&self, old: &Self) -> Result<(), ConfigError> {
        if self.window() == old.window() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                field: "window",
                reason: "of a sliding counter cannot change while its states live: \
                         its counts belong to windows of the old length",
            })
        }
    }
}

impl CarryOver for Budget {
    /// When the UTC offset is the same: windows start at local midnight of
    /// the offset, and would start elsewhere under another. Limits may be
    /// added, removed, reordered and given other maxima (a state's windows
    /// follow their limits by dimension and horizon).
    fn carries_over_from(&self, old: &Self) -> Result<(), ConfigError> {
        if self.config().utc_offset_secs != old.config().utc_offset_secs {
            return Err(ConfigError::Invalid {
                field: "utc_offset_secs",
                reason: "cannot change while states live: their windows start at the old offset",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Duration, GcraState, Instant, SlidingCounterState, SlidingLogState};
    use proptest::prelude::*;

    fn gcra() -> impl Strategy<Value = Gcra> {
        (1u64..200, 1u64..50, 1u64..120_000_000).prop_filter_map("valid", |(c, a, p)| {
            Gcra::new(c, a, Duration::from_micros(p)).ok()
        })
    }

    proptest! {
        /// "Still full again at that instant": a kept TAT names the same
        /// reset instant under any new config, to the microsecond.
        #[test]
        fn a_bucket_is_full_again_when_it_would_have_been(
            old in gcra(), new in gcra(), used in 1u64..200, wait in 0u64..60_000_000,
        ) {
            let t0 = Instant::from_secs(1_000_000);
            let mut s = GcraState::default();
            let used = used.min(old.capacity());
            prop_assert!(old.check(&mut s, t0, used)?.allowed);
            let now = t0 + Duration::from_micros(wait);
            new.carries_over_from(&old)?;
            let before = old.peek(&s, now, 0)?.reset_at;
            let after = new.peek(&s, now, 0)?.reset_at;
            // Only the sub-µs part is re-read in the new units.
            prop_assert!(after.as_micros().abs_diff(before.as_micros()) <= 1,
                "reset {before:?} became {after:?}");
        }

        /// "Scaling capacity and rate together keeps the fraction used".
        #[test]
        fn scaling_capacity_and_rate_keeps_the_fraction_used(
            n in 1u64..1_000, k in 2u64..20, used_num in 0u64..=100,
        ) {
            let old = Gcra::per_minute(n)?;
            let new = Gcra::per_minute(n * k)?;
            let used = n * used_num / 100;
            let t0 = Instant::from_secs(1_000_000);
            let mut s = GcraState::default();
            prop_assert!(old.check(&mut s, t0, used)?.allowed);
            prop_assert_eq!(new.peek(&s, t0, 0)?.remaining, (n - used) * k);
        }

        /// "Each counts while inside the new window, against the new
        /// limit": after the change the log's room is the new limit less
        /// the held entries inside the new window (longer or shorter).
        #[test]
        fn a_log_recounts_its_entries_under_the_new_limit_and_window(
            costs in proptest::collection::vec((0u64..5_000_000, 1u64..4), 1..12),
            limit in 1u64..20, window in 1u64..60_000_000, probe in 0u64..30_000_000,
        ) {
            let old = SlidingLog::<16>::new(20, Duration::from_secs(20))?;
            let new = SlidingLog::<16>::new(limit, Duration::from_micros(window))?;
            new.carries_over_from(&old)?;
            let mut s = SlidingLogState::<16>::default();
            let mut t = Instant::from_secs(1_000);
            for (gap, cost) in costs {
                t += Duration::from_micros(gap);
                old.check(&mut s, t, cost)?;
            }
            let now = t + Duration::from_micros(probe);
            let live: u64 = s
                .entries()
                .filter(|e| e.at + window > now.as_micros())
                .map(|e| e.cost)
                .sum();
            prop_assert_eq!(new.peek(&s, now, 0)?.remaining, limit.saturating_sub(live));
        }
    }

    #[test]
    fn lowering_a_log_limit_forgives_nothing() {
        let old = SlidingLog::<16>::new(10, Duration::from_secs(60)).unwrap();
        let new = SlidingLog::<16>::new(5, Duration::from_secs(60)).unwrap();
        let mut s = SlidingLogState::<16>::default();
        for i in 0..8 {
            assert!(
                old.check(&mut s, Instant::from_secs(100 + i), 1)
                    .unwrap()
                    .allowed
            );
        }
        // 8 live against 5: refused until 4 have left (the 4th at 103 + 60).
        let d = new.check(&mut s, Instant::from_secs(110), 1).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_at, Instant::from_secs(163));
        assert!(
            new.check(&mut s, Instant::from_secs(163), 1)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn a_counter_keeps_its_counts_and_refuses_a_new_window() {
        let old = SlidingCounter::new(10, Duration::from_secs(60)).unwrap();
        let raised = SlidingCounter::new(20, Duration::from_secs(60)).unwrap();
        let mut s = SlidingCounterState::default();
        assert!(
            old.check(&mut s, Instant::from_secs(120), 10)
                .unwrap()
                .allowed
        );
        raised.carries_over_from(&old).unwrap();
        assert_eq!(
            raised
                .peek(&s, Instant::from_secs(120), 0)
                .unwrap()
                .remaining,
            10
        );
        let other = SlidingCounter::new(10, Duration::from_secs(30)).unwrap();
        let e = other.carries_over_from(&old).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    field: "window",
                    ..
                }
            ),
            "{e}"
        );
    }
}
