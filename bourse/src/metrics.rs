//! Prometheus metrics, health and readiness on one small HTTP endpoint
//! (`/metrics`, `/health`, `/ready`), rendered with `prometheus-client`
//! (OpenMetrics text).
//!
//! Engine and journal figures are read at scrape time from the runtime's
//! single-writer counters (`runtime::Counters` in each partition's `Shared`):
//! a scrape is a few hundred relaxed loads, and recording them costs the
//! engine thread only the plain stores it already does. Gateway figures
//! (sessions, subscribers, conflations, disconnects, throttles) are atomics in
//! `GatewayMetrics` that the network side bumps.
//!
//! Readiness and the watchdog's alarms come from [`crate::health`]: this
//! module reads them, never the watchdog itself.
//!
//! Invariants: nothing here runs on, locks against, or allocates on an
//! engine or journal thread. The HTTP side (hyper, on a current-thread tokio
//! runtime of its own thread) serves every connection as its own task, at
//! most `MAX_CONNECTIONS` at once, reads at most `REQUEST_MAX` bytes of a
//! request head, cuts off a head that has not arrived within
//! `HEADER_READ_TIMEOUT` and any connection older than `CONNECTION_TIMEOUT`,
//! so idle or slow clients delay neither a scrape nor the engine.

use crate::health::{AlarmKind, Health, WatchdogView};
use engine::{LedgerError, RejectReason};
pub use gateway::counters::{DisconnectReason, GatewayMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use runtime::{Shared, COMMAND_KINDS};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest HTTP request head read (bytes); longer requests get a 431.
pub const REQUEST_MAX: usize = 8 * 1024;
/// Connect and read timeout of `http_get`.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Most HTTP connections served at once (more are closed at accept).
pub const MAX_CONNECTIONS: usize = 256;
/// A request head must arrive within this long of the connection opening
/// (a slow-loris connection is cut off here).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest life of one connection (a reader that never drains its answer).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl gateway::counters::ServerMetrics for MetricsState {
    fn gateway(&self) -> &GatewayMetrics {
        &self.gateway
    }
    fn attach(&self, runtime: &runtime::Runtime) {
        self.health.attach(runtime);
    }
    fn set_ready(&self, ready: bool) {
        self.health.set_ready(ready);
    }
    fn set_cluster_status(&self, status: &[replica::GroupStatus]) {
        *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) = status.to_vec();
    }
}

/// Everything the endpoint reports: the process's [`Health`] (which the
/// watchdog also writes; reached through `Deref`) plus the gateway counters.
#[derive(Debug)]
pub struct MetricsState {
    health: Arc<Health>,
    /// Gateway-side counters (bump these from the server).
    pub gateway: Arc<GatewayMetrics>,
    started: Instant,
    started_unix_ns: u64,
    /// A replicated server's groups (empty on a single node), as the
    /// gateway's sweep last saw them.
    cluster: std::sync::Mutex<Vec<replica::GroupStatus>>,
}

impl std::ops::Deref for MetricsState {
    type Target = Health;
    fn deref(&self) -> &Health {
        &self.health
    }
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl MetricsState {
    /// An empty state: no partitions yet, not ready.
    pub fn new() -> Arc<MetricsState> {
        Arc::new(MetricsState {
            health: Arc::new(Health::default()),
            gateway: Arc::new(GatewayMetrics::default()),
            started: Instant::now(),
            started_unix_ns: unix_ns(),
            cluster: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A state over running partitions (`Runtime::shared(i)` for each `i`).
    pub fn with_partitions(parts: Vec<Arc<Shared>>) -> Arc<MetricsState> {
        let s = MetricsState::new();
        s.set_partitions(parts);
        s
    }

    /// The health this state reports (hand it to the watchdog).
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The OpenMetrics text exposition of everything, as scraped.
    pub fn render(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition(self.clone())));
        let mut out = String::with_capacity(64 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The collector: reads the state on every scrape.
#[derive(Debug)]
struct Exposition(Arc<MetricsState>);

type Labels = Vec<(&'static str, String)>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (l, v) in samples {
        if l.is_empty() {
            m.encode_counter::<NoLabelSet, u64, u64>(v, None)?;
        } else {
            m.encode_family(l)?
                .encode_counter::<NoLabelSet, u64, u64>(v, None)?;
        }
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (l, v) in samples {
        if l.is_empty() {
            m.encode_gauge(v)?;
        } else {
            m.encode_family(l)?.encode_gauge(v)?;
        }
    }
    Ok(())
}

fn part(i: usize) -> Labels {
    vec![("partition", i.to_string())]
}

fn with(mut l: Labels, k: &'static str, v: impl Into<String>) -> Labels {
    l.push((k, v.into()));
    l
}

impl Collector for Exposition {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = &self.0;
        let scrape = Scrape {
            st,
            parts: st.partitions(),
            view: st.watchdog_view(),
            uptime: st.started.elapsed(),
            now_unix: unix_ns(),
        };
        let e = &mut enc;
        for step in [
            Scrape::process,
            Scrape::commands,
            Scrape::rejects,
            Scrape::progress,
            Scrape::rings,
            Scrape::engine,
            Scrape::journal,
            Scrape::snapshots,
            Scrape::disk,
            Scrape::gateway,
            Scrape::watchdog,
            Scrape::cluster,
        ] {
            step(&scrape, e)?;
        }
        Ok(())
    }
}

/// What one scrape reads once (partitions, the watchdog's view, the
/// clocks), shared by its steps; each step encodes one group of families,
/// in exposition order.
struct Scrape<'a> {
    st: &'a MetricsState,
    parts: Vec<Arc<Shared>>,
    view: WatchdogView,
    uptime: Duration,
    now_unix: u64,
}

impl Scrape<'_> {
    /// One counter sample per partition.
    fn per(&self, f: &dyn Fn(&Shared) -> u64) -> Vec<(Labels, u64)> {
        self.parts
            .iter()
            .enumerate()
            .map(|(i, p)| (part(i), f(p)))
            .collect()
    }

    /// One gauge sample per partition (given its index too).
    fn perf(&self, f: &dyn Fn(usize, &Shared) -> f64) -> Vec<(Labels, f64)> {
        self.parts
            .iter()
            .enumerate()
            .map(|(i, p)| (part(i), f(i, p)))
            .collect()
    }

    /// A replicated server's Raft groups (nothing on a single node).
    fn cluster(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let groups = self
            .st
            .cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if groups.is_empty() {
            return Ok(());
        }
        let per = |f: &dyn Fn(&replica::GroupStatus) -> f64| -> Vec<(Labels, f64)> {
            groups
                .iter()
                .enumerate()
                .map(|(i, g)| (part(i), f(g)))
                .collect()
        };
        gauge(
            e,
            "bourse_raft_term",
            "Current Raft term of the partition's group",
            &per(&|g| g.term as f64),
        )?;
        let mut roles = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            for r in ["leader", "follower", "candidate", "learner", "shutdown"] {
                roles.push((with(part(i), "role", r), f64::from(u8::from(g.role == r))));
            }
        }
        gauge(
            e,
            "bourse_raft_role",
            "1 for this node's role in the partition's group",
            &roles,
        )?;
        gauge(
            e,
            "bourse_raft_leader",
            "Node id of the group's leader as this node knows it (0: none)",
            &per(&|g| g.leader.unwrap_or(0) as f64),
        )?;
        gauge(
            e,
            "bourse_raft_serving",
            "1 while this node takes commands for the partition (leads, caught up, and heard from a majority within the quorum lease)",
            &per(&|g| f64::from(u8::from(g.serving))),
        )?;
        gauge(
            e,
            "bourse_raft_last_log_index",
            "Last Raft log index on this node",
            &per(&|g| g.last_log as f64),
        )?;
        gauge(
            e,
            "bourse_raft_commit_index",
            "Raft commit index this node knows",
            &per(&|g| g.committed as f64),
        )?;
        gauge(
            e,
            "bourse_raft_applied_index",
            "Raft log index applied to the engine",
            &per(&|g| g.applied as f64),
        )?;
        gauge(
            e,
            "bourse_raft_apply_lag",
            "Committed entries not yet applied",
            &per(&|g| g.committed.saturating_sub(g.applied) as f64),
        )?;
        counter(
            e,
            "bourse_raft_terms",
            "Raft terms this node has seen its group go through (each a leader election)",
            &groups
                .iter()
                .enumerate()
                .map(|(i, g)| (part(i), g.terms_seen))
                .collect::<Vec<_>>(),
        )?;
        Ok(())
    }

    /// Readiness, uptime, partitions.
    fn process(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(
            e,
            "bourse_ready",
            "1 when /ready answers 200 (recovery done, engines running, journals writable)",
            &[(vec![], f64::from(u8::from(self.st.readiness().is_ok())))],
        )?;
        gauge(
            e,
            "bourse_uptime_seconds",
            "Seconds since the process started",
            &[(vec![], self.uptime.as_secs_f64())],
        )?;
        gauge(
            e,
            "bourse_partitions",
            "Engine partitions running",
            &[(vec![], self.parts.len() as f64)],
        )?;
        Ok(())
    }

    /// Commands applied, by kind and outcome.
    fn commands(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Commands by kind and outcome.
        let mut cmds = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            let c = &p.counters;
            for (k, kind) in COMMAND_KINDS.iter().enumerate() {
                // Rejected first: it is written after the total, so total ≥ rejected.
                let rejected = c.rejected[k].get();
                let total = c.commands[k].get();
                cmds.push((
                    with(with(part(i), "kind", *kind), "outcome", "accepted"),
                    total.saturating_sub(rejected),
                ));
                cmds.push((
                    with(with(part(i), "kind", *kind), "outcome", "rejected"),
                    rejected,
                ));
            }
        }
        counter(
            e,
            "bourse_commands",
            "Commands applied by the engine, by kind and outcome",
            &cmds,
        )?;
        Ok(())
    }

    /// Reject events by source and reason.
    fn rejects(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut rejects = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            let c = &p.counters;
            for r in RejectReason::ALL {
                let v = c
                    .order_rejects
                    .get(r.code() as usize)
                    .map_or(0, |x| x.get());
                rejects.push((
                    with(with(part(i), "source", "order"), "reason", r.name()),
                    v,
                ));
            }
            for r in LedgerError::ALL {
                let v = c
                    .ledger_rejects
                    .get(r.code() as usize)
                    .map_or(0, |x| x.get());
                rejects.push((
                    with(with(part(i), "source", "ledger"), "reason", r.name()),
                    v,
                ));
            }
        }
        counter(
            e,
            "bourse_rejects",
            "Reject events by reason (source order: order/instrument/time rejects; ledger: account and transfer results)",
            &rejects,
        )?;
        Ok(())
    }

    /// Trades, inputs, applied and durable sequence numbers, durable lag.
    fn progress(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        counter(
            e,
            "bourse_trades",
            "Trades printed",
            &self.per(&|p| p.counters.trades.get()),
        )?;
        counter(
            e,
            "bourse_inputs",
            "Inputs applied (commands and time ticks)",
            &self.per(&|p| p.applied.load(Ordering::Relaxed)),
        )?;
        gauge(
            e,
            "bourse_applied_seq",
            "Last sequence number applied",
            &self.perf(&|_, p| p.applied_seq.load(Ordering::Acquire) as f64),
        )?;
        gauge(
            e,
            "bourse_durable_seq",
            "Last sequence number durable",
            &self.perf(&|_, p| p.durable_seq.load(Ordering::Acquire) as f64),
        )?;
        let lag = |p: &Shared| {
            let durable = p.durable_seq.load(Ordering::Acquire);
            let dtime = p.counters.durable_time_ns.get();
            let applied = p.applied_seq.load(Ordering::Acquire);
            let atime = p.counters.applied_time_ns.get();
            if applied > durable {
                (applied - durable, atime.saturating_sub(dtime) as f64 / 1e9)
            } else {
                (0, 0.0)
            }
        };
        gauge(
            e,
            "bourse_durable_lag_seq",
            "Inputs applied but not yet durable",
            &self.perf(&|_, p| lag(p).0 as f64),
        )?;
        gauge(
            e,
            "bourse_durable_lag_seconds",
            "Engine time between the last applied and the last durable input",
            &self.perf(&|_, p| lag(p).1),
        )?;
        Ok(())
    }

    /// Ring fill, items and capacity.
    fn rings(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Rings.
        let mut occ = Vec::new();
        let mut items = Vec::new();
        let mut cap = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            let mut rings = vec![
                ("inbound", p.inbound.len(), p.inbound.capacity()),
                ("outbound", p.outbound.len(), p.outbound.capacity()),
            ];
            if let Some(j) = &p.journal {
                rings.push(("journal", j.len(), j.capacity()));
            }
            for (name, len, capacity) in rings {
                let l = with(part(i), "ring", name);
                occ.push((l.clone(), len as f64 / capacity.max(1) as f64));
                items.push((l.clone(), len as f64));
                cap.push((l, capacity as f64));
            }
        }
        gauge(
            e,
            "bourse_ring_occupancy",
            "Fill ratio of a ring (0 empty, 1 full: producers see busy)",
            &occ,
        )?;
        gauge(e, "bourse_ring_items", "Items in a ring", &items)?;
        gauge(e, "bourse_ring_capacity", "Slots of a ring", &cap)?;
        Ok(())
    }

    /// Engine busy time, polls, running.
    fn engine(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Engine.
        gauge(
            e,
            "bourse_engine_busy_ratio",
            "Share of time the engine thread spent applying commands (watchdog window; lifetime before its first sample)",
            &self.perf(&|i, p| {
                self.view.busy_ratio.get(i).copied().flatten().unwrap_or_else(|| {
                    (p.counters.busy_ns.get() as f64 / self.uptime.as_nanos().max(1) as f64).min(1.0)
                })
            }),
        )?;
        {
            let mut m = e.encode_descriptor(
                "bourse_engine_busy_seconds",
                "Time the engine thread spent applying commands",
                None,
                MetricType::Counter,
            )?;
            for (i, p) in self.parts.iter().enumerate() {
                m.encode_family(&part(i))?
                    .encode_counter::<NoLabelSet, f64, f64>(
                        &(p.counters.busy_ns.get() as f64 / 1e9),
                        None,
                    )?;
            }
        }
        let mut polls = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            polls.push((with(part(i), "result", "busy"), p.counters.polls_busy.get()));
            polls.push((with(part(i), "result", "idle"), p.counters.polls_idle.get()));
        }
        counter(
            e,
            "bourse_engine_polls",
            "Engine loop iterations that found work (busy) or none (idle)",
            &polls,
        )?;
        gauge(
            e,
            "bourse_engine_running",
            "1 while the engine thread runs",
            &self.perf(&|_, p| f64::from(u8::from(!p.stopped.load(Ordering::Acquire)))),
        )?;
        Ok(())
    }

    /// Journal bytes, blocks, records, failure, commit latency histogram.
    fn journal(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Journal.
        counter(
            e,
            "bourse_journal_bytes",
            "Journal bytes written",
            &self.per(&|p| p.counters.journal_bytes.get()),
        )?;
        counter(
            e,
            "bourse_journal_blocks",
            "Journal commit blocks written (one write + one sync each)",
            &self.per(&|p| p.counters.journal_blocks.get()),
        )?;
        counter(
            e,
            "bourse_journal_records",
            "Journal records (inputs) written",
            &self.per(&|p| p.counters.journal_records.get()),
        )?;
        gauge(
            e,
            "bourse_journal_failed",
            "1 once the journal failed to write or sync (it is never retried)",
            &self.perf(&|_, p| f64::from(u8::from(p.journal_failed.load(Ordering::Acquire)))),
        )?;
        {
            let mut m = e.encode_descriptor(
                "bourse_journal_commit_seconds",
                "Journal commit (write + fdatasync) latency",
                None,
                MetricType::Histogram,
            )?;
            for (i, p) in self.parts.iter().enumerate() {
                let c = &p.counters;
                let n = c.fsync_us_buckets.len();
                let mut buckets = Vec::with_capacity(n);
                let mut count = 0;
                for (b, x) in c.fsync_us_buckets.iter().enumerate() {
                    let v = x.get();
                    count += v;
                    let le = if b + 1 == n {
                        f64::INFINITY
                    } else {
                        (1u64 << b) as f64 / 1e6
                    };
                    buckets.push((le, v));
                }
                let sum = c.fsync_us_sum.get() as f64 / 1e6;
                let l = part(i);
                m.encode_family(&l)?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        Ok(())
    }

    /// Snapshots written and their age.
    fn snapshots(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Snapshots.
        counter(
            e,
            "bourse_snapshots",
            "Snapshots written",
            &self.per(&|p| p.counters.snapshots.get()),
        )?;
        gauge(
            e,
            "bourse_snapshot_age_seconds",
            "Seconds since the last snapshot was written (since start-up when none yet)",
            &self.perf(&|_, p| {
                let last = p.counters.last_snapshot_unix_ns.get();
                let from = if last == 0 {
                    self.st.started_unix_ns
                } else {
                    last
                };
                self.now_unix.saturating_sub(from) as f64 / 1e9
            }),
        )?;
        Ok(())
    }

    /// Disk use, retention, snapshot build time, transfer history.
    fn disk(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Disk use (measured by each journal thread about once a second).
        // `kind` leaves room for more stores (the history store).
        let mut disk = Vec::new();
        for (i, p) in self.parts.iter().enumerate() {
            let c = &p.counters;
            for (kind, v) in [
                ("journal", c.disk_journal_bytes.get()),
                ("archive", c.disk_archive_bytes.get()),
                ("snapshot", c.disk_snapshot_bytes.get()),
            ] {
                disk.push((with(part(i), "kind", kind), v as f64));
            }
        }
        gauge(
            e,
            "bourse_disk_bytes",
            "Bytes on disk per partition by kind: journal (segments, spare, head, base), archive (archived segments), snapshot",
            &disk,
        )?;
        gauge(
            e,
            "bourse_journal_retained_through_seq",
            "Last seq retained away from the journal directory (archived or deleted; 0: none); recovery needs nothing at or before it",
            &self.perf(&|_, p| p.counters.retained_through_seq.get() as f64),
        )?;
        gauge(
            e,
            "bourse_snapshot_build_seconds",
            "Seconds the engine thread spent on its last snapshot (state hash and bytes); no input is applied meanwhile",
            &self.perf(&|_, p| p.counters.snapshot_build_ns_last.get() as f64 / 1e9),
        )?;
        // Transfer history (on disk, per partition).
        gauge(
            e,
            "bourse_history_bytes",
            "Bytes of transfer history run files on disk",
            &self.perf(&|_, p| p.counters.history_bytes.get() as f64),
        )?;
        gauge(
            e,
            "bourse_history_files",
            "Transfer history files on disk, runs and merged ones (at most what a lookup of an id on disk probes; compaction keeps it near fanout x log(runs))",
            &self.perf(&|_, p| p.counters.history_files.get() as f64),
        )?;
        gauge(
            e,
            "bourse_history_runs",
            "Transfer history runs written (a replicated node: runs installed, whoever cut them)",
            &self.perf(&|_, p| p.counters.history_runs.get() as f64),
        )?;
        Ok(())
    }

    /// Sessions, subscribers, conflations, disconnects, throttles, busy.
    fn gateway(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Gateway.
        let g = &self.st.gateway;
        gauge(
            e,
            "bourse_sessions",
            "Sessions logged in",
            &[(vec![], g.sessions() as f64)],
        )?;
        gauge(
            e,
            "bourse_subscribers",
            "Market-data subscriptions",
            &[(vec![], g.subscribers() as f64)],
        )?;
        counter(
            e,
            "bourse_conflations",
            "Market-data updates conflated for slow subscribers",
            &[(vec![], g.conflations())],
        )?;
        // `endpoint`: order entry (bourse-oe/1) or market data (bourse-md/1).
        let endpoint = |name: &str| vec![("endpoint", name.to_string())];
        let mut disc: Vec<(Labels, u64)> = Vec::new();
        for r in DisconnectReason::ALL {
            let n = g.disconnects(r);
            disc.push((with(endpoint("order_entry"), "reason", r.name()), n));
        }
        for r in DisconnectReason::ALL {
            let n = g.md_disconnects(r);
            disc.push((with(endpoint("market_data"), "reason", r.name()), n));
        }
        counter(
            e,
            "bourse_disconnects",
            "Connections ended, by endpoint and reason",
            &disc,
        )?;
        counter(
            e,
            "bourse_throttles",
            "Requests refused by a throttle (order entry: new orders over the session rate; market data: retransmit / snapshot requests over the subscriber budget)",
            &[
                (endpoint("order_entry"), g.throttles()),
                (endpoint("market_data"), g.md_throttles()),
            ],
        )?;
        counter(
            e,
            "bourse_gateway_busy",
            "Requests refused with busy (a full inbound ring)",
            &[(vec![], g.busy_total())],
        )?;
        let (complete, more, gap) = g.replays();
        let result = |r: &str| vec![("result", r.to_string())];
        counter(
            e,
            "bourse_report_replays",
            "REPLAY_REPORTS answered, by result (complete; more: a page; gap: the window no longer held the range)",
            &[
                (result("complete"), complete),
                (result("more"), more),
                (result("gap"), gap),
            ],
        )?;
        counter(
            e,
            "bourse_reports_replayed",
            "Execution reports sent again by REPLAY_REPORTS (after a restart or a failover)",
            &[(vec![], g.reports_replayed())],
        )?;
        Ok(())
    }

    /// The watchdog's alarms and commit latency mean.
    fn watchdog(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Watchdog.
        let mut alarms = Vec::new();
        for i in 0..self.parts.len() {
            for k in AlarmKind::ALL {
                let on = self.view.alarms.get(i).is_some_and(|a| a[k as usize]);
                alarms.push((with(part(i), "kind", k.name()), f64::from(u8::from(on))));
            }
        }
        gauge(
            e,
            "bourse_watchdog_alarm",
            "1 while a watchdog alarm is raised (engine_stall, journal_stall, fsync_latency)",
            &alarms,
        )?;
        gauge(
            e,
            "bourse_journal_commit_mean_seconds",
            "Mean journal commit latency over the watchdog window (0 when no commits)",
            &self.perf(&|i, _| {
                self.view
                    .commit_mean_us
                    .get(i)
                    .copied()
                    .flatten()
                    .unwrap_or(0.0)
                    / 1e6
            }),
        )?;
        Ok(())
    }
}

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsHandle {
    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving (open connections are dropped) and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Binds `addr` and serves `/metrics`, `/health` and `/ready` (HTTP/1.1,
/// hyper) on a thread of its own: every connection is its own task, at most
/// `MAX_CONNECTIONS` at once (more are closed at accept), a request head must
/// arrive within `HEADER_READ_TIMEOUT` and fit in `REQUEST_MAX` bytes, and no
/// connection lives longer than `CONNECTION_TIMEOUT`. Logs a warning when the
/// address is reachable beyond this machine (the figures are unauthenticated).
pub fn serve_metrics(
    addr: SocketAddr,
    state: Arc<MetricsState>,
) -> Result<MetricsHandle, std::io::Error> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("metrics".to_string())
        .spawn(move || rt.block_on(accept_loop(listener, state, stopped)))?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            addr = %local,
            "metrics endpoint listens beyond loopback: anyone who can reach it reads the figures (no authentication)"
        );
    }
    tracing::info!(addr = %local, "metrics endpoint: /metrics /health /ready");
    Ok(MetricsHandle {
        addr: local,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// Accepts until told to stop; one task per connection, bounded.
async fn accept_loop(
    listener: std::net::TcpListener,
    state: Arc<MetricsState>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics endpoint cannot serve");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(REQUEST_MAX)
        .max_buf_size(REQUEST_MAX.max(8 * 1024))
        // One request per connection, as scrapers and probes use it; an
        // idle keep-alive connection would hold a slot for nothing.
        .keep_alive(false);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, typically: back off, keep serving.
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(peer = %peer, "metrics endpoint full: connection closed");
            continue;
        };
        let st = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, std::convert::Infallible>(answer(&st, &req)) }
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Err(e)) => tracing::debug!(peer = %peer, error = %e, "metrics connection"),
                Err(_) => tracing::debug!(peer = %peer, "metrics connection timed out"),
                Ok(Ok(())) => {}
            }
        });
    }
}

type Body = http_body_util::Full<hyper::body::Bytes>;

/// The answer to one request (`GET` or `HEAD`; the path without its query).
fn answer<B>(state: &Arc<MetricsState>, req: &hyper::Request<B>) -> hyper::Response<Body> {
    use hyper::Method;
    let head_only = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head_only {
        return respond(405, "text/plain", b"only GET and HEAD\n".to_vec(), false);
    }
    match req.uri().path() {
        "/metrics" => respond(200, CONTENT_TYPE, state.render().into_bytes(), head_only),
        "/health" => respond(200, "text/plain", b"ok\n".to_vec(), head_only),
        "/ready" => match state.readiness() {
            Ok(()) => respond(200, "text/plain", b"ready\n".to_vec(), head_only),
            Err(why) => respond(
                503,
                "text/plain",
                format!("not ready: {why}\n").into_bytes(),
                head_only,
            ),
        },
        "/" => respond(
            200,
            "text/plain",
            b"bourse: /metrics /health /ready\n".to_vec(),
            head_only,
        ),
        _ => respond(404, "text/plain", b"not found\n".to_vec(), head_only),
    }
}

fn respond(
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    head_only: bool,
) -> hyper::Response<Body> {
    let len = body.len();
    let body = if head_only { Vec::new() } else { body };
    let mut r = hyper::Response::new(Body::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    let h = r.headers_mut();
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        h.insert(hyper::header::CONTENT_TYPE, v);
    }
    h.insert(hyper::header::CONTENT_LENGTH, len.into());
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

/// A parsed sample of a text exposition: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric (sample) name, e.g. `bourse_commands_total`.
    pub name: String,
    /// Label pairs in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of a label.
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A line of a text exposition that is not a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: cannot parse {text:?}")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// The line.
    pub text: String,
}

/// Parses the samples of a Prometheus / OpenMetrics text exposition (for
/// tests and tools; comments are skipped). Errors name the bad line.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, ExpositionError> {
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || ExpositionError {
            line: no + 1,
            text: line.to_string(),
        };
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => return Err(bad()),
        };
        let mut labels = Vec::new();
        let rest = if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            loop {
                // key
                let start = match chars.peek() {
                    Some(&(i, '}')) => {
                        end = Some(i + 1);
                        break;
                    }
                    Some(&(i, _)) => i,
                    None => break,
                };
                let mut eq = None;
                for (i, ch) in chars.by_ref() {
                    if ch == '=' {
                        eq = Some(i);
                        break;
                    }
                }
                let eq = eq.ok_or_else(bad)?;
                let key = r[start..eq].trim_start_matches(',').trim().to_string();
                if chars.next().map(|x| x.1) != Some('"') {
                    return Err(bad());
                }
                let mut val = String::new();
                let mut closed = false;
                while let Some((_, ch)) = chars.next() {
                    match ch {
                        '\\' => match chars.next().map(|x| x.1) {
                            Some('n') => val.push('\n'),
                            Some(o) => val.push(o),
                            None => return Err(bad()),
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        o => val.push(o),
                    }
                }
                if !closed {
                    return Err(bad());
                }
                labels.push((key, val));
                if let Some(&(_, ',')) = chars.peek() {
                    chars.next();
                }
            }
            &r[end.ok_or_else(bad)?..]
        } else {
            rest
        };
        let value = rest.split_whitespace().next().ok_or_else(bad)?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse::<f64>().map_err(|_| bad())?,
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// Sends `GET path` to an endpoint and returns the status and body (for
/// tests, health probes and `bourse` subcommands).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut c = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    c.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {resp:.80}")))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Seq;

    #[test]
    fn renders_and_parses() {
        let sh = Arc::new(Shared::new(8, 16, Some(8), Seq(0)));
        sh.counters.commands[1].add(5);
        sh.counters.rejected[1].add(2);
        sh.counters.order_rejects[RejectReason::InvalidPrice.code() as usize].add(2);
        sh.counters.fsync_us_buckets[3].add(4);
        sh.counters.fsync_us_sum.add(20);
        let st = MetricsState::with_partitions(vec![sh]);
        st.gateway.session_opened();
        st.gateway
            .session_closed(DisconnectReason::from_close_code(4));
        let text = st.render();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("\nbourse_sessions 0"), "{text}");
        let s = parse_exposition(&text).unwrap();
        let get = |name: &str, f: &dyn Fn(&Sample) -> bool| {
            s.iter()
                .find(|x| x.name == name && f(x))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .value
        };
        assert_eq!(
            get("bourse_commands_total", &|x| x.label("kind")
                == Some("order")
                && x.label("outcome") == Some("accepted")),
            3.0
        );
        assert_eq!(
            get("bourse_rejects_total", &|x| x.label("reason")
                == Some("invalid_price")),
            2.0
        );
        assert_eq!(get("bourse_journal_commit_seconds_count", &|_| true), 4.0);
        assert_eq!(
            get("bourse_journal_commit_seconds_bucket", &|x| x.label("le")
                == Some("+Inf")),
            4.0
        );
        assert_eq!(
            get("bourse_disconnects_total", &|x| x.label("reason")
                == Some("idle_timeout")),
            1.0
        );
        assert_eq!(get("bourse_sessions", &|_| true), 0.0);
        assert_eq!(get("bourse_ready", &|_| true), 0.0);
        assert_eq!(st.readiness(), Err(crate::health::NotReady::Recovering));
        st.set_ready(true);
        assert_eq!(st.readiness(), Ok(()));
    }

    #[test]
    fn parser_handles_escapes() {
        let s = parse_exposition("a_b{x=\"1\",y=\"q\\\"z\"} 2.5\nc 3\n# EOF\n").unwrap();
        assert_eq!(s[0].labels[1].1, "q\"z");
        assert_eq!(s[0].value, 2.5);
        assert_eq!(s[1].name, "c");
        assert!(parse_exposition("bad{x=1} 2").is_err());
    }
}
