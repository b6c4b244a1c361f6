//! Budget alerts posted to a webhook: JSON over HTTP, retried with the
//! retry executor on a background task, never on a request's path.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ratebound_std::budget::{ScopedBackend, ScopedBudgets};
//! use ratebound_std::clock::SystemClock;
//! use ratebound_std::http::alert_webhook::AlertWebhook;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let budgets = ScopedBudgets::new(toml::from_str("per_user = { tokens_per_day = 1_000_000, alert_at_percent = [80] }")?,
//!     ScopedBackend::Memory, SystemClock)?;
//! let webhook = AlertWebhook::spawn("http://127.0.0.1:9000/alerts", AlertWebhook::default_retry(), 1_024)?;
//! budgets.on_alert(webhook.handler());
//! # Ok(()) }
//! ```
//!
//! Each alert is one `POST` with `content-type: application/json`:
//!
//! ```text
//! {"scope":"user","id":"carol","alert":"token_day_threshold","kind":"threshold",
//!  "dimension":"tokens","window":"day","threshold_percent":80,
//!  "utilization_bp":8012,"at_ms":1795392000000,"window_start_ms":1795392000000}
//! ```
//!
//! A 2xx answer delivers it; a transport error, 408, 429 or 5xx is retried
//! by the policy (`Retry-After` honoured); another status drops it with a
//! warning. Alerts wait in a queue of the given capacity: when it is full
//! (the webhook is down for long), new alerts are dropped and counted
//! ([`AlertWebhook::dropped`]) — a request is never held back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratebound_core::backoff::Backoff;
use ratebound_core::budget::{AlertKind, Dimension, Horizon};
use serde::Serialize;

use crate::budget::ScopedAlert;
use crate::retry::RetryPolicy;

/// The webhook could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The URL does not parse, or its scheme is not `http` / `https`.
    #[error("webhook URL {0:?}: {1}")]
    Url(String, String),
    /// The HTTP client could not be built.
    #[error("webhook client: {0}")]
    Client(#[from] reqwest::Error),
    /// A queue of zero alerts.
    #[error("the webhook queue capacity must be at least 1")]
    ZeroCapacity,
    /// Not inside a tokio runtime.
    #[error("the webhook needs a tokio runtime to run on")]
    NoRuntime,
}

/// The JSON body posted for one alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertPayload {
    /// `key`, `user`, `group` or `model`.
    pub scope: &'static str,
    /// Whose budget.
    pub id: String,
    /// The alert type (`token_minute_threshold`, `limit_hit`, …).
    pub alert: &'static str,
    /// `threshold` or `limit_hit`.
    pub kind: &'static str,
    /// `requests`, `tokens` or `cost`.
    pub dimension: &'static str,
    /// `minute`, `hour`, `day`, `month`, or the window in seconds.
    pub window: String,
    /// The threshold crossed, in percent (100 for a limit hit).
    pub threshold_percent: u16,
    /// Usage when it fired, basis points of the limit.
    pub utilization_bp: u64,
    /// When it fired, Unix milliseconds.
    pub at_ms: u64,
    /// The window's start, Unix milliseconds.
    pub window_start_ms: u64,
}

impl AlertPayload {
    /// The payload of `a`.
    pub fn of(a: &ScopedAlert) -> Self {
        let al = &a.alert;
        AlertPayload {
            scope: a.scope.name(),
            id: a.id.clone(),
            alert: al.alert_type(),
            kind: match al.kind {
                AlertKind::Threshold => "threshold",
                AlertKind::LimitHit => "limit_hit",
            },
            dimension: match al.dimension {
                Dimension::Requests => "requests",
                Dimension::Tokens => "tokens",
                Dimension::Cost => "cost",
            },
            window: match al.horizon {
                Horizon::CalendarMonth => "month".into(),
                h if h == Horizon::MINUTE => "minute".into(),
                h if h == Horizon::HOUR => "hour".into(),
                h if h == Horizon::DAY => "day".into(),
                Horizon::Fixed(d) => format!("{}s", d.as_secs()),
            },
            threshold_percent: al.threshold_bp / 100,
            utilization_bp: al.utilization_bp,
            at_ms: al.at.as_micros() / 1_000,
            window_start_ms: al.window_start.as_micros() / 1_000,
        }
    }
}

/// A failed delivery attempt.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Attempt {
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// Posts budget alerts to a URL from a background task (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct AlertWebhook {
    tx: tokio::sync::mpsc::Sender<AlertPayload>,
    dropped: Arc<AtomicU64>,
}

impl AlertWebhook {
    /// Up to 5 retries, 200 ms doubling to 30 s, with jitter.
    pub fn default_retry() -> RetryPolicy {
        // Checked when compiled: the constants are a valid backoff.
        const BACKOFF: Backoff = match Backoff::new(
            ratebound_core::Duration::from_millis(200),
            ratebound_core::Duration::from_secs(30),
        ) {
            Ok(b) => b.with_max_retries(5),
            Err(_) => panic!("invalid webhook backoff"),
        };
        RetryPolicy::new(BACKOFF)
    }

    /// Start the task posting to `url` on the current tokio runtime, with
    /// `retry` and a queue of `capacity` alerts. Each attempt times out
    /// after 10 s. `https` URLs need reqwest's TLS (enable a feature such
    /// as `reqwest/rustls` in the application).
    pub fn spawn(url: &str, retry: RetryPolicy, capacity: usize) -> Result<Self, WebhookError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| WebhookError::Url(url.into(), e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookError::Url(
                url.into(),
                "the scheme must be http or https".into(),
            ));
        }
        if capacity == 0 {
            return Err(WebhookError::ZeroCapacity);
        }
        let rt = tokio::runtime::Handle::try_current().map_err(|_| WebhookError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<AlertPayload>(capacity);
        rt.spawn(async move {
            // Ends when every handle (and handler) is dropped.
            while let Some(p) = rx.recv().await {
                let sent = retry
                    .run_with(
                        || post(&client, &parsed, &p),
                        |e: &Attempt| e.retryable.then_some(e.retry_after),
                    )
                    .await;
                match sent {
                    Ok(()) => tracing::debug!(alert = p.alert, id = %p.id, "alert posted"),
                    Err(e) => tracing::warn!(alert = p.alert, id = %p.id, error = %e, "alert not delivered"),
                }
            }
        });
        Ok(AlertWebhook {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A handler for [`ScopedBudgets::on_alert`](crate::budget::ScopedBudgets::on_alert):
    /// queues the alert and returns at once.
    pub fn handler(&self) -> impl Fn(&ScopedAlert) + Send + Sync + 'static {
        let (tx, dropped) = (self.tx.clone(), Arc::clone(&self.dropped));
        move |a: &ScopedAlert| {
            if tx.try_send(AlertPayload::of(a)).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(alert = a.alert.alert_type(), id = %a.id, "alert webhook queue full; alert dropped");
            }
        }
    }

    /// Alerts dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    p: &AlertPayload,
) -> Result<(), Attempt> {
    let body = serde_json::to_vec(p).unwrap_or_default();
    let res = client
        .post(url.clone())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| Attempt {
            message: format!("webhook unreachable: {e}"),
            retryable: true,
            retry_after: None,
        })?;
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = res
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Err(Attempt {
        message: format!("webhook answered {status}"),
        retryable: status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error(),
        retry_after,
    })
}
