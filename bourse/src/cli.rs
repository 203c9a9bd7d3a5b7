//! The client subcommands of the `bourse` binary (`order`, `cancel`,
//! `replace`, `orders`, `transfer`, `balance`, `transfers`, `account open`,
//! `instrument add`) and what they share with `feed` (`ServerArgs`: where
//! the server is, how to log in): each connects with `gateway::client`,
//! sends one request, prints what comes back as human-readable lines (or
//! JSON lines with `--json`), logs out and exits.
//!
//! Defaults need no flags on the server's machine: the certificate and the
//! operator token are read from `./bourse-data` (or `--data-dir`), the
//! server is `127.0.0.1:7070` (`--server` takes `HOST:PORT`, names
//! resolved, IPv4 first, or a replicated cluster's servers as `a,b,c`),
//! symbols are resolved with the server's `instruments.json`.
//!
//! Invariants:
//! - One fresh session per invocation (random session id, request numbers
//!   from 1): commands run in parallel never share a session, and a command
//!   prints only the execution reports of its own request and of orders it
//!   placed (other sessions' reports routed to the same owner are not its
//!   output). Open orders are answered by the engine, so `orders` needs no
//!   client-side state; the CLI writes no file.
//! - The login token comes from `--token` (visible in `ps`: discouraged),
//!   `--token-file`, `BOURSE_TOKEN`, or the data directory's operator token,
//!   in that order; it is never printed, logged, or shown by `Debug`.
//! - Exit status 0 when the request was answered (even if the engine
//!   rejected it: the rejection is printed), 1 when the server cannot be
//!   reached within `CONNECT_BUDGET` (the message names the address) or the
//!   login is refused, 2 when the arguments cannot work (clap).
//! - With several servers (`--server a,b,c`) a server that answers
//!   `not_leader` is never final: the walk moves on to the next, and goes
//!   round again while `CONNECT_BUDGET` lasts (an election may be under
//!   way); any other refused login is final. When none takes the session
//!   the error names every address tried and its last answer.

use engine::Side;
use gateway::client::{self, Client, ClientConfig, ClientError, Reply};
use gateway::identity::{load_client_identity, IdentityError, DEFAULT_DATA_DIR, TOKEN_FILE};
use gateway::net::{self, ResolveError};
use gateway::wire::*;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable client commands read the login token from
/// (after `--token` and `--token-file`).
pub const TOKEN_ENV: &str = "BOURSE_TOKEN";

/// How long a command tries to reach the server (all resolved addresses
/// together) before it gives up: well under the 5 s a user waits.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(3);

/// How long a command waits for the answer to its request.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// A login token: `Debug` prints `<redacted>`, so argument dumps and logs
/// never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The token itself (to send it, never to print it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Why a client command failed (printed as `bourse: {error}`).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The certificate (or operator token) could not be read.
    #[error("{0} (start the server with `bourse serve`, or pass --data-dir)")]
    Identity(#[from] IdentityError),
    /// No token from any source.
    #[error(
        "no login token: pass --token-file PATH, set {TOKEN_ENV}, or use a --data-dir holding the operator token"
    )]
    NoToken,
    /// The token file could not be read, or holds no token.
    #[error("token file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// `--server` does not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Several addresses were tried (`--server a,b,c`) and none took the
    /// session.
    #[error("no server of {server} took the session: {tried}")]
    NoServer {
        /// What the user named.
        server: String,
        /// Every address tried and its last answer.
        tried: String,
    },
    /// No address of the server answered in time.
    #[error("cannot reach {server} ({addr}): no answer within {} s (is `bourse serve` running there?)", CONNECT_BUDGET.as_secs())]
    Unreachable {
        /// What the user named.
        server: String,
        /// The last address tried.
        addr: SocketAddr,
    },
    /// The order-entry connection failed or the login was refused.
    #[error("server {server} ({addr}): {source}")]
    Server {
        /// What the user named.
        server: String,
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: ClientError,
    },
    /// The market-data connection failed.
    #[error("market data from {server} ({addr}): {source}")]
    Feed {
        /// What the user named.
        server: String,
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: feeds::MdError,
    },
    /// The market-data server ended the subscription with an error code.
    #[error("market data from {server}: refused ({})", md_close_name(*code))]
    FeedRefused {
        /// What the user named.
        server: String,
        /// `md::md_close` code.
        code: u32,
    },
    /// The request was sent and nothing answered it.
    #[error("no answer from {server} within {} s", ANSWER_LIMIT.as_secs())]
    NoAnswer {
        /// What the user named.
        server: String,
    },
    /// A symbol or instrument id the symbol table does not have.
    #[error("unknown instrument {name} (known: {known}); pass a listed symbol or its numeric id")]
    UnknownInstrument {
        /// What the user named.
        name: String,
        /// The table's symbols with their ids.
        known: String,
    },
    /// A symbol or asset code that cannot be sent.
    #[error("{value:?}: 1..={max} printable ASCII characters")]
    BadCode {
        /// What the user gave.
        value: String,
        /// The field's width.
        max: usize,
    },
    /// The async runtime could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// The terminal the view is drawn on could not be set up.
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
}

fn md_close_name(code: u32) -> String {
    use feeds::md_close;
    match code {
        md_close::UNAUTHORIZED => "unauthorized: unknown token or no read permission".into(),
        md_close::PROTOCOL => "protocol error".into(),
        md_close::SLOW_CONSUMER => "slow consumer".into(),
        md_close::FULL => "too many subscribers".into(),
        c => format!("code {c}"),
    }
}

/// Where the server is and how to log in (every client command and `feed`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Data directory holding the server's certificate (and, on the
    /// server's machine, the operator token and the symbol table).
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Server address, HOST:PORT (a name such as localhost, or an IP
    /// address); for a replicated cluster its servers, comma-separated
    /// (a,b,c): all tried at once, the one that leads takes the session.
    #[arg(long, default_value = "127.0.0.1:7070", value_name = "HOST:PORT[,…]")]
    pub server: String,
    /// Read the login token from this file (keep it mode 0600). Without
    /// --token / --token-file: $BOURSE_TOKEN, else the data directory's
    /// operator token.
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Login token. Visible to every local user in `ps` and kept in shell
    /// history: prefer --token-file or $BOURSE_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<Secret>,
}

impl ServerArgs {
    /// The login token: `--token`, else `--token-file`, else `BOURSE_TOKEN`,
    /// else the data directory's operator token (`operator`).
    pub fn login_token(&self, operator: Option<String>) -> Result<Secret, CliError> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        if let Some(path) = &self.token_file {
            return read_token_file(path);
        }
        if let Some(t) = std::env::var_os(TOKEN_ENV) {
            let t = t.to_string_lossy().trim().to_string();
            if !t.is_empty() {
                return Ok(Secret(t));
            }
        }
        operator.map(Secret).ok_or(CliError::NoToken)
    }

    /// The resolved addresses of every server named, in the order named
    /// (each server's IPv4 addresses first), each once.
    pub fn addrs(&self) -> Result<Vec<SocketAddr>, CliError> {
        server_addrs(&self.server)
    }

    /// Opens a fresh order-entry session on the first address that takes
    /// it (`client::connect_any`: past servers that do not lead).
    pub async fn connect(&self, cert_der: &[u8], token: &Secret) -> Result<Client, CliError> {
        let addrs = self.addrs()?;
        let mut cfg = ClientConfig::new(addrs[0], cert_der.to_vec(), token.expose().into());
        cfg.connect_timeout = CONNECT_BUDGET;
        client::connect_any(&addrs, &cfg).await.map_err(|tried| {
            walk_error(&self.server, tried, |addr, e| match e {
                None | Some(ClientError::Timeout(_)) => CliError::Unreachable {
                    server: self.server.clone(),
                    addr,
                },
                Some(source) => CliError::Server {
                    server: self.server.clone(),
                    addr,
                    source,
                },
            })
        })
    }
}

/// Resolves `a,b,c` (each `HOST:PORT`, see `net::resolve`), keeping the
/// order named and each address once.
pub fn server_addrs(servers: &str) -> Result<Vec<SocketAddr>, CliError> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for server in servers.split(',') {
        for a in net::resolve(server.trim())? {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// The error of a walk that found no server: one address tried says what
/// it answered (`one`), several list every answer.
pub(crate) fn walk_error<E: std::fmt::Display>(
    server: &str,
    mut tried: client::Tried<E>,
    one: impl FnOnce(SocketAddr, Option<E>) -> CliError,
) -> CliError {
    if tried.answers.len() == 1 {
        let (addr, e) = tried.answers.remove(0);
        return one(addr, e);
    }
    CliError::NoServer {
        server: server.to_string(),
        tried: tried.to_string(),
    }
}

/// Reads a token file: the first line, trimmed. Warns (once, on stderr)
/// when others may read it.
fn read_token_file(path: &Path) -> Result<Secret, CliError> {
    let err = |source| CliError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    let s = std::fs::read_to_string(path).map_err(err)?;
    #[cfg(unix)]
    if let Ok(m) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "bourse: warning: token file {} is readable by others (mode {mode:04o}); chmod 600 it",
                path.display()
            );
        }
    }
    let t = s.lines().next().unwrap_or("").trim();
    if t.is_empty() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "empty",
        )));
    }
    Ok(Secret(t.to_string()))
}

/// Tries `connect` on each address in turn within `CONNECT_BUDGET`
/// (`client::walk`): `step` says whether a failure is final, moves on, or
/// also calls for another round (`not_leader`).
pub(crate) async fn connect_first<T, E, F, Fut>(
    addrs: &[SocketAddr],
    connect: F,
    step: impl Fn(&E) -> client::Step,
) -> Result<T, client::Tried<E>>
where
    F: FnMut(SocketAddr, Duration) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    client::walk(addrs, CONNECT_BUDGET, connect, step).await
}

/// Connection options shared by the client subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    #[command(flatten)]
    /// Server and login.
    pub target: ServerArgs,
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
    /// Cancel an order, named by its order id or by the client order id
    /// it was entered with (exactly one of them).
    #[command(group(clap::ArgGroup::new("which").args(["order_id", "client_order_id"]).required(true)))]
    Cancel {
        #[command(flatten)]
        conn: ConnArgs,
        /// Order id (as printed by `order`).
        #[arg(long)]
        order_id: Option<u64>,
        /// Client order id (the `--coid` the order was entered with): the
        /// owner's live order with it.
        #[arg(long)]
        client_order_id: Option<u64>,
    },
    /// Change an order's price and/or quantity (at least one of them).
    #[command(group(clap::ArgGroup::new("change").args(["price", "qty"]).required(true).multiple(true)))]
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
        /// Cancel-and-reinsert: the order always loses its queue position.
        #[arg(long)]
        requeue: bool,
    },
    /// List open orders (of every owner the token acts for).
    Orders {
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Print again the execution reports about the token's owners' orders
    /// of the inputs after an engine seq, as far as the server's report
    /// window holds them (`REPLAY_REPORTS`: what a client gets back after a
    /// failover); a range the server no longer holds is named.
    Reports {
        #[command(flatten)]
        conn: ConnArgs,
        /// Only this partition (default: every one).
        #[arg(long)]
        partition: Option<u32>,
        /// The inputs after this engine seq (a report's `engine_seq`).
        #[arg(long, default_value_t = 0)]
        after_seq: u64,
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
    /// List an account's transfers (`--account`, a page at a time), or look
    /// transfers up by id (`--id`, repeatable). Only transfers of accounts
    /// the token's owners own are shown (all with `ledger_admin`).
    #[command(group(clap::ArgGroup::new("what").args(["account", "id"]).required(true)))]
    Transfers {
        #[command(flatten)]
        conn: ConnArgs,
        /// Account whose transfers to list (as debit or credit account).
        #[arg(long)]
        account: Option<u128>,
        /// Transfer id to look up (repeat for several).
        #[arg(long, conflicts_with = "account")]
        id: Vec<u128>,
        /// Most transfers on the page.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=engine::history::ACCOUNT_TRANSFERS_LIMIT_MAX as i64))]
        limit: u32,
        /// Newest first (default: oldest first).
        #[arg(long)]
        newest: bool,
        /// Only transfers from this ledger sequence number on (inclusive).
        #[arg(long, conflicts_with_all = ["from_time", "to_time"])]
        from_seq: Option<u64>,
        /// Only transfers up to this ledger sequence number (inclusive).
        #[arg(long, conflicts_with_all = ["from_time", "to_time"])]
        to_seq: Option<u64>,
        /// Only transfers created at or after this engine time (ns).
        #[arg(long)]
        from_time: Option<u64>,
        /// Only transfers created at or before this engine time (ns).
        #[arg(long)]
        to_time: Option<u64>,
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
        /// Instrument id (1 or more).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
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

/// Resolves an instrument symbol (or numeric id) with the data
/// directory's symbol table. With `must_exist` a numeric id must be in the
/// table too, when the table can be trusted: it exists, or the directory is
/// the server's own (it holds the operator token). `feed` needs this: the
/// market-data server answers any id, with an empty book.
pub fn resolve_instrument(data_dir: &Path, name: &str, must_exist: bool) -> Result<u32, CliError> {
    let table = symbol_table(data_dir);
    let trusted =
        data_dir.join(gateway::demo::SYMBOLS_FILE).exists() || data_dir.join(TOKEN_FILE).exists();
    let found = match name.parse::<u32>() {
        Ok(id) if !must_exist || !trusted || table.values().any(|&v| v == id) => Some(id),
        Ok(_) => None,
        Err(_) => table.get(name).copied(),
    };
    found.ok_or_else(|| CliError::UnknownInstrument {
        name: name.to_string(),
        known: if table.is_empty() {
            "none".to_string()
        } else {
            table
                .iter()
                .map(|(k, v)| format!("{k} ({v})"))
                .collect::<Vec<_>>()
                .join(", ")
        },
    })
}

/// The data directory's symbol table; for a `bourse cluster local`
/// directory (which has none of its own) the union of its nodes' tables,
/// since each node writes its own and one that was down may lag.
fn symbol_table(data_dir: &Path) -> std::collections::BTreeMap<String, u32> {
    if data_dir.join(gateway::demo::SYMBOLS_FILE).exists() {
        return gateway::demo::read_symbols(data_dir);
    }
    let mut table = std::collections::BTreeMap::new();
    for node in crate::cluster_cli::node_dirs(data_dir) {
        table.extend(gateway::demo::read_symbols(&node));
    }
    table
}

fn symbol_of(data_dir: &Path, id: u32) -> Option<String> {
    symbol_table(data_dir)
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
            // `bourse transfers` prints its rows itself (`transfers`).
            Reply::TransferRow { .. } | Reply::TransfersEnd(_) => return,
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

/// Whether a reply is this command's output. Reports routed to the session
/// because they concern one of its owners (another session's orders) are
/// not; those of its own request, and later ones about an order it placed
/// (flagged `REPORT_OWN_REQUEST`), are.
fn is_own(r: &Reply, request: u64) -> bool {
    match r {
        Reply::Report(rep) => rep.request == request || rep.flags & REPORT_OWN_REQUEST != 0,
        _ => true,
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
            | ClientCommand::Reports { conn, .. }
            | ClientCommand::Transfer { conn, .. }
            | ClientCommand::Balance { conn, .. }
            | ClientCommand::Transfers { conn, .. }
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
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
        .and_then(|rt| rt.block_on(run_async(cmd.conn(), cmd, out)));
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bourse: {e}");
            1
        }
    }
}

/// One request, checked and encoded before connecting (bad input costs no
/// connection).
#[derive(Debug)]
enum Request {
    Order(NewOrderMsg),
    Cancel(u64),
    CancelByClientId(u64),
    Replace {
        order_id: u64,
        price: u64,
        qty: u64,
        requeue: bool,
    },
    Orders,
    /// Answered by replayed reports and one ack per partition.
    Reports {
        partition: Option<u32>,
        after: u64,
    },
    Transfer(TransferRecord),
    Balance(u128),
    /// Answered by rows and an end, not by `Reply`s the printer knows.
    Transfers(TransferQuery),
    OpenAccount {
        id: u128,
        asset: String,
        flags: u16,
    },
    AddInstrument(AddInstrumentMsg),
}

fn request_of(conn: &ConnArgs, cmd: &ClientCommand) -> Result<Request, CliError> {
    Ok(match cmd {
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
            let instrument = resolve_instrument(&conn.target.data_dir, symbol, false)?;
            let coid = coid.unwrap_or_else(coid_from_clock);
            let mut m = client::limit(
                conn.owner,
                instrument,
                side.side(),
                price.unwrap_or(0),
                *qty,
                coid,
            );
            if price.is_none() {
                m.order_type = 1;
            }
            m.tif = tif.code();
            if *post_only {
                m.flags |= ORDER_POST_ONLY;
            }
            Request::Order(m)
        }
        ClientCommand::Cancel {
            order_id,
            client_order_id,
            ..
        } => match (order_id, client_order_id) {
            (_, Some(coid)) => Request::CancelByClientId(*coid),
            (id, None) => Request::Cancel(id.unwrap_or(0)),
        },
        ClientCommand::Replace {
            order_id,
            price,
            qty,
            requeue,
            ..
        } => Request::Replace {
            order_id: *order_id,
            price: price.unwrap_or(0),
            qty: qty.unwrap_or(0),
            requeue: *requeue,
        },
        ClientCommand::Orders { .. } => Request::Orders,
        ClientCommand::Reports {
            partition,
            after_seq,
            ..
        } => Request::Reports {
            partition: *partition,
            after: *after_seq,
        },
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
            let (flags, pending_id) = transfer_flags(*pending, *post, *void);
            Request::Transfer(TransferRecord {
                id: u128_bytes(*id),
                debit_account: u128_bytes(*debit),
                credit_account: u128_bytes(*credit),
                amount: u128_bytes(*amount),
                pending_id: u128_bytes(pending_id),
                timeout_ns: 0,
                code: *code,
                flags,
                reserved: 0,
            })
        }
        ClientCommand::Balance { account, .. } => Request::Balance(*account),
        ClientCommand::Transfers {
            account,
            id,
            limit,
            newest,
            from_seq,
            to_seq,
            from_time,
            to_time,
            ..
        } => Request::Transfers(match account {
            None => TransferQuery::Ids(id.clone()),
            Some(a) => TransferQuery::Account(account_filter(
                *a,
                (*from_seq, *to_seq),
                (*from_time, *to_time),
                *limit,
                *newest,
            )),
        }),
        ClientCommand::Account {
            command:
                AccountCommand::Open {
                    id,
                    asset,
                    allow_overdraft,
                    ..
                },
        } => {
            copy_code(&mut [0u8; 12], asset)?;
            Request::OpenAccount {
                id: *id,
                asset: asset.clone(),
                flags: if *allow_overdraft {
                    0
                } else {
                    engine::AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                },
            }
        }
        ClientCommand::Instrument { command } => instrument_request(command)?,
    })
}

/// `instrument add`: its frame, the codes checked.
fn instrument_request(command: &InstrumentCommand) -> Result<Request, CliError> {
    let InstrumentCommand::Add {
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
    } = command;
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
    Ok(Request::AddInstrument(m))
}

/// A client order id from the clock: microseconds since the epoch (ids
/// rise over time) times 4,096, plus 12 low bits that differ between
/// commands started in the same microsecond — a random offset per process
/// (16 `order` commands started at once from a shell used to share ids and
/// be rejected `duplicate_client_order_id`) plus a count within it.
fn coid_from_clock() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static OFFSET: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let offset = *OFFSET.get_or_init(|| {
        // std's per-process random hash keys, mixed with the pid.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    });
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let low = offset.wrapping_add(COUNT.fetch_add(1, Ordering::Relaxed)) & 0xfff;
    (micros << 12) | low
}

impl SideArg {
    fn side(self) -> Side {
        match self {
            SideArg::Buy => Side::Buy,
            SideArg::Sell => Side::Sell,
        }
    }
}

impl TifArg {
    /// The wire's time-in-force code.
    fn code(self) -> u8 {
        match self {
            TifArg::Gtc => 0,
            TifArg::Ioc => 1,
            TifArg::Fok => 2,
        }
    }
}

/// A transfer's flags and pending id from `--pending`, `--post ID`, `--void ID`.
fn transfer_flags(pending: bool, post: Option<u128>, void: Option<u128>) -> (u16, u128) {
    let mut flags = 0u16;
    let mut pending_id = 0u128;
    if pending {
        flags |= engine::TransferFlags::PENDING;
    }
    if let Some(p) = post {
        flags |= engine::TransferFlags::POST_PENDING;
        pending_id = p;
    }
    if let Some(p) = void {
        flags |= engine::TransferFlags::VOID_PENDING;
        pending_id = p;
    }
    (flags, pending_id)
}

/// One account's history query: by time when either time bound is given,
/// else by ledger sequence (bounds open when absent).
fn account_filter(
    account: u128,
    (from_seq, to_seq): (Option<u64>, Option<u64>),
    (from_time, to_time): (Option<u64>, Option<u64>),
    limit: u32,
    newest_first: bool,
) -> engine::history::AccountFilter {
    let by_time = from_time.is_some() || to_time.is_some();
    let (lo, hi) = if by_time {
        (from_time, to_time)
    } else {
        (from_seq, to_seq)
    };
    engine::history::AccountFilter {
        account: engine::AccountId(account),
        by: if by_time {
            engine::history::RangeBy::Time
        } else {
            engine::history::RangeBy::LedgerSeq
        },
        lo: lo.unwrap_or(0),
        hi: hi.unwrap_or(u64::MAX),
        limit,
        newest_first,
    }
}

/// Queues `r` on `c`; returns its request number.
fn queue(c: &mut Client, owner: u64, r: Request) -> u64 {
    match r {
        Request::Order(m) => c.order(m),
        Request::Cancel(order_id) => c.cancel(owner, order_id),
        Request::CancelByClientId(coid) => c.cancel_by_client_id(owner, coid),
        Request::Replace {
            order_id,
            price,
            qty,
            requeue,
        } => {
            let flags = if requeue { REPLACE_REQUEUE } else { 0 };
            c.replace_with(owner, order_id, (price, qty), flags)
        }
        Request::Orders => c.query_open_orders(0),
        Request::Reports { partition, after } => c.replay_reports(partition.unwrap_or(0), after),
        Request::Transfer(t) => c.transfer_batch(&[t]),
        Request::Balance(a) => c.query_balance(a),
        Request::Transfers(TransferQuery::Ids(ids)) => {
            let ids: Vec<engine::TransferId> = ids.into_iter().map(engine::TransferId).collect();
            c.queue_lookup_transfers(&ids).first().copied().unwrap_or(0)
        }
        Request::Transfers(TransferQuery::Account(f)) => c.queue_get_account_transfers(&f),
        Request::OpenAccount { id, asset, flags } => c.open_account(id, owner, &asset, flags),
        Request::AddInstrument(m) => c.add_instrument(m),
    }
}

async fn run_async<W: Write>(
    conn: &ConnArgs,
    cmd: &ClientCommand,
    out: &mut W,
) -> Result<(), CliError> {
    let target = &conn.target;
    let req = request_of(conn, cmd)?;
    let id = load_client_identity(&target.data_dir)?;
    let token = target.login_token(id.operator_token)?;
    let mut c = target.connect(&id.cert_der, &token).await?;
    let addr = c.connection().remote_address();
    let server_err = |source| CliError::Server {
        server: target.server.clone(),
        addr,
        source,
    };
    let special = match &req {
        Request::Transfers(q) => {
            Some(tokio::time::timeout(ANSWER_LIMIT, transfers(&mut c, q, conn.json, out)).await)
        }
        Request::Reports { partition, after } => {
            let mut p = Printer {
                out,
                json: conn.json,
                data_dir: target.data_dir.clone(),
            };
            let asks = (*partition, *after);
            Some(tokio::time::timeout(ANSWER_LIMIT, reports(&mut c, asks, &mut p)).await)
        }
        _ => None,
    };
    if let Some(answer) = special {
        c.close().await;
        return match answer {
            Ok(r) => r.map_err(server_err),
            Err(_) => Err(CliError::NoAnswer {
                server: target.server.clone(),
            }),
        };
    }
    let request = queue(&mut c, conn.owner, req);
    c.flush().await.map_err(server_err)?;
    let mut p = Printer {
        out,
        json: conn.json,
        data_dir: target.data_dir.clone(),
    };
    // Orders, cancels and replaces are answered by execution reports: print
    // those of this request, then whatever else of ours arrives within a
    // short quiet period (the rest of the same engine input arrives together).
    let quiet = Duration::from_millis(150);
    let mut seen_own = false;
    loop {
        let wait = if seen_own { quiet } else { ANSWER_LIMIT };
        let Some(r) = c.next_timeout(wait).await.map_err(server_err)? else {
            if !seen_own {
                return Err(CliError::NoAnswer {
                    server: target.server.clone(),
                });
            }
            break;
        };
        if !is_own(&r, request) {
            continue;
        }
        if matches!(&r, Reply::Report(rep) if rep.request == request) {
            seen_own = true;
        }
        p.reply(&r);
        if is_final(&r, request) {
            break;
        }
    }
    // Nothing resumes a CLI session: log out so the server forgets it now.
    c.close().await;
    Ok(())
}

/// `bourse reports`: the replayed reports (those flagged replayed: live
/// ones of this fresh session are not what was asked), then per gap the
/// range no longer held, then how many.
async fn reports<W: Write>(
    c: &mut Client,
    (partition, after): (Option<u32>, u64),
    p: &mut Printer<'_, W>,
) -> Result<(), ClientError> {
    let asks: Vec<(u32, u64)> = match partition {
        Some(one) => vec![(one, after)],
        None => (0..u32::from(c.login().partitions.max(1)))
            .map(|q| (q, after))
            .collect(),
    };
    let got = c.replay_after(&asks).await?;
    while let Some(r) = c.next_timeout(Duration::ZERO).await? {
        if matches!(&r, Reply::Report(rep) if rep.flags & REPORT_REPLAYED != 0) {
            p.reply(&r);
        }
    }
    let mut lines: Vec<String> = got
        .gaps
        .iter()
        .map(|g| match p.json {
            true => serde_json::json!({
                "type": "replay_gap", "partition": g.partition,
                "after_seq": g.after_seq, "floor": g.floor,
            })
            .to_string(),
            false => format!(
                "partition {}: the reports of inputs {}..={} are not held here (older than the server's report window; see `orders`)",
                g.partition,
                g.after_seq + 1,
                g.floor
            ),
        })
        .collect();
    lines.push(match p.json {
        true => serde_json::json!({"type": "replay_end", "reports": got.replayed}).to_string(),
        false => format!("{} reports replayed", got.replayed),
    });
    for l in lines {
        let _ = writeln!(p.out, "{l}");
    }
    Ok(())
}

/// What `bourse transfers` asks.
#[derive(Debug)]
enum TransferQuery {
    Ids(Vec<u128>),
    Account(engine::history::AccountFilter),
}

/// Runs a transfer query and prints its answer: a table (or JSON lines),
/// then a count and, when more match, the flags of the next page. A
/// refusal (`not_authorized`, `account_not_found`, …) is printed, not an error.
async fn transfers<W: Write>(
    c: &mut Client,
    q: &TransferQuery,
    json: bool,
    out: &mut W,
) -> Result<(), ClientError> {
    let mut lines = Vec::new();
    match q {
        TransferQuery::Ids(ids) => {
            let ids: Vec<engine::TransferId> = ids.iter().map(|&i| engine::TransferId(i)).collect();
            let found = c.lookup_transfers(&ids).await?;
            let rows: Vec<_> = found.iter().flatten().copied().collect();
            lines.extend(transfer_table(&rows, json));
            for (id, f) in ids.iter().zip(&found) {
                if f.is_none() {
                    lines.push(if json {
                        serde_json::json!({"type": "transfer_not_found", "id": id.0.to_string()})
                            .to_string()
                    } else {
                        format!("transfer {}: not found", id.0)
                    });
                }
            }
        }
        TransferQuery::Account(f) => {
            let (page, result) = match c.get_account_transfers(*f).await {
                Ok(page) => (page, "ok".to_string()),
                Err(ClientError::Refused(code)) => (
                    client::TransferPage {
                        rows: Vec::new(),
                        more: false,
                    },
                    client::reject_name(code),
                ),
                Err(e) => return Err(e),
            };
            lines.extend(transfer_table(&page.rows, json));
            let next = if page.more {
                page.rows.last().map(|last| next_page_flags(f, last))
            } else {
                None
            };
            lines.push(if json {
                serde_json::json!({
                    "type": "transfers_end", "account": f.account.0.to_string(),
                    "result": result, "count": page.rows.len(), "more": page.more,
                    "next": next,
                })
                .to_string()
            } else if result != "ok" {
                format!("transfers of account {}: {result}", f.account.0)
            } else {
                let mut l = format!("{} transfer(s)", page.rows.len());
                if let Some(n) = next {
                    l.push_str(&format!(
                        "; more: next page: bourse transfers --account {} {n}",
                        f.account.0
                    ));
                }
                l
            });
        }
    }
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
    Ok(())
}

/// The flags that fetch the page after `last` (same range, limit and order).
fn next_page_flags(f: &engine::history::AccountFilter, last: &client::TransferRow) -> String {
    let mut v = vec![format!("--limit {}", f.limit)];
    if f.newest_first {
        v.push("--newest".to_string());
    }
    let (from, to, at) = match f.by {
        engine::history::RangeBy::LedgerSeq => ("--from-seq", "--to-seq", last.ledger_seq),
        // Time is not unique: the next page starts at the last row's time,
        // so rows stamped with that same nanosecond show again.
        engine::history::RangeBy::Time => ("--from-time", "--to-time", last.created.0),
    };
    let seq = matches!(f.by, engine::history::RangeBy::LedgerSeq);
    let (lo, hi) = if f.newest_first {
        (f.lo, if seq { at.saturating_sub(1) } else { at })
    } else {
        (if seq { at.saturating_add(1) } else { at }, f.hi)
    };
    if lo != 0 {
        v.push(format!("{from} {lo}"));
    }
    if hi != u64::MAX {
        v.push(format!("{to} {hi}"));
    }
    v.join(" ")
}

/// Transfer rows as an aligned text table (header first) or JSON lines.
fn transfer_table(rows: &[client::TransferRow], json: bool) -> Vec<String> {
    if json {
        return rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "type": "transfer", "ledger_seq": r.ledger_seq, "id": r.spec.id.0.to_string(),
                    "debit_account": r.debit_account.0.to_string(),
                    "credit_account": r.credit_account.0.to_string(),
                    "amount": r.amount.0.to_string(),
                    "requested_amount": r.spec.amount.0.to_string(),
                    "state": r.state.as_str(), "code": r.spec.code, "flags": r.spec.flags.0,
                    "pending_id": r.spec.pending_id.0.to_string(), "timeout_ns": r.spec.timeout_ns,
                    "created": r.created.0, "created_seq": r.created_seq.0,
                    "change_seq": r.change_seq.0,
                })
                .to_string()
            })
            .collect();
    }
    if rows.is_empty() {
        return Vec::new();
    }
    let head = [
        "SEQ",
        "ID",
        "DEBIT",
        "CREDIT",
        "AMOUNT",
        "STATE",
        "CODE",
        "PENDING_ID",
        "CREATED",
    ];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let pending = r.spec.pending_id.0;
        cells.push(vec![
            r.ledger_seq.to_string(),
            r.spec.id.0.to_string(),
            r.debit_account.0.to_string(),
            r.credit_account.0.to_string(),
            r.amount.0.to_string(),
            r.state.as_str().to_string(),
            r.spec.code.to_string(),
            if pending == 0 {
                "-".to_string()
            } else {
                pending.to_string()
            },
            r.created.0.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| cells.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    cells
        .iter()
        .map(|row| {
            let cols: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cols.join("  ").trim_end().to_string()
        })
        .collect()
}

fn copy_code<const N: usize>(dst: &mut [u8; N], s: &str) -> Result<(), CliError> {
    if s.is_empty() || s.len() > N || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::BadCode {
            value: s.to_string(),
            max: N,
        });
    }
    dst[..s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_order_ids_from_the_clock_never_repeat_and_rise() {
        // Thousands within the same microseconds: the count keeps them apart.
        let ids: Vec<u64> = (0..4_000).map(|_| coid_from_clock()).collect();
        let mut seen = ids.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), ids.len(), "a repeated id");
        assert!(ids.iter().all(|&i| i < 1 << 63), "fits a signed 64-bit id");
        let before = coid_from_clock() >> 12;
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(coid_from_clock() >> 12 > before, "later ids are larger");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let s: Secret = "hunter2-token".parse().unwrap();
        assert_eq!(format!("{s:?}"), "<redacted>");
        let a = ServerArgs {
            data_dir: "d".into(),
            server: "localhost:7070".into(),
            token_file: None,
            token: Some(s),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        let cfg = ClientConfig::new(
            "127.0.0.1:1".parse().unwrap(),
            Vec::new(),
            "hunter2-token".into(),
        );
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_server_list_resolves_in_order_each_address_once() {
        let a = server_addrs("127.0.0.1:7071, 127.0.0.1:7072,127.0.0.1:7071,127.0.0.1").unwrap();
        let ports: Vec<u16> = a.iter().map(|a| a.port()).collect();
        assert_eq!(ports, [7071, 7072, 7070]);
        assert!(matches!(
            server_addrs("127.0.0.1:7071,"),
            Err(CliError::Resolve(_))
        ));
    }

    /// The CLI's walk over `a,b,c`: a follower's `not_leader` moves on to
    /// the next server; a refused token stops; the error lists every server
    /// tried with its answer.
    #[test]
    fn connect_first_walks_past_a_server_that_does_not_lead() {
        let addrs = server_addrs("127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103").unwrap();
        let fake = |answers: [Option<u16>; 3]| {
            let addrs = addrs.clone();
            move |addr: SocketAddr, _| {
                let i = addrs.iter().position(|a| *a == addr).unwrap();
                async move {
                    match answers[i] {
                        None => Ok(addr),
                        Some(code) => Err(ClientError::LoginRejected(code)),
                    }
                }
            }
        };
        let not_leader = Some(login_reject::NOT_LEADER);
        let got = rt().block_on(connect_first(
            &addrs,
            fake([not_leader, None, None]),
            client::login_step,
        ));
        assert_eq!(got.unwrap(), addrs[1], "the second server leads");
        let bad = Some(login_reject::BAD_TOKEN);
        let e = rt()
            .block_on(connect_first(
                &addrs,
                fake([not_leader, bad, None]),
                client::login_step,
            ))
            .unwrap_err();
        let e = walk_error("a,b,c", e, |_, _| unreachable!("two were tried"));
        assert_eq!(
            e.to_string(),
            "no server of a,b,c took the session: 127.0.0.1:7101: login rejected: \
             not_leader; 127.0.0.1:7102: login rejected: bad_token"
        );
        // One server only: its own answer, as before.
        let e = rt()
            .block_on(connect_first(
                &addrs[2..],
                fake([bad, bad, bad]),
                client::login_step,
            ))
            .unwrap_err();
        let e = walk_error("c", e, |addr, e| CliError::Server {
            server: "c".into(),
            addr,
            source: e.unwrap(),
        });
        assert_eq!(
            e.to_string(),
            "server c (127.0.0.1:7103): login rejected: bad_token"
        );
    }

    #[test]
    fn a_cluster_directory_resolves_symbols_with_its_nodes_tables() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let table = |pairs: &[(&str, u32)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        for (node, pairs) in [
            ("n1", &[("BTC-USD", 1)][..]),
            ("n2", &[("BTC-USD", 1), ("ETH-USD", 2)]),
        ] {
            std::fs::create_dir_all(dir.join(node)).unwrap();
            std::fs::write(dir.join(node).join(crate::cluster_cli::NODE_CONFIG), "").unwrap();
            gateway::demo::write_symbols(&dir.join(node), &table(pairs)).unwrap();
        }
        assert_eq!(resolve_instrument(dir, "ETH-USD", true).unwrap(), 2);
        assert_eq!(symbol_of(dir, 1).as_deref(), Some("BTC-USD"));
        // A table of its own wins.
        gateway::demo::write_symbols(dir, &table(&[("SOL-USD", 9)])).unwrap();
        assert!(resolve_instrument(dir, "ETH-USD", false).is_err());
        assert_eq!(resolve_instrument(dir, "SOL-USD", false).unwrap(), 9);
    }
}
