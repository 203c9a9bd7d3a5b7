//! The Bourse process crate: the `bourse` binary's subcommands.
pub mod runtime;
pub mod script;
