//! The demo gateway binary as an operator meets it, over real HTTP on
//! loopback: unknown routes and methods charge nothing, slow clients are
//! cut off while others are served, made-up models and duplicate keys are
//! refused, and the bearer scheme is matched in any case.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::gateway_process::{config_file, gateway_bin, start};
use support::prometheus::sample;

mod support;

const CONFIG: &str = r#"
listen = "127.0.0.1:0"
[keys]
"sk-alice" = { user = "alice" }
[model_limits]
period_minutes = 1
total_max = 3
success_max = 3
models = { "gpt-4o" = [3, 3] }
[timeouts]
header = "1s"
body = "1s"
[prices]
"gpt-4o" = { input_per_million = 2_500_000, output_per_million = 10_000_000 }
[budgets]
per_user = { requests_per_minute = 3 }
"#;

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn the_gateway_refuses_before_charging_and_cuts_off_slow_clients() {
    let gw = start(CONFIG, &[]);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.base);

    // 404 and 405, many times: nothing charged.
    for _ in 0..5 {
        let r = client
            .post(format!("{}/v1/nope", gw.base))
            .bearer_auth("sk-alice")
            .json(&chat("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = client
            .get(&url)
            .bearer_auth("sk-alice")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405);
    }
    // Made-up models and duplicate keys: 400, nothing charged.
    for i in 0..20 {
        let r = client
            .post(&url)
            .bearer_auth("sk-alice")
            .json(&chat(&format!("made-up-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "model made-up-{i}");
    }
    let r = client
        .post(&url)
        .header("authorization", "Bearer sk-alice")
        .header("content-type", "application/json")
        .body(r#"{"model":"gpt-4o","model":"o1-pro","messages":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("more than once"));

    // The slow client: headers never finished.
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let opened = Instant::now();

    // The whole quota (3 requests, 3 budget requests) is still there; the
    // scheme is matched in any case.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = client
            .post(&url)
            .header("authorization", format!("{scheme} sk-alice"))
            .json(&chat("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let r = client
        .post(&url)
        .bearer_auth("sk-alice")
        .json(&chat("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);

    // The slow connection is closed after the 1 s header timeout.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let n = slow.read_to_end(&mut buf);
    let waited = opened.elapsed();
    assert!(n.is_ok(), "the slow connection was not closed: {n:?}");
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");

    // A body that never comes: 408 after the 1 s body timeout.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-alice\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")
        .unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    assert!(started.elapsed() < Duration::from_secs(4));

    // An idle kept-alive connection is closed too.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let n = idle.read(&mut [0u8; 64]);
    assert!(matches!(n, Ok(0)), "idle connection: {n:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// With a real upstream: the call is forwarded with the configured
/// credentials (read from the environment), and its reported usage settles.
#[tokio::test]
async fn the_gateway_forwards_with_its_upstream_credentials() {
    use axum::{http::HeaderMap, routing::post, Router};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |h: HeaderMap| async move {
            s.lock().unwrap().push(
                h.get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned()),
            );
            (
                [("content-type", "application/json")],
                r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = CONFIG.replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\nupstream_headers = {{ Authorization = \"$TEST_UPSTREAM_AUTH\" }}"),
        1,
    );
    let gw = start(&config, &[("TEST_UPSTREAM_AUTH", "Bearer sk-upstream")]);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth("sk-alice")
        .json(&chat("gpt-4o"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["usage"]["completion_tokens"], 4);
    assert_eq!(
        *seen.lock().unwrap(),
        [Some("Bearer sk-upstream".to_owned())]
    );
}

/// `allowed_models = ["*"]` serves any model, but no more than
/// `max_models_per_key` different ones per key; one without the cap is
/// refused at start.
#[tokio::test]
async fn any_model_is_served_up_to_the_per_key_cap() {
    const ANY: &str = r#"
listen = "127.0.0.1:0"
max_models_per_key = 2
[keys]
"sk-alice" = { user = "alice" }
"sk-bob" = { user = "bob" }
[model_limits]
period_minutes = 1
success_max = 100
allowed_models = ["*"]
"#;
    let gw = start(ANY, &[]);
    let client = reqwest::Client::new();
    let url = format!("{}/v1/chat/completions", gw.base);
    let send = |key: &'static str, model: &'static str| {
        client.post(&url).bearer_auth(key).json(&chat(model)).send()
    };
    for (key, model, status) in [
        ("sk-alice", "model-a", 200),
        ("sk-alice", "model-b", 200),
        ("sk-alice", "model-c", 400),
        ("sk-alice", "model-a", 200),
        ("sk-bob", "model-c", 200),
    ] {
        let r = send(key, model).await.unwrap();
        assert_eq!(r.status(), status, "{key} {model}");
        if status == 400 {
            assert!(r.text().await.unwrap().contains("too_many_models"));
        }
    }

    // An over-long name is refused and takes no slot.
    let long = "m".repeat(300);
    let r = client
        .post(&url)
        .bearer_auth("sk-bob")
        .json(&chat(&long))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(send("sk-bob", "model-d").await.unwrap().status(), 200);
    assert_eq!(send("sk-bob", "model-e").await.unwrap().status(), 400);

    // Without the cap the gateway does not start.
    let path = config_file(&ANY.replace("max_models_per_key = 2\n", ""));
    let out = Command::new(gateway_bin())
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_models_per_key"));
}

/// The admin side's Prometheus text after a scripted load: per client IP
/// at most 6 a minute, per user and model at most 3. Of 8 requests, the
/// per-IP limit admits 6 and refuses 2; of those 6 the model limit admits
/// 3 and refuses 3. The scrape says exactly that.
#[tokio::test]
async fn the_admin_side_serves_counts_equal_to_the_requests_sent() {
    let config = format!(
        "admin_listen = \"127.0.0.1:0\"\n{}\n[per_ip]\nper_minute = 6\n",
        CONFIG.replace("[budgets]\nper_user = { requests_per_minute = 3 }\n", "")
    );
    let gw = start(&config, &[]);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let res = client
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth("sk-alice")
            .json(&chat("gpt-4o"))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            // Which limit refused: the per-IP layer names its member.
            let which = res
                .headers()
                .get("ratelimit-policy")
                .map(|v| v.to_str().unwrap().to_owned());
            statuses.push((429, which.is_some_and(|p| p.contains("per_minute"))));
        } else {
            statuses.push((res.status().as_u16(), false));
        }
    }
    let per_ip_refused = statuses.iter().filter(|s| s.1).count();
    let model_refused = statuses.iter().filter(|s| s.0 == 429 && !s.1).count();
    assert_eq!((per_ip_refused, model_refused), (2, 3), "{statuses:?}");
    let text = reqwest::get(gw.metrics.as_deref().expect("admin_listen printed"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |limit: &str, outcome: &str| {
        sample(
            &text,
            "ratebound_decisions_total",
            &format!("limit=\"{limit}\",outcome=\"{outcome}\""),
        )
    };
    assert_eq!(count("per_ip", "allowed"), Some(6.0), "{text}");
    assert_eq!(count("per_ip", "denied"), Some(2.0), "{text}");
    assert_eq!(count("model_limits", "allowed"), Some(3.0), "{text}");
    assert_eq!(count("model_limits", "denied"), Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "ratebound_keys_held", "limit=\"per_ip\""),
        Some(1.0),
        "{text}"
    );
}
