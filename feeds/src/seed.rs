//! Seeding the hub at start-up from a partition's journal, so the books
//! subscribers see after a restart are the recovered ones and the feed's
//! sequence numbers continue from where they were.
//!
//! Invariants: the inputs come through `journal::replay()` (verified and
//! decoded, in order, no block walked here); only inputs up to `up_to`
//! (the recovered sequence) are fed (later ones arrive as live outputs);
//! nobody is subscribed yet, so nothing is sent.
//!
//! Why the whole journal and not the newest snapshot plus its tail: the
//! feed's sequence numbers are running counts of messages per channel and
//! per (instrument, channel), and its L3 state needs what an engine
//! snapshot does not expose (stop orders waiting, icebergs' display size);
//! a restored engine cannot reproduce them. Seeding from the tail needs a
//! feed checkpoint beside each engine snapshot (left open, ARCHITECTURE.md).

use crate::hub::MdHub;

impl MdHub {
    /// Rebuilds partition `p`'s market data from its journal: every
    /// journaled input up to `up_to` is applied to a scratch engine and its
    /// events go through the builder as live inputs would. Returns the
    /// inputs fed.
    pub fn seed_from_journal(
        &mut self,
        p: usize,
        dir: &std::path::Path,
        cfg: engine::EngineConfig,
        up_to: u64,
    ) -> Result<u64, journal::JournalError> {
        let mut eng = engine::Engine::new(cfg);
        let mut events = eng.new_events();
        let mut events_vec = Vec::new();
        let done = journal::replay(&journal::FsStorage, dir, 1, up_to, |input| {
            eng.apply(input, &mut events);
            events_vec.clear();
            events_vec.extend(events.iter().copied());
            self.on_input(p, input.seq, Some(&input.command), &events_vec, 0);
            Ok::<(), std::convert::Infallible>(())
        })
        .map_err(journal::ReplayError::into_journal)?;
        Ok(done.applied)
    }
}
