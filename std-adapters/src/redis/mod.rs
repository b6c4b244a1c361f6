//! Redis: core's decisions made atomically inside Redis by Lua scripts, so
//! that many servers share one limit (feature `redis`).
//!
//! - **Same decisions.** The scripts are a port of `ratebound-core`'s
//!   arithmetic (exact integers below 2^53, products through bitwise long
//!   division), checked against the shared trace fixtures field by field.
//! - **One round trip** per decision, even for a policy set of several
//!   limits (all or nothing, naming the binding one).
//! - **Time.** By default the script reads Redis `TIME`, so servers with
//!   skewed clocks agree ([`TimeSource::Redis`]); [`TimeSource::Caller`]
//!   sends the caller's clock instead (tests, replays). Key expiry always
//!   uses Redis's clock; `ttl_margin` covers callers running behind it.
//! - **Keys** are `prefix` + `{tag}` + `:` + name. Every key of one call
//!   shares the tag, so multi-key scripts work on Redis Cluster. Tags are
//!   binary-safe; `%`, `{` and `}` are escaped so a tag can never end early
//!   or collide with another. Every key expires once its limiter is idle.
//! - **Connections**: [`RedisOptions::connections`] multiplexed connections
//!   (or cluster connections) used in turn. [`RedisStore::connect`] connects
//!   now; [`RedisStore::open`] connects on first use, so a server can start
//!   while Redis is down. A connection that failed is rebuilt by the next
//!   call.
//! - **Nothing charged for a refused call.** Every call has one timeout
//!   ([`RedisOptions::timeout`]). An admission carries a deadline in Redis
//!   time (learned from `TIME`, as a lower bound, at most every 10 s): a
//!   script that starts after it, because Redis was stalled or overloaded,
//!   changes nothing and answers [`StoreError::Late`]. So a call that Redis
//!   starts after the caller gave up (and answered 503, or admitted
//!   uncounted) never charges. What remains is one round trip: a script
//!   started just before the deadline whose reply arrives after it.
//!   Settles, records and refunds carry no deadline: they are applied
//!   whenever they arrive. This assumes Redis's clock does not step, and on
//!   a cluster that the nodes' clocks agree to well within the timeout
//!   (NTP): a node ahead refuses admissions early, one behind applies them
//!   late by its skew.
//! - **Transport only.** This module talks to Redis; the limits that use it
//!   and their failure policy live with their domain
//!   ([`crate::keyed::RedisKeyedLimiter`], [`crate::budget::RedisBudgetManager`],
//!   [`crate::model_limit::RedisModelLimiter`], [`crate::fallback`]).
//! - **Code loaded once.** The Lua code is a Redis Functions library,
//!   loaded when the store connects (on every master of a cluster) and
//!   called with `FCALL` (`FCALL_RO` for peeks); a server that lost it
//!   (restart, `FUNCTION FLUSH`, a new node) gets it again transparently.
//!   Where Functions are missing (Redis < 7) or `FUNCTION LOAD` is refused,
//!   the same code runs as scripts by SHA (`EVALSHA`, reloaded on
//!   `NOSCRIPT`); [`RedisStore::invocation`] says which.
//!
//! ```no_run
//! use ratebound_core::Gcra;
//! use ratebound_std::clock::SystemClock;
//! use ratebound_std::fallback::{FailoverOptions, OnUnavailable};
//! use ratebound_std::keyed::{KeyedConfig, RedisKeyedLimiter};
//! use ratebound_std::limiter::AnyLimiter;
//! use ratebound_std::redis::{RedisOptions, RedisStore};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One store per process, shared by every limit (clones share its connections).
//! let store = RedisStore::open("redis://127.0.0.1:6379/", RedisOptions::default())?;
//! // Or a cluster: RedisStore::open_cluster(&["redis://10.0.0.1:7000/", ...], options)
//! let per_user = RedisKeyedLimiter::new(
//!     store.clone(),
//!     "api",
//!     AnyLimiter::Gcra(Gcra::per_second(100)?),
//!     FailoverOptions::new(OnUnavailable::Closed),
//!     KeyedConfig::default(),
//!     SystemClock,
//! )?;
//! let d = per_user.check(b"user-42", 1).await?.decision;
//! println!("allowed: {}, retry at: {:?}", d.allowed, d.retry_at);
//! # Ok(()) }
//! ```

mod budget;
mod error;
mod keys;
mod limits;
mod model;
mod options;
mod scripts;
mod server_clock;
mod store;

pub use budget::{BudgetReply, RawBudgetState, RedisBudget};
pub use error::StoreError;
pub use limits::{Charge, ChargeOutcome, RedisDecision, RedisSpec};
pub use model::{RedisModelQuotas, WithState};
pub use options::{RedisOptions, TimeSource};
pub use scripts::Invocation;
pub use store::RedisStore;
