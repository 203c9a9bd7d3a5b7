//! Journal retention on real files through the pipeline: under a steady load
//! with small segments and a snapshot per round the journal directory stays
//! bounded; `archive` moves and `delete` deletes what the oldest kept
//! snapshot covers; recovery after retention and a full replay across the
//! archived range give the same state hash; `journal verify`/`dump` read
//! the archive and say what they covered; hand-made crash states (a segment
//! back before the base, a segment in both places) recover, and a lost
//! front without `journal.base` is refused.

mod support;

use bourse::journal_cli::{replay_dir, run_journal_dump, run_journal_verify, CliError};
use engine::{Command, EngineConfig, InstrumentId};
use journal::{Durability, FsStorage, BASE_NAME};
use journal::{RetainPolicy, RetentionConfig, ARCHIVE_DIR};
use runtime::{Pipeline, PipelineConfig};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The smallest segment the default commit block (16,384 records) fits in.
const SEGMENT_BYTES: u64 = 770 * 4096;
/// Commands per round: about 1.2 segments of journal.
const ROUND: u64 = 20_000;
/// Segment files the journal directory may hold once a round's retention
/// pass is done: two rounds behind the oldest kept snapshot (about 2.5
/// segments), the current one and a prepared one.
const SEGMENTS_MAX: usize = 5;

fn config(dir: &Path, policy: RetainPolicy) -> PipelineConfig {
    let mut cfg = support::pipeline_config(dir);
    cfg.segment_bytes = SEGMENT_BYTES;
    // Written, not synced: the test is about which files stay, not fsync.
    cfg.durability = Durability::Async;
    cfg.runtime.inbound_ring = 4096;
    cfg.retention = RetentionConfig {
        policy,
        archive_bytes_max: 0,
    };
    cfg
}

fn segments(dir: &Path) -> usize {
    support::file_names(dir)
        .iter()
        .filter(|n| n.starts_with("journal-") && n.ends_with(".seg"))
        .count()
}

/// Polls `cond` every 10 ms for up to 20 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `rounds` rounds of `ROUND` commands, each followed by a snapshot; after
/// each, waits for the journal directory to come back within
/// `SEGMENTS_MAX` (with a retaining policy). Returns the final state hash.
fn run_rounds(cfg: &PipelineConfig, rounds: u64) -> u128 {
    let p0 = cfg.data_dir.join("p0");
    let pipe = Pipeline::open(cfg).expect("open");
    let rt = pipe.runtime();
    let shared = rt.shared(0).clone();
    let mut reader = rt.reader(0);
    let mut seq = shared.durable_seq.load(Ordering::Acquire);
    for round in 0..rounds {
        for i in 0..ROUND {
            let c = Command::Halt {
                instrument: InstrumentId(1 + (i % 7) as u32),
            };
            while rt.submit(0, i, c).is_err() {
                while reader.poll().is_some() {}
                std::thread::yield_now();
            }
        }
        seq += ROUND;
        wait_for("durable", || {
            while reader.poll().is_some() {}
            shared.durable_seq.load(Ordering::Acquire) >= seq
        });
        let snaps = shared.counters.snapshots.get();
        rt.request_snapshot(0).unwrap();
        wait_for("snapshot", || shared.counters.snapshots.get() > snaps);
        if cfg.retention.policy != RetainPolicy::Keep && round >= 2 {
            wait_for(
                &format!("round {round}: at most {SEGMENTS_MAX} segments"),
                || segments(&p0) <= SEGMENTS_MAX,
            );
        }
    }
    if cfg.retention.policy != RetainPolicy::Keep {
        wait_for("the pass finished", || {
            segments(&p0) <= SEGMENTS_MAX
                && journal::scan(&FsStorage, &p0, |_, _, _, _| Ok(()))
                    .is_ok_and(|r| r.retired.is_empty())
        });
        wait_for("retained-through gauge", || {
            shared.counters.retained_through_seq.get() > 0
        });
        let c = &shared.counters;
        assert!(c.disk_journal_bytes.get() >= SEGMENT_BYTES);
        assert!(c.disk_snapshot_bytes.get() > 0);
        assert_eq!(
            c.disk_archive_bytes.get() > 0,
            cfg.retention.policy == RetainPolicy::Archive
        );
        let text = bourse::metrics::MetricsState::with_partitions(vec![shared.clone()]).render();
        let through = c.retained_through_seq.get();
        assert!(
            text.contains(&format!(
                "bourse_journal_retained_through_seq{{partition=\"0\"}} {through}"
            )) && text.contains("bourse_disk_bytes{partition=\"0\",kind=\"archive\"}"),
            "{text}"
        );
    }
    pipe.shutdown()[0]
}

fn verify_text(p0: &Path) -> String {
    let mut out = Vec::new();
    run_journal_verify(p0, &mut out).expect("verify");
    String::from_utf8(out).unwrap()
}

fn recovered_hash(cfg: &PipelineConfig) -> u128 {
    let pipe = Pipeline::open(cfg).expect("recover");
    let h = pipe.recovered()[0].state_hash;
    pipe.shutdown();
    h
}

#[test]
fn archive_keeps_the_journal_bounded_and_replay_crosses_the_base() {
    let dir = support::tmp("retention-archive");
    let cfg = config(&dir, RetainPolicy::Archive);
    let p0 = dir.join("p0");
    let hash = run_rounds(&cfg, 8);
    let archived = segments(&p0.join(ARCHIVE_DIR));
    assert!(archived >= 4, "archived {archived}");
    assert!(p0.join(BASE_NAME).exists());

    // Recovery needs only the snapshot and the journal after it; a replay
    // from scratch reads the archive across the base: the same state.
    assert_eq!(recovered_hash(&cfg), hash);
    let (_, r) = replay_dir(&p0, EngineConfig::small()).expect("replay");
    assert_eq!((r.state_hash, r.last_seq), (hash, 8 * ROUND));

    let text = verify_text(&p0);
    assert!(
        text.contains("archived: seq 1..=") && text.contains("/archive (verified)"),
        "{text}"
    );
    // Dump reads archived seqs.
    let mut out = Vec::new();
    run_journal_dump(&p0, Some(1), Some(3), &mut out).unwrap();
    let halts = String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"cmd\":\"halt\""))
        .count();
    assert_eq!(halts, 3);

    // A crash between the anchor and the move: the newest archived segment
    // back in the journal directory before the base, and another one in
    // both places. Recovery accepts both, and the next pass finishes.
    let mut names: Vec<String> = support::file_names(&p0.join(ARCHIVE_DIR));
    names.sort();
    let last = names.last().unwrap().clone();
    std::fs::rename(p0.join(ARCHIVE_DIR).join(&last), p0.join(&last)).unwrap();
    let first = names[0].clone();
    std::fs::copy(p0.join(ARCHIVE_DIR).join(&first), p0.join(&first)).unwrap();
    assert!(verify_text(&p0).contains("still in place"));
    let hash2 = run_rounds(&cfg, 1);
    assert!(!p0.join(&last).exists() && !p0.join(&first).exists());
    assert!(p0.join(ARCHIVE_DIR).join(&last).exists());
    assert_eq!(recovered_hash(&cfg), hash2);
    assert_eq!(
        replay_dir(&p0, EngineConfig::small()).unwrap().1.state_hash,
        hash2
    );

    // The front gone without its anchor is lost data, not an archive.
    std::fs::remove_file(p0.join(BASE_NAME)).unwrap();
    let e = Pipeline::open(&cfg).expect_err("a lost front must be refused");
    let msg = e.to_string();
    assert!(
        msg.contains("lost its front") && msg.contains("no journal.base"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn delete_deletes_and_a_replay_needing_the_deleted_seqs_says_so() {
    let dir = support::tmp("retention-delete");
    let cfg = config(&dir, RetainPolicy::Delete);
    let p0 = dir.join("p0");
    let hash = run_rounds(&cfg, 5);
    assert!(!p0.join(ARCHIVE_DIR).exists() || segments(&p0.join(ARCHIVE_DIR)) == 0);
    assert_eq!(recovered_hash(&cfg), hash);
    let text = verify_text(&p0);
    assert!(text.contains("archived or deleted (not present"), "{text}");
    match replay_dir(&p0, EngineConfig::small()) {
        Err(e @ CliError::Archived { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("seqs 1..=") && msg.contains("retained away"),
                "{msg}"
            );
        }
        other => panic!("expected Archived, got {other:?}"),
    }
    assert!(run_journal_dump(&p0, Some(1), Some(3), &mut Vec::new()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keep_removes_nothing() {
    let dir = support::tmp("retention-keep");
    let cfg = config(&dir, RetainPolicy::Keep);
    let p0 = dir.join("p0");
    let hash = run_rounds(&cfg, 4);
    assert!(segments(&p0) >= 4);
    assert!(!p0.join(BASE_NAME).exists());
    assert!(verify_text(&p0).contains("archived: none"));
    assert_eq!(
        replay_dir(&p0, EngineConfig::small()).unwrap().1.state_hash,
        hash
    );
    let _ = std::fs::remove_dir_all(&dir);
}
