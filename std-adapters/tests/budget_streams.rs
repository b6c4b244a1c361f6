//! Streamed answers through the budget layer over real HTTP: passed through
//! unbuffered and byte-identical, settled from the final usage event, and
//! by the rule when the stream is cut or the client leaves.

mod support;

use std::time::Duration as StdDuration;

use axum::http::StatusCode;
use ratebound_core::budget::llm::Ending;
use ratebound_core::budget::{Dimension, Horizon};
use ratebound_std::budget::Scope;
use serde_json::{json, Value};
use support::llm_gateway::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_passes_byte_identical_and_settles_from_its_final_usage() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .header("accept-encoding", "gzip, br")
        .json(&request(3, 100, json!({"stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    // The layer asked for usage, so the upstream sent it; every byte passed.
    let t = usage_for(&request(3, 100, json!({})));
    let usage = json!({"choices": [], "usage": {"prompt_tokens": t.input, "completion_tokens": t.output, "total_tokens": t.input + t.output}});
    assert_eq!(text, format!("{SSE_HEAD}data: {usage}\n\ndata: [DONE]\n\n"));
    let sent = up.bodies.lock().unwrap()[0].clone();
    assert_eq!(
        sent.pointer("/stream_options/include_usage"),
        Some(&Value::Bool(true))
    );
    wait_settled(&g, 1).await;
    let e = g.settled.lock().unwrap()[0].clone();
    assert_eq!(e.ending, Ending::Reported(t));
    assert_eq!(
        used(&g, Scope::User, "alice", Dimension::Tokens, Horizon::MINUTE).await,
        t.input + t.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_stream_is_charged_its_whole_reservation() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .json(&request(4, 100, json!({"stream": true, "note": "cut"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.is_err(), "the body was cut");
    wait_settled(&g, 1).await;
    let e = g.settled.lock().unwrap()[0].clone();
    let est = ratebound_std::http::llm_request::LlmRequest::parse(
        request(4, 100, json!({"stream": true, "note": "cut"}))
            .to_string()
            .as_bytes(),
    )
    .unwrap()
    .estimate(4_096);
    assert_eq!(
        e.ending,
        Ending::Unreported {
            input: None,
            observed_output: 2
        }
    );
    assert_eq!(e.charged, est.usage(&PRICE));
    assert_eq!(
        used(&g, Scope::User, "alice", Dimension::Tokens, Horizon::MINUTE).await,
        est.input + est.max_output
    );
}

/// The stream is not buffered: the client reads the first events while the
/// upstream has not yet written the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_client_as_the_upstream_writes_them() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .json(&request(5, 100, json!({"stream": true, "note": "gate"})))
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(StdDuration::from_secs(10), r.chunk())
        .await
        .expect("the first events were held back")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], SSE_HEAD.as_bytes());
    assert!(
        g.settled.lock().unwrap().is_empty(),
        "settled before the stream ended"
    );
    up.gate.notify_one();
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert!(String::from_utf8(rest)
        .unwrap()
        .ends_with("data: [DONE]\n\n"));
    wait_settled(&g, 1).await;
    let t = usage_for(&request(5, 100, json!({})));
    assert_eq!(g.settled.lock().unwrap()[0].ending, Ending::Reported(t));
}

/// A client that leaves mid-stream: charged the reservation (no usage came),
/// and the holds are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_stream_is_charged_by_the_rule() {
    let up = Upstream::default();
    let budgets = in_memory(FIFTY, at(1_795_392_000));
    let g = serve(budgets, up.clone(), 4_096).await;
    let body = request(6, 100, json!({"stream": true, "note": "gate"}));
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", g.base))
        .bearer_auth("alice")
        .json(&body)
        .send()
        .await
        .unwrap();
    let first = r.chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], SSE_HEAD.as_bytes());
    drop(r); // the client goes away
    up.gate.notify_one(); // the server notices when it next writes
    wait_settled(&g, 1).await;
    let e = g.settled.lock().unwrap()[0].clone();
    let est = ratebound_std::http::llm_request::LlmRequest::parse(body.to_string().as_bytes())
        .unwrap()
        .estimate(4_096);
    assert_eq!(
        e.ending,
        Ending::Unreported {
            input: None,
            observed_output: 2
        }
    );
    assert_eq!(e.charged, est.usage(&PRICE));
    assert_eq!(
        g.budgets.status(Scope::User, "alice").await.unwrap().holds,
        0
    );
}
