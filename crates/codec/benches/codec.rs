//! Encode + decode of one trade: our direct serde path against apache-avro's `Value` path
//! (to_value → resolve → write_value, read_value → from_value), measured side by side.
//! `cargo bench -p polytape-codec` prints both; `cargo xtask bench codec` reports the ratio.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use apache_avro::{
    Schema, from_value, reader::datum::GenericDatumReader, to_value, types::Value,
    writer::datum::GenericDatumWriter,
};
use criterion::{Criterion, criterion_group, criterion_main};
use polytape_codec::{DatumCodec, schemas};
use polytape_model::{Topic, Trade, samples};

/// What `Value::resolve` does for this schema (bytes to decimals, strings to enum symbols),
/// without its precision check: apache-avro insists that decimal bytes be padded to the
/// declared precision, which minimal two's-complement encodings (ours, Java's, fastavro's)
/// are not.
fn resolve_for_schema(value: Value, schema: &Schema) -> Value {
    match (value, schema) {
        (Value::Record(fields), Schema::Record(record)) => Value::Record(
            fields
                .into_iter()
                .zip(&record.fields)
                .map(|((name, value), field)| (name, resolve_for_schema(value, &field.schema)))
                .collect(),
        ),
        (Value::Bytes(bytes), Schema::Decimal(_)) => {
            Value::Decimal(apache_avro::Decimal::from(bytes))
        }
        (Value::String(symbol), Schema::Enum(enumeration)) => {
            let index = enumeration
                .symbols
                .iter()
                .position(|known| *known == symbol)
                .unwrap();
            Value::Enum(u32::try_from(index).unwrap(), symbol)
        }
        (Value::Union(index, inner), Schema::Union(union)) => {
            let branch = &union.variants()[usize::try_from(index).unwrap()];
            Value::Union(index, Box::new(resolve_for_schema(*inner, branch)))
        }
        (other, _) => other,
    }
}

fn encode_decode_trade(criterion: &mut Criterion) {
    let trade = samples::trade();
    let mut group = criterion.benchmark_group("trade_encode_decode");

    let codec = DatumCodec::<Trade>::new().unwrap();
    let mut buffer = Vec::with_capacity(512);
    group.bench_function("polytape_direct", |bencher| {
        bencher.iter(|| {
            buffer.clear();
            codec.encode_into(black_box(&trade), &mut buffer).unwrap();
            let decoded = codec.decode(black_box(&buffer), 0).unwrap();
            black_box(decoded)
        })
    });

    let encoded = codec.encode(&trade).unwrap();
    group.bench_function("polytape_encode_only", |bencher| {
        bencher.iter(|| {
            buffer.clear();
            codec.encode_into(black_box(&trade), &mut buffer).unwrap();
        })
    });
    group.bench_function("polytape_decode_only", |bencher| {
        bencher.iter(|| black_box(codec.decode(black_box(&encoded), 0).unwrap()))
    });

    // The Value path needs the binary form of our decimals, as our codec uses.
    apache_avro::util::set_serde_human_readable(false);
    let schema = schemas::schema(Topic::Trades);
    let writer = GenericDatumWriter::builder(schema)
        .human_readable(false)
        .build()
        .unwrap();
    let reader = GenericDatumReader::builder(schema)
        .human_readable(false)
        .build()
        .unwrap();
    let check = {
        let value = resolve_for_schema(to_value(&trade).unwrap(), schema);
        let bytes = writer.write_value_to_vec(value).unwrap();
        from_value::<Trade>(&reader.read_value(&mut bytes.as_slice()).unwrap()).unwrap()
    };
    assert_eq!(check, trade, "the Value path must decode the same trade");
    group.bench_function("apache_avro_value", |bencher| {
        bencher.iter(|| {
            let value = resolve_for_schema(to_value(black_box(&trade)).unwrap(), schema);
            let bytes = writer.write_value_to_vec(value).unwrap();
            let decoded =
                from_value::<Trade>(&reader.read_value(&mut bytes.as_slice()).unwrap()).unwrap();
            black_box(decoded)
        })
    });
    group.finish();
}

criterion_group!(benches, encode_decode_trade);
criterion_main!(benches);
