//! Capacity limits, fixed when the engine is built and allocated then.
//!
//! Invariant: nothing in the engine grows past these limits; hitting one is a
//! `capacity_exceeded` reject, never an allocation or a panic.

/// Capacities of one engine (one partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Live orders at once (resting, waiting stops and the one being matched).
    pub orders_max: u32,
    /// Price levels per book side.
    pub levels_max: u32,
    /// Waiting stop orders per instrument side.
    pub stops_max: u32,
    /// Instruments.
    pub instruments_max: u32,
    /// Distinct owners ever seen.
    pub owners_max: u32,
    /// Client order ids remembered for duplicate detection (every accepted order uses one).
    pub client_order_ids_max: u32,
    /// Ledger accounts.
    pub accounts_max: u32,
    /// Transfer records held in memory at once (stored transfers and
    /// remembered failed ids). Not a lifetime limit: once a history run
    /// covering a record is installed (`Command::InstallHistory`) and the
    /// record is not pending, it may leave memory and is answered from the
    /// history, so ids stay exactly-once forever. `capacity_exceeded` means
    /// memory is full of pending transfers and records no installed run
    /// covers yet (the history writer fell behind); with no history attached
    /// it is a lifetime limit, as before history existed.
    pub transfers_max: u32,
    /// Events one command may produce before the buffer would have to grow.
    pub events_max: u32,
    /// Distinct assets (each settling asset also gets an escrow account).
    pub assets_max: u32,
    /// Longest linked chain of transfers (TigerBeetle's batch is 8,190).
    pub batch_max: u32,
}

impl Default for EngineConfig {
    /// Defaults sized for one partition of a busy venue; memory is reserved,
    /// and only touched as it is used.
    fn default() -> Self {
        EngineConfig {
            orders_max: 1 << 20,
            levels_max: 1 << 15,
            stops_max: 1 << 14,
            instruments_max: 64,
            owners_max: 1 << 16,
            client_order_ids_max: 1 << 21,
            accounts_max: 1 << 18,
            transfers_max: 1 << 20,
            events_max: 1 << 16,
            assets_max: 1024,
            batch_max: 8190,
        }
    }
}

impl EngineConfig {
    /// Small capacities for tests and examples.
    pub fn small() -> Self {
        EngineConfig {
            orders_max: 4096,
            levels_max: 1024,
            stops_max: 1024,
            instruments_max: 16,
            owners_max: 256,
            client_order_ids_max: 1 << 16,
            accounts_max: 4096,
            transfers_max: 1 << 16,
            events_max: 8192,
            assets_max: 64,
            batch_max: 8190,
        }
    }
}
