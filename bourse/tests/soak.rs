//! `bourse pipeline --soak` (bourse::soak): short runs through the real
//! durable pipeline whose interval reports must parse and add up to the
//! summary, whose live state stays under its targets, and whose command
//! stream (as journaled) is a function of the seed alone.

mod support;

use bourse::soak::{
    run_soak, write_summary, IntervalReport, SoakConfig, SoakSummary, COMMAND_NAMES,
};
use engine::Command;
use journal::record::decode;
use journal::{scan, FsStorage};
use std::path::Path;
use std::time::Duration;

/// A short soak sized for the small engine: owners rotating fast, a short
/// feedback lag so that cancels and replaces find live orders soon.
fn short(seed: u64) -> SoakConfig {
    SoakConfig {
        rate: 10_000,
        duration: Some(Duration::from_secs(2)),
        commands: None,
        seed,
        report_every: Duration::from_secs(1),
        json: true,
        live_orders: 500,
        live_pending: 100,
        // Each owner trades for 64 × 64 commands, well past the feedback
        // lag; 20,000 commands bring 300 owners, more than the small
        // engine's 256.
        owners_live: 64,
        owner_every: 64,
        expire_after: Duration::from_millis(200),
        feedback_lag: 1_024,
    }
}

fn soak(dir: &Path, s: SoakConfig) -> (SoakSummary, String) {
    let mut out = Vec::new();
    let summary = run_soak(&support::pipeline_config(dir), s, &mut out).expect("soak runs");
    write_summary(&summary, true, &mut out);
    (summary, support::text(&out))
}

#[test]
fn soak_reports_parse_and_add_up() {
    let dir = support::tmp("soak-reports");
    let s = short(7);
    println!("seed {}", s.seed);
    let (sum, text) = soak(&dir, s);
    println!("{text}");
    let reports: Vec<IntervalReport> = text
        .lines()
        .filter(|l| l.starts_with("{\"interval\""))
        .map(|l| serde_json::from_str(l).expect("interval JSON"))
        .collect();
    let human = text
        .lines()
        .filter(|l| l.starts_with("soak interval "))
        .count();
    // JSON keeps every integer; floats to within their printing.
    let key = |r: &IntervalReport| {
        (
            r.interval,
            r.completed,
            r.journal_bytes,
            r.capacity_exceeded_total,
        )
    };
    assert_eq!(
        reports.iter().map(key).collect::<Vec<_>>(),
        sum.intervals.iter().map(key).collect::<Vec<_>>()
    );
    for (j, r) in reports.iter().zip(&sum.intervals) {
        assert!((j.latency_us_p99 - r.latency_us_p99).abs() < 1e-6 && (j.t_s - r.t_s).abs() < 1e-9);
    }
    assert_eq!(human, reports.len());
    assert!(
        reports.len() >= 2,
        "two seconds, one-second intervals: {text}"
    );
    // Open loop: one command due every 1/rate s over 2 s, the first at 0.
    assert_eq!(sum.offered, 20_001);
    assert_eq!(sum.completed, sum.offered);
    assert_eq!(
        reports.iter().map(|r| r.completed).sum::<u64>(),
        sum.completed
    );
    assert_eq!(sum.latency.len(), sum.completed);
    let c = &sum.counts;
    assert_eq!(c.commands_sent(), sum.offered);
    let sent = |n: &str| c.commands[COMMAND_NAMES.iter().position(|&x| x == n).unwrap()];
    for kind in COMMAND_NAMES {
        assert!(sent(kind) > 0, "the mix sends {kind}: {:?}", c.commands);
    }
    // Every new order is accepted or rejected, once.
    assert_eq!(c.accepted + c.rejected_new, sent("order") + sent("ioc"));
    // Every transfer gets one result: the setup's 64 fundings and the load's.
    let transfers = sent("transfer") + sent("pending") + sent("post") + sent("void");
    assert_eq!(c.transfers_ok + c.transfers_rejected(), 64 + transfers);
    assert_eq!(c.accounts_opened, 65);
    assert!(c.trades > 0 && c.replaced > 0);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.interval, i as u64 + 1);
        assert!(r.latency_us_p50 <= r.latency_us_p99 && r.latency_us_p99 <= r.latency_us_p999);
        assert!(r.latency_us_p999 <= r.latency_us_max && r.latency_us_p50 > 0.0);
        // The live target holds for the orders known (sent a lag ago).
        assert!(
            r.live_orders <= 500 + 1_024 && r.live_pending <= 100,
            "{r:?}"
        );
        assert!(r.journal_bytes > 0 && r.archive_bytes == 0, "{r:?}");
        assert_eq!(r.rss_bytes.is_some(), cfg!(target_os = "linux"));
        if i > 0 {
            let before = &reports[i - 1];
            assert!(r.capacity_exceeded_total >= before.capacity_exceeded_total);
            assert!(r.t_s > before.t_s);
        }
    }
    let last = reports.last().unwrap();
    assert_eq!(last.capacity_exceeded_total, c.capacity_exceeded());
    assert_eq!(last.accepted_total, c.accepted);
    let summary: serde_json::Value = text
        .lines()
        .find(|l| l.starts_with("{\"summary\""))
        .map(|l| serde_json::from_str(l).expect("summary JSON"))
        .expect("a summary line");
    assert_eq!(summary["summary"]["offered"], sum.offered);
    assert_eq!(summary["summary"]["counts"]["accepted"], c.accepted);
    assert!(
        summary["summary"]["throughput_ratio_last_first"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let (first, last) = sum.first_last().expect("intervals");
    assert_eq!(
        (first.interval, last.interval),
        (1, 2),
        "the two full intervals"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The journaled commands of partition 0, without the runtime's time ticks.
fn journaled_commands(dir: &Path) -> Vec<Command> {
    let mut v = Vec::new();
    scan(&FsStorage, &dir.join("p0"), |_, _, _, records| {
        for r in records {
            let input = decode(r).expect("record decodes");
            if !matches!(input.command, Command::Time { .. }) {
                v.push(input.command);
            }
        }
        Ok(())
    })
    .expect("journal scans");
    v
}

#[test]
fn soak_command_stream_is_a_function_of_the_seed() {
    let run = |name: &str, seed: u64| {
        let dir = support::tmp(name);
        let s = SoakConfig {
            rate: 20_000,
            duration: None,
            commands: Some(6_000),
            ..short(seed)
        };
        let (sum, text) = soak(&dir, s);
        assert_eq!(sum.offered, 6_000, "{text}");
        let commands = journaled_commands(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        (commands, sum.counts)
    };
    let (a, ca) = run("soak-seed-a", 3);
    let (b, cb) = run("soak-seed-b", 3);
    let (c, _) = run("soak-seed-c", 4);
    // Setup (1 instrument, 65 accounts, 64 fundings) and the load.
    assert_eq!(a.len(), 130 + 6_000);
    // Cancels and replaces target orders learned from outputs: the same
    // stream means the feedback was applied at the same points.
    assert!(
        ca.commands[2] > 0 && ca.commands[3] > 0,
        "{:?}",
        ca.commands
    );
    assert_eq!(ca.commands, cb.commands);
    assert!(a == b, "same seed, same commands");
    assert!(a != c, "another seed, other commands");
}

#[test]
fn soak_cli_prints_reports_and_summary() {
    let dir = support::tmp("soak-cli");
    let out = std::process::Command::new(support::BOURSE)
        .args(["pipeline", "--soak", "--json", "--no-prefault", "--no-pin"])
        .args(["--idle", "yield", "--rate", "2000", "--duration-s", "1"])
        .args(["--report-every-s", "0.5", "--live-orders", "200"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("bourse runs");
    let text = support::text(&out.stdout);
    assert!(out.status.success(), "{text}{}", support::text(&out.stderr));
    let intervals = text
        .lines()
        .filter(|l| l.starts_with("{\"interval\""))
        .count();
    assert!(intervals >= 2, "{text}");
    assert!(text.contains("soak summary | offered 2001 "), "{text}");
    assert!(text.contains("\"summary\""), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
