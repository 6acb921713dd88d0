//! The Polymarket adapter: everything that knows Polymarket's wire.
//!
//! - [`rest`]: Gamma, Data API and CLOB REST rows into the model's records, one row at a time
//!   (a bad row is refused on its own, with the reason, for the DLQ);
//! - [`market_channel`]: the CLOB WebSocket market channel's frames into records;
//! - [`book`]: the one rule set that turns an upstream order book (`GET /book`, `POST /books`,
//!   the channel's `book` event) into a [`polytape_model::BookSnapshot`];
//! - [`data_api`]: the Data API trades tape, v1 (`/trades`, offsets) or v2 (`/v2/trades`,
//!   cursors), chosen by configuration;
//! - [`budget`] and [`client`]: one HTTP client whose every request takes a token from its
//!   endpoint's bucket (Polymarket's published budgets) and retries what may succeed again.
//!
//! Nothing here publishes or stores: the services decide what to do with the records. A second
//! venue would be a second adapter crate beside this one. The simulator
//! (`tools/polymarket-sim`) writes upstream JSON its own way and never uses this crate, so it
//! can catch a misreading.

pub mod book;
pub mod budget;
pub mod client;
pub mod data_api;
pub mod error;
pub mod market_channel;
mod metrics;
pub mod rest;
mod wire;

pub use budget::{Budgets, Endpoint};
pub use client::{RetryPolicy, Upstream};
pub use data_api::TradesApi;
pub use error::{PageError, RowError, UpstreamError};
