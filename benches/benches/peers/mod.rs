//! Adapters for the crates.io peers, behind `bourse_benches::Book`.
//!
//! What each peer supports and how the workload maps onto it:
//!
//! | peer | limit (GTC) | cross (IOC) | cancel by id | ids | resting orders readable |
//! | --- | --- | --- | --- | --- | --- |
//! | matchcore 0.4.0 | `Submit(Limit, Gtc)` | `Submit(Limit, Ioc)` | `Cancel{order_id, Limit}` | engine's: the submit's sequence number | yes (`limit().orders()`) |
//! | rust-order-book 0.0.2 | `limit(.., GTC)` | `limit(.., IOC)` | `cancel(OrderId)` | engine's: from the `ExecutionReport` | yes (sum over `depth` levels) |
//! | lobster 0.7.0 | `Limit{id,..}` | no IOC: `Limit` then `Cancel` of the rest | `Cancel{id}` (always "succeeds") | ours (`u128`, caller-chosen) | no: resting lots only (`depth`) |
//!
//! Fills: matchcore reports its trades; rust-order-book 0.0.2 leaves
//! `ExecutionReport::fills` empty, so only its executed quantity is checked;
//! lobster reports fills. Engine-assigned ids are kept in a `Vec` indexed
//! by workload id (our adapter does the same).

pub mod lobster_book;
pub mod matchcore_book;
pub mod rob_book;

pub use lobster_book::Lobster;
pub use matchcore_book::Matchcore;
pub use rob_book::RustOrderBook;
