//! Pagination walks return every entity exactly once: Gamma offset and keyset, CLOB base64
//! cursors, Data API v1 offset (and `start`/`end` windows past the 10,000 cap) and v2 cursors.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

async fn truth_markets(client: &reqwest::Client, base: &str) -> Vec<Value> {
    get_json(client, &format!("{base}/_sim/truth/markets"))
        .await
        .as_array()
        .expect("array")
        .clone()
}

#[tokio::test]
async fn gamma_offset_and_keyset_walks_return_every_market_and_event_once() {
    let sim = start(config(230, 0)).await;
    let client = client();
    let base = sim.base_url();
    let truth = truth_markets(&client, &base).await;
    let expected: BTreeSet<String> = truth
        .iter()
        .map(|market| market["gamma_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(expected.len(), 230);

    // Offset walk, both closed states (the /markets default is closed=false).
    let mut seen = Vec::new();
    for closed in ["false", "true"] {
        let mut offset = 0;
        loop {
            let page = get_json(
                &client,
                &format!("{base}/gamma/markets?closed={closed}&limit=37&offset={offset}"),
            )
            .await;
            let rows = page.as_array().expect("bare array");
            seen.extend(
                rows.iter()
                    .map(|row| row["id"].as_str().expect("id").to_owned()),
            );
            if rows.len() < 37 {
                break;
            }
            offset += 37;
        }
    }
    assert_eq!(seen.len(), expected.len(), "duplicates or gaps");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), expected);

    // Keyset walk: next_cursor omitted on the last page.
    let mut keyset_seen = Vec::new();
    for closed in ["false", "true"] {
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let url = match &cursor {
                Some(cursor) => format!(
                    "{base}/gamma/markets/keyset?closed={closed}&limit=25&after_cursor={cursor}"
                ),
                None => format!("{base}/gamma/markets/keyset?closed={closed}&limit=25"),
            };
            let page = get_json(&client, &url).await;
            let rows = page["markets"].as_array().expect("markets");
            keyset_seen.extend(
                rows.iter()
                    .map(|row| row["id"].as_str().expect("id").to_owned()),
            );
            pages += 1;
            match page.get("next_cursor") {
                Some(next) => {
                    assert_eq!(rows.len(), 25, "next_cursor only on full pages");
                    cursor = Some(next.as_str().expect("cursor").to_owned());
                }
                None => break,
            }
            assert!(pages < 100);
        }
    }
    assert_eq!(keyset_seen.len(), expected.len());
    assert_eq!(keyset_seen.into_iter().collect::<BTreeSet<_>>(), expected);
    let (status, body) = get(&client, &format!("{base}/gamma/markets/keyset?offset=10")).await;
    assert_eq!(status, 422);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["type"],
        "validation error"
    );

    // Events: the offset walk without `closed` returns closed events too (upstream quirk).
    let truth_events = get_json(&client, &format!("{base}/_sim/truth/events")).await;
    let all_events: BTreeSet<String> = truth_events
        .as_array()
        .expect("array")
        .iter()
        .map(|event| event["id"].as_str().expect("id").to_owned())
        .collect();
    let mut event_ids = Vec::new();
    let mut offset = 0;
    loop {
        let page = get_json(
            &client,
            &format!("{base}/gamma/events?limit=20&offset={offset}"),
        )
        .await;
        let rows = page.as_array().expect("array");
        event_ids.extend(
            rows.iter()
                .map(|row| row["id"].as_str().expect("id").to_owned()),
        );
        if rows.len() < 20 {
            break;
        }
        offset += 20;
    }
    assert_eq!(event_ids.len(), all_events.len());
    assert_eq!(
        event_ids.iter().cloned().collect::<BTreeSet<_>>(),
        all_events
    );
    assert!(
        truth_events
            .as_array()
            .expect("array")
            .iter()
            .any(|event| event["closed"] == true)
    );
    let mut keyset_events = Vec::new();
    for closed in ["false", "true"] {
        let mut cursor = String::new();
        loop {
            let page = get_json(
                &client,
                &format!(
                    "{base}/gamma/events/keyset?closed={closed}&limit=30&after_cursor={cursor}"
                ),
            )
            .await;
            keyset_events.extend(
                page["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .map(|row| row["id"].as_str().expect("id").to_owned()),
            );
            match page.get("next_cursor") {
                Some(next) => cursor = next.as_str().expect("cursor").to_owned(),
                None => break,
            }
        }
    }
    assert_eq!(keyset_events.len(), all_events.len());
    assert_eq!(
        keyset_events.into_iter().collect::<BTreeSet<_>>(),
        all_events
    );

    // limit is clamped at 500.
    let big = get_json(
        &client,
        &format!("{base}/gamma/markets?closed=false&limit=100000"),
    )
    .await;
    let open = truth
        .iter()
        .filter(|market| market["closed"] == false)
        .count();
    assert_eq!(big.as_array().expect("array").len(), open.min(500));
}

#[tokio::test]
async fn clob_cursor_walk_returns_every_market_once() {
    let sim = start(config(2_345, 0)).await;
    let client = client();
    let base = sim.base_url();
    let mut cursor = "MA==".to_owned();
    let mut seen = Vec::new();
    let mut cursors = Vec::new();
    while cursor != "LTE=" {
        let page = get_json(
            &client,
            &format!(
                "{base}/clob/markets?next_cursor={}",
                cursor.replace('=', "%3D")
            ),
        )
        .await;
        assert_eq!(page["limit"], 1000);
        assert_eq!(
            page["count"].as_u64().expect("count") as usize,
            page["data"].as_array().expect("data").len()
        );
        seen.extend(
            page["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|market| market["condition_id"].as_str().expect("id").to_owned()),
        );
        cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
        cursors.push(cursor.clone());
    }
    assert_eq!(cursors, vec!["MTAwMA==", "MjAwMA==", "LTE="]);
    let truth = truth_markets(&client, &base).await;
    let expected: BTreeSet<String> = truth
        .iter()
        .map(|market| market["condition_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(seen.len(), 2_345);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
}

fn identity(row: &Value, v2: bool) -> String {
    let key = |v1: &str, v2_name: &str| {
        if v2 {
            row[v2_name].to_string()
        } else {
            row[v1].to_string()
        }
    };
    format!(
        "{}|{}|{}|{}|{}",
        key("transactionHash", "transaction_hash"),
        key("asset", "token_id"),
        row["side"],
        key("size", "size"),
        key("proxyWallet", "proxy_wallet")
    )
}

#[tokio::test]
async fn data_api_walks_return_every_fill_once_even_past_the_offset_cap() {
    let sim = start(config(8, 3)).await;
    let client = client();
    let base = sim.base_url();
    let truth = truth_markets(&client, &base).await;
    let hot = &truth[0];
    let taker_fills = hot["taker_fills"].as_u64().expect("count") as usize;
    assert!(
        taker_fills > 10_000,
        "the busy market has only {taker_fills} taker fills"
    );
    let condition = hot["condition_id"].as_str().expect("condition");

    // Truth: the taker fills of the market.
    let truth_fills = get_json(
        &client,
        &format!("{base}/_sim/truth/fills?market={condition}&taker_only=true&limit=200000"),
    )
    .await;
    let truth_fills = truth_fills["fills"].as_array().expect("fills").clone();
    assert_eq!(truth_fills.len(), taker_fills);

    // v1: offset walk stops at the cap…
    let (status, _) = get(
        &client,
        &format!("{base}/data/trades?market={condition}&limit=100&offset=10001"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = get(
        &client,
        &format!("{base}/data/trades?market={condition}&limit=10001"),
    )
    .await;
    assert_eq!(status, 400);
    // …so walk successive start/end windows, each with its own offset budget.
    let mut v1_seen: Vec<String> = Vec::new();
    let mut end = 9_999_999_999i64;
    let mut windows = 0;
    loop {
        windows += 1;
        let mut window: Vec<(String, i64)> = Vec::new();
        for offset in (0..10_000).step_by(2_500) {
            let url = format!(
                "{base}/data/trades?market={condition}&limit=2500&offset={offset}&end={end}"
            );
            let page = get_json(&client, &url).await;
            let rows = page.as_array().expect("array");
            window.extend(rows.iter().map(|row| {
                (
                    identity(row, false),
                    row["timestamp"].as_i64().expect("seconds"),
                )
            }));
            if rows.len() < 2_500 {
                break;
            }
        }
        if window.len() < 10_000 {
            v1_seen.extend(window.into_iter().map(|(key, _)| key));
            break;
        }
        // The oldest second may be cut off: keep what is newer, re-read that second next.
        let oldest = window.last().map(|(_, ts)| *ts).expect("rows");
        v1_seen.extend(
            window
                .into_iter()
                .filter(|(_, ts)| *ts > oldest)
                .map(|(key, _)| key),
        );
        end = oldest;
    }
    assert!(windows >= 2, "the walk never needed a second window");
    assert_eq!(v1_seen.len(), taker_fills, "v1 window walk");
    let unique: BTreeSet<&String> = v1_seen.iter().collect();
    assert_eq!(unique.len(), v1_seen.len(), "v1 walk returned a fill twice");

    // v2: cursor walk, identical filters on every page.
    let mut v2_seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut running_offset = 0;
    loop {
        let url = match &cursor {
            Some(cursor) => {
                format!("{base}/data/v2/trades?condition={condition}&limit=1000&cursor={cursor}")
            }
            None => format!("{base}/data/v2/trades?condition={condition}&limit=1000"),
        };
        let page = get_json(&client, &url).await;
        assert_eq!(page["pagination"]["offset"], running_offset);
        let rows = page["data"].as_array().expect("data");
        running_offset += rows.len();
        v2_seen.extend(rows.iter().map(|row| identity(row, true)));
        match page["pagination"]["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page["pagination"]["has_more"], true);
                cursor = Some(next.to_owned());
            }
            None => {
                assert_eq!(page["pagination"]["has_more"], false);
                break;
            }
        }
    }
    assert_eq!(v2_seen.len(), taker_fills);
    assert_eq!(
        v2_seen.iter().collect::<BTreeSet<_>>().len(),
        taker_fills,
        "v2 walk returned a fill twice"
    );
    let (status, body) = get(
        &client,
        &format!("{base}/data/v2/trades?condition={condition}&offset=100"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["code"],
        "invalid_request"
    );

    // The walks match the truth's (tx, asset, side) multiset.
    let mut truth_keys: BTreeMap<String, usize> = BTreeMap::new();
    for fill in &truth_fills {
        *truth_keys
            .entry(format!(
                "{}|{}|{}",
                fill["transactionHash"], fill["asset"], fill["side"]
            ))
            .or_default() += 1;
    }
    let mut v2_keys: BTreeMap<String, usize> = BTreeMap::new();
    for key in &v2_seen {
        let parts: Vec<&str> = key.split('|').collect();
        *v2_keys
            .entry(format!("{}|{}|{}", parts[0], parts[1], parts[2]))
            .or_default() += 1;
    }
    assert_eq!(truth_keys, v2_keys);
    // Every truth fill has a distinct derived trade id.
    let ids: BTreeSet<&str> = truth_fills
        .iter()
        .map(|fill| fill["trade_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), truth_fills.len());
}

#[tokio::test]
async fn taker_only_false_adds_the_maker_fills() {
    let sim = start(config(6, 1)).await;
    let client = client();
    let base = sim.base_url();
    let truth = truth_markets(&client, &base).await;
    let market = &truth[1];
    let condition = market["condition_id"].as_str().expect("condition");
    let taker = get_json(
        &client,
        &format!("{base}/data/trades?market={condition}&limit=10000"),
    )
    .await;
    let all = get_json(
        &client,
        &format!("{base}/data/trades?market={condition}&limit=10000&takerOnly=false"),
    )
    .await;
    assert_eq!(
        taker.as_array().expect("array").len(),
        market["taker_fills"].as_u64().expect("n") as usize
    );
    assert_eq!(
        all.as_array().expect("array").len(),
        market["fills"].as_u64().expect("n") as usize
    );
    assert!(market["fills"].as_u64() > market["taker_fills"].as_u64());
    // Newest first, seconds timestamps.
    let timestamps: Vec<i64> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|row| row["timestamp"].as_i64().expect("s"))
        .collect();
    assert!(timestamps.windows(2).all(|pair| pair[0] >= pair[1]));
    assert!(timestamps[0] < 10_000_000_000, "timestamps are seconds");
    // side filter
    let sells = get_json(
        &client,
        &format!("{base}/data/trades?market={condition}&limit=10000&side=SELL"),
    )
    .await;
    assert!(
        sells
            .as_array()
            .expect("array")
            .iter()
            .all(|row| row["side"] == "SELL")
    );
    // user filter
    let wallet = all[0]["proxyWallet"].as_str().expect("wallet");
    let mine = get_json(
        &client,
        &format!("{base}/data/trades?user={wallet}&limit=10000&takerOnly=false"),
    )
    .await;
    assert!(!mine.as_array().expect("array").is_empty());
    assert!(
        mine.as_array()
            .expect("array")
            .iter()
            .all(|row| row["proxyWallet"] == wallet)
    );
}

#[tokio::test]
async fn v1_rows_map_to_truth_trade_ids() {
    use polytape_model::parse::decimal_from_float;
    use polytape_model::{Side, TradeIdentity};

    let sim = start(config(6, 1)).await;
    let client = client();
    let base = sim.base_url();
    let truth = truth_markets(&client, &base).await;
    let condition = truth[2]["condition_id"].as_str().expect("condition");
    let rows = get_json(
        &client,
        &format!("{base}/data/trades?market={condition}&limit=10000&takerOnly=false"),
    )
    .await;
    let truth_fills = get_json(
        &client,
        &format!("{base}/_sim/truth/fills?market={condition}&limit=200000"),
    )
    .await;
    // Fills of at least 0.01 shares: below that the notional's 6-decimal rounding moves the
    // float price by more than half a 0.0001 tick (upstream has the same hazard).
    let expected: BTreeSet<String> = truth_fills["fills"]
        .as_array()
        .expect("fills")
        .iter()
        .filter(|fill| dec(fill["size"].as_str().expect("size")) >= dec("0.01"))
        .map(|fill| fill["trade_id"].as_str().expect("id").to_owned())
        .collect();
    let derived: BTreeSet<String> = rows
        .as_array()
        .expect("array")
        .iter()
        .filter(|row| row["size"].as_f64().expect("size") >= 0.01)
        .map(|row| {
            TradeIdentity {
                transaction_hash: row["transactionHash"].as_str().expect("tx"),
                token_id: row["asset"].as_str().expect("asset"),
                side: Side::parse(row["side"].as_str().expect("side")).expect("side"),
                size: decimal_from_float(row["size"].as_f64().expect("size"), 6).expect("size"),
                // Prices are derived upstream from the USDC notional (rounded to 6 decimals) over
                // the size, so a dust fill (< 1 share) carries an artefact beyond 1e-6; every
                // price is on a tick grid of at least 0.0001, so 4 decimals recover it exactly.
                price: decimal_from_float(row["price"].as_f64().expect("price"), 4).expect("price"),
                proxy_wallet: row["proxyWallet"].as_str().expect("wallet"),
            }
            .trade_id()
        })
        .collect();
    assert!(!expected.is_empty());
    let missing: Vec<&Value> = truth_fills["fills"]
        .as_array()
        .expect("fills")
        .iter()
        .filter(|fill| expected.contains(fill["trade_id"].as_str().expect("id")))
        .filter(|fill| !derived.contains(fill["trade_id"].as_str().expect("id")))
        .take(3)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} truth fills not derivable from v1 rows, e.g. {missing:?}",
        expected.difference(&derived).count(),
        expected.len()
    );
    assert_eq!(derived, expected);
}
