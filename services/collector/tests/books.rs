//! REST book snapshots: `POST /books` in batches; every snapshot equals the simulator's
//! ground-truth book of that token at the snapshot's timestamp (the world is frozen: rate 0),
//! hash included; a second snapshot of unchanged books sends nothing.

#![allow(clippy::unwrap_used)]

mod support;

use std::{collections::HashSet, time::Duration};

use polytape_collector::{CollectorTuning, Dataset, Mode, Options};
use polytape_model::{BookSnapshot, BookSource, Market};
use polytape_polymarket::rest as parse;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_snapshots_equal_the_truth_book_at_their_timestamp() {
    let window = Duration::from_secs(1);
    let sim = sim(window, "").await;
    let names = topics("collector_books").await;
    let tuning = CollectorTuning {
        // An odd batch size: several batches, the last one partial.
        book_snapshot_batch: 7,
        ..tuning(window)
    };
    let config = config(&sim, &names, tuning);
    let options = Options {
        mode: Mode::Backfill {
            from_s: EPOCH_MS / 1000 - 3_600,
            to_s: EPOCH_MS / 1000,
        },
        datasets: [Dataset::Markets, Dataset::BookSnapshots]
            .into_iter()
            .collect(),
        limit: Some(40),
        ..Options::default()
    };
    let collector = connected(&config).await;
    let summary = collector.clone().run(options).await.unwrap();
    println!("{summary:?}");

    // The selection is the first 40 markets by condition id; closed ones have no book.
    let mut markets: Vec<Market> = records(&names).await;
    markets.sort_by(|left, right| left.condition_id.cmp(&right.condition_id));
    let open_tokens: HashSet<String> = markets
        .iter()
        .take(40)
        .filter(|market| !market.closed)
        .flat_map(|market| market.tokens.iter().map(|token| token.token_id.clone()))
        .collect();
    let closed = markets
        .iter()
        .take(40)
        .filter(|market| market.closed)
        .count();
    assert!(open_tokens.len() > 7, "{} open tokens", open_tokens.len());

    let snapshots: Vec<BookSnapshot> = records(&names).await;
    let snapshot_tokens: HashSet<String> =
        snapshots.iter().map(|book| book.token_id.clone()).collect();
    assert_eq!(
        snapshots.len(),
        snapshot_tokens.len(),
        "one snapshot per token"
    );
    assert_eq!(snapshot_tokens, open_tokens);
    assert_eq!(summary.book_snapshots as usize, snapshots.len());

    let mut levels = 0;
    for book in &snapshots {
        assert_eq!(book.source, BookSource::Rest);
        assert!(book.connection_id.is_none() && book.sequence.is_none());
        let truth_json = truth(
            &sim,
            &format!(
                "/_sim/truth/book?token_id={}&at={}",
                book.token_id, book.timestamp_ms
            ),
        )
        .await;
        let expected = parse::book_snapshot(&truth_json, book.received_ms).unwrap();
        assert!(expected.hash.is_some());
        assert_eq!(*book, expected, "token {}", book.token_id);
        // Best first on both sides.
        assert!(
            book.bids
                .windows(2)
                .all(|pair| pair[0].price > pair[1].price)
        );
        assert!(
            book.asks
                .windows(2)
                .all(|pair| pair[0].price < pair[1].price)
        );
        levels += book.bids.len() + book.asks.len();
    }
    println!(
        "{} snapshots ({levels} levels) equal the truth; {closed} closed markets skipped",
        snapshots.len()
    );

    // Nothing changed (rate 0): a second snapshot sends nothing, and takes ⌈tokens / 7⌉ requests.
    let before = truth(&sim, "/_sim/stats").await["endpoints"]["/clob/books"]["requests"]
        .as_u64()
        .unwrap();
    let tokens: Vec<String> = open_tokens.into_iter().collect();
    assert_eq!(collector.collect_books(&tokens).await.unwrap(), 0);
    let after = truth(&sim, "/_sim/stats").await["endpoints"]["/clob/books"]["requests"]
        .as_u64()
        .unwrap();
    assert_eq!(after - before, tokens.len().div_ceil(7) as u64);
    assert_eq!(records::<BookSnapshot>(&names).await.len(), snapshots.len());
    sim.shutdown().await;
}
