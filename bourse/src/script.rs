//! `bourse script`: JSON Lines of commands in, JSON Lines of events out.
//!
//! The contract is `shared/spec/script.md`. This module has three parts: a
//! parser from one JSON line to an engine [`Command`] ([`parse_line`]), a
//! printer from one engine [`Event`] to one JSON line ([`write_event`]), and
//! the runner that feeds a fresh [`Engine`] line by line ([`run_script`]).
//!
//! Invariants:
//! - No input can panic this module: every field is checked, nothing parsed
//!   is unwrapped.
//! - A line that is not valid JSON, not a known command, has unknown fields,
//!   wrong JSON types, unknown enum values or fields that contradict the
//!   order type is a [`ScriptError`] naming its 1-based line number; every
//!   event of the lines before it has been written (and flushed) first.
//! - Values that are well-formed but wrong for the engine (price 0, an
//!   off-tick price, qty 0, a negative price or quantity) reach the engine,
//!   which answers with a reject event; rejects are never script errors.
//! - `seq` counts engine inputs from 1: one per non-blank line, except that
//!   a `lookup_transfers` line takes one per id and every history install
//!   the runner makes takes one (so a script without lookups that stays
//!   under `history_run_changes` transfer changes numbers its lines exactly);
//!   engine time starts at 0 and only a `time` line the engine accepted
//!   moves it.
//! - The runner keeps the transfer history in memory ([`MemHistory`]):
//!   after every input that brings the changes not yet cut to
//!   [`history_run_changes`], outside an open linked chain, it cuts a run
//!   and applies `install_history` as the next input (printing its
//!   `history_installed` event), so a script of any length never fills the
//!   ledger's hot store with records that could leave it. Same script, same
//!   install points: the output is deterministic.
//!
//! [`MemHistory`]: engine::history::MemHistory
//! - Consecutive `transfer` lines form one batch: the last one carries
//!   `batch_end`, which needs one line of lookahead.
//! - u128 ids and amounts are read exactly (not through `f64`) and printed as
//!   JSON numbers; the printer writes the JSON text itself, in the field order
//!   of the spec's examples.

use std::fmt::Write as _;
use std::io::{BufRead, Write};

use engine::*;
use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// A line the runner could not understand, or an I/O failure while running.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {kind}")]
pub struct ScriptError {
    /// 1-based line number in the input (blank lines count).
    pub line: usize,
    /// What is wrong with it.
    pub kind: ScriptErrorKind,
}

/// What stopped a script.
#[derive(Debug, thiserror::Error)]
pub enum ScriptErrorKind {
    /// The line is not a command the runner understands.
    #[error(transparent)]
    Line(#[from] LineError),
    /// The input could not be read.
    #[error("cannot read input: {0}")]
    Read(std::io::Error),
    /// The output could not be written.
    #[error("cannot write output: {0}")]
    Write(std::io::Error),
}

/// I/O errors compare by kind (they carry no equality of their own).
impl PartialEq for ScriptErrorKind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Line(a), Self::Line(b)) => a == b,
            (Self::Read(a), Self::Read(b)) | (Self::Write(a), Self::Write(b)) => {
                a.kind() == b.kind()
            }
            _ => false,
        }
    }
}

impl Eq for ScriptErrorKind {}

/// Why one script line is refused (the message names the field and the
/// command; the runner adds the line number).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    /// Not JSON at all.
    #[error("not valid JSON: {message} (column {column})")]
    Json {
        /// serde_json's message, without its position.
        message: String,
        /// 1-based column.
        column: usize,
    },
    /// JSON, but not an object.
    #[error("expected a JSON object, got {got}")]
    NotObject {
        /// What it is instead.
        got: &'static str,
    },
    /// A field given twice.
    #[error("duplicate field {}{}", quote(field), cmd.as_deref().map(|c| format!(" in {c}")).unwrap_or_default())]
    DuplicateField {
        /// The field.
        field: String,
        /// The command, when the line names one as a string.
        cmd: Option<String>,
    },
    /// No `cmd` field.
    #[error("missing field \"cmd\"")]
    MissingCmd,
    /// `cmd` is not a string.
    #[error("\"cmd\" must be a string, got {got}")]
    CmdNotString {
        /// What it is instead.
        got: &'static str,
    },
    /// A `cmd` the runner does not know.
    #[error("unknown command {}", quote(cmd))]
    UnknownCommand {
        /// The command.
        cmd: String,
    },
    /// A field the command does not take.
    #[error("unknown field {} in {cmd}", quote(field))]
    UnknownField {
        /// The field.
        field: String,
        /// The command.
        cmd: String,
    },
    /// A field the command needs is absent (or null).
    #[error("missing field {} in {cmd}", quote(field))]
    Missing {
        /// The field.
        field: String,
        /// The command.
        cmd: String,
    },
    /// A field of the wrong type or out of range.
    #[error("{} in {cmd} must be {want}, got {got}", quote(field))]
    Bad {
        /// The field.
        field: String,
        /// The command.
        cmd: String,
        /// What it must be.
        want: String,
        /// What it is.
        got: String,
    },
    /// A name (side, type, tif, …) not among the command's choices.
    #[error("unknown {field} {} in {cmd} (expected one of {one_of})", quote(value))]
    UnknownName {
        /// The field.
        field: String,
        /// The name given.
        value: String,
        /// The command.
        cmd: String,
        /// The choices, quoted and comma-separated.
        one_of: String,
    },
    /// A flag name the command does not know.
    #[error("unknown flag {} in {cmd}", quote(flag))]
    UnknownFlag {
        /// The flag.
        flag: String,
        /// The command.
        cmd: String,
    },
    /// An order field its type or time in force does not take.
    #[error("{field} on {order} order")]
    NotAllowed {
        /// The field.
        field: &'static str,
        /// The order's kind with its article ("a market").
        order: String,
    },
    /// An order field its type or time in force needs.
    #[error("missing \"{field}\" on {order} order")]
    Required {
        /// The field.
        field: &'static str,
        /// The order's kind with its article ("a limit").
        order: String,
    },
    /// `expire_at` on an order that is not `gtd`.
    #[error("expire_at on a {tif} order (only tif gtd expires)")]
    ExpiryWithoutGtd {
        /// The order's time in force.
        tif: &'static str,
    },
    /// `lookup_transfers` with no id.
    #[error("\"ids\" in lookup_transfers must name at least one transfer")]
    NoLookupIds,
}

/// Runs a script against a fresh engine (`EngineConfig::default()`), writing
/// one JSON line per event to `output`. Events of the lines before a bad
/// line are written and flushed before the error is returned.
pub fn run_script(input: impl BufRead, output: impl Write) -> Result<(), ScriptError> {
    run_script_with(EngineConfig::default(), input, output)
}

/// [`run_script`] with explicit engine capacities.
pub fn run_script_with(
    config: EngineConfig,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<(), ScriptError> {
    let mut runner = Runner::new(config);
    let result = runner.run(input, &mut output);
    let flushed = output.flush().map_err(|e| ScriptError {
        line: runner.last_line,
        kind: ScriptErrorKind::Write(e),
    });
    result.and(flushed)
}

/// A parsed line waiting to be applied (a transfer needs to see the next line
/// before it knows whether it ends its batch). Seqs are given when inputs
/// are applied: a line may take several (lookups) and the runner's history
/// installs take one each.
struct Pending {
    line: usize,
    line_kind: Line,
}

/// How many transfer changes the runner lets accumulate before it cuts a
/// history run and installs it: an eighth of the hot store, so installed
/// records can always leave memory long before it fills.
pub fn history_run_changes(config: &EngineConfig) -> usize {
    (config.transfers_max as usize / 8).max(1)
}

/// What one script line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// An engine command.
    Command(Command),
    /// `lookup_transfers`: one `LookupTransfer` input per id, in order.
    Lookups {
        /// The ids (at least one).
        ids: Vec<TransferId>,
        /// Who asks.
        actor: Actor,
    },
    /// `{"cmd":"time","now":N}` with N < 0. Engine time is unsigned and
    /// starts at 0, so such a time always goes back: the runner reports it
    /// `invalid_time` itself (as a negative price is `invalid_price`), after
    /// applying a `time` at the current time, which ends a batch and an open
    /// chain exactly as a rejected `time` does and changes nothing else.
    TimeBeforeZero(i64),
}

struct Runner {
    engine: Engine,
    events: Events,
    now: u64,
    seq: u64,
    last_line: usize,
    text: String,
    /// Cuts the engine's transfer changes into runs of the attached
    /// in-memory history.
    cutter: engine::history::HistoryCutter,
    /// Changes per run (`history_run_changes`).
    run_changes: usize,
    /// A linked chain is open (its members wait for the closing transfer):
    /// no install may come between them.
    chain_open: bool,
    /// Every input applied, for the unit tests.
    #[cfg(test)]
    applied: Vec<Input>,
}

impl Runner {
    fn new(config: EngineConfig) -> Self {
        let run_changes = history_run_changes(&config);
        let mut engine = Engine::new(config);
        let history = engine::history::MemHistory::new();
        engine.attach_history(Box::new(history.clone()));
        let events = engine.new_events();
        Runner {
            engine,
            events,
            now: 0,
            seq: 0,
            last_line: 0,
            text: String::with_capacity(256),
            cutter: engine::history::HistoryCutter::new(history, 0),
            run_changes,
            chain_open: false,
            #[cfg(test)]
            applied: Vec::new(),
        }
    }

    fn run(&mut self, input: impl BufRead, out: &mut impl Write) -> Result<(), ScriptError> {
        let mut pending: Option<Pending> = None;
        for (index, line) in input.lines().enumerate() {
            let line_no = index + 1;
            self.last_line = line_no;
            let text = match line {
                Ok(t) => t,
                Err(e) => {
                    if let Some(p) = pending.take() {
                        self.apply(p, true, out)?;
                    }
                    return Err(ScriptError {
                        line: line_no,
                        kind: ScriptErrorKind::Read(e),
                    });
                }
            };
            if text.trim().is_empty() {
                continue;
            }
            let parsed = parse_line(&text);
            let next_is_transfer = matches!(parsed, Ok(Line::Command(Command::Transfer { .. })));
            if let Some(p) = pending.take() {
                self.apply(p, !next_is_transfer, out)?;
            }
            let line_kind = parsed.map_err(|e| ScriptError {
                line: line_no,
                kind: e.into(),
            })?;
            pending = Some(Pending {
                line: line_no,
                line_kind,
            });
        }
        if let Some(p) = pending.take() {
            self.apply(p, true, out)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        p: Pending,
        batch_end: bool,
        out: &mut impl Write,
    ) -> Result<(), ScriptError> {
        let command = match p.line_kind {
            Line::Command(Command::Transfer {
                transfer, actor, ..
            }) => Command::Transfer {
                transfer,
                batch_end,
                actor,
            },
            Line::Command(c) => c,
            Line::TimeBeforeZero(_) => Command::Time {
                now: Timestamp(self.now),
            },
            Line::Lookups { ids, actor } => {
                for id in ids {
                    self.step(Command::LookupTransfer { id, actor }, p.line, out)?;
                }
                return Ok(());
            }
        };
        let seq = self.step(command, p.line, out)?;
        if let Line::TimeBeforeZero(now) = p.line_kind {
            let text = format!(
                "{{\"seq\":{},\"event\":\"rejected\",\"now\":{now},\"reason\":\"{}\"}}\n",
                seq.0,
                RejectReason::InvalidTime.name()
            );
            out.write_all(text.as_bytes()).map_err(|e| ScriptError {
                line: p.line,
                kind: ScriptErrorKind::Write(e),
            })?;
        }
        Ok(())
    }

    /// Applies one input (the next seq, the current time), writes its
    /// events, hands its transfer changes to the history cutter and, every
    /// `run_changes` changes outside a linked chain, installs a run.
    fn step(
        &mut self,
        command: Command,
        line: usize,
        out: &mut impl Write,
    ) -> Result<Seq, ScriptError> {
        let seq = self.apply_input(command, line, out)?;
        self.cutter.feed(self.events.changes());
        self.chain_open = match command {
            Command::Transfer {
                transfer,
                batch_end,
                ..
            } => transfer.flags.has(TransferFlags::LINKED) && !batch_end,
            _ => false,
        };
        if self.cutter.pending() >= self.run_changes && !self.chain_open {
            // The run covers every change up to this input; the install is
            // an input of its own after it, journaled like any other.
            let (run, checksum) = self.cutter.cut(seq);
            let install = Command::InstallHistory {
                run,
                through_seq: seq,
                checksum,
            };
            self.apply_input(install, line, out)?;
            self.cutter.feed(self.events.changes());
        }
        Ok(seq)
    }

    fn apply_input(
        &mut self,
        command: Command,
        line: usize,
        out: &mut impl Write,
    ) -> Result<Seq, ScriptError> {
        self.seq += 1;
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(self.now),
            command,
        };
        self.engine.apply(&input, &mut self.events);
        #[cfg(test)]
        self.applied.push(input);
        if let Command::Time { now } = command {
            let rejected = self.events.iter().any(|e| {
                matches!(
                    e,
                    Event::Rejected {
                        target: RejectTarget::Time(_),
                        ..
                    }
                )
            });
            if !rejected {
                self.now = self.now.max(now.0);
            }
        }
        for event in &self.events {
            self.text.clear();
            write_event(&mut self.text, input.seq, event, &self.events);
            self.text.push('\n');
            out.write_all(self.text.as_bytes())
                .map_err(|e| ScriptError {
                    line,
                    kind: ScriptErrorKind::Write(e),
                })?;
        }
        Ok(input.seq)
    }
}

// ----- parsing ----------------------------------------------------------

/// The fields each command accepts (besides `cmd`).
fn allowed_fields(cmd: &str) -> Option<&'static [&'static str]> {
    Some(match cmd {
        "instrument" => &[
            "id",
            "symbol",
            "base",
            "quote",
            "tick",
            "lot_size",
            "qty_min",
            "qty_max",
            "reference_price",
            "band_bps",
            "circuit_bps",
            "circuit_window_ns",
            "maker_fee_bps",
            "taker_fee_bps",
            "fee_account",
            "settle",
            "open_orders_max",
            "notional_max",
        ],
        "open_account" => &["id", "owner", "asset", "flags"],
        "transfer" => &[
            "id",
            "debit_account",
            "credit_account",
            "amount",
            "code",
            "flags",
            "pending_id",
            "timeout_ns",
            // Beyond script.md: who acts (ledger authorization); absent = admin.
            "actor",
        ],
        "order" => &[
            "owner",
            "instrument",
            "client_order_id",
            "side",
            "type",
            "price",
            "qty",
            "tif",
            "post_only",
            "stp",
            "display_qty",
            "trigger_price",
            "expire_at",
        ],
        // Beyond script.md: `client_order_id` (instead of `order_id`) and
        // `requeue` (README, "Order ids for embedders").
        "cancel" => &["owner", "order_id", "client_order_id"],
        "replace" => &["owner", "order_id", "price", "qty", "requeue"],
        "mass_cancel" => &["owner", "instrument", "side"],
        "halt" | "resume" => &["instrument"],
        "time" => &["now"],
        "query_book" => &["instrument", "depth"],
        "query_balance" => &["account", "actor"],
        // Beyond script.md: so that `bourse journal dump` output replays.
        "query_open_orders" => &["owner", "instrument"],
        // Beyond script.md: transfer queries (README, "Ledger").
        "lookup_transfers" => &["ids", "actor"],
        "get_account_transfers" => &["account", "by", "lo", "hi", "limit", "order", "actor"],
        // Beyond script.md: cancel-on-disconnect arms (ARCHITECTURE.md,
        // "Cancel-on-disconnect"), so that journal dumps replay.
        "cod_arm" => &["session", "owner"],
        "cod_disarm" => &["session"],
        "sessions_lost" => &[],
        _ => return None,
    })
}

/// A `cancel` names its order by `order_id` or, beyond script.md, by
/// `client_order_id` (the owner's live order entered with it); not both.
fn parse_cancel(f: &Fields<'_>) -> Result<Command, LineError> {
    let owner = OwnerId(f.req_u64("owner")?);
    match (f.get("order_id"), f.get("client_order_id")) {
        (None, Some(_)) => Ok(Command::CancelByClientId {
            owner,
            client_order_id: ClientOrderId(f.req_u64("client_order_id")?),
        }),
        (Some(_), Some(c)) => Err(f.bad("client_order_id", "absent when order_id is given", c)),
        _ => Ok(Command::Cancel {
            owner,
            order_id: OrderId(f.req_u64("order_id")?),
        }),
    }
}

/// The u128 fields of each command (read exactly from the text, see [`wide_fields`]).
fn wide_field_names(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "instrument" => &["fee_account"],
        "open_account" => &["id"],
        "transfer" => &[
            "id",
            "debit_account",
            "credit_account",
            "amount",
            "pending_id",
        ],
        "query_balance" | "get_account_transfers" => &["account"],
        "lookup_transfers" => &["ids"],
        _ => &[],
    }
}

/// The wide fields that are arrays of u128s (the others are single values).
const WIDE_LIST_FIELDS: &[&str] = &["ids"];

/// The range fields of `get_account_transfers`.
const RANGE_BYS: &[(&str, engine::history::RangeBy)] = &[
    ("ledger_seq", engine::history::RangeBy::LedgerSeq),
    ("time", engine::history::RangeBy::Time),
];
/// The orders of `get_account_transfers` (`true`: newest first).
const ORDERS: &[(&str, bool)] = &[("oldest", false), ("newest", true)];
/// `get_account_transfers` rows when `limit` is omitted.
pub const ACCOUNT_TRANSFERS_LIMIT_DEFAULT: u32 = 20;

/// Parses one non-blank script line. `Transfer` commands come back with
/// `batch_end: false`; the runner sets it. The error is the message without
/// the line number.
pub fn parse_line(text: &str) -> Result<Line, LineError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json's message ends with "at line 1 column N"; the script's
        // line is named by the caller, so keep only the column.
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let msg = full.strip_suffix(&suffix).unwrap_or(&full);
        LineError::Json {
            message: msg.to_string(),
            column: e.column(),
        }
    })?;
    let Value::Object(map) = value else {
        return Err(LineError::NotObject {
            got: type_name(&value),
        });
    };
    if let Some(key) = duplicate_key(text) {
        let cmd = match map.get("cmd") {
            Some(Value::String(c)) => Some(c.clone()),
            _ => None,
        };
        return Err(LineError::DuplicateField { field: key, cmd });
    }
    let cmd = match map.get("cmd") {
        None | Some(Value::Null) => return Err(LineError::MissingCmd),
        Some(Value::String(s)) => s.as_str(),
        Some(v) => return Err(LineError::CmdNotString { got: type_name(v) }),
    };
    let Some(allowed) = allowed_fields(cmd) else {
        return Err(LineError::UnknownCommand {
            cmd: cmd.to_string(),
        });
    };
    for key in map.keys() {
        if key != "cmd" && !allowed.contains(&key.as_str()) {
            return Err(LineError::UnknownField {
                field: key.clone(),
                cmd: cmd.to_string(),
            });
        }
    }
    let wide_names = wide_field_names(cmd);
    let wide = if wide_names.is_empty() {
        Vec::new()
    } else {
        wide_fields(text, wide_names).map_err(|BadWideField(key)| {
            let got = map.get(&key).map(describe).unwrap_or_default();
            let want = if WIDE_LIST_FIELDS.contains(&key.as_str()) {
                "an array of integers"
            } else {
                "an integer"
            };
            LineError::Bad {
                field: key,
                cmd: cmd.to_string(),
                want: format!("{want} from 0 to {}", u128::MAX),
                got,
            }
        })?
    };
    let f = Fields {
        cmd,
        map: &map,
        wide,
    };
    if cmd == "time" {
        if let Some(now) = f.get("now").and_then(Value::as_i64).filter(|n| *n < 0) {
            return Ok(Line::TimeBeforeZero(now));
        }
    }
    if cmd == "lookup_transfers" {
        let ids = f.req_u128_list("ids")?;
        if ids.is_empty() {
            return Err(LineError::NoLookupIds);
        }
        return Ok(Line::Lookups {
            ids: ids.into_iter().map(TransferId).collect(),
            actor: f.actor()?,
        });
    }
    let command = match cmd {
        "instrument" => parse_instrument(&f),
        "open_account" => parse_open_account(&f),
        "transfer" => parse_transfer(&f),
        "order" => parse_order(&f),
        "cancel" => parse_cancel(&f),
        "replace" => Ok(Command::Replace {
            owner: OwnerId(f.req_u64("owner")?),
            order_id: OrderId(f.req_u64("order_id")?),
            price: f.opt_clamped("price")?.map(Price),
            qty: f.opt_clamped("qty")?.map(Qty),
            requeue: f.opt_bool("requeue")?.unwrap_or(false),
        }),
        "mass_cancel" => Ok(Command::MassCancel {
            owner: OwnerId(f.req_u64("owner")?),
            instrument: f.opt_u32("instrument")?.map(InstrumentId),
            side: f.opt_enum("side", SIDES)?,
        }),
        "halt" => Ok(Command::Halt {
            instrument: InstrumentId(f.req_u32("instrument")?),
        }),
        "resume" => Ok(Command::Resume {
            instrument: InstrumentId(f.req_u32("instrument")?),
        }),
        "time" => Ok(Command::Time {
            now: Timestamp(f.req_u64("now")?),
        }),
        "query_book" => Ok(Command::QueryBook {
            instrument: InstrumentId(f.req_u32("instrument")?),
            depth: f.opt_u32("depth")?,
        }),
        "query_balance" => Ok(Command::QueryBalance {
            account: AccountId(f.req_u128("account")?),
            actor: f.actor()?,
        }),
        "query_open_orders" => Ok(Command::QueryOpenOrders {
            owner: OwnerId(f.req_u64("owner")?),
            instrument: f.opt_u32("instrument")?.map(InstrumentId),
        }),
        "cod_arm" | "cod_disarm" | "sessions_lost" => parse_cod(&f),
        // Limit 0, a limit over the maximum or lo > hi reach the engine,
        // which answers `invalid_filter`.
        "get_account_transfers" => Ok(Command::GetAccountTransfers {
            filter: engine::history::AccountFilter {
                account: AccountId(f.req_u128("account")?),
                by: f
                    .opt_enum("by", RANGE_BYS)?
                    .unwrap_or(engine::history::RangeBy::LedgerSeq),
                lo: f.opt_u64("lo")?.unwrap_or(0),
                hi: f.opt_u64("hi")?.unwrap_or(u64::MAX),
                limit: f
                    .opt_u32("limit")?
                    .unwrap_or(ACCOUNT_TRANSFERS_LIMIT_DEFAULT),
                newest_first: f.opt_enum("order", ORDERS)?.unwrap_or(false),
            },
            actor: f.actor()?,
        }),
        _ => Err(LineError::UnknownCommand {
            cmd: cmd.to_string(),
        }),
    }?;
    Ok(Line::Command(command))
}

/// `cod_arm`, `cod_disarm`, `sessions_lost` (beyond script.md: what
/// journal dumps hold).
fn parse_cod(f: &Fields<'_>) -> Result<Command, LineError> {
    Ok(match f.cmd {
        "cod_arm" => Command::CodArm {
            session: f.req_u64("session")?,
            owner: OwnerId(f.req_u64("owner")?),
        },
        "cod_disarm" => Command::CodDisarm {
            session: f.req_u64("session")?,
        },
        _ => Command::SessionsLost,
    })
}

fn parse_instrument(f: &Fields<'_>) -> Result<Command, LineError> {
    Ok(Command::AddInstrument(InstrumentSpec {
        id: InstrumentId(f.req_u32("id")?),
        symbol: {
            let s = f.req_str("symbol")?;
            Symbol::from_str_code(s).ok_or_else(|| LineError::Bad {
                field: "symbol".into(),
                cmd: f.cmd.to_string(),
                want: format!("1 to {} printable ASCII characters", Symbol::LEN),
                got: quote(s),
            })?
        },
        base: f.req_asset("base")?,
        quote: f.req_asset("quote")?,
        tick: f.req_u64("tick")?,
        lot_size: f.req_u64("lot_size")?,
        qty_min: f.req_u64("qty_min")?,
        qty_max: f.req_u64("qty_max")?,
        reference_price: Price(f.req_u64("reference_price")?),
        band_bps: f.opt_u32("band_bps")?,
        circuit_bps: f.opt_u32("circuit_bps")?,
        circuit_window_ns: f.opt_u64("circuit_window_ns")?.unwrap_or(0),
        maker_fee_bps: f.opt_u32("maker_fee_bps")?.unwrap_or(0),
        taker_fee_bps: f.opt_u32("taker_fee_bps")?.unwrap_or(0),
        fee_account: AccountId(f.opt_u128("fee_account")?.unwrap_or(0)),
        settle: f.opt_bool("settle")?.unwrap_or(true),
        open_orders_max: f.opt_u32("open_orders_max")?,
        notional_max: f.opt_u64("notional_max")?,
    }))
}

fn parse_open_account(f: &Fields<'_>) -> Result<Command, LineError> {
    let flags = match f.opt_flags("flags", ACCOUNT_FLAGS)? {
        Some(bits) => bits,
        None => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
    };
    Ok(Command::OpenAccount(AccountSpec {
        id: AccountId(f.req_u128("id")?),
        // An account without an owner (an asset's external account) omits it.
        owner: OwnerId(f.opt_u64("owner")?.unwrap_or(0)),
        asset: f.req_asset("asset")?,
        flags: AccountFlags(flags),
    }))
}

fn parse_transfer(f: &Fields<'_>) -> Result<Command, LineError> {
    let code = match f.opt_u64("code")? {
        None => 0,
        Some(c) => u16::try_from(c).map_err(|_| LineError::Bad {
            field: "code".into(),
            cmd: f.cmd.to_string(),
            want: format!("an integer from 0 to {}", u16::MAX),
            got: c.to_string(),
        })?,
    };
    Ok(Command::Transfer {
        transfer: TransferSpec {
            id: TransferId(f.req_u128("id")?),
            // Post and void take their accounts from the pending transfer, and
            // a post may omit its amount (0 = the full pending amount).
            debit_account: AccountId(f.opt_u128("debit_account")?.unwrap_or(0)),
            credit_account: AccountId(f.opt_u128("credit_account")?.unwrap_or(0)),
            amount: Amount(f.opt_u128("amount")?.unwrap_or(0)),
            code,
            flags: TransferFlags(f.opt_flags("flags", TRANSFER_FLAGS)?.unwrap_or(0)),
            pending_id: TransferId(f.opt_u128("pending_id")?.unwrap_or(0)),
            timeout_ns: f.opt_u64("timeout_ns")?.unwrap_or(0),
        },
        batch_end: false,
        actor: f.actor()?,
    })
}

fn parse_order(f: &Fields<'_>) -> Result<Command, LineError> {
    let owner = OwnerId(f.req_u64("owner")?);
    let instrument = InstrumentId(f.req_u32("instrument")?);
    let client_order_id = ClientOrderId(f.req_u64("client_order_id")?);
    let side = f.req_enum("side", SIDES)?;
    let order_type = f.req_enum("type", ORDER_TYPES)?;
    let price = f.opt_clamped("price")?.map(Price);
    let qty = Qty(f.req_clamped("qty")?);
    let tif = f.opt_enum("tif", TIFS)?.unwrap_or(Tif::Gtc);
    let post_only = f.opt_bool("post_only")?.unwrap_or(false);
    let stp = f.opt_enum("stp", STPS)?.unwrap_or(Stp::None);
    let display_qty = f.opt_clamped("display_qty")?.map(Qty);
    let trigger_price = f.opt_clamped("trigger_price")?.map(Price);
    let expire_at = f.opt_u64("expire_at")?.map(Timestamp);

    let order = || article(order_type.name());
    let not_allowed = |field| {
        Err(LineError::NotAllowed {
            field,
            order: order(),
        })
    };
    let required = |field| {
        Err(LineError::Required {
            field,
            order: order(),
        })
    };
    match (order_type.has_price(), price.is_some()) {
        (false, true) => return not_allowed("price"),
        (true, false) => return required("price"),
        _ => {}
    }
    match (order_type.has_trigger(), trigger_price.is_some()) {
        (false, true) => return not_allowed("trigger_price"),
        (true, false) => return required("trigger_price"),
        _ => {}
    }
    if display_qty.is_some() && !order_type.has_price() {
        return not_allowed("display_qty");
    }
    if post_only && order_type != OrderType::Limit {
        return not_allowed("post_only");
    }
    match (tif == Tif::Gtd, expire_at.is_some()) {
        (false, true) => return Err(LineError::ExpiryWithoutGtd { tif: tif.name() }),
        (true, false) => {
            return Err(LineError::Required {
                field: "expire_at",
                order: "a gtd".into(),
            })
        }
        _ => {}
    }
    Ok(Command::NewOrder(NewOrder {
        owner,
        instrument,
        client_order_id,
        side,
        order_type,
        price,
        qty,
        tif,
        expire_at,
        post_only,
        stp,
        display_qty,
        trigger_price,
    }))
}

fn article(name: &str) -> String {
    format!("a {name}")
}

const SIDES: &[(&str, Side)] = &[("buy", Side::Buy), ("sell", Side::Sell)];
const ORDER_TYPES: &[(&str, OrderType)] = &[
    ("limit", OrderType::Limit),
    ("market", OrderType::Market),
    ("stop", OrderType::Stop),
    ("stop_limit", OrderType::StopLimit),
];
const TIFS: &[(&str, Tif)] = &[
    ("gtc", Tif::Gtc),
    ("ioc", Tif::Ioc),
    ("fok", Tif::Fok),
    ("gtd", Tif::Gtd),
];
const STPS: &[(&str, Stp)] = &[
    ("none", Stp::None),
    ("cancel_taker", Stp::CancelTaker),
    ("cancel_maker", Stp::CancelMaker),
    ("cancel_both", Stp::CancelBoth),
    ("decrement", Stp::Decrement),
];
const ACCOUNT_FLAGS: &[(&str, u16)] = &[
    (
        "debits_must_not_exceed_credits",
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
    ),
    (
        "credits_must_not_exceed_debits",
        AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
    ),
];
const TRANSFER_FLAGS: &[(&str, u16)] = &[
    ("linked", TransferFlags::LINKED),
    ("pending", TransferFlags::PENDING),
    ("post_pending", TransferFlags::POST_PENDING),
    ("void_pending", TransferFlags::VOID_PENDING),
];

/// One command's fields, with typed accessors whose errors name the field
/// and the command. `null` counts as absent.
struct Fields<'a> {
    cmd: &'a str,
    map: &'a Map<String, Value>,
    wide: Vec<(String, Option<WideVal>)>,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn missing(&self, key: &str) -> LineError {
        LineError::Missing {
            field: key.to_string(),
            cmd: self.cmd.to_string(),
        }
    }

    fn bad(&self, key: &str, want: &str, got: &Value) -> LineError {
        LineError::Bad {
            field: key.to_string(),
            cmd: self.cmd.to_string(),
            want: want.to_string(),
            got: describe(got),
        }
    }

    fn opt_uint(&self, key: &str, max: u64) -> Result<Option<u64>, LineError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.as_u64() {
            Some(n) if n <= max => Ok(Some(n)),
            _ => Err(self.bad(key, &format!("an integer from 0 to {max}"), v)),
        }
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>, LineError> {
        self.opt_uint(key, u64::MAX)
    }

    fn req_u64(&self, key: &str) -> Result<u64, LineError> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_u32(&self, key: &str) -> Result<Option<u32>, LineError> {
        // The bound makes the conversion exact.
        Ok(self
            .opt_uint(key, u32::MAX as u64)?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    fn req_u32(&self, key: &str) -> Result<u32, LineError> {
        self.opt_u32(key)?.ok_or_else(|| self.missing(key))
    }

    /// A price or quantity: a negative integer becomes 0. The engine's types
    /// are unsigned, and 0 draws the same reject (`invalid_price` /
    /// `invalid_qty`) at the same precedence a negative value would.
    fn opt_clamped(&self, key: &str) -> Result<Option<u64>, LineError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        if let Some(n) = v.as_u64() {
            return Ok(Some(n));
        }
        if v.as_i64().is_some() {
            return Ok(Some(0));
        }
        Err(self.bad(key, "an integer", v))
    }

    fn req_clamped(&self, key: &str) -> Result<u64, LineError> {
        self.opt_clamped(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_u128(&self, key: &str) -> Result<Option<u128>, LineError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let exact = self
            .wide
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, n)| match n {
                Some(WideVal::One(n)) => Some(*n),
                _ => None,
            });
        match (v, exact) {
            (Value::Number(_), Some(n)) => Ok(Some(n)),
            _ => Err(self.bad(key, &format!("an integer from 0 to {}", u128::MAX), v)),
        }
    }

    /// An array of u128s read exactly (a field of `WIDE_LIST_FIELDS`).
    fn req_u128_list(&self, key: &str) -> Result<Vec<u128>, LineError> {
        let Some(v) = self.get(key) else {
            return Err(self.missing(key));
        };
        let exact = self
            .wide
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .and_then(|(_, n)| match n {
                Some(WideVal::Many(ns)) => Some(ns.clone()),
                _ => None,
            });
        match (v, exact) {
            (Value::Array(_), Some(ns)) => Ok(ns),
            _ => Err(self.bad(
                key,
                &format!("an array of integers from 0 to {}", u128::MAX),
                v,
            )),
        }
    }

    fn req_u128(&self, key: &str) -> Result<u128, LineError> {
        self.opt_u128(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, LineError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(key, "true or false", v)),
        }
    }

    /// `"actor"` (transfers, balance queries): absent or `"admin"` acts as
    /// admin (the script is an operator tool); an array of at most
    /// `ACTOR_OWNERS_MAX` owner ids acts for those owners only.
    fn actor(&self) -> Result<Actor, LineError> {
        let Some(v) = self.get("actor") else {
            return Ok(Actor::Admin);
        };
        let actor = match v {
            Value::String(s) if s == "admin" => Some(Actor::Admin),
            Value::Array(items) => items
                .iter()
                .map(|x| x.as_u64().map(OwnerId))
                .collect::<Option<Vec<_>>>()
                .and_then(|ids| Actor::owners(&ids)),
            _ => None,
        };
        actor.ok_or_else(|| {
            self.bad(
                "actor",
                &format!("\"admin\" or an array of at most {ACTOR_OWNERS_MAX} owner ids"),
                v,
            )
        })
    }

    fn req_str(&self, key: &str) -> Result<&str, LineError> {
        match self.get(key) {
            None => Err(self.missing(key)),
            Some(Value::String(s)) => Ok(s),
            Some(v) => Err(self.bad(key, "a string", v)),
        }
    }

    fn req_asset(&self, key: &str) -> Result<Asset, LineError> {
        let s = self.req_str(key)?;
        Asset::from_str_code(s).ok_or_else(|| LineError::Bad {
            field: key.to_string(),
            cmd: self.cmd.to_string(),
            want: format!(
                "an asset code of 1 to {} printable ASCII characters",
                Asset::LEN
            ),
            got: quote(s),
        })
    }

    fn opt_enum<T: Copy>(&self, key: &str, names: &[(&str, T)]) -> Result<Option<T>, LineError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let one_of = names
            .iter()
            .map(|(n, _)| quote(n))
            .collect::<Vec<_>>()
            .join(", ");
        let Value::String(s) = v else {
            return Err(self.bad(key, &format!("one of {one_of}"), v));
        };
        match names.iter().find(|(n, _)| n == s) {
            Some((_, t)) => Ok(Some(*t)),
            None => Err(LineError::UnknownName {
                field: key.to_string(),
                value: s.clone(),
                cmd: self.cmd.to_string(),
                one_of,
            }),
        }
    }

    fn req_enum<T: Copy>(&self, key: &str, names: &[(&str, T)]) -> Result<T, LineError> {
        self.opt_enum(key, names)?.ok_or_else(|| self.missing(key))
    }

    fn opt_flags(&self, key: &str, names: &[(&str, u16)]) -> Result<Option<u16>, LineError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(self.bad(key, "an array of flag names", v));
        };
        let mut bits = 0;
        for item in items {
            let Value::String(s) = item else {
                return Err(self.bad(key, "an array of flag names", v));
            };
            match names.iter().find(|(n, _)| n == s) {
                Some((_, b)) => bits |= b,
                None => {
                    return Err(LineError::UnknownFlag {
                        flag: s.clone(),
                        cmd: self.cmd.to_string(),
                    })
                }
            }
        }
        Ok(Some(bits))
    }
}

/// Reads the named fields of a JSON object as exact u128s (serde_json's
/// `Value` keeps integers beyond u64 only as `f64`). A field whose value is
/// `null` comes back as `None`; the error names the field that is not a
/// non-negative integer in u128's range.
fn wide_fields(
    text: &str,
    names: &'static [&'static str],
) -> Result<Vec<(String, Option<WideVal>)>, BadWideField> {
    let mut current: Option<String> = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let result = (&mut de).deserialize_map(WideMap {
        names,
        current: &mut current,
    });
    match result {
        Ok(v) => Ok(v),
        Err(_) => {
            Err(BadWideField(current.unwrap_or_else(|| {
                names.first().copied().unwrap_or("").to_string()
            })))
        }
    }
}

/// The field `wide_fields` could not read.
#[derive(Debug)]
struct BadWideField(String);

/// The first key that appears twice in the top-level object of `text`
/// (already known to be valid JSON): serde_json would silently keep the last
/// value, so a script line saying two things is refused instead.
fn duplicate_key(text: &str) -> Option<String> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut seen = std::collections::BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !seen.insert(key.clone()) {
                    return Ok(Some(key));
                }
            }
            Ok(None)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de).deserialize_map(Keys).ok().flatten()
}

struct WideMap<'a> {
    names: &'static [&'static str],
    current: &'a mut Option<String>,
}

impl<'de> Visitor<'de> for WideMap<'_> {
    type Value = Vec<(String, Option<WideVal>)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.names.contains(&key.as_str()) {
                // Kept after the value too: "1.5" reads as 1 and fails at
                // the next key, which must still blame this field.
                *self.current = Some(key.clone());
                let v = if WIDE_LIST_FIELDS.contains(&key.as_str()) {
                    let v: Option<WideList> = map.next_value()?;
                    v.map(|l| WideVal::Many(l.0))
                } else {
                    let v: Option<Wide> = map.next_value()?;
                    v.map(|w| WideVal::One(w.0))
                };
                out.push((key, v));
            } else {
                *self.current = None;
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// An exactly read wide field: one integer, or an array of them.
#[derive(Clone, Debug)]
enum WideVal {
    One(u128),
    Many(Vec<u128>),
}

struct Wide(u128);

/// An array of [`Wide`]s.
struct WideList(Vec<u128>);

impl<'de> de::Deserialize<'de> for WideList {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WideList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of non-negative integers")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<WideList, A::Error> {
                let mut v = Vec::new();
                while let Some(w) = seq.next_element::<Wide>()? {
                    v.push(w.0);
                }
                Ok(WideList(v))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> de::Deserialize<'de> for Wide {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Wide;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Wide, E> {
                Ok(Wide(v as u128))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Wide, E> {
                Ok(Wide(v))
            }
        }
        d.deserialize_u128(V)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a non-integer number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short description of a bad value for an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("the string {}", quote(s)),
        _ => type_name(v).to_string(),
    }
}

/// `s` as a JSON string literal (quotes and escapes), for messages.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

// ----- printing ---------------------------------------------------------

/// One transfer record's fields (a `transfer` line's, after `event`).
/// `flags` are names, as a `transfer` command takes them.
fn write_record(o: &mut String, r: &engine::history::TransferRecord) -> std::fmt::Result {
    use std::fmt::Write as _;
    let s = &r.spec;
    write!(
        o,
        "\"id\":{},\"debit_account\":{},\"credit_account\":{},\"amount\":{},\"requested_amount\":{},\"code\":{},\"flags\":{},\"pending_id\":{},\"timeout_ns\":{},\"state\":\"{}\",\"ledger_seq\":{},\"created_seq\":{},\"created\":{},\"change_seq\":{}",
        s.id.0,
        r.debit_account.0,
        r.credit_account.0,
        r.amount.0,
        s.amount.0,
        s.code,
        crate::dump::transfer_flags_json(s.flags.0),
        s.pending_id.0,
        s.timeout_ns,
        r.state.as_str(),
        r.ledger_seq,
        r.created_seq.0,
        r.created.0,
        r.change_seq.0
    )
}

/// Appends `event` as one JSON object (no newline) in the shape of
/// `script.md`. `events` holds the level rows of `book` events and the rows
/// of `transfers` events; a `transfers` event is the one that spans lines:
/// a `transfer` object per row, each followed by a newline, then its
/// `transfers_end` object.
pub fn write_event(out: &mut String, seq: Seq, event: &Event, events: &Events) {
    // Writing to a String cannot fail.
    let _ = write_event_fmt(out, seq, event, events);
}

fn write_event_fmt(o: &mut String, seq: Seq, event: &Event, events: &Events) -> std::fmt::Result {
    write!(o, "{{\"seq\":{}", seq.0)?;
    // Exhaustive here, so a new event kind cannot be forgotten; each group
    // writes its own fields.
    match event {
        Event::Accepted { .. }
        | Event::Rejected { .. }
        | Event::Trade { .. }
        | Event::Canceled { .. }
        | Event::Reduced { .. }
        | Event::Replaced { .. }
        | Event::Triggered { .. }
        | Event::Halted { .. }
        | Event::Resumed { .. } => write_order_event(o, event)?,
        Event::Book { .. }
        | Event::OpenOrder { .. }
        | Event::Balance { .. }
        | Event::Transfers { .. } => write_query_event(o, seq, event, events)?,
        Event::AccountOpened { .. }
        | Event::AccountRejected { .. }
        | Event::TransferOk { .. }
        | Event::TransferRejected { .. }
        | Event::TransferExpired { .. }
        | Event::HistoryInstalled { .. } => write_ledger_event(o, event)?,
    }
    o.push('}');
    Ok(())
}

/// The fields of an order or instrument event (after `{"seq":N`).
fn write_order_event(o: &mut String, event: &Event) -> std::fmt::Result {
    match *event {
        Event::Accepted {
            order_id,
            client_order_id,
            owner,
            instrument,
            side,
            price,
            qty,
        } => {
            write!(
                o,
                ",\"event\":\"accepted\",\"order_id\":{},\"client_order_id\":{},\"owner\":{},\"instrument\":{},\"side\":\"{}\",\"price\":",
                order_id.0, client_order_id.0, owner.0, instrument.0, side.name()
            )?;
            match price {
                Some(p) => write!(o, "{}", p.0)?,
                None => o.push_str("null"),
            }
            write!(o, ",\"qty\":{}", qty.0)?;
        }
        Event::Rejected { target, reason } => {
            o.push_str(",\"event\":\"rejected\",");
            match target {
                RejectTarget::ClientOrder(id) => write!(o, "\"client_order_id\":{}", id.0)?,
                RejectTarget::Order(id) => write!(o, "\"order_id\":{}", id.0)?,
                RejectTarget::Instrument(id) => write!(o, "\"instrument\":{}", id.0)?,
                RejectTarget::Time(t) => write!(o, "\"now\":{}", t.0)?,
                RejectTarget::Account(a) => write!(o, "\"account\":{}", a.0)?,
                RejectTarget::Transfer(id) => write!(o, "\"transfer\":{}", id.0)?,
                RejectTarget::HistoryRun(run) => write!(o, "\"run\":{run}")?,
                RejectTarget::Session(sid) => write!(o, "\"session\":{sid}")?,
            }
            write!(o, ",\"reason\":\"{}\"", reason.name())?;
        }
        Event::Trade {
            instrument,
            price,
            qty,
            maker_order_id,
            taker_order_id,
            maker_owner,
            taker_owner,
            taker_side,
        } => write!(
            o,
            ",\"event\":\"trade\",\"instrument\":{},\"price\":{},\"qty\":{},\"maker_order_id\":{},\"taker_order_id\":{},\"maker_owner\":{},\"taker_owner\":{},\"taker_side\":\"{}\"",
            instrument.0,
            price.0,
            qty.0,
            maker_order_id.0,
            taker_order_id.0,
            maker_owner.0,
            taker_owner.0,
            taker_side.name()
        )?,
        Event::Canceled {
            order_id,
            qty,
            reason,
            ..
        } => write!(
            o,
            ",\"event\":\"canceled\",\"order_id\":{},\"qty\":{},\"reason\":\"{}\"",
            order_id.0,
            qty.0,
            reason.name()
        )?,
        Event::Reduced {
            order_id,
            qty,
            reason,
            ..
        } => write!(
            o,
            ",\"event\":\"reduced\",\"order_id\":{},\"qty\":{},\"reason\":\"{}\"",
            order_id.0,
            qty.0,
            reason.name()
        )?,
        Event::Replaced {
            order_id,
            price,
            qty,
            priority_kept,
            ..
        } => write!(
            o,
            ",\"event\":\"replaced\",\"order_id\":{},\"price\":{},\"qty\":{},\"priority\":\"{}\"",
            order_id.0,
            price.0,
            qty.0,
            if priority_kept { "kept" } else { "lost" }
        )?,
        Event::Triggered { order_id, .. } => {
            write!(o, ",\"event\":\"triggered\",\"order_id\":{}", order_id.0)?
        }
        Event::Halted { instrument, reason } => write!(
            o,
            ",\"event\":\"halted\",\"instrument\":{},\"reason\":\"{}\"",
            instrument.0,
            reason.name()
        )?,
        Event::Resumed { instrument } => {
            write!(o, ",\"event\":\"resumed\",\"instrument\":{}", instrument.0)?
        }
        // `write_event_fmt` routes only the events above here.
        _ => {}
    }
    Ok(())
}

/// The fields of a query's answer (after `{"seq":N`); a transfers query's
/// rows each take a line of their own before its end line.
fn write_query_event(o: &mut String, seq: Seq, event: &Event, events: &Events) -> std::fmt::Result {
    match *event {
        Event::Book {
            instrument,
            bids,
            asks,
        } => {
            write!(o, ",\"event\":\"book\",\"instrument\":{},\"bids\":", instrument.0)?;
            write_levels(o, events.levels(bids))?;
            o.push_str(",\"asks\":");
            write_levels(o, events.levels(asks))?;
        }
        Event::OpenOrder {
            order_id,
            owner,
            client_order_id,
            instrument,
            side,
            price,
            remaining,
            visible,
            waiting_stop,
        } => {
            write!(
                o,
                ",\"event\":\"open_order\",\"order_id\":{},\"client_order_id\":{},\"owner\":{},\"instrument\":{},\"side\":\"{}\",\"price\":",
                order_id.0,
                client_order_id.0,
                owner.0,
                instrument.0,
                side.name()
            )?;
            match price {
                Some(p) => write!(o, "{}", p.0)?,
                None => o.push_str("null"),
            }
            write!(
                o,
                ",\"remaining\":{},\"visible\":{},\"waiting_stop\":{}",
                remaining.0, visible.0, waiting_stop
            )?
        }
        Event::Balance {
            account,
            debits_posted,
            credits_posted,
            debits_pending,
            credits_pending,
        } => write!(
            o,
            ",\"event\":\"balance\",\"account\":{},\"debits_posted\":{},\"credits_posted\":{},\"debits_pending\":{},\"credits_pending\":{}",
            account.0, debits_posted.0, credits_posted.0, debits_pending.0, credits_pending.0
        )?,
        // One `transfer` line per row, then the end line (this event
        // alone spans several lines: the rows are its body).
        Event::Transfers { rows, more } => {
            let rows = events.rows(rows);
            for r in rows {
                o.push_str(",\"event\":\"transfer\",");
                write_record(o, r)?;
                write!(o, "}}\n{{\"seq\":{}", seq.0)?;
            }
            write!(
                o,
                ",\"event\":\"transfers_end\",\"count\":{},\"more\":{more}",
                rows.len()
            )?;
        }
        // `write_event_fmt` routes only the events above here.
        _ => {}
    }
    Ok(())
}

/// The fields of a ledger event (after `{"seq":N`).
fn write_ledger_event(o: &mut String, event: &Event) -> std::fmt::Result {
    match *event {
        Event::AccountOpened { id } => write!(o, ",\"event\":\"account_opened\",\"id\":{}", id.0)?,
        Event::AccountRejected { id, reason } => write!(
            o,
            ",\"event\":\"account_rejected\",\"id\":{},\"reason\":\"{}\"",
            id.0,
            reason.name()
        )?,
        Event::TransferOk { id } => write!(o, ",\"event\":\"transfer_ok\",\"id\":{}", id.0)?,
        Event::TransferRejected { id, reason } => write!(
            o,
            ",\"event\":\"transfer_rejected\",\"id\":{},\"reason\":\"{}\"",
            id.0,
            reason.name()
        )?,
        Event::TransferExpired { id } => {
            write!(o, ",\"event\":\"transfer_expired\",\"id\":{}", id.0)?
        }
        Event::HistoryInstalled { run, through_seq } => write!(
            o,
            ",\"event\":\"history_installed\",\"run\":{run},\"through_seq\":{}",
            through_seq.0
        )?,
        // `write_event_fmt` routes only the events above here.
        _ => {}
    }
    Ok(())
}

fn write_levels(o: &mut String, levels: &[LevelView]) -> std::fmt::Result {
    o.push('[');
    for (i, l) in levels.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        write!(o, "[{},{},{}]", l.price.0, l.qty.0, l.orders)?;
    }
    o.push(']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line that must parse to an engine command.
    fn parse_cmd(text: &str) -> Result<Command, LineError> {
        match parse_line(text)? {
            Line::Command(c) => Ok(c),
            other => panic!("not a command: {other:?}"),
        }
    }

    const INST: &str = r#"{"cmd":"instrument","id":1,"symbol":"ABC-USD","base":"ABC","quote":"USD","tick":1,"lot_size":1,"qty_min":1,"qty_max":1000,"reference_price":100,"settle":false}"#;

    /// Beyond script.md: cancel by client order id (not with `order_id`),
    /// and `requeue` on replace; a run shows both at work, with the output
    /// lines of script.md unchanged.
    #[test]
    fn cancel_by_client_order_id_and_requeue() {
        assert_eq!(
            parse_cmd(r#"{"cmd":"cancel","owner":7,"client_order_id":11}"#),
            Ok(Command::CancelByClientId {
                owner: OwnerId(7),
                client_order_id: ClientOrderId(11),
            })
        );
        let both = parse_cmd(r#"{"cmd":"cancel","owner":7,"order_id":1,"client_order_id":11}"#);
        assert!(
            matches!(&both, Err(LineError::Bad { field, .. }) if field == "client_order_id"),
            "{both:?}"
        );
        assert!(matches!(
            parse_cmd(r#"{"cmd":"replace","owner":7,"order_id":1,"qty":2,"requeue":true}"#),
            Ok(Command::Replace { requeue: true, .. })
        ));
        assert!(matches!(
            parse_cmd(r#"{"cmd":"replace","owner":7,"order_id":1,"qty":2}"#),
            Ok(Command::Replace { requeue: false, .. })
        ));
        let order = |coid| {
            format!(
                r#"{{"cmd":"order","owner":7,"instrument":1,"client_order_id":{coid},"side":"sell","type":"limit","price":101,"qty":5}}"#
            )
        };
        let script = [
            INST.to_string(),
            order(11),
            order(12),
            r#"{"cmd":"replace","owner":7,"order_id":1,"qty":4,"requeue":true}"#.into(),
            r#"{"cmd":"cancel","owner":7,"client_order_id":12}"#.into(),
            r#"{"cmd":"cancel","owner":7,"client_order_id":12}"#.into(),
        ]
        .join("\n");
        let (out, r) = run(&script);
        assert_eq!(r, Ok(()));
        let tail: Vec<&str> = out.lines().skip(2).collect();
        assert_eq!(
            tail,
            [
                r#"{"seq":4,"event":"replaced","order_id":1,"price":101,"qty":4,"priority":"lost"}"#,
                r#"{"seq":5,"event":"canceled","order_id":2,"qty":5,"reason":"user"}"#,
                r#"{"seq":6,"event":"rejected","client_order_id":12,"reason":"unknown_order"}"#,
            ]
        );
    }

    fn small() -> EngineConfig {
        EngineConfig::small()
    }

    fn run(script: &str) -> (String, Result<(), ScriptError>) {
        let mut out = Vec::new();
        let r = run_script_with(small(), script.as_bytes(), &mut out);
        (String::from_utf8(out).unwrap_or_default(), r)
    }

    /// The error message of a script whose line 2 is `line`.
    fn err(line: &str) -> String {
        let (_, r) = run(&format!("{INST}\n{line}\n"));
        match r {
            Err(e) => e.to_string(),
            Ok(()) => format!("no error for {line}"),
        }
    }

    fn order(extra: &str) -> String {
        format!(
            r#"{{"cmd":"order","owner":1,"instrument":1,"client_order_id":1,"side":"buy"{extra}}}"#
        )
    }

    #[test]
    fn malformed_json_and_commands() {
        assert!(err("{").starts_with("line 2: not valid JSON: "));
        assert_eq!(err("[1]"), "line 2: expected a JSON object, got an array");
        assert_eq!(err("{}"), "line 2: missing field \"cmd\"");
        assert_eq!(
            err(r#"{"cmd":7}"#),
            "line 2: \"cmd\" must be a string, got a number"
        );
        assert_eq!(err(r#"{"cmd":"foo"}"#), "line 2: unknown command \"foo\"");
        assert_eq!(
            err(&order(r#","type":"limit","prize":100,"qty":1"#)),
            "line 2: unknown field \"prize\" in order"
        );
        assert_eq!(
            err(r#"{"cmd":"cancel","owner":1}"#),
            "line 2: missing field \"order_id\" in cancel"
        );
    }

    #[test]
    fn line_numbers_count_blank_lines() {
        let (_, r) = run(&format!("{INST}\n\n   \n{{\"cmd\":\"foo\"}}\n"));
        assert_eq!(r.map_err(|e| e.line), Err(4));
    }

    #[test]
    fn wrong_types_and_values() {
        assert_eq!(
            err(&order(r#","type":"limit","price":100,"qty":1.5"#)),
            "line 2: \"qty\" in order must be an integer, got 1.5"
        );
        assert_eq!(
            err(&order(r#","type":"limit","price":"100","qty":1"#)),
            "line 2: \"price\" in order must be an integer, got the string \"100\""
        );
        assert_eq!(
            err(&order(
                r#","type":"limit","price":100,"qty":1,"post_only":1"#
            )),
            "line 2: \"post_only\" in order must be true or false, got 1"
        );
        assert_eq!(
            err(r#"{"cmd":"cancel","owner":-1,"order_id":1}"#),
            "line 2: \"owner\" in cancel must be an integer from 0 to 18446744073709551615, got -1"
        );
        assert_eq!(
            err(r#"{"cmd":"halt","instrument":4294967296}"#),
            "line 2: \"instrument\" in halt must be an integer from 0 to 4294967295, got 4294967296"
        );
        assert!(err(r#"{"cmd":"transfer","id":1.5}"#)
            .starts_with("line 2: \"id\" in transfer must be an integer"));
        assert!(err(r#"{"cmd":"transfer","id":-1}"#)
            .starts_with("line 2: \"id\" in transfer must be an integer"));
        assert!(err(r#"{"cmd":"transfer","id":1,"amount":1e3}"#)
            .starts_with("line 2: \"amount\" in transfer must be an integer"));
        assert!(err(r#"{"cmd":"transfer","id":1,"code":65536}"#)
            .starts_with("line 2: \"code\" in transfer must be an integer from 0 to 65535"));
    }

    #[test]
    fn unknown_enum_values_and_flags() {
        assert_eq!(
            err(&order(r#","type":"limit","price":100,"qty":1,"tif":"day""#)),
            "line 2: unknown tif \"day\" in order (expected one of \"gtc\", \"ioc\", \"fok\", \"gtd\")"
        );
        assert!(err(&order(r#","type":"iceberg","price":100,"qty":1"#))
            .starts_with("line 2: unknown type \"iceberg\" in order"));
        assert!(err(&order(
            r#","type":"limit","price":100,"qty":1,"stp":"cancel""#
        ))
        .starts_with("line 2: unknown stp \"cancel\" in order"));
        assert_eq!(
            err(r#"{"cmd":"open_account","id":1,"owner":1,"asset":"USD","flags":["linked"]}"#),
            "line 2: unknown flag \"linked\" in open_account"
        );
        assert_eq!(
            err(r#"{"cmd":"transfer","id":1,"flags":["pending","fast"]}"#),
            "line 2: unknown flag \"fast\" in transfer"
        );
        assert!(
            err(r#"{"cmd":"open_account","id":1,"asset":""}"#).contains("must be an asset code")
        );
        assert!(
            err(r#"{"cmd":"open_account","id":1,"asset":"ABCDEFGHIJKLM"}"#)
                .contains("must be an asset code")
        );
        assert!(err(r#"{"cmd":"mass_cancel","owner":1,"side":"both"}"#)
            .starts_with("line 2: unknown side \"both\""));
    }

    #[test]
    fn order_type_contradictions() {
        let cases = [
            (
                r#","type":"market","price":100,"qty":1"#,
                "price on a market order",
            ),
            (
                r#","type":"stop","price":100,"trigger_price":100,"qty":1"#,
                "price on a stop order",
            ),
            (
                r#","type":"limit","qty":1"#,
                "missing \"price\" on a limit order",
            ),
            (
                r#","type":"stop_limit","trigger_price":100,"qty":1"#,
                "missing \"price\" on a stop_limit order",
            ),
            (
                r#","type":"limit","price":100,"trigger_price":90,"qty":1"#,
                "trigger_price on a limit order",
            ),
            (
                r#","type":"market","trigger_price":90,"qty":1"#,
                "trigger_price on a market order",
            ),
            (
                r#","type":"stop","qty":1"#,
                "missing \"trigger_price\" on a stop order",
            ),
            (
                r#","type":"stop_limit","price":100,"qty":1"#,
                "missing \"trigger_price\" on a stop_limit order",
            ),
            (
                r#","type":"limit","price":100,"qty":1,"expire_at":5"#,
                "expire_at on a gtc order (only tif gtd expires)",
            ),
            (
                r#","type":"limit","price":100,"qty":1,"tif":"gtd""#,
                "missing \"expire_at\" on a gtd order",
            ),
            (
                r#","type":"market","qty":5,"display_qty":1"#,
                "display_qty on a market order",
            ),
            (
                r#","type":"stop","trigger_price":1,"qty":5,"display_qty":1"#,
                "display_qty on a stop order",
            ),
            (
                r#","type":"market","qty":5,"post_only":true"#,
                "post_only on a market order",
            ),
            (
                r#","type":"stop_limit","price":1,"trigger_price":1,"qty":5,"post_only":true"#,
                "post_only on a stop_limit order",
            ),
        ];
        for (extra, want) in cases {
            assert_eq!(err(&order(extra)), format!("line 2: {want}"), "{extra}");
        }
    }

    #[test]
    fn nulls_and_defaults_are_accepted() {
        let line = order(
            r#","type":"limit","price":100,"qty":5,"tif":null,"post_only":null,"stp":null,"display_qty":null,"trigger_price":null,"expire_at":null"#,
        );
        let (out, r) = run(&format!("{INST}\n{line}\n"));
        assert_eq!(r, Ok(()));
        assert_eq!(
            out,
            "{\"seq\":2,\"event\":\"accepted\",\"order_id\":1,\"client_order_id\":1,\"owner\":1,\"instrument\":1,\"side\":\"buy\",\"price\":100,\"qty\":5}\n"
        );
        let Ok(Command::NewOrder(o)) =
            parse_cmd(&order(r#","type":"market","qty":5,"post_only":false"#))
        else {
            panic!("market order did not parse");
        };
        assert_eq!(
            (o.tif, o.stp, o.post_only, o.price),
            (Tif::Gtc, Stp::None, false, None)
        );
        let Ok(Command::AddInstrument(i)) = parse_cmd(INST) else {
            panic!("instrument did not parse");
        };
        assert_eq!(
            (i.maker_fee_bps, i.band_bps, i.fee_account, i.notional_max),
            (0, None, AccountId(0), None)
        );
        let Ok(Command::OpenAccount(a)) =
            parse_cmd(r#"{"cmd":"open_account","id":5,"owner":1,"asset":"USD"}"#)
        else {
            panic!("account did not parse");
        };
        assert_eq!(
            a.flags,
            AccountFlags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        );
        let Ok(Command::OpenAccount(a)) =
            parse_cmd(r#"{"cmd":"open_account","id":5,"asset":"USD","flags":[]}"#)
        else {
            panic!("account did not parse");
        };
        assert_eq!(a.flags, AccountFlags(0));
    }

    #[test]
    fn negative_prices_and_quantities_reach_the_engine_as_zero() {
        let Ok(Command::NewOrder(o)) = parse_cmd(&order(
            r#","type":"stop_limit","price":-5,"trigger_price":-1,"qty":-2,"display_qty":-1"#,
        )) else {
            panic!("order did not parse");
        };
        assert_eq!(
            (o.price, o.trigger_price, o.qty, o.display_qty),
            (Some(Price(0)), Some(Price(0)), Qty(0), Some(Qty(0)))
        );
        let (out, r) = run(&format!(
            "{INST}\n{}\n",
            order(r#","type":"limit","price":-5,"qty":1"#)
        ));
        assert_eq!(r, Ok(()));
        assert_eq!(out, "{\"seq\":2,\"event\":\"rejected\",\"client_order_id\":1,\"reason\":\"invalid_price\"}\n");
    }

    #[test]
    fn u128_values_are_exact() {
        let max = u128::MAX;
        let Ok(Command::Transfer { transfer, .. }) = parse_cmd(&format!(
            r#"{{"cmd":"transfer","id":{max},"debit_account":{},"credit_account":2,"amount":{max},"pending_id":18446744073709551616}}"#,
            max - 1
        )) else {
            panic!("transfer did not parse");
        };
        assert_eq!(transfer.id, TransferId(max));
        assert_eq!(transfer.debit_account, AccountId(max - 1));
        assert_eq!(transfer.amount, Amount(max));
        assert_eq!(transfer.pending_id, TransferId(1 << 64));
        let (out, r) = run(&format!(
            "{{\"cmd\":\"query_balance\",\"account\":{max}}}\n"
        ));
        assert_eq!(r, Ok(()));
        assert_eq!(out, format!("{{\"seq\":1,\"event\":\"rejected\",\"account\":{max},\"reason\":\"account_not_found\"}}\n"));
    }

    #[test]
    fn events_before_a_bad_line_are_written() {
        let script = format!(
            "{INST}\n{}\n{{\"cmd\":\"nope\"}}\n{}\n",
            order(r#","type":"limit","price":100,"qty":1"#),
            order(r#","type":"limit","price":100,"qty":1"#)
        );
        let (out, r) = run(&script);
        assert_eq!(
            r.map_err(|e| e.to_string()),
            Err("line 3: unknown command \"nope\"".to_string())
        );
        assert_eq!(out.lines().count(), 1);
        assert!(out.contains("\"event\":\"accepted\""));
    }

    #[test]
    fn time_and_transfer_batches() {
        let t = |id: u32| {
            format!(
                r#"{{"cmd":"transfer","id":{id},"debit_account":1,"credit_account":2,"amount":1}}"#
            )
        };
        let script = format!(
            "{}\n\n{}\n{{\"cmd\":\"time\",\"now\":10}}\n{}\n{{\"cmd\":\"time\",\"now\":5}}\n{}\n{}\n",
            t(1),
            t(2),
            t(3),
            t(4),
            t(5)
        );
        let mut runner = Runner::new(small());
        let mut out = Vec::new();
        assert_eq!(runner.run(script.as_bytes(), &mut out), Ok(()));
        let summary: Vec<(u64, u64, Option<bool>)> = runner
            .applied
            .iter()
            .map(|i| {
                let end = match i.command {
                    Command::Transfer { batch_end, .. } => Some(batch_end),
                    _ => None,
                };
                (i.seq.0, i.now.0, end)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, 0, Some(false)),
                (2, 0, Some(true)),
                (3, 0, None),
                (4, 10, Some(true)),
                (5, 10, None),
                (6, 10, Some(false)),
                (7, 10, Some(true)),
            ]
        );
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text
            .contains("{\"seq\":5,\"event\":\"rejected\",\"now\":5,\"reason\":\"invalid_time\"}"));
    }

    #[test]
    fn actors_parse_and_a_dumped_line_replays_with_the_same_actor() {
        let t = TransferSpec {
            id: TransferId(9),
            debit_account: AccountId(101),
            credit_account: AccountId(201),
            amount: Amount(5),
            code: 1,
            flags: TransferFlags(0),
            pending_id: TransferId(0),
            timeout_ns: 0,
        };
        let owners = |ids: &[u64]| {
            Actor::owners(&ids.iter().map(|&o| OwnerId(o)).collect::<Vec<_>>()).unwrap()
        };
        for actor in [
            Actor::Admin,
            owners(&[]),
            owners(&[7]),
            owners(&[1, 2, 3, 4, 5, 6, 7, 8]),
        ] {
            for c in [
                Command::Transfer {
                    transfer: t,
                    batch_end: false,
                    actor,
                },
                Command::QueryBalance {
                    account: AccountId(101),
                    actor,
                },
            ] {
                let line = crate::dump::command_to_script_json(&c);
                assert_eq!(parse_cmd(&line), Ok(c), "{line}");
            }
        }
        // No actor: the operator (admin).
        let Ok(Command::QueryBalance { actor, .. }) =
            parse_cmd(r#"{"cmd":"query_balance","account":1}"#)
        else {
            panic!()
        };
        assert_eq!(actor, Actor::Admin);
        for bad in [
            r#""root""#,
            "[1,-2]",
            "[1,2,3,4,5,6,7,8,9]",
            "7",
            r#"["1"]"#,
        ] {
            let line = format!(r#"{{"cmd":"query_balance","account":1,"actor":{bad}}}"#);
            let err = parse_cmd(&line).unwrap_err().to_string();
            assert!(
                err.starts_with("\"actor\" in query_balance must be"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_transfer_before_a_bad_line_is_applied_as_the_batch_end() {
        let script = "{\"cmd\":\"transfer\",\"id\":1}\n{\"cmd\":\"transfer\",\"id\":2,\"x\":1}\n";
        let mut runner = Runner::new(small());
        let mut out = Vec::new();
        let r = runner.run(script.as_bytes(), &mut out);
        assert_eq!(r.map_err(|e| e.line), Err(2));
        assert!(matches!(
            runner.applied.as_slice(),
            [Input {
                command: Command::Transfer {
                    batch_end: true,
                    ..
                },
                ..
            }]
        ));
    }

    #[test]
    fn printer_shapes() {
        let mut events = Events::with_capacity(4, 4);
        let a = events.push_level(LevelView {
            price: Price(100),
            qty: Qty(5),
            orders: 1,
        });
        let b = events.push_level(LevelView {
            price: Price(101),
            qty: Qty(4),
            orders: 2,
        });
        let _ = b;
        let cases = [
            (
                Event::Book {
                    instrument: InstrumentId(1),
                    bids: LevelRange { start: a, len: 1 },
                    asks: LevelRange {
                        start: a + 1,
                        len: 1,
                    },
                },
                r#"{"seq":3,"event":"book","instrument":1,"bids":[[100,5,1]],"asks":[[101,4,2]]}"#,
            ),
            (
                Event::Replaced {
                    order_id: OrderId(1),
                    owner: OwnerId(7),
                    side: Side::Buy,
                    price: Price(101),
                    qty: Qty(4),
                    priority_kept: false,
                },
                r#"{"seq":3,"event":"replaced","order_id":1,"price":101,"qty":4,"priority":"lost"}"#,
            ),
            (
                Event::Balance {
                    account: AccountId(1001),
                    debits_posted: Amount(0),
                    credits_posted: Amount(100000),
                    debits_pending: Amount(500),
                    credits_pending: Amount(u128::MAX),
                },
                r#"{"seq":3,"event":"balance","account":1001,"debits_posted":0,"credits_posted":100000,"debits_pending":500,"credits_pending":340282366920938463463374607431768211455}"#,
            ),
            (
                Event::Rejected {
                    target: RejectTarget::Order(OrderId(3)),
                    reason: RejectReason::UnknownOrder,
                },
                r#"{"seq":3,"event":"rejected","order_id":3,"reason":"unknown_order"}"#,
            ),
            (
                Event::TransferRejected {
                    id: TransferId(5002),
                    reason: LedgerError::ExceedsCredits,
                },
                r#"{"seq":3,"event":"transfer_rejected","id":5002,"reason":"exceeds_credits"}"#,
            ),
            (
                Event::Halted {
                    instrument: InstrumentId(1),
                    reason: HaltReason::CircuitBreaker,
                },
                r#"{"seq":3,"event":"halted","instrument":1,"reason":"circuit_breaker"}"#,
            ),
        ];
        for (event, want) in cases {
            let mut s = String::new();
            write_event(&mut s, Seq(3), &event, &events);
            assert_eq!(s, want);
            assert!(serde_json::from_str::<Value>(&s).is_ok());
        }
    }
}
