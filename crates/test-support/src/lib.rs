//! Helpers for Polytape's tests.
//!
//! Integration tests run against real engines: the isolated stack of `cargo xtask test`
//! (found through `POLYTAPE_TEST_STACK`), or the development stack of `cargo xtask stack up`.
//! Each test takes a unique topic prefix and a unique ClickHouse database, so tests run in
//! parallel on one stack without seeing each other's data.

pub mod cli;
pub mod config;
pub mod logs;
pub mod oracle;
pub mod proxy;
pub mod stack;
pub mod topic;
