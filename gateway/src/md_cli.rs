//! `bourse feed SYMBOL [--level l1|l2|l3] [--json]`: subscribes to one
//! instrument's market data (`crate::md`) and shows its book and trades,
//! redrawn in the terminal at ~5 Hz (ANSI clear + redraw), or as JSON lines
//! (a `book` line at most every 200 ms when it changed, one `trade` line per
//! trade). Gaps are repaired through the view's retransmit / snapshot
//! requests.

use crate::identity::{load_client_identity, DEFAULT_DATA_DIR};
use crate::md::{FeedView, MdClient, MdItem};
use crate::net::Tuning;
use engine::Side;
use feeds::msg::Channel;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Data directory holding the server's certificate and operator token.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub server: SocketAddr,
    /// Token with `read` permission (default: the operator token).
    #[arg(long)]
    pub token: Option<String>,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    pub seconds: Option<u64>,
}

/// Runs `bourse feed`; returns the exit status.
pub fn run_feed(a: &FeedArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bourse feed: {e}");
            return 1;
        }
    };
    match rt.block_on(feed(a, &mut std::io::stdout().lock())) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bourse feed: {e}");
            1
        }
    }
}

async fn feed<W: Write>(a: &FeedArgs, out: &mut W) -> Result<(), String> {
    let id = load_client_identity(&a.data_dir)
        .map_err(|e| format!("{e} (start the server with `bourse serve`, or pass --data-dir)"))?;
    let token = a
        .token
        .clone()
        .or(id.operator_token.clone())
        .ok_or("no --token and no operator token in the data directory")?;
    let instrument = crate::cli::resolve_symbol(&a.data_dir, &a.symbol)?;
    let mut c = MdClient::connect(a.server, &id.cert_der, &token, &Tuning::default())
        .await
        .map_err(|e| e.to_string())?;
    let channel = match a.level {
        LevelArg::L1 => Channel::L1,
        LevelArg::L2 => Channel::L2,
        LevelArg::L3 => Channel::L3,
    };
    let mut v = FeedView::default();
    for ch in [channel, Channel::Trades] {
        v.track(instrument, ch);
        c.subscribe(instrument, ch)
            .await
            .map_err(|e| e.to_string())?;
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
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => None,
        };
        if let Some(item) = &item {
            if let MdItem::Error(code) = item {
                return Err(format!("server error {code}"));
            }
            if let Some(req) = v.apply(item) {
                c.request(&req).await.map_err(|e| e.to_string())?;
            }
            if let MdItem::Message(m) = item {
                if let feeds::msg::Body::Trade(t) = m.body {
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
                draw(&v, instrument, channel, &a.symbol)
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

/// Rows (price, qty, orders) per side, best first.
fn rows(v: &FeedView, instrument: u32, channel: Channel, side: Side) -> Vec<(u64, u64, u32)> {
    match channel {
        Channel::L1 => {
            let q = v.quotes.get(&instrument).copied().unwrap_or_default();
            let t = if side == Side::Buy { q.bid } else { q.ask };
            t.price
                .map(|p| vec![(p.0, t.qty.0, t.orders)])
                .unwrap_or_default()
        }
        _ => v
            .books
            .get(&(instrument, channel as u8))
            .map(|b| {
                b.levels(side)
                    .iter()
                    .map(|l| (l.price.0, l.qty.0, l.orders))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn book_json(v: &FeedView, instrument: u32, channel: Channel) -> serde_json::Value {
    let side = |s| {
        rows(v, instrument, channel, s)
            .into_iter()
            .map(|(p, q, n)| serde_json::json!([p, q, n]))
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

fn draw(v: &FeedView, instrument: u32, channel: Channel, symbol: &str) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("\x1b[2J\x1b[H");
    let _ = writeln!(
        s,
        "{symbol} ({instrument}) {channel:?}   gaps repaired: {}",
        v.gaps
    );
    let _ = writeln!(
        s,
        "{:>12} {:>8} {:>6} | {:>12} {:>8} {:>6}",
        "bid", "qty", "n", "ask", "qty", "n"
    );
    let (b, a) = (
        rows(v, instrument, channel, Side::Buy),
        rows(v, instrument, channel, Side::Sell),
    );
    for i in 0..b.len().max(a.len()).min(20) {
        let cell = |r: Option<&(u64, u64, u32)>| {
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
