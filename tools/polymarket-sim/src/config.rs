//! Simulator configuration and the command line that fills it.

use std::time::Duration;

use clap::Parser;

use crate::faults::{FaultRule, FaultSpecError, parse_fault_spec};

/// Everything that shapes one simulator run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random choice (world layout, history, live flow).
    pub seed: u64,
    /// Number of markets (grouped into binary and neg-risk events).
    pub markets: u32,
    /// Days of pre-generated history before the epoch (0 allowed).
    pub history_days: u32,
    /// Live book operations per wall-clock second (0 = frozen; drive with `POST /_sim/advance`).
    pub rate: f64,
    /// Simulated milliseconds per wall-clock millisecond.
    pub speed: f64,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    /// TCP port on 127.0.0.1 (0 = pick a free port).
    pub port: u16,
    /// Maximum assets one WebSocket connection may subscribe.
    pub ws_max_assets: usize,
    /// End of the history window in Unix ms. `None`: the current hour, floored (so runs within
    /// the same hour answer history queries byte-identically), and live time starts at the
    /// wall clock.
    pub epoch_ms: Option<i64>,
    /// Length of the sliding rate-limit windows (upstream: 10 s).
    pub rate_window: Duration,
    /// Every this many live operations a market resolves or a new one is listed (0 = never).
    pub lifecycle_every: u64,
    /// Live WebSocket events kept (all tokens together) for `/_sim/truth/ws`.
    pub ws_truth_capacity: usize,
    /// With `rate = 0`: stamp the operations of each `advance` from simulated now (the wall
    /// clock at speed 1; never before the world clock) instead of from the live start, so a
    /// test can advance late in its run and still get fills "now" (polling, late indexing).
    pub advance_at_wall_clock: bool,
    /// With `rate = 0`: microseconds between the stamps of consecutive advanced operations
    /// (default 1,000: one millisecond each). 0 stamps a whole `advance` in one millisecond —
    /// more fills in one second than the Data API's offset cap lets a client read.
    pub advance_spacing_us: u64,
    /// Every Nth history fill gets an identical twin in its transaction (same wallet, token,
    /// side, size, price): two trades, two identical rows upstream (0 = none).
    pub identical_fill_every: u64,
    /// Plant signal scenarios into the live world (`None`: never), one round of them every
    /// this long from five seconds after the live start (`/_sim/truth/signals`; PLANTING.md).
    pub scenario_every: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 7,
            markets: 200,
            history_days: 3,
            rate: 50.0,
            speed: 1.0,
            faults: Vec::new(),
            port: 8900,
            ws_max_assets: 500,
            epoch_ms: None,
            rate_window: Duration::from_secs(10),
            lifecycle_every: 5_000,
            ws_truth_capacity: 50_000,
            advance_at_wall_clock: false,
            advance_spacing_us: 1_000,
            identical_fill_every: 0,
            scenario_every: None,
        }
    }
}

const FAULT_HELP: &str = "\
Fault rules, separated by ';'. Each rule is KIND[@TARGET][:KEY=VALUE,...].

KIND (HTTP): error (an HTTP error, key status, default 500; a 429 or 503 carries Retry-After,
  key retry_after, default 1s, and a client repeating the request sooner is counted in
  /_sim/stats as retried_early), slow (delay then answer normally),
  timeout (hold the request for `delay`, default 60s, then answer 504 with an empty body),
  truncate (body cut in half), malformed (invalid JSON), extra_field (unknown key added to every
  object row), missing_optional (optional keys removed), drift (a field changes JSON type;
  key field, default per endpoint), out_of_window (a copy of a list's last row stamped
  timestamp 1 is appended: a row outside the requested window; not part of the truth),
  tick_change (every market's tick in the body is switched, 0.01 <-> 0.001, as upstream does
  near 0.04/0.96; keys minimum_tick_size, tick_size, orderPriceMinTickSize; fills unchanged).
KIND (fills, /data/trades and /data/v2/trades): late_index (every Nth fill of the tape is left
  out of the trades tapes until `delay` after its timestamp, default 60s; the truth lists it
  all along; count defaults to 0 = every Nth fill), e.g. 'late_index@/data/trades:delay=90s,every=20';
  poison (the fills of every Nth transaction are served on every read with price 1.5, outside
  (0, 1]: bad input a client must refuse; the truth marks them `poisoned`; count defaults to 0),
  e.g. 'poison@/data/trades:every=200'.
KIND (WebSocket, target ignored): ws_disconnect (close the connection), ws_freeze (stop sending
  data for `duration`, default forever, PONG still answered), ws_garbage (send a non-JSON
  frame), ws_duplicate (send an event twice), ws_reorder (swap an event with the next).
TARGET: a path prefix such as /data/trades or /clob/book (default: every endpoint).
KEYS: count=N (fire at most N times; default 1, 0 = unlimited), every=N (fire on every Nth
  match; default 1), after=N (skip the first N matches; for WS: events sent on the connection),
  status=CODE, delay=DURATION (e.g. 2s, 500ms), duration=DURATION, field=NAME,
  retry_after=DURATION (whole seconds on the wire, rounded up).
Examples: 'error@/data/trades:status=503,count=3' (a burst of three 503s);
  'slow@/clob/book:delay=2s,every=10,count=0;ws_freeze:after=100,duration=5s'.
Rules can also be added at run time: POST /_sim/faults {\"spec\": \"...\"}.";

/// Command line of `polymarket-sim`.
#[derive(Debug, Parser)]
#[command(
    name = "polymarket-sim",
    version,
    about = "A seeded, fault-injecting simulator of Polymarket's public APIs (Gamma, Data, CLOB REST, CLOB market WebSocket), with ground truth at /_sim/truth",
    after_help = FAULT_HELP
)]
pub struct Cli {
    /// Seed for every random choice; the same seed (and --epoch) gives the same world.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Number of markets to generate.
    #[arg(long, default_value_t = 200)]
    pub markets: u32,
    /// Days of trade, book and price history generated before the epoch (0 allowed).
    #[arg(long, default_value_t = 3)]
    pub history_days: u32,
    /// Live book operations per wall-clock second after start (0 = frozen world; drive it with
    /// POST /_sim/advance).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Simulated time per wall-clock time (2 = simulated time runs twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Fault rules active from the start (grammar below).
    #[arg(long, default_value = "")]
    pub faults: String,
    /// Port to listen on, on 127.0.0.1 (0 picks a free port; the ready line names it).
    #[arg(long, default_value_t = 8900)]
    pub port: u16,
    /// Maximum assets per WebSocket connection; a subscription past it is refused with an
    /// error frame.
    #[arg(long, default_value_t = 500)]
    pub ws_max_assets: usize,
    /// End of the history window: Unix milliseconds or RFC 3339. Default: the current hour,
    /// floored, with live time starting at the wall clock.
    #[arg(long)]
    pub epoch: Option<String>,
    /// Length of the sliding rate-limit windows (upstream: 10s).
    #[arg(long, default_value = "10s")]
    pub rate_window: humantime::Duration,
    /// Every N live operations a market resolves or a new market is listed (0 = never).
    #[arg(long, default_value_t = 5_000)]
    pub lifecycle_every: u64,
    /// Live WebSocket events kept (all tokens together) for /_sim/truth/ws; the oldest are
    /// dropped past it.
    #[arg(long, default_value_t = 50_000)]
    pub ws_truth_capacity: usize,
    /// With --rate 0: stamp each POST /_sim/advance's operations from simulated now (1 ms
    /// apart) instead of from the live start.
    #[arg(long)]
    pub advance_at_wall_clock: bool,
    /// With --rate 0: microseconds between consecutive advanced operations (0 = a whole
    /// advance in one millisecond).
    #[arg(long, default_value_t = 1_000)]
    pub advance_spacing_us: u64,
    /// Every Nth history fill gets an identical twin in its transaction (0 = none).
    #[arg(long, default_value_t = 0)]
    pub identical_fill_every: u64,
    /// Plant signal scenarios into the live world: `none` or `live` (PLANTING.md).
    #[arg(long, default_value = "none", value_parser = ["none", "live"])]
    pub scenarios: String,
    /// With `--scenarios live`: how often a round of scenarios is planted.
    #[arg(long, default_value = "3m")]
    pub scenario_every: humantime::Duration,
}

/// A command line that does not describe a run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --faults: {0}")]
    Faults(#[from] FaultSpecError),
    #[error("invalid --epoch {text:?}: expected Unix milliseconds or an RFC 3339 time")]
    Epoch { text: String },
    #[error("--speed must be positive, got {speed}")]
    Speed { speed: f64 },
    #[error("--rate must be zero or positive, got {rate}")]
    Rate { rate: f64 },
}

impl Cli {
    /// Turns the command line into a configuration.
    pub fn into_config(self) -> Result<SimConfig, ConfigError> {
        let epoch_ms = match self.epoch {
            None => None,
            Some(text) => Some(parse_epoch(&text).ok_or(ConfigError::Epoch { text })?),
        };
        if self.speed.is_nan() || self.speed <= 0.0 {
            return Err(ConfigError::Speed { speed: self.speed });
        }
        if self.rate.is_nan() || self.rate < 0.0 {
            return Err(ConfigError::Rate { rate: self.rate });
        }
        Ok(SimConfig {
            seed: self.seed,
            markets: self.markets.max(1),
            history_days: self.history_days,
            rate: self.rate,
            speed: self.speed,
            faults: parse_fault_spec(&self.faults)?,
            port: self.port,
            ws_max_assets: self.ws_max_assets,
            epoch_ms,
            rate_window: self.rate_window.into(),
            lifecycle_every: self.lifecycle_every,
            ws_truth_capacity: self.ws_truth_capacity,
            advance_at_wall_clock: self.advance_at_wall_clock,
            advance_spacing_us: self.advance_spacing_us,
            identical_fill_every: self.identical_fill_every,
            scenario_every: (self.scenarios == "live").then(|| self.scenario_every.into()),
        })
    }
}

fn parse_epoch(text: &str) -> Option<i64> {
    if let Ok(millis) = text.trim().parse::<i64>() {
        return Some(millis);
    }
    let time = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}
