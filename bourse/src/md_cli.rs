//! `bourse feed SYMBOL [--level l1|l2|l3] [--json]`: subscribes to one
//! instrument's market data (`feeds::MdClient`) and shows its book and trades,
//! redrawn at ~5 Hz, or as JSON lines (a `book` line at most every 200 ms
//! when it changed, one `trade` line per trade). L1/L2 show price levels
//! (price, quantity, order count); L3 shows every resting order (id,
//! price, quantity) in queue order: best level first, earliest first
//! within a level. Gaps are repaired through the view's retransmit /
//! snapshot requests.
//!
//! Invariants: the screen is cleared (ANSI) only when standard output is a
//! terminal, so redirected output is plain text; an instrument the symbol
//! table does not list is an error before connecting (the market-data
//! server would answer any id with an empty book); server and login are
//! `cli::ServerArgs`, shared with the order-entry commands.

use crate::cli::{connect_first, resolve_instrument, CliError, ServerArgs};
use engine::Side;
use feeds::Channel;
use feeds::{FeedView, MdClient, MdItem};
use gateway::identity::load_client_identity;
use gateway::net::Tuning;
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
        |_| false,
    )
    .await
    .map_err(|(addr, e)| match e {
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
                    if a.json {
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
            let text = if a.json {
                book_json(&v, instrument, channel).to_string() + "\n"
            } else {
                draw(&v, instrument, channel, &a.symbol, terminal)
            };
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
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

fn draw(v: &FeedView, instrument: u32, channel: Channel, symbol: &str, terminal: bool) -> String {
    use std::fmt::Write as _;
    // Clear and home only on a terminal; redirected, each view follows the last.
    let mut s = String::from(if terminal { "\x1b[2J\x1b[H" } else { "\n" });
    let _ = writeln!(
        s,
        "{symbol} ({instrument}) {channel:?}   gaps repaired: {}",
        v.gaps
    );
    let n = if channel == Channel::L3 { "order" } else { "n" };
    let _ = writeln!(
        s,
        "{:>12} {:>8} {:>6} | {:>12} {:>8} {:>6}",
        "bid", "qty", n, "ask", "qty", n
    );
    let (b, a) = (
        rows(v, instrument, channel, Side::Buy),
        rows(v, instrument, channel, Side::Sell),
    );
    for i in 0..b.len().max(a.len()).min(20) {
        let cell = |r: Option<&(u64, u64, u64)>| {
            r.map_or(format!("{:>12} {:>8} {:>6}", "", "", ""), |(p, q, n)| {
                format!("{p:>12} {q:>8} {n:>6}")
            })
        };
        let _ = writeln!(s, "{} | {}", cell(b.get(i)), cell(a.get(i)));
    }
    let _ = writeln!(s, "\nrecent trades:");
    for (_, t) in v.trades.iter().rev().take(10) {
        let _ = writeln!(
            s,
            "  {:>5} {:>8} @ {:>12}  (match {})",
            side_name(t.aggressor),
            t.qty.0,
            t.price.0,
            t.match_id
        );
    }
    s
}
