//! Bourse's engine core: a pure, deterministic state machine that matches
//! orders and (with the ledger) moves money.
//!
//! `Engine::apply(&Input, &mut Events)` is the whole interface: one sequenced
//! input in, its events out. The engine does no I/O, reads no clock (time is
//! `Input::now`), starts no thread, draws no random number, reads no
//! environment, iterates no randomly seeded hash map, and allocates nothing
//! per command once built: every capacity is fixed in `EngineConfig` and
//! allocated in `Engine::new`. Rejections are events; a broken internal
//! invariant is a bug and panics. The same inputs always give the same events
//! and the same `state_hash()`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// A `BrokenInvariant` with a `format!` message (the invariant checkers'
/// one way to say what is broken).
macro_rules! broken {
    ($($arg:tt)*) => {
        $crate::BrokenInvariant(format!($($arg)*))
    };
}

pub mod command;
pub mod config;
mod engine;
pub mod event;
pub mod fixed_map;
mod hash;
pub mod history;
mod index;
pub mod ledger;
mod ledger_history;
pub mod rng;
mod transfers;
pub mod types;

pub use command::*;
pub use config::EngineConfig;
pub use engine::{Engine, OrderView, SnapshotError, COD_ARMS_MAX};
pub use event::*;
pub use types::*;

/// What `Engine::validate` found broken: the first invariant that does not
/// hold, described. Never a reject: a state that fails it is a bug (or a
/// damaged snapshot, which restore refuses).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BrokenInvariant(pub String);

impl From<&str> for BrokenInvariant {
    fn from(what: &str) -> Self {
        BrokenInvariant(what.to_string())
    }
}
