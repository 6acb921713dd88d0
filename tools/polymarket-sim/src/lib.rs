//! A seeded, fault-injecting simulator of Polymarket's public APIs (Gamma, Data API, CLOB REST
//! and the CLOB market WebSocket), with ground truth at `/_sim/truth/...`.
//!
//! Start one in-process on a free port:
//!
//! ```no_run
//! # async fn demo() -> Result<(), polymarket_sim::SimError> {
//! let sim = polymarket_sim::start(polymarket_sim::SimConfig { port: 0, ..Default::default() }).await?;
//! println!("serving on {}", sim.base_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

// Gamma's market object is one large `json!` literal.
#![recursion_limit = "256"]

mod book;
mod booksnap;
mod budget;
mod config;
mod faults;
mod fixed;
mod http;
mod ids;
mod live;
mod plant;
mod server;
mod state;
mod stats;
mod world;

pub use booksnap::book_hash_of_json;
pub use config::{Cli, ConfigError, SimConfig};
pub use faults::{FaultKind, FaultRule, FaultSpecError, parse_fault_spec};
pub use plant::SCENARIO_KINDS;
pub use server::{RunningSim, SimError, start};
pub use state::LiveProgress;
