//! Market rankings: each interval-aligned time becomes a snapshot once it is
//! `signal_ranking_delay` old (so fills still on their way are in it), computed inside
//! ClickHouse (`polytape_clickhouse::rankings`). Recomputing a snapshot replaces it, so a
//! restart or an overlap is harmless. A snapshot that fails, or falls due while the service
//! is down, is computed at the next wake-up (the last hour's at most): rankings are a view
//! over stored data, and a late snapshot equals a timely one. After a restart only the latest
//! due snapshot is computed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The snapshot time to compute at `now_ms`: the latest multiple of `interval_ms` at least
/// `delay_ms` in the past.
pub fn snapshot_time(now_ms: i64, interval_ms: i64, delay_ms: i64) -> i64 {
    let interval_ms = interval_ms.max(1);
    (now_ms - delay_ms).div_euclid(interval_ms) * interval_ms
}

/// Snapshots computed at most per wake-up when catching up (after downtime or failures): the
/// last hour at the default interval.
const CATCH_UP: i64 = 12;

/// The snapshot times due when `done_ms` is the last one computed and `due_ms` the latest due:
/// every interval-aligned time after `done_ms` up to `due_ms`, the latest `CATCH_UP` of them.
pub fn due_snapshots(done_ms: Option<i64>, due_ms: i64, interval_ms: i64) -> Vec<i64> {
    let interval_ms = interval_ms.max(1);
    let first = match done_ms {
        Some(done) => (done + interval_ms).max(due_ms - (CATCH_UP - 1) * interval_ms),
        None => due_ms,
    };
    (0..)
        .map(|step| first + step * interval_ms)
        .take_while(|time| *time <= due_ms)
        .collect()
}

/// Computes every due snapshot, then sleeps until the next is due, until `stop`. A snapshot
/// that fails is computed again at the next wake-up (with those missed meanwhile, up to
/// `CATCH_UP`).
pub async fn run(
    clickhouse: polytape_runtime::config::ClickHouseConfig,
    interval: Duration,
    delay: Duration,
    stop: CancellationToken,
) {
    let interval_ms = i64::try_from(interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    let client = polytape_clickhouse::client(&clickhouse);
    let mut done_ms: Option<i64> = None;
    loop {
        let now_ms = polytape_model::now_ms();
        let due_ms = snapshot_time(now_ms, interval_ms, delay_ms);
        for snapshot_ms in due_snapshots(done_ms, due_ms, interval_ms) {
            let started = std::time::Instant::now();
            let computed = tokio::select! {
                () = stop.cancelled() => return,
                computed = polytape_clickhouse::rankings::compute_snapshot(&client, snapshot_ms) => computed,
            };
            match computed {
                Ok(()) => {
                    done_ms = Some(snapshot_ms);
                    tracing::info!(
                        snapshot_ms,
                        seconds = started.elapsed().as_secs_f64(),
                        "market ranking computed"
                    );
                }
                Err(error) => {
                    tracing::warn!(
                        snapshot_ms,
                        error = %error,
                        "cannot compute the market ranking; trying again at the next wake-up"
                    );
                    break;
                }
            }
        }
        // Until the next snapshot is due (its time plus the delay), by the wall clock.
        let next_due_ms = due_ms + interval_ms + delay_ms;
        let wait_ms =
            u64::try_from((next_due_ms - polytape_model::now_ms()).max(1_000)).unwrap_or(1_000);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_snapshots_are_caught_up_to_a_bound() {
        let interval = 300_000;
        assert_eq!(due_snapshots(None, 3_000_000, interval), [3_000_000]);
        assert_eq!(
            due_snapshots(Some(3_000_000), 3_000_000, interval),
            Vec::<i64>::new()
        );
        assert_eq!(
            due_snapshots(Some(2_400_000), 3_000_000, interval),
            [2_700_000, 3_000_000]
        );
        let after_a_day = due_snapshots(Some(0), 86_400_000, interval);
        assert_eq!(after_a_day.len(), CATCH_UP as usize);
        assert_eq!(after_a_day.last(), Some(&86_400_000));
    }

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
