//! The watchdog: a thread that samples every partition's counters every
//! `interval` and raises an alarm — one `error!` log line and
//! `bourse_watchdog_alarm{kind,partition} 1` — when an engine core stops
//! making progress, when a journal stops making inputs durable, or when the
//! mean journal commit latency degrades past a bound; it clears the alarm
//! (one `info!` line, the gauge back to 0) when things recover.
//!
//! It writes what it computes into [`crate::health`] (the metrics endpoint
//! reads it there; this module never imports the endpoint).
//!
//! Invariants: the watchdog only reads the runtime's counters (it never
//! touches an engine thread or takes a lock one holds); it logs on
//! transitions only, never once per sample. `Watchdog::sample` is a pure
//! function of the counters and the time it is given, so tests drive it
//! with a fake clock.

pub use crate::health::AlarmKind;
use crate::health::{Health, WatchdogView};
use runtime::Shared;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Watchdog thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchdogConfig {
    /// No progress for this long with work pending raises a stall alarm.
    pub stall: Duration,
    /// Mean commit latency bound, microseconds.
    pub fsync_alarm_us: u64,
    /// Sampling period.
    pub interval: Duration,
    /// Window of the commit latency and busy ratio figures.
    pub window: Duration,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            stall: Duration::from_secs(1),
            fsync_alarm_us: 20_000,
            interval: Duration::from_millis(100),
            window: Duration::from_secs(1),
        }
    }
}

/// An alarm raised or cleared by a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Partition.
    pub partition: usize,
    /// What.
    pub kind: AlarmKind,
    /// Raised (`true`) or cleared.
    pub raised: bool,
}

#[derive(Clone, Copy, Debug)]
struct Point {
    at: Instant,
    commits: u64,
    commit_us: u64,
    busy_ns: u64,
}

#[derive(Debug)]
struct PartState {
    last_applied: u64,
    engine_since: Option<Instant>,
    last_durable: u64,
    journal_since: Option<Instant>,
    window: VecDeque<Point>,
    alarms: [bool; AlarmKind::COUNT],
    busy_ratio: Option<f64>,
    commit_mean_us: Option<f64>,
}

impl PartState {
    fn new(p: &Shared) -> Self {
        PartState {
            last_applied: p.applied_seq.load(Ordering::Acquire),
            engine_since: None,
            last_durable: p.durable_seq.load(Ordering::Acquire),
            journal_since: None,
            window: VecDeque::new(),
            alarms: [false; AlarmKind::COUNT],
            busy_ratio: None,
            commit_mean_us: None,
        }
    }
}

/// The sampler (the thread calls `sample` every `interval`).
#[derive(Debug)]
pub struct Watchdog {
    cfg: WatchdogConfig,
    parts: Vec<PartState>,
}

impl Watchdog {
    /// A sampler with no history.
    pub fn new(cfg: WatchdogConfig) -> Self {
        Watchdog {
            cfg,
            parts: Vec::new(),
        }
    }

    /// Samples every partition of `state` at `now`, updates the state's
    /// watchdog view, logs and returns the alarms that changed.
    pub fn sample(&mut self, now: Instant, state: &Health) -> Vec<Transition> {
        let parts = state.partitions();
        if self.parts.len() != parts.len() {
            self.parts = parts.iter().map(|p| PartState::new(p)).collect();
        }
        let mut out = Vec::new();
        for (i, (p, s)) in parts.iter().zip(self.parts.iter_mut()).enumerate() {
            let durable = p.durable_seq.load(Ordering::Acquire);
            let applied = p.applied_seq.load(Ordering::Acquire);

            // Engine: work waiting, nothing applied.
            let engine_stalled = if applied != s.last_applied || p.inbound.is_empty() {
                s.engine_since = None;
                false
            } else {
                let since = *s.engine_since.get_or_insert(now);
                now.duration_since(since) >= self.cfg.stall
            };
            s.last_applied = applied;

            // Journal: inputs applied, nothing made durable.
            let journal_stalled =
                if p.journal.is_none() || durable != s.last_durable || applied <= durable {
                    s.journal_since = None;
                    false
                } else {
                    let since = *s.journal_since.get_or_insert(now);
                    now.duration_since(since) >= self.cfg.stall
                };
            s.last_durable = durable;

            // Commit latency and busy ratio over the window.
            let c = &p.counters;
            let point = Point {
                at: now,
                commits: c.fsync_us_buckets.iter().map(|b| b.get()).sum(),
                commit_us: c.fsync_us_sum.get(),
                busy_ns: c.busy_ns.get(),
            };
            s.window.push_back(point);
            while s.window.len() > 2 && now.duration_since(s.window[1].at) >= self.cfg.window {
                s.window.pop_front();
            }
            let base = s.window[0];
            let commits = point.commits.saturating_sub(base.commits);
            s.commit_mean_us = (commits > 0)
                .then(|| point.commit_us.saturating_sub(base.commit_us) as f64 / commits as f64);
            let dt = now.duration_since(base.at).as_nanos() as f64;
            s.busy_ratio = (dt > 0.0)
                .then(|| (point.busy_ns.saturating_sub(base.busy_ns) as f64 / dt).min(1.0));
            let slow = s
                .commit_mean_us
                .is_some_and(|m| m > self.cfg.fsync_alarm_us as f64);

            for (kind, on) in [
                (AlarmKind::EngineStall, engine_stalled),
                (AlarmKind::JournalStall, journal_stalled),
                (AlarmKind::FsyncLatency, slow),
            ] {
                let was = &mut s.alarms[kind as usize];
                if *was == on {
                    continue;
                }
                *was = on;
                out.push(Transition {
                    partition: i,
                    kind,
                    raised: on,
                });
                let inbound = p.inbound.len();
                let mean_us = s.commit_mean_us.unwrap_or(0.0);
                if on {
                    tracing::error!(
                        partition = i,
                        alarm = kind.name(),
                        applied_seq = applied,
                        durable_seq = durable,
                        inbound,
                        commit_mean_us = mean_us,
                        stall_ms = self.cfg.stall.as_millis() as u64,
                        fsync_alarm_us = self.cfg.fsync_alarm_us,
                        "watchdog alarm raised"
                    );
                } else {
                    tracing::info!(
                        partition = i,
                        alarm = kind.name(),
                        applied_seq = applied,
                        durable_seq = durable,
                        commit_mean_us = mean_us,
                        "watchdog alarm cleared"
                    );
                }
            }
        }
        state.set_watchdog_view(WatchdogView {
            alarms: self.parts.iter().map(|s| s.alarms).collect(),
            busy_ratio: self.parts.iter().map(|s| s.busy_ratio).collect(),
            commit_mean_us: self.parts.iter().map(|s| s.commit_mean_us).collect(),
        });
        out
    }
}

/// The running watchdog thread; stops when dropped.
#[derive(Debug)]
pub struct WatchdogHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WatchdogHandle {
    /// Stops the thread and waits for it.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for WatchdogHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts the watchdog thread over `state`'s partitions.
pub fn spawn_watchdog(state: Arc<Health>, cfg: WatchdogConfig) -> std::io::Result<WatchdogHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = std::thread::Builder::new()
        .name("watchdog".to_string())
        .spawn(move || {
            let mut w = Watchdog::new(cfg);
            let mut next = Instant::now();
            while !s.load(Ordering::Acquire) {
                w.sample(Instant::now(), &state);
                next += cfg.interval;
                let now = Instant::now();
                if next > now {
                    std::thread::park_timeout(next - now);
                } else {
                    next = now;
                }
            }
        })?;
    Ok(WatchdogHandle {
        stop,
        thread: Some(thread),
    })
}
