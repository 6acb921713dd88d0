//! A seeded, fault-injecting simulator of Polymarket's public APIs, with ground truth.

mod book;
mod booksnap;
mod fixed;
mod ids;
mod world;

pub use booksnap::book_hash_of_json;
