//! Building and writing run files, and `RunWriter`, which cuts the engine's
//! change stream into runs.
//!
//! Invariants: a run file carries its final name only once it is complete
//! and synced (written as `<name>.tmp`, `sync_data`, renamed, directory
//! synced: the snapshot discipline), so a crash leaves either no run or a
//! whole one, plus perhaps a `.tmp` that open removes; a run holds exactly
//! the changes with change_seq in (previous through, through]; `cut` is
//! called by the caller only at seqs durable in the journal, so a run never
//! holds a change that recovery could lose.

use super::format::*;
use super::store::HistoryError;
use crate::{Storage, StorageFile};
use engine::history::{encode_record, TransferRecord, TransferState, RECORD_LEN};
use std::path::{Path, PathBuf};
use xorf::{BinaryFuse8, DmaSerializable};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// A run file's bytes, built in memory.
#[derive(Debug)]
pub struct RunImage {
    /// The header it carries.
    pub header: Header,
    /// The whole file.
    pub bytes: Vec<u8>,
}

/// Sort key of records in a run.
fn order(r: &TransferRecord) -> (u128, u64) {
    (r.spec.id.0, r.change_seq.0)
}

/// The run's records: sorted by (id, change_seq), and where one input
/// changed a transfer twice (a pending transfer created and resolved in one
/// batch) only the later value, the state the input left.
fn canonical(records: &[TransferRecord]) -> Vec<TransferRecord> {
    let mut recs = records.to_vec();
    // Stable: equal keys keep stream order, so the last is the newest.
    recs.sort_by_key(order);
    let mut out: Vec<TransferRecord> = Vec::with_capacity(recs.len());
    for r in recs {
        match out.last_mut() {
            Some(last) if order(last) == order(&r) => *last = r,
            _ => out.push(r),
        }
    }
    out
}

/// Builds the file of run `run` holding `records` (in stream order; see
/// [`canonical`]).
pub fn build_run(
    run: u64,
    after_seq: u64,
    through_seq: u64,
    records: &[TransferRecord],
) -> RunImage {
    build_file(run, after_seq, through_seq, canonical(records), &[])
}

/// Builds the file of runs `members[0].run..=run` (or of run `run` alone
/// when `members` is empty) from records already in (id, change_seq) order
/// with no repeated key.
pub(crate) fn build_file(
    run: u64,
    after_seq: u64,
    through_seq: u64,
    recs: Vec<TransferRecord>,
    members: &[Member],
) -> RunImage {
    let entries = account_entries(&recs);
    let filter = filter_bytes(&recs);
    let mut header = Header {
        run,
        after_seq,
        through_seq,
        records: recs.len() as u64,
        entries: entries.len() as u64,
        min_id: recs.first().map_or(0, |r| r.spec.id.0),
        max_id: recs.last().map_or(0, |r| r.spec.id.0),
        first_run: members.first().map_or(run, |m| m.run),
        ..Header::default()
    };
    debug_assert_eq!(header.members(), members.len() as u64);
    header.lay_out(filter.len() as u64);
    let mut bytes = vec![0u8; header.file_len as usize];
    let (checksum, fences) = write_record_blocks(&mut bytes, &header, &recs);
    let account_fences = write_account_blocks(&mut bytes, &header, &entries);
    header.checksum = checksum;
    header.fence_checksum = put(&mut bytes, header.fence_span, &fences);
    header.account_fence_checksum = put(&mut bytes, header.account_fence_span, &account_fences);
    header.filter_checksum = put(&mut bytes, header.filter_span, &filter);
    let mut list = vec![0u8; members.len() * MEMBER_LEN];
    for (m, out) in members.iter().zip(list.chunks_mut(MEMBER_LEN)) {
        m.encode(out);
    }
    header.member_checksum = put(&mut bytes, header.member_span, &list);
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    RunImage { header, bytes }
}

/// Copies a section into place and returns its checksum.
fn put(bytes: &mut [u8], span: Span, data: &[u8]) -> u128 {
    debug_assert_eq!(span.len as usize, data.len());
    bytes[span.offset as usize..(span.offset + span.len) as usize].copy_from_slice(data);
    xxh3_128(data)
}

/// Fills the record blocks; returns the content checksum and the fences.
fn write_record_blocks(bytes: &mut [u8], h: &Header, recs: &[TransferRecord]) -> (u128, Vec<u8>) {
    let mut content = Xxh3::new();
    let mut fences = Vec::with_capacity(h.fence_span.len as usize);
    let mut buf = [0u8; RECORD_LEN];
    for (b, chunk) in recs.chunks(RECORDS_PER_BLOCK).enumerate() {
        let at = h.record_span.offset as usize + b * BLOCK_LEN;
        let block = &mut bytes[at..at + BLOCK_LEN];
        for (i, r) in chunk.iter().enumerate() {
            encode_record(r, &mut buf);
            content.update(&buf);
            block[i * RECORD_LEN..(i + 1) * RECORD_LEN].copy_from_slice(&buf);
        }
        seal_block(block, h.key(), Section::Records, b as u64);
        fences.extend_from_slice(&chunk[0].spec.id.0.to_le_bytes());
    }
    (content.digest128(), fences)
}

/// Fills the account blocks; returns the account fences.
fn write_account_blocks(bytes: &mut [u8], h: &Header, entries: &[AccountEntry]) -> Vec<u8> {
    let mut fences = Vec::with_capacity(h.account_fence_span.len as usize);
    for (b, chunk) in entries.chunks(ENTRIES_PER_BLOCK).enumerate() {
        let at = h.account_span.offset as usize + b * BLOCK_LEN;
        let block = &mut bytes[at..at + BLOCK_LEN];
        for (i, e) in chunk.iter().enumerate() {
            e.encode(&mut block[i * ENTRY_LEN..(i + 1) * ENTRY_LEN]);
        }
        seal_block(block, h.key(), Section::Accounts, b as u64);
        fences.extend_from_slice(&chunk[0].account.to_le_bytes());
        fences.extend_from_slice(&chunk[0].ledger_seq.to_le_bytes());
    }
    fences
}

/// One entry per account side (the record's `debit_account` and
/// `credit_account`: a post's or void's are its pending transfer's) of the newest record of each stored
/// transfer (records sorted by (id, change_seq): the last of an id's run is
/// its newest). Failed ids are not transfers and get none.
fn account_entries(recs: &[TransferRecord]) -> Vec<AccountEntry> {
    let mut out = Vec::with_capacity(recs.len() * 2);
    for (pos, r) in recs.iter().enumerate() {
        let newest = recs.get(pos + 1).is_none_or(|n| n.spec.id != r.spec.id);
        if !newest || matches!(r.state, TransferState::Failed(_)) {
            continue;
        }
        let (d, c) = (r.debit_account.0, r.credit_account.0);
        for account in if d == c { vec![d] } else { vec![d, c] } {
            out.push(AccountEntry {
                account,
                ledger_seq: r.ledger_seq,
                created: r.created.0,
                pos: pos as u32,
            });
        }
    }
    out.sort();
    out
}

/// The filter section: descriptor then fingerprints (empty for no ids).
fn filter_bytes(recs: &[TransferRecord]) -> Vec<u8> {
    let mut keys: Vec<u64> = recs.iter().map(|r| filter_key(r.spec.id.0)).collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return Vec::new();
    }
    // Construction fails only for duplicate keys (removed above) or with
    // vanishing probability after xorf's internal retries: a bug either way.
    let f = BinaryFuse8::try_from(&keys).expect("binary fuse filter over distinct keys");
    let mut out = vec![0u8; FILTER_DESCRIPTOR_LEN];
    f.dma_copy_descriptor_to(&mut out);
    out.extend_from_slice(f.dma_fingerprints());
    out
}

/// Writes `image` as `dir/run-N.bhr` durably: temp file, write, sync,
/// rename (replacing a run file of the same number, one never installed),
/// sync the directory. Returns the final path.
pub fn write_run_file<S: Storage>(
    storage: &S,
    dir: &Path,
    image: &RunImage,
) -> Result<PathBuf, HistoryError> {
    let io = |op: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| HistoryError::Io { op, path, source }
    };
    storage.create_dir_all(dir).map_err(io("create dir", dir))?;
    let name = file_name(image.header.first_run, image.header.run);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    if storage
        .list(dir)
        .map_err(io("list", dir))?
        .contains(&format!("{name}.tmp"))
    {
        storage.remove(&tmp).map_err(io("remove", &tmp))?;
    }
    let mut f = storage.create(&tmp).map_err(io("create", &tmp))?;
    f.write_at(&image.bytes, 0).map_err(io("write", &tmp))?;
    f.sync_data().map_err(io("fdatasync", &tmp))?;
    drop(f);
    storage.rename(&tmp, &path).map_err(io("rename", &tmp))?;
    storage.sync_dir(dir).map_err(io("fsync dir", dir))?;
    Ok(path)
}

/// Cuts the engine's change stream into runs and writes them.
///
/// Fed every input's `Events::changes()` in seq order ([`RunWriter::push`]);
/// [`RunWriter::cut`] writes the run of every change with change_seq in
/// (previous through, through] and returns `(run, checksum)` for the
/// `InstallHistory` command. Policy ([`RunWriter::due`]): a run every
/// `run_records` records, or when asked.
#[derive(Debug)]
pub struct RunWriter<S: Storage> {
    storage: S,
    dir: PathBuf,
    pending: Vec<TransferRecord>,
    last_run: u64,
    last_through: u64,
    run_records: usize,
    /// Compaction, run on its own thread by the runtime (absent: none).
    compactor: Option<super::Compactor<S>>,
    /// The link of the engine's store (a replicated partition's: peers'
    /// merged files are handed to it).
    store_link: Option<std::sync::Arc<super::HistoryLink<S::File>>>,
    /// The partition's id filter: each run's ids are added before `cut`
    /// returns, so before the install is submitted (absent: none).
    filter: Option<std::sync::Arc<super::IdFilter>>,
}

impl<S: Storage> RunWriter<S> {
    /// A writer whose next run is `last_run + 1` covering changes after
    /// `last_through` (0, 0 for a fresh ledger; the engine's
    /// `installed_history()` after a restart). Removes run files past
    /// `last_run`: written before a crash but never installed, they are
    /// rewritten from the re-seeded changes (possibly cut elsewhere).
    pub fn new(
        storage: S,
        dir: &Path,
        last_run: u64,
        last_through: u64,
        run_records: usize,
    ) -> Result<Self, HistoryError> {
        let io = |op: &'static str, p: &Path| {
            let path = p.to_path_buf();
            move |source| HistoryError::Io { op, path, source }
        };
        storage.create_dir_all(dir).map_err(io("create dir", dir))?;
        let mut removed = false;
        for name in storage.list(dir).map_err(io("list", dir))? {
            let p = dir.join(&name);
            // Merged files hold installed runs only: never past last_run.
            let past = parse_file_name(&name).is_some_and(|(_, last)| last > last_run);
            if past && parse_run_name(&name).is_some() {
                storage.remove(&p).map_err(io("remove", &p))?;
                removed = true;
            }
        }
        if removed {
            storage.sync_dir(dir).map_err(io("fsync dir", dir))?;
        }
        Ok(Self {
            storage,
            dir: dir.to_path_buf(),
            pending: Vec::with_capacity(run_records),
            last_run,
            last_through,
            run_records: run_records.max(1),
            compactor: None,
            store_link: None,
            filter: None,
        })
    }

    /// With compaction of the installed runs (see `compact`).
    pub fn with_compactor(mut self, c: super::Compactor<S>) -> Self {
        self.compactor = Some(c);
        self
    }

    /// Adding every cut run's ids to `filter` (the one the engine's
    /// `DiskHistory` answers "no" from) before the run is installed.
    pub fn with_filter(mut self, filter: std::sync::Arc<super::IdFilter>) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The directory it writes runs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id filter it adds each run's ids to, if any.
    pub fn filter(&self) -> Option<&std::sync::Arc<super::IdFilter>> {
        self.filter.as_ref()
    }

    /// Carries the link of the store the engine starts with.
    pub fn with_store_link(mut self, link: std::sync::Arc<super::HistoryLink<S::File>>) -> Self {
        self.store_link = Some(link);
        self
    }

    /// The link of the store the engine starts with, if carried.
    pub fn store_link(&self) -> Option<std::sync::Arc<super::HistoryLink<S::File>>> {
        self.store_link.clone()
    }

    /// Takes the compactor out, for its own thread.
    pub fn take_compactor(&mut self) -> Option<super::Compactor<S>> {
        self.compactor.take()
    }

    /// Adds one input's changes (in seq order). Changes at or before the
    /// last cut are already in a run (a re-seed overlapping it) and skipped.
    pub fn push(&mut self, changes: &[TransferRecord]) {
        for r in changes {
            if r.change_seq.0 > self.last_through {
                if let Some(last) = self.pending.last() {
                    assert!(
                        last.change_seq <= r.change_seq,
                        "history changes out of seq order: {} after {}",
                        r.change_seq.0,
                        last.change_seq.0
                    );
                }
                self.pending.push(*r);
            }
        }
    }

    /// Records waiting for a run.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the policy wants a run cut now.
    pub fn due(&self) -> bool {
        self.pending.len() >= self.run_records
    }

    /// The change_seq a cut must reach to take the `run_records` oldest
    /// waiting records (`None` when fewer wait).
    pub fn due_through(&self) -> Option<u64> {
        self.pending
            .get(self.run_records - 1)
            .map(|r| r.change_seq.0)
    }

    /// Where a cut that has fallen behind should reach: through at most
    /// `applied`, taking as many waiting records as it can up to twice
    /// `run_records` (plus the rest of the last input's changes: a run
    /// holds whole inputs). `None` until `run_records` wait through
    /// `applied`. A writer that fell behind catches up in bigger runs, each
    /// still bounded.
    pub fn catch_up_through(&self, applied: u64) -> Option<u64> {
        self.due_through().filter(|&t| t <= applied)?;
        let n = self
            .pending
            .partition_point(|r| r.change_seq.0 <= applied)
            .min(self.run_records * 2);
        Some(self.pending[n - 1].change_seq.0)
    }

    /// The last cut's run and through seq.
    pub fn last(&self) -> (u64, u64) {
        (self.last_run, self.last_through)
    }

    /// Writes the run of every waiting change with change_seq ≤ `through`
    /// (which must be past the last cut and durable in the journal) and
    /// returns `(run, checksum)`.
    pub fn cut(&mut self, through: u64) -> Result<(u64, u128), HistoryError> {
        let (run, checksum, n) = self.write_next(through)?;
        self.pending.drain(..n);
        self.last_run = run;
        self.last_through = through;
        Ok((run, checksum))
    }

    /// A replicated partition's writer: as [`RunWriter::new`] at (0, 0),
    /// but removing no file (which runs are installed is known only once
    /// the Raft snapshot is restored: [`RunWriter::reset`]).
    pub fn replicated(storage: S, dir: &Path, run_records: usize) -> Result<Self, HistoryError> {
        let mut w = Self::new(storage, dir, u64::MAX, 0, run_records)?;
        w.last_run = 0;
        Ok(w)
    }

    /// Writes the next run through `through` like [`RunWriter::cut`] but
    /// keeps every change waiting: a replicated partition's run counts
    /// only once its install is applied ([`RunWriter::settle`]), and until
    /// then the same call writes the same bytes again.
    pub fn cut_held(&mut self, through: u64) -> Result<(u64, u128), HistoryError> {
        let (run, checksum, _) = self.write_next(through)?;
        Ok((run, checksum))
    }

    /// Run `run` through `through` was installed (applied by the engine):
    /// its changes stop waiting. A run at or before the last is a no-op.
    pub fn settle(&mut self, run: u64, through: u64) {
        if run <= self.last_run {
            return;
        }
        assert!(
            run == self.last_run + 1 && through > self.last_through,
            "history run {run} through {through} installed after run {} through {}",
            self.last_run,
            self.last_through
        );
        let n = self.pending.partition_point(|r| r.change_seq.0 <= through);
        self.pending.drain(..n);
        self.last_run = run;
        self.last_through = through;
    }

    /// Starts again after the engine was replaced by a snapshot's: run
    /// `run` through `through` installed, `tail` the engine's changes after
    /// it (`Engine::history_tail`).
    pub fn reset(&mut self, run: u64, through: u64, tail: &[TransferRecord]) {
        self.pending.clear();
        self.last_run = run;
        self.last_through = through;
        self.push(tail);
    }

    /// Builds, writes, reads back and filters the next run through
    /// `through`; returns it and how many waiting changes it holds.
    fn write_next(&mut self, through: u64) -> Result<(u64, u128, usize), HistoryError> {
        assert!(
            through > self.last_through,
            "history cut through {through} not past the last cut {}",
            self.last_through
        );
        let n = self.pending.partition_point(|r| r.change_seq.0 <= through);
        let run = self.last_run + 1;
        let image = build_run(run, self.last_through, through, &self.pending[..n]);
        let path = write_run_file(&self.storage, &self.dir, &image)?;
        // Read back whole before anyone installs it (here, off the engine
        // thread): what landed is what was meant.
        let corrupt = |fault| HistoryError::Corrupt {
            path: path.clone(),
            fault,
        };
        super::store::Run::open(&self.storage, &path)
            .and_then(|r| r.verify_all())
            .map_err(corrupt)?;
        if let Some(f) = &self.filter {
            for r in &self.pending[..n] {
                f.insert(r.spec.id.0);
            }
        }
        Ok((run, image.header.checksum, n))
    }
}

/// Rewrites a run that is missing or does not verify from records the
/// caller supplies again (the engine still holds them after replaying from
/// a snapshot older than the run's install). Refused unless the records
/// give exactly the checksum the run was installed with, so a repair can
/// only ever restore the same run.
pub fn repair_run<S: Storage>(
    storage: &S,
    dir: &Path,
    run: u64,
    (after_seq, through_seq): (u64, u64),
    records: &[TransferRecord],
    checksum: u128,
) -> Result<PathBuf, HistoryError> {
    let image = build_run(run, after_seq, through_seq, records);
    if image.header.checksum != checksum {
        return Err(HistoryError::RepairMismatch {
            path: dir.join(run_name(run)),
            expected: checksum,
            found: image.header.checksum,
        });
    }
    write_run_file(storage, dir, &image)
}
