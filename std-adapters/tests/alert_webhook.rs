//! Budget alerts posted to a webhook over real HTTP on loopback.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use ratebound_core::Instant;
use serde_json::{json, Value};
use support::llm_gateway::*;

/// Alerts reach the webhook as JSON, retried after a 500, while a stalled
/// webhook never holds a request back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_posted_to_the_webhook_off_the_request_path() {
    use ratebound_std::http::alert_webhook::AlertWebhook;
    use ratebound_std::retry::RetryPolicy;
    #[derive(Clone, Default)]
    struct Hook {
        calls: Arc<AtomicUsize>,
        got: Arc<Mutex<Vec<Value>>>,
        stall: Arc<std::sync::atomic::AtomicBool>,
    }
    async fn receive(State(h): State<Hook>, body: Bytes) -> StatusCode {
        if h.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(StdDuration::from_secs(30)).await;
        }
        if h.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return StatusCode::INTERNAL_SERVER_ERROR; // the first attempt fails
        }
        h.got
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
        StatusCode::NO_CONTENT
    }
    let hook = Hook::default();
    let app = Router::new()
        .route("/alerts", post(receive))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let cfg = r#"per_user = { tokens_per_minute = 1_000, alert_at_percent = [1] }"#;
    let up = Upstream::default();
    let budgets = in_memory(cfg, at(1_795_392_000));
    let backoff = ratebound_core::backoff::Backoff::new(
        ratebound_core::Duration::from_millis(10),
        ratebound_core::Duration::from_millis(50),
    )
    .unwrap()
    .with_max_retries(3);
    let webhook = AlertWebhook::spawn(&url, RetryPolicy::new(backoff), 1).unwrap();
    budgets.on_alert(webhook.handler());
    let g = serve(budgets, up, 4_096).await;
    let r = post_as(&g, "alice", request(1, 100, json!({}))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while hook.got.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no alert arrived");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    let a = hook.got.lock().unwrap()[0].clone();
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        2,
        "one failure, one retry"
    );
    assert_eq!(a["scope"], "user");
    assert_eq!(a["id"], "alice");
    assert_eq!(a["alert"], "token_minute_threshold");
    assert_eq!(a["dimension"], "tokens");
    assert_eq!(a["window"], "minute");
    assert_eq!(a["threshold_percent"], 1);
    assert_eq!(a["at_ms"], 1_795_392_000_000u64);

    // The webhook stalls: alerts queue (then drop, the queue holds one), and
    // requests are answered as fast as ever.
    hook.stall.store(true, Ordering::SeqCst);
    g.budgets.clock().set(Instant::from_secs(1_795_392_060)); // a new minute: new alerts
    for i in 0..3 {
        let started = std::time::Instant::now();
        g.budgets
            .clock()
            .set(Instant::from_secs(1_795_392_060 + 60 * i));
        let r = post_as(&g, "alice", request(2, 100, json!({}))).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            started.elapsed() < StdDuration::from_secs(5),
            "a request waited for the webhook"
        );
        // Settled in its own minute: one alert each.
        wait_settled(&g, 2 + i as usize).await;
    }
    wait_settled(&g, 4).await;
    assert!(webhook.dropped() >= 1, "the full queue dropped alerts");
}

/// A webhook that refuses the alert (a 4xx other than 408/429) is not
/// retried; a bad URL or a zero queue is refused when set up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_alert_is_not_retried_and_bad_setups_are_errors() {
    use ratebound_std::budget::Payer;
    use ratebound_std::http::alert_webhook::{AlertWebhook, WebhookError};
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = Router::new().route(
        "/alerts",
        post(move || {
            c.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::UNPROCESSABLE_ENTITY }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let webhook = AlertWebhook::spawn(&url, AlertWebhook::default_retry(), 8).unwrap();
    let budgets = in_memory(
        "per_user = { tokens_per_minute = 100, alert_at_percent = [50] }",
        at(1_795_392_000),
    );
    budgets.on_alert(webhook.handler());
    let payer = Payer {
        key: None,
        user: "alice",
        group: None,
        model: "m",
    };
    let hold = budgets
        .reserve(&payer, ratebound_core::budget::Usage::request(60, 0))
        .await
        .unwrap();
    hold.settle(ratebound_core::budget::Usage::request(60, 0))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + StdDuration::from_secs(5);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no alert was posted");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    // The default policy would retry after 200 ms; nothing comes.
    tokio::time::sleep(StdDuration::from_millis(600)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    assert!(matches!(
        AlertWebhook::spawn("ftp://127.0.0.1/x", AlertWebhook::default_retry(), 8),
        Err(WebhookError::Url(..))
    ));
    assert!(matches!(
        AlertWebhook::spawn("not a url", AlertWebhook::default_retry(), 8),
        Err(WebhookError::Url(..))
    ));
    assert!(matches!(
        AlertWebhook::spawn(&url, AlertWebhook::default_retry(), 0),
        Err(WebhookError::ZeroCapacity)
    ));
}
