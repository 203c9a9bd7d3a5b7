//! The Bourse process crate: the `bourse` binary's subcommands, the runtime
//! (sequencer, rings, engine threads), the journal of sequenced inputs,
//! snapshots and crash recovery, the QUIC order-entry gateway (server,
//! client, CLI), configuration, logging, metrics and the watchdog.
pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod demo_run;
pub mod dump;
pub mod history;
pub mod identity;
pub mod journal;
pub mod journal_cli;
pub mod loadgen;
pub mod logging;
pub mod md;
pub mod md_cli;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod pipeline;
pub mod record;
pub mod recovery;
pub mod runtime;
pub mod script;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod soak;
pub mod watchdog;
pub mod wire;
