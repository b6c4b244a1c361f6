//! Backoff: every delay lies in [hint, cap] and at most max_retries are given;
//! the retry budget stays within [0, max] tokens.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ratebound_core::backoff::{Backoff, GiveUp, Jitter, RetryBudget, RetryBudgetState, Step};
use ratebound_core::{Duration, Instant};
use ratebound_fuzz::{Dt, T0};

#[derive(Arbitrary, Debug)]
struct Input {
    initial: u64,
    cap: u64,
    num: u32,
    den: u32,
    jitter: u8,
    max_retries: Option<u8>,
    max_elapsed: Option<u64>,
    seed: u64,
    budget: (u32, u32),
    steps: Vec<(Dt, Option<u64>, bool)>,
}

fuzz_target!(|inp: Input| {
    let jitter = [Jitter::None, Jitter::Full, Jitter::Equal, Jitter::Decorrelated][usize::from(inp.jitter % 4)];
    let Ok(b) = Backoff::new(Duration::from_micros(inp.initial), Duration::from_micros(inp.cap)) else { return };
    let Ok(b) = b.with_factor(inp.num, inp.den) else { return };
    let mut b = b.with_jitter(jitter).without_max_retries();
    if let Some(m) = inp.max_retries {
        b = b.with_max_retries(u32::from(m));
    }
    if let Some(e) = inp.max_elapsed {
        b = b.with_max_elapsed(Duration::from_micros(e));
    }
    let rb = RetryBudget::new(inp.budget.0 % 1_000 + 1, inp.budget.1 % 1_000 + 1).ok();
    let mut rbs = RetryBudgetState::default();
    let mut now = Instant::from_micros(T0);
    let mut st = b.start(now, inp.seed);
    let mut retries = 0u32;
    for &(dt, hint, success) in inp.steps.iter().take(100) {
        now = dt.apply(now);
        if let Some(rb) = &rb {
            if success {
                rb.on_success(&mut rbs);
            }
            assert!(rb.tokens_milli(&rbs) <= 1_000_000 * 1_000);
        }
        let hint = hint.map(Duration::from_micros);
        let step = match &rb {
            Some(rb) => b.next_with_budget(&mut st, rb, &mut rbs, now, hint),
            None => b.next(&mut st, now, hint),
        };
        match step {
            Step::Retry { at, delay, attempt } => {
                retries += 1;
                assert_eq!(attempt, retries);
                assert!(delay <= b.cap());
                if let Some(h) = hint {
                    assert!(delay >= h);
                }
                assert_eq!(at, now + delay);
                if let Some(m) = inp.max_retries {
                    assert!(retries <= u32::from(m));
                }
            }
            Step::GiveUp(GiveUp::HintBeyondCap { hint: h }) => assert!(h > b.cap()),
            Step::GiveUp(GiveUp::MaxRetries) => assert_eq!(Some(retries), inp.max_retries.map(u32::from)),
            Step::GiveUp(GiveUp::RetryBudget) => assert!(rb.is_some_and(|r| !r.can_retry(&rbs))),
            Step::GiveUp(GiveUp::MaxElapsed) => assert!(inp.max_elapsed.is_some()),
        }
    }
    // The iterator view never panics and stays within the cap.
    for d in b.delays(inp.seed).take(50) {
        assert!(d <= b.cap());
    }
});
