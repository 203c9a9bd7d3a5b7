//! `JournalWriter`: appends commit blocks, one write (+ one fdatasync in
//! mode `durable`) per batch. No thread here, so tests drive it directly.
//!
//! Invariants: records are appended in strictly contiguous seq order (an
//! out-of-sequence batch is refused before any I/O); a batch is one block,
//! written with one `write_at` into preallocated space, never into a
//! segment's final 4 KiB page (a batch that does not fit in the current
//! segment's room before that page starts a new segment, created,
//! preallocated, synced and made durable in the directory *before* the
//! block is written; `journal.head` then names it); `append_batch` returns only once the block is as
//! durable as the mode promises. The next segment is prepared ahead as a
//! spare file (`SPARE_NAME`), zero-filled and synced a slice at a time by
//! `background` while the journal thread has nothing to commit, so a roll
//! is a rename and a directory sync, not 64 MiB of zeros on the commit path. After any I/O error the writer is
//! poisoned: every later call fails with `Poisoned` and nothing is retried.

use super::base::BASE_TMP_NAME;
use super::format::{self, BLOCK_ALIGN, HEADER_LEN};
use super::head::{write_head, HEAD_TMP_NAME};
use super::reader::{self, JournalEnd};
use super::{io_err, segment_name, Durability, JournalConfig, JournalError, Storage, StorageFile};
use crate::record::{encode, InputRecord};
use engine::Input;
use std::path::{Path, PathBuf};

/// Name of the spare segment being prepared (not a segment name: scans
/// ignore it; `open` removes a leftover one).
pub const SPARE_NAME: &str = "next-segment.spare";

/// Suffix of a segment being preallocated under a temporary name (not a
/// segment name: scans ignore it; `open` removes a leftover one).
pub const NEW_SEGMENT_SUFFIX: &str = ".seg.new";

/// Bytes of the spare zero-filled and synced per `background` call (about a
/// millisecond of disk time: the most a commit arriving meanwhile waits).
pub const SPARE_SLICE_BYTES: u64 = 256 << 10;

/// The spare segment: its file and how much of it is zero-filled and synced.
#[derive(Debug)]
struct Spare<F> {
    file: F,
    path: PathBuf,
    filled: u64,
}

/// Appends commit blocks to the journal in one directory.
#[derive(Debug)]
pub struct JournalWriter<S: Storage> {
    storage: S,
    dir: PathBuf,
    cfg: JournalConfig,
    segment: Option<(S::File, PathBuf)>,
    segment_len: u64,
    pos: u64,
    last_seq: Option<u64>,
    prev_checksum: u128,
    buf: Vec<u8>,
    scratch: Vec<InputRecord>,
    poisoned: bool,
    last_write: Option<(PathBuf, u64, u64)>,
    blocks: u64,
    bytes: u64,
    spare: Option<Spare<S::File>>,
    /// Preparing a spare failed once: rolls create segments in place.
    spare_off: bool,
    rolls_from_spare: u64,
    zeros: Vec<u8>,
}

impl<S: Storage> JournalWriter<S> {
    /// Opens the journal in `dir` for appending: scans it, cuts a torn tail
    /// (with a WARN, see `reader::cut_torn_tail`), removes leftovers of an
    /// earlier run (a half-made spare or segment) and resumes after the last
    /// valid block. Damage is refused (`JournalError::Corrupt`): it is moved
    /// aside only on request (`repair::repair_journal`). Returns the writer
    /// and the scan report (which names any torn tail cut).
    pub fn open(
        storage: S,
        dir: &Path,
        cfg: JournalConfig,
    ) -> Result<(Self, reader::ScanReport), JournalError> {
        storage
            .create_dir_all(dir)
            .map_err(io_err("create dir", dir))?;
        let rep = reader::scan(&storage, dir, |_, _, _, _| Ok(()))?;
        reader::cut_torn_tail(&storage, dir, &rep)?;
        // A spare or a new segment left by an earlier run may be partly
        // filled: start over.
        let names = storage.list(dir).map_err(io_err("list", dir))?;
        let leftovers: Vec<&String> = names
            .iter()
            .filter(|n| {
                *n == SPARE_NAME
                    || *n == HEAD_TMP_NAME
                    || *n == BASE_TMP_NAME
                    || n.ends_with(NEW_SEGMENT_SUFFIX)
            })
            .collect();
        for n in &leftovers {
            let p = dir.join(n);
            storage.remove(&p).map_err(io_err("remove", &p))?;
        }
        if !leftovers.is_empty() {
            storage.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
        }
        let mut w = Self::resume(storage, dir, cfg, rep.end.clone())?;
        if let (None, Some(b)) = (&rep.end, rep.base) {
            // Every segment left (a repair moved them all aside): the next
            // block continues the anchor, in a segment named for its seq.
            w.last_seq = Some(b.retained_through());
            w.prev_checksum = b.prev_checksum;
        }
        Ok((w, rep))
    }

    /// Resumes after `end` (from a scan whose torn tail was already cut), or
    /// starts an empty journal when `end` is `None`.
    pub fn resume(
        storage: S,
        dir: &Path,
        cfg: JournalConfig,
        end: Option<JournalEnd>,
    ) -> Result<Self, JournalError> {
        cfg.validate()?;
        let mut w = JournalWriter {
            storage,
            dir: dir.to_path_buf(),
            cfg,
            segment: None,
            segment_len: 0,
            pos: 0,
            last_seq: None,
            prev_checksum: 0,
            buf: Vec::with_capacity(format::block_len(cfg.max_batch) as usize),
            scratch: Vec::with_capacity(cfg.max_batch),
            poisoned: false,
            last_write: None,
            blocks: 0,
            bytes: 0,
            spare: None,
            spare_off: false,
            rolls_from_spare: 0,
            zeros: Vec::new(),
        };
        if let Some(end) = end {
            if cfg.durability != Durability::None {
                let f = w
                    .storage
                    .open(&end.segment)
                    .map_err(io_err("open", &end.segment))?;
                w.segment_len = f.len().map_err(io_err("stat", &end.segment))?;
                w.segment = Some((f, end.segment));
                w.pos = end.offset;
            }
            w.last_seq = Some(end.last_seq);
            w.prev_checksum = end.last_checksum;
        }
        Ok(w)
    }

    /// The configuration.
    pub fn config(&self) -> &JournalConfig {
        &self.cfg
    }

    /// Seq of the last record appended (and, per the mode, durable).
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The first seq of the segment being written (`None`: none yet).
    pub fn current_segment(&self) -> Option<u64> {
        self.segment
            .as_ref()
            .and_then(|(_, p)| reader::segment_seq(p))
    }

    /// The region of the most recent block write attempted: `(segment,
    /// offset, length)` (fault tests corrupt exactly this region).
    pub fn last_write(&self) -> Option<&(PathBuf, u64, u64)> {
        self.last_write.as_ref()
    }

    /// Blocks and bytes written by this writer.
    pub fn written(&self) -> (u64, u64) {
        (self.blocks, self.bytes)
    }

    /// Appends `records` (1..=max_batch, contiguous seqs continuing the
    /// journal) as one block: one write, then one fdatasync in mode
    /// `durable`. Returns the last seq, now durable per the mode.
    pub fn append_batch(&mut self, records: &[InputRecord]) -> Result<u64, JournalError> {
        self.append_block(records, None)
    }

    /// Appends `records` as one block that is the Raft log entry `tag`
    /// (version 2, see `format`); otherwise as `append_batch`.
    pub fn append_tagged(
        &mut self,
        records: &[InputRecord],
        tag: format::RaftTag,
    ) -> Result<u64, JournalError> {
        self.append_block(records, Some(tag))
    }

    /// Makes every block written so far durable (one fdatasync of the
    /// current segment; a roll already synced the ones before it in mode
    /// `async`). The replicated log writes a group in mode `async`, then
    /// calls this once: group commit. A failure poisons the writer.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if let Some((f, p)) = self.segment.as_mut() {
            if let Err(e) = f.sync_data().map_err(io_err("fdatasync", p)) {
                self.poisoned = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// A handle that syncs the segment being written, for a sync off this
    /// writer's lock (blocks in earlier segments were synced when it rolled,
    /// in mode `async`); `None` before the first segment.
    pub fn sync_handle(&self) -> Result<Option<S::File>, JournalError> {
        match &self.segment {
            None => Ok(None),
            Some((f, p)) => f.try_clone().map(Some).map_err(io_err("dup", p)),
        }
    }

    /// Where the journal ends now (what a scan would report as its end):
    /// the position the next block goes to, the last seq and the chain's
    /// last checksum. `None` before the first block (or in mode `none`).
    pub fn end(&self) -> Option<JournalEnd> {
        let (_, path) = self.segment.as_ref()?;
        Some(JournalEnd {
            segment: path.clone(),
            offset: self.pos,
            last_seq: self.last_seq?,
            last_checksum: self.prev_checksum,
        })
    }

    fn append_block(
        &mut self,
        records: &[InputRecord],
        tag: Option<format::RaftTag>,
    ) -> Result<u64, JournalError> {
        self.last_write = None;
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if records.is_empty() || records.len() > self.cfg.max_batch {
            return Err(JournalError::BadBatch {
                records: records.len(),
                max: self.cfg.max_batch,
            });
        }
        let first = records[0].seq();
        if let Some(last) = self.last_seq {
            if first != last + 1 {
                return Err(JournalError::OutOfSequence {
                    expected: last + 1,
                    got: first,
                });
            }
        }
        for (i, r) in records.iter().enumerate() {
            if r.seq() != first + i as u64 {
                return Err(JournalError::OutOfSequence {
                    expected: first + i as u64,
                    got: r.seq(),
                });
            }
        }
        let last = first + records.len() as u64 - 1;
        if self.cfg.durability == Durability::None {
            self.last_seq = Some(last);
            return Ok(last);
        }
        let h = format::build_tagged_block(&mut self.buf, records, self.prev_checksum, tag);
        let len = self.buf.len() as u64;
        if self.segment.is_none() || !self.fits(len) {
            if let Err(e) = self.roll(first) {
                self.poisoned = true;
                return Err(e);
            }
        }
        let (file, path) = self.segment.as_mut().expect("a segment after roll");
        self.last_write = Some((path.clone(), self.pos, len));
        let res = file
            .write_at(&self.buf, self.pos)
            .map_err(io_err("write", path))
            .and_then(|()| {
                if self.cfg.durability == Durability::Durable {
                    file.sync_data().map_err(io_err("fdatasync", path))
                } else {
                    Ok(())
                }
            });
        if let Err(e) = res {
            self.poisoned = true;
            return Err(e);
        }
        self.pos += len;
        self.prev_checksum = h.header_checksum;
        self.last_seq = Some(last);
        self.blocks += 1;
        self.bytes += len;
        debug_assert!(self.buf.len() >= HEADER_LEN);
        Ok(last)
    }

    /// Encodes and appends `inputs` as one block (see `append_batch`).
    pub fn append_inputs(&mut self, inputs: &[Input]) -> Result<u64, JournalError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.extend(inputs.iter().map(encode));
        let r = self.append_batch(&scratch);
        self.scratch = scratch;
        r
    }

    /// Makes the segment the next block goes to ready now — created,
    /// preallocated and durable — when there is none or the current one has
    /// no room for a full block, so the first commit after start-up does not
    /// pay for zero-filling a segment (64 MiB by default). `next_seq` is the
    /// seq the next block starts with (the segment is named for it); it must
    /// continue the journal. A segment prepared and never written is empty,
    /// and the next `open` removes it as a segment after the end.
    pub fn prepare(&mut self, next_seq: u64) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        if let Some(last) = self.last_seq {
            if next_seq != last + 1 {
                return Err(JournalError::OutOfSequence {
                    expected: last + 1,
                    got: next_seq,
                });
            }
        }
        if self.cfg.durability == Durability::None {
            return Ok(());
        }
        let full = format::block_len(self.cfg.max_batch);
        if self.segment.is_none() || !self.fits(full) {
            if let Err(e) = self.roll(next_seq) {
                self.poisoned = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// One slice of deferred work: zero-fills and syncs the next
    /// `SPARE_SLICE_BYTES` of the spare segment (creating it first), once
    /// the current segment is a quarter used. Call it with `idle` when
    /// nothing waits to be committed; without, it works only when the
    /// segment is three quarters used and the spare still unfinished (a
    /// journal that is never idle still gets its spare, a millisecond at a
    /// time, instead of a whole preallocation at the roll). Returns whether
    /// more remains.
    /// A failure turns spares off (rolls then create segments in place, and
    /// a disk that is really failing fails there, on the commit path, where
    /// it is fatal) and is returned once.
    pub fn background(&mut self, idle: bool) -> Result<bool, JournalError> {
        if self.poisoned || self.spare_off || self.cfg.durability == Durability::None {
            return Ok(false);
        }
        let size = self.cfg.segment_bytes;
        if self.spare.as_ref().is_some_and(|s| s.filled >= size) {
            return Ok(false);
        }
        // Start once the current segment is a quarter used: an idle server
        // keeps no spare, and a busy one has most of a segment's time.
        let used = |frac: u64| self.segment.is_none() || self.pos >= self.segment_len / 4 * frac;
        if !used(1) || (!idle && !used(3)) {
            return Ok(false);
        }
        let r = self.spare_slice(size);
        if r.is_err() {
            self.spare_off = true;
            if let Some(s) = self.spare.take() {
                let _ = self.storage.remove(&s.path);
            }
        }
        r
    }

    fn spare_slice(&mut self, size: u64) -> Result<bool, JournalError> {
        if self.spare.is_none() {
            let path = self.dir.join(SPARE_NAME);
            let mut file = self
                .storage
                .create(&path)
                .map_err(io_err("create", &path))?;
            file.set_len(size).map_err(io_err("set_len", &path))?;
            self.spare = Some(Spare {
                file,
                path,
                filled: 0,
            });
        }
        let s = self.spare.as_mut().expect("spare");
        let n = SPARE_SLICE_BYTES.min(size - s.filled);
        // Real zeros (not a sparse hole), synced: later writes into it do
        // not allocate, so their fdatasync has no metadata to flush.
        self.zeros.resize(n as usize, 0);
        s.file
            .write_at(&self.zeros[..n as usize], s.filled)
            .map_err(io_err("write", &s.path))?;
        s.file.sync_data().map_err(io_err("fdatasync", &s.path))?;
        s.filled += n;
        Ok(s.filled < size)
    }

    /// Segments started from a ready spare (a rename) since open.
    pub fn rolls_from_spare(&self) -> u64 {
        self.rolls_from_spare
    }

    /// Whether a block of `len` bytes fits in the current segment and leaves
    /// its final page untouched (zero: a segment cut at a block boundary
    /// then still shows it was cut; see the module doc of `journal`).
    fn fits(&self, len: u64) -> bool {
        self.pos + len + BLOCK_ALIGN as u64 <= self.segment_len
    }

    /// Starts a new segment named for `first_seq` (and makes `journal.head`
    /// name it): in mode `async`, first syncs the current one (every seq
    /// before a head's segment is durable; see `head`); then the ready spare
    /// renamed, else one created under a temporary name, preallocated
    /// (zero-filled, synced) and renamed; then makes its name durable.
    fn roll(&mut self, first_seq: u64) -> Result<(), JournalError> {
        if self.cfg.durability == Durability::Async {
            if let Some((f, p)) = self.segment.as_mut() {
                f.sync_data().map_err(io_err("fdatasync", p))?;
            }
        }
        self.start_segment(first_seq)?;
        write_head(&self.storage, &self.dir, Some(first_seq))
    }

    /// The new segment of `roll`, durable under its name.
    fn start_segment(&mut self, first_seq: u64) -> Result<(), JournalError> {
        let path = self.dir.join(segment_name(first_seq));
        let size = self.cfg.segment_bytes;
        if self.spare.as_ref().is_some_and(|s| s.filled >= size) {
            let s = self.spare.take().expect("spare");
            self.storage
                .rename(&s.path, &path)
                .map_err(io_err("rename", &s.path))?;
            self.storage
                .sync_dir(&self.dir)
                .map_err(io_err("fsync dir", &self.dir))?;
            self.segment = Some((s.file, path));
            self.segment_len = size;
            self.pos = 0;
            self.rolls_from_spare += 1;
            return Ok(());
        }
        // Preallocated under a temporary name and renamed: a file with a
        // segment's name is always whole, so a short one was truncated.
        let tmp = self
            .dir
            .join(format!("{}{NEW_SEGMENT_SUFFIX}", segment_name(first_seq)));
        let mut f = self.storage.create(&tmp).map_err(io_err("create", &tmp))?;
        f.preallocate(self.cfg.segment_bytes)
            .map_err(io_err("preallocate", &tmp))?;
        self.storage
            .rename(&tmp, &path)
            .map_err(io_err("rename", &tmp))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(io_err("fsync dir", &self.dir))?;
        self.segment = Some((f, path));
        self.segment_len = self.cfg.segment_bytes;
        self.pos = 0;
        Ok(())
    }
}
