//! The on-disk transfer history through the real pipeline (journal, history
//! writer thread, installs, recovery): a partition whose memory holds 256
//! transfers stores many more, and every id, however old, is still answered
//! `exists` — live, after a restart that replays the whole journal (every
//! install re-checked against its run file), and after one from a snapshot.

mod support;

use engine::command::{AccountFlags, AccountSpec, Actor, TransferFlags, TransferSpec};
use engine::event::LedgerError;
use engine::types::{AccountId, Amount, Asset, OwnerId, TransferId};
use engine::{Command, Event};
use runtime::{partition_dir, Pipeline, PipelineConfig};
use runtime::{OutputReader, SubmitError};
use std::path::Path;
use std::time::{Duration, Instant};

const TRANSFERS: u128 = 1200;

fn config(dir: &Path) -> PipelineConfig {
    let mut cfg = support::pipeline_config(dir);
    cfg.engine.transfers_max = 256;
    cfg.history_run_records = 64;
    // Small, so these tests' ids overfill it a little: "maybe" answers
    // fall through to the files (debug builds also check every "no").
    cfg.history_filter_bytes = 1024;
    cfg
}

/// Submits one command (waiting out `busy`) and returns its events.
fn run(p: &Pipeline, reader: &mut OutputReader, token: u64, command: Command) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(SubmitError::Busy) = p.runtime().submit(0, token, command) {
        assert!(Instant::now() < deadline, "inbound ring stays full");
        std::thread::yield_now();
    }
    let mut events = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no answer to token {token}");
        let Some(o) = reader.poll() else {
            std::thread::yield_now();
            continue;
        };
        // Token 0: inputs the runtime made (history installs, time ticks).
        if o.token == token {
            events.extend_from_slice(o.events());
            return events;
        }
    }
}

/// Opens the two USD accounts (ids 1 and 2, owner 1) the transfers move between.
fn open_accounts(p: &Pipeline, reader: &mut OutputReader) {
    for id in 1..=2u128 {
        let spec = AccountSpec {
            id: AccountId(id),
            owner: OwnerId(1),
            asset: Asset::from_str_code("USD").unwrap(),
            flags: AccountFlags::default(),
        };
        let got = run(p, reader, 10 + id as u64, Command::OpenAccount(spec));
        assert_eq!(got, vec![Event::AccountOpened { id: AccountId(id) }]);
    }
}

fn transfer(id: u128) -> Command {
    Command::Transfer {
        transfer: TransferSpec {
            id: TransferId(id),
            debit_account: AccountId(1),
            credit_account: AccountId(2),
            amount: Amount(1),
            code: 7,
            flags: TransferFlags::default(),
            pending_id: TransferId(0),
            timeout_ns: 0,
        },
        batch_end: true,
        actor: Actor::Admin,
    }
}

/// Stores transfer `id`, waiting out `capacity_exceeded` (the live limit
/// while the writer catches up); returns how often it had to wait.
fn store(p: &Pipeline, reader: &mut OutputReader, id: u128) -> u32 {
    for waits in 0..2000 {
        match run(p, reader, id as u64, transfer(id)).as_slice() {
            [Event::TransferOk { id: got }] if got.0 == id => return waits,
            [Event::TransferRejected {
                reason: LedgerError::CapacityExceeded,
                ..
            }] => std::thread::sleep(Duration::from_millis(2)),
            other => panic!("transfer {id}: {other:?}"),
        }
    }
    panic!("transfer {id}: memory never freed (history not installing?)");
}

fn assert_exists(p: &Pipeline, reader: &mut OutputReader, ids: &[u128]) {
    for &id in ids {
        let got = run(p, reader, 1_000_000 + id as u64, transfer(id));
        assert_eq!(
            got,
            vec![Event::TransferRejected {
                id: TransferId(id),
                reason: LedgerError::Exists
            }],
            "retry of transfer {id}"
        );
    }
}

fn runs_on_disk(dir: &Path) -> usize {
    std::fs::read_dir(partition_dir(dir, 0).join("history"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".bhr"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn old_transfer_ids_stay_exactly_once_through_history_restarts_and_snapshots() {
    let dir = support::tmp("history-pipeline");
    let sample = [1u128, 2, 100, 255, 256, 257, 640, TRANSFERS - 1, TRANSFERS];
    {
        let p = Pipeline::open(&config(&dir)).unwrap();
        let mut r = p.runtime().reader(0);
        open_accounts(&p, &mut r);
        let waits: u32 = (1..=TRANSFERS).map(|id| store(&p, &mut r, id)).sum();
        println!("{TRANSFERS} transfers through a 256-transfer memory; {waits} capacity waits");
        assert_exists(&p, &mut r, &sample);
        let c = &p.runtime().shared(0).counters;
        assert!(c.history_runs.get() >= 10, "{} runs", c.history_runs.get());
        assert!(c.history_bytes.get() > 0);
        let files = c.history_files.get();
        assert!((1..=c.history_runs.get()).contains(&files), "{files} files");
        p.shutdown();
    }
    assert!(runs_on_disk(&dir) >= 10, "{} runs", runs_on_disk(&dir));
    let mut out = Vec::new();
    bourse::journal_cli::run_journal_verify(&partition_dir(&dir, 0), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("history runs: ") && out.contains("all verified"),
        "{out}"
    );
    // Restart without snapshots: the whole journal replays, each install
    // re-verifying its run file, and the old ids answer from disk.
    for entry in std::fs::read_dir(partition_dir(&dir, 0)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "snap") {
            std::fs::remove_file(path).unwrap();
        }
    }
    {
        let p = Pipeline::open(&config(&dir)).unwrap();
        assert_eq!(p.recovered()[0].snapshot_seq, None);
        let mut r = p.runtime().reader(0);
        assert_exists(&p, &mut r, &sample);
        store(&p, &mut r, TRANSFERS + 1);
        p.shutdown();
    }
    // Restart from the shutdown snapshot.
    {
        let p = Pipeline::open(&config(&dir)).unwrap();
        assert!(p.recovered()[0].snapshot_seq.is_some());
        let mut r = p.runtime().reader(0);
        assert_exists(&p, &mut r, &sample);
        assert_exists(&p, &mut r, &[TRANSFERS + 1]);
        p.shutdown();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_history_run_refuses_to_start_naming_it() {
    let dir = support::tmp("history-missing");
    {
        let p = Pipeline::open(&config(&dir)).unwrap();
        let mut r = p.runtime().reader(0);
        open_accounts(&p, &mut r);
        for id in 1..=400 {
            store(&p, &mut r, id);
        }
        p.shutdown();
    }
    let run1 = partition_dir(&dir, 0)
        .join("history")
        .join(journal::history::run_name(1));
    // A flipped bit in a record block: `journal verify` names the file.
    let mut bytes = std::fs::read(&run1).unwrap();
    bytes[4096 + 100] ^= 4;
    std::fs::write(&run1, &bytes).unwrap();
    let mut out = Vec::new();
    let err = bourse::journal_cli::run_journal_verify(&partition_dir(&dir, 0), &mut out)
        .expect_err("damaged run")
        .to_string();
    assert!(
        err.contains("run-00000000000000000001.bhr") && err.contains("block 0"),
        "{err}"
    );
    std::fs::remove_file(&run1).unwrap();
    let err = Pipeline::open(&config(&dir))
        .expect_err("run 1 is gone")
        .to_string();
    assert!(
        err.contains("run-00000000000000000001.bhr") && err.contains("missing"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_lost_newest_run_installed_before_the_snapshot_refuses_to_start() {
    let dir = support::tmp("history-lost-newest");
    let newest = {
        let p = Pipeline::open(&config(&dir)).unwrap();
        let mut r = p.runtime().reader(0);
        open_accounts(&p, &mut r);
        for id in 1..=300 {
            store(&p, &mut r, id);
        }
        // Let the writer's last install land before the shutdown snapshot.
        let c = &p.runtime().shared(0).counters;
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.commands[13].get() < c.history_runs.get() {
            assert!(Instant::now() < deadline, "installs never applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        let n = c.history_runs.get();
        p.shutdown();
        n
    };
    // Past the snapshot nothing replays the install: only the check at
    // start-up stands between a lost file and "no such transfer".
    let path = partition_dir(&dir, 0)
        .join("history")
        .join(journal::history::run_name(newest));
    std::fs::remove_file(&path).unwrap();
    let err = Pipeline::open(&config(&dir))
        .expect_err("installed run lost")
        .to_string();
    assert!(
        err.contains(&journal::history::run_name(newest)) && err.contains("missing"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Files in the history directory whose name says they are merged.
fn merged_on_disk(dir: &Path) -> usize {
    std::fs::read_dir(partition_dir(dir, 0).join("history"))
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            n.ends_with(".bhr") && n.matches('-').count() == 2
        })
        .count()
}

#[test]
fn compaction_merges_runs_covered_by_a_snapshot_and_every_id_still_answers() {
    let dir = support::tmp("history-compaction");
    let mut cfg = config(&dir);
    cfg.history_compact_fanout = 2;
    let sample = [1u128, 2, 100, 255, 256, 257, 640, TRANSFERS - 1, TRANSFERS];
    {
        let p = Pipeline::open(&cfg).unwrap();
        let mut r = p.runtime().reader(0);
        open_accounts(&p, &mut r);
        for id in 1..=TRANSFERS {
            store(&p, &mut r, id);
        }
        assert_eq!(merged_on_disk(&dir), 0, "no snapshot yet: nothing eligible");
        p.shutdown();
    }
    let runs = runs_on_disk(&dir);
    // Restarted from the shutdown snapshot: the runs it covers merge (fanout
    // 2: tiers of 2, 4, 8, … runs) while transfers keep coming.
    {
        let p = Pipeline::open(&cfg).unwrap();
        let mut r = p.runtime().reader(0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while runs_on_disk(&dir) > runs / 2 {
            assert!(Instant::now() < deadline, "{} files", runs_on_disk(&dir));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(merged_on_disk(&dir) >= 1);
        assert_exists(&p, &mut r, &sample);
        for id in TRANSFERS + 1..=TRANSFERS + 300 {
            store(&p, &mut r, id);
        }
        assert_exists(&p, &mut r, &sample);
        p.shutdown();
    }
    // From the snapshot again, then a full replay from seq 1 (snapshots
    // removed): merged-away runs re-install from member lists.
    for full in [false, true] {
        if full {
            for entry in std::fs::read_dir(partition_dir(&dir, 0)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "snap") {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
        let p = Pipeline::open(&cfg).unwrap();
        assert_eq!(p.recovered()[0].snapshot_seq.is_none(), full);
        let mut r = p.runtime().reader(0);
        assert_exists(&p, &mut r, &sample);
        assert_exists(&p, &mut r, &[TRANSFERS + 1, TRANSFERS + 300]);
        p.shutdown();
    }
    let mut out = Vec::new();
    bourse::journal_cli::run_journal_verify(&partition_dir(&dir, 0), &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("all verified"));
    std::fs::remove_dir_all(&dir).unwrap();
}
