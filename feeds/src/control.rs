//! The `bourse-md/1` control records (feeds/PROTOCOL.md "Transport") and
//! what a client reads off the stream: feed records, snapshots and control
//! records, decoded from bytes (sans-IO).
//!
//! Invariants: decoding never panics on any input; a record is either
//! incomplete (`Ok(None)`, ask for more bytes), decoded with its exact
//! length, or refused (`Malformed`). Control templates (30..) never overlap
//! the feed templates, so one stream carries both.

use crate::msg::{Channel, Message, Snapshot};
use crate::wire as fw;

/// Control record templates (schema 2, beside the feed records).
pub mod ctl_template {
    /// Client → server: authenticate (64-byte zero-padded token).
    pub const AUTH: u16 = 30;
    /// Client → server: subscribe to (instrument, channel).
    pub const SUBSCRIBE: u16 = 31;
    /// Client → server: retransmit `from..=to` of (instrument, channel).
    pub const RETRANSMIT: u16 = 32;
    /// Client → server: a fresh snapshot of (instrument, channel).
    pub const SNAPSHOT: u16 = 33;
    /// Server → client: the last `instrument_seq` queued for (instrument, channel).
    pub const HEARTBEAT: u16 = 40;
    /// Server → client: an error code; the connection closes after it.
    pub const ERROR: u16 = 41;
    /// Server → client: a retransmit or snapshot request was over the
    /// subscriber's request budget and was not served; ask again after
    /// `retry_after_ms`.
    pub const THROTTLED: u16 = 42;
}

/// Close / error codes.
pub mod md_close {
    /// Orderly.
    pub const NORMAL: u32 = 0;
    /// Unknown token or no `read` permission.
    pub const UNAUTHORIZED: u32 = 1;
    /// Malformed or unexpected record.
    pub const PROTOCOL: u32 = 2;
    /// Could not keep up even after resets.
    pub const SLOW_CONSUMER: u32 = 3;
    /// Too many subscribers.
    pub const FULL: u32 = 4;
}

/// A control record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ctl {
    /// Authenticate.
    Auth(String),
    /// Subscribe.
    Subscribe {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
    },
    /// Retransmit (inclusive range).
    Retransmit {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// First.
        from: u64,
        /// Last.
        to: u64,
    },
    /// Snapshot request.
    Snapshot {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
    },
    /// Heartbeat with the last sequence queued.
    Heartbeat {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// Last `instrument_seq` queued.
        last: u64,
    },
    /// Error (the connection closes after it).
    Error(u32),
    /// A request for (instrument, channel) was refused by the request budget.
    Throttled {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// When the budget has room again (milliseconds).
        retry_after_ms: u32,
    },
}

const TOKEN_LEN: usize = 64;

fn put_header(out: &mut Vec<u8>, len: usize, template: u16) {
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&template.to_le_bytes());
    out.push(fw::SCHEMA);
    out.push(fw::VERSION);
}

fn put_key(out: &mut Vec<u8>, instrument: u32, channel: Channel) {
    out.extend_from_slice(&instrument.to_le_bytes());
    out.push(channel as u8);
    out.extend_from_slice(&[0; 3]);
}

/// Appends a control record.
pub fn encode_ctl(c: &Ctl, out: &mut Vec<u8>) {
    use ctl_template as t;
    match c {
        Ctl::Auth(tok) => {
            put_header(out, 8 + TOKEN_LEN, t::AUTH);
            let mut b = [0u8; TOKEN_LEN];
            let n = tok.len().min(TOKEN_LEN);
            b[..n].copy_from_slice(&tok.as_bytes()[..n]);
            out.extend_from_slice(&b);
        }
        Ctl::Subscribe {
            instrument,
            channel,
        } => {
            put_header(out, 16, t::SUBSCRIBE);
            put_key(out, *instrument, *channel);
        }
        Ctl::Snapshot {
            instrument,
            channel,
        } => {
            put_header(out, 16, t::SNAPSHOT);
            put_key(out, *instrument, *channel);
        }
        Ctl::Retransmit {
            instrument,
            channel,
            from,
            to,
        } => {
            put_header(out, 32, t::RETRANSMIT);
            put_key(out, *instrument, *channel);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&to.to_le_bytes());
        }
        Ctl::Heartbeat {
            instrument,
            channel,
            last,
        } => {
            put_header(out, 24, t::HEARTBEAT);
            put_key(out, *instrument, *channel);
            out.extend_from_slice(&last.to_le_bytes());
        }
        Ctl::Error(code) => {
            put_header(out, 16, t::ERROR);
            out.extend_from_slice(&code.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
        Ctl::Throttled {
            instrument,
            channel,
            retry_after_ms,
        } => {
            put_header(out, 24, t::THROTTLED);
            put_key(out, *instrument, *channel);
            out.extend_from_slice(&retry_after_ms.to_le_bytes());
            out.extend_from_slice(&[0; 4]);
        }
    }
}

/// A malformed control record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed market-data record")]
pub struct Malformed;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// Decodes a control record at the start of `buf`: `Ok(None)` while
/// incomplete, else the record and its length.
pub fn decode_ctl(buf: &[u8]) -> Result<Option<(Ctl, usize)>, Malformed> {
    use ctl_template as t;
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32_at(buf, 0) as usize;
    let template = u16::from_le_bytes([buf[4], buf[5]]);
    if buf[6] != fw::SCHEMA || buf[7] != fw::VERSION {
        return Err(Malformed);
    }
    let want = match template {
        t::AUTH => 8 + TOKEN_LEN,
        t::SUBSCRIBE | t::SNAPSHOT | t::ERROR => 16,
        t::RETRANSMIT => 32,
        t::HEARTBEAT | t::THROTTLED => 24,
        _ => return Err(Malformed),
    };
    if len != want {
        return Err(Malformed);
    }
    if buf.len() < len {
        return Ok(None);
    }
    let b = &buf[..len];
    let key = || -> Result<(u32, Channel), Malformed> {
        if b[13..16] != [0; 3] {
            return Err(Malformed);
        }
        Ok((u32_at(b, 8), Channel::from_code(b[12]).ok_or(Malformed)?))
    };
    let c = match template {
        t::AUTH => {
            let raw = &b[8..];
            let n = raw.iter().position(|&x| x == 0).unwrap_or(TOKEN_LEN);
            if raw[n..].iter().any(|&x| x != 0) {
                return Err(Malformed);
            }
            Ctl::Auth(
                std::str::from_utf8(&raw[..n])
                    .map_err(|_| Malformed)?
                    .to_string(),
            )
        }
        t::SUBSCRIBE => {
            let (instrument, channel) = key()?;
            Ctl::Subscribe {
                instrument,
                channel,
            }
        }
        t::SNAPSHOT => {
            let (instrument, channel) = key()?;
            Ctl::Snapshot {
                instrument,
                channel,
            }
        }
        t::RETRANSMIT => {
            let (instrument, channel) = key()?;
            let (from, to) = (u64_at(b, 16), u64_at(b, 24));
            if from == 0 || to < from {
                return Err(Malformed);
            }
            Ctl::Retransmit {
                instrument,
                channel,
                from,
                to,
            }
        }
        t::HEARTBEAT => {
            let (instrument, channel) = key()?;
            Ctl::Heartbeat {
                instrument,
                channel,
                last: u64_at(b, 16),
            }
        }
        t::THROTTLED => {
            let (instrument, channel) = key()?;
            if b[20..24] != [0; 4] {
                return Err(Malformed);
            }
            Ctl::Throttled {
                instrument,
                channel,
                retry_after_ms: u32_at(b, 16),
            }
        }
        _ => {
            if b[12..16] != [0; 4] {
                return Err(Malformed);
            }
            Ctl::Error(u32_at(b, 8))
        }
    };
    Ok(Some((c, len)))
}

/// What a market-data client receives.
#[derive(Clone, Debug, PartialEq)]
pub enum MdItem {
    /// An incremental (or retransmitted / conflated) message.
    Message(Message),
    /// A snapshot.
    Snapshot(Snapshot),
    /// A heartbeat.
    Heartbeat {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// Last sequence queued.
        last: u64,
    },
    /// An error; the server closes next.
    Error(u32),
    /// A retransmit / snapshot request was over the request budget and was
    /// not served; ask again after `retry_after_ms`.
    Throttled {
        /// Instrument.
        instrument: u32,
        /// Channel.
        channel: Channel,
        /// When to ask again.
        retry_after_ms: u32,
    },
}

/// Size of one snapshot entry of `channel` (0: entries of no size).
fn entry_size(channel: u8) -> usize {
    match Channel::from_code(channel) {
        Some(Channel::L2) => core::mem::size_of::<fw::L2Record>(),
        Some(Channel::L3) => core::mem::size_of::<fw::L3Record>(),
        Some(Channel::L1) => core::mem::size_of::<fw::L1Record>(),
        _ => 0,
    }
}

/// Why bytes from the server are not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadItem(pub String);

/// Decodes the item at the start of `b`: `Ok(None)` while incomplete, else
/// the item and its length.
pub fn decode_item(b: &[u8]) -> Result<Option<(MdItem, usize)>, BadItem> {
    if b.len() < 8 {
        return Ok(None);
    }
    let len = u32_at(b, 0) as usize;
    let template = u16::from_le_bytes([b[4], b[5]]);
    if !(8..=4096).contains(&len) {
        return Err(BadItem(format!("record length {len}")));
    }
    if b.len() < len {
        return Ok(None);
    }
    let perr = |e: fw::WireError| BadItem(format!("{e:?}"));
    if template == fw::template::SNAPSHOT_START {
        let start = core::mem::size_of::<fw::SnapshotRecord>();
        if len != start {
            return Err(BadItem(format!("snapshot header length {len}")));
        }
        let entries = u32_at(b, 40) as usize;
        let need = 2 * start + entries.saturating_mul(entry_size(b[36]));
        if b.len() < need {
            return Ok(None);
        }
        let (s, n) = fw::decode_snapshot(b).map_err(perr)?;
        return Ok(Some((MdItem::Snapshot(s), n)));
    }
    if template >= ctl_template::AUTH {
        let (c, n) = decode_ctl(b)
            .map_err(|e| BadItem(e.to_string()))?
            .ok_or_else(|| BadItem("short".into()))?;
        let item = match c {
            Ctl::Heartbeat {
                instrument,
                channel,
                last,
            } => MdItem::Heartbeat {
                instrument,
                channel,
                last,
            },
            Ctl::Error(code) => MdItem::Error(code),
            Ctl::Throttled {
                instrument,
                channel,
                retry_after_ms,
            } => MdItem::Throttled {
                instrument,
                channel,
                retry_after_ms,
            },
            _ => return Err(BadItem("unexpected control record".into())),
        };
        return Ok(Some((item, n)));
    }
    let (m, n) = fw::decode(b).map_err(perr)?;
    Ok(Some((MdItem::Message(m), n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_records_round_trip_and_reject_garbage() {
        let all = [
            Ctl::Auth("tok".into()),
            Ctl::Subscribe {
                instrument: 7,
                channel: Channel::L3,
            },
            Ctl::Retransmit {
                instrument: 7,
                channel: Channel::L2,
                from: 3,
                to: 9,
            },
            Ctl::Snapshot {
                instrument: 1,
                channel: Channel::L1,
            },
            Ctl::Heartbeat {
                instrument: 1,
                channel: Channel::Trades,
                last: 42,
            },
            Ctl::Error(md_close::PROTOCOL),
            Ctl::Throttled {
                instrument: 2,
                channel: Channel::L2,
                retry_after_ms: 50,
            },
        ];
        let mut b = Vec::new();
        for c in &all {
            encode_ctl(c, &mut b);
        }
        let mut at = 0;
        for c in &all {
            assert_eq!(decode_ctl(&b[at..at + 7]), Ok(None));
            let (d, n) = decode_ctl(&b[at..]).unwrap().unwrap();
            assert_eq!(&d, c);
            at += n;
        }
        assert_eq!(at, b.len());
        // Every single-byte corruption of a subscribe decodes or is refused, never panics.
        let mut s = Vec::new();
        encode_ctl(&all[2], &mut s);
        for i in 0..s.len() {
            for v in [0u8, 1, 0x7F, 0xFF] {
                let mut x = s.clone();
                x[i] = v;
                let _ = decode_ctl(&x);
            }
        }
        // A backwards range is refused.
        let mut r = Vec::new();
        encode_ctl(
            &Ctl::Retransmit {
                instrument: 1,
                channel: Channel::L3,
                from: 9,
                to: 3,
            },
            &mut r,
        );
        assert_eq!(decode_ctl(&r), Err(Malformed));
    }
}
