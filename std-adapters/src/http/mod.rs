//! HTTP: a rate limit for any service, per client IP, API key, route or
//! any key ([`rate_limit`]), a tower layer enforcing model-level limits ([`layer`]), one
//! enforcing LLM token, request and money budgets ([`budget_layer`], reading
//! requests with [`llm_request`] and reported usage with [`usage`]), budget
//! alerts posted to a webhook ([`alert_webhook`]), the rate-limit headers
//! and 429 body they write ([`headers`]), and the parsing of an upstream
//! provider's own rate-limit headers ([`upstream`]).
//!
//! Feature `http`.
//!
//! ```
//! use std::sync::Arc;
//! use ratebound_std::clock::SystemClock;
//! use ratebound_std::http::layer::{FromExtensions, ModelLimitLayer};
//! use ratebound_std::model_limit::{ModelLimitConfig, ModelLimiter};
//!
//! let config = ModelLimitConfig::from_toml(r#"
//!     period_minutes = 1
//!     total_max = 60
//!     success_max = 20
//!     groups = { vip = [0, 600] }
//! "#)?;
//! let limiter = Arc::new(ModelLimiter::new(config, Default::default(), SystemClock)?);
//! // Reads the `Identity` an auth middleware set, and the model from the
//! // `Model` extension or the `x-model` header.
//! let layer = ModelLimitLayer::new(limiter, FromExtensions::new()
//!     .with_model_header(http::HeaderName::from_static("x-model")));
//! // axum: Router::new().route(..).layer(layer)
//! # let _ = layer;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod alert_webhook;
pub mod budget_layer;
pub mod headers;
pub mod layer;
pub mod llm_request;
pub mod rate_limit;
pub mod upstream;
pub mod usage;
