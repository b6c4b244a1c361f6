//! O(1) sliding window counter: the previous and the current fixed window,
//! the previous one weighted by how much of it still overlaps the sliding window.
//!
//! Windows are aligned to the epoch (`[k·W, (k+1)·W)`). At `now`, with
//! `elapsed = now − start` of the current window, the estimate is
//!
//! ```text
//! used = current + ceil(previous × (W − elapsed) / W)
//! ```
//!
//! and `cost` is admitted when `used + cost ≤ limit`. The weight is exact;
//! only the previous window's contribution is rounded *up* to a whole unit.
//!
//! # The approximation
//!
//! The estimate assumes the previous window's requests were spread evenly.
//! Guarantees: every aligned window admits at most `limit`; any interval of
//! length `W` admits at most `2 × limit` (the worst case, when the previous
//! window's traffic all came at its very end). Traffic spread evenly at up
//! to `limit − 1` a window is admitted whole; at exactly `limit` a window,
//! each window after the first admits `limit − 1` (the previous window's
//! share is rounded up, never down). Use [`SlidingLog`](crate::SlidingLog)
//! where the exact bound matters and memory allows.
//!
//! ```
//! use ratebound_core::{Duration, Instant, SlidingCounter, SlidingCounterState};
//! let c = SlidingCounter::new(10, Duration::from_secs(60))?;
//! let mut s = SlidingCounterState::default();
//! assert!(c.check(&mut s, Instant::from_secs(50), 10)?.allowed);
//! // 15 s into the next window, 3/4 of the previous window still counts:
//! let d = c.peek(&s, Instant::from_secs(75), 1)?;
//! assert_eq!(d.remaining, 10 - 8 - 1); // ceil(10 × 45/60) = 8
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```

use crate::sliding_log::{validate_window, WindowConfig};
use crate::time::{mul_div_ceil, mul_div_floor};
use crate::{ConfigError, CostError, Decision, Duration, Instant, Limiter};

/// A sliding window counter: `limit` units per `window`, in O(1) state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(try_from = "WindowConfig", into = "WindowConfig")
)]
pub struct SlidingCounter {
    limit: u64,
    window: u64,
}

/// The state of a [`SlidingCounter`]: three integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SlidingCounterState {
    /// Start of the current fixed window (µs, a multiple of the window length).
    pub start: u64,
    /// Units admitted in the window before `start`.
    pub prev: u64,
    /// Units admitted since `start`.
    pub curr: u64,
}

impl TryFrom<WindowConfig> for SlidingCounter {
    type Error = ConfigError;
    fn try_from(c: WindowConfig) -> Result<Self, ConfigError> {
        SlidingCounter::new(c.limit, Duration::from_micros(c.window_us))
    }
}
impl From<SlidingCounter> for WindowConfig {
    fn from(c: SlidingCounter) -> Self {
        WindowConfig {
            limit: c.limit,
            window_us: c.window,
        }
    }
}

impl SlidingCounter {
    /// `limit` units per sliding `window`.
    pub const fn new(limit: u64, window: Duration) -> Result<Self, ConfigError> {
        if let Err(e) = validate_window(limit, window) {
            return Err(e);
        }
        Ok(SlidingCounter {
            limit,
            window: window.as_micros(),
        })
    }
    /// Units admitted per window.
    pub const fn limit(&self) -> u64 {
        self.limit
    }
    /// The window length.
    pub const fn window(&self) -> Duration {
        Duration::from_micros(self.window)
    }

    /// The state seen at `now`: windows rolled forward, and the elapsed part of
    /// the current one. A `now` before the state's window counts as its start
    /// (where the previous window weighs most). A hand-made `start` that is
    /// not a window boundary is moved up to the next one, so its counts last
    /// longer, never shorter.
    #[inline]
    fn roll(&self, s: &SlidingCounterState, now: u64) -> (SlidingCounterState, u64) {
        let start = now - now % self.window;
        let s_start = match s.start % self.window {
            0 => s.start,
            r => s.start.saturating_add(self.window - r),
        };
        if start == s_start {
            (SlidingCounterState { start, ..*s }, now - start)
        } else if start > s_start {
            let prev = if start - s_start == self.window {
                s.curr
            } else {
                0
            };
            (
                SlidingCounterState {
                    start,
                    prev,
                    curr: 0,
                },
                now - start,
            )
        } else {
            (
                SlidingCounterState {
                    start: s_start,
                    ..*s
                },
                0,
            )
        }
    }

    /// Earliest elapsed time in a window at which `ceil(prev·(W−e)/W) ≤ k`.
    #[inline]
    fn elapsed_for(&self, prev: u64, k: u64) -> u64 {
        if k >= prev {
            0
        } else {
            self.window - mul_div_floor(k, self.window, prev)
        }
    }

    fn decide(
        &self,
        s: &SlidingCounterState,
        now: Instant,
        cost: u64,
    ) -> Result<(Decision, SlidingCounterState), CostError> {
        if cost > self.limit {
            return Err(CostError::InsufficientCapacity {
                cost,
                capacity: self.limit,
            });
        }
        let (mut r, el) = self.roll(s, now.as_micros());
        let weighted = mul_div_ceil(r.prev, self.window - el, self.window);
        let avail = self.limit.saturating_sub(r.curr).saturating_sub(weighted);
        let allowed = cost <= avail;
        let retry = if allowed {
            now.as_micros()
        } else if r.curr.saturating_add(cost) <= self.limit {
            r.start
                .saturating_add(self.elapsed_for(r.prev, self.limit - r.curr - cost))
        } else {
            r.start
                .saturating_add(self.window)
                .saturating_add(self.elapsed_for(r.curr, self.limit - cost))
        };
        if allowed {
            r.curr = r.curr.saturating_add(cost);
        }
        let reset = if r.curr > 0 {
            r.start.saturating_add(self.window.saturating_mul(2))
        } else if r.prev > 0 {
            r.start.saturating_add(self.window)
        } else {
            now.as_micros()
        };
        let d = Decision {
            allowed,
            remaining: if allowed { avail - cost } else { avail },
            limit: self.limit,
            reset_at: Instant::from_micros(reset),
            retry_at: Instant::from_micros(retry),
        };
        Ok((d, r))
    }

    /// Admit `cost` if the weighted estimate allows it; a denial writes nothing.
    /// Errors when `cost > limit`.
    pub fn check(
        &self,
        state: &mut SlidingCounterState,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        let (d, next) = self.decide(state, now, cost)?;
        if d.allowed && cost > 0 {
            *state = next;
        }
        Ok(d)
    }

    /// What [`check`](SlidingCounter::check) would decide, changing nothing.
    pub fn peek(
        &self,
        state: &SlidingCounterState,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        self.decide(state, now, cost).map(|(d, _)| d)
    }
}

impl Limiter for SlidingCounter {
    type State = SlidingCounterState;
    fn check(
        &self,
        state: &mut Self::State,
        now: Instant,
        cost: u64,
    ) -> Result<Decision, CostError> {
        SlidingCounter::check(self, state, now, cost)
    }
    fn peek(&self, state: &Self::State, now: Instant, cost: u64) -> Result<Decision, CostError> {
        SlidingCounter::peek(self, state, now, cost)
    }
    fn is_idle(&self, state: &Self::State, now: Instant) -> bool {
        let (r, _) = self.roll(state, now.as_micros());
        r.prev == 0 && r.curr == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    #[test]
    fn weights_previous_window() {
        let c = SlidingCounter::new(10, Duration::from_micros(100)).unwrap();
        let mut s = SlidingCounterState::default();
        assert!(c.check(&mut s, t(150), 10).unwrap().allowed);
        let d = c.check(&mut s, t(150), 1).unwrap();
        assert!(!d.allowed);
        // Next window: prev 10; at elapsed e, weight ceil(10(100-e)/100) ≤ 9 ⇔ e ≥ 10.
        assert_eq!(d.retry_at, t(210));
        assert!(!c.check(&mut s, t(209), 1).unwrap().allowed);
        let d = c.check(&mut s, t(210), 1).unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_at, t(400));
    }

    #[test]
    fn old_state_is_forgotten_and_backwards_time_is_conservative() {
        let c = SlidingCounter::new(5, Duration::from_micros(100)).unwrap();
        let mut s = SlidingCounterState::default();
        c.check(&mut s, t(1_050), 5).unwrap();
        assert_eq!(c.peek(&s, t(1_300), 0).unwrap().remaining, 5);
        assert!(c.is_idle(&s, t(1_200)));
        // Going back to 900 sees the state's window at elapsed 0: full.
        assert_eq!(c.peek(&s, t(900), 0).unwrap().remaining, 0);
    }

    #[test]
    fn hand_made_states_never_panic_nor_gain() {
        let c = SlidingCounter::new(10, Duration::from_micros(100)).unwrap();
        let s = SlidingCounterState {
            start: u64::MAX - 1,
            prev: 0,
            curr: 1,
        };
        assert!(c.peek(&s, t(0), 0).is_ok());
        assert!(c.peek(&s, t(0), 10).is_ok());
        // A misaligned start (150) counts as the window starting at 200.
        let s = SlidingCounterState {
            start: 150,
            prev: 0,
            curr: 10,
        };
        assert!(!c.peek(&s, t(250), 1).unwrap().allowed);
        // In the next window, all 10 still weigh fully at its start.
        assert_eq!(c.peek(&s, t(300), 0).unwrap().remaining, 0);
    }

    #[test]
    fn retry_in_next_window_when_current_is_spent() {
        let c = SlidingCounter::new(4, Duration::from_micros(100)).unwrap();
        let mut s = SlidingCounterState::default();
        c.check(&mut s, t(10), 3).unwrap();
        let d = c.check(&mut s, t(20), 2).unwrap();
        // curr 3 + 2 > 4: next window, prev 3, need ceil(3(100-e)/100) ≤ 2 ⇔ e ≥ 34.
        assert_eq!(d.retry_at, t(134));
        assert!(c.check(&mut s, t(134), 2).unwrap().allowed);
    }
}
