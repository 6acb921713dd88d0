//! Market ranking snapshots computed inside ClickHouse (chdb behind our adapter) from seeded
//! trades and book states, checked market by market against figures worked out by hand. Run
//! through `cargo xtask test` (or with `cargo xtask stack up` running).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use polytape_clickhouse::rankings::{RankingRow, compute_snapshot, snapshot_at};
use polytape_test_support::stack::IsolatedDatabase;

const HOUR: i64 = 3_600_000;

/// A ranking row's figures, compared as a whole.
#[derive(Debug, PartialEq, Eq)]
struct Figures {
    rank: u32,
    condition_id: String,
    volume_24h: i128,
    volume_prev_24h: i128,
    volume_change: Option<i128>,
    trades_24h: u64,
    wallets_24h: u64,
    spread: Option<i64>,
    depth_5_ticks: i128,
}

impl Figures {
    fn of(row: &RankingRow) -> Self {
        Self {
            rank: row.rank,
            condition_id: row.condition_id.clone(),
            volume_24h: row.volume_24h,
            volume_prev_24h: row.volume_prev_24h,
            volume_change: row.volume_change,
            trades_24h: row.trades_24h,
            wallets_24h: row.wallets_24h,
            spread: row.spread,
            depth_5_ticks: row.depth_5_ticks,
        }
    }
}
/// 2026-12-01T00:00:00Z.
const AT: i64 = 1_796_083_200_000;

fn trade(id: &str, market: &str, price: &str, size: &str, at_ms: i64, wallet: &str) -> String {
    format!(
        "('{id}', '{market}', '{market}-yes', 'BUY', {price}, {size}, fromUnixTimestamp64Milli(toInt64({at_ms})), '0xtx', '{wallet}', 'DATA_API_V1', fromUnixTimestamp64Milli(toInt64({at_ms})))"
    )
}

fn book(
    token: &str,
    market: &str,
    at_ms: i64,
    spread: &str,
    bid_depth: &str,
    ask_depth: &str,
) -> String {
    format!(
        "('{token}', '{market}', fromUnixTimestamp64Milli(toInt64({at_ms})), {spread}, {bid_depth}, {ask_depth}, {at_ms})"
    )
}

#[tokio::test]
async fn a_snapshot_ranks_markets_by_their_24_hour_notional_with_exact_figures() {
    let database = IsolatedDatabase::migrated("rankings").await;
    let client = &database.client;
    let trades = [
        // Market A: 0.5 × 100 + 0.25 × 40 + 0.5 × 10 = 65 in the last day, by two wallets; 10
        // the day before (a change of 5.5). One fill is stored twice (a redelivery).
        trade("a1", "0xa", "0.5", "100", AT - HOUR, "w1"),
        trade("a2", "0xa", "0.25", "40", AT - 2 * HOUR, "w2"),
        trade("a2", "0xa", "0.25", "40", AT - 2 * HOUR, "w2"),
        trade("a3", "0xa", "0.5", "10", AT - 23 * HOUR, "w1"),
        trade("a0", "0xa", "0.5", "20", AT - 30 * HOUR, "w1"),
        // Market B: 90 in the last day, nothing before.
        trade("b1", "0xb", "0.9", "100", AT - 3 * HOUR, "w3"),
        // Market C: only the day before: not ranked.
        trade("c1", "0xc", "0.1", "10", AT - 25 * HOUR, "w4"),
        // Market D: at the snapshot time (after it) and more than two days before: not ranked.
        trade("d1", "0xd", "0.5", "1000", AT, "w5"),
        trade("d0", "0xd", "0.5", "1000", AT - 49 * HOUR, "w5"),
    ];
    client
        .query(&format!(
            "INSERT INTO trades (trade_id, condition_id, token_id, side, price, size, timestamp, transaction_hash, proxy_wallet, source, ingested_at) VALUES {}",
            trades.join(", ")
        ))
        .execute()
        .await
        .unwrap();
    let books = [
        // A's tokens: the latest state within the hour counts (spreads 0.02 and 0.04, depth
        // 150 + 20); older states do not.
        book("0xa-yes", "0xa", AT - 10 * 60_000, "0.02", "100", "50"),
        book("0xa-yes", "0xa", AT - 30 * 60_000, "0.5", "1", "1"),
        book("0xa-no", "0xa", AT - 5 * 60_000, "0.04", "10", "10"),
        book("0xa-no", "0xa", AT - 2 * HOUR, "0.9", "1000", "1000"),
    ];
    client
        .query(&format!(
            "INSERT INTO book_state (token_id, condition_id, timestamp, spread, bid_depth_5_ticks, ask_depth_5_ticks, version) VALUES {}",
            books.join(", ")
        ))
        .execute()
        .await
        .unwrap();

    compute_snapshot(client, AT).await.unwrap();
    // Recomputing (a restart, late trades) replaces the snapshot's rows.
    compute_snapshot(client, AT).await.unwrap();

    let rows = snapshot_at(client, AT + 1, 100).await.unwrap();
    // Unscaled, exact: notional at scale 12, change, spread and depth at 6.
    let figures: Vec<Figures> = rows.iter().map(Figures::of).collect();
    let usdc = |whole: i128| whole * 1_000_000_000_000;
    assert_eq!(
        figures,
        vec![
            Figures {
                rank: 1,
                condition_id: "0xb".to_owned(),
                volume_24h: usdc(90),
                volume_prev_24h: 0,
                volume_change: None,
                trades_24h: 1,
                wallets_24h: 1,
                spread: None,
                depth_5_ticks: 0,
            },
            Figures {
                rank: 2,
                condition_id: "0xa".to_owned(),
                volume_24h: usdc(65),
                volume_prev_24h: usdc(10),
                volume_change: Some(5_500_000),
                trades_24h: 3,
                wallets_24h: 2,
                spread: Some(30_000),
                depth_5_ticks: 170_000_000,
            },
        ]
    );
    assert!(
        rows.iter()
            .all(|row| row.snapshot_time == AT && row.score == row.volume_24h)
    );
    assert!(snapshot_at(client, AT - 1, 100).await.unwrap().is_empty());
    database.drop_database().await;
}
