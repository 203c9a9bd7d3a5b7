//! Transfer-history files between the replicas of a partition. The
//! serving leader's writer cuts a run; [`ship`] sends its file to every
//! other member (`PUT_RUN`) and the install is proposed only once a
//! majority holds it, so a committed install never names a file only a lost
//! machine had. Before a replica hands an install to its engine it makes
//! sure it holds the run exactly as the log names it ([`ensure_run`],
//! fetching the file that holds it from a peer with `FETCH_FILE` when it is
//! missing or differs: the run's own file, or a merged file a peer's
//! compaction made, which then takes the place of this node's files of
//! those runs); before it restores a snapshot it makes its files through
//! the snapshot's last run those of a peer ([`ensure_through`], comparing
//! with the peer's `LIST_FILES`).
//!
//! Invariants: no file is adopted that does not decode as the file asked
//! for, hold the run the log names under its checksum and every run this
//! node installed under the checksum it has, and read back whole; no file
//! of a run whose install was handed to the engine is replaced except by a
//! file holding it under the same checksum (the handoff's files lock and
//! queued run); a missing run is fetched again until some peer has it
//! (apply waits: an engine never installs a run it cannot answer from);
//! a file travels in chunks of at most `CHUNK_BYTES`, written to disk as
//! they come, so a merged file of any size fits the peer frame and memory
//! holds one chunk of it; every RPC body is decoded or refused with
//! a typed error, never a panic.

use crate::network::{ServeError, Transport};
use crate::types::NodeId;
use journal::history::format::{Header, HEADER_LEN};
use journal::history::{
    adopt_run, checksum_held, file_name, list_files, read_file_chunk, read_run_bytes, run_name,
    Expect, FileEntry, HistoryError, Incoming,
};
use journal::{FsFile, FsStorage};
use runtime::{CutRun, HistoryHandoff, Shared};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// RPC kinds of the run transfers (beside `network::kind`).
pub mod kind {
    /// A leader sends a run it cut: `PutRun` → `RunAnswer::Put`.
    pub const PUT_RUN: u8 = 5;
    /// A replica asks for a piece of the file holding a run: `FetchFile`
    /// → `RunAnswer::Chunk`.
    pub const FETCH_FILE: u8 = 6;
    /// A replica asks which files a peer holds → `RunAnswer::Files`.
    pub const LIST_FILES: u8 = 7;
}

/// Most bytes of a file one `FETCH_FILE` answer carries (well inside the
/// peer frame; small in unit tests, so files travel in several).
const CHUNK_BYTES: u64 = if cfg!(test) { 256 } else { 16 << 20 };
/// Longest file a replica fetches (a merged file of the most records a
/// merge takes is under 1 GiB).
const FILE_BYTES_MAX: u64 = 4 << 30;

/// Longest one run transfer may take (a run file is tens of MB).
const RUN_RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between rounds of asking every peer for a run nobody had.
const FETCH_RETRY: Duration = Duration::from_millis(200);
/// A node still waiting for a run says so again every this many rounds
/// (30 s): a stuck apply stays visible in the log.
const WARN_EVERY_ROUNDS: u64 = 150;

#[derive(Debug, Serialize, Deserialize)]
struct PutRun {
    run: u64,
    checksum: u128,
    bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FetchFile {
    run: u64,
    offset: u64,
}

/// A piece of a file (see `journal::history::FileChunk`).
#[derive(Debug, Serialize, Deserialize)]
struct Chunk {
    first: u64,
    last: u64,
    checksum: u128,
    len: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
enum RunAnswer {
    /// Whether the run is now held here.
    Put(bool),
    /// A piece of the file holding the run asked for, if one does.
    Chunk(Option<Chunk>),
    /// (first run, last run, checksum) of every file held, oldest first.
    Files(Vec<(u64, u64, u128)>),
    /// The request could not be served (why).
    Refused(String),
}

/// Runs file I/O of tens of MB (and its fdatasync) from async code
/// without stalling the other tasks of a worker (heartbeats among them):
/// `block_in_place` on the node's multi-threaded runtime; inline elsewhere.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn encode(a: &RunAnswer) -> Vec<u8> {
    postcard::to_allocvec(a).expect("postcard encodes a run answer")
}

/// Whether `kind` is a run transfer (served by [`serve`]).
pub fn is_run_kind(kind: u8) -> bool {
    (kind::PUT_RUN..=kind::LIST_FILES).contains(&kind)
}

/// A decoded run-transfer request.
enum Request {
    Put(PutRun),
    Fetch(FetchFile),
    List,
}

/// Serves a run transfer for the partition behind `shared`.
pub async fn serve(shared: Arc<Shared>, kind: u8, body: Vec<u8>) -> Result<Vec<u8>, ServeError> {
    let req = decode(kind, &body)?;
    // File I/O of tens of MB: off the runtime's workers.
    let answer = tokio::task::spawn_blocking(move || answer(shared.history_handoff.as_ref(), req))
        .await
        .unwrap_or_else(|e| RunAnswer::Refused(format!("run transfer task failed: {e}")));
    Ok(encode(&answer))
}

/// The request a run-transfer body of `kind` carries.
fn decode(kind: u8, body: &[u8]) -> Result<Request, ServeError> {
    let decode_err = |e: postcard::Error| ServeError::Decode {
        kind,
        what: e.to_string(),
    };
    Ok(match kind {
        kind::PUT_RUN => Request::Put(postcard::from_bytes(body).map_err(decode_err)?),
        kind::FETCH_FILE => Request::Fetch(postcard::from_bytes(body).map_err(decode_err)?),
        kind::LIST_FILES => Request::List,
        k => return Err(ServeError::Kind(k)),
    })
}

/// The answer to a run-transfer request for the history behind `h`.
fn answer(h: Option<&HistoryHandoff>, req: Request) -> RunAnswer {
    let Some(h) = h else {
        return RunAnswer::Refused("no transfer history on this node".into());
    };
    let r = match req {
        Request::Put(p) => put_run(h, &p).map(RunAnswer::Put),
        Request::Fetch(f) => read_file_chunk(&FsStorage, h.dir(), f.run, (f.offset, CHUNK_BYTES))
            .map(|c| {
                RunAnswer::Chunk(c.map(|c| Chunk {
                    first: c.file.first,
                    last: c.file.last,
                    checksum: c.file.checksum,
                    len: c.len,
                    bytes: c.bytes,
                }))
            }),
        Request::List => list_files(&FsStorage, h.dir()).map(|files| {
            RunAnswer::Files(
                files
                    .iter()
                    .map(|f| (f.first, f.last, f.checksum))
                    .collect(),
            )
        }),
    };
    r.unwrap_or_else(|e| RunAnswer::Refused(e.to_string()))
}

/// Adopts a leader's run unless its install was already handed to the
/// engine (then only an identical file counts as held).
fn put_run(h: &HistoryHandoff, p: &PutRun) -> Result<bool, HistoryError> {
    let _files = h.lock_files();
    if held(h, p.run, p.checksum)? {
        return Ok(true);
    }
    if p.run <= h.queued_run() {
        return Ok(false);
    }
    let filter = h.filter().map(|f| &**f);
    match adopt_run(&FsStorage, h.dir(), (p.run, p.checksum), &p.bytes, filter) {
        Ok(_) => Ok(true),
        // Not the next run here yet: it will fetch the earlier ones at apply.
        Err(HistoryError::Missing { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether this node holds run `run` under content checksum `checksum`
/// (its own file, or a merged file's member entry).
fn held(h: &HistoryHandoff, run: u64, checksum: u128) -> Result<bool, HistoryError> {
    Ok(checksum_held(&FsStorage, h.dir(), run)? == Some(checksum))
}

/// The members this node can reach for a partition's runs: (id, address).
pub type Peers = Vec<(NodeId, String)>;

/// Calls `peer` with one run RPC; `None` when it failed or refused.
async fn call(
    t: &dyn Transport,
    group: u32,
    (id, addr): &(NodeId, String),
    kind: u8,
    body: Vec<u8>,
) -> Option<RunAnswer> {
    match t.call(*id, addr, group, kind, body, RUN_RPC_TIMEOUT).await {
        Ok(bytes) => match postcard::from_bytes::<RunAnswer>(&bytes) {
            Ok(RunAnswer::Refused(why)) => {
                tracing::warn!(
                    peer = id,
                    kind,
                    why,
                    "a peer refused a history run transfer"
                );
                None
            }
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(peer = id, kind, error = %e, "a history run answer does not decode");
                None
            }
        },
        Err(e) => {
            tracing::debug!(peer = id, kind, error = %e, "history run transfer failed");
            None
        }
    }
}

/// Sends the cut run `c` to `peers` (learners too), each on a task of its
/// own; returns as soon as `enough` of the `voters` among them hold it (or
/// every one has answered) with the voters that do. The others go on in
/// the background: a slow or dead member never holds up a run a majority
/// has. `None` when this node's file of the run is no longer `c`
/// (missing, or replaced by another leader's run of that number while this
/// node followed): the cut must be written again.
pub async fn ship(
    t: Arc<dyn Transport>,
    (group, h): (u32, &HistoryHandoff),
    c: CutRun,
    peers: &Peers,
    (voters, enough): (&[NodeId], usize),
) -> Result<Option<Vec<NodeId>>, HistoryError> {
    let Some(bytes) = blocking(|| read_run_bytes(&FsStorage, h.dir(), c.run))? else {
        return Ok(None);
    };
    let header = bytes
        .get(..HEADER_LEN)
        .and_then(|b| Header::decode(b.try_into().expect("header length")).ok());
    if header.is_none_or(|x| x.checksum != c.checksum || x.through_seq != c.through.0) {
        return Ok(None);
    }
    let body = postcard::to_allocvec(&PutRun {
        run: c.run,
        checksum: c.checksum,
        bytes,
    })
    .expect("postcard encodes a run");
    let (tx, mut rx) = tokio::sync::mpsc::channel(peers.len().max(1));
    for p in peers.iter().cloned() {
        let (t, tx, body) = (t.clone(), tx.clone(), body.clone());
        tokio::spawn(async move {
            let a = call(&*t, group, &p, kind::PUT_RUN, body).await;
            let _ = tx
                .send((p.0, matches!(a, Some(RunAnswer::Put(true)))))
                .await;
        });
    }
    drop(tx);
    let mut held = Vec::new();
    while held.len() < enough {
        match rx.recv().await {
            Some((id, true)) if voters.contains(&id) => held.push(id),
            Some(_) => {}
            None => break,
        }
    }
    Ok(Some(held))
}

/// Makes this node hold run `run` under `checksum`, fetching the file
/// that holds it from `peers` (in turn, round after round) when missing or
/// different. Returns once it does, or at once for a run already
/// installed here (an install the engine refuses as out of order, the same
/// on every replica).
pub async fn ensure_run(
    t: &dyn Transport,
    group: u32,
    h: &HistoryHandoff,
    (run, checksum): (u64, u128),
    peers: &Peers,
) -> Result<(), HistoryError> {
    if run <= h.installed_run() {
        return Ok(());
    }
    h.note_queued(run);
    let mut round = 0u64;
    loop {
        if blocking(|| {
            let _files = h.lock_files();
            held(h, run, checksum)
        })? {
            return Ok(());
        }
        let mut last = None;
        for p in peers {
            match fetch_from(t, group, h, (Expect::Run { run, checksum }, run), p).await {
                Ok(()) => return Ok(()),
                Err(e) if peer_side(&e) => last = Some((p.0, e)),
                Err(e) => return Err(e),
            }
        }
        if round.is_multiple_of(WARN_EVERY_ROUNDS) {
            let hint = match &last {
                Some((_, HistoryError::Overlap { .. })) => {
                    "a peer's file starts inside one of this node's: members must share \
                     [history] compact_fanout"
                }
                _ => "",
            };
            let (peer, why) = last.map_or((0, String::new()), |(p, e)| (p, e.to_string()));
            tracing::warn!(
                run,
                round,
                peer,
                why,
                hint,
                "no peer has the history run this replica must install yet; apply waits, asking again"
            );
        }
        tokio::time::sleep(FETCH_RETRY).await;
        round += 1;
    }
}

/// Makes this node's files through run `run` those a peer holds, oldest
/// first (a snapshot about to be restored has installed them all), the
/// one holding `run` under `checksum`. Compaction here waits meanwhile.
pub async fn ensure_through(
    t: &dyn Transport,
    group: u32,
    h: &HistoryHandoff,
    (run, checksum): (u64, u128),
    peers: &Peers,
) -> Result<(), HistoryError> {
    h.note_queued(run);
    let _pause = h.pause();
    let mut round = 0u64;
    loop {
        for p in peers {
            let Some(RunAnswer::Files(theirs)) = call(t, group, p, kind::LIST_FILES, vec![]).await
            else {
                continue;
            };
            let theirs: Vec<FileEntry> = theirs
                .into_iter()
                .filter(|e| e.0 <= run)
                .map(|(first, last, checksum)| FileEntry {
                    first,
                    last,
                    checksum,
                })
                .collect();
            if theirs.last().is_none_or(|e| e.last < run) {
                tracing::debug!(peer = p.0, run, "a peer lists no file holding the run");
                continue;
            }
            match copy_files(t, group, h, &theirs, p).await {
                Ok(()) => {}
                Err(e) if peer_side(&e) => {
                    tracing::debug!(peer = p.0, run, error = %e, "a peer's history files were not adopted");
                    continue;
                }
                Err(e) => return Err(e),
            }
            if blocking(|| held(h, run, checksum))? {
                return Ok(());
            }
            tracing::debug!(
                peer = p.0,
                run,
                "a peer's files hold the run under another checksum"
            );
        }
        if round.is_multiple_of(WARN_EVERY_ROUNDS) {
            tracing::warn!(
                run,
                round,
                "no peer lists the history runs of the snapshot being installed yet; asking again"
            );
        }
        tokio::time::sleep(FETCH_RETRY).await;
        round += 1;
    }
}

/// Whether `e` is about a peer's files, so another peer or a later round
/// may do: it had none, its file changed or went away mid-way, it holds
/// another one, or one that starts inside a file of this node's.
fn peer_side(e: &HistoryError) -> bool {
    matches!(
        e,
        HistoryError::Missing { .. } | HistoryError::Corrupt { .. } | HistoryError::Overlap { .. }
    )
}

/// Adopts every file of `theirs` (oldest first) this node does not hold
/// as such.
async fn copy_files(
    t: &dyn Transport,
    group: u32,
    h: &HistoryHandoff,
    theirs: &[FileEntry],
    peer: &(NodeId, String),
) -> Result<(), HistoryError> {
    let mine = blocking(|| list_files(&FsStorage, h.dir()))?;
    for e in theirs {
        if !mine.contains(e) {
            // The snapshot replaces what this node installed: nothing
            // here binds the file's members.
            fetch_from(t, group, h, (Expect::File(*e), 0), peer).await?;
        }
    }
    Ok(())
}

/// Fetches the file `expect` names from `peer` and adopts it (its members
/// below `installed_below` must be as held here); a merged file taking
/// the place of runs this node installed is handed to the engine's store.
async fn fetch_from(
    t: &dyn Transport,
    group: u32,
    h: &HistoryHandoff,
    (expect, installed_below): (Expect, u64),
    peer: &(NodeId, String),
) -> Result<(), HistoryError> {
    let run = match expect {
        Expect::Run { run, .. } => run,
        Expect::File(e) => e.first,
    };
    let missing = || HistoryError::Missing {
        path: h.dir().join(run_name(run)),
    };
    let incoming = fetch_file(t, group, h, run, peer)
        .await?
        .ok_or_else(missing)?;
    if matches!(expect, Expect::File(e) if e != incoming.entry()) {
        blocking(|| incoming.abandon(&FsStorage));
        return Err(missing());
    }
    blocking(|| {
        let _merges = h.lock_merges();
        let _files = h.lock_files();
        let filter = h.filter().map(|f| &**f);
        let (first, last) =
            incoming.finish(&FsStorage, h.dir(), expect, (filter, installed_below))?;
        h.note_files_changed();
        // An install's merged file (a snapshot's files go to the store
        // the restore opens).
        match h.store() {
            Some(s) if installed_below > 0 && first < last => s
                .link
                .offer_adopted(&FsStorage, &h.dir().join(file_name(first, last))),
            _ => Ok(()),
        }
    })
}

/// The whole file holding `run` at `peer`, received chunk by chunk into
/// the history directory (`None`: the peer holds none, failed, or its file
/// changed between chunks; the partial file is then removed).
async fn fetch_file(
    t: &dyn Transport,
    group: u32,
    h: &HistoryHandoff,
    run: u64,
    peer: &(NodeId, String),
) -> Result<Option<Incoming<FsFile>>, HistoryError> {
    let mut incoming: Option<Incoming<FsFile>> = None;
    loop {
        let offset = incoming.as_ref().map_or(0, |i| i.written());
        let body = postcard::to_allocvec(&FetchFile { run, offset }).expect("postcard encodes");
        let answer = call(t, group, peer, kind::FETCH_FILE, body).await;
        let Some(RunAnswer::Chunk(Some(c))) = answer else {
            return Ok(give_up(incoming));
        };
        let e = FileEntry {
            first: c.first,
            last: c.last,
            checksum: c.checksum,
        };
        let stalled = c.bytes.is_empty() && offset < c.len;
        let changed = incoming.as_ref().is_some_and(|i| i.entry() != e);
        if changed || c.len > FILE_BYTES_MAX || stalled {
            return Ok(give_up(incoming));
        }
        let mut i = match incoming.take() {
            Some(i) => i,
            None => blocking(|| Incoming::start(&FsStorage, h.dir(), e, c.len, "fetch.tmp"))?,
        };
        blocking(|| i.push(&c.bytes))?;
        if i.complete() {
            return Ok(Some(i));
        }
        incoming = Some(i);
    }
}

/// Removes a partly received file; `None`.
fn give_up(incoming: Option<Incoming<FsFile>>) -> Option<Incoming<FsFile>> {
    if let Some(i) = incoming {
        blocking(|| i.abandon(&FsStorage));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::CallFuture;
    use engine::Seq;
    use journal::history::{build_run, write_run_file};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every member takes every run; counts the sends.
    struct Taking(AtomicUsize);

    impl Transport for Taking {
        fn call(&self, _: NodeId, _: &str, _: u32, _: u8, _: Vec<u8>, _: Duration) -> CallFuture {
            self.0.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(encode(&RunAnswer::Put(true))) })
        }
    }

    /// A leader ships its cut; once another leader's run of the same number
    /// (here: through another seq) has replaced its file, or the file is
    /// gone, the cut is not shipped (`None`: cut again), never sent under
    /// a checksum the bytes do not have.
    #[tokio::test]
    async fn a_cut_whose_file_was_replaced_is_not_shipped() {
        let dir = tempfile::tempdir().unwrap();
        let h = HistoryHandoff::new(dir.path(), None);
        let mine = build_run(1, 0, 10, &[]);
        write_run_file(&FsStorage, dir.path(), &mine).unwrap();
        let t = Arc::new(Taking(AtomicUsize::new(0)));
        let peers: Peers = vec![(2, "b".into()), (3, "c".into())];
        let c = CutRun {
            run: 1,
            through: Seq(10),
            checksum: mine.header.checksum,
        };
        let held = ship(t.clone(), (0, &h), c, &peers, (&[2, 3], 1))
            .await
            .unwrap();
        assert!(held.is_some_and(|ids| !ids.is_empty()));
        let theirs = build_run(1, 0, 12, &[]);
        write_run_file(&FsStorage, dir.path(), &theirs).unwrap();
        let sent = t.0.load(Ordering::Relaxed);
        assert!(ship(t.clone(), (0, &h), c, &peers, (&[2, 3], 1))
            .await
            .unwrap()
            .is_none());
        std::fs::remove_file(dir.path().join(journal::history::run_name(1))).unwrap();
        assert!(ship(t.clone(), (0, &h), c, &peers, (&[2, 3], 1))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            t.0.load(Ordering::Relaxed),
            sent,
            "nothing sent for a replaced cut"
        );
        // Withdrawn only while it is still the published cut.
        h.put_cut(c);
        h.withdraw(CutRun { run: 2, ..c });
        assert_eq!(h.cut(), Some(c));
        h.withdraw(c);
        assert_eq!(h.cut(), None);
    }
}

#[cfg(test)]
mod fetch_tests {
    use super::*;
    use crate::network::CallFuture;
    use engine::history::TransferHistory;
    use journal::history::{build_run, write_run_file, Compactor, DiskHistory};
    use runtime::StoreLink;
    use std::path::Path;

    /// A peer that answers from its own history directory.
    struct Peer(HistoryHandoff);

    impl Transport for Peer {
        fn call(
            &self,
            _: NodeId,
            _: &str,
            _: u32,
            kind: u8,
            body: Vec<u8>,
            _: Duration,
        ) -> CallFuture {
            let a = decode(kind, &body).map(|req| encode(&answer(Some(&self.0), req)));
            let a = a.map_err(|e| crate::network::TransportError {
                target: 2,
                addr: "peer".into(),
                what: e.to_string(),
            });
            Box::pin(async move { a })
        }
    }

    /// Runs 1..=n, empty, through seq 10 × run; their checksums.
    fn write_runs(dir: &Path, n: u64) -> Vec<u128> {
        (1..=n)
            .map(|run| {
                let image = build_run(run, (run - 1) * 10, run * 10, &[]);
                write_run_file(&FsStorage, dir, &image).unwrap();
                image.header.checksum
            })
            .collect()
    }

    /// A follower that must install run 2, which its peer holds only in a
    /// merged file of runs 1..=3, fetches that file in chunks, adopts it in
    /// place of its run 1 and hands it to the engine's store (which then
    /// installs run 2 from it); a node restoring a snapshot through run 4
    /// ends with exactly the peer's files.
    #[tokio::test]
    async fn a_peers_merged_file_serves_an_install_and_a_snapshot() {
        let (p, f, g) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let sums = write_runs(p.path(), 6);
        let peer_store = DiskHistory::open(FsStorage, p.path()).unwrap();
        for (i, &c) in sums.iter().enumerate() {
            assert!(peer_store.has_run(i as u64 + 1, c).unwrap());
        }
        let mut c = Compactor::new(
            FsStorage,
            p.path(),
            peer_store.link(),
            (3, u64::MAX),
            (0, 0),
        )
        .unwrap();
        c.observe_covered(|| 100, Some(1000)).unwrap();
        assert!(c.step().unwrap(), "runs 1..=3 merged at the peer");
        let peers: Peers = vec![(2, "peer".into())];
        let t = Peer(HistoryHandoff::new(p.path(), None));

        write_runs(f.path(), 1);
        let live = DiskHistory::open(FsStorage, f.path()).unwrap();
        assert!(live.has_run(1, sums[0]).unwrap());
        let h = HistoryHandoff::new(f.path(), None);
        h.put_store(StoreLink {
            link: live.link(),
            installed_run: 1,
            by_seq: 10,
        });
        ensure_run(&t, 0, &h, (2, sums[1]), &peers).await.unwrap();
        assert_eq!(
            list_files(&FsStorage, f.path()).unwrap(),
            list_files(&FsStorage, p.path()).unwrap()[..1]
        );
        assert!(
            live.has_run(2, sums[1]).unwrap(),
            "the store installs from it"
        );
        assert_eq!(live.files(), 1);
        assert!(live.has_run(3, sums[2]).unwrap());
        // The next run, held by the peer only in a file it starts.
        c.observe_covered(|| 100, Some(1000)).unwrap();
        assert!(c.step().unwrap(), "runs 4..=6 merged at the peer");
        ensure_run(&t, 0, &h, (4, sums[3]), &peers).await.unwrap();
        assert!(live.has_run(4, sums[3]).unwrap());
        assert_eq!(live.files(), 2);

        let h = HistoryHandoff::new(g.path(), None);
        ensure_through(&t, 0, &h, (5, sums[4]), &peers)
            .await
            .unwrap();
        assert_eq!(
            list_files(&FsStorage, g.path()).unwrap(),
            list_files(&FsStorage, p.path()).unwrap()
        );
        // Received in pieces of `CHUNK_BYTES` through a file of its own,
        // renamed once whole: nothing is left behind.
        for d in [f.path(), g.path()] {
            let names: Vec<String> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(names.iter().all(|n| n.ends_with(".bhr")), "{names:?}");
        }
        let len = std::fs::metadata(p.path().join(file_name(1, 3)))
            .unwrap()
            .len();
        assert!(len > 2 * CHUNK_BYTES, "{len} bytes: several chunks");
    }
}
