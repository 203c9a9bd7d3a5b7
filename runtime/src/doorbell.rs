//! The doorbell: how a partition's output consumers learn that
//! `durable_seq` moved, instead of polling for it.
//!
//! Whoever publishes `durable_seq` (the journal thread; the engine thread in
//! `none` mode) rings it once per published group, after the store. A
//! consumer registers a wake function once (e.g. a `tokio::sync::Notify`'s
//! `notify_one`), then sleeps on its own primitive until rung.
//!
//! Invariants: at most [`DOORBELLS_MAX`] wake functions, fixed at
//! registration (no lock, no allocation when ringing); a ring before any
//! registration is a no-op; a consumer re-checks its ring after every wake,
//! so a ring that lands between its check and its sleep is never lost (the
//! wake primitive must remember one wake, as `Notify` does).

use std::sync::OnceLock;

/// Most wake functions one partition's doorbell holds.
pub const DOORBELLS_MAX: usize = 4;

/// A wake function.
pub type Wake = Box<dyn Fn() + Send + Sync>;

/// Consumers' wake functions for one partition.
#[derive(Default)]
pub struct Doorbell {
    wakes: [OnceLock<Wake>; DOORBELLS_MAX],
}

impl std::fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.wakes.iter().filter(|w| w.get().is_some()).count();
        f.debug_struct("Doorbell").field("registered", &n).finish()
    }
}

/// Every doorbell slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every one of the doorbell's {DOORBELLS_MAX} slots is taken")]
pub struct DoorbellFull;

impl Doorbell {
    /// Registers `wake`, called on every later ring.
    pub fn register(&self, wake: Wake) -> Result<(), DoorbellFull> {
        let mut wake = Some(wake);
        for slot in &self.wakes {
            let w = wake.take().expect("wake present until placed");
            match slot.set(w) {
                Ok(()) => return Ok(()),
                Err(back) => wake = Some(back),
            }
        }
        Err(DoorbellFull)
    }

    /// Wakes every registered consumer.
    #[inline]
    pub fn ring(&self) {
        for slot in &self.wakes {
            match slot.get() {
                Some(w) => w(),
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn rings_every_registered_consumer_and_refuses_past_the_limit() {
        let bell = Doorbell::default();
        bell.ring();
        let hits = Arc::new(AtomicUsize::new(0));
        for _ in 0..DOORBELLS_MAX {
            let h = hits.clone();
            bell.register(Box::new(move || {
                h.fetch_add(1, Ordering::Relaxed);
            }))
            .unwrap();
        }
        assert_eq!(bell.register(Box::new(|| {})), Err(DoorbellFull));
        bell.ring();
        assert_eq!(hits.load(Ordering::Relaxed), DOORBELLS_MAX);
    }
}
