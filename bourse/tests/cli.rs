//! The client subcommands as a user runs them: real `bourse` processes
//! (`CARGO_BIN_EXE_bourse`) against an in-process server on an ephemeral
//! port with the demo set (BTC-USD = 1), each test a list of command lines
//! and what their output must (and must not) say. One library test covers
//! the client's pipelining (`quic_bench`'s throughput part).

mod support;

use gateway::client::{limit, Client, ClientConfig, Reply};
use gateway::identity::{load_client_identity, CERT_FILE};
use gateway::server::{self, ServerConfig, ServerHandle};
use gateway::wire::exec_type;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::text;

struct Srv {
    handle: ServerHandle,
    dir: tempfile::TempDir,
}

/// An in-process server's configuration in `dir`: an ephemeral port, the
/// demo set (explicitly: `serve` makes it only on request), `durability`,
/// unpinned yielding engine threads.
fn server_config(dir: &Path, durability: journal::Durability) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.demo = true;
    cfg.pipeline.durability = durability;
    cfg.pipeline.runtime.pin = false;
    cfg.pipeline.runtime.idle = runtime::IdleStrategy::Yield;
    cfg.companion = Some(feeds::companion(feeds::MdConfig::default()));
    cfg
}

/// A server with the demo set, journaling asynchronously.
fn start() -> Srv {
    let dir = tempfile::tempdir().unwrap();
    let cfg = server_config(dir.path(), journal::Durability::Async);
    let handle = server::start(cfg).unwrap();
    Srv { handle, dir }
}

impl Srv {
    fn addr(&self) -> String {
        self.handle.addr().to_string()
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `--data-dir D --server ADDR` then `args`.
    fn cmd(&self, sub: &[&str], args: &[&str]) -> Command {
        let mut c = self.cmd_to(sub, &self.addr());
        c.args(args);
        c
    }

    /// `--data-dir D --server SERVER` (another address than this server's).
    fn cmd_to(&self, sub: &[&str], server: &str) -> Command {
        let mut c = bourse(sub);
        c.arg("--data-dir")
            .arg(self.data_dir())
            .args(["--server", server]);
        c
    }

    /// `order`: a BTC-USD buy of `qty` at `price` with client order id `coid`.
    fn order(&self, coid: u64, price: u64, qty: &str) -> Command {
        let args = order_args(coid, price, qty);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cmd(&["order"], &args)
    }

    fn token(&self) -> String {
        load_client_identity(self.data_dir())
            .unwrap()
            .operator_token
            .unwrap()
    }

    /// A data directory with only the server certificate: no operator
    /// token, no symbol table (a client on another machine).
    fn client_dir(&self) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let cert = d.path().join(CERT_FILE);
        std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
        std::fs::copy(self.data_dir().join(CERT_FILE), cert).unwrap();
        d
    }
}

/// The binary with a clean environment for the variables it reads.
fn bourse(sub: &[&str]) -> Command {
    let mut c = Command::new(support::BOURSE);
    c.args(sub)
        .env_remove("BOURSE_TOKEN")
        .env_remove("BOURSE_LOG")
        .stdin(Stdio::null());
    c
}

fn run(mut c: Command) -> Output {
    c.output().unwrap()
}

/// Runs `c`, which must succeed; returns its standard output.
fn run_ok(c: Command) -> String {
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// Runs `c` (killed after `limit`); returns its output and how long it took.
fn run_timed(mut c: Command, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while t0.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    let _ = child.kill();
    (child.wait_with_output().unwrap(), took)
}

fn order_args(coid: u64, price: u64, qty: &str) -> Vec<String> {
    [
        "--symbol",
        "BTC-USD",
        "--side",
        "buy",
        "--price",
        &price.to_string(),
        "--qty",
        qty,
        "--coid",
        &coid.to_string(),
    ]
    .map(str::to_string)
    .to_vec()
}

/// A UDP address on localhost that nobody listens on (the socket that
/// found it is closed again).
fn unused_addr() -> std::net::SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The client order ids named in `stdout` (`coid N`).
fn coids(stdout: &str) -> Vec<u64> {
    stdout
        .split("coid ")
        .skip(1)
        .filter_map(|s| {
            s.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

#[test]
fn parallel_orders_each_print_their_own_report_and_all_reach_the_journal() {
    let s = start();
    // One command first: before the fix it left a session file that every
    // later command resumed (one session, one request counter for all).
    let first = run(s.order(100, 50_100, "1"));
    assert!(first.status.success(), "{}", text(&first.stderr));
    let children: Vec<_> = (101..=116u64)
        .map(|coid| {
            let mut c = s.order(coid, 50_000 + coid, "1");
            (
                coid,
                c.stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for (coid, child) in children {
        let out = child.wait_with_output().unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "coid {coid}: {}", text(&out.stderr));
        assert!(
            stdout.contains("NEW order"),
            "coid {coid}: no acknowledgement in {stdout:?}"
        );
        assert_eq!(
            coids(&stdout)
                .into_iter()
                .filter(|&c| c != coid)
                .collect::<Vec<_>>(),
            Vec::<u64>::new(),
            "coid {coid} printed someone else's report: {stdout:?}"
        );
    }
    // No shared session file (and nothing else secret) is left behind.
    assert!(!s.data_dir().join("cli.session").exists());
    // A later command, in a session of its own, still lists them all: the
    // engine answers open orders.
    let out = run(s.cmd(&["orders"], &[]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = coids(&text(&out.stdout));
    for coid in 100..=116u64 {
        assert!(
            listed.contains(&coid),
            "coid {coid} not listed: {}",
            text(&out.stdout)
        );
    }

    let dir = s.dir.path().to_path_buf();
    let Srv { handle, dir: _keep } = s;
    handle.shutdown();
    let mut dump = Vec::new();
    bourse::journal_cli::run_journal_dump(&runtime::partition_dir(&dir, 0), None, None, &mut dump)
        .unwrap();
    let journaled: Vec<u64> = text(&dump)
        .lines()
        .filter(|l| l.contains(r#""cmd":"order""#))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["client_order_id"].as_u64())
        .collect();
    for coid in 100..=116u64 {
        assert!(
            journaled.contains(&coid),
            "coid {coid} not journaled: {journaled:?}"
        );
    }
}

#[test]
fn token_file_and_environment_log_in_and_the_token_never_reaches_the_logs() {
    let s = start();
    let client = s.client_dir();
    let token = s.token();
    let file: PathBuf = client.path().join("my.token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let conn = |c: &mut Command| {
        c.arg("--data-dir")
            .arg(client.path())
            .args(["--server", &s.addr()]);
    };
    let order = [
        "--symbol", "1", "--side", "buy", "--price", "95", "--qty", "1",
    ];

    // --token-file, with every log line on.
    let mut c = bourse(&["order"]);
    conn(&mut c);
    c.arg("--token-file")
        .arg(&file)
        .args(order)
        .args(["--coid", "7"]);
    c.env("BOURSE_LOG", "trace");
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("coid 7"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stderr).contains(&token), "token in the logs");
    assert!(!text(&out.stdout).contains(&token), "token printed");

    // BOURSE_TOKEN.
    let mut c = bourse(&["order"]);
    conn(&mut c);
    c.args(order)
        .args(["--coid", "8"])
        .env("BOURSE_TOKEN", &token);
    let o = run_ok(c);
    assert!(o.contains("coid 8"), "{o}");

    // A wrong token in the environment is refused, and not echoed.
    let mut c = bourse(&["orders"]);
    conn(&mut c);
    c.env("BOURSE_TOKEN", "not-the-token-at-all");
    c.env("BOURSE_LOG", "trace");
    let out = run(c);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("bad_token"), "{err}");
    assert!(!err.contains("not-the-token-at-all"), "{err}");

    // The market-data feed takes the token the same ways.
    let mut c = bourse(&["feed", "1", "--json", "--seconds", "1"]);
    conn(&mut c);
    c.arg("--token-file").arg(&file);
    assert!(run_ok(c).contains(r#""type":"book""#));
}

#[test]
fn logs_carry_no_colour_codes_when_redirected() {
    let s = start();
    let mut c = s.cmd(&["orders"], &[]);
    c.env("BOURSE_LOG", "trace");
    let out = run(c);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(!err.is_empty(), "trace logging printed nothing");
    assert!(
        !err.contains('\x1b'),
        "ANSI escapes in redirected logs: {err:.400}"
    );
}

#[test]
fn host_names_resolve_and_an_unreachable_server_fails_fast_naming_it() {
    let s = start();
    let port = s.handle.addr().port();
    let out = run(s.cmd_to(&["orders"], &format!("localhost:{port}")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("open order(s)"));

    // A port nobody listens on.
    let free = unused_addr();
    let c = s.cmd_to(&["orders"], &free.to_string());
    let (out, took) = run_timed(c, Duration::from_secs(15));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&free.to_string()), "{err}");

    // A name that does not resolve.
    let out = run(s.cmd_to(&["orders"], "no-such-host.invalid:7070"));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no-such-host.invalid"));
}

#[test]
fn feed_from_an_unreachable_server_fails_fast_naming_it() {
    let s = start();
    let free = unused_addr();
    let c = s.cmd_to(&["feed", "BTC-USD"], &free.to_string());
    let (out, took) = run_timed(c, Duration::from_secs(15));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&free.to_string()),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn feed_of_an_unknown_instrument_is_an_error_naming_it() {
    let s = start();
    for sym in ["99", "NOPE-USD"] {
        let (out, _) = run_timed(
            s.cmd(&["feed", sym], &["--seconds", "3"]),
            Duration::from_secs(10),
        );
        assert!(!out.status.success(), "{sym}: exit {:?}", out.status);
        assert!(
            text(&out.stderr).contains(sym),
            "{sym}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn feed_level_l3_lists_orders_in_queue_order() {
    let s = start();
    let mut ids = Vec::new();
    for (coid, qty) in [(1u64, "2"), (2, "3")] {
        let mut c = s.order(coid, 59_000, qty);
        c.arg("--json");
        let out = run(c);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let new = text(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["exec_type"] == "new")
            .unwrap();
        ids.push(new["order_id"].as_u64().unwrap());
    }
    let out = run(s.cmd(
        &["feed", "BTC-USD"],
        &["--level", "l3", "--json", "--seconds", "1"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let book = text(&out.stdout)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "book")
        .unwrap();
    assert_eq!(
        book["bids"],
        serde_json::json!([
            {"order_id": ids[0], "price": 59000, "qty": 2},
            {"order_id": ids[1], "price": 59000, "qty": 3},
        ]),
        "{book}"
    );
    assert_eq!(book["asks"], serde_json::json!([]));
}

#[test]
fn feed_draws_no_terminal_escapes_when_stdout_is_not_a_terminal() {
    let s = start();
    let out = run(s.order(5, 50_500, "1"));
    assert!(out.status.success());
    let o = run_ok(s.cmd(&["feed", "BTC-USD"], &["--seconds", "1"]));
    assert!(o.contains("BTC-USD") && o.contains("50500"), "{o}");
    assert!(!o.contains('\x1b'), "{o:?}");
}

#[test]
fn reject_and_market_reports_print_no_placeholder_fields() {
    let s = start();
    let o = run_ok(s.cmd(&["cancel"], &["--order-id", "999999"]));
    assert!(o.contains("REJECTED") && o.contains("999999"), "{o}");
    for placeholder in ["instrument 0", "@ 0", "coid 0", " 0 @"] {
        assert!(!o.contains(placeholder), "{placeholder:?} in {o}");
    }

    // A market order: no price to print.
    let o = run_ok(s.cmd(
        &["order"],
        &[
            "--symbol", "BTC-USD", "--side", "sell", "--qty", "1", "--coid", "55",
        ],
    ));
    assert!(o.contains("coid 55") && o.contains("market"), "{o}");
    assert!(!o.contains("@ 0"), "{o}");
}

/// The README's sequence: each command is its own session, so reports on an
/// order another command placed (the maker's fill, a replace, a cancel)
/// reach a session that never saw the order. They print what the event
/// says and nothing made up (before: `sell 0 at market`, `cum 0 leaves 0`,
/// `| unknown`).
#[test]
fn reports_on_orders_of_other_invocations_print_only_what_is_known() {
    let s = start();
    let sell = [
        "--symbol", "BTC-USD", "--side", "sell", "--price", "60000", "--qty", "5", "--owner", "2",
    ];
    let o = run_ok(s.cmd(&["order"], &sell));
    assert!(
        o.contains("NEW order 1") && o.contains("sell 5 @ 60000"),
        "{o}"
    );
    let buy = [
        "--symbol", "BTC-USD", "--side", "buy", "--price", "60000", "--qty", "3",
    ];
    let o = run_ok(s.cmd(&["order"], &buy));
    assert!(
        o.contains("TRADE order 1 (owner 2) BTC-USD sell | filled 3 @ 60000"),
        "{o}"
    );
    let replaced = run_ok(s.cmd(
        &["replace"],
        &["--order-id", "1", "--price", "60010", "--owner", "2"],
    ));
    assert!(
        replaced.contains("REPLACED order 1 (owner 2) | now sell 2 @ 60010"),
        "{replaced}"
    );
    let canceled = run_ok(s.cmd(&["cancel"], &["--order-id", "1", "--owner", "2"]));
    assert!(
        canceled.contains("CANCELED order 1 (owner 2) | sell 2 @ 60010 removed | reason user"),
        "{canceled}"
    );
    for out in [&o, &replaced, &canceled] {
        for placeholder in ["unknown", " 0 at market", "cum 0 leaves 0", "@ 0"] {
            assert!(!out.contains(placeholder), "{placeholder:?} in {out}");
        }
    }
}

#[test]
fn arguments_that_cannot_work_are_refused_before_sending() {
    let s = start();
    let out = run(s.cmd(
        &["instrument", "add"],
        &[
            "--id", "0", "--symbol", "ZERO-USD", "--base", "ZERO", "--quote", "USD",
        ],
    ));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("--id"), "{}", text(&out.stderr));

    let out = run(s.cmd(&["replace"], &["--order-id", "5"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("--price") && err.contains("--qty"), "{err}");
}

/// Many orders written before any reply is read (more than either side's
/// stream window holds, both ways) must all be answered: the client keeps
/// reading while its write waits for flow-control credit. Before, the
/// client blocked in its write while the server blocked in its own, and
/// `quic_bench`'s pipelined part never finished.
#[test]
fn pipelined_orders_beyond_the_flow_control_windows_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_config(dir.path(), journal::Durability::None);
    cfg.session.throttle_per_s = 100_000_000;
    cfg.session.throttle_burst = 10_000_000;
    cfg.session.max_in_flight = 1 << 16;
    cfg.session.max_open_orders = 1 << 20;
    cfg.session.replay_reports_max = 1 << 18;
    let srv = server::start(cfg).unwrap();
    let id = load_client_identity(dir.path()).unwrap();
    let cc = ClientConfig::new(srv.addr(), id.cert_der, id.operator_token.unwrap());
    // 50,000 orders: 4.4 MB of requests, 12 MB of reports (windows: 1 MiB
    // per stream; `quic_bench` keeps 32,768 orders unanswered).
    const N: u64 = 50_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answered = rt.block_on(async {
        let mut c = Client::connect(&cc).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            for batch in 0..N / 250 {
                for i in 0..250 {
                    let mut m = limit(1, 1, engine::Side::Buy, 60_000, 1, batch * 250 + i + 1);
                    m.tif = 1; // IOC against an empty book: NEW, then CANCELED.
                    c.order(m);
                }
                c.flush().await.unwrap();
            }
            let mut answered = 0;
            while answered < N {
                match c.next().await.unwrap() {
                    Some(Reply::Report(r))
                        if matches!(r.exec_type, exec_type::NEW | exec_type::REJECTED) =>
                    {
                        answered += 1
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            answered
        })
        .await
    });
    assert_eq!(
        answered.ok(),
        Some(N),
        "stalled: not every order was answered within 30 s"
    );
}

#[test]
fn serve_logs_carry_no_colour_codes_when_redirected() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = bourse(&[]);
    support::serve_args(&mut c, dir.path(), &["--no-metrics"]);
    let mut child = support::spawn_piped(c.env("BOURSE_LOG", "trace"));
    // The first line names the address; a client's visit makes the server log.
    let first = support::first_line(&mut child).0.unwrap_or_default();
    let addr = support::addr_of(first.trim()).to_string();
    let out = run({
        let mut c = bourse(&["orders", "--server", &addr, "--data-dir"]);
        c.arg(dir.path());
        c
    });
    assert!(out.status.success(), "{first}: {}", text(&out.stderr));
    let st = support::signal(&child, "-TERM").unwrap();
    assert!(st.success());
    let _ = support::wait_since(&mut child, Instant::now(), Duration::from_secs(15));
    let _ = child.kill();
    let err = support::read_stderr(&mut child);
    assert!(
        err.contains("TRACE"),
        "trace logging printed nothing: {err}"
    );
    assert!(
        !err.contains('\x1b'),
        "ANSI escapes in redirected logs: {err:.400}"
    );
}

/// `bourse transfers` after the README's walkthrough transfer: the
/// account's listing shows the demo funding and transfer 1000, pages with a
/// hint, prints JSON lines, looks ids up; another owner's token sees none of
/// it. The client library's typed calls answer the same.
#[test]
fn transfers_lists_the_walkthroughs_transfers_only_to_their_owners() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_config(dir.path(), journal::Durability::Async);
    let stranger = "stranger-token-0123456789";
    let read = gateway::session::Perms {
        read: true,
        ..Default::default()
    };
    cfg.tokens
        .push((stranger.to_string(), vec![engine::OwnerId(3)], read));
    let s = Srv {
        handle: server::start(cfg).unwrap(),
        dir,
    };
    let t = [
        "--id", "1000", "--debit", "101", "--credit", "201", "--amount", "50",
    ];
    assert!(run_ok(s.cmd(&["transfer"], &t)).contains("ok"));

    let o = run_ok(s.cmd(&["transfers"], &["--account", "101", "--limit", "20"]));
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines.len(), 4, "{o}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        cols(lines[0]),
        [
            "SEQ",
            "ID",
            "DEBIT",
            "CREDIT",
            "AMOUNT",
            "STATE",
            "CODE",
            "PENDING_ID",
            "CREATED"
        ]
    );
    let funding = cols(lines[1]);
    assert_eq!(
        &funding[1..6],
        ["1", "1", "101", "100000000", "posted"],
        "{o}"
    );
    let mine = cols(lines[2]);
    assert_eq!(
        &mine[1..8],
        ["1000", "101", "201", "50", "posted", "1", "-"],
        "{o}"
    );
    assert_eq!(lines[3], "2 transfer(s)");

    // A page of one: the hint names the next page's flags.
    let o = run_ok(s.cmd(&["transfers"], &["--account", "101", "--limit", "1"]));
    let next_seq: u64 = funding[0].parse::<u64>().unwrap() + 1;
    assert!(
        o.ends_with(&format!(
            "1 transfer(s); more: next page: bourse transfers --account 101 --limit 1 --from-seq {next_seq}\n"
        )),
        "{o}"
    );
    let o = run_ok(s.cmd(
        &["transfers"],
        &[
            "--account",
            "101",
            "--limit",
            "1",
            "--from-seq",
            &next_seq.to_string(),
        ],
    ));
    assert!(
        o.contains(" 1000 ") && o.ends_with("1 transfer(s)\n"),
        "{o}"
    );
    let o = run_ok(s.cmd(&["transfers"], &["--account", "101", "--newest", "--json"]));
    let v: Vec<serde_json::Value> = o
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 3, "{o}");
    assert_eq!(
        (v[0]["type"].as_str(), v[0]["id"].as_str()),
        (Some("transfer"), Some("1000"))
    );
    assert_eq!(v[0]["state"], "posted");
    assert_eq!(v[2]["type"], "transfers_end");
    assert_eq!(
        (v[2]["count"].as_u64(), v[2]["more"].as_bool()),
        (Some(2), Some(false))
    );

    // Lookups by id: found rows, then the ids nobody may see or that do not exist.
    let o = run_ok(s.cmd(&["transfers"], &["--id", "1000", "--id", "4242"]));
    assert!(
        o.contains(" 1000 ") && o.ends_with("transfer 4242: not found\n"),
        "{o}"
    );

    // Another owner's token: the account is refused, the transfer unseen.
    let other = |args: &[&str]| {
        let mut c = s.cmd(&["transfers"], args);
        c.env("BOURSE_TOKEN", stranger);
        run_ok(c)
    };
    assert_eq!(
        other(&["--account", "101"]),
        "transfers of account 101: not_authorized\n"
    );
    assert_eq!(other(&["--id", "1000"]), "transfer 1000: not found\n");

    // Flags that cannot work are refused before connecting.
    let out = run(s.cmd(&["transfers"], &["--account", "101", "--id", "1"]));
    assert_eq!(out.status.code(), Some(2));
    let out = run(s.cmd(
        &["transfers"],
        &["--account", "101", "--from-seq", "1", "--to-time", "5"],
    ));
    assert_eq!(out.status.code(), Some(2));
    let out = run(s.cmd(&["transfers"], &["--account", "101", "--limit", "0"]));
    assert_eq!(out.status.code(), Some(2));

    // The library: typed rows in the order asked, `more`, refusals as errors.
    let id = load_client_identity(s.data_dir()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cc = ClientConfig::new(s.handle.addr(), id.cert_der.clone(), id.operator_token.unwrap());
        let mut c = Client::connect(&cc).await.unwrap();
        let ids: Vec<engine::TransferId> = [4242, 1000, 1].map(engine::TransferId).to_vec();
        let found = c.lookup_transfers(&ids).await.unwrap();
        let got: Vec<Option<u128>> = found.iter().map(|r| r.map(|r| r.spec.id.0)).collect();
        assert_eq!(got, [None, Some(1000), Some(1)]);
        let f = engine::history::AccountFilter {
            account: engine::AccountId(201),
            by: engine::history::RangeBy::LedgerSeq,
            lo: 0,
            hi: u64::MAX,
            limit: 1,
            newest_first: true,
        };
        let page = c.get_account_transfers(f).await.unwrap();
        assert_eq!(page.rows.len(), 1);
        assert_eq!((page.rows[0].spec.id.0, page.more), (1000, true));
        let bad = c
            .get_account_transfers(engine::history::AccountFilter { limit: 0, ..f })
            .await;
        assert!(
            matches!(bad, Err(gateway::client::ClientError::Refused(c)) if c == engine::RejectReason::InvalidFilter.code()),
            "{bad:?}"
        );
        c.close().await;
    });
}

/// `bourse reports --after-seq S` prints again, from the server's report
/// window, what happened to the token's owners' orders after engine seq S
/// (a fill of a resting order another invocation placed, flagged
/// replayed), not what came before; asked from 0 it gives everything since
/// the server started, with no range missing.
#[test]
fn reports_prints_again_what_happened_after_a_seq_and_names_what_is_gone() {
    let s = start();
    let sell = [
        "--symbol", "BTC-USD", "--side", "sell", "--price", "60000", "--qty", "5", "--owner", "2",
        "--json",
    ];
    let o = run_ok(s.cmd(&["order"], &sell));
    let new: serde_json::Value = serde_json::from_str(o.lines().next().unwrap()).unwrap();
    let seq = new["engine_seq"].as_u64().unwrap();
    let buy = [
        "--symbol", "BTC-USD", "--side", "buy", "--price", "60000", "--qty", "3",
    ];
    run_ok(s.cmd(&["order"], &buy));
    let after = seq.to_string();
    let out = run_ok(s.cmd(&["reports"], &["--after-seq", &after]));
    assert!(
        out.contains("TRADE order 1 (owner 2) BTC-USD sell | filled 3 @ 60000"),
        "{out}"
    );
    assert!(out.contains("replayed (seq"), "{out}");
    assert!(
        !out.contains("NEW order 1 "),
        "the sell's accept is not after {seq}: {out}"
    );
    assert!(out.ends_with("reports replayed\n"), "{out}");
    // From 0: everything since the server started (its window starts at
    // what it recovered, the demo set's inputs included), the sell's accept
    // too, and no range is named missing.
    let all = run_ok(s.cmd(&["reports"], &["--json"]));
    let lines: Vec<serde_json::Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["exec_type"] == "new" && v["engine_seq"] == seq),
        "{all}"
    );
    for gap in lines.iter().filter(|v| v["type"] == "replay_gap") {
        assert_eq!(gap["after_seq"], 0);
        assert!(gap["floor"].as_u64().unwrap() < seq, "{all}");
    }
    assert!(lines.iter().all(|v| v["type"] != "replay_gap"), "{all}");
    // A partition the server does not have is refused, naming why.
    let bad = run(s.cmd(&["reports"], &["--partition", "7"]));
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("unroutable"),
        "{}",
        text(&bad.stderr)
    );
}
