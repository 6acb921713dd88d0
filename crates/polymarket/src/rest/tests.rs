//! Table-driven tests over the brief's payload examples (shared/briefs/polymarket-api.md) and
//! the quirks it lists.

use std::str::FromStr;

use serde_json::json;

use super::*;

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// Brief 3.1, live capture (March 2026).
fn brief_trade() -> Value {
    json!({"proxyWallet": "0x569f366e7087d8cc66d8ec55cdefd5577dd30056", "side": "BUY",
      "asset": "92071830247158429266517632633283963577030982596600419669075490843953894242121",
      "conditionId": "0x57373f395332d0c8be1ab99acd941a216594a9007320343213949fd7d8a49b24",
      "size": 32.155171, "price": 0.5799999944021446, "timestamp": 1774020191,
      "title": "Bitcoin Up or Down - March 20, 11AM ET", "slug": "bitcoin-up-or-down-march-20-2026-11am-et",
      "icon": "https://polymarket-upload.s3.us-east-2.amazonaws.com/BTC+fullsize.png",
      "eventSlug": "bitcoin-up-or-down-march-20-2026-11am-et", "outcome": "Down", "outcomeIndex": 1,
      "name": "", "pseudonym": "", "bio": "", "profileImage": "", "profileImageOptimized": "",
      "transactionHash": "0x09a42928b2f7a7da67f4d020c99800d3f7665c3f9c7b011deeed8ae37e18ffed"})
}

fn with(mut row: Value, key: &str, value: Value) -> Value {
    row[key] = value;
    row
}

fn without(mut row: Value, key: &str) -> Value {
    row.as_object_mut().unwrap().remove(key);
    row
}

#[test]
fn the_brief_trade_parses_exactly() {
    let trade = trade_row(&brief_trade(), 7, None).unwrap();
    assert_eq!(trade.price, dec("0.58"));
    assert_eq!(trade.size, dec("32.155171"));
    assert_eq!(trade.timestamp_ms, 1_774_020_191_000);
    assert_eq!(trade.side, Side::Buy);
    assert_eq!(trade.outcome.as_deref(), Some("Down"));
    assert_eq!(trade.outcome_index, Some(1));
    assert_eq!(trade.source, TradeSource::DataApiV1);
    assert_eq!(trade.ingested_ms, 7);
    let expected = TradeIdentity {
        transaction_hash: "0x09a42928b2f7a7da67f4d020c99800d3f7665c3f9c7b011deeed8ae37e18ffed",
        token_id: "92071830247158429266517632633283963577030982596600419669075490843953894242121",
        side: Side::Buy,
        size: dec("32.155171"),
        price: dec("0.58"),
        proxy_wallet: "0x569f366e7087d8cc66d8ec55cdefd5577dd30056",
    }
    .trade_id();
    assert_eq!(trade.trade_id, expected);
}

/// Brief 3.6: the v2 example (`/v2/trades`, snake_case), the same fill as the v1 capture.
fn brief_trade_v2() -> Value {
    json!({"proxy_wallet": "0x569f366e7087d8cc66d8ec55cdefd5577dd30056", "side": "BUY",
      "token_id": "92071830247158429266517632633283963577030982596600419669075490843953894242121",
      "condition_id": "0x57373f395332d0c8be1ab99acd941a216594a9007320343213949fd7d8a49b24",
      "size": 32.155171, "price": 0.58, "timestamp": 1774020191, "title": "Bitcoin Up or Down - March 20, 11AM ET",
      "slug": "bitcoin-up-or-down-march-20-2026-11am-et", "icon": "https://…",
      "event_slug": "bitcoin-up-or-down-march-20-2026-11am-et", "outcome": "Down", "outcome_index": 1,
      "name": "", "pseudonym": "", "bio": "", "profile_image": "", "profile_image_optimized": "",
      "transaction_hash": "0x09a42928b2f7a7da67f4d020c99800d3f7665c3f9c7b011deeed8ae37e18ffed"})
}

/// A v2 row is the same fill, with the same id, as its v1 row: a deployment that switches
/// tapes publishes nothing twice. Only the source differs.
#[test]
fn a_v2_row_is_the_same_fill_as_its_v1_row() {
    let v1 = trade_row(&brief_trade(), 7, None).unwrap();
    let v2 = trade_row(&brief_trade_v2(), 7, None).unwrap();
    assert_eq!(v2.source, TradeSource::DataApiV2);
    assert_eq!(
        Trade {
            source: TradeSource::DataApiV1,
            ..v2.clone()
        },
        v1
    );
    let unlabeled = trade_row(
        &with(brief_trade_v2(), "outcome_index", json!(999)),
        0,
        None,
    );
    assert_eq!(
        unlabeled.unwrap().outcome_index,
        None,
        "999 means unlabeled"
    );
    let error = trade_row(&without(brief_trade_v2(), "transaction_hash"), 0, None).unwrap_err();
    assert!(error.to_string().contains("transaction_hash"), "{error}");
    let read = trade_read(
        &[
            with(brief_trade_v2(), "condition_id", json!("0xABC")),
            json!({"token_id": "1"}),
        ],
        (1_774_020_191, 1_774_020_191),
        0,
        |_| None,
    );
    assert_eq!(read.trades.len(), 1);
    assert_eq!(read.refused.len(), 1);
    assert_eq!(read.trades[0].condition_id, "0xabc");
}

/// The v2 envelope: rows and the next cursor; `has_more` without a cursor is an error, not a
/// quiet last page.
#[test]
fn v2_pages_carry_their_cursor() {
    let page = cursor_page(
        br#"{"data":[{"a":1}],"pagination":{"limit":1,"offset":0,"has_more":true,"next_cursor":"eyJ2IjoxfQ.sig"}}"#,
    )
    .unwrap();
    assert_eq!(page.rows, vec![json!({"a": 1})]);
    assert_eq!(page.next_cursor.as_deref(), Some("eyJ2IjoxfQ.sig"));
    let last = cursor_page(br#"{"data":[],"pagination":{"has_more":false,"next_cursor":"x"}}"#);
    assert_eq!(last.unwrap().next_cursor, None);
    for broken in [
        &br#"{"data":[],"pagination":{"has_more":true,"next_cursor":null}}"#[..],
        br#"{"data":[],"pagination":{"has_more":true,"next_cursor":""}}"#,
        br#"[{"a":1}]"#,
        br#"{"data":[]}"#,
    ] {
        assert!(
            cursor_page(broken).is_err(),
            "{}",
            String::from_utf8_lossy(broken)
        );
    }
}

/// Every quirk that must still give the same fill (same id) or a clean refusal.
#[test]
fn trade_quirks() {
    let id = trade_row(&brief_trade(), 0, None).unwrap().trade_id;
    let same_fill = [
        (
            "price as a string (schema drift)",
            with(brief_trade(), "price", json!("0.5799999944021446")),
        ),
        (
            "size as a string",
            with(brief_trade(), "size", json!("32.155171")),
        ),
        (
            "timestamp as a string",
            with(brief_trade(), "timestamp", json!("1774020191")),
        ),
        (
            "timestamp in ms",
            with(brief_trade(), "timestamp", json!(1_774_020_191_000_i64)),
        ),
        (
            "upper-case hash",
            with(
                brief_trade(),
                "transactionHash",
                json!("0x09A42928B2F7A7DA67F4D020C99800D3F7665C3F9C7B011DEEED8AE37E18FFED"),
            ),
        ),
        ("lower-case side", with(brief_trade(), "side", json!("buy"))),
        (
            "unknown extra field",
            with(brief_trade(), "_simUnknownField", json!({"a": 1})),
        ),
        (
            "missing optional icon/name/pseudonym",
            without(without(without(brief_trade(), "icon"), "name"), "pseudonym"),
        ),
        ("missing outcome", without(brief_trade(), "outcome")),
    ];
    for (case, row) in same_fill {
        let trade = trade_row(&row, 0, None).unwrap_or_else(|error| panic!("{case}: {error}"));
        assert_eq!(trade.trade_id, id, "{case}");
        assert_eq!(trade.timestamp_ms, 1_774_020_191_000, "{case}");
    }
    let refused = [
        (
            "no transaction hash",
            without(brief_trade(), "transactionHash"),
            "transactionHash",
        ),
        (
            "null price (drift of a string)",
            with(brief_trade(), "price", Value::Null),
            "price",
        ),
        (
            "price above 1",
            with(brief_trade(), "price", json!(1.5)),
            "price",
        ),
        ("zero size", with(brief_trade(), "size", json!(0)), "size"),
        (
            "garbage side",
            with(brief_trade(), "side", json!("HOLD")),
            "side",
        ),
        (
            "non-numeric asset",
            with(brief_trade(), "asset", json!("abc")),
            "asset",
        ),
        (
            "no timestamp",
            without(brief_trade(), "timestamp"),
            "timestamp",
        ),
    ];
    for (case, row, field) in refused {
        let error = trade_row(&row, 0, None).unwrap_err().to_string();
        assert!(error.contains(field), "{case}: {error}");
    }
    assert_eq!(
        trade_row(&json!([1]), 0, None).unwrap_err(),
        RowError::NotAnObject
    );
}

#[test]
fn dust_fill_prices_snap_to_the_tick_grid() {
    // 0.073097 shares at 0.94: notional 0.068711 (6 dp) / size = 0.93999...7.
    let row = with(
        with(brief_trade(), "size", json!(0.073097)),
        "price",
        json!(0.068711 / 0.073097),
    );
    assert_eq!(trade_row(&row, 0, None).unwrap().price, dec("0.94"));
}

/// Dust fills (< 0.01 shares) seen on the simulator's tape: the float is off by more than half
/// a 0.0001 step; the market's tick and the notional recover the price.
#[test]
fn dust_fill_prices_are_recovered_from_the_notional() {
    let cases = [
        // (price, size, tick)
        ("0.64", "0.000742", Some("0.01")),
        ("0.63", "0.002464", Some("0.01")),
        ("0.63", "0.000741", None),
        ("0.965", "0.000742", Some("0.01")),
        ("0.0025", "0.004", Some("0.0025")),
        ("0.5833", "0.012345", None),
    ];
    for (price, size, tick) in cases {
        let size = dec(size);
        let notional = (dec(price) * size).round_dp(6);
        let reported: f64 = (notional.to_string().parse::<f64>().unwrap())
            / size.to_string().parse::<f64>().unwrap();
        let recovered = fill_price(reported, size, tick.map(dec)).unwrap();
        assert_eq!(
            recovered,
            dec(price),
            "{price} × {size} reported as {reported}"
        );
        // The identity price (no tick) recovers them too, so their ids are the truth's.
        assert_eq!(
            fill_price(reported, size, None).unwrap(),
            dec(price),
            "identity price of {price} × {size}"
        );
    }
}

/// 0.0005 shares at 0.5025 on a 0.0025-tick market: notional 0.00025125 → 0.000251, reported
/// as 0.502 (`0.5019999999999999`). Which grid point is "the" price depends on the tick.
fn tick_sensitive_dust_row() -> Value {
    with(
        with(brief_trade(), "size", json!(0.0005)),
        "price",
        json!(0.000251 / 0.0005),
    )
}

/// One fill read under two tick sizes (the market's tick changed between polls, or the crawl
/// had not seen the market yet) is one trade: the id hashes the row's own values only.
#[test]
fn the_trade_id_does_not_depend_on_the_tick() {
    let row = tick_sensitive_dust_row();
    let fine = trade_row(&row, 0, Some(dec("0.0025"))).unwrap();
    let coarse = trade_row(&row, 0, Some(dec("0.01"))).unwrap();
    let unknown = trade_row(&row, 0, None).unwrap();
    // The stored price still uses the tick (that is what disambiguates dust) …
    assert_eq!(fine.price, dec("0.5025"));
    assert_eq!(coarse.price, dec("0.502"));
    // … so an id over the stored price would split this fill in two; the id does not.
    assert_eq!(fine.trade_id, coarse.trade_id);
    assert_eq!(fine.trade_id, unknown.trade_id);
    let identity = TradeIdentity {
        transaction_hash: &fine.transaction_hash,
        token_id: &fine.token_id,
        side: fine.side,
        size: fine.size,
        price: fill_price(0.000251 / 0.0005, dec("0.0005"), None).unwrap(),
        proxy_wallet: &fine.proxy_wallet,
    };
    assert_eq!(fine.trade_id, identity.trade_id());
    // Non-dust fills: the id is the one it always was (nearest 0.0001 point).
    for tick in [None, Some(dec("0.01")), Some(dec("0.001"))] {
        assert_eq!(
            trade_row(&brief_trade(), 0, tick).unwrap().trade_id,
            trade_row(&brief_trade(), 0, None).unwrap().trade_id
        );
    }
}

/// A price sent as text (schema drift on v1; text on v2) is the same fill as the number:
/// same id and price, dust fills included. Reading the text as an exact decimal gave a dust
/// fill a second id (found by the collector's fault run, when a drifted page held one).
#[test]
fn a_price_in_text_is_the_same_fill_as_the_number() {
    let dust = tick_sensitive_dust_row();
    let plain = brief_trade();
    for (row, tick) in [
        (&dust, None),
        (&dust, Some(dec("0.0025"))),
        (&plain, None),
        (&plain, Some(dec("0.01"))),
    ] {
        let number = trade_row(row, 0, tick).unwrap();
        let text_price = row["price"].as_f64().unwrap().to_string();
        let text = trade_row(&with(row.clone(), "price", json!(text_price)), 0, tick).unwrap();
        assert_eq!(
            text.trade_id, number.trade_id,
            "{text_price} at tick {tick:?}"
        );
        assert_eq!(text.price, number.price, "{text_price} at tick {tick:?}");
    }
    let garbage = with(plain, "price", json!("about half"));
    assert!(trade_row(&garbage, 0, None).is_err());
}

fn tx_fill(tx: &str, size: f64, timestamp: i64) -> Value {
    with(
        with(
            with(brief_trade(), "transactionHash", json!(tx)),
            "size",
            json!(size),
        ),
        "timestamp",
        json!(timestamp),
    )
}

const BRIEF_SECOND: i64 = 1_774_020_191;
const WHOLE_DAY: (i64, i64) = (BRIEF_SECOND - 86_400, BRIEF_SECOND + 86_400);

fn ids(read: &TradeRead) -> Vec<String> {
    read.trades
        .iter()
        .map(|trade| trade.trade_id.clone())
        .collect()
}

/// Two fills of one wallet in one transaction with equal side, size and price are two
/// identical rows and two trades; reading the same rows again gives the same ids.
#[test]
fn identical_rows_are_distinct_trades_with_stable_ids() {
    let other = tx_fill("0xaa", 32.155171, BRIEF_SECOND);
    let page = vec![brief_trade(), other.clone(), brief_trade(), brief_trade()];
    let read = trade_read(&page, WHOLE_DAY, 0, |_| None);
    assert!(read.refused.is_empty(), "{:?}", read.refused);
    let first = ids(&read);
    assert_eq!(first.len(), 4);
    let distinct: std::collections::HashSet<&String> = first.iter().collect();
    assert_eq!(
        distinct.len(),
        4,
        "identical rows must not share an id: {first:?}"
    );
    // The first occurrence keeps the id a lone row has; the others are numbered.
    let plain = trade_row(&brief_trade(), 0, None).unwrap().trade_id;
    assert_eq!(first[0], plain);
    assert_eq!(first[2], occurrence_trade_id(&plain, 1));
    assert_eq!(first[3], occurrence_trade_id(&plain, 2));
    assert_eq!(first[1], trade_row(&other, 0, None).unwrap().trade_id);
    // Re-reading the page (the next poll) gives the same ids.
    assert_eq!(ids(&trade_read(&page, WHOLE_DAY, 5, |_| None)), first);
    // A read holding only the first rows of that second (a page boundary inside it) numbers
    // them as the complete read does, so skipping the ids already sent sends the rest once.
    let partial = trade_read(&page[..3], WHOLE_DAY, 0, |_| None);
    assert_eq!(ids(&partial), first[..3].to_vec());
}

/// A row outside the requested window, or without a readable timestamp, is refused with the
/// reason and does not count as the read's oldest second.
#[test]
fn rows_outside_the_window_are_refused_and_do_not_steer() {
    let window = (BRIEF_SECOND - 10, BRIEF_SECOND);
    let page = vec![
        brief_trade(),
        tx_fill("0xbb", 1.0, BRIEF_SECOND - 5),
        tx_fill("0xcc", 1.0, 1),
        tx_fill("0xdd", 1.0, BRIEF_SECOND + 3_600),
        with(tx_fill("0xee", 1.0, 0), "timestamp", json!("soon")),
        without(tx_fill("0xff", 1.0, BRIEF_SECOND - 7), "side"),
    ];
    let read = trade_read(&page, window, 0, |_| None);
    assert_eq!(read.trades.len(), 2);
    assert_eq!(read.oldest, Some(BRIEF_SECOND - 5));
    assert_eq!(read.refused.len(), 4);
    let reasons: Vec<&str> = read
        .refused
        .iter()
        .map(|refused| refused.reason.as_str())
        .collect();
    assert!(
        reasons[0].contains("outside the requested window"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("outside the requested window"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("timestamp"), "{reasons:?}");
    assert!(reasons[3].contains("side"), "{reasons:?}");
    // Only the in-window refusal has a position on the tape.
    let seconds: Vec<Option<i64>> = read.refused.iter().map(|refused| refused.second).collect();
    assert_eq!(seconds, vec![None, None, None, Some(BRIEF_SECOND - 7)]);
    assert_eq!(read.oldest_refused, Some(BRIEF_SECOND - 7));
    assert!(read.refused.iter().all(|refused| refused.condition_id
        == "0x57373f395332d0c8be1ab99acd941a216594a9007320343213949fd7d8a49b24"));
}

#[test]
fn pages() {
    assert_eq!(array_page(b"[]").unwrap(), Vec::<Value>::new());
    assert_eq!(array_page(br#"[{"a":1}]"#).unwrap().len(), 1);
    // Truncated and malformed bodies (the simulator's faults) are page errors.
    assert!(array_page(br#"[{"a":1},{"#).is_err());
    assert!(array_page(b"[{\"a\":1\"\0,}{").is_err());
    assert!(array_page(br#"{"error":"x"}"#).is_err());
    let (rows, cursor) = keyset_page(
        br#"{"markets":[{"id":"1"}],"next_cursor":"abc"}"#,
        "markets",
    )
    .unwrap();
    assert_eq!((rows.len(), cursor.as_deref()), (1, Some("abc")));
    // next_cursor is omitted on the last page.
    let (_, cursor) = keyset_page(br#"{"events":[]}"#, "events").unwrap();
    assert_eq!(cursor, None);
    let (_, cursor) =
        clob_page(br#"{"limit":1000,"count":0,"next_cursor":"LTE=","data":[]}"#).unwrap();
    assert_eq!(cursor, None);
    let (_, cursor) =
        clob_page(br#"{"limit":1000,"count":0,"next_cursor":"MTAwMA==","data":[]}"#).unwrap();
    assert_eq!(cursor.as_deref(), Some("MTAwMA=="));
}

/// Brief 2.4, live capture 2025-12-31.
fn brief_market() -> Value {
    json!({"id": "1066851", "question": "Bitcoin Up or Down - December 31, 12:00PM-12:15PM ET",
     "conditionId": "0x2e6af11e4b853b05ba7135239b21d77e808889b6ce1e735de856c94c4e5b5fce",
     "slug": "btc-updown-15m-1767200400", "resolutionSource": "https://data.chain.link/streams/btc-usd",
     "endDate": "2025-12-31T17:15:00Z", "liquidity": "20579.7452", "startDate": "2025-12-30T17:10:15.861305Z",
     "outcomes": "[\"Up\", \"Down\"]", "outcomePrices": "[\"0.585\", \"0.415\"]", "volume": "92509.470055",
     "active": true, "closed": false, "marketMakerAddress": "", "createdAt": "2025-12-30T17:01:49.027357Z",
     "updatedAt": "2025-12-31T17:07:53.929803Z", "new": false, "featured": false, "archived": false,
     "restricted": true, "groupItemThreshold": "0",
     "questionID": "0xf69e4e6eb29d29bd1852208e2a27f652e16053fdfdad35ce6953e08f0fb08424",
     "enableOrderBook": true, "orderPriceMinTickSize": 0.01, "orderMinSize": 5, "volumeNum": 92509.470055,
     "liquidityNum": 20579.7452, "endDateIso": "2025-12-31", "startDateIso": "2025-12-30", "hasReviewedDates": true,
     "volume24hr": 815.1150849999999,
     "clobTokenIds": "[\"8851848546962572193739008211889046036776198486765606333032192644001246174440\", \"10181859819235412241349111952383458602722012323104397550162049365057126390549\"]",
     "acceptingOrders": true, "negRisk": false, "umaResolutionStatuses": "[]", "rfqEnabled": false,
     "feesEnabled": false, "spread": 0.01, "lastTradePrice": 0.58, "bestBid": 0.58, "bestAsk": 0.59})
}

#[test]
fn the_brief_market_parses() {
    let market = gamma_market(&brief_market()).unwrap();
    assert_eq!(market.gamma_market_id.as_deref(), Some("1066851"));
    assert_eq!(market.tokens.len(), 2);
    assert_eq!(market.tokens[0].outcome, "Up");
    assert_eq!(
        market.tokens[1].token_id,
        "10181859819235412241349111952383458602722012323104397550162049365057126390549"
    );
    assert_eq!(market.tokens[1].outcome_index, 1);
    assert_eq!(market.tokens[0].winner, None);
    assert_eq!(market.tick_size, Some(dec("0.01")));
    assert_eq!(market.min_order_size, Some(dec("5")));
    assert_eq!(market.volume, Some(dec("92509.470055")));
    assert_eq!(market.liquidity, Some(dec("20579.7452")));
    assert_eq!(market.end_ms, Some(1_767_201_300_000));
    assert_eq!(market.start_ms, Some(1_767_114_615_861));
    assert_eq!(market.protocol_version, None);
    assert!(market.active && !market.closed && market.accepting_orders && market.enable_order_book);
    assert_eq!(market.fees_enabled, Some(false));
}

#[test]
fn market_quirks() {
    // v2: a real positionIds array, no clobTokenIds.
    let v2 = with(
        with(
            without(brief_market(), "clobTokenIds"),
            "positionIds",
            json!(["7132", "5211"]),
        ),
        "version",
        json!("v2"),
    );
    let market = gamma_market(&v2).unwrap();
    assert_eq!(market.protocol_version.as_deref(), Some("v2"));
    assert_eq!(
        market
            .tokens
            .iter()
            .map(|token| token.token_id.as_str())
            .collect::<Vec<_>>(),
        ["7132", "5211"]
    );
    // Outcomes as a real array; volume drifted to a number; liquidity as a number.
    let drifted = with(
        with(
            with(brief_market(), "outcomes", json!(["Up", "Down"])),
            "volumeNum",
            json!("92509.470055"),
        ),
        "liquidity",
        json!(1.5),
    );
    let market = gamma_market(&drifted).unwrap();
    assert_eq!(market.tokens[1].outcome, "Down");
    assert_eq!(market.volume, Some(dec("92509.470055")));
    // Resolved: closed with outcomePrices ["1","0"].
    let resolved = with(
        with(
            with(brief_market(), "closed", json!(true)),
            "outcomePrices",
            json!("[\"1\", \"0\"]"),
        ),
        "umaResolutionStatus",
        json!("resolved"),
    );
    let market = gamma_market(&resolved).unwrap();
    assert_eq!(market.tokens[0].winner, Some(true));
    assert_eq!(market.tokens[1].winner, Some(false));
    assert_eq!(
        market.winning_token_id.as_deref(),
        Some("8851848546962572193739008211889046036776198486765606333032192644001246174440")
    );
    assert_eq!(market.resolution_status.as_deref(), Some("resolved"));
    // closedTime in Postgres style; missing optional fields; unknown fields.
    let odd = with(
        with(
            without(without(brief_market(), "questionID"), "feesEnabled"),
            "closedTime",
            json!("2026-05-01 12:00:00+00"),
        ),
        "_simUnknownField",
        json!({}),
    );
    let market = gamma_market(&odd).unwrap();
    assert_eq!(market.closed_ms, Some(1_777_636_800_000));
    assert_eq!(market.question_id, None);
    assert_eq!(market.fees_enabled, None);
    // Refused: no condition id, a broken JSON-encoded list, mismatched tokens/outcomes.
    for (case, row) in [
        ("no conditionId", without(brief_market(), "conditionId")),
        (
            "broken clobTokenIds",
            with(brief_market(), "clobTokenIds", json!("[\"1\",")),
        ),
        (
            "three outcomes for two tokens",
            with(brief_market(), "outcomes", json!("[\"a\",\"b\",\"c\"]")),
        ),
    ] {
        assert!(gamma_market(&row).is_err(), "{case}");
    }
}

#[test]
fn clob_market_merges_into_gamma() {
    // Brief 4.1, live capture (March 2026); numbers as strings per some SDK fixtures.
    let clob_row = json!({"enable_order_book": true, "active": true, "closed": false, "archived": false,
     "accepting_orders": true, "minimum_order_size": "15", "minimum_tick_size": 0.001,
     "condition_id": "0x2E6AF11E4B853B05BA7135239B21D77E808889B6CE1E735DE856C94C4E5B5FCE",
     "maker_base_fee": 1000, "taker_base_fee": "1000", "neg_risk": false,
     "tokens": [{"token_id": "8851848546962572193739008211889046036776198486765606333032192644001246174440", "outcome": "Up", "price": 0.305, "winner": false},
                {"token_id": "10181859819235412241349111952383458602722012323104397550162049365057126390549", "outcome": "Down", "price": 0.695, "winner": true}],
     "tags": ["Crypto", "Bitcoin", "Up/Down"]});
    let clob = clob_market(&clob_row).unwrap();
    assert_eq!(clob.min_order_size, Some(dec("15")));
    assert_eq!(clob.taker_base_fee_bps, Some(1000));
    let mut market = gamma_market(&with(brief_market(), "closed", json!(true))).unwrap();
    merge_clob(&mut market, &clob);
    assert_eq!(market.tick_size, Some(dec("0.001")));
    assert_eq!(market.min_order_size, Some(dec("15")));
    assert_eq!(market.maker_base_fee_bps, Some(1000));
    assert_eq!(market.tags, ["Crypto", "Bitcoin", "Up/Down"]);
    assert_eq!(market.tokens[1].winner, Some(true));
    assert_eq!(
        market.winning_token_id.as_deref(),
        Some("10181859819235412241349111952383458602722012323104397550162049365057126390549")
    );
}

#[test]
fn content_hash_changes_only_with_content() {
    let first = finish_market(gamma_market(&brief_market()).unwrap(), 1);
    let again = finish_market(gamma_market(&brief_market()).unwrap(), 2);
    assert_eq!(first.content_hash, again.content_hash);
    assert_eq!(again.updated_ms, 2);
    let changed = finish_market(
        gamma_market(&with(brief_market(), "volumeNum", json!(1))).unwrap(),
        3,
    );
    assert_ne!(first.content_hash, changed.content_hash);
}

#[test]
fn the_brief_event_parses() {
    // Brief 2.5 (keys from a live event; values illustrative).
    let row = json!({"id": "125819", "ticker": "nvda-above-in-january-2026", "slug": "nvda-above-in-january-2026",
      "title": "Will NVIDIA (NVDA) close above ___ end of January?", "description": "...",
      "startDate": "2025-12-26T22:00:00Z", "creationDate": "2025-12-26T21:50:00Z",
      "endDate": "2026-01-30T21:00:00Z", "active": true, "closed": false, "archived": false,
      "liquidity": 154320.55, "volume": 1203344.12, "openInterest": 0, "createdAt": "2025-12-26T21:50:00.123Z",
      "updatedAt": "2026-01-10T12:00:01.456Z", "negRisk": true, "negRiskMarketID": "0x…", "commentCount": 12,
      "markets": [brief_market()], "series": [], "tags": [{"id": "1", "label": "Stocks", "slug": "stocks"}],
      "seriesSlug": "nvda-above"});
    let event = gamma_event(&row, 5).unwrap();
    assert_eq!(event.event_id, "125819");
    assert!(event.neg_risk);
    assert_eq!(event.volume, Some(dec("1203344.12")));
    assert_eq!(event.open_interest, Some(dec("0")));
    assert_eq!(event.tags, ["Stocks"]);
    assert_eq!(event.series_slug.as_deref(), Some("nvda-above"));
    assert_eq!(
        event.market_condition_ids,
        ["0x2e6af11e4b853b05ba7135239b21d77e808889b6ce1e735de856c94c4e5b5fce"]
    );
    assert_eq!(event.created_ms, Some(1_766_785_800_000));
    assert_eq!(event.updated_ms, 5);
    assert!(!event.content_hash.is_empty());
    let index = event_index(&[event]);
    assert_eq!(
        index["0x2e6af11e4b853b05ba7135239b21d77e808889b6ce1e735de856c94c4e5b5fce"],
        ["125819"]
    );
    assert!(gamma_event(&without(row.clone(), "id"), 0).is_err());
    // Drift: id as a number still identifies the event.
    assert_eq!(
        gamma_event(&with(row, "id", json!(125819)), 0)
            .unwrap()
            .event_id,
        "125819"
    );
}

#[test]
fn price_history_points() {
    // Brief 4.5.
    let page = json!({"history": [{"t": 1752883209, "p": 0.0115}, {"t": 1752969609, "p": 0.0121}]});
    let points: Vec<PricePoint> = page["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| price_point(row, "7", 60, 9).unwrap())
        .collect();
    assert_eq!(points[0].timestamp_ms, 1_752_883_209_000);
    assert_eq!(points[0].price, dec("0.0115"));
    assert_eq!(points[1].price, dec("0.0121"));
    assert_eq!(
        price_point(&json!({"t": "1752883209", "p": "0.5"}), "7", 60, 9)
            .unwrap()
            .price,
        dec("0.5")
    );
    assert!(price_point(&json!({"t": 1}), "7", 60, 9).is_err());
}

/// Brief 4.3: the `/book` example (bids ascending, asks descending: best last on both).
fn brief_book() -> Value {
    json!({"market": "0x747dc809fb79e1b05be09c42d6179459a58de2ef3e40f02484a4e1260f741f75",
     "asset_id": "107505882767731489358349912513945399560393482969656700824895970500493757150417",
     "timestamp": "1759420800123", "hash": "32400f1a5df2379ab4e7b79bac275d9312494339",
     "bids": [{"price": "0.01", "size": "2500"}, {"price": "0.44", "size": "120.5"}, {"price": "0.45", "size": "100"}],
     "asks": [{"price": "0.99", "size": "900"}, {"price": "0.47", "size": "80"}, {"price": "0.46", "size": "150"}],
     "min_order_size": "5", "tick_size": "0.01", "neg_risk": false, "last_trade_price": "0.45"})
}

fn prices(levels: &[polytape_model::BookLevel]) -> Vec<Decimal> {
    levels.iter().map(|level| level.price).collect()
}

#[test]
fn the_brief_book_parses_best_first_with_its_hash() {
    let book = book_snapshot(&brief_book(), 42).unwrap();
    assert_eq!(
        book.token_id,
        "107505882767731489358349912513945399560393482969656700824895970500493757150417"
    );
    assert_eq!(
        book.condition_id,
        "0x747dc809fb79e1b05be09c42d6179459a58de2ef3e40f02484a4e1260f741f75"
    );
    assert_eq!(book.timestamp_ms, 1_759_420_800_123);
    assert_eq!(book.received_ms, 42);
    assert_eq!(
        book.hash.as_deref(),
        Some("32400f1a5df2379ab4e7b79bac275d9312494339")
    );
    assert_eq!(prices(&book.bids), [dec("0.45"), dec("0.44"), dec("0.01")]);
    assert_eq!(prices(&book.asks), [dec("0.46"), dec("0.47"), dec("0.99")]);
    assert_eq!(book.bids[1].size, dec("120.5"));
    assert_eq!(book.tick_size, Some(dec("0.01")));
    assert_eq!(book.min_order_size, Some(dec("5")));
    assert_eq!(book.neg_risk, Some(false));
    assert_eq!(book.last_trade_price, Some(dec("0.45")));
    assert_eq!(book.source, polytape_model::BookSource::Rest);
    assert_eq!((book.connection_id, book.sequence), (None, None));
}

#[test]
fn book_quirks_and_rejects() {
    // Numbers as numbers, a seconds timestamp, optional fields missing, an unknown field,
    // an empty side: all tolerated.
    let mut tolerated = brief_book();
    tolerated["timestamp"] = json!(1_759_420_800);
    tolerated["bids"] = json!([{"price": 0.44, "size": 120.5}]);
    tolerated["asks"] = json!([]);
    tolerated["brand_new_field"] = json!({"x": 1});
    for key in [
        "hash",
        "min_order_size",
        "tick_size",
        "neg_risk",
        "last_trade_price",
    ] {
        tolerated.as_object_mut().unwrap().remove(key);
    }
    let book = book_snapshot(&tolerated, 0).unwrap();
    assert_eq!(book.timestamp_ms, 1_759_420_800_000);
    assert_eq!(prices(&book.bids), [dec("0.44")]);
    assert!(book.asks.is_empty() && book.hash.is_none() && book.tick_size.is_none());

    let cases: Vec<(&str, Value)> = vec![
        ("asset_id", without(brief_book(), "asset_id")),
        ("asset_id", with(brief_book(), "asset_id", json!("0xabc"))),
        ("market", without(brief_book(), "market")),
        ("timestamp", without(brief_book(), "timestamp")),
        ("bids", without(brief_book(), "bids")),
        ("asks", with(brief_book(), "asks", json!("[]"))),
        (
            "bids",
            with(brief_book(), "bids", json!([{"price": "1.5", "size": "1"}])),
        ),
        (
            "asks",
            with(brief_book(), "asks", json!([{"price": "0.5", "size": "0"}])),
        ),
        (
            "price",
            with(brief_book(), "bids", json!([{"price": "abc", "size": "1"}])),
        ),
    ];
    for (field, row) in cases {
        let error = book_snapshot(&row, 0).unwrap_err().to_string();
        assert!(error.contains(field), "{field}: {error}");
    }
    assert_eq!(book_snapshot(&json!([1]), 0), Err(RowError::NotAnObject));
}

/// Brief 3.5: the `/v1/leaderboard` example (`rank` is a string).
fn brief_leaderboard_row() -> Value {
    json!({"rank": "1", "proxyWallet": "0x569F366E7087D8CC66D8EC55CDEFD5577DD30056",
      "userName": "TopTrader", "vol": 1000000.0, "pnl": 150000.0,
      "profileImage": "https://example.com/p.png", "xUsername": "toptrader", "verifiedBadge": true})
}

const WEEK_OVERALL_PNL: LeaderboardList = LeaderboardList {
    period: "WEEK",
    category: "OVERALL",
    order_by: "PNL",
};

#[test]
fn the_brief_leaderboard_row_parses() {
    let entry = leaderboard_entry(&brief_leaderboard_row(), WEEK_OVERALL_PNL, 99).unwrap();
    assert_eq!(
        entry.proxy_wallet,
        "0x569f366e7087d8cc66d8ec55cdefd5577dd30056"
    );
    assert_eq!(entry.rank, 1);
    assert_eq!(
        (
            entry.period.as_str(),
            entry.category.as_str(),
            entry.order_by.as_str()
        ),
        ("WEEK", "OVERALL", "PNL")
    );
    assert_eq!(entry.user_name.as_deref(), Some("TopTrader"));
    assert_eq!(entry.x_username.as_deref(), Some("toptrader"));
    assert_eq!(
        entry.profile_image.as_deref(),
        Some("https://example.com/p.png")
    );
    assert_eq!(entry.verified_badge, Some(true));
    assert_eq!(entry.volume, Some(dec("1000000")));
    assert_eq!(entry.pnl, Some(dec("150000")));
    assert_eq!(entry.snapshot_ms, 99);
}

#[test]
fn leaderboard_quirks_and_rejects() {
    // A numeric rank, a negative float PnL with artefacts, strings for numbers, empty
    // optional strings and missing optional fields are tolerated.
    let mut row = brief_leaderboard_row();
    row["rank"] = json!(7);
    row["pnl"] = json!(-1234.5600000000001);
    row["vol"] = json!("815.115085");
    row["xUsername"] = json!("");
    for key in ["userName", "profileImage", "verifiedBadge"] {
        row.as_object_mut().unwrap().remove(key);
    }
    let entry = leaderboard_entry(&row, WEEK_OVERALL_PNL, 0).unwrap();
    assert_eq!(entry.rank, 7);
    assert_eq!(entry.pnl, Some(dec("-1234.56")));
    assert_eq!(entry.volume, Some(dec("815.115085")));
    assert_eq!(
        (entry.user_name, entry.x_username, entry.verified_badge),
        (None, None, None)
    );

    let cases: Vec<(&str, Value)> = vec![
        (
            "proxyWallet",
            without(brief_leaderboard_row(), "proxyWallet"),
        ),
        (
            "proxyWallet",
            with(brief_leaderboard_row(), "proxyWallet", json!("alice")),
        ),
        ("rank", without(brief_leaderboard_row(), "rank")),
        ("rank", with(brief_leaderboard_row(), "rank", json!("0"))),
        ("vol", with(brief_leaderboard_row(), "vol", json!("lots"))),
    ];
    for (field, row) in cases {
        let error = leaderboard_entry(&row, WEEK_OVERALL_PNL, 0)
            .unwrap_err()
            .to_string();
        assert!(error.contains(field), "{field}: {error}");
    }
}

/// CLOB `/prices-history` pages: the `history` list, or an error naming what is wrong.
#[test]
fn prices_history_pages() {
    let rows = history_page(br#"{"history":[{"t":1,"p":0.5},{"t":2,"p":"0.51"}]}"#).unwrap();
    assert_eq!(rows.len(), 2);
    for broken in [&br#"{"points":[]}"#[..], br#"[{"t":1}]"#, b"not json"] {
        let error = history_page(broken).unwrap_err().to_string();
        assert!(error.contains("prices-history"), "{error}");
    }
}
