//! Backfill progress: one updating line on stderr when stderr is a terminal (markets done /
//! total, records, rate, ETA); otherwise the `backfill_markets_{done,total}` gauges and a
//! `trades progress` log line every 20 markets (what a log collector wants).

use std::{
    io::{IsTerminal as _, Write as _},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// How a round reports its progress.
#[derive(Debug)]
pub struct Progress {
    /// Markets in the work (grows when `run`'s walk lane takes on more).
    total: AtomicUsize,
    started: Instant,
    terminal: bool,
    /// When the terminal line was last drawn: redrawing it for every market of a fast
    /// polling round would only flicker.
    last_drawn: Mutex<Option<Instant>>,
}

const REDRAW_EVERY: Duration = Duration::from_millis(200);

impl Progress {
    pub fn new(total: usize) -> Self {
        Self {
            total: AtomicUsize::new(total),
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            last_drawn: Mutex::new(None),
        }
    }

    /// `more` markets joined the work (shown from the next market finished).
    pub fn add_total(&self, more: usize) {
        self.total.fetch_add(more, Ordering::Relaxed);
    }

    /// One more market finished; `records` were sent since the round started.
    pub fn market_finished(&self, done: usize, records: u64) {
        let total = self.total.load(Ordering::Relaxed);
        crate::metrics::backfill_progress(done, total);
        let elapsed = self.started.elapsed().as_secs_f64();
        if self.terminal {
            let now = Instant::now();
            let mut last_drawn = match self.last_drawn.lock() {
                Ok(last_drawn) => last_drawn,
                Err(poisoned) => poisoned.into_inner(),
            };
            let due = last_drawn.is_none_or(|last| now.duration_since(last) >= REDRAW_EVERY);
            if due || done == total {
                *last_drawn = Some(now);
                let line = progress_line(done, total, records, elapsed);
                let ending = if done == total { "\n" } else { "" };
                // Progress is best-effort: a closed stderr must not stop collection.
                let _ = write!(std::io::stderr(), "\r\x1b[2K{line}{ending}");
            }
        } else if done.is_multiple_of(20) || done == total {
            let eta = eta_seconds(done, total, elapsed);
            tracing::info!(
                markets_done = done,
                markets_total = total,
                records,
                records_per_second = (records as f64 / elapsed.max(0.001)).round(),
                eta_seconds = eta.map(f64::round),
                "trades progress"
            );
        }
    }
}

/// Seconds left at the average pace so far; `None` before the first market.
pub fn eta_seconds(done: usize, total: usize, elapsed_seconds: f64) -> Option<f64> {
    (done > 0).then(|| elapsed_seconds / done as f64 * total.saturating_sub(done) as f64)
}

/// `trades  120/200 markets (60.0 %)  51,234 records  3,912/s  ETA 0:42`
pub fn progress_line(done: usize, total: usize, records: u64, elapsed_seconds: f64) -> String {
    let percent = if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    };
    let rate = records as f64 / elapsed_seconds.max(0.001);
    let eta = match eta_seconds(done, total, elapsed_seconds) {
        Some(seconds) => {
            let seconds = seconds.round() as u64;
            format!("{}:{:02}", seconds / 60, seconds % 60)
        }
        None => "?".to_owned(),
    };
    format!(
        "trades {done:>5}/{total} markets ({percent:.1} %)  {} records  {}/s  ETA {eta}",
        thousands(records),
        thousands(rate.round() as u64)
    )
}

fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_done_total_records_rate_and_eta() {
        assert_eq!(
            progress_line(120, 200, 51_234, 30.0),
            "trades   120/200 markets (60.0 %)  51,234 records  1,708/s  ETA 0:20"
        );
        assert_eq!(
            progress_line(0, 200, 0, 0.0),
            "trades     0/200 markets (0.0 %)  0 records  0/s  ETA ?"
        );
        assert_eq!(
            progress_line(1, 3, 1_000_000, 600.0),
            "trades     1/3 markets (33.3 %)  1,000,000 records  1,667/s  ETA 20:00"
        );
    }

    #[test]
    fn eta_is_the_average_pace_times_what_is_left() {
        assert_eq!(eta_seconds(0, 10, 5.0), None);
        assert_eq!(eta_seconds(5, 10, 5.0), Some(5.0));
        assert_eq!(eta_seconds(10, 10, 5.0), Some(0.0));
    }
}
