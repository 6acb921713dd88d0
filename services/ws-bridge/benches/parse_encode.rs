//! The bridge's per-event CPU path without sockets or Kafka: split a frame, parse each event,
//! encode the records (Confluent-framed Avro). Criterion reports time per frame of 100 events.

#![allow(clippy::unwrap_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use polytape_polymarket::market_channel::{MarketEvent, Stamp, parse_event, split_frame};
use polytape_ws_bridge::publish::{Encoders, Outgoing};

/// A frame as the simulator batches them: price changes (most), trades, books, quotes.
fn frame() -> String {
    let mut events = Vec::new();
    for index in 0..100_u32 {
        let event = match index % 10 {
            0 => format!(
                r#"{{"event_type":"book","asset_id":"7132104567925221259462638553270691275033272857194253228963137931245558399{index:04}","market":"0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1","bids":[{{"price":"0.44","size":"120.5"}},{{"price":".45","size":"100"}},{{"price":"0.46","size":"10"}}],"asks":[{{"price":"0.49","size":"900"}},{{"price":"0.48","size":"80"}},{{"price":"0.47","size":"150"}}],"timestamp":"1757908892351","hash":"32400f1a5df2379ab4e7b79bac275d9312494339","min_order_size":"5","tick_size":"0.01","neg_risk":false,"last_trade_price":"0.45"}}"#
            ),
            1 => format!(
                r#"{{"asset_id":"7132104567925221259462638553270691275033272857194253228963137931245558399{index:04}","event_type":"last_trade_price","fee_rate_bps":"0","market":"0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1","price":"0.456","side":"BUY","size":"219.217767","timestamp":"1750428146322","transaction_hash":"0x09a42928b2f7a7da67f4d020c99800d3f7665c3f9c7b011deeed8ae37e18ffed"}}"#
            ),
            2 => format!(
                r#"{{"event_type":"best_bid_ask","market":"0x0005c0d312de0be897668695bae9f32b624b4a1ae8b140c49f08447fcc74f442","asset_id":"853549560623704653159241168601253885385954338195745427520316405922374644{index:04}","best_bid":"0.73","best_ask":"0.77","spread":"0.04","timestamp":"1766789469958"}}"#
            ),
            _ => format!(
                r#"{{"market":"0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1","price_changes":[{{"asset_id":"7132104567925221259462638553270691275033272857194253228963137931245558399{index:04}","price":".5","size":"200","side":"BUY","hash":"56621a121a47ed9333273e21c83b660cff37ae50","best_bid":"0.5","best_ask":"1"}},{{"asset_id":"5211431950124591551605510604688420996992612748282795467444384642781381322{index:04}","price":"0.5","size":"200","side":"SELL","hash":"1895759e4df7a796bf4f1c5a5950b748306923e2","best_bid":"0","best_ask":"0.5"}}],"timestamp":"1757908892351","event_type":"price_change"}}"#
            ),
        };
        events.push(event);
    }
    format!("[{}]", events.join(","))
}

fn parse_and_encode(criterion: &mut Criterion) {
    let frame = frame();
    let encoders = Encoders::with_schema_id(1).unwrap();
    let mut group = criterion.benchmark_group("frame_of_100_events");
    group.throughput(Throughput::Elements(100));
    group.bench_function("parse_only", |bencher| {
        bencher.iter(|| {
            let mut count = 0;
            for (sequence, raw) in split_frame(&frame).unwrap().into_iter().enumerate() {
                let stamp = Stamp {
                    connection_id: "bench-s000-g1",
                    sequence: sequence as i64,
                    received_ms: 1_800_000_000_000,
                };
                if parse_event(raw, stamp).is_ok() {
                    count += 1;
                }
            }
            count
        });
    });
    group.bench_function("parse_and_encode", |bencher| {
        bencher.iter(|| {
            let mut bytes = 0;
            for (sequence, raw) in split_frame(&frame).unwrap().into_iter().enumerate() {
                let stamp = Stamp {
                    connection_id: "bench-s000-g1",
                    sequence: sequence as i64,
                    received_ms: 1_800_000_000_000,
                };
                let records = match parse_event(raw, stamp).unwrap() {
                    MarketEvent::Book(book) => vec![Outgoing::Book(book)],
                    MarketEvent::PriceChanges(changes) => {
                        changes.into_iter().map(Outgoing::Change).collect()
                    }
                    MarketEvent::LastTrade(trade) => vec![Outgoing::Trade(trade)],
                    MarketEvent::BestBidAsk(quote) => vec![Outgoing::Quote(quote)],
                    _ => Vec::new(),
                };
                for record in &records {
                    bytes += encoders.encode(record).unwrap().2.len();
                }
            }
            bytes
        });
    });
    group.finish();
}

criterion_group!(benches, parse_and_encode);
criterion_main!(benches);
