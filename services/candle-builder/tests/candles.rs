//! Candle aggregation without the network: table-driven cases (ties, late trades, empty
//! intervals, duplicates, finalisation, VWAP rounding), a checkpoint round trip, and a seeded
//! comparison with a brute-force model written directly from the definitions.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{collections::BTreeMap, str::FromStr};

use polytape_candle_builder::candles::{
    CandleAggregator, CandleSettings, Ingested, Interval, Rejected,
};
use polytape_model::{Candle, Decimal, Side, Trade, TradeSource};
use rand::{Rng as _, SeedableRng as _};

/// 2026-03-20T15:20:00Z, on a whole minute.
const T0: i64 = 1_774_020_000_000;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn trade(token: &str, time_ms: i64, id: &str, price: &str, size: &str) -> Trade {
    Trade {
        trade_id: id.to_owned(),
        condition_id: format!("0xcond-{token}"),
        token_id: token.to_owned(),
        outcome: None,
        outcome_index: None,
        side: Side::Buy,
        price: dec(price),
        size: dec(size),
        timestamp_ms: time_ms,
        transaction_hash: "0x00".to_owned(),
        proxy_wallet: "0x00".to_owned(),
        source: TradeSource::DataApiV2,
        ingested_ms: time_ms,
    }
}

fn one_minute(lateness_ms: i64) -> CandleAggregator {
    CandleAggregator::new(CandleSettings::new(vec![Interval::MINUTE], lateness_ms))
}

/// Latest candle per key over a sequence of outputs.
fn latest(outputs: impl IntoIterator<Item = Candle>) -> BTreeMap<(String, String, i64), Candle> {
    let mut map: BTreeMap<(String, String, i64), Candle> = BTreeMap::new();
    for candle in outputs {
        let key = (
            candle.token_id.clone(),
            candle.interval.clone(),
            candle.open_time_ms,
        );
        match map.get(&key) {
            Some(existing) if existing.version > candle.version => {}
            _ => {
                map.insert(key, candle);
            }
        }
    }
    map
}

/// Expected OHLCV of one candle: (open, high, low, close, volume, count, first, last).
type Ohlcv<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, i64, i64, i64);

/// Decimal (open, high, low, close, volume) and (count, first, last) offsets.
type Values = (Decimal, Decimal, Decimal, Decimal, Decimal, i64, i64, i64);
/// (open, high, low, close, volume, notional, count).
type Sums = (Decimal, Decimal, Decimal, Decimal, Decimal, Decimal, i64);

struct Case<'a> {
    name: &'a str,
    /// (time offset from T0, trade id, price, size), in arrival order; offsets are positions.
    trades: Vec<(i64, &'a str, &'a str, &'a str)>,
    /// Expected latest 1m candles by open-time offset from T0.
    expected: Vec<(i64, Ohlcv<'a>)>,
    /// Arrival positions expected to be rejected as late.
    late: Vec<usize>,
}

#[test]
fn table_of_one_minute_cases() {
    assert_eq!(T0 % 60_000, 0);
    let cases = vec![
        Case {
            name: "single trade",
            trades: vec![(5_000, "a", "0.5", "10")],
            expected: vec![(0, ("0.5", "0.5", "0.5", "0.5", "10", 1, 5_000, 5_000))],
            late: vec![],
        },
        Case {
            name: "ties on time are broken by trade id, whatever the arrival order",
            trades: vec![
                (1_000, "c", "0.30", "1"),
                (1_000, "a", "0.10", "1"),
                (1_000, "b", "0.20", "1"),
                (59_999, "z", "0.40", "1"),
                (59_999, "y", "0.45", "1"),
            ],
            expected: vec![(0, ("0.1", "0.45", "0.1", "0.4", "5", 5, 1_000, 59_999))],
            late: vec![],
        },
        Case {
            name: "ties between canonical hex ids and other ids are broken bytewise",
            trades: vec![
                (1_000, "fa000000000000000000000000000000", "0.40", "1"),
                (1_000, "Z", "0.30", "1"),
                (1_000, "00000000000000000000000000000001", "0.20", "1"),
                (1_000, "FA000000000000000000000000000000", "0.25", "1"),
            ],
            // "0…1" < "FA…" < "Z" < "fa…" as bytes.
            expected: vec![(0, ("0.2", "0.4", "0.2", "0.4", "4", 4, 1_000, 1_000))],
            late: vec![],
        },
        Case {
            name: "out of order within lateness corrects open and close",
            trades: vec![
                (30_000, "m", "0.5", "2"),
                (10_000, "e", "0.4", "1"),
                (50_000, "x", "0.6", "1"),
                (20_000, "f", "0.7", "1"),
            ],
            expected: vec![(0, ("0.4", "0.7", "0.4", "0.6", "5", 4, 10_000, 50_000))],
            late: vec![],
        },
        Case {
            name: "empty intervals are not emitted",
            trades: vec![(1_000, "a", "0.5", "1"), (301_000, "b", "0.6", "1")],
            expected: vec![
                (0, ("0.5", "0.5", "0.5", "0.5", "1", 1, 1_000, 1_000)),
                (
                    300_000,
                    ("0.6", "0.6", "0.6", "0.6", "1", 1, 301_000, 301_000),
                ),
            ],
            late: vec![],
        },
        Case {
            name: "a trade beyond the allowed lateness is rejected and changes nothing",
            trades: vec![
                (1_000, "a", "0.5", "1"),
                (200_000, "b", "0.6", "1"),
                // watermark 200 000, lateness 60 000: 139 999 is late, 140 000 is not.
                (139_999, "c", "0.9", "1"),
                (140_000, "d", "0.1", "1"),
            ],
            expected: vec![
                (0, ("0.5", "0.5", "0.5", "0.5", "1", 1, 1_000, 1_000)),
                (
                    120_000,
                    ("0.1", "0.1", "0.1", "0.1", "1", 1, 140_000, 140_000),
                ),
                (
                    180_000,
                    ("0.6", "0.6", "0.6", "0.6", "1", 1, 200_000, 200_000),
                ),
            ],
            late: vec![2],
        },
        Case {
            name: "a duplicate (same time and id) is counted once",
            trades: vec![
                (1_000, "a", "0.5", "3"),
                (2_000, "b", "0.6", "1"),
                (1_000, "a", "0.5", "3"),
            ],
            expected: vec![(0, ("0.5", "0.6", "0.5", "0.6", "4", 2, 1_000, 2_000))],
            late: vec![],
        },
        Case {
            name: "same id at another time is another trade (ClickHouse identity includes time)",
            trades: vec![(1_000, "a", "0.5", "1"), (2_000, "a", "0.5", "1")],
            expected: vec![(0, ("0.5", "0.5", "0.5", "0.5", "2", 2, 1_000, 2_000))],
            late: vec![],
        },
    ];
    for case in cases {
        let mut aggregator = one_minute(60_000);
        let mut outputs = Vec::new();
        let mut rejected = Vec::new();
        for (position, (offset_ms, id, price, size)) in case.trades.iter().enumerate() {
            let trade = trade("tok", T0 + offset_ms, id, price, size);
            match aggregator.apply(&trade, position as i64) {
                Ok(candles) => outputs.extend(candles),
                Err(Rejected::Late { .. }) => rejected.push(position),
                Err(other) => panic!("{}: {other}", case.name),
            }
        }
        assert_eq!(rejected, case.late, "{}: late trades", case.name);
        let latest = latest(outputs);
        let got: Vec<(i64, Values)> = latest
            .values()
            .map(|candle| {
                (
                    candle.open_time_ms - T0,
                    (
                        candle.open,
                        candle.high,
                        candle.low,
                        candle.close,
                        candle.volume,
                        candle.trade_count,
                        candle.first_trade_ms - T0,
                        candle.last_trade_ms - T0,
                    ),
                )
            })
            .collect();
        let expected: Vec<_> = case
            .expected
            .iter()
            .map(|(open, (o, h, l, c, v, n, first, last))| {
                (
                    *open,
                    (dec(o), dec(h), dec(l), dec(c), dec(v), *n, *first, *last),
                )
            })
            .collect();
        assert_eq!(got, expected, "{}", case.name);
    }
}

#[test]
fn versions_grow_and_a_late_correction_has_a_higher_version() {
    let mut aggregator = one_minute(60_000);
    let first = aggregator
        .apply(&trade("tok", T0 + 30_000, "b", "0.5", "1"), 10)
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].version, 10);
    let corrected = aggregator
        .apply(&trade("tok", T0 + 10_000, "a", "0.4", "1"), 11)
        .unwrap();
    assert_eq!(corrected[0].version, 11);
    assert_eq!(corrected[0].open, dec("0.4"));
    assert!(!corrected[0].is_final);
}

#[test]
fn a_window_is_final_once_its_tokens_watermark_passes_its_end_plus_lateness() {
    let mut aggregator = one_minute(10_000);
    aggregator
        .apply(&trade("tok", T0 + 1_000, "a", "0.5", "1"), 0)
        .unwrap();
    // Another token far ahead says nothing about `tok`: its window stays open.
    let other = aggregator
        .apply(&trade("other", T0 + 3_600_000, "b", "0.5", "1"), 1)
        .unwrap();
    assert!(other.iter().all(|candle| !candle.is_final));
    // Token watermark T0+69 999 < close (T0+60 000) + 10 000: still open.
    let open = aggregator
        .apply(&trade("tok", T0 + 69_999, "c", "0.5", "1"), 2)
        .unwrap();
    assert!(open.iter().all(|candle| !candle.is_final));
    assert_eq!(aggregator.token_count(), 2);
    // Token watermark T0+70 000: the first window is final, re-emitted with the trigger's
    // offset (a trade of the same token, so versions stay in one offset order per key).
    let outputs = aggregator
        .apply(&trade("tok", T0 + 70_000, "d", "0.5", "1"), 3)
        .unwrap();
    let finals: Vec<_> = outputs.iter().filter(|candle| candle.is_final).collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].token_id, "tok");
    assert_eq!(finals[0].open_time_ms, T0);
    assert_eq!(finals[0].version, 3);
    assert_eq!(finals[0].trade_count, 1);
    // A trade for the final window is now late.
    assert!(matches!(
        aggregator.apply(&trade("tok", T0 + 59_000, "e", "0.5", "1"), 4),
        Err(Rejected::Late { .. })
    ));
}

#[test]
fn a_token_without_open_windows_keeps_only_its_watermark_and_still_rejects_late_trades() {
    let mut aggregator = one_minute(10_000);
    aggregator
        .apply(&trade("tok", T0 + 1_000, "a", "0.5", "1"), 0)
        .unwrap();
    // The next trade of `tok` is minutes later: the first window turns final and is evicted,
    // and the new one stays open.
    aggregator
        .apply(&trade("tok", T0 + 600_000, "b", "0.5", "1"), 1)
        .unwrap();
    assert_eq!(aggregator.window_count(), 1);
    // Close that one too with a trade far ahead, then let it be evicted.
    let outputs = aggregator
        .apply(&trade("tok", T0 + 3_600_000, "c", "0.5", "1"), 2)
        .unwrap();
    assert!(outputs.iter().any(|candle| candle.is_final));
    assert_eq!(aggregator.token_watermark_ms("tok"), Some(T0 + 3_600_000));
    // A redelivery of the first trade must not reopen its published, final window.
    let redelivered = aggregator.apply(&trade("tok", T0 + 1_000, "a", "0.5", "1"), 3);
    assert!(
        matches!(redelivered, Err(Rejected::Late { .. })),
        "{redelivered:?}"
    );
    // The watermark survives a checkpoint even when the token has no open window.
    let mut idle = one_minute(10_000);
    idle.apply(&trade("tok", T0 + 1_000, "a", "0.5", "1"), 0)
        .unwrap();
    idle.apply(&trade("tok", T0 + 120_000, "b", "0.5", "1"), 1)
        .unwrap();
    idle.apply(&trade("tok", T0 + 240_000, "c", "0.5", "1"), 2)
        .unwrap();
    let text = serde_json::to_string(&idle.state()).unwrap();
    let restored = CandleAggregator::restore(
        CandleSettings::new(vec![Interval::MINUTE], 10_000),
        serde_json::from_str(&text).unwrap(),
    );
    assert_eq!(restored.token_watermark_ms("tok"), Some(T0 + 240_000));
    assert_eq!(restored.tracked_token_count(), 1);
}

/// The collector backfills market by market onto partitions shared by many markets: a token's
/// whole history can arrive after another token of the partition reached the present.
#[test]
fn an_older_history_of_one_token_after_a_newer_one_of_another_is_accepted_and_exact() {
    let settings = CandleSettings::new(Interval::defaults(), 120_000);
    let mut aggregator = CandleAggregator::new(settings.clone());
    let mut outputs = Vec::new();
    let mut accepted = Vec::new();
    let mut offset = 0_i64;
    let mut feed = |aggregator: &mut CandleAggregator, trade: Trade| {
        let result = aggregator.apply(&trade, offset);
        offset += 1;
        match result {
            Ok(candles) => {
                outputs.extend(candles);
                accepted.push(trade);
                true
            }
            Err(Rejected::Late { .. }) => false,
            Err(other) => panic!("{other}"),
        }
    };
    // Token A: two days of trades, ascending (a backfilled chunk), then token B: the same two
    // days, a day older than A's latest trade — interleaved with A's live trades.
    let day = 86_400_000;
    for index in 0..200_i64 {
        let time = T0 + index * 900_000 + 7_000;
        let price = format!("0.{}", 10 + index % 80);
        assert!(feed(
            &mut aggregator,
            trade("A", time, &format!("a{index:04}"), &price, "2")
        ));
    }
    for index in 0..200_i64 {
        let time = T0 - day + index * 900_000 + 11_000;
        let price = format!("0.{}", 90 - index % 80);
        assert!(
            feed(
                &mut aggregator,
                trade("B", time, &format!("b{index:04}"), &price, "1.5")
            ),
            "B's trade at {time} is accepted though A is at {:?}",
            aggregator.token_watermark_ms("A")
        );
        if index % 20 == 0 {
            let live = T0 + 200 * 900_000 + index * 1_000;
            assert!(feed(
                &mut aggregator,
                trade("A", live, &format!("l{index:04}"), "0.5", "1")
            ));
        }
    }
    // Per token, lateness still applies: B is now ~26 h past its first trade.
    let late_b = trade("B", T0 - day + 11_000, "b-late", "0.5", "1");
    assert!(!feed(&mut aggregator, late_b));
    let late_a = trade("A", T0 + 7_000, "a-late", "0.5", "1");
    assert!(!feed(&mut aggregator, late_a));
    // Within the lateness of B's own watermark: accepted, the candle corrected.
    let b_watermark = aggregator.token_watermark_ms("B").unwrap();
    assert!(feed(
        &mut aggregator,
        trade("B", b_watermark - 119_000, "b-inside", "0.99", "3")
    ));
    outputs.extend(aggregator.drain().unwrap());

    let latest = latest(outputs);
    for interval in settings.intervals() {
        let expected = model(&accepted, *interval);
        let got = sums_of(&latest, *interval);
        assert_eq!(got, expected, "interval {interval}");
    }
    // B's old windows were finalised by B's own watermark, A's by A's.
    assert!(
        latest
            .values()
            .any(|candle| candle.token_id == "B" && candle.is_final && candle.interval == "1d")
    );
    assert_eq!(
        accepted.len(),
        200 + 200 + 10 + 1,
        "every trade but the two late ones"
    );
}

/// A format-1 checkpoint (one watermark per partition) restores with each token's watermark
/// derived from its open windows.
#[test]
fn a_checkpoint_with_partition_watermarks_is_upgraded_to_token_watermarks() {
    let settings = CandleSettings::new(vec![Interval::MINUTE], 60_000);
    let mut aggregator = CandleAggregator::new(settings.clone());
    aggregator
        .apply(&trade("A", T0 + 600_000, "a", "0.5", "1"), 0)
        .unwrap();
    aggregator
        .apply(&trade("B", T0 + 1_000, "b", "0.5", "1"), 1)
        .unwrap();
    aggregator.drain().unwrap();
    let text = serde_json::to_string(&aggregator.state()).unwrap();
    // Rewrite it as format 1 wrote it: no format, no token watermarks (the partition's
    // watermark stays). Text surgery: the state holds i128s, which `serde_json::Value` cannot.
    let (head, tokens) = text.split_at(text.find("\"tokens\"").unwrap());
    let head = head.replace("\"format\":2,", "");
    let mut legacy = String::new();
    let mut rest = tokens;
    while let Some(at) = rest.find("\"watermark_ms\":") {
        legacy.push_str(&rest[..at]);
        let after = &rest[at + "\"watermark_ms\":".len()..];
        let end = after.find(',').unwrap();
        rest = &after[end + 1..];
    }
    legacy.push_str(rest);
    let legacy = format!("{head}{legacy}");
    assert!(!legacy.contains("format") && legacy.matches("watermark_ms").count() == 1);
    let state: polytape_candle_builder::candles::AggregatorState =
        serde_json::from_str(&legacy).unwrap();
    assert_eq!(state.format(), 1);
    let mut restored = CandleAggregator::restore(settings, state);
    assert_eq!(restored.token_watermark_ms("A"), Some(T0 + 600_000));
    assert_eq!(restored.token_watermark_ms("B"), Some(T0 + 1_000));
    // B is judged by its own watermark: a trade 30 s before B's latest is fine.
    assert!(
        restored
            .apply(&trade("B", T0 - 29_000, "b2", "0.5", "1"), 2)
            .is_ok()
    );
    assert!(matches!(
        restored.apply(&trade("A", T0 + 1_000, "a2", "0.5", "1"), 3),
        Err(Rejected::Late { .. })
    ));
}

#[test]
fn every_interval_is_aligned_to_utc_and_labelled() {
    let labels: Vec<String> = Interval::defaults()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(labels, ["1m", "5m", "15m", "1h", "4h", "1d"]);
    assert!(
        "7m".parse::<Interval>().is_err(),
        "7 minutes do not divide a day"
    );
    assert!("0m".parse::<Interval>().is_err());
    assert!("1w".parse::<Interval>().is_err());
    let mut aggregator = CandleAggregator::new(CandleSettings::default());
    // 2026-03-20T15:23:45.678Z
    let time = 1_774_020_225_678;
    let candles = aggregator
        .apply(&trade("tok", time, "a", "0.5", "1"), 0)
        .unwrap();
    let opens: BTreeMap<String, (i64, i64)> = candles
        .iter()
        .map(|candle| {
            (
                candle.interval.clone(),
                (candle.open_time_ms, candle.close_time_ms),
            )
        })
        .collect();
    assert_eq!(opens["1m"], (1_774_020_180_000, 1_774_020_240_000));
    assert_eq!(opens["5m"], (1_774_020_000_000, 1_774_020_300_000));
    assert_eq!(opens["15m"], (1_774_019_700_000, 1_774_020_600_000));
    assert_eq!(opens["1h"], (1_774_018_800_000, 1_774_022_400_000));
    assert_eq!(opens["4h"], (1_774_008_000_000, 1_774_022_400_000));
    assert_eq!(opens["1d"], (1_773_964_800_000, 1_774_051_200_000));
}

#[test]
fn vwap_is_notional_over_volume_truncated_to_12_decimals() {
    let mut aggregator = one_minute(0);
    aggregator
        .apply(&trade("tok", T0, "a", "0.1", "1"), 0)
        .unwrap();
    aggregator
        .apply(&trade("tok", T0 + 1, "b", "0.2", "1"), 1)
        .unwrap();
    let candles = aggregator
        .apply(&trade("tok", T0 + 2, "c", "0.2", "1"), 2)
        .unwrap();
    let candle = &candles[0];
    assert_eq!(candle.notional, dec("0.5"));
    assert_eq!(candle.volume, dec("3"));
    assert_eq!(candle.vwap.to_string(), "0.166666666666");
    assert_eq!(candle.notional.scale(), 12);
    assert_eq!(candle.vwap.scale(), 12);
}

#[test]
fn invalid_trades_are_rejected_with_a_reason() {
    let mut aggregator = one_minute(0);
    let too_precise = aggregator.apply(&trade("tok", T0, "a", "0.1234567", "1"), 0);
    assert!(
        matches!(too_precise, Err(Rejected::Invalid(reason)) if reason.contains("6 decimal places"))
    );
    let zero_price = aggregator.apply(&trade("tok", T0, "b", "0", "1"), 1);
    assert!(matches!(zero_price, Err(Rejected::Invalid(_))));
    assert_eq!(aggregator.token_count(), 0);
}

/// Seeded trades over a few tokens: ties, duplicates, out-of-order arrivals within and
/// beyond the lateness.
fn random_history(seed: u64, count: usize) -> Vec<Trade> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut trades: Vec<Trade> = Vec::new();
    let mut clock = T0;
    for index in 0..count {
        clock += rng.random_range(0..4_000);
        let jitter = if rng.random_bool(0.2) {
            rng.random_range(0..90_000)
        } else {
            0
        };
        let time = clock - jitter;
        let token = format!("tok{}", rng.random_range(0..4));
        let price = Decimal::new(rng.random_range(1..1_000) * 1_000, 6);
        let size = Decimal::new(rng.random_range(1..50_000_000), 6);
        let id = format!("{:032x}", rng.random::<u128>() >> rng.random_range(0..8));
        let trade = Trade {
            trade_id: id,
            price,
            size,
            ..trade(&token, time, "x", "0.5", "1")
        };
        if index > 0 && rng.random_bool(0.03) {
            // Redelivery of an earlier trade.
            let earlier = trades[rng.random_range(0..trades.len())].clone();
            trades.push(earlier);
        }
        if rng.random_bool(0.05) {
            // Same time as the previous trade: a tie broken by id.
            let mut tie = trade.clone();
            tie.trade_id = format!("{:032x}", rng.random::<u128>());
            trades.push(tie);
        }
        trades.push(trade);
    }
    trades
}

/// The definitions, computed naively with `Decimal` from the accepted trades.
fn model(accepted: &[Trade], interval: Interval) -> BTreeMap<(String, i64), Sums> {
    let mut unique: BTreeMap<(String, i64, String), &Trade> = BTreeMap::new();
    for trade in accepted {
        unique.insert(
            (
                trade.token_id.clone(),
                trade.timestamp_ms,
                trade.trade_id.clone(),
            ),
            trade,
        );
    }
    let mut groups: BTreeMap<(String, i64), Vec<&Trade>> = BTreeMap::new();
    for ((token, _, _), trade) in &unique {
        groups
            .entry((token.clone(), interval.open_time(trade.timestamp_ms)))
            .or_default()
            .push(trade);
    }
    groups
        .into_iter()
        .map(|(key, trades)| {
            // BTreeMap order is (token, time, id): the documented total order.
            let open = trades[0].price;
            let close = trades[trades.len() - 1].price;
            let high = trades.iter().map(|trade| trade.price).max().unwrap();
            let low = trades.iter().map(|trade| trade.price).min().unwrap();
            let volume: Decimal = trades.iter().map(|trade| trade.size).sum();
            let notional: Decimal = trades.iter().map(|trade| trade.price * trade.size).sum();
            (
                key,
                (
                    open,
                    high,
                    low,
                    close,
                    volume,
                    notional,
                    trades.len() as i64,
                ),
            )
        })
        .collect()
}

/// The latest candles of one interval, as the model computes them.
fn sums_of(
    latest: &BTreeMap<(String, String, i64), Candle>,
    interval: Interval,
) -> BTreeMap<(String, i64), Sums> {
    latest
        .iter()
        .filter(|((_, label, _), _)| *label == interval.to_string())
        .map(|((token, _, open), candle)| {
            (
                (token.clone(), *open),
                (
                    candle.open,
                    candle.high,
                    candle.low,
                    candle.close,
                    candle.volume,
                    candle.notional,
                    candle.trade_count,
                ),
            )
        })
        .collect()
}

#[test]
fn seeded_histories_match_a_brute_force_model_and_survive_a_checkpoint() {
    for seed in 0..5 {
        let trades = random_history(seed, 3_000);
        let settings = CandleSettings::new(Interval::defaults(), 60_000);
        let mut aggregator = CandleAggregator::new(settings.clone());
        let mut outputs = Vec::new();
        let mut accepted = Vec::new();
        let mut duplicates = 0;
        for (offset, trade) in trades.iter().enumerate() {
            if offset == trades.len() / 2 {
                // Checkpoint and restore mid-stream, through JSON as the pipeline does (after
                // a drain: the pipeline checkpoints between batches).
                outputs.extend(aggregator.drain().unwrap());
                let text = serde_json::to_string(&aggregator.state()).unwrap();
                aggregator = CandleAggregator::restore(
                    settings.clone(),
                    serde_json::from_str(&text).unwrap(),
                );
            }
            match aggregator.ingest(trade, offset as i64) {
                Ok(Ingested::Counted) => accepted.push(trade.clone()),
                Ok(Ingested::Duplicate) => duplicates += 1,
                Err(Rejected::Late { .. }) => {}
                Err(other) => panic!("{other}"),
            }
            if offset % 97 == 0 {
                outputs.extend(aggregator.drain().unwrap());
            }
        }
        outputs.extend(aggregator.drain().unwrap());
        assert!(duplicates > 0, "seed {seed} exercises duplicates");
        assert!(
            accepted.len() < trades.len() - duplicates,
            "seed {seed} exercises late trades"
        );
        let latest = latest(outputs);
        for interval in settings.intervals() {
            let expected = model(&accepted, *interval);
            for candle in latest.values() {
                let vwap = (candle.notional / candle.volume)
                    .round_dp_with_strategy(12, rust_decimal::RoundingStrategy::ToZero);
                assert_eq!(candle.vwap, vwap, "vwap");
            }
            assert_eq!(
                sums_of(&latest, *interval),
                expected,
                "seed {seed}, interval {interval}"
            );
        }
    }
}

fn corrected_minutes(lateness_ms: i64, horizon_ms: i64) -> CandleAggregator {
    CandleAggregator::new(
        CandleSettings::new(vec![Interval::MINUTE], lateness_ms)
            .with_correction_horizon(horizon_ms),
    )
}

#[test]
fn a_trade_found_after_its_candle_was_final_corrects_it_up_to_the_horizon() {
    // 1 minute windows, final 10 s after their end, correctable for an hour.
    let mut aggregator = corrected_minutes(10_000, 3_600_000);
    let first = aggregator
        .apply(&trade("A", T0 + 1_000, "a1", "0.50", "10"), 1)
        .unwrap();
    assert_eq!((first.len(), first[0].revision), (1, 0));
    // The token moves 30 minutes on: the first window is final.
    let finalised = aggregator
        .apply(&trade("A", T0 + 1_800_000, "a2", "0.70", "1"), 2)
        .unwrap();
    let final_first = finalised
        .iter()
        .find(|candle| candle.open_time_ms == T0)
        .unwrap();
    assert!(final_first.is_final && final_first.revision == 0);

    // A fill of the first minute found 30 minutes late: the same candle, complete, again.
    let corrected = aggregator
        .apply(&trade("A", T0 + 500, "a0", "0.40", "5"), 3)
        .unwrap();
    assert_eq!(corrected.len(), 1, "{corrected:#?}");
    let candle = &corrected[0];
    assert_eq!(candle.open_time_ms, T0);
    assert!(candle.is_final);
    assert_eq!(candle.revision, 1);
    assert_eq!(candle.version, 3);
    assert_eq!(
        (candle.open, candle.close, candle.low, candle.high),
        (dec("0.40"), dec("0.50"), dec("0.40"), dec("0.50"))
    );
    assert_eq!((candle.volume, candle.trade_count), (dec("15"), 2));

    // Redelivered, it changes nothing.
    assert_eq!(
        aggregator.ingest(&trade("A", T0 + 500, "a0", "0.40", "5"), 4),
        Ok(Ingested::Duplicate)
    );
    assert!(aggregator.drain().unwrap().is_empty());

    // A minute that had no trade until now appears final, as a correction.
    let appeared = aggregator
        .apply(&trade("A", T0 + 600_000, "a3", "0.60", "2"), 5)
        .unwrap();
    assert_eq!(appeared.len(), 1);
    assert!(appeared[0].is_final && appeared[0].revision == 1);

    // A second late fill of the first minute: revision 2.
    let again = aggregator
        .apply(&trade("A", T0 + 59_000, "a4", "0.55", "1"), 6)
        .unwrap();
    assert_eq!((again[0].revision, again[0].trade_count), (2, 3));
    assert_eq!(again[0].close, dec("0.55"));

    // Beyond the horizon (the token's watermark minus an hour): late.
    aggregator
        .apply(&trade("A", T0 + 5_400_000, "a5", "0.70", "1"), 7)
        .unwrap();
    assert!(matches!(
        aggregator.ingest(&trade("A", T0 + 1_700_000, "a6", "0.40", "1"), 8),
        Err(Rejected::Late { .. })
    ));
    // Windows past the horizon are no longer held.
    assert!(aggregator.settled_window_count() <= 2);
}

#[test]
fn a_token_idle_for_longer_than_the_horizon_gives_up_its_settled_windows() {
    let mut aggregator = corrected_minutes(10_000, 3_600_000);
    for (offset, (time, id)) in [(T0 + 1_000, "a1"), (T0 + 120_000, "a2")]
        .into_iter()
        .enumerate()
    {
        aggregator
            .apply(&trade("A", time, id, "0.50", "1"), offset as i64)
            .unwrap();
    }
    assert_eq!(aggregator.settled_window_count(), 1);
    // Another token of the partition moves three hours on; A has not traded since.
    aggregator
        .apply(&trade("B", T0 + 3 * 3_600_000, "b1", "0.50", "1"), 3)
        .unwrap();
    assert_eq!(aggregator.settled_window_count(), 0);
    // A's first minute is gone: a fill of it is late now, although A's own watermark is
    // within the horizon of it (declared in the DLQ, never a partial candle).
    assert!(matches!(
        aggregator.ingest(&trade("A", T0 + 2_000, "a0", "0.40", "1"), 4),
        Err(Rejected::Late { .. })
    ));
    // A's newer minute is still open and counts.
    assert_eq!(
        aggregator.ingest(&trade("A", T0 + 121_000, "a3", "0.40", "1"), 5),
        Ok(Ingested::Counted)
    );
}

#[test]
fn corrections_match_the_model_and_do_not_depend_on_batches_or_checkpoints() {
    for seed in 10..14 {
        // Up to 90 s of jitter, plus fills held back 5–40 minutes (the reconciliation's).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut trades = random_history(seed, 3_000);
        let mut held = Vec::new();
        for index in (0..trades.len()).rev() {
            if rng.random_bool(0.04) {
                let delay = rng.random_range(300..2_400);
                held.push((index + delay, trades.remove(index)));
            }
        }
        held.sort_by_key(|(position, _)| *position);
        for (position, trade) in held {
            let position = position.min(trades.len());
            trades.insert(position, trade);
        }
        let settings =
            CandleSettings::new(Interval::defaults(), 60_000).with_correction_horizon(30 * 60_000);
        let run = |drain_every: usize, checkpoint_at: usize| {
            let mut aggregator = CandleAggregator::new(settings.clone());
            let mut outputs = Vec::new();
            let mut verdicts = Vec::new();
            for (offset, trade) in trades.iter().enumerate() {
                if offset == checkpoint_at {
                    outputs.extend(aggregator.drain().unwrap());
                    let text = serde_json::to_string(&aggregator.state()).unwrap();
                    aggregator = CandleAggregator::restore(
                        settings.clone(),
                        serde_json::from_str(&text).unwrap(),
                    );
                }
                verdicts.push(aggregator.ingest(trade, offset as i64));
                if offset % drain_every == 0 {
                    outputs.extend(aggregator.drain().unwrap());
                }
            }
            outputs.extend(aggregator.drain().unwrap());
            (verdicts, latest(outputs))
        };
        let (verdicts, candles) = run(97, trades.len() / 2);
        let (other_verdicts, other_candles) = run(13, trades.len() / 3);
        assert_eq!(
            verdicts, other_verdicts,
            "seed {seed}: verdicts depend on batches"
        );
        for (key, candle) in &candles {
            assert_eq!(
                Some(candle),
                other_candles.get(key),
                "seed {seed}: candles depend on batches"
            );
        }
        assert_eq!(
            candles.len(),
            other_candles.len(),
            "seed {seed}: candles depend on batches"
        );

        let accepted: Vec<Trade> = trades
            .iter()
            .zip(&verdicts)
            .filter(|(_, verdict)| *verdict == &Ok(Ingested::Counted))
            .map(|(trade, _)| trade.clone())
            .collect();
        let late = verdicts
            .iter()
            .filter(|verdict| matches!(verdict, Err(Rejected::Late { .. })))
            .count();
        let revised = candles
            .values()
            .filter(|candle| candle.revision > 0)
            .count();
        assert!(revised > 0, "seed {seed} exercises corrections");
        assert!(late > 0, "seed {seed} exercises the horizon");
        for candle in candles.values().filter(|candle| candle.revision > 0) {
            assert!(
                candle.is_final,
                "only a final candle is revised: {candle:?}"
            );
        }
        for interval in settings.intervals() {
            let expected = model(&accepted, *interval);
            let got = sums_of(&candles, *interval);
            assert_eq!(got, expected, "seed {seed}, interval {interval}");
        }
    }
}
