//! Reading requests and reported usage: the OpenAI chat, OpenAI responses
//! and Anthropic messages formats, JSON and streamed, cut at any byte.

use proptest::prelude::*;
use ratebound_core::budget::llm::{Ending, Estimate, Tokens};
use ratebound_std::http::llm_request::{Api, LlmRequest, RequestError, INLINE_DATA_CHARS};
use ratebound_std::http::usage::UsageScan;

const EST: Estimate = Estimate {
    input: 100,
    max_output: 50,
};

fn scan(sse: bool, body: &str) -> Ending {
    let mut s = UsageScan::new(sse);
    s.feed(body.as_bytes());
    s.finish();
    s.ending(&EST)
}

const OPENAI_CHAT_SSE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n\
data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":21,\"completion_tokens\":2,\"total_tokens\":23}}\n\n\
data: [DONE]\n\n";

const OPENAI_RESPONSES_SSE: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n\
event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n\
event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":30,\"output_tokens\":4,\"total_tokens\":34}}}\n\n";

const ANTHROPIC_SSE: &str = "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\r\n\r\n\
event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello!\"}}\r\n\r\n\
event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":12}}\r\n\r\n\
event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

#[test]
fn usage_is_read_from_each_api_json_and_streamed() {
    let reported = |input, output| Ending::Reported(Tokens { input, output });
    assert_eq!(scan(true, OPENAI_CHAT_SSE), reported(21, 2));
    assert_eq!(scan(true, OPENAI_RESPONSES_SSE), reported(30, 4));
    // Anthropic: the prompt from message_start (cache reads included), the
    // output from message_delta (not message_start's placeholder 1).
    assert_eq!(scan(true, ANTHROPIC_SSE), reported(30, 12));
    let chat = r#"{"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}"#;
    assert_eq!(scan(false, chat), reported(7, 3));
    let messages = r#"{"type":"message","usage":{"input_tokens":9,"cache_creation_input_tokens":4,"output_tokens":6}}"#;
    assert_eq!(scan(false, messages), reported(13, 6));
    let responses = r#"{"object":"response","usage":{"input_tokens":11,"output_tokens":8}}"#;
    assert_eq!(scan(false, responses), reported(11, 8));
}

#[test]
fn without_a_final_usage_the_call_is_unreported_with_what_was_seen() {
    // Cut after two deltas: 11 characters, 2 deltas → 3 tokens observed.
    let cut = &OPENAI_CHAT_SSE[..OPENAI_CHAT_SSE.find("data: {\"choices\":[],").unwrap()];
    assert_eq!(
        scan(true, cut),
        Ending::Unreported {
            input: None,
            observed_output: 3
        }
    );
    // Anthropic cut after message_start: the prompt is known.
    let cut = &ANTHROPIC_SSE[..ANTHROPIC_SSE.find("event: content_block_delta").unwrap()];
    assert_eq!(
        scan(true, cut),
        Ending::Unreported {
            input: Some(30),
            observed_output: 0
        }
    );
    // A JSON body without usage, or not JSON at all.
    assert!(matches!(
        scan(false, r#"{"choices":[]}"#),
        Ending::Unreported { .. }
    ));
    assert!(matches!(
        scan(false, "<html>bad gateway"),
        Ending::Unreported { .. }
    ));
}

#[test]
fn an_over_long_line_is_skipped_and_the_next_is_read() {
    let long = format!(
        "data: {{\"x\":\"{}\"}}\n\n",
        "a".repeat(ratebound_std::http::usage::MAX_SCANNED)
    );
    let mut s = UsageScan::new(true);
    for chunk in long.as_bytes().chunks(64 * 1024) {
        s.feed(chunk);
    }
    s.feed(OPENAI_CHAT_SSE.as_bytes());
    s.finish();
    assert_eq!(
        s.ending(&EST),
        Ending::Reported(Tokens {
            input: 21,
            output: 2
        })
    );
}

proptest! {
    /// The same events split at any bytes read the same.
    #[test]
    fn any_chunking_reads_the_same(cuts in proptest::collection::vec(0usize..600, 0..12), which in 0usize..3) {
        let body = [OPENAI_CHAT_SSE, OPENAI_RESPONSES_SSE, ANTHROPIC_SSE][which].as_bytes();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (body.len() + 1)).collect();
        points.sort_unstable();
        let mut s = UsageScan::new(true);
        let mut at = 0;
        for p in points {
            s.feed(&body[at..p]);
            at = p;
        }
        s.feed(&body[at..]);
        s.finish();
        prop_assert_eq!(s.ending(&EST), scan(true, std::str::from_utf8(body).unwrap()));
    }
}

#[test]
fn requests_are_parsed_and_estimated_by_the_documented_rule() {
    let r = LlmRequest::parse(
        br#"{"model":"gpt-4o","max_completion_tokens":300,"max_tokens":500,"stream":true,
            "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}"#,
    )
    .unwrap();
    assert_eq!(r.model, "gpt-4o");
    assert!(r.stream);
    assert_eq!(
        r.max_output,
        Some(500),
        "the larger of two caps: an upstream may honour either"
    );
    assert_eq!(r.messages, 2);
    // "system" 6 + "Be brief." 9 + "user" 4 + "text" 4 + "Hi" 2 + "image_url" 9 + the data URL.
    assert_eq!(r.prompt_chars, 6 + 9 + 4 + 4 + 2 + 9 + INLINE_DATA_CHARS);
    assert_eq!(
        r.estimate(1).input,
        (34 + INLINE_DATA_CHARS).div_ceil(4) + 2 * 3 + 3
    );
    // Base64 counts as one inline item whatever its length: Anthropic's
    // source, OpenAI's input_audio; text that merely starts "data:" counts
    // by its length.
    let b64 = "A".repeat(100_000);
    let body = format!(
        r#"{{"model":"claude","messages":[{{"role":"user","content":[
            {{"type":"image","source":{{"type":"base64","media_type":"image/png","data":"{b64}"}}}},
            {{"type":"input_audio","input_audio":{{"data":"{b64}","format":"wav"}}}},
            {{"type":"text","text":"data: 123456"}}]}}]}}"#
    );
    let r = LlmRequest::parse(body.as_bytes()).unwrap();
    let small = "user".len()
        + "image".len()
        + "base64".len()
        + "image/png".len()
        + "input_audio".len()
        + "wav".len()
        + "text".len()
        + "data: 123456".len();
    assert_eq!(r.prompt_chars, small as u64 + 2 * INLINE_DATA_CHARS);
    // A prompt dressed as a data URL, or a data URL that is not base64,
    // counts by its length.
    for text in [
        r#"{"type":"text","text":"data:text/plain;base64,QUFBQUFB"}"#,
        r#"{"type":"image_url","image_url":{"url":"data:text/plain;base64,not base64!"}}"#,
    ] {
        let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":[{text}]}}]}}"#);
        let r = LlmRequest::parse(body.as_bytes()).unwrap();
        assert!(
            r.prompt_chars > 20 && r.prompt_chars < INLINE_DATA_CHARS,
            "{text}: {}",
            r.prompt_chars
        );
    }
    // `n` completions each may write the whole cap.
    let r = LlmRequest::parse(br#"{"model":"m","max_tokens":10,"n":3}"#).unwrap();
    assert_eq!((r.choices, r.estimate(99).max_output), (3, 30));
    let r = LlmRequest::parse(br#"{"model":"m","n":2,"best_of":5}"#).unwrap();
    assert_eq!(
        r.estimate(7).max_output,
        35,
        "the default cap, for best_of 5"
    );
    // The responses API: `input` as a string is one message.
    let r = LlmRequest::parse(br#"{"model":"o3","input":"Hello there","max_output_tokens":64}"#)
        .unwrap();
    assert_eq!(
        (r.messages, r.max_output, r.prompt_chars),
        (1, Some(64), 11)
    );
}

#[test]
fn malformed_requests_are_refused_with_the_reason() {
    let err = |b: &str| LlmRequest::parse(b.as_bytes()).unwrap_err();
    assert_eq!(
        err(r#"{"model":"a","model":"b"}"#),
        RequestError::DuplicateKey("model".into())
    );
    assert_eq!(
        err(r#"{"model":"a","stream":true,"stream":false}"#),
        RequestError::DuplicateKey("stream".into())
    );
    assert_eq!(err(r#"{"messages":[]}"#), RequestError::MissingModel);
    assert_eq!(err(r#"{"model":""}"#), RequestError::MissingModel);
    assert_eq!(err(r#"{"model":7}"#), RequestError::MissingModel);
    assert_eq!(
        err(r#"{"model":"a","max_tokens":-1}"#),
        RequestError::BadCap("max_tokens")
    );
    assert_eq!(
        err(r#"{"model":"a","max_tokens":1.5}"#),
        RequestError::BadCap("max_tokens")
    );
    assert!(matches!(err("[1,2]"), RequestError::NotJson(_)));
    assert!(matches!(err("{\"model\":"), RequestError::NotJson(_)));
    // Nested objects may repeat keys of the top level.
    assert!(LlmRequest::parse(br#"{"model":"a","metadata":{"model":"b"}}"#).is_ok());
}

#[test]
fn usage_is_requested_only_from_streaming_openai_chat_that_did_not_ask() {
    // Inserted before the first key; every other byte kept (key order,
    // spacing, an integer too large for 64 bits).
    let original = br#" { "stream": true, "model":"a", "seed": 123456789012345678901234567890 }"#;
    let r = LlmRequest::parse(original).unwrap();
    let sent = r.rewrite_for(Api::OpenAiChat, original).unwrap();
    assert_eq!(
        std::str::from_utf8(&sent).unwrap(),
        r#" {"stream_options":{"include_usage":true}, "stream": true, "model":"a", "seed": 123456789012345678901234567890 }"#
    );
    assert_eq!(r.rewrite_for(Api::AnthropicMessages, original), None);
    assert_eq!(r.rewrite_for(Api::OpenAiResponses, original), None);
    let asked = LlmRequest::parse(
        br#"{"model":"a","stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .unwrap();
    assert_eq!(asked.rewrite_for(Api::OpenAiChat, b"{}"), None);
    let other = LlmRequest::parse(
        br#"{"model":"a","stream":true,"stream_options":{"include_obfuscation":false}}"#,
    )
    .unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&other.rewrite_for(Api::OpenAiChat, b"{}").unwrap()).unwrap();
    assert_eq!(
        body["stream_options"],
        serde_json::json!({"include_obfuscation": false, "include_usage": true})
    );
    assert_eq!(
        LlmRequest::parse(br#"{"model":"a"}"#)
            .unwrap()
            .rewrite_for(Api::OpenAiChat, br#"{"model":"a"}"#),
        None
    );
    assert_eq!(
        Api::from_path("/v1/chat/completions"),
        Some(Api::OpenAiChat)
    );
    assert_eq!(
        Api::from_path("/openai/v1/responses/"),
        Some(Api::OpenAiResponses)
    );
    assert_eq!(Api::from_path("/v1/messages"), Some(Api::AnthropicMessages));
    assert_eq!(Api::from_path("/v1/models"), None);
    assert_eq!(
        Api::from_path("/v1/threads/t_1/messages"),
        None,
        "OpenAI assistants"
    );
}
