//! The operator side of `bourse serve` in one handle: the metrics endpoint
//! (`/metrics`, `/health`, `/ready`) and the watchdog, started before
//! recovery so that `/health` answers and `/ready` says "recovery not done"
//! while the journal replays, then attached to the running partitions.
//!
//! Invariant: nothing here runs on an engine or journal thread; both
//! threads only read the runtime's counters.

use crate::config::BourseConfig;
use crate::metrics::{serve_metrics, GatewayMetrics, MetricsHandle, MetricsState};
use crate::watchdog::{spawn_watchdog, WatchdogConfig, WatchdogHandle};
use runtime::Runtime;
use std::net::SocketAddr;
use std::sync::Arc;

/// The running metrics endpoint and watchdog.
#[derive(Debug)]
pub struct Ops {
    state: Arc<MetricsState>,
    metrics: Option<MetricsHandle>,
    watchdog: Option<WatchdogHandle>,
}

impl Ops {
    /// Starts the metrics endpoint (when `server.metrics_enabled`) and the
    /// watchdog with `cfg`'s thresholds. Not ready until `set_ready(true)`.
    pub fn start(cfg: &BourseConfig) -> std::io::Result<Ops> {
        Ops::start_with(cfg.metrics_addr(), cfg.watchdog())
    }

    /// Starts with an explicit address (`None`: no endpoint) and thresholds.
    pub fn start_with(
        metrics: Option<SocketAddr>,
        watchdog: WatchdogConfig,
    ) -> std::io::Result<Ops> {
        let state = MetricsState::new();
        let metrics = match metrics {
            Some(addr) => Some(serve_metrics(addr, state.clone()).map_err(|e| {
                std::io::Error::new(e.kind(), format!("metrics endpoint {addr}: {e}"))
            })?),
            None => None,
        };
        let watchdog = Some(spawn_watchdog(state.health().clone(), watchdog)?);
        Ok(Ops {
            state,
            metrics,
            watchdog,
        })
    }

    /// Reports on (and watches) every partition of `rt`.
    pub fn attach(&self, rt: &Runtime) {
        self.state.attach(rt);
    }

    /// Marks start-up (recovery, demo set) done, or the process as stopping.
    pub fn set_ready(&self, ready: bool) {
        self.state.set_ready(ready);
    }

    /// The shared state (readiness, watchdog view, rendering).
    pub fn state(&self) -> &Arc<MetricsState> {
        &self.state
    }

    /// Gateway counters for the server to bump.
    pub fn gateway(&self) -> &GatewayMetrics {
        &self.state.gateway
    }

    /// The endpoint's bound address, if serving.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.local_addr())
    }

    /// Stops the endpoint and the watchdog.
    pub fn shutdown(mut self) {
        self.state.set_ready(false);
        if let Some(w) = self.watchdog.take() {
            w.shutdown();
        }
        if let Some(m) = self.metrics.take() {
            m.shutdown();
        }
    }
}
