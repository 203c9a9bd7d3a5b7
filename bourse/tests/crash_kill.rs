//! Process-level crash test: the real `bourse pipeline` runs under load in a
//! child process with `--acks` (it prints `ack SEQ COID` once a command's
//! outputs are released, i.e. once its input is durable) and is killed with
//! SIGKILL at seeded random moments, several rounds on the same data
//! directory. After each kill the journal must hold every acknowledged
//! command (same sequence number, same client order id); at the end,
//! recovery (snapshot + journal) must equal a replay of the whole journal.
//!
//! `TEST_KILL_ROUNDS` sets the number of rounds (default 4).

use engine::{Command, EngineConfig};
use journal::record::decode;
use journal::{self, FsStorage};
use std::io::{BufRead, BufReader};
use std::process::{Command as Proc, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn journal_coids(dir: &std::path::Path) -> (u64, std::collections::HashMap<u64, u64>) {
    let mut coids = std::collections::HashMap::new();
    let rep = journal::scan(&FsStorage, dir, |_, _, _, records| {
        for r in records {
            let i = decode(r).expect("journal records decode");
            let coid = match i.command {
                Command::NewOrder(o) => o.client_order_id.0,
                _ => 0,
            };
            coids.insert(i.seq.0, coid);
        }
        Ok(())
    })
    .expect("journal scans clean after a kill (a torn tail is reported, not an error)");
    (rep.last_seq.unwrap_or(0), coids)
}

#[test]
fn sigkill_never_loses_an_acknowledged_command() {
    let rounds: u64 = std::env::var("TEST_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = std::env::temp_dir().join(format!("bourse-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut seed = 0x5eed_u64;
    let mut total_acks = 0usize;
    for round in 0..rounds {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = Duration::from_millis(400 + (seed >> 33) % 900);
        let mut child = Proc::new(env!("CARGO_BIN_EXE_bourse"))
            .args(["pipeline", "--data-dir"])
            .arg(&dir)
            .args([
                "--rate",
                "20000",
                "--duration-s",
                "30",
                "--acks",
                "--no-pin",
                "--idle",
                "yield",
            ])
            .arg("--seed")
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bourse pipeline");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut acks: Vec<(u64, u64)> = Vec::new();
        // Start the clock at the first acknowledgement (start-up and recovery
        // take a variable time), then kill at a seeded moment under load.
        let started = Instant::now();
        let mut t0 = None;
        while t0.is_none_or(|t: Instant| t.elapsed() < kill_after) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "round {round}: no ack within 60 s"
            );
            if t0.is_none() && !acks.is_empty() {
                t0 = Some(Instant::now());
            }
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(5)) {
                if let Some(rest) = l.strip_prefix("ack ") {
                    let mut it = rest
                        .split(' ')
                        .map(|x| x.parse::<u64>().expect("ack numbers"));
                    acks.push((it.next().unwrap(), it.next().unwrap()));
                }
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // Everything it printed before dying counts as acknowledged.
        reader.join().expect("reader");
        for l in rx.try_iter() {
            if let Some(rest) = l.strip_prefix("ack ") {
                let mut it = rest
                    .split(' ')
                    .map(|x| x.parse::<u64>().expect("ack numbers"));
                acks.push((it.next().unwrap(), it.next().unwrap()));
            }
        }
        assert!(
            !acks.is_empty(),
            "round {round}: no command acknowledged in {kill_after:?}"
        );
        let (last, coids) = journal_coids(&dir.join("p0"));
        for &(seq, coid) in &acks {
            assert!(
                seq <= last,
                "round {round}: ack {seq} beyond the journal's last seq {last}"
            );
            assert_eq!(
                coids.get(&seq),
                Some(&coid),
                "round {round}: ack {seq} (coid {coid}) missing or different in the journal"
            );
        }
        total_acks += acks.len();
    }
    // Recovery (snapshot + tail) equals a full replay of the journal.
    let part = dir.join("p0");
    let rec = journal::recover(&FsStorage, &part, EngineConfig::default(), |c, b| {
        engine::Engine::restore(c, b).map_err(|e| e.to_string())
    })
    .expect("recover");
    let (_, replayed) =
        bourse::journal_cli::replay_dir(&part, EngineConfig::default()).expect("replay");
    assert_eq!(rec.last_seq, replayed.last_seq);
    assert_eq!(
        rec.state_hash, replayed.state_hash,
        "recovery and replay disagree"
    );
    assert!(total_acks > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
