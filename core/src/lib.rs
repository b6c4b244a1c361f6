//! # ratebound-core
//!
//! Exact, `no_std` rate-limiting and budget state machines. Each one is a
//! function of its config, its plain-data state and the `now` you pass in:
//! core never reads a clock, allocates, or does I/O. The same arithmetic runs
//! in the Redis Lua scripts and the wasm build of ratebound, so a decision is
//! the same wherever it is made (guarded by the trace fixtures in
//! `fixtures/traces/`).
//!
//! | State machine | Type | State |
//! |---|---|---|
//! | Token bucket (GCRA), exact for any rate | [`Gcra`] | [`GcraState`]: 2 integers |
//! | Lock-free shared token bucket | [`AtomicGcra`] | one `AtomicU64` |
//! | Exact sliding log | [`SlidingLog`] | [`SlidingLogState`]: ≤ N entries |
//! | O(1) sliding window counter | [`SlidingCounter`] | [`SlidingCounterState`]: 3 integers |
//! | Request / token / money budgets | [`budget::Budget`] | [`budget::BudgetState`] |
//! | Retry backoff and retry budget | [`backoff::Backoff`], [`backoff::RetryBudget`] | plain integers |
//! | All-or-nothing policy sets | [`policy::check_all`] | the members' |
//! | Fixed-capacity per-key table | [`keyed::KeyedTable`] | `heapless` map |
//! | LLM gateway model quotas (total + success, holds) | [`model_quota::ModelQuota`] | [`model_quota::ModelState`] |
//!
//! A config can change while its states live on: [`reconfigure`] says what
//! each machine keeps ([`CarryOver`]).
//!
//! ```
//! use ratebound_core::{Duration, Gcra, GcraState, Instant};
//!
//! let limiter = Gcra::new(10, 5, Duration::from_secs(1))?; // burst 10, 5/s
//! let mut state = GcraState::default();
//! let now = Instant::from_millis(1_700_000_000_000); // your clock, e.g. Unix µs
//! let d = limiter.check(&mut state, now, 4)?;
//! assert!(d.allowed);
//! assert_eq!(d.remaining, 6);
//! if !limiter.check(&mut state, now, 7)?.allowed {
//!     // Not yet: retry_at says when. Sleep, then check again.
//! }
//! # Ok::<(), Box<dyn core::error::Error>>(())
//! ```
//!
//! Each state machine's module opens with its own runnable example:
//! [`gcra`], [`atomic`](mod@atomic), [`sliding_log`], [`sliding_counter`],
//! [`budget`], [`backoff`], [`policy`], [`keyed`].
//!
//! ## Time and exactness
//!
//! [`Instant`] and [`Duration`] are whole microseconds in a `u64`, saturating
//! at 2^52 − 1 (year 2112 as Unix time). Configs are validated so that every
//! intermediate value stays below 2^53, the range JavaScript numbers and Lua
//! doubles hold exactly. Ratios are computed as exact `floor`/`ceil` of
//! `a × b / c` ([`mul_div_floor`], [`mul_div_ceil`]). A `now` earlier than
//! one already seen never panics, and never grants extra capacity over the
//! times at which requests were admitted. GCRA and the sliding log write
//! nothing on a denial or a peek (nor GCRA on a cost-0 check), so a time seen
//! only by those is not remembered;
//! [`model_quota`] and [`budget`] remember the latest `now` of every
//! operation and treat earlier ones as that time.
//!
//! ## Features
//!
//! | Feature | Default | What it does |
//! |---|---|---|
//! | `atomic` | yes | [`AtomicGcra`] over `portable_atomic::AtomicU64` |
//! | `critical-section` | no | 64-bit atomics via `critical-section` on targets without CAS (thumbv6m, riscv32imc) |
//! | `serde` | no | (De)serialize configs (validated on load) and states; exact round trips |
//! | `embassy` | no | `embassy_time` conversions, [`embassy::wait_until`], [`embassy::acquire`] |
//!
//! Single-core chips may instead enable `portable-atomic`'s
//! `unsafe-assume-single-core` in their own `Cargo.toml`.

#![no_std]
#![forbid(unsafe_code)]
#![warn(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]
// Library code takes arbitrary input and must not panic on it.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable
    )
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(test)]
extern crate std;

#[cfg(feature = "atomic")]
pub mod atomic;
pub mod backoff;
pub mod budget;
mod decision;
#[cfg(feature = "embassy")]
pub mod embassy;
mod error;
pub mod gcra;
pub mod keyed;
pub mod model_quota;
pub mod policy;
pub mod reconfigure;
pub mod share;
pub mod sliding_counter;
pub mod sliding_log;
mod time;
pub mod wire;

#[cfg(feature = "atomic")]
pub use atomic::AtomicGcra;
pub use decision::{Decision, Limiter};
pub use error::{ConfigError, CostError};
pub use gcra::{Gcra, GcraConfig, GcraState, Taken};
pub use reconfigure::CarryOver;
pub use sliding_counter::{SlidingCounter, SlidingCounterState};
pub use sliding_log::{LogEntry, LogView, LogViewMut, SlidingLog, SlidingLogState, WindowConfig};
pub use time::{mul_div_ceil, mul_div_floor, Duration, Instant, MAX_SAFE_INTEGER, MAX_TICKS};

// The crate's README (its crates.io page): every snippet runs as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
