//! The client subcommands of the `bourse` binary (`order`, `cancel`,
//! `replace`, `orders`, `transfer`, `balance`, `account open`,
//! `instrument add`) and `serve`'s argument set: each connects with
//! `gateway::client`, sends one request, prints what comes back as
//! human-readable lines (or JSON lines with `--json`), and exits.
//!
//! Defaults need no flags on the server's machine: the certificate and the
//! operator token are read from `./bourse-data` (or `--data-dir`), the
//! server is `127.0.0.1:7070`, symbols are resolved with the server's
//! `instruments.json`. The CLI keeps one resumable session per data
//! directory (`cli.session`: session id and last report seq), so `bourse
//! orders` sees the orders earlier commands placed while the server runs.
//!
//! Invariants: exit status 0 when the request was answered (even if the
//! engine rejected it: the rejection is printed), 1 when the server cannot
//! be reached or the login is refused.

use crate::client::{self, Client, ClientConfig, Reply};
use crate::identity::{load_client_identity, DEFAULT_DATA_DIR};
use crate::wire::{self, *};
use engine::Side;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Connection options shared by the client subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// Data directory holding the server's certificate and operator token.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub server: SocketAddr,
    /// Login token (default: the operator token in the data directory).
    #[arg(long)]
    pub token: Option<String>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Owner to act for.
    #[arg(long, default_value_t = 1)]
    pub owner: u64,
}

/// Time in force.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TifArg {
    /// Good till cancel.
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
}

/// Side.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SideArg {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

/// A client subcommand.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Enter an order and print its execution reports.
    Order {
        #[command(flatten)]
        conn: ConnArgs,
        /// Instrument symbol (e.g. BTC-USD) or numeric id.
        #[arg(long)]
        symbol: String,
        /// buy or sell.
        #[arg(long, value_enum)]
        side: SideArg,
        /// Limit price (omit for a market order).
        #[arg(long)]
        price: Option<u64>,
        /// Quantity in lots.
        #[arg(long)]
        qty: u64,
        /// Time in force.
        #[arg(long, value_enum, default_value = "gtc")]
        tif: TifArg,
        /// Client order id (default: derived from the clock).
        #[arg(long)]
        coid: Option<u64>,
        /// Reject instead of trading on arrival.
        #[arg(long)]
        post_only: bool,
    },
    /// Cancel an order.
    Cancel {
        #[command(flatten)]
        conn: ConnArgs,
        /// Order id (as printed by `order`).
        #[arg(long)]
        order_id: u64,
    },
    /// Change an order's price and/or quantity.
    Replace {
        #[command(flatten)]
        conn: ConnArgs,
        /// Order id.
        #[arg(long)]
        order_id: u64,
        /// New price.
        #[arg(long)]
        price: Option<u64>,
        /// New remaining quantity.
        #[arg(long)]
        qty: Option<u64>,
    },
    /// List open orders known to the CLI's session.
    Orders {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Move money between two accounts.
    Transfer {
        #[command(flatten)]
        conn: ConnArgs,
        /// Transfer id (exactly-once).
        #[arg(long)]
        id: u128,
        /// Debit account.
        #[arg(long)]
        debit: u128,
        /// Credit account.
        #[arg(long)]
        credit: u128,
        /// Amount in minor units.
        #[arg(long)]
        amount: u128,
        /// Reason code.
        #[arg(long, default_value_t = 1)]
        code: u16,
        /// Two-phase: reserve only.
        #[arg(long)]
        pending: bool,
        /// Post this pending transfer.
        #[arg(long, conflicts_with = "void")]
        post: Option<u128>,
        /// Void this pending transfer.
        #[arg(long)]
        void: Option<u128>,
    },
    /// Print an account's balances.
    Balance {
        #[command(flatten)]
        conn: ConnArgs,
        /// Account id.
        #[arg(long)]
        account: u128,
    },
    /// Account administration.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Instrument administration.
    Instrument {
        #[command(subcommand)]
        command: InstrumentCommand,
    },
}

/// `bourse account …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AccountCommand {
    /// Open a ledger account.
    Open {
        #[command(flatten)]
        conn: ConnArgs,
        /// Account id.
        #[arg(long)]
        id: u128,
        /// Asset code (e.g. USD).
        #[arg(long)]
        asset: String,
        /// Allow debits beyond credits (no overdraft protection).
        #[arg(long)]
        allow_overdraft: bool,
    },
}

/// `bourse instrument …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum InstrumentCommand {
    /// Create an instrument.
    Add {
        #[command(flatten)]
        conn: ConnArgs,
        /// Instrument id.
        #[arg(long)]
        id: u32,
        /// Symbol (e.g. SOL-USD).
        #[arg(long)]
        symbol: String,
        /// Base asset.
        #[arg(long)]
        base: String,
        /// Quote asset.
        #[arg(long)]
        quote: String,
        /// Price increment.
        #[arg(long, default_value_t = 1)]
        tick: u64,
        /// Base minor units per lot.
        #[arg(long, default_value_t = 1)]
        lot_size: u64,
        /// Smallest order quantity.
        #[arg(long, default_value_t = 1)]
        qty_min: u64,
        /// Largest order quantity.
        #[arg(long, default_value_t = 1_000_000)]
        qty_max: u64,
        /// Reference price before the first trade.
        #[arg(long, default_value_t = 100)]
        reference_price: u64,
        /// Settle fills on the ledger.
        #[arg(long)]
        settle: bool,
    },
}

/// Resolves a symbol (or numeric id) with the data directory's symbol table.
pub fn resolve_symbol(data_dir: &Path, symbol: &str) -> Result<u32, String> {
    if let Ok(id) = symbol.parse::<u32>() {
        return Ok(id);
    }
    let table = crate::demo::read_symbols(data_dir);
    table.get(symbol).copied().ok_or_else(|| {
        let known: Vec<&str> = table.keys().map(String::as_str).collect();
        format!(
            "unknown symbol {symbol} (known: {}); pass the numeric instrument id instead",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    })
}

const CLI_SESSION_FILE: &str = "cli.session";

fn load_cli_session(data_dir: &Path) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(data_dir.join(CLI_SESSION_FILE)).ok()?;
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn save_cli_session(data_dir: &Path, id: u64, last: u64) {
    let _ = std::fs::write(data_dir.join(CLI_SESSION_FILE), format!("{id} {last}\n"));
}

fn symbol_of(data_dir: &Path, id: u32) -> Option<String> {
    crate::demo::read_symbols(data_dir)
        .into_iter()
        .find(|(_, v)| *v == id)
        .map(|(k, _)| k)
}

struct Printer<'a, W: Write> {
    out: &'a mut W,
    json: bool,
    data_dir: PathBuf,
}

impl<W: Write> Printer<'_, W> {
    fn reply(&mut self, r: &Reply) {
        let line = match r {
            Reply::Report(rep) => {
                let sym = symbol_of(&self.data_dir, rep.instrument);
                if self.json {
                    client::report_json(rep, sym.as_deref()).to_string()
                } else {
                    client::describe_report(rep, sym.as_deref())
                }
            }
            Reply::TransferResults { request, results } => {
                if self.json {
                    serde_json::json!({
                        "type": "transfer_results",
                        "request": request,
                        "results": results.iter().map(|t| serde_json::json!({
                            "index": t.index, "result": client::ledger_name(t.code)
                        })).collect::<Vec<_>>(),
                    })
                    .to_string()
                } else {
                    results
                        .iter()
                        .map(|t| format!("transfer #{}: {}", t.index, client::ledger_name(t.code)))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            }
            Reply::Balance(b) => {
                let (dp, cp, dq, cq) = (
                    u128_from(b.debits_posted),
                    u128_from(b.credits_posted),
                    u128_from(b.debits_pending),
                    u128_from(b.credits_pending),
                );
                let acct = u128_from(b.account);
                if self.json {
                    serde_json::json!({
                        "type": "balance", "account": acct.to_string(),
                        "debits_posted": dp.to_string(), "credits_posted": cp.to_string(),
                        "debits_pending": dq.to_string(), "credits_pending": cq.to_string(),
                        "net": (cp as i128 - dp as i128).to_string(),
                    })
                    .to_string()
                } else {
                    format!(
                        "account {acct}: credits {cp} debits {dp} (net {}) | pending credits {cq} debits {dq}",
                        cp as i128 - dp as i128
                    )
                }
            }
            Reply::OpenOrder(o) => {
                let sym = symbol_of(&self.data_dir, o.instrument)
                    .unwrap_or_else(|| format!("instrument {}", o.instrument));
                let side = if o.side == 1 { "sell" } else { "buy" };
                if self.json {
                    serde_json::json!({
                        "type": "open_order", "order_id": o.order_id, "client_order_id": o.client_order_id,
                        "owner": o.owner, "instrument": o.instrument, "symbol": sym, "side": side,
                        "price": o.price, "cum_qty": o.cum_qty, "leaves_qty": o.leaves_qty,
                    })
                    .to_string()
                } else {
                    format!(
                        "order {} (coid {}, owner {}) {sym} {side} {} @ {} | cum {}",
                        o.order_id, o.client_order_id, o.owner, o.leaves_qty, o.price, o.cum_qty
                    )
                }
            }
            Reply::Ack(a) => {
                let res = if a.template == template::OPEN_ACCOUNT {
                    client::ledger_name(a.code)
                } else if a.code == 0 {
                    "ok".to_string()
                } else {
                    client::reject_name(a.code)
                };
                if self.json {
                    serde_json::json!({
                        "type": "ack", "request": a.request, "template": a.template,
                        "result": res, "count": a.count, "engine_seq": a.engine_seq,
                    })
                    .to_string()
                } else if a.template == template::QUERY_OPEN_ORDERS {
                    format!("{} open order(s)", a.count)
                } else {
                    format!("request {}: {res}", a.request)
                }
            }
            Reply::ProtocolReject(p) => {
                if self.json {
                    serde_json::json!({"type": "protocol_reject", "code": p.code, "text": p.text()})
                        .to_string()
                } else {
                    format!("protocol reject {}: {}", p.code, p.text())
                }
            }
            Reply::Logout => return,
        };
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }
}

/// Whether `r` is the final answer to `request`.
fn is_final(r: &Reply, request: u64) -> bool {
    match r {
        Reply::Ack(a) => a.request == request,
        Reply::TransferResults { request: q, .. } => *q == request,
        Reply::Balance(b) => b.request == request,
        Reply::ProtocolReject(p) => p.request == request || p.request == 0,
        Reply::Logout => true,
        _ => false,
    }
}

impl ClientCommand {
    /// The connection options of the subcommand.
    pub fn conn(&self) -> &ConnArgs {
        match self {
            ClientCommand::Order { conn, .. }
            | ClientCommand::Cancel { conn, .. }
            | ClientCommand::Replace { conn, .. }
            | ClientCommand::Orders { conn }
            | ClientCommand::Transfer { conn, .. }
            | ClientCommand::Balance { conn, .. }
            | ClientCommand::Account {
                command: AccountCommand::Open { conn, .. },
            }
            | ClientCommand::Instrument {
                command: InstrumentCommand::Add { conn, .. },
            } => conn,
        }
    }
}

/// Runs one client subcommand against a server; returns the exit status.
pub fn run_client<W: Write>(cmd: &ClientCommand, out: &mut W) -> u8 {
    let conn = cmd.conn();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bourse: {e}");
            return 1;
        }
    };
    match rt.block_on(run_async(conn, cmd, out)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bourse: {e}");
            1
        }
    }
}

async fn run_async<W: Write>(
    conn: &ConnArgs,
    cmd: &ClientCommand,
    out: &mut W,
) -> Result<(), String> {
    let id = load_client_identity(&conn.data_dir)
        .map_err(|e| format!("{e} (start the server with `bourse serve`, or pass --data-dir)"))?;
    let token = conn
        .token
        .clone()
        .or(id.operator_token.clone())
        .ok_or("no --token and no operator token in the data directory")?;
    let mut cfg = ClientConfig::new(conn.server, id.cert_der, token);
    if conn.token.is_none() {
        if let Some((sid, last)) = load_cli_session(&conn.data_dir) {
            cfg.session_id = sid;
            cfg.resume_after = last;
        }
    }
    // A stale resume (the server restarted) is refused: start afresh.
    let mut c = match Client::connect(&cfg).await {
        Ok(c) => c,
        Err(client::ClientError::LoginRejected(wire::login_reject::SESSION_MISMATCH)) => {
            cfg = ClientConfig::new(cfg.addr, cfg.cert_der.clone(), cfg.token.clone());
            Client::connect(&cfg).await.map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    // Reports replayed from earlier commands are not this command's output.
    let skip_upto = c.login().last_report_seq;
    let owner = conn.owner;
    let request = match cmd {
        ClientCommand::Order {
            symbol,
            side,
            price,
            qty,
            tif,
            coid,
            post_only,
            ..
        } => {
            let instrument = resolve_symbol(&conn.data_dir, symbol)?;
            let side = match side {
                SideArg::Buy => Side::Buy,
                SideArg::Sell => Side::Sell,
            };
            let coid = coid.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_micros() as u64)
            });
            let mut m = client::limit(owner, instrument, side, price.unwrap_or(0), *qty, coid);
            if price.is_none() {
                m.order_type = 1;
            }
            m.tif = match tif {
                TifArg::Gtc => 0,
                TifArg::Ioc => 1,
                TifArg::Fok => 2,
            };
            if *post_only {
                m.flags |= ORDER_POST_ONLY;
            }
            c.order(m)
        }
        ClientCommand::Cancel { order_id, .. } => c.cancel(owner, *order_id),
        ClientCommand::Replace {
            order_id,
            price,
            qty,
            ..
        } => c.replace(owner, *order_id, price.unwrap_or(0), qty.unwrap_or(0)),
        ClientCommand::Orders { .. } => c.query_open_orders(0),
        ClientCommand::Transfer {
            id,
            debit,
            credit,
            amount,
            code,
            pending,
            post,
            void,
            ..
        } => {
            let mut flags = 0u16;
            let mut pending_id = 0u128;
            if *pending {
                flags |= engine::TransferFlags::PENDING;
            }
            if let Some(p) = post {
                flags |= engine::TransferFlags::POST_PENDING;
                pending_id = *p;
            }
            if let Some(p) = void {
                flags |= engine::TransferFlags::VOID_PENDING;
                pending_id = *p;
            }
            c.transfer_batch(&[TransferRecord {
                id: u128_bytes(*id),
                debit_account: u128_bytes(*debit),
                credit_account: u128_bytes(*credit),
                amount: u128_bytes(*amount),
                pending_id: u128_bytes(pending_id),
                timeout_ns: 0,
                code: *code,
                flags,
                reserved: 0,
            }])
        }
        ClientCommand::Balance { account, .. } => c.query_balance(*account),
        ClientCommand::Account {
            command:
                AccountCommand::Open {
                    id,
                    asset,
                    allow_overdraft,
                    ..
                },
        } => {
            let flags = if *allow_overdraft {
                0
            } else {
                engine::AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
            };
            c.open_account(*id, owner, asset, flags)
        }
        ClientCommand::Instrument {
            command:
                InstrumentCommand::Add {
                    id,
                    symbol,
                    base,
                    quote,
                    tick,
                    lot_size,
                    qty_min,
                    qty_max,
                    reference_price,
                    settle,
                    ..
                },
        } => {
            let mut m = AddInstrumentMsg {
                id: *id,
                tick: *tick,
                lot_size: *lot_size,
                qty_min: *qty_min,
                qty_max: *qty_max,
                reference_price: *reference_price,
                settle: *settle as u8,
                ..Default::default()
            };
            copy_code(&mut m.symbol, symbol)?;
            copy_code(&mut m.base, base)?;
            copy_code(&mut m.quote, quote)?;
            c.add_instrument(m)
        }
    };
    c.flush().await.map_err(|e| e.to_string())?;
    let mut p = Printer {
        out,
        json: conn.json,
        data_dir: conn.data_dir.clone(),
    };
    // Orders, cancels and replaces are answered by execution reports: print
    // those of this request, then whatever else arrives within a short quiet
    // period (the rest of the same engine input arrives together).
    let quiet = Duration::from_millis(150);
    let mut seen_own = false;
    loop {
        let wait = if seen_own {
            quiet
        } else {
            Duration::from_secs(10)
        };
        let Some(r) = c.next_timeout(wait).await.map_err(|e| e.to_string())? else {
            if !seen_own {
                return Err("no answer from the server within 10 s".into());
            }
            break;
        };
        if let Reply::Report(rep) = &r {
            if rep.report_seq <= skip_upto {
                continue;
            }
            if rep.request == request {
                seen_own = true;
            }
        }
        p.reply(&r);
        if is_final(&r, request) {
            break;
        }
    }
    if conn.token.is_none() {
        save_cli_session(&conn.data_dir, cfg.session_id, c.last_report_seq());
    }
    // Leave without logging out: the session stays resumable for the next command.
    c.disconnect().await;
    Ok(())
}

fn copy_code<const N: usize>(dst: &mut [u8; N], s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > N || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{s:?}: 1..={N} printable ASCII characters"));
    }
    dst[..s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}
