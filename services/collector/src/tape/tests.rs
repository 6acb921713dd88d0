//! Walks over an in-memory tape that serves `/trades` as upstream does (newest first,
//! `[start, end]` inclusive, offset and limit), with the collector's validation and the
//! dedupe by id its walks apply (`send_trades`, the skip sets).

use std::{cell::Cell, cmp::Reverse, collections::HashSet, convert::Infallible};

use polytape_model::Trade;
use serde_json::{Value, json};

use super::*;
use polytape_polymarket::rest::{Refused, trade_read};

const CONDITION: &str = "0x57373f395332d0c8be1ab99acd941a216594a9007320343213949fd7d8a49b24";

/// A fill row as the Data API serves it.
fn fill(second: i64, tx: u32, wallet: u32, size: f64) -> Value {
    json!({
        "proxyWallet": format!("0x{wallet:040x}"),
        "side": "BUY",
        "asset": "92071830247158429266517632633283963577030982596600419669075490843953894242121",
        "conditionId": CONDITION,
        "size": size,
        "price": 0.58,
        "timestamp": second,
        "transactionHash": format!("0x{tx:064x}"),
    })
}

type Fault = Box<dyn Fn(usize, &mut Vec<Value>)>;

/// Upstream: rows with the second they are filed under (normally their `timestamp`; a bad
/// row can be filed under one second and serve another), and a fault applied to the n-th
/// response (1-based).
struct Upstream {
    tape: Vec<(i64, Value)>,
    requests: Cell<usize>,
    fault: Fault,
}

impl Upstream {
    fn new(rows: Vec<Value>) -> Self {
        let tape = rows
            .into_iter()
            .map(|row| (row["timestamp"].as_i64().unwrap(), row))
            .collect();
        Self {
            tape,
            requests: Cell::new(0),
            fault: Box::new(|_, _| {}),
        }
    }

    fn with_fault(mut self, fault: impl Fn(usize, &mut Vec<Value>) + 'static) -> Self {
        self.fault = Box::new(fault);
        self
    }

    fn serve(&self, start: i64, end: i64, offset: u32, limit: u32) -> Vec<Value> {
        let request = self.requests.get() + 1;
        self.requests.set(request);
        assert!(request < 10_000, "the walk does not end");
        let mut filed: Vec<&(i64, Value)> = self
            .tape
            .iter()
            .filter(|(second, _)| (start..=end).contains(second))
            .collect();
        // Stable: rows of one second keep their order, request after request.
        filed.sort_by_key(|(second, _)| Reverse(*second));
        let mut page: Vec<Value> = filed
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .map(|(_, row)| row.clone())
            .collect();
        (self.fault)(request, &mut page);
        page
    }

    /// What reading every row of the tape at once gives: the ids a walk must end up with.
    fn reference(&self, window: (i64, i64)) -> Vec<String> {
        let mut rows: Vec<&(i64, Value)> = self.tape.iter().collect();
        rows.sort_by_key(|(second, _)| Reverse(*second));
        let rows: Vec<Value> = rows.into_iter().map(|(_, row)| row.clone()).collect();
        let mut ids: Vec<String> = trade_read(&rows, window, 0, |_| None)
            .trades
            .into_iter()
            .map(|trade| trade.trade_id)
            .collect();
        ids.sort();
        ids
    }
}

#[derive(Debug, Default)]
struct Walked {
    /// Each id once, as the collector sends them.
    trades: Vec<Trade>,
    refused: Vec<Refused>,
    requests: usize,
}

impl Walked {
    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .trades
            .iter()
            .map(|trade| trade.trade_id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// Walks `[from, to]` the way the collector's walks drive a [`TapeWalk`].
async fn walk(upstream: &Upstream, from: i64, to: i64, page_size: u32) -> Walked {
    let mut tape = TapeWalk::new("test", from, to, page_size);
    let mut walked = Walked::default();
    let mut seen = HashSet::new();
    while let Some(upper) = tape.upper() {
        let page = upstream.serve(from, upper, 0, page_size);
        let read = tape
            .read(
                page,
                |rows: &[Value], window| trade_read(rows, window, 0, |_| None),
                |second, offset| {
                    std::future::ready(Ok::<_, Infallible>(
                        upstream.serve(second, second, offset, page_size),
                    ))
                },
            )
            .await
            .unwrap();
        for trade in read.trades {
            if seen.insert(trade.trade_id.clone()) {
                walked.trades.push(trade);
            }
        }
        walked.refused.extend(read.refused);
    }
    walked.requests = upstream.requests.get();
    walked
}

/// One fill per second over `[first, first + count)`, each its own transaction.
fn steady(first: i64, count: u32) -> Vec<Value> {
    (0..count)
        .map(|index| fill(first + i64::from(index), index + 1, 7, 10.0))
        .collect()
}

/// A row with a timestamp outside the requested window (or an unreadable one) on a full page
/// used to be the page's "oldest second" and end the walk: the window was then checkpointed
/// as covered with two thirds of it never read. It is refused and the walk goes on.
#[tokio::test]
async fn a_row_outside_the_window_does_not_end_the_walk() {
    let upstream = Upstream::new(steady(1_000, 30)).with_fault(|request, page| {
        let mut stray = fill(0, 0xdead, 9, 1.0);
        match request {
            1 => stray["timestamp"] = json!(1),
            2 => stray["timestamp"] = json!("soon"),
            3 => stray["timestamp"] = json!(99_999),
            _ => return,
        }
        page.push(stray);
    });
    let walked = walk(&upstream, 1_000, 1_100, 10).await;
    assert_eq!(walked.trades.len(), 30, "every fill of the window arrives");
    assert_eq!(walked.ids(), upstream.reference((1_000, 1_100)));
    assert_eq!(walked.refused.len(), 3, "{:?}", walked.refused);
    assert!(
        walked.refused[0]
            .reason
            .contains("outside the requested window")
    );
    assert!(walked.refused[1].reason.contains("timestamp"));
    assert!(
        walked.refused[2]
            .reason
            .contains("outside the requested window")
    );
    assert!(
        walked
            .refused
            .iter()
            .all(|refused| refused.second.is_none())
    );
    assert!(walked.requests <= 5, "{} requests", walked.requests);
}

/// A page whose every row is refused (an upstream schema change) still moves the walk a page
/// at a time, by the refused rows' in-window seconds, not a second at a time.
#[tokio::test]
async fn a_page_of_refused_rows_moves_the_walk_a_page_at_a_time() {
    let rows: Vec<Value> = steady(1_000, 50)
        .into_iter()
        .map(|mut row| {
            row.as_object_mut().unwrap().remove("transactionHash");
            row
        })
        .collect();
    let upstream = Upstream::new(rows);
    let walked = walk(&upstream, 1_000, 1_049, 10).await;
    assert!(walked.trades.is_empty());
    let distinct: HashSet<&Vec<u8>> = walked
        .refused
        .iter()
        .map(|refused| &refused.payload)
        .collect();
    assert_eq!(distinct.len(), 50, "every row is dead-lettered");
    assert!(walked.requests <= 8, "{} requests", walked.requests);
}

/// Identical rows (one wallet, one transaction, equal side, size and price) are distinct
/// trades, wherever the pages cut the second they share — including a second denser than a
/// page, read with offsets — and re-walking gives the same ids.
#[tokio::test]
async fn identical_fills_keep_distinct_ids_across_page_boundaries() {
    let mut rows = steady(1_000, 10);
    // Second 1005: three identical fills of transaction 0x77 and one other fill of it.
    rows.extend([
        fill(1_005, 0x77, 3, 2.5),
        fill(1_005, 0x77, 3, 2.5),
        fill(1_005, 0x77, 3, 4.0),
        fill(1_005, 0x77, 3, 2.5),
    ]);
    let upstream = Upstream::new(rows);
    let reference = upstream.reference((1_000, 1_100));
    assert_eq!(reference.len(), 14, "identical rows get distinct ids");
    for page_size in 1..=15 {
        let walked = walk(&upstream, 1_000, 1_100, page_size).await;
        assert_eq!(walked.ids(), reference, "page size {page_size}");
        let again = walk(&upstream, 1_000, 1_100, page_size).await;
        assert_eq!(again.ids(), reference, "page size {page_size}, again");
        assert!(walked.refused.is_empty());
    }
}

/// A second denser than a page, whose first page also holds a stray row that `[s, s]` does
/// not: continuing that second at offset `page_size` would skip one of its fills, so it is
/// read again from its start.
#[tokio::test]
async fn a_dense_second_behind_a_stray_row_is_read_from_its_start() {
    let mut rows: Vec<Value> = (0..12)
        .map(|index| fill(1_005, 100 + index, 5, 1.0))
        .collect();
    rows.push(fill(1_001, 99, 5, 1.0));
    let upstream = Upstream::new(rows).with_fault(|request, page| {
        // The first request, `[1000, 1005]` at offset 0: upstream slips in a stray row ahead
        // of the second's rows, within the page's limit.
        if request == 1 {
            let mut stray = fill(1, 0xbad, 9, 1.0);
            stray["timestamp"] = json!(1);
            page.insert(0, stray);
            page.pop();
        }
    });
    let walked = walk(&upstream, 1_000, 1_005, 5).await;
    assert_eq!(walked.trades.len(), 13);
    assert_eq!(walked.ids(), upstream.reference((1_000, 1_005)));
    assert_eq!(walked.refused.len(), 1);
    assert!(
        walked.refused[0]
            .reason
            .contains("outside the requested window")
    );
}

/// An empty or inverted window is complete at once.
#[tokio::test]
async fn an_inverted_window_needs_no_request() {
    let tape = TapeWalk::new("test", 10, 9, 100);
    assert_eq!(tape.upper(), None);
    let upstream = Upstream::new(steady(1_000, 3));
    let walked = walk(&upstream, 1_000, 999, 10).await;
    assert_eq!(walked.requests, 0);
}

/// A second holding more fills than the offset cap reaches: the walk reads the first
/// `OFFSET_CAP` rows, goes on below it, and reports the second as truncated (the collector
/// re-reads it market by market, or declares it as an upstream gap).
#[tokio::test]
async fn a_second_past_the_offset_cap_is_reported_truncated() {
    let dense = OFFSET_CAP + 500;
    let mut rows: Vec<Value> = (0..dense)
        .map(|index| fill(1_005, index + 1, 5, 1.0))
        .collect();
    rows.extend(steady(1_000, 3));
    let upstream = Upstream::new(rows);
    let page_size = 1_000;
    let mut tape = TapeWalk::new("test", 1_000, 1_010, page_size);
    let mut ids = HashSet::new();
    while let Some(upper) = tape.upper() {
        let page = upstream.serve(1_000, upper, 0, page_size);
        let read = tape
            .read(
                page,
                |rows: &[Value], window| trade_read(rows, window, 0, |_| None),
                |second, offset| {
                    std::future::ready(Ok::<_, Infallible>(
                        upstream.serve(second, second, offset, page_size),
                    ))
                },
            )
            .await
            .unwrap();
        ids.extend(read.trades.into_iter().map(|trade| trade.trade_id));
    }
    assert_eq!(tape.truncated(), &[1_005]);
    // The first 10,000 fills of the dense second and everything below it.
    assert_eq!(ids.len(), OFFSET_CAP as usize + 3);

    // Exactly a page short of the cap: complete, nothing reported.
    let upstream = Upstream::new(
        (0..2_500)
            .map(|index| fill(1_005, index + 1, 5, 1.0))
            .collect(),
    );
    let mut tape = TapeWalk::new("test", 1_000, 1_010, page_size);
    while let Some(upper) = tape.upper() {
        let page = upstream.serve(1_000, upper, 0, page_size);
        tape.read(
            page,
            |rows: &[Value], window| trade_read(rows, window, 0, |_| None),
            |second, offset| {
                std::future::ready(Ok::<_, Infallible>(
                    upstream.serve(second, second, offset, page_size),
                ))
            },
        )
        .await
        .unwrap();
    }
    assert!(tape.truncated().is_empty());
}
