//! The Raft log of a partition, which is its journal: one commit block per
//! log entry, the entry's log id in the block header (`journal::RaftTag`),
//! the engine inputs it stands for as the block's records. The vote and the
//! memberships of membership entries live beside it (`files`).
//!
//! Entries after the last purge are also kept decoded in memory (replication
//! and apply read them back; openraft purges once a snapshot covers them,
//! so this is bounded by the snapshot policy, not by history).
//!
//! Invariants: an entry is reported durable (`IOFlushed::io_completed`)
//! only after the fdatasync that covers its block; one append call is one
//! group (its blocks written back to back, then one sync); no hole: blocks
//! go in index order, each continuing the hash chain and the seqs; a
//! failed write or sync poisons the store for good (never retried: after a
//! failed fsync the disk's state is unknown) and every later call fails; a
//! cut (`truncate_after`) or restart (`restart_at`) is durable before the
//! call returns; a block without a log id, or log ids that skip, is
//! refused on open naming the file, never read as a Raft log.

use crate::files::{read_value, write_value, FileError, MEMBERS_FILE, VOTE_FILE};
use crate::types::BATCH_INPUTS_MAX;
use crate::types::{inputs_of, kind_of, Batch, Cfg, Entry, Item, LogId, NodeId, Payload, Stamp};
use journal::record::{encode_from, Origin};

/// An input read back from the journal with the origin its record carries.
type OriginInput = (engine::Input, Origin);
use journal::{
    Durability, JournalConfig, JournalEnd, JournalError, JournalWriter, Storage, StorageFile,
};
use journal::{RaftKind, RaftTag};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, Membership, RaftLogReader};
use std::collections::VecDeque;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The vote of this configuration.
pub type Vote = openraft::type_config::alias::VoteOf<Cfg>;

/// Why a replicated journal cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The journal itself (damage, I/O).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A vote or membership file.
    #[error(transparent)]
    File(#[from] FileError),
    /// The journal is not a Raft log, or its log ids do not follow.
    #[error("{}: {what}", dir.display())]
    NotRaftLog {
        /// The partition directory.
        dir: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl From<LogError> for io::Error {
    fn from(e: LogError) -> io::Error {
        io::Error::other(e)
    }
}

/// Where the log starts: the last entry a snapshot covers (its log id and
/// the numbering after it), or nothing.
pub type Anchor = Option<(LogId, Stamp)>;

#[derive(Clone, Debug)]
struct Cached {
    entry: Entry,
    stamp: Stamp,
    end: Option<JournalEnd>,
}

#[derive(Debug)]
struct Inner<S: Storage> {
    storage: S,
    dir: PathBuf,
    writer: Option<JournalWriter<S>>,
    entries: VecDeque<Cached>,
    /// The last purged entry: its log id, stamp and journal end.
    purged: Option<(LogId, Stamp, Option<JournalEnd>)>,
    vote: Option<Vote>,
    members: Vec<(LogId, Membership<NodeId, openraft::BasicNode>)>,
    /// A write or sync failed: every later call fails (shared with the
    /// syncer thread).
    poisoned: Arc<AtomicBool>,
    /// Whole segments every kept entry is after leave the directory once a
    /// purge (after a snapshot) passes them: archived by default.
    retention: journal::Retention,
    records: Vec<journal::record::InputRecord>,
    /// Where the seq the log is purged through is published (history
    /// compaction merges only runs whose install is purged).
    purged_watch: Option<Arc<AtomicU64>>,
}

/// The journal-backed Raft log store of one partition (cheap to clone: the
/// log reader is a clone).
#[derive(Debug)]
pub struct JournalLog<S: Storage> {
    inner: Arc<Mutex<Inner<S>>>,
    syncer: Option<Arc<Syncer<S::File>>>,
}

impl<S: Storage> Clone for JournalLog<S> {
    fn clone(&self) -> Self {
        JournalLog {
            inner: self.inner.clone(),
            syncer: self.syncer.clone(),
        }
    }
}

/// How appended entries are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// In `append` itself (the simulation: one thread, deterministic).
    Inline,
    /// On a syncer thread: `append` returns once the blocks are written,
    /// so the leader replicates them while its own fdatasync runs (the
    /// callback fires after it); everything queued meanwhile is one group.
    Thread,
}

enum Job<F> {
    Flush(Option<F>, IOFlushed<Cfg>),
    Barrier(std::sync::mpsc::Sender<()>),
}

/// The syncer thread's queue (the thread stops when the log is dropped).
struct Syncer<F> {
    tx: Mutex<std::sync::mpsc::Sender<Job<F>>>,
}

impl<F> std::fmt::Debug for Syncer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Syncer")
    }
}

impl<F: StorageFile + 'static> Syncer<F> {
    fn start(poisoned: Arc<AtomicBool>) -> Syncer<F> {
        let (tx, rx) = std::sync::mpsc::channel::<Job<F>>();
        std::thread::Builder::new()
            .name("raft-sync".into())
            .spawn(move || sync_loop(rx, poisoned))
            .expect("spawn the raft log's sync thread");
        Syncer { tx: Mutex::new(tx) }
    }

    fn send(&self, job: Job<F>) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        // The thread lives as long as this sender: a send cannot fail.
        let _ = tx.send(job);
    }

    /// Returns once every flush queued before it is done.
    fn barrier(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.send(Job::Barrier(tx));
        let _ = rx.recv();
    }
}

/// Takes every queued job, syncs once (the newest segment handle: older
/// segments were synced when the writer rolled), then reports each in order.
fn sync_loop<F: StorageFile>(rx: std::sync::mpsc::Receiver<Job<F>>, poisoned: Arc<AtomicBool>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let mut file = None;
        for j in jobs.iter_mut() {
            if let Job::Flush(f @ Some(_), _) = j {
                file = f.take();
            }
        }
        let res = if poisoned.load(Ordering::Acquire) {
            Err(io::Error::other("the replicated journal failed earlier"))
        } else {
            file.map_or(Ok(()), |mut f| f.sync_data())
        };
        if res.is_err() {
            // Never retried: after a failed fsync the disk's state is unknown.
            poisoned.store(true, Ordering::Release);
        }
        for j in jobs {
            match j {
                Job::Flush(_, cb) => cb.io_completed(match &res {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                }),
                Job::Barrier(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }
}

fn journal_config(segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        segment_bytes,
        max_batch: BATCH_INPUTS_MAX,
        // Blocks of a group are written without a sync each; `sync` makes
        // the group durable once (group commit).
        durability: Durability::Async,
    }
}

impl<S: Storage + Clone + 'static> JournalLog<S> {
    /// Opens (or creates) the replicated journal in `dir`, which starts after
    /// `anchor` (the snapshot the state machine restored, if any): entries
    /// the snapshot covers are not read back.
    pub fn open(
        storage: S,
        dir: &Path,
        segment_bytes: u64,
        anchor: Anchor,
        mode: SyncMode,
    ) -> Result<Self, LogError> {
        let vote = read_value(&storage, dir, VOTE_FILE).or_else(absent_dir)?;
        let members = read_value(&storage, dir, MEMBERS_FILE)
            .or_else(absent_dir)?
            .unwrap_or_default();
        let mut inner = Inner {
            storage,
            dir: dir.to_path_buf(),
            writer: None,
            entries: VecDeque::new(),
            purged: anchor.map(|(id, st)| (id, st, None)),
            vote,
            members,
            poisoned: Arc::new(AtomicBool::new(false)),
            retention: journal::Retention::new(dir, journal::RetentionConfig::default()),
            records: Vec::with_capacity(BATCH_INPUTS_MAX),
            purged_watch: None,
        };
        inner.load(segment_bytes, anchor)?;
        let syncer =
            (mode == SyncMode::Thread).then(|| Arc::new(Syncer::start(inner.poisoned.clone())));
        Ok(JournalLog {
            inner: Arc::new(Mutex::new(inner)),
            syncer,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes into `cell`, now and after every purge, the last seq of
    /// the last purged entry (0: none).
    pub fn watch_purges(&self, cell: Arc<AtomicU64>) {
        let mut g = self.lock();
        g.purged_watch = Some(cell);
        g.publish_purged();
    }

    /// Whether the log holds no entry and no vote (a node never started).
    pub fn is_empty(&self) -> bool {
        let g = self.lock();
        g.entries.is_empty() && g.purged.is_none() && g.vote.is_none()
    }

    /// The numbering after the last entry (what the next entry continues).
    pub fn last_stamp(&self) -> Stamp {
        self.lock().last_stamp()
    }
}

/// A directory that does not exist yet holds no file.
fn absent_dir<T>(e: FileError) -> Result<Option<T>, FileError> {
    match &e {
        FileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => Ok(None),
        _ => Err(e),
    }
}

impl<S: Storage + Clone> Inner<S> {
    fn not_raft(&self, what: String) -> LogError {
        LogError::NotRaftLog {
            dir: self.dir.clone(),
            what,
        }
    }

    /// Scans the journal: entries after the anchor are decoded into memory.
    fn load(&mut self, segment_bytes: u64, anchor: Anchor) -> Result<(), LogError> {
        let cfg = journal_config(segment_bytes);
        let (writer, _) = JournalWriter::open(self.storage.clone(), &self.dir, cfg)?;
        self.writer = Some(writer);
        let mut blocks: Vec<(journal::BlockHeader, Vec<OriginInput>, JournalEnd)> = Vec::new();
        journal::scan(&self.storage, &self.dir, |path, off, h, recs| {
            let mut inputs = Vec::with_capacity(recs.len());
            journal::decode_records_from(recs, |i, origin| inputs.push((i, origin)))?;
            let end = JournalEnd {
                segment: path.to_path_buf(),
                offset: off + journal::block_len(h.count as usize),
                last_seq: h.last_seq(),
                last_checksum: h.header_checksum,
            };
            blocks.push((*h, inputs, end));
            Ok(())
        })?;
        let after = anchor.map(|(id, _)| id.index);
        let mut last_index = after;
        for (h, inputs, end) in blocks {
            let Some(tag) = h.raft else {
                return Err(self.not_raft(format!(
                    "block at seq {} carries no Raft log id (a single-node journal)",
                    h.first_seq
                )));
            };
            if after.is_some_and(|a| tag.index <= a) {
                if Some(tag.index) == after {
                    if let Some(p) = &mut self.purged {
                        p.2 = Some(end);
                    }
                }
                continue;
            }
            let expected = last_index.map_or(tag.index, |l| l + 1);
            if tag.index != expected {
                return Err(self.not_raft(format!(
                    "log index {} where {expected} was expected (at seq {})",
                    tag.index, h.first_seq
                )));
            }
            last_index = Some(tag.index);
            let entry = self.entry_of(tag, &h, inputs)?;
            let stamp = Stamp {
                seq: h.last_seq(),
                time: h.batch_ts,
            };
            self.entries.push_back(Cached {
                entry,
                stamp,
                end: Some(end),
            });
        }
        self.check_anchor(anchor)
    }

    /// The first kept entry must continue the anchor's numbering; a journal
    /// that ends before the anchor restarts right after it.
    fn check_anchor(&mut self, anchor: Anchor) -> Result<(), LogError> {
        let Some((id, stamp)) = anchor else {
            return Ok(());
        };
        if let Some(first) = self.entries.front() {
            let first_seq = first_seq_of(first);
            if first_seq != stamp.seq + 1 {
                return Err(self.not_raft(format!(
                    "entry {} starts at seq {first_seq}, the snapshot ends at seq {}",
                    first.entry.log_id.index, stamp.seq
                )));
            }
            return Ok(());
        }
        let journal_last = self.writer.as_ref().and_then(|w| w.last_seq()).unwrap_or(0);
        if journal_last != stamp.seq {
            // The journal ends before the snapshot (installed from a
            // leader) or holds only what the snapshot covers: restart it.
            self.restart(id, stamp)?;
        }
        Ok(())
    }

    fn entry_of(
        &self,
        tag: RaftTag,
        h: &journal::BlockHeader,
        inputs: Vec<OriginInput>,
    ) -> Result<Entry, LogError> {
        let log_id = LogId::new_term_index(tag.term, tag.index);
        let payload = match tag.kind {
            RaftKind::Normal => Payload::Normal(Batch {
                leader: 0,
                epoch: 0,
                time: engine::Timestamp(h.batch_ts),
                items: inputs
                    .into_iter()
                    .map(|(i, origin)| Item {
                        token: 0,
                        command: i.command,
                        origin,
                    })
                    .collect(),
            }),
            RaftKind::Blank => Payload::Blank,
            RaftKind::Membership => {
                let Some((_, m)) = self.members.iter().find(|(id, _)| *id == log_id) else {
                    return Err(self.not_raft(format!(
                        "membership entry {log_id} has no membership in {MEMBERS_FILE}"
                    )));
                };
                Payload::Membership(m.clone())
            }
        };
        Ok(Entry { log_id, payload })
    }

    fn last_stamp(&self) -> Stamp {
        self.entries
            .back()
            .map(|c| c.stamp)
            .or(self.purged.as_ref().map(|p| p.1))
            .unwrap_or_default()
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .back()
            .map(|c| c.entry.log_id)
            .or(self.purged.as_ref().map(|p| p.0))
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    fn writer(&mut self) -> io::Result<&mut JournalWriter<S>> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(io::Error::other("the replicated journal failed earlier"));
        }
        Ok(self.writer.as_mut().expect("a writer while not poisoned"))
    }

    /// Writes one entry's block (no sync).
    fn write_entry(&mut self, entry: Entry) -> io::Result<()> {
        let prev = self.last_stamp();
        let mut records = std::mem::take(&mut self.records);
        records.clear();
        let stamp = inputs_of(&entry.payload, prev, None, |input, _, origin| {
            records.push(encode_from(&input, origin))
        });
        let tag = RaftTag {
            index: entry.log_id.index,
            term: entry.log_id.leader_id.term,
            kind: kind_of(&entry.payload),
        };
        let w = self.writer()?;
        let res = w.append_tagged(&records, tag);
        self.records = records;
        res.map_err(io::Error::other)?;
        let end = self.writer.as_ref().and_then(|w| w.end());
        if let EntryPayload::Membership(m) = &entry.payload {
            self.members.push((entry.log_id, m.clone()));
            write_value(&self.storage, &self.dir, MEMBERS_FILE, &self.members)?;
        }
        self.entries.push_back(Cached { entry, stamp, end });
        Ok(())
    }

    /// Writes `entries` (one block each); syncs them here when `inline`,
    /// else returns a handle the syncer thread syncs them with.
    fn append(
        &mut self,
        entries: impl IntoIterator<Item = Entry>,
        inline: bool,
    ) -> io::Result<Option<S::File>> {
        for e in entries {
            if let Some(last) = self.last_log_id() {
                if e.log_id.index != last.index + 1 {
                    return Err(io::Error::other(format!(
                        "append of entry {} after {last}: a hole",
                        e.log_id
                    )));
                }
            }
            self.write_entry(e).inspect_err(|_| self.poison())?;
        }
        let w = self.writer()?;
        let res = if inline {
            w.sync().map(|()| None)
        } else {
            w.sync_handle()
        };
        res.inspect_err(|_| self.poison()).map_err(io::Error::other)
    }

    fn reopen_writer(&mut self) -> Result<(), LogError> {
        let cfg = *self.writer.as_ref().expect("writer").config();
        self.writer = None;
        let (w, _) = JournalWriter::open(self.storage.clone(), &self.dir, cfg)?;
        self.writer = Some(w);
        Ok(())
    }

    fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), LogError> {
        let gone = |i: u64| last.is_none_or(|l| i > l.index);
        if self
            .entries
            .back()
            .is_none_or(|c| !gone(c.entry.log_id.index))
        {
            return Ok(());
        }
        while self
            .entries
            .back()
            .is_some_and(|c| gone(c.entry.log_id.index))
        {
            self.entries.pop_back();
        }
        let end = match self.entries.back() {
            Some(c) => c.end.clone(),
            None => self.purged.as_ref().and_then(|p| p.2.clone()),
        };
        journal::truncate_after(&self.storage, &self.dir, end.as_ref())?;
        let before = self.members.len();
        self.members.retain(|(id, _)| !gone(id.index));
        if self.members.len() != before {
            write_value(&self.storage, &self.dir, MEMBERS_FILE, &self.members)?;
        }
        self.reopen_writer()
    }

    /// Empties the journal and continues it after `id` (numbered `stamp`).
    fn restart(&mut self, id: LogId, stamp: Stamp) -> Result<(), LogError> {
        self.entries.clear();
        if stamp.seq == 0 {
            // Nothing numbered yet: an empty journal starts at seq 1 anyway.
            journal::truncate_after(&self.storage, &self.dir, None)?;
        } else {
            let base = journal::Base {
                first_seq: stamp.seq + 1,
                prev_checksum: anchor_checksum(id),
            };
            journal::restart_at(&self.storage, &self.dir, &base)?;
        }
        self.members.retain(|(m, _)| m.index > id.index);
        write_value(&self.storage, &self.dir, MEMBERS_FILE, &self.members)?;
        self.purged = Some((id, stamp, None));
        self.publish_purged();
        self.reopen_writer()
    }

    fn publish_purged(&self) {
        if let (Some(w), Some(p)) = (&self.purged_watch, &self.purged) {
            w.fetch_max(p.1.seq, Ordering::AcqRel);
        }
    }

    fn purge(&mut self, upto: LogId, stamp: Option<Stamp>) -> Result<(), LogError> {
        if self.last_log_id().is_none_or(|l| l.index < upto.index) {
            // Purging past the end: a snapshot from the leader replaced
            // the log, and the journal continues after it, numbered as the
            // snapshot says (without one — never in a running group, whose
            // purges stay within its snapshots — the numbering continues).
            let stamp = stamp.unwrap_or_else(|| self.last_stamp());
            return self.restart(upto, stamp);
        }
        while let Some(c) = self.entries.front() {
            if c.entry.log_id.index > upto.index {
                break;
            }
            let c = self.entries.pop_front().expect("front");
            self.purged = Some((c.entry.log_id, c.stamp, c.end));
        }
        self.publish_purged();
        self.retain();
        Ok(())
    }

    /// Moves whole segments before the purge point out of the directory (the
    /// journal's own retention: `journal.base` first, then the segments).
    /// A failure only stops retention (logged once): the log stays whole.
    fn retain(&mut self) {
        let Some((_, stamp, _)) = &self.purged else {
            return;
        };
        self.retention.snapshot_kept(stamp.seq);
        let Some(w) = self.writer.as_ref() else {
            return;
        };
        let (last, current) = (w.last_seq().unwrap_or(0), w.current_segment());
        loop {
            match self.retention.step(&self.storage, last, current) {
                Ok(journal::Step::Done) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "replicated journal retention stopped");
                    return;
                }
            }
        }
    }
}

fn first_seq_of(c: &Cached) -> u64 {
    let n = match &c.entry.payload {
        EntryPayload::Normal(b) => b.items.len() as u64,
        _ => 1,
    };
    c.stamp.seq + 1 - n
}

/// The chain anchor of a journal restarted after a snapshot: a function of
/// the snapshot's log id, so it is the same on every replica.
fn anchor_checksum(id: LogId) -> u128 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&id.leader_id.term.to_le_bytes());
    b[8..].copy_from_slice(&id.index.to_le_bytes());
    xxhash_rust::xxh3::xxh3_128(&b)
}

/// The snapshot stamps the state machine publishes, for a purge past the
/// log's end (after a snapshot from the leader was installed).
#[derive(Debug, Default, Clone)]
pub struct SnapshotStamps(Arc<Mutex<Option<(LogId, Stamp)>>>);

impl SnapshotStamps {
    /// Records the newest snapshot's log id and numbering.
    pub fn set(&self, id: LogId, stamp: Stamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, stamp));
    }
    /// The numbering after `id`, when the newest snapshot ends there.
    pub fn stamp_of(&self, id: LogId) -> Option<Stamp> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.filter(|(s, _)| *s == id).map(|(_, st)| st)
    }
}

/// The store openraft drives: the journal log plus the snapshot stamps.
#[derive(Debug)]
pub struct LogStore<S: Storage> {
    log: JournalLog<S>,
    stamps: SnapshotStamps,
}

impl<S: Storage> Clone for LogStore<S> {
    fn clone(&self) -> Self {
        LogStore {
            log: self.log.clone(),
            stamps: self.stamps.clone(),
        }
    }
}

impl<S: Storage + Clone> LogStore<S> {
    /// Drives `log`; `stamps` is shared with the state machine.
    pub fn new(log: JournalLog<S>, stamps: SnapshotStamps) -> Self {
        LogStore { log, stamps }
    }
}

impl<S: Storage + Clone + 'static> RaftLogReader<Cfg> for LogStore<S> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let g = self.log.lock();
        Ok(g.entries
            .iter()
            .filter(|c| range.contains(&c.entry.log_id.index))
            .map(|c| c.entry.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.log.lock().vote)
    }
}

impl<S: Storage + Clone + 'static> RaftLogStorage<Cfg> for LogStore<S> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<Cfg>, io::Error> {
        let g = self.log.lock();
        Ok(LogState {
            last_purged_log_id: g.purged.as_ref().map(|p| p.0),
            last_log_id: g.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut g = self.log.lock();
        write_value(&g.storage, &g.dir, VOTE_FILE, vote)?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<Cfg>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let syncer = self.log.syncer.clone();
        let res = self.log.lock().append(entries, syncer.is_none());
        match (res, syncer) {
            (Ok(handle), Some(s)) => s.send(Job::Flush(handle, callback)),
            (Ok(_), None) => callback.io_completed(Ok(())),
            (Err(e), _) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                return Err(e);
            }
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        // Everything written is durable first: no flush reported later
        // covers a block this cut removed.
        if let Some(s) = &self.log.syncer {
            s.barrier();
        }
        let mut g = self.log.lock();
        g.truncate_after(last).inspect_err(|_| g.poison())?;
        Ok(())
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        if let Some(s) = &self.log.syncer {
            s.barrier();
        }
        let stamp = self.stamps.stamp_of(upto);
        let mut g = self.log.lock();
        g.purge(upto, stamp).inspect_err(|_| g.poison())?;
        Ok(())
    }
}
