//! `bourse demo`: the first thing to run after cloning. Starts the server
//! in-process (temporary data directory unless one is given), a few
//! simulated traders placing, replacing and cancelling orders around a
//! drifting mid on BTC-USD and ETH-USD (crossing now and then), a payments
//! client moving money between the demo accounts, and an observer session
//! that rebuilds the books from the execution reports. A terminal view
//! (books, last trades, throughput, latency percentiles; `ratatui` widgets
//! through `crate::tui`, following resizes) is redrawn about four times a
//! second for the duration, then a summary is printed below it and
//! everything shuts down cleanly (final snapshot included).
//!
//! With `tui: false` (`--no-tui`) one summary line per second is printed
//! instead, for CI logs and terminals without ANSI support.
//!
//! Invariants: every participant is an ordinary QUIC client of the real
//! server (the demo takes no shortcut through the engine); the view only
//! reads what the sessions received; the run always ends with the server's
//! orderly shutdown.

use crate::bench::{histogram, in_process_server, io_path, io_step, RunError};
use crate::tui::Screen;
use engine::rng::SplitMix64;
use gateway::client::{Client, ClientConfig, Reply};
use gateway::wire::{self, exec_type, ord_status, NewOrderMsg, TransferRecord};
use hdrhistogram::Histogram;
use journal::Durability;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Widget};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Data directory (else a temporary one, removed afterwards).
    pub data_dir: Option<PathBuf>,
    /// How long to run.
    pub duration: Duration,
    /// Simulated traders (one QUIC session each).
    pub traders: usize,
    /// Messages per second per trader.
    pub trader_rate: u64,
    /// Redraw a terminal view (else one line per second).
    pub tui: bool,
    /// Durability of the server.
    pub durability: Durability,
    /// Seed of the traders' behaviour.
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            data_dir: None,
            duration: Duration::from_secs(20),
            traders: 4,
            trader_rate: 100,
            tui: true,
            durability: Durability::Durable,
            seed: 1,
        }
    }
}

/// What the demo did.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// Seconds run.
    pub seconds: f64,
    /// Order requests sent (new, cancel, replace).
    pub orders: u64,
    /// Order requests answered.
    pub acks: u64,
    /// Trades (taker fills).
    pub trades: u64,
    /// Transfers that succeeded.
    pub transfers_ok: u64,
    /// Transfers refused by the ledger.
    pub transfers_failed: u64,
    /// Order → first report, ns.
    pub ack_latency: Histogram<u64>,
}

const SYMBOLS: [&str; 2] = ["BTC-USD", "ETH-USD"];

struct State {
    mids: [u64; 2],
    orders: u64,
    acks: u64,
    trades: u64,
    transfers_ok: u64,
    transfers_failed: u64,
    ack: Histogram<u64>,
    last_trades: VecDeque<(u32, u8, u64, u64)>,
    /// The observer's view of resting orders: id → (instrument, side, price, leaves).
    book: HashMap<u64, (u32, u8, u64, u64)>,
    stop: bool,
}

impl State {
    fn new() -> Self {
        State {
            mids: [60_000, 3_000],
            orders: 0,
            acks: 0,
            trades: 0,
            transfers_ok: 0,
            transfers_failed: 0,
            ack: histogram(),
            last_trades: VecDeque::new(),
            book: HashMap::new(),
            stop: false,
        }
    }
}

async fn trader(mut c: Client, k: usize, cfg: DemoConfig, st: Rc<RefCell<State>>) {
    let mut rng = SplitMix64(cfg.seed ^ (k as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let owner = 1 + (k as u64 % 3);
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut resting: VecDeque<(u64, u32)> = VecDeque::new();
    let mut coid = (k as u64) << 40;
    let period = Duration::from_nanos(1_000_000_000 / cfg.trader_rate.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if st.borrow().stop {
            break;
        }
        let reply = tokio::select! {
            r = c.next() => Some(r),
            _ = tick.tick() => None,
        };
        match reply {
            None => {
                let inst = 1 + rng.below(2) as u32;
                let roll = rng.below(100);
                let mid = {
                    let mut s = st.borrow_mut();
                    let m = &mut s.mids[inst as usize - 1];
                    if rng.below(20) == 0 {
                        *m = (*m + rng.below(7)).saturating_sub(3).max(100);
                    }
                    *m
                };
                let req = if (roll < 20 || resting.len() > 40) && !resting.is_empty() {
                    let (id, _) = resting.pop_front().expect("resting");
                    c.cancel(owner, id)
                } else if roll < 30 && !resting.is_empty() {
                    let i = rng.below(resting.len() as u64) as usize;
                    let (id, inst) = resting[i];
                    let m = st.borrow().mids[inst as usize - 1];
                    c.replace(owner, id, m - 1 - rng.below(8).min(m - 2), 0)
                } else {
                    let buy = rng.below(2) == 0;
                    let crossing = roll >= 80;
                    let off = if crossing {
                        rng.below(3)
                    } else {
                        1 + rng.below(10)
                    };
                    let price = if buy != crossing {
                        mid.saturating_sub(off).max(1)
                    } else {
                        mid + off
                    };
                    coid += 1;
                    c.order(NewOrderMsg {
                        client_order_id: coid,
                        owner,
                        price,
                        qty: 1 + rng.below(5),
                        instrument: inst,
                        side: if buy { 0 } else { 1 },
                        tif: if crossing && roll >= 90 { 1 } else { 0 },
                        ..Default::default()
                    })
                };
                sent.insert(req, Instant::now());
                st.borrow_mut().orders += 1;
                if c.flush().await.is_err() {
                    break;
                }
            }
            Some(Ok(Some(Reply::Report(r)))) if r.flags & wire::REPORT_OWN_REQUEST != 0 => {
                let mut s = st.borrow_mut();
                if let Some(t0) = sent.remove(&r.request) {
                    s.acks += 1;
                    let _ = s.ack.record((t0.elapsed().as_nanos() as u64).max(1));
                }
                if r.exec_type == exec_type::NEW && r.leaves_qty > 0 {
                    resting.push_back((r.order_id, r.instrument));
                }
                if r.exec_type == exec_type::TRADE {
                    s.trades += 1;
                    s.last_trades
                        .push_front((r.instrument, r.side, r.last_px, r.last_qty));
                    s.last_trades.truncate(TRADES_SHOWN);
                    if r.leaves_qty == 0 {
                        resting.retain(|&(id, _)| id != r.order_id);
                    }
                }
            }
            Some(Ok(Some(_))) => {}
            Some(_) => break,
        }
    }
    c.close().await;
}

async fn payments(mut c: Client, st: Rc<RefCell<State>>, seed: u64) {
    let mut rng = SplitMix64(seed ^ 0x7061_796d);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut id = (nonce as u128) << 64;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        if st.borrow().stop {
            break;
        }
        let reply = tokio::select! {
            r = c.next() => Some(r),
            _ = tick.tick() => None,
        };
        match reply {
            None => {
                let n = 1 + rng.below(5) as usize;
                let recs: Vec<TransferRecord> = (0..n)
                    .map(|_| {
                        id += 1;
                        let from = 1 + rng.below(3);
                        let to = 1 + (from + rng.below(2)) % 3;
                        TransferRecord {
                            id: wire::u128_bytes(id),
                            debit_account: wire::u128_bytes(
                                gateway::demo::trading_account(from, 1).0,
                            ),
                            credit_account: wire::u128_bytes(
                                gateway::demo::trading_account(to, 1).0,
                            ),
                            amount: wire::u128_bytes(1 + rng.below(1_000) as u128),
                            code: 1,
                            ..Default::default()
                        }
                    })
                    .collect();
                c.transfer_batch(&recs);
                if c.flush().await.is_err() {
                    break;
                }
            }
            Some(Ok(Some(Reply::TransferResults { results, .. }))) => {
                let ok = results.iter().filter(|r| r.code == 0).count() as u64;
                let mut s = st.borrow_mut();
                s.transfers_ok += ok;
                s.transfers_failed += results.len() as u64 - ok;
            }
            Some(Ok(Some(_))) => {}
            Some(_) => break,
        }
    }
    c.close().await;
}

async fn observer(mut c: Client, st: Rc<RefCell<State>>) {
    loop {
        if st.borrow().stop {
            break;
        }
        let r = match c.next_timeout(Duration::from_millis(100)).await {
            Ok(Some(Reply::Report(r))) => r,
            Ok(_) => continue,
            Err(_) => break,
        };
        let mut s = st.borrow_mut();
        let terminal = matches!(
            r.ord_status,
            ord_status::FILLED | ord_status::CANCELED | ord_status::REJECTED | ord_status::EXPIRED
        );
        if terminal || r.leaves_qty == 0 {
            s.book.remove(&r.order_id);
        } else if r.order_id != 0 {
            match r.exec_type {
                exec_type::NEW | exec_type::REPLACED => {
                    s.book
                        .insert(r.order_id, (r.instrument, r.side, r.price, r.leaves_qty));
                }
                _ => {
                    if let Some(o) = s.book.get_mut(&r.order_id) {
                        o.3 = r.leaves_qty;
                    }
                }
            }
        }
    }
    c.close().await;
}

fn us(v: u64) -> f64 {
    v as f64 / 1_000.0
}

/// Aggregated levels of one side, best first: (price, qty, orders).
fn levels(s: &State, inst: u32, side: u8, depth: usize) -> Vec<(u64, u64, u32)> {
    let mut m: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
    for &(i, sd, p, q) in s.book.values() {
        if i == inst && sd == side {
            let e = m.entry(p).or_default();
            e.0 += q;
            e.1 += 1;
        }
    }
    let it = m.into_iter().map(|(p, (q, n))| (p, q, n));
    if side == 0 {
        it.rev().take(depth).collect()
    } else {
        it.take(depth).collect()
    }
}

/// The numbers the header shows besides the state: (elapsed s, total s,
/// orders per s, transfers per s).
#[derive(Clone, Copy, Debug, Default)]
struct Clock {
    elapsed_s: f64,
    total_s: f64,
    orders_per_s: f64,
    transfers_per_s: f64,
}

/// Rows of one book side in the view (best first).
const VIEW_DEPTH: usize = 5;
/// Trades the view lists, newest first.
const TRADES_SHOWN: usize = 8;

/// The terminal view: header, latency, one bordered book per symbol (bids
/// left, asks right) and the last trades; drawn with `ratatui` widgets
/// into `buf` (a terminal frame or an off-screen buffer).
fn render_view(s: &State, c: Clock, area: Rect, buf: &mut Buffer) {
    let book_rows = VIEW_DEPTH as u16 + 3;
    let mut rows = vec![Constraint::Length(2)];
    rows.extend(SYMBOLS.iter().map(|_| Constraint::Length(book_rows)));
    rows.push(Constraint::Length(TRADES_SHOWN as u16 + 2));
    rows.push(Constraint::Min(0));
    let parts = Layout::vertical(rows).split(area);
    let header = Text::from(vec![
        Line::from(format!(
            "bourse demo — {:.1} / {:.0} s | orders {} ({:.0}/s) | trades {} | transfers {} ok, {} refused ({:.0}/s)",
            c.elapsed_s, c.total_s, s.orders, c.orders_per_s, s.trades, s.transfers_ok,
            s.transfers_failed, c.transfers_per_s
        ))
        .style(Style::new().add_modifier(Modifier::BOLD)),
        Line::from(format!(
            "order → ack µs: p50 {:.1} | p90 {:.1} | p99 {:.1} | max {:.1}  ({} samples)",
            us(s.ack.value_at_quantile(0.5)),
            us(s.ack.value_at_quantile(0.9)),
            us(s.ack.value_at_quantile(0.99)),
            us(s.ack.max()),
            s.ack.len()
        )),
    ]);
    Paragraph::new(header).render(parts[0], buf);
    for (i, sym) in SYMBOLS.iter().enumerate() {
        render_book(s, i, sym, parts[i + 1], buf);
    }
    render_trades(s, parts[SYMBOLS.len() + 1], buf);
}

/// One symbol's book: a bordered block titled with the symbol and its
/// mid, two tables side by side.
fn render_book(s: &State, i: usize, sym: &str, area: Rect, buf: &mut Buffer) {
    let inst = i as u32 + 1;
    let block = Block::bordered().title(format!(" {sym}  mid {} ", s.mids[i]));
    let inner = block.inner(area);
    block.render(area, buf);
    let [bid_area, ask_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(inner);
    let widths = [
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
    ];
    let right = |t: String| Cell::from(Line::from(t).alignment(Alignment::Right));
    let header = |names: [&str; 3], color| {
        Row::new(names.map(|n| right(n.to_string()))).style(Style::new().fg(color))
    };
    // Bids read right to left from the middle (price nearest the asks).
    let bids = levels(s, inst, 0, VIEW_DEPTH)
        .into_iter()
        .map(|(p, q, n)| Row::new([n.to_string(), q.to_string(), p.to_string()].map(right)));
    Widget::render(
        Table::new(bids, widths)
            .header(header(["orders", "qty", "bid"], Color::Green))
            .flex(Flex::End),
        bid_area,
        buf,
    );
    let asks = levels(s, inst, 1, VIEW_DEPTH)
        .into_iter()
        .map(|(p, q, n)| Row::new([p.to_string(), q.to_string(), n.to_string()].map(right)));
    Widget::render(
        Table::new(asks, widths).header(header(["ask", "qty", "orders"], Color::Red)),
        ask_area,
        buf,
    );
}

/// The last trades, newest first.
fn render_trades(s: &State, area: Rect, buf: &mut Buffer) {
    let lines: Vec<Line> = s
        .last_trades
        .iter()
        .map(|&(inst, side, px, qty)| {
            Line::from(format!(
                "{:<8} taker {:<4} {qty:>4} @ {px}",
                SYMBOLS.get(inst as usize - 1).copied().unwrap_or("?"),
                if side == 1 { "sell" } else { "buy" }
            ))
        })
        .collect();
    Paragraph::new(lines)
        .block(Block::bordered().title(" last trades "))
        .render(area, buf);
}

/// Where each refresh goes: the terminal view, or one line per second.
enum Sink<'a, W: Write> {
    Screen(Screen<&'a mut W>),
    Lines(&'a mut W),
}

impl<W: Write> Sink<'_, W> {
    fn show(&mut self, s: &State, c: Clock) {
        match self {
            // A failed draw (terminal gone) only loses the view; the run goes on.
            Sink::Screen(screen) => {
                let _ = screen.draw(|area, buf| render_view(s, c, area, buf));
            }
            Sink::Lines(out) => {
                let _ = writeln!(
                    out,
                    "[{:>4.1} s] orders {} ({:.0}/s) acks {} trades {} transfers {} ok {} refused | ack p50 {:.1} µs p99 {:.1} µs",
                    c.elapsed_s,
                    s.orders,
                    c.orders_per_s,
                    s.acks,
                    s.trades,
                    s.transfers_ok,
                    s.transfers_failed,
                    us(s.ack.value_at_quantile(0.5)),
                    us(s.ack.value_at_quantile(0.99))
                );
                let _ = out.flush();
            }
        }
    }
}

/// Runs the demo; the view (or the per-second lines) and the summary go to `out`.
pub fn run_demo(cfg: &DemoConfig, out: &mut impl Write) -> Result<DemoSummary, RunError> {
    let tmp = match &cfg.data_dir {
        Some(_) => None,
        None => Some(tempfile_dir()?),
    };
    let dir = cfg
        .data_dir
        .clone()
        .or_else(|| tmp.clone())
        .expect("a data directory");
    let server = in_process_server(&dir, cfg.durability)?;
    let id = gateway::identity::load_client_identity(&dir)?;
    let token = id
        .operator_token
        .ok_or_else(|| RunError::NoOperatorToken(dir.clone()))?;
    let ccfg = || ClientConfig::new(server.addr(), id.cert_der.clone(), token.clone());
    let _ = writeln!(
        out,
        "bourse demo: server on {} (durability {}, data {}), {} traders, 1 payments client, {:.0} s",
        server.addr(),
        cfg.durability,
        dir.display(),
        cfg.traders,
        cfg.duration.as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_step("client runtime"))?;
    let local = tokio::task::LocalSet::new();
    let st = Rc::new(RefCell::new(State::new()));
    let mut sink = if cfg.tui {
        match Screen::new(&mut *out) {
            Ok(screen) => Sink::Screen(screen),
            Err(e) => {
                server.shutdown();
                if let Some(t) = tmp {
                    let _ = std::fs::remove_dir_all(t);
                }
                return Err(RunError::Terminal(e));
            }
        }
    } else {
        Sink::Lines(&mut *out)
    };
    let t0 = Instant::now();
    let res: Result<(), RunError> = local.block_on(&rt, async {
        let obs = Client::connect(&ccfg()).await?;
        let mut tasks = vec![tokio::task::spawn_local(observer(obs, st.clone()))];
        for k in 0..cfg.traders.max(1) {
            let c = Client::connect(&ccfg()).await?;
            tasks.push(tokio::task::spawn_local(trader(
                c,
                k,
                cfg.clone(),
                st.clone(),
            )));
        }
        let p = Client::connect(&ccfg()).await?;
        tasks.push(tokio::task::spawn_local(payments(p, st.clone(), cfg.seed)));
        let refresh = if cfg.tui {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(1)
        };
        let mut tick = tokio::time::interval(refresh);
        tick.tick().await;
        let (mut last_o, mut last_t, mut last_at) = (0u64, 0u64, Instant::now());
        let mut rates = (0.0, 0.0);
        loop {
            tick.tick().await;
            let elapsed = t0.elapsed();
            let s = st.borrow();
            let dt = last_at.elapsed().as_secs_f64().max(1e-3);
            if dt >= 0.9 {
                let transfers = s.transfers_ok + s.transfers_failed;
                rates = (
                    (s.orders - last_o) as f64 / dt,
                    (transfers - last_t) as f64 / dt,
                );
                (last_o, last_t, last_at) = (s.orders, transfers, Instant::now());
            }
            let clock = Clock {
                elapsed_s: elapsed.as_secs_f64(),
                total_s: cfg.duration.as_secs_f64(),
                orders_per_s: rates.0,
                transfers_per_s: rates.1,
            };
            sink.show(&s, clock);
            if elapsed >= cfg.duration {
                break;
            }
        }
        st.borrow_mut().stop = true;
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        Ok(())
    });
    drop(sink);
    let seconds = t0.elapsed().as_secs_f64();
    let hashes = server.shutdown();
    if let Some(t) = tmp {
        let _ = std::fs::remove_dir_all(t);
    }
    res?;
    let s = st.borrow();
    let summary = DemoSummary {
        seconds,
        orders: s.orders,
        acks: s.acks,
        trades: s.trades,
        transfers_ok: s.transfers_ok,
        transfers_failed: s.transfers_failed,
        ack_latency: s.ack.clone(),
    };
    let _ = writeln!(
        out,
        "\nsummary: {:.1} s | orders {} ({:.0}/s), acknowledged {} | trades {} | transfers {} ok, {} refused ({:.0}/s) | order → ack µs p50 {:.1} p99 {:.1} max {:.1} | server stopped cleanly ({} partition(s) snapshotted)",
        seconds,
        summary.orders,
        summary.orders as f64 / seconds.max(1e-3),
        summary.acks,
        summary.trades,
        summary.transfers_ok,
        summary.transfers_failed,
        (summary.transfers_ok + summary.transfers_failed) as f64 / seconds.max(1e-3),
        us(summary.ack_latency.value_at_quantile(0.5)),
        us(summary.ack_latency.value_at_quantile(0.99)),
        us(summary.ack_latency.max()),
        hashes.len()
    );
    Ok(summary)
}

fn tempfile_dir() -> Result<PathBuf, RunError> {
    let p = std::env::temp_dir().join(format!(
        "bourse-demo-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&p).map_err(io_path("create", &p))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_shows_aggregated_levels_best_first_and_the_last_trades() {
        let mut s = State::new();
        s.orders = 7;
        s.trades = 1;
        // id → (instrument, side, price, leaves)
        for (id, o) in [
            (1, (1, 0, 59_990, 2)),
            (2, (1, 0, 59_995, 1)),
            (3, (1, 0, 59_995, 4)),
            (4, (1, 1, 60_010, 3)),
            (5, (2, 1, 3_001, 9)),
        ] {
            s.book.insert(id, o);
        }
        s.last_trades.push_front((1, 1, 59_995, 1));
        let clock = Clock {
            elapsed_s: 1.0,
            total_s: 20.0,
            ..Clock::default()
        };
        let text = crate::tui::plain_text(80, 32, |a, b| render_view(&s, clock, a, b));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("bourse demo — 1.0 / 20 s | orders 7 (0/s) | trades 1"));
        assert!(lines[2].contains(" BTC-USD  mid 60000 "), "{text}");
        assert_eq!(
            lines[3],
            "│               orders      qty      bid     ask      qty   orders             │"
        );
        assert_eq!(
            lines[4],
            "│                    2        5    59995   60010        3        1             │"
        );
        assert_eq!(
            lines[5],
            "│                    1        2    59990                                       │"
        );
        assert!(lines[10].contains(" ETH-USD  mid 3000 "), "{text}");
        assert_eq!(
            lines[12],
            "│                                           3001        9        1             │"
        );
        assert!(text.contains("│BTC-USD  taker sell    1 @ 59995"), "{text}");
    }
}
