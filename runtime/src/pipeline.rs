//! The durable pipeline: recovery at start-up, then the runtime with a
//! file-backed journal and snapshots per partition, and a clean shutdown
//! that drains, snapshots and stops.
//!
//! Layout of a data directory: one folder per partition, `p0`, `p1`, …, each
//! holding that partition's journal segments and its newest two snapshots.
//!
//! Layout of a data directory (mode 0700): `bourse.lock` (the writer's lock,
//! see `journal::lock`) and one folder (0700) per partition, `p0`, `p1`, …,
//! each holding that partition's journal segments and its newest two
//! snapshots (files 0600), `journal.base` and `archive/` once retention
//! moved the journal's front away (`journal::retention`, driven by the
//! journal thread after a snapshot became durable), and `damaged/` if a
//! repair moved anything aside.
//!
//! Invariants: one pipeline per data directory: `open` takes the directory's
//! exclusive lock before reading anything and holds it until the pipeline is
//! dropped or shut down (a second writer fails naming the holder); a
//! partition starts only after its state was rebuilt from the newest valid
//! snapshot and the verified journal (a provably torn unsynced tail is cut
//! with a WARN; any other damage halts start-up with an error naming the
//! segment, the offset and the last intact seq, unless `repair` is set, which
//! moves it aside with an ERROR); a snapshot is written only once every input
//! it covers is durable.

use crate::{PartitionStart, Persistence, Runtime, RuntimeConfig, SnapshotBytes};
use engine::{Engine, EngineConfig, Input, Seq};
use journal::history::{DiskHistory, HistoryError, HistoryLink, IdFilter, RunWriter, HISTORY_DIR};
use journal::{disk_usage, DiskUsage, Retention, RetentionConfig, Step};
use journal::{list_snapshots, write_snapshot};
use journal::{recover_attached, FsFile, Recovered, RecoveryError};
use journal::{
    DirLock, Durability, FsStorage, JournalConfig, JournalError, JournalWriter, LockError,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Where journals and snapshots live.
    pub data_dir: PathBuf,
    /// Partitions (engine cores).
    pub partitions: usize,
    /// Engine capacities (per partition).
    pub engine: EngineConfig,
    /// Rings, idle strategy, pinning, snapshot interval.
    pub runtime: RuntimeConfig,
    /// Durability mode.
    pub durability: Durability,
    /// Journal segment size in bytes.
    pub segment_bytes: u64,
    /// Fault in every preallocated table before starting (no page faults on
    /// the hot path later; resident memory = configured capacity).
    pub prefault: bool,
    /// Move damaged journal data aside (into `p<i>/damaged/`) instead of
    /// refusing to start (`--repair`).
    pub repair: bool,
    /// What happens to journal segments the oldest kept snapshot covers.
    pub retention: RetentionConfig,
    /// Transfer changes per history run (0: no on-disk history; durable and
    /// async modes only). Each partition keeps its runs in `p<N>/history/`.
    pub history_run_records: usize,
    /// Installed history runs merged per compaction (`[history]
    /// compact_fanout`; 0: no compaction).
    pub history_compact_fanout: usize,
    /// Bytes of each partition's history id filter (`[history]
    /// filter_bytes`; 0: none).
    pub history_filter_bytes: u64,
}

impl PipelineConfig {
    /// Defaults: one partition, durable, 64 MiB segments.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        PipelineConfig {
            data_dir: data_dir.into(),
            partitions: 1,
            engine: EngineConfig::default(),
            runtime: RuntimeConfig::default(),
            durability: Durability::Durable,
            segment_bytes: 64 << 20,
            prefault: true,
            repair: false,
            retention: RetentionConfig::default(),
            history_run_records: DEFAULT_HISTORY_RUN_RECORDS,
            history_compact_fanout: journal::history::DEFAULT_COMPACT_FANOUT,
            history_filter_bytes: DEFAULT_HISTORY_FILTER_BYTES,
        }
    }
}

/// Bytes of each partition's history id filter by default (`[history]
/// filter_bytes`: ~50 M ids at ~1 % false positives).
pub const DEFAULT_HISTORY_FILTER_BYTES: u64 = 64 << 20;

/// Records per history run by default (`[history] run_records`).
pub const DEFAULT_HISTORY_RUN_RECORDS: usize = 262_144;

/// Why the pipeline could not start.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The transfer history of a partition cannot be opened.
    #[error("transfer history of {dir}: {source}")]
    History {
        /// The partition folder.
        dir: String,
        /// What failed.
        source: Box<journal::history::HistoryError>,
    },
    /// The data directory is in use by another process, or cannot be locked.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Recovery failed (names the file and what failed).
    #[error("recovery of {dir}: {source}")]
    Recovery {
        /// Partition directory.
        dir: String,
        /// What failed (boxed: errors stay small on the success path).
        source: Box<RecoveryError>,
    },
    /// The journal could not be opened for appending.
    #[error("journal of {dir}: {source}")]
    Journal {
        /// Partition directory.
        dir: String,
        /// What failed (boxed: errors stay small on the success path).
        source: Box<JournalError>,
    },
}

/// What recovery found for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecovery {
    /// Snapshot used, if any.
    pub snapshot_seq: Option<u64>,
    /// Journal records replayed on top of it.
    pub replayed: u64,
    /// Last sequence number recovered.
    pub last_seq: u64,
    /// State hash after recovery.
    pub state_hash: u128,
    /// Whether a torn (never acknowledged) journal tail was cut.
    pub truncated_tail: bool,
    /// Damaged journal pieces moved aside by `repair` (file it went to).
    pub moved_aside: Vec<PathBuf>,
    /// Snapshots skipped as invalid (file and reason).
    pub skipped_snapshots: Vec<String>,
}

/// A running durable pipeline.
#[derive(Debug)]
pub struct Pipeline {
    runtime: Runtime,
    recovered: Vec<PartitionRecovery>,
    /// Held for the pipeline's life; dropped after the runtime stopped.
    _lock: DirLock,
}

/// The journal and snapshot files of one partition (what the runtime's
/// journal thread drives).
pub struct FsPersistence {
    writer: JournalWriter<FsStorage>,
    dir: PathBuf,
    bytes_at_snapshot: u64,
    retention: Retention,
    /// When the last retention step ran (under load, one per `STEP_EVERY`).
    last_step: Instant,
    /// A retention pass has written its anchor (`journal.base`) and not
    /// finished its moves or deletes yet.
    mid_pass: bool,
    usage: DiskUsage,
    usage_at: Instant,
}

/// Under load (commits waiting), at most one retention step (a rename and
/// two directory syncs, about a millisecond) per this long; when idle, one
/// per background call.
const STEP_EVERY: Duration = Duration::from_millis(100);
/// How often disk use is measured (a directory listing and a stat per file).
const USAGE_EVERY: Duration = Duration::from_secs(1);

impl std::fmt::Debug for FsPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsPersistence")
            .field("dir", &self.dir)
            .finish()
    }
}

impl FsPersistence {
    /// Opens (scanning, and cutting a torn tail of) the journal in `dir`.
    /// Retention is the default (`archive`); see `with_retention`.
    pub fn open(dir: &Path, cfg: JournalConfig) -> Result<Self, JournalError> {
        let (writer, _) = JournalWriter::open(FsStorage, dir, cfg)?;
        let bytes_at_snapshot = writer.written().1;
        let now = Instant::now();
        let mut p = FsPersistence {
            writer,
            dir: dir.to_path_buf(),
            bytes_at_snapshot,
            retention: Retention::new(dir, RetentionConfig::default()),
            last_step: now,
            mid_pass: false,
            usage: DiskUsage::default(),
            usage_at: now,
        };
        p.measure();
        Ok(p)
    }

    /// Sets the retention of this journal; a pass starts at once when a
    /// snapshot is kept already (finishing one a crash cut short).
    pub fn with_retention(mut self, cfg: RetentionConfig) -> Self {
        self.retention = Retention::new(&self.dir, cfg);
        self.snapshot_kept();
        self
    }

    /// Tells retention the oldest snapshot now kept.
    fn snapshot_kept(&mut self) {
        match list_snapshots(&FsStorage, &self.dir) {
            Ok(all) => {
                if let Some((oldest, _)) = all.first() {
                    self.retention.snapshot_kept(*oldest);
                }
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "journal retention: cannot list snapshots")
            }
        }
    }

    /// Measures disk use (kept for `disk_usage`).
    fn measure(&mut self) {
        self.usage_at = Instant::now();
        match disk_usage(&FsStorage, &self.dir) {
            Ok(u) => self.usage = u,
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot measure disk use")
            }
        }
    }

    /// One retention step, if one is due (see `STEP_EVERY`); whether it
    /// did something.
    fn retention_step(&mut self, idle: bool) -> bool {
        if !self.retention.pending() || (!idle && self.last_step.elapsed() < STEP_EVERY) {
            return false;
        }
        self.last_step = Instant::now();
        let last = self.writer.last_seq().unwrap_or(0);
        let current = self.writer.current_segment();
        match self.retention.step(&FsStorage, last, current) {
            Ok(Step::Done) => {
                self.mid_pass = false;
                self.measure();
                false
            }
            Ok(step) => {
                self.mid_pass |= matches!(step, Step::Anchored(_));
                tracing::debug!(dir = %self.dir.display(), ?step, "journal retention step");
                true
            }
            Err(e) => {
                // Not fatal: nothing acknowledged is at stake, the journal
                // only stops shrinking. Never retried in this process.
                tracing::error!(dir = %self.dir.display(), error = %e, "journal retention failed; it stays off until restart (the journal keeps working and growing)");
                false
            }
        }
    }

    /// Blocks and bytes written so far.
    pub fn written(&self) -> (u64, u64) {
        self.writer.written()
    }

    /// Readies the segment the next commit (starting at `next_seq`) goes to
    /// (see `JournalWriter::prepare`): start-up pays for it, not the first
    /// acknowledged command.
    pub fn prepare(&mut self, next_seq: u64) -> Result<(), JournalError> {
        self.writer.prepare(next_seq)
    }
}

/// Most retention steps a clean shutdown runs to finish a pass in progress.
const SETTLE_STEPS_MAX: usize = 65_536;

impl Persistence for FsPersistence {
    fn settle(&mut self) {
        // A pass is a handful of steps (anchor, then one move or delete per
        // segment): bounded by the segments below the snapshot's seq.
        // Only a pass already anchored is finished: a shutdown starts none.
        for _ in 0..SETTLE_STEPS_MAX {
            if !self.mid_pass || !self.retention_step(true) {
                break;
            }
        }
    }

    fn commit(&mut self, batch: &[Input]) -> std::io::Result<()> {
        for chunk in batch.chunks(self.writer.config().max_batch) {
            self.writer
                .append_inputs(chunk)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    fn snapshot(&mut self, snap: &SnapshotBytes) -> std::io::Result<()> {
        write_snapshot(
            &FsStorage,
            &self.dir,
            snap.seq.0,
            snap.state_hash,
            &snap.bytes,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.bytes_at_snapshot = self.writer.written().1;
        self.snapshot_kept();
        self.measure();
        Ok(())
    }

    fn feed_checkpoint(&mut self, seq: Seq, bytes: &[u8]) -> std::io::Result<()> {
        journal::write_feed_checkpoint(&FsStorage, &self.dir, seq.0, bytes)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.measure();
        Ok(())
    }

    fn bytes_since_snapshot(&self) -> u64 {
        self.writer.written().1 - self.bytes_at_snapshot
    }

    fn bytes_written(&self) -> u64 {
        self.writer.written().1
    }

    fn background(&mut self, idle: bool) -> bool {
        let spare = match self.writer.background(idle) {
            Ok(more) => more,
            Err(e) => {
                // Spares are off from now on; a roll creates the segment in
                // place and a disk that is really failing fails there.
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot prepare the next journal segment ahead");
                false
            }
        };
        let retained = self.retention_step(idle);
        if self.usage_at.elapsed() >= USAGE_EVERY {
            self.measure();
        }
        spare || retained
    }

    fn disk_usage(&self) -> Option<DiskUsage> {
        Some(self.usage)
    }
}

/// The directory of partition `i`.
pub fn partition_dir(data_dir: &Path, i: usize) -> PathBuf {
    data_dir.join(format!("p{i}"))
}

impl Pipeline {
    /// Recovers every partition, then starts the runtime.
    pub fn open(cfg: &PipelineConfig) -> Result<Pipeline, PipelineError> {
        let lock = DirLock::acquire(&cfg.data_dir)?;
        let mut starts = Vec::new();
        let mut recovered = Vec::new();
        let mut writers = Vec::new();
        let history_on = cfg.durability != Durability::None && cfg.history_run_records > 0;
        for i in 0..cfg.partitions.max(1) {
            let dir = partition_dir(&cfg.data_dir, i);
            let (engine, last_seq, rec) = if cfg.durability == Durability::None {
                let (mut engine, last_seq, rec) = fresh_partition(cfg);
                if cfg.runtime.replicated && cfg.history_run_records > 0 {
                    writers.resize_with(i, || None);
                    writers.push(Some(replicated_history(cfg, i, &dir, &mut engine)?));
                }
                if cfg.prefault {
                    engine.prefault();
                }
                (engine, last_seq, rec)
            } else {
                let (engine, last_seq, rec, writer) = recover_partition(cfg, i, &dir, history_on)?;
                if history_on {
                    writers.push(writer);
                }
                (engine, last_seq, rec)
            };
            let persistence = open_persistence(cfg, &dir, last_seq)?;
            recovered.push(rec);
            starts.push(PartitionStart {
                engine,
                last_seq: Seq(last_seq),
                persistence,
            });
        }
        writers.resize_with(starts.len(), || None);
        let runtime = Runtime::start_with_history(cfg.runtime, cfg.durability, starts, writers);
        Ok(Pipeline {
            runtime,
            recovered,
            _lock: lock,
        })
    }

    /// The running runtime (submit commands, read outputs).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The runtime, to set its proposer (replicated partitions) before
    /// anything is submitted.
    pub fn runtime_mut(&mut self) -> &mut Runtime {
        &mut self.runtime
    }

    /// What recovery found, per partition.
    pub fn recovered(&self) -> &[PartitionRecovery] {
        &self.recovered
    }

    /// Drains, snapshots every partition, stops; returns the final state hashes.
    pub fn shutdown(self) -> Vec<u128> {
        self.runtime
            .shutdown()
            .iter()
            .map(|e| e.state_hash())
            .collect()
    }
}

/// One partition recovered: its engine, its last seq, what recovery found,
/// and (history on) its history run writer.
type Recovering = (Engine, u64, PartitionRecovery, Option<RunWriter<FsStorage>>);

/// A partition without durability: a fresh engine, nothing recovered.
fn fresh_partition(cfg: &PipelineConfig) -> (Engine, u64, PartitionRecovery) {
    let e = Engine::new(cfg.engine);
    let h = e.state_hash();
    (
        e,
        0,
        PartitionRecovery {
            snapshot_seq: None,
            replayed: 0,
            last_seq: 0,
            state_hash: h,
            truncated_tail: false,
            moved_aside: Vec::new(),
            skipped_snapshots: Vec::new(),
        },
    )
}

/// A durable partition rebuilt from its newest valid snapshot and its
/// journal, its transfer history (history on) attached before replay and
/// its run writer re-seeded after.
fn recover_partition(
    cfg: &PipelineConfig,
    i: usize,
    dir: &Path,
    history_on: bool,
) -> Result<Recovering, PipelineError> {
    let d = dir.display().to_string();
    let history_err = |source| PipelineError::History {
        dir: d.clone(),
        source: Box::new(source),
    };
    let hdir = dir.join(HISTORY_DIR);
    let (mut store, filter) = open_history(cfg, i, &hdir, history_on).map_err(history_err)?;
    let link = store.as_ref().map(|s| s.link());
    // Attached before replay: replayed installs find their runs. Prefaulted
    // before replay too: the replay then takes no page fault in the
    // engine's tables (measured 21% faster on a 1.6 M-command journal), and
    // the pages are touched once, in order, instead of at random.
    let mut attach = |e: &mut Engine| {
        if let Some(h) = store.take() {
            e.attach_history(Box::new(h));
        }
        if cfg.prefault {
            e.prefault();
        }
    };
    let restore = |c, b: &[u8]| Engine::restore(c, b);
    let r = recover_attached(
        &FsStorage,
        dir,
        cfg.engine,
        restore,
        cfg.repair,
        &mut attach,
    )
    .map_err(|source| PipelineError::Recovery {
        dir: d.clone(),
        source: Box::new(source),
    })?;
    let writer = match history_on {
        true => Some(history_writer(cfg, &hdir, &r, filter, link).map_err(history_err)?),
        false => None,
    };
    let rec = partition_recovery(&r);
    Ok((r.engine, r.last_seq, rec, writer))
}

/// A partition's on-disk history (history on) and its id filter.
type OpenHistory = (Option<DiskHistory<FsStorage>>, Option<Arc<IdFilter>>);

/// The partition's on-disk history (history on) and its id filter.
fn open_history(
    cfg: &PipelineConfig,
    i: usize,
    hdir: &Path,
    history_on: bool,
) -> Result<OpenHistory, HistoryError> {
    let mut store = match history_on {
        true => Some(DiskHistory::open(FsStorage, hdir)?),
        false => None,
    };
    // Filled from every id on disk before replay (an O(history)
    // read); the writer adds each run's ids before its install.
    let filter = store
        .as_mut()
        .and_then(|s| Some((s, Arc::new(IdFilter::new(cfg.history_filter_bytes)?))))
        .map(|(s, f)| {
            let started = std::time::Instant::now();
            let records = s.attach_filter(f.clone())?;
            tracing::info!(
                partition = i,
                records,
                ms = started.elapsed().as_millis() as u64,
                "history id filter filled"
            );
            Ok(f)
        })
        .transpose()?;
    Ok((store, filter))
}

/// The history run writer re-seeded with every change after the last
/// installed run, with its filter and (fanout above 1) its compactor.
fn history_writer(
    cfg: &PipelineConfig,
    hdir: &Path,
    r: &Recovered,
    filter: Option<Arc<IdFilter>>,
    link: Option<Arc<HistoryLink<FsFile>>>,
) -> Result<RunWriter<FsStorage>, HistoryError> {
    // Re-seed: every change after the last installed run.
    let installed = r.engine.installed_history();
    let (run, through, _) = installed.unwrap_or((0, Seq(0), 0));
    if let Some((run, _, checksum)) = installed {
        DiskHistory::open_read_only(FsStorage, hdir)
            .and_then(|h| h.check_installed(run, checksum))?;
    }
    let mut w = RunWriter::new(FsStorage, hdir, run, through.0, cfg.history_run_records)?;
    if let Some(f) = filter {
        w = w.with_filter(f);
    }
    w.push(&r.engine.history_tail(through));
    if let Some(c) = compactor(cfg, hdir, link, (run, r.last_seq)) {
        w = w.with_compactor(c?);
    }
    Ok(w)
}

/// The partition's compactor over the store behind `link` (none when
/// `[history] compact_fanout` is below 2), its runs through `installed`
/// installed at or before the seq beside it.
fn compactor(
    cfg: &PipelineConfig,
    hdir: &Path,
    link: Option<Arc<HistoryLink<FsFile>>>,
    installed: (u64, u64),
) -> Option<Result<journal::history::Compactor<FsStorage>, HistoryError>> {
    let link = link.filter(|_| cfg.history_compact_fanout > 1)?;
    let settings = (
        cfg.history_compact_fanout,
        journal::history::DEFAULT_COMPACT_RECORDS_MAX,
    );
    Some(journal::history::Compactor::new(
        FsStorage, hdir, link, settings, installed,
    ))
}

/// A replicated partition's history: its store attached to the fresh
/// engine (the Raft snapshot, restored later by the group, attaches its
/// own), its filter filled, and a writer that removes nothing (which runs
/// are installed is known only once the snapshot is restored).
fn replicated_history(
    cfg: &PipelineConfig,
    i: usize,
    dir: &Path,
    engine: &mut Engine,
) -> Result<RunWriter<FsStorage>, PipelineError> {
    let hdir = dir.join(HISTORY_DIR);
    let history_err = |source| PipelineError::History {
        dir: dir.display().to_string(),
        source: Box::new(source),
    };
    let (store, filter) = open_history(cfg, i, &hdir, true).map_err(history_err)?;
    let link = store.as_ref().map(|h| h.link());
    if let Some(h) = store {
        engine.attach_history(Box::new(h));
    }
    let mut w =
        RunWriter::replicated(FsStorage, &hdir, cfg.history_run_records).map_err(history_err)?;
    if let Some(f) = filter {
        w = w.with_filter(f);
    }
    // Nothing installed yet: the Raft snapshot's restore, or the log,
    // installs; the compaction thread follows the store the engine has.
    if let Some(c) = compactor(cfg, &hdir, link.clone(), (0, 0)) {
        w = w.with_compactor(c.map_err(history_err)?);
    }
    if let Some(link) = link {
        w = w.with_store_link(link);
    }
    Ok(w)
}

/// What recovery found, as the pipeline reports it.
fn partition_recovery(r: &Recovered) -> PartitionRecovery {
    PartitionRecovery {
        snapshot_seq: r.snapshot_seq,
        replayed: r.replayed,
        last_seq: r.last_seq,
        state_hash: r.state_hash,
        truncated_tail: r.scan.tail.is_some(),
        moved_aside: r.moved_aside.iter().map(|m| m.to.clone()).collect(),
        skipped_snapshots: r
            .skipped_snapshots
            .iter()
            .map(|s| format!("{s:?}"))
            .collect(),
    }
}

/// The partition's journal (none without durability), open for appends
/// from `last_seq + 1`.
fn open_persistence(
    cfg: &PipelineConfig,
    dir: &Path,
    last_seq: u64,
) -> Result<Option<Box<dyn Persistence>>, PipelineError> {
    if cfg.durability == Durability::None {
        return Ok(None);
    }
    let d = dir.display().to_string();
    let jcfg = JournalConfig {
        segment_bytes: cfg.segment_bytes,
        durability: cfg.durability,
        ..JournalConfig::default()
    };
    let journal_err = |source| PipelineError::Journal {
        dir: d.clone(),
        source: Box::new(source),
    };
    let mut p = FsPersistence::open(dir, jcfg)
        .map_err(journal_err)?
        .with_retention(cfg.retention);
    p.prepare(last_seq + 1).map_err(journal_err)?;
    Ok(Some(Box::new(p)))
}
