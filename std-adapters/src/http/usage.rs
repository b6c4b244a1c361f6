//! The usage an upstream reports, read from a JSON response or from the
//! events of a streamed (SSE) one as they pass.
//!
//! Read from `usage` (OpenAI chat/completions, responses and Anthropic
//! messages), `response.usage` (OpenAI responses events) and
//! `message.usage` (Anthropic `message_start`): prompt tokens are
//! `prompt_tokens`, else `input_tokens` plus Anthropic's
//! `cache_creation_input_tokens` and `cache_read_input_tokens`; output
//! tokens are `completion_tokens`, else `output_tokens`. A usage with output
//! tokens is final, except in Anthropic's `message_start` (which carries the
//! prompt and a placeholder output count).

use ratebound_core::budget::llm::{observed_output, Ending, Estimate, Tokens};
use serde_json::Value;

/// The longest SSE line or JSON body kept while reading usage; past it the
/// usage of that body is not read (the call is charged as unreported).
pub const MAX_SCANNED: usize = 4 << 20;

/// What has been seen of a response so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageScan {
    sse: bool,
    buf: Vec<u8>,
    overflow: bool,
    input: Option<u64>,
    output: Option<u64>,
    text_chars: u64,
    text_deltas: u64,
}

fn num(o: &Value, k: &str) -> Option<u64> {
    o.get(k).and_then(Value::as_u64)
}

impl UsageScan {
    /// A scan of an event stream (`true`) or of a JSON body (`false`).
    pub fn new(sse: bool) -> Self {
        UsageScan {
            sse,
            ..Default::default()
        }
    }

    /// Feed the next bytes of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.sse {
            if self.buf.len() + chunk.len() > MAX_SCANNED {
                self.overflow = true;
                self.buf = Vec::new();
            } else if !self.overflow {
                self.buf.extend_from_slice(chunk);
            }
            return;
        }
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            if self.overflow || self.buf.len() + i > MAX_SCANNED {
                // An over-long line is skipped to its end.
                self.overflow = false;
                self.buf.clear();
            } else {
                self.buf.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.buf);
                self.line(&line);
            }
            rest = &rest[i + 1..];
        }
        if self.buf.len() + rest.len() > MAX_SCANNED {
            self.overflow = true;
            self.buf.clear();
        } else if !self.overflow {
            self.buf.extend_from_slice(rest);
        }
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        if let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) {
            self.event(&v);
        }
    }

    fn event(&mut self, v: &Value) {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("");
        // Text that reached the client: chat deltas, responses and Anthropic deltas.
        let mut text = |s: Option<&str>| {
            if let Some(s) = s.filter(|s| !s.is_empty()) {
                self.text_chars = self.text_chars.saturating_add(s.chars().count() as u64);
                self.text_deltas += 1;
            }
        };
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            for c in choices {
                text(c.pointer("/delta/content").and_then(Value::as_str));
                text(c.get("text").and_then(Value::as_str));
            }
        }
        match kind {
            "response.output_text.delta" => text(v.get("delta").and_then(Value::as_str)),
            "content_block_delta" => text(v.pointer("/delta/text").and_then(Value::as_str)),
            _ => {}
        }
        let usage = v
            .get("usage")
            .or_else(|| v.pointer("/response/usage"))
            .or_else(|| v.pointer("/message/usage"))
            .filter(|u| u.is_object());
        if let Some(u) = usage {
            self.usage(u, kind == "message_start");
        }
    }

    fn usage(&mut self, u: &Value, prompt_only: bool) {
        let input = num(u, "prompt_tokens").or_else(|| {
            let base = num(u, "input_tokens")?;
            Some(
                base.saturating_add(num(u, "cache_creation_input_tokens").unwrap_or(0))
                    .saturating_add(num(u, "cache_read_input_tokens").unwrap_or(0)),
            )
        });
        if input.is_some() {
            self.input = input;
        }
        if !prompt_only {
            if let Some(o) = num(u, "completion_tokens").or_else(|| num(u, "output_tokens")) {
                self.output = Some(o);
            }
        }
    }

    /// The body ended: read a JSON body's usage.
    pub fn finish(&mut self) {
        if self.sse {
            let rest = std::mem::take(&mut self.buf);
            if !self.overflow && !rest.is_empty() {
                self.line(&rest);
            }
        } else if !self.overflow {
            if let Ok(v) = serde_json::from_slice::<Value>(&self.buf) {
                self.event(&v);
            }
            self.buf = Vec::new();
        }
    }

    /// Output tokens observed in the text that passed (core's
    /// [`observed_output`]).
    pub fn observed_output(&self) -> u64 {
        observed_output(self.text_chars, self.text_deltas)
    }

    /// How the call ended, for settlement: the reported usage when the
    /// final usage was seen (a prompt count missing from it is taken from
    /// `estimate`), else unreported with what was seen.
    pub fn ending(&self, estimate: &Estimate) -> Ending {
        match self.output {
            Some(output) => Ending::Reported(Tokens {
                input: self.input.unwrap_or(estimate.input),
                output,
            }),
            None => Ending::Unreported {
                input: self.input,
                observed_output: self.observed_output(),
            },
        }
    }
}
