//! The demo gateway's config reloaded while it serves, over real HTTP on
//! loopback: the per-IP limit raised mid-traffic gives the counts core's
//! carry-over rule documents, API keys change at once, and a bad file —
//! unparsable, invalid, or changing a setting that needs a restart — is
//! refused with its error and changes nothing (on `POST /admin/reload`
//! and on `SIGHUP`).

use std::time::Duration;

use serde_json::json;
use support::gateway_process::{start, Gateway};

mod support;

fn config(per_minute: u64, keys: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[keys]
{keys}
[model_limits]
period_minutes = 1
total_max = 100
success_max = 100
allowed_models = ["gpt-4o"]
[per_ip]
per_minute = {per_minute}
"#
    )
}

const ALICE: &str = r#""sk-alice" = { user = "alice" }"#;
const ALICE_AND_BOB: &str = r#""sk-alice" = { user = "alice" }
"sk-bob" = { user = "bob" }"#;

/// The status of one chat request with API key `key`, and the
/// `RateLimit-Policy` of a 429.
async fn call(gw: &Gateway, key: &str) -> (u16, Option<String>) {
    let res = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let policy = res
        .headers()
        .get("ratelimit-policy")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), policy)
}

/// Write `text` as the gateway's config and POST a reload: status, body.
async fn reload(gw: &Gateway, text: &str) -> (u16, String) {
    std::fs::write(&gw.config, text).unwrap();
    let url = gw
        .metrics
        .as_deref()
        .expect("admin_listen printed")
        .replace("/metrics", "/admin/reload");
    let res = reqwest::Client::new().post(url).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Per IP 4 a minute, 2 used (a 401 counts: the per-IP limit comes first);
/// reloaded to 12 a minute with bob's key added, the bucket reads as 6 of
/// 12 used: 6 more, then 429 naming the new policy. Then three bad files,
/// each refused, the limit still at 12 with nothing left.
#[tokio::test]
async fn a_reload_raises_the_per_ip_limit_keeping_its_count_and_a_bad_file_changes_nothing() {
    let gw = start(&config(4, ALICE), &[]);
    assert_eq!(call(&gw, "sk-bob").await.0, 401);
    assert_eq!(call(&gw, "sk-alice").await.0, 200);

    let (status, body) = reload(&gw, &config(12, ALICE_AND_BOB)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("2 API keys, 0 budget scopes, per-IP limits 12/min"),
        "{body}"
    );
    assert_eq!(call(&gw, "sk-bob").await.0, 200);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(call(&gw, "sk-alice").await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let policy = call(&gw, "sk-alice").await.1;
    assert_eq!(policy.as_deref(), Some("\"per_minute\";q=12;w=60;bucket"));

    // Each bad file would also raise the limit to 1 000: were any of it
    // applied, the next request would pass.
    let unparsable = config(1_000, ALICE_AND_BOB) + "[per_ip\n";
    let (status, body) = reload(&gw, &unparsable).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("reload refused, nothing changed"), "{body}");
    let restart_only = config(1_000, ALICE_AND_BOB).replace("total_max = 100", "total_max = 5");
    let (status, body) = reload(&gw, &restart_only).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("model_limits changed"), "{body}");
    let new_window = config(1_000, ALICE_AND_BOB) + "per_second = 1000\n";
    let (status, body) = reload(&gw, &new_window).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("names and order"), "{body}");
    let bad_override =
        config(1_000, ALICE_AND_BOB) + "overrides = { \"not-an-ip\" = { per_minute = 5 } }\n";
    let (status, body) = reload(&gw, &bad_override).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not-an-ip"), "{body}");

    let (status, policy) = call(&gw, "sk-alice").await;
    assert_eq!(status, 429);
    assert_eq!(policy.as_deref(), Some("\"per_minute\";q=12;w=60;bucket"));
}

/// An override for this client's IP, added by a reload, decides it from
/// the next request on, reading the count it had: 2 of 4 a minute used is
/// a bucket full again in 30 s, which under 40 a minute (one per 1.5 s)
/// leaves 20.
#[tokio::test]
async fn a_reload_adds_an_override_for_one_ip() {
    let gw = start(&config(4, ALICE), &[]);
    assert_eq!(call(&gw, "sk-alice").await.0, 200);
    assert_eq!(call(&gw, "sk-alice").await.0, 200);
    let with_override = config(4, ALICE) + "overrides = { \"127.0.0.1\" = { per_minute = 40 } }\n";
    let (status, body) = reload(&gw, &with_override).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 overridden"), "{body}");
    let mut ok = 0;
    for _ in 0..25 {
        if call(&gw, "sk-alice").await.0 == 200 {
            ok += 1;
        }
    }
    // One more only if the test took over 1.5 s.
    assert!((20..=21).contains(&ok), "{ok} admitted");
    let (status, policy) = call(&gw, "sk-alice").await;
    assert_eq!(status, 429);
    assert_eq!(policy.as_deref(), Some("\"per_minute\";q=40;w=60;bucket"));

    // Removed again: back on 4 a minute, everything used.
    let (status, body) = reload(&gw, &config(4, ALICE)).await;
    assert_eq!(status, 200, "{body}");
    let (status, policy) = call(&gw, "sk-alice").await;
    assert_eq!(status, 429);
    assert_eq!(policy.as_deref(), Some("\"per_minute\";q=4;w=60;bucket"));
}

/// `SIGHUP` reloads too: bob's key works once the signal is handled; a
/// file that would remove it but also changes a restart-only setting is
/// refused (bob still served); a good file removing it then applies.
#[tokio::test]
async fn sighup_reloads_the_config() {
    let gw = start(&config(1_000, ALICE), &[]);
    assert_eq!(call(&gw, "sk-bob").await.0, 401);
    let hangup = |gw: &Gateway| {
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &gw.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP");
    };
    /// Bob's status once it is `want`, or after a second of asking.
    async fn bob_until(gw: &Gateway, want: u16) -> u16 {
        let mut status = 0;
        for _ in 0..50 {
            status = call(gw, "sk-bob").await.0;
            if status == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        status
    }
    std::fs::write(&gw.config, config(1_000, ALICE_AND_BOB)).unwrap();
    hangup(&gw);
    assert_eq!(bob_until(&gw, 200).await, 200, "bob's key after SIGHUP");

    let restart_only = config(1_000, ALICE).replace("total_max = 100", "total_max = 5");
    std::fs::write(&gw.config, restart_only).unwrap();
    hangup(&gw);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        call(&gw, "sk-bob").await.0,
        200,
        "a refused reload removed bob"
    );

    std::fs::write(&gw.config, config(1_000, ALICE)).unwrap();
    hangup(&gw);
    assert_eq!(
        bob_until(&gw, 401).await,
        401,
        "bob's key removed after SIGHUP"
    );
    assert_eq!(call(&gw, "sk-alice").await.0, 200);
}

/// A budget changed by a reload keeps what it counted: 3 requests a
/// minute per user, all used; raised to 5, two more pass; a file that
/// would remove the budget is refused and it still decides.
#[tokio::test]
async fn a_reload_raises_a_budget_keeping_its_usage() {
    let with_budget = |n: u64| {
        format!(
            "{}[budgets]\nper_user = {{ requests_per_minute = {n} }}\n",
            config(1_000, ALICE)
        )
    };
    let gw = start(&with_budget(3), &[]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(call(&gw, "sk-alice").await.0);
    }
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert_ne!(statuses[3], 200, "the fourth is over the budget");

    let (status, body) = reload(&gw, &with_budget(5)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("1 budget scopes"), "{body}");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(call(&gw, "sk-alice").await.0);
    }
    assert_eq!(&statuses[..2], [200, 200], "3 of 5 used: two more");
    assert_ne!(statuses[2], 200);

    let (status, body) = reload(&gw, &config(1_000, ALICE)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("per_user"), "{body}");
    assert_ne!(call(&gw, "sk-alice").await.0, 200, "still 5 of 5");
}
