//! LLM calls in budget terms: what a call costs from its model's price,
//! what a request is estimated to use before it runs (the amount a
//! reservation holds), and what is charged when it ends — from the usage
//! the model reported, or by a fixed rule when it reported none.
//!
//! ```
//! use ratebound_core::budget::llm::{Ending, Estimate, Price, Tokens};
//! // $2.50 per million input tokens, $10 per million output tokens, in micro-USD.
//! let price = Price { input_per_million: 2_500_000, output_per_million: 10_000_000 };
//! assert_eq!(price.cost(1_000, 500), 7_500); // 2 500 + 5 000 µ$
//!
//! // 400 characters in 2 messages, output capped at 256 tokens.
//! let estimate = Estimate::from_prompt(400, 2, 256);
//! assert_eq!(estimate.input, 100 + 2 * 3 + 3);
//! assert_eq!(estimate.usage(&price).tokens, 109 + 256);
//!
//! // The model reported 98 + 40 tokens: exactly that is charged.
//! let used = Ending::Reported(Tokens { input: 98, output: 40 }).charge(&estimate, &price);
//! assert_eq!((used.requests, used.tokens, used.cost), (1, 138, price.cost(98, 40)));
//! ```

use super::{Usage, MAX_AMOUNT};

/// Prices are per this many tokens.
pub const PRICE_TOKENS: u64 = 1_000_000;
/// The prompt estimate's characters per token (OpenAI's rule of thumb for English).
pub const CHARS_PER_TOKEN: u64 = 4;
/// Tokens the estimate adds per message (role and separators).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens the estimate adds per request (the reply's priming).
pub const TOKENS_PER_REQUEST: u64 = 3;
/// Characters an inline file, image or audio clip (base64 data) counts as in
/// the prompt estimate: about 1 000 tokens, whatever its encoded size.
pub const INLINE_DATA_CHARS: u64 = 4_000;

/// Output tokens observed in streamed text: at least one per non-empty
/// delta, and at least one per [`CHARS_PER_TOKEN`] characters.
pub const fn observed_output(chars: u64, deltas: u64) -> u64 {
    let by_chars = chars.div_ceil(CHARS_PER_TOKEN);
    if deltas > by_chars {
        deltas
    } else {
        by_chars
    }
}

/// A model's price in integer micro-units of a currency per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Price {
    /// Per million prompt (input) tokens.
    pub input_per_million: u64,
    /// Per million completion (output) tokens.
    pub output_per_million: u64,
}

impl Price {
    /// What `input` prompt and `output` completion tokens cost, rounded up to
    /// a whole micro-unit (a call is never charged less than its price),
    /// capped at [`MAX_AMOUNT`].
    pub const fn cost(&self, input: u64, output: u64) -> u64 {
        let total = (input as u128 * self.input_per_million as u128)
            .saturating_add(output as u128 * self.output_per_million as u128);
        let micro = total.div_ceil(PRICE_TOKENS as u128);
        if micro > MAX_AMOUNT as u128 {
            MAX_AMOUNT
        } else {
            micro as u64
        }
    }
}

/// Tokens of one call, as the model reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Tokens {
    /// Prompt (input) tokens, cached ones included.
    pub input: u64,
    /// Completion (output) tokens, reasoning included.
    pub output: u64,
}

impl Tokens {
    /// One request of these tokens at `price`.
    pub const fn usage(&self, price: &Price) -> Usage {
        Usage::request(
            clamp(self.input.saturating_add(self.output)),
            price.cost(self.input, self.output),
        )
    }
}

const fn clamp(v: u64) -> u64 {
    if v > MAX_AMOUNT {
        MAX_AMOUNT
    } else {
        v
    }
}

/// What a request is expected to use before it runs: its prompt tokens and
/// the most output it asked for. A reservation holds [`Estimate::usage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Estimate {
    /// Prompt tokens (estimated, or counted by a tokenizer).
    pub input: u64,
    /// The output cap: the request's `max_tokens` (or a configured default).
    pub max_output: u64,
}

impl Estimate {
    /// The documented heuristic: `⌈chars / 4⌉ + 3 × messages + 3` prompt
    /// tokens, where `chars` counts the characters of the prompt's text.
    /// English text averages about four characters per token; code, other
    /// scripts and numbers use more tokens per character, so an estimate may
    /// fall short — settlement charges what the model reports either way.
    pub const fn from_prompt(chars: u64, messages: u64, max_output: u64) -> Estimate {
        let text = chars.div_ceil(CHARS_PER_TOKEN);
        let framing = messages.saturating_mul(TOKENS_PER_MESSAGE);
        Estimate {
            input: clamp(
                text.saturating_add(framing)
                    .saturating_add(TOKENS_PER_REQUEST),
            ),
            max_output: clamp(max_output),
        }
    }

    /// What the reservation holds: one request, prompt plus output cap in
    /// tokens, and their cost at `price`.
    pub const fn usage(&self, price: &Price) -> Usage {
        Tokens {
            input: self.input,
            output: self.max_output,
        }
        .usage(price)
    }
}

/// How a call ended, which decides what it is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ending {
    /// The model reported its usage: exactly that is charged.
    Reported(Tokens),
    /// No answer (the service failed before responding) or an error status
    /// (≥ 400), which providers do not bill: the request is charged, no
    /// tokens, no cost.
    Failed,
    /// An answer began but no usage arrived: a stream cut off, the client
    /// gone mid-response, a body without usage. Charged: the prompt as
    /// reported (else as estimated) and the larger of the output cap and
    /// the output seen. Never less than what was observably used; the whole
    /// reservation when nothing was seen.
    Unreported {
        /// Prompt tokens, when the model reported them before it stopped
        /// (Anthropic's `message_start`).
        input: Option<u64>,
        /// Output tokens observed so far (counted or estimated from the
        /// text that reached the client).
        observed_output: u64,
    },
}

impl Ending {
    /// How a response with `status` ends before its body is read: an error
    /// status is [`Ending::Failed`]; `None` for a success, whose body says.
    pub const fn from_status(status: u16) -> Option<Ending> {
        if status >= 400 {
            Some(Ending::Failed)
        } else {
            None
        }
    }

    /// The usage to settle a reservation of `estimate` with.
    pub const fn charge(&self, estimate: &Estimate, price: &Price) -> Usage {
        match *self {
            Ending::Reported(t) => t.usage(price),
            Ending::Failed => Usage::request(0, 0),
            Ending::Unreported {
                input,
                observed_output,
            } => {
                let input = match input {
                    Some(i) => i,
                    None => estimate.input,
                };
                let output = if observed_output > estimate.max_output {
                    observed_output
                } else {
                    estimate.max_output
                };
                Tokens { input, output }.usage(price)
            }
        }
    }
}
