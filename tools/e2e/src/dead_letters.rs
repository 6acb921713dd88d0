//! The dead-letter check: `dead_letters` holds exactly the bad input the simulator injected —
//! each fill it serves poisoned (see the simulator's `poison` fault) and each WebSocket garbage
//! frame it sent (`ws_garbage`, each numbered), once — and nothing else. Everything else a run
//! injects (5xx, timeouts, malformed pages, drift) is transient or tolerated: it must be
//! retried or absorbed, never dead-lettered.

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::Deserialize;

use crate::Pipeline;

#[derive(Debug, Row, Deserialize)]
struct StoredLetter {
    dead_letter_id: String,
    source: String,
    origin: String,
    error: String,
    payload: String,
}

/// A trades row's identity without its price (the field a poisoned row has broken): the
/// transaction, token, wallet, side, second and size. Identical fills of one transaction share
/// it, and are one bad input (one payload, one dead letter).
fn row_key(row: &serde_json::Value) -> Option<String> {
    let text = |key: &str| row.get(key).and_then(serde_json::Value::as_str);
    let size = match row.get("size")? {
        serde_json::Value::Number(number) => number.as_f64()?,
        serde_json::Value::String(text) => text.parse::<f64>().ok()?,
        _ => return None,
    };
    Some(format!(
        "{}|{}|{}|{}|{}|{size:.6}",
        text("transactionHash")?,
        text("asset")?,
        text("proxyWallet")?,
        text("side")?,
        row.get("timestamp")?.as_i64()?,
    ))
}

/// Every dead letter after FINAL is one poisoned row of the truth or one garbage frame the
/// simulator sent, each of those has exactly one dead letter, and there is no other.
pub async fn check_dead_letters(pipeline: &Pipeline) -> Result<String, String> {
    let mut garbage: BTreeMap<String, u64> =
        pipeline.truth("/_sim/stats").await["ws"]["garbage_frames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .map(|text| (text.to_owned(), 0))
            .collect();
    let mut poisoned: BTreeMap<String, u64> = BTreeMap::new();
    pipeline
        .for_each_truth_fill(|fill| {
            if fill["poisoned"].as_bool() == Some(true)
                && let Some(key) = row_key(fill)
            {
                poisoned.insert(key, 0);
            }
        })
        .await;
    let letters: Vec<StoredLetter> = pipeline
        .database
        .client
        .query(
            "SELECT dead_letter_id, source, origin, error, toValidUTF8(base64Decode(payload_base64)) AS payload \
             FROM dead_letters FINAL",
        )
        .fetch_all()
        .await
        .map_err(|error| format!("query dead_letters: {error}"))?;
    let mut unexpected = Vec::new();
    for letter in &letters {
        if letter.source == "ws-bridge"
            && letter.error.starts_with("garbage_frame")
            && let Some(copies) = garbage.get_mut(&letter.payload)
        {
            *copies += 1;
            continue;
        }
        let key = serde_json::from_str::<serde_json::Value>(&letter.payload)
            .ok()
            .as_ref()
            .and_then(row_key);
        match key.and_then(|key| poisoned.get_mut(&key)) {
            Some(copies) if letter.source == "collector" && letter.error.contains("price") => {
                *copies += 1;
            }
            _ => unexpected.push(format!(
                "{} from {} ({}): {} — {}",
                letter.dead_letter_id,
                letter.source,
                letter.origin,
                letter.error,
                letter.payload.chars().take(200).collect::<String>()
            )),
        }
    }
    if !unexpected.is_empty() {
        return Err(format!(
            "{} dead letter(s) for no injected bad input: {:?}",
            unexpected.len(),
            &unexpected[..unexpected.len().min(5)]
        ));
    }
    let garbage_missing = garbage.values().filter(|copies| **copies == 0).count();
    let garbage_doubled = garbage.values().filter(|copies| **copies > 1).count();
    if garbage_missing > 0 || garbage_doubled > 0 {
        return Err(format!(
            "{} garbage frames sent: {garbage_missing} not dead-lettered, {garbage_doubled} dead-lettered more than once",
            garbage.len()
        ));
    }
    let missing: Vec<&String> = poisoned
        .iter()
        .filter(|(_, copies)| **copies == 0)
        .map(|(key, _)| key)
        .collect();
    let doubled: Vec<(&String, &u64)> =
        poisoned.iter().filter(|(_, copies)| **copies > 1).collect();
    if !missing.is_empty() || !doubled.is_empty() {
        return Err(format!(
            "{} poisoned rows: {} not dead-lettered (e.g. {:?}), {} dead-lettered more than once (e.g. {:?})",
            poisoned.len(),
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            doubled.len(),
            doubled.iter().take(3).collect::<Vec<_>>()
        ));
    }
    pipeline.figures().dead_letters = (poisoned.len() + garbage.len()) as u64;
    Ok(format!(
        "{} dead letters, each once: {} poisoned rows of the truth, {} garbage frames sent",
        poisoned.len() + garbage.len(),
        poisoned.len(),
        garbage.len()
    ))
}
