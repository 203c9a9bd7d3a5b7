//! The committed-request table of a partition: for each client session key
//! (`journal::record::Origin::session`), the highest request number whose
//! input this partition's group committed. It is replicated state: every
//! replica builds it from the origins of the entries it applies, the Raft
//! snapshot carries it, and a restarted node rebuilds it from its snapshot
//! and the journal records after it. A new leader's gateway reads it when
//! a client logs in, so a request the old leader had committed is answered
//! "executed before", never executed twice (`gateway::session`).
//!
//! Why the highest number suffices: one gateway submits a session's
//! requests in request order, each partition's proposals are one FIFO
//! queue, and the committed log is a prefix of what the leader appended;
//! so if request R of a session is committed in a partition, every earlier
//! request of that session routed there is committed before it.
//!
//! Invariants: the table is a pure function of the applied log (the same on
//! every replica at the same index); it holds at most
//! [`COMMITTED_SESSIONS_MAX`] sessions, dropping the one updated longest
//! ago (by log index) when a new one arrives and it is full; updating a
//! session already in it allocates nothing.

use journal::record::Origin;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Most sessions a partition's table keeps.
pub const COMMITTED_SESSIONS_MAX: usize = 65_536;

/// One session's row: its highest committed request, and the log index
/// that last changed it (what eviction goes by).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Row {
    /// The session key.
    pub session: u64,
    /// Highest request number committed.
    pub request: u64,
    /// Log index of the entry that last raised it.
    pub index: u64,
}

/// The table (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedRequests {
    by_session: BTreeMap<u64, (u64, u64)>,
    max: usize,
}

impl Default for CommittedRequests {
    fn default() -> Self {
        CommittedRequests::with_max(COMMITTED_SESSIONS_MAX)
    }
}

impl CommittedRequests {
    /// An empty table of at most `max` sessions (at least 1).
    pub fn with_max(max: usize) -> Self {
        CommittedRequests {
            by_session: BTreeMap::new(),
            max: max.max(1),
        }
    }

    /// Records that an input of `origin` was committed in the entry at
    /// log index `index` (no-op without an origin).
    pub fn note(&mut self, origin: Origin, index: u64) {
        if origin.is_none() {
            return;
        }
        if let Some((request, at)) = self.by_session.get_mut(&origin.session) {
            *request = (*request).max(origin.request);
            *at = index;
            return;
        }
        if self.by_session.len() >= self.max {
            // The session updated longest ago (ties: the lowest key). A
            // scan, only when a new session arrives at a full table.
            let oldest = self
                .by_session
                .iter()
                .min_by_key(|(k, (_, at))| (*at, **k))
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.by_session.remove(&k);
            }
        }
        self.by_session
            .insert(origin.session, (origin.request, index));
    }

    /// The highest request of `session` committed here (0: none known).
    pub fn committed(&self, session: u64) -> u64 {
        self.by_session.get(&session).map_or(0, |(r, _)| *r)
    }

    /// Sessions in the table.
    pub fn len(&self) -> usize {
        self.by_session.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty()
    }

    /// Every row, by session key (what a snapshot stores).
    pub fn rows(&self) -> Vec<Row> {
        self.by_session
            .iter()
            .map(|(&session, &(request, index))| Row {
                session,
                request,
                index,
            })
            .collect()
    }

    /// Replaces the contents with `rows` (a snapshot's); rows beyond the
    /// bound keep the newest.
    pub fn restore(&mut self, rows: &[Row]) {
        self.by_session.clear();
        let mut sorted: Vec<&Row> = rows.iter().collect();
        sorted.sort_by_key(|r| (std::cmp::Reverse(r.index), r.session));
        for r in sorted.into_iter().take(self.max) {
            self.by_session.insert(r.session, (r.request, r.index));
        }
    }
}

/// A partition's table, shared by its state machine (which writes it as it
/// applies) and the gateway (which reads it at a login). The lock is taken
/// once per applied entry and once per partition per login.
#[derive(Clone, Debug, Default)]
pub struct CommittedTable(Arc<Mutex<CommittedRequests>>);

impl CommittedTable {
    /// The table, locked.
    pub fn lock(&self) -> MutexGuard<'_, CommittedRequests> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The highest request of `session` committed in this partition.
    pub fn committed(&self, session: u64) -> u64 {
        self.lock().committed(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(session: u64, request: u64) -> Origin {
        Origin::new(session, request)
    }

    #[test]
    fn keeps_the_highest_request_per_session() {
        let mut t = CommittedRequests::default();
        t.note(o(7, 3), 10);
        t.note(o(7, 2), 11);
        t.note(Origin::NONE, 12);
        t.note(o(9, 1), 13);
        assert_eq!((t.committed(7), t.committed(9), t.committed(8)), (3, 1, 0));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_full_table_drops_the_session_updated_longest_ago() {
        let mut t = CommittedRequests::with_max(2);
        t.note(o(1, 1), 1);
        t.note(o(2, 1), 2);
        t.note(o(1, 2), 3);
        t.note(o(3, 1), 4);
        assert_eq!((t.committed(1), t.committed(2), t.committed(3)), (2, 0, 1));
    }

    #[test]
    fn rows_restore_to_the_same_table() {
        let mut t = CommittedRequests::with_max(3);
        for (i, s) in [5u64, 1, 9, 1, 4].iter().enumerate() {
            t.note(o(*s, i as u64 + 1), i as u64 + 100);
        }
        let mut u = CommittedRequests::with_max(3);
        u.restore(&t.rows());
        assert_eq!(u, t);
        // A smaller bound keeps the newest rows.
        let mut v = CommittedRequests::with_max(1);
        v.restore(&t.rows());
        assert_eq!(
            v.rows(),
            vec![Row {
                session: 4,
                request: 5,
                index: 104
            }]
        );
    }
}
