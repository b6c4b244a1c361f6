//! What an OpenAI- or Anthropic-style request body asks for: the model, the
//! output cap, whether it streams, and how much prompt it carries.

use bytes::Bytes;
use ratebound_core::budget::llm::Estimate;
pub use ratebound_core::budget::llm::INLINE_DATA_CHARS;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Which API a request is for, by its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// OpenAI `/chat/completions` or `/completions`.
    OpenAiChat,
    /// OpenAI `/responses`.
    OpenAiResponses,
    /// Anthropic `/messages`.
    AnthropicMessages,
}

impl Api {
    /// The API of a request path (by its last segments), `None` for others.
    pub fn from_path(path: &str) -> Option<Api> {
        let p = path.trim_end_matches('/');
        if p.ends_with("/chat/completions") || p.ends_with("/v1/completions") {
            Some(Api::OpenAiChat)
        } else if p.ends_with("/v1/responses") {
            Some(Api::OpenAiResponses)
        } else if p.ends_with("/v1/messages") {
            // Not `/v1/threads/{id}/messages` (OpenAI's assistants).
            Some(Api::AnthropicMessages)
        } else {
            None
        }
    }
}

/// A request body the layer refuses (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not a JSON object.
    #[error("the body is not a JSON object: {0}")]
    NotJson(String),
    /// A top-level key appears twice: upstreams differ on which one they read.
    #[error("the key {0:?} appears more than once")]
    DuplicateKey(String),
    /// No `"model"` string.
    #[error("expected a \"model\" string")]
    MissingModel,
    /// An output cap that is not a non-negative integer.
    #[error("{0:?} must be a non-negative integer")]
    BadCap(&'static str),
}

/// The parts of a request body that budgets need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmRequest {
    /// The model.
    pub model: String,
    /// `"stream": true`.
    pub stream: bool,
    /// The largest of `max_completion_tokens`, `max_output_tokens` and
    /// `max_tokens` given (an upstream may honour any of them).
    pub max_output: Option<u64>,
    /// Characters of prompt text: every string in the body but `model`
    /// (inline `data:` URLs count [`INLINE_DATA_CHARS`]).
    pub prompt_chars: u64,
    /// Messages (`messages`, or the items of an `input` array).
    pub messages: u64,
    /// Completions asked for (`n` or `best_of`, the larger; at least 1):
    /// each may write the whole output cap.
    pub choices: u64,
    body: Map<String, Value>,
}

struct Unique(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Unique;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Unique, A::Error> {
                let mut out = Map::new();
                while let Some(k) = m.next_key::<String>()? {
                    let v: Value = m.next_value()?;
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format_args!("duplicate:{k}")));
                    }
                    out.insert(k, v);
                }
                Ok(Unique(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Fields whose string may be a `data:…;base64,` URL of an image or file.
const URL_FIELDS: [&str; 3] = ["url", "image_url", "file_data"];

/// Only base64 characters (padding and line breaks included).
fn is_base64(s: &str) -> bool {
    s.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_' | b'\n' | b'\r')
    })
}

/// A `data:<type>;base64,<base64>` URL.
fn is_data_url(s: &str) -> bool {
    s.strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .is_some_and(|(head, payload)| head.ends_with(";base64") && is_base64(payload))
}

/// Base64 data counts as [`INLINE_DATA_CHARS`], not by its length, where
/// the APIs put files: a data URL in `url` / `image_url` / `file_data`, the
/// `data` of an Anthropic `{"type": "base64"}` source, the `data` of
/// OpenAI's `input_audio` — and only when it is base64. Any other string
/// (a prompt that looks like a data URL included) counts by its length.
fn count_chars(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.chars().count() as u64,
        Value::Array(a) => a.iter().map(count_chars).fold(0, u64::saturating_add),
        Value::Object(o) => {
            let base64_source = o.get("type").and_then(Value::as_str) == Some("base64");
            o.iter()
                .map(|(k, v)| match v {
                    Value::String(s) if URL_FIELDS.contains(&k.as_str()) && is_data_url(s) => {
                        INLINE_DATA_CHARS
                    }
                    Value::String(s) if base64_source && k == "data" && is_base64(s) => {
                        INLINE_DATA_CHARS
                    }
                    Value::Object(a) if k == "input_audio" => a
                        .iter()
                        .map(|(k, v)| match v {
                            Value::String(s) if k == "data" && is_base64(s) => INLINE_DATA_CHARS,
                            _ => count_chars(v),
                        })
                        .fold(0, u64::saturating_add),
                    _ => count_chars(v),
                })
                .fold(0, u64::saturating_add)
        }
        _ => 0,
    }
}

impl LlmRequest {
    /// Parse a body. Refuses non-objects, repeated top-level keys, a
    /// missing model and malformed output caps.
    pub fn parse(body: &[u8]) -> Result<LlmRequest, RequestError> {
        let Unique(body) = serde_json::from_slice(body).map_err(|e| {
            let text = e.to_string();
            match text.strip_prefix("duplicate:") {
                Some(rest) => RequestError::DuplicateKey(
                    rest.split(" at line").next().unwrap_or(rest).to_owned(),
                ),
                None => RequestError::NotJson(text),
            }
        })?;
        let model = match body.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            _ => return Err(RequestError::MissingModel),
        };
        let mut max_output = None;
        for name in ["max_completion_tokens", "max_output_tokens", "max_tokens"] {
            match body.get(name) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let n = v.as_u64().ok_or(RequestError::BadCap(name))?;
                    max_output = Some(max_output.map_or(n, |m: u64| m.max(n)));
                }
            }
        }
        // `n` (or `best_of`) choices each may write the whole cap.
        let choices = ["n", "best_of"]
            .iter()
            .filter_map(|k| body.get(*k).and_then(Value::as_u64))
            .max()
            .unwrap_or(1)
            .max(1);
        let prompt_chars = body
            .iter()
            .filter(|(k, _)| k.as_str() != "model")
            .map(|(_, v)| count_chars(v))
            .fold(0, u64::saturating_add);
        let messages = match (body.get("messages"), body.get("input")) {
            (Some(Value::Array(m)), _) | (None, Some(Value::Array(m))) => m.len() as u64,
            (None, Some(Value::String(_))) => 1,
            _ => 0,
        };
        Ok(LlmRequest {
            model,
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            max_output,
            prompt_chars,
            messages,
            choices,
            body,
        })
    }

    /// The parsed body (its top level), e.g. for a tokenizer.
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The reservation's estimate: the prompt, and the output cap (or
    /// `default_output` when the request set none) for each of its choices.
    pub fn estimate(&self, default_output: u64) -> Estimate {
        let per_choice = self.max_output.unwrap_or(default_output);
        Estimate::from_prompt(
            self.prompt_chars,
            self.messages,
            per_choice.saturating_mul(self.choices),
        )
    }

    /// The body to send upstream: `None` to send `original` unchanged;
    /// else, for a streaming OpenAI chat request that did not ask for
    /// usage, the body with `"stream_options": {"include_usage": true}` (so
    /// its last event carries the usage to settle with). Without
    /// `stream_options` the field is inserted before the original's first
    /// key, every other byte kept; a `stream_options` without it is
    /// rewritten through the parsed form.
    pub fn rewrite_for(&self, api: Api, original: &[u8]) -> Option<Bytes> {
        if api != Api::OpenAiChat || !self.stream {
            return None;
        }
        match self.body.get("stream_options") {
            None => {
                let open = original.iter().position(|&b| b == b'{')?;
                let mut out = Vec::with_capacity(original.len() + 48);
                out.extend_from_slice(&original[..=open]);
                out.extend_from_slice(br#""stream_options":{"include_usage":true}"#);
                if !self.body.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(&original[open + 1..]);
                Some(Bytes::from(out))
            }
            Some(o) if o.get("include_usage").and_then(Value::as_bool) == Some(true) => None,
            Some(_) => {
                let mut body = self.body.clone();
                let options = body
                    .entry("stream_options")
                    .or_insert_with(|| Value::Object(Map::new()));
                if !options.is_object() {
                    *options = Value::Object(Map::new());
                }
                if let Value::Object(o) = options {
                    o.insert("include_usage".into(), Value::Bool(true));
                }
                serde_json::to_vec(&body).ok().map(Bytes::from)
            }
        }
    }
}
