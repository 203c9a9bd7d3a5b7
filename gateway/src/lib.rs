//! The Bourse process crate: the `bourse` binary's subcommands, the journal
//! of sequenced inputs, snapshots and crash recovery.
pub mod dump;
pub mod journal;
pub mod journal_cli;
pub mod record;
pub mod recovery;
pub mod script;
pub mod snapshot;
