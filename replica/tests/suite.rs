//! openraft's storage conformance suite over the journal-backed log store
//! and the engine state machine, on the simulated disk.

use engine::EngineConfig;
use journal::SimDisk;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use openraft_rt::deterministic_rng::DeterministicRng;
use replica::{Cfg, EngineSm, InlineExecutor, JournalLog, LogStore, SnapshotStamps};
use std::path::Path;

struct Builder;

type Sm = EngineSm<SimDisk, InlineExecutor>;

impl StoreBuilder<Cfg, LogStore<SimDisk>, Sm, ()> for Builder {
    async fn build(&self) -> Result<((), LogStore<SimDisk>, Sm), StorageError<Cfg>> {
        let disk = SimDisk::new();
        let dir = Path::new("/p0");
        let stamps = SnapshotStamps::default();
        let cfg = EngineConfig::small();
        let (sm, anchor) = EngineSm::open(
            disk.clone(),
            dir,
            None,
            InlineExecutor::new(cfg),
            stamps.clone(),
        )
        .expect("state machine");
        let log =
            JournalLog::open(disk, dir, 1 << 20, anchor, replica::SyncMode::Thread).expect("log");
        Ok(((), LogStore::new(log, stamps), sm))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_journal_log_and_engine_state_machine_pass_openrafts_storage_suite() {
    DeterministicRng::<openraft::TokioRuntime>::scope(7, Suite::test_all(Builder))
        .await
        .expect("suite");
}
