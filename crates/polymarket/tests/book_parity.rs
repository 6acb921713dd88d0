//! One upstream book is one `BookSnapshot`, byte for byte, whoever reads it: the collector
//! (an element of `POST /books`, read as a JSON value), the ws-bridge's REST fallback and the
//! candle builder's resync (a `GET /book` body, read as text), and the ws-bridge's stream (the
//! same object as a `book` event). Each variant below is a shape upstream may send; the
//! records are compared as Avro bytes, after giving the stream's record the REST provenance
//! (source, connection, sequence: where it was read, not what it says).

#![allow(clippy::unwrap_used)]

use polytape_codec::DatumCodec;
use polytape_model::{BookSnapshot, BookSource};
use polytape_polymarket::{
    book::rest_book,
    market_channel::{MarketEvent, Stamp, parse_event},
    rest::book_snapshot,
};
use serde_json::{Value, json};

const RECEIVED_MS: i64 = 1_767_225_600_123;

fn brief_book() -> Value {
    json!({
        "market": "0x747dc809fb79e1b05be09c42d6179459a58de2ef3e40f02484a4e1260f741f75",
        "asset_id": "107505882767731489358349912513945399560393482969656700824895970500493757150417",
        "timestamp": "1759420800123",
        "hash": "32400f1a5df2379ab4e7b79bac275d9312494339",
        "bids": [{"price": "0.01", "size": "2500"}, {"price": "0.44", "size": "120.5"}, {"price": "0.45", "size": "100"}],
        "asks": [{"price": "0.99", "size": "900"}, {"price": "0.47", "size": "80"}, {"price": ".46", "size": "150"}],
        "min_order_size": "5",
        "tick_size": "0.01",
        "neg_risk": false,
        "last_trade_price": "0.45"
    })
}

/// Shapes upstream sends or may send, each a book every reader must accept.
fn variants() -> Vec<(&'static str, Value)> {
    let mut variants = vec![("the brief's example", brief_book())];
    let mut numbers = brief_book();
    numbers["bids"] = json!([{"price": 0.44, "size": 120.5}, {"price": 0.45, "size": 100}]);
    numbers["timestamp"] = json!(1_759_420_800_123_i64);
    numbers["neg_risk"] = json!("true");
    variants.push(("numbers as numbers", numbers));
    let mut sparse = brief_book();
    for key in [
        "hash",
        "min_order_size",
        "tick_size",
        "neg_risk",
        "last_trade_price",
    ] {
        sparse.as_object_mut().unwrap().remove(key);
    }
    sparse["asks"] = json!([]);
    variants.push(("optional fields missing, an empty side", sparse));
    let mut odd = brief_book();
    odd["market"] = json!("0x747DC809FB79E1B05BE09C42D6179459A58DE2EF3E40F02484A4E1260F741F75");
    odd["timestamp"] = json!("1759420800");
    odd["tick_size"] = json!("");
    odd["future_field"] = json!({"nested": [1, 2]});
    variants.push((
        "upper-case market, seconds, an empty statistic, a new field",
        odd,
    ));
    variants
}

fn bytes(codec: &DatumCodec<BookSnapshot>, book: &BookSnapshot) -> Vec<u8> {
    codec.encode(book).unwrap()
}

#[test]
fn the_collector_the_rest_fallback_and_the_stream_make_identical_records() {
    let codec = DatumCodec::<BookSnapshot>::new().unwrap();
    for (name, book) in variants() {
        let body = book.to_string();
        // The collector: an element of a parsed `POST /books` answer.
        let collector = book_snapshot(&book, RECEIVED_MS).unwrap();
        // The ws-bridge's REST fallback and the candle builder: a `GET /book` body.
        let rest = rest_book(&body, RECEIVED_MS).unwrap();
        // The ws-bridge's stream: the same object as a `book` event.
        let mut event = book.clone();
        event["event_type"] = json!("book");
        let stamp = Stamp {
            connection_id: "c-1",
            sequence: 9,
            received_ms: RECEIVED_MS,
        };
        let MarketEvent::Book(mut stream) = parse_event(&event.to_string(), stamp).unwrap() else {
            panic!("{name}: not a book")
        };
        assert_eq!(stream.source, BookSource::Ws, "{name}");
        assert_eq!(stream.connection_id.as_deref(), Some("c-1"), "{name}");
        assert_eq!(stream.sequence, Some(9), "{name}");
        stream.source = BookSource::Rest;
        stream.connection_id = None;
        stream.sequence = None;

        let expected = bytes(&codec, &collector);
        assert_eq!(bytes(&codec, &rest), expected, "{name}: GET /book differs");
        assert_eq!(
            bytes(&codec, &stream),
            expected,
            "{name}: the book event differs"
        );
        assert!(
            !collector.bids.is_empty(),
            "{name}: the test must read levels"
        );
        assert_eq!(collector.received_ms, RECEIVED_MS);
    }
}

#[test]
fn every_reader_refuses_the_same_books() {
    let refused = [
        ("no asset_id", {
            let mut book = brief_book();
            book.as_object_mut().unwrap().remove("asset_id");
            book
        }),
        ("a side missing", {
            let mut book = brief_book();
            book.as_object_mut().unwrap().remove("bids");
            book
        }),
        ("seven decimals", {
            let mut book = brief_book();
            book["asks"] = json!([{"price": "0.4612345", "size": "1"}]);
            book
        }),
        ("a price above 1", {
            let mut book = brief_book();
            book["bids"] = json!([{"price": "1.5", "size": "1"}]);
            book
        }),
        ("a side that is not a list", {
            let mut book = brief_book();
            book["asks"] = json!("[]");
            book
        }),
    ];
    for (name, book) in refused {
        let collector = book_snapshot(&book, RECEIVED_MS).unwrap_err();
        let rest = rest_book(&book.to_string(), RECEIVED_MS).unwrap_err();
        assert_eq!(collector, rest, "{name}");
        let mut event = book.clone();
        event["event_type"] = json!("book");
        let stamp = Stamp {
            connection_id: "c-1",
            sequence: 1,
            received_ms: RECEIVED_MS,
        };
        assert!(parse_event(&event.to_string(), stamp).is_err(), "{name}");
    }
}
