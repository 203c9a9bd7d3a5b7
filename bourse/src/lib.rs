//! The `bourse` binary's library: configuration ([`config`]), metrics
//! exposition, health and the watchdog ([`metrics`], [`watchdog`],
//! [`ops`]), logging, the script runner ([`script`], [`dump`]), journal
//! tools ([`journal_cli`]), the bench and load generator, the demo, the
//! soak, the order-entry and feed CLIs ([`cli`], [`md_cli`]) and the
//! loopback cluster runner ([`cluster_cli`]).
//!
//! It composes the other crates; none of them depends on it.

pub mod bench;
pub mod cli;
pub mod cluster_admin;
pub mod cluster_cli;
pub mod config;
pub mod demo_run;
pub mod dump;
pub mod health;
pub mod journal_cli;
pub mod loadgen;
pub mod local_cluster;
pub mod logging;
pub mod md_cli;
pub mod metrics;
pub mod ops;
pub mod script;
pub mod soak;
pub mod tui;
pub mod watchdog;
