//! Budget scenarios on a fake clock.
mod common;

use common::FakeClock;
use ratebound_core::budget::{
    Admission, AlertKind, Budget, BudgetConfig, BudgetError, BudgetState, DenyReason, Dimension,
    Horizon, Reservation, Usage,
};
use ratebound_core::{ConfigError, Duration, Instant};

fn granted(a: Admission) -> Reservation {
    match a {
        Admission::Granted(r) => r,
        Admission::Denied(d) => panic!("denied: {d:?}"),
    }
}

#[test]
fn seed_config_fields_all_map() {
    // Every field of Go `policy`'s BudgetConfig.
    let b = Budget::new(
        BudgetConfig::new()
            .tokens_per_request(4_000)
            .tokens_per_minute(10_000)
            .tokens_per_hour(100_000)
            .tokens_per_day(1_000_000)
            .cost_per_request(500_000)
            .cost_per_day(10_000_000)
            .alert_threshold_bp(8_000)
            .auto_throttle(8_000, Duration::from_millis(500)),
    )
    .unwrap();
    assert_eq!(b.config().limits.len(), 4);
    let mut st = BudgetState::<8>::default();
    let now = FakeClock::new().now();
    assert!(matches!(
        b.reserve(&mut st, now, Usage::request(4_001, 0)),
        Err(BudgetError::ExceedsLimit {
            dimension: Dimension::Tokens,
            limit: None,
            ..
        })
    ));
    assert!(matches!(
        b.reserve(&mut st, now, Usage::request(10, 500_001)),
        Err(BudgetError::ExceedsLimit {
            dimension: Dimension::Cost,
            limit: None,
            ..
        })
    ));
    let r = granted(
        b.reserve(&mut st, now, Usage::request(3_000, 100_000))
            .unwrap()
            .admission,
    );
    let s = b
        .settle(&mut st, now, r, Usage::request(2_000, 90_000))
        .unwrap();
    assert!(!s.late);
    let status = b.status(&st, now);
    assert_eq!(status.used(Dimension::Tokens, Horizon::MINUTE), Some(2_000));
    assert_eq!(status.used(Dimension::Tokens, Horizon::HOUR), Some(2_000));
    assert_eq!(status.used(Dimension::Tokens, Horizon::DAY), Some(2_000));
    assert_eq!(status.used(Dimension::Cost, Horizon::DAY), Some(90_000));
    assert_eq!(
        status.utilization_bp(Dimension::Tokens, Horizon::MINUTE),
        Some(2_000)
    );
    assert!(!status.throttled);
}

#[test]
fn reservations_prevent_overshoot_and_settle_adjusts() {
    let b = Budget::new(BudgetConfig::new().tokens_per_minute(1_000)).unwrap();
    let mut st = BudgetState::<16>::default();
    let mut clock = FakeClock::new();
    let now = clock.now();
    let r1 = granted(
        b.reserve(&mut st, now, Usage::request(600, 0))
            .unwrap()
            .admission,
    );
    // 600 held: 500 more does not fit, 400 does.
    let denied = b.reserve(&mut st, now, Usage::request(500, 0)).unwrap();
    let Admission::Denied(d) = denied.admission else {
        panic!()
    };
    assert_eq!(d.reason, DenyReason::Limit);
    assert_eq!(d.limit, Some(0));
    // The 600 held carry into the next minute too; if nothing else happens
    // the 500 fits only once that hold lapses (default TTL 10 minutes).
    assert_eq!(d.retry_at, now + Duration::from_secs(600));
    assert_eq!(denied.alerts.len(), 1);
    assert_eq!(denied.alerts[0].kind, AlertKind::LimitHit);
    let r2 = granted(
        b.reserve(&mut st, now, Usage::request(400, 0))
            .unwrap()
            .admission,
    );
    // Settling below the estimate frees room.
    b.settle(
        &mut st,
        clock.advance(Duration::from_secs(1)),
        r1,
        Usage::request(100, 0),
    )
    .unwrap();
    let r3 = granted(
        b.reserve(&mut st, clock.now(), Usage::request(500, 0))
            .unwrap()
            .admission,
    );
    b.release(&mut st, clock.now(), r2).unwrap();
    let s = b.status(&st, clock.now());
    assert_eq!(
        (s.limits[0].used, s.limits[0].reserved, s.holds),
        (100, 500, 1)
    );
    // Settling above the estimate charges the truth.
    b.settle(&mut st, clock.now(), r3, Usage::request(950, 0))
        .unwrap();
    assert_eq!(b.status(&st, clock.now()).limits[0].used, 1_050);
    // Next minute: fresh.
    clock.advance(Duration::from_secs(60));
    assert_eq!(b.status(&st, clock.now()).limits[0].used, 0);
}

#[test]
fn holds_lapse_and_late_settles_still_charge() {
    let b = Budget::new(
        BudgetConfig::new()
            .tokens_per_day(1_000)
            .hold_ttl(Duration::from_secs(30)),
    )
    .unwrap();
    let mut st = BudgetState::<2>::default();
    let mut clock = FakeClock::new();
    let r = granted(
        b.reserve(&mut st, clock.now(), Usage::request(900, 0))
            .unwrap()
            .admission,
    );
    assert!(matches!(
        b.reserve(&mut st, clock.now(), Usage::request(200, 0))
            .unwrap()
            .admission,
        Admission::Denied(_)
    ));
    clock.advance(Duration::from_secs(30));
    // The crashed caller's hold lapsed: room again.
    let r2 = granted(
        b.reserve(&mut st, clock.now(), Usage::request(200, 0))
            .unwrap()
            .admission,
    );
    let s = b
        .settle(&mut st, clock.now(), r, Usage::request(700, 0))
        .unwrap();
    assert!(s.late);
    assert_eq!(b.status(&st, clock.now()).limits[0].used, 700);
    // A release after settle of the same id is an error and charges nothing.
    let fake = Reservation {
        id: 0,
        usage: Usage::default(),
        expires: clock.now(),
    };
    assert_eq!(
        b.release(&mut st, clock.now(), fake),
        Err(BudgetError::UnknownReservation { id: 0 })
    );
    b.release(&mut st, clock.now(), r2).unwrap();
}

#[test]
fn table_of_holds_is_bounded() {
    let b = Budget::new(
        BudgetConfig::new()
            .tokens_per_day(1_000_000)
            .hold_ttl(Duration::from_secs(5)),
    )
    .unwrap();
    let mut st = BudgetState::<2>::default();
    let clock = FakeClock::new();
    let _a = granted(
        b.reserve(&mut st, clock.now(), Usage::request(1, 0))
            .unwrap()
            .admission,
    );
    let _b = granted(
        b.reserve(&mut st, clock.now(), Usage::request(1, 0))
            .unwrap()
            .admission,
    );
    let Admission::Denied(d) = b
        .reserve(&mut st, clock.now(), Usage::request(1, 0))
        .unwrap()
        .admission
    else {
        panic!()
    };
    assert_eq!(d.reason, DenyReason::TooManyReservations);
    assert_eq!(d.retry_at, clock.now() + Duration::from_secs(5));
    // After expiry, a lapsed hold's slot is reused.
    let later = clock.now() + Duration::from_secs(5);
    assert!(matches!(
        b.reserve(&mut st, later, Usage::request(1, 0))
            .unwrap()
            .admission,
        Admission::Granted(_)
    ));
}

#[test]
fn alerts_fire_once_per_window() {
    let b = Budget::new(
        BudgetConfig::new()
            .tokens_per_minute(1_000)
            .alert_threshold_bp(5_000)
            .alert_threshold_bp(8_000),
    )
    .unwrap();
    let mut st = BudgetState::<4>::default();
    let mut clock = FakeClock::new();
    let t0 = clock.now();
    assert!(b.record(&mut st, t0, Usage::request(400, 0)).is_empty());
    let a = b.record(&mut st, t0, Usage::request(100, 0));
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0].kind, a[0].threshold_bp, a[0].utilization_bp),
        (AlertKind::Threshold, 5_000, 5_000)
    );
    assert_eq!(a[0].alert_type(), "token_minute_threshold");
    assert!(b.record(&mut st, t0, Usage::request(100, 0)).is_empty());
    // Jumping past 80 % and 100 % at once: one threshold alert (the highest) and one limit hit.
    let a = b.record(&mut st, t0, Usage::request(500, 0));
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].kind, a[0].threshold_bp),
        (AlertKind::Threshold, 8_000)
    );
    assert_eq!(
        (a[1].kind, a[1].utilization_bp),
        (AlertKind::LimitHit, 11_000)
    );
    assert_eq!(a[1].alert_type(), "limit_hit");
    assert!(b.record(&mut st, t0, Usage::request(100, 0)).is_empty());
    // Denials in the same window do not repeat the limit hit.
    assert!(b
        .reserve(&mut st, t0, Usage::request(1, 0))
        .unwrap()
        .alerts
        .is_empty());
    // New window: fires again.
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        b.record(&mut st, clock.now(), Usage::request(900, 0)).len(),
        1
    );
}

#[test]
fn auto_throttle_spreads_the_remainder() {
    // 100 requests per hour; past 50 %, pace so the rest lasts the hour.
    let b = Budget::new(
        BudgetConfig::new()
            .limit(Dimension::Requests, Horizon::HOUR, 100)
            .auto_throttle(5_000, Duration::from_millis(10)),
    )
    .unwrap();
    let mut st = BudgetState::<4>::default();
    let mut clock = FakeClock::new(); // on an hour boundary
    for _ in 0..49 {
        assert!(b
            .try_spend(&mut st, clock.now(), Usage::request(0, 0))
            .unwrap()
            .denied
            .is_none());
    }
    assert!(!b.status(&st, clock.now()).throttled);
    // The 50th crosses 50 %: 51 were left before it, 3600 s remain → 3600/51 s.
    assert!(b
        .try_spend(&mut st, clock.now(), Usage::request(0, 0))
        .unwrap()
        .denied
        .is_none());
    let s = b.status(&st, clock.now());
    assert!(s.throttled);
    let pause = Duration::from_micros(3_600_000_000u64.div_ceil(51));
    assert_eq!(s.throttle_until, Some(clock.now() + pause));
    let Some(d) = b
        .try_spend(&mut st, clock.now(), Usage::request(0, 0))
        .unwrap()
        .denied
    else {
        panic!()
    };
    assert_eq!(
        (d.reason, d.retry_at),
        (DenyReason::Throttled, clock.now() + pause)
    );
    clock.advance(pause);
    assert!(b
        .try_spend(&mut st, clock.now(), Usage::request(0, 0))
        .unwrap()
        .denied
        .is_none());
}

#[test]
fn calendar_month_and_offsets() {
    let b = Budget::new(
        BudgetConfig::new()
            .limit(Dimension::Cost, Horizon::CalendarMonth, 50_000_000)
            .utc_offset_secs(9 * 3_600),
    )
    .unwrap();
    let mut st = BudgetState::<4>::default();
    // 2026-11-30T14:59:59Z is 23:59:59 on Nov 30 in UTC+9.
    let before = Instant::from_secs(1_796_050_799);
    b.record(&mut st, before, Usage::of(Dimension::Cost, 50_000_000));
    assert!(b
        .try_spend(&mut st, before, Usage::of(Dimension::Cost, 1))
        .unwrap()
        .denied
        .is_some());
    let after = before + Duration::from_secs(1); // December in Tokyo
    assert!(b
        .try_spend(&mut st, after, Usage::of(Dimension::Cost, 1))
        .unwrap()
        .denied
        .is_none());
    let s = b.status(&st, after);
    assert_eq!(s.limits[0].window_start, after);
    assert_eq!(
        s.limits[0].window_end,
        after + Duration::from_secs(31 * 86_400)
    );
}

#[test]
fn clock_going_backwards_is_treated_as_the_latest_time() {
    let b = Budget::new(BudgetConfig::new().tokens_per_minute(100)).unwrap();
    let mut st = BudgetState::<4>::default();
    let t = FakeClock::new().now() + Duration::from_secs(61);
    b.record(&mut st, t, Usage::request(100, 0));
    // An earlier time (previous minute) does not reopen that minute's budget.
    let earlier = t - Duration::from_secs(30);
    assert!(b
        .try_spend(&mut st, earlier, Usage::request(1, 0))
        .unwrap()
        .denied
        .is_some());
}

#[test]
fn bad_configs_name_their_field() {
    let e = |c: BudgetConfig| Budget::new(c).unwrap_err();
    assert_eq!(
        e(BudgetConfig::new().tokens_per_minute(0)),
        ConfigError::Zero {
            field: "limits[].max"
        }
    );
    assert!(matches!(
        e(BudgetConfig::new().tokens_per_day(u64::MAX)),
        ConfigError::TooLarge {
            field: "limits[].max",
            ..
        }
    ));
    assert!(matches!(
        e(BudgetConfig::new()
            .alert_threshold_bp(8_000)
            .alert_threshold_bp(5_000)),
        ConfigError::Invalid {
            field: "alert_thresholds_bp",
            ..
        }
    ));
    assert!(matches!(
        e(BudgetConfig::new().alert_threshold_bp(10_001)),
        ConfigError::Invalid {
            field: "alert_thresholds_bp",
            ..
        }
    ));
    assert!(matches!(
        e(BudgetConfig::new().utc_offset_secs(19 * 3_600)),
        ConfigError::Invalid {
            field: "utc_offset_secs",
            ..
        }
    ));
    assert!(matches!(
        e(BudgetConfig::new().auto_throttle(0, Duration::ZERO)),
        ConfigError::Invalid {
            field: "throttle.after_bp",
            ..
        }
    ));
    assert_eq!(
        e(BudgetConfig::new().hold_ttl(Duration::ZERO)),
        ConfigError::Zero { field: "hold_ttl" }
    );
    assert_eq!(
        e(BudgetConfig::new().limit(Dimension::Tokens, Horizon::Fixed(Duration::ZERO), 1)),
        ConfigError::Zero {
            field: "limits[].horizon"
        }
    );
    let mut c = BudgetConfig::new();
    for s in 1..=13 {
        c = c.limit(Dimension::Tokens, Horizon::Fixed(Duration::from_secs(s)), 1);
    }
    assert!(matches!(
        e(c),
        ConfigError::Invalid {
            field: "limits / alert_thresholds_bp",
            ..
        }
    ));
    assert!(e(BudgetConfig::new().tokens_per_request(0))
        .to_string()
        .contains("max_tokens_per_request"));
}

#[test]
fn huge_amounts_are_clamped_not_wrapped() {
    let b = Budget::new(BudgetConfig::new().cost_per_day(1_000)).unwrap();
    let mut st = BudgetState::<4>::default();
    let now = FakeClock::new().now();
    b.record(
        &mut st,
        now,
        Usage {
            requests: u64::MAX,
            tokens: u64::MAX,
            cost: u64::MAX,
        },
    );
    b.record(
        &mut st,
        now,
        Usage {
            requests: u64::MAX,
            tokens: u64::MAX,
            cost: u64::MAX,
        },
    );
    let s = b.status(&st, now);
    assert!(s.limits[0].used >= 1_000);
    assert!(b
        .try_spend(&mut st, now, Usage::of(Dimension::Cost, 1))
        .unwrap()
        .denied
        .is_some());
}

#[test]
fn holds_carry_across_a_window_boundary() {
    // Regression: reserve 100 at :59 and 100 at :60 must not both fit a 100/min limit.
    let b = Budget::new(BudgetConfig::new().tokens_per_minute(100)).unwrap();
    let mut st = BudgetState::<4>::default();
    let t59 = FakeClock::new().now() + Duration::from_secs(59);
    let a = granted(
        b.reserve(&mut st, t59, Usage::request(100, 0))
            .unwrap()
            .admission,
    );
    let t60 = t59 + Duration::from_secs(1);
    assert!(matches!(
        b.reserve(&mut st, t60, Usage::request(100, 0))
            .unwrap()
            .admission,
        Admission::Denied(_)
    ));
    b.settle(&mut st, t60, a, Usage::request(100, 0)).unwrap();
    assert_eq!(b.status(&st, t60).limits[0].used, 100);
}

#[test]
fn retry_at_is_the_earliest_fit() {
    // A lapsing hold frees room before the window ends.
    let b = Budget::new(
        BudgetConfig::new()
            .tokens_per_day(100)
            .hold_ttl(Duration::from_secs(60)),
    )
    .unwrap();
    let mut st = BudgetState::<4>::default();
    let now = FakeClock::new().now();
    let _held = granted(
        b.reserve(&mut st, now, Usage::request(100, 0))
            .unwrap()
            .admission,
    );
    let Admission::Denied(d) = b
        .reserve(&mut st, now, Usage::request(1, 0))
        .unwrap()
        .admission
    else {
        panic!()
    };
    assert_eq!(d.retry_at, now + Duration::from_secs(60));
    assert!(matches!(
        b.reserve(&mut st, d.retry_at, Usage::request(1, 0))
            .unwrap()
            .admission,
        Admission::Granted(_)
    ));

    // A throttle ending after the window end pushes the retry to the throttle's end.
    let b = Budget::new(
        BudgetConfig::new()
            .tokens_per_minute(100)
            .auto_throttle(1, Duration::from_secs(3_600)),
    )
    .unwrap();
    let mut st = BudgetState::<4>::default();
    assert!(b
        .try_spend(&mut st, now, Usage::request(100, 0))
        .unwrap()
        .denied
        .is_none());
    let d = b
        .try_spend(&mut st, now, Usage::request(1, 0))
        .unwrap()
        .denied
        .unwrap();
    assert_eq!(
        (d.reason, d.retry_at),
        (DenyReason::Limit, now + Duration::from_secs(3_600))
    );
    assert!(b
        .try_spend(&mut st, d.retry_at, Usage::request(1, 0))
        .unwrap()
        .denied
        .is_none());
}

#[test]
fn zero_hold_slots_is_an_error_not_a_denial() {
    let b = Budget::new(BudgetConfig::new().tokens_per_day(100)).unwrap();
    let mut st = BudgetState::<0>::default();
    let now = FakeClock::new().now();
    assert_eq!(
        b.reserve(&mut st, now, Usage::request(1, 0)).unwrap_err(),
        BudgetError::NoReservationSlots
    );
    assert!(b
        .try_spend(&mut st, now, Usage::request(1, 0))
        .unwrap()
        .denied
        .is_none());
}

#[test]
fn reservation_ids_do_not_repeat_after_a_reset() {
    let b = Budget::new(BudgetConfig::new().tokens_per_day(1_000)).unwrap();
    let mut st = BudgetState::<4>::default();
    let mut clock = FakeClock::new();
    let old = granted(
        b.reserve(&mut st, clock.now(), Usage::request(10, 0))
            .unwrap()
            .admission,
    );
    b.reset(&mut st);
    let fresh = granted(
        b.reserve(
            &mut st,
            clock.advance(Duration::from_micros(1)),
            Usage::request(10, 0),
        )
        .unwrap()
        .admission,
    );
    assert_ne!(old.id, fresh.id);
    assert_eq!(
        b.release(&mut st, clock.now(), old),
        Err(BudgetError::UnknownReservation {
            id: 1_795_392_000_000_000
        })
    );
    b.release(&mut st, clock.now(), fresh).unwrap();
}

#[test]
fn utilization_is_capped_and_requested_amounts_reported_raw() {
    let b = Budget::new(BudgetConfig::new().tokens_per_minute(1)).unwrap();
    let mut st = BudgetState::<4>::default();
    let now = FakeClock::new().now();
    let a = b.record(&mut st, now, Usage::request(1 << 50, 0));
    assert!(a
        .iter()
        .all(|a| a.utilization_bp <= ratebound_core::budget::MAX_UTILIZATION_BP));
    let e = b
        .reserve(&mut st, now, Usage::request(1 << 60, 0))
        .unwrap_err();
    assert!(matches!(e, BudgetError::ExceedsLimit { requested, .. } if requested == 1 << 60));
}

mod llm {
    use ratebound_core::budget::llm::{Ending, Estimate, Price, Tokens};
    use ratebound_core::budget::MAX_AMOUNT;

    const GPT4O: Price = Price {
        input_per_million: 2_500_000,
        output_per_million: 10_000_000,
    };

    #[test]
    fn cost_rounds_up_to_a_whole_micro_unit_and_is_exact_otherwise() {
        assert_eq!(GPT4O.cost(1, 0), 3); // 2.5 µ$ → 3
        assert_eq!(GPT4O.cost(2, 0), 5);
        assert_eq!(GPT4O.cost(1, 1), 13); // 12.5 → 13: the sum is rounded once
        assert_eq!(GPT4O.cost(1_000_000, 1_000_000), 12_500_000);
        assert_eq!(Price::default().cost(123, 456), 0);
        assert_eq!(GPT4O.cost(u64::MAX, u64::MAX), MAX_AMOUNT);
    }

    #[test]
    fn the_estimate_is_the_documented_heuristic() {
        let e = Estimate::from_prompt(0, 0, 0);
        assert_eq!((e.input, e.max_output), (3, 0));
        let e = Estimate::from_prompt(401, 3, 100);
        assert_eq!(e.input, 101 + 9 + 3);
        let u = e.usage(&GPT4O);
        assert_eq!(
            (u.requests, u.tokens, u.cost),
            (1, 213, GPT4O.cost(113, 100))
        );
        assert_eq!(
            Estimate::from_prompt(u64::MAX, u64::MAX, u64::MAX).input,
            MAX_AMOUNT
        );
    }

    #[test]
    fn each_ending_charges_by_its_rule() {
        let e = Estimate {
            input: 100,
            max_output: 50,
        };
        let reported = Ending::Reported(Tokens {
            input: 120,
            output: 7,
        })
        .charge(&e, &GPT4O);
        assert_eq!((reported.tokens, reported.cost), (127, GPT4O.cost(120, 7)));
        let failed = Ending::Failed.charge(&e, &GPT4O);
        assert_eq!((failed.requests, failed.tokens, failed.cost), (1, 0, 0));
        // Nothing seen: the whole reservation.
        let cut = Ending::Unreported {
            input: None,
            observed_output: 0,
        }
        .charge(&e, &GPT4O);
        assert_eq!(cut, e.usage(&GPT4O));
        // More output seen than the cap: never less than what was seen.
        let cut = Ending::Unreported {
            input: Some(90),
            observed_output: 80,
        }
        .charge(&e, &GPT4O);
        assert_eq!((cut.tokens, cut.cost), (170, GPT4O.cost(90, 80)));
    }
}

mod llm_rules {
    use ratebound_core::budget::llm::{observed_output, Ending};
    use ratebound_core::budget::{Budget, BudgetConfig, Dimension, Horizon, Usage};
    use ratebound_core::Instant;

    #[test]
    fn observed_output_counts_deltas_or_characters_whichever_is_more() {
        assert_eq!(observed_output(0, 0), 0);
        assert_eq!(observed_output(3, 5), 5); // five one-character deltas
        assert_eq!(observed_output(41, 2), 11); // ⌈41 / 4⌉
    }

    #[test]
    fn error_statuses_end_failed_and_successes_wait_for_their_body() {
        assert_eq!(Ending::from_status(400), Some(Ending::Failed));
        assert_eq!(Ending::from_status(503), Some(Ending::Failed));
        assert_eq!(Ending::from_status(200), None);
        assert_eq!(Ending::from_status(399), None);
    }

    #[test]
    fn a_config_limits_cost_by_a_window_or_a_per_request_cap() {
        assert!(!BudgetConfig::new().tokens_per_minute(10).limits_cost());
        assert!(BudgetConfig::new().cost_per_day(10).limits_cost());
        assert!(BudgetConfig::new().cost_per_request(10).limits_cost());
        assert!(BudgetConfig::new()
            .limit(Dimension::Cost, Horizon::CalendarMonth, 5)
            .limits_cost());
    }

    #[test]
    fn remaining_is_max_less_used_and_held_and_the_window_its_length() {
        let b = Budget::new(BudgetConfig::new().tokens_per_minute(100)).unwrap();
        let mut st = Default::default();
        let now = Instant::from_secs(1_795_392_030);
        b.record::<16>(&mut st, now, Usage::request(30, 0));
        let _held = b.reserve(&mut st, now, Usage::request(50, 0));
        let l = b.status(&st, now).limits[0];
        assert_eq!((l.used, l.reserved, l.remaining()), (30, 50, 20));
        assert_eq!(l.window().as_secs(), 60);
        b.record(&mut st, now, Usage::request(40, 0));
        assert_eq!(
            b.status(&st, now).limits[0].remaining(),
            0,
            "never below zero"
        );
    }
}
