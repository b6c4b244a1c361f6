//! Retry backoff and the retry budget.

use crate::{int, valid};
use ratebound_core::backoff::{
    Backoff as CoreBackoff, BackoffState, RetryBudget as CoreBudget, RetryBudgetState, Step,
};
use ratebound_core::wire;
use ratebound_core::{Duration, Instant};

/// A backoff policy with one running sequence's state.
///
/// `next` returns `1` (retry; details in `out`: `[at, delay, attempt, 0]`)
/// or `0` (give up; `out[3]` says why: 1 max retries, 2 max elapsed,
/// 3 hint beyond the cap, 4 retry budget).
pub struct Backoff {
    cfg: CoreBackoff,
    st: BackoffState,
    out: [f64; 4],
}

impl Backoff {
    /// `initial_us` growing by `factor_num / factor_den` up to `cap_us`;
    /// `jitter` 0 none, 1 full, 2 equal, 3 decorrelated; `max_retries` < 0
    /// for no limit; `max_elapsed_us` 0 for no limit. A bad config gives the
    /// offending field's name.
    pub fn new(
        initial_us: f64,
        cap_us: f64,
        factor_num: u32,
        factor_den: u32,
        jitter: u32,
        max_retries: f64,
        max_elapsed_us: f64,
    ) -> Result<Backoff, &'static str> {
        let jitter = wire::jitter_from_code(jitter).ok_or("jitter")?;
        let mut cfg = CoreBackoff::new(
            Duration::from_micros(int(initial_us)),
            Duration::from_micros(int(cap_us)),
        )
        .map_err(|e| e.field())?
        .with_factor(factor_num, factor_den)
        .map_err(|e| e.field())?
        .with_jitter(jitter);
        cfg = if max_retries < 0.0 {
            cfg.without_max_retries()
        } else {
            cfg.with_max_retries(int(max_retries).min(u64::from(u32::MAX)) as u32)
        };
        if max_elapsed_us > 0.0 {
            cfg = cfg.with_max_elapsed(Duration::from_micros(int(max_elapsed_us)));
        }
        Ok(Backoff {
            cfg,
            st: BackoffState::default(),
            out: [0.0; 4],
        })
    }

    /// Start a new sequence at `now_us` with a random `seed` (an integer).
    pub fn start(&mut self, now_us: f64, seed: f64) {
        self.st = self.cfg.start(Instant::from_micros(int(now_us)), int(seed));
    }

    /// The next step after a failure at `now_us`; `hint_us` < 0 for no
    /// server hint.
    pub fn next(&mut self, now_us: f64, hint_us: f64) -> i32 {
        let step = self.cfg.next(
            &mut self.st,
            Instant::from_micros(int(now_us)),
            hint(hint_us),
        );
        self.record(step)
    }

    /// [`next`](Backoff::next), recording the failure in `budget` first; a
    /// refusal gives up (reason 4).
    pub fn next_with_budget(&mut self, now_us: f64, hint_us: f64, budget: &mut RetryBudget) -> i32 {
        let step = self.cfg.next_with_budget(
            &mut self.st,
            &budget.cfg,
            &mut budget.st,
            Instant::from_micros(int(now_us)),
            hint(hint_us),
        );
        self.record(step)
    }

    fn record(&mut self, step: Step) -> i32 {
        match step {
            Step::Retry { at, delay, attempt } => {
                self.out = [
                    at.as_micros() as f64,
                    delay.as_micros() as f64,
                    f64::from(attempt),
                    0.0,
                ];
                1
            }
            Step::GiveUp(why) => {
                let code = f64::from(wire::give_up_code(why));
                self.out = [0.0, 0.0, f64::from(self.st.attempt), code];
                0
            }
        }
    }

    /// Retries handed out in this sequence.
    pub fn attempt(&self) -> u32 {
        self.st.attempt
    }

    /// Address of `[at, delay, attempt, reason]` for the last `next` (f64s).
    pub fn out_ptr(&self) -> *const f64 {
        self.out.as_ptr()
    }
}

fn hint(us: f64) -> Option<Duration> {
    (us >= 0.0).then(|| Duration::from_micros(int(us)))
}

/// A gRPC-style retry budget (token bucket in thousandths): failures spend a
/// token, successes earn back `ratio`; retries stop below half.
pub struct RetryBudget {
    cfg: CoreBudget,
    st: RetryBudgetState,
}

impl RetryBudget {
    /// `max_tokens` (1 to 1000), `ratio_milli` earned per success (1 to 1000).
    pub fn new(max_tokens: u32, ratio_milli: u32) -> Result<RetryBudget, &'static str> {
        Ok(RetryBudget {
            cfg: CoreBudget::new(max_tokens, ratio_milli).map_err(|e| e.field())?,
            st: RetryBudgetState::default(),
        })
    }
    /// True when a retry is allowed now.
    pub fn can_retry(&self) -> bool {
        self.cfg.can_retry(&self.st)
    }
    /// Record a failure; true when a retry is still allowed.
    pub fn on_failure(&mut self) -> bool {
        self.cfg.on_failure(&mut self.st)
    }
    /// Record a success.
    pub fn on_success(&mut self) {
        self.cfg.on_success(&mut self.st)
    }
    /// Tokens left, in thousandths.
    pub fn tokens_milli(&self) -> f64 {
        self.cfg.tokens_milli(&self.st) as f64
    }
    /// The state (thousandths of a token spent).
    pub fn export_state(&self) -> f64 {
        self.st.spent_milli as f64
    }
    /// Restore `exportState`; false (unchanged) if not a safe integer.
    pub fn import_state(&mut self, spent_milli: f64) -> bool {
        if !valid(spent_milli) {
            return false;
        }
        self.st = RetryBudgetState {
            spent_milli: int(spent_milli),
        };
        true
    }
}
