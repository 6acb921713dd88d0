//! Rate budgets (v1 throttling, v2 429 + Retry-After) and HTTP fault injection, all counted
//! in `/_sim/stats`.

mod common;

use std::time::Duration;

use common::*;
use futures::future::join_all;
use serde_json::Value;

#[tokio::test]
async fn twice_the_budget_is_throttled_on_v1_and_rejected_on_v2() {
    let mut config = config(6, 1);
    // A long window: every request of this test falls into one window, so the counts are
    // exact however fast the machine is.
    config.rate_window = Duration::from_secs(120);
    let sim = start(config).await;
    let base = sim.base_url();
    let client = client();

    // Data v1 /trades: 200 per window. The first 200 answer at once…
    let first: Vec<u16> = join_all((0..200).map(|_| {
        let client = client.clone();
        let url = format!("{base}/data/trades?limit=1");
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    }))
    .await;
    assert!(first.iter().all(|status| *status == 200));
    // …the next 200 are queued (throttled) until the window has room: the client gives up.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1_500))
        .build()
        .expect("client");
    let second: Vec<bool> = join_all((0..200).map(|_| {
        let client = impatient.clone();
        let url = format!("{base}/data/trades?limit=1");
        async move {
            client
                .get(url)
                .send()
                .await
                .err()
                .is_some_and(|error| error.is_timeout())
        }
    }))
    .await;
    assert_eq!(
        second.iter().filter(|timed_out| **timed_out).count(),
        200,
        "throttled requests answered early"
    );

    // Data v2 /v2/trades: 300 per window, then 429 + Retry-After.
    let responses: Vec<(u16, Option<u64>, Value)> = join_all((0..600).map(|_| {
        let client = client.clone();
        let url = format!("{base}/data/v2/trades?limit=1");
        async move {
            let response = client.get(url).send().await.expect("request");
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.parse().ok());
            (
                status,
                retry_after,
                response.json::<Value>().await.expect("json"),
            )
        }
    }))
    .await;
    let ok = responses
        .iter()
        .filter(|(status, _, _)| *status == 200)
        .count();
    let rejected: Vec<&(u16, Option<u64>, Value)> = responses
        .iter()
        .filter(|(status, _, _)| *status == 429)
        .collect();
    assert_eq!(ok, 300);
    assert_eq!(rejected.len(), 300);
    for (_, retry_after, body) in rejected {
        let seconds = retry_after.expect("Retry-After header");
        assert!((1..=120).contains(&seconds), "{seconds}");
        assert_eq!(body["code"], "rate_limited");
        assert_eq!(body["retryable"], true);
    }

    let stats = get_json(&client, &format!("{base}/_sim/stats")).await;
    let trades = &stats["endpoints"]["/data/trades"];
    assert_eq!(trades["requests"], 400);
    assert_eq!(trades["throttled"], 200);
    assert_eq!(trades["rejected_429"], 0);
    let v2 = &stats["endpoints"]["/data/v2/trades"];
    assert_eq!(v2["requests"], 600);
    assert_eq!(v2["rejected_429"], 300);
    assert_eq!(v2["throttled"], 0);
}

#[tokio::test]
async fn http_faults_fire_as_specified_and_are_counted() {
    let mut config = config(10, 1);
    config.faults =
        polymarket_sim::parse_fault_spec("error@/data/trades:status=503,count=3").expect("spec");
    let sim = start(config).await;
    let base = sim.base_url();
    let client = client();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&client, &format!("{base}/data/trades?limit=1")).await.0);
    }
    assert_eq!(statuses, vec![503, 503, 503, 200, 200]);

    let spec = "truncate@/gamma/markets:count=1;malformed@/clob/markets:count=1;extra_field@/data/v2/trades:count=1;\
                missing_optional@/data/trades:count=1;drift@/clob/book:field=timestamp,count=1;slow@/clob/time:delay=300ms,count=2";
    post_json(
        &client,
        &format!("{base}/_sim/faults"),
        &serde_json::json!({"spec": spec}),
    )
    .await;

    let (status, body) = get(&client, &format!("{base}/gamma/markets?limit=5")).await;
    assert_eq!(status, 200);
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "truncated body parsed"
    );
    assert!(
        serde_json::from_str::<Value>(
            &get(&client, &format!("{base}/gamma/markets?limit=5"))
                .await
                .1
        )
        .is_ok(),
        "count=1 exceeded"
    );
    let (_, body) = get(&client, &format!("{base}/clob/markets")).await;
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "malformed body parsed"
    );
    let extra = get_json(&client, &format!("{base}/data/v2/trades?limit=3")).await;
    assert!(
        extra["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|row| row.get("_simUnknownField").is_some())
    );
    let missing = get_json(&client, &format!("{base}/data/trades?limit=3")).await;
    assert!(
        missing
            .as_array()
            .expect("array")
            .iter()
            .all(|row| row.get("icon").is_none() && row.get("price").is_some())
    );
    let token = open_tokens(&client, &sim).await.remove(0);
    let drifted = get_json(&client, &format!("{base}/clob/book?token_id={token}")).await;
    assert!(
        drifted["timestamp"].is_number(),
        "timestamp did not drift from string to number"
    );
    let normal = get_json(&client, &format!("{base}/clob/book?token_id={token}")).await;
    assert!(normal["timestamp"].is_string());
    for _ in 0..3 {
        assert_eq!(get(&client, &format!("{base}/clob/time")).await.0, 200);
    }

    let stats = get_json(&client, &format!("{base}/_sim/stats")).await;
    let faults = |endpoint: &str, kind: &str| {
        stats["endpoints"][endpoint]["faults"][kind]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(faults("/data/trades", "error"), 3);
    assert_eq!(faults("/gamma/markets", "truncate"), 1);
    assert_eq!(faults("/clob/markets", "malformed"), 1);
    assert_eq!(faults("/data/v2/trades", "extra_field"), 1);
    assert_eq!(faults("/data/trades", "missing_optional"), 1);
    assert_eq!(faults("/clob/book", "drift"), 1);
    assert_eq!(faults("/clob/time", "slow"), 2);
    assert_eq!(stats["totals"]["faults"]["error"], 3);
    let listed = get_json(&client, &format!("{base}/_sim/faults")).await;
    assert_eq!(listed["rules"][0]["fired"], 3);
}

#[tokio::test]
async fn rest_quirks_are_reproduced() {
    let sim = start(config(40, 2)).await;
    let base = sim.base_url();
    let client = client();
    let truth = get_json(&client, &format!("{base}/_sim/truth/markets")).await;
    let markets = truth.as_array().expect("array");
    let closed = markets
        .iter()
        .find(|market| market["closed"] == true)
        .expect("a resolved market");
    let closed_token = closed["token_ids"][0].as_str().expect("token");

    // Closed and unknown tokens have no book.
    for token in [closed_token, "123"] {
        let (status, body) = get(&client, &format!("{base}/clob/book?token_id={token}")).await;
        assert_eq!(status, 404);
        assert_eq!(
            serde_json::from_str::<Value>(&body).expect("json"),
            serde_json::json!({"error": "No orderbook exists for the requested token id"})
        );
    }
    // Resolved markets: empty history below 720-minute fidelity, data at 720.
    let fine = get_json(
        &client,
        &format!("{base}/clob/prices-history?market={closed_token}&interval=max&fidelity=60"),
    )
    .await;
    assert_eq!(fine["history"].as_array().expect("history").len(), 0);
    let coarse = get_json(
        &client,
        &format!("{base}/clob/prices-history?market={closed_token}&interval=max&fidelity=720"),
    )
    .await;
    assert!(!coarse["history"].as_array().expect("history").is_empty());
    // startTs/endTs windows.
    let open_token = open_tokens(&client, &sim).await.remove(0);
    let start_ts = (EPOCH_MS / 1000) - 3_600;
    let window = get_json(&client, &format!("{base}/clob/prices-history?market={open_token}&startTs={start_ts}&endTs={}&fidelity=10", EPOCH_MS / 1000)).await;
    let points = window["history"].as_array().expect("history");
    // Points sit on multiples of the fidelity inside [startTs, endTs].
    let end_ts = EPOCH_MS / 1000;
    let expected_points = end_ts.div_euclid(600) - (start_ts + 599).div_euclid(600) + 1;
    assert_eq!(points.len() as i64, expected_points);
    assert!(
        points
            .iter()
            .all(|point| point["t"].as_i64().expect("t") % 600 == 0 && point["p"].is_f64())
    );

    // /gamma/events without `closed` includes closed events; /gamma/markets defaults to open.
    let events = get_json(&client, &format!("{base}/gamma/events?limit=500")).await;
    assert!(
        events
            .as_array()
            .expect("array")
            .iter()
            .any(|event| event["closed"] == true)
    );
    let open_events = get_json(
        &client,
        &format!("{base}/gamma/events?limit=500&closed=false"),
    )
    .await;
    assert!(
        open_events
            .as_array()
            .expect("array")
            .iter()
            .all(|event| event["closed"] == false)
    );
    let default_markets = get_json(&client, &format!("{base}/gamma/markets?limit=500")).await;
    assert!(
        default_markets
            .as_array()
            .expect("array")
            .iter()
            .all(|market| market["closed"] == false)
    );
    // Filters.
    let condition = markets[2]["condition_id"].as_str().expect("condition");
    let by_condition = get_json(
        &client,
        &format!(
            "{base}/gamma/markets?condition_ids={condition}&closed={}",
            markets[2]["closed"]
        ),
    )
    .await;
    assert_eq!(by_condition.as_array().expect("array").len(), 1);
    let token_ids = markets[3]["token_ids"].as_array().expect("tokens");
    let by_token = get_json(
        &client,
        &format!(
            "{base}/gamma/markets?clob_token_ids={}&clob_token_ids={}&closed={}",
            token_ids[0].as_str().expect("t"),
            markets[4]["token_ids"][0].as_str().expect("t"),
            markets[3]["closed"]
        ),
    )
    .await;
    assert!(!by_token.as_array().expect("array").is_empty());
    let ordered = get_json(
        &client,
        &format!("{base}/gamma/markets?order=volume_num&ascending=false&limit=5"),
    )
    .await;
    let volumes: Vec<f64> = ordered
        .as_array()
        .expect("array")
        .iter()
        .map(|market| market["volumeNum"].as_f64().expect("number"))
        .collect();
    assert!(
        volumes.windows(2).all(|pair| pair[0] >= pair[1]),
        "{volumes:?}"
    );
    // By id and by slug.
    let first = &default_markets[0];
    let by_slug = get_json(
        &client,
        &format!(
            "{base}/gamma/markets/slug/{}",
            first["slug"].as_str().expect("slug")
        ),
    )
    .await;
    assert_eq!(by_slug["id"], first["id"]);
    let event_slug = events[0]["slug"].as_str().expect("slug");
    let event = get_json(&client, &format!("{base}/gamma/events/slug/{event_slug}")).await;
    assert_eq!(event["id"], events[0]["id"]);
    assert_eq!(
        get(&client, &format!("{base}/gamma/markets/999999999"))
            .await
            .0,
        404
    );
    // Data API parameter limits.
    let many: Vec<String> = (0..21).map(|index| format!("0x{index:064x}")).collect();
    let (status, body) = get(
        &client,
        &format!("{base}/data/v2/trades?condition={}", many.join(",")),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["code"],
        "invalid_request"
    );
    assert_eq!(
        get(
            &client,
            &format!("{base}/data/trades?market={condition}&eventId=1")
        )
        .await
        .0,
        400
    );
    assert_eq!(
        get(&client, &format!("{base}/data/trades?user=nope"))
            .await
            .0,
        400
    );
    // Strings vs numbers.
    let row = &default_markets[0];
    assert!(
        row["volume"].is_string()
            && row["liquidity"].is_string()
            && row["volumeNum"].is_number()
            && row["id"].is_string()
    );
    // /clob/time is a bare integer of seconds.
    let (_, time) = get(&client, &format!("{base}/clob/time")).await;
    let seconds: i64 = time.parse().expect("bare integer");
    assert!(seconds >= EPOCH_MS / 1000);
    // The brief's book-hash test vector and example book reproduce through the public API.
    let vector = serde_json::json!({"market": "0xaabbcc", "asset_id": "100", "timestamp": "123456789", "hash": "",
        "bids": [{"price": "0.3", "size": "100"}, {"price": "0.4", "size": "100"}],
        "asks": [{"price": "0.6", "size": "100"}, {"price": "0.7", "size": "100"}],
        "min_order_size": "100", "tick_size": "0.01", "neg_risk": false, "last_trade_price": "0.5"});
    assert_eq!(
        polymarket_sim::book_hash_of_json(&vector).as_deref(),
        Some("0458ea5755c9f73d64a14636fa5c36ed460ec394")
    );
    let example = fixture("clob_book");
    assert_eq!(
        polymarket_sim::book_hash_of_json(&example),
        example["hash"].as_str().map(str::to_owned)
    );
    // Every served book carries the hash of its own content.
    for token in open_tokens(&client, &sim).await {
        let book = get_json(&client, &format!("{base}/clob/book?token_id={token}")).await;
        assert_eq!(
            polymarket_sim::book_hash_of_json(&book).as_deref(),
            book["hash"].as_str()
        );
    }
}
