//! What a run does: mode, datasets, window (from the command line).

use std::{collections::BTreeSet, time::Duration};

/// The collector's modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Backfill the retention window, then poll forward (default).
    Run,
    /// Fill `[from, to]` (seconds) and exit 0 once complete.
    Backfill { from_s: i64, to_s: i64 },
    /// Poll forward from now (or from the checkpoints).
    Poll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dataset {
    Markets,
    Events,
    Trades,
    PriceHistory,
    /// REST `POST /books` snapshots. Not in the default set: the WS bridge publishes the books
    /// of the tokens it covers; enable this only for tokens it does not.
    BookSnapshots,
    /// `/v1/leaderboard` for every period, category and ordering.
    Leaderboard,
}

impl Dataset {
    pub fn parse(text: &str) -> Result<Dataset, String> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "markets" => Ok(Dataset::Markets),
            "events" => Ok(Dataset::Events),
            "trades" => Ok(Dataset::Trades),
            "price_history" | "prices" => Ok(Dataset::PriceHistory),
            "book_snapshots" | "books" => Ok(Dataset::BookSnapshots),
            "leaderboard" => Ok(Dataset::Leaderboard),
            other => Err(format!(
                "unknown dataset {other:?}; expected markets, events, trades, price_history, book_snapshots or leaderboard"
            )),
        }
    }

    pub fn parse_list(text: &str) -> Result<BTreeSet<Dataset>, String> {
        text.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(Dataset::parse)
            .collect()
    }
}

/// Everything a run needs beyond the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub datasets: BTreeSet<Dataset>,
    /// Only these condition ids (lower-case); empty = every market.
    pub markets: Vec<String>,
    /// At most this many markets (after `markets`).
    pub limit: Option<usize>,
    /// Stop after this long (backfill: exit 1 if not complete by then).
    pub timeout: Option<Duration>,
    /// Ignore stored checkpoints.
    pub fresh: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: Mode::Run,
            datasets: [Dataset::Markets, Dataset::Events, Dataset::Trades]
                .into_iter()
                .collect(),
            markets: Vec::new(),
            limit: None,
            timeout: None,
            fresh: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_lists() {
        assert_eq!(
            Dataset::parse_list("markets, trades").unwrap(),
            [Dataset::Markets, Dataset::Trades].into_iter().collect()
        );
        assert_eq!(
            Dataset::parse_list("price-history").unwrap(),
            [Dataset::PriceHistory].into_iter().collect()
        );
        assert_eq!(
            Dataset::parse_list("books,leaderboard").unwrap(),
            [Dataset::BookSnapshots, Dataset::Leaderboard]
                .into_iter()
                .collect()
        );
        assert!(Dataset::parse_list("trades,orders").is_err());
        // Book snapshots stay off unless asked for: the WS bridge owns the books it covers.
        assert!(
            !Options::default()
                .datasets
                .contains(&Dataset::BookSnapshots)
        );
    }
}
