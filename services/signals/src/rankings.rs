//! Market rankings: every `signal_ranking_interval`, the snapshot at the latest interval-aligned
//! time that is at least `signal_ranking_delay` old (so fills still on their way are in it) is
//! computed inside ClickHouse (`polytape_clickhouse::rankings`). Recomputing a snapshot
//! replaces it, so a restart or an overlap is harmless. A failed computation is logged and
//! tried again at the next tick: rankings are a view over stored data, and a missed tick loses
//! nothing that the next cannot compute.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The snapshot time to compute at `now_ms`: the latest multiple of `interval_ms` at least
/// `delay_ms` in the past.
pub fn snapshot_time(now_ms: i64, interval_ms: i64, delay_ms: i64) -> i64 {
    let interval_ms = interval_ms.max(1);
    (now_ms - delay_ms).div_euclid(interval_ms) * interval_ms
}

/// Computes a snapshot at every tick until `stop`.
pub async fn run(
    clickhouse: polytape_runtime::config::ClickHouseConfig,
    interval: Duration,
    delay: Duration,
    stop: CancellationToken,
) {
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let client = polytape_clickhouse::client(&clickhouse);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let snapshot_ms = snapshot_time(polytape_model::now_ms(), interval_ms, delay_ms);
        let started = std::time::Instant::now();
        match polytape_clickhouse::rankings::compute_snapshot(&client, snapshot_ms).await {
            Ok(()) => tracing::info!(
                snapshot_ms,
                seconds = started.elapsed().as_secs_f64(),
                "market ranking computed"
            ),
            Err(error) => tracing::warn!(
                snapshot_ms,
                error = %error,
                "cannot compute the market ranking; trying again at the next tick"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_interval_aligned_and_at_least_the_delay_old() {
        let minute = 60_000;
        assert_eq!(
            snapshot_time(10 * minute + 30_000, 5 * minute, minute),
            5 * minute
        );
        assert_eq!(snapshot_time(11 * minute, 5 * minute, minute), 10 * minute);
        assert_eq!(
            snapshot_time(10 * minute + 59_999, 5 * minute, minute),
            5 * minute
        );
    }
}
