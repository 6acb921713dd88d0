//! The oracle test: the simulator's trade history (`/_sim/truth/fills` of an in-process
//! `polymarket-sim`, every taker and maker row, converted to `Trade` records as the collector
//! publishes them) goes through the builder binary (real broker and registry); the candle
//! topic, latest version per key, must equal ClickHouse SQL (`argMin/argMax`, `sum`, `count`)
//! over the same trades in the stack's real ClickHouse, decimal for decimal, for every token
//! and interval.
//!
//! The trades arrive as the collector backfills: market by market, each market's fills in
//! ascending time, so every market but the first arrives after others sharing its partition
//! have reached the present (the case per-token watermarks exist for: none of those trades may
//! be dead-lettered). A few fills are redelivered (counted once); a few are held back an hour
//! of their market's time, past the allowed lateness, within the correction horizon: they
//! correct final candles (re-emitted with `revision` > 0) and are in the oracle's input; and a
//! few are held back 26 hours, beyond the 24 h horizon: those older than their token's
//! watermark minus the horizon must be exactly the dead letters, and are not in the oracle's
//! input since they are part of no candle.
//! Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use clickhouse::Row;
use polytape_model::{Candle, DeadLetter, Decimal, Side, Trade, TradeSource};
use polytape_test_support::stack::{IsolatedDatabase, isolated_topics};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Row, Serialize)]
struct TradeRow {
    trade_id: String,
    condition_id: String,
    token_id: String,
    outcome: Option<String>,
    outcome_index: Option<i32>,
    side: i8,
    price: i64,
    size: i64,
    timestamp: i64,
    transaction_hash: String,
    proxy_wallet: String,
    source: i8,
    ingested_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
struct OracleRow {
    token_id: String,
    interval: String,
    open_time: i64,
    open: i64,
    high: i64,
    low: i64,
    close: i64,
    volume: i128,
    notional: i128,
    vwap: i128,
    trade_count: u64,
    first_trade: i64,
    last_trade: i64,
}

fn units(value: Decimal, scale: u32) -> i128 {
    let mut scaled = value;
    scaled.rescale(scale);
    assert_eq!(scaled, value, "{value} has more than {scale} decimals");
    scaled.mantissa()
}

fn as_row(candle: &Candle) -> OracleRow {
    OracleRow {
        token_id: candle.token_id.clone(),
        interval: candle.interval.clone(),
        open_time: candle.open_time_ms,
        open: i64::try_from(units(candle.open, 6)).unwrap(),
        high: i64::try_from(units(candle.high, 6)).unwrap(),
        low: i64::try_from(units(candle.low, 6)).unwrap(),
        close: i64::try_from(units(candle.close, 6)).unwrap(),
        volume: units(candle.volume, 6),
        notional: units(candle.notional, 12),
        vwap: units(candle.vwap, 12),
        trade_count: u64::try_from(candle.trade_count).unwrap(),
        first_trade: candle.first_trade_ms,
        last_trade: candle.last_trade_ms,
    }
}

/// The default `candle_allowed_lateness`.
const LATENESS_MS: i64 = 120_000;
/// The default `candle_correction_horizon`.
const HORIZON_MS: i64 = 24 * 3_600_000;
/// How long the fills beyond the horizon are held back.
const VERY_LATE_MS: i64 = 26 * 3_600_000;

/// The simulator's fills in backfill order, with redeliveries and held-back (late) fills.
struct Backfill {
    trades: Vec<Trade>,
    /// Indexes (in `trades`) of the fills held back an hour.
    held_back: Vec<usize>,
    /// Indexes of the fills held back beyond the horizon.
    very_late: Vec<usize>,
}

fn backfill_order(fills: &[Trade]) -> Backfill {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut by_market: BTreeMap<&str, Vec<&Trade>> = BTreeMap::new();
    for trade in fills {
        by_market
            .entry(&trade.condition_id)
            .or_default()
            .push(trade);
    }
    // The market that reached the present first, then the others: each starts far behind
    // what its partition has already seen.
    let mut markets: Vec<Vec<&Trade>> = by_market.into_values().collect();
    markets.sort_by_key(|trades| std::cmp::Reverse(trades.len()));
    let mut trades = Vec::new();
    let mut held_back = Vec::new();
    let mut very_late = Vec::new();
    for mut market in markets {
        // Ascending time per market (the tape order is ascending already; stable).
        market.sort_by_key(|trade| trade.timestamp_ms);
        let last_ms = market.last().map_or(0, |trade| trade.timestamp_ms);
        // (delivery time, sequence, trade, held back by)
        let mut arrivals: Vec<(i64, usize, Trade, i64)> = Vec::new();
        for trade in market {
            let held_by = if trade.timestamp_ms + VERY_LATE_MS + 3_600_000 < last_ms
                && rng.random_bool(0.003)
            {
                VERY_LATE_MS
            } else if trade.timestamp_ms + 2 * 3_600_000 < last_ms && rng.random_bool(0.004) {
                3_600_000
            } else {
                0
            };
            let delivery = trade.timestamp_ms + held_by;
            let sequence = arrivals.len();
            arrivals.push((delivery, sequence, trade.clone(), held_by));
            if held_by == 0 && rng.random_bool(0.01) {
                // A collector re-poll: the same fill again, right after.
                arrivals.push((delivery, sequence + 1, trade.clone(), 0));
            }
        }
        arrivals.sort_by_key(|(delivery, sequence, _, _)| (*delivery, *sequence));
        for (_, _, trade, held_by) in arrivals {
            match held_by {
                0 => {}
                VERY_LATE_MS => very_late.push(trades.len()),
                _ => held_back.push(trades.len()),
            }
            trades.push(trade);
        }
    }
    Backfill {
        trades,
        held_back,
        very_late,
    }
}

/// Which deliveries a watermark per token makes late: older than the token's largest trade
/// time delivered before them minus the correction horizon.
fn late_per_token(trades: &[Trade]) -> BTreeSet<usize> {
    let mut watermarks: HashMap<&str, i64> = HashMap::new();
    let mut late = BTreeSet::new();
    for (index, trade) in trades.iter().enumerate() {
        let watermark = watermarks.entry(&trade.token_id).or_insert(i64::MIN);
        if trade.timestamp_ms < watermark.saturating_sub(HORIZON_MS) {
            late.insert(index);
        } else {
            *watermark = (*watermark).max(trade.timestamp_ms);
        }
    }
    late
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_equal_the_clickhouse_oracle_for_every_token_and_interval() {
    let names = isolated_topics("oracle");
    support::create_topics(&names).await;
    // The history ends 2026-03-21T02:00Z and spans two days: three UTC days, every interval
    // boundary kind.
    let sim = support::start_simulator(11, 14, 2, 1_774_058_400_000).await;
    let fills = support::simulator_fills(&sim).await;
    sim.shutdown().await;
    let fills: Vec<Trade> = fills
        .iter()
        .map(|fill| support::collector_trade(fill, 1_774_058_500_000))
        .collect();
    let history = backfill_order(&fills);
    let late = late_per_token(&history.trades);
    assert!(
        late.len() >= 3 && late.iter().all(|index| history.very_late.contains(index)),
        "only fills held back beyond the horizon are late ({} late, {} held back beyond it)",
        late.len(),
        history.very_late.len()
    );
    assert!(history.held_back.len() >= 10, "{}", history.held_back.len());
    let delivered = support::produce(&names, &history.trades).await;
    let mut markets_per_partition: BTreeMap<i32, BTreeSet<&str>> = BTreeMap::new();
    for (delivery, trade) in delivered.iter().zip(&history.trades) {
        markets_per_partition
            .entry(delivery.partition)
            .or_default()
            .insert(&trade.condition_id);
    }
    assert!(
        markets_per_partition
            .values()
            .any(|markets| markets.len() >= 2),
        "markets share partitions"
    );
    // What one watermark per partition would have done with this backfill.
    let mut partition_watermarks: HashMap<i32, i64> = HashMap::new();
    let mut late_per_partition = 0;
    for (delivery, trade) in delivered.iter().zip(&history.trades) {
        let watermark = partition_watermarks
            .entry(delivery.partition)
            .or_insert(i64::MIN);
        if trade.timestamp_ms < watermark.saturating_sub(LATENESS_MS) {
            late_per_partition += 1;
        } else {
            *watermark = (*watermark).max(trade.timestamp_ms);
        }
    }
    assert!(
        late_per_partition > 10 * (late.len() + history.held_back.len()),
        "the backfill order matters: {late_per_partition} deliveries behind their partition's watermark"
    );

    let builder = support::start_builder(&names);
    support::wait_caught_up(&names, Duration::from_secs(300));
    assert_eq!(builder.terminate(Duration::from_secs(30)), Some(0));

    let candles = support::latest_candles(support::positioned_records::<Candle>(&names).await);
    let dead: Vec<(i32, i64, DeadLetter)> = support::positioned_records(&names).await;

    // Exactly the fills beyond the horizon were dead-lettered, as late: nothing of a market
    // backfilled after others, nothing held back only an hour (those are corrections).
    let position_of: HashMap<(i32, i64), usize> = delivered
        .iter()
        .enumerate()
        .map(|(index, delivery)| ((delivery.partition, delivery.offset), index))
        .collect();
    let dead_indexes: BTreeSet<usize> = dead
        .iter()
        .map(|(_, _, letter)| {
            assert!(letter.error.starts_with("late:"), "{}", letter.error);
            assert_eq!(letter.source, "candle-builder");
            position_of[&(letter.partition.unwrap(), letter.offset.unwrap())]
        })
        .collect();
    assert_eq!(dead_indexes, late);

    // The same trades, without the dead-lettered ones, into ClickHouse (duplicates included:
    // the table's identity and FINAL remove them, as in production).
    let database = IsolatedDatabase::create("oracle").await;
    // The history is in March 2026: keep it past the default 90-day TTL.
    polytape_clickhouse::migrate(&database.client, &database.name, 3_650)
        .await
        .unwrap();
    let mut insert = database.client.insert::<TradeRow>("trades").await.unwrap();
    for (index, trade) in history.trades.iter().enumerate() {
        if dead_indexes.contains(&index) {
            continue;
        }
        insert
            .write(&TradeRow {
                trade_id: trade.trade_id.clone(),
                condition_id: trade.condition_id.clone(),
                token_id: trade.token_id.clone(),
                outcome: trade.outcome.clone(),
                outcome_index: trade.outcome_index,
                side: if trade.side == Side::Buy { 1 } else { 2 },
                price: i64::try_from(units(trade.price, 6)).unwrap(),
                size: i64::try_from(units(trade.size, 6)).unwrap(),
                timestamp: trade.timestamp_ms,
                transaction_hash: trade.transaction_hash.clone(),
                proxy_wallet: trade.proxy_wallet.clone(),
                source: if trade.source == TradeSource::DataApiV1 {
                    1
                } else {
                    2
                },
                ingested_at: trade.ingested_ms,
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();

    let oracle: Vec<OracleRow> = database
        .client
        .query(polytape_test_support::oracle::CANDLE_ORACLE_SQL)
        .fetch_all()
        .await
        .unwrap();
    let expected: BTreeMap<(String, String, i64), OracleRow> = oracle
        .into_iter()
        .map(|row| {
            (
                (row.token_id.clone(), row.interval.clone(), row.open_time),
                row,
            )
        })
        .collect();
    let got: BTreeMap<(String, String, i64), OracleRow> = candles
        .values()
        .map(|candle| {
            let row = as_row(candle);
            (
                (row.token_id.clone(), row.interval.clone(), row.open_time),
                row,
            )
        })
        .collect();
    let tokens: BTreeSet<&String> = expected.keys().map(|(token, _, _)| token).collect();
    assert!(tokens.len() >= 20, "tokens: {}", tokens.len());
    let mut differences = Vec::new();
    for key in expected.keys().chain(got.keys()).collect::<BTreeSet<_>>() {
        if expected.get(key) != got.get(key) {
            differences.push(format!(
                "{key:?}:\n  oracle  {:?}\n  builder {:?}",
                expected.get(key),
                got.get(key)
            ));
        }
    }
    // Corrections: the candles of fills that arrived after their window was final were
    // re-emitted with a revision, and only such candles carry one.
    let revised: Vec<&Candle> = candles
        .values()
        .filter(|candle| candle.revision > 0)
        .collect();
    let arrived_late: BTreeSet<(&str, i64)> = history
        .held_back
        .iter()
        .chain(&history.very_late)
        .filter(|index| !dead_indexes.contains(index))
        .map(|index| {
            let trade = &history.trades[*index];
            (trade.token_id.as_str(), trade.timestamp_ms)
        })
        .collect();
    assert!(revised.len() >= 10, "{} revised candles", revised.len());
    for candle in &revised {
        assert!(candle.is_final, "{candle:?}");
        assert!(
            arrived_late
                .iter()
                .any(|(token, time)| *token == candle.token_id
                    && (candle.open_time_ms..candle.close_time_ms).contains(time)),
            "revised without a late fill: {candle:?}"
        );
    }
    assert!(
        differences.is_empty(),
        "{} of {} candles differ; first:\n{}",
        differences.len(),
        expected.len(),
        differences
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!(
        "oracle: {} candles over {} tokens equal ClickHouse ({} revised by {} fills held back an hour); {} simulator fills delivered market by market ({} beyond the horizon, dead-lettered; {} would have been late with one watermark per partition)",
        expected.len(),
        tokens.len(),
        revised.len(),
        history.held_back.len(),
        history.trades.len(),
        dead_indexes.len(),
        late_per_partition
    );
    database.drop_database().await;
}
