//! Config, state and results of `ratebound/budget` and `ratebound/model-quota`
//! as flat arrays of JS numbers (every integer below 2^53), in place of a
//! general JSON codec: the modules stay small, and the JS side
//! (`node/src/budget-codec.js`) turns them into objects. Each layout is written down where it is
//! encoded (`budget_layout.rs`, `model_quota.rs`).

use alloc::string::String;
use alloc::vec::Vec;

use ratebound_core::ConfigError;
use wasm_bindgen::JsValue;

use crate::valid;

/// Reads a flat array front to back; `None` once it runs out or at a value
/// that is not an integer in `0..=2^53 − 1`.
pub(crate) struct Reader<'a>(core::slice::Iter<'a, f64>);

impl<'a> Reader<'a> {
    pub(crate) fn new(v: &'a [f64]) -> Self {
        Reader(v.iter())
    }
    /// The next value, an integer in `0..=2^53 − 1`.
    pub(crate) fn int(&mut self) -> Option<u64> {
        let x = *self.0.next()?;
        valid(x).then_some(x as u64)
    }
    /// The next value, an integer or `-1` (none).
    pub(crate) fn opt(&mut self) -> Option<Option<u64>> {
        let x = *self.0.next()?;
        if x == -1.0 {
            return Some(None);
        }
        valid(x).then_some(Some(x as u64))
    }
    /// The next value, a signed integer within ±2^53 (budget configs' UTC offset).
    #[cfg(feature = "budget")]
    pub(crate) fn signed(&mut self) -> Option<i64> {
        let x = *self.0.next()?;
        (x.abs() <= 9_007_199_254_740_991.0 && (x as i64) as f64 == x).then_some(x as i64)
    }
    /// True when every value was read.
    pub(crate) fn done(&self) -> bool {
        self.0.len() == 0
    }
}

/// Appends integers to a flat array.
#[derive(Default)]
pub(crate) struct Out(pub(crate) Vec<f64>);

impl Out {
    pub(crate) fn int(&mut self, x: u64) -> &mut Self {
        self.0.push(x as f64);
        self
    }
    pub(crate) fn opt(&mut self, x: Option<u64>) -> &mut Self {
        self.0.push(x.map_or(-1.0, |x| x as f64));
        self
    }
    pub(crate) fn flag(&mut self, b: bool) -> &mut Self {
        self.0.push(f64::from(u8::from(b)));
        self
    }
}

/// A config error as the JS side reads it: `field`, a tab, then core's
/// message (`invalid config: …`), assembled from core's pieces without
/// `core::fmt`.
pub(crate) fn config_error(e: ConfigError) -> JsValue {
    let field = e.field();
    let (before, number, after) = e.message_parts();
    let mut s = String::new();
    for part in [field, "\tinvalid config: `", field, "`", before] {
        s.push_str(part);
    }
    if let Some(n) = number {
        decimal(&mut s, n);
    }
    s.push_str(after);
    JsValue::from_str(&s)
}

/// A malformed flat config (the JS codec writes them; this is for bugs).
pub(crate) fn malformed() -> JsValue {
    JsValue::from_str("config\tinvalid config: malformed")
}

fn decimal(s: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for &d in digits.get(i..).unwrap_or(&[]) {
        s.push(char::from(d));
    }
}
