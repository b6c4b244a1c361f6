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

    /// "The next charge of a dimension fires the highest threshold its
    /// usage has reached under the new limits (once)": after the change,
    /// the 80 % alert fires exactly once, at the first charge that leaves
    /// usage at or above 80 % of the new max, whatever fired before.
    #[test]
    fn the_threshold_alert_is_re_evaluated_against_the_new_max(
        old_max in 10u64..1_000, new_max in 10u64..1_000,
        before in 0u64..1_200, charges in proptest::collection::vec(1u64..200, 1..12),
    ) {
        let old = Budget::new(tokens(old_max))?;
        let mut st = BudgetState::<4>::default();
        old.record(&mut st, at(0), Usage::of(Dimension::Tokens, before));
        let new = old.reconfigure(tokens(new_max))?;
        let amount = (new_max * 8_000).div_ceil(10_000);
        let mut flag = false;
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

/// "A limit added by the change counts the live holds at once": a limit
/// appended by a change counts the holds made before it, and their
/// release frees exactly that.
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

/// "A limit removed, reordered or given another dimension or horizon …,
/// or a new UTC offset" is refused, naming the field.
#[test]
fn shape_changes_are_refused() {
    let old = Budget::new(
        BudgetConfig::new()
            .tokens_per_minute(1_000)
            .cost_per_day(5_000_000),
    )
    .unwrap();
    let field = |c: BudgetConfig| match old.reconfigure(c) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("accepted or other error: {other:?}"),
    };
    assert_eq!(
        field(BudgetConfig::new().tokens_per_minute(1_000)),
        "limits"
    );
    assert_eq!(
        field(
            BudgetConfig::new()
                .cost_per_day(5_000_000)
                .tokens_per_minute(1_000)
        ),
        "limits"
    );
    assert_eq!(
        field(
            BudgetConfig::new()
                .tokens_per_hour(1_000)
                .cost_per_day(5_000_000)
        ),
        "limits"
    );
    assert_eq!(
        field(
            BudgetConfig::new()
                .tokens_per_minute(1_000)
                .cost_per_day(5_000_000)
                .utc_offset_secs(3_600)
        ),
        "utc_offset_secs"
    );
    // An invalid config is refused as `Budget::new` refuses it.
    assert!(matches!(
        old.reconfigure(BudgetConfig::new().tokens_per_minute(0).cost_per_day(1)),
        Err(ConfigError::Zero { .. })
    ));
    // Maxima, thresholds, throttle, per-request caps and hold TTL may change.
    old.reconfigure(
        BudgetConfig::new()
            .tokens_per_minute(5)
            .cost_per_day(1)
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
