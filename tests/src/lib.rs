//! Integration-test support: the naive reference book model and the seeded
//! command-stream generator used by the cross-check, determinism and
//! allocation tests.

pub mod gen;
pub mod reference;
