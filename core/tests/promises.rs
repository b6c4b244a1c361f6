//! The crate docs' promises, each checked as worded: the sliding counter
//! under even traffic, a budget as a limiter, the sliding log's exactness
//! within its slots, the model quota's in-flight bound, the jitter ranges,
//! a GCRA charge's debt, a log state's validation, free checks, the alert
//! names and the LLM backoff defaults.

use proptest::prelude::*;
use ratebound_core::backoff::{Backoff, Jitter, Step};
use ratebound_core::budget::{
    AlertKind, Budget, BudgetConfig, BudgetState, Dimension, Horizon, Usage, MAX_AMOUNT,
};
use ratebound_core::model_quota::{
    Blocked, ModelQuota, ModelState, Outcome, Window, IN_FLIGHT_RETRY, MAX_IN_FLIGHT,
};
use ratebound_core::{
    Duration, Gcra, GcraState, Instant, Limiter, LogEntry, SlidingCounter, SlidingCounterState,
    SlidingLog, SlidingLogState,
};

fn us(t: u64) -> Instant {
    Instant::from_micros(t)
}

/// sliding_counter.rs: "Traffic spread evenly at up to `limit − 1` a window
/// is admitted whole; at exactly `limit` a window, each window after the
/// first admits `limit − 1`."
#[test]
fn a_sliding_counter_under_even_traffic() {
    // Windows that `limit` divides: at the limit's rate every window gets
    // exactly `limit` requests.
    for (limit, window) in [
        (4u64, 1_000_000u64),
        (5, 100),
        (10, 60_000_000),
        (100, 1_000),
    ] {
        for offset in [0, 1, 37, window / 3] {
            for (per_window, expect_short) in [(limit, 1), (limit - 1, 0)] {
                let c = SlidingCounter::new(limit, Duration::from_micros(window)).unwrap();
                let mut s = SlidingCounterState::default();
                // At most `per_window` in any aligned window.
                let step = window.div_ceil(per_window);
                let (mut sent, mut admitted) = ([0u64; 30], [0u64; 30]);
                let mut t = offset;
                while t < 30 * window {
                    let w = (t / window) as usize;
                    sent[w] += 1;
                    if c.check(&mut s, us(t), 1).unwrap().allowed {
                        admitted[w] += 1;
                    }
                    t += step;
                }
                // Whole windows after the first (the last may be cut short).
                for w in 2..29 {
                    let what = format!("limit {limit}, window {window} µs, from {offset}, {per_window} a window: window {w}");
                    if expect_short == 0 {
                        assert!(sent[w] < limit, "{what}");
                        assert_eq!(admitted[w], sent[w], "{what}");
                    } else {
                        assert_eq!(sent[w], limit, "{what}");
                        assert_eq!(admitted[w], limit - 1, "{what}");
                    }
                }
            }
        }
    }
}

/// budget/limiter.rs: `check(cost)` is `try_spend` of `cost` in one
/// dimension; `remaining` and `limit` come from the tightest limit on it
/// (`MAX_AMOUNT` when none limits it); a denial charges nothing.
#[test]
fn a_budget_as_a_limiter() {
    let budget = Budget::new(
        BudgetConfig::new()
            .limit(Dimension::Tokens, Horizon::MINUTE, 10)
            .limit(Dimension::Tokens, Horizon::HOUR, 50),
    )
    .unwrap();
    let t0 = Instant::from_secs(1_800_000_000);
    let mut st = BudgetState::<16>::default();
    let tokens = budget.as_limiter::<16>(Dimension::Tokens);
    let _ = budget.record(&mut st, t0, Usage::of(Dimension::Tokens, 9));
    let counts = |st: &BudgetState<16>| -> Vec<(u64, u64)> {
        st.windows.iter().map(|w| (w.used, w.reserved)).collect()
    };
    let before = counts(&st);
    let d = tokens
        .check(&mut st, t0 + Duration::from_secs(1), 2)
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(
        counts(&st),
        before,
        "a denial charges nothing (it notes its limit-hit alert)"
    );
    assert_eq!(
        (d.remaining, d.limit),
        (1, 10),
        "the minute's limit is the tightest"
    );
    let used = |st: &BudgetState<16>| {
        let s = budget.status(st, t0 + Duration::from_secs(1));
        (
            s.used(Dimension::Tokens, Horizon::MINUTE),
            s.used(Dimension::Tokens, Horizon::HOUR),
        )
    };
    assert_eq!(used(&st), (Some(9), Some(9)), "the denial charged nothing");
    let d = tokens
        .check(&mut st, t0 + Duration::from_secs(1), 1)
        .unwrap();
    assert!(d.allowed);
    assert_eq!((d.remaining, d.limit), (0, 10));
    assert_eq!(
        used(&st),
        (Some(10), Some(10)),
        "as try_spend: charged in every window"
    );
    let cost = budget.as_limiter::<16>(Dimension::Cost);
    let d = cost.check(&mut st, t0 + Duration::from_secs(2), 5).unwrap();
    assert!(d.allowed);
    assert_eq!(
        (d.remaining, d.limit),
        (MAX_AMOUNT, MAX_AMOUNT),
        "no limit on cost"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// sliding_log.rs: while a window's admissions fit in N entries the log
    /// is exact: it decides as an unbounded log would, step for step.
    #[test]
    fn a_sliding_log_within_its_slots_is_exact(
        limit in 1u64..=8,
        window in 1u64..2_000,
        steps in prop::collection::vec((0u64..400, 1u64..=8), 1..120),
    ) {
        // Costs of at least 1 and a limit of at most 8: at most 8 live entries.
        let log = SlidingLog::<8>::new(limit, Duration::from_micros(window)).unwrap();
        let mut st = SlidingLogState::<8>::default();
        let mut exact: Vec<(u64, u64)> = Vec::new();
        let mut now = 0u64;
        for (gap, cost) in steps {
            now += gap;
            let cost = cost.min(limit);
            let d = log.check(&mut st, us(now), cost).unwrap();
            exact.retain(|&(at, _)| at + window > now);
            let used: u64 = exact.iter().map(|&(_, c)| c).sum();
            let fits = used + cost <= limit;
            prop_assert_eq!(d.allowed, fits, "at {} cost {}", now, cost);
            prop_assert_eq!(d.remaining, if fits { limit - used - cost } else { limit - used });
            if fits {
                exact.push((now, cost));
            }
        }
    }
}

/// model_quota: "At most `MAX_IN_FLIGHT` requests of one state are in
/// flight at once", and the next is blocked `InFlight` with a retry at most
/// `IN_FLIGHT_RETRY` away; a settled one makes room.
#[test]
fn at_most_max_in_flight_requests_at_once() {
    let minute = Duration::from_secs(60);
    let q = ModelQuota::new(None, 100, minute, Window::Sliding, Duration::from_secs(600)).unwrap();
    let mut st = ModelState::default();
    let now = Instant::from_secs(1_800_000_000);
    let holds: Vec<u64> = (0..MAX_IN_FLIGHT)
        .map(|_| q.admit(&mut st, now).hold.expect("room"))
        .collect();
    let d = q.admit(&mut st, now);
    assert!(!d.allowed());
    assert_eq!(d.blocked, Some(Blocked::InFlight));
    assert_eq!(d.in_flight, MAX_IN_FLIGHT as u64);
    assert!(
        d.success.retry_at > now && d.success.retry_at <= now + IN_FLIGHT_RETRY,
        "{d:?}"
    );
    let _ = q.settle(&mut st, now, holds[0], Outcome::Failure);
    assert!(q.admit(&mut st, now).allowed());
}

/// backoff: Equal is `base/2 + uniform[0, base − base/2]`; Decorrelated
/// `min(cap, uniform[initial, max(initial, 3 × previous)])`; Full `[0, base]`.
#[test]
fn each_jitter_stays_in_its_range() {
    let policy = Backoff::new(Duration::from_millis(100), Duration::from_secs(20))
        .unwrap()
        .without_max_retries();
    for seed in 0..50u64 {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let p = policy.with_jitter(jitter);
            let (initial, cap) = (p.initial().as_micros(), p.cap().as_micros());
            let mut previous = initial;
            let (mut low, mut high) = (false, false);
            for (n, delay) in p.delays(seed).take(40).enumerate() {
                let (delay, base) = (delay.as_micros(), p.base_delay(n as u32).as_micros());
                let (from, to) = match jitter {
                    Jitter::Full => (0, base),
                    Jitter::Equal => (base / 2, base),
                    _ => (initial.min(cap), (3 * previous).max(initial).min(cap)),
                };
                assert!(
                    from <= delay && delay <= to,
                    "{jitter:?} seed {seed} retry {n}: {delay} µs not in [{from}, {to}]"
                );
                low |= delay < from + (to - from) / 4;
                high |= delay > to - (to - from) / 4;
                previous = delay;
            }
            assert!(
                low && high,
                "{jitter:?} seed {seed}: the delays spread over the range"
            );
        }
    }
}

/// gcra: `charge` takes n tokens (at most capacity) whether or not they are
/// there; the bucket may go into debt, and later checks wait until it is
/// paid off.
#[test]
fn a_charge_goes_into_debt_and_checks_wait_it_out() {
    let g = Gcra::per_second(10).unwrap();
    let t0 = Instant::from_secs(1_000);
    let mut st = GcraState::default();
    g.charge(&mut st, t0, 10);
    g.charge(&mut st, t0, 10); // 10 more than there were: a second's debt
                               // One token is there 100 ms after the debt is paid off (not 100 ms after t0).
    assert!(
        !g.check(&mut st, t0 + Duration::from_millis(1_099), 1)
            .unwrap()
            .allowed
    );
    assert!(
        g.check(&mut st, t0 + Duration::from_millis(1_100), 1)
            .unwrap()
            .allowed
    );
    let (mut huge, mut full) = (GcraState::default(), GcraState::default());
    g.charge(&mut huge, t0, 1_000);
    g.charge(&mut full, t0, 10);
    assert_eq!(huge, full, "at most capacity");
}

/// sliding_log.rs: `from_parts` refuses more entries than N, entries out of
/// time order, and an entry later than `last`; a valid one round-trips.
#[test]
fn a_log_state_from_parts_is_validated() {
    let e = |at, cost| LogEntry { at, cost };
    assert!(SlidingLogState::<2>::from_parts(9, [e(1, 1), e(2, 1), e(3, 1)]).is_none());
    assert!(SlidingLogState::<2>::from_parts(9, [e(5, 1), e(4, 1)]).is_none());
    assert!(SlidingLogState::<2>::from_parts(3, [e(4, 1)]).is_none());
    let st = SlidingLogState::<2>::from_parts(9, [e(4, 2), e(6, 1)]).unwrap();
    assert_eq!(st.last(), 9);
    assert_eq!(
        st.entries().copied().collect::<Vec<_>>(),
        [e(4, 2), e(6, 1)]
    );
}

/// gcra: "`cost == 0` is always allowed and changes nothing"; the sliding
/// limiters allow it too and count nothing for it (lib.rs: only GCRA writes
/// nothing at all).
#[test]
fn a_free_check_is_allowed_and_counts_nothing() {
    let now = Instant::from_secs(100);
    let later = now + Duration::from_millis(1);
    let g = Gcra::new(3, 1, Duration::from_secs(1)).unwrap();
    for fill in [0, 3] {
        let mut st = GcraState::default();
        if fill > 0 {
            assert!(g.check(&mut st, now, fill).unwrap().allowed);
        }
        let before = st;
        assert!(g.check(&mut st, later, 0).unwrap().allowed);
        assert_eq!(st, before, "GCRA: unchanged");
    }
    fn counts_nothing<L: Limiter>(l: &L, now: Instant, fill: u64) {
        let mut st = L::State::default();
        if fill > 0 {
            assert!(l.check(&mut st, now, fill).unwrap().allowed);
        }
        let later = now + Duration::from_millis(1);
        let before = l.peek(&st, later, 1).unwrap();
        assert!(l.check(&mut st, later, 0).unwrap().allowed);
        assert_eq!(l.peek(&st, later, 1).unwrap(), before);
    }
    let log = SlidingLog::<8>::new(3, Duration::from_secs(1)).unwrap();
    let counter = SlidingCounter::new(3, Duration::from_secs(1)).unwrap();
    for fill in [0, 2, 3] {
        counts_nothing(&log, now, fill);
        counts_nothing(&counter, now, fill);
    }
}

/// budget/report.rs: each alert's type as the Go `policy` package names it.
#[test]
fn every_alert_type_name() {
    let cfg = BudgetConfig::new()
        .limit(Dimension::Tokens, Horizon::MINUTE, 100)
        .limit(Dimension::Tokens, Horizon::HOUR, 100)
        .limit(Dimension::Tokens, Horizon::DAY, 100)
        .limit(Dimension::Cost, Horizon::DAY, 100)
        .limit(Dimension::Requests, Horizon::MINUTE, 100)
        .limit(Dimension::Cost, Horizon::HOUR, 100)
        .alert_threshold_bp(8_000);
    let budget = Budget::new(cfg).unwrap();
    let mut st = BudgetState::<4>::default();
    let now = Instant::from_secs(1_800_000_000);
    let mut names: Vec<&str> = Vec::new();
    let usage = Usage {
        requests: 80,
        tokens: 80,
        cost: 80,
    };
    for a in budget.record(&mut st, now, usage).iter() {
        assert_eq!(a.kind, AlertKind::Threshold);
        names.push(a.alert_type());
    }
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "cost_day_threshold",
            "threshold", // cost per hour
            "threshold", // requests per minute
            "token_day_threshold",
            "token_hour_threshold",
            "token_minute_threshold",
        ]
    );
    let hit = budget
        .try_spend(&mut st, now, Usage::request(30, 0))
        .unwrap();
    assert!(hit.denied.is_some());
    let kinds: Vec<&str> = hit.alerts.iter().map(|a| a.alert_type()).collect();
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| *k == "limit_hit"),
        "{kinds:?}"
    );
}

/// backoff: `llm_default` is "1 s doubling to 30 s, full jitter, 3 retries".
#[test]
fn the_llm_default_backoff() {
    let b = Backoff::llm_default();
    assert_eq!(
        (b.initial(), b.cap()),
        (Duration::from_secs(1), Duration::from_secs(30))
    );
    let plain: Vec<u64> = b
        .with_jitter(Jitter::None)
        .delays(0)
        .map(|d| d.as_millis())
        .collect();
    assert_eq!(plain, [1_000, 2_000, 4_000]);
    let long: Vec<u64> = b
        .with_jitter(Jitter::None)
        .without_max_retries()
        .delays(0)
        .take(7)
        .map(|d| d.as_millis())
        .collect();
    assert_eq!(
        long,
        [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000],
        "capped at 30 s"
    );
    for seed in 0..20 {
        let mut st = b.start(Instant::ZERO, seed);
        let mut delays = Vec::new();
        while let Step::Retry { delay, .. } = b.next(&mut st, Instant::ZERO, None) {
            delays.push(delay);
        }
        assert_eq!(delays.len(), 3, "3 retries");
        for (n, d) in delays.iter().enumerate() {
            assert!(
                *d <= b.base_delay(n as u32),
                "full jitter: within [0, base]"
            );
        }
    }
    let jittered = (0..20u64).any(|seed| {
        b.delays(seed)
            .zip([1_000u64, 2_000, 4_000])
            .any(|(d, base)| d.as_millis() != base)
    });
    assert!(jittered, "full jitter moves the delays");
}

proptest! {
    /// model_quota/scope.rs: keys are length-prefixed "so that no (subject,
    /// model) pair spells another's key": the same text split at two places
    /// into a name and a model gives two keys.
    #[test]
    fn no_two_subject_model_pairs_share_a_key(
        text in "[a-c:0-9]{0,8}",
        i in 0usize..=8,
        j in 0usize..=8,
        group in any::<bool>(),
    ) {
        use ratebound_core::model_quota::scope::{write_key, Subject};
        let (i, j) = (i.min(text.len()), j.min(text.len()));
        let prefix = if group { "g:" } else { "u:" };
        let key = |at: usize| {
            let mut k = String::new();
            write_key(&mut k, Subject { prefix, name: &text[..at] }, &text[at..]).unwrap();
            k
        };
        prop_assert_eq!(key(i) == key(j), i == j, "{:?} {:?}", key(i), key(j));
        let mut other = String::new();
        let flipped = if group { "u:" } else { "g:" };
        write_key(&mut other, Subject { prefix: flipped, name: &text[..i] }, &text[i..]).unwrap();
        prop_assert_ne!(other, key(i), "users and groups are separate key spaces");
    }
}

/// model_quota/scope.rs: the group is the token group, else the user
/// group; an empty name counts as absent.
#[test]
fn the_group_is_the_tokens_else_the_users_and_empty_is_none() {
    use ratebound_core::model_quota::scope::group;
    assert_eq!(group(Some("t"), Some("u")), Some("t"));
    assert_eq!(group(None, Some("u")), Some("u"));
    assert_eq!(group(Some(""), Some("u")), Some("u"));
    assert_eq!(group(Some(""), Some("")), None);
    assert_eq!(group(None, None), None);
}

/// budget: at most `MAX_THRESHOLDS` alert thresholds; one more is a
/// configuration error from `Budget::new`.
#[test]
fn more_alert_thresholds_than_the_maximum_are_refused() {
    use ratebound_core::budget::MAX_THRESHOLDS;
    let mut cfg = BudgetConfig::new().limit(Dimension::Tokens, Horizon::MINUTE, 100);
    for i in 0..MAX_THRESHOLDS {
        cfg = cfg.alert_threshold_bp(5_000 + i as u16 * 1_000);
    }
    assert!(Budget::new(cfg.clone()).is_ok());
    assert!(Budget::new(cfg.alert_threshold_bp(9_900)).is_err());
}
