//! Integration-test support: reference models and seeded generators.
