//! `polytape-api export`: research datasets, one file per dataset, UTC day and format, laid
//! out `dataset=<name>/date=<YYYY-MM-DD>/<name>.<ext>` with a `_manifest.json` per day (rows,
//! time range, the day's declared gaps, and each file's size and SHA-256).
//!
//! ClickHouse writes the rows in the file format itself (see `polytape_clickhouse::datasets`);
//! the exporter streams them to disk, gzips the text formats, and hashes what it writes. A day
//! is counted before and after its rows are read: if the counts differ (the sink was still
//! writing that day), the day is read again, so a manifest always describes its files. Files
//! are written beside their final name and renamed into place, the manifest last: a day
//! directory with a manifest is complete. Re-exporting a day whose rows did not change writes
//! identical bytes.

use std::{
    fs,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use flate2::{Compression, write::GzEncoder};
use polytape_clickhouse::datasets::{Dataset, DatasetFormat, DayFilter};
use polytape_model::time::{MS_PER_DAY, utc_date_text};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Times a day is read again when its count moved while it was read.
const ATTEMPTS: u32 = 3;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{dataset} of {date} kept changing while it was read ({attempts} attempts); export it once the day is closed"
    )]
    DayChanged {
        dataset: Dataset,
        date: String,
        attempts: u32,
    },
    #[error(
        "{dataset} of {date}: {file} holds {file_rows} rows where ClickHouse counts {rows}; nothing was renamed into place"
    )]
    FileDisagrees {
        dataset: Dataset,
        date: String,
        file: String,
        file_rows: u64,
        rows: u64,
    },
}

/// One file of a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub file: String,
    pub format: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A gap declared for the day (`gap_end_ms` absent: still open when the day was exported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestGap {
    pub continuity_id: String,
    pub kind: String,
    pub token_ids: Vec<String>,
    pub gap_start_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_end_ms: Option<i64>,
    pub source: String,
    pub reason: String,
}

/// `_manifest.json` of one dataset and day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub dataset: String,
    pub date: String,
    /// The markets and tokens the rows are narrowed to (empty: all).
    pub markets: Vec<String>,
    pub tokens: Vec<String>,
    pub columns: Vec<String>,
    pub rows: u64,
    /// First and last row time (UTC ms) by the dataset's time column; absent without rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_time_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_time_ms: Option<i64>,
    /// Every gap declared that overlaps the day (of the filter's tokens when it names some):
    /// the rows of those tokens and times are incomplete.
    pub gaps: Vec<ManifestGap>,
    pub files: Vec<ManifestFile>,
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    pub datasets: Vec<Dataset>,
    pub formats: Vec<DatasetFormat>,
    /// UTC day numbers (days since 1970-01-01), both included.
    pub first_day: i64,
    pub last_day: i64,
    pub filter: DayFilter,
    pub out: PathBuf,
}

/// Exports every dataset and day of `plan`; returns the manifests written, in order.
pub async fn export(
    client: &clickhouse::Client,
    plan: &ExportPlan,
) -> Result<Vec<Manifest>, ExportError> {
    let mut manifests = Vec::new();
    for day in plan.first_day..=plan.last_day {
        for dataset in &plan.datasets {
            let manifest = export_day(
                client,
                *dataset,
                &plan.formats,
                day,
                &plan.filter,
                &plan.out,
            )
            .await?;
            tracing::info!(
                dataset = %dataset,
                date = %manifest.date,
                rows = manifest.rows,
                files = manifest.files.len(),
                gaps = manifest.gaps.len(),
                "dataset day exported"
            );
            manifests.push(manifest);
        }
    }
    Ok(manifests)
}

/// The directory of one dataset and day under `out`.
pub fn day_directory(out: &Path, dataset: Dataset, day: i64) -> PathBuf {
    out.join(format!("dataset={}", dataset.name()))
        .join(format!("date={}", utc_date_text(day)))
}

/// Exports one dataset and day in every format of `formats`, then its manifest. Files of
/// the dataset's other formats left in the day's directory by an earlier run are removed, so
/// the directory holds what its manifest lists.
pub async fn export_day(
    client: &clickhouse::Client,
    dataset: Dataset,
    formats: &[DatasetFormat],
    day: i64,
    filter: &DayFilter,
    out: &Path,
) -> Result<Manifest, ExportError> {
    let directory = day_directory(out, dataset, day);
    let exported = export_day_files(client, dataset, formats, day, filter, &directory).await;
    if exported.is_err() {
        // Nothing half-written stays behind (a finished file was already renamed).
        for format in DatasetFormat::ALL {
            fs::remove_file(directory.join(partial_name(&file_name(dataset, format)))).ok();
        }
        fs::remove_file(directory.join(partial_name(MANIFEST))).ok();
    }
    exported
}

async fn export_day_files(
    client: &clickhouse::Client,
    dataset: Dataset,
    formats: &[DatasetFormat],
    day: i64,
    filter: &DayFilter,
    directory: &Path,
) -> Result<Manifest, ExportError> {
    let date = utc_date_text(day);
    let start_ms = day.saturating_mul(MS_PER_DAY);
    let end_ms = start_ms.saturating_add(MS_PER_DAY);
    fs::create_dir_all(directory).map_err(|source| ExportError::Write {
        path: directory.to_owned(),
        source,
    })?;
    let summary = |client: &clickhouse::Client| {
        dataset
            .bind_day(
                client.query(&dataset.summary_query(filter)),
                start_ms,
                end_ms,
                filter,
            )
            .fetch_one::<(u64, i64, i64, u64)>()
    };
    let mut attempt = 0;
    let ((rows, min_ms, max_ms, _), files) = loop {
        attempt += 1;
        let before = summary(client).await?;
        let mut files = Vec::new();
        for format in formats {
            files.push(
                write_file(
                    client, dataset, *format, start_ms, end_ms, filter, directory,
                )
                .await?,
            );
        }
        let after = summary(client).await?;
        if before == after {
            break (before, files);
        }
        if attempt >= ATTEMPTS {
            return Err(ExportError::DayChanged {
                dataset,
                date,
                attempts: attempt,
            });
        }
        tracing::warn!(dataset = %dataset, date = %date, attempt, "the day changed while it was read; reading it again");
    };
    // NDJSON says how many rows it holds: they must be the day's.
    if let Some((file, file_rows)) = files.iter().find_map(|(_, file, text_rows)| {
        text_rows
            .filter(|text_rows| *text_rows != rows)
            .map(|text_rows| (file.file.clone(), text_rows))
    }) {
        return Err(ExportError::FileDisagrees {
            dataset,
            date,
            file,
            file_rows,
            rows,
        });
    }
    let gaps = day_gaps(client, start_ms, end_ms, filter).await?;
    // The old manifest goes first: while files are swapped the day reads as incomplete.
    remove_if_present(&directory.join(MANIFEST))?;
    let mut written = Vec::new();
    for (partial, file, _) in files {
        let target = directory.join(&file.file);
        fs::rename(&partial, &target).map_err(|source| ExportError::Write {
            path: target,
            source,
        })?;
        written.push(file);
    }
    for format in DatasetFormat::ALL {
        if !formats.contains(&format) {
            remove_if_present(&directory.join(file_name(dataset, format)))?;
        }
    }
    let manifest = Manifest {
        dataset: dataset.name().to_owned(),
        date,
        markets: filter.markets.clone(),
        tokens: filter.tokens.clone(),
        columns: dataset
            .columns()
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect(),
        rows,
        min_time_ms: (rows > 0).then_some(min_ms),
        max_time_ms: (rows > 0).then_some(max_ms),
        gaps,
        files: written,
    };
    write_manifest(directory, &manifest)?;
    Ok(manifest)
}

/// The manifest's name: readers of a dataset directory skip names starting with `_`.
const MANIFEST: &str = "_manifest.json";

fn file_name(dataset: Dataset, format: DatasetFormat) -> String {
    format!("{}.{}", dataset.name(), format.extension())
}

/// Where a file is written before it is renamed into place (hidden from readers).
fn partial_name(file_name: &str) -> String {
    format!(".{file_name}.partial")
}

fn remove_if_present(path: &Path) -> Result<(), ExportError> {
    match fs::remove_file(path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => Err(ExportError::Write {
            path: path.to_owned(),
            source,
        }),
        _ => Ok(()),
    }
}

/// Streams one format of a day into a partial file beside its final name; returns that
/// partial path, the file's manifest entry and, for NDJSON, the rows it holds.
async fn write_file(
    client: &clickhouse::Client,
    dataset: Dataset,
    format: DatasetFormat,
    start_ms: i64,
    end_ms: i64,
    filter: &DayFilter,
    directory: &Path,
) -> Result<(PathBuf, ManifestFile, Option<u64>), ExportError> {
    let file_name = file_name(dataset, format);
    let partial = directory.join(partial_name(&file_name));
    let write_error = |source: io::Error| ExportError::Write {
        path: partial.clone(),
        source,
    };
    let file = fs::File::create(&partial).map_err(write_error)?;
    let hashed = HashingWriter::new(BufWriter::new(file));
    let mut sink = if format.gzipped() {
        Sink::Gzip(GzEncoder::new(hashed, Compression::default()))
    } else {
        Sink::Plain(hashed)
    };
    let mut query = dataset.bind_day(
        client.query(&dataset.rows_query(filter)),
        start_ms,
        end_ms,
        filter,
    );
    for (name, value) in format.settings() {
        query = query.with_setting(*name, *value);
    }
    let mut cursor = query.fetch_bytes(format.clickhouse_format())?;
    let mut lines: u64 = 0;
    while let Some(chunk) = cursor.next().await? {
        lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
        sink.write_all(&chunk).map_err(write_error)?;
    }
    let hashed = sink.finish().map_err(write_error)?;
    let (bytes, sha256, buffered) = hashed.finish();
    // On disk before it is renamed into place.
    buffered
        .into_inner()
        .map_err(io::IntoInnerError::into_error)
        .and_then(|file| file.sync_all())
        .map_err(write_error)?;
    // NDJSON is one row per line (JSON escapes line breaks inside strings); a CSV field may
    // hold a line break, so CSV lines are not rows.
    let text_rows = match format {
        DatasetFormat::Ndjson => Some(lines),
        DatasetFormat::Csv | DatasetFormat::Parquet => None,
    };
    Ok((
        partial,
        ManifestFile {
            file: file_name,
            format: format.name().to_owned(),
            bytes,
            sha256,
        },
        text_rows,
    ))
}

/// The gaps declared for a day, narrowed like the dataset (a market's gaps are its tokens').
async fn day_gaps(
    client: &clickhouse::Client,
    start_ms: i64,
    end_ms: i64,
    filter: &DayFilter,
) -> Result<Vec<ManifestGap>, ExportError> {
    #[derive(Deserialize, clickhouse::Row)]
    struct GapRow {
        continuity_id: String,
        kind_name: String,
        token_ids: Vec<String>,
        gap_start_ms: i64,
        /// -1: open.
        gap_end_ms: i64,
        source_name: String,
        reason: String,
    }
    let rows = Dataset::Continuity
        .bind_day(
            client.query(&Dataset::gaps_query(filter)),
            start_ms,
            end_ms,
            filter,
        )
        .fetch_all::<GapRow>()
        .await?;
    Ok(rows
        .into_iter()
        .map(|gap| ManifestGap {
            continuity_id: gap.continuity_id,
            kind: gap.kind_name,
            token_ids: gap.token_ids,
            gap_start_ms: gap.gap_start_ms,
            gap_end_ms: (gap.gap_end_ms >= 0).then_some(gap.gap_end_ms),
            source: gap.source_name,
            reason: gap.reason,
        })
        .collect())
}

fn write_manifest(directory: &Path, manifest: &Manifest) -> Result<(), ExportError> {
    let target = directory.join(MANIFEST);
    let partial = directory.join(partial_name(MANIFEST));
    let write_error = |path: &Path, source: io::Error| ExportError::Write {
        path: path.to_owned(),
        source,
    };
    let mut text = serde_json::to_vec_pretty(manifest)
        .map_err(|error| write_error(&partial, io::Error::other(error)))?;
    text.push(b'\n');
    fs::File::create(&partial)
        .and_then(|mut file| {
            file.write_all(&text)?;
            file.sync_all()
        })
        .map_err(|source| write_error(&partial, source))?;
    fs::rename(&partial, &target).map_err(|source| write_error(&target, source))
}

/// A file writer that counts and hashes the bytes it writes.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The byte count, the hex SHA-256 and the writer.
    fn finish(self) -> (u64, String, W) {
        (self.bytes, hex::encode(self.hasher.finalize()), self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buffer)?;
        let accepted = buffer.get(..written).unwrap_or(buffer);
        self.hasher.update(accepted);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Where a file's bytes go: straight to disk, or through gzip first (a fixed header: no name,
/// no time, so equal rows give equal files).
enum Sink<W: Write> {
    Plain(HashingWriter<W>),
    Gzip(GzEncoder<HashingWriter<W>>),
}

impl<W: Write> Sink<W> {
    fn write_all(&mut self, buffer: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(writer) => writer.write_all(buffer),
            Sink::Gzip(writer) => writer.write_all(buffer),
        }
    }

    fn finish(self) -> io::Result<HashingWriter<W>> {
        match self {
            Sink::Plain(writer) => Ok(writer),
            Sink::Gzip(writer) => writer.finish(),
        }
    }
}
