//! Helpers for Polytape's tests.

pub mod cli;
