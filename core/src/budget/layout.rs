//! How a state's windows follow a budget's limits across config changes:
//! each window records its limit's kind (what it counts, exactly) and a
//! digest of its max and thresholds; [`Budget::sync`] lays a state's
//! windows out by kind and re-reads those whose digest changed.

use super::ops::USED_CAP;
use super::{
    Budget, BudgetConfig, Dimension, Hold, Horizon, StateView, WindowLimit, WindowUsage,
    MAX_HORIZON_US, MAX_LIMITS,
};
use crate::{ConfigError, Duration};

/// What a limit counts, exactly: its dimension code × 2^50 + its horizon
/// in µs (0 for a calendar month); below 2^52 and never 0.
pub(super) fn kind(l: &WindowLimit) -> u64 {
    (crate::wire::dimension_code(l.dimension) << 50) | horizon_us(l.horizon)
}

/// A horizon's length in µs, 0 for a calendar month (as kinds and digests
/// hold it).
fn horizon_us(h: Horizon) -> u64 {
    match h {
        Horizon::Fixed(d) => d.as_micros(),
        Horizon::CalendarMonth => 0,
    }
}

/// The horizon a kind records (the inverse of [`horizon_us`]).
fn horizon_of(kind: u64) -> Horizon {
    match kind & MAX_HORIZON_US {
        0 => Horizon::CalendarMonth,
        us => Horizon::Fixed(Duration::from_micros(us)),
    }
}

/// FNV-1a over what a window's alert flags depend on (its limit's
/// dimension, horizon and max; the thresholds), kept below 2^53 so that
/// Lua and JS hold it exactly, and never 0 (a window no limit wrote).
pub(super) fn digest(l: &WindowLimit, thresholds: &[u16]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: u64| {
        for b in v.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(crate::wire::dimension_code(l.dimension));
    eat(horizon_us(l.horizon));
    eat(l.max);
    for &bp in thresholds {
        eat(u64::from(bp));
    }
    (h & crate::MAX_SAFE_INTEGER) | 1
}

/// What the live holds hold in `d` (capped at 2^52, as usage is).
fn held(holds: &[Hold], d: Dimension) -> u64 {
    holds
        .iter()
        .filter(|h| !h.lapsed)
        .fold(0u64, |s, h| s.saturating_add(h.usage.get(d)))
        .min(USED_CAP)
}

impl Budget {
    /// This budget with its config changed to `config`, keeping every
    /// state written under it.
    ///
    /// A state keeps its usage, holds and throttling, and the new limits
    /// read them: raising a limit grants the difference at once, lowering
    /// one below what was used denies until the window rolls. Each window
    /// records what its limit counts (dimension and horizon), so windows
    /// follow their limits wherever the new config puts them; a limit
    /// added counts the live holds at once and usage from the change on
    /// (what its window used before is not known); a limit removed stops
    /// deciding, its window kept in a spare slot while one is free (twelve
    /// in all; in Redis the key lives until that window ends), so that
    /// adding it back finds the usage it had then. A state written before
    /// windows recorded their limits is read, on its first operation, by
    /// the config the budget was first made with (the first of its
    /// `reconfigure` chain): a restart of a service with such states must
    /// start with the config that wrote them.
    ///
    /// Alerts are re-evaluated for the limits whose max or thresholds
    /// changed: each window keeps a digest of the max and thresholds that
    /// last wrote it, and on the state's first operation under different
    /// ones its alert flags are cleared, as if it had started under the
    /// new config with the usage it has — so the next charge of its
    /// dimension fires the highest threshold its usage has reached under
    /// the new limit (once), and a limit-hit fires again when the limit is
    /// reached or denies. Windows of unchanged limits keep their flags.
    ///
    /// States are not rewritten here: each is re-read on its first
    /// operation, so a store of many budgets (in memory or in Redis)
    /// changes config in O(1), and a budget made anew with another config
    /// (a restart) reads its states the same way.
    ///
    /// Errors, changing nothing, when `config` is invalid or has another
    /// UTC offset (windows would start elsewhere; see
    /// [`CarryOver`](crate::CarryOver)).
    ///
    /// ```
    /// use ratebound_core::budget::{Budget, BudgetConfig, BudgetState, Dimension, Horizon, Usage};
    /// use ratebound_core::Instant;
    ///
    /// let old = Budget::new(BudgetConfig::new().tokens_per_minute(1_000).alert_threshold_bp(8_000))?;
    /// let mut st = BudgetState::<4>::default();
    /// let t = Instant::from_secs(1_800_000_000);
    /// assert_eq!(old.record(&mut st, t, Usage::request(900, 0)).len(), 1); // the 80 % alert
    ///
    /// // Raised to 2 000: 1 100 left, and the 80 % alert fires again at 1 600.
    /// let new = old.reconfigure(BudgetConfig::new().tokens_per_minute(2_000).alert_threshold_bp(8_000))?;
    /// assert_eq!(new.status(&st, t).limits[0].remaining(), 1_100);
    /// assert!(new.record(&mut st, t, Usage::request(600, 0)).is_empty());
    /// assert_eq!(new.record(&mut st, t, Usage::request(100, 0))[0].threshold_bp, 8_000);
    ///
    /// // Another UTC offset would move every window: refused.
    /// assert!(new.reconfigure(BudgetConfig::new().tokens_per_minute(2_000).utc_offset_secs(3_600)).is_err());
    /// # Ok::<(), Box<dyn core::error::Error>>(())
    /// ```
    pub fn reconfigure(&self, config: BudgetConfig) -> Result<Budget, ConfigError> {
        use crate::CarryOver;
        let mut new = Budget::new(config)?;
        new.carries_over_from(self)?;
        new.root = self.root;
        Ok(new)
    }

    /// Limit `i`'s digest and kind, which each window records (see
    /// [`wire::budget_limit_tags`](crate::wire::budget_limit_tags)); 0 past
    /// the limits.
    pub(crate) fn digest(&self, i: usize) -> u64 {
        self.digests.get(i).copied().unwrap_or(0)
    }
    pub(crate) fn kind(&self, i: usize) -> u64 {
        self.kinds.get(i).copied().unwrap_or(0)
    }
    /// The tags of limit `i` of the config this budget was first made with
    /// (see [`wire::budget_root_tags`](crate::wire::budget_root_tags)).
    pub(crate) fn root(&self, i: usize) -> (u64, u64) {
        self.root.get(i).copied().unwrap_or((0, 0))
    }

    /// True when a window was written under another limit or thresholds,
    /// or sits where another limit is: [`sync`](Self::sync) re-reads it.
    pub(super) fn stale(&self, st: &StateView) -> bool {
        self.limits()
            .zip(st.windows.iter())
            .any(|((i, _), w)| w.limit != self.digest(i) || (w.kind != 0 && w.kind != self.kind(i)))
    }

    /// Put each limit's window at the limit's position, matching them by
    /// kind (a config has at most one limit of each kind). A window of kind
    /// 0 is either empty — the limit at its position, if any — or written
    /// before windows recorded their limits: then by the limit at its
    /// position in the config this budget was first made with (the root of
    /// its [`reconfigure`](Budget::reconfigure) chain), whose tags it takes.
    /// A limit with no window gets an empty one; the windows no limit takes
    /// (and some limit wrote, and that have not ended) follow in the slots
    /// left, in their order, so a limit removed and added back finds the
    /// window it had while a slot is left for it.
    ///
    /// Windows past the configured limits are marked not kept up to date
    /// from here on (no digest): re-read when a config has their limit again.
    pub(super) fn lay_out(&self, st: &mut StateView, now: u64) {
        self.match_windows(st, now);
        for w in st.windows.iter_mut().skip(self.config.limits.len()) {
            w.limit = 0;
        }
    }

    fn match_windows(&self, st: &mut StateView, now: u64) {
        let n = self.config.limits.len();
        for (i, w) in st.windows.iter_mut().enumerate() {
            if w.kind != 0 {
                continue;
            }
            if w.start != 0 || w.used != 0 {
                (w.kind, w.limit) = self.root(i);
            } else if i < n {
                w.kind = self.kind(i);
            }
        }
        if st
            .windows
            .iter()
            .enumerate()
            .take(n)
            .all(|(i, w)| w.kind == self.kind(i))
        {
            return;
        }
        let old = st.windows;
        let mut taken = [false; MAX_LIMITS];
        let mut laid = [WindowUsage::default(); MAX_LIMITS];
        for (i, slot) in laid.iter_mut().enumerate().take(n) {
            let kind = self.kind(i);
            let found = old
                .iter()
                .zip(taken.iter_mut())
                .find(|(w, t)| !**t && w.kind == kind);
            // (Kinds are unique in a config, so "the first" is "the".)
            *slot = match found {
                Some((w, t)) => {
                    *t = true;
                    *w
                }
                None => WindowUsage {
                    kind,
                    ..WindowUsage::default()
                },
            };
        }
        // Kept: windows some limit wrote that have not ended (a limit added
        // back after its window ends starts a new one anyway).
        let left = old
            .iter()
            .zip(taken.iter())
            .filter(|(w, t)| {
                !**t && w.kind != 0 && (w.start != 0 || w.used != 0) && self.window_end(w) > now
            })
            .map(|(w, _)| *w);
        for (slot, w) in laid.iter_mut().skip(n).zip(left) {
            *slot = w;
        }
        st.windows = laid;
    }

    /// The end of a window by its recorded kind (its start's window).
    fn window_end(&self, w: &WindowUsage) -> u64 {
        self.bounds_of(horizon_of(w.kind), w.start).1
    }

    /// Re-read each configured window written under another max or
    /// thresholds (or none: a limit added since, or one kept while absent):
    /// it holds what the live holds hold, and its alert flags start again
    /// under this config.
    pub(super) fn reread_changed(&self, st: &mut StateView) {
        let (holds, windows) = (&st.holds, &mut st.windows);
        for ((i, l), w) in self
            .config
            .limits
            .iter()
            .enumerate()
            .zip(windows.iter_mut())
        {
            if w.limit != self.digest(i) {
                w.reserved = held(holds, l.dimension);
                w.fired = 0;
                w.limit = self.digest(i);
            }
        }
    }
}
