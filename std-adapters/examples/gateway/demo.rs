//! `--demo`: a scripted load and what a client sees.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use ratebound_std::http::budget_layer::SettleEvent;

fn show(label: &str, status: StatusCode, h: &HeaderMap) {
    let get = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    println!(
        "{label:<34} {} | RateLimit: {}",
        status.as_u16(),
        get("ratelimit")
    );
}

/// The settlement of the request just answered: none for a refusal, and
/// never waits long (a replica elsewhere may share the budget).
async fn next_settled(
    status: StatusCode,
    settled: &mut tokio::sync::mpsc::UnboundedReceiver<SettleEvent>,
) -> Option<SettleEvent> {
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::BAD_REQUEST {
        return None;
    }
    tokio::time::timeout(Duration::from_secs(5), settled.recv())
        .await
        .ok()
        .flatten()
}

/// The budget part of `--demo`: reserve → settle from the reported usage,
/// a stream, a cut-off stream, a 429 for tokens and a request over the cap.
pub(crate) async fn demo_budgets(
    base: &str,
    settled: &mut tokio::sync::mpsc::UnboundedReceiver<SettleEvent>,
) -> Result<(), Box<dyn std::error::Error>> {
    // Settlements of the requests before this part: not carol's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while settled.try_recv().is_ok() {}
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let send =
        |body: serde_json::Value| client.post(&url).bearer_auth("sk-carol").json(&body).send();
    let ask = |prompt: &str, max_tokens: u64, stream: bool| {
        serde_json::json!({"model": "gpt-4o-mini", "max_tokens": max_tokens, "stream": stream,
            "messages": [{"role": "user", "content": prompt}]})
    };
    let report = |label: &str, status: StatusCode, e: Option<SettleEvent>| match e {
        Some(e) => println!(
            "{label:<34} {} | reserved {} tokens ({} µ$), charged {} tokens ({} µ$): {:?}",
            status.as_u16(),
            e.reserved.tokens,
            e.reserved.cost,
            e.charged.tokens,
            e.charged.cost,
            e.ending
        ),
        None => println!("{label:<34} {}", status.as_u16()),
    };
    println!("\nBudgets: carol may use 20 000 tokens a minute, 8 000 per request; gpt-4o-mini costs $0.15 / $0.60 per million tokens\n");
    let r = send(ask("Say hello to the budget demo", 200, false)).await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    report("carol JSON", status, next_settled(status, settled).await);
    println!("{:<34}     the upstream reported {}", "", body["usage"]);
    let r = send(ask("Say hello, streaming", 200, true)).await?;
    let status = r.status();
    let text = r.text().await?;
    report(
        "carol stream (usage in last event)",
        status,
        next_settled(status, settled).await,
    );
    println!(
        "{:<34}     {} SSE events passed through",
        "",
        text.matches("data:").count()
    );
    let r = send(ask("Say hello, but cut the stream", 200, true)).await?;
    let status = r.status();
    let _ = r.text().await; // the body ends in an error
    report(
        "carol stream cut off",
        status,
        next_settled(status, settled).await,
    );
    for i in 1..=2 {
        let r = send(ask("Write an essay", 7_000, false)).await?;
        let status = r.status();
        let _ = r.text().await?;
        report(
            &format!("carol essay #{i} (7 000 tokens)"),
            status,
            next_settled(status, settled).await,
        );
    }
    let r = send(ask("Write an essay", 7_000, false)).await?;
    println!("\ncarol essay #3: over the token budget. The client sees:\n");
    println!("HTTP/1.1 {}", r.status());
    for name in [
        "retry-after",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "ratelimit-policy",
        "ratelimit",
    ] {
        if let Some(v) = r.headers().get(name) {
            println!("{name}: {}", v.to_str()?);
        }
    }
    println!("\n{}\n", r.text().await?);
    let r = send(ask("Write an essay", 9_000, false)).await?;
    let status = r.status();
    println!(
        "carol max_tokens 9 000 (cap 8 000)  {} {}",
        status.as_u16(),
        r.text().await?
    );
    if status != StatusCode::BAD_REQUEST {
        return Err("expected 400 over the per-request cap".into());
    }
    Ok(())
}

/// The scripted walkthrough printed by `--demo`.
pub(crate) async fn demo(base: String) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let send = |key: &'static str, model: &'static str, prompt: &'static str| {
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": prompt}]});
        client.post(&url).bearer_auth(key).json(&body).send()
    };
    println!("ratebound demo gateway on {base}: 1-minute period, alice may make 20 requests, 10 of them successful, per model\n");
    println!("RateLimit-Policy: \"total\";q=20;w=60, \"success\";q=10;w=60\n");
    for i in 1..=10 {
        let r = send("sk-alice", "gpt-4o", "hi").await?;
        show(&format!("alice gpt-4o #{i}"), r.status(), r.headers());
    }
    let r = send("sk-alice", "gpt-4o", "hi").await?;
    println!("\nalice gpt-4o #11: over the success limit. The client sees:\n");
    println!("HTTP/1.1 {}", r.status());
    for name in [
        "retry-after",
        "ratelimit-policy",
        "ratelimit",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "content-type",
    ] {
        if let Some(v) = r.headers().get(name) {
            println!("{name}: {}", v.to_str()?);
        }
    }
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(1);
    println!("\n{}\n", r.text().await?);
    let r = send("sk-alice", "claude-3-5-sonnet", "hi").await?;
    show(
        "alice claude-3-5-sonnet (own count)",
        r.status(),
        r.headers(),
    );
    let r = send("sk-vera", "gpt-4o", "hi").await?;
    show("vera (group vip: 100 successes)", r.status(), r.headers());
    for i in 1..=3 {
        let r = send("sk-bob", "gpt-4o", "please fail").await?;
        show(
            &format!("bob upstream failure #{i}"),
            r.status(),
            r.headers(),
        );
    }
    let r = send("sk-bob", "gpt-4o", "hi").await?;
    show("bob success (failures gave back)", r.status(), r.headers());
    println!("\nwaiting {retry_after} s (alice's Retry-After) ...");
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let r = send("sk-alice", "gpt-4o", "hi").await?;
    show("alice gpt-4o after Retry-After", r.status(), r.headers());
    if r.status() != StatusCode::OK {
        return Err("expected recovery after Retry-After".into());
    }
    Ok(())
}
