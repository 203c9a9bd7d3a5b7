//! What the benchmark ran on, and what an empty timer pair costs.

use std::time::Instant;

/// One line describing the machine: CPU model (from `/proc/cpuinfo` when
/// readable), available parallelism and the kernel's clock source.
pub fn describe() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get().to_string())
        .unwrap_or_else(|_| "?".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let clock =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
    format!("{cpu}, {cores} cores available, clocksource {clock}")
}

/// The median cost in ns of an empty `Instant::now()` pair (what the latency
/// rig subtracts from every per-op sample), over `n` pairs.
pub fn timer_overhead_ns(n: usize) -> u64 {
    let mut v: Vec<u64> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let t1 = Instant::now();
            t1.duration_since(t0).as_nanos() as u64
        })
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}

/// A duration in ns for a table: `870 ns`, `2.38 µs`, `16.1 µs`, `8.07 ms`.
pub fn fmt_ns(v: u64) -> String {
    if v >= 1_000_000 {
        format!("{:.2} ms", v as f64 / 1e6)
    } else if v >= 10_000 {
        format!("{:.1} µs", v as f64 / 1e3)
    } else if v >= 1_000 {
        format!("{:.2} µs", v as f64 / 1e3)
    } else {
        format!("{v} ns")
    }
}
