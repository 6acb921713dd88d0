-- Demo rows for checking the Grafana dashboards' SQL: `cargo xtask lint-deploy` applies the
-- ClickHouse migrations to a fresh, isolated database, runs these statements in it ({database}
-- is replaced by its name), then runs every ClickHouse query of deploy/grafana/dashboards/*.json
-- with the Grafana macros replaced by test values, and requires rows from each.
-- Two markets (two tokens each) with two hours of activity ending now. Token and condition ids
-- are the test values the checker substitutes for ${token} and ${condition}.

INSERT INTO {database}.markets (condition_id, question, slug, event_ids, token_ids, token_outcomes, token_winners,
    active, closed, archived, accepting_orders, enable_order_book, neg_risk, tick_size, min_order_size, tags,
    volume, liquidity, content_hash, updated_at)
SELECT
    concat('0xcond', toString(n)), concat('Demo market ', toString(n), '?'), concat('demo-market-', toString(n)),
    [concat('ev', toString(n))], [concat('tok', toString(n), 'yes'), concat('tok', toString(n), 'no')], ['Yes', 'No'], [NULL, NULL],
    true, n = 2, false, n != 2, true, false, toDecimal64('0.01', 6), toDecimal64('5', 6), ['demo'],
    toDecimal128(1000 * (n + 1), 6), toDecimal128(100 * (n + 1), 6), concat('h', toString(n)), now64(3)
FROM (SELECT number AS n FROM numbers(3));

INSERT INTO {database}.events (event_id, title, active, closed, archived, neg_risk, tags, market_condition_ids, content_hash, updated_at)
SELECT concat('ev', toString(number)), concat('Demo event ', toString(number)), true, false, false, false, ['demo'],
    [concat('0xcond', toString(number))], 'h', now64(3)
FROM numbers(3);

INSERT INTO {database}.trades (trade_id, condition_id, token_id, outcome, outcome_index, side, price, size, timestamp,
    transaction_hash, proxy_wallet, source, ingested_at)
SELECT
    concat('t', toString(number)), concat('0xcond', toString(number % 2)),
    concat('tok', toString(number % 2), if(number % 3 = 0, 'no', 'yes')), if(number % 3 = 0, 'No', 'Yes'), if(number % 3 = 0, 1, 0),
    if(number % 2 = 0, 'BUY', 'SELL'), toDecimal64(0.40 + (number % 20) / 100, 6), toDecimal64(10 + number % 50, 6),
    now64(3) - toIntervalSecond(number * 7), concat('0xtx', toString(number)), concat('0xwallet', toString(number % 13)),
    'DATA_API_V1', now64(3) - toIntervalSecond(number * 7) + toIntervalSecond(2)
FROM numbers(1000);

INSERT INTO {database}.candles (token_id, condition_id, interval, open_time, close_time, open, high, low, close, volume,
    notional, vwap, trade_count, first_trade_time, last_trade_time, version, is_final)
SELECT
    'tok0yes', '0xcond0', iv, toStartOfInterval(now64(3), INTERVAL 1 MINUTE) - toIntervalMinute(number * m),
    toStartOfInterval(now64(3), INTERVAL 1 MINUTE) - toIntervalMinute(number * m) + toIntervalMinute(m),
    toDecimal64(0.50 + (number % 7) / 100, 6), toDecimal64(0.58, 6), toDecimal64(0.45, 6), toDecimal64(0.51 + (number % 5) / 100, 6),
    toDecimal128(100 + number, 6), toDecimal128(52 + number / 2, 12), toDecimal128(0.52, 12), 10 + number % 9,
    now64(3) - toIntervalMinute(number * m), now64(3) - toIntervalMinute(number * m), number, number > 0
FROM numbers(120)
ARRAY JOIN ['1m', '5m', '1h'] AS iv, [1, 5, 60] AS m;

INSERT INTO {database}.book_state (token_id, condition_id, timestamp, bid_prices, bid_sizes, ask_prices, ask_sizes, full_depth,
    bid_level_count, ask_level_count, best_bid, best_ask, mid, spread, tick_size, bid_depth_1_tick, bid_depth_5_ticks,
    bid_depth_10_ticks, ask_depth_1_tick, ask_depth_5_ticks, ask_depth_10_ticks, consistent, version)
SELECT
    'tok0yes', '0xcond0', now64(3) - toIntervalSecond(number * 30),
    [toDecimal64(0.49, 6), toDecimal64(0.48, 6), toDecimal64(0.47, 6)], [toDecimal64(100, 6), toDecimal64(250, 6), toDecimal64(400, 6)],
    [toDecimal64(0.51, 6), toDecimal64(0.52, 6), toDecimal64(0.53, 6)], [toDecimal64(120, 6), toDecimal64(200, 6), toDecimal64(380, 6)],
    number % 10 = 0, 3, 3, toDecimal64(0.49, 6), toDecimal64(0.51, 6), toDecimal64(0.50, 6), toDecimal64(0.02, 6), toDecimal64(0.01, 6),
    toDecimal64(100, 6), toDecimal64(750, 6), toDecimal64(750, 6), toDecimal64(120, 6), toDecimal64(700, 6), toDecimal64(700, 6),
    number % 50 != 7, number
FROM numbers(240);

INSERT INTO {database}.best_bid_ask (token_id, condition_id, best_bid, best_ask, spread, timestamp, received_at, connection_id, sequence)
SELECT 'tok0yes', '0xcond0', toDecimal64(0.49 - (number % 3) / 100, 6), toDecimal64(0.51 + (number % 2) / 100, 6),
    toDecimal64(0.02 + (number % 3) / 100 + (number % 2) / 100, 6), now64(3) - toIntervalSecond(number * 20),
    now64(3) - toIntervalSecond(number * 20), 'c1', number
FROM numbers(300);

INSERT INTO {database}.price_changes (token_id, condition_id, side, price, size, best_bid, best_ask, timestamp, received_at,
    connection_id, sequence, entry_index)
SELECT 'tok0yes', '0xcond0', if(number % 2 = 0, 'BUY', 'SELL'), toDecimal64(0.45 + (number % 10) / 100, 6), toDecimal64(number % 300, 6),
    toDecimal64(0.49, 6), toDecimal64(0.51, 6), now64(3) - toIntervalSecond(number * 3), now64(3) - toIntervalSecond(number * 3),
    'c1', number, 0
FROM numbers(2000);

INSERT INTO {database}.last_trades (token_id, condition_id, price, size, side, timestamp, received_at, connection_id, sequence)
SELECT 'tok0yes', '0xcond0', toDecimal64(0.50 + (number % 4) / 100, 6), toDecimal64(5 + number % 20, 6), 'BUY',
    now64(3) - toIntervalSecond(number * 11), now64(3) - toIntervalSecond(number * 11), 'c1', number
FROM numbers(500);

INSERT INTO {database}.price_history (token_id, timestamp, price, fidelity_minutes, fetched_at)
SELECT 'tok0yes', toStartOfMinute(now64(3)) - toIntervalMinute(number * 60), toDecimal64(0.40 + (number % 20) / 100, 6), 60, now64(3)
FROM numbers(72);

INSERT INTO {database}.continuity (continuity_id, kind, token_ids, gap_start, gap_end, detected_at, source, connection_id, reason)
SELECT concat('gap', toString(number)), ['DISCONNECT', 'FREEZE', 'BOOK_MISMATCH', 'UPSTREAM_GAP'][number % 4 + 1], ['tok0yes'],
    now64(3) - toIntervalMinute(number * 17 + 5), if(number % 5 = 0, NULL, now64(3) - toIntervalMinute(number * 17 + 4)),
    now64(3) - toIntervalMinute(number * 17 + 4), ['ws-bridge', 'candle-builder', 'collector'][number % 3 + 1], 'c1', 'demo gap'
FROM numbers(8);

INSERT INTO {database}.dead_letters (dead_letter_id, source, origin, error, payload_base64, topic, partition, offset, occurred_at)
SELECT concat('dl', toString(number)), ['collector', 'ws-bridge', 'sink-clickhouse'][number % 3 + 1], 'demo', 'demo error',
    'e30=', 'polymarket.trades.v1', 0, number, now64(3) - toIntervalMinute(number * 9)
FROM numbers(12);

INSERT INTO {database}.signals (signal_id, kind, rule_id, rule_version, subject, condition_ids, token_ids, event_id,
    window_start, window_end, threshold_names, threshold_values, input_names, input_values, links, revision)
SELECT concat('sig', toString(number)),
    ['LARGE_TRADE_NEW_WALLET', 'NEG_RISK_ARBITRAGE', 'BINARY_ARBITRAGE', 'PRICE_MOVE', 'VOLUME_SPIKE'][number % 5 + 1],
    'demo', 1, ['0xwallet', '0xnegrisk:buy_every_leg', '0xcond0:buy_every_leg', 'tok0yes'][number % 4 + 1],
    ['0xcond0'], ['tok0yes'], NULL,
    now64(3) - toIntervalMinute(number * 13 + 3), now64(3) - toIntervalMinute(number * 13 + 1),
    ['min_edge'], ['0.005000'],
    ['max_edge', 'size_at_max_edge', 'duration_ms', 'closed_by', 'notional', 'price', 'prior_fills', 'first_seen_ms',
     'judged_on', 'from_price', 'to_price', 'move', 'from_ms', 'to_ms'],
    ['0.020000', '15.000000', '120000', 'edge_gone', '15000.000000', '0.500000', '0', '1767000000000',
     'polytape_history', '0.500000', '0.620000', '0.120000', '1767000000000', '1767000120000'],
    ['tok0yes@1767000000000'], 1
FROM numbers(12);
