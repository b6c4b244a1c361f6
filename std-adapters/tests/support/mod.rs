//! Test helpers shared by the integration tests (each uses a part).
#![allow(unreachable_pub, dead_code)]

#[cfg(feature = "axum")]
pub mod axum_app;
#[cfg(feature = "http")]
pub mod gateway_process;
#[cfg(feature = "http")]
pub mod llm_gateway;
pub mod log_capture;
pub mod prometheus;
#[cfg(all(feature = "axum", feature = "redis"))]
pub mod rate_limit;
pub mod redis_server;
#[cfg(feature = "redis")]
pub mod traces;
