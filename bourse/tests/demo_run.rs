//! `bourse demo` end to end (the real binary, `--no-tui`, 2 s): traders,
//! the payments client and the observer run against an in-process server,
//! the per-second lines and the summary show orders, trades and transfers,
//! and the process exits 0 after the server's orderly shutdown.

use std::process::Command;

fn count(summary: &str, key: &str) -> u64 {
    let i = summary
        .find(key)
        .unwrap_or_else(|| panic!("{key} in {summary}"));
    summary[i + key.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number after {key} in {summary}"))
}

#[test]
fn demo_runs_traders_and_payments_and_summarises() {
    let out = Command::new(env!("CARGO_BIN_EXE_bourse"))
        .args([
            "demo",
            "--duration",
            "2",
            "--no-tui",
            "--durability",
            "none",
        ])
        .output()
        .expect("run bourse demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.lines().filter(|l| l.starts_with('[')).count() >= 1,
        "{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("a summary line in {stdout}"));
    assert!(count(summary, "orders") > 0, "{summary}");
    assert!(count(summary, "acknowledged") > 0, "{summary}");
    assert!(count(summary, "trades") > 0, "{summary}");
    assert!(count(summary, "transfers") > 0, "{summary}");
    assert!(summary.contains("server stopped cleanly"), "{summary}");
}
