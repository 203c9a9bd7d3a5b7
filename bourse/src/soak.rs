//! `bourse pipeline --soak`: a long, mixed, open-loop run through the real
//! pipeline (producer → ring → engine → journal → durable output) with a
//! report every interval: throughput, latency percentiles of that interval
//! (intended send → durable release, coordinated omission corrected), RSS,
//! journal / archive / snapshot bytes, live state and the count of
//! `capacity_exceeded` so far; then a summary comparing the first and the
//! last interval.
//!
//! The flow (one seeded stream, [`MIX`]): passive GTC limit orders, cancels
//! and replaces of live orders, crossing IOC orders, single-phase transfers
//! between a fixed set of funded accounts, two-phase transfers (pending, then
//! posted or voided; a quarter left to expire), and the rotation of owners
//! (a fresh owner joins, the oldest leaves with a mass cancel) so that the
//! run sees ever more owners and ever more client order ids while the live
//! state stays near its targets.
//!
//! Invariants:
//! - The command stream is a function of the seed alone. The generator
//!   learns which orders are live from the engine's outputs, but applies the
//!   outputs of command `i` only when it generates command `i + lag`
//!   (`SoakConfig::feedback_lag`, and waits for them if they are late), never
//!   earlier, so the timing of outputs never changes a decision. Transfers need no feedback: their ids
//!   are chosen here.
//! - Nothing grows with the run's length on the measuring side: the intended
//!   send times sit in a ring of `2 * lag` entries (at most `lag +
//!   partitions` commands are in flight), the histograms are
//!   fixed, the live-order table holds at most the live orders.
//! - Ids never repeat across runs on one data directory: owner and transfer
//!   ids start above a base derived from the recovered sequence numbers.

use crate::loadgen::load_instrument;
use engine::rng::SplitMix64;
use engine::{
    AccountFlags, AccountId, AccountSpec, Actor, Amount, CancelReason, ClientOrderId, Command,
    Event, InstrumentId, LedgerError, NewOrder, OrderId, OrderType, OwnerId, Price, Qty,
    RejectReason, RejectTarget, Side, Stp, Tif, TransferFlags, TransferId, TransferSpec,
};
use hdrhistogram::Histogram;
use runtime::{OutputReader, SubmitError};
use runtime::{Pipeline, PipelineConfig, PipelineError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Default commands between a command and the first one that sees its
/// outputs: more than the pipeline holds in flight at a sustainable rate
/// (27 ms at 300,000/s), so the generator seldom waits, and few enough that
/// most orders it picks to cancel have not traded away meanwhile.
pub const FEEDBACK_LAG: u64 = 1 << 13;

/// The fixed mix, in percent of commands (owner rotation comes on top, one
/// mass cancel every `owner_every` commands). When a kind cannot apply (no
/// live order to cancel, the live target reached, no pending transfer to
/// resolve) its counterpart is sent instead.
pub const MIX: [(CommandKind, u64); 7] = [
    (CommandKind::Order, 40),
    (CommandKind::Cancel, 20),
    (CommandKind::Replace, 10),
    (CommandKind::Ioc, 8),
    (CommandKind::Transfer, 12),
    (CommandKind::Pending, 6),
    (CommandKind::Resolve, 4),
];

/// One in this many pending transfers gets a timeout and is left to expire.
const EXPIRING_ONE_IN: u64 = 4;
/// Ledger accounts per partition that transfers move money between.
const USER_ACCOUNTS: u64 = 64;
/// The issuer (unconstrained) that funds them.
const ISSUER_ACCOUNT: u128 = 1;
/// What each user account is funded with: no transfer of the run can
/// exhaust it, so no balance reject depends on when a pending one expired.
const FUNDING: u128 = 1 << 60;
/// Reference price of the load instrument; the mid walks within ± this band.
const MID: u64 = 1_000_000;
const MID_BAND: u64 = 5_000;

/// Kinds of command the soak sends (indexes of `Counts::commands`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// Passive GTC limit order (rests).
    Order = 0,
    /// Crossing IOC limit order (trades).
    Ioc,
    /// Cancel of a live order.
    Cancel,
    /// Replace (price and quantity) of a live order.
    Replace,
    /// Mass cancel of a leaving owner.
    MassCancel,
    /// Single-phase transfer.
    Transfer,
    /// Two-phase: pending.
    Pending,
    /// Two-phase: post or void (counted as `post` / `void`).
    Resolve,
    /// Two-phase: void (counted only).
    Void,
}

/// Names of `CommandKind`s in index order (`Resolve` counts posts).
pub const COMMAND_NAMES: [&str; 9] = [
    "order",
    "ioc",
    "cancel",
    "replace",
    "mass_cancel",
    "transfer",
    "pending",
    "post",
    "void",
];

/// Soak settings.
#[derive(Clone, Copy, Debug)]
pub struct SoakConfig {
    /// Offered commands per second (all partitions together).
    pub rate: u64,
    /// Stop offering after this long (`None`: no time limit).
    pub duration: Option<Duration>,
    /// Stop offering after this many commands (`None`: no count limit).
    pub commands: Option<u64>,
    /// Seed of the flow.
    pub seed: u64,
    /// Length of a report interval.
    pub report_every: Duration,
    /// Also print every report as a JSON line.
    pub json: bool,
    /// Target of resting orders per partition.
    pub live_orders: u64,
    /// Target of pending transfers (to be resolved) per partition.
    pub live_pending: u64,
    /// Owners trading at once per partition.
    pub owners_live: u64,
    /// Commands per partition between two owner rotations.
    pub owner_every: u64,
    /// Timeout of the pending transfers left to expire.
    pub expire_after: Duration,
    /// Commands between a command and the first one that sees its outputs
    /// (at most this many, plus one per partition, are in flight).
    pub feedback_lag: u64,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            rate: 100_000,
            duration: Some(Duration::from_secs(60)),
            commands: None,
            seed: 1,
            report_every: Duration::from_secs(60),
            json: false,
            live_orders: 10_000,
            live_pending: 1_000,
            owners_live: 1_024,
            owner_every: 256,
            expire_after: Duration::from_secs(1),
            feedback_lag: FEEDBACK_LAG,
        }
    }
}

/// Everything counted from the outputs (and the commands sent). Reason
/// codes index the arrays directly: every code is below 64 (`named` walks
/// them all, so a test fails loudly the day one is not).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    /// Commands sent, by `CommandKind` index (see `COMMAND_NAMES`).
    pub commands: [u64; 9],
    /// Orders accepted.
    pub accepted: u64,
    /// Rejects by `RejectReason` code.
    pub rejected: [u64; 64],
    /// Rejects of new orders (target: a client order id).
    pub rejected_new: u64,
    /// Trades.
    pub trades: u64,
    /// Cancels by `CancelReason` code.
    pub canceled: [u64; 8],
    /// Replaces that took effect.
    pub replaced: u64,
    /// Transfers that took effect (the setup's included).
    pub transfers_ok: u64,
    /// Transfer rejects by `LedgerError` code.
    pub transfer_rejected: [u64; 64],
    /// Pending transfers that expired.
    pub transfers_expired: u64,
    /// Accounts opened.
    pub accounts_opened: u64,
    /// Account rejects by `LedgerError` code.
    pub account_rejected: [u64; 64],
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            commands: [0; 9],
            accepted: 0,
            rejected: [0; 64],
            rejected_new: 0,
            trades: 0,
            canceled: [0; 8],
            replaced: 0,
            transfers_ok: 0,
            transfer_rejected: [0; 64],
            transfers_expired: 0,
            accounts_opened: 0,
            account_rejected: [0; 64],
        }
    }
}

impl Counts {
    /// Every `capacity_exceeded`: order rejects, transfer and account
    /// rejects, and orders canceled for it.
    pub fn capacity_exceeded(&self) -> u64 {
        self.rejected[RejectReason::CapacityExceeded.code() as usize]
            + self.transfer_rejected[LedgerError::CapacityExceeded.code() as usize]
            + self.account_rejected[LedgerError::CapacityExceeded.code() as usize]
            + self.canceled[CancelReason::CapacityExceeded as usize]
    }

    /// Transfer rejects (all codes).
    pub fn transfers_rejected(&self) -> u64 {
        self.transfer_rejected.iter().sum()
    }

    /// Commands sent (all kinds).
    pub fn commands_sent(&self) -> u64 {
        self.commands.iter().sum()
    }

    fn count(&mut self, e: &Event) {
        match *e {
            Event::Accepted { .. } => self.accepted += 1,
            Event::Rejected { target, reason } => {
                self.rejected[reason.code() as usize] += 1;
                if matches!(target, RejectTarget::ClientOrder(_)) {
                    self.rejected_new += 1;
                }
            }
            Event::Trade { .. } => self.trades += 1,
            Event::Canceled { reason, .. } => self.canceled[reason as usize] += 1,
            Event::Replaced { .. } => self.replaced += 1,
            Event::TransferOk { .. } => self.transfers_ok += 1,
            Event::TransferRejected { reason, .. } => {
                self.transfer_rejected[reason.code() as usize] += 1
            }
            Event::TransferExpired { .. } => self.transfers_expired += 1,
            Event::AccountOpened { .. } => self.accounts_opened += 1,
            Event::AccountRejected { reason, .. } => {
                self.account_rejected[reason.code() as usize] += 1
            }
            _ => {}
        }
    }

    /// The counts by name (non-zero entries only), for reports.
    pub fn named(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (n, c) in COMMAND_NAMES.iter().zip(self.commands) {
            m.insert(format!("sent_{n}"), c);
        }
        m.insert("accepted".into(), self.accepted);
        m.insert("trades".into(), self.trades);
        m.insert("replaced".into(), self.replaced);
        m.insert("transfers_ok".into(), self.transfers_ok);
        m.insert("transfers_expired".into(), self.transfers_expired);
        m.insert("accounts_opened".into(), self.accounts_opened);
        m.insert("capacity_exceeded".into(), self.capacity_exceeded());
        for r in RejectReason::ALL {
            m.insert(
                format!("rejected_{}", r.name()),
                self.rejected[r.code() as usize],
            );
        }
        for r in LedgerError::ALL {
            let (t, a) = (
                self.transfer_rejected[r.code() as usize],
                self.account_rejected[r.code() as usize],
            );
            m.insert(format!("transfer_rejected_{}", r.name()), t);
            m.insert(format!("account_rejected_{}", r.name()), a);
        }
        for r in [
            CancelReason::User,
            CancelReason::IocRemainder,
            CancelReason::Expired,
            CancelReason::Stp,
            CancelReason::MassCancel,
            CancelReason::CircuitBreaker,
            CancelReason::CapacityExceeded,
        ] {
            m.insert(format!("canceled_{}", r.name()), self.canceled[r as usize]);
        }
        m.retain(|_, v| *v != 0);
        m
    }
}

/// One interval's report line.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct IntervalReport {
    /// 1, 2, …
    pub interval: u64,
    /// Seconds since the load began, at the interval's end.
    pub t_s: f64,
    /// The interval's length in seconds (the last one may be short).
    pub seconds: f64,
    /// Commands whose outputs were released in the interval.
    pub completed: u64,
    /// `completed / seconds`.
    pub throughput_per_s: f64,
    /// Latency percentiles of the interval's completions (fresh histogram).
    pub latency_us_p50: f64,
    /// 99th percentile.
    pub latency_us_p99: f64,
    /// 99.9th percentile.
    pub latency_us_p999: f64,
    /// Largest.
    pub latency_us_max: f64,
    /// `VmRSS` of the process (engine included); `None` off Linux.
    pub rss_bytes: Option<u64>,
    /// `RssAnon` of the process; `None` off Linux.
    pub rss_anon_bytes: Option<u64>,
    /// Journal segments (and head) under `p*/`, outside any archive.
    pub journal_bytes: u64,
    /// Files under an `archive` folder of a partition.
    pub archive_bytes: u64,
    /// Snapshot files.
    pub snapshot_bytes: u64,
    /// Bytes of transfer history runs.
    pub history_bytes: u64,
    /// Milliseconds the engine thread spent on its last snapshot (the
    /// largest over partitions; 0 before the first).
    pub snapshot_build_ms_last: f64,
    /// Resting orders the generator knows of (all partitions).
    pub live_orders: u64,
    /// Pending transfers waiting to be posted or voided (all partitions).
    pub live_pending: u64,
    /// Times the inbound ring answered busy in the interval.
    pub busy: u64,
    /// `capacity_exceeded` (all kinds) since the start.
    pub capacity_exceeded_total: u64,
    /// Orders accepted since the start.
    pub accepted_total: u64,
    /// Transfers that took effect since the start.
    pub transfers_ok_total: u64,
}

/// What a soak measured.
#[derive(Debug)]
pub struct SoakSummary {
    /// Every interval, in order (the last may be short).
    pub intervals: Vec<IntervalReport>,
    /// Commands offered (setup excluded).
    pub offered: u64,
    /// Commands whose outputs were released.
    pub completed: u64,
    /// Times the inbound ring answered busy.
    pub busy: u64,
    /// Seconds of offering.
    pub seconds: f64,
    /// Latency over the whole run, ns.
    pub latency: Histogram<u64>,
    /// Counts (setup included in event counts, not in `commands`).
    pub counts: Counts,
    /// Final state hashes per partition.
    pub state_hashes: Vec<u128>,
    /// The configured interval length.
    pub report_every: Duration,
}

impl SoakSummary {
    /// The first and the last full interval (at least 90 % of the configured
    /// length; the first and the last interval when fewer than two are).
    pub fn first_last(&self) -> Option<(&IntervalReport, &IntervalReport)> {
        let full_s = self.report_every.as_secs_f64() * 0.9;
        let full: Vec<_> = self
            .intervals
            .iter()
            .filter(|r| r.seconds >= full_s)
            .collect();
        if full.len() >= 2 {
            Some((full[0], full[full.len() - 1]))
        } else {
            Some((self.intervals.first()?, self.intervals.last()?))
        }
    }

    /// The largest RSS any interval saw.
    pub fn rss_bytes_max(&self) -> Option<u64> {
        self.intervals.iter().filter_map(|r| r.rss_bytes).max()
    }
}

/// A resting order as the generator knows it.
#[derive(Clone, Copy, Debug)]
struct Live {
    id: OrderId,
    owner: OwnerId,
    side: Side,
    remaining: u64,
}

/// An output the generator learns from (applied `feedback_lag` commands late).
#[derive(Clone, Copy, Debug)]
enum Feedback {
    Accepted(Live),
    Traded {
        maker: OrderId,
        taker: OrderId,
        qty: u64,
    },
    Gone(OrderId),
    Replaced {
        id: OrderId,
        qty: u64,
    },
    End,
}

/// A pending transfer to post or void.
#[derive(Clone, Copy, Debug)]
struct Pending {
    id: TransferId,
    debit: AccountId,
    credit: AccountId,
}

/// One trader in the rotating window of owners.
#[derive(Clone, Copy, Debug)]
struct Trader {
    owner: OwnerId,
    next_coid: u64,
}

/// The generator's state for one partition.
#[derive(Debug)]
struct Flow {
    live: Vec<Live>,
    live_at: HashMap<u64, usize>,
    /// Tokens sent here whose outputs are not applied yet, oldest first.
    sent: VecDeque<u64>,
    traders: VecDeque<Trader>,
    /// Owners below this id have left (their orders are mass canceled).
    owner_floor: u64,
    next_owner: u64,
    pending: VecDeque<Pending>,
    mid: u64,
    since_rotation: u64,
}

impl Flow {
    fn new(owner_base: u64, soak: &SoakConfig) -> Self {
        let traders = (0..soak.owners_live.max(1))
            .map(|k| Trader {
                owner: OwnerId(owner_base + k),
                next_coid: 1,
            })
            .collect();
        Flow {
            live: Vec::with_capacity(soak.live_orders as usize * 2),
            live_at: HashMap::with_capacity(soak.live_orders as usize * 2),
            sent: VecDeque::with_capacity(soak.feedback_lag as usize * 2),
            traders,
            owner_floor: owner_base,
            next_owner: owner_base + soak.owners_live.max(1),
            pending: VecDeque::with_capacity(soak.live_pending as usize * 2),
            mid: MID,
            since_rotation: 0,
        }
    }

    fn insert(&mut self, o: Live) {
        if o.remaining > 0 && !self.live_at.contains_key(&o.id.0) {
            self.live_at.insert(o.id.0, self.live.len());
            self.live.push(o);
        }
    }

    fn remove(&mut self, id: OrderId) {
        if let Some(at) = self.live_at.remove(&id.0) {
            self.live.swap_remove(at);
            if let Some(moved) = self.live.get(at) {
                self.live_at.insert(moved.id.0, at);
            }
        }
    }

    fn reduce(&mut self, id: OrderId, qty: u64) {
        if let Some(&at) = self.live_at.get(&id.0) {
            let left = self.live[at].remaining.saturating_sub(qty);
            if left == 0 {
                self.remove(id);
            } else {
                self.live[at].remaining = left;
            }
        }
    }

    /// Applies one output of a command sent `FEEDBACK_LAG` or more ago.
    fn apply(&mut self, f: Feedback) {
        match f {
            Feedback::Accepted(o) => self.insert(o),
            Feedback::Traded { maker, taker, qty } => {
                self.reduce(maker, qty);
                self.reduce(taker, qty);
            }
            Feedback::Gone(id) => self.remove(id),
            Feedback::Replaced { id, qty } => {
                if let Some(&at) = self.live_at.get(&id.0) {
                    self.live[at].remaining = qty;
                }
            }
            Feedback::End => {
                self.sent.pop_front().expect("an End for a sent command");
            }
        }
    }

    /// A live order of an owner still trading, removed from the table when
    /// `take` (it is being canceled); `None` when there is none at hand.
    fn pick(&mut self, rng: &mut SplitMix64, take: bool) -> Option<Live> {
        for _ in 0..4 {
            if self.live.is_empty() {
                return None;
            }
            let o = self.live[rng.below(self.live.len() as u64) as usize];
            // An order of an owner who left is being mass canceled.
            if o.owner.0 < self.owner_floor || take {
                self.remove(o.id);
            }
            if o.owner.0 >= self.owner_floor {
                return Some(o);
            }
        }
        None
    }

    /// The next command for this partition (token `token`, transfer ids
    /// `id_base + token`).
    fn next(
        &mut self,
        rng: &mut SplitMix64,
        soak: &SoakConfig,
        token: u64,
        id_base: u64,
    ) -> (Command, CommandKind) {
        self.since_rotation += 1;
        if self.since_rotation >= soak.owner_every.max(1) {
            self.since_rotation = 0;
            return self.rotate();
        }
        if rng.below(100) == 0 {
            // A slow walk: passive orders seldom end up crossing.
            self.mid = (self.mid + rng.below(7))
                .saturating_sub(3)
                .clamp(MID - MID_BAND, MID + MID_BAND);
        }
        let mut roll = rng.below(100);
        let mut kind = CommandKind::Order;
        for (k, pct) in MIX {
            if roll < pct {
                kind = k;
                break;
            }
            roll -= pct;
        }
        let tid = TransferId(u128::from(id_base) + u128::from(token));
        match kind {
            CommandKind::Order | CommandKind::Cancel | CommandKind::Replace => {
                self.order_flow(rng, soak, kind)
            }
            CommandKind::Ioc => (self.new_order(rng, true), CommandKind::Ioc),
            CommandKind::Transfer => (transfer(rng, tid), CommandKind::Transfer),
            _ => self.two_phase(rng, soak, kind, tid),
        }
    }

    fn rotate(&mut self) -> (Command, CommandKind) {
        let gone = self.traders.pop_front().expect("owners_live ≥ 1");
        self.owner_floor = gone.owner.0 + 1;
        self.traders.push_back(Trader {
            owner: OwnerId(self.next_owner),
            next_coid: 1,
        });
        self.next_owner += 1;
        let c = Command::MassCancel {
            owner: gone.owner,
            instrument: None,
            side: None,
        };
        (c, CommandKind::MassCancel)
    }

    /// New GTC order, cancel or replace, keeping the live orders near the target.
    fn order_flow(
        &mut self,
        rng: &mut SplitMix64,
        soak: &SoakConfig,
        kind: CommandKind,
    ) -> (Command, CommandKind) {
        // Against the orders known to rest: those sent meanwhile may trade
        // away, so the book holds up to `feedback_lag` × 40 % more.
        let kind = match kind {
            CommandKind::Order if self.live.len() as u64 >= soak.live_orders => CommandKind::Cancel,
            k => k,
        };
        let target = match kind {
            CommandKind::Cancel | CommandKind::Replace => {
                self.pick(rng, kind == CommandKind::Cancel)
            }
            _ => None,
        };
        match (kind, target) {
            (CommandKind::Cancel, Some(o)) => {
                let c = Command::Cancel {
                    owner: o.owner,
                    order_id: o.id,
                };
                (c, CommandKind::Cancel)
            }
            (CommandKind::Replace, Some(o)) => {
                let c = Command::Replace {
                    owner: o.owner,
                    order_id: o.id,
                    price: Some(Price(self.passive_price(rng, o.side))),
                    qty: Some(Qty(1 + rng.below(100))),
                    requeue: false,
                };
                (c, CommandKind::Replace)
            }
            _ => (self.new_order(rng, false), CommandKind::Order),
        }
    }

    fn passive_price(&self, rng: &mut SplitMix64, side: Side) -> u64 {
        let off = 1 + rng.below(50);
        match side {
            Side::Buy => self.mid - off,
            Side::Sell => self.mid + off,
        }
    }

    /// A passive GTC order, or a crossing IOC one, from a trader still here.
    fn new_order(&mut self, rng: &mut SplitMix64, ioc: bool) -> Command {
        let t = rng.below(self.traders.len() as u64) as usize;
        let trader = &mut self.traders[t];
        let (owner, coid) = (trader.owner, trader.next_coid);
        trader.next_coid += 1;
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let price = if ioc {
            // Across the spread: takes what rests within 10 ticks.
            match side {
                Side::Buy => self.mid + 10,
                Side::Sell => self.mid - 10,
            }
        } else {
            self.passive_price(rng, side)
        };
        Command::NewOrder(NewOrder {
            owner,
            instrument: InstrumentId(1),
            client_order_id: ClientOrderId(coid),
            side,
            order_type: OrderType::Limit,
            price: Some(Price(price)),
            qty: Qty(1 + rng.below(if ioc { 50 } else { 100 })),
            tif: if ioc { Tif::Ioc } else { Tif::Gtc },
            expire_at: None,
            post_only: false,
            stp: Stp::None,
            display_qty: None,
            trigger_price: None,
        })
    }

    /// A pending transfer, or the post / void of the oldest one, keeping the
    /// pending ones near the target.
    fn two_phase(
        &mut self,
        rng: &mut SplitMix64,
        soak: &SoakConfig,
        kind: CommandKind,
        id: TransferId,
    ) -> (Command, CommandKind) {
        let resolve = match kind {
            CommandKind::Pending => self.pending.len() as u64 >= soak.live_pending,
            _ => !self.pending.is_empty(),
        };
        if resolve {
            let p = self.pending.pop_front().expect("a pending transfer");
            let post = rng.below(2) == 0;
            let flags = if post {
                TransferFlags::POST_PENDING
            } else {
                TransferFlags::VOID_PENDING
            };
            let spec = TransferSpec {
                id,
                debit_account: p.debit,
                credit_account: p.credit,
                amount: Amount(0),
                code: 2,
                flags: TransferFlags(flags),
                pending_id: p.id,
                timeout_ns: 0,
            };
            let kind = if post {
                CommandKind::Resolve
            } else {
                CommandKind::Void
            };
            return (transfer_command(spec), kind);
        }
        let Command::Transfer { mut transfer, .. } = transfer(rng, id) else {
            unreachable!("transfer() makes a transfer")
        };
        transfer.flags = TransferFlags(TransferFlags::PENDING);
        if rng.below(EXPIRING_ONE_IN) == 0 {
            transfer.timeout_ns = soak.expire_after.as_nanos().max(1) as u64;
        } else {
            self.pending.push_back(Pending {
                id,
                debit: transfer.debit_account,
                credit: transfer.credit_account,
            });
        }
        (transfer_command(transfer), CommandKind::Pending)
    }
}

fn user_account(k: u64) -> AccountId {
    AccountId(ISSUER_ACCOUNT + 1 + u128::from(k % USER_ACCOUNTS))
}

/// A single-phase transfer between two different user accounts.
fn transfer(rng: &mut SplitMix64, id: TransferId) -> Command {
    let from = rng.below(USER_ACCOUNTS);
    let to = from + 1 + rng.below(USER_ACCOUNTS - 1);
    transfer_command(TransferSpec {
        id,
        debit_account: user_account(from),
        credit_account: user_account(to),
        amount: Amount(u128::from(1 + rng.below(1_000))),
        code: 1,
        flags: TransferFlags(0),
        pending_id: TransferId(0),
        timeout_ns: 0,
    })
}

fn transfer_command(transfer: TransferSpec) -> Command {
    Command::Transfer {
        transfer,
        batch_end: true,
        actor: Actor::Admin,
    }
}

/// The setup of one partition: the instrument, the accounts, their funding
/// (transfer ids `id_base + 1 + k`, below every load token's).
fn setup_commands(id_base: u64) -> Vec<Command> {
    let usd = load_instrument().quote;
    let mut v = vec![Command::AddInstrument(load_instrument())];
    let open = |id: AccountId, flags: u16| {
        Command::OpenAccount(AccountSpec {
            id,
            owner: OwnerId(0),
            asset: usd,
            flags: AccountFlags(flags),
        })
    };
    v.push(open(AccountId(ISSUER_ACCOUNT), 0));
    for k in 0..USER_ACCOUNTS {
        v.push(open(
            user_account(k),
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        ));
    }
    for k in 0..USER_ACCOUNTS {
        v.push(transfer_command(TransferSpec {
            id: TransferId(u128::from(id_base) + 1 + u128::from(k)),
            debit_account: AccountId(ISSUER_ACCOUNT),
            credit_account: user_account(k),
            amount: Amount(FUNDING),
            code: 0,
            flags: TransferFlags(0),
            pending_id: TransferId(0),
            timeout_ns: 0,
        }));
    }
    v
}

/// Bytes of a data directory's partitions by kind of file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataBytes {
    /// Journal segments and the head file, outside any archive.
    pub journal: u64,
    /// Everything under an archive folder.
    pub archive: u64,
    /// Snapshot files.
    pub snapshot: u64,
    /// Transfer history runs (`history/`).
    pub history: u64,
}

/// Whether a path inside a partition folder is archived journal: anything
/// under the retention's archive folder (`journal::ARCHIVE_DIR`,
/// matched at any depth should it ever move down a level).
pub fn is_archive(relative: &Path) -> bool {
    relative
        .components()
        .any(|c| c.as_os_str() == journal::ARCHIVE_DIR)
}

/// Sums the files under `data_dir/p*/` by kind (unreadable entries count 0:
/// a file may vanish between listing and reading, e.g. an old snapshot).
pub fn data_bytes(data_dir: &Path) -> DataBytes {
    let mut b = DataBytes::default();
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return b;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let is_partition = name
            .to_str()
            .and_then(|n| n.strip_prefix('p'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
        if is_partition && e.path().is_dir() {
            add_tree(&e.path(), Path::new(""), &mut b);
        }
    }
    b
}

fn add_tree(root: &Path, rel: &Path, b: &mut DataBytes) {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in entries.flatten() {
        let rel = rel.join(e.file_name());
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            add_tree(root, &rel, b);
            continue;
        }
        let name = e.file_name();
        let name = name.to_string_lossy();
        if is_archive(&rel) {
            b.archive += meta.len();
        } else if rel.starts_with(journal::history::HISTORY_DIR) {
            b.history += meta.len();
        } else if name.starts_with("snapshot-") {
            b.snapshot += meta.len();
        } else if name.starts_with("journal") {
            b.journal += meta.len();
        }
    }
}

/// `VmRSS` and `RssAnon` of this process in bytes (`None` where
/// `/proc/self/status` does not exist or lacks the line).
pub fn rss_bytes() -> (Option<u64>, Option<u64>) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmRSS:"), field("RssAnon:"))
}

/// Drains the outputs, measures, counts, buffers the feedback and writes
/// the interval reports.
struct Meter<'o, W: Write> {
    readers: Vec<OutputReader>,
    /// Per partition: the runtime's counters (the last snapshot's build time).
    shared: Vec<std::sync::Arc<runtime::Shared>>,
    start: Instant,
    /// Intended send time by `token & mask` (load tokens only).
    intended: Vec<u64>,
    mask: u64,
    first_token: u64,
    feedback: Vec<VecDeque<(u64, Feedback)>>,
    /// Per partition: the newest token whose last output arrived.
    ended: Vec<u64>,
    interval: Histogram<u64>,
    total: Histogram<u64>,
    counts: Counts,
    completed: u64,
    interval_completed: u64,
    busy: u64,
    interval_busy: u64,
    reports: Vec<IntervalReport>,
    begin_ns: u64,
    last_report_ns: u64,
    next_report_ns: u64,
    soak: SoakConfig,
    data_dir: std::path::PathBuf,
    out: &'o mut W,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("histogram bounds")
}

impl<'o, W: Write> Meter<'o, W> {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Takes every output released so far; whether there was any.
    fn pump(&mut self) -> bool {
        let mut any = false;
        for p in 0..self.readers.len() {
            loop {
                let Some(o) = self.readers[p].poll() else {
                    break;
                };
                any = true;
                let (token, load) = (o.token, o.token >= self.first_token);
                for e in o.events() {
                    self.counts.count(e);
                    if let (true, Some(f)) = (load, feedback_of(e)) {
                        self.feedback[p].push_back((token, f));
                    }
                }
                drop(o);
                if token != 0 {
                    self.ended[p] = token;
                    if load {
                        self.complete(token);
                        self.feedback[p].push_back((token, Feedback::End));
                    }
                }
            }
        }
        any
    }

    fn complete(&mut self, token: u64) {
        let sent = self.intended[(token & self.mask) as usize];
        let lat = self.now_ns().saturating_sub(sent).max(1);
        let _ = self.interval.record(lat);
        let _ = self.total.record(lat);
        self.completed += 1;
        self.interval_completed += 1;
    }

    fn report_due(&self) -> bool {
        self.now_ns() >= self.next_report_ns
    }

    /// Closes the current interval: one line (and a JSON line).
    fn report(&mut self, flows: &[Flow]) {
        let now = self.now_ns();
        let seconds = (now - self.last_report_ns) as f64 / 1e9;
        let (rss, anon) = rss_bytes();
        let bytes = data_bytes(&self.data_dir);
        let us = |v: u64| v as f64 / 1000.0;
        let h = &self.interval;
        let r = IntervalReport {
            interval: self.reports.len() as u64 + 1,
            t_s: (now - self.begin_ns) as f64 / 1e9,
            seconds,
            completed: self.interval_completed,
            throughput_per_s: self.interval_completed as f64 / seconds.max(1e-9),
            latency_us_p50: us(h.value_at_quantile(0.5)),
            latency_us_p99: us(h.value_at_quantile(0.99)),
            latency_us_p999: us(h.value_at_quantile(0.999)),
            latency_us_max: us(h.max()),
            rss_bytes: rss,
            rss_anon_bytes: anon,
            journal_bytes: bytes.journal,
            archive_bytes: bytes.archive,
            snapshot_bytes: bytes.snapshot,
            history_bytes: bytes.history,
            snapshot_build_ms_last: self
                .shared
                .iter()
                .map(|s| s.counters.snapshot_build_ns_last.get() as f64 / 1e6)
                .fold(0.0, f64::max),
            live_orders: flows.iter().map(|f| f.live.len() as u64).sum(),
            live_pending: flows.iter().map(|f| f.pending.len() as u64).sum(),
            busy: self.interval_busy,
            capacity_exceeded_total: self.counts.capacity_exceeded(),
            accepted_total: self.counts.accepted,
            transfers_ok_total: self.counts.transfers_ok,
        };
        let _ = writeln!(self.out, "{}", interval_line(&r));
        if self.soak.json {
            let _ = writeln!(
                self.out,
                "{}",
                serde_json::to_string(&r).expect("report JSON")
            );
        }
        let _ = self.out.flush();
        self.reports.push(r);
        self.interval.reset();
        self.interval_completed = 0;
        self.interval_busy = 0;
        self.last_report_ns = now;
        self.next_report_ns = now + self.soak.report_every.as_nanos().max(1) as u64;
    }

    /// Pumps once; reports if an interval ended; spins briefly when idle.
    fn step(&mut self, flows: &[Flow]) {
        if !self.pump() {
            std::hint::spin_loop();
        }
        if self.report_due() {
            self.report(flows);
        }
    }
}

/// What the generator needs to learn from an event.
fn feedback_of(e: &Event) -> Option<Feedback> {
    Some(match *e {
        Event::Accepted {
            order_id,
            owner,
            side,
            qty,
            ..
        } => Feedback::Accepted(Live {
            id: order_id,
            owner,
            side,
            remaining: qty.0,
        }),
        Event::Trade {
            maker_order_id,
            taker_order_id,
            qty,
            ..
        } => Feedback::Traded {
            maker: maker_order_id,
            taker: taker_order_id,
            qty: qty.0,
        },
        // Order id 0 is never handed out: a reduction touches one order.
        Event::Reduced { order_id, qty, .. } => Feedback::Traded {
            maker: order_id,
            taker: OrderId(0),
            qty: qty.0,
        },
        Event::Canceled { order_id, .. } => Feedback::Gone(order_id),
        Event::Replaced { order_id, qty, .. } => Feedback::Replaced {
            id: order_id,
            qty: qty.0,
        },
        _ => return None,
    })
}

fn mib(b: Option<u64>) -> String {
    b.map_or("n/a".into(), |b| {
        format!("{:.1}", b as f64 / (1 << 20) as f64)
    })
}

/// The human form of an interval report.
pub fn interval_line(r: &IntervalReport) -> String {
    format!(
        "soak interval {} t {:.1} s | {} done, {:.0}/s | latency µs p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} | rss MiB {} anon {} | journal MiB {} archive {} snapshot {} (last build {:.0} ms) history {} | live orders {} pending {} | busy {} | capacity_exceeded {}",
        r.interval,
        r.t_s,
        r.completed,
        r.throughput_per_s,
        r.latency_us_p50,
        r.latency_us_p99,
        r.latency_us_p999,
        r.latency_us_max,
        mib(r.rss_bytes),
        mib(r.rss_anon_bytes),
        mib(Some(r.journal_bytes)),
        mib(Some(r.archive_bytes)),
        mib(Some(r.snapshot_bytes)),
        r.snapshot_build_ms_last,
        mib(Some(r.history_bytes)),
        r.live_orders,
        r.live_pending,
        r.busy,
        r.capacity_exceeded_total,
    )
}

/// Before generating `token` for partition `p`: applies every output of the
/// commands sent there up to `token - lag`, waiting for late ones.
fn catch_up<W: Write>(meter: &mut Meter<'_, W>, flows: &mut [Flow], p: usize, token: u64) {
    let Some(upto) = token.checked_sub(meter.soak.feedback_lag) else {
        return;
    };
    while let Some(&t) = flows[p].sent.front() {
        if t > upto {
            break;
        }
        while meter.ended[p] < t {
            meter.step(flows);
        }
        while let Some(&(ft, f)) = meter.feedback[p].front() {
            if ft > t {
                break;
            }
            meter.feedback[p].pop_front();
            flows[p].apply(f);
        }
    }
}

/// Opens the pipeline, sets up the instrument and the accounts, offers the
/// mixed flow until `commands` or `duration`, drains, shuts down (final
/// snapshot) and summarizes. Reports go to `out` as they happen.
pub fn run_soak(
    cfg: &PipelineConfig,
    soak: SoakConfig,
    out: &mut impl Write,
) -> Result<SoakSummary, PipelineError> {
    let pipeline = Pipeline::open(cfg)?;
    crate::loadgen::announce_recovered(&pipeline, out);
    crate::loadgen::keep_off_engine_cores(&pipeline);
    let parts = pipeline.runtime().partitions();
    // Every run's owner and transfer ids lie above the previous runs'
    // (each input took at most one of each; a window of owners is extra).
    let recovered: u64 = pipeline.recovered().iter().map(|r| r.last_seq).sum();
    let id_base = recovered * (soak.owners_live.max(1) + 1) + 1;
    let setup = setup_commands(id_base);
    let first_token = (setup.len() * parts) as u64 + 1;
    let soak = SoakConfig {
        feedback_lag: soak.feedback_lag.max(parts as u64),
        ..soak
    };
    let ring = (2 * soak.feedback_lag).next_power_of_two();
    let mut meter = Meter {
        readers: (0..parts).map(|p| pipeline.runtime().reader(p)).collect(),
        shared: (0..parts)
            .map(|p| pipeline.runtime().shared(p).clone())
            .collect(),
        start: Instant::now(),
        intended: vec![0; ring as usize],
        mask: ring - 1,
        first_token,
        feedback: (0..parts)
            .map(|_| VecDeque::with_capacity(soak.feedback_lag as usize * 4))
            .collect(),
        ended: vec![0; parts],
        interval: histogram(),
        total: histogram(),
        counts: Counts::default(),
        completed: 0,
        interval_completed: 0,
        busy: 0,
        interval_busy: 0,
        reports: Vec::new(),
        begin_ns: 0,
        last_report_ns: 0,
        next_report_ns: u64::MAX,
        soak,
        data_dir: cfg.data_dir.clone(),
        out,
    };
    // Partitions are separate engines: the same owner ids serve each.
    let mut flows: Vec<Flow> = (0..parts).map(|_| Flow::new(id_base, &soak)).collect();
    run_setup(&pipeline, &mut meter, &setup);
    let (offered, seconds) = offer(&pipeline, &mut meter, &mut flows, id_base);
    // Drain: every offered command's outputs (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    while meter.completed < offered && Instant::now() < deadline {
        meter.step(&flows);
    }
    if meter.interval_completed > 0 || meter.reports.is_empty() {
        meter.report(&flows);
    }
    let state_hashes = pipeline.shutdown();
    Ok(SoakSummary {
        intervals: std::mem::take(&mut meter.reports),
        offered,
        completed: meter.completed,
        busy: meter.busy,
        seconds,
        latency: meter.total.clone(),
        counts: meter.counts.clone(),
        state_hashes,
        report_every: soak.report_every,
    })
}

/// Sends the setup to every partition (tokens `1..first_token`) and waits
/// for all of it; not timed.
fn run_setup<W: Write>(pipeline: &Pipeline, meter: &mut Meter<'_, W>, setup: &[Command]) {
    let mut token = 1u64;
    for p in 0..pipeline.runtime().partitions() {
        for &c in setup {
            while let Err(e) = pipeline.runtime().submit(p, token, c) {
                match e {
                    SubmitError::Busy => {
                        meter.pump();
                    }
                    e => panic!("soak setup: {e}"),
                }
            }
            token += 1;
        }
    }
    for p in 0..pipeline.runtime().partitions() {
        let last = (p as u64 + 1) * setup.len() as u64;
        while meter.ended[p] < last {
            if !meter.pump() {
                std::thread::yield_now();
            }
        }
    }
}

/// The open loop: command `k` is due at `k / rate` seconds; returns the
/// commands offered and the seconds it took.
fn offer<W: Write>(
    pipeline: &Pipeline,
    meter: &mut Meter<'_, W>,
    flows: &mut [Flow],
    id_base: u64,
) -> (u64, f64) {
    let soak = meter.soak;
    let parts = flows.len() as u64;
    let interval_ns = 1e9 / soak.rate.max(1) as f64;
    let mut rng = SplitMix64(soak.seed);
    let begin = meter.now_ns();
    meter.begin_ns = begin;
    meter.last_report_ns = begin;
    meter.next_report_ns = begin + soak.report_every.as_nanos().max(1) as u64;
    let end = soak.duration.map(|d| begin + d.as_nanos() as u64);
    let mut k = 0u64;
    loop {
        let due = begin + (k as f64 * interval_ns) as u64;
        if soak.commands.is_some_and(|n| k >= n) || end.is_some_and(|e| due > e) {
            break;
        }
        while meter.now_ns() < due {
            meter.step(flows);
        }
        let token = meter.first_token + k;
        let p = (k % parts) as usize;
        catch_up(meter, flows, p, token);
        let (command, kind) = flows[p].next(&mut rng, &soak, token, id_base);
        flows[p].sent.push_back(token);
        meter.intended[(token & meter.mask) as usize] = due;
        meter.counts.commands[kind as usize] += 1;
        while let Err(e) = pipeline.runtime().submit(p, token, command) {
            match e {
                SubmitError::Busy => {
                    meter.busy += 1;
                    meter.interval_busy += 1;
                    meter.step(flows);
                }
                e => panic!("soak: {e}"),
            }
        }
        k += 1;
    }
    (k, (meter.now_ns() - begin) as f64 / 1e9)
}

/// The summary: totals, first against last interval, the largest RSS and
/// every non-zero count (and a JSON line with `json`).
pub fn write_summary(s: &SoakSummary, json: bool, out: &mut impl Write) {
    let _ = writeln!(
        out,
        "soak summary | offered {} in {:.1} s ({:.0}/s) | completed {} | busy {} | latency µs p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1} | max rss MiB {}",
        s.offered,
        s.seconds,
        s.offered as f64 / s.seconds.max(1e-9),
        s.completed,
        s.busy,
        s.latency.value_at_quantile(0.5) as f64 / 1e3,
        s.latency.value_at_quantile(0.99) as f64 / 1e3,
        s.latency.value_at_quantile(0.999) as f64 / 1e3,
        s.latency.max() as f64 / 1e3,
        mib(s.rss_bytes_max()),
    );
    let ratios = s.first_last().map(|(f, l)| {
        (
            f.interval,
            l.interval,
            l.throughput_per_s / f.throughput_per_s.max(1e-9),
            l.latency_us_p99 / f.latency_us_p99.max(1e-9),
        )
    });
    if let Some((f, l, tput, p99)) = ratios {
        let _ = writeln!(
            out,
            "soak first interval {f} vs last {l}: throughput ratio {tput:.3} | p99 ratio {p99:.3}"
        );
    }
    let named = s.counts.named();
    let counts: Vec<String> = named.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "soak counts: {}", counts.join(" "));
    for (i, h) in s.state_hashes.iter().enumerate() {
        let _ = writeln!(out, "p{i} state hash after shutdown: {h:032x}");
    }
    if json {
        let v = serde_json::json!({
            "summary": {
                "offered": s.offered,
                "completed": s.completed,
                "busy": s.busy,
                "seconds": s.seconds,
                "intervals": s.intervals.len(),
                "rss_bytes_max": s.rss_bytes_max(),
                "throughput_ratio_last_first": ratios.map(|r| r.2),
                "p99_ratio_last_first": ratios.map(|r| r.3),
                "latency_us_p99": s.latency.value_at_quantile(0.99) as f64 / 1e3,
                "counts": named,
            }
        });
        let _ = writeln!(out, "{v}");
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_any_folder_named_archive_inside_a_partition() {
        for (path, archived) in [
            ("journal-00000000000000000001.seg", false),
            ("archive/journal-00000000000000000001.seg", true),
            ("journal/archive/journal-00000000000000000001.seg", true),
            ("damaged/journal-00000000000000000001.seg.0.tail", false),
            ("archived.seg", false),
        ] {
            assert_eq!(is_archive(Path::new(path)), archived, "{path}");
        }
    }

    #[test]
    fn data_bytes_sums_partitions_by_kind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files: [(&str, usize); 9] = [
            ("p0/journal-00000000000000000001.seg", 4096),
            ("p0/history/run-00000000000000000001.bhr", 300),
            ("p0/journal.head", 33),
            ("p0/snapshot-00000000000000000009.snap", 100),
            ("p0/archive/journal-00000000000000000000.seg", 8192),
            ("p1/journal/archive/journal-00000000000000000002.seg", 10),
            ("p1/damaged/x.tail", 7),
            ("bourse.lock", 5),
            ("px/journal-00000000000000000001.seg", 3),
        ];
        for (path, len) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, vec![0u8; len]).unwrap();
        }
        let b = data_bytes(dir.path());
        assert_eq!(
            b,
            DataBytes {
                journal: 4096 + 33,
                archive: 8192 + 10,
                snapshot: 100,
                history: 300,
            }
        );
        assert_eq!(data_bytes(&dir.path().join("absent")), DataBytes::default());
    }

    #[test]
    fn rss_is_read_on_linux_only() {
        let (rss, anon) = rss_bytes();
        if cfg!(target_os = "linux") {
            let (rss, anon) = (rss.expect("VmRSS"), anon.expect("RssAnon"));
            assert!(rss >= anon && anon > 0, "{rss} {anon}");
        } else {
            assert_eq!((rss, anon), (None, None));
        }
    }

    #[test]
    fn capacity_exceeded_sums_every_kind() {
        let mut c = Counts::default();
        let events = [
            Event::Rejected {
                target: RejectTarget::ClientOrder(ClientOrderId(1)),
                reason: RejectReason::CapacityExceeded,
            },
            Event::Rejected {
                target: RejectTarget::Order(OrderId(1)),
                reason: RejectReason::UnknownOrder,
            },
            Event::TransferRejected {
                id: TransferId(1),
                reason: LedgerError::CapacityExceeded,
            },
            Event::AccountRejected {
                id: AccountId(1),
                reason: LedgerError::CapacityExceeded,
            },
            Event::Canceled {
                order_id: OrderId(2),
                owner: OwnerId(1),
                side: Side::Buy,
                price: Some(Price(100)),
                qty: Qty(1),
                reason: CancelReason::CapacityExceeded,
            },
        ];
        for e in &events {
            c.count(e);
        }
        assert_eq!(c.capacity_exceeded(), 4);
        assert_eq!(c.rejected_new, 1);
        let named = c.named();
        assert_eq!(named["capacity_exceeded"], 4);
        assert_eq!(named["rejected_unknown_order"], 1);
        assert_eq!(named["transfer_rejected_capacity_exceeded"], 1);
        assert!(!named.contains_key("accepted"), "zero counts are left out");
    }
}
