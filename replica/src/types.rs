//! The Raft type configuration of a partition group and its entry payload.
//!
//! A log entry's application data is a [`Batch`]: the inputs one leader
//! proposed together, each a [`Command`] with the correlation token of the
//! session that sent it, and the leader's clock when it proposed them. The
//! engine's sequence numbers and times are not chosen by the proposer: they
//! are a pure function of the log ([`inputs_of`]), so every replica stamps
//! every entry identically and the journal blocks of equal indices hold
//! equal records.
//!
//! Invariants: no token is honoured on a replica other than the process that
//! proposed it (`leader` and `epoch` name that process); time never goes
//! back (an entry's time is the later of its batch time and the previous
//! entry's); a blank or membership entry is one `time` input at the previous
//! time, so it consumes exactly one seq and changes nothing but firing
//! deadlines already due.

use engine::{Command, Input, Seq, Timestamp};
use journal::record::{decode, encode_from, origin_of, InputRecord, Origin, RECORD_LEN};
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

/// A node's id in a cluster (`[cluster] node_id`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The type configuration of every partition's Raft group: log ids are
    /// standard (term, index), nodes carry their peer address.
    pub Cfg:
        D = Batch,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
        AsyncRuntime = openraft_rt::deterministic_rng::DeterministicRng<openraft::TokioRuntime>,
);

/// A log id of this configuration.
pub type LogId = openraft::type_config::alias::LogIdOf<Cfg>;
/// A log entry of this configuration.
pub type Entry = openraft::type_config::alias::EntryOf<Cfg>;
/// An entry's payload.
pub type Payload = EntryPayload<Batch, NodeId, openraft::BasicNode>;

/// Most inputs in one batch (the journal block's `max_batch` must hold it).
pub const BATCH_INPUTS_MAX: usize = 1024;

/// One proposed input: the command, the session token its outputs go to
/// and the client request it serves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Item {
    /// Correlation token of the proposing session (0: none). Not journaled.
    pub token: u64,
    /// The command.
    pub command: Command,
    /// The client request (journaled in the record; `Origin::NONE`: none).
    pub origin: Origin,
}

impl Item {
    /// An input no client request made (time, `sessions_lost`).
    pub fn internal(command: Command) -> Item {
        Item {
            token: 0,
            command,
            origin: Origin::NONE,
        }
    }
}

/// The application data of a log entry: inputs proposed together.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The proposing node.
    pub leader: NodeId,
    /// The proposing process's incarnation (random per start): tokens are
    /// honoured only by the process that made them.
    pub epoch: u64,
    /// The leader's clock at proposal (engine nanoseconds).
    pub time: Timestamp,
    /// 1..=[`BATCH_INPUTS_MAX`] inputs.
    pub items: Vec<Item>,
}

impl std::fmt::Display for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "batch of {} from node {} at {}",
            self.items.len(),
            self.leader,
            self.time.0
        )
    }
}

/// Why bytes are not a batch.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BatchError {
    /// Shorter than its header says.
    #[error("batch truncated: {len} bytes, {need} needed")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Bytes its header implies.
        need: usize,
    },
    /// No input, or more than [`BATCH_INPUTS_MAX`].
    #[error("batch of {0} inputs (1..={BATCH_INPUTS_MAX} allowed)")]
    BadCount(usize),
    /// An input that does not decode.
    #[error("batch input {index}: {error}")]
    Record {
        /// Its index.
        index: usize,
        /// Why.
        error: journal::record::RecordError,
    },
}

const BATCH_HEAD: usize = 8 * 3 + 4;
const ITEM_LEN: usize = 8 + RECORD_LEN;

impl Batch {
    /// The wire form: leader, epoch, time, count, then per input its token
    /// and its 192-byte journal record (seq = its position, time = `time`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(BATCH_HEAD + self.items.len() * ITEM_LEN);
        out.extend_from_slice(&self.leader.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.time.0.to_le_bytes());
        out.extend_from_slice(&(self.items.len() as u32).to_le_bytes());
        for (i, it) in self.items.iter().enumerate() {
            out.extend_from_slice(&it.token.to_le_bytes());
            let input = Input {
                seq: Seq(i as u64 + 1),
                now: self.time,
                command: it.command,
            };
            let rec = encode_from(&input, it.origin);
            out.extend_from_slice(bytemuck::bytes_of(&rec));
        }
        out
    }

    /// Parses and validates the wire form (every record decodes).
    pub fn from_bytes(b: &[u8]) -> Result<Batch, BatchError> {
        let short = |need| BatchError::Truncated { len: b.len(), need };
        if b.len() < BATCH_HEAD {
            return Err(short(BATCH_HEAD));
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(b[24..28].try_into().expect("4 bytes")) as usize;
        if count == 0 || count > BATCH_INPUTS_MAX {
            return Err(BatchError::BadCount(count));
        }
        let need = BATCH_HEAD + count * ITEM_LEN;
        if b.len() != need {
            return Err(short(need));
        }
        let mut items = Vec::with_capacity(count);
        for i in 0..count {
            let at = BATCH_HEAD + i * ITEM_LEN;
            let rec: InputRecord = bytemuck::pod_read_unaligned(&b[at + 8..at + ITEM_LEN]);
            let input = decode(&rec).map_err(|error| BatchError::Record { index: i, error })?;
            items.push(Item {
                token: u64_at(at),
                command: input.command,
                origin: origin_of(&rec),
            });
        }
        Ok(Batch {
            leader: u64_at(0),
            epoch: u64_at(8),
            time: Timestamp(u64_at(16)),
            items,
        })
    }
}

impl Serialize for Batch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Batch, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Batch;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Bourse input batch")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Batch, E> {
                Batch::from_bytes(v).map_err(E::custom)
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Batch, E> {
                self.visit_bytes(&v)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Where the engine's numbering stands after an entry: its last seq and time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Last seq used (0: none yet).
    pub seq: u64,
    /// Engine time of that input (ns).
    pub time: u64,
}

/// The engine inputs of `payload`, numbered after `prev`, handed to `f` with
/// the token to honour (0 unless the entry was proposed by `me`, `epoch`)
/// and the input's origin; returns the stamp after them. The one function that numbers entries: the
/// log store (journal records) and the state machine (engine) both call it.
pub fn inputs_of(
    payload: &Payload,
    prev: Stamp,
    me: Option<(NodeId, u64)>,
    mut f: impl FnMut(Input, u64, Origin),
) -> Stamp {
    match payload {
        EntryPayload::Normal(b) => {
            let now = Timestamp(b.time.0.max(prev.time));
            let mine = me == Some((b.leader, b.epoch));
            for (i, it) in b.items.iter().enumerate() {
                let input = Input {
                    seq: Seq(prev.seq + 1 + i as u64),
                    now,
                    command: it.command,
                };
                f(input, if mine { it.token } else { 0 }, it.origin);
            }
            Stamp {
                seq: prev.seq + b.items.len() as u64,
                time: now.0,
            }
        }
        EntryPayload::Blank | EntryPayload::Membership(_) => {
            let now = Timestamp(prev.time);
            f(
                Input {
                    seq: Seq(prev.seq + 1),
                    now,
                    command: Command::Time { now },
                },
                0,
                Origin::NONE,
            );
            Stamp {
                seq: prev.seq + 1,
                time: prev.time,
            }
        }
    }
}

/// The journal kind of a payload.
pub fn kind_of(payload: &Payload) -> journal::RaftKind {
    match payload {
        EntryPayload::Normal(_) => journal::RaftKind::Normal,
        EntryPayload::Blank => journal::RaftKind::Blank,
        EntryPayload::Membership(_) => journal::RaftKind::Membership,
    }
}
