//! Graceful shutdown of the real binary: `bourse serve` on an ephemeral port
//! receives SIGTERM (and, in a second run, SIGINT) and must stop accepting,
//! drain, write its final snapshot and exit with status 0 within the bound.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{addr_of, file_names, first_line, read_stderr, serve, spawn_piped, wait_since};

fn serve_then_signal(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_piped(&mut serve(dir.path(), &["--no-metrics"]));
    let (first, lines) = first_line(&mut child);
    let first = first.expect("serve prints its address");
    let addr: std::net::SocketAddr = addr_of(&first).parse().expect("an address");
    assert_ne!(
        addr.port(),
        0,
        "the printed address is the bound one: {first}"
    );
    // Keep reading standard output in the background (the pipe must not fill).
    let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let t0 = Instant::now();
    let st = support::signal(&child, signal).expect("kill");
    assert!(st.success());
    let status = wait_since(&mut child, t0, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("serve did not stop within 15 s of {signal}"));
    let out = reader.join().unwrap();
    let err = read_stderr(&mut child);
    assert!(
        status.success(),
        "exit {status:?}\nstdout {out:?}\nstderr {err}"
    );
    assert!(err.contains("stopping"), "stderr names the stop: {err}");
    assert!(
        out.iter().any(|l| l.contains("state hash after shutdown")),
        "{out:?}"
    );
    let snaps: Vec<_> = file_names(&dir.path().join("p0"))
        .into_iter()
        .filter(|n| n.starts_with("snapshot-") && n.ends_with(".snap"))
        .collect();
    assert!(!snaps.is_empty(), "a final snapshot is written");
}

#[test]
fn sigterm_drains_snapshots_and_exits_zero() {
    serve_then_signal("-TERM");
}

#[test]
fn sigint_drains_snapshots_and_exits_zero() {
    serve_then_signal("-INT");
}

/// A closed standard output (`serve | head -c0`) must not abort the server:
/// it still stops cleanly on SIGTERM and writes its final snapshot.
#[test]
fn a_closed_stdout_does_not_abort_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_piped(&mut serve(dir.path(), &["--no-metrics"]));
    // Close the read end at once: every write to standard output fails (EPIPE).
    drop(child.stdout.take());
    // Standard error says when the signal handlers are in.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let errs = std::thread::spawn(move || {
        let mut all = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if l.contains("serving") {
                let _ = tx.send(());
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let t0 = Instant::now();
    let _ = rx.recv_timeout(Duration::from_secs(20));
    let _ = support::signal(&child, "-TERM");
    let status = wait_since(&mut child, t0, Duration::from_secs(40)).expect("serve did not stop");
    let err = errs.join().unwrap();
    assert!(status.success(), "exit {status:?}\n{err}");
    assert!(
        file_names(&dir.path().join("p0"))
            .iter()
            .any(|n| n.ends_with(".snap")),
        "a final snapshot is written"
    );
}

/// A closed standard error must not kill `serve` either: tracing-subscriber
/// reported its own failed writes on standard error, and that report panics
/// when standard error is gone. Two ways to lose it: a pipe whose reader
/// went away (writes fail with EPIPE) and a descriptor closed before exec
/// (`exec 2>&-`). Either way `serve` stops on SIGTERM with status 0 and
/// writes its final snapshot.
#[test]
fn a_closed_stderr_does_not_kill_serve() {
    for how in ["broken pipe", "closed fd"] {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "{}exec {} serve --listen 127.0.0.1:0 --no-metrics --data-dir {}",
            if how == "closed fd" {
                "exec 2>&-; "
            } else {
                ""
            },
            env!("CARGO_BIN_EXE_bourse"),
            dir.path().display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bourse serve");
        drop(child.stderr.take());
        let (first, lines) = first_line(&mut child);
        let first = first.unwrap_or_default();
        assert!(first.contains("QUIC"), "{how}: {first:?}");
        let reader = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        // Let the start-up log lines meet the closed stderr first.
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        let _ = support::signal(&child, "-TERM");
        let status = wait_since(&mut child, t0, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{how}: serve did not stop"));
        let out = reader.join().unwrap();
        assert!(status.success(), "{how}: exit {status:?}\n{out:?}");
        assert!(
            out.iter().any(|l| l.contains("state hash after shutdown")),
            "{how}: {out:?}"
        );
        assert!(
            file_names(&dir.path().join("p0"))
                .iter()
                .any(|n| n.ends_with(".snap")),
            "{how}: a final snapshot is written"
        );
    }
}

/// A stop during the start-up (here: prefaulting the default engine tables,
/// seconds in a debug build) ends the process at once with status 128 + 15
/// and takes no snapshot. Before, the handlers went in only once the server
/// ran: the default action killed the process (status: "signal 15"), and as
/// PID 1 of a container, where a signal without a handler is ignored, the
/// stop waited for SIGKILL.
#[test]
fn sigterm_during_start_up_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--metrics",
        "127.0.0.1:0",
        "--set",
        "pipeline.prefault=true",
    ];
    let mut child = spawn_piped(&mut serve(dir.path(), &flags));
    // The metrics endpoint's log line comes after the handlers are in and
    // before the engine tables are prefaulted.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let errs = std::thread::spawn(move || {
        let mut all = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if l.contains("metrics endpoint") {
                let _ = tx.send(());
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("serve logs its metrics endpoint");
    let t0 = Instant::now();
    let _ = support::signal(&child, "-TERM");
    let status = wait_since(&mut child, t0, Duration::from_secs(5))
        .expect("serve did not end within 5 s of SIGTERM during start-up");
    let (first, _) = first_line(&mut child);
    let err = errs.join().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "exit {status:?}\nstdout {first:?}\n{err}"
    );
    assert!(err.contains("SIGTERM during start-up"), "{err}");
    assert_eq!(first, None, "no banner: the server never ran");
    let p0 = dir.path().join("p0");
    let snaps = match p0.exists() {
        true => file_names(&p0),
        false => Vec::new(),
    };
    let snaps = snaps.iter().filter(|n| n.ends_with(".snap")).count();
    assert_eq!(snaps, 0, "no snapshot is taken during start-up");
}
