//! Transfer-history runs between the replicas of a partition. The serving
//! leader's writer cuts a run; [`ship`] sends its file to every other
//! member (`PUT_RUN`) and the install is proposed only once a majority
//! holds it, so a committed install never names a file only a lost machine
//! had. Before a replica hands an install to its engine it makes sure its
//! own file is exactly the one the log names ([`ensure_run`], fetching it
//! from a peer with `FETCH_RUN` when it is missing or differs); before it
//! restores a snapshot it does the same for every run the snapshot's engine
//! has installed ([`ensure_through`], comparing with a peer's `LIST_RUNS`).
//!
//! Invariants: no run file is adopted that does not decode as exactly the
//! run and checksum asked for and read back whole; no file of a run whose
//! install was handed to the engine is replaced (the handoff's files lock
//! and queued run); a missing run is fetched again until some peer has it
//! (apply waits: an engine never installs a run it cannot answer from);
//! every RPC body is decoded or refused with a typed error, never a panic.

use crate::network::{ServeError, Transport};
use crate::types::NodeId;
use journal::history::format::{Header, HEADER_LEN};
use journal::history::{adopt_run, read_run_bytes, run_checksum, run_checksums, HistoryError};
use journal::FsStorage;
use runtime::{CutRun, HistoryHandoff, Shared};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// RPC kinds of the run transfers (beside `network::kind`).
pub mod kind {
    /// A leader sends a run it cut: `PutRun` → `RunAnswer::Put`.
    pub const PUT_RUN: u8 = 5;
    /// A replica asks for one run's file: `FetchRun` → `RunAnswer::File`.
    pub const FETCH_RUN: u8 = 6;
    /// A replica asks which runs a peer holds → `RunAnswer::List`.
    pub const LIST_RUNS: u8 = 7;
}

/// Longest one run transfer may take (a run file is tens of MB).
const RUN_RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between rounds of asking every peer for a run nobody had.
const FETCH_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, Serialize, Deserialize)]
struct PutRun {
    run: u64,
    checksum: u128,
    bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FetchRun {
    run: u64,
}

#[derive(Debug, Serialize, Deserialize)]
enum RunAnswer {
    /// Whether the run is now held here.
    Put(bool),
    /// The run's file, if held.
    File(Option<Vec<u8>>),
    /// (run, checksum) of every run file held.
    List(Vec<(u64, u128)>),
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
    (kind::PUT_RUN..=kind::LIST_RUNS).contains(&kind)
}

/// A decoded run-transfer request.
enum Request {
    Put(PutRun),
    Fetch(FetchRun),
    List,
}

/// Serves a run transfer for the partition behind `shared`.
pub async fn serve(shared: Arc<Shared>, kind: u8, body: Vec<u8>) -> Result<Vec<u8>, ServeError> {
    let decode_err = |e: postcard::Error| ServeError::Decode {
        kind,
        what: e.to_string(),
    };
    let req = match kind {
        kind::PUT_RUN => Request::Put(postcard::from_bytes(&body).map_err(decode_err)?),
        kind::FETCH_RUN => Request::Fetch(postcard::from_bytes(&body).map_err(decode_err)?),
        kind::LIST_RUNS => Request::List,
        k => return Err(ServeError::Kind(k)),
    };
    // File I/O of tens of MB: off the runtime's workers.
    let answer = tokio::task::spawn_blocking(move || {
        let Some(h) = shared.history_handoff.as_ref() else {
            return RunAnswer::Refused("no transfer history on this node".into());
        };
        let r = match req {
            Request::Put(p) => put_run(h, &p).map(RunAnswer::Put),
            Request::Fetch(f) => read_run_bytes(&FsStorage, h.dir(), f.run).map(RunAnswer::File),
            Request::List => run_checksums(&FsStorage, h.dir()).map(RunAnswer::List),
        };
        r.unwrap_or_else(|e| RunAnswer::Refused(e.to_string()))
    })
    .await
    .unwrap_or_else(|e| RunAnswer::Refused(format!("run transfer task failed: {e}")));
    Ok(encode(&answer))
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

/// Whether run `run`'s file here has content checksum `checksum`.
fn held(h: &HistoryHandoff, run: u64, checksum: u128) -> Result<bool, HistoryError> {
    Ok(run_checksum(&FsStorage, h.dir(), run)? == Some(checksum))
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

/// Makes run `run`'s file here the one with `checksum`, fetching it from
/// `peers` (in turn, round after round) when missing or different. Returns
/// once it is, or at once for a run already installed here (an install
/// the engine refuses as out of order, the same on every replica).
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
    let mut warned = false;
    loop {
        if blocking(|| {
            let _files = h.lock_files();
            held(h, run, checksum)
        })? {
            return Ok(());
        }
        for p in peers {
            match fetch_from(t, group, h, (run, checksum), p).await {
                Ok(()) => return Ok(()),
                // It has none, or a different one (never installed there):
                // ask the next.
                Err(HistoryError::Missing { .. } | HistoryError::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !warned {
            tracing::warn!(
                run,
                "no peer has the history run this replica must install yet; asking again"
            );
            warned = true;
        }
        tokio::time::sleep(FETCH_RETRY).await;
    }
}

/// Makes every run through `run` here the one a peer holds, in order (a
/// snapshot about to be restored has installed them all), the last with
/// `checksum`.
pub async fn ensure_through(
    t: &dyn Transport,
    group: u32,
    h: &HistoryHandoff,
    (run, checksum): (u64, u128),
    peers: &Peers,
) -> Result<(), HistoryError> {
    h.note_queued(run);
    loop {
        let mine = blocking(|| run_checksums(&FsStorage, h.dir()))?;
        for p in peers {
            let Some(RunAnswer::List(theirs)) = call(t, group, p, kind::LIST_RUNS, vec![]).await
            else {
                continue;
            };
            if theirs.iter().find(|e| e.0 == run).map(|e| e.1) != Some(checksum) {
                continue;
            }
            let mut whole = true;
            for &(r, c) in theirs.iter().filter(|e| e.0 <= run) {
                if mine.contains(&(r, c)) {
                    continue;
                }
                match fetch_from(t, group, h, (r, c), p).await {
                    Ok(()) => {}
                    // The peer went away mid-way: the next one, or the next round.
                    Err(HistoryError::Missing { .. }) => {
                        whole = false;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if whole {
                return Ok(());
            }
        }
        tracing::warn!(
            run,
            "no peer lists the history runs of the snapshot being installed yet; asking again"
        );
        tokio::time::sleep(FETCH_RETRY).await;
    }
}

/// Fetches one run from `peer` and adopts it (replacing a different file).
async fn fetch_from(
    t: &dyn Transport,
    group: u32,
    h: &HistoryHandoff,
    (run, checksum): (u64, u128),
    peer: &(NodeId, String),
) -> Result<(), HistoryError> {
    let body = postcard::to_allocvec(&FetchRun { run }).expect("postcard encodes");
    let Some(RunAnswer::File(Some(bytes))) = call(t, group, peer, kind::FETCH_RUN, body).await
    else {
        return Err(HistoryError::Missing {
            path: h.dir().join(journal::history::run_name(run)),
        });
    };
    blocking(|| {
        let _files = h.lock_files();
        let filter = h.filter().map(|f| &**f);
        adopt_run(&FsStorage, h.dir(), (run, checksum), &bytes, filter).map(|_| ())
    })
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
