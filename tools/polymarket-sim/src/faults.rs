//! Fault injection: rules parsed from `--faults` or `POST /_sim/faults`, matched per request
//! (HTTP) or per event (WebSocket), and the body transformations they apply.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Error,
    Slow,
    Timeout,
    Truncate,
    Malformed,
    ExtraField,
    MissingOptional,
    Drift,
    OutOfWindow,
    LateIndex,
    Poison,
    TickChange,
    WsDisconnect,
    WsFreeze,
    WsGarbage,
    WsDuplicate,
    WsReorder,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::Slow => "slow",
            FaultKind::Timeout => "timeout",
            FaultKind::Truncate => "truncate",
            FaultKind::Malformed => "malformed",
            FaultKind::ExtraField => "extra_field",
            FaultKind::MissingOptional => "missing_optional",
            FaultKind::Drift => "drift",
            FaultKind::OutOfWindow => "out_of_window",
            FaultKind::LateIndex => "late_index",
            FaultKind::Poison => "poison",
            FaultKind::TickChange => "tick_change",
            FaultKind::WsDisconnect => "ws_disconnect",
            FaultKind::WsFreeze => "ws_freeze",
            FaultKind::WsGarbage => "ws_garbage",
            FaultKind::WsDuplicate => "ws_duplicate",
            FaultKind::WsReorder => "ws_reorder",
        }
    }

    fn parse(text: &str) -> Option<FaultKind> {
        const ALL: [FaultKind; 17] = [
            FaultKind::Error,
            FaultKind::Slow,
            FaultKind::Timeout,
            FaultKind::Truncate,
            FaultKind::Malformed,
            FaultKind::ExtraField,
            FaultKind::MissingOptional,
            FaultKind::Drift,
            FaultKind::OutOfWindow,
            FaultKind::LateIndex,
            FaultKind::Poison,
            FaultKind::TickChange,
            FaultKind::WsDisconnect,
            FaultKind::WsFreeze,
            FaultKind::WsGarbage,
            FaultKind::WsDuplicate,
            FaultKind::WsReorder,
        ];
        let normalised = text.trim().to_ascii_lowercase().replace('-', "_");
        let normalised = if normalised == "5xx" {
            "error".to_owned()
        } else {
            normalised
        };
        ALL.into_iter().find(|kind| kind.name() == normalised)
    }

    pub fn is_websocket(self) -> bool {
        matches!(
            self,
            FaultKind::WsDisconnect
                | FaultKind::WsFreeze
                | FaultKind::WsGarbage
                | FaultKind::WsDuplicate
                | FaultKind::WsReorder
        )
    }

    /// Kinds that select fills of the tape (which rows exist at a time, or how a row is
    /// served on every read) instead of firing per request.
    pub fn is_visibility(self) -> bool {
        matches!(self, FaultKind::LateIndex | FaultKind::Poison)
    }
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub kind: FaultKind,
    /// Path prefix (`/data/trades`); empty = every endpoint. Ignored for WebSocket kinds.
    #[serde(default)]
    pub target: String,
    /// Fire at most this many times (0 = unlimited).
    #[serde(default = "default_count")]
    pub count: u64,
    /// Fire on every Nth match.
    #[serde(default = "default_every")]
    pub every: u64,
    /// Skip the first N matches (WebSocket: events sent on the connection).
    #[serde(default)]
    pub after: u64,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default, with = "optional_millis")]
    pub delay: Option<Duration>,
    #[serde(default, with = "optional_millis")]
    pub duration: Option<Duration>,
    #[serde(default)]
    pub field: Option<String>,
    /// `Retry-After` of an injected 429 or 503 (default 1 s).
    #[serde(default, with = "optional_millis")]
    pub retry_after: Option<Duration>,
}

fn default_count() -> u64 {
    1
}

fn default_every() -> u64 {
    1
}

/// Durations in JSON as milliseconds (`"delay": 2000`) or humantime text (`"delay": "2s"`).
mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => {
                serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
            }
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Option::<Raw>::deserialize(deserializer)? {
            None => Ok(None),
            Some(Raw::Millis(millis)) => Ok(Some(Duration::from_millis(millis))),
            Some(Raw::Text(text)) => humantime::parse_duration(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A fault spec that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultSpecError {
    #[error("unknown fault kind {0:?}")]
    UnknownKind(String),
    #[error("expected KEY=VALUE, got {0:?}")]
    NotKeyValue(String),
    #[error("unknown fault key {0:?}")]
    UnknownKey(String),
    #[error("invalid value {value:?} for {key}")]
    InvalidValue { key: String, value: String },
}

/// Parses `KIND[@TARGET][:KEY=VALUE,...]` rules separated by `;`.
pub fn parse_fault_spec(spec: &str) -> Result<Vec<FaultRule>, FaultSpecError> {
    let mut rules = Vec::new();
    for rule_text in spec
        .split(';')
        .map(str::trim)
        .filter(|text| !text.is_empty())
    {
        let (head, parameters) = match rule_text.split_once(':') {
            Some((head, parameters)) => (head, parameters),
            None => (rule_text, ""),
        };
        let (kind_text, target) = match head.split_once('@') {
            Some((kind, target)) => (kind, target.trim()),
            None => (head, ""),
        };
        let kind = FaultKind::parse(kind_text)
            .ok_or_else(|| FaultSpecError::UnknownKind(kind_text.to_owned()))?;
        let mut rule = FaultRule {
            kind,
            target: if target == "*" {
                String::new()
            } else {
                target.to_owned()
            },
            count: 1,
            every: 1,
            after: 0,
            status: None,
            delay: None,
            duration: None,
            field: None,
            retry_after: None,
        };
        let mut count_given = false;
        for pair in parameters
            .split(',')
            .map(str::trim)
            .filter(|text| !text.is_empty())
        {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| FaultSpecError::NotKeyValue(pair.to_owned()))?;
            let invalid = || FaultSpecError::InvalidValue {
                key: key.to_owned(),
                value: value.to_owned(),
            };
            match key.trim() {
                "count" => {
                    rule.count = value.parse().map_err(|_| invalid())?;
                    count_given = true;
                }
                "every" => rule.every = value.parse::<u64>().map_err(|_| invalid())?.max(1),
                "after" => rule.after = value.parse().map_err(|_| invalid())?,
                "status" => rule.status = Some(value.parse().map_err(|_| invalid())?),
                "delay" => {
                    rule.delay = Some(humantime::parse_duration(value).map_err(|_| invalid())?)
                }
                "duration" => {
                    rule.duration = Some(humantime::parse_duration(value).map_err(|_| invalid())?)
                }
                "field" => rule.field = Some(value.to_owned()),
                "retry_after" => {
                    rule.retry_after =
                        Some(humantime::parse_duration(value).map_err(|_| invalid())?)
                }
                other => return Err(FaultSpecError::UnknownKey(other.to_owned())),
            }
        }
        // `late_index` and `poison` select fills, not requests: "every 20th fill" means all
        // of them.
        if kind.is_visibility() && !count_given {
            rule.count = 0;
        }
        rules.push(rule);
    }
    Ok(rules)
}

#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    matches: u64,
    fired: u64,
}

impl ActiveRule {
    /// Counts a match and says whether the rule fires on it.
    fn try_fire(&mut self, match_number: u64) -> bool {
        if self.rule.count > 0 && self.fired >= self.rule.count {
            return false;
        }
        if match_number <= self.rule.after {
            return false;
        }
        if !(match_number - self.rule.after).is_multiple_of(self.rule.every.max(1)) {
            return false;
        }
        self.fired += 1;
        true
    }
}

/// The active fault rules.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    rules: Mutex<Vec<ActiveRule>>,
}

impl FaultBook {
    pub(crate) fn new(rules: Vec<FaultRule>) -> FaultBook {
        let book = FaultBook::default();
        book.add(rules, false);
        book
    }

    pub(crate) fn add(&self, rules: Vec<FaultRule>, replace: bool) {
        let mut active = self
            .rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if replace {
            active.clear();
        }
        active.extend(rules.into_iter().map(|rule| ActiveRule {
            rule,
            matches: 0,
            fired: 0,
        }));
    }

    pub(crate) fn clear(&self) {
        self.add(Vec::new(), true);
    }

    /// The rules with how often each matched and fired.
    pub(crate) fn describe(&self) -> serde_json::Value {
        let active = self
            .rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        serde_json::Value::Array(
            active
                .iter()
                .map(|rule| {
                    let mut value = serde_json::to_value(&rule.rule).unwrap_or_default();
                    value["matches"] = rule.matches.into();
                    value["fired"] = rule.fired.into();
                    value
                })
                .collect(),
        )
    }

    /// The HTTP faults that fire for this request path (each rule counts the match).
    pub(crate) fn fire_http(&self, path: &str) -> Vec<FaultRule> {
        let mut active = self
            .rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut fired = Vec::new();
        for rule in active.iter_mut() {
            if rule.rule.kind.is_websocket()
                || rule.rule.kind.is_visibility()
                || !path.starts_with(rule.rule.target.as_str())
            {
                continue;
            }
            rule.matches += 1;
            let match_number = rule.matches;
            if rule.try_fire(match_number) {
                fired.push(rule.rule.clone());
            }
        }
        fired
    }

    /// The WebSocket faults that fire for the `event_number`-th event sent on a connection.
    pub(crate) fn fire_ws(&self, event_number: u64) -> Vec<FaultRule> {
        let mut active = self
            .rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut fired = Vec::new();
        for rule in active.iter_mut() {
            if !rule.rule.kind.is_websocket() {
                continue;
            }
            rule.matches += 1;
            if rule.try_fire(event_number) {
                fired.push(rule.rule.clone());
            }
        }
        fired
    }

    /// The `late_index` rules that apply to this request path (they are not counted as
    /// matches: they select fills, see [`LateIndex`]).
    pub(crate) fn late_index(&self, path: &str) -> Vec<LateIndex> {
        self.tape_rules(FaultKind::LateIndex, path)
            .into_iter()
            .map(|rule| LateIndex {
                selection: TapeSelection::of(&rule),
                delay_ms: i64::try_from(rule.delay.unwrap_or(LATE_INDEX_DEFAULT_DELAY).as_millis())
                    .unwrap_or(i64::MAX),
            })
            .collect()
    }

    /// The fill-selecting rules of one kind that apply to this request path.
    fn tape_rules(&self, kind: FaultKind, path: &str) -> Vec<FaultRule> {
        let active = self
            .rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        active
            .iter()
            .filter(|rule| rule.rule.kind == kind && path.starts_with(rule.rule.target.as_str()))
            .map(|rule| rule.rule.clone())
            .collect()
    }

    /// The `poison` rules that apply to this request path (they select transactions, see
    /// [`Poison`]).
    pub(crate) fn poison(&self, path: &str) -> Vec<Poison> {
        self.tape_rules(FaultKind::Poison, path)
            .iter()
            .map(TapeSelection::of)
            .collect()
    }

    pub(crate) fn has_ws_rules(&self) -> bool {
        let active = self
            .rules
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        active.iter().any(|rule| {
            rule.rule.kind.is_websocket() && (rule.rule.count == 0 || rule.fired < rule.rule.count)
        })
    }
}

/// `late_index` without `delay`.
const LATE_INDEX_DEFAULT_DELAY: Duration = Duration::from_secs(60);

/// Which items of a sequence (fills or transactions, 0-based, in tape order) a fill-selecting
/// rule picks: the n-th (1-based) when `n > after`, `n − after` is a multiple of `every`, and —
/// when `count` > 0 — it is among the first `count` such items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TapeSelection {
    pub(crate) every: u64,
    pub(crate) after: u64,
    pub(crate) count: u64,
}

impl TapeSelection {
    fn of(rule: &FaultRule) -> TapeSelection {
        TapeSelection {
            every: rule.every.max(1),
            after: rule.after,
            count: rule.count,
        }
    }

    /// Whether the `index`-th item is selected.
    pub(crate) fn selects(&self, index: u64) -> bool {
        let number = index + 1;
        if number <= self.after {
            return false;
        }
        let nth = number - self.after;
        nth.is_multiple_of(self.every) && (self.count == 0 || nth / self.every <= self.count)
    }
}

/// `late_index`: upstream indexes some fills after their block, so they appear on the tape
/// only some time after their timestamp. The rule selects fills by their position on the tape
/// (`seq` in the truth). A late fill is left out of the trades tapes until simulated now
/// reaches its timestamp plus `delay`; the truth lists it all along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LateIndex {
    pub(crate) selection: TapeSelection,
    pub(crate) delay_ms: i64,
}

impl LateIndex {
    /// Whether the fill at tape position `position` is indexed late.
    pub(crate) fn selects(&self, position: u64) -> bool {
        self.selection.selects(position)
    }

    /// Whether the fill at `position`, stamped `timestamp_ms`, is still invisible at `now_ms`.
    pub(crate) fn hides(&self, position: u64, timestamp_ms: i64, now_ms: i64) -> bool {
        self.selects(position) && timestamp_ms.saturating_add(self.delay_ms) > now_ms
    }
}

/// `poison`: upstream serves some fills broken on every read — a price outside (0, 1], which
/// no fill can have — so a client can only refuse them. The rule selects whole transactions
/// by their index (in tape order), so identical fills of one transaction are poisoned
/// together and the occurrence numbers of the others do not move. The truth marks the
/// poisoned fills (`poisoned: true`): they are the bad input a client must dead-letter, each
/// once, and must not store as trades.
pub(crate) type Poison = TapeSelection;

/// What a poisoned trades row carries instead of its price: a price no fill can have, in the
/// JSON type the row had (v1 floats, v2 text).
pub(crate) fn poison_trade_row(row: &mut serde_json::Value) {
    if let Some(price) = row.get_mut("price") {
        *price = match price {
            serde_json::Value::String(_) => serde_json::Value::String("1.5".to_owned()),
            _ => serde_json::json!(1.5),
        };
    }
}

/// Keys that upstream documents as optional (or that only some rows carry), per body shape:
/// `missing_optional` removes these.
const OPTIONAL_KEYS: &[&str] = &[
    "icon",
    "image",
    "name",
    "pseudonym",
    "bio",
    "profileImage",
    "profileImageOptimized",
    "eventSlug",
    "feeSchedule",
    "clobRewards",
    "oneDayPriceChange",
    "groupItemTitle",
    "negRiskMarketID",
    "umaResolutionStatus",
    "version",
    "events",
    "min_order_size",
    "tick_size",
    "neg_risk",
    "last_trade_price",
    "event_message",
    "profile_image",
    "profile_image_optimized",
    "title",
    "slug",
    "event_slug",
    "hash",
    "best_bid",
    "best_ask",
    "rewards",
    "tags",
    "description",
];

/// Applies a body-transforming fault to a JSON body. Returns the new body.
pub(crate) fn transform_body(kind: FaultKind, field: Option<&str>, body: &[u8]) -> Vec<u8> {
    match kind {
        FaultKind::Truncate => body[..body.len() / 2].to_vec(),
        FaultKind::Malformed => {
            // Valid-looking start, broken middle: a stray quote and a missing closing bracket.
            let mut broken = body[..body.len() / 3].to_vec();
            broken.extend_from_slice(b"\"\x00,}{");
            broken
        }
        FaultKind::ExtraField | FaultKind::MissingOptional | FaultKind::Drift => {
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
                return body.to_vec();
            };
            for_each_row(&mut value, &mut |row| match kind {
                FaultKind::ExtraField => {
                    row.insert(
                        "_simUnknownField".to_owned(),
                        serde_json::json!({"added": "by polymarket-sim"}),
                    );
                }
                FaultKind::MissingOptional => {
                    for key in OPTIONAL_KEYS {
                        row.remove(*key);
                    }
                }
                _ => drift_row(row, field),
            });
            serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec())
        }
        FaultKind::OutOfWindow => {
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
                return body.to_vec();
            };
            append_out_of_window_row(&mut value);
            serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec())
        }
        FaultKind::TickChange => {
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
                return body.to_vec();
            };
            for_each_row(&mut value, &mut change_tick);
            serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

/// `out_of_window`: a list of timestamped rows (a bare array, or a `data` envelope) gets one
/// more row, a copy of its last one stamped `timestamp: 1` (1970-01-01T00:00:01Z) — outside
/// any window a client asked for, as if upstream served a row its filter should have dropped.
/// The row is not a fill of the world: the truth does not change, and a client must not
/// count it (nor let it end a time walk). Lists without a timestamped row are left alone.
fn append_out_of_window_row(value: &mut serde_json::Value) {
    let rows = match value {
        serde_json::Value::Array(rows) => rows,
        serde_json::Value::Object(object) => match object.get_mut("data") {
            Some(serde_json::Value::Array(rows)) => rows,
            _ => return,
        },
        _ => return,
    };
    let Some(mut stray) = rows
        .last()
        .filter(|row| row.get("timestamp").is_some())
        .cloned()
    else {
        return;
    };
    stray["timestamp"] = serde_json::json!(1);
    rows.push(stray);
}

/// The keys a market's tick size goes by: CLOB `/markets` and `/book`, Gamma `/markets`.
const TICK_KEYS: &[&str] = &["minimum_tick_size", "tick_size", "orderPriceMinTickSize"];

/// `tick_change`: the market's tick, as this response serves it, is switched the way upstream
/// switches it near 0.04 / 0.96 (0.01 → 0.001, 0.001 → 0.01; any other tick → a tenth of it),
/// keeping the key's JSON type. Fills do not change — the truth is the same — so a client
/// that keys a fill's identity on the tick it last read gives one fill two ids.
fn change_tick(row: &mut serde_json::Map<String, serde_json::Value>) {
    for key in TICK_KEYS {
        let Some(value) = row.get_mut(*key) else {
            continue;
        };
        let current = match value {
            serde_json::Value::Number(number) => number.as_f64(),
            serde_json::Value::String(text) => text.parse::<f64>().ok(),
            _ => None,
        };
        let Some(current) = current.filter(|tick| *tick > 0.0) else {
            continue;
        };
        let changed = if (current - 0.01).abs() < 1e-12 {
            "0.001".to_owned()
        } else if (current - 0.001).abs() < 1e-12 {
            "0.01".to_owned()
        } else {
            format!("{}", current / 10.0)
        };
        *value = match value {
            serde_json::Value::Number(_) => match changed.parse::<f64>() {
                Ok(number) => serde_json::json!(number),
                Err(_) => continue,
            },
            _ => serde_json::Value::String(changed),
        };
    }
}

/// Visits the row objects of a body: array items, `data`/`markets`/`events` arrays of an
/// envelope, or the object itself.
fn for_each_row(
    value: &mut serde_json::Value,
    visit: &mut dyn FnMut(&mut serde_json::Map<String, serde_json::Value>),
) {
    match value {
        serde_json::Value::Array(items) => {
            for item in items {
                if let serde_json::Value::Object(row) = item {
                    visit(row);
                }
            }
        }
        serde_json::Value::Object(object) => {
            let mut visited_nested = false;
            for key in ["data", "markets", "events", "history"] {
                if let Some(serde_json::Value::Array(items)) = object.get_mut(key) {
                    visited_nested = true;
                    for item in items {
                        if let serde_json::Value::Object(row) = item {
                            visit(row);
                        }
                    }
                }
            }
            if !visited_nested {
                visit(object);
            }
        }
        _ => {}
    }
}

/// Schema drift: the named field (or the first number/string field among common ones)
/// changes JSON type — numbers become strings, strings become numbers (or null).
fn drift_row(row: &mut serde_json::Map<String, serde_json::Value>, field: Option<&str>) {
    const CANDIDATES: &[&str] = &[
        "price",
        "size",
        "timestamp",
        "volumeNum",
        "volume",
        "id",
        "mid",
        "p",
        "t",
    ];
    let key = match field {
        Some(field) => field.to_owned(),
        None => match CANDIDATES
            .iter()
            .find(|candidate| row.contains_key(**candidate))
        {
            Some(candidate) => (*candidate).to_owned(),
            None => return,
        },
    };
    let Some(value) = row.get_mut(&key) else {
        return;
    };
    let drifted = match value {
        serde_json::Value::Number(number) => serde_json::Value::String(number.to_string()),
        serde_json::Value::String(text) => match text.parse::<f64>() {
            Ok(number) => serde_json::json!(number),
            Err(_) => serde_json::Value::Null,
        },
        serde_json::Value::Bool(flag) => serde_json::Value::String(flag.to_string()),
        _ => serde_json::Value::String("drifted".to_owned()),
    };
    *value = drifted;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_grammar_parses() {
        let rules = parse_fault_spec("error@/data/trades:status=503,count=3; slow@/clob/book:delay=2s,every=10,count=0;ws_freeze:after=100,duration=5s").unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].kind, FaultKind::Error);
        assert_eq!(rules[0].target, "/data/trades");
        assert_eq!(rules[0].status, Some(503));
        assert_eq!(rules[0].count, 3);
        assert_eq!(rules[1].delay, Some(Duration::from_secs(2)));
        assert_eq!(rules[1].every, 10);
        assert_eq!(rules[1].count, 0);
        assert_eq!(rules[2].after, 100);
        let storm = parse_fault_spec("error@/data/trades:status=429,retry_after=2s").unwrap();
        assert_eq!(
            (storm[0].status, storm[0].retry_after),
            (Some(429), Some(Duration::from_secs(2)))
        );
        assert!(parse_fault_spec("error:retry_after=soon").is_err());
        assert!(parse_fault_spec("nonsense").is_err());
        assert!(parse_fault_spec("error:bogus=1").is_err());
        assert_eq!(parse_fault_spec("").unwrap(), Vec::new());
    }

    #[test]
    fn rules_fire_on_schedule() {
        let book = FaultBook::new(parse_fault_spec("error@/data:every=2,count=2,after=1").unwrap());
        let fired: Vec<bool> = (0..8)
            .map(|_| !book.fire_http("/data/trades").is_empty())
            .collect();
        assert_eq!(
            fired,
            vec![false, false, true, false, true, false, false, false]
        );
        assert!(book.fire_http("/gamma/markets").is_empty());
    }

    #[test]
    fn tick_change_switches_every_served_tick_and_keeps_its_type() {
        let body = br#"{"data":[{"condition_id":"0xa","minimum_tick_size":0.01},{"condition_id":"0xb","minimum_tick_size":0.001}]}"#;
        let changed: serde_json::Value =
            serde_json::from_slice(&transform_body(FaultKind::TickChange, None, body)).unwrap();
        assert_eq!(
            changed["data"][0]["minimum_tick_size"],
            serde_json::json!(0.001)
        );
        assert_eq!(
            changed["data"][1]["minimum_tick_size"],
            serde_json::json!(0.01)
        );
        let gamma = br#"[{"conditionId":"0xa","orderPriceMinTickSize":"0.01"}]"#;
        let changed: serde_json::Value =
            serde_json::from_slice(&transform_body(FaultKind::TickChange, None, gamma)).unwrap();
        assert_eq!(
            changed[0]["orderPriceMinTickSize"],
            serde_json::json!("0.001")
        );
        let trades = br#"[{"price":0.5,"size":3}]"#;
        let unchanged: serde_json::Value =
            serde_json::from_slice(&transform_body(FaultKind::TickChange, None, trades)).unwrap();
        assert_eq!(unchanged, serde_json::json!([{"price": 0.5, "size": 3}]));
        assert_eq!(
            parse_fault_spec("tick_change@/clob/markets:every=2,count=0").unwrap()[0].kind,
            FaultKind::TickChange
        );
    }

    #[test]
    fn out_of_window_appends_a_stray_copy_of_the_last_row() {
        let body = br#"[{"timestamp":1767225600,"size":2},{"timestamp":1767225500,"size":3}]"#;
        let faulted: serde_json::Value =
            serde_json::from_slice(&transform_body(FaultKind::OutOfWindow, None, body)).unwrap();
        assert_eq!(
            faulted,
            serde_json::json!([
                {"timestamp": 1767225600, "size": 2},
                {"timestamp": 1767225500, "size": 3},
                {"timestamp": 1, "size": 3}
            ])
        );
        let envelope = br#"{"data":[{"timestamp":5}],"pagination":{}}"#;
        let faulted: serde_json::Value =
            serde_json::from_slice(&transform_body(FaultKind::OutOfWindow, None, envelope))
                .unwrap();
        assert_eq!(faulted["data"][1]["timestamp"], serde_json::json!(1));
        // Nothing to copy: unchanged.
        assert_eq!(transform_body(FaultKind::OutOfWindow, None, b"[]"), b"[]");
        assert_eq!(
            parse_fault_spec("out_of_window@/data/trades:count=0").unwrap()[0].kind,
            FaultKind::OutOfWindow
        );
    }

    #[test]
    fn late_index_selects_every_nth_fill_until_its_delay_passed() {
        let rules = parse_fault_spec("late_index@/data/trades:delay=90s,every=20").unwrap();
        assert_eq!(rules[0].kind, FaultKind::LateIndex);
        assert_eq!(rules[0].count, 0, "every 20th fill, not only the first one");
        assert_eq!(rules[0].delay, Some(Duration::from_secs(90)));
        let book = FaultBook::new(rules);
        // Not a per-request fault: it never fires on a request and is not counted as a match.
        assert!(book.fire_http("/data/trades").is_empty());
        assert!(book.late_index("/data/v2/trades").is_empty());
        let [late] = book.late_index("/data/trades")[..] else {
            panic!("one rule");
        };
        let selected: Vec<u64> = (0..100)
            .filter(|position| late.selects(*position))
            .collect();
        assert_eq!(selected, vec![19, 39, 59, 79, 99]);
        // Hidden until its timestamp plus the delay.
        assert!(late.hides(19, 1_000_000, 1_000_000 + 89_999));
        assert!(!late.hides(19, 1_000_000, 1_000_000 + 90_000));
        assert!(!late.hides(18, 1_000_000, 1_000_000));
        // `after` and `count` narrow the selection; an explicit count is kept.
        let [late] = FaultBook::new(
            parse_fault_spec("late_index:every=3,after=10,count=2,delay=2s").unwrap(),
        )
        .late_index("/data/v2/trades")[..] else {
            panic!("one rule");
        };
        let selected: Vec<u64> = (0..40).filter(|position| late.selects(*position)).collect();
        assert_eq!(selected, vec![12, 15]);
        assert_eq!(late.delay_ms, 2_000);
    }

    #[test]
    fn drift_changes_type() {
        let body = br#"[{"price":0.5,"size":"3"}]"#;
        let drifted: serde_json::Value =
            serde_json::from_slice(&transform_body(FaultKind::Drift, None, body)).unwrap();
        assert_eq!(drifted[0]["price"], serde_json::json!("0.5"));
        let truncated = transform_body(FaultKind::Truncate, None, body);
        assert!(serde_json::from_slice::<serde_json::Value>(&truncated).is_err());
    }
}
