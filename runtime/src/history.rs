//! The history writer thread of a partition: takes the engine's transfer
//! changes from the bounded history ring, cuts them into run files
//! ([`RunWriter`]) and installs each run through a journaled
//! `Command::InstallHistory` the thread submits itself (token 0).
//!
//! Invariants: a run is cut only through a seq that is both applied (every
//! change up to it has been taken from the ring: the engine pushes an
//! input's changes before publishing its `applied_seq`) and durable in the
//! journal, so no run ever holds a change recovery could lose; the install
//! command is submitted after the run file is synced and renamed, and a full
//! inbound ring delays it (retried), never drops it; a run is never cut while
//! the previous install waits, so installs reach the engine in run order; a
//! failed write, or an install the engine rejected, stops the process
//! through `fatal` (never retried in silence: the engine would keep every
//! later record in memory until it is full).
//!
//! A replicated partition's writer (`replicated_loop`) cuts only while its
//! node serves and installs nothing itself: see [`HistoryHandoff`].
//!
//! Compaction (`history::compact`) runs on a thread of its own, so a merge
//! (seconds for millions of records) never keeps this one from draining
//! the ring: the engine never waits on compaction. A failed merge stops
//! compaction only (logged): the runs it would have merged stay as they are
//! and answer as before.

use super::history_handoff::{CutRun, HistoryHandoff, HistoryItem};
use super::idle::{IdleStrategy, Idler};
use super::partition::{Request, Shared};
use engine::{Command, Seq};
use journal::history::{Compactor, RunWriter};
use journal::FsStorage;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Index of `install_history` in `COMMAND_KINDS` (its reject counter).
const INSTALL_KIND: usize = 13;

/// Runs until the engine thread stopped and the ring is drained.
pub fn history_loop(mut writer: RunWriter<FsStorage>, shared: Arc<Shared>, fatal: fn(&str)) {
    let compaction = writer.take_compactor().map(|c| {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("history-compact".into())
            .spawn(move || match &shared.history_handoff {
                Some(h) => replicated_compact_loop(c, &shared, h),
                None => single_compact_loop(c, &shared),
            })
            .expect("spawn the history compaction thread")
    });
    match &shared.history_handoff {
        Some(h) => replicated_loop(&mut writer, &shared, h, fatal),
        None => write_loop(&mut writer, &shared, fatal),
    }
    if let Some(t) = compaction {
        let _ = t.join();
    }
}

/// How often the compaction thread looks for work.
const COMPACT_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A single node's compaction: merges runs covered by the oldest kept
/// snapshot while the engine runs; returns once it stopped.
fn single_compact_loop(mut c: Compactor<FsStorage>, shared: &Shared) {
    let dir = c.dir().to_path_buf();
    compact_loop(shared, &dir, || {
        c.observe(|| shared.applied_seq.load(Ordering::Acquire))
            .and_then(|()| c.step())
    });
}

/// Calls `step` (one look, at most one merge; whether it merged) until the
/// engine stopped, pausing when there was nothing to do. A failure stops
/// compaction only.
fn compact_loop(
    shared: &Shared,
    dir: &std::path::Path,
    mut step: impl FnMut() -> Result<bool, journal::history::HistoryError>,
) {
    while !shared.stopped.load(Ordering::Acquire) {
        match step() {
            Ok(true) => count_files(shared, dir),
            Ok(false) => std::thread::sleep(COMPACT_POLL),
            Err(e) => {
                tracing::error!(error = %e, "history compaction failed; it stays off until restart (runs keep answering as they are)");
                return;
            }
        }
    }
}

/// A replicated partition's compaction: the same merges as a single
/// node's, of runs whose install this node's Raft log has purged (no peer
/// can be sent that install from here, so none asks this node for the run
/// alone; a peer that still needs it adopts the merged file), under the
/// handoff's merges lock, started again from the engine's current store
/// whenever it changed (a restore) or a peer's file was adopted.
fn replicated_compact_loop(first: Compactor<FsStorage>, shared: &Shared, h: &HistoryHandoff) {
    // Started again from the store the handoff names (see `compact_step`).
    let settings = first.settings();
    drop(first);
    let mut current: Option<(u64, Compactor<FsStorage>)> = None;
    compact_loop(shared, h.dir(), || {
        if h.paused() {
            return Ok(false);
        }
        let _merges = h.lock_merges();
        compact_step(&mut current, settings, shared, h)
    });
}

/// One look (and at most one merge) of [`replicated_compact_loop`].
fn compact_step(
    current: &mut Option<(u64, Compactor<FsStorage>)>,
    settings: (usize, u64),
    shared: &Shared,
    h: &HistoryHandoff,
) -> Result<bool, journal::history::HistoryError> {
    let generation = h.generation();
    if current.as_ref().is_none_or(|c| c.0 != generation) {
        let Some(s) = h.store() else {
            return Ok(false);
        };
        // Runs installed since the store was attached: at or before now.
        let installed = s.link.installed_run().max(s.installed_run);
        let by_seq = if installed > s.installed_run {
            shared.applied_seq.load(Ordering::Acquire) + 1
        } else {
            s.by_seq
        };
        let c = Compactor::new(FsStorage, h.dir(), s.link, settings, (installed, by_seq))?;
        *current = Some((generation, c));
    }
    let c = &mut current.as_mut().expect("set above").1;
    c.observe_covered(
        || shared.applied_seq.load(Ordering::Acquire),
        Some(h.purged_seq()),
    )?;
    c.step()
}

/// The writer proper (see the module doc).
fn write_loop(writer: &mut RunWriter<FsStorage>, shared: &Arc<Shared>, fatal: fn(&str)) {
    let ring = shared.history.as_ref().expect("history ring");
    let mut idler = Idler::new(IdleStrategy::Park { max_sleep_us: 200 });
    let mut install: Option<Command> = None;
    let mut batch = Vec::with_capacity(4096);
    debug_assert_eq!(super::COMMAND_KINDS[INSTALL_KIND], "install_history");
    let rejected_at_start = shared.counters.rejected[INSTALL_KIND].get();
    shared.counters.history_runs.set(writer.last().0);
    count_files(shared, writer.dir());
    loop {
        let stopped = shared.stopped.load(Ordering::Acquire);
        let applied = shared.applied_seq.load(Ordering::Acquire);
        batch.clear();
        let mut worked = false;
        while let Some(item) = ring.pop() {
            worked = true;
            // A single node's writer installs its own runs and is never
            // restored: the marks say nothing it does not know.
            if let HistoryItem::Change(r) = item {
                batch.push(r);
            }
        }
        writer.push(&batch);
        if shared.counters.rejected[INSTALL_KIND].get() != rejected_at_start {
            fatal("the engine rejected a history run install (see the journal); stopping");
            return;
        }
        if let Some(cmd) = install.take() {
            let req = Request::Command {
                token: 0,
                command: cmd,
            };
            if shared.inbound.push(req).is_err() {
                install = Some(cmd); // full: retry on the next turn
            }
            worked = true;
        }
        let durable = shared.durable_seq.load(Ordering::Acquire);
        let through = applied.min(durable);
        let ready = writer.due_through().is_some_and(|t| t <= through);
        if install.is_none() && !stopped && ready {
            match cut_counted(writer, shared, through, false) {
                Ok((run, checksum)) => {
                    install = Some(Command::InstallHistory {
                        run,
                        through_seq: Seq(through),
                        checksum,
                    });
                }
                Err(e) => {
                    fatal(&format!("history run write failed: {e}"));
                    return;
                }
            }
            worked = true;
        }
        if stopped && ring.is_empty() && !worked {
            return;
        }
        idler.idle(worked);
    }
}

/// Writes the run through `through` (`held`: keeping its changes waiting,
/// `RunWriter::cut_held`) and counts it in the metrics.
fn cut_counted(
    writer: &mut RunWriter<FsStorage>,
    shared: &Shared,
    through: u64,
    held: bool,
) -> Result<(u64, u128), journal::history::HistoryError> {
    let cut = match held {
        true => writer.cut_held(through)?,
        false => writer.cut(through)?,
    };
    if !held {
        // A held run counts once installed (`note_installed_run`).
        shared.counters.history_runs.add(1);
        count_files(shared, writer.dir());
    }
    Ok(cut)
}

/// A replicated partition's history gauges after run `run` was installed
/// (cut here or adopted from a peer): runs installed, bytes of the files.
fn note_installed_run(shared: &Shared, h: &HistoryHandoff, run: u64) {
    h.note_installed(run);
    shared.counters.history_runs.set(run);
    count_files(shared, h.dir());
}

/// Sets the history gauges of files on disk in `dir` (runs and merged
/// files) and their bytes (a directory that cannot be read counts none).
fn count_files(shared: &Shared, dir: &std::path::Path) {
    let (mut files, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if journal::history::parse_file_name(&e.file_name().to_string_lossy()).is_some() {
            files += 1;
            bytes += e.metadata().map_or(0, |m| m.len());
        }
    }
    shared.counters.history_files.set(files);
    shared.counters.history_bytes.set(bytes);
}

/// A replicated partition's writer: every node keeps the changes after the
/// last installed run (learned at the ring's `Installed` marks, whoever
/// cut the run), so any node can take over as leader; only a serving node
/// cuts, one run at a time, without letting go of its changes until the
/// run's install is applied (the group ships the file to its followers and
/// proposes the install, see `replica`). Until then the same cut writes
/// the same bytes, so a retried proposal names the same checksum.
fn replicated_loop(
    writer: &mut RunWriter<FsStorage>,
    shared: &Shared,
    h: &HistoryHandoff,
    fatal: fn(&str),
) {
    let ring = shared.history.as_ref().expect("history ring");
    let mut idler = Idler::new(IdleStrategy::Park { max_sleep_us: 500 });
    let mut batch = Vec::with_capacity(4096);
    loop {
        let stopped = shared.stopped.load(Ordering::Acquire);
        let applied = shared.applied_seq.load(Ordering::Acquire);
        let mut worked = false;
        while let Some(item) = ring.pop() {
            worked = true;
            match item {
                HistoryItem::Change(r) => batch.push(r),
                HistoryItem::Installed { run, through } => {
                    writer.push(&batch);
                    batch.clear();
                    writer.settle(run, through.0);
                    note_installed_run(shared, h, run);
                }
                HistoryItem::Restored => {
                    batch.clear();
                    let r = h.take_reset().expect("a restore mark without its reset");
                    writer.reset(r.run, r.through.0, &r.tail);
                    h.clear_cut();
                    note_installed_run(shared, h, r.run);
                }
            }
        }
        writer.push(&batch);
        batch.clear();
        // The lock of `cut()` only once a run is due.
        let due = writer.catch_up_through(applied);
        let due = due.filter(|_| !stopped && h.serving() && h.cut().is_none());
        if let Some(through) = due {
            let files = h.lock_files();
            if h.queued_run() > writer.last().0 {
                // The log already installs this run: its file is the
                // one the apply side checked; wait for the mark.
                drop(files);
                idler.idle(worked);
                continue;
            }
            let cut = cut_counted(writer, shared, through, true);
            drop(files);
            match cut {
                Ok((run, checksum)) => {
                    h.put_cut(CutRun {
                        run,
                        through: Seq(through),
                        checksum,
                    });
                }
                Err(e) => {
                    fatal(&format!("history run write failed: {e}"));
                    return;
                }
            }
            worked = true;
        }
        if stopped && ring.is_empty() && !worked {
            return;
        }
        idler.idle(worked);
    }
}
