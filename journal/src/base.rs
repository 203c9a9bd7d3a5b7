//! `journal.base`: the chain anchor of a journal whose front was retained
//! away (archived or deleted, see `retention`). It says where the journal in
//! the directory starts — the seq of its first record, and the header
//! checksum its first block's `prev_checksum` must equal (that of the last
//! block retained away) — so that reading tells "archived on purpose" from
//! "lost segments at the front": a journal without this file must start at
//! seq 1 with a zero `prev_checksum`, one with it must start exactly where it
//! says, and anything else is `JournalError::LostFront`.
//!
//! Format (text, so an operator can read it): four lines,
//! `bourse-journal-base 1`, `first_seq N`, `prev_checksum <32 hex>`,
//! `checksum <32 hex>`, the last being xxh3-128 of the bytes before it.
//! Anything else is `JournalError::BadBase`, never a guess.
//!
//! Invariants: it is written through a temporary file that is synced,
//! renamed over it and made durable by a directory sync, *before* any
//! segment before its seq leaves the directory, so a crash leaves either
//! the old anchor and every segment, or the new anchor and possibly some
//! segments before it (which readers skip and the next retention pass
//! finishes); it only ever moves forward, and only to a segment boundary.

use super::reader::read_all;
use super::{io_err, JournalError, Storage, StorageFile};
use std::fmt;
use std::path::Path;
use xxhash_rust::xxh3::xxh3_128;

/// The file's name in a partition directory.
pub const BASE_NAME: &str = "journal.base";

/// The temporary name it is written under (removed when a crash left it).
pub const BASE_TMP_NAME: &str = "journal.base.tmp";

const MAGIC_LINE: &str = "bourse-journal-base 1";

/// Where a journal starts once its front was retained away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Base {
    /// Seq of the first record kept in the directory (a segment's name).
    pub first_seq: u64,
    /// Header checksum of the last block before it (the first kept block's
    /// `prev_checksum`).
    pub prev_checksum: u128,
}

impl Base {
    /// Seq of the last record retained away (`first_seq - 1`).
    pub fn retained_through(&self) -> u64 {
        self.first_seq.saturating_sub(1)
    }
}

impl fmt::Display for Base {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal starts at seq {} (prev checksum {:032x}); seqs 1..={} were retained away",
            self.first_seq,
            self.prev_checksum,
            self.retained_through()
        )
    }
}

fn body(b: &Base) -> String {
    format!(
        "{MAGIC_LINE}\nfirst_seq {}\nprev_checksum {:032x}\n",
        b.first_seq, b.prev_checksum
    )
}

/// The file's bytes for `b`.
pub fn encode_base(b: &Base) -> String {
    let body = body(b);
    format!("{body}checksum {:032x}\n", xxh3_128(body.as_bytes()))
}

/// What is wrong with a `journal.base` file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseError {
    /// The bytes are not UTF-8 text.
    #[error("not UTF-8 text")]
    NotText,
    /// Not four lines.
    #[error("expected 4 lines, found {0}")]
    Lines(usize),
    /// The last line has no newline (a torn write).
    #[error("the last line has no newline (a torn write)")]
    Unterminated,
    /// The first line is not the format's magic line.
    #[error("first line {0:?}, expected {MAGIC_LINE:?}")]
    Magic(String),
    /// Line `line` does not start with `name `.
    #[error("line {line} is not `{name} …`")]
    Field {
        /// 1-based line number.
        line: usize,
        /// The field name expected there.
        name: &'static str,
    },
    /// A field's value does not parse.
    #[error("{name}: {value:?} is not {expected}")]
    Value {
        /// The field.
        name: &'static str,
        /// Its text.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The checksum line does not match the lines before it.
    #[error("checksum mismatch")]
    Checksum,
    /// `first_seq` below 2 (a base starts after at least one record).
    #[error("first_seq {0}: a base starts after at least one record")]
    FirstSeq(u64),
}

/// Parses the file's bytes; `Err` says what is wrong.
pub fn decode_base(data: &[u8]) -> Result<Base, BaseError> {
    let text = std::str::from_utf8(data).map_err(|_| BaseError::NotText)?;
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != 4 {
        return Err(BaseError::Lines(lines.len()));
    }
    if !text.ends_with('\n') {
        return Err(BaseError::Unterminated);
    }
    if lines[0] != MAGIC_LINE {
        return Err(BaseError::Magic(lines[0].to_string()));
    }
    let field = |line: usize, name: &'static str| {
        lines[line - 1]
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(BaseError::Field { line, name })
    };
    let bad = |name, value: &str, expected| BaseError::Value {
        name,
        value: value.to_string(),
        expected,
    };
    let first = field(2, "first_seq")?;
    let first_seq: u64 = first
        .parse()
        .map_err(|_| bad("first_seq", first, "a decimal u64"))?;
    let hex = |name: &'static str, line: usize| {
        let s = field(line, name)?;
        match s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
            true => u128::from_str_radix(s, 16).map_err(|_| bad(name, s, "32 hex digits")),
            false => Err(bad(name, s, "32 hex digits")),
        }
    };
    let prev_checksum = hex("prev_checksum", 3)?;
    let checksum = hex("checksum", 4)?;
    let b = Base {
        first_seq,
        prev_checksum,
    };
    if xxh3_128(body(&b).as_bytes()) != checksum {
        return Err(BaseError::Checksum);
    }
    if first_seq < 2 {
        return Err(BaseError::FirstSeq(first_seq));
    }
    Ok(b)
}

/// The anchor in `dir`, `None` when there is no such file (nothing was ever
/// retained away).
pub fn read_base<S: Storage>(storage: &S, dir: &Path) -> Result<Option<Base>, JournalError> {
    let names = storage.list(dir).map_err(io_err("list", dir))?;
    if !names.iter().any(|n| n == BASE_NAME) {
        return Ok(None);
    }
    let path = dir.join(BASE_NAME);
    let data = read_all(storage, &path)?;
    decode_base(&data)
        .map(Some)
        .map_err(|what| JournalError::BadBase { path, what })
}

/// Makes `journal.base` durably say `b` (temporary file, sync, rename,
/// directory sync).
pub fn write_base<S: Storage>(storage: &S, dir: &Path, b: &Base) -> Result<(), JournalError> {
    let path = dir.join(BASE_NAME);
    let tmp = dir.join(BASE_TMP_NAME);
    let names = storage.list(dir).map_err(io_err("list", dir))?;
    if names.iter().any(|n| n == BASE_TMP_NAME) {
        storage.remove(&tmp).map_err(io_err("remove", &tmp))?;
    }
    let mut f = storage.create(&tmp).map_err(io_err("create", &tmp))?;
    f.write_at(encode_base(b).as_bytes(), 0)
        .map_err(io_err("write", &tmp))?;
    f.sync_data().map_err(io_err("fdatasync", &tmp))?;
    storage
        .rename(&tmp, &path)
        .map_err(io_err("rename", &tmp))?;
    storage.sync_dir(dir).map_err(io_err("fsync dir", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_any_change() {
        let b = Base {
            first_seq: 1001,
            prev_checksum: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        };
        let text = encode_base(&b);
        assert_eq!(decode_base(text.as_bytes()), Ok(b));
        assert!(text.contains("first_seq 1001\n"), "{text}");
        let tampered = text.replace("first_seq 1001", "first_seq 1002");
        assert_eq!(decode_base(tampered.as_bytes()), Err(BaseError::Checksum));
        let bad_hex = text.replace("prev_checksum 0123", "prev_checksum x123");
        assert!(matches!(
            decode_base(bad_hex.as_bytes()),
            Err(BaseError::Value {
                name: "prev_checksum",
                ..
            })
        ));
        assert_eq!(
            decode_base(&text.as_bytes()[..text.len() - 1]),
            Err(BaseError::Unterminated)
        );
        assert_eq!(decode_base(b""), Err(BaseError::Lines(0)));
        let one = encode_base(&Base {
            first_seq: 1,
            prev_checksum: 0,
        });
        assert_eq!(decode_base(one.as_bytes()), Err(BaseError::FirstSeq(1)));
    }
}
