//! `cargo xtask bench api`: the API's latency and throughput against the same queries sent
//! straight to ClickHouse, in the same run, on the development stack.
//!
//! Three queries, each offered at a fixed rate (open loop: requests are sent on schedule
//! whatever the answers do, and latency counts from the scheduled time, so a slow server
//! cannot hide its queueing): candles (one day of 1m, 1440 rows), a trades page of 500, and a
//! market lookup. The direct path posts the SQL the API runs (values inlined) to ClickHouse's
//! HTTP interface with `FORMAT JSONEachRow`, so both paths end in JSON over HTTP. The API is a
//! release build with a key no limit stops. The two paths alternate in short slices so both
//! see the same background load; each query runs at 200/s (the goal's rate) and at 20/s, a
//! rate neither path saturates on a small machine, which shows the API's own added latency.

use std::{sync::Arc, time::Duration};

use anyhow::bail;

use crate::fuzz_api::{ApiUnderTest, build_release_api};

/// The rate the goal is stated at.
const RATE_PER_SECOND: u64 = 200;
/// A rate neither path saturates on a small machine: the API's own added latency.
const REFERENCE_RATE_PER_SECOND: u64 = 20;
const WARM_UP: Duration = Duration::from_secs(2);
/// The two paths take turns in short slices, so both see the same background load on a
/// shared machine; figures pool every slice of a path.
const ROUNDS: usize = 5;
const SLICE: Duration = Duration::from_secs(3);
const DAY_MS: i64 = 86_400_000;
const TOKEN: &str = "9001";
const TRADES: u64 = 50_000;
const MARKETS: u64 = 1_000;

fn condition_id(index: u64) -> String {
    format!("0x{index:064x}")
}

/// One request shape on both paths.
struct Query {
    name: &'static str,
    /// API paths, used in turn.
    api_paths: Vec<String>,
    /// The same query as SQL, in the same turn.
    direct_sql: Vec<String>,
}

#[derive(Debug, Default)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    achieved_rps: f64,
    errors: usize,
    requests: usize,
}

fn seed(api: &ApiUnderTest, day_start: i64, now_ms: i64) -> anyhow::Result<()> {
    let trades_start = now_ms - 6 * 3_600_000;
    let statements = [
        format!(
            "INSERT INTO candles (token_id, interval, open_time, close_time, open, high, low, close, volume, notional, vwap, trade_count, first_trade_time, last_trade_time, version, is_final) \
             SELECT '{TOKEN}', '1m', fromUnixTimestamp64Milli(toInt64({day_start} + number * 60000), 'UTC'), fromUnixTimestamp64Milli(toInt64({day_start} + (number + 1) * 60000), 'UTC'), \
             toDecimal64(0.5, 6), toDecimal64(0.6, 6), toDecimal64(0.4, 6), toDecimal64(0.5, 6) + toDecimal64(number % 100, 6) / 1000, \
             toDecimal128(1000 + number, 6), toDecimal128(500 + number, 12), toDecimal128(0.51, 12), 7, now64(3), now64(3), 1, true FROM numbers(1440)"
        ),
        format!(
            "INSERT INTO trades (trade_id, condition_id, token_id, side, price, size, timestamp, transaction_hash, proxy_wallet, source, ingested_at) \
             SELECT lower(hex(MD5(toString(number)))), '{}', if(number % 2 = 0, '{TOKEN}', '9002'), if(number % 3 = 0, 'SELL', 'BUY'), \
             toDecimal64(0.4, 6) + toDecimal64(number % 100, 6) / 1000, toDecimal64(10 + number % 7, 6), \
             fromUnixTimestamp64Milli(toInt64({trades_start} + number * 400), 'UTC'), '0x01', '0x' || repeat('a', 40), 'DATA_API_V1', now64(3) FROM numbers({TRADES})",
            condition_id(1)
        ),
        format!(
            "INSERT INTO markets (condition_id, event_ids, slug, question, token_ids, token_outcomes, token_winners, active, closed, archived, accepting_orders, enable_order_book, neg_risk, tick_size, tags, volume, content_hash, updated_at) \
             SELECT '0x' || leftPad(lower(hex(number)), 64, '0'), ['1'], 'market-' || toString(number), 'Will thing ' || toString(number) || ' happen?', \
             [toString(1000 + number), toString(2000 + number)], ['Yes', 'No'], [NULL, false], true, false, false, true, true, false, 0.01, ['sports'], 1234.5, '', now64(3) FROM numbers({MARKETS})"
        ),
        // Merged parts, as a long-running server has them, so both paths read the same layout.
        "OPTIMIZE TABLE candles FINAL".to_owned(),
        "OPTIMIZE TABLE trades FINAL".to_owned(),
        "OPTIMIZE TABLE markets FINAL".to_owned(),
    ];
    for statement in &statements {
        api.sql(statement)?;
    }
    Ok(())
}

fn queries(day_start: i64, now_ms: i64) -> Vec<Query> {
    let day_end = day_start + DAY_MS;
    let market = condition_id(1);
    let trades_until = now_ms + 1;
    let lookups: Vec<u64> = (0..50).map(|index| (index * 37) % MARKETS).collect();
    vec![
        Query {
            name: "candles, 1 day of 1m (1440 rows)",
            api_paths: vec![format!(
                "/v1/candles?token_id={TOKEN}&interval=1m&from={day_start}&to={day_end}"
            )],
            direct_sql: vec![format!(
                "SELECT open_time, close_time, open, high, low, close, volume, notional, vwap, trade_count, is_final \
                 FROM candles FINAL WHERE token_id = '{TOKEN}' AND interval = '1m' \
                 AND open_time >= fromUnixTimestamp64Milli(toInt64({day_start}), 'UTC') AND open_time < fromUnixTimestamp64Milli(toInt64({day_end}), 'UTC') \
                 ORDER BY open_time FORMAT JSONEachRow"
            )],
        },
        Query {
            name: "trades, page of 500",
            api_paths: vec![format!("/v1/trades?market={market}&limit=500&to={trades_until}")],
            direct_sql: vec![format!(
                "SELECT trade_id, condition_id, token_id, outcome, outcome_index, side, price, size, timestamp, transaction_hash, proxy_wallet \
                 FROM trades FINAL WHERE 1 AND condition_id = '{market}' AND timestamp < fromUnixTimestamp64Milli(toInt64({trades_until}), 'UTC') \
                 ORDER BY timestamp DESC, trade_id DESC LIMIT 501 FORMAT JSONEachRow"
            )],
        },
        Query {
            name: "market lookup",
            api_paths: lookups
                .iter()
                .map(|index| format!("/v1/markets/{}", condition_id(*index)))
                .collect(),
            direct_sql: lookups
                .iter()
                .map(|index| {
                    format!(
                        "SELECT condition_id, question_id, gamma_market_id, event_ids, slug, question, description, token_ids, token_outcomes, token_winners, \
                         active, closed, archived, accepting_orders, enable_order_book, neg_risk, neg_risk_market_id, tick_size, min_order_size, \
                         maker_base_fee_bps, taker_base_fee_bps, fees_enabled, tags, start_time, end_time, created_time, closed_time, \
                         resolution_status, winning_token_id, volume, liquidity, updated_at \
                         FROM markets FINAL WHERE condition_id = '{}' LIMIT 1 FORMAT JSONEachRow",
                        condition_id(*index)
                    )
                })
                .collect(),
        },
    ]
}

/// A ready-to-send request.
#[derive(Clone)]
enum Request {
    Get { url: String, key: Arc<str> },
    Sql { url: String, sql: String },
}

async fn send(client: &reqwest::Client, request: &Request) -> bool {
    let sent = match request {
        Request::Get { url, key } => {
            client
                .get(url)
                .header("X-API-Key", key.as_ref())
                .send()
                .await
        }
        Request::Sql { url, sql } => client.post(url).body(sql.clone()).send().await,
    };
    match sent {
        Ok(response) => {
            let ok = response.status().is_success();
            // The whole body is part of the answer.
            response.bytes().await.is_ok() && ok
        }
        Err(_) => false,
    }
}

/// What one slice measured.
#[derive(Debug, Default)]
struct Slice {
    latencies_ms: Vec<f64>,
    errors: usize,
    requests: usize,
    elapsed_s: f64,
}

/// Offers `requests` in turn at the fixed rate for `duration`; latency from the scheduled time.
async fn drive(
    client: &reqwest::Client,
    requests: &[Request],
    rate_per_second: u64,
    duration: Duration,
) -> Slice {
    let interval = Duration::from_nanos(1_000_000_000 / rate_per_second);
    let count = usize::try_from(duration.as_nanos() / interval.as_nanos()).unwrap_or(0);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let scheduled = started + interval * u32::try_from(index).unwrap_or(u32::MAX);
        tokio::time::sleep_until(scheduled).await;
        let client = client.clone();
        let request = requests[index % requests.len()].clone();
        tasks.push(tokio::spawn(async move {
            let ok = send(&client, &request).await;
            (ok, scheduled.elapsed())
        }));
    }
    let mut slice = Slice {
        requests: count,
        ..Slice::default()
    };
    for task in tasks {
        match task.await {
            Ok((true, latency)) => slice.latencies_ms.push(latency.as_secs_f64() * 1000.0),
            _ => slice.errors += 1,
        }
    }
    slice.elapsed_s = started.elapsed().as_secs_f64();
    slice
}

fn figures(slices: &[Slice]) -> Figures {
    let mut latencies: Vec<f64> = slices
        .iter()
        .flat_map(|slice| slice.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |fraction: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        // Nearest rank.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((fraction * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    let elapsed: f64 = slices.iter().map(|slice| slice.elapsed_s).sum();
    #[allow(clippy::cast_precision_loss)]
    let achieved_rps = latencies.len() as f64 / elapsed;
    Figures {
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        achieved_rps,
        errors: slices.iter().map(|slice| slice.errors).sum(),
        requests: slices.iter().map(|slice| slice.requests).sum(),
    }
}

pub(crate) fn run() -> anyhow::Result<()> {
    let binary = build_release_api()?;
    let api = ApiUnderTest::start(&binary, "bench")?;
    let now_ms = polytape_model::now_ms();
    let day_start = (now_ms / DAY_MS - 1) * DAY_MS;
    println!(
        "[bench api] seeding {TRADES} trades, 1440 candles, {MARKETS} markets into {}",
        api.database
    );
    seed(&api, day_start, now_ms)?;
    let queries = queries(day_start, now_ms);
    let key: Arc<str> = Arc::from(api.key.as_str());
    let direct_url = format!("{}/?database={}", api.clickhouse_url, api.database);

    // Both paths answer correctly before anything is timed.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(60))
        .build()?;
    let mut results = Vec::new();
    for query in &queries {
        let api_requests: Vec<Request> = query
            .api_paths
            .iter()
            .map(|path| Request::Get {
                url: format!("{}{path}", api.base),
                key: key.clone(),
            })
            .collect();
        let direct_requests: Vec<Request> = query
            .direct_sql
            .iter()
            .map(|sql| Request::Sql {
                url: direct_url.clone(),
                sql: sql.clone(),
            })
            .collect();
        let checked = runtime.block_on(async {
            for request in api_requests.iter().chain(direct_requests.iter()) {
                if !send(&client, request).await {
                    return false;
                }
            }
            true
        });
        if !checked {
            bail!(
                "{}: a request failed before the benchmark; see {}",
                query.name,
                api.database
            );
        }
        for rate in [RATE_PER_SECOND, REFERENCE_RATE_PER_SECOND] {
            println!(
                "[bench api] {}: {ROUNDS} rounds of {} s per path at {rate}/s",
                query.name,
                SLICE.as_secs()
            );
            runtime.block_on(drive(&client, &api_requests, rate, WARM_UP));
            runtime.block_on(drive(&client, &direct_requests, rate, WARM_UP));
            let mut api_slices = Vec::new();
            let mut direct_slices = Vec::new();
            for _ in 0..ROUNDS {
                api_slices.push(runtime.block_on(drive(&client, &api_requests, rate, SLICE)));
                direct_slices.push(runtime.block_on(drive(&client, &direct_requests, rate, SLICE)));
            }
            results.push((
                query.name,
                rate,
                vec![
                    ("api", figures(&api_slices)),
                    ("direct", figures(&direct_slices)),
                ],
            ));
        }
    }

    println!(
        "\napi vs ClickHouse direct, open loop, {ROUNDS} alternating slices of {} s per path after {} s warm-up; latency from the scheduled send",
        SLICE.as_secs(),
        WARM_UP.as_secs()
    );
    println!(
        "  {:<34} {:>6} {:<7} {:>9} {:>9} {:>10} {:>9}",
        "query", "rate/s", "path", "p50 ms", "p99 ms", "done/s", "errors"
    );
    let mut summary = serde_json::Map::new();
    for (name, rate, pair) in &results {
        for (path, figures) in pair {
            println!(
                "  {:<34} {:>6} {:<7} {:>9.2} {:>9.2} {:>10.1} {:>4}/{}",
                name,
                rate,
                path,
                figures.p50_ms,
                figures.p99_ms,
                figures.achieved_rps,
                figures.errors,
                figures.requests
            );
        }
        let (Some((_, api_figures)), Some((_, direct_figures))) = (pair.first(), pair.get(1))
        else {
            continue;
        };
        let p50_ratio = api_figures.p50_ms / direct_figures.p50_ms;
        let p99_ratio = api_figures.p99_ms / direct_figures.p99_ms;
        let goal = if *rate == RATE_PER_SECOND {
            "   (goal <= 1.3x)"
        } else {
            "   (reference: unsaturated)"
        };
        println!(
            "  {:<34} {:>6} ratio api/direct: p50 {:.2}x, p99 {:.2}x{goal}",
            "", "", p50_ratio, p99_ratio
        );
        let slug: String = name
            .chars()
            .map(|character| {
                if character.is_ascii_alphanumeric() {
                    character
                } else {
                    '_'
                }
            })
            .collect();
        let ratio_goal = if *rate == RATE_PER_SECOND {
            "≤ 1.3"
        } else {
            ""
        };
        let id = |what: &str| format!("api.{slug}_{rate}_{what}");
        let label = |what: &str| format!("{name} at {rate}/s: {what}");
        crate::bench_all::figure(
            &id("1_api_p50"),
            &label("API p50"),
            api_figures.p50_ms,
            "ms",
            "",
        );
        crate::bench_all::figure(
            &id("2_api_p99"),
            &label("API p99"),
            api_figures.p99_ms,
            "ms",
            "",
        );
        crate::bench_all::figure(
            &id("3_api_rps"),
            &label("API completed"),
            api_figures.achieved_rps,
            "req/s",
            "",
        );
        crate::bench_all::figure(
            &id("4_direct_p50"),
            &label("direct ClickHouse p50"),
            direct_figures.p50_ms,
            "ms",
            "",
        );
        crate::bench_all::figure(
            &id("5_direct_p99"),
            &label("direct ClickHouse p99"),
            direct_figures.p99_ms,
            "ms",
            "",
        );
        crate::bench_all::figure(
            &id("6_p50_ratio"),
            &label("p50 ratio API / direct"),
            p50_ratio,
            "×",
            ratio_goal,
        );
        crate::bench_all::figure(
            &id("7_p99_ratio"),
            &label("p99 ratio API / direct"),
            p99_ratio,
            "×",
            ratio_goal,
        );
        summary.insert(
            format!("{name} @ {rate}/s"),
            serde_json::json!({
                "api_p50_ms": api_figures.p50_ms, "api_p99_ms": api_figures.p99_ms, "api_rps": api_figures.achieved_rps,
                "direct_p50_ms": direct_figures.p50_ms, "direct_p99_ms": direct_figures.p99_ms, "direct_rps": direct_figures.achieved_rps,
                "p50_ratio": p50_ratio, "p99_ratio": p99_ratio,
                "api_errors": api_figures.errors, "direct_errors": direct_figures.errors,
            }),
        );
    }
    println!("RESULT {}", serde_json::Value::Object(summary));
    drop(api);
    Ok(())
}
