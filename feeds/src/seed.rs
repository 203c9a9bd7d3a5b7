//! Seeding the hub at start-up from a partition's journal, so the books
//! subscribers see after a restart are the recovered ones and the feed's
//! sequence numbers continue from where they were.
//!
//! Invariants: only inputs up to `up_to` (the recovered sequence) are fed
//! (later ones arrive as live outputs); nobody is subscribed yet, so
//! nothing is sent; damaged records are refused by recovery before this
//! runs.

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
        let mut n = 0u64;
        journal::scan(&journal::FsStorage, dir, |_, _, _, records| {
            for r in records {
                let Ok(input) = journal::record::decode(r) else {
                    continue;
                };
                if input.seq.0 > up_to {
                    return Ok(());
                }
                eng.apply(&input, &mut events);
                events_vec.clear();
                events_vec.extend(events.iter().copied());
                self.on_input(p, input.seq, Some(&input.command), &events_vec, 0);
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    }
}
