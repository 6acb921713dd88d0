use std::str::FromStr;

use polytape_model::{Decimal, samples};

use super::*;

fn fill(id: &str, wallet: &str, at_ms: i64, price: &str, size: &str) -> Trade {
    Trade {
        trade_id: id.to_owned(),
        proxy_wallet: wallet.to_owned(),
        timestamp_ms: at_ms,
        price: Decimal::from_str(price).unwrap(),
        size: Decimal::from_str(size).unwrap(),
        ..samples::trade()
    }
}

const HOUR: i64 = 3_600_000;

fn detector(capacity: usize) -> NewWalletDetector {
    NewWalletDetector::new(
        Rule::new("whales", 3),
        NewWalletThresholds::default(),
        capacity,
    )
}

#[test]
fn a_large_fill_by_a_wallet_never_seen_fires_with_its_inputs() {
    let mut detector = detector(100);
    // A small fill by another wallet starts our history.
    assert!(
        detector
            .observe(&fill("a", "0xold", 0, "0.5", "10"))
            .unwrap()
            .is_none()
    );
    // 25,000 × 0.42 = 10,500 USDC by a wallet never seen.
    let signal = detector
        .observe(&fill("b", "0xnew", HOUR, "0.42", "25000"))
        .unwrap()
        .unwrap();
    assert_eq!(signal.kind, SignalKind::LargeTradeNewWallet);
    assert_eq!(signal.subject, "0xnew");
    assert_eq!(signal.links, ["b"]);
    assert_eq!(signal.window_start_ms, HOUR);
    assert_eq!(signal.input("notional"), Some("10500.000000"));
    assert_eq!(signal.input("prior_fills"), Some("0"));
    assert_eq!(signal.input("first_seen_ms"), None, "never seen before");
    assert_eq!(signal.input("judged_on"), Some("polytape_history"));
    assert_eq!(signal.input("history_since_ms"), Some("0"));
    assert_eq!(signal.threshold("min_notional"), Some("10000.000000"));
    assert_eq!(
        signal.signal_id,
        crate::signal_id(
            SignalKind::LargeTradeNewWallet,
            &Rule::new("whales", 3),
            "b",
            HOUR
        )
    );
}

#[test]
fn an_established_wallet_or_a_small_fill_raises_nothing() {
    let mut detector = detector(100);
    // Six fills over two days: old and busy.
    for number in 0..6 {
        let id = format!("early-{number}");
        let at_ms = i64::from(number) * 10 * HOUR;
        assert!(
            detector
                .observe(&fill(&id, "0xbusy", at_ms, "0.5", "10"))
                .unwrap()
                .is_none()
        );
    }
    assert!(
        detector
            .observe(&fill("big", "0xbusy", 60 * HOUR, "0.5", "30000"))
            .unwrap()
            .is_none()
    );
    // A new wallet, but 9,999.99 USDC: below the threshold.
    assert!(
        detector
            .observe(&fill("small", "0xnew", 60 * HOUR, "0.5", "19999.98"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn young_or_few_either_makes_a_wallet_new() {
    let mut detector = detector(100);
    // Young but busy: 10 fills within an hour, then a large one.
    for number in 0..10 {
        detector
            .observe(&fill(&format!("y{number}"), "0xyoung", number, "0.5", "1"))
            .unwrap();
    }
    let young = detector
        .observe(&fill("y-big", "0xyoung", HOUR, "0.5", "40000"))
        .unwrap()
        .unwrap();
    assert_eq!(young.input("prior_fills"), Some("10"));
    assert_eq!(young.input("wallet_age_ms"), Some("3600000"));
    assert_eq!(young.input("prior_volume"), Some("5.000000"));
    // Old but quiet: one fill three days ago.
    detector
        .observe(&fill("q0", "0xquiet", 0, "0.5", "1"))
        .unwrap();
    let quiet = detector
        .observe(&fill("q-big", "0xquiet", 72 * HOUR, "0.5", "40000"))
        .unwrap()
        .unwrap();
    assert_eq!(quiet.input("prior_fills"), Some("1"));
    assert_eq!(quiet.input("first_seen_ms"), Some("0"));
}

#[test]
fn a_copy_of_a_fill_is_counted_once_and_fires_once() {
    let mut detector = detector(100);
    let big = fill("dup", "0xnew", HOUR, "0.5", "40000");
    assert!(detector.observe(&big).unwrap().is_some());
    assert!(
        detector.observe(&big).unwrap().is_none(),
        "a copy is no news"
    );
    // Four more distinct fills make five: the wallet is no longer "few" by count, but still
    // young; after a day it is neither.
    for number in 0..4 {
        detector
            .observe(&fill(&format!("f{number}"), "0xnew", HOUR, "0.5", "1"))
            .unwrap();
    }
    let later = detector
        .observe(&fill("later", "0xnew", 30 * HOUR, "0.5", "40000"))
        .unwrap();
    assert!(later.is_none(), "five prior fills, first seen 29 h before");
}

#[test]
fn memory_is_bounded_and_what_was_forgotten_is_said() {
    let mut detector = detector(3);
    for number in 0..5 {
        detector
            .observe(&fill(
                &format!("w{number}"),
                &format!("0xw{number}"),
                i64::from(number),
                "0.5",
                "1",
            ))
            .unwrap();
    }
    assert_eq!(detector.wallets(), 3);
    // The least recently active (0xw0, 0xw1) were forgotten: 0xw0 looks new again, and the
    // signal says the history it was judged on lost two wallets.
    let signal = detector
        .observe(&fill("again", "0xw0", 100 * HOUR, "0.5", "40000"))
        .unwrap()
        .unwrap();
    assert_eq!(signal.input("wallets_forgotten"), Some("2"));
    assert_eq!(signal.input("prior_fills"), Some("0"));
    assert_eq!(detector.wallets(), 3);
}
