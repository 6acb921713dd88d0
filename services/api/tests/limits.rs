#![allow(clippy::unwrap_used)]
//! Per-key limits with an injected clock: bursts beyond the token bucket get 429 with
//! Retry-After; the daily cap holds until UTC midnight and resets exactly then; usage is
//! recorded per key and day and visible to admins; two replicas share the daily count.

mod common;

use std::sync::Arc;

use common::{TestApi, migrated_database};
use polytape_api::clock::{MS_PER_DAY, ManualClock};
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_rate_gets_429_with_retry_after_and_headers_on_every_response() {
    let database = migrated_database("burst").await;
    let clock = ManualClock::new(polytape_model::now_ms());
    let api = TestApi::start_with_clock(&database, Arc::new(clock.clone())).await;
    let key = api.key("custom", Some(5), Some(1_000)).await;

    // The clock stands still: exactly the bucket (5) passes.
    for expected_remaining in (0..5).rev() {
        let ok = api.get("/v1/markets", Some(&key)).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.header("x-ratelimit-limit"), Some("1000"));
        assert_eq!(ok.header("x-ratelimit-rps"), Some("5"));
        assert_eq!(
            ok.header("x-ratelimit-burst-remaining"),
            Some(expected_remaining.to_string().as_str())
        );
        assert!(ok.header("x-ratelimit-reset").is_some());
    }
    let limited = api.get("/v1/markets", Some(&key)).await;
    limited.assert_error(429, "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("995"));
    // Errors of keyed requests carry the headers too.
    let invalid = {
        clock.advance_ms(200);
        api.get("/v1/markets?limit=0", Some(&key)).await
    };
    invalid.assert_error(400, "invalid_parameter");
    assert!(invalid.header("x-ratelimit-remaining").is_some());

    // One token per 200 ms comes back.
    clock.advance_ms(200);
    assert_eq!(api.get("/v1/markets", Some(&key)).await.status, 200);
    api.get("/v1/markets", Some(&key))
        .await
        .assert_error(429, "rate_limited");
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_cap_holds_until_utc_midnight_and_usage_is_recorded() {
    let database = migrated_database("dailycap").await;
    // 10 s before a UTC midnight, within the key's validity.
    let midnight = (polytape_model::now_ms() / MS_PER_DAY + 1) * MS_PER_DAY;
    let clock = ManualClock::new(midnight - 10_000);
    let api = TestApi::start_with_clock(&database, Arc::new(clock.clone())).await;
    let key = api.key("custom", Some(1_000), Some(3)).await;
    let prefix = polytape_api::keys::lookup_prefix(&key);

    for remaining in ["2", "1", "0"] {
        let ok = api.get("/v1/markets", Some(&key)).await;
        assert_eq!(ok.status, 200, "{}", ok.text);
        assert_eq!(ok.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(
            ok.header("x-ratelimit-reset"),
            Some((midnight / 1000).to_string().as_str())
        );
    }
    let capped = api.get("/v1/markets", Some(&key)).await;
    capped.assert_error(429, "daily_cap_exceeded");
    assert_eq!(capped.header("retry-after"), Some("10"));
    clock.advance_ms(9_999);
    api.get("/v1/markets", Some(&key))
        .await
        .assert_error(429, "daily_cap_exceeded");

    // Midnight UTC: a new day, a new count.
    clock.set_ms(midnight);
    let next_day = api.get("/v1/markets", Some(&key)).await;
    assert_eq!(next_day.status, 200, "{}", next_day.text);
    assert_eq!(next_day.header("x-ratelimit-remaining"), Some("2"));

    // Usage per key per day, written to ClickHouse and visible to admins.
    let usage = api
        .admin(
            Method::GET,
            &format!(
                "/admin/usage?key_prefix={prefix}&from={}&to={}",
                midnight - MS_PER_DAY,
                midnight
            ),
            None,
        )
        .await;
    assert_eq!(usage.status, 200, "{}", usage.text);
    let days = usage.body.as_array().unwrap();
    assert_eq!(days.len(), 2, "{}", usage.text);
    assert_eq!(days[0]["requests"], 3);
    assert_eq!(days[0]["rejected"], 2);
    assert_eq!(days[1]["requests"], 1);
    assert_eq!(days[1]["rejected"], 0);
    assert_eq!(
        days[1]["day"],
        polytape_api::clock::utc_date_text(midnight / MS_PER_DAY)
    );
    api.stop();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_daily_count_through_clickhouse() {
    let database = migrated_database("sharedcap").await;
    let clock = ManualClock::new(polytape_model::now_ms());
    let replica_a = TestApi::start_with_clock(&database, Arc::new(clock.clone())).await;
    let replica_b = TestApi::start_with_clock(&database, Arc::new(clock.clone())).await;
    let key = replica_a.key("custom", Some(1_000), Some(5)).await;
    polytape_api::refresh_once(&replica_b.state).await.unwrap();

    for _ in 0..3 {
        assert_eq!(replica_a.get("/v1/markets", Some(&key)).await.status, 200);
    }
    // A writes its usage, B reads the total: 2 left for B.
    polytape_api::refresh_once(&replica_a.state).await.unwrap();
    polytape_api::refresh_once(&replica_b.state).await.unwrap();
    let first = replica_b.get("/v1/markets", Some(&key)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(replica_b.get("/v1/markets", Some(&key)).await.status, 200);
    replica_b
        .get("/v1/markets", Some(&key))
        .await
        .assert_error(429, "daily_cap_exceeded");
    // And A learns about B's share at its next refresh.
    polytape_api::refresh_once(&replica_b.state).await.unwrap();
    polytape_api::refresh_once(&replica_a.state).await.unwrap();
    replica_a
        .get("/v1/markets", Some(&key))
        .await
        .assert_error(429, "daily_cap_exceeded");
    replica_a.stop();
    replica_b.stop();
    database.drop_database().await;
}
