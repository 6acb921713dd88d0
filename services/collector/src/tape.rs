//! The newest-first time walk over the Data API's `/trades` tape, shared by every trades walk
//! (a market alone, streamed or sent oldest first, and many markets polled together).
//!
//! Each request asks for `[from, upper]` at offset 0; upstream serves it newest first. A page
//! shorter than the page size ends the walk. A full page moves `upper` down to the oldest
//! second among its **valid fills inside the window** (inclusive: that second is read again,
//! and the fills of it already sent are skipped by id), so no request ever needs the
//! 10,000-offset cap. A full page with no older valid fill is a second denser than a page: that
//! second is read on its own with offsets, then the walk continues below it.
//!
//! Rows are validated before they steer anything ([`parse::trade_read`]): a row with an
//! unreadable timestamp, or one outside the requested window (upstream's mistake), goes to the
//! DLQ with the reason and is ignored by the walk. Steering by raw timestamps let one such row
//! end a walk early — its second was the page's minimum, below `from` — and the whole window
//! was checkpointed as covered with most of it never read. The one fallback: a full page with
//! no valid fill at all (every row refused, e.g. after an upstream schema change) steers by its
//! refused rows' in-window seconds, so the walk still moves a page at a time instead of a
//! second at a time; the refused rows are dead-lettered either way.

use std::future::Future;

use serde_json::Value;

use polytape_polymarket::rest::{self as parse, TradeRead};

/// Data API v1 `/trades` refuses `offset + limit` beyond this.
pub const OFFSET_CAP: u32 = 10_000;

/// Where a walk stands: the next request is `[from, upper]` at offset 0.
#[derive(Debug, Clone)]
pub struct TapeWalk {
    from: i64,
    upper: Option<i64>,
    page_size: u32,
    /// What is walked (a condition id or a csv of them), for logs.
    label: String,
    /// Seconds whose fills did not all fit under the offset cap: the walk read the first
    /// [`OFFSET_CAP`] rows of each and went on below it.
    truncated: Vec<i64>,
}

impl TapeWalk {
    /// A walk over `[from, upper]` (inclusive seconds) with pages of `page_size` rows.
    pub fn new(label: impl Into<String>, from: i64, upper: i64, page_size: u32) -> Self {
        Self {
            from,
            upper: (upper >= from).then_some(upper),
            page_size: page_size.clamp(1, OFFSET_CAP),
            label: label.into(),
            truncated: Vec::new(),
        }
    }

    /// Seconds this walk could not read completely: more fills than one request filter can
    /// reach under the offset cap (for a multi-market walk, the cap is shared by its markets).
    /// The caller re-reads them market by market or declares them.
    pub fn truncated(&self) -> &[i64] {
        &self.truncated
    }

    /// The upper bound of the next request, or `None` once the window is read.
    pub fn upper(&self) -> Option<i64> {
        self.upper
    }

    /// Takes `page`, the offset-0 page of `[from, upper]`, and moves the walk on; returns the
    /// validated read to send. For a second denser than a page, `fetch_second(second, offset)`
    /// reads `[second, second]` at `offset` until that second is complete, and the read
    /// returned covers the whole second (its identical rows numbered over all of its pages;
    /// see [`parse::trade_read`]).
    ///
    /// `validate(rows, window)` validates rows requested for `window` (inclusive seconds):
    /// the collector's `parse::trade_read` with its ticks.
    pub async fn read<E, Fut>(
        &mut self,
        page: Vec<Value>,
        validate: impl Fn(&[Value], (i64, i64)) -> TradeRead,
        mut fetch_second: impl FnMut(i64, u32) -> Fut,
    ) -> Result<TradeRead, E>
    where
        Fut: Future<Output = Result<Vec<Value>, E>>,
    {
        let Some(upper) = self.upper else {
            return Ok(TradeRead::default());
        };
        let page_size = self.page_size;
        let full = page.len() >= page_size as usize;
        if !full {
            self.upper = None;
            return Ok(validate(&page, (self.from, upper)));
        }
        // Upstream serves newest first, so a full page holds every row of `(oldest, upper]`;
        // the walk goes on at `oldest`, inclusive (the rest of that second is on the next page).
        let first = validate(&page, (self.from, upper));
        let oldest = match first.oldest {
            Some(oldest) => Some(oldest),
            // No valid fill at all: the refused rows' positions are all there is.
            None => first.oldest_refused,
        };
        if let Some(oldest) = oldest.filter(|oldest| *oldest < upper) {
            self.upper = Some(oldest);
            return Ok(first);
        }
        // Every valid fill of the page is at `upper`: a second denser than a page. Read all
        // of it with offsets, as one read.
        let second = upper;
        let aligned = page
            .iter()
            .all(|row| parse::row_timestamp_s(row) == Some(second));
        let (mut rows, mut offset, mut read) = if aligned {
            // The page is the first `page_size` rows of `[second, second]`: continue after it.
            (page, page_size, TradeRead::default())
        } else {
            // Rows of other seconds (refused ones: out of the window, unreadable timestamps,
            // or invalid) shift the offsets of `[second, second]`: read that second from its
            // start, and keep only the refusals of the rows that are not of it.
            let stray: Vec<Value> = page
                .into_iter()
                .filter(|row| parse::row_timestamp_s(row) != Some(second))
                .collect();
            (Vec::new(), 0, validate(&stray, (self.from, upper)))
        };
        loop {
            if offset + page_size > OFFSET_CAP {
                tracing::warn!(
                    markets = %self.label,
                    second,
                    "more fills in one second than the offset cap allows; the rest of that second is unreachable with this filter"
                );
                self.truncated.push(second);
                break;
            }
            let more = fetch_second(second, offset).await?;
            let last = more.len() < page_size as usize;
            rows.extend(more);
            if last {
                break;
            }
            offset += page_size;
        }
        let whole = validate(&rows, (second, second));
        // Stray rows never carry valid fills (every valid fill of the page was at `second`).
        read.trades.clear();
        read.oldest = None;
        read.extend(whole);
        self.upper = (second > self.from).then(|| second - 1);
        Ok(read)
    }
}

#[cfg(test)]
mod tests;
