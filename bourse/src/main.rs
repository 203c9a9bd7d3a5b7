//! The `bourse` binary: one subcommand per way of running the engine.
//!
//! Invariants: the binary holds no logic of its own; each subcommand hands
//! off to a library module (`bourse::script`, `bourse::journal_cli`,
//! `bourse::loadgen`). Exit status 0 on success, 2 when the input cannot be
//! understood (the message, naming the line, goes to standard error), 1 when
//! the input cannot be opened, a journal/snapshot is damaged (the message
//! names the file, the offset and what failed) or the data directory is in
//! use by another process, 74 when a running journal cannot write or sync
//! (a full disk: the message names the file and the error).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bourse: a deterministic matching engine and ledger.
#[derive(Debug, Parser)]
#[command(name = "bourse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a JSON Lines script against a fresh engine and print its events.
    Script {
        /// The script file, or `-` for standard input.
        file: PathBuf,
    },
    /// Journal tools.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// Rebuild the state from a partition's journal; print the state hash and replay throughput.
    /// A journal whose front was archived (journal.base) is replayed from DIR/archive/ across
    /// the base; archived seqs that are not there (deleted) are an error naming them.
    Replay {
        /// A partition directory (e.g. bourse-data/p0).
        dir: PathBuf,
    },
    /// Run the durable pipeline in-process under an open-loop order flow and
    /// print latency percentiles (intended send → durable release).
    Pipeline(PipelineArgs),
    /// Run the whole system: engine partitions, journal, QUIC gateway, metrics.
    Serve(ServeArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    #[command(flatten)]
    Client(bourse::cli::ClientCommand),
    /// Open-loop load over real QUIC connections: latency percentiles
    /// (coordinated omission corrected), .hgrm files, SVG plots, ratios to
    /// the raw quinn ping-pong floor.
    Bench(BenchArgs),
    /// Start a server, simulated traders and a payments client, and watch
    /// them live (books, trades, throughput, latency); then a summary.
    Demo(DemoArgs),
    /// Show an instrument's market data (book and trades) from a running server.
    Feed(bourse::md_cli::FeedArgs),
    /// Replicated clusters.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

/// Cluster subcommands.
#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Run a cluster of N `bourse serve` processes on loopback, in the
    /// foreground: DIR holds one shared identity (tls/, operator.token), the
    /// cluster secret and per node nI/ (data, bourse.toml, serve.log); a
    /// second run on DIR restarts the same cluster. SIGINT/SIGTERM stop
    /// every node; a node that dies is reported, the others keep running.
    Local(bourse::cluster_cli::LocalArgs),
    /// Operator requests to a running cluster (status, add-node,
    /// remove-node), over the peer transport with the cluster secret.
    #[command(flatten)]
    Admin(bourse::cluster_admin::AdminCommand),
}

/// `bourse serve` settings: every key of the configuration (see `bourse
/// config default`) has an embedded default; a file, `BOURSE_*` variables
/// and these flags override it, in that order.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    cfg: bourse::config::ConfigArgs,
}

/// Configuration subcommands.
#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the full default configuration file, with a comment on every key.
    Default,
    /// Load the configuration (file, environment, flags) and print the result, or the error.
    Check(Box<ServeArgs>),
}

/// Journal subcommands.
#[derive(Debug, Subcommand)]
enum JournalCommand {
    /// Check every block (checksums, hash chain, contiguity); print counts and the last sequence.
    /// When the journal's front was archived (journal.base), DIR/archive/ is checked too and the
    /// summary says which range it covered ("archived: seq 1..=N in … (verified)").
    Verify {
        /// A partition directory (e.g. bourse-data/p0).
        dir: PathBuf,
    },
    /// Print the journaled commands as `bourse script` JSON lines (seqs before journal.base
    /// are read from DIR/archive/; missing ones are an error naming them).
    Dump {
        /// A partition directory (e.g. bourse-data/p0).
        dir: PathBuf,
        /// First sequence number to print.
        #[arg(long)]
        from: Option<u64>,
        /// Last sequence number to print.
        #[arg(long)]
        to: Option<u64>,
    },
    /// Move damaged journal data aside (into DIR/damaged/, never deleted)
    /// so the journal ends before the first damage; needs the data
    /// directory's lock (stop the server first).
    Repair {
        /// A partition directory (e.g. bourse-data/p0).
        dir: PathBuf,
    },
}

/// `bourse pipeline` settings.
#[derive(Debug, clap::Args)]
struct PipelineArgs {
    /// Data directory (journals and snapshots, one folder per partition).
    #[arg(long, default_value = "bourse-data")]
    data_dir: PathBuf,
    /// durable (write + fdatasync per group), async (write only) or none.
    #[arg(long, default_value = "durable")]
    durability: journal::Durability,
    /// Offered commands per second.
    #[arg(long, default_value_t = 100_000)]
    rate: u64,
    /// Seconds of load [default: 5; with --soak: none when --commands is
    /// given, else 60].
    #[arg(long)]
    duration_s: Option<f64>,
    /// Partitions (engine cores).
    #[arg(long, default_value_t = 1)]
    partitions: usize,
    /// Idle strategy of engine threads: spin, yield or park.
    #[arg(long, default_value = "spin")]
    idle: runtime::IdleStrategy,
    /// Do not pin engine threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Seed of the order flow.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print `ack SEQ COID` for every command once its outputs are released.
    #[arg(long)]
    acks: bool,
    /// Journal segment size in bytes (a multiple of 4096 that holds a full
    /// commit block).
    #[arg(long, default_value_t = 64 << 20)]
    segment_bytes: u64,
    /// Move damaged journal data aside (into p<N>/damaged/) instead of
    /// refusing to start.
    #[arg(long)]
    repair: bool,
    /// Soak mode: a mixed flow, per partition, in percent of commands: 40
    /// passive GTC orders (fresh client order ids per owner), 20 cancels,
    /// 10 replaces, 8 crossing IOC orders, 12 transfers between 64 funded
    /// accounts, 6 pending transfers (a quarter left to expire), 4 posts or
    /// voids; plus a mass cancel every --owner-every commands as the oldest
    /// of --owners-live owners leaves and a new one joins. A report line
    /// every --report-every-s (throughput, latency, RSS, journal, archive and
    /// snapshot bytes, capacity_exceeded so far), then a summary. --acks
    /// does not apply.
    #[arg(long)]
    soak: bool,
    /// Soak: stop after this many commands (with --duration-s: whichever first).
    #[arg(long)]
    commands: Option<u64>,
    /// Soak: seconds per report interval.
    #[arg(long, default_value_t = 60.0)]
    report_every_s: f64,
    /// Soak: also print every report and the summary as JSON lines.
    #[arg(long)]
    json: bool,
    /// Soak: resting orders to keep per partition (about).
    #[arg(long, default_value_t = 10_000)]
    live_orders: u64,
    /// Soak: pending transfers awaiting post or void per partition (about).
    #[arg(long, default_value_t = 1_000)]
    live_pending: u64,
    /// Soak: owners trading at once per partition.
    #[arg(long, default_value_t = 1_024)]
    owners_live: u64,
    /// Soak: commands per partition between owner rotations.
    #[arg(long, default_value_t = 256)]
    owner_every: u64,
    /// Soak: timeout (seconds) of the pending transfers left to expire.
    #[arg(long, default_value_t = 1.0)]
    expire_after_s: f64,
    /// Do not touch every preallocated table at start (RSS then grows with
    /// what the run uses, instead of starting at the configured capacity).
    #[arg(long)]
    no_prefault: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_)) {
        // `serve` sets logging up from its configuration.
        bourse::logging::init_logging(bourse::logging::LogFormat::Text, "info");
    }
    match cli.command {
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            let _ = write!(io::stdout(), "{}", bourse::config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Config {
            command: ConfigCommand::Check(a),
        } => match a.cfg.load() {
            Ok(c) => {
                // Tokens print masked (`TokenEntry`'s Debug).
                let _ = writeln!(io::stdout(), "{c:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                runtime::report!("bourse config: {e}");
                ExitCode::from(2)
            }
        },
        Command::Script { file } => script(&file),
        Command::Journal {
            command: JournalCommand::Verify { dir },
        } => report(bourse::journal_cli::run_journal_verify(
            &dir,
            &mut io::stdout().lock(),
        )),
        Command::Journal {
            command: JournalCommand::Dump { dir, from, to },
        } => {
            let mut out = BufWriter::new(io::stdout().lock());
            report(bourse::journal_cli::run_journal_dump(
                &dir, from, to, &mut out,
            ))
        }
        Command::Journal {
            command: JournalCommand::Repair { dir },
        } => report(bourse::journal_cli::run_journal_repair(
            &dir,
            &mut io::stdout().lock(),
        )),
        Command::Replay { dir } => report(bourse::journal_cli::run_replay(
            &dir,
            engine::EngineConfig::default(),
            &mut io::stdout().lock(),
        )),
        Command::Pipeline(args) => pipeline(args),
        Command::Serve(args) => serve(args),
        Command::Bench(args) => bench(args),
        Command::Demo(args) => demo(args),
        Command::Client(cmd) => {
            ExitCode::from(bourse::cli::run_client(&cmd, &mut io::stdout().lock()))
        }
        Command::Feed(a) => feed(&a),
        Command::Cluster {
            command: ClusterCommand::Local(a),
        } => ExitCode::from(bourse::cluster_cli::run_local(&a, &mut io::stdout())),
        Command::Cluster {
            command: ClusterCommand::Admin(a),
        } => ExitCode::from(bourse::cluster_admin::run(&a, &mut io::stdout())),
    }
}

fn serve(a: ServeArgs) -> ExitCode {
    // Signal handlers go in first, before the start-up (recovery, prefault:
    // seconds with large engines): as PID 1 of a container a signal with no
    // handler is ignored, so a stop sent during start-up would otherwise
    // wait for SIGKILL. Whoever reads the printed address may also send
    // SIGTERM at once.
    let signals = match StopSignals::install() {
        Ok(s) => s,
        Err(e) => {
            runtime::report!("bourse serve: signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let stopper = watch_signals(signals);
    let conf = match a.cfg.load() {
        Ok(c) => c,
        Err(e) => {
            // No logger yet: configuration errors go straight to stderr.
            runtime::report!("bourse serve: {e}");
            return ExitCode::from(2);
        }
    };
    bourse::logging::init_logging(conf.server.log_format, &conf.server.log_filter);
    // The pipeline takes the data directory's lock; refuse a second server
    // here already, naming the holder, rather than with a misleading "address
    // in use" for the metrics port the running server also holds.
    if let Some(holder) = journal::live_writer(&conf.server.data_dir) {
        let e = journal::LockError::Held {
            dir: conf.server.data_dir.clone(),
            holder,
        };
        runtime::report!("bourse serve: {e}");
        return ExitCode::from(1);
    }
    let ops = match bourse::ops::Ops::start(&conf) {
        Ok(o) => o,
        Err(e) => {
            runtime::report!("bourse serve: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = server_config(&conf, &ops);
    let data_dir = conf.server.data_dir.clone();
    let mut server = match gateway::server::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            runtime::report!("bourse serve: {e}");
            return ExitCode::from(1);
        }
    };
    // From here a signal stops the server cleanly (one that came during the
    // start-up has ended the process already).
    if stopper.set(server.stopper()).is_err() {
        unreachable!("the stopper is set once, here");
    }
    // Standard output may be closed (`serve | head -1`): the banner and the
    // final hashes are best effort, they must never abort the shutdown.
    let mut out = io::stdout();
    let _ = write_banner(&mut out, &conf, &server, &ops, &data_dir);
    tracing::info!(addr = %server.addr(), "serving");
    let hashes = server.join();
    ops.shutdown();
    for (i, h) in hashes.iter().enumerate() {
        let _ = writeln!(out, "p{i} state hash after shutdown: {h:032x}");
    }
    ExitCode::SUCCESS
}

/// The order-entry server's settings from the configuration (the metrics
/// state of `ops` reports on it).
fn server_config(
    conf: &bourse::config::BourseConfig,
    ops: &bourse::ops::Ops,
) -> gateway::server::ServerConfig {
    let mut cfg = gateway::server::ServerConfig::new(&conf.server.data_dir);
    cfg.listen = conf.server.listen;
    cfg.pipeline = conf.pipeline();
    cfg.session = conf.session();
    cfg.companion = Some(feeds::companion(conf.md()));
    cfg.busy_poll = conf.server.busy_poll;
    cfg.demo = conf.server.demo;
    // With the demo and no [partitions] of its own, the demo set's map.
    if !(conf.server.demo && conf.partitions == Default::default()) {
        cfg.partition_map = Some(conf.partition_map());
    }
    (cfg.operator_owners, cfg.operator_perms) = conf.operator_grant();
    cfg.login_failures_max = conf.auth.login_failures_max;
    cfg.login_failure_window = std::time::Duration::from_millis(conf.auth.login_failure_window_ms);
    cfg.max_sessions = conf.session.sessions_max;
    cfg.resume_window = conf.session.resume_window();
    cfg.report_window_events = conf.session.report_window_events;
    cfg.metrics = Some(ops.state().clone());
    cfg.tokens = conf
        .auth
        .tokens
        .iter()
        .filter_map(|t| t.grant().ok().map(|(o, p)| (t.token.clone(), o, p)))
        .collect();
    cfg.cluster = conf.cluster_spec();
    if cfg.cluster.is_some() && conf.history.run_records == 0 {
        tracing::warn!(
            "[history] run_records is 0: without the on-disk transfer history the \
             ledger holds at most engine.transfers_max = {} transfers in its life \
             (every member must say the same: a node without it stops when the log \
             installs a run)",
            conf.engine.transfers_max
        );
    }
    cfg
}

/// The server's stop handle, set once it is running; empty during start-up.
type Stopper = std::sync::Arc<std::sync::OnceLock<std::sync::Arc<tokio::sync::Notify>>>;

/// On SIGTERM or SIGINT: during start-up (`Stopper` still empty) exits at
/// once with status 128 + the signal's number (nothing is served yet, no
/// snapshot to take: what a process without a handler does, and what PID 1
/// of a container would not); once running, says so, stops the server
/// through the stopper, and exits with status 1 if the shutdown does not
/// finish within `SHUTDOWN_LIMIT`.
fn watch_signals(signals: StopSignals) -> Stopper {
    let stopper = Stopper::default();
    let slot = stopper.clone();
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let name = signals.wait();
            let Some(stop) = slot.get() else {
                // Fallible: a closed standard error must not keep the
                // process from ending.
                let _ = writeln!(
                    io::stderr(),
                    "bourse serve: {name} during start-up: exiting at once (nothing served yet)"
                );
                std::process::exit(128 + signal_number(name));
            };
            // Fallible: a closed standard error must not keep the stop from
            // being signalled.
            let _ = writeln!(
                io::stderr(),
                "bourse serve: {name}: stopping (stop accepting, drain, snapshot)"
            );
            stop.notify_one();
            // Bounded shutdown: a drain that hangs must not hang the process.
            std::thread::sleep(SHUTDOWN_LIMIT);
            tracing::error!(
                limit_s = SHUTDOWN_LIMIT.as_secs(),
                "shutdown did not finish in time; exiting without a clean stop"
            );
            let _ = writeln!(
                io::stderr(),
                "bourse serve: shutdown did not finish within {} s; exiting with status 1",
                SHUTDOWN_LIMIT.as_secs()
            );
            std::process::exit(1);
        });
    stopper
}

/// The number of a signal `StopSignals::wait` names (128 + N is the exit
/// status shells and supervisors read as "ended by signal N").
fn signal_number(name: &str) -> i32 {
    match name {
        "SIGTERM" => 15,
        _ => 2,
    }
}

/// What `serve` prints once it accepts connections (the first line ends
/// with the bound address).
fn write_banner(
    out: &mut impl Write,
    conf: &bourse::config::BourseConfig,
    server: &gateway::server::ServerHandle,
    ops: &bourse::ops::Ops,
    data_dir: &std::path::Path,
) -> io::Result<()> {
    let info = server.info();
    let id = &info.identity;
    writeln!(
        out,
        "bourse serve: QUIC (TLS 1.3, ALPN bourse-oe/1) on {}",
        info.addr
    )?;
    writeln!(out, "  data directory: {}", data_dir.display())?;
    writeln!(
        out,
        "  certificate:    {}{}",
        id.cert_path.display(),
        if id.created {
            " (created now, self-signed)"
        } else {
            ""
        }
    )?;
    let (owners, perms) = conf.operator_grant();
    writeln!(
        out,
        "  operator token: {} (mode 0600; client commands on this machine read it): owners {:?}, perms {}",
        id.token_path.display(),
        owners.iter().map(|o| o.0).collect::<Vec<_>>(),
        perms_names(perms)
    )?;
    if let Some(m) = ops.metrics_addr() {
        writeln!(
            out,
            "  metrics:        http://{m}/metrics (also /health, /ready)"
        )?;
    }
    writeln!(
        out,
        "  durability {} | partitions {} | recovered up to seq {:?}{}",
        conf.pipeline.durability,
        conf.pipeline.partitions.max(1),
        info.recovered_seqs,
        if info.demo_created {
            " | demo instruments BTC-USD (1), ETH-USD (2), EUR-USD (3, settling) created"
        } else {
            ""
        }
    )?;
    let p = &info.placement;
    let cores: Vec<usize> = p.cores.iter().flatten().copied().collect();
    if cores.is_empty() {
        writeln!(
            out,
            "  engine threads unpinned, idle strategy {} ({} cores available)",
            p.idle, p.cores_available
        )?;
    } else {
        writeln!(
            out,
            "  engine threads pinned to core{} {:?}, idle strategy {}{}",
            if cores.len() > 1 { "s" } else { "" },
            cores,
            p.idle,
            if p.idle == runtime::IdleStrategy::Spin {
                " (spinning: each such core stays busy; --no-pin or --idle park to spare it)"
            } else {
                ""
            }
        )?;
    }
    if let Some(c) = info.pinned_core {
        writeln!(out, "  gateway runtime pinned to core {c}, busy-polling")?;
    }
    if info.demo_created {
        writeln!(
            out,
            "  try: bourse order --symbol BTC-USD --side buy --price 60000 --qty 5"
        )?;
    } else {
        writeln!(
            out,
            "  try: bourse --help (instruments, accounts and tokens come from an admin session)"
        )?;
    }
    out.flush()
}

fn perms_names(p: gateway::session::Perms) -> String {
    let names: Vec<&str> = [
        (p.trade, "trade"),
        (p.transfer, "transfer"),
        (p.admin, "admin"),
        (p.read, "read"),
        (p.ledger_admin, "ledger_admin"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// How long `serve` may take to stop after SIGINT / SIGTERM before it gives up.
const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGINT and SIGTERM handlers, registered at once (a signal that arrives
/// before `wait` is not lost).
struct StopSignals {
    rt: tokio::runtime::Runtime,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> io::Result<StopSignals> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let _guard = rt.enter();
            let int = signal(SignalKind::interrupt())?;
            let term = signal(SignalKind::terminate())?;
            drop(_guard);
            Ok(StopSignals { rt, int, term })
        }
        #[cfg(not(unix))]
        Ok(StopSignals { rt })
    }

    /// Blocks until a stop signal arrives; returns its name.
    fn wait(self) -> &'static str {
        #[cfg(unix)]
        {
            let StopSignals {
                rt,
                mut int,
                mut term,
            } = self;
            rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                }
            })
        }
        #[cfg(not(unix))]
        {
            let _ = self.rt.block_on(tokio::signal::ctrl_c());
            "SIGINT"
        }
    }
}

fn report<T, E: std::fmt::Display>(r: Result<T, E>) -> ExitCode {
    match r {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            runtime::report!("bourse: {e}");
            ExitCode::from(1)
        }
    }
}

fn pipeline(a: PipelineArgs) -> ExitCode {
    let mut cfg = runtime::PipelineConfig::new(&a.data_dir);
    cfg.partitions = a.partitions.max(1);
    cfg.durability = a.durability;
    cfg.runtime.idle = a.idle;
    cfg.runtime.pin = !a.no_pin;
    cfg.segment_bytes = a.segment_bytes;
    cfg.repair = a.repair;
    cfg.prefault = !a.no_prefault;
    if a.soak {
        return soak(&a, &cfg);
    }
    let load = bourse::loadgen::LoadConfig {
        rate: a.rate.max(1),
        duration: std::time::Duration::from_secs_f64(a.duration_s.unwrap_or(5.0).max(0.0)),
        seed: a.seed,
        acks: a.acks,
    };
    // Not locked: the ack printer thread writes to standard output too.
    let mut out = io::stdout();
    match bourse::loadgen::run_load(&cfg, load, &mut out) {
        Ok(r) => {
            use std::io::Write;
            let h = &r.latency;
            let us = |v: u64| v as f64 / 1000.0;
            let _ = writeln!(
                out,
                "durability {} | partitions {} | offered {} in {:.2} s ({:.0}/s) | completed {} | busy {}",
                a.durability,
                cfg.partitions,
                r.offered,
                r.seconds,
                r.offered as f64 / r.seconds.max(1e-9),
                r.completed,
                r.busy
            );
            let _ = writeln!(
                out,
                "latency µs (intended send → durable release): p50 {:.1} | p90 {:.1} | p99 {:.1} | p99.9 {:.1} | p99.99 {:.1} | max {:.1}",
                us(h.value_at_quantile(0.5)),
                us(h.value_at_quantile(0.9)),
                us(h.value_at_quantile(0.99)),
                us(h.value_at_quantile(0.999)),
                us(h.value_at_quantile(0.9999)),
                us(h.max())
            );
            for (i, s) in r.state_hashes.iter().enumerate() {
                let _ = writeln!(out, "p{i} state hash after shutdown: {s:032x}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            runtime::report!("bourse pipeline: {e}");
            ExitCode::from(1)
        }
    }
}

/// `bourse pipeline --soak`.
fn soak(a: &PipelineArgs, cfg: &runtime::PipelineConfig) -> ExitCode {
    let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
    let duration = match (a.duration_s, a.commands) {
        (Some(d), _) => Some(secs(d)),
        (None, Some(_)) => None,
        (None, None) => Some(secs(60.0)),
    };
    let soak = bourse::soak::SoakConfig {
        rate: a.rate.max(1),
        duration,
        commands: a.commands,
        seed: a.seed,
        report_every: secs(a.report_every_s.max(0.001)),
        json: a.json,
        live_orders: a.live_orders,
        live_pending: a.live_pending,
        owners_live: a.owners_live.max(1),
        owner_every: a.owner_every.max(1),
        expire_after: secs(a.expire_after_s.max(1e-9)),
        ..bourse::soak::SoakConfig::default()
    };
    let mut out = io::stdout().lock();
    match bourse::soak::run_soak(cfg, soak, &mut out) {
        Ok(s) => {
            bourse::soak::write_summary(&s, a.json, &mut out);
            ExitCode::SUCCESS
        }
        Err(e) => {
            runtime::report!("bourse pipeline: {e}");
            ExitCode::from(1)
        }
    }
}

fn script(file: &std::path::Path) -> ExitCode {
    let stdout = io::stdout();
    let output = BufWriter::new(stdout.lock());
    let result = if file.as_os_str() == "-" {
        bourse::script::run_script(io::stdin().lock(), output)
    } else {
        match File::open(file) {
            Ok(f) => bourse::script::run_script(BufReader::new(f), output),
            Err(e) => {
                runtime::report!("bourse script: cannot open {}: {e}", file.display());
                return ExitCode::from(1);
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            runtime::report!("bourse script: {e}");
            ExitCode::from(2)
        }
    }
}

/// `bourse bench` settings.
#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Target a running server at ADDR (else one starts in-process).
    #[arg(long, value_name = "ADDR")]
    server: Option<std::net::SocketAddr>,
    /// With --server: the data directory holding its certificate and
    /// operator token (default bourse-data); without: the in-process
    /// server's data directory (default: a temporary one).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Durability of the in-process server: durable, async or none.
    #[arg(long, default_value = "durable")]
    durability: journal::Durability,
    /// Connections (sessions).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Offered messages per second, all connections together.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds of load (per rate).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seed of the message mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most unanswered requests per connection.
    #[arg(long, default_value_t = 1_000)]
    window: usize,
    /// Output directory (.hgrm and .svg files).
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Step through rates (comma-separated; empty: a default ladder) and plot
    /// latency against throughput.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    sweep: Option<Vec<u64>>,
    /// Round trips of the raw quinn ping-pong floor.
    #[arg(long, default_value_t = 5_000)]
    pingpong_rounds: u64,
    /// Busy-poll the client between sends (sub-millisecond send accuracy,
    /// one core burnt); default: only with at least 4 cores. Without it the
    /// client sleeps on tokio's 1 ms timer, and that lag counts as latency.
    #[arg(long)]
    client_spin: Option<bool>,
    /// Print the results as JSON (one object) instead of the table.
    #[arg(long)]
    json: bool,
}

fn bench(a: BenchArgs) -> ExitCode {
    let sweep = match a.sweep {
        None => Vec::new(),
        Some(v) if v.is_empty() => vec![1_000, 5_000, 10_000, 20_000, 50_000, 100_000],
        Some(v) => v,
    };
    let cfg = bourse::bench::BenchConfig {
        server: a.server,
        data_dir: a.data_dir,
        durability: a.durability,
        load: bourse::bench::LoadSpec {
            connections: a.connections.max(1),
            rate: a.rate.max(1),
            duration: std::time::Duration::from_secs_f64(a.duration.max(0.1)),
            seed: a.seed,
            window: a.window.max(1),
            progress: true,
            client_spin: a.client_spin.unwrap_or_else(|| bourse::bench::cores() >= 4),
            ..Default::default()
        },
        sweep,
        out_dir: a.out,
        pingpong_rounds: a.pingpong_rounds.max(10),
    };
    let result = if a.json {
        bourse::bench::run_bench(&cfg, &mut io::sink())
    } else {
        bourse::bench::run_bench(&cfg, &mut io::stdout().lock())
    };
    match result {
        Ok(r) => {
            if a.json {
                let runs: Vec<_> = r
                    .runs
                    .iter()
                    .map(|x| bourse::bench::result_json(x, &r.floor))
                    .collect();
                let v = serde_json::json!({
                    "machine": r.machine,
                    "durability": cfg.durability.to_string(),
                    "connections": cfg.load.connections,
                    "runs": runs,
                    "files": r.files,
                });
                println!("{v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            runtime::report!("bourse bench: {e}");
            ExitCode::from(1)
        }
    }
}

/// `bourse demo` settings.
#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// Seconds to run.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Data directory (default: a temporary one, removed afterwards).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Simulated traders.
    #[arg(long, default_value_t = 4)]
    traders: usize,
    /// Messages per second per trader.
    #[arg(long, default_value_t = 100)]
    trader_rate: u64,
    /// durable, async or none.
    #[arg(long, default_value = "durable")]
    durability: journal::Durability,
    /// One summary line per second instead of the live terminal view.
    #[arg(long)]
    no_tui: bool,
    /// Seed of the traders' behaviour.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn demo(a: DemoArgs) -> ExitCode {
    use std::io::IsTerminal;
    let cfg = bourse::demo_run::DemoConfig {
        data_dir: a.data_dir,
        duration: std::time::Duration::from_secs_f64(a.duration.max(0.5)),
        traders: a.traders.max(1),
        trader_rate: a.trader_rate.max(1),
        tui: !a.no_tui && io::stdout().is_terminal(),
        durability: a.durability,
        seed: a.seed,
    };
    match bourse::demo_run::run_demo(&cfg, &mut io::stdout().lock()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            runtime::report!("bourse demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn feed(a: &bourse::md_cli::FeedArgs) -> ExitCode {
    ExitCode::from(bourse::md_cli::run_feed(a))
}
