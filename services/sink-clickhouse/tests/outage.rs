//! ClickHouse outage: the sink reaches ClickHouse through a proxy that goes dark for 60 s
//! mid-stream. During the outage the sink holds its offsets and stops consuming once the batch in
//! flight and one more are buffered; afterwards it catches up with zero loss and no duplicates. Run through
//! `cargo xtask test`.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod support;

use std::{net::SocketAddr, time::Duration};

use polytape_model::{Decimal, Topic, Trade, samples};
use polytape_test_support::{
    proxy::SwitchableProxy,
    stack::{IsolatedDatabase, endpoints, ensured_isolated_topics, unique_name},
};
use support::*;

const OUTAGE: Duration = Duration::from_secs(60);
const MAX_ROWS: usize = 2_000;

fn trade(index: usize) -> Trade {
    let mut trade = samples::trade();
    trade.trade_id = format!("{index:06}");
    trade.size = Decimal::new(i64::try_from(index).unwrap() + 1, 6);
    trade.timestamp_ms = polytape_model::now_ms() - 3_600_000 + i64::try_from(index).unwrap();
    trade
}

fn consumed_bytes() -> f64 {
    polytape_runtime::metrics::family_total("polytape_sink_consumed_bytes_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_holds_offsets_bounds_memory_and_loses_nothing() {
    let stack = endpoints();
    let names = ensured_isolated_topics("outage").await;
    let topic = names.name(Topic::Trades);
    let database = IsolatedDatabase::migrated("outage").await;
    let clickhouse_addr: SocketAddr = stack
        .clickhouse_url
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = SwitchableProxy::start(clickhouse_addr).await;

    let producer = producer::<Trade>(&stack, &names).await;
    let before: Vec<Trade> = (0..10_000).map(trade).collect();
    producer.send_all(&before).await.unwrap();

    let group = unique_name("outage-group");
    let mut proxied = database.config.clone();
    proxied.clickhouse_url = format!("http://{}", proxy.addr);
    let (stop, task) = spawn(pipeline(
        &stack,
        &names,
        polytape_clickhouse::client(&proxied),
        &group,
        limits(MAX_ROWS, Duration::from_millis(200)),
    ));
    while count(&database.client, "SELECT count() FROM trades").await < 10_000 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the background commit catch up with the stored offsets.
    tokio::time::sleep(Duration::from_secs(2)).await;

    proxy.set_up(false);
    let after: Vec<Trade> = (10_000..40_000).map(trade).collect();
    producer.send_all(&after).await.unwrap();
    // Give the sink time to fill its one batch and hit the outage.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rows_at_outage = count(&database.client, "SELECT count() FROM trades").await;
    let offsets_at_outage = committed_offsets(&group, &topic, Topic::Trades.partitions());
    let consumed_at_outage = consumed_bytes();
    tokio::time::sleep(OUTAGE - Duration::from_secs(5)).await;
    assert_eq!(
        count(&database.client, "SELECT count() FROM trades").await,
        rows_at_outage,
        "nothing written during the outage"
    );
    assert_eq!(
        committed_offsets(&group, &topic, Topic::Trades.partitions()),
        offsets_at_outage,
        "offsets held during the outage"
    );
    assert_eq!(
        consumed_bytes(),
        consumed_at_outage,
        "consumption paused: memory bounded by the batch in flight and one more"
    );
    let buffered = u64::try_from(MAX_ROWS).unwrap();
    assert!(
        rows_at_outage <= 10_000 + buffered,
        "at most one more batch slipped in before the cut"
    );

    proxy.set_up(true);
    let total = 40_000;
    for _ in 0..1_200 {
        if count(&database.client, "SELECT count() FROM trades").await >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    task.await.unwrap();
    let distinct: u64 = database
        .client
        .query("SELECT count() FROM trades FINAL")
        .fetch_one()
        .await
        .unwrap();
    let duplicated: u64 = database
        .client
        .query("SELECT count() FROM (SELECT trade_id FROM trades FINAL GROUP BY trade_id HAVING count() > 1)")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(distinct, total, "zero loss");
    assert_eq!(duplicated, 0);
    database.drop_database().await;
}
