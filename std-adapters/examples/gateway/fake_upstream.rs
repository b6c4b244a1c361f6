//! The built-in stand-in for a model.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::handlers::json_error;

/// A stand-in for an LLM API that reports usage as OpenAI does: 500 when
/// the prompt says "fail"; an SSE stream when asked (the usage in a last
/// event if `stream_options.include_usage`), cut off before it when the
/// prompt says "cut"; else a JSON completion.
pub(crate) fn fake_upstream(body: &[u8]) -> Response {
    const REPLY: [&str; 4] = ["Hello", "! How can I", " help you", " today?"];
    let text = String::from_utf8_lossy(body);
    if text.contains("fail") {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model failed",
            "server_error",
            "upstream_failed",
        );
    }
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let chars: usize = v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.chars().count())
        .sum();
    let prompt = chars.div_ceil(4) as u64 + 8;
    // "essay": a long answer, using the whole output cap.
    let completion = match v["max_tokens"].as_u64() {
        Some(cap) if text.contains("essay") => cap,
        _ => 9,
    };
    let usage = serde_json::json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    if v["stream"] == serde_json::Value::Bool(true) {
        let mut events: Vec<Result<Bytes, std::io::Error>> = REPLY
            .iter()
            .map(|t| {
                let e = serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": t}}]});
                Ok(Bytes::from(format!("data: {e}\n\n")))
            })
            .collect();
        if text.contains("cut") {
            events.truncate(2);
            events.push(Err(std::io::Error::other("upstream connection lost")));
        } else {
            if v["stream_options"]["include_usage"] == serde_json::Value::Bool(true) {
                let e = serde_json::json!({"object": "chat.completion.chunk", "choices": [], "usage": usage});
                events.push(Ok(Bytes::from(format!("data: {e}\n\n"))));
            }
            events.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
        }
        let mut res = Body::from_stream(paced(events)).into_response();
        res.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        return res;
    }
    let body = serde_json::json!({"object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY.concat()}, "finish_reason": "stop"}],
        "usage": usage});
    let mut res = (StatusCode::OK, body.to_string()).into_response();
    res.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    res
}

/// The events as a stream, a few milliseconds apart (as a model writes).
fn paced(
    events: Vec<Result<Bytes, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    struct Events(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);
    impl futures_core::Stream for Events {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for e in events {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if tx.send(e).await.is_err() {
                return;
            }
        }
    });
    Events(rx)
}
