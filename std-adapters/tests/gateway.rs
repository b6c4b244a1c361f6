//! The model-limit tower layer driven over real HTTP on loopback: an axum
//! server with the layer in front of a fake upstream, and a reqwest client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use ratebound_core::{Duration, Instant};
use ratebound_std::clock::ManualClock;
use ratebound_std::http::layer::{FromExtensions, ModelLimitLayer};
use ratebound_std::keyed::KeyedConfig;
use ratebound_std::model_limit::{Identity, ModelLimitConfig, ModelLimitError, ModelLimiter};

/// Requests that reached the upstream, and decisions the layer made.
#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<AtomicUsize>,
    decided: Arc<AtomicUsize>,
}

/// The fake upstream: answers `x-upstream-status` (default 200) after
/// `x-upstream-delay-ms` (default 0).
async fn upstream(
    axum::extract::State(u): axum::extract::State<Upstream>,
    headers: HeaderMap,
) -> impl IntoResponse {
    u.calls.fetch_add(1, Ordering::SeqCst);
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(ms) = num("x-upstream-delay-ms") {
        tokio::time::sleep(StdDuration::from_millis(ms)).await;
    }
    // Hold every admitted request until the layer has decided `n` requests:
    // concurrency tests then do not depend on arrival timing.
    if let Some(n) = num("x-upstream-wait-decisions") {
        let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
        while u.decided.load(Ordering::SeqCst) < n as usize
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(StdDuration::from_millis(2)).await;
        }
    }
    let status = StatusCode::from_u16(num("x-upstream-status").unwrap_or(200) as u16).unwrap();
    (status, r#"{"choices":[]}"#)
}

/// Auth: `Authorization: Bearer <user>`, optional `x-group`, set as the
/// `Identity` extension (what a real auth middleware would do).
async fn auth(mut req: Request, next: Next) -> axum::response::Response {
    let h = req.headers();
    let user = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let group = h
        .get("x-group")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(user) = user {
        let mut id = Identity::user(user);
        id.user_group = group;
        req.extensions_mut().insert(id);
    }
    next.run(req).await
}

struct Server {
    url: String,
    upstream: Upstream,
    clock: ManualClock,
    client: reqwest::Client,
}

fn config(toml: &str) -> ModelLimitConfig {
    ModelLimitConfig::from_toml(toml).unwrap()
}

async fn serve(
    cfg: ModelLimitConfig,
    store: KeyedConfig,
    tune: impl FnOnce(
        ModelLimitLayer<ModelLimiter<ManualClock>, FromExtensions>,
    ) -> ModelLimitLayer<ModelLimiter<ManualClock>, FromExtensions>,
) -> Server {
    let clock = ManualClock::new(Instant::from_secs(1_000_000));
    let limiter = Arc::new(ModelLimiter::new(cfg, store, clock.clone()).unwrap());
    let up = Upstream::default();
    let decided = Arc::clone(&up.decided);
    let layer = tune(
        ModelLimitLayer::new(
            limiter,
            FromExtensions::new().with_model_header(axum::http::HeaderName::from_static("x-model")),
        )
        .on_decision(move |_| {
            decided.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let app = Router::new()
        .route("/v1/chat/completions", post(upstream))
        .layer(layer)
        .layer(middleware::from_fn(auth))
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        url,
        upstream: up,
        clock,
        client: reqwest::Client::new(),
    }
}

impl Server {
    async fn send(&self, user: &str, model: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut rb = self
            .client
            .post(format!("{}/v1/chat/completions", self.url))
            .header("authorization", format!("Bearer {user}"))
            .header("x-model", model);
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        rb.body("{}").send().await.unwrap()
    }

    /// Statuses of `n` sequential requests.
    async fn statuses(
        &self,
        n: usize,
        user: &str,
        model: &str,
        extra: &[(&str, &str)],
    ) -> Vec<u16> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.send(user, model, extra).await.status().as_u16());
        }
        out
    }

    fn calls(&self) -> usize {
        self.upstream.calls.load(Ordering::SeqCst)
    }
}

fn count(v: &[u16], status: u16) -> usize {
    v.iter().filter(|&&s| s == status).count()
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

const BASIC: &str = "period_minutes = 1\ntotal_max = 5\nsuccess_max = 3\n";

#[tokio::test]
async fn limits_hold_exactly_per_user_and_model() {
    let s = serve(config(BASIC), KeyedConfig::default(), |l| l).await;
    // Success binds first: 3 successes, then 429.
    assert_eq!(
        s.statuses(5, "alice", "gpt-4", &[]).await,
        [200, 200, 200, 429, 429]
    );
    // Another model and another user have their own counts.
    assert_eq!(
        s.statuses(4, "alice", "claude-3", &[]).await,
        [200, 200, 200, 429]
    );
    assert_eq!(
        s.statuses(4, "bob", "gpt-4", &[]).await,
        [200, 200, 200, 429]
    );
    // Failures use the total only: 5 admitted (all failing upstream), then 429.
    let fails = s
        .statuses(7, "carol", "gpt-4", &[("x-upstream-status", "500")])
        .await;
    assert_eq!(fails, [500, 500, 500, 500, 500, 429, 429]);
    assert_eq!(
        s.calls(),
        3 + 3 + 3 + 5,
        "denied requests never reach the upstream"
    );
    // A sliding window: nothing comes back within the minute, everything after it.
    s.clock.advance(Duration::from_secs(59));
    assert_eq!(s.statuses(1, "alice", "gpt-4", &[]).await, [429]);
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(
        s.statuses(4, "alice", "gpt-4", &[]).await,
        [200, 200, 200, 429]
    );
}

#[tokio::test]
async fn group_overrides_win_over_model_and_global() {
    let cfg = config(
        r#"
        period_minutes = 1
        success_max = 2
        groups = '{"vip": [0, 5], "free": [1, 1]}'
        models = { "gpt-4" = [0, 3] }
        "#,
    );
    let s = serve(cfg, KeyedConfig::default(), |l| l).await;
    let vip = [("x-group", "vip")];
    assert_eq!(
        count(&s.statuses(7, "v", "gpt-4", &vip).await, 200),
        5,
        "group wins over model"
    );
    assert_eq!(
        count(&s.statuses(7, "v", "other", &vip).await, 200),
        5,
        "group wins over global"
    );
    assert_eq!(
        count(&s.statuses(7, "u", "gpt-4", &[]).await, 200),
        3,
        "model wins over global"
    );
    assert_eq!(
        count(&s.statuses(7, "u", "other", &[]).await, 200),
        2,
        "global"
    );
    // free: total 1 binds even on failures.
    let free = [("x-group", "free"), ("x-upstream-status", "503")];
    assert_eq!(s.statuses(3, "f", "gpt-4", &free).await, [503, 429, 429]);
    // An unknown group gets the defaults.
    assert_eq!(
        count(
            &s.statuses(7, "w", "other", &[("x-group", "nope")]).await,
            200
        ),
        2
    );
}

#[tokio::test]
async fn failures_do_not_use_the_success_quota() {
    let cfg = config("period_minutes = 60\nsuccess_max = 3\n"); // total unlimited
    let s = serve(cfg, KeyedConfig::default(), |l| l).await;
    for status in ["400", "404", "429", "500", "502"] {
        let got = s
            .statuses(4, "alice", "gpt-4", &[("x-upstream-status", status)])
            .await;
        assert!(
            got.iter().all(|&g| g.to_string() == status),
            "{status}: {got:?}"
        );
    }
    assert_eq!(
        s.statuses(5, "alice", "gpt-4", &[]).await,
        [200, 200, 200, 429, 429]
    );
    assert_eq!(s.calls(), 20 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_yield_exactly_ten_successes() {
    let cfg = config("period_minutes = 60\ntotal_max = 1000\nsuccess_max = 10\n");
    let s = Arc::new(serve(cfg, KeyedConfig::default(), |l| l).await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            // Every admitted request is still in flight when the others arrive.
            s.send("alice", "gpt-4", &[("x-upstream-delay-ms", "300")])
                .await
                .status()
                .as_u16()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(count(&got, 200), 10, "{got:?}");
    assert_eq!(count(&got, 429), 40, "{got:?}");
    assert_eq!(s.calls(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_failures_give_their_slots_back() {
    // 20 concurrent failing requests against success 5: only 5 can be in
    // flight at once (all 20 are decided before any finishes), but each
    // failure frees its slot, so later successes still get the full 5.
    let cfg = config("period_minutes = 60\nsuccess_max = 5\n");
    let s = Arc::new(serve(cfg, KeyedConfig::default(), |l| l).await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let h = [
                ("x-upstream-wait-decisions", "20"),
                ("x-upstream-status", "500"),
            ];
            s.send("alice", "gpt-4", &h).await.status().as_u16()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert_eq!(count(&got, 500), 5, "{got:?}");
    assert_eq!(count(&got, 429), 15, "{got:?}");
    assert_eq!(
        s.statuses(6, "alice", "gpt-4", &[]).await,
        [200, 200, 200, 200, 200, 429]
    );
}

#[tokio::test]
async fn shadow_mode_reports_but_never_rejects() {
    let denials = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&denials);
    let s = serve(config(BASIC), KeyedConfig::default(), move |l| {
        l.shadow(true).on_decision(move |e| {
            assert!(e.shadow);
            if !e.decision.allowed() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        })
    })
    .await;
    let mut remaining = Vec::new();
    for _ in 0..8 {
        let res = s.send("alice", "gpt-4", &[]).await;
        assert_eq!(res.status(), 200);
        remaining.push(header(&res, "x-ratelimit-remaining"));
    }
    assert_eq!(s.calls(), 8);
    assert_eq!(
        denials.load(Ordering::SeqCst),
        5,
        "3 admitted, 5 would have been rejected"
    );
    assert_eq!(remaining, ["2", "1", "0", "0", "0", "0", "0", "0"]);
}

#[tokio::test]
async fn every_header_is_present_and_correct() {
    let cfg = config("period_minutes = 1\ntotal_max = 4\nsuccess_max = 2\n");
    let s = serve(cfg, KeyedConfig::default(), |l| l).await;
    let ok = s.send("alice", "gpt-4", &[]).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        header(&ok, "ratelimit-policy"),
        r#""total";q=4;w=60, "success";q=2;w=60"#
    );
    // One of 4 total taken and one success reserved: both leave the
    // window 60 s after they were counted.
    assert_eq!(
        header(&ok, "ratelimit"),
        r#""total";r=3;t=60, "success";r=1;t=60"#
    );
    assert_eq!(header(&ok, "x-ratelimit-limit"), "2"); // success binds (least left)
    assert_eq!(header(&ok, "x-ratelimit-remaining"), "1");
    assert_eq!(header(&ok, "x-ratelimit-reset"), "60");
    assert!(ok.headers().get("retry-after").is_none());

    s.clock.advance(Duration::from_secs(10));
    assert_eq!(s.send("alice", "gpt-4", &[]).await.status(), 200);
    let denied = s.send("alice", "gpt-4", &[]).await;
    assert_eq!(denied.status(), 429);
    assert_eq!(header(&denied, "content-type"), "application/json");
    // Successes at t=0 and t=10 (at most 2 in any minute): the first leaves
    // the window at t=60, 50 s from now. Counts as they stand: 2 of 4
    // total taken, the newest leaving at t=70.
    assert_eq!(header(&denied, "retry-after"), "50");
    assert_eq!(
        header(&denied, "ratelimit"),
        r#""total";r=2;t=60, "success";r=0;t=60"#
    );
    assert_eq!(header(&denied, "x-ratelimit-limit"), "2");
    assert_eq!(header(&denied, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&denied, "x-ratelimit-reset"), "60");
    let body: serde_json::Value = denied.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    assert!(body["error"]["param"].is_null());
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("gpt-4")
            && msg.contains("successful requests")
            && msg.contains("at most 2 in any minute")
            && msg.contains("50s"),
        "{msg}"
    );

    // Fractions of a second round up: 0.5 s before the slot is back, wait 1 s.
    s.clock.advance(Duration::from_micros(49_500_000));
    assert_eq!(
        header(&s.send("alice", "gpt-4", &[]).await, "retry-after"),
        "1"
    );
}

#[tokio::test]
async fn headers_on_success_can_be_turned_off() {
    let s = serve(config(BASIC), KeyedConfig::default(), |l| {
        l.headers_on_success(false)
    })
    .await;
    let ok = s.send("alice", "gpt-4", &[]).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().get("ratelimit").is_none());
    s.statuses(2, "alice", "gpt-4", &[]).await;
    let denied = s.send("alice", "gpt-4", &[]).await;
    assert_eq!(denied.status(), 429);
    assert!(
        denied.headers().get("ratelimit").is_some(),
        "a 429 always explains itself"
    );
}

#[tokio::test]
async fn disabled_limits_pass_everything_untouched() {
    let s = serve(
        config(&format!("enabled = false\n{BASIC}")),
        KeyedConfig::default(),
        |l| l,
    )
    .await;
    let got = s.statuses(10, "alice", "gpt-4", &[]).await;
    assert!(got.iter().all(|&g| g == 200));
    assert!(s
        .send("alice", "gpt-4", &[])
        .await
        .headers()
        .get("ratelimit")
        .is_none());
}

#[tokio::test]
async fn missing_credentials_or_model_are_refused_before_the_upstream() {
    let s = serve(config(BASIC), KeyedConfig::default(), |l| l).await;
    let url = format!("{}/v1/chat/completions", s.url);
    let anon = s
        .client
        .post(&url)
        .header("x-model", "m")
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let body: serde_json::Value = anon.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    let nomodel = s
        .client
        .post(&url)
        .header("authorization", "Bearer a")
        .send()
        .await
        .unwrap();
    assert_eq!(nomodel.status(), 400);
    assert_eq!(s.calls(), 0);
}

#[tokio::test]
async fn a_full_store_answers_503_not_a_grant() {
    let store = KeyedConfig::default().with_max_keys(1).with_shards(1);
    let s = serve(config(BASIC), store, |l| l).await;
    assert_eq!(s.send("alice", "gpt-4", &[]).await.status(), 200);
    let res = s.send("bob", "gpt-4", &[]).await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(s.calls(), 1);
}

#[test]
fn malformed_configs_name_what_is_wrong() {
    let msg = |toml: &str| {
        let r: Result<_, ModelLimitError> = ModelLimiter::new(
            config(toml),
            KeyedConfig::default(),
            ManualClock::new(Instant::ZERO),
        );
        r.unwrap_err().to_string()
    };

    let m = msg("period_minutes = 1\nsuccess_max = 1\ngroups = '{\"vip\": [-1, 5]}'");
    assert!(
        m.contains("group \"vip\"") && m.contains("total_max") && m.contains("-1"),
        "{m}"
    );
    let m = msg("period_minutes = 1\nsuccess_max = 1\ngroups = '{\"free\": [10, 0]}'");
    assert!(
        m.contains("group \"free\"") && m.contains("success_max"),
        "{m}"
    );
    let m = msg("period_minutes = 1\nsuccess_max = 1\ngroups = { big = [2147483648, 1] }");
    assert!(
        m.contains("group \"big\"") && m.contains("2147483648"),
        "{m}"
    );
    let m = msg("period_minutes = 1\nsuccess_max = 0");
    assert!(m.contains("global") && m.contains("success_max"), "{m}");
    let m = msg("period_minutes = 0\nsuccess_max = 1");
    assert!(m.contains("period_minutes"), "{m}");
    let m = msg("period_minutes = 1\nsuccess_max = 1\nmodels = { \"\" = [1, 1] }");
    assert!(m.contains("model names"), "{m}");

    let parse = |s: &str| ModelLimitConfig::from_json(s).unwrap_err().to_string();
    let m = parse(r#"{"period_minutes": 1, "success_max": 1, "groups": "{\"vip\": [1]}"}"#);
    assert!(
        m.contains("groups") && m.contains("[total, success]"),
        "{m}"
    );
    let m = parse(r#"{"period_minutes": 1, "success_max": 1, "groups": "not json"}"#);
    assert!(m.contains("groups"), "{m}");
    let m = parse(r#"{"period_minutes": 1, "success_max": 1, "burst": 3}"#);
    assert!(m.contains("burst"), "{m}");
    let m = parse(r#"{"period_minutes": -1, "success_max": 1}"#);
    assert!(m.contains("period_minutes"), "{m}");
    let m = parse(r#"{"period_minutes": 1, "success_max": 1} trailing"#);
    assert!(m.contains("trailing"), "{m}");
    // A JSON object in a string is accepted, as is an empty string for "no groups".
    assert!(ModelLimitConfig::from_json(r#"{"period_minutes": 1, "success_max": 1, "groups": "{\"default\": [0, 10], \"vip\": [100, 50]}"}"#).is_ok());
    assert!(ModelLimitConfig::from_json(
        r#"{"period_minutes": 1, "success_max": 1, "groups": ""}"#
    )
    .is_ok());
}

// ------------------------------------------------- without HTTP: settlement

use ratebound_std::model_limit::Outcome;
use tower::{Layer, Service, ServiceExt};

fn limiter(toml: &str) -> (Arc<ModelLimiter<ManualClock>>, ManualClock) {
    let clock = ManualClock::new(Instant::from_secs(1_000_000));
    (
        Arc::new(ModelLimiter::new(config(toml), KeyedConfig::default(), clock.clone()).unwrap()),
        clock,
    )
}

fn success_left(l: &ModelLimiter<ManualClock>, who: &Identity) -> u64 {
    l.peek(who, "m").success.remaining
}

#[test]
fn a_late_failure_adds_no_capacity() {
    // The reviewer's case: success 1 per minute; A is admitted and fails
    // 62 s later. While A is in flight nobody else gets its slot, and when
    // it fails nothing is added on top of what refilled.
    let (l, clock) = limiter("period_minutes = 1\nsuccess_max = 1");
    let who = Identity::user("u");
    let a = l.admit(&who, "m").unwrap();
    assert!(a.allowed());
    clock.advance(Duration::from_secs(61));
    assert!(
        !l.admit(&who, "m").unwrap().allowed(),
        "A still holds the only slot"
    );
    clock.advance(Duration::from_secs(1));
    a.settle(Outcome::Failure);
    let c = l.admit(&who, "m").unwrap();
    assert!(c.allowed());
    assert!(!l.admit(&who, "m").unwrap().allowed(), "one slot, not two");
    c.settle(Outcome::Success);
    assert!(!l.admit(&who, "m").unwrap().allowed());
}

#[test]
fn held_admissions_cannot_bank_successes() {
    // Hold 10 admissions for 3 minutes, then fail them all: at one instant
    // at most success_max (10) successes are possible, never 40.
    let (l, clock) = limiter("period_minutes = 1\nsuccess_max = 10");
    let who = Identity::user("u");
    let held: Vec<_> = (0..10).map(|_| l.admit(&who, "m").unwrap()).collect();
    assert!(held.iter().all(|a| a.allowed()));
    for _ in 0..18 {
        clock.advance(Duration::from_secs(10));
        assert!(
            !l.admit(&who, "m").unwrap().allowed(),
            "all 10 slots are reserved"
        );
    }
    drop(held); // failures (e.g. clients that went away)
    let mut successes = 0;
    loop {
        let a = l.admit(&who, "m").unwrap();
        if !a.allowed() {
            break;
        }
        a.settle(Outcome::Success);
        successes += 1;
    }
    assert_eq!(successes, 10);
}

#[test]
fn unsettled_keys_are_not_evicted_as_idle() {
    let clock = ManualClock::new(Instant::from_secs(1_000_000));
    let store = KeyedConfig::default().with_max_keys(1).with_shards(1);
    let l = ModelLimiter::new(
        config("period_minutes = 1\nsuccess_max = 1"),
        store,
        clock.clone(),
    )
    .unwrap();
    let a = l.admit(&Identity::user("a"), "m").unwrap();
    clock.advance(Duration::from_secs(300));
    // a's window has long passed, but its request is in flight (its hold
    // lasts 600 s): b must not take its place.
    assert!(l.admit(&Identity::user("b"), "m").is_err());
    a.settle(Outcome::Success);
    clock.advance(Duration::from_secs(3600));
    assert!(l.admit(&Identity::user("b"), "m").unwrap().allowed());
}

/// A store full of keys in flight refuses a new one: 503
/// `rate_limit_store_full` with `Retry-After: 1`, as the rate-limit
/// layer's full store answers.
#[tokio::test]
async fn a_full_model_limit_store_is_503_with_retry_after() {
    let clock = ManualClock::new(Instant::from_secs(1_000_000));
    let store = KeyedConfig::default().with_max_keys(1).with_shards(1);
    let l = Arc::new(
        ModelLimiter::new(config("period_minutes = 1\nsuccess_max = 1"), store, clock).unwrap(),
    );
    let _in_flight = l.admit(&Identity::user("a"), "m").unwrap();
    let layer = ModelLimitLayer::new(Arc::clone(&l), |_: &axum::http::Request<String>| {
        Ok(Some(ratebound_std::http::layer::Subject {
            identity: Identity::user("b"),
            model: "m".into(),
        }))
    });
    let mut svc = layer.layer(tower::service_fn(|_: axum::http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(axum::http::Response::new(String::new()))
    }));
    let r = svc
        .ready()
        .await
        .unwrap()
        .call(axum::http::Request::new(String::new()))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.body().contains("rate_limit_store_full"), "{}", r.body());
}

async fn pending_forever(
    _: axum::http::Request<String>,
) -> Result<axum::http::Response<String>, std::convert::Infallible> {
    std::future::pending().await
}

#[tokio::test]
async fn a_dropped_request_gives_its_slot_back() {
    let (l, _) = limiter("period_minutes = 60\nsuccess_max = 1");
    let layer = ModelLimitLayer::new(Arc::clone(&l), |_: &axum::http::Request<String>| {
        Ok(Some(ratebound_std::http::layer::Subject {
            identity: Identity::user("u"),
            model: "m".into(),
        }))
    });
    let mut svc = layer.layer(tower::service_fn(pending_forever));
    let fut = svc
        .ready()
        .await
        .unwrap()
        .call(axum::http::Request::new(String::new()));
    assert!(
        tokio::time::timeout(StdDuration::from_millis(20), fut)
            .await
            .is_err(),
        "still pending"
    );
    // The future was dropped mid-flight (a client that went away): the
    // reservation is released, the bucket untouched.
    assert_eq!(
        success_left(&l, &Identity::user("u")),
        0,
        "a peek of one more takes the only token"
    );
    assert!(l.peek(&Identity::user("u"), "m").allowed());
}

#[tokio::test]
async fn an_inner_error_or_a_shadow_failure_uses_no_success() {
    let (l, _) = limiter("period_minutes = 60\nsuccess_max = 1");
    let subject = |_: &axum::http::Request<String>| {
        Ok(Some(ratebound_std::http::layer::Subject {
            identity: Identity::user("u"),
            model: "m".into(),
        }))
    };
    let failing = tower::service_fn(|_: axum::http::Request<String>| async {
        Err::<axum::http::Response<String>, _>(std::io::Error::other("upstream unreachable"))
    });
    let mut svc = ModelLimitLayer::new(Arc::clone(&l), subject).layer(failing);
    for _ in 0..3 {
        let r = svc
            .ready()
            .await
            .unwrap()
            .call(axum::http::Request::new(String::new()))
            .await;
        assert!(r.is_err(), "the error passes through");
    }
    assert!(
        l.peek(&Identity::user("u"), "m").allowed(),
        "errors settled as failures"
    );

    let answering = |status: u16| {
        tower::service_fn(move |_: axum::http::Request<String>| async move {
            let mut r = axum::http::Response::new(String::new());
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, std::convert::Infallible>(r)
        })
    };
    let mut shadow = ModelLimitLayer::new(Arc::clone(&l), subject)
        .shadow(true)
        .layer(answering(503));
    for _ in 0..3 {
        let r = shadow
            .ready()
            .await
            .unwrap()
            .call(axum::http::Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
    }
    assert!(
        l.peek(&Identity::user("u"), "m").allowed(),
        "shadow failures used nothing"
    );
    let mut ok = ModelLimitLayer::new(Arc::clone(&l), subject).layer(answering(200));
    assert_eq!(
        ok.ready()
            .await
            .unwrap()
            .call(axum::http::Request::new(String::new()))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        ok.ready()
            .await
            .unwrap()
            .call(axum::http::Request::new(String::new()))
            .await
            .unwrap()
            .status(),
        429
    );
}

#[tokio::test]
async fn unknown_models_and_oversized_names_are_refused() {
    let cfg =
        config("period_minutes = 1\nsuccess_max = 5\nallowed_models = [\"gpt-4\", \"claude-3\"]");
    let s = serve(cfg, KeyedConfig::default(), |l| l).await;
    assert_eq!(s.send("alice", "gpt-4", &[]).await.status(), 200);
    let res = s.send("alice", "made-up-1", &[]).await;
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("made-up-1"));
    let s = serve(config(BASIC), KeyedConfig::default(), |l| l).await;
    assert_eq!(s.send("alice", &"m".repeat(257), &[]).await.status(), 400);
    assert_eq!(s.send("alice", &"m".repeat(256), &[]).await.status(), 200);
    assert_eq!(s.send(&"u".repeat(300), "m", &[]).await.status(), 400);
    // A model header that is not visible ASCII is named as such.
    let res = s
        .client
        .post(format!("{}/v1/chat/completions", s.url))
        .header("authorization", "Bearer alice")
        .header(
            "x-model",
            reqwest::header::HeaderValue::from_bytes(b"gpt-\xff").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("ASCII"));
    assert_eq!(s.calls(), 1, "only the 256-byte model reached the upstream");
}

#[tokio::test]
async fn group_keys_never_collide_with_user_ids() {
    let cfg = config("period_minutes = 1\nsuccess_max = 2\nkey_by = \"group\"");
    let s = serve(cfg, KeyedConfig::default(), |l| l).await;
    let team = [("x-group", "team")];
    // Two members of "team" share one count...
    assert_eq!(s.statuses(2, "ann", "m", &team).await, [200, 200]);
    assert_eq!(s.statuses(1, "bob", "m", &team).await, [429]);
    // ...and a user whose id is "team" has their own.
    assert_eq!(s.statuses(2, "team", "m", &[]).await, [200, 200]);
}

#[test]
fn map_form_config_errors_are_clear() {
    let parse = |s: &str| ModelLimitConfig::from_toml(s).unwrap_err().to_string();
    let m = parse("period_minutes = 1\nsuccess_max = 1\ngroups = { vip = [1] }");
    assert!(
        m.contains("groups") && m.contains("\"vip\"") && m.contains("[total, success]"),
        "{m}"
    );
    let m = parse("period_minutes = 1\nsuccess_max = 1\ngroups = { vip = [1, \"x\"] }");
    assert!(m.contains("\"vip\"") && m.contains("two integers"), "{m}");
    let m = parse("period_minutes = 1\nsuccess_max = 1\ngroups = 5");
    assert!(m.contains("groups") && m.contains("JSON string"), "{m}");
    assert!(!m.contains("untagged"), "{m}");
    let m = ModelLimitConfig::from_json(
        r#"{"period_minutes": 1, "success_max": 1, "models": {"gpt-4": [1]}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(m.contains("models") && m.contains("\"gpt-4\""), "{m}");
}

/// Each window kind driven for two periods over HTTP: a request every 1.5 s
/// (a third of them failing upstream), and the admissions and successes in
/// every one-period window checked against what `RateLimit-Policy` promised
/// (`q` in any `w`; with `;bucket`, `2q − 1`).
#[tokio::test]
async fn every_window_holds_what_the_policy_header_promises() {
    for (window, kind) in [("sliding", ""), ("bucket", ";bucket")] {
        let cfg = config(&format!(
            "period_minutes = 1\ntotal_max = 12\nsuccess_max = 6\nwindow = \"{window}\"\n"
        ));
        let s = serve(cfg, KeyedConfig::default(), |l| l).await;
        let (mut admitted, mut succeeded) = (Vec::new(), Vec::new());
        let mut policy = String::new();
        for i in 0..80u64 {
            let fail: &[(&str, &str)] = if i % 3 == 0 {
                &[("x-upstream-status", "500")]
            } else {
                &[]
            };
            let r = s.send("dana", "gpt-4", fail).await;
            let t = 1_500_000 * i;
            if let Some(p) = r.headers().get("ratelimit-policy") {
                policy = p.to_str().unwrap().to_owned();
            }
            if r.status() != 429 {
                admitted.push(t);
                if r.status() == 200 {
                    succeeded.push(t);
                }
            }
            s.clock.advance(Duration::from_micros(1_500_000));
        }
        assert_eq!(
            policy,
            format!("\"total\";q=12;w=60{kind}, \"success\";q=6;w=60{kind}"),
            "{window}"
        );
        let bound = |q: u64| if kind.is_empty() { q } else { 2 * q - 1 };
        let most = |times: &[u64]| {
            times
                .iter()
                .map(|&a| {
                    times
                        .iter()
                        .filter(|&&b| b >= a && b < a + 60_000_000)
                        .count() as u64
                })
                .max()
                .unwrap_or(0)
        };
        assert!(
            most(&admitted) <= bound(12),
            "{window}: {} admitted in one minute",
            most(&admitted)
        );
        assert!(
            most(&succeeded) <= bound(6),
            "{window}: {} successes in one minute",
            most(&succeeded)
        );
        // The limits bind (the test can fail): each window is used up.
        assert!(
            most(&succeeded) >= 6,
            "{window}: only {} successes",
            most(&succeeded)
        );
    }
}
