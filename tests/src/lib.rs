//! Integration-test support: the naive reference models (order book and
//! ledger, written from the spec, not from the engine) and the seeded
//! command-stream generators used by the cross-check, determinism and
//! allocation tests.

pub mod fixtures;
pub mod gen;
pub mod ref_ledger;
pub mod ref_settle;
pub mod reference;
