//! A replicated journal keeps only what its snapshots do not cover: a purge
//! (openraft purges after a snapshot) moves whole segments before the purge
//! point out of the partition directory, and the log reopens after the
//! snapshot with every later entry intact.

use engine::{Command, Timestamp};
use journal::{SimDisk, Storage};
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use replica::{
    Batch, Entry, Item, JournalLog, LogId, LogStore, Payload, SnapshotStamps, Stamp, SyncMode,
};
use std::path::Path;

const DIR: &str = "/p0";
/// Small segments: a few dozen 4 KiB blocks each.
const SEGMENT_BYTES: u64 = 256 << 10;

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new_term_index(1, index),
        payload: Payload::Normal(Batch {
            leader: 1,
            epoch: 1,
            time: Timestamp(index),
            items: vec![Item::internal(Command::Time {
                now: Timestamp(index),
            })],
        }),
    }
}

fn segments(disk: &SimDisk) -> Vec<String> {
    let mut v: Vec<String> = disk
        .list(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "current_thread")]
async fn a_purge_retires_whole_segments_and_the_log_reopens_after_it() {
    let disk = SimDisk::new();
    let dir = Path::new(DIR);
    let log = JournalLog::open(disk.clone(), dir, SEGMENT_BYTES, None, SyncMode::Inline).unwrap();
    let mut store = LogStore::new(log, SnapshotStamps::default());
    for i in 1..=400 {
        store.append([entry(i)], IOFlushed::noop()).await.unwrap();
    }
    let before = segments(&disk);
    assert!(before.len() >= 5, "{before:?}");
    store.purge(LogId::new_term_index(1, 350)).await.unwrap();
    let after = segments(&disk);
    assert!(after.len() < before.len(), "nothing retired: {after:?}");
    assert_eq!(
        after.last(),
        before.last(),
        "the segment being written stays"
    );
    let archived = disk.list(&dir.join("archive")).unwrap_or_default();
    assert!(
        !archived.is_empty(),
        "retired segments are archived by default"
    );
    // Entries after the purge point read back, and the log reopens after it
    // (as it does after a restart from the snapshot at 250).
    let tail = store.try_get_log_entries(351..=400).await.unwrap();
    assert_eq!(tail.len(), 50);
    drop(store);
    let anchor = Some((
        LogId::new_term_index(1, 350),
        Stamp {
            seq: 350,
            time: 350,
        },
    ));
    let log = JournalLog::open(disk.clone(), dir, SEGMENT_BYTES, anchor, SyncMode::Inline).unwrap();
    let mut store = LogStore::new(log, SnapshotStamps::default());
    let tail = store.try_get_log_entries(351..=400).await.unwrap();
    assert_eq!(tail.len(), 50);
    assert_eq!(tail[0].log_id, LogId::new_term_index(1, 351));
    store.append([entry(401)], IOFlushed::noop()).await.unwrap();
    assert!(journal::scan(&disk, dir, |_, _, _, _| Ok(()))
        .unwrap()
        .base
        .is_some());
}
