//! Against a stand-in market channel that accepts subscriptions and never sends data (the
//! simulator serves REST):
//! - tokens whose `book` dump never arrives get their book from REST `/book`; after the channel
//!   drops the connection once, the REST books equal the simulator's and close the declared gap;
//! - a channel that stops answering `PING` is reconnected after the PONG timeout, declared.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{SinkExt as _, StreamExt as _};
use polytape_model::{BookSnapshot, BookSource, ContinuityKind, Topic};
use support::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A market channel that never dumps; the first connection is dropped after `drop_after`;
/// `PING` is answered only when `answer_pings`.
async fn silent_channel(drop_after: Duration, answer_pings: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws/market", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let number = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let deadline = tokio::time::sleep(drop_after);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline, if number == 0 => return,
                        message = socket.next() => match message {
                            Some(Ok(Message::Text(text))) if answer_pings && text.as_str() == "PING" => {
                                if socket.send(Message::text("PONG")).await.is_err() {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                    }
                }
            });
        }
    });
    (url, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_dumps_are_fetched_from_rest_and_close_the_gap() {
    let (sim, _) = sim(50, 0.0, 500).await;
    let followed = take_tokens(&open_markets(&sim).await, 6);
    let tokens: Vec<String> = followed
        .iter()
        .flat_map(|(_, tokens)| tokens.clone())
        .collect();
    let names = topics("ws_rest").await;
    let markets: Vec<_> = followed
        .iter()
        .map(|(condition_id, tokens)| market_record(condition_id, tokens, false))
        .collect();
    publish_markets(&names, &markets).await;
    let (url, connections) = silent_channel(Duration::from_secs(5), true).await;
    let mut config = config(&sim, &names, 500, fast_tuning());
    config.upstream.clob_ws_url = url;
    // The stand-in sends no data at all: only the dump deadline matters here.
    config.tuning.staleness_min = Duration::from_secs(60);
    config.tuning.staleness_max = Duration::from_secs(60);
    let bridge = RunningBridge::start(&config).await;
    // Initial REST books, then (after the drop and reconnect) a second round.
    let count = i64::try_from(tokens.len() * 2).unwrap();
    wait_for_records(
        &names,
        &[Topic::BookSnapshots],
        count,
        Duration::from_secs(60),
    )
    .await;
    wait_until_quiet(&names, &[Topic::Continuity], Duration::from_millis(1500)).await;
    bridge.stop().await;
    assert!(connections.load(Ordering::SeqCst) >= 2, "no reconnect");

    let books = records::<BookSnapshot>(&names).await;
    for token in &tokens {
        let of_token: Vec<&BookSnapshot> = books
            .iter()
            .filter(|book| &book.token_id == token)
            .collect();
        assert!(of_token.len() >= 2, "{token}: {} books", of_token.len());
        let truth = truth_book(&sim, token).await.unwrap();
        for book in of_token {
            assert_eq!(book.source, BookSource::Rest);
            let levels = Levels {
                bids: book
                    .bids
                    .iter()
                    .map(|l| (l.price.normalize(), l.size.normalize()))
                    .collect(),
                asks: book
                    .asks
                    .iter()
                    .map(|l| (l.price.normalize(), l.size.normalize()))
                    .collect(),
            };
            assert_eq!(levels, truth, "{token}");
        }
    }
    let gaps = latest_gaps(continuity(&names).await);
    let disconnects: Vec<_> = gaps
        .iter()
        .filter(|gap| gap.kind == ContinuityKind::Disconnect && gap.reason != "bridge stopped")
        .collect();
    assert_eq!(disconnects.len(), 1, "{gaps:#?}");
    let gap = disconnects[0];
    assert!(
        gap.gap_end_ms.is_some(),
        "the REST books did not close the gap: {gap:?}"
    );
    let mut covered = gap.token_ids.clone();
    covered.sort();
    let mut expected = tokens.clone();
    expected.sort();
    assert_eq!(covered, expected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_without_pong_is_reconnected_and_declared() {
    let (sim, _) = sim(50, 0.0, 500).await;
    let followed = take_tokens(&open_markets(&sim).await, 4);
    let names = topics("ws_pong").await;
    let markets: Vec<_> = followed
        .iter()
        .map(|(condition_id, tokens)| market_record(condition_id, tokens, false))
        .collect();
    publish_markets(&names, &markets).await;
    // Never dropped, never answers PING.
    let (url, connections) = silent_channel(Duration::from_secs(3600), false).await;
    let mut config = config(&sim, &names, 500, fast_tuning());
    config.upstream.clob_ws_url = url;
    config.tuning.pong_timeout = Duration::from_secs(2);
    config.tuning.staleness_min = Duration::from_secs(60);
    config.tuning.staleness_max = Duration::from_secs(60);
    let bridge = RunningBridge::start(&config).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while connections.load(Ordering::SeqCst) < 2 {
        assert!(std::time::Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(bridge.is_running());
    bridge.stop().await;
    let gaps = latest_gaps(continuity(&names).await);
    assert!(
        gaps.iter()
            .any(|gap| gap.kind == ContinuityKind::Disconnect && gap.reason.contains("no PONG")),
        "{gaps:#?}"
    );
    sim.shutdown().await;
}
