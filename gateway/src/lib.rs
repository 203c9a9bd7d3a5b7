//! Bourse order entry: the wire format ([`wire`]), the sans-IO session
//! ([`session`]: login, permissions, requests in, execution reports out),
//! the QUIC server that runs sessions over the runtime ([`server`]), the
//! client library ([`client`]), QUIC endpoint tuning ([`net`]), the TLS
//! identity and saved tokens ([`identity`]), the Raft peer transport
//! ([`raft_net`]), the gateway's counters
//! ([`counters`]) and the demo instrument set ([`demo`]).
//!
//! Depends on the engine, the journal (file helpers) and the runtime; knows
//! nothing of market data (another protocol on the same endpoint is handed
//! its connections through [`server::Companion`]), configuration files or
//! metrics exposition.

pub mod client;
pub mod counters;
pub mod demo;
pub mod identity;
pub mod net;
pub mod raft_net;
pub mod replicated;
mod saver;
pub mod server;
pub mod session;
pub mod window;
pub mod wire;
