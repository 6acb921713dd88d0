//! `cargo xtask bench alerts`: event-to-webhook latency at the demo's load.
//!
//! Restarts the local stack from empty data, runs the demo (simulator world, every service, the reference webhook receiver and the demo
//! rule that alerts every signal), lets it run `POLYTAPE_BENCH_ALERT_MINUTES` (default 3), then
//! reads from ClickHouse, for every alert delivered during the run, three latencies per signal
//! kind (p50 and p99):
//!
//! - **event → signal record**: from the upstream event that made the signal fire (the book
//!   change that opened an arbitrage window, the fill of a large trade, the trade that
//!   completed a price move, the fill that made a volume spike) to the signal's record on `polymarket.signals.v1` (the baseline:
//!   collectors, bridge, broker and detectors);
//! - **signal record → webhook**: from that record to the receiver's answer (the alerter);
//! - **event → webhook**: the sum a user feels.
//!
//! Record → webhook is over every alert of the run; the event-based figures only over the
//! `live` alerts, whose event happened during the run, and the `tail` ones only over those
//! whose event came after the collector's first trades round (its backfill) was through (read
//! from its metrics every second) (a window that opens on the first
//! snapshot of a quiet book carries that book's older time: its age, not our latency). Fills reach
//! us through the collector's Data API polling, so a large trade's latency
//! includes the polling interval; book events come over the WebSocket.

use std::time::Duration;

use anyhow::{Context as _, bail};

const DEFAULT_MINUTES: u64 = 3;

pub(crate) fn run() -> anyhow::Result<()> {
    let minutes = std::env::var("POLYTAPE_BENCH_ALERT_MINUTES")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(DEFAULT_MINUTES);
    // A fresh stack: the signals service keeps arbitrage windows open across restarts (one
    // window, one signal), so a second run on old state would see few new signals.
    // Before wiping anything: a running demo's stack is not ours to empty.
    crate::demo::refuse_if_running()?;
    println!("[bench alerts] restarting the local stack from empty data (stack up --fresh)");
    let spec = crate::stack::StackSpec::development();
    crate::stack::down(&spec)?;
    crate::stack::up(&spec, true)?;
    crate::demo::run_detached_simulator_demo()?;
    let started_ms = polytape_model::now_ms();
    println!("[bench alerts] the demo runs for {minutes} minute(s) with its alert rule");
    let backfilled_ms = wait_noting_the_backfill(Duration::from_secs(minutes * 60));
    match backfilled_ms {
        Some(at_ms) => println!(
            "[bench alerts] the collector's backfill was through {} s into the run",
            (at_ms - started_ms) / 1000
        ),
        None => println!("[bench alerts] the collector's backfill did not finish during the run"),
    }
    let outcome = measure(started_ms, backfilled_ms.unwrap_or(i64::MAX));
    if let Err(error) = crate::demo::down() {
        eprintln!("[bench alerts] cannot stop the demo: {error:#}");
    }
    let rows = outcome?;
    if rows.is_empty() {
        bail!("no alert was delivered during the run; see .polytape/demo/signals.log");
    }
    println!(
        "\nalerts at the demo's load ({minutes} min, dev binaries, the demo rule alerting every signal)"
    );
    println!(
        "  {:<20} {:>6} {:>21} {:>6} {:>21} {:>21} {:>6} {:>21}",
        "kind",
        "alerts",
        "record→hook p50/p99",
        "live",
        "event→record p50/p99",
        "event→hook p50/p99",
        "tail",
        "tail event→hook",
    );
    for row in rows {
        let pair = |p50: &serde_json::Value, p99: &serde_json::Value| {
            format!(
                "{:>8.0} / {:>8.0} ms",
                p50.as_f64().unwrap_or(f64::NAN),
                p99.as_f64().unwrap_or(f64::NAN)
            )
        };
        // Quantiles of no rows read as 0: say there were none.
        let unless_none =
            |count: u64, text: String| if count == 0 { "–".to_owned() } else { text };
        let live = row["live"].as_u64().unwrap_or(0);
        let tail = row["tail"].as_u64().unwrap_or(0);
        println!(
            "  {:<20} {:>6} {:>21} {:>6} {:>21} {:>21} {:>6} {:>21}",
            row["kind"].as_str().unwrap_or("?"),
            row["alerts"].as_u64().unwrap_or(0),
            pair(&row["to_hook_p50"], &row["to_hook_p99"]),
            live,
            unless_none(live, pair(&row["to_record_p50"], &row["to_record_p99"])),
            unless_none(live, pair(&row["total_p50"], &row["total_p99"])),
            tail,
            unless_none(tail, pair(&row["tail_p50"], &row["tail_p99"])),
        );
    }
    Ok(())
}

/// Sleeps `length`, reading the collector's metrics every second; returns when its first
/// trades round (the backfill) was first seen complete: every market of the round done.
fn wait_noting_the_backfill(length: Duration) -> Option<i64> {
    let ends = std::time::Instant::now() + length;
    let http = crate::demo::Http::new().ok();
    let mut backfilled_ms = None;
    while std::time::Instant::now() < ends {
        if backfilled_ms.is_none() && http.as_ref().is_some_and(collector_round_complete) {
            backfilled_ms = Some(polytape_model::now_ms());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    backfilled_ms
}

/// Whether the collector's current trades round has every market done (its gauges).
fn collector_round_complete(http: &crate::demo::Http) -> bool {
    let Some(text) = http.text("http://127.0.0.1:9101/metrics") else {
        return false;
    };
    let samples = crate::demo::parse_prometheus_text(&text);
    let gauge = |name: &str| {
        samples
            .iter()
            .find(|sample| sample.name == name)
            .map_or(0.0, |sample| sample.value)
    };
    let total = gauge("polytape_collector_backfill_markets_total");
    total > 0.0 && gauge("polytape_collector_backfill_markets_done") >= total
}

/// The latencies per kind of the alerts delivered since `started_ms`; the `tail_` figures only
/// over events after `backfilled_ms` (once the collector polls the live tail).
fn measure(started_ms: i64, backfilled_ms: i64) -> anyhow::Result<Vec<serde_json::Value>> {
    // The event: a price move's last observation (`to_ms`), a volume spike's crossing fill
    // (`crossed_ms`), else the window's start (an arbitrage window's opening book change, a
    // large trade's fill).
    let sql = format!(
        "WITH toUnixTimestamp64Milli(d.signal_recorded) AS recorded, \
              toUnixTimestamp64Milli(d.finished) AS finished, \
              multiIf(s.kind = 'PRICE_MOVE', toInt64OrZero(s.input_values[indexOf(s.input_names, 'to_ms')]), \
                      s.kind = 'VOLUME_SPIKE', toInt64OrZero(s.input_values[indexOf(s.input_names, 'crossed_ms')]), \
                      toUnixTimestamp64Milli(s.window_start)) AS event \
         SELECT toString(d.signal_kind) AS kind, count() AS alerts, \
                quantileExact(0.5)(finished - recorded) AS to_hook_p50, \
                quantileExact(0.99)(finished - recorded) AS to_hook_p99, \
                countIf(event >= {started_ms}) AS live, \
                quantileExactIf(0.5)(recorded - event, event >= {started_ms}) AS to_record_p50, \
                quantileExactIf(0.99)(recorded - event, event >= {started_ms}) AS to_record_p99, \
                quantileExactIf(0.5)(finished - event, event >= {started_ms}) AS total_p50, \
                quantileExactIf(0.99)(finished - event, event >= {started_ms}) AS total_p99, \
                countIf(event >= {backfilled_ms}) AS tail, \
                quantileExactIf(0.5)(finished - event, event >= {backfilled_ms}) AS tail_p50, \
                quantileExactIf(0.99)(finished - event, event >= {backfilled_ms}) AS tail_p99 \
         FROM polymarket.alert_deliveries AS d FINAL \
         INNER JOIN (SELECT * FROM polymarket.signals FINAL) AS s ON s.signal_id = d.signal_id \
         WHERE NOT d.test AND d.status = 'delivered' \
           AND d.signal_recorded >= fromUnixTimestamp64Milli(toInt64({started_ms})) \
         GROUP BY kind ORDER BY kind FORMAT JSONEachRow"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post("http://127.0.0.1:8123/")
            .timeout(Duration::from_secs(60))
            .body(sql)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("clickhouse answered {status}: {text}");
        }
        Ok::<String, anyhow::Error>(text)
    })?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).context("clickhouse sent a line that is not JSON"))
        .collect()
}
