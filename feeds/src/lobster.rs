//! The LOBSTER oracle: real Nasdaq order flow (message file) replayed as an
//! L3 stream through the `FeedBuilder`, its published L2 rebuilt by a
//! subscriber `BookBuilder`, and compared with the LOBSTER book file row by
//! row (see `../shared/data/README.md`).
//!
//! Mapping: type 1 → `accepted` (a limit order that rests); type 2 →
//! `reduced` (or `canceled` when nothing is left); type 3 → `canceled`;
//! type 4 → `trade` with the resting order as maker; types 5 and 6 → nothing;
//! type 7 → `halted` / `resumed` (price −1 / 1).
//!
//! The two replay rules of the data README:
//! 1. The files start mid-day: the book is seeded from book row 0 as one
//!    anonymous order per level, with message 0 undone (a type-1 message 0
//!    takes its size out of its level's anonymous order and rests under its
//!    own id). Later messages for ids never seen reduce the anonymous order
//!    at their price.
//! 2. A level-N file omits events deeper than level N. When a row differs
//!    from the derived book in exactly this shape — levels 1..N−1 equal, and
//!    the row's N-th level lies beyond the previous row's N-th price — the
//!    N-th level is taken from the book file: the derived levels from there
//!    up to that price are replaced by one anonymous order of the row's size
//!    (it "reveals" depth the file never described).
//!
//! Invariants: a row counts as `exact` when the derived top N equals it with
//! no correction, `revealed` when rule 2 made it equal, `mismatched`
//! otherwise (the side is then re-seeded from the row so later rows stay
//! meaningful). File helpers here read files; the replay itself is pure.

use crate::builder::{FeedBuilder, FeedConfig};
use crate::client::BookBuilder;
use crate::msg::{Channel, Snapshot};
use crate::wire;
use engine::{
    CancelReason, ClientOrderId, Event, HaltReason, InstrumentId, OrderId, OwnerId, Price, Qty,
    Seq, Side,
};
use std::collections::HashMap;
use std::path::Path;

/// Empty ask level price in the book file.
pub const EMPTY_ASK: i64 = 9_999_999_999;
/// Empty bid level price in the book file.
pub const EMPTY_BID: i64 = -9_999_999_999;

/// One row of a message file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LobsterMsg {
    /// Nanoseconds after midnight.
    pub time_ns: u64,
    /// Event type (1–7).
    pub kind: u8,
    /// Order id.
    pub order_id: u64,
    /// Shares.
    pub size: u64,
    /// Dollars × 10 000 (−1, 0, 1 on type 7).
    pub price: i64,
    /// 1 buy order, −1 sell order.
    pub direction: i8,
}

/// A book file: `levels` levels per side, rows flattened
/// (`ask_price_1, ask_size_1, bid_price_1, bid_size_1, ask_price_2, …`).
#[derive(Clone, Debug, Default)]
pub struct BookFile {
    /// Levels per side.
    pub levels: usize,
    /// All rows, flattened (4 × levels values per row).
    pub values: Vec<i64>,
}

impl BookFile {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.values.len() / (4 * self.levels).max(1)
    }

    /// Level `k` (0 = best) of `side` in row `r` as (price, size); `None` when empty.
    pub fn level(&self, r: usize, side: Side, k: usize) -> Option<(u64, u64)> {
        let base = r * 4 * self.levels + 4 * k + if side == Side::Sell { 0 } else { 2 };
        let (p, s) = (self.values[base], self.values[base + 1]);
        if s <= 0 || p == EMPTY_ASK || p == EMPTY_BID || p <= 0 {
            None
        } else {
            Some((p as u64, s as u64))
        }
    }
}

fn parse_time(s: &str) -> Option<u64> {
    let (a, b) = s.split_once('.').unwrap_or((s, ""));
    let secs: u64 = a.parse().ok()?;
    let mut frac = 0u64;
    let mut digits = 0;
    for c in b.bytes().take(9) {
        frac = frac * 10 + (c as char).to_digit(10)? as u64;
        digits += 1;
    }
    for _ in digits..9 {
        frac *= 10;
    }
    Some(secs * 1_000_000_000 + frac)
}

/// What is wrong with a LOBSTER folder or file.
#[derive(Debug, thiserror::Error)]
pub enum LobsterError {
    /// A message line is not six comma-separated numbers of the format.
    #[error("message line {line}: {text:?}")]
    Message {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A book value is not an integer.
    #[error("book line {line}: {value:?} is not an integer")]
    BookValue {
        /// 1-based line number.
        line: usize,
        /// The value.
        value: String,
    },
    /// A book line's column count differs from the first's, or is not 4 per level.
    #[error("book line {line}: {columns} columns")]
    BookColumns {
        /// 1-based line number.
        line: usize,
        /// Its column count.
        columns: usize,
    },
    /// The folder holds no `*_{kind}_{levels}.csv` file.
    #[error("{}: no {kind} file", dir.display())]
    Missing {
        /// The folder.
        dir: std::path::PathBuf,
        /// `message` or `orderbook`.
        kind: &'static str,
    },
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Parses a message file.
pub fn parse_messages(text: &str) -> Result<Vec<LobsterMsg>, LobsterError> {
    let mut out = Vec::with_capacity(text.len() / 40);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || LobsterError::Message {
            line: n + 1,
            text: line.to_string(),
        };
        let mut f = line.split(',');
        let mut next = || f.next().ok_or_else(bad);
        let time_ns = parse_time(next()?).ok_or_else(bad)?;
        let kind: u8 = next()?.trim().parse().map_err(|_| bad())?;
        let order_id: u64 = next()?.trim().parse().map_err(|_| bad())?;
        let size: u64 = next()?.trim().parse().map_err(|_| bad())?;
        let price: i64 = next()?.trim().parse().map_err(|_| bad())?;
        let direction: i8 = next()?.trim().parse().map_err(|_| bad())?;
        out.push(LobsterMsg {
            time_ns,
            kind,
            order_id,
            size,
            price,
            direction,
        });
    }
    Ok(out)
}

/// Parses a book file.
pub fn parse_book(text: &str) -> Result<BookFile, LobsterError> {
    let mut values = Vec::with_capacity(text.len() / 8);
    let mut width = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let before = values.len();
        for v in line.split(',') {
            values.push(
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| LobsterError::BookValue {
                        line: n + 1,
                        value: v.to_string(),
                    })?,
            );
        }
        let w = values.len() - before;
        if width == 0 {
            width = w;
        }
        if w != width || w % 4 != 0 {
            return Err(LobsterError::BookColumns {
                line: n + 1,
                columns: w,
            });
        }
    }
    Ok(BookFile {
        levels: width / 4,
        values,
    })
}

/// Reads `*_message_{n}.csv` and `*_orderbook_{n}.csv` from a folder.
pub fn load_dir(dir: &Path, levels: usize) -> Result<(Vec<LobsterMsg>, BookFile), LobsterError> {
    let mut msg = None;
    let mut book = None;
    let rd = std::fs::read_dir(dir).map_err(|source| LobsterError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(&format!("_message_{levels}.csv")) {
            msg = Some(e.path());
        } else if name.ends_with(&format!("_orderbook_{levels}.csv")) {
            book = Some(e.path());
        }
    }
    let read = |p: Option<std::path::PathBuf>, kind: &'static str| {
        let p = p.ok_or_else(|| LobsterError::Missing {
            dir: dir.to_path_buf(),
            kind,
        })?;
        std::fs::read_to_string(&p).map_err(|source| LobsterError::Io { path: p, source })
    };
    let m = parse_messages(&read(msg, "message")?)?;
    let b = parse_book(&read(book, "orderbook")?)?;
    Ok((m, b))
}

/// What a replay found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Book rows compared.
    pub rows: usize,
    /// Rows equal to the derived book from the messages alone.
    pub exact: usize,
    /// Rows equal once the N-th level was taken from the book file (rule 2).
    pub revealed: usize,
    /// Rows that matched neither way.
    pub mismatched: usize,
    /// The first few mismatches, described.
    pub first_mismatches: Vec<String>,
    /// Messages about ids never seen (rule 1: they reduce anonymous orders).
    pub unknown_ids: u64,
    /// Messages about ids never seen at a price the derived book does not hold (no effect).
    pub ignored: u64,
    /// Levels turned into one anonymous order because an unseen id took more
    /// than their anonymous part (orders added and removed while deeper than N).
    pub collapsed: u64,
    /// Builder anomalies (0 for a consistent stream).
    pub builder_anomalies: u64,
    /// Subscriber book errors (0 when the published L3/L2 are consistent).
    pub client_errors: u64,
    /// Messages the builder published (all channels).
    pub published: u64,
    /// Bytes those messages take on the wire.
    pub wire_bytes: u64,
}

const INST: InstrumentId = InstrumentId(1);
const ANON_BASE: u64 = 1 << 62;

fn side_of(direction: i8) -> Side {
    if direction > 0 {
        Side::Buy
    } else {
        Side::Sell
    }
}

struct Replay {
    b: FeedBuilder,
    l2: BookBuilder,
    seq: u64,
    anon: HashMap<(u8, u64), u64>,
    next_anon: u64,
    report: Report,
    buf: Vec<crate::msg::Message>,
    bytes: Vec<u8>,
    events: Vec<Event>,
}

impl Replay {
    fn new(levels: usize) -> Replay {
        let cfg = FeedConfig {
            depth: levels,
            orders_max: 1 << 16,
            levels_max: 4096,
            instruments_max: 1,
            queue_max: 1 << 12,
        };
        let mut b = FeedBuilder::new(cfg);
        b.add_instrument(INST);
        let mut l2 = BookBuilder::new(INST, Channel::L2, 1 << 12);
        let snap: Snapshot = b.snapshot(INST, Channel::L2);
        l2.on_snapshot(&snap);
        Replay {
            b,
            l2,
            seq: 0,
            anon: HashMap::with_capacity(1024),
            next_anon: ANON_BASE,
            report: Report::default(),
            buf: Vec::with_capacity(1 << 10),
            bytes: Vec::with_capacity(1 << 16),
            events: Vec::with_capacity(64),
        }
    }

    /// Runs the collected events as one input and passes its L2 messages
    /// through the wire to the subscriber.
    fn flush(&mut self) {
        self.seq += 1;
        let seq = Seq(self.seq);
        self.b.begin_input(seq, None);
        for e in self.events.drain(..) {
            self.b.handle_event(seq, &e);
        }
        self.b.end_input(seq);
        self.buf.clear();
        self.b.drain_into(&mut self.buf);
        self.bytes.clear();
        for m in &self.buf {
            wire::encode(m, &mut self.bytes);
        }
        self.report.published += self.buf.len() as u64;
        self.report.wire_bytes += self.bytes.len() as u64;
        let mut at = 0;
        while at < self.bytes.len() {
            let (m, n) = wire::decode(&self.bytes[at..]).expect("own records decode");
            at += n;
            let need = self.l2.on_message(&m);
            assert_eq!(
                need,
                crate::client::Need::Nothing,
                "no gap in a local replay"
            );
        }
    }

    fn accept(&mut self, id: u64, side: Side, price: u64, qty: u64) {
        self.events.push(Event::Accepted {
            order_id: OrderId(id),
            client_order_id: ClientOrderId(0),
            owner: OwnerId(0),
            instrument: INST,
            side,
            price: Some(Price(price)),
            qty: Qty(qty),
        });
    }

    fn add_anon(&mut self, side: Side, price: u64, qty: u64) {
        let id = self.next_anon;
        self.next_anon += 1;
        self.anon.insert((side as u8, price), id);
        self.accept(id, side, price, qty);
        // One input per order: the builder rests an order when the next one starts.
    }

    fn cancel(&mut self, id: u64, (side, price): (Side, u64), qty: u64) {
        self.events.push(Event::Canceled {
            order_id: OrderId(id),
            owner: OwnerId(0),
            side,
            price: Some(Price(price)),
            qty: Qty(qty),
            reason: CancelReason::User,
        });
    }

    /// Takes `size` from resting order `id` (visible `have`), as an execution or a cancel.
    fn take(&mut self, id: u64, side: Side, price: u64, have: u64, size: u64, exec: bool) {
        let x = size.min(have);
        if exec {
            self.events.push(Event::Trade {
                instrument: INST,
                price: Price(price),
                qty: Qty(x),
                maker_order_id: OrderId(id),
                taker_order_id: OrderId(0),
                maker_owner: OwnerId(0),
                taker_owner: OwnerId(0),
                taker_side: side.opposite(),
            });
        } else if x == have {
            self.cancel(id, (side, price), x);
        } else {
            self.events.push(Event::Reduced {
                order_id: OrderId(id),
                owner: OwnerId(0),
                qty: Qty(x),
                reason: CancelReason::User,
            });
        }
        if x == have && id >= ANON_BASE {
            self.anon.remove(&(side as u8, price));
        }
    }

    fn resting(&self, id: u64) -> Option<crate::book::BookOrder> {
        self.b.book(INST).and_then(|bk| bk.get(id))
    }

    fn message(&mut self, m: &LobsterMsg) {
        let side = side_of(m.direction);
        match m.kind {
            1 if m.price > 0 && m.size > 0 => {
                self.accept(m.order_id, side, m.price as u64, m.size);
            }
            2..=4 => {
                let exec = m.kind == 4;
                let price = m.price.max(0) as u64;
                if let Some(o) = self.resting(m.order_id) {
                    let size = if m.kind == 3 { o.qty.0 } else { m.size };
                    self.take(m.order_id, o.side, o.price.0, o.qty.0, size, exec);
                } else {
                    self.report.unknown_ids += 1;
                    let level = self
                        .b
                        .book(INST)
                        .and_then(|bk| bk.side(side).get(Price(price)))
                        .map_or(0, |l| l.qty.0);
                    let anon = self.anon.get(&(side as u8, price)).copied();
                    let have = anon.and_then(|a| self.resting(a)).map_or(0, |o| o.qty.0);
                    if level == 0 {
                        // Depth the file never described.
                        self.report.ignored += 1;
                    } else if have >= m.size {
                        let a = anon.expect("anonymous order");
                        self.take(a, side, price, have, m.size, exec);
                    } else {
                        // The level holds orders the file never showed (added
                        // while the level was deeper than N) and misses some
                        // it did (removed while deeper): only its total is
                        // known. It becomes one anonymous order of that total.
                        self.report.collapsed += 1;
                        let ids = self
                            .b
                            .book(INST)
                            .expect("instrument")
                            .ids_at(side, Price(price));
                        for id in ids {
                            let q = self.resting(id).map_or(0, |o| o.qty.0);
                            self.cancel(id, (side, price), q);
                        }
                        self.anon.remove(&(side as u8, price));
                        self.flush();
                        self.add_anon(side, price, level);
                        self.flush();
                        let a = self.anon[&(side as u8, price)];
                        self.take(a, side, price, level, m.size, exec);
                    }
                }
            }
            7 => match m.price {
                -1 => self.events.push(Event::Halted {
                    instrument: INST,
                    reason: HaltReason::Operator,
                }),
                1 => self.events.push(Event::Resumed { instrument: INST }),
                _ => {}
            },
            _ => {}
        }
        self.flush();
    }

    fn derived(&self, side: Side, k: usize) -> Option<(u64, u64)> {
        self.l2.side(side).nth(k).map(|l| (l.price.0, l.qty.0))
    }

    fn side_equal(&self, book: &BookFile, r: usize, side: Side) -> bool {
        (0..book.levels).all(|k| self.derived(side, k) == book.level(r, side, k))
    }

    /// Removes every order on `side` at derived levels `from..` whose price
    /// is at or better than `limit` (all when `limit` is `None`).
    fn clear_levels(&mut self, side: Side, from: usize, limit: Option<u64>) {
        let bk = self.b.book(INST).expect("instrument");
        let prices: Vec<u64> = bk
            .side(side)
            .iter()
            .skip(from)
            .map(|l| l.price.0)
            .take_while(|&p| {
                limit.is_none_or(|lim| p == lim || crate::book::better(side, Price(p), Price(lim)))
            })
            .collect();
        for p in prices {
            let ids = self
                .b
                .book(INST)
                .expect("instrument")
                .ids_at(side, Price(p));
            for id in ids {
                let q = self.resting(id).map_or(0, |o| o.qty.0);
                self.cancel(id, (side, p), q);
            }
            self.anon.remove(&(side as u8, p));
        }
        self.flush();
    }

    /// Makes `side` equal to row `r` (rule 2 when `reveal`, else a re-seed).
    fn fix_side(&mut self, book: &BookFile, r: usize, side: Side, reveal: bool) {
        let n = book.levels;
        if reveal {
            let (p, s) = book.level(r, side, n - 1).expect("revealed level");
            self.clear_levels(side, n - 1, Some(p));
            self.add_anon(side, p, s);
            self.flush();
        } else {
            let worst = (0..n).rev().find_map(|k| book.level(r, side, k));
            let limit = if book.level(r, side, n - 1).is_some() {
                worst.map(|w| w.0)
            } else {
                None
            };
            self.clear_levels(side, 0, limit);
            for k in 0..n {
                if let Some((p, s)) = book.level(r, side, k) {
                    self.add_anon(side, p, s);
                    self.flush();
                }
            }
        }
    }

    /// Whether row `r` differs from the derived side only in rule 2's shape.
    fn reveal_shape(&self, book: &BookFile, r: usize, side: Side) -> bool {
        let n = book.levels;
        if r == 0 || (0..n - 1).any(|k| self.derived(side, k) != book.level(r, side, k)) {
            return false;
        }
        match (book.level(r - 1, side, n - 1), book.level(r, side, n - 1)) {
            (Some((old, _)), Some((new, _))) => crate::book::better(side, Price(old), Price(new)),
            _ => false,
        }
    }
}

/// Replays `msgs` against `book` (same number of rows) and reports.
pub fn replay(msgs: &[LobsterMsg], book: &BookFile) -> Report {
    let n = book.levels;
    let mut rp = Replay::new(n);
    rp.report.rows = book.rows().min(msgs.len());
    // Rule 1: seed from row 0, message 0 undone.
    for side in [Side::Buy, Side::Sell] {
        for k in 0..n {
            if let Some((p, s)) = book.level(0, side, k) {
                rp.add_anon(side, p, s);
                rp.flush();
            }
        }
    }
    if let Some(m0) = msgs.first().filter(|m| m.kind == 1 && m.price > 0) {
        let side = side_of(m0.direction);
        let p = m0.price as u64;
        if let Some(a) = rp.anon.get(&(side as u8, p)).copied() {
            let have = rp.resting(a).map_or(0, |o| o.qty.0);
            rp.take(a, side, p, have, m0.size, false);
        }
        rp.accept(m0.order_id, side, p, m0.size);
        rp.flush();
    }
    for (r, msg) in msgs.iter().enumerate().take(rp.report.rows) {
        if r > 0 {
            rp.message(msg);
        }
        let mut how = 0; // 0 exact, 1 revealed, 2 mismatched
        for side in [Side::Sell, Side::Buy] {
            if rp.side_equal(book, r, side) {
                continue;
            }
            if rp.reveal_shape(book, r, side) {
                rp.fix_side(book, r, side, true);
                if rp.side_equal(book, r, side) {
                    how = how.max(1);
                    continue;
                }
            }
            how = 2;
            if rp.report.first_mismatches.len() < 10 {
                let d: Vec<_> = (0..n).map(|k| rp.derived(side, k)).collect();
                let w: Vec<_> = (0..n).map(|k| book.level(r, side, k)).collect();
                rp.report.first_mismatches.push(format!(
                    "row {r} ({msg:?}) {side:?}: derived {d:?}, file {w:?}"
                ));
            }
            rp.fix_side(book, r, side, false);
        }
        match how {
            0 => rp.report.exact += 1,
            1 => rp.report.revealed += 1,
            _ => rp.report.mismatched += 1,
        }
    }
    rp.report.builder_anomalies = rp.b.anomalies();
    rp.report.client_errors = rp.l2.errors();
    rp.report
}
