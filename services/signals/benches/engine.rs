//! The signals engine's hot paths on one core, without Kafka I/O, each beside the Avro decode
//! of the same records (the cost every consumer of the topic pays), so the ratio says what
//! judging adds to reading:
//!
//! - `trades/decode_and_judge`: Confluent-framed Avro trades decoded and judged by the wallet
//!   and price-move detectors; 100 000 fills over 1 000 tokens by 20 000 wallets (every
//!   wallet seen a few times, so histories grow and are looked up), prices walking a cent at
//!   a time (signals are rare, as on a real tape); trades/s.
//! - `trades/decode_only`: the same decode alone (the baseline).
//! - `book_changes/decode_and_judge`: price-change entries applied to the books of 1 000
//!   watched binary markets and judged for arbitrage, grouped by millisecond as the pipeline
//!   does; entries/s.
//! - `book_changes/decode_only`: the same decode alone.
//!
//! Run: `cargo bench -p polytape-signals --bench engine` (or `cargo xtask bench signals`).

#![allow(clippy::unwrap_used)] // benchmark set-up fails loudly on purpose

use std::{hint::black_box, time::Duration};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use polytape_codec::{AvroRecord, RecordDecoder, RecordEncoder};
use polytape_model::{
    BookLevel, BookSnapshot, Decimal, Market, MarketToken, PriceChange, Side, Trade, samples,
};
use polytape_signals::{
    arbitrage::ArbitrageThresholds,
    engine::{Engine, EngineSettings, EngineState, SignalEvent},
    price_moves::PriceMoveThresholds,
    volume_spikes::VolumeSpikeThresholds,
    wallets::NewWalletThresholds,
};
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

const T0: i64 = 1_780_000_000_000;
const EVENTS: usize = 100_000;
const MARKETS: usize = 1_000;
/// Records per merge release (one batch of the pipeline).
const RELEASE: usize = 5_000;

fn settings() -> EngineSettings {
    EngineSettings {
        new_wallet: NewWalletThresholds::default(),
        wallet_capacity: 1_000_000,
        arbitrage: ArbitrageThresholds::default(),
        price_move: PriceMoveThresholds::default(),
        volume_spike: VolumeSpikeThresholds::default(),
    }
}

fn token(market: usize, outcome: &str) -> String {
    format!("{:070}-{outcome}", market)
}

fn market(index: usize) -> Market {
    let outcome_token = |outcome: &str, outcome_index: i32| MarketToken {
        token_id: token(index, outcome),
        outcome: outcome.to_owned(),
        outcome_index,
        winner: None,
    };
    Market {
        condition_id: format!("0x{index:064x}"),
        tokens: vec![outcome_token("yes", 0), outcome_token("no", 1)],
        fees_enabled: Some(false),
        ..samples::market()
    }
}

/// Fills in time order; each token's price walks a cent at a time (a move of ten points in
/// five minutes is rare, as on a real tape), so the cost measured is judging, not signals.
fn trades() -> Vec<Trade> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut time = T0;
    let mut prices = vec![500_i64; MARKETS];
    (0..EVENTS)
        .map(|index| {
            time += rng.random_range(0..50);
            let market = rng.random_range(0..MARKETS);
            prices[market] = (prices[market] + rng.random_range(-1..=1)).clamp(100, 900);
            Trade {
                trade_id: format!("{:032x}", rng.random::<u128>()),
                condition_id: format!("0x{market:064x}"),
                token_id: token(market, "yes"),
                price: Decimal::new(prices[market] * 1_000, 6),
                size: Decimal::new(rng.random_range(1..1_000_000_000), 6),
                timestamp_ms: time,
                proxy_wallet: format!("0x{:040x}", (index * 7_919) % 20_000),
                ..samples::trade()
            }
        })
        .collect()
}

fn level(price: i64, size: i64) -> BookLevel {
    BookLevel {
        price: Decimal::new(price, 6),
        size: Decimal::new(size, 6),
    }
}

/// A snapshot per token (20 levels a side around 0.50, asks summing above 1 per market) and
/// size changes at the top levels, several entries per millisecond.
fn books() -> (Vec<BookSnapshot>, Vec<PriceChange>) {
    let mut snapshots = Vec::new();
    for market in 0..MARKETS {
        for outcome in ["yes", "no"] {
            snapshots.push(BookSnapshot {
                token_id: token(market, outcome),
                condition_id: format!("0x{market:064x}"),
                timestamp_ms: T0,
                bids: (0..20)
                    .map(|step| level(490_000 - step * 10_000, 100_000_000))
                    .collect(),
                asks: (0..20)
                    .map(|step| level(510_000 + step * 10_000, 100_000_000))
                    .collect(),
                ..samples::book_snapshot()
            });
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut time = T0 + 1;
    let changes = (0..EVENTS)
        .map(|_| {
            if rng.random_bool(0.3) {
                time += 1;
            }
            let market = rng.random_range(0..MARKETS);
            let outcome = if rng.random_bool(0.5) { "yes" } else { "no" };
            let side = if rng.random_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            };
            let step = rng.random_range(0..5);
            let price = match side {
                Side::Buy => 490_000 - step * 10_000,
                Side::Sell => 510_000 + step * 10_000,
            };
            PriceChange {
                token_id: token(market, outcome),
                condition_id: format!("0x{market:064x}"),
                side,
                price: Decimal::new(price, 6),
                size: Decimal::new(rng.random_range(1..1_000_000_000), 6),
                best_bid: None,
                best_ask: None,
                timestamp_ms: time,
                ..samples::price_change()
            }
        })
        .collect();
    (snapshots, changes)
}

fn watched_engine(snapshots: &[BookSnapshot]) -> Engine {
    let mut engine = Engine::new(&settings(), EngineState::default());
    for index in 0..MARKETS {
        engine.market(market(index));
    }
    let events: Vec<SignalEvent> = snapshots
        .iter()
        .cloned()
        .map(SignalEvent::Snapshot)
        .collect();
    engine.apply(&events).unwrap();
    engine
}

/// One group: `records` framed as Avro, judged by a fresh engine from `engine` (in releases
/// of [`RELEASE`] records, as the merge hands them over), beside their decode alone.
fn bench_records<T: AvroRecord>(
    criterion: &mut Criterion,
    group_name: &str,
    records: &[T],
    event: fn(T) -> SignalEvent,
    engine: impl Fn() -> Engine,
) {
    let encoder = RecordEncoder::<T>::with_schema_id(1).unwrap();
    let framed: Vec<Vec<u8>> = records
        .iter()
        .map(|record| encoder.encode(record).unwrap())
        .collect();
    let decoder = RecordDecoder::<T>::for_own_schema(1).unwrap();
    let mut group = criterion.benchmark_group(group_name);
    group.throughput(Throughput::Elements(framed.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("decode_and_judge", |bench| {
        bench.iter_batched(
            &engine,
            |mut engine| {
                let mut signals = 0;
                for chunk in framed.chunks(RELEASE) {
                    let events: Vec<SignalEvent> = chunk
                        .iter()
                        .map(|message| event(decoder.decode_cached(message).unwrap().unwrap()))
                        .collect();
                    signals += engine.apply(&events).unwrap().len();
                }
                black_box(signals)
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("decode_only", |bench| {
        bench.iter(|| {
            for message in &framed {
                black_box(decoder.decode_cached(message).unwrap().unwrap());
            }
        });
    });
    group.finish();
}

fn bench_trades(criterion: &mut Criterion) {
    bench_records(
        criterion,
        "signals_trades",
        &trades(),
        SignalEvent::Trade,
        || Engine::new(&settings(), EngineState::default()),
    );
}

fn bench_book_changes(criterion: &mut Criterion) {
    let (snapshots, changes) = books();
    bench_records(
        criterion,
        "signals_book_changes",
        &changes,
        SignalEvent::Change,
        || watched_engine(&snapshots),
    );
}

criterion_group!(benches, bench_trades, bench_book_changes);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
