//! LOBSTER oracle: every row of the sample book files must be reproduced by
//! the feed builder's published L2 (see `feeds::lobster` for the rules).
//! The data lives in `../shared/data` next to the checkout; when it is absent
//! the tests say so and pass, unless `CI=true`.

use feeds::lobster::{load_dir, parse_book, parse_messages, replay, Report};
use std::path::PathBuf;
use std::time::Instant;

fn data_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/lobster");
    if d.is_dir() {
        return Some(d);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("LOBSTER data missing at {} (CI=true)", d.display());
    }
    eprintln!(
        "SKIP: LOBSTER data not found at {}; this test passes without checking anything",
        d.display()
    );
    None
}

fn check(name: &str, r: &Report, t: Instant) {
    println!(
        "{name}: {} rows: {} exact from messages alone ({:.1}%), {} with the N-th level revealed, {} mismatched; \
         unknown ids {}, ignored {}, collapsed levels {}, {} messages / {} wire bytes published, {:.2?}",
        r.rows,
        r.exact,
        100.0 * r.exact as f64 / r.rows.max(1) as f64,
        r.revealed,
        r.mismatched,
        r.unknown_ids,
        r.ignored,
        r.collapsed,
        r.published,
        r.wire_bytes,
        t.elapsed()
    );
    for m in &r.first_mismatches {
        println!("  {m}");
    }
    assert!(r.rows > 0);
    assert_eq!(r.mismatched, 0, "{name}: every row must be reproduced");
    assert_eq!(r.exact + r.revealed, r.rows);
    assert_eq!(r.builder_anomalies, 0, "{name}: builder anomalies");
    assert_eq!(r.client_errors, 0, "{name}: subscriber errors");
}

fn run_dir(sub: &str, levels: usize) {
    let Some(d) = data_dir() else { return };
    let t = Instant::now();
    let (m, b) = load_dir(&d.join(sub), levels).expect("load");
    assert_eq!(b.levels, levels);
    assert_eq!(m.len(), b.rows(), "one book row per message");
    let r = replay(&m, &b);
    check(sub, &r, t);
}

#[test]
fn amzn_level_5_every_row() {
    run_dir("AMZN_2012-06-21_L5", 5);
}

#[test]
fn amzn_level_1_every_row() {
    run_dir("AMZN_2012-06-21_L1", 1);
}

#[test]
fn aapl_level_10_head_every_row() {
    run_dir("AAPL_2012-06-21_L10_head", 10);
}

/// The zipped AAPL level-30 hour (65 MB unzipped): `TEST_LOBSTER_FULL=1`.
/// Unzipped in memory by the `unzip` tool (no zip crate in the build).
#[test]
fn aapl_level_30_zip_every_row() {
    if std::env::var("TEST_LOBSTER_FULL").as_deref() != Ok("1") {
        eprintln!("SKIP: set TEST_LOBSTER_FULL=1 to replay the zipped AAPL level-30 file");
        return;
    }
    let Some(d) = data_dir() else { return };
    let zip = d.join("LOBSTER_SampleFile_AAPL_2012-06-21_30.zip");
    let t = Instant::now();
    let member = |name: &str| {
        let out = std::process::Command::new("unzip")
            .arg("-p")
            .arg(&zip)
            .arg(name)
            .output()
            .expect("run unzip (needed for the level-30 test)");
        assert!(out.status.success(), "unzip {name}: {:?}", out.status);
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let m = parse_messages(&member("AAPL_2012-06-21_34200000_37800000_message_30.csv"))
        .expect("messages");
    let b = parse_book(&member(
        "AAPL_2012-06-21_34200000_37800000_orderbook_30.csv",
    ))
    .expect("book");
    assert_eq!(b.levels, 30);
    assert_eq!(m.len(), b.rows());
    let r = replay(&m, &b);
    check("AAPL_2012-06-21_L30", &r, t);
}
