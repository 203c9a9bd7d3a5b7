//! The journal subcommands as library functions, for `main.rs` to wire:
//! `bourse journal verify DIR`, `bourse journal dump DIR [--from SEQ] [--to
//! SEQ]`, `bourse replay DIR`, `bourse journal repair DIR`.
//!
//! Invariants: verify, dump and replay never write to the directory (no lock
//! file, no cut: a torn tail is reported, and the next writer cuts it); every
//! block is verified and every record decoded; any damage is an error naming
//! the segment file, the offset, the failed check and the last intact seq,
//! never skipped; a directory without segments is an error, not an empty
//! journal. A journal whose front was retained away (`journal.base`) is read
//! from its base, and `verify` and `replay` read the archived range first
//! (automatically: `archive/` and any segment left before the base), as
//! does `dump` when its range reaches before the base; every summary says
//! what range it covered ("seq 1..=N archived in …/archive (verified)"), and
//! seqs needed but not present are an error naming them. A live writer is tolerated: damage at the tail while one holds
//! the lock is read again (the write was in flight). `repair` is the one
//! writer here: it takes the data directory's lock and moves damage aside.

use crate::dump::ScriptDumper;
use engine::Input;
use engine::{Engine, EngineConfig};
use journal::ArchiveReport;
use journal::{
    self, decode_records, DirLock, FsStorage, JournalError, LockError, MovedAside, ReplayError,
    ScanReport, Storage,
};
use std::convert::Infallible;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Errors of the journal subcommands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The journal is damaged or unreadable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// The data directory could not be locked for a repair.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A repair could not list or move snapshots.
    #[error(transparent)]
    Recovery(#[from] journal::RecoveryError),
    /// Seqs asked for were retained away and are not (all) in the archive.
    #[error("seqs {from}..={to} were retained away from the journal and are not all in the archive: {archive}; restore the archived segments into {} (journal.retain = \"delete\" or journal.archive_bytes_max removed them)", archive.dir.display())]
    Archived {
        /// First seq needed.
        from: u64,
        /// Last seq needed.
        to: u64,
        /// What the archive holds.
        archive: Box<ArchiveReport>,
    },
    /// The partition's transfer history does not verify.
    #[error(transparent)]
    History(#[from] journal::history::HistoryError),
    /// Replay needs the journal to start at seq 1.
    #[error("journal in {dir} starts at seq {first}; a replay from scratch needs seq 1")]
    NotFromStart {
        /// The directory.
        dir: String,
        /// Its first seq.
        first: u64,
    },
}

impl From<Infallible> for CliError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// How often a read-only tool reads again when damage at the tail may be a
/// live writer's write in flight, and how long it waits between reads.
const LIVE_RETRIES: u32 = 5;
const LIVE_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// What a read-only tool read: the archived range (when the journal's front
/// was retained away and the tool read it) and the journal itself.
#[derive(Debug, Clone)]
pub struct Covered {
    /// The archived range (`None`: nothing retained away, or not read).
    pub archive: Option<ArchiveReport>,
    /// The journal in the directory.
    pub journal: ScanReport,
}

/// `journal::replay` for the read-only tools: every input with seq in
/// `from..=to` to `apply`, after the archived range when `from` reaches
/// before `journal.base`; an error when `dir` holds no segment; damage (or
/// a segment gone) while a live writer holds the lock is read again from
/// `from` (the closure must tolerate seeing inputs again: the writer may be
/// archiving meanwhile).
fn replay_read_only<E, F>(dir: &Path, from: u64, to: u64, mut apply: F) -> Result<Covered, CliError>
where
    F: FnMut(&Input) -> Result<(), E>,
    CliError: From<E>,
{
    if journal::list_segments(&FsStorage, dir)?.is_empty() {
        let mut found = FsStorage.list(dir).unwrap_or_default();
        if let Ok(rd) = std::fs::read_dir(dir) {
            found.extend(
                rd.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| format!("{}/", e.file_name().to_string_lossy())),
            );
        }
        found.sort();
        found.truncate(8);
        return Err(JournalError::NotAJournal {
            dir: dir.to_path_buf(),
            found,
        }
        .into());
    }
    let mut tries = 0;
    loop {
        // One thread: `replay_overlapped` (the scan on a second thread) was
        // measured slower here, see `journal::replay_overlapped`.
        match journal::replay(&FsStorage, dir, from, to, &mut apply) {
            Err(ReplayError::Journal(JournalError::Corrupt { .. } | JournalError::Io { .. }))
                if tries < LIVE_RETRIES && journal::live_writer(dir).is_some() =>
            {
                tries += 1;
                std::thread::sleep(LIVE_WAIT);
            }
            Err(ReplayError::Journal(e)) => return Err(e.into()),
            Err(ReplayError::Apply(e)) => return Err(e.into()),
            Ok(r) => {
                return Ok(Covered {
                    archive: r.archive,
                    journal: r.scan,
                })
            }
        }
    }
}

fn print_summary(c: &Covered, out: &mut impl Write) -> std::io::Result<()> {
    let rep = &c.journal;
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    match (&rep.base, &c.archive) {
        (None, _) => writeln!(out, "archived: none (the journal starts at seq 1)")?,
        (Some(_), Some(a)) => writeln!(out, "archived: {a}")?,
        (Some(b), None) => writeln!(
            out,
            "archived: seq 1..={} retained away (not read)",
            b.retained_through()
        )?,
    }
    writeln!(out, "segments: {}", rep.segments)?;
    writeln!(out, "blocks: {}", rep.blocks)?;
    writeln!(out, "records: {}", rep.records)?;
    writeln!(out, "first seq: {}", opt(rep.first_seq))?;
    writeln!(out, "last seq: {}", opt(rep.last_seq))?;
    match &rep.tail {
        Some(t) => writeln!(
            out,
            "torn tail: {t} (an unsynced write cut short, never acknowledged; the next writer cuts it)"
        )?,
        None => writeln!(out, "torn tail: none")?,
    }
    for p in &rep.trailing {
        writeln!(
            out,
            "segment without valid blocks after the end: {} (recovery removes it)",
            p.display()
        )?;
    }
    for p in &rep.retired {
        writeln!(
            out,
            "segment before journal.base still in place: {} (the next retention pass moves it)",
            p.display()
        )?;
    }
    Ok(())
}

/// `bourse journal verify DIR`: checks every block and record, of the
/// archive too when the journal's front was archived; prints the range
/// archived, counts, the last seq and any torn tail. `Err` names the damage.
pub fn run_journal_verify(dir: &Path, out: &mut impl Write) -> Result<Covered, CliError> {
    let rep = replay_read_only(dir, 1, u64::MAX, |_| Ok::<(), Infallible>(()))?;
    print_summary(&rep, out)?;
    let history = dir.join(journal::history::HISTORY_DIR);
    if history.is_dir() {
        // Every run read whole: block, section, header and content checksums.
        let h = journal::history::DiskHistory::open_read_only(FsStorage, &history)?;
        h.verify()?;
        writeln!(
            out,
            "history runs: {} ({} bytes, all verified)",
            h.runs(),
            h.bytes()
        )?;
    }
    if let Some(holder) = journal::live_writer(dir) {
        writeln!(out, "live writer: {holder} (this is a moment's view)")?;
    }
    writeln!(out, "ok")?;
    Ok(rep)
}

/// `bourse journal dump DIR [--from SEQ] [--to SEQ]`: the inputs with seq
/// in `from..=to` as `bourse script` JSON lines. The whole journal is still
/// verified, and the archive too when the range reaches before
/// `journal.base`; seqs that were retained away and are not in the archive
/// are an error naming them (nothing is printed in silence short).
pub fn run_journal_dump(
    dir: &Path,
    from: Option<u64>,
    to: Option<u64>,
    out: &mut impl Write,
) -> Result<Covered, CliError> {
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    let base = journal::read_base(&FsStorage, dir)?;
    let with_archive = base.is_some_and(|b| from < b.first_seq);
    if let Some(b) = base.filter(|_| with_archive) {
        // Before printing anything: are the archived seqs asked for there?
        let a = journal::scan_archive(&FsStorage, dir, |_, _, _, _| Ok(()))?;
        let want_to = to.min(b.retained_through());
        if let Some(a) = a.filter(|a| !a.covers(from.max(1), want_to)) {
            return Err(CliError::Archived {
                from: from.max(1),
                to: want_to,
                archive: Box::new(a),
            });
        }
    }
    let mut dumper = ScriptDumper::new();
    // Lines go out as inputs are read; a re-read (live writer) starts the
    // output over only where it had not been written yet.
    let mut printed_upto = 0u64;
    replay_read_only(dir, from, to, |input| {
        let seq = input.seq.0;
        if seq <= printed_upto {
            return Ok(());
        }
        printed_upto = seq;
        for line in dumper.lines(input) {
            writeln!(out, "{line}")?;
        }
        Ok::<(), std::io::Error>(())
    })
}

/// What `run_replay` measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayReport {
    /// Commands applied.
    pub commands: u64,
    /// Last seq applied.
    pub last_seq: u64,
    /// Engine state hash at the end.
    pub state_hash: u128,
    /// Wall time of read + verify + decode + apply.
    pub seconds: f64,
    /// Wall time of building the engine and touching its preallocated
    /// memory first (as the server does at start-up), before the replay.
    pub prefault_seconds: f64,
}

/// Replays the journal in `dir` into a fresh engine (without writing to the
/// directory) and returns the state and the time taken. A journal whose
/// front was archived is replayed from the archive, across the base; one
/// whose archived seqs are not all present is an error naming them.
pub fn replay_dir(dir: &Path, cfg: EngineConfig) -> Result<(Engine, ReplayReport), CliError> {
    let fresh = || {
        let mut e = Engine::new(cfg);
        e.prefault();
        e
    };
    let t_prefault = Instant::now();
    let mut engine = fresh();
    let prefault_seconds = t_prefault.elapsed().as_secs_f64();
    let mut events = engine.new_events();
    let t0 = Instant::now();
    let mut n = 0u64;
    let mut applied = 0u64;
    let covered = replay_read_only(dir, 1, u64::MAX, |input| {
        if input.seq.0 <= applied {
            // Read again from the start (a live writer): start over.
            engine = fresh();
            n = 0;
        }
        applied = input.seq.0;
        engine.apply(input, &mut events);
        n += 1;
        Ok::<(), Infallible>(())
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(a) = covered.archive.filter(|a| !a.complete()) {
        return Err(CliError::Archived {
            from: 1,
            to: a.base.retained_through(),
            archive: Box::new(a),
        });
    }
    let rep = covered.journal;
    if let Some(first) = rep.first_seq.filter(|_| rep.base.is_none()) {
        if first != 1 {
            return Err(CliError::NotFromStart {
                dir: dir.display().to_string(),
                first,
            });
        }
    }
    let report = ReplayReport {
        commands: n,
        last_seq: rep.last_seq.unwrap_or(0),
        state_hash: engine.state_hash(),
        seconds,
        prefault_seconds,
    };
    Ok((engine, report))
}

/// `bourse replay DIR`: rebuilds the state from the journal and prints the
/// state hash and the replay throughput.
pub fn run_replay(
    dir: &Path,
    cfg: EngineConfig,
    out: &mut impl Write,
) -> Result<ReplayReport, CliError> {
    let (_, r) = replay_dir(dir, cfg)?;
    writeln!(out, "commands: {}", r.commands)?;
    writeln!(out, "last seq: {}", r.last_seq)?;
    writeln!(out, "state hash: {:032x}", r.state_hash)?;
    writeln!(
        out,
        "replay: {:.3} s, {:.2} M commands/s (after {:.3} s building and prefaulting the engine)",
        r.seconds,
        r.commands as f64 / r.seconds.max(1e-9) / 1e6,
        r.prefault_seconds
    )?;
    Ok(r)
}

/// `bourse journal repair DIR` (a partition directory): takes the data
/// directory's lock (a running server must be stopped first), moves every
/// damaged piece of the journal aside into `DIR/damaged/` (logged as ERRORs)
/// and prints what moved and the journal that remains. A torn unsynced tail
/// is left for the next writer to cut, with its WARN.
pub fn run_journal_repair(dir: &Path, out: &mut impl Write) -> Result<Vec<MovedAside>, CliError> {
    if journal::list_segments(&FsStorage, dir)?.is_empty() {
        return Err(JournalError::NotAJournal {
            dir: dir.to_path_buf(),
            found: Vec::new(),
        }
        .into());
    }
    let _lock = DirLock::acquire(lock_dir(dir))?;
    let moved = journal::repair_partition(&FsStorage, dir)?;
    for m in &moved {
        writeln!(
            out,
            "moved aside: {} from offset {} ({} bytes) -> {}",
            m.from.display(),
            m.offset,
            m.bytes,
            m.to.display()
        )?;
    }
    if moved.is_empty() {
        writeln!(out, "no damage found; nothing moved")?;
    }
    let journal = journal::scan(&FsStorage, dir, |_, _, _, records| {
        decode_records(records, |_| ())
    })?;
    print_summary(
        &Covered {
            archive: None,
            journal,
        },
        out,
    )?;
    Ok(moved)
}

/// The data directory whose lock guards the partition directory `dir`:
/// its parent for a `p<N>` partition, else `dir` itself (a bare journal).
fn lock_dir(dir: &Path) -> &Path {
    let is_partition = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix('p'))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    match dir.parent() {
        Some(p) if is_partition && !p.as_os_str().is_empty() => p,
        _ => dir,
    }
}
