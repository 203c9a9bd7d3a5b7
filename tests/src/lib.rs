//! Integration-test support: reference models and seeded generators.
pub mod ref_ledger;
pub mod ref_settle;
