//! `candle_input = last_trades`: candles from the WebSocket's `last_trade_price` records
//! instead of `trades`, through the binary (real broker and registry). The same taker row seen
//! on two connections counts once; the `trades` topic is not read at all.
//! Run through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::{collections::BTreeMap, time::Duration};

use polytape_candle_builder::candles::{Interval, trade_from_last_trade};
use polytape_model::{Candle, Decimal, LastTrade, Side, Topic, Trade, TradeSource};
use polytape_test_support::stack::isolated_topics;

/// 2026-03-20T15:20:00Z.
const T0: i64 = 1_774_020_000_000;

fn last_trade(token: usize, index: i64, connection: &str, sequence: i64) -> LastTrade {
    LastTrade {
        token_id: format!("9100000000000000{token}"),
        condition_id: format!("0xcond{token}"),
        price: Decimal::new(100 + (index * 37 + i64::try_from(token).unwrap()) % 800, 3),
        size: Decimal::new(1_000_000 + index * 12_345, 6),
        side: Some(if index % 2 == 0 {
            Side::Buy
        } else {
            Side::Sell
        }),
        fee_rate_bps: Some(0),
        transaction_hash: Some(format!("0x{index:064x}")),
        // Every 7 s, so two hours of 1m/5m/15m/1h windows.
        timestamp_ms: T0 + index * 7_000,
        received_ms: T0 + index * 7_000 + 40,
        connection_id: connection.to_owned(),
        sequence,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_can_be_built_from_last_trades_instead_of_trades() {
    let names = isolated_topics("lasttrades");
    support::create_topics(&names).await;
    let mut records = Vec::new();
    for index in 0..1_000_i64 {
        for token in 0..3 {
            records.push(last_trade(token, index, "c1", index));
            if index % 50 == 0 {
                // The same event on a second connection (a redundant subscription).
                records.push(last_trade(token, index, "c2", index));
            }
        }
    }
    support::produce(&names, &records).await;
    // A trade on `trades` that this deployment must not count.
    let ignored = Trade {
        trade_id: "00000000000000000000000000000001".to_owned(),
        condition_id: "0xcond0".to_owned(),
        token_id: "91000000000000000".to_owned(),
        outcome: None,
        outcome_index: None,
        side: Side::Buy,
        price: Decimal::new(999, 3),
        size: Decimal::new(1_000, 0),
        timestamp_ms: T0 + 10,
        transaction_hash: "0x01".to_owned(),
        proxy_wallet: "0x02".to_owned(),
        source: TradeSource::DataApiV2,
        ingested_ms: T0 + 10,
    };
    support::produce(&names, &[ignored]).await;

    let builder = support::start_builder_with(
        &names,
        &[
            ("POLYTAPE_CANDLE_INPUT", "last_trades"),
            // Offsets are committed with checkpoints: catch up sooner.
            ("POLYTAPE_CANDLE_BUILDER_CHECKPOINT_INTERVAL", "1s"),
        ],
    );
    // Everything but `trades`, which this deployment does not read.
    support::wait_caught_up_on(
        &names,
        &[
            Topic::LastTrades,
            Topic::BookSnapshots,
            Topic::PriceChanges,
            Topic::MarketLifecycle,
        ],
        Duration::from_secs(300),
    );
    assert_eq!(builder.terminate(Duration::from_secs(30)), Some(0));
    let candles = support::latest_candles(support::positioned_records::<Candle>(&names).await);

    // The model: each distinct taker row once (times are distinct per token, so no ties).
    let mut expected: BTreeMap<String, (Decimal, Decimal, Decimal, Decimal, Decimal, i64)> =
        BTreeMap::new();
    let mut unique: BTreeMap<(String, i64), LastTrade> = BTreeMap::new();
    for record in &records {
        unique.insert(
            (record.token_id.clone(), record.timestamp_ms),
            record.clone(),
        );
    }
    for interval in Interval::defaults() {
        for ((token, time), record) in &unique {
            let key = format!("{token}:{interval}:{}", interval.open_time(*time));
            let entry = expected.entry(key).or_insert((
                record.price,
                record.price,
                record.price,
                record.price,
                Decimal::ZERO,
                0,
            ));
            entry.1 = entry.1.max(record.price);
            entry.2 = entry.2.min(record.price);
            entry.3 = record.price;
            entry.4 += record.size;
            entry.5 += 1;
        }
    }
    let got: BTreeMap<String, (Decimal, Decimal, Decimal, Decimal, Decimal, i64)> = candles
        .iter()
        .map(|(key, candle)| {
            (
                key.clone(),
                (
                    candle.open,
                    candle.high,
                    candle.low,
                    candle.close,
                    candle.volume,
                    candle.trade_count,
                ),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // The id of a taker row does not depend on the connection it was read on.
    assert_eq!(
        trade_from_last_trade(&last_trade(0, 50, "c1", 50)).trade_id,
        trade_from_last_trade(&last_trade(0, 50, "c2", 50)).trade_id
    );
    println!(
        "last_trades: {} candles from {} records ({} distinct taker rows) equal the model",
        got.len(),
        records.len(),
        unique.len()
    );
}
