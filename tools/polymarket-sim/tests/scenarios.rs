//! Planted signal scenarios (`--scenarios live`): a round plants every kind on markets of its
//! own, each ends, and the truth says what each must raise; the same seed plants the same.

mod common;

use std::time::Duration;

use common::*;
use rust_decimal::Decimal;
use serde_json::Value;

async fn planted_world() -> Value {
    let mut config = config(200, 1);
    config.scenario_every = Some(Duration::from_secs(600));
    let sim = start(config).await;
    let client = client();
    // One millisecond per operation: the round starts 30 s into the live phase and its last
    // step is at most 35 s after that.
    advance(&client, &sim, 70_000).await;
    let truth = get_json(&client, &format!("{}/_sim/truth/signals", sim.base_url())).await;
    sim.shutdown().await;
    truth
}

fn expectations<'a>(truth: &'a Value, scenario_kind: &str) -> Vec<&'a Value> {
    truth["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .filter(|scenario| scenario["kind"] == scenario_kind)
        .flat_map(|scenario| scenario["expected"].as_array().expect("expected").iter())
        .collect()
}

fn input(expected: &Value, name: &str) -> Decimal {
    dec(expected["inputs"][name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {expected}")))
}

#[tokio::test]
async fn a_round_plants_every_kind_and_says_what_each_must_raise() {
    let truth = planted_world().await;
    let scenarios = truth["scenarios"].as_array().expect("scenarios");
    let kinds: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    for kind in polymarket_sim::SCENARIO_KINDS {
        let scenario = scenarios
            .iter()
            .find(|scenario| scenario["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} planted: {kinds:?}"));
        assert_eq!(scenario["state"], "done", "{scenario}");
        let planted = scenario["expected"]
            .as_array()
            .expect("expected")
            .iter()
            .filter(|expected| expected["role"] == "planted")
            .count();
        assert!(
            planted >= 1,
            "{kind} expects nothing it planted: {scenario}"
        );
    }

    // The whale and its counterparty are both fresh wallets trading over 12,500 USDC.
    let whales: Vec<&Value> = expectations(&truth, "whale_from_new_wallets")
        .into_iter()
        .filter(|expected| expected["kind"] == "LARGE_TRADE_NEW_WALLET")
        .collect();
    assert_eq!(whales.len(), 2, "{whales:?}");
    for whale in &whales {
        assert!(input(whale, "notional") >= dec("12500"), "{whale}");
        assert_eq!(whale["inputs"]["prior_fills"], "0");
    }
    assert_ne!(whales[0]["subject"], whales[1]["subject"]);

    let moves = expectations(&truth, "price_move");
    let planted_move = moves
        .iter()
        .find(|expected| expected["kind"] == "PRICE_MOVE")
        .expect("a planted price move");
    assert!(input(planted_move, "move") >= dec("0.10"), "{planted_move}");

    // Three ticks through a fee-free book: 0.03 both ways, open ten seconds.
    let windows = expectations(&truth, "binary_window");
    assert_eq!(windows.len(), 2, "{windows:?}");
    for window in &windows {
        assert_eq!(input(window, "max_edge"), dec("0.03"), "{window}");
        assert_eq!(window["inputs"]["duration_ms"], "10000");
    }
    // Fifteen ticks through a book charging 10 %: what is left after the fees.
    for window in expectations(&truth, "binary_window_with_fees") {
        let edge = input(window, "max_edge");
        assert!(edge < dec("0.15") && edge >= dec("0.005"), "{window}");
    }
    let neg_risk = expectations(&truth, "neg_risk_window");
    let window = neg_risk
        .iter()
        .find(|expected| expected["kind"] == "NEG_RISK_ARBITRAGE")
        .expect("a negative-risk window");
    assert!(input(window, "max_edge") >= dec("0.02"), "{window}");
    assert!(
        window["subject"]
            .as_str()
            .is_some_and(|subject| subject.ends_with(":buy_every_leg"))
    );

    let spikes = expectations(&truth, "volume_spike");
    let spike = spikes
        .iter()
        .find(|expected| expected["kind"] == "VOLUME_SPIKE")
        .expect("a planted volume spike");
    assert!(input(spike, "notional") >= dec("5000"), "{spike}");
    // No trade of the burst is a large one.
    assert!(
        spikes
            .iter()
            .all(|expected| expected["kind"] != "LARGE_TRADE_NEW_WALLET"),
        "{spikes:?}"
    );
}

#[tokio::test]
async fn the_same_seed_plants_the_same_scenarios() {
    let first = planted_world().await;
    let second = planted_world().await;
    assert_eq!(first, second);
}

#[tokio::test]
async fn without_scenarios_nothing_is_planted() {
    let sim = start(config(20, 0)).await;
    let client = client();
    advance(&client, &sim, 10_000).await;
    let truth = get_json(&client, &format!("{}/_sim/truth/signals", sim.base_url())).await;
    assert_eq!(truth["enabled"], false);
    assert_eq!(truth["scenarios"].as_array().map(Vec::len), Some(0));
    sim.shutdown().await;
}

/// A planted binary window crosses its market's book for ten seconds (an ask through the
/// bid). Every endpoint a collector reads must serve it like any other book: the spread of a
/// crossed book once made Gamma's and CLOB's handlers subtract below zero and panic.
#[tokio::test]
async fn a_crossed_book_of_a_planted_window_is_served_like_any_other() {
    let mut config = config(200, 1);
    config.scenario_every = Some(Duration::from_secs(600));
    let sim = start(config).await;
    let client = client();
    let base = sim.base_url();
    advance(&client, &sim, 30_000).await;
    let mut crossed_seen = 0;
    for _ in 0..16 {
        advance(&client, &sim, 1_000).await;
        let truth = get_json(&client, &format!("{base}/_sim/truth/signals")).await;
        let planted: Vec<String> = truth["scenarios"]
            .as_array()
            .expect("scenarios")
            .iter()
            .filter(|scenario| scenario["kind"] == "binary_window")
            .flat_map(|scenario| {
                scenario["condition_ids"]
                    .as_array()
                    .expect("condition ids")
                    .iter()
            })
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let markets = get_json(&client, &format!("{base}/gamma/markets?limit=500")).await;
        get_json(&client, &format!("{base}/gamma/events?limit=500")).await;
        for market in markets.as_array().expect("markets") {
            let Some(condition_id) = market["conditionId"].as_str() else {
                continue;
            };
            if !planted.iter().any(|planted| planted == condition_id) {
                continue;
            }
            let tokens: Vec<String> = match &market["clobTokenIds"] {
                Value::String(text) => serde_json::from_str(text).expect("token ids"),
                _ => serde_json::from_value(market["positionIds"].clone()).expect("position ids"),
            };
            for token in tokens {
                get_json(&client, &format!("{base}/clob/spread?token_id={token}")).await;
                let book = get_json(&client, &format!("{base}/clob/book?token_id={token}")).await;
                let best = |side: &str, pick: fn(Decimal, Decimal) -> Decimal| {
                    book[side]
                        .as_array()
                        .expect("levels")
                        .iter()
                        .map(|level| dec(level["price"].as_str().expect("price")))
                        .reduce(pick)
                };
                if let (Some(bid), Some(ask)) =
                    (best("bids", Decimal::max), best("asks", Decimal::min))
                    && bid > ask
                {
                    crossed_seen += 1;
                }
            }
        }
    }
    assert!(
        crossed_seen > 0,
        "no crossed book was served during the rounds"
    );
    sim.shutdown().await;
}
