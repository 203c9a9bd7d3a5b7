//! Bourse market data, built from engine events.
//!
//! - `FeedBuilder`: durable engine events in, sequenced L1 / L2 / L3 /
//!   trades / status messages and snapshots out; `checkpoint` /
//!   `from_checkpoint` carry its whole state as bytes (in a replica's Raft
//!   snapshot; `MdHub::restore_feed` installs one).
//! - `wire`: the fixed-size little-endian records of those messages
//!   (`feeds/PROTOCOL.md`), encoded once and shared by every subscriber;
//!   `control`'s records (`Ctl`) share the stream with them.
//! - `BookBuilder` / `FeedView`: a subscriber's books from a snapshot plus
//!   incrementals, with gap detection and retransmit / snapshot requests.
//! - `L2Conflator`: latest-value-wins L2 for slow subscribers.
//! - `MdHub`: the hub's state (subscriptions, queues, budgets, retransmits),
//!   fed whole sequenced inputs.
//! - `quic`: the hub served over QUIC (`bourse-md/1` on the order-entry
//!   endpoint, `companion`), and `MdClient`.
//! - `lobster`: the LOBSTER real-data oracle (message + book files).
//!
//! Invariants: only the `quic` module touches quinn, tokio, the clock or the
//! runtime's output types; `seed` and `lobster` read files; everything else
//! is sans-IO, driven by its caller.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod book;
mod builder;
mod checkpoint;
mod client;
mod conflate;
mod control;
mod hub;
pub mod lobster;
mod msg;
mod quic;
mod seed;
mod view;
pub mod wire;

pub use book::{BookOrder, Levels, OrderBook};
pub use builder::{FeedBuilder, FeedConfig};
pub use checkpoint::CheckpointError;
pub use client::{BookBuilder, Need};
pub use conflate::L2Conflator;
pub use control::{
    ctl_template, decode_ctl, decode_item, encode_ctl, md_close, BadItem, Ctl, Malformed, MdItem,
};
pub use hub::{
    Close, MdConfig, MdHub, MdStats, Req, SubId, Wake, MAX_SUBSCRIPTIONS, TAKE_MAX_BYTES,
};
pub use msg::*;
pub use quic::client::{MdClient, MdError};
pub use quic::{companion, connection, now_ns};
pub use seed::{CheckpointSeedError, Checkpointed};
pub use view::FeedView;
