//! The journal subcommands as library functions, for `main.rs` to wire:
//! `bourse journal verify DIR`, `bourse journal dump DIR [--from SEQ] [--to
//! SEQ]`, `bourse replay DIR`.
//!
//! Invariants: none of these writes to the journal directory (a torn tail is
//! reported, not repaired; recovery at start-up repairs it); every block is
//! verified and every record decoded; any damage is an error naming the
//! segment file, the offset and the failed check, never skipped.

use crate::dump::ScriptDumper;
use crate::journal::{self, FsStorage, JournalError, ScanReport};
use crate::record::decode;
use engine::{Engine, EngineConfig};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Errors of the journal subcommands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The journal is damaged or unreadable.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// Replay needs the journal to start at seq 1.
    #[error("journal in {dir} starts at seq {first}; a replay from scratch needs seq 1")]
    NotFromStart {
        /// The directory.
        dir: String,
        /// Its first seq.
        first: u64,
    },
}

fn decode_all(
    records: &[crate::record::InputRecord],
    mut f: impl FnMut(engine::Input),
) -> Result<(), journal::BlockFault> {
    for (i, r) in records.iter().enumerate() {
        let input = decode(r).map_err(|error| journal::BlockFault::Record {
            index: i,
            seq: r.seq(),
            error,
        })?;
        f(input);
    }
    Ok(())
}

fn print_summary(rep: &ScanReport, out: &mut impl Write) -> std::io::Result<()> {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    writeln!(out, "segments: {}", rep.segments)?;
    writeln!(out, "blocks: {}", rep.blocks)?;
    writeln!(out, "records: {}", rep.records)?;
    writeln!(out, "first seq: {}", opt(rep.first_seq))?;
    writeln!(out, "last seq: {}", opt(rep.last_seq))?;
    match &rep.tail {
        Some(t) => writeln!(out, "torn tail: {t} (recovery truncates it)")?,
        None => writeln!(out, "torn tail: none")?,
    }
    for p in &rep.trailing {
        writeln!(
            out,
            "segment without valid blocks after the end: {} (recovery removes it)",
            p.display()
        )?;
    }
    Ok(())
}

/// `bourse journal verify DIR`: checks every block and record; prints
/// counts, the last seq and any torn tail. `Err` names the damage.
pub fn run_journal_verify(dir: &Path, out: &mut impl Write) -> Result<ScanReport, CliError> {
    let rep = journal::scan(&FsStorage, dir, |_, _, _, records| {
        decode_all(records, |_| ())
    })?;
    print_summary(&rep, out)?;
    writeln!(out, "ok")?;
    Ok(rep)
}

/// `bourse journal dump DIR [--from SEQ] [--to SEQ]`: the inputs with seq
/// in `from..=to` as `bourse script` JSON lines. The whole journal is still
/// verified.
pub fn run_journal_dump(
    dir: &Path,
    from: Option<u64>,
    to: Option<u64>,
    out: &mut impl Write,
) -> Result<ScanReport, CliError> {
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    let mut dumper = ScriptDumper::new();
    let mut werr: Option<std::io::Error> = None;
    let rep = journal::scan(&FsStorage, dir, |_, _, _, records| {
        decode_all(records, |input| {
            if werr.is_some() || input.seq.0 < from || input.seq.0 > to {
                return;
            }
            for line in dumper.lines(&input) {
                if let Err(e) = writeln!(out, "{line}") {
                    werr = Some(e);
                    return;
                }
            }
        })
    })?;
    if let Some(e) = werr {
        return Err(e.into());
    }
    Ok(rep)
}

/// What `run_replay` measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayReport {
    /// Commands applied.
    pub commands: u64,
    /// Last seq applied.
    pub last_seq: u64,
    /// Engine state hash at the end.
    pub state_hash: u128,
    /// Wall time of read + verify + decode + apply.
    pub seconds: f64,
}

/// Replays the journal in `dir` into a fresh engine (without writing to the
/// directory) and returns the state and the time taken.
pub fn replay_dir(dir: &Path, cfg: EngineConfig) -> Result<(Engine, ReplayReport), CliError> {
    let mut engine = Engine::new(cfg);
    let mut events = engine.new_events();
    let t0 = Instant::now();
    let mut n = 0u64;
    let rep = journal::scan(&FsStorage, dir, |_, _, _, records| {
        decode_all(records, |input| {
            engine.apply(&input, &mut events);
            n += 1;
        })
    })?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(first) = rep.first_seq {
        if first != 1 {
            return Err(CliError::NotFromStart {
                dir: dir.display().to_string(),
                first,
            });
        }
    }
    let report = ReplayReport {
        commands: n,
        last_seq: rep.last_seq.unwrap_or(0),
        state_hash: engine.state_hash(),
        seconds,
    };
    Ok((engine, report))
}

/// `bourse replay DIR`: rebuilds the state from the journal and prints the
/// state hash and the replay throughput.
pub fn run_replay(
    dir: &Path,
    cfg: EngineConfig,
    out: &mut impl Write,
) -> Result<ReplayReport, CliError> {
    let (_, r) = replay_dir(dir, cfg)?;
    writeln!(out, "commands: {}", r.commands)?;
    writeln!(out, "last seq: {}", r.last_seq)?;
    writeln!(out, "state hash: {:032x}", r.state_hash)?;
    writeln!(
        out,
        "replay: {:.3} s, {:.2} M commands/s",
        r.seconds,
        r.commands as f64 / r.seconds.max(1e-9) / 1e6
    )?;
    Ok(r)
}
