//! The Bourse process crate: the `bourse` binary's subcommands.
pub mod script;
