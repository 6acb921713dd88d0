//! P4 and P7 of the benchmark report (`cargo xtask bench freshness`, not part of the test
//! suite): the whole pipeline with the simulator's WebSocket at ~5,000 events/s; freshness is
//! the sink's per-row latency (insert completion minus the upstream event time) of
//! `price_changes`, p50/p99 interpolated within the histogram's buckets over a measured window
//! after warm-up; RSS is each service's peak resident set (VmHWM) at the end.

#![allow(clippy::unwrap_used)] // a benchmark harness fails loudly on purpose

use std::time::Duration;

use polytape_e2e::{Pipeline, Scale, Service};

/// Cumulative bucket counts of one histogram series: (upper bound, count).
fn histogram_buckets(metrics: &str, name: &str, table: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|line| line.starts_with(&prefix) && line.contains(&format!("table=\"{table}\"")))
        .filter_map(|line| {
            // `le` as a label of its own: `table="…"` also ends in `le="`.
            let le = line
                .split(",le=\"")
                .nth(1)
                .or_else(|| line.split("{le=\"").nth(1))?
                .split('"')
                .next()?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
            Some((bound, count))
        })
        .collect();
    buckets.sort_by(|left, right| left.0.total_cmp(&right.0));
    buckets
}

/// The `quantile` of the observations between two cumulative snapshots, interpolated linearly
/// within the bucket it falls in.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], quantile: f64) -> f64 {
    let counts: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, count)| {
            let earlier = before
                .iter()
                .find(|(other, _)| other == bound)
                .map_or(0.0, |(_, count)| *count);
            (*bound, count - earlier)
        })
        .collect();
    let total = counts.last().map_or(0.0, |(_, count)| *count);
    if total <= 0.0 {
        return f64::NAN;
    }
    let target = total * quantile;
    let mut lower_bound = 0.0;
    let mut lower_count = 0.0;
    for (bound, count) in counts {
        if count >= target {
            if bound.is_infinite() {
                return lower_bound;
            }
            let within = (target - lower_count) / (count - lower_count).max(1.0);
            return lower_bound + (bound - lower_bound) * within;
        }
        lower_bound = bound;
        lower_count = count;
    }
    lower_bound
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

async fn ws_events_sent(pipeline: &Pipeline) -> f64 {
    pipeline.truth("/_sim/stats").await["ws"]["events_sent"]
        .as_f64()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by `cargo xtask bench freshness`"]
async fn freshness_and_memory_at_5k_ws_events_per_second() {
    let rate: f64 = std::env::var("POLYTAPE_BENCH_SIM_RATE")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3_300.0);
    let window = Duration::from_secs(
        std::env::var("POLYTAPE_BENCH_WINDOW_SECS")
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(60),
    );
    let scale = Scale {
        markets: 200,
        history_days: 1,
        rate,
        live: window,
    };
    let pipeline = Pipeline::start("bench_freshness", scale, |config| {
        config.lifecycle_every = 0;
    })
    .await;
    // Warm-up: the backfill drains and every connection has its dump.
    tokio::time::sleep(Duration::from_secs(30)).await;
    pipeline.assert_all_alive();
    let sink_metrics = pipeline.metrics(Service::Sink).await;
    eprintln!(
        "[bench] sink /metrics: {} lines, {} row-latency bucket lines, tables {:?}",
        sink_metrics.lines().count(),
        sink_metrics
            .lines()
            .filter(|line| line.starts_with("polytape_sink_row_latency_seconds_bucket"))
            .count(),
        sink_metrics
            .lines()
            .filter(|line| line.starts_with("polytape_sink_rows_inserted_total"))
            .collect::<Vec<_>>()
    );
    let before = histogram_buckets(
        &sink_metrics,
        "polytape_sink_row_latency_seconds",
        "price_changes",
    );
    let events_before = ws_events_sent(&pipeline).await;
    tokio::time::sleep(window).await;
    pipeline.assert_all_alive();
    let after = histogram_buckets(
        &pipeline.metrics(Service::Sink).await,
        "polytape_sink_row_latency_seconds",
        "price_changes",
    );
    let events_per_second =
        (ws_events_sent(&pipeline).await - events_before) / window.as_secs_f64();
    eprintln!(
        "[bench] price_changes latency buckets before/after the window: {} / {} series, {} / {} observations",
        before.len(),
        after.len(),
        before.last().map_or(0.0, |(_, count)| *count),
        after.last().map_or(0.0, |(_, count)| *count)
    );
    // JSON has no NaN: a figure without observations is null (and the report says so).
    let number = |value: f64| {
        if value.is_finite() {
            serde_json::json!(value.round())
        } else {
            serde_json::Value::Null
        }
    };
    let mut result = serde_json::Map::new();
    result.insert("ws_events_per_s".into(), number(events_per_second));
    result.insert(
        "freshness_p50_ms".into(),
        number(quantile(&before, &after, 0.5) * 1000.0),
    );
    result.insert(
        "freshness_p99_ms".into(),
        number(quantile(&before, &after, 0.99) * 1000.0),
    );
    for service in Service::PIPELINE {
        let key = format!(
            "rss_mib_{}",
            service
                .binary()
                .trim_start_matches("polytape-")
                .replace('-', "_")
        );
        result.insert(key, number(peak_rss_mib(pipeline.pid(service))));
    }
    let line = serde_json::Value::Object(result);
    eprintln!("[bench] {line}");
    println!("RESULT {line}");
    pipeline.shut_down().await;
}

#[test]
fn quantiles_interpolate_within_buckets() {
    let before = vec![(0.1, 0.0), (0.5, 0.0), (1.0, 0.0), (f64::INFINITY, 0.0)];
    let after = vec![
        (0.1, 10.0),
        (0.5, 60.0),
        (1.0, 100.0),
        (f64::INFINITY, 100.0),
    ];
    // 50th observation: 40 of the 50 in (0.1, 0.5] → 0.1 + 0.4 × 40/50.
    assert!((quantile(&before, &after, 0.5) - 0.42).abs() < 1e-9);
    // 99th: 39 of the 40 in (0.5, 1.0].
    assert!((quantile(&before, &after, 0.99) - (0.5 + 0.5 * 39.0 / 40.0)).abs() < 1e-9);
    assert!(
        quantile(&after, &after, 0.5).is_nan(),
        "no observations in the window"
    );
}

#[test]
fn histogram_lines_of_one_table_are_parsed() {
    let metrics = "# TYPE polytape_sink_row_latency_seconds histogram\n\
polytape_sink_row_latency_seconds_bucket{table=\"price_changes\",le=\"0.5\"} 3\n\
polytape_sink_row_latency_seconds_bucket{table=\"price_changes\",le=\"+Inf\"} 4\n\
polytape_sink_row_latency_seconds_bucket{table=\"trades\",le=\"0.5\"} 9\n";
    let buckets = histogram_buckets(
        metrics,
        "polytape_sink_row_latency_seconds",
        "price_changes",
    );
    assert_eq!(buckets, vec![(0.5, 3.0), (f64::INFINITY, 4.0)]);
}
