#![allow(clippy::unwrap_used)]
//! Research datasets against the stack: a day of trades, candles and gaps (with rows on both
//! sides of the day's bounds, a fill stored twice, decimals at the ends of their scales) is
//! exported in every format, and independent readers (pyarrow and DuckDB for Parquet, Python's
//! csv module for CSV, its json module for NDJSON) must read exactly what ClickHouse holds,
//! row by row and value by value; the manifest must describe its files; and exporting the day
//! again after ClickHouse merged its parts must write identical bytes.

mod common;

use std::{collections::BTreeMap, path::Path, process::Command};

use common::{condition_id, dec, load, migrated_database};
use polytape_api::export::{ExportPlan, Manifest, day_directory, export};
use polytape_clickhouse::{
    datasets::{Dataset, DatasetFormat, DayFilter},
    rows::{CandleRow, ContinuityRow, MarketRow, TradeRow},
};
use polytape_model::{
    Candle, Continuity, ContinuityKind, MarketToken, Trade, samples, time::MS_PER_DAY,
};
use sha2::{Digest as _, Sha256};

const SECOND: i64 = 1_000;

/// How each exported column is compared (see tools/local-stack/read_dataset.py).
fn kinds(dataset: Dataset) -> BTreeMap<&'static str, &'static str> {
    let kind_of = |column: &str| match column {
        "price" | "size" | "open" | "high" | "low" | "close" | "volume" | "notional" | "vwap" => {
            "decimal"
        }
        "timestamp" | "open_time" | "close_time" | "first_trade_time" | "last_trade_time"
        | "gap_start" | "gap_end" | "detected_at" => "time",
        "outcome_index" | "trade_count" | "revision" => "int",
        "is_final" => "bool",
        "token_ids" => "array",
        _ => "text",
    };
    dataset
        .columns()
        .iter()
        .map(|(column, _)| (*column, kind_of(column)))
        .collect()
}

/// The day's rows as ClickHouse holds them, canonical as the reader script writes them.
async fn clickhouse_rows(
    client: &clickhouse::Client,
    dataset: Dataset,
    day: i64,
) -> Vec<Vec<String>> {
    let kinds = kinds(dataset);
    let expressions: Vec<String> = dataset
        .columns()
        .iter()
        .map(|(column, _)| match kinds[column] {
            "time" => format!("ifNull(toString(toUnixTimestamp64Milli({column})), '\\\\N')"),
            "bool" => format!("if({column}, 'true', 'false')"),
            "array" => format!("toJSONString({column})"),
            _ => format!("ifNull(toString({column}), '\\\\N')"),
        })
        .collect();
    let filter = DayFilter::default();
    let sql = format!(
        "SELECT arrayStringConcat([{}], '\\t') FROM ({})",
        expressions.join(", "),
        dataset.rows_query(&filter)
    );
    let lines = dataset
        .bind_day(
            client.query(&sql),
            day * MS_PER_DAY,
            (day + 1) * MS_PER_DAY,
            &filter,
        )
        .fetch_all::<String>()
        .await
        .unwrap();
    lines
        .iter()
        .map(|line| {
            line.split('\t')
                .zip(dataset.columns())
                .map(|(value, (column, _))| {
                    if kinds[column] == "decimal" {
                        // The exact value without trailing zeros, as the readers print it.
                        dec(value).normalize().to_string()
                    } else {
                        value.to_owned()
                    }
                })
                .collect()
        })
        .collect()
}

/// What an independent reader reads from `file`.
fn read_with(reader: &str, file: &Path, dataset: Dataset) -> serde_json::Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/local-stack/read_dataset.py");
    let output = Command::new(polytape_test_support::stack::endpoints().python)
        .arg(script)
        .arg(reader)
        .arg(file)
        .arg(serde_json::to_string(&kinds(dataset)).unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{reader} on {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn trade(index: u64, at_ms: i64, price: &str, size: &str) -> Trade {
    let mut trade = samples::trade();
    trade.trade_id = format!("trade-{index:04}");
    trade.condition_id = condition_id(index % 3);
    trade.token_id = format!("{}", 1_000 + index % 5);
    trade.timestamp_ms = at_ms;
    trade.price = dec(price);
    trade.size = dec(size);
    trade.ingested_ms = at_ms + 5 * SECOND;
    if index.is_multiple_of(4) {
        trade.outcome = None;
        trade.outcome_index = None;
    }
    trade
}

fn gap(id: &str, start_ms: i64, end_ms: Option<i64>) -> Continuity {
    Continuity {
        continuity_id: id.to_owned(),
        kind: ContinuityKind::Disconnect,
        token_ids: vec!["1000".to_owned(), "1001".to_owned()],
        gap_start_ms: start_ms,
        gap_end_ms: end_ms,
        detected_ms: start_ms + 10,
        ..samples::continuity()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_readers_read_what_clickhouse_holds_and_a_day_exports_to_the_same_bytes() {
    let database = migrated_database("export").await;
    let client = &database.client;
    let day = polytape_model::time::utc_day(polytape_model::now_ms()) - 3;
    let start = day * MS_PER_DAY;
    let end = start + MS_PER_DAY;

    // Trades: the day's first and last millisecond, decimals at the ends of their scale, and
    // one fill on each side of the day (not in it).
    let prices = ["0.000001", "0.999999", "0.5", "0.123456", "0.01"];
    let sizes = ["1", "123456.789012", "0.000001", "42.1", "999999999.999999"];
    let mut trades: Vec<Trade> = (0..40u64)
        .map(|index| {
            let at_ms = start + i64::try_from(index).unwrap() * 2_137 * SECOND;
            let slot = usize::try_from(index).unwrap() % prices.len();
            trade(index, at_ms, prices[slot], sizes[slot])
        })
        .collect();
    trades.push(trade(100, start, "0.42", "7"));
    trades.push(trade(101, end - 1, "0.43", "8"));
    trades.push(trade(102, end, "0.44", "9"));
    trades.push(trade(103, start - 1, "0.45", "10"));
    load::<_, TradeRow>(client, "trades", trades.clone()).await;
    // The same fill stored again later (a redelivery): one row after FINAL.
    let mut again = trades[5].clone();
    again.ingested_ms += 60 * SECOND;
    load::<_, TradeRow>(client, "trades", vec![again]).await;

    let candles: Vec<Candle> = (0..6i64)
        .map(|index| Candle {
            token_id: format!("{}", 1_000 + index),
            open_time_ms: start + index * 3_600 * SECOND,
            close_time_ms: start + (index + 1) * 3_600 * SECOND,
            interval: "1h".to_owned(),
            volume: dec("12345678901234567890.123456"),
            notional: dec("1234567890.123456789012"),
            vwap: dec("0.586976634813"),
            first_trade_ms: start + index * 3_600 * SECOND + 1,
            last_trade_ms: start + (index + 1) * 3_600 * SECOND - 1,
            ..samples::candle()
        })
        .chain(std::iter::once(Candle {
            open_time_ms: end,
            close_time_ms: end + 60 * SECOND,
            ..samples::candle()
        }))
        .collect();
    load::<_, CandleRow>(client, "candles", candles).await;

    // Gaps: open since the day before (in), closed within the day (in), ended the day before
    // (out), starting the day after (out).
    // One reason holds what CSV must quote: a comma, a double quote and a line break.
    let mut within = gap(
        "within",
        start + 7_200 * SECOND,
        Some(start + 7_260 * SECOND),
    );
    within.reason = "server said \"bye\",\nthen closed".to_owned();
    let gaps = vec![
        gap("open-since-yesterday", start - 3_600 * SECOND, None),
        within,
        gap("ended-before", start - 7_200 * SECOND, Some(start - 1)),
        gap("after", end, Some(end + SECOND)),
    ];
    load::<_, ContinuityRow>(client, "continuity", gaps).await;

    let out = tempfile::tempdir().unwrap();
    let plan = ExportPlan {
        datasets: Dataset::ALL.to_vec(),
        formats: DatasetFormat::ALL.to_vec(),
        first_day: day,
        last_day: day,
        filter: DayFilter::default(),
        out: out.path().to_owned(),
    };
    let manifests = export(client, &plan).await.unwrap();
    assert_eq!(manifests.len(), 3);

    let mut expected_rows = BTreeMap::new();
    expected_rows.insert(Dataset::Trades, 42);
    expected_rows.insert(Dataset::Candles, 6);
    expected_rows.insert(Dataset::Continuity, 2);
    for (dataset, manifest) in Dataset::ALL.into_iter().zip(&manifests) {
        let truth = clickhouse_rows(client, dataset, day).await;
        assert_eq!(
            truth.len(),
            expected_rows[&dataset],
            "{dataset} in ClickHouse"
        );
        assert_eq!(manifest.rows, truth.len() as u64, "{dataset} manifest rows");
        // The day's gaps, whatever the dataset.
        let gap_ids: Vec<&str> = manifest
            .gaps
            .iter()
            .map(|gap| gap.continuity_id.as_str())
            .collect();
        assert_eq!(gap_ids, ["open-since-yesterday", "within"], "{dataset}");
        assert_eq!(manifest.gaps[0].gap_end_ms, None);

        let directory = day_directory(out.path(), dataset, day);
        let written: Manifest =
            serde_json::from_slice(&std::fs::read(directory.join("_manifest.json")).unwrap())
                .unwrap();
        assert_eq!(&written, manifest);
        for file in &manifest.files {
            let bytes = std::fs::read(directory.join(&file.file)).unwrap();
            assert_eq!(bytes.len() as u64, file.bytes, "{}", file.file);
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                file.sha256,
                "{}",
                file.file
            );
            let readers: &[&str] = match file.format.as_str() {
                "parquet" => &["pyarrow", "duckdb"],
                "csv" => &["csv"],
                _ => &["ndjson"],
            };
            for reader in readers {
                let read = read_with(reader, &directory.join(&file.file), dataset);
                let columns: Vec<&str> = read["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|column| column.as_str().unwrap())
                    .collect();
                let wanted: Vec<&str> = dataset.columns().iter().map(|(name, _)| *name).collect();
                assert_eq!(columns, wanted, "{reader} on {}", file.file);
                let rows: Vec<Vec<String>> = serde_json::from_value(read["rows"].clone()).unwrap();
                assert_eq!(rows, truth, "{reader} on {}", file.file);
                // Parquet keeps decimals as decimals and times as UTC millisecond timestamps.
                if *reader == "pyarrow" {
                    for (column, kind) in kinds(dataset) {
                        let physical = read["types"][column].as_str().unwrap();
                        match kind {
                            "decimal" => {
                                assert!(physical.starts_with("decimal128("), "{column}: {physical}")
                            }
                            "time" => assert_eq!(physical, "timestamp[ms, tz=UTC]", "{column}"),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    let trades_manifest = &manifests[0];
    assert_eq!(trades_manifest.min_time_ms, Some(start));
    assert_eq!(trades_manifest.max_time_ms, Some(end - 1));

    // Merged parts and the duplicate gone: the same rows, so the same bytes.
    for table in ["trades", "candles", "continuity"] {
        client
            .query(&format!("OPTIMIZE TABLE {table} FINAL"))
            .execute()
            .await
            .unwrap();
    }
    let again = export(client, &plan).await.unwrap();
    assert_eq!(again, manifests);

    // A day without rows: empty files that every reader still opens, no time range.
    let empty_day = day - 10;
    let empty = ExportPlan {
        datasets: vec![Dataset::Trades],
        first_day: empty_day,
        last_day: empty_day,
        out: out.path().join("empty"),
        ..plan.clone()
    };
    let empty_manifest = export(client, &empty).await.unwrap().remove(0);
    assert_eq!(
        (
            empty_manifest.rows,
            empty_manifest.min_time_ms,
            empty_manifest.max_time_ms
        ),
        (0, None, None)
    );
    let directory = day_directory(&empty.out, Dataset::Trades, empty_day);
    for (reader, file) in [
        ("pyarrow", "trades.parquet"),
        ("duckdb", "trades.parquet"),
        ("csv", "trades.csv.gz"),
        ("ndjson", "trades.ndjson.gz"),
    ] {
        let read = read_with(reader, &directory.join(file), Dataset::Trades);
        assert_eq!(read["rows"], serde_json::json!([]), "{reader} on {file}");
    }

    // Narrowed to one market: only its trades, and the filter is in the manifest.
    let market = condition_id(1);
    let narrowed = ExportPlan {
        datasets: vec![Dataset::Trades],
        formats: vec![DatasetFormat::Ndjson],
        filter: DayFilter {
            markets: vec![market.clone()],
            tokens: Vec::new(),
        },
        out: out.path().join("narrowed"),
        ..plan.clone()
    };
    let narrowed_manifest = export(client, &narrowed).await.unwrap().remove(0);
    let file = day_directory(&narrowed.out, Dataset::Trades, day).join("trades.ndjson.gz");
    let read = read_with("ndjson", &file, Dataset::Trades);
    let rows: Vec<Vec<String>> = serde_json::from_value(read["rows"].clone()).unwrap();
    let expected: Vec<Vec<String>> = clickhouse_rows(client, Dataset::Trades, day)
        .await
        .into_iter()
        .filter(|row| row[1] == market)
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(rows, expected);
    assert_eq!(narrowed_manifest.rows, expected.len() as u64);
    assert_eq!(narrowed_manifest.markets, vec![market.clone()]);

    // A market and a token together: the rows that are of both.
    let both = ExportPlan {
        filter: DayFilter {
            markets: vec![market.clone()],
            tokens: vec!["1001".to_owned()],
        },
        out: out.path().join("both"),
        ..narrowed.clone()
    };
    export(client, &both).await.unwrap();
    let file = day_directory(&both.out, Dataset::Trades, day).join("trades.ndjson.gz");
    let read = read_with("ndjson", &file, Dataset::Trades);
    let rows: Vec<Vec<String>> = serde_json::from_value(read["rows"].clone()).unwrap();
    let expected: Vec<Vec<String>> = expected
        .into_iter()
        .filter(|row| row[2] == "1001")
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(rows, expected);

    // A market's gaps are its tokens': one market lists a gapped token, the other does not.
    let with_tokens = |index: u64, tokens: &[&str]| {
        let mut market = samples::market();
        market.condition_id = condition_id(index);
        market.tokens = tokens
            .iter()
            .enumerate()
            .map(|(position, token)| MarketToken {
                token_id: (*token).to_owned(),
                outcome: format!("outcome {position}"),
                outcome_index: i32::try_from(position).unwrap(),
                winner: None,
            })
            .collect();
        market
    };
    load::<_, MarketRow>(
        client,
        "markets",
        vec![
            with_tokens(7, &["1001", "1009"]),
            with_tokens(8, &["2000", "2001"]),
        ],
    )
    .await;
    for (index, expected_gaps) in [(7, vec!["open-since-yesterday", "within"]), (8, vec![])] {
        let plan = ExportPlan {
            datasets: vec![Dataset::Continuity, Dataset::Trades],
            formats: vec![DatasetFormat::Csv],
            filter: DayFilter {
                markets: vec![condition_id(index)],
                tokens: Vec::new(),
            },
            out: out.path().join(format!("market-{index}")),
            ..plan.clone()
        };
        let manifests = export(client, &plan).await.unwrap();
        let file = day_directory(&plan.out, Dataset::Continuity, day).join("continuity.csv.gz");
        let read = read_with("csv", &file, Dataset::Continuity);
        let ids: Vec<String> = read["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[0].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, expected_gaps, "continuity of market {index}");
        for manifest in &manifests {
            let gap_ids: Vec<&str> = manifest
                .gaps
                .iter()
                .map(|gap| gap.continuity_id.as_str())
                .collect();
            assert_eq!(
                gap_ids, expected_gaps,
                "{} of market {index}",
                manifest.dataset
            );
        }
    }

    // Exported again in one format: the other formats' files go, the manifest lists what is there.
    let parquet_only = ExportPlan {
        formats: vec![DatasetFormat::Parquet],
        ..plan.clone()
    };
    let manifests = export(client, &parquet_only).await.unwrap();
    for manifest in &manifests {
        let dataset = Dataset::from_name(&manifest.dataset).unwrap();
        let directory = day_directory(out.path(), dataset, day);
        let mut present: Vec<String> = std::fs::read_dir(&directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        present.sort();
        assert_eq!(
            present,
            vec!["_manifest.json".to_owned(), format!("{dataset}.parquet")],
            "{dataset}"
        );
        assert_eq!(manifest.files.len(), 1);
    }

    database.drop_database().await;
}
