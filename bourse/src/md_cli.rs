//! `bourse feed SYMBOL [--level l1|l2|l3] [--json]`: subscribes to one
//! instrument's market data (`feeds::MdClient`) and shows its book and trades,
//! redrawn at ~5 Hz, or as JSON lines (a `book` line at most every 200 ms
//! when it changed, one `trade` line per trade). L1/L2 show price levels
//! (price, quantity, order count); L3 shows every resting order (id,
//! price, quantity) in queue order: best level first, earliest first
//! within a level. Gaps are repaired through the view's retransmit /
//! snapshot requests.
//!
//! The view is drawn with `ratatui` widgets (`crate::tui`): on a terminal
//! it is redrawn in place and follows resizes; redirected, the same view is
//! rendered off screen and printed as plain text.
//!
//! Invariants: escape sequences are written only when standard output is a
//! terminal, so redirected output is plain text; an instrument the symbol
//! table does not list is an error before connecting (the market-data
//! server would answer any id with an empty book); server and login are
//! `cli::ServerArgs`, shared with the order-entry commands.

use crate::cli::{connect_first, resolve_instrument, walk_error, CliError, ServerArgs};
use crate::tui::Screen;
use engine::Side;
use feeds::Channel;
use feeds::{FeedView, MdClient, MdItem};
use gateway::identity::load_client_identity;
use gateway::net::Tuning;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, Widget};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Book level to show.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LevelArg {
    /// Best bid and offer.
    L1,
    /// Market by price.
    L2,
    /// Market by order.
    L3,
}

/// `bourse feed` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FeedArgs {
    /// Instrument symbol (e.g. BTC-USD) or numeric id.
    pub symbol: String,
    /// What to show.
    #[arg(long, value_enum, default_value = "l2")]
    pub level: LevelArg,
    /// JSON lines instead of a terminal view.
    #[arg(long)]
    pub json: bool,
    /// Server and login (the token needs `read` permission).
    #[command(flatten)]
    pub target: ServerArgs,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// Runs `bourse feed`; returns the exit status.
pub fn run_feed(a: &FeedArgs) -> u8 {
    let stdout = std::io::stdout();
    let terminal = stdout.is_terminal();
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|rt| rt.block_on(feed(a, &mut stdout.lock(), terminal)));
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bourse feed: {e}");
            1
        }
    }
}

async fn connect(a: &FeedArgs) -> Result<MdClient, CliError> {
    let id = load_client_identity(&a.target.data_dir)?;
    let token = a.target.login_token(id.operator_token)?;
    let (cert, token, tuning) = (&id.cert_der, token.expose(), Tuning::default());
    let tuning = &tuning;
    connect_first(
        &a.target.addrs()?,
        move |addr, _| MdClient::connect(addr, cert, token, tuning),
        |_| gateway::client::Step::Next,
    )
    .await
    .map_err(|tried| {
        walk_error(&a.target.server, tried, |addr, e| match e {
            None => CliError::Unreachable {
                server: a.target.server.clone(),
                addr,
            },
            Some(source) => CliError::Feed {
                server: a.target.server.clone(),
                addr,
                source,
            },
        })
    })
}

async fn feed<W: Write>(a: &FeedArgs, out: &mut W, terminal: bool) -> Result<(), CliError> {
    let instrument = resolve_instrument(&a.target.data_dir, &a.symbol, true)?;
    let mut c = connect(a).await?;
    let addr = c.connection().remote_address();
    let md_err = |source| CliError::Feed {
        server: a.target.server.clone(),
        addr,
        source,
    };
    let channel = match a.level {
        LevelArg::L1 => Channel::L1,
        LevelArg::L2 => Channel::L2,
        LevelArg::L3 => Channel::L3,
    };
    let mut v = FeedView::default();
    for ch in [channel, Channel::Trades] {
        v.track(instrument, ch);
        c.subscribe(instrument, ch).await.map_err(md_err)?;
    }
    let mut sink = if terminal && !a.json {
        Out::Screen(Screen::new(out).map_err(CliError::Terminal)?)
    } else {
        Out::Text(out)
    };
    let end = a.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut dirty = true;
    let mut last_draw = Instant::now() - Duration::from_secs(1);
    loop {
        if end.is_some_and(|e| Instant::now() >= e) {
            return Ok(());
        }
        let item = match tokio::time::timeout(Duration::from_millis(200), c.next()).await {
            Ok(Ok(i)) => Some(i),
            Ok(Err(e)) => return Err(md_err(e)),
            Err(_) => None,
        };
        if let Some(item) = &item {
            if let MdItem::Error(code) = item {
                return Err(CliError::FeedRefused {
                    server: a.target.server.clone(),
                    code: *code,
                });
            }
            if let Some(req) = v.apply(item) {
                c.request(&req).await.map_err(md_err)?;
            }
            if let MdItem::Message(m) = item {
                if let feeds::Body::Trade(t) = m.body {
                    if let (true, Out::Text(out)) = (a.json, &mut sink) {
                        let line = serde_json::json!({
                            "type": "trade", "instrument": instrument,
                            "price": t.price.0, "qty": t.qty.0, "match_id": t.match_id,
                            "aggressor": side_name(t.aggressor), "seq": m.instrument_seq,
                        });
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
            dirty |= !matches!(item, MdItem::Heartbeat { .. });
        }
        if dirty && last_draw.elapsed() >= Duration::from_millis(200) {
            dirty = false;
            last_draw = Instant::now();
            let out = match &mut sink {
                Out::Screen(screen) => {
                    // A failed draw (terminal gone) only loses the view.
                    let _ = screen.draw(|area, buf| {
                        render_view(&v, instrument, channel, &a.symbol, area, buf)
                    });
                    continue;
                }
                Out::Text(out) => out,
            };
            let text = if a.json {
                book_json(&v, instrument, channel).to_string() + "\n"
            } else {
                // Redirected, each view follows the last after a blank line.
                format!("\n{}", plain(&v, instrument, channel, &a.symbol))
            };
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

/// Where the views go: a terminal redrawn in place, or text (plain views
/// or JSON lines) appended to the output.
enum Out<'a, W: Write> {
    Screen(Screen<&'a mut W>),
    Text(&'a mut W),
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// Rows per side, best first: (price, qty, order count) for L1/L2,
/// (price, qty, order id) for L3, one per order in queue order.
fn rows(v: &FeedView, instrument: u32, channel: Channel, side: Side) -> Vec<(u64, u64, u64)> {
    let book = v.books.get(&(instrument, channel as u8));
    match channel {
        Channel::L1 => {
            let q = v.quotes.get(&instrument).copied().unwrap_or_default();
            let t = if side == Side::Buy { q.bid } else { q.ask };
            t.price
                .map(|p| vec![(p.0, t.qty.0, u64::from(t.orders))])
                .unwrap_or_default()
        }
        Channel::L3 => book
            .map(|b| {
                b.orders()
                    .orders_in_order(side)
                    .into_iter()
                    .map(|(id, o)| (o.price.0, o.qty.0, id))
                    .collect()
            })
            .unwrap_or_default(),
        _ => book
            .map(|b| {
                b.levels(side)
                    .iter()
                    .map(|l| (l.price.0, l.qty.0, u64::from(l.orders)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn book_json(v: &FeedView, instrument: u32, channel: Channel) -> serde_json::Value {
    let side = |s| {
        rows(v, instrument, channel, s)
            .into_iter()
            .map(|(p, q, n)| match channel {
                Channel::L3 => serde_json::json!({"order_id": n, "price": p, "qty": q}),
                _ => serde_json::json!([p, q, n]),
            })
            .collect::<Vec<_>>()
    };
    let seq = v
        .books
        .get(&(instrument, channel as u8))
        .map_or(0, |b| b.last_seq());
    serde_json::json!({
        "type": "book", "instrument": instrument, "seq": seq,
        "bids": side(Side::Buy), "asks": side(Side::Sell),
    })
}

/// Rows of the book per side, best first.
const BOOK_ROWS_MAX: usize = 20;
/// Trades the view lists, newest first.
const TRADES_SHOWN: usize = 10;
/// Width of the plain-text view, columns.
const PLAIN_WIDTH: u16 = 80;

/// The view: a title, bids beside asks (price, qty, and order count, or
/// order id at L3), then the recent trades; drawn with `ratatui` widgets
/// into `buf` (a terminal frame or an off-screen buffer). The book takes as
/// many rows as it has (as many as fit on a small terminal).
fn render_view(
    v: &FeedView,
    instrument: u32,
    channel: Channel,
    symbol: &str,
    area: Rect,
    buf: &mut Buffer,
) {
    let (mut bids, mut asks) = (
        rows(v, instrument, channel, Side::Buy),
        rows(v, instrument, channel, Side::Sell),
    );
    bids.truncate(BOOK_ROWS_MAX);
    asks.truncate(BOOK_ROWS_MAX);
    let mut trades = vec![Line::from(""), Line::from("recent trades:")];
    trades.extend(v.trades.iter().rev().take(TRADES_SHOWN).map(|(_, t)| {
        Line::from(format!(
            "  {:>5} {:>8} @ {:>12}  (match {})",
            side_name(t.aggressor),
            t.qty.0,
            t.price.0,
            t.match_id
        ))
    }));
    let [title, book, trades_area, _] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1 + bids.len().max(asks.len()) as u16),
        Constraint::Length(trades.len() as u16),
        Constraint::Min(0),
    ])
    .areas(area);
    Line::from(format!(
        "{symbol} ({instrument}) {channel:?}   gaps repaired: {}",
        v.gaps
    ))
    .style(Style::new().add_modifier(Modifier::BOLD))
    .render(title, buf);
    let [bid_area, ask_area] =
        Layout::horizontal([Constraint::Length(31), Constraint::Length(28)]).areas(book);
    let n = if channel == Channel::L3 { "order" } else { "n" };
    let right = |t: String| Cell::from(Line::from(t).alignment(Alignment::Right));
    for (side_rows, name, area, color) in [
        (bids, "bid", bid_area, Color::Green),
        (asks, "ask", ask_area, Color::Red),
    ] {
        let body = side_rows
            .into_iter()
            .map(|(p, q, n)| Row::new([p.to_string(), q.to_string(), n.to_string()].map(right)));
        let header = Row::new([name, "qty", n].map(|h| right(h.to_string())));
        let table = Table::new(
            body,
            [
                Constraint::Length(12),
                Constraint::Length(8),
                Constraint::Length(6),
            ],
        )
        .header(header.style(Style::new().fg(color)));
        Widget::render(table, area, buf);
    }
    // The bar between the sides (" | "), in ASCII so redirected text stays
    // ASCII; left out when the sides do not fit beside each other.
    let bar_rows = if book.width >= 59 {
        book.top()..book.bottom()
    } else {
        0..0
    };
    for y in bar_rows {
        if let Some(cell) = buf.cell_mut((book.x + 29, y)) {
            cell.set_symbol("|");
        }
    }
    Paragraph::new(trades).render(trades_area, buf);
}

/// The view as plain text (no escape sequences), for redirected output.
fn plain(v: &FeedView, instrument: u32, channel: Channel, symbol: &str) -> String {
    let sides = rows(v, instrument, channel, Side::Buy)
        .len()
        .max(rows(v, instrument, channel, Side::Sell).len())
        .min(BOOK_ROWS_MAX);
    let trades = v.trades.len().min(TRADES_SHOWN);
    let height = (1 + 1 + sides + 2 + trades) as u16;
    crate::tui::plain_text(PLAIN_WIDTH, height, |area, buf| {
        render_view(v, instrument, channel, symbol, area, buf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Price, Qty};
    use feeds::{Quote, Top, TradeMsg};

    #[test]
    fn the_plain_view_is_the_book_beside_itself_then_the_trades() {
        let mut v = FeedView::default();
        let top = |p: u64, q: u64, n: u32| Top {
            price: Some(Price(p)),
            qty: Qty(q),
            orders: n,
        };
        v.quotes.insert(
            1,
            Quote {
                bid: top(50_500, 3, 2),
                ask: top(50_600, 1, 1),
            },
        );
        v.trades.push_back((
            1,
            TradeMsg {
                price: Price(50_550),
                qty: Qty(2),
                match_id: 7,
                aggressor: Side::Sell,
                maker_order_id: 1,
                taker_order_id: 2,
            },
        ));
        let text = plain(&v, 1, Channel::L1, "BTC-USD");
        assert_eq!(
            text,
            "BTC-USD (1) L1   gaps repaired: 0\n\
             \x20        bid      qty      n |          ask      qty      n\n\
             \x20      50500        3      2 |        50600        1      1\n\
             \n\
             recent trades:\n\
             \x20  sell        2 @        50550  (match 7)\n"
        );
    }
}
