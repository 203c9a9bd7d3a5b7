//! Shared scaffolding for the gateway's integration tests: temporary
//! directories, a small durable `PipelineConfig`, and the real `bourse`
//! binary as a child process — `serve` on an ephemeral port (`127.0.0.1:0`)
//! whose bound address is the last word of its first stdout line, signals
//! sent with `kill`, a bounded wait for the exit, and what it left on
//! standard error and in its partition directory.
//!
//! Each test file includes it with `mod support;` and uses the part it
//! needs (hence the `dead_code` allowance, as in `session_support`).
#![allow(dead_code)]

pub mod cluster;
pub mod history;
pub mod ledger;

use engine::EngineConfig;
use runtime::PipelineConfig;
use runtime::{IdleStrategy, RuntimeConfig};
use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `bourse` binary under test.
pub const BOURSE: &str = env!("CARGO_BIN_EXE_bourse");

/// A fresh (removed if present) directory `bourse-{name}-{pid}` in the
/// system's temporary directory; the test removes it when done.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bourse-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A durable single-process pipeline in `dir` sized for tests: the small
/// engine, 8 MiB segments, nothing prefaulted or pinned, yielding idle
/// threads and no size-triggered snapshots.
pub fn pipeline_config(dir: &Path) -> PipelineConfig {
    let mut cfg = PipelineConfig::new(dir);
    cfg.engine = EngineConfig::small();
    cfg.prefault = false;
    cfg.segment_bytes = 8 << 20;
    cfg.runtime = RuntimeConfig {
        inbound_ring: 1024,
        output_ring: 1 << 14,
        output_readers: 1,
        journal_queue: 1024,
        idle: IdleStrategy::Yield,
        pin: false,
        snapshot_every_bytes: 0,
        ..RuntimeConfig::default()
    };
    cfg
}

/// Process output as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Appends `serve --listen 127.0.0.1:0 FLAGS --data-dir DIR` to `c`.
pub fn serve_args<'c>(c: &'c mut Command, dir: &Path, flags: &[&str]) -> &'c mut Command {
    c.args(["serve", "--listen", "127.0.0.1:0"])
        .args(flags)
        .arg("--data-dir")
        .arg(dir)
}

/// `bourse serve --listen 127.0.0.1:0 FLAGS --data-dir DIR`.
pub fn serve(dir: &Path, flags: &[&str]) -> Command {
    let mut c = Command::new(BOURSE);
    serve_args(&mut c, dir, flags);
    c
}

/// Spawns `c` (a `serve`) with standard output and error piped.
pub fn spawn_piped(c: &mut Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bourse serve")
}

/// Takes the child's (piped) standard output: its first line, if it printed
/// one before closing, and the lines after it.
pub fn first_line(child: &mut Child) -> (Option<String>, Lines<BufReader<ChildStdout>>) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().map(|l| l.expect("utf-8"));
    (first, lines)
}

/// The address a `serve` banner line names: its last word.
pub fn addr_of(line: &str) -> &str {
    line.rsplit(' ').next().unwrap()
}

/// `kill SIGNAL PID` (e.g. `-TERM`) for the child.
pub fn signal(child: &Child, sig: &str) -> std::io::Result<ExitStatus> {
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
}

/// Polls the child every 20 ms until it exits, or until more than `limit`
/// has passed since `t0`: then kills it and returns `None`.
pub fn wait_since(child: &mut Child, t0: Instant, limit: Duration) -> Option<ExitStatus> {
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whatever the child wrote to its (piped, not yet taken) standard error;
/// empty if it was taken already or unreadable.
pub fn read_stderr(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// The names of the files in `dir` (unsorted).
pub fn file_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Log index → (term, body checksum) of every block in a replicated
/// node's partition-0 journal (`dir` is its data directory).
pub fn journal_entries(dir: &Path) -> std::collections::BTreeMap<u64, (u64, u128)> {
    let mut m = std::collections::BTreeMap::new();
    let p0 = dir.join("p0");
    journal::scan(&journal::FsStorage, &p0, |_, _, h, _| {
        let t = h.raft.expect("a replicated journal's blocks carry log ids");
        m.insert(t.index, (t.term, h.body_checksum));
        Ok(())
    })
    .expect("journal scans");
    m
}
