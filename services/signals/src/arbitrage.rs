//! Arbitrage windows: while buying one share of every outcome at the top of the book costs
//! less than the dollar exactly one of them pays (or selling one of each, against a set minted
//! for a dollar, brings more), net of taker fees.
//!
//! Two structures are watched: a binary market's YES and NO, and the YES of every market of a
//! negative-risk event (exactly one resolves YES). Books are the shared [`L2Book`], rebuilt
//! from our book topics. A window opens when the edge reaches the rule's minimum with at least
//! its minimum size, and closes when it no longer does (or a leg's book is gone): one
//! [`Signal`] whose id is fixed by its opening, emitted open (no end) and again closed, with
//! the maximum edge, the size executable at that edge (the thinnest leg's top), each leg's
//! price at that moment, and the duration.

use std::collections::HashMap;

use polytape_model::{
    BookSnapshot, Market, PriceChange, Signal, SignalKind,
    book::L2Book,
    micros::{ONE, UnitsError},
};

use serde::{Deserialize, Serialize};

use crate::signal::{Inputs, Rule, signal_id};

/// The top of one leg's book: a price and the size there, in scale-6 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Top {
    pub price: i64,
    pub size: i64,
}

/// A taker fee in basis points of the notional (price × size), the market's
/// `taker_base_fee_bps` when its fees are enabled.
///
/// Polymarket's 2026 fee curve (`feeSchedule {rate, exponent, takerOnly}`) is not in our
/// market record yet; until it is, the base rate applied to the notional is the reading used.
/// The fee per share is rounded up, so an edge is never overstated; a market whose fees are
/// on at an unknown rate is not judged at all (see [`TakerFee::of`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakerFee {
    pub bps: i64,
}

impl TakerFee {
    /// The fee `market` charges a taker; `None` when it charges one (or may: an unknown
    /// `fees_enabled` counts as charging) at a rate we do not know. A structure with a leg of
    /// unknown fee is not watched: its edge could only be overstated.
    pub fn of(market: &Market) -> Option<Self> {
        if market.fees_enabled == Some(false) {
            return Some(Self { bps: 0 });
        }
        let bps = market.taker_base_fee_bps?;
        Some(Self {
            bps: i64::from(bps.max(0)),
        })
    }

    /// The fee on one share traded at `price` (units), rounded up.
    pub fn per_share(self, price: i64) -> i64 {
        // Prices and rates are never negative: adding 9,999 before dividing rounds up.
        let scaled = i128::from(price.max(0)) * i128::from(self.bps.max(0));
        i64::try_from((scaled + 9_999) / 10_000).unwrap_or(i64::MAX)
    }
}

/// Which side of every leg the window trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Buy one share of every outcome at its best ask; one dollar comes back at resolution.
    BuyEveryLeg,
    /// Mint a full set for one dollar and sell every outcome at its best bid.
    SellEveryLeg,
}

impl Direction {
    fn code(self) -> &'static str {
        match self {
            Self::BuyEveryLeg => "buy_every_leg",
            Self::SellEveryLeg => "sell_every_leg",
        }
    }
}

/// An edge per full set, net of fees, and how many full sets are executable at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub edge: i64,
    pub size: i64,
}

/// The edge of trading one share of every leg at its top (`legs[i]` = `(top, fee)`); `None`
/// when a leg has no top. Buying: `ONE − Σ (ask + fee)`. Selling: `Σ (bid − fee) − ONE`. The
/// executable size is the thinnest leg's top size.
pub fn edge(direction: Direction, legs: &[(Option<Top>, TakerFee)]) -> Option<Edge> {
    let mut total: i64 = 0;
    let mut size = i64::MAX;
    for (top, fee) in legs {
        let top = (*top)?;
        let fee = fee.per_share(top.price);
        total = match direction {
            Direction::BuyEveryLeg => total.checked_add(top.price.checked_add(fee)?)?,
            Direction::SellEveryLeg => total.checked_add(top.price.checked_sub(fee)?)?,
        };
        size = size.min(top.size);
    }
    if legs.is_empty() {
        return None;
    }
    let edge = match direction {
        Direction::BuyEveryLeg => ONE.checked_sub(total)?,
        Direction::SellEveryLeg => total.checked_sub(ONE)?,
    };
    Some(Edge { edge, size })
}

/// When a window opens: an edge of at least `min_edge` with at least `min_size` executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArbitrageThresholds {
    pub min_edge: i64,
    pub min_size: i64,
}

impl Default for ArbitrageThresholds {
    /// Half a cent per full set, one full set.
    fn default() -> Self {
        Self {
            min_edge: 5_000,
            min_size: ONE,
        }
    }
}

/// What a window is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Structure {
    pub kind: SignalKind,
    /// The market's condition id (binary) or the negative-risk market id (event).
    pub subject: String,
    pub condition_ids: Vec<String>,
    pub event_id: Option<String>,
    /// The legs' tokens and the fee each charges.
    pub legs: Vec<(String, TakerFee)>,
}

impl Structure {
    /// A binary market's YES and NO; `None` unless it has exactly two tokens and a known fee.
    pub fn binary(market: &Market) -> Option<Self> {
        let [first, second] = market.tokens.as_slice() else {
            return None;
        };
        let fee = TakerFee::of(market)?;
        Some(Self {
            kind: SignalKind::BinaryArbitrage,
            subject: market.condition_id.clone(),
            condition_ids: vec![market.condition_id.clone()],
            event_id: market.event_ids.first().cloned(),
            legs: vec![
                (first.token_id.clone(), fee),
                (second.token_id.clone(), fee),
            ],
        })
    }

    /// The YES (outcome index 0) of every market of one negative-risk event, in condition-id
    /// order; `None` with fewer than two markets, or a market without a YES token or with an
    /// unknown fee.
    pub fn neg_risk(neg_risk_market_id: &str, markets: &[&Market]) -> Option<Self> {
        if markets.len() < 2 {
            return None;
        }
        let mut markets = markets.to_vec();
        markets.sort_by(|left, right| left.condition_id.cmp(&right.condition_id));
        let mut legs = Vec::with_capacity(markets.len());
        for market in &markets {
            let yes = market
                .tokens
                .iter()
                .find(|token| token.outcome_index == 0)?;
            legs.push((yes.token_id.clone(), TakerFee::of(market)?));
        }
        Some(Self {
            kind: SignalKind::NegRiskArbitrage,
            subject: neg_risk_market_id.to_owned(),
            condition_ids: markets
                .iter()
                .map(|market| market.condition_id.clone())
                .collect(),
            event_id: markets
                .iter()
                .find_map(|market| market.event_ids.first().cloned()),
            legs,
        })
    }
}

/// An open window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenWindow {
    opened_ms: i64,
    best: Edge,
    best_at_ms: i64,
    legs_at_best: Vec<Top>,
}

/// One update of a token's book.
#[derive(Debug, Clone, Copy)]
pub enum BookUpdate<'a> {
    Snapshot(&'a BookSnapshot),
    Change(&'a PriceChange),
}

impl BookUpdate<'_> {
    fn token_id(&self) -> &str {
        match self {
            Self::Snapshot(snapshot) => &snapshot.token_id,
            Self::Change(change) => &change.token_id,
        }
    }

    fn timestamp_ms(&self) -> i64 {
        match self {
            Self::Snapshot(snapshot) => snapshot.timestamp_ms,
            Self::Change(change) => change.timestamp_ms,
        }
    }
}

/// The books of every watched token and the windows open over them.
/// What the detector has learned: the part of it a checkpoint keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArbitrageState {
    books: HashMap<String, L2Book>,
    structures: Vec<Structure>,
    structures_of_token: HashMap<String, Vec<usize>>,
    #[serde(with = "polytape_model::pairs")]
    open: HashMap<(usize, Direction), OpenWindow>,
    /// The latest instant applied but not judged yet (see [`ArbitrageDetector::apply`]).
    #[serde(default)]
    pending: Option<PendingInstant>,
    /// The latest instant judged: book updates of it or of an earlier one are late.
    #[serde(default)]
    last_judged_ms: Option<i64>,
}

/// An instant whose book updates are applied, and the structures they touched.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PendingInstant {
    at_ms: i64,
    touched: Vec<usize>,
}

#[derive(Debug)]
pub struct ArbitrageDetector {
    binary_rule: Rule,
    neg_risk_rule: Rule,
    thresholds: ArbitrageThresholds,
    state: ArbitrageState,
    /// Batches of book updates applied at or before the latest instant already judged, since
    /// the last [`ArbitrageDetector::take_late_batches`].
    late_batches: u64,
}

impl ArbitrageDetector {
    pub fn new(binary_rule: Rule, neg_risk_rule: Rule, thresholds: ArbitrageThresholds) -> Self {
        Self {
            binary_rule,
            neg_risk_rule,
            thresholds,
            state: ArbitrageState::default(),
            late_batches: 0,
        }
    }

    /// The detector with a checkpointed state.
    pub fn restore(
        binary_rule: Rule,
        neg_risk_rule: Rule,
        thresholds: ArbitrageThresholds,
        state: ArbitrageState,
    ) -> Self {
        Self {
            state,
            ..Self::new(binary_rule, neg_risk_rule, thresholds)
        }
    }

    /// The state to checkpoint.
    pub fn state(&self) -> &ArbitrageState {
        &self.state
    }

    /// Watches `structure` from now on. One already watched with the same kind and subject is
    /// kept when it is equal (a market announced twice is judged once) and replaced when its
    /// legs changed (an outcome added to an event, a fee changed): a window open under the old
    /// legs is closed first, at `at_ms` (`structure_changed`), since its edge was another
    /// structure's. Returns those closings.
    pub fn watch(&mut self, structure: Structure, at_ms: i64) -> Vec<Signal> {
        let mut signals = self.judge_pending();
        match self.position(structure.kind, &structure.subject) {
            Some(index) if self.state.structures.get(index) == Some(&structure) => {}
            Some(index) => {
                signals.extend(self.close_windows(index, at_ms, "structure_changed"));
                self.unlink(index);
                self.link(index, &structure);
                self.state.structures[index] = structure;
            }
            None => {
                let index = self.state.structures.len();
                self.link(index, &structure);
                self.state.structures.push(structure);
            }
        }
        signals
    }

    /// Stops judging the structure of this kind and subject (its market closed, an outcome of
    /// its event is unknown or closed, its fee became unknown); its open windows close at
    /// `at_ms` (`structure_unwatched`). Returns those closings.
    pub fn unwatch(&mut self, kind: SignalKind, subject: &str, at_ms: i64) -> Vec<Signal> {
        let Some(index) = self.position(kind, subject) else {
            return Vec::new();
        };
        if self.state.structures[index].legs.is_empty() {
            return Vec::new();
        }
        let mut closed = self.judge_pending();
        closed.extend(self.close_windows(index, at_ms, "structure_unwatched"));
        self.unlink(index);
        // Kept as an empty structure, so the indexes of the others stay valid.
        self.state.structures[index].legs.clear();
        closed
    }

    fn position(&self, kind: SignalKind, subject: &str) -> Option<usize> {
        self.state
            .structures
            .iter()
            .position(|watched| watched.kind == kind && watched.subject == subject)
    }

    fn link(&mut self, index: usize, structure: &Structure) {
        for (token_id, _) in &structure.legs {
            self.state
                .structures_of_token
                .entry(token_id.clone())
                .or_default()
                .push(index);
        }
    }

    fn unlink(&mut self, index: usize) {
        let Some(structure) = self.state.structures.get(index) else {
            return;
        };
        for (token_id, _) in &structure.legs {
            if let Some(indexes) = self.state.structures_of_token.get_mut(token_id) {
                indexes.retain(|other| *other != index);
                if indexes.is_empty() {
                    self.state.structures_of_token.remove(token_id);
                }
            }
        }
    }

    /// Closes the open windows of a structure, as they stand, at `at_ms` (never before their
    /// opening).
    fn close_windows(&mut self, index: usize, at_ms: i64, closed_by: &str) -> Vec<Signal> {
        let mut closed = Vec::new();
        for direction in [Direction::BuyEveryLeg, Direction::SellEveryLeg] {
            let Some(window) = self.state.open.remove(&(index, direction)) else {
                continue;
            };
            let Some(structure) = self.state.structures.get(index) else {
                continue;
            };
            let closed_ms = at_ms.max(window.opened_ms);
            closed.push(self.signal(structure, direction, &window, Some((closed_ms, closed_by))));
        }
        closed
    }

    /// Applies one batch of updates of one instant (the entries of one upstream message, or
    /// every update of one millisecond). An instant is judged once, with all of its updates:
    /// when a batch of a later instant comes (before it is applied), or when the input goes
    /// quiet ([`ArbitrageDetector::judge_pending`]). The two tokens of a binary market, or
    /// the legs of an event, arrive on different partitions; at the live edge one of them can
    /// be released before the other, and judging each part as it came once opened windows
    /// of no duration on a book no one ever saw (a half-applied message). Returns the windows
    /// opened and closed.
    pub fn apply(&mut self, updates: &[BookUpdate<'_>]) -> Result<Vec<Signal>, UnitsError> {
        let Some(at_ms) = updates.iter().map(BookUpdate::timestamp_ms).max() else {
            return Ok(Vec::new());
        };
        // A batch of the pending instant is more of it. Any other (a later instant, or a late
        // batch of an earlier one: books from two topics interleave) has the pending instant
        // judged first, and is judged at its own time.
        let mut signals = Vec::new();
        if self
            .state
            .pending
            .as_ref()
            .is_some_and(|pending| at_ms != pending.at_ms)
        {
            signals.extend(self.judge_pending());
        }
        // Updates of an instant already judged: the instant was judged without them (e.g. a
        // message's second half read after the merge let its first half go). Counted, since
        // a window it opened or closed may be one no complete book showed.
        if self.state.pending.is_none()
            && self
                .state
                .last_judged_ms
                .is_some_and(|judged_ms| at_ms <= judged_ms)
        {
            self.late_batches += 1;
        }
        let mut touched: Vec<usize> = Vec::new();
        for update in updates {
            match update {
                BookUpdate::Snapshot(snapshot) => self
                    .state
                    .books
                    .entry(snapshot.token_id.clone())
                    .or_default()
                    .apply_snapshot(snapshot)?,
                // A book is only known from a snapshot on: changes alone (before the first
                // snapshot, or after the book was forgotten) would build a partial book.
                BookUpdate::Change(change) => match self.state.books.get_mut(&change.token_id) {
                    Some(book) => book.apply_change(change)?,
                    None => continue,
                },
            }
            if let Some(structures) = self.state.structures_of_token.get(update.token_id()) {
                touched.extend(structures);
            }
        }
        let pending = self.state.pending.get_or_insert(PendingInstant {
            at_ms,
            touched: Vec::new(),
        });
        pending.touched.extend(touched);
        Ok(signals)
    }

    /// Judges the pending instant, if any: every structure its updates touched, once.
    pub fn judge_pending(&mut self) -> Vec<Signal> {
        let Some(mut pending) = self.state.pending.take() else {
            return Vec::new();
        };
        self.state.last_judged_ms = self.state.last_judged_ms.max(Some(pending.at_ms));
        pending.touched.sort_unstable();
        pending.touched.dedup();
        let mut signals = Vec::new();
        for index in pending.touched {
            for direction in [Direction::BuyEveryLeg, Direction::SellEveryLeg] {
                signals.extend(self.judge(index, direction, pending.at_ms));
            }
        }
        signals
    }

    /// Batches of book updates that came after their instant was judged, since last asked.
    pub fn take_late_batches(&mut self) -> u64 {
        std::mem::take(&mut self.late_batches)
    }

    /// The time of the instant waiting to be judged.
    pub fn pending_at_ms(&self) -> Option<i64> {
        self.state.pending.as_ref().map(|pending| pending.at_ms)
    }

    /// Forgets a token's book (e.g. its market closed, or its stream has a gap): windows over
    /// it close, and it is judged again from its next snapshot.
    pub fn forget(&mut self, token_id: &str, at_ms: i64) -> Vec<Signal> {
        let mut signals = self.judge_pending();
        self.state.books.remove(token_id);
        let structures = self
            .state
            .structures_of_token
            .get(token_id)
            .cloned()
            .unwrap_or_default();
        for index in structures {
            for direction in [Direction::BuyEveryLeg, Direction::SellEveryLeg] {
                signals.extend(self.judge(index, direction, at_ms));
            }
        }
        signals
    }

    fn tops(&self, structure: &Structure, direction: Direction) -> Vec<(Option<Top>, TakerFee)> {
        structure
            .legs
            .iter()
            .map(|(token_id, fee)| {
                let top = self.state.books.get(token_id).and_then(|book| {
                    let price = match direction {
                        Direction::BuyEveryLeg => book.best_ask(),
                        Direction::SellEveryLeg => book.best_bid(),
                    }?;
                    let side = match direction {
                        Direction::BuyEveryLeg => polytape_model::Side::Sell,
                        Direction::SellEveryLeg => polytape_model::Side::Buy,
                    };
                    Some(Top {
                        price,
                        size: book.size(side, price),
                    })
                });
                (top, *fee)
            })
            .collect()
    }

    fn judge(&mut self, index: usize, direction: Direction, at_ms: i64) -> Option<Signal> {
        let structure = self.state.structures.get(index)?;
        let tops = self.tops(structure, direction);
        let current = edge(direction, &tops);
        let qualifies = current.filter(|edge| {
            edge.edge >= self.thresholds.min_edge && edge.size >= self.thresholds.min_size
        });
        let key = (index, direction);
        match (qualifies, self.state.open.get_mut(&key)) {
            (Some(edge), Some(window)) => {
                if edge.edge > window.best.edge
                    || (edge.edge == window.best.edge && edge.size > window.best.size)
                {
                    window.best = edge;
                    // A late batch (books from two topics interleave) is never before the
                    // opening, as for the closing.
                    window.best_at_ms = at_ms.max(window.opened_ms);
                    window.legs_at_best = tops.iter().filter_map(|(top, _)| *top).collect();
                }
                None
            }
            (Some(edge), None) => {
                let window = OpenWindow {
                    opened_ms: at_ms,
                    best: edge,
                    best_at_ms: at_ms,
                    legs_at_best: tops.iter().filter_map(|(top, _)| *top).collect(),
                };
                let signal = self.signal(structure, direction, &window, None);
                self.state.open.insert(key, window);
                Some(signal)
            }
            (None, Some(_)) => {
                let window = self.state.open.remove(&key)?;
                let closed_by = if current.is_some() {
                    "edge_gone"
                } else {
                    "leg_unavailable"
                };
                // A batch older than the opening (books from two topics interleave) closes
                // the window at its opening, never before it.
                let closed_ms = at_ms.max(window.opened_ms);
                Some(self.signal(structure, direction, &window, Some((closed_ms, closed_by))))
            }
            (None, None) => None,
        }
    }

    fn signal(
        &self,
        structure: &Structure,
        direction: Direction,
        window: &OpenWindow,
        closed: Option<(i64, &str)>,
    ) -> Signal {
        let rule = match structure.kind {
            SignalKind::NegRiskArbitrage => &self.neg_risk_rule,
            _ => &self.binary_rule,
        };
        // The window's subject includes its direction: buying and selling every leg are two
        // windows that may overlap.
        let subject = format!("{}:{}", structure.subject, direction.code());
        let mut inputs = Inputs::default()
            .text("direction", direction.code())
            .units("max_edge", window.best.edge)
            .units("size_at_max_edge", window.best.size)
            .integer("max_edge_ms", window.best_at_ms)
            .integer(
                "legs",
                i64::try_from(structure.legs.len()).unwrap_or(i64::MAX),
            );
        for (number, (top, (_, fee))) in window.legs_at_best.iter().zip(&structure.legs).enumerate()
        {
            inputs = inputs
                .units(&format!("leg_{number}_price"), top.price)
                .units(&format!("leg_{number}_size"), top.size)
                .integer(&format!("leg_{number}_fee_bps"), fee.bps);
        }
        if let Some((closed_ms, closed_by)) = closed {
            inputs = inputs
                .integer("duration_ms", closed_ms - window.opened_ms)
                .text("closed_by", closed_by);
        }
        let token_ids: Vec<String> = structure
            .legs
            .iter()
            .map(|(token_id, _)| token_id.clone())
            .collect();
        Signal {
            signal_id: signal_id(structure.kind, rule, &subject, window.opened_ms),
            kind: structure.kind,
            rule_id: rule.rule_id.clone(),
            rule_version: rule.version,
            subject,
            condition_ids: structure.condition_ids.clone(),
            links: token_ids
                .iter()
                .map(|token_id| format!("{token_id}@{}", window.best_at_ms))
                .collect(),
            token_ids,
            event_id: structure.event_id.clone(),
            window_start_ms: window.opened_ms,
            window_end_ms: closed.map(|(closed_ms, _)| closed_ms),
            thresholds: Inputs::default()
                .units("min_edge", self.thresholds.min_edge)
                .units("min_size", self.thresholds.min_size)
                .into_values(),
            inputs: inputs.into_values(),
        }
    }
}

#[cfg(test)]
mod tests;
