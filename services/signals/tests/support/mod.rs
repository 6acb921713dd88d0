//! Shared by the tests that run the signals service against the stack: a small world with
//! planted signals, producing it, running the service and reading what it found.

#![allow(dead_code)] // each test binary uses a different part

use std::{
    collections::BTreeMap,
    path::Path,
    str::FromStr as _,
    time::{Duration, Instant},
};

use polytape_model::{
    BookLevel, BookSnapshot, Decimal, Event, Market, MarketToken, PriceChange, Side, Signal,
    SignalKind, Topic, TopicNames, Trade, samples,
};
use polytape_signals::pipeline::group_id;
pub(crate) use polytape_test_support::topic::produce;
use polytape_test_support::{
    cli::{RunningService, free_local_addr, stack_env},
    topic::{positioned_records, records_behind},
};

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_polytape-signals");
/// What the service reads.
pub(crate) const INPUTS: [Topic; 5] = [
    Topic::Markets,
    Topic::Events,
    Topic::BookSnapshots,
    Topic::PriceChanges,
    Topic::Trades,
];

pub(crate) fn dec(text: &str) -> Decimal {
    match Decimal::from_str(text) {
        Ok(value) => value,
        Err(error) => panic!("{text}: {error}"),
    }
}

fn units(value: i64) -> Decimal {
    Decimal::new(value, 6)
}

/// A signal the world plants, as the tests expect to find it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Planted {
    pub(crate) kind: SignalKind,
    pub(crate) subject: String,
    pub(crate) window_start_ms: i64,
    pub(crate) window_end_ms: i64,
    /// Inputs the signal must carry, exactly.
    pub(crate) inputs: Vec<(&'static str, String)>,
}

/// Markets, events, books and trades, each topic's records in event-time order.
pub(crate) struct World {
    pub(crate) markets: Vec<Market>,
    pub(crate) events: Vec<Event>,
    pub(crate) snapshots: Vec<BookSnapshot>,
    pub(crate) changes: Vec<PriceChange>,
    pub(crate) trades: Vec<Trade>,
    pub(crate) planted: Vec<Planted>,
}

/// A fee-free binary market `0x<name>` with tokens `<name>-yes` and `<name>-no`; in the
/// negative-risk event `event` when given.
fn market(name: &str, event: Option<&str>) -> Market {
    let token = |outcome: &str, index: i32| MarketToken {
        token_id: format!("{name}-{outcome}"),
        outcome: outcome.to_owned(),
        outcome_index: index,
        winner: None,
    };
    Market {
        condition_id: format!("0x{name}"),
        tokens: vec![token("yes", 0), token("no", 1)],
        fees_enabled: Some(false),
        neg_risk: event.is_some(),
        neg_risk_market_id: event.map(|event| format!("0xneg{event}")),
        event_ids: vec![event.unwrap_or("misc").to_owned()],
        ..samples::market()
    }
}

fn level(price: i64, size: i64) -> BookLevel {
    BookLevel {
        price: units(price),
        size: units(size),
    }
}

/// `<market>-yes` → `0x<market>`.
fn condition_of(token_id: &str) -> String {
    format!("0x{}", token_id.split('-').next().unwrap_or(token_id))
}

fn snapshot(token_id: &str, at_ms: i64, bid: i64, ask: i64) -> BookSnapshot {
    BookSnapshot {
        token_id: token_id.to_owned(),
        condition_id: condition_of(token_id),
        timestamp_ms: at_ms,
        bids: vec![level(bid, 500_000_000), level(bid - 10_000, 800_000_000)],
        asks: vec![level(ask, 500_000_000), level(ask + 10_000, 800_000_000)],
        ..samples::book_snapshot()
    }
}

fn change(token_id: &str, at_ms: i64, side: Side, price: i64, size: i64) -> PriceChange {
    PriceChange {
        token_id: token_id.to_owned(),
        condition_id: condition_of(token_id),
        timestamp_ms: at_ms,
        side,
        price: units(price),
        size: units(size),
        best_bid: None,
        best_ask: None,
        ..samples::price_change()
    }
}

fn trade(id: String, wallet: &str, market: &str, at_ms: i64, price: i64, size: i64) -> Trade {
    Trade {
        trade_id: id,
        condition_id: format!("0x{market}"),
        token_id: format!("{market}-yes"),
        price: units(price),
        size: units(size),
        timestamp_ms: at_ms,
        proxy_wallet: wallet.to_owned(),
        ..samples::trade()
    }
}

/// A world of `background` binary markets (YES ask 0.51 + NO ask 0.51: no edge; fills at
/// 0.48–0.52 by 40 wallets active from the start, at most $60: nothing fires) over `minutes`,
/// with `fills` background fills and as many book changes (sizes only, never prices), and
/// `rounds` rounds of four planted signals, spread evenly over the span; in round `r`:
/// - a binary window in `quiet<r>` (a NO ask at 0.45 for 90 s: edge 0.04, 20 sets);
/// - a negative-risk window over `a<r>`, `b<r>`, `c<r>` (YES asks 0.35 each, NO asks 0.80;
///   `b<r>`'s YES ask at 0.25 for 45 s: edge 0.05, 15 sets; no binary edge, 0.25 + 0.80);
/// - $15,000 bought by `0xwhale<r>`, a wallet never seen;
/// - a 12-point rise of `mover<r>`'s YES within two minutes.
pub(crate) fn world(background: usize, fills: usize, minutes: i64, rounds: usize) -> World {
    let start_ms: i64 = 1_780_000_000_000;
    let span_ms = minutes * 60_000;
    let names: Vec<String> = (0..background)
        .map(|index| format!("bg{index:03}"))
        .collect();
    let mut markets: Vec<Market> = names.iter().map(|name| market(name, None)).collect();
    let mut events = Vec::new();
    let mut snapshots = Vec::new();
    for name in &names {
        snapshots.push(snapshot(&format!("{name}-yes"), start_ms, 490_000, 510_000));
        snapshots.push(snapshot(&format!("{name}-no"), start_ms, 490_000, 510_000));
    }
    for round in 0..rounds {
        let (quiet, mover, event) = (
            format!("quiet{round}"),
            format!("mover{round}"),
            format!("election{round}"),
        );
        markets.push(market(&quiet, None));
        markets.push(market(&mover, None));
        snapshots.push(snapshot(
            &format!("{mover}-yes"),
            start_ms,
            490_000,
            510_000,
        ));
        snapshots.push(snapshot(&format!("{mover}-no"), start_ms, 490_000, 510_000));
        snapshots.push(snapshot(
            &format!("{quiet}-yes"),
            start_ms,
            400_000,
            510_000,
        ));
        snapshots.push(snapshot(&format!("{quiet}-no"), start_ms, 400_000, 510_000));
        let legs = ["a", "b", "c"].map(|leg| format!("{leg}{round}"));
        for leg in &legs {
            markets.push(market(leg, Some(&event)));
            snapshots.push(snapshot(&format!("{leg}-yes"), start_ms, 200_000, 350_000));
            snapshots.push(snapshot(&format!("{leg}-no"), start_ms, 600_000, 800_000));
        }
        events.push(Event {
            event_id: event,
            neg_risk: true,
            market_condition_ids: legs.iter().map(|leg| format!("0x{leg}")).collect(),
            ..samples::event()
        });
    }

    // Background: deterministic, spread evenly over the span.
    let mut changes = Vec::new();
    let mut trades = Vec::new();
    let wallets: Vec<String> = (0..40).map(|index| format!("0xwallet{index:02}")).collect();
    for (index, wallet) in wallets.iter().enumerate() {
        // Every background wallet is known from the first minute on, with enough fills.
        for fill in 0..6 {
            let at_ms = start_ms + i64::try_from(index * 6 + fill).unwrap_or(0) * 100;
            trades.push(trade(
                format!("seed-{index}-{fill}"),
                wallet,
                &names[index % background],
                at_ms,
                500_000,
                10_000_000,
            ));
        }
    }
    let step_ms = (span_ms / i64::try_from(fills.max(1)).unwrap_or(1)).max(1);
    for index in 0..fills {
        let at_ms = start_ms + 60_000 + i64::try_from(index).unwrap_or(0) * step_ms;
        let name = &names[index % background];
        let price = 480_000 + i64::try_from(index * 7 % 5).unwrap_or(0) * 10_000;
        let size = 1_000_000 + i64::try_from(index * 13 % 100).unwrap_or(0) * 1_000_000;
        trades.push(trade(
            format!("bg-{index}"),
            &wallets[index * 7 % wallets.len()],
            name,
            at_ms,
            price,
            size,
        ));
        let side = if index % 2 == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let outcome = if index % 4 < 2 { "yes" } else { "no" };
        let price = if side == Side::Buy { 490_000 } else { 510_000 };
        changes.push(change(
            &format!("{name}-{outcome}"),
            at_ms + 1,
            side,
            price,
            size * 3,
        ));
    }

    let mut planted = Vec::new();
    let round_span_ms = span_ms / i64::try_from(rounds + 1).unwrap_or(1);
    for round in 0..rounds {
        let at = start_ms + round_span_ms * i64::try_from(round + 1).unwrap_or(0);
        let (quiet, mover) = (format!("quiet{round}"), format!("mover{round}"));
        let binary_open = at;
        let binary_close = at + 90_000;
        let no_token = format!("{quiet}-no");
        changes.push(change(
            &no_token,
            binary_open,
            Side::Sell,
            450_000,
            20_000_000,
        ));
        changes.push(change(&no_token, binary_close, Side::Sell, 450_000, 0));
        let neg_open = at + 10_000;
        let neg_close = neg_open + 45_000;
        let b_yes = format!("b{round}-yes");
        changes.push(change(&b_yes, neg_open, Side::Sell, 250_000, 15_000_000));
        changes.push(change(&b_yes, neg_close, Side::Sell, 250_000, 0));
        let whale = format!("0xwhale{round}");
        let whale_ms = at + 20_000;
        trades.push(trade(
            format!("whale-fill-{round}"),
            &whale,
            &quiet,
            whale_ms,
            500_000,
            30_000_000_000,
        ));
        let move_start = at + 30_000;
        for (offset, price) in [(0, 500_000), (60_000, 550_000), (120_000, 620_000)] {
            trades.push(trade(
                format!("{mover}-{offset}"),
                "0xwallet00",
                &mover,
                move_start + offset,
                price,
                10_000_000,
            ));
        }
        planted.extend([
            Planted {
                kind: SignalKind::BinaryArbitrage,
                subject: format!("0x{quiet}:buy_every_leg"),
                window_start_ms: binary_open,
                window_end_ms: binary_close,
                inputs: vec![
                    ("max_edge", "0.040000".to_owned()),
                    ("size_at_max_edge", "20.000000".to_owned()),
                    ("duration_ms", "90000".to_owned()),
                ],
            },
            Planted {
                kind: SignalKind::NegRiskArbitrage,
                subject: format!("0xnegelection{round}:buy_every_leg"),
                window_start_ms: neg_open,
                window_end_ms: neg_close,
                inputs: vec![
                    ("max_edge", "0.050000".to_owned()),
                    ("size_at_max_edge", "15.000000".to_owned()),
                    ("legs", "3".to_owned()),
                    ("duration_ms", "45000".to_owned()),
                ],
            },
            Planted {
                kind: SignalKind::LargeTradeNewWallet,
                subject: whale,
                window_start_ms: whale_ms,
                window_end_ms: whale_ms,
                inputs: vec![
                    ("notional", "15000.000000".to_owned()),
                    ("prior_fills", "0".to_owned()),
                ],
            },
            Planted {
                kind: SignalKind::PriceMove,
                subject: format!("{mover}-yes"),
                window_start_ms: move_start,
                window_end_ms: move_start + 120_000,
                inputs: vec![
                    ("from_price", "0.500000".to_owned()),
                    ("to_price", "0.620000".to_owned()),
                    ("price_basis", "last_trade".to_owned()),
                ],
            },
        ]);
    }
    changes.sort_by_key(|change| change.timestamp_ms);
    trades.sort_by_key(|trade| trade.timestamp_ms);
    World {
        markets,
        events,
        snapshots,
        changes,
        trades,
        planted,
    }
}

/// A $15,000 fill by a wallet never seen, in a market of the world, stamped an hour after
/// now: published now, it is an hour ahead of its publishing, which no true fill is.
pub(crate) fn whale_from_the_future(world: &World) -> Trade {
    let market = world
        .trades
        .first()
        .map(|trade| trade.token_id.trim_end_matches("-yes").to_owned())
        .unwrap_or_default();
    trade(
        "whale-from-the-future".to_owned(),
        "0xfuture",
        &market,
        polytape_model::now_ms() + 3_600_000,
        500_000,
        30_000_000_000,
    )
}

/// The markets and events: produced before the service starts.
pub(crate) async fn produce_reference(names: &TopicNames, world: &World) {
    produce(names, &world.markets).await;
    produce(names, &world.events).await;
}

/// The signals service against the stack under `names`' prefix, checkpointing every second.
pub(crate) fn start_service(names: &TopicNames) -> RunningService {
    let admin = free_local_addr();
    let mut environment = stack_env();
    environment.push(("POLYTAPE_TOPIC_PREFIX", names.prefix().to_owned()));
    environment.push(("POLYTAPE_SIGNALS_ADMIN_ADDR", admin.to_string()));
    environment.push(("POLYTAPE_SIGNALS_CHECKPOINT_INTERVAL", "1s".to_owned()));
    environment.push(("POLYTAPE_LOG_LEVEL", "warn".to_owned()));
    RunningService::start(Path::new(BINARY), &environment, admin)
}

/// Waits until the service has committed every input and holds no event back (its
/// `held_events` gauge, set at each checkpoint, is 0): everything it read was judged.
pub(crate) fn wait_caught_up(names: &TopicNames, service: &RunningService, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let behind = records_behind(&group_id(names), names, &INPUTS);
        let held = service.get("/metrics").and_then(|(_, body)| {
            body.lines()
                .find(|line| line.starts_with("polytape_signals_state{kind=\"held_events\"}"))
                .and_then(|line| line.split_whitespace().last())
                .and_then(|value| value.parse::<f64>().ok())
        });
        if behind == 0 && held == Some(0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the service is {behind} records behind, holding {held:?} events, after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// What ClickHouse keeps of the signals topic after FINAL: per id, the closed record over
/// the open one (`revision`), the later one on a tie.
pub(crate) async fn final_signals(names: &TopicNames) -> BTreeMap<String, Signal> {
    let mut kept: BTreeMap<String, Signal> = BTreeMap::new();
    for (_, _, signal) in positioned_records::<Signal>(names).await {
        let replace = kept.get(&signal.signal_id).is_none_or(|existing| {
            signal.window_end_ms.is_some() >= existing.window_end_ms.is_some()
        });
        if replace {
            kept.insert(signal.signal_id.clone(), signal);
        }
    }
    kept
}
