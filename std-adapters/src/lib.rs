//! # ratebound-std
//!
//! The std shells around [`ratebound_core`]: they store state and wait; every
//! decision is core's.
//!
//! | Module | What |
//! |---|---|
//! | [`clock`] | Unix-epoch system, monotonic, tokio (pausable) and manual clocks |
//! | [`limiter`] | thread-safe limiters with `check`, `peek`, async `acquire` (cancellation-safe, deadline) and `acquire_blocking` |
//! | [`keyed`] | sharded per-key stores with bounded memory and a defined full-store policy |
//! | [`retry`] | the retry executor: classification, hints, shared retry budget, hooks, cancellation |
//! | [`budget`] | the budget manager: check / reserve / settle / record, status, alerts delivered off-thread; budgets per API key, user, group and model reserved together ([`budget::ScopedBudgets`]) |
//! | [`manager`] | budget + limiter + retry, as Go `policy`'s `Manager` |
//! | [`config`] | TOML/JSON configs with errors naming the field |
//! | [`go_policy`] | the JSON of Go's `policy` package: its budget config, status, alerts and usage records, converted exactly |
//! | [`model_limit`] | an LLM gateway's model-level total/success limits per user (or group) and model, with group overrides |
//! | `http` (feature `http`) | tower layers: a rate limit per client IP, API key, route or any key (`http::rate_limit`); model limits, and LLM token / request / money budgets reserved from each request's estimate and settled from the usage the model reports (JSON and streamed); rate-limit headers out, upstream headers in; budget alerts to a webhook |
//! | [`telemetry`] | the metrics (decisions, keys held, store latency, fail-over state) and `tracing` spans ratebound reports |
//! | [`fallback`] | what a shared limit does while Redis is unavailable: closed, open, or local on a share of each limit; one combinator for every domain |
//! | `redis` (feature `redis`) | the transport: core's decisions made atomically in Redis / Redis Cluster by Lua (a Redis Functions library, scripts on older servers) for limiters, policy sets, budgets and model limits; the Redis-backed limiters live with their domain ([`keyed`], [`budget`], [`model_limit`]) |
//!
//! ```
//! use ratebound_std::{clock::TokioClock, limiter::RateLimiter};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RateLimiter::gcra(100, 100, std::time::Duration::from_secs(60), TokioClock::new())?;
//! limiter.acquire(1).await?; // waits only when over the limit
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! | Feature | Default | What it enables |
//! |---|---|---|
//! | `http` | no | the `http` module: the rate-limit layer for any service, tower layers for model limits and LLM budgets, rate-limit headers out, upstream rate-limit headers in (`Retry-After`, OpenAI, Anthropic), the alert webhook |
//! | `axum` | no | `http`, and the rate-limit layer reads axum's `ConnectInfo` (the client's address) and `MatchedPath` (the route template) |
//! | `redis` | no | the `redis` module (Redis / Redis Cluster transport: a Redis Functions library, scripts on older servers) and the Redis-backed limiters, budgets and model limits in [`keyed`], [`budget`] and [`model_limit`] |
//!

#![forbid(unsafe_code)]

pub mod budget;
pub mod clock;
pub mod config;
pub mod fallback;
pub mod go_policy;
#[cfg(feature = "http")]
pub mod http;
pub mod keyed;
pub mod limiter;
pub mod manager;
pub mod model_limit;
#[cfg(feature = "redis")]
pub mod redis;
pub mod retry;
pub mod telemetry;
mod time_text;
mod wait;

pub use wait::AcquireError;

// The crate's README (its crates.io page): every snippet is a doc test (the
// ones that serve or need Redis compile without running).
#[cfg(all(doctest, feature = "http", feature = "redis"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
