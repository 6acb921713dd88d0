use super::*;

const MARKET: &str = "0xaaaa";
const OTHER: &str = "0xbbbb";
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

#[test]
fn sent_fills_are_known_and_unknown_ones_are_late_once() {
    let mut ledger = Ledger::new(24 * HOUR_S, 1_000);
    ledger.register(MARKET, None);
    ledger.record(MARKET, T0 + 10, "a");
    assert_eq!(ledger.judge(MARKET, T0 + 10, "a"), Verdict::Known);
    assert_eq!(ledger.judge(MARKET, T0 + 10, "b"), Verdict::Late);
    // Read twice in one walk (a boundary second): counted once.
    assert_eq!(ledger.judge(MARKET, T0 + 10, "b"), Verdict::Known);
    assert_eq!(ledger.count(MARKET, T0 + 10), 2);
    // Its send failed: the next re-read finds it again.
    ledger.forget(MARKET, T0 + 10, "b");
    assert_eq!(ledger.count(MARKET, T0 + 10), 1);
    assert_eq!(ledger.judge(MARKET, T0 + 10, "b"), Verdict::Late);
    // Markets are separate; an unregistered one is never judged.
    assert_eq!(ledger.judge(OTHER, T0 + 10, "a"), Verdict::Unknown);
    assert_eq!(ledger.len(), 2);
}

/// After a restart the fills an earlier process sent are unknown: the first complete re-read
/// adopts them, and only what is unknown after it is late.
#[test]
fn a_restart_adopts_what_an_earlier_process_may_have_sent() {
    let mut ledger = Ledger::new(24 * HOUR_S, 1_000);
    // The earlier process covered up to T0 + 100.
    ledger.register(MARKET, Some(T0 + 100));
    ledger.register(MARKET, Some(T0 + 5_000)); // later calls change nothing
    assert_eq!(ledger.judge(MARKET, T0 + 50, "old"), Verdict::Baseline);
    assert_eq!(ledger.judge(MARKET, T0 + 100, "edge"), Verdict::Baseline);
    assert_eq!(ledger.judge(MARKET, T0 + 50, "old"), Verdict::Known);
    assert_eq!(ledger.judge(MARKET, T0 + 101, "new"), Verdict::Late);
    // A complete read of [T0 + 40, T0 + 200] touches the baseline region: below it is known.
    ledger.read_complete(MARKET, T0 + 40, T0 + 200);
    assert_eq!(ledger.judge(MARKET, T0 + 45, "late"), Verdict::Late);
    assert_eq!(ledger.judge(MARKET, T0 + 30, "older"), Verdict::Baseline);
    // A read that does not reach the baseline region (a gap between) moves nothing.
    ledger.read_complete(MARKET, T0, T0 + 20);
    assert_eq!(ledger.judge(MARKET, T0 + 10, "unread"), Verdict::Baseline);
    ledger.read_complete(MARKET, T0, T0 + 39);
    assert_eq!(ledger.judge(MARKET, T0 + 5, "now-late"), Verdict::Late);
}

#[test]
fn hours_leave_with_the_horizon() {
    let mut ledger = Ledger::new(2 * HOUR_S, 1_000);
    ledger.register(MARKET, None);
    for hour in 0..4 {
        ledger.record(MARKET, T0 + hour * HOUR_S + 1, &format!("fill {hour}"));
    }
    assert_eq!(ledger.len(), 4);
    // Now = T0 + 3 h 30 min: the horizon starts in hour 1.
    ledger.advance(T0 + 3 * HOUR_S + 1_800);
    assert_eq!(ledger.floor(), T0 + HOUR_S);
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger.count(MARKET, T0 + 1), 0);
    // Below the floor nothing is judged (an unknown fill there is not "late") or recorded.
    assert_eq!(ledger.judge(MARKET, T0 + 1, "x"), Verdict::Unknown);
    ledger.record(MARKET, T0 + 2, "y");
    assert_eq!(ledger.len(), 3);
    assert_eq!(
        ledger.judge(MARKET, T0 + HOUR_S + 1, "fill 1"),
        Verdict::Known
    );
}

#[test]
fn a_full_ledger_drops_its_oldest_hours() {
    let mut ledger = Ledger::new(24 * HOUR_S, 5);
    ledger.register(MARKET, None);
    ledger.register(OTHER, None);
    for index in 0..3 {
        ledger.record(MARKET, T0 + index, &format!("a{index}"));
        ledger.record(OTHER, T0 + HOUR_S + index, &format!("b{index}"));
    }
    // 6 > 5: hour T0 went, for every market, and the ledger answers from T0 + 1 h on.
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger.floor(), T0 + HOUR_S);
    assert_eq!(ledger.judge(MARKET, T0 + 1, "a9"), Verdict::Unknown);
    assert_eq!(ledger.count(OTHER, T0 + HOUR_S), 3);
}

#[test]
fn markets_no_longer_collected_are_forgotten() {
    let mut ledger = Ledger::new(24 * HOUR_S, 1_000);
    ledger.register(MARKET, None);
    ledger.register(OTHER, Some(T0));
    ledger.record(MARKET, T0 + 1, "a");
    ledger.record(OTHER, T0 + 1, "b");
    ledger.retain_markets(|condition_id| condition_id == MARKET);
    assert_eq!(ledger.len(), 1);
    assert!(ledger.is_registered(MARKET));
    assert!(!ledger.is_registered(OTHER));
}
