//! The watchdog: a thread that samples every partition's counters every
//! `interval` and raises an alarm — one `error!` log line and
//! `bourse_watchdog_alarm{kind,partition} 1` — when an engine core stops
//! making progress, when a journal stops making inputs durable, or when the
//! mean journal commit latency degrades past a bound; it clears the alarm
//! (one `info!` line, the gauge back to 0) when things recover.
//!
//! Invariants: the watchdog only reads the runtime's counters (it never
//! touches an engine thread or takes a lock one holds); it logs on
//! transitions only, never once per sample. `Watchdog::sample` is a pure
//! function of the counters and the time it is given, so tests drive it
//! with a fake clock.

use crate::metrics::{MetricsState, WatchdogView};
use runtime::Shared;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What an alarm is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum AlarmKind {
    /// Work queued in the inbound ring, no input applied for `stall`.
    EngineStall,
    /// Inputs applied but none made durable for `stall`.
    JournalStall,
    /// Mean commit (write + fdatasync) latency over `window` above the bound.
    FsyncLatency,
}

impl AlarmKind {
    /// Number of kinds.
    pub const COUNT: usize = 3;
    /// Every kind.
    pub const ALL: [AlarmKind; 3] = [
        AlarmKind::EngineStall,
        AlarmKind::JournalStall,
        AlarmKind::FsyncLatency,
    ];
    /// Stable label value.
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::EngineStall => "engine_stall",
            AlarmKind::JournalStall => "journal_stall",
            AlarmKind::FsyncLatency => "fsync_latency",
        }
    }
}

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
    pub fn sample(&mut self, now: Instant, state: &MetricsState) -> Vec<Transition> {
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
pub fn spawn_watchdog(
    state: Arc<MetricsState>,
    cfg: WatchdogConfig,
) -> std::io::Result<WatchdogHandle> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Seq;
    use runtime::Request;

    fn cfg() -> WatchdogConfig {
        WatchdogConfig {
            stall: Duration::from_millis(500),
            fsync_alarm_us: 1_000,
            interval: Duration::from_millis(100),
            window: Duration::from_secs(1),
        }
    }

    fn ms(t: Instant, n: u64) -> Instant {
        t + Duration::from_millis(n)
    }

    #[test]
    fn engine_stall_raises_and_clears() {
        let sh = Arc::new(Shared::new(4, 16, Some(4), Seq(10)));
        let st = MetricsState::with_partitions(vec![sh.clone()]);
        st.set_ready(true);
        let mut w = Watchdog::new(cfg());
        let t0 = Instant::now();
        assert!(w.sample(t0, &st).is_empty());
        // Work queued, nothing applied.
        sh.inbound.push(Request::Snapshot).unwrap();
        assert!(w.sample(ms(t0, 100), &st).is_empty());
        assert!(w.sample(ms(t0, 400), &st).is_empty());
        let t = w.sample(ms(t0, 600), &st);
        assert_eq!(
            t,
            vec![Transition {
                partition: 0,
                kind: AlarmKind::EngineStall,
                raised: true
            }]
        );
        assert!(st.alarm(0, AlarmKind::EngineStall));
        assert!(st.readiness().unwrap_err().contains("stalled"));
        let text = st.render();
        assert!(
            text.contains("bourse_watchdog_alarm{partition=\"0\",kind=\"engine_stall\"} 1"),
            "{text}"
        );
        // Raised once: no repeat while it stays stalled.
        assert!(w.sample(ms(t0, 700), &st).is_empty());
        // Progress clears it.
        sh.applied_seq.store(11, Ordering::Release);
        sh.durable_seq.store(11, Ordering::Release);
        let t = w.sample(ms(t0, 800), &st);
        assert_eq!(t.len(), 1);
        assert!(!t[0].raised);
        assert!(!st.alarm(0, AlarmKind::EngineStall));
        assert_eq!(st.readiness(), Ok(()));
        // An empty ring with no progress is idle, not stalled.
        sh.inbound.pop();
        assert!(w.sample(ms(t0, 5_000), &st).is_empty());
    }

    #[test]
    fn journal_stall_raises_and_clears() {
        let sh = Arc::new(Shared::new(4, 16, Some(4), Seq(0)));
        let st = MetricsState::with_partitions(vec![sh.clone()]);
        let mut w = Watchdog::new(cfg());
        let t0 = Instant::now();
        sh.applied_seq.store(5, Ordering::Release);
        sh.durable_seq.store(3, Ordering::Release);
        assert!(w.sample(t0, &st).is_empty());
        assert!(w.sample(ms(t0, 100), &st).is_empty());
        let t = w.sample(ms(t0, 700), &st);
        assert_eq!(t[0].kind, AlarmKind::JournalStall);
        assert!(t[0].raised);
        sh.durable_seq.store(5, Ordering::Release);
        let t = w.sample(ms(t0, 800), &st);
        assert_eq!(t[0].kind, AlarmKind::JournalStall);
        assert!(!t[0].raised);
    }

    #[test]
    fn slow_fsync_raises_and_clears() {
        let sh = Arc::new(Shared::new(4, 16, Some(4), Seq(0)));
        let st = MetricsState::with_partitions(vec![sh.clone()]);
        let mut w = Watchdog::new(cfg());
        let t0 = Instant::now();
        assert!(w.sample(t0, &st).is_empty());
        let c = &sh.counters;
        // Two commits of ~3 ms: mean above the 1 ms bound.
        c.fsync_us_buckets[12].add(2);
        c.fsync_us_sum.add(6_000);
        let t = w.sample(ms(t0, 100), &st);
        assert_eq!(
            t,
            vec![Transition {
                partition: 0,
                kind: AlarmKind::FsyncLatency,
                raised: true
            }]
        );
        let text = st.render();
        assert!(
            text.contains("bourse_watchdog_alarm{partition=\"0\",kind=\"fsync_latency\"} 1"),
            "{text}"
        );
        // One fast commit per sample: the mean falls below the bound, then
        // the slow ones age out of the window.
        let mut cleared_at = None;
        for k in 2..=13 {
            c.fsync_us_buckets[7].add(1);
            c.fsync_us_sum.add(100);
            let t = w.sample(ms(t0, k * 100), &st);
            if k == 2 {
                assert!(t.is_empty(), "cleared too early: {t:?}");
            }
            if !t.is_empty() {
                assert_eq!(cleared_at, None, "one transition only");
                assert!(!t[0].raised);
                cleared_at = Some(k);
            }
        }
        // (6000 + 100 * 4) / 6 > 1000 ≥ (6000 + 100 * 5) / 7.
        assert_eq!(cleared_at, Some(6));
        assert!(!st.alarm(0, AlarmKind::FsyncLatency));
        let mean = st.watchdog_view().commit_mean_us[0].unwrap();
        assert!((mean - 100.0).abs() < 1e-9, "{mean}");
    }

    #[test]
    fn thread_starts_and_stops() {
        let sh = Arc::new(Shared::new(4, 16, None, Seq(0)));
        let st = MetricsState::with_partitions(vec![sh]);
        let h = spawn_watchdog(
            st.clone(),
            WatchdogConfig {
                interval: Duration::from_millis(5),
                ..cfg()
            },
        )
        .unwrap();
        let t0 = Instant::now();
        while st.watchdog_view().busy_ratio.is_empty() {
            assert!(t0.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        }
        h.shutdown();
    }
}
