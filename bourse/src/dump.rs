//! Engine inputs as `bourse script` JSON lines (spec/script.md), so a journal
//! excerpt replays with `bourse script`.
//!
//! Invariants: field names and enum names are exactly those of script.md;
//! `None` options are omitted (script.md: optional fields may be omitted);
//! ids and amounts are JSON integers. A flag bit the script has no name for
//! is written as `"unknown_bit_N"`, which `bourse script` rejects: a value
//! that cannot be expressed is never silently dropped.
//!
//! `ScriptDumper` adds what script semantics need around the commands: a
//! `{"cmd":"time","now":N}` line whenever an input's engine time advances,
//! and the same time again between two transfers when the first one closes
//! its batch (a script batch is a run of consecutive `transfer` lines).
//! Seq numbers in the replayed script therefore differ from the journal's
//! (each `time` line takes one); engine times and batching are preserved.

use engine::{AccountFlags, Actor, Command, Input, OrderId, OwnerId, Price, Qty, TransferFlags};
use std::fmt::Write as _;

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn flags(bits: u16, names: &[(u16, &str)]) -> String {
    let mut out = Vec::new();
    for b in 0..16 {
        let bit = 1u16 << b;
        if bits & bit == 0 {
            continue;
        }
        match names.iter().find(|(v, _)| *v == bit) {
            Some((_, n)) => out.push(q(n)),
            None => out.push(q(&format!("unknown_bit_{b}"))),
        }
    }
    format!("[{}]", out.join(","))
}

/// Transfer flags as the script's array of names (also the script's
/// `transfer` event rows).
pub(crate) fn transfer_flags_json(bits: u16) -> String {
    flags(
        bits,
        &[
            (TransferFlags::LINKED, "linked"),
            (TransferFlags::PENDING, "pending"),
            (TransferFlags::POST_PENDING, "post_pending"),
            (TransferFlags::VOID_PENDING, "void_pending"),
        ],
    )
}

/// The script's `actor` value: `"admin"` or the list of owners (always
/// written, so a dump shows who acted and replays with the same rights).
fn actor_json(a: &Actor) -> String {
    match a {
        Actor::Admin => q("admin"),
        Actor::Owners(set) => {
            let ids: Vec<String> = set.as_slice().iter().map(|o| o.0.to_string()).collect();
            format!("[{}]", ids.join(","))
        }
    }
}

struct Obj(String);

impl Obj {
    fn new(cmd: &str) -> Self {
        Obj(format!("{{\"cmd\":{}", q(cmd)))
    }
    fn raw(mut self, k: &str, v: impl std::fmt::Display) -> Self {
        let _ = write!(self.0, ",\"{k}\":{v}");
        self
    }
    fn str(self, k: &str, v: &str) -> Self {
        let v = q(v);
        self.raw(k, v)
    }
    fn opt(self, k: &str, v: Option<impl std::fmt::Display>) -> Self {
        match v {
            Some(v) => self.raw(k, v),
            None => self,
        }
    }
    fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A `replace` line; `requeue` only when set, so a plain replace dumps as
/// before.
fn replace_json(
    (owner, order_id): (OwnerId, OrderId),
    (price, qty): (Option<Price>, Option<Qty>),
    requeue: bool,
) -> String {
    Obj::new("replace")
        .raw("owner", owner)
        .raw("order_id", order_id)
        .opt("price", price)
        .opt("qty", qty)
        .opt("requeue", requeue.then_some(true))
        .done()
}

/// A cancel-on-disconnect command as a JSON object (beyond script.md).
fn cod_json(c: &Command) -> String {
    match *c {
        Command::CodArm { session, owner } => Obj::new("cod_arm")
            .raw("session", session)
            .raw("owner", owner)
            .done(),
        Command::CodDisarm { session } => Obj::new("cod_disarm").raw("session", session).done(),
        _ => Obj::new("sessions_lost").done(),
    }
}

/// One command as a script.md JSON object (one line, no newline).
pub fn command_to_script_json(c: &Command) -> String {
    match *c {
        Command::AddInstrument(s) => Obj::new("instrument")
            .raw("id", s.id)
            .str("symbol", s.symbol.as_str())
            .str("base", s.base.as_str())
            .str("quote", s.quote.as_str())
            .raw("tick", s.tick)
            .raw("lot_size", s.lot_size)
            .raw("qty_min", s.qty_min)
            .raw("qty_max", s.qty_max)
            .raw("reference_price", s.reference_price)
            .opt("band_bps", s.band_bps)
            .opt("circuit_bps", s.circuit_bps)
            .raw("circuit_window_ns", s.circuit_window_ns)
            .raw("maker_fee_bps", s.maker_fee_bps)
            .raw("taker_fee_bps", s.taker_fee_bps)
            .raw("fee_account", s.fee_account)
            .raw("settle", s.settle)
            .opt("open_orders_max", s.open_orders_max)
            .opt("notional_max", s.notional_max)
            .done(),
        Command::NewOrder(o) => Obj::new("order")
            .raw("owner", o.owner)
            .raw("instrument", o.instrument)
            .raw("client_order_id", o.client_order_id)
            .str("side", o.side.name())
            .str("type", o.order_type.name())
            .opt("price", o.price)
            .raw("qty", o.qty)
            .str("tif", o.tif.name())
            .raw("post_only", o.post_only)
            .str("stp", o.stp.name())
            .opt("display_qty", o.display_qty)
            .opt("trigger_price", o.trigger_price)
            .opt("expire_at", o.expire_at)
            .done(),
        Command::Cancel { owner, order_id } => Obj::new("cancel")
            .raw("owner", owner)
            .raw("order_id", order_id)
            .done(),
        Command::CancelByClientId {
            owner,
            client_order_id,
        } => Obj::new("cancel")
            .raw("owner", owner)
            .raw("client_order_id", client_order_id)
            .done(),
        Command::Replace {
            owner,
            order_id,
            price,
            qty,
            requeue,
        } => replace_json((owner, order_id), (price, qty), requeue),
        Command::MassCancel {
            owner,
            instrument,
            side,
        } => Obj::new("mass_cancel")
            .raw("owner", owner)
            .opt("instrument", instrument)
            .opt("side", side.map(|s| q(s.name())))
            .done(),
        Command::Halt { instrument } => Obj::new("halt").raw("instrument", instrument).done(),
        Command::Resume { instrument } => Obj::new("resume").raw("instrument", instrument).done(),
        Command::Time { now } => Obj::new("time").raw("now", now).done(),
        Command::QueryBook { instrument, depth } => Obj::new("query_book")
            .raw("instrument", instrument)
            .opt("depth", depth)
            .done(),
        Command::OpenAccount(a) => Obj::new("open_account")
            .raw("id", a.id)
            .raw("owner", a.owner)
            .str("asset", a.asset.as_str())
            .raw(
                "flags",
                flags(
                    a.flags.0,
                    &[
                        (
                            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                            "debits_must_not_exceed_credits",
                        ),
                        (
                            AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
                            "credits_must_not_exceed_debits",
                        ),
                    ],
                ),
            )
            .done(),
        Command::Transfer {
            transfer: t, actor, ..
        } => Obj::new("transfer")
            .raw("id", t.id)
            .raw("debit_account", t.debit_account)
            .raw("credit_account", t.credit_account)
            .raw("amount", t.amount)
            .raw("code", t.code)
            .raw("flags", transfer_flags_json(t.flags.0))
            .raw("pending_id", t.pending_id)
            .raw("timeout_ns", t.timeout_ns)
            .raw("actor", actor_json(&actor))
            .done(),
        Command::QueryBalance { account, actor } => Obj::new("query_balance")
            .raw("account", account)
            .raw("actor", actor_json(&actor))
            .done(),
        Command::QueryOpenOrders { owner, instrument } => {
            let o = Obj::new("query_open_orders").raw("owner", owner);
            match instrument {
                Some(i) => o.raw("instrument", i).done(),
                None => o.done(),
            }
        }
        Command::CodArm { .. } | Command::CodDisarm { .. } | Command::SessionsLost => cod_json(c),
        Command::InstallHistory {
            run,
            through_seq,
            checksum,
        } => Obj::new("install_history")
            .raw("run", run)
            .raw("through_seq", through_seq.0)
            .str("checksum", &format!("{checksum:032x}"))
            .done(),
        // One journaled lookup is one id of the script's `lookup_transfers`.
        Command::LookupTransfer { id, actor } => Obj::new("lookup_transfers")
            .raw("ids", format!("[{id}]"))
            .raw("actor", actor_json(&actor))
            .done(),
        Command::GetAccountTransfers { filter: f, actor } => Obj::new("get_account_transfers")
            .raw("account", f.account)
            .str(
                "by",
                match f.by {
                    engine::history::RangeBy::LedgerSeq => "ledger_seq",
                    engine::history::RangeBy::Time => "time",
                },
            )
            .raw("lo", f.lo)
            .raw("hi", f.hi)
            .raw("limit", f.limit)
            .str("order", if f.newest_first { "newest" } else { "oldest" })
            .raw("actor", actor_json(&actor))
            .done(),
    }
}

/// Turns a stream of inputs into script lines (see the module doc).
#[derive(Debug, Default)]
pub struct ScriptDumper {
    now: u64,
    open_batch_closed: bool,
}

impl ScriptDumper {
    /// A dumper for a script that starts at engine time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines (without newlines) for one input.
    pub fn lines(&mut self, input: &Input) -> Vec<String> {
        let mut out = Vec::new();
        let is_transfer = matches!(input.command, Command::Transfer { .. });
        if input.now.0 > self.now {
            self.now = input.now.0;
            out.push(format!("{{\"cmd\":\"time\",\"now\":{}}}", self.now));
        } else if is_transfer && self.open_batch_closed {
            // Keep two batches apart: a time that does not move.
            out.push(format!("{{\"cmd\":\"time\",\"now\":{}}}", self.now));
        }
        if let Command::Time { now } = input.command {
            self.now = self.now.max(now.0);
        }
        self.open_batch_closed = matches!(
            input.command,
            Command::Transfer {
                batch_end: true,
                ..
            }
        );
        out.push(command_to_script_json(&input.command));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::*;

    #[test]
    fn order_line_matches_the_spec_names() {
        let c = Command::NewOrder(NewOrder {
            owner: OwnerId(7),
            instrument: InstrumentId(1),
            client_order_id: ClientOrderId(11),
            side: Side::Buy,
            order_type: OrderType::Limit,
            price: Some(Price(100)),
            qty: Qty(5),
            tif: Tif::Gtc,
            expire_at: None,
            post_only: false,
            stp: Stp::None,
            display_qty: None,
            trigger_price: None,
        });
        let s = command_to_script_json(&c);
        assert_eq!(
            s,
            r#"{"cmd":"order","owner":7,"instrument":1,"client_order_id":11,"side":"buy","type":"limit","price":100,"qty":5,"tif":"gtc","post_only":false,"stp":"none"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["cmd"], "order");
    }

    #[test]
    fn flags_and_mass_cancel() {
        let c = Command::OpenAccount(AccountSpec {
            id: AccountId(1001),
            owner: OwnerId(7),
            asset: Asset::from_str_code("USD").unwrap(),
            flags: AccountFlags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | 1 << 9),
        });
        assert_eq!(
            command_to_script_json(&c),
            r#"{"cmd":"open_account","id":1001,"owner":7,"asset":"USD","flags":["debits_must_not_exceed_credits","unknown_bit_9"]}"#
        );
        let c = Command::MassCancel {
            owner: OwnerId(7),
            instrument: Some(InstrumentId(1)),
            side: Some(Side::Sell),
        };
        assert_eq!(
            command_to_script_json(&c),
            r#"{"cmd":"mass_cancel","owner":7,"instrument":1,"side":"sell"}"#
        );
    }

    #[test]
    fn time_lines_and_batch_separation() {
        let t = |id: u128, end: bool| Command::Transfer {
            transfer: TransferSpec {
                id: TransferId(id),
                debit_account: AccountId(1),
                credit_account: AccountId(2),
                amount: Amount(3),
                code: 0,
                flags: TransferFlags(0),
                pending_id: TransferId(0),
                timeout_ns: 0,
            },
            batch_end: end,
            actor: Actor::owners(&[OwnerId(4), OwnerId(5)]).unwrap(),
        };
        let mut d = ScriptDumper::new();
        let mk = |seq, now, command| Input {
            seq: Seq(seq),
            now: Timestamp(now),
            command,
        };
        let a = d.lines(&mk(1, 5, t(1, true)));
        let b = d.lines(&mk(2, 5, t(2, false)));
        let c = d.lines(&mk(3, 5, t(3, true)));
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], r#"{"cmd":"time","now":5}"#);
        assert_eq!(b.len(), 2, "a separator between two batches");
        assert_eq!(c.len(), 1, "same batch: no separator");
        assert!(
            c[0].ends_with(r#""timeout_ns":0,"actor":[4,5]}"#),
            "{}",
            c[0]
        );
        let q = Command::QueryBalance {
            account: AccountId(9),
            actor: Actor::Admin,
        };
        assert_eq!(
            command_to_script_json(&q),
            r#"{"cmd":"query_balance","account":9,"actor":"admin"}"#
        );
    }
}
