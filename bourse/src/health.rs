//! What the process knows about its own health, shared by the metrics
//! endpoint ([`crate::metrics`], which reports it) and the watchdog
//! ([`crate::watchdog`], which computes the alarms): the partitions
//! watched, whether start-up is done, the watchdog's last view, and the
//! readiness verdict derived from them.
//!
//! Both of those modules import this one and neither imports the other
//! (the watchdog writes a [`WatchdogView`] here, scrapes read it).
//!
//! Invariants: nothing here runs on or locks against an engine or journal
//! thread (the locks are the watchdog's and the scrapes' only); readiness
//! is a pure function of this state and the partitions' flags.

use runtime::Shared;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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

/// What the watchdog last computed, per partition (read by scrapes and `/ready`).
#[derive(Clone, Debug, Default)]
pub struct WatchdogView {
    /// Raised alarms, indexed by `AlarmKind as usize`.
    pub alarms: Vec<[bool; AlarmKind::COUNT]>,
    /// Engine busy ratio over the watchdog's window.
    pub busy_ratio: Vec<Option<f64>>,
    /// Mean journal commit latency over the window, microseconds.
    pub commit_mean_us: Vec<Option<f64>>,
}

/// The partitions watched, start-up done or not, and the watchdog's view.
#[derive(Debug, Default)]
pub struct Health {
    partitions: RwLock<Vec<Arc<Shared>>>,
    recovered: AtomicBool,
    watchdog: Mutex<WatchdogView>,
}

impl Health {
    /// Sets the partitions to report (once the runtime has started).
    pub fn set_partitions(&self, parts: Vec<Arc<Shared>>) {
        *self.partitions.write().expect("partitions lock") = parts;
    }

    /// Reports every partition of a running runtime.
    pub fn attach(&self, rt: &runtime::Runtime) {
        self.set_partitions((0..rt.partitions()).map(|i| rt.shared(i).clone()).collect());
    }

    /// The partitions reported.
    pub fn partitions(&self) -> Vec<Arc<Shared>> {
        self.partitions.read().expect("partitions lock").clone()
    }

    /// Marks recovery (and any start-up work) done, or not.
    pub fn set_ready(&self, ready: bool) {
        self.recovered.store(ready, Ordering::Release);
    }

    /// Replaces the watchdog's view (the watchdog thread calls this).
    pub fn set_watchdog_view(&self, view: WatchdogView) {
        *self.watchdog.lock().expect("watchdog lock") = view;
    }

    /// The watchdog's last view.
    pub fn watchdog_view(&self) -> WatchdogView {
        self.watchdog.lock().expect("watchdog lock").clone()
    }

    /// Whether an alarm is raised.
    pub fn alarm(&self, partition: usize, kind: AlarmKind) -> bool {
        self.watchdog
            .lock()
            .expect("watchdog lock")
            .alarms
            .get(partition)
            .is_some_and(|a| a[kind as usize])
    }

    /// `Ok` when ready to serve: recovery done, every engine thread running,
    /// every journal writable and making progress; else why not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if !self.recovered.load(Ordering::Acquire) {
            return Err(NotReady::Recovering);
        }
        let parts = self.partitions();
        if parts.is_empty() {
            return Err(NotReady::NoPartitions);
        }
        let view = self.watchdog_view();
        for (i, p) in parts.iter().enumerate() {
            if p.stopped.load(Ordering::Acquire) || p.stop.load(Ordering::Acquire) {
                return Err(NotReady::EngineStopped(i));
            }
            if p.journal_failed.load(Ordering::Acquire) {
                return Err(NotReady::JournalFailed(i));
            }
            if let Some(a) = view.alarms.get(i) {
                if a[AlarmKind::EngineStall as usize] {
                    return Err(NotReady::EngineStalled(i));
                }
                if a[AlarmKind::JournalStall as usize] {
                    return Err(NotReady::JournalStalled(i));
                }
            }
        }
        Ok(())
    }
}

/// Why a server is not ready to serve (the body of a 503 from `/ready`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// Recovery from the journal is still running.
    #[error("recovery not done")]
    Recovering,
    /// No engine partition is running.
    #[error("no engine partitions running")]
    NoPartitions,
    /// This partition's engine thread stopped.
    #[error("engine {0} is stopped")]
    EngineStopped(usize),
    /// This partition's journal failed and takes no more writes.
    #[error("journal {0} failed and is not writable")]
    JournalFailed(usize),
    /// This partition's engine made no progress with work waiting.
    #[error("engine {0} is stalled")]
    EngineStalled(usize),
    /// This partition's journal made no progress with work waiting.
    #[error("journal {0} is stalled")]
    JournalStalled(usize),
}
