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

/// The checkpoint topic, as far as the ledger is concerned: the latest value per key.
#[derive(Default)]
struct Topic(BTreeMap<String, serde_json::Value>);

impl Topic {
    fn apply(&mut self, writes: &LedgerWrites) {
        for (key, hour) in &writes.hours {
            match hour {
                Some(hour) => self
                    .0
                    .insert(key.clone(), serde_json::to_value(hour).unwrap()),
                None => self.0.remove(key),
            };
        }
        for (key, span) in &writes.spans {
            match span {
                Some(span) => self
                    .0
                    .insert(key.clone(), serde_json::to_value(span).unwrap()),
                None => self.0.remove(key),
            };
        }
    }

    fn entries(&self) -> Vec<(String, serde_json::Value)> {
        self.0
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

fn covered_to(high: i64) -> impl Fn(&str) -> Option<i64> {
    move |_| Some(high)
}

/// A fill upstream indexed while no collector ran, for a second an earlier process had
/// covered, is late after a restart (the persisted ledger answers for that second), while
/// what the earlier process sent is known.
#[test]
fn a_restart_restores_what_was_sent_and_finds_what_was_indexed_meanwhile() {
    let mut topic = Topic::default();
    let mut first = Ledger::new(24 * HOUR_S, 1_000);
    first.advance(T0 + 2 * HOUR_S);
    first.register(MARKET, None);
    first.record(MARKET, T0 + 10, "a");
    first.record(MARKET, T0 + HOUR_S + 10, "b");
    topic.apply(&first.take_writes(covered_to(T0 + HOUR_S + 100)));
    // The second round sent one more fill and covered more; then the process was killed
    // before it persisted.
    first.record(MARKET, T0 + HOUR_S + 150, "c");

    let mut second = Ledger::new(24 * HOUR_S, 1_000);
    second.restore(topic.entries());
    second.advance(T0 + 2 * HOUR_S);
    second.register(MARKET, Some(T0 + HOUR_S + 200));
    assert_eq!(second.len(), 2, "the persisted fills are restored");
    assert_eq!(second.judge(MARKET, T0 + 10, "a"), Verdict::Known);
    assert_eq!(second.judge(MARKET, T0 + HOUR_S + 10, "b"), Verdict::Known);
    // Indexed while no collector ran, inside the persisted span: late.
    assert_eq!(second.judge(MARKET, T0 + 20, "meanwhile"), Verdict::Late);
    assert_eq!(
        second.judge(MARKET, T0 + HOUR_S + 100, "meanwhile 2"),
        Verdict::Late
    );
    // Covered after the last persisted round: adopted, as without a ledger.
    assert_eq!(
        second.judge(MARKET, T0 + HOUR_S + 150, "c"),
        Verdict::Baseline
    );
    // A complete re-read that reaches the persisted span joins the two: from then on every
    // unknown fill since the span's start is late.
    second.read_complete(MARKET, T0 + HOUR_S + 90, T0 + HOUR_S + 200);
    assert_eq!(
        second.judge(MARKET, T0 + HOUR_S + 160, "later"),
        Verdict::Late
    );
}

#[test]
fn a_restart_without_a_persisted_span_adopts_as_before() {
    let mut topic = Topic::default();
    let mut first = Ledger::new(24 * HOUR_S, 1_000);
    first.advance(T0 + HOUR_S);
    first.register(MARKET, None);
    first.record(MARKET, T0 + 10, "a");
    // No coverage yet: hours are written, no span answers for them.
    let writes = first.take_writes(|_| None);
    assert!(writes.spans.is_empty());
    topic.apply(&writes);
    let mut second = Ledger::new(24 * HOUR_S, 1_000);
    second.restore(topic.entries());
    second.advance(T0 + HOUR_S);
    second.register(MARKET, Some(T0 + 100));
    assert_eq!(second.judge(MARKET, T0 + 20, "unknown"), Verdict::Baseline);
}

#[test]
fn only_changes_are_written_and_what_leaves_the_ledger_leaves_the_topic() {
    let mut topic = Topic::default();
    let mut ledger = Ledger::new(2 * HOUR_S, 1_000);
    ledger.advance(T0 + HOUR_S);
    ledger.register(MARKET, None);
    ledger.register(OTHER, None);
    ledger.record(MARKET, T0 + 10, "a");
    ledger.record(OTHER, T0 + 10, "b");
    let writes = ledger.take_writes(covered_to(T0 + 100));
    assert_eq!((writes.hours.len(), writes.spans.len()), (2, 2));
    topic.apply(&writes);
    // Nothing new: nothing to write.
    assert!(ledger.take_writes(covered_to(T0 + 100)).is_empty());
    // More coverage: the spans only.
    let writes = ledger.take_writes(covered_to(T0 + 200));
    assert_eq!((writes.hours.len(), writes.spans.len()), (0, 2));
    topic.apply(&writes);
    // A market no longer collected, and an hour that left the horizon, are deleted.
    ledger.retain_markets(|condition_id| condition_id == MARKET);
    ledger.record(MARKET, T0 + 3 * HOUR_S, "d");
    ledger.advance(T0 + 3 * HOUR_S + 10);
    let writes = ledger.take_writes(covered_to(T0 + 3 * HOUR_S + 5));
    topic.apply(&writes);
    let keys: Vec<String> = topic.0.keys().cloned().collect();
    assert_eq!(
        keys,
        vec![
            "ledger/0xaaaa".to_owned(),
            format!("ledger/0xaaaa/{}", T0 + 3 * HOUR_S)
        ]
    );
    assert_eq!(
        topic.0["ledger/0xaaaa"],
        serde_json::json!({"from": T0 + HOUR_S, "through": T0 + 3 * HOUR_S + 5, "partial_hours": []})
    );
}

#[test]
fn failed_writes_are_made_again() {
    let mut ledger = Ledger::new(24 * HOUR_S, 1_000);
    ledger.advance(T0 + HOUR_S);
    ledger.register(MARKET, None);
    ledger.record(MARKET, T0 + 10, "a");
    let writes = ledger.take_writes(covered_to(T0 + 100));
    assert!(!writes.is_empty());
    ledger.requeue(&writes);
    assert_eq!(ledger.take_writes(covered_to(T0 + 100)), writes);
}

#[test]
fn an_hour_too_busy_to_persist_is_not_answered_for_after_a_restart() {
    let mut topic = Topic::default();
    let mut first = Ledger::new(24 * HOUR_S, 100_000);
    first.advance(T0 + HOUR_S);
    first.register(MARKET, None);
    for index in 0..=MAX_PERSISTED_PER_HOUR {
        first.record(MARKET, T0 + 10, &format!("busy {index}"));
    }
    first.record(MARKET, T0 + HOUR_S + 10, "quiet");
    topic.apply(&first.take_writes(covered_to(T0 + HOUR_S + 100)));
    let mut second = Ledger::new(24 * HOUR_S, 100_000);
    second.restore(topic.entries());
    second.advance(T0 + HOUR_S);
    second.register(MARKET, Some(T0 + HOUR_S + 100));
    assert_eq!(second.judge(MARKET, T0 + 20, "unknown"), Verdict::Baseline);
    assert_eq!(
        second.judge(MARKET, T0 + HOUR_S + 10, "quiet"),
        Verdict::Known
    );
    assert_eq!(
        second.judge(MARKET, T0 + HOUR_S + 20, "meanwhile"),
        Verdict::Late
    );
}

#[test]
fn fingerprints_are_stable_across_processes() {
    // SHA-256("abc") = ba7816bf 8f01cfea …: the first 8 bytes, big-endian, so ledgers
    // persisted by an earlier version stay valid.
    assert_eq!(fingerprint("abc"), 0xba78_16bf_8f01_cfea);
    assert_ne!(fingerprint("a"), fingerprint("b"));
}
