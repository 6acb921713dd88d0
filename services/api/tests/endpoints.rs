#![allow(clippy::unwrap_used)]
//! Contract tests of every endpoint against the local stack: status codes, response shapes,
//! filters, pagination walks that return every row exactly once while inserts continue,
//! aggregates against SQL and against decimals summed in Rust, candle fill, book rebuilds,
//! retention and point limits, and the OpenAPI document and docs page.

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use common::{TestApi, condition_id, dec, load, migrated_database};
use polytape_api::clock::ManualClock;
use polytape_clickhouse::rows::{
    BookSnapshotRow, BookStateRow, CandleRow, ContinuityRow, EventRow, MarketRow, PriceChangeRow,
    PricePointRow, SignalRow, TradeRow,
};
use polytape_model::{
    BookLevel, BookSource, Continuity, ContinuityKind, Decimal, Market, MarketToken, Side, Signal,
    SignalKind, Trade, samples,
};

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;

fn market(index: u64, updated_ms: i64) -> Market {
    let mut market = samples::market();
    market.condition_id = condition_id(index);
    market.question = if index.is_multiple_of(3) {
        format!("Will the Election {index} be close?")
    } else {
        format!("Will team {index} win?")
    };
    market.slug = Some(format!("market-{index}"));
    market.active = index.is_multiple_of(2);
    market.closed = index.is_multiple_of(5);
    market.tags = if index.is_multiple_of(4) {
        vec!["sports".into()]
    } else {
        vec!["politics".into()]
    };
    market.event_ids = vec![format!("ev{}", index % 3)];
    market.tokens = vec![
        MarketToken {
            token_id: format!("{index}1"),
            outcome: "Yes".into(),
            outcome_index: 0,
            winner: None,
        },
        MarketToken {
            token_id: format!("{index}2"),
            outcome: "No".into(),
            outcome_index: 1,
            winner: Some(false),
        },
    ];
    market.updated_ms = updated_ms;
    market
}

/// Walks a list endpoint page by page; returns the ids in order.
async fn walk(
    api: &TestApi,
    key: &str,
    path: &str,
    id_field: &str,
    during: impl Fn(usize) -> Option<tokio::task::JoinHandle<()>>,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pending = Vec::new();
    for page in 0.. {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(cursor) => format!("{path}{separator}cursor={cursor}"),
            None => path.to_owned(),
        };
        let reply = api.get(&url, Some(key)).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text);
        for row in reply.body["data"].as_array().unwrap() {
            ids.push(row[id_field].as_str().unwrap().to_owned());
        }
        if let Some(task) = during(page) {
            pending.push(task);
        }
        match reply.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(page < 10_000, "the walk does not end");
    }
    for task in pending {
        task.await.unwrap();
    }
    ids
}

fn assert_once(ids: &[String], expected: &BTreeSet<String>, what: &str) {
    let mut seen = BTreeSet::new();
    for id in ids {
        assert!(seen.insert(id.clone()), "{what}: {id} returned twice");
    }
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(missing.is_empty(), "{what}: missing {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markets_and_events_filter_paginate_and_look_up() {
    let database = migrated_database("markets").await;
    let api = TestApi::start(&database).await;
    let key = api.data_key().await;
    let base = polytape_model::now_ms() - 3_600_000;
    let mut all: Vec<Market> = (1..=30)
        .map(|index| market(index, base + index as i64 * 1000))
        .collect();
    load::<_, MarketRow>(&database.client, "markets", all.clone()).await;
    let originals: BTreeSet<String> = all.iter().map(|m| m.condition_id.clone()).collect();

    // Walk with small pages while other markets keep arriving.
    let client = database.client.clone();
    let inserted: Vec<Market> = (0..20).map(|j| market(1000 + j, base - 1000)).collect();
    let ids = walk(&api, &key, "/v1/markets?limit=7", "condition_id", |page| {
        (page < 4).then(|| {
            let batch: Vec<Market> = inserted[page * 5..page * 5 + 5].to_vec();
            let client = client.clone();
            tokio::spawn(async move { load::<_, MarketRow>(&client, "markets", batch).await })
        })
    })
    .await;
    assert_once(&ids, &originals, "markets walk");
    all.extend(inserted);
    // A market re-delivered (same content, newer version) still shows once.
    load::<_, MarketRow>(&database.client, "markets", vec![market(3, base + 99_000)]).await;
    all[2] = market(3, base + 99_000);
    let everything = walk(&api, &key, "/v1/markets?limit=1000", "condition_id", |_| {
        None
    })
    .await;
    assert_eq!(everything.len(), all.len());

    let expect = |predicate: &dyn Fn(&Market) -> bool| -> BTreeSet<String> {
        all.iter()
            .filter(|m| predicate(m))
            .map(|m| m.condition_id.clone())
            .collect()
    };
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        (
            "q=election",
            expect(&|m| m.question.to_lowercase().contains("election")),
        ),
        (
            "q=MARKET-1",
            expect(&|m| m.slug.as_deref().unwrap_or("").contains("market-1")),
        ),
        ("active=true", expect(&|m| m.active)),
        (
            "closed=true&active=false",
            expect(&|m| m.closed && !m.active),
        ),
        (
            "tag=sports",
            expect(&|m| m.tags.contains(&"sports".to_owned())),
        ),
        (
            "event_id=ev1",
            expect(&|m| m.event_ids.contains(&"ev1".to_owned())),
        ),
    ];
    for (query, expected) in cases {
        let got = walk(
            &api,
            &key,
            &format!("/v1/markets?limit=4&{query}"),
            "condition_id",
            |_| None,
        )
        .await;
        assert_eq!(
            got.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "{query}"
        );
        assert_eq!(got.len(), expected.len(), "{query}: no duplicates");
    }
    let since = base + 20_000;
    let recent = walk(
        &api,
        &key,
        &format!("/v1/markets?updated_since={since}"),
        "condition_id",
        |_| None,
    )
    .await;
    let expected_recent: BTreeSet<String> = all
        .iter()
        .filter(|m| m.updated_ms >= since)
        .map(|m| m.condition_id.clone())
        .collect();
    assert!(expected_recent.contains(&condition_id(3)) && expected_recent.len() == 12);
    assert_eq!(recent.into_iter().collect::<BTreeSet<_>>(), expected_recent);

    let one = api
        .get(&format!("/v1/markets/{}", condition_id(4)), Some(&key))
        .await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body["tokens"][0]["token_id"], "41");
    assert_eq!(one.body["tokens"][1]["outcome"], "No");
    assert_eq!(one.body["tokens"][1]["winner"], false);
    assert_eq!(one.body["tick_size"], "0.01");
    assert!(one.body["fees"].is_object() && one.body["resolution"].is_object());
    assert_eq!(one.body["tags"][0], "sports");
    api.get(
        &format!("/v1/markets/{}", condition_id(999_999)),
        Some(&key),
    )
    .await
    .assert_error(404, "not_found");
    api.get("/v1/markets/0x12", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    api.get("/v1/markets?limit=1001", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    api.get("/v1/markets?active=yes", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    api.get("/v1/markets?colour=red", Some(&key))
        .await
        .assert_error(400, "unknown_parameter");
    api.get("/v1/markets?cursor=bm9wZQ", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    let first_page = api.get("/v1/markets?limit=2&active=true", Some(&key)).await;
    let cursor = first_page.body["next_cursor"].as_str().unwrap();
    api.get(
        &format!("/v1/markets?limit=2&active=false&cursor={cursor}"),
        Some(&key),
    )
    .await
    .assert_error(400, "invalid_parameter");

    // Events.
    let events: Vec<_> = (1..=5)
        .map(|index| {
            let mut event = samples::event();
            event.event_id = format!("{}", 500 + index);
            event.title = format!("Event number {index}");
            event.active = index != 3;
            event.market_condition_ids = vec![condition_id(index)];
            event
        })
        .collect();
    load::<_, EventRow>(&database.client, "events", events).await;
    let listed = walk(&api, &key, "/v1/events?limit=2", "event_id", |_| None).await;
    assert_eq!(listed, vec!["501", "502", "503", "504", "505"]);
    let inactive = walk(&api, &key, "/v1/events?active=false", "event_id", |_| None).await;
    assert_eq!(inactive, vec!["503"]);
    let found = walk(&api, &key, "/v1/events?q=NUMBER%204", "event_id", |_| None).await;
    assert_eq!(found, vec!["504"]);
    let event = api.get("/v1/events/502", Some(&key)).await;
    assert_eq!(event.status, 200, "{}", event.text);
    assert_eq!(event.body["market_condition_ids"][0], condition_id(2));
    api.get("/v1/events/nope", Some(&key))
        .await
        .assert_error(404, "not_found");
    api.get("/v1/events/bad%20id", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    api.stop();
    database.drop_database().await;
}

fn trade(index: u64, base: i64, market: &str) -> Trade {
    let mut trade = samples::trade();
    trade.trade_id = format!(
        "{:032x}",
        (index.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as u128
    );
    trade.condition_id = market.to_owned();
    trade.token_id = if index.is_multiple_of(2) {
        "101".into()
    } else {
        "102".into()
    };
    trade.side = if index.is_multiple_of(3) {
        Side::Sell
    } else {
        Side::Buy
    };
    trade.price = Decimal::new(1000 + (index % 9000) as i64, 4);
    trade.size = Decimal::new(1_000_000 + index as i64 * 123_457, 6);
    // Three trades per second: ties on the time are broken by trade id.
    trade.timestamp_ms = base + (index / 3) as i64 * 1000;
    trade.proxy_wallet = format!("0x{:040x}", index % 4);
    trade.ingested_ms = base + 7_200_000;
    trade
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_walk_exactly_once_under_inserts_filter_and_aggregate_like_sql() {
    let database = migrated_database("trades").await;
    let api = TestApi::start(&database).await;
    let key = api.data_key().await;
    let now = polytape_model::now_ms();
    let base = now - 3_600_000;
    let market = condition_id(1);
    let originals: Vec<Trade> = (0..1_200)
        .map(|index| trade(index, base, &market))
        .collect();
    load::<_, TradeRow>(&database.client, "trades", originals.clone()).await;
    let original_ids: BTreeSet<String> = originals.iter().map(|t| t.trade_id.clone()).collect();

    // Trades keep arriving during the walks, at times before and after the cursor.
    let concurrent: Vec<Trade> = (0..300)
        .map(|index| {
            let mut extra = trade(10_000 + index, base, &market);
            extra.timestamp_ms = base + ((index * 7_919) % 400) as i64 * 1000 + 1;
            extra
        })
        .collect();
    for sort in ["asc", "desc"] {
        let client = database.client.clone();
        let batches: Vec<Vec<Trade>> = concurrent
            .chunks(30)
            .map(|chunk| {
                chunk
                    .iter()
                    .cloned()
                    .map(|mut t| {
                        if sort == "desc" {
                            t.trade_id = format!("d{}", &t.trade_id[1..]);
                        }
                        t
                    })
                    .collect()
            })
            .collect();
        let ids = walk(
            &api,
            &key,
            &format!("/v1/trades?market={market}&sort={sort}&limit=97"),
            "trade_id",
            |page| {
                batches.get(page).cloned().map(|batch| {
                    let client = client.clone();
                    tokio::spawn(async move { load::<_, TradeRow>(&client, "trades", batch).await })
                })
            },
        )
        .await;
        assert_once(&ids, &original_ids, &format!("trades walk {sort}"));
        // Order: by (timestamp, trade_id), as announced.
        let page = api
            .get(
                &format!("/v1/trades?market={market}&sort={sort}&limit=1000"),
                Some(&key),
            )
            .await;
        let keys: Vec<(i64, String)> = page.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["timestamp_ms"].as_i64().unwrap(),
                    t["trade_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        if sort == "desc" {
            sorted.reverse();
        }
        assert_eq!(keys, sorted, "{sort} order");
    }
    // Redelivery of some trades with a newer ingest time never shows twice.
    let redelivered: Vec<Trade> = originals[..50]
        .iter()
        .cloned()
        .map(|mut t| {
            t.ingested_ms += 1;
            t
        })
        .collect();
    load::<_, TradeRow>(&database.client, "trades", redelivered).await;

    let mut all: Vec<Trade> = originals.clone();
    all.extend(concurrent.iter().cloned());
    all.extend(concurrent.iter().cloned().map(|mut t| {
        t.trade_id = format!("d{}", &t.trade_id[1..]);
        t
    }));
    let stored: u64 = database
        .client
        .query("SELECT count() FROM trades FINAL")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(stored, all.len() as u64);
    assert_eq!(all.len(), 1_200 + 2 * 300);

    // Filters against the same trades filtered in Rust, with aggregates against both SQL and
    // decimals summed here.
    let wallet = format!("0x{:040x}", 2);
    let from = base + 100_000;
    let to = base + 300_000;
    type Predicate = Box<dyn Fn(&Trade) -> bool>;
    let cases: Vec<(String, Predicate)> = vec![
        (format!("market={market}"), Box::new(|_: &Trade| true)),
        (
            "token_id=101".to_owned(),
            Box::new(|t: &Trade| t.token_id == "101"),
        ),
        (
            format!("wallet={wallet}&side=SELL"),
            Box::new(move |t: &Trade| {
                t.proxy_wallet == format!("0x{:040x}", 2) && t.side == Side::Sell
            }),
        ),
        (
            format!("market={market}&from={from}&to={to}&token_id=102"),
            Box::new(move |t: &Trade| {
                t.timestamp_ms >= from && t.timestamp_ms < to && t.token_id == "102"
            }),
        ),
    ];
    for (query, predicate) in cases {
        let expected: Vec<&Trade> = all.iter().filter(|t| predicate(t)).collect();
        let walked = walk(
            &api,
            &key,
            &format!("/v1/trades?{query}&limit=1000"),
            "trade_id",
            |_| None,
        )
        .await;
        let got: BTreeSet<String> = walked.iter().cloned().collect();
        let want: BTreeSet<String> = expected.iter().map(|t| t.trade_id.clone()).collect();
        assert_eq!(walked.len(), want.len(), "{query}: count");
        assert!(
            got == want,
            "{query}: {} differ",
            got.symmetric_difference(&want).count()
        );
        // Aggregates need a bounded window: every trade of the test lies in the last hour.
        let window = if query.contains("from=") {
            String::new()
        } else {
            format!("&from={}", base - 1)
        };
        let reply = api
            .get(
                &format!("/v1/trades?{query}&limit=5&aggregate=true{window}"),
                Some(&key),
            )
            .await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.text);
        assert_eq!(reply.header("x-data-retention"), Some("90d"));
        let aggregate = &reply.body["aggregate"];
        let volume: Decimal = expected.iter().map(|t| t.size).sum();
        let notional: Decimal = expected.iter().map(|t| t.price * t.size).sum();
        assert_eq!(aggregate["count"], expected.len() as u64, "{query}");
        assert_eq!(
            aggregate["volume"],
            volume.normalize().to_string(),
            "{query}"
        );
        assert_eq!(
            aggregate["notional"],
            notional.normalize().to_string(),
            "{query}"
        );
        let vwap = (notional / volume)
            .trunc_with_scale(12)
            .normalize()
            .to_string();
        assert_eq!(aggregate["vwap"], vwap, "{query}");
    }
    // The same aggregate straight from SQL, as the candle oracle writes it.
    let (count, volume, vwap): (u64, String, String) = database
        .client
        .query(
            "SELECT count(), toString(sum(toDecimal128(size, 6))), \
             toString(sum(toDecimal128(price, 6) * toDecimal128(size, 6)) / sum(toDecimal128(size, 6))) \
             FROM trades FINAL WHERE condition_id = ?",
        )
        .bind(&market)
        .fetch_one()
        .await
        .unwrap();
    let reply = api
        .get(
            &format!(
                "/v1/trades?market={market}&limit=1&aggregate=true&from={}",
                base - 1
            ),
            Some(&key),
        )
        .await;
    assert_eq!(reply.body["aggregate"]["count"], count);
    // Unbounded or too long a window: refused with what to do, never a scan of everything.
    for window in [String::new(), format!("&from={}", now - 40 * 86_400_000)] {
        let refused = api
            .get(
                &format!("/v1/trades?market={market}&aggregate=true{window}"),
                Some(&key),
            )
            .await;
        refused.assert_error(400, "invalid_parameter");
        assert!(refused.text.contains("aggregate"), "{}", refused.text);
    }
    assert_eq!(
        reply.body["aggregate"]["volume"],
        dec(&volume).normalize().to_string()
    );
    assert_eq!(
        reply.body["aggregate"]["vwap"],
        dec(&vwap).normalize().to_string()
    );
    let first = &reply.body["data"][0];
    assert!(first["price"].is_string() && first["size"].is_string());

    api.get("/v1/trades", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    api.get(
        &format!("/v1/trades?market={market}&sort=sideways"),
        Some(&key),
    )
    .await
    .assert_error(400, "invalid_parameter");
    api.get("/v1/trades?wallet=0xabc", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    let old = now - 91 * DAY;
    let refused = api
        .get(
            &format!("/v1/trades?market={market}&from={old}"),
            Some(&key),
        )
        .await;
    refused.assert_error(400, "out_of_retention");
    assert_eq!(refused.header("x-data-retention"), Some("90d"));
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("90d")
    );
    api.get(
        &format!("/v1/trades?market={market}&from=2026-13-40T00:00:00Z"),
        Some(&key),
    )
    .await
    .assert_error(400, "invalid_parameter");
    let rfc3339 = api
        .get(
            &format!(
                "/v1/trades?market={market}&from={}",
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(u64::try_from(base).unwrap())
                )
            ),
            Some(&key),
        )
        .await;
    assert_eq!(rfc3339.status, 200, "{}", rfc3339.text);
    api.stop();
    database.drop_database().await;
}

fn candle(token: &str, open_time: i64, close: i64, version: i64) -> polytape_model::Candle {
    let mut candle = samples::candle();
    candle.token_id = token.to_owned();
    candle.open_time_ms = open_time;
    candle.close_time_ms = open_time + MINUTE;
    candle.open = Decimal::new(close - 5, 4);
    candle.high = Decimal::new(close + 10, 4);
    candle.low = Decimal::new(close - 10, 4);
    candle.close = Decimal::new(close, 4);
    candle.first_trade_ms = open_time + 1;
    candle.last_trade_ms = open_time + 2;
    candle.version = version;
    // A higher version is a correction of the first (a trade found after it was final).
    candle.revision = i32::try_from(version - 1).unwrap();
    candle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candles_fill_previous_and_refuse_too_many_points_or_expired_ranges() {
    let database = migrated_database("candles").await;
    let api = TestApi::start(&database).await;
    let key = api.data_key().await;
    let now = polytape_model::now_ms();
    let day_start = (now / DAY - 1) * DAY;
    let stored: Vec<i64> = (0..1440).filter(|minute| minute % 7 != 3).collect();
    let candles: Vec<_> = stored
        .iter()
        .map(|minute| candle("555", day_start + minute * MINUTE, 4000 + minute, 1))
        .collect();
    load::<_, CandleRow>(&database.client, "candles", candles).await;
    // A corrected minute 0 (higher version) replaces the first.
    load::<_, CandleRow>(
        &database.client,
        "candles",
        vec![candle("555", day_start, 3999, 2)],
    )
    .await;

    let to = day_start + DAY;
    let plain = api
        .get(
            &format!("/v1/candles?token_id=555&interval=1m&from={day_start}&to={to}"),
            Some(&key),
        )
        .await;
    assert_eq!(plain.status, 200, "{}", plain.text);
    assert_eq!(plain.header("x-data-retention"), Some("90d"));
    let rows = plain.body["candles"].as_array().unwrap();
    assert_eq!(rows.len(), stored.len());
    assert_eq!(rows[0]["close"], "0.3999", "the newest version wins");
    assert_eq!(
        (&rows[0]["revision"], &rows[0]["revised"]),
        (&serde_json::json!(1), &serde_json::json!(true))
    );
    assert_eq!(rows[1]["close"], "0.4001");
    assert_eq!(
        (&rows[1]["revision"], &rows[1]["revised"]),
        (&serde_json::json!(0), &serde_json::json!(false))
    );
    assert_eq!(rows[1]["open_time_ms"], day_start + MINUTE);
    assert_eq!(rows[1]["vwap"], "0.586976634813");
    assert_eq!(rows[1]["volume"], "1032.155171");

    let filled = api
        .get(
            &format!("/v1/candles?token_id=555&interval=1m&from={day_start}&to={to}&fill=previous"),
            Some(&key),
        )
        .await;
    let rows = filled.body["candles"].as_array().unwrap();
    assert_eq!(rows.len(), 1440);
    for (minute, row) in rows.iter().enumerate() {
        assert_eq!(row["open_time_ms"], day_start + minute as i64 * MINUTE);
        if minute % 7 == 3 {
            let previous = rows[minute - 1]["close"].clone();
            assert_eq!(row["filled"], true);
            for field in ["open", "high", "low", "close"] {
                assert_eq!(row[field], previous, "minute {minute} {field}");
            }
            assert_eq!(row["volume"], "0");
            assert_eq!(row["trade_count"], 0);
            assert!(row["vwap"].is_null());
        } else {
            assert_eq!(row["filled"], false);
        }
    }
    // A range starting in a gap is seeded from the close before it.
    let seeded = api
        .get(
            &format!(
                "/v1/candles?token_id=555&interval=1m&from={}&to={}&fill=previous",
                day_start + 3 * MINUTE,
                day_start + 5 * MINUTE
            ),
            Some(&key),
        )
        .await;
    assert_eq!(seeded.body["candles"][0]["close"], "0.4002");
    assert_eq!(seeded.body["candles"][0]["filled"], true);

    let too_many = api
        .get(
            &format!(
                "/v1/candles?token_id=555&interval=1m&from={}",
                now - 8 * DAY
            ),
            Some(&key),
        )
        .await;
    too_many.assert_error(400, "too_many_points");
    assert!(
        too_many.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10000")
    );
    let hourly = api
        .get(
            &format!(
                "/v1/candles?token_id=555&interval=1h&from={}",
                now - 8 * DAY
            ),
            Some(&key),
        )
        .await;
    assert_eq!(hourly.status, 200, "{}", hourly.text);
    api.get(
        &format!(
            "/v1/candles?token_id=555&interval=1m&from={}",
            now - 100 * DAY
        ),
        Some(&key),
    )
    .await
    .assert_error(400, "out_of_retention");
    api.get(
        &format!("/v1/candles?token_id=555&interval=2m&from={day_start}"),
        Some(&key),
    )
    .await
    .assert_error(400, "invalid_parameter");
    api.get(
        &format!("/v1/candles?token_id=555&interval=1m&from={day_start}&to={day_start}"),
        Some(&key),
    )
    .await
    .assert_error(400, "invalid_parameter");
    api.get("/v1/candles?token_id=abc&interval=1m&from=1", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");

    // Price history: the last price of each fidelity bucket.
    let points: Vec<_> = (0..60)
        .map(|minute| {
            let mut point = samples::price_point();
            point.token_id = "888".into();
            point.timestamp_ms = day_start + minute * MINUTE;
            point.price = Decimal::new(5000 + minute, 4);
            point.fidelity_minutes = 1;
            point
        })
        .collect();
    load::<_, PricePointRow>(&database.client, "price_history", points).await;
    let history = api
        .get(
            &format!(
                "/v1/prices/history?token_id=888&from={day_start}&to={}&fidelity=5",
                day_start + 60 * MINUTE
            ),
            Some(&key),
        )
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let history_points = history.body["history"].as_array().unwrap();
    assert_eq!(history_points.len(), 12);
    assert_eq!(history_points[0]["t"], day_start);
    assert_eq!(history_points[0]["p"], "0.5004");
    assert_eq!(history_points[11]["p"], "0.5059");
    api.get(
        "/v1/prices/history?token_id=888&from=1&fidelity=0",
        Some(&key),
    )
    .await
    .assert_error(400, "invalid_parameter");
    api.stop();
    database.drop_database().await;
}

fn levels(pairs: &[(&str, &str)]) -> Vec<BookLevel> {
    pairs
        .iter()
        .map(|(price, size)| BookLevel {
            price: dec(price),
            size: dec(size),
        })
        .collect()
}

fn book_pairs(side: &serde_json::Value) -> Vec<(String, String)> {
    side.as_array()
        .unwrap()
        .iter()
        .map(|level| {
            (
                level["price"].as_str().unwrap().to_owned(),
                level["size"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orderbook_is_rebuilt_from_the_nearest_full_picture_and_flags_gaps() {
    let database = migrated_database("book").await;
    let api = TestApi::start(&database).await;
    let key = api.data_key().await;
    let t0 = polytape_model::now_ms() - 1_800_000;
    let mut state = samples::book_state();
    state.token_id = "777".into();
    state.timestamp_ms = t0;
    state.bids = levels(&[("0.45", "100"), ("0.44", "200"), ("0.4", "50")]);
    state.asks = levels(&[("0.47", "80"), ("0.48", "90"), ("0.55", "10")]);
    state.full_depth = true;
    state.bid_level_count = 3;
    state.ask_level_count = 3;
    load::<_, BookStateRow>(&database.client, "book_state", vec![state]).await;
    let change = |offset: i64, side: Side, price: &str, size: &str, sequence: i64| {
        let mut change = samples::price_change();
        change.token_id = "777".into();
        change.timestamp_ms = t0 + offset;
        change.side = side;
        change.price = dec(price);
        change.size = dec(size);
        change.connection_id = "c".into();
        change.sequence = sequence;
        change.entry_index = 0;
        change
    };
    load::<_, PriceChangeRow>(
        &database.client,
        "price_changes",
        vec![
            change(1_000, Side::Buy, "0.46", "30", 1),
            change(2_000, Side::Sell, "0.47", "0", 2),
            change(3_000, Side::Sell, "0.465", "5", 3),
            change(11_000, Side::Buy, "0.31", "7", 4),
        ],
    )
    .await;
    let mut snapshot = samples::book_snapshot();
    snapshot.token_id = "777".into();
    snapshot.timestamp_ms = t0 + 10_000;
    snapshot.bids = levels(&[("0.3", "1")]);
    snapshot.asks = levels(&[("0.7", "1")]);
    snapshot.source = BookSource::Ws;
    snapshot.connection_id = Some("c".into());
    snapshot.sequence = Some(10);
    load::<_, BookSnapshotRow>(&database.client, "book_snapshots", vec![snapshot]).await;

    let at = t0 + 2_500;
    let book = api
        .get(&format!("/v1/orderbook?token_id=777&at={at}"), Some(&key))
        .await;
    assert_eq!(book.status, 200, "{}", book.text);
    assert_eq!(book.header("x-data-retention"), Some("90d"));
    assert_eq!(
        book_pairs(&book.body["bids"]),
        pairs(&[
            ("0.46", "30"),
            ("0.45", "100"),
            ("0.44", "200"),
            ("0.4", "50")
        ])
    );
    assert_eq!(
        book_pairs(&book.body["asks"]),
        pairs(&[("0.48", "90"), ("0.55", "10")])
    );
    assert_eq!(book.body["best_bid"], "0.46");
    assert_eq!(book.body["best_ask"], "0.48");
    assert_eq!(book.body["mid"], "0.47");
    assert_eq!(book.body["spread"], "0.02");
    assert_eq!(book.body["state_time_ms"], t0 + 2_000);
    assert_eq!(book.body["base_time_ms"], t0);
    assert_eq!(book.body["source"], "book_state_full_depth");
    assert_eq!(book.body["replayed_events"], 2);
    assert_eq!(book.body["gap"], false);

    let shallow = api
        .get(
            &format!("/v1/orderbook?token_id=777&at={}&depth=1", t0 + 3_500),
            Some(&key),
        )
        .await;
    assert_eq!(book_pairs(&shallow.body["bids"]), pairs(&[("0.46", "30")]));
    assert_eq!(book_pairs(&shallow.body["asks"]), pairs(&[("0.465", "5")]));
    assert_eq!(shallow.body["mid"], "0.4625");
    assert_eq!(shallow.body["spread"], "0.005");

    // A newer upstream snapshot is the base once it exists; the latest book replays on top.
    let latest = api.get("/v1/orderbook?token_id=777", Some(&key)).await;
    assert_eq!(latest.status, 200, "{}", latest.text);
    assert_eq!(latest.body["source"], "book_snapshot");
    assert_eq!(latest.body["base_time_ms"], t0 + 10_000);
    assert_eq!(
        book_pairs(&latest.body["bids"]),
        pairs(&[("0.31", "7"), ("0.3", "1")])
    );
    assert_eq!(latest.body["state_time_ms"], t0 + 11_000);

    api.get(
        &format!("/v1/orderbook?token_id=777&at={}", t0 - 1),
        Some(&key),
    )
    .await
    .assert_error(404, "not_found");
    api.get("/v1/orderbook?token_id=777&depth=0", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");

    // A declared gap over the replayed span is reported with the book.
    let mut gap: Continuity = samples::continuity();
    gap.continuity_id = "gap-1".into();
    gap.kind = ContinuityKind::Disconnect;
    gap.token_ids = vec!["777".into(), "778".into()];
    gap.gap_start_ms = t0 + 1_500;
    gap.gap_end_ms = Some(t0 + 1_800);
    load::<_, ContinuityRow>(&database.client, "continuity", vec![gap]).await;
    let flagged = api
        .get(&format!("/v1/orderbook?token_id=777&at={at}"), Some(&key))
        .await;
    assert_eq!(flagged.body["gap"], true);
    assert_eq!(flagged.body["gaps"][0]["continuity_id"], "gap-1");
    assert_eq!(flagged.body["gaps"][0]["kind"], "DISCONNECT");
    let after = api
        .get(
            &format!("/v1/orderbook?token_id=777&at={}", t0 + 10_500),
            Some(&key),
        )
        .await;
    assert_eq!(after.body["gap"], false, "the gap ended before that base");
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuity_lists_gaps_overlapping_the_range() {
    let database = migrated_database("continuity").await;
    let api = TestApi::start(&database).await;
    let key = api.data_key().await;
    let now = polytape_model::now_ms();
    let gap = |id: &str, tokens: &[&str], start: i64, end: Option<i64>| {
        let mut gap = samples::continuity();
        gap.continuity_id = id.into();
        gap.token_ids = tokens.iter().map(|t| (*t).to_owned()).collect();
        gap.gap_start_ms = start;
        gap.gap_end_ms = end;
        gap.kind = ContinuityKind::Freeze;
        gap
    };
    let hour = 3_600_000;
    load::<_, ContinuityRow>(
        &database.client,
        "continuity",
        vec![
            gap("a", &["1"], now - 5 * hour, Some(now - 4 * hour)),
            gap("b", &["1", "2"], now - 3 * hour, Some(now - 2 * hour)),
            gap("c", &["2"], now - 90 * 60_000, None),
            gap("d", &["1"], now - 30 * 60_000, Some(now - 20 * 60_000)),
        ],
    )
    .await;
    let range = format!("from={}&to={}", now - (3 * hour + 1_800_000), now);
    let all = walk(
        &api,
        &key,
        &format!("/v1/continuity?{range}&limit=1"),
        "continuity_id",
        |_| None,
    )
    .await;
    assert_eq!(all, vec!["b", "c", "d"]);
    let token = walk(
        &api,
        &key,
        &format!("/v1/continuity?{range}&token_id=2"),
        "continuity_id",
        |_| None,
    )
    .await;
    assert_eq!(token, vec!["b", "c"]);
    let open = api
        .get(&format!("/v1/continuity?{range}&token_id=2"), Some(&key))
        .await;
    assert_eq!(open.header("x-data-retention"), Some("90d"));
    assert!(open.body["data"][1]["gap_end_ms"].is_null());
    assert_eq!(open.body["data"][1]["kind"], "FREEZE");
    let default_day = walk(&api, &key, "/v1/continuity", "continuity_id", |_| None).await;
    assert_eq!(default_day, vec!["a", "b", "c", "d"]);
    api.get(
        &format!("/v1/continuity?from={}", now - 91 * DAY),
        Some(&key),
    )
    .await
    .assert_error(400, "out_of_retention");
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_listed_by_window_start_with_their_inputs_and_filters() {
    let database = migrated_database("signals").await;
    let now = polytape_model::now_ms();
    let clock = ManualClock::new(now);
    let api = TestApi::start_with_clock(&database, Arc::new(clock.clone())).await;
    let key = api.data_key().await;
    let hour = 3_600_000;
    let wallet = "0x569f366e7087d8cc66d8ec55cdefd5577dd30056";
    let signal = |id: &str, kind: SignalKind, start: i64, end: Option<i64>| -> Signal {
        let mut signal = samples::signal();
        signal.signal_id = id.into();
        signal.kind = kind;
        signal.window_start_ms = start;
        signal.window_end_ms = end;
        if kind == SignalKind::LargeTradeNewWallet {
            signal.subject = wallet.into();
            signal.rule_id = "whales".into();
            signal.condition_ids = vec![condition_id(7)];
            signal.token_ids = vec!["77".into()];
            signal.event_id = Some("event-7".into());
        }
        signal
    };
    // "b" is stored open, then closed: one signal, the closed record.
    load::<_, SignalRow>(
        &database.client,
        "signals",
        vec![
            signal(
                "a",
                SignalKind::PriceMove,
                now - 30 * hour,
                Some(now - 30 * hour),
            ),
            signal("b", SignalKind::BinaryArbitrage, now - 3 * hour, None),
            signal(
                "c",
                SignalKind::LargeTradeNewWallet,
                now - 2 * hour,
                Some(now - 2 * hour),
            ),
            signal("d", SignalKind::BinaryArbitrage, now - hour, None),
        ],
    )
    .await;
    load::<_, SignalRow>(
        &database.client,
        "signals",
        vec![signal(
            "b",
            SignalKind::BinaryArbitrage,
            now - 3 * hour,
            Some(now - 3 * hour + 2_500),
        )],
    )
    .await;
    let day = walk(&api, &key, "/v1/signals?limit=1", "signal_id", |_| None).await;
    assert_eq!(
        day,
        vec!["b", "c", "d"],
        "the last 24 h, oldest first, each once"
    );
    let range = format!("from={}&to={}", now - 31 * hour, now);
    let arbitrage = walk(
        &api,
        &key,
        &format!("/v1/signals?{range}&kind=BINARY_ARBITRAGE"),
        "signal_id",
        |_| None,
    )
    .await;
    assert_eq!(arbitrage, vec!["b", "d"]);
    let by_wallet = walk(
        &api,
        &key,
        &format!(
            "/v1/signals?{range}&wallet={}",
            wallet.to_uppercase().replace("0X", "0x")
        ),
        "signal_id",
        |_| None,
    )
    .await;
    assert_eq!(by_wallet, vec!["c"]);
    let by_market = walk(
        &api,
        &key,
        &format!("/v1/signals?{range}&condition_id={}", condition_id(7)),
        "signal_id",
        |_| None,
    )
    .await;
    assert_eq!(by_market, vec!["c"]);
    let by_rule = walk(
        &api,
        &key,
        &format!("/v1/signals?{range}&rule_id=whales"),
        "signal_id",
        |_| None,
    )
    .await;
    assert_eq!(by_rule, vec!["c"]);
    for filter in ["token_id=77", "event_id=event-7"] {
        let only_c = walk(
            &api,
            &key,
            &format!("/v1/signals?{range}&{filter}"),
            "signal_id",
            |_| None,
        )
        .await;
        assert_eq!(only_c, vec!["c"], "{filter}");
    }
    let all = walk(
        &api,
        &key,
        &format!("/v1/signals?{range}"),
        "signal_id",
        |_| None,
    )
    .await;
    assert_eq!(all, vec!["a", "b", "c", "d"]);

    // The closed window, with its inputs and thresholds as exact text.
    let reply = api
        .get(
            &format!("/v1/signals?{range}&kind=BINARY_ARBITRAGE&limit=1"),
            Some(&key),
        )
        .await;
    assert_eq!(reply.header("x-data-retention"), Some("90d"));
    let closed = &reply.body["data"][0];
    assert_eq!(closed["signal_id"], "b");
    assert_eq!(closed["kind"], "BINARY_ARBITRAGE");
    assert_eq!(closed["window_end_ms"], now - 3 * hour + 2_500);
    assert_eq!(closed["inputs"]["max_edge"], "0.080000");
    assert_eq!(closed["inputs"]["closed_by"], "edge_gone");
    assert_eq!(closed["thresholds"]["min_edge"], "0.005000");
    assert_eq!(closed["rule_version"], 1);
    let open = api
        .get(
            &format!("/v1/signals?{range}&kind=BINARY_ARBITRAGE"),
            Some(&key),
        )
        .await;
    assert!(
        open.body["data"][1]["window_end_ms"].is_null(),
        "d is still open"
    );

    api.get("/v1/signals?kind=SOMETHING", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    api.get("/v1/signals?wallet=0x12", Some(&key))
        .await
        .assert_error(400, "invalid_parameter");
    api.get(&format!("/v1/signals?from={}", now - 91 * DAY), Some(&key))
        .await
        .assert_error(400, "out_of_retention");
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_and_docs_page_describe_every_route() {
    let database = migrated_database("openapi").await;
    let api = TestApi::start(&database).await;
    let spec = api.get("/openapi.json", None).await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.body["openapi"], "3.1.0");
    let paths: BTreeSet<&str> = spec.body["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for route in [
        "/v1/markets",
        "/v1/markets/{condition_id}",
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/trades",
        "/v1/candles",
        "/v1/orderbook",
        "/v1/prices/history",
        "/v1/continuity",
        "/health",
    ] {
        assert!(paths.contains(route), "{route} missing from the document");
    }
    let mut codes: HashMap<&str, Vec<String>> = HashMap::new();
    for (path, item) in spec.body["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let responses = item["get"]["responses"].as_object().unwrap();
        codes.insert(path, responses.keys().cloned().collect());
        for code in ["200", "400", "401", "403", "429"] {
            assert!(responses.contains_key(code), "{path} documents {code}");
        }
        assert!(item["get"]["security"].is_array(), "{path} needs a key");
    }
    assert!(spec.body["components"]["schemas"]["ErrorEnvelope"].is_object());
    let trades_ok = &spec.body["paths"]["/v1/trades"]["get"]["responses"]["200"]["headers"];
    for name in [
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "X-Data-Retention",
    ] {
        assert!(
            trades_ok[name].is_object(),
            "{name} declared on /v1/trades 200"
        );
    }
    let limited = &spec.body["paths"]["/v1/markets"]["get"]["responses"]["429"]["headers"];
    assert!(limited["Retry-After"].is_object());
    assert!(spec.body["components"]["securitySchemes"]["api_key"].is_object());

    let docs = api.get("/docs", None).await;
    assert_eq!(docs.status, 200);
    assert!(
        docs.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    for path in codes.keys() {
        assert!(docs.text.contains(path), "{path} in the docs page");
    }
    assert!(!docs.text.contains("<script") && !docs.text.contains("https://"));
    let health = api.get("/health", None).await;
    assert_eq!(health.status, 200);
    let key = api.data_key().await;
    api.get("/v1/nothing-here", Some(&key))
        .await
        .assert_error(404, "not_found");
    let post = common::reply(
        api.http
            .post(format!("{}/v1/markets", api.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    post.assert_error(405, "method_not_allowed");
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rankings_serve_the_latest_snapshot_at_or_before_a_time_by_rank() {
    use polytape_clickhouse::rankings::RankingRow;

    let database = migrated_database("rankings").await;
    let now = polytape_model::now_ms();
    let api = TestApi::start_with_clock(&database, Arc::new(ManualClock::new(now))).await;
    let key = api.data_key().await;
    let interval = 300_000;
    let latest = now.div_euclid(interval) * interval - interval;
    let row = |snapshot: i64, market: u64, rank: u32, whole_usdc: i128| RankingRow {
        snapshot_time: snapshot,
        condition_id: condition_id(market),
        rank,
        score: whole_usdc * 1_000_000_000_000,
        volume_24h: whole_usdc * 1_000_000_000_000,
        volume_prev_24h: 0,
        volume_change: None,
        trades_24h: u64::from(rank) * 10,
        wallets_24h: u64::from(rank),
        spread: Some(20_000),
        depth_5_ticks: 1_500_000,
        computed_at: snapshot + 60_000,
    };
    let mut insert = database
        .client
        .insert::<RankingRow>("market_rankings")
        .await
        .unwrap();
    for ranked in [
        row(latest - interval, 1, 1, 50),
        row(latest, 2, 1, 90),
        row(latest, 1, 2, 65),
    ] {
        insert.write(&ranked).await.unwrap();
    }
    insert.end().await.unwrap();

    let page = api.get("/v1/rankings", Some(&key)).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    assert_eq!(page.body["snapshot_time_ms"], latest);
    let ranked: Vec<(u64, String, String)> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|market| {
            (
                market["rank"].as_u64().unwrap(),
                market["condition_id"].as_str().unwrap().to_owned(),
                market["volume_24h"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ranked,
        [
            (1, condition_id(2), "90".to_owned()),
            (2, condition_id(1), "65".to_owned()),
        ]
    );
    assert_eq!(page.body["data"][0]["spread"], "0.02");
    assert_eq!(
        page.body["data"][0]["volume_change"],
        serde_json::Value::Null
    );

    let earlier = api
        .get(
            &format!("/v1/rankings?at={}&limit=1", latest - 1),
            Some(&key),
        )
        .await;
    assert_eq!(earlier.body["snapshot_time_ms"], latest - interval);
    assert_eq!(earlier.body["data"].as_array().map(Vec::len), Some(1));

    let none_within_a_day = api
        .get(
            &format!("/v1/rankings?at={}", latest - 2 * 86_400_000),
            Some(&key),
        )
        .await;
    assert_eq!(none_within_a_day.status, 200);
    assert_eq!(
        none_within_a_day.body["snapshot_time_ms"],
        serde_json::Value::Null
    );

    let outside_retention = api
        .get(
            &format!("/v1/rankings?at={}", now - 200 * 86_400_000),
            Some(&key),
        )
        .await;
    assert_eq!(outside_retention.status, 400);
    assert_eq!(outside_retention.body["error"]["code"], "out_of_retention");
    database.drop_database().await;
}
