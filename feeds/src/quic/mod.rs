//! Market data over QUIC (`bourse-md/1` on the order-entry endpoint): the
//! server's per-subscriber connection tasks (`server`), the client
//! (`client`), and the hand-off from the order-entry server (its
//! `Companion`: the runtime's outputs in, connections to serve).
//!
//! Invariants: this is the only part of `feeds` that touches quinn, tokio,
//! the clock or the runtime's output types; the hub it drives
//! (`crate::hub`) stays sans-IO. Everything here runs on the one thread
//! that owns the hub (`Rc<RefCell<_>>`, never shared across threads).

pub(crate) mod client;
pub(crate) mod server;

use crate::hub::{MdConfig, MdHub, MdStats};
use gateway::counters::DisconnectReason;
use gateway::session::Auth;
use runtime::{Output, OutputKind};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

pub use server::connection;

/// The hub's clock: nanoseconds since the first call in this process.
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

impl MdHub {
    /// One durable output of partition `p` (in order): the adapter from the
    /// runtime's per-event outputs to whole inputs. It stages an input's
    /// command and events until its end marker, then hands them to
    /// `on_input`.
    pub fn on_output(&mut self, p: usize, o: &Output) {
        let Some(st) = self.staged.get_mut(p) else {
            return;
        };
        match o.kind {
            OutputKind::Input(cmd) => {
                st.seq = o.seq;
                st.command = Some(cmd);
                st.events.clear();
            }
            OutputKind::Event(ev) => {
                if st.seq != o.seq {
                    // Events of an input whose command was not seen.
                    st.seq = o.seq;
                    st.command = None;
                    st.events.clear();
                }
                st.events.push(ev);
            }
            OutputKind::Level(_) | OutputKind::Row(_) => {}
            OutputKind::End => {
                let mut st = std::mem::take(&mut self.staged[p]);
                self.on_input(p, o.seq, st.command.as_ref(), &st.events, now_ns());
                st.command = None;
                st.events.clear();
                self.staged[p] = st;
            }
        }
    }
}

/// The market-data hub as the order-entry server's companion protocol
/// (`bourse-md/1` on the same endpoint).
struct MdCompanion {
    hub: Rc<RefCell<MdHub>>,
    /// Counters already folded into the gateway's.
    seen: RefCell<MdStats>,
}

impl gateway::server::Companion for MdCompanion {
    fn on_output(&self, partition: usize, output: &Output) {
        self.hub.borrow_mut().on_output(partition, output);
    }

    fn serve(
        &self,
        conn: quinn::Connection,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(connection(self.hub.clone(), conn))
    }

    fn sweep(&self, m: &gateway::counters::GatewayMetrics) {
        let hub = self.hub.borrow();
        let st = hub.stats();
        let mut seen = self.seen.borrow_mut();
        m.set_subscribers(hub.subscribers() as i64);
        m.conflated(st.conflated - seen.conflated);
        for r in DisconnectReason::ALL {
            let i = r as usize;
            m.md_disconnected(r, st.disconnects[i] - seen.disconnects[i]);
        }
        m.md_throttled(st.throttled - seen.throttled);
        *seen = st;
    }
}

/// Market data on the order-entry endpoint: the server builds the hub once
/// the pipeline has recovered, seeded from each partition's journal so the
/// books show the recovered state, not an empty one.
pub fn companion(cfg: MdConfig) -> gateway::server::CompanionSpec {
    let build = move |p: &runtime::Pipeline,
                      pc: &runtime::PipelineConfig,
                      auth: Arc<Auth>|
          -> Result<
        Rc<dyn gateway::server::Companion>,
        gateway::server::CompanionError,
    > {
        let partitions = p.runtime().partitions();
        let mut hub = MdHub::new(cfg.clone(), partitions, auth);
        if pc.durability != journal::Durability::None {
            for part in 0..partitions {
                let dir = runtime::pipeline::partition_dir(&pc.data_dir, part);
                let up_to = p.recovered().get(part).map_or(0, |r| r.last_seq);
                match hub.seed_from_journal(part, &dir, pc.engine, up_to) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        partition = part,
                        inputs = n,
                        "market data rebuilt from the journal"
                    ),
                    Err(e) => {
                        return Err(
                            format!("market data rebuild from {}: {e}", dir.display()).into()
                        )
                    }
                }
            }
        }
        Ok(Rc::new(MdCompanion {
            hub: Rc::new(RefCell::new(hub)),
            seen: RefCell::new(MdStats::default()),
        }))
    };
    gateway::server::CompanionSpec {
        alpn: crate::wire::ALPN,
        build: Arc::new(build),
    }
}
