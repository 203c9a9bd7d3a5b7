//! The data directory as a whole, on real files and real processes: one
//! writer at a time (a lock naming its holder, released by the kernel even on
//! SIGKILL), recovery that refuses damaged acknowledged data instead of
//! truncating it, `--repair` that moves damage aside, `journal verify` that
//! fails on damage and on directories that are not journals, private file
//! modes, and a full disk that stops the process with its own exit status.

mod support;

use engine::{Command, Input, InstrumentId, Seq, Timestamp};
use journal::{Durability, FsStorage, JournalConfig, JournalWriter};
use runtime::Pipeline;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Output, Stdio};
use support::{first_line, pipeline_config as config, text, BOURSE};

const SEG: &str = "journal-00000000000000000001.seg";
/// The journal's segment size here (as in `support::pipeline_config`).
const SEGMENT_BYTES: u64 = 8 << 20;

fn tmp(name: &str) -> PathBuf {
    support::tmp(&format!("datadir-{name}"))
}

fn halt(seq: u64) -> Input {
    Input {
        seq: Seq(seq),
        now: Timestamp(seq),
        command: Command::Halt {
            instrument: InstrumentId(1),
        },
    }
}

/// Writes `blocks` durable (synced) blocks of `per_block` records into
/// `data/p0`; returns the offset of the last block.
fn write_journal(data: &Path, blocks: u64, per_block: u64, durability: Durability) -> u64 {
    let cfg = JournalConfig {
        segment_bytes: SEGMENT_BYTES,
        max_batch: 64,
        durability,
    };
    let (mut w, rep) = JournalWriter::open(FsStorage, &data.join("p0"), cfg).unwrap();
    let mut seq = rep.last_seq.unwrap_or(0) + 1;
    let mut last = 0;
    for _ in 0..blocks {
        let inputs: Vec<Input> = (seq..seq + per_block).map(halt).collect();
        w.append_inputs(&inputs).unwrap();
        last = w.last_write().unwrap().1;
        seq += per_block;
    }
    last
}

fn bourse(args: &[&str], dir: &Path) -> Output {
    Proc::new(BOURSE)
        .args(args)
        .arg(dir)
        .output()
        .expect("run bourse")
}

/// Segments of `bourse pipeline` in these tests (small: preallocating the
/// default 64 MiB would dominate the tests' time).
const CHILD_SEGMENT_BYTES: &str = "4194304";

/// `bourse pipeline` on `data` at `rate` orders/s for `seconds` (small
/// segments, unpinned, yielding), then `extra` flags.
fn pipeline(data: &Path, rate: &str, seconds: &str, extra: &[&str]) -> Proc {
    let mut c = Proc::new(BOURSE);
    c.args(["pipeline", "--data-dir"])
        .arg(data)
        .args(["--segment-bytes", CHILD_SEGMENT_BYTES])
        .args(["--rate", rate, "--duration-s", seconds, "--no-pin"])
        .args(["--idle", "yield"])
        .args(extra);
    c
}

/// `bourse pipeline` for a moment on `data` (plus `extra` flags).
fn run_pipeline(data: &Path, extra: &[&str]) -> Output {
    pipeline(data, "200", "0.1", extra)
        .output()
        .expect("run bourse pipeline")
}

/// `bourse serve` on an ephemeral port in `data` with `flags` (small
/// segments, tables not prefaulted).
fn serve(data: &Path, flags: &[&str]) -> Proc {
    let mut c = support::serve(data, flags);
    c.env("BOURSE_PIPELINE_SEGMENT_BYTES", CHILD_SEGMENT_BYTES)
        .env("BOURSE_PIPELINE_PREFAULT", "false");
    c
}

/// Why opening a pipeline on `dir` is refused (`expect` names the case).
fn refused(dir: &Path, expect: &str) -> String {
    Pipeline::open(&config(dir)).expect_err(expect).to_string()
}

/// `journal verify` on `dir/p0`, which must fail (`ctx` prefixes the
/// failure message); returns its standard error.
fn verify_fails(dir: &Path, ctx: &str) -> String {
    let out = bourse(&["journal", "verify"], &dir.join("p0"));
    assert!(!out.status.success(), "{ctx}verify must fail");
    text(&out.stderr)
}

/// Truncates (or extends) the file at `path` to `len` bytes.
fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x10;
    std::fs::write(path, &b).unwrap();
}

#[test]
fn a_second_writer_on_the_same_data_directory_is_refused_naming_the_holder() {
    let dir = tmp("second");
    let first = Pipeline::open(&config(&dir)).expect("first writer");
    let msg = refused(&dir, "second writer must be refused");
    assert!(
        msg.contains("in use") && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    first.shutdown();
    // Released at shutdown: the next writer starts.
    Pipeline::open(&config(&dir))
        .expect("after the first stopped")
        .shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sigkilled_holder_does_not_block_the_next_start() {
    let dir = tmp("killed");
    let mut child = pipeline(&dir, "1000", "60", &["--acks"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bourse pipeline");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while !lines.next().unwrap().unwrap().starts_with("ack ") {}
    let msg = refused(&dir, "the child holds the directory");
    assert!(msg.contains(&format!("pid {}", child.id())), "{msg}");
    assert!(
        msg.contains("pipeline"),
        "names the holder's command: {msg}"
    );
    // Read-only tools cope with the live writer and write nothing; repair
    // is a writer and is refused.
    let listing = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing(&dir.join("p0"));
    for _ in 0..5 {
        let out = bourse(&["journal", "verify"], &dir.join("p0"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains(&format!("live writer: pid {}", child.id())),
            "{}",
            text(&out.stdout)
        );
        let out = bourse(&["journal", "dump"], &dir.join("p0"));
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = bourse(&["journal", "repair"], &dir.join("p0"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("in use"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("p0").join("damaged").exists());
    let after = listing(&dir.join("p0"));
    assert!(
        before.iter().all(|n| after.contains(n)),
        "{before:?} {after:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The lock file is still there, naming a dead process: it must not block.
    Pipeline::open(&config(&dir))
        .expect("a dead holder's lock is free")
        .shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the README's first steps did: a second `serve`, or `pipeline` with
/// the same data directory, while a server runs.
#[test]
fn a_second_serve_or_pipeline_beside_a_running_server_is_refused() {
    let dir = tmp("serve");
    // Both servers on the same metrics address, as two plain `serve`s on
    // defaults are: the second must name the lock's holder, not the port.
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut first = serve(&dir, &[])
        .env("BOURSE_SERVER_METRICS", &metrics)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bourse serve");
    let (addr_line, _lines) = first_line(&mut first);
    let addr_line = addr_line.unwrap();
    assert!(addr_line.contains("QUIC"), "{addr_line}");
    let second = serve(&dir, &[])
        .env("BOURSE_SERVER_METRICS", &metrics)
        .output()
        .unwrap();
    let pipeline = run_pipeline(&dir, &[]);
    first.kill().unwrap();
    first.wait().unwrap();
    for (what, out) in [("serve", second), ("pipeline", pipeline)] {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains("in use") && err.contains(&format!("pid {}", first.id())),
            "{what}: {err}"
        );
    }
    let out = bourse(&["journal", "verify"], &dir.join("p0"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The server's own files are private too.
    for (p, m) in [
        ("", 0o700),
        ("tls", 0o700),
        ("tls/key.der", 0o600),
        ("operator.token", 0o600),
        ("bourse.lock", 0o600),
        ("p0", 0o700),
    ] {
        assert_eq!(mode(&dir.join(p)), m, "{p:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_flipped_byte_in_the_last_synced_block_refuses_to_start_naming_file_and_offset() {
    let dir = tmp("flip");
    let last = write_journal(&dir, 3, 30, Durability::Durable);
    let seg = dir.join("p0").join(SEG);
    flip(&seg, last + 1000);
    let damaged = std::fs::read(&seg).unwrap();
    let msg = refused(&dir, "damaged acknowledged data");
    assert!(
        msg.contains(SEG) && msg.contains(&format!("offset {last}")),
        "{msg}"
    );
    assert!(msg.contains("up to seq 60"), "names what is intact: {msg}");
    let err = verify_fails(&dir, "");
    assert!(
        err.contains(SEG) && err.contains(&format!("offset {last}")),
        "{err}"
    );
    // Nothing was cut or rewritten.
    assert_eq!(std::fs::read(&seg).unwrap(), damaged);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_short_segment_refuses_to_start() {
    for len in [5_000_000u64, 0] {
        let dir = tmp(&format!("short{len}"));
        write_journal(&dir, 3, 30, Durability::Durable);
        let seg = dir.join("p0").join(SEG);
        set_len(&seg, len);
        let msg = refused(&dir, "a truncated segment");
        assert!(msg.contains(SEG) && msg.contains("short"), "{len}: {msg}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), len, "untouched");
        let err = verify_fails(&dir, &format!("{len}: "));
        assert!(err.contains(SEG), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_torn_unsynced_last_write_is_cut_with_a_warning() {
    let dir = tmp("torn");
    write_journal(&dir, 3, 30, Durability::Durable);
    // A 40-record block spans two pages; only its first page landed.
    let last = write_journal(&dir, 1, 40, Durability::Async);
    let seg = dir.join("p0").join(SEG);
    let mut b = std::fs::read(&seg).unwrap();
    b[last as usize + 4096..last as usize + 8192].fill(0);
    std::fs::write(&seg, &b).unwrap();
    let out = bourse(&["journal", "verify"], &dir.join("p0"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("torn"), "{}", text(&out.stdout));
    let out = run_pipeline(&dir, &[]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("WARN") && err.contains(SEG) && err.contains(&format!("offset={last}")),
        "{err}"
    );
    assert!(
        text(&out.stdout).contains("recovered p0: last_seq=90 "),
        "{}",
        text(&out.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn repair_moves_the_damaged_tail_aside_and_starts() {
    for how in ["journal repair", "pipeline --repair"] {
        let dir = tmp(&how.replace(' ', ""));
        let last = write_journal(&dir, 3, 30, Durability::Durable);
        // A clean stop leaves a snapshot at the journal's end (seq 90): it
        // is ahead of the repaired journal, so it moves aside too.
        Pipeline::open(&config(&dir)).unwrap().shutdown();
        let snap = "snapshot-00000000000000000090.snap";
        assert!(dir.join("p0").join(snap).exists());
        let seg = dir.join("p0").join(SEG);
        flip(&seg, last + 1000);
        let tail: Vec<u8> =
            std::fs::read(&seg).unwrap()[last as usize..last as usize + 8192].to_vec();
        let out = if how == "journal repair" {
            bourse(&["journal", "repair"], &dir.join("p0"))
        } else {
            run_pipeline(&dir, &["--repair"])
        };
        let err = text(&out.stderr);
        assert!(out.status.success(), "{how}: {err}");
        assert!(err.contains("ERROR") && err.contains(SEG), "{how}: {err}");
        let moved = dir
            .join("p0")
            .join("damaged")
            .join(format!("{SEG}.{last}.tail"));
        let kept = std::fs::read(&moved).unwrap_or_else(|e| panic!("{how}: {moved:?}: {e}"));
        assert_eq!(kept, tail, "{how}: the damaged bytes, as they were");
        assert!(
            dir.join("p0").join("damaged").join(snap).exists(),
            "{how}: {err}"
        );
        let p = Pipeline::open(&config(&dir)).expect("starts after the repair");
        assert!(p.recovered()[0].last_seq >= 60, "{how}");
        p.shutdown();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn verify_refuses_a_directory_that_is_not_a_journal() {
    let dir = tmp("notjournal");
    std::fs::create_dir_all(&dir).unwrap();
    let out = bourse(&["journal", "verify"], &dir);
    assert!(!out.status.success(), "empty: {}", text(&out.stdout));
    std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
    let out = bourse(&["journal", "verify"], &dir);
    assert!(!out.status.success(), "foreign: {}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("not a journal"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_and_directories_are_private() {
    let dir = tmp("modes");
    let p = Pipeline::open(&config(&dir)).unwrap();
    p.shutdown(); // writes a snapshot
    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&dir.join("p0")), 0o700, "partition directory");
    let mut files = 0;
    for e in std::fs::read_dir(dir.join("p0")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{p:?}");
            files += 1;
        }
    }
    assert!(files >= 2, "a segment and a snapshot");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{p:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file-size limit (`prlimit --fsize`, with SIGXFSZ ignored so the write
/// fails with EFBIG instead of killing the process) stands in for a full
/// disk: a first run creates a 4 MiB segment without the limit; a second
/// resumes in it under a 1 MiB limit, and its first write past 1 MiB fails
/// (the limit bounds write offsets, preallocated or not). The journal thread
/// must stop the process cleanly, naming the file and the error, with exit
/// status 74 (not an abort, which is what it did).
#[test]
fn a_full_disk_stops_the_process_with_a_distinct_exit_code() {
    if Proc::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: no prlimit");
        return;
    }
    let dir = tmp("full");
    let out = run_pipeline(&dir, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let script = format!(
        "trap '' XFSZ; exec prlimit --fsize={} {} pipeline --data-dir {} --segment-bytes {CHILD_SEGMENT_BYTES} \
         --rate 50000 --duration-s 30 --no-pin --idle yield",
        1 << 20,
        BOURSE,
        dir.display(),
    );
    let out = Proc::new("sh").args(["-c", &script]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{err}");
    assert!(
        err.contains("journal-") && err.contains("File too large"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A segment cut exactly at the end of a block (a 4 KiB multiple) is a
/// truncation, not a clean end: the writer never writes into a segment's
/// final page, so a whole segment always ends with a zero page. It used to
/// be accepted, silently dropping the third block. `journal repair` pads
/// the segment with a zero page and keeps every intact block.
#[test]
fn a_segment_cut_at_a_block_boundary_refuses_to_start() {
    let dir = tmp("cutblock");
    let third = write_journal(&dir, 3, 30, Durability::Durable);
    let seg = dir.join("p0").join(SEG);
    assert_eq!(third % 4096, 0);
    set_len(&seg, third);
    let msg = refused(&dir, "a segment cut after its 2nd block");
    assert!(msg.contains(SEG) && msg.contains("short"), "{msg}");
    assert!(msg.contains("up to seq 60"), "{msg}");
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), third, "untouched");
    let err = verify_fails(&dir, "");
    assert!(err.contains(SEG), "{err}");
    let out = bourse(&["journal", "repair"], &dir.join("p0"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p = Pipeline::open(&config(&dir)).expect("starts after the repair");
    assert_eq!(p.recovered()[0].last_seq, 60);
    p.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Segments of 12 KiB holding one 30-record block each: `blocks` blocks
/// make `blocks` segments, named for seqs 1, 31, 61, …
fn write_small_segments(data: &Path, blocks: u64) {
    let cfg = JournalConfig {
        segment_bytes: 12288,
        max_batch: 30,
        durability: Durability::Durable,
    };
    let (mut w, _) = JournalWriter::open(FsStorage, &data.join("p0"), cfg).unwrap();
    for b in 0..blocks {
        let inputs: Vec<Input> = (b * 30 + 1..=b * 30 + 30).map(halt).collect();
        w.append_inputs(&inputs).unwrap();
    }
}

const SEG61: &str = "journal-00000000000000000061.seg";

/// The newest segment deleted (no snapshot after it): the journal still
/// scans clean up to seq 60, which used to start silently without seqs
/// 61..=90. `journal.head` names the newest segment, so it is refused.
#[test]
fn a_lost_newest_segment_refuses_to_start_naming_it() {
    let dir = tmp("lostseg");
    write_small_segments(&dir, 3);
    std::fs::remove_file(dir.join("p0").join(SEG61)).unwrap();
    let msg = refused(&dir, "the newest segment is missing");
    assert!(
        msg.contains(SEG61) && msg.contains("journal.head") && msg.contains("missing"),
        "{msg}"
    );
    assert!(msg.contains("up to seq 60"), "{msg}");
    let err = verify_fails(&dir, "");
    assert!(err.contains(SEG61), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A journal that ends before the newest snapshot (its last segment lost
/// after a clean stop, in a journal without `journal.head`, as earlier
/// versions wrote): refused, naming the missing seq range, with or without
/// `--repair` (the snapshot is valid, but the journal cannot continue from
/// it; a human decides).
#[test]
fn a_journal_shorter_than_the_newest_snapshot_refuses_naming_the_missing_range() {
    let dir = tmp("behindsnap");
    write_small_segments(&dir, 3);
    Pipeline::open(&config(&dir)).unwrap().shutdown();
    assert!(dir
        .join("p0")
        .join("snapshot-00000000000000000090.snap")
        .exists());
    std::fs::remove_file(dir.join("p0").join(SEG61)).unwrap();
    let _ = std::fs::remove_file(dir.join("p0").join("journal.head"));
    for repair in [false, true] {
        let mut cfg = config(&dir);
        cfg.repair = repair;
        let err = Pipeline::open(&cfg).expect_err("seqs 61..=90 are missing");
        let msg = err.to_string();
        assert!(
            msg.contains("seqs 61..=90") && msg.contains("missing"),
            "repair {repair}: {msg}"
        );
    }
    assert!(!dir.join("p0").join("damaged").exists(), "nothing moved");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `serve --repair` moves damage aside and starts; plain `serve` refuses.
#[test]
fn serve_with_repair_moves_the_damage_aside_and_starts() {
    let dir = tmp("serverepair");
    let last = write_journal(&dir, 3, 30, Durability::Durable);
    flip(&dir.join("p0").join(SEG), last + 1000);
    let serve_with = |extra: &[&str]| {
        let mut c = serve(&dir, &["--no-metrics"]);
        c.args(extra);
        c
    };
    let out = serve_with(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(SEG), "{}", text(&out.stderr));
    let mut child = serve_with(&["--repair"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bourse serve --repair");
    let (first, _lines) = first_line(&mut child);
    let first = first.unwrap_or_default();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(first.contains("QUIC"), "serve --repair started: {first:?}");
    assert!(dir
        .join("p0")
        .join("damaged")
        .join(format!("{SEG}.{last}.tail"))
        .exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
