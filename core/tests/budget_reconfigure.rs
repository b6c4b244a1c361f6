//! A budget's config changed under live states: usage kept, holds counted
//! by every limit, alerts re-evaluated, shape changes refused — each as
//! `Budget::reconfigure` documents it.

use proptest::prelude::*;
use ratebound_core::budget::{
    Admission, AlertKind, Budget, BudgetConfig, BudgetState, Dimension, Horizon, Usage,
};
use ratebound_core::{ConfigError, Duration, Instant};

const T0: u64 = 1_800_000_000_000_000;

fn at(secs: u64) -> Instant {
    Instant::from_micros(T0 + secs * 1_000_000)
}

fn tokens(max: u64) -> BudgetConfig {
    BudgetConfig::new()
        .limit(Dimension::Tokens, Horizon::HOUR, max)
        .alert_threshold_bp(8_000)
}

fn threshold_alerts(alerts: &[ratebound_core::budget::Alert]) -> usize {
    alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Threshold)
        .count()
}

proptest! {
    /// "A state keeps its usage … and the new limits read them": what is
    /// left after a change is the new max less the usage and holds kept.
    #[test]
    fn usage_and_holds_are_kept_under_any_new_max(
        old_max in 1u64..10_000, new_max in 1u64..10_000,
        used in 0u64..10_000, held in 0u64..10_000,
    ) {
        let old = Budget::new(tokens(old_max))?;
        let mut st = BudgetState::<4>::default();
        old.record(&mut st, at(0), Usage::of(Dimension::Tokens, used));
        let hold = old.reserve(&mut st, at(1), Usage::of(Dimension::Tokens, held.min(old_max)))?;
        let held = match hold.admission {
            Admission::Granted(r) => r.usage.tokens,
            Admission::Denied(_) => 0,
        };
        let new = old.reconfigure(tokens(new_max))?;
        let s = new.status(&st, at(3));
        prop_assert_eq!(s.limits[0].used, used);
        prop_assert_eq!(s.limits[0].reserved, held);
        prop_assert_eq!(s.limits[0].remaining(), new_max.saturating_sub(used + held));
        // And it admits exactly that much more.
        let room = new_max.saturating_sub(used + held);
        if room > 0 {
            let r = new.try_spend(&mut st, at(3), Usage::of(Dimension::Tokens, room))?;
            prop_assert!(r.denied.is_none());
        }
        if new_max > 0 {
            let r = new.try_spend(&mut st, at(3), Usage::of(Dimension::Tokens, 1))?;
            prop_assert!(r.denied.is_some(), "admitted past the new max");
        }
    }

    /// "The next charge of its dimension fires the highest threshold its
    /// usage has reached under the new limit (once) … Windows of unchanged
    /// limits keep their flags": after a change of max, the 80 % alert
    /// fires exactly once, at the first charge that leaves usage at or
    /// above 80 % of the new max, whatever fired before.
    #[test]
    fn the_threshold_alert_is_re_evaluated_against_the_new_max(
        old_max in 10u64..1_000, new_max in 10u64..1_000,
        before in 0u64..1_200, charges in proptest::collection::vec(1u64..200, 1..12),
    ) {
        let old = Budget::new(tokens(old_max))?;
        let mut st = BudgetState::<4>::default();
        let fired_before = threshold_alerts(&old.record(&mut st, at(0), Usage::of(Dimension::Tokens, before))) > 0;
        let new = old.reconfigure(tokens(new_max))?;
        let amount = (new_max * 8_000).div_ceil(10_000);
        // An unchanged limit keeps its flags; a changed one starts again.
        let mut flag = new_max == old_max && fired_before;
        let mut used = before;
        for (i, c) in charges.into_iter().enumerate() {
            used += c;
            let fired = threshold_alerts(&new.record(&mut st, at(2 + i as u64), Usage::of(Dimension::Tokens, c)));
            let expected = used >= amount && !flag;
            prop_assert_eq!(fired, usize::from(expected), "charge {} to {}", i, used);
            flag |= expected;
        }
    }
}

proptest! {
    /// Through any reorders, insertions and removals, every limit's
    /// `reserved` is what the live holds hold and its `used` what was
    /// charged to it while it was configured (one window: nothing rolls).
    #[test]
    fn windows_follow_their_limits_through_any_changes(
        ops in proptest::collection::vec((0u8..4, proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4), 1u64..50, any::<proptest::sample::Index>()), 1..40),
    ) {
        let pool = [
            (Dimension::Tokens, Horizon::DAY),
            (Dimension::Cost, Horizon::DAY),
            (Dimension::Requests, Horizon::DAY),
            (Dimension::Tokens, Horizon::Fixed(Duration::from_secs(7 * 86_400))),
        ];
        let cfg = |ls: &[usize]| {
            ls.iter().fold(BudgetConfig::new().hold_ttl(Duration::from_secs(86_400)), |c, &i| {
                c.limit(pool[i].0, pool[i].1, 1 << 40)
            })
        };
        let mut budget = Budget::new(cfg(&[0, 1, 2, 3]))?;
        let mut present = vec![0usize, 1, 2, 3];
        let mut st = BudgetState::<4>::default();
        let mut holds: Vec<(u64, Usage)> = Vec::new();
        let mut used = [0u64; 4];
        let t = Instant::from_secs(1_800_000_000); // a day's start: one window throughout
        for (op, mut subset, n, pick) in ops {
            let u = Usage { requests: 1, tokens: n, cost: 2 * n };
            match op {
                0 => {
                    if let Admission::Granted(r) = budget.reserve(&mut st, t, u)?.admission {
                        holds.push((r.id, r.usage));
                    }
                }
                1 if !holds.is_empty() => {
                    let (id, _) = holds.remove(pick.index(holds.len()));
                    let r = ratebound_core::budget::Reservation { id, usage: u, expires: t };
                    budget.settle(&mut st, t, r, u)?;
                    for &i in &present { used[i] += u.get(pool[i].0); }
                }
                2 => {
                    budget.record(&mut st, t, u);
                    for &i in &present { used[i] += u.get(pool[i].0); }
                }
                _ => {
                    // A random order of a random subset.
                    let k = pick.index(subset.len());
                    subset.rotate_left(k);
                    budget = budget.reconfigure(cfg(&subset))?;
                    present = subset;
                }
            }
            let s = budget.status(&st, t);
            for (l, &i) in s.limits.iter().zip(&present) {
                let held: u64 = holds.iter().map(|(_, h)| h.get(pool[i].0)).sum();
                prop_assert_eq!(l.reserved, held, "limit {} reserved", i);
                prop_assert_eq!(l.used, used[i], "limit {} used", i);
            }
        }
    }
}

/// "A limit-hit fires again when a limit is reached or denies": a denial
/// fires one limit-hit per window; after a raise, the next denial fires
/// another.
#[test]
fn a_limit_hit_fires_again_under_a_raised_max() {
    let old = Budget::new(tokens(100)).unwrap();
    let mut st = BudgetState::<4>::default();
    old.record(&mut st, at(0), Usage::of(Dimension::Tokens, 90));
    let hits = |a: &[ratebound_core::budget::Alert]| {
        a.iter().filter(|a| a.kind == AlertKind::LimitHit).count()
    };
    let denied = old
        .try_spend(&mut st, at(1), Usage::of(Dimension::Tokens, 20))
        .unwrap();
    assert!(denied.denied.is_some());
    assert_eq!(hits(&denied.alerts), 1);
    let again = old
        .try_spend(&mut st, at(2), Usage::of(Dimension::Tokens, 20))
        .unwrap();
    assert_eq!(hits(&again.alerts), 0, "once per window under one config");

    let new = old.reconfigure(tokens(200)).unwrap();
    let ok = new
        .try_spend(&mut st, at(4), Usage::of(Dimension::Tokens, 20))
        .unwrap();
    assert!(ok.denied.is_none(), "110 of 200 used");
    let denied = new
        .try_spend(&mut st, at(5), Usage::of(Dimension::Tokens, 100))
        .unwrap();
    assert!(denied.denied.is_some());
    assert_eq!(hits(&denied.alerts), 1, "re-armed by the raise");
    let again = new
        .try_spend(&mut st, at(6), Usage::of(Dimension::Tokens, 100))
        .unwrap();
    assert_eq!(hits(&again.alerts), 0);
}

/// "A limit added counts the live holds at once": a limit added by a
/// change counts the holds made before it, and their release frees
/// exactly that.
#[test]
fn an_added_limit_counts_the_holds_made_before_it() {
    let old = Budget::new(tokens(10_000)).unwrap();
    let mut st = BudgetState::<4>::default();
    let r = old
        .reserve(&mut st, at(0), Usage::request(3_000, 0))
        .unwrap();
    let Admission::Granted(hold) = r.admission else {
        panic!("denied")
    };
    let new = old
        .reconfigure(tokens(10_000).limit(Dimension::Tokens, Horizon::MINUTE, 4_000))
        .unwrap();
    // 3 000 held in the new minute limit: 1 000 more fits, 1 001 does not.
    assert!(new
        .peek(&st, at(2), Usage::of(Dimension::Tokens, 1_001))
        .unwrap()
        .is_some());
    assert!(new
        .peek(&st, at(2), Usage::of(Dimension::Tokens, 1_000))
        .unwrap()
        .is_none());
    let s = new.status(&st, at(2));
    assert_eq!(s.limits[1].reserved, 3_000);
    new.release(&mut st, at(3), hold).unwrap();
    let s = new.status(&st, at(3));
    assert_eq!((s.limits[0].reserved, s.limits[1].reserved), (0, 0));
    assert!(new
        .try_spend(&mut st, at(4), Usage::of(Dimension::Tokens, 4_000))
        .unwrap()
        .denied
        .is_none());
}

/// "Windows follow their limits wherever the new config puts them … a
/// limit removed … adding it back finds the usage it had then": usage
/// kept across a reorder, an insertion before, a removal and a re-add; a
/// new UTC offset or an invalid config is refused, naming the field.
#[test]
fn windows_follow_their_limits() {
    let minute = |max| (Dimension::Tokens, Horizon::MINUTE, max);
    let day = |max| (Dimension::Cost, Horizon::DAY, max);
    let cfg = |ls: &[(Dimension, Horizon, u64)]| {
        ls.iter()
            .fold(BudgetConfig::new(), |c, &(d, h, m)| c.limit(d, h, m))
    };
    let used =
        |b: &Budget, st: &BudgetState<4>, d: Dimension, h: Horizon| b.status(st, at(9)).used(d, h);
    let a = Budget::new(cfg(&[minute(1_000), day(5_000_000)])).unwrap();
    let mut st = BudgetState::<4>::default();
    a.record(&mut st, at(0), Usage::request(700, 2_000_000));
    // Reordered, with an hourly limit inserted first.
    let b = a
        .reconfigure(cfg(&[
            (Dimension::Tokens, Horizon::HOUR, 9_000),
            day(5_000_000),
            minute(1_000),
        ]))
        .unwrap();
    assert_eq!(used(&b, &st, Dimension::Tokens, Horizon::MINUTE), Some(700));
    assert_eq!(
        used(&b, &st, Dimension::Cost, Horizon::DAY),
        Some(2_000_000)
    );
    assert_eq!(used(&b, &st, Dimension::Tokens, Horizon::HOUR), Some(0));
    b.record(&mut st, at(1), Usage::request(100, 0));
    // The minute limit removed: it stops deciding.
    let c = b
        .reconfigure(cfg(&[
            (Dimension::Tokens, Horizon::HOUR, 9_000),
            day(5_000_000),
        ]))
        .unwrap();
    assert!(c
        .try_spend(&mut st, at(2), Usage::request(5_000, 0))
        .unwrap()
        .denied
        .is_none());
    // Added back in the same minute: the 800 it had (not the 5 000 spent
    // while it was gone).
    let d = c
        .reconfigure(cfg(&[minute(1_000), day(5_000_000)]))
        .unwrap();
    assert_eq!(used(&d, &st, Dimension::Tokens, Horizon::MINUTE), Some(800));
    assert_eq!(
        used(&d, &st, Dimension::Cost, Horizon::DAY),
        Some(2_000_000)
    );

    let field = |c: BudgetConfig| match d.reconfigure(c) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("accepted or other error: {other:?}"),
    };
    assert_eq!(
        field(cfg(&[minute(1_000), day(5_000_000)]).utc_offset_secs(3_600)),
        "utc_offset_secs"
    );
    assert!(matches!(
        d.reconfigure(cfg(&[minute(0)])),
        Err(ConfigError::Zero { .. })
    ));
    // Maxima, thresholds, throttle, per-request caps and hold TTL may change.
    d.reconfigure(
        cfg(&[minute(5), day(1)])
            .tokens_per_request(5)
            .alert_threshold_bp(5_000)
            .auto_throttle(9_000, Duration::from_secs(1))
            .hold_ttl(Duration::from_secs(5)),
    )
    .unwrap();
}

/// Alert flags are matched by value, not by position: thresholds moved
/// from 50 % and 90 % to 80 % and 90 % at 85 % usage fire 80 % with the
/// next charge; an unchanged config never fires one twice.
#[test]
fn moved_thresholds_fire_by_their_new_values() {
    let with = |bps: &[u16]| {
        bps.iter()
            .fold(BudgetConfig::new().tokens_per_hour(100), |c, &bp| {
                c.alert_threshold_bp(bp)
            })
    };
    let old = Budget::new(with(&[5_000, 9_000])).unwrap();
    let mut st = BudgetState::<4>::default();
    assert_eq!(
        threshold_alerts(&old.record(&mut st, at(0), Usage::of(Dimension::Tokens, 85))),
        1
    );
    assert_eq!(
        threshold_alerts(&old.record(&mut st, at(1), Usage::of(Dimension::Tokens, 1))),
        0
    );
    let new = old.reconfigure(with(&[8_000, 9_000])).unwrap();
    let a = new.record(&mut st, at(2), Usage::of(Dimension::Tokens, 1));
    assert_eq!(
        a.iter().map(|a| a.threshold_bp).collect::<Vec<_>>(),
        [8_000]
    );
    assert_eq!(
        threshold_alerts(&new.record(&mut st, at(3), Usage::of(Dimension::Tokens, 1))),
        0
    );
    let a = new.record(&mut st, at(4), Usage::of(Dimension::Tokens, 2));
    assert_eq!(
        a.iter().map(|a| a.threshold_bp).collect::<Vec<_>>(),
        [9_000]
    );
}

/// "A budget restarted with a new config re-reads its states the same
/// way": a state written by one `Budget`, read by a new `Budget::new` of
/// other limits, counts the earlier holds in a limit it did not have.
#[test]
fn a_budget_made_anew_with_other_limits_re_reads_a_state() {
    let old = Budget::new(tokens(10_000)).unwrap();
    let mut st = BudgetState::<4>::default();
    let r = old
        .reserve(&mut st, at(0), Usage::request(3_000, 0))
        .unwrap();
    assert!(matches!(r.admission, Admission::Granted(_)));
    let restarted =
        Budget::new(tokens(10_000).limit(Dimension::Tokens, Horizon::MINUTE, 4_000)).unwrap();
    assert_eq!(restarted.status(&st, at(1)).limits[1].reserved, 3_000);
    // The same config made anew reads the state as it is: an alert that
    // fired does not fire again.
    assert_eq!(
        threshold_alerts(&old.record(&mut st, at(2), Usage::of(Dimension::Tokens, 8_000))),
        1
    );
    let same = Budget::new(tokens(10_000)).unwrap();
    assert_eq!(
        threshold_alerts(&same.record(&mut st, at(3), Usage::of(Dimension::Tokens, 1))),
        0
    );
}

/// "Windows of unchanged limits keep their flags": adding a minute limit
/// does not fire the day limit's 80 % alert again.
#[test]
fn an_unchanged_limit_keeps_its_alert_flags() {
    let day = || {
        BudgetConfig::new()
            .limit(Dimension::Tokens, Horizon::DAY, 1_000)
            .alert_threshold_bp(8_000)
    };
    let old = Budget::new(day()).unwrap();
    let mut st = BudgetState::<4>::default();
    assert_eq!(
        threshold_alerts(&old.record(&mut st, at(0), Usage::of(Dimension::Tokens, 850))),
        1
    );
    let new = old
        .reconfigure(day().limit(Dimension::Tokens, Horizon::MINUTE, 10_000))
        .unwrap();
    let a = new.record(&mut st, at(1), Usage::of(Dimension::Tokens, 10));
    assert!(
        a.iter().all(|a| a.limit == 1),
        "only the new minute limit may alert: {a:?}"
    );
    assert_eq!(threshold_alerts(&a), 0);
}

/// A state written before windows recorded their limits (kind and digest
/// 0): read by the config the budget was first made with — under it
/// unchanged, its alert flags stand; through a reorder, each window still
/// goes to its own limit.
#[test]
fn states_from_before_windows_recorded_their_limits() {
    let first = BudgetConfig::new()
        .tokens_per_minute(1_000)
        .cost_per_day(5_000_000)
        .alert_threshold_bp(8_000);
    let budget = Budget::new(first.clone()).unwrap();
    let mut st = BudgetState::<4>::default();
    assert_eq!(
        threshold_alerts(&budget.record(&mut st, at(0), Usage::request(850, 4_500_000))),
        2
    );
    let mut legacy = st.clone();
    for w in legacy.windows.iter_mut() {
        (w.kind, w.limit) = (0, 0);
    }
    // Unchanged: nothing fires again.
    let mut same = legacy.clone();
    assert_eq!(
        threshold_alerts(&budget.record(&mut same, at(1), Usage::request(10, 10))),
        0
    );
    // Reordered with a limit put first, before the state's next operation.
    let reordered = budget
        .reconfigure(
            BudgetConfig::new()
                .limit(Dimension::Requests, Horizon::MINUTE, 50)
                .cost_per_day(5_000_000)
                .tokens_per_minute(1_000)
                .alert_threshold_bp(8_000),
        )
        .unwrap();
    let s = reordered.status(&legacy, at(1));
    assert_eq!(s.used(Dimension::Tokens, Horizon::MINUTE), Some(850));
    assert_eq!(s.used(Dimension::Cost, Horizon::DAY), Some(4_500_000));
    assert_eq!(s.used(Dimension::Requests, Horizon::MINUTE), Some(0));
    assert_eq!(
        threshold_alerts(&reordered.record(&mut legacy, at(1), Usage::request(10, 10))),
        0
    );
}

/// Two limits on one dimension over one horizon are refused (the smaller
/// max decides alone; the builder sets the one limit's max instead); a
/// fixed window above 2^50 − 1 µs is refused.
#[test]
fn duplicate_and_oversized_windows_are_refused() {
    // The builder sets the one limit's max ("change any of it").
    let defaults = BudgetConfig::llm_defaults().tokens_per_day(7);
    assert_eq!(defaults.limits.len(), 4);
    assert!(defaults
        .limits
        .iter()
        .any(|l| l.horizon == Horizon::DAY && l.dimension == Dimension::Tokens && l.max == 7));
    // A config written out with two: refused.
    let mut dup = BudgetConfig::new().tokens_per_minute(1_000);
    dup.limits
        .push(ratebound_core::budget::WindowLimit {
            dimension: Dimension::Tokens,
            horizon: Horizon::Fixed(Duration::from_secs(60)),
            max: 5_000,
        })
        .unwrap();
    assert!(matches!(
        Budget::new(dup),
        Err(ConfigError::Invalid {
            field: "limits",
            ..
        })
    ));
    let long = |us| {
        BudgetConfig::new().limit(
            Dimension::Tokens,
            Horizon::Fixed(Duration::from_micros(us)),
            1,
        )
    };
    assert!(Budget::new(long(ratebound_core::budget::MAX_HORIZON_US)).is_ok());
    assert!(matches!(
        Budget::new(long(ratebound_core::budget::MAX_HORIZON_US + 1)),
        Err(ConfigError::TooLarge {
            field: "limits[].horizon",
            ..
        })
    ));
}
