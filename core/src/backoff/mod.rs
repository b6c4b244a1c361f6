//! Retry backoff: exponential delays with a cap, jitter, attempt and elapsed
//! limits, server hints, and a gRPC-style retry budget.
//!
//! The step function [`Backoff::next`] says *when* to retry (`Step::Retry{at}`)
//! or why not (`Step::GiveUp`); the caller sleeps. Randomness comes from a
//! SplitMix64 generator seeded by the caller (deterministic in tests), or as
//! a random `u64` passed to [`Backoff::next_with_random`].
//!
//! # Delays
//!
//! `base(n) = min(cap, initial × factorⁿ)` for retry `n` (0-based), then:
//!
//! | [`Jitter`] | delay |
//! |---|---|
//! | `None` | `base` |
//! | `Full` | uniform in `[0, base]` |
//! | `Equal` | `base/2 + uniform[0, base − base/2]` |
//! | `Decorrelated` | `min(cap, uniform[initial, max(initial, 3 × previous)])` |
//!
//! # Hints
//!
//! A server hint (`Retry-After`) raises the delay to at least the hint. The
//! cap is a promise too: a hint longer than the cap gives up with
//! [`GiveUp::HintBeyondCap`] rather than retrying early against the server's
//! wish or sleeping past the cap. So every delay lies in `[hint, cap]`.
//!
//! ```
//! use ratebound_core::backoff::{Backoff, Jitter, Step};
//! use ratebound_core::{Duration, Instant};
//!
//! let policy = Backoff::new(Duration::from_millis(100), Duration::from_secs(5))?
//!     .with_jitter(Jitter::None)
//!     .with_max_retries(3);
//! let delays: Vec<_> = policy.delays(7).map(|d| d.as_millis()).collect();
//! assert_eq!(delays, [100, 200, 400]);
//!
//! let now = Instant::from_secs(10);
//! let mut st = policy.start(now, 42);
//! match policy.next(&mut st, now, Some(Duration::from_secs(1))) {
//!     Step::Retry { at, .. } => assert_eq!(at, now + Duration::from_secs(1)), // hint wins
//!     Step::GiveUp(why) => panic!("{why:?}"),
//! }
//! # Ok::<(), ratebound_core::ConfigError>(())
//! ```

use crate::{ConfigError, Duration, Instant};

mod retry_budget;
pub use retry_budget::{RetryBudget, RetryBudgetConfig, RetryBudgetState};

/// Jitter strategies (AWS architecture blog, "Exponential Backoff and Jitter").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Jitter {
    /// Exactly the exponential delay.
    None,
    /// Uniform in `[0, delay]`.
    #[default]
    Full,
    /// Half fixed, half random.
    Equal,
    /// Uniform in `[initial, 3 × previous]`, capped.
    Decorrelated,
}

/// Why a retry sequence stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum GiveUp {
    /// The configured number of retries was used.
    MaxRetries,
    /// The next retry would start after the elapsed-time limit.
    MaxElapsed,
    /// The server asked to wait longer than the cap.
    HintBeyondCap {
        /// The hint.
        hint: Duration,
    },
    /// The shared retry budget refuses retries (too many recent failures).
    RetryBudget,
}

/// The answer of [`Backoff::next`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Retry at `at` (= now + `delay`); this is retry number `attempt` (1-based).
    Retry {
        /// When.
        at: Instant,
        /// The wait.
        delay: Duration,
        /// 1 for the first retry.
        attempt: u32,
    },
    /// Stop.
    GiveUp(GiveUp),
}

/// A backoff policy. Build with [`Backoff::new`] and the `with_*` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(try_from = "BackoffConfig", into = "BackoffConfig")
)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    factor_num: u32,
    factor_den: u32,
    jitter: Jitter,
    max_retries: Option<u32>,
    max_elapsed: Option<Duration>,
}

/// The serialized form of [`Backoff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct BackoffConfig {
    /// First delay, µs.
    pub initial_us: u64,
    /// Largest delay, µs.
    pub cap_us: u64,
    /// Growth factor numerator.
    pub factor_num: u32,
    /// Growth factor denominator.
    pub factor_den: u32,
    /// Jitter.
    pub jitter: Jitter,
    /// Most retries (`None`: unlimited).
    pub max_retries: Option<u32>,
    /// Most time from start to a retry, µs (`None`: unlimited).
    pub max_elapsed_us: Option<u64>,
}

impl TryFrom<BackoffConfig> for Backoff {
    type Error = ConfigError;
    fn try_from(c: BackoffConfig) -> Result<Self, ConfigError> {
        let mut b = Backoff::new(
            Duration::from_micros(c.initial_us),
            Duration::from_micros(c.cap_us),
        )?
        .with_factor(c.factor_num, c.factor_den)?
        .with_jitter(c.jitter);
        b.max_retries = c.max_retries;
        b.max_elapsed = c.max_elapsed_us.map(Duration::from_micros);
        Ok(b)
    }
}
impl From<Backoff> for BackoffConfig {
    fn from(b: Backoff) -> Self {
        BackoffConfig {
            initial_us: b.initial.as_micros(),
            cap_us: b.cap.as_micros(),
            factor_num: b.factor_num,
            factor_den: b.factor_den,
            jitter: b.jitter,
            max_retries: b.max_retries,
            max_elapsed_us: b.max_elapsed.map(Duration::as_micros),
        }
    }
}

/// The state of one retry sequence: plain data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BackoffState {
    /// Retries handed out so far.
    pub attempt: u32,
    /// When the sequence started (µs).
    pub started: u64,
    /// The previous delay (µs), for decorrelated jitter.
    pub prev: u64,
    /// SplitMix64 generator state.
    pub rng: u64,
}

impl Backoff {
    /// Doubling from `initial` up to `cap`, full jitter, 3 retries, no elapsed limit.
    /// Errors when `cap` is zero or below `initial`.
    pub const fn new(initial: Duration, cap: Duration) -> Result<Backoff, ConfigError> {
        if cap.is_zero() {
            return Err(ConfigError::Zero { field: "cap" });
        }
        if initial.as_micros() > cap.as_micros() {
            return Err(ConfigError::Invalid {
                field: "initial",
                reason: "must not exceed cap",
            });
        }
        Ok(Backoff {
            initial,
            cap,
            factor_num: 2,
            factor_den: 1,
            jitter: Jitter::Full,
            max_retries: Some(3),
            max_elapsed: None,
        })
    }
    /// Go `policy`'s `DefaultRetryPolicy` for LLM calls: 1 s doubling to 30 s, full jitter, 3 retries.
    pub const fn llm_default() -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            factor_num: 2,
            factor_den: 1,
            jitter: Jitter::Full,
            max_retries: Some(3),
            max_elapsed: None,
        }
    }
    /// Growth factor `num / den` (e.g. 3/2); must be at least 1.
    pub const fn with_factor(mut self, num: u32, den: u32) -> Result<Backoff, ConfigError> {
        if den == 0 {
            return Err(ConfigError::Zero {
                field: "factor_den",
            });
        }
        if num < den {
            return Err(ConfigError::Invalid {
                field: "factor_num",
                reason: "must be at least factor_den (factor ≥ 1)",
            });
        }
        self.factor_num = num;
        self.factor_den = den;
        Ok(self)
    }
    /// The jitter strategy.
    pub const fn with_jitter(mut self, jitter: Jitter) -> Backoff {
        self.jitter = jitter;
        self
    }
    /// At most `n` retries (0: never retry).
    pub const fn with_max_retries(mut self, n: u32) -> Backoff {
        self.max_retries = Some(n);
        self
    }
    /// No limit on the number of retries (bound the sequence by elapsed time instead).
    pub const fn without_max_retries(mut self) -> Backoff {
        self.max_retries = None;
        self
    }
    /// Give up when a retry would start more than `d` after the start.
    pub const fn with_max_elapsed(mut self, d: Duration) -> Backoff {
        self.max_elapsed = Some(d);
        self
    }
    /// The cap.
    pub const fn cap(&self) -> Duration {
        self.cap
    }
    /// The first delay.
    pub const fn initial(&self) -> Duration {
        self.initial
    }

    /// A fresh sequence starting at `now`, with the generator seeded by `seed`.
    pub const fn start(&self, now: Instant, seed: u64) -> BackoffState {
        BackoffState {
            attempt: 0,
            started: now.as_micros(),
            prev: self.initial.as_micros(),
            rng: seed,
        }
    }

    /// The un-jittered delay of retry `n` (0-based): `min(cap, initial × factorⁿ)`,
    /// rounded down to the microsecond.
    ///
    /// Computed by exponentiation by squaring in 32.32 fixed point (exact
    /// for factors like 2 or 3/2; within 2^-32 relative per squaring
    /// otherwise), in `O(log n)` steps whatever `n` is.
    pub fn base_delay(&self, n: u32) -> Duration {
        const ONE: u128 = 1 << 32;
        let cap = self.cap.as_micros() as u128;
        let initial = self.initial.as_micros() as u128;
        if initial == 0 {
            return Duration::ZERO;
        }
        // Any multiplier at or above `sat` already reaches the cap.
        let sat = saturation(cap as u64, initial as u64);
        let mul = |x: u128, y: u128| x.checked_mul(y).map_or(sat, |p| (p >> 32).min(sat));
        let mut r = ONE;
        // The factor in 32.32 fixed point: below 2^64, as its numerator is below 2^32.
        let factor = (u64::from(self.factor_num) << 32) / u64::from(self.factor_den);
        let mut b = u128::from(factor).min(sat);
        let mut e = n;
        while e > 0 && r < sat {
            if e & 1 == 1 {
                r = mul(r, b);
            }
            e >>= 1;
            if e > 0 {
                b = mul(b, b);
            }
        }
        Duration::from_micros(((initial * r) >> 32).min(cap) as u64)
    }

    /// The next step, drawing randomness from the state's generator.
    pub fn next(&self, st: &mut BackoffState, now: Instant, hint: Option<Duration>) -> Step {
        let r = splitmix64(&mut st.rng);
        self.next_with_random(st, now, hint, r)
    }

    /// The next step with caller-supplied randomness `random` (uniform `u64`).
    pub fn next_with_random(
        &self,
        st: &mut BackoffState,
        now: Instant,
        hint: Option<Duration>,
        random: u64,
    ) -> Step {
        if self.max_retries.is_some_and(|m| st.attempt >= m) {
            return Step::GiveUp(GiveUp::MaxRetries);
        }
        let cap = self.cap.as_micros();
        let base = self.base_delay(st.attempt).as_micros();
        let mut delay = match self.jitter {
            Jitter::None => base,
            Jitter::Full => uniform(random, 0, base),
            Jitter::Equal => base / 2 + uniform(random, 0, base - base / 2),
            Jitter::Decorrelated => {
                let lo = self.initial.as_micros();
                uniform(random, lo, lo.max(st.prev.saturating_mul(3))).min(cap)
            }
        };
        if let Some(h) = hint {
            if h.as_micros() > cap {
                return Step::GiveUp(GiveUp::HintBeyondCap { hint: h });
            }
            delay = delay.max(h.as_micros());
        }
        let at = now.as_micros().saturating_add(delay);
        if let Some(m) = self.max_elapsed {
            if at.saturating_sub(st.started) > m.as_micros() {
                return Step::GiveUp(GiveUp::MaxElapsed);
            }
        }
        st.attempt = st.attempt.saturating_add(1);
        st.prev = delay;
        Step::Retry {
            at: Instant::from_micros(at),
            delay: Duration::from_micros(delay),
            attempt: st.attempt,
        }
    }

    /// [`next`](Backoff::next), but first records the failure in a shared
    /// retry budget and gives up with [`GiveUp::RetryBudget`] when it refuses.
    pub fn next_with_budget(
        &self,
        st: &mut BackoffState,
        budget: &RetryBudget,
        budget_state: &mut RetryBudgetState,
        now: Instant,
        hint: Option<Duration>,
    ) -> Step {
        if !budget.on_failure(budget_state) {
            return Step::GiveUp(GiveUp::RetryBudget);
        }
        self.next(st, now, hint)
    }

    /// The delays as an iterator, assuming each attempt fails instantly
    /// (elapsed time is the sum of the delays so far).
    pub fn delays(&self, seed: u64) -> Delays {
        Delays {
            policy: *self,
            state: self.start(Instant::ZERO, seed),
            now: Instant::ZERO,
        }
    }
}

/// Iterator over a policy's delays; see [`Backoff::delays`].
#[derive(Clone, Debug)]
pub struct Delays {
    policy: Backoff,
    state: BackoffState,
    now: Instant,
}

impl Iterator for Delays {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        match self.policy.next(&mut self.state, self.now, None) {
            Step::Retry { at, delay, .. } => {
                self.now = at;
                Some(delay)
            }
            Step::GiveUp(_) => None,
        }
    }
}

/// SplitMix64: a tiny, well-distributed generator (Steele, Lea, Flood 2014).
#[inline]
pub const fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in `[lo, hi]` from a uniform `u64` (Lemire's multiply-shift; `lo ≤ hi`).
#[inline]
const fn uniform(random: u64, lo: u64, hi: u64) -> u64 {
    let span = (hi - lo) as u128 + 1;
    lo + ((random as u128 * span) >> 64) as u64
}

/// The smallest 32.32 multiplier of `initial` (≥ 1) that surely reaches
/// `cap`: `cap · 2^32 / initial + 1`, divided in 64-bit steps (a 128-bit
/// division is a library routine of about 1 KB in the wasm module).
const fn saturation(cap: u64, initial: u64) -> u128 {
    let (whole, part) = (cap / initial, cap % initial);
    // part < initial, so part · 2^32 divides by initial in 64 bits.
    let frac = crate::time::div_wide(part >> 32, part << 32, initial).0;
    ((whole as u128) << 32) + frac as u128 + 1
}

#[cfg(test)]
mod tests;
