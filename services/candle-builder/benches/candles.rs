//! The candle builder's hot paths, without Kafka I/O:
//!
//! - `trades/decode_and_candle`: Confluent-framed Avro trades decoded with the codec and
//!   counted into candles of all six default intervals, drained every `BATCH_MAX` (5 000)
//!   trades as the pipeline drains once per batch of at most that many records (a replay runs
//!   full batches); 1 000 tokens, so each token has ~5 trades per batch; trades/s on one core.
//! - `trades/candle_only`: the same without the decode.
//! - `price_changes/apply`: price-change entries applied to books (set/delete, validation
//!   against best bid/ask, publishing rules; states built when published); entries/s.
//! - `price_changes/decode_and_apply`: the same including the Avro decode.
//! - Peak RSS for books and open windows of 10 000 tokens, printed before the benchmarks
//!   (measured first, so the benchmarks' own data is not in it).
//!
//! Run: `cargo bench -p polytape-candle-builder --bench candles`.

#![allow(clippy::unwrap_used)] // benchmark set-up fails loudly on purpose

use std::{collections::BTreeMap, hint::black_box, time::Duration};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use polytape_candle_builder::{
    book::{BookEngine, BookSettings},
    candles::{CandleAggregator, CandleSettings},
    pipeline::BATCH_MAX,
};
use polytape_codec::{RecordDecoder, RecordEncoder};
use polytape_model::{
    BookLevel, BookSnapshot, BookSource, Decimal, PriceChange, Side, Trade, TradeSource,
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

const T0: i64 = 1_774_020_000_000;
const TRADES: usize = 100_000;
const CHANGES: usize = 100_000;

fn token_id(index: usize) -> String {
    format!(
        "{:077}",
        71_321_045_679_252_212_u128 * 1_000_000 + index as u128
    )
}

/// Trades over `tokens` tokens in time order (about 20 per second), with realistic ids.
fn trades(tokens: usize, count: usize) -> Vec<Trade> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut time = T0;
    (0..count)
        .map(|_| {
            time += rng.random_range(0..100);
            let token = rng.random_range(0..tokens);
            Trade {
                trade_id: format!("{:032x}", rng.random::<u128>()),
                condition_id: format!("0x{:064x}", token),
                token_id: token_id(token),
                outcome: Some("Yes".to_owned()),
                outcome_index: Some(0),
                side: Side::Buy,
                price: Decimal::new(rng.random_range(1..1_000) * 1_000, 6),
                size: Decimal::new(rng.random_range(1..100_000_000), 6),
                timestamp_ms: time,
                transaction_hash: format!("0x{:064x}", rng.random::<u128>()),
                proxy_wallet: format!("0x{:040x}", rng.random::<u64>()),
                source: TradeSource::DataApiV2,
                ingested_ms: time + 3_000,
            }
        })
        .collect()
}

fn snapshot(token: &str, time: i64, book: &[BTreeMap<i64, i64>; 2]) -> BookSnapshot {
    let level = |(price, size): (&i64, &i64)| BookLevel {
        price: Decimal::new(*price, 6),
        size: Decimal::new(*size, 6),
    };
    BookSnapshot {
        token_id: token.to_owned(),
        condition_id: "0xcondition".to_owned(),
        timestamp_ms: time,
        received_ms: time,
        bids: book[0].iter().rev().map(level).collect(),
        asks: book[1].iter().map(level).collect(),
        hash: None,
        tick_size: Some(Decimal::new(1_000, 6)),
        min_order_size: None,
        neg_risk: None,
        last_trade_price: None,
        source: BookSource::Ws,
        connection_id: Some("ws-0".to_owned()),
        sequence: Some(0),
    }
}

/// Initial snapshots of `tokens` books with `levels` levels per side (tick 0.001), and
/// `count` valid changes (best bid/ask as upstream would send them).
fn book_events(tokens: usize, levels: i64, count: usize) -> (Vec<BookSnapshot>, Vec<PriceChange>) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut books: Vec<[BTreeMap<i64, i64>; 2]> = (0..tokens)
        .map(|_| {
            let bids = (0..levels)
                .map(|level| {
                    (
                        499_000 - level * 1_000,
                        rng.random_range(1..1_000) * 1_000_000,
                    )
                })
                .collect();
            let asks = (0..levels)
                .map(|level| {
                    (
                        501_000 + level * 1_000,
                        rng.random_range(1..1_000) * 1_000_000,
                    )
                })
                .collect();
            [bids, asks]
        })
        .collect();
    let snapshots = books
        .iter()
        .enumerate()
        .map(|(index, book)| snapshot(&token_id(index), T0, book))
        .collect();
    let mut time = T0;
    let changes = (0..count)
        .map(|sequence| {
            time += rng.random_range(0..3);
            let index = rng.random_range(0..tokens);
            let (side_index, side, price) = if rng.random_bool(0.5) {
                (
                    0,
                    Side::Buy,
                    499_000 - rng.random_range(0..levels + 5) * 1_000,
                )
            } else {
                (
                    1,
                    Side::Sell,
                    501_000 + rng.random_range(0..levels + 5) * 1_000,
                )
            };
            let size = if rng.random_bool(0.2) {
                0
            } else {
                rng.random_range(1..1_000) * 1_000_000
            };
            if size == 0 {
                books[index][side_index].remove(&price);
            } else {
                books[index][side_index].insert(price, size);
            }
            let best_bid = books[index][0].keys().next_back().copied().unwrap_or(0);
            let best_ask = books[index][1].keys().next().copied().unwrap_or(1_000_000);
            PriceChange {
                token_id: token_id(index),
                condition_id: "0xcondition".to_owned(),
                side,
                price: Decimal::new(price, 6),
                size: Decimal::new(size, 6),
                best_bid: Some(Decimal::new(best_bid, 6)),
                best_ask: Some(Decimal::new(best_ask, 6)),
                hash: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
                timestamp_ms: time,
                received_ms: time + 20,
                connection_id: "ws-0-1774020000000".to_owned(),
                sequence: sequence as i64,
                entry_index: 0,
            }
        })
        .collect();
    (snapshots, changes)
}

fn bench_trades(criterion: &mut Criterion) {
    let trades = trades(1_000, TRADES);
    let encoder = RecordEncoder::<Trade>::with_schema_id(1).unwrap();
    let framed: Vec<Vec<u8>> = trades
        .iter()
        .map(|trade| encoder.encode(trade).unwrap())
        .collect();
    let decoder = RecordDecoder::<Trade>::for_own_schema(1).unwrap();

    let mut group = criterion.benchmark_group("trades");
    group.throughput(Throughput::Elements(TRADES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("decode_and_candle", |bench| {
        bench.iter_batched(
            || CandleAggregator::new(CandleSettings::default()),
            |mut aggregator| {
                for (offset, message) in framed.iter().enumerate() {
                    let trade = decoder.decode_cached(message).unwrap().unwrap();
                    aggregator.ingest(&trade, offset as i64).unwrap();
                    if offset % BATCH_MAX == BATCH_MAX - 1 {
                        black_box(aggregator.drain().unwrap());
                    }
                }
                black_box(aggregator.drain().unwrap())
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("candle_only", |bench| {
        bench.iter_batched(
            || CandleAggregator::new(CandleSettings::default()),
            |mut aggregator| {
                for (offset, trade) in trades.iter().enumerate() {
                    aggregator.ingest(trade, offset as i64).unwrap();
                    if offset % BATCH_MAX == BATCH_MAX - 1 {
                        black_box(aggregator.drain().unwrap());
                    }
                }
                black_box(aggregator.drain().unwrap())
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn bench_price_changes(criterion: &mut Criterion) {
    let (snapshots, changes) = book_events(1_000, 50, CHANGES);
    let encoder = RecordEncoder::<PriceChange>::with_schema_id(2).unwrap();
    let framed: Vec<Vec<u8>> = changes
        .iter()
        .map(|change| encoder.encode(change).unwrap())
        .collect();
    let decoder = RecordDecoder::<PriceChange>::for_own_schema(2).unwrap();
    let fresh_engine = || {
        let mut engine = BookEngine::new(BookSettings::default());
        for snapshot in &snapshots {
            engine.apply_snapshot(snapshot).unwrap();
        }
        engine
    };

    let mut group = criterion.benchmark_group("price_changes");
    group.throughput(Throughput::Elements(CHANGES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("apply", |bench| {
        bench.iter_batched(
            fresh_engine,
            |mut engine| {
                let mut published = 0;
                for change in &changes {
                    let output = engine.apply_change(change).unwrap();
                    assert!(output.gaps.is_empty());
                    published += output.states.len();
                }
                black_box(published)
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("decode_and_apply", |bench| {
        bench.iter_batched(
            fresh_engine,
            |mut engine| {
                let mut published = 0;
                for message in &framed {
                    let change = decoder.decode_cached(message).unwrap().unwrap();
                    published += engine.apply_change(&change).unwrap().states.len();
                }
                black_box(published)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Books (50 levels a side, a full reorder buffer) and open candle windows (every interval,
/// lateness 2 min, trades in the last minutes) for 10 000 tokens, then the process's peak RSS.
fn measure_peak_rss() {
    let tokens = 10_000;
    let baseline = status_kib("VmHWM:");
    let mut engine = BookEngine::new(BookSettings::default());
    let mut aggregator = CandleAggregator::new(CandleSettings::default());
    {
        // Generated per token so the input records never pile up beside the state.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for token in 0..tokens {
            let (snapshots, changes) = book_events(1, 50, 128);
            let mut snapshot = snapshots.into_iter().next().unwrap();
            snapshot.token_id = token_id(token);
            engine.apply_snapshot(&snapshot).unwrap();
            for mut change in changes {
                change.token_id = snapshot.token_id.clone();
                change.timestamp_ms = T0 + 1;
                let _ = engine.apply_change(&change).unwrap();
            }
        }
        // Twenty trades per token over the last three minutes: open 1m windows (with the
        // lateness), and every longer interval.
        let mut offset = 0;
        for trade_index in 0..20 {
            for token in 0..tokens {
                let mut trade = trades(1, 1).remove(0);
                trade.token_id = token_id(token);
                trade.trade_id = format!("{:032x}", rng.random::<u128>());
                trade.timestamp_ms = T0 + trade_index * 9_000;
                aggregator.ingest(&trade, offset).unwrap();
                offset += 1;
            }
            aggregator.drain().unwrap();
        }
    }
    let peak = status_kib("VmHWM:");
    let resident = status_kib("VmRSS:");
    println!(
        "peak RSS for 10k tokens: {:.1} MiB (before building the state: {:.1} MiB; resident after: {:.1} MiB); {} books, {} candle tokens, {} open windows",
        peak as f64 / 1024.0,
        baseline as f64 / 1024.0,
        resident as f64 / 1024.0,
        engine.token_count(),
        aggregator.token_count(),
        aggregator.window_count()
    );
    // For `cargo xtask bench candles`.
    println!(
        "RESULT {{\"peak_rss_mib\": {:.1}, \"baseline_rss_mib\": {:.1}, \"tokens\": {tokens}}}",
        peak as f64 / 1024.0,
        baseline as f64 / 1024.0
    );
    drop(engine);
    drop(aggregator);
}

criterion_group!(benches, bench_trades, bench_price_changes);

/// `POLYTAPE_BENCH_TRADE_PASSES=n`: only the `decode_and_candle` loop, `n` times, then exit —
/// for `perf stat -e cycles:u,instructions:u`, whose per-process counts are far less
/// disturbed than wall time by the other builds on a shared machine (compare with `n = 0`
/// to subtract the set-up).
fn trade_passes(passes: usize) {
    let trades = trades(1_000, TRADES);
    let encoder = RecordEncoder::<Trade>::with_schema_id(1).unwrap();
    let framed: Vec<Vec<u8>> = trades
        .iter()
        .map(|trade| encoder.encode(trade).unwrap())
        .collect();
    let decoder = RecordDecoder::<Trade>::for_own_schema(1).unwrap();
    for _ in 0..passes {
        let mut aggregator = CandleAggregator::new(CandleSettings::default());
        for (offset, message) in framed.iter().enumerate() {
            let trade = decoder.decode_cached(message).unwrap().unwrap();
            aggregator.ingest(&trade, offset as i64).unwrap();
            if offset % BATCH_MAX == BATCH_MAX - 1 {
                black_box(aggregator.drain().unwrap());
            }
        }
        black_box(aggregator.drain().unwrap());
    }
}

fn main() {
    if let Some(passes) = std::env::var("POLYTAPE_BENCH_TRADE_PASSES")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        trade_passes(passes);
        return;
    }
    measure_peak_rss();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
