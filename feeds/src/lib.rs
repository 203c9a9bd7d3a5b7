//! Bourse market data, built from engine events, sans-IO.
//!
//! - `builder::FeedBuilder`: durable engine events in, sequenced L1 / L2 /
//!   L3 / trades / status messages and snapshots out.
//! - `wire`: the fixed-size little-endian records of those messages
//!   (`feeds/PROTOCOL.md`), encoded once and shared by every subscriber.
//! - `client::BookBuilder`: a subscriber's book from a snapshot plus
//!   incrementals, with gap detection and retransmit / snapshot requests.
//! - `conflate::L2Conflator`: latest-value-wins L2 for slow subscribers.
//! - `lobster`: the LOBSTER real-data oracle (message + book files).
//! - `book`: price levels and a market-by-order book shared by all of them.
//!
//! - `hub`: the market-data hub over QUIC (`bourse-md/1` on the order-entry
//!   endpoint): subscriptions, fan-out, retransmits, and its client.
//!
//! Invariants: outside `hub`, no I/O (except `lobster`'s file helpers), no
//! clock, no threads; everything there is driven by its caller.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod book;
pub mod builder;
pub mod client;
pub mod conflate;
pub mod hub;
pub mod lobster;
pub mod msg;
pub mod wire;

pub use builder::{FeedBuilder, FeedConfig};
pub use client::{BookBuilder, Need};
pub use conflate::L2Conflator;
pub use msg::*;
