//! Benchmark support: seeded workloads shared by the criterion benches.
