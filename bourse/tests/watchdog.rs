//! The watchdog over a metrics state: alarms raised and cleared on a fake
//! clock, seen through the alarms API, readiness and the scrape text (so
//! the test needs both modules; neither imports the other).

use bourse::metrics::MetricsState;
use bourse::watchdog::{spawn_watchdog, AlarmKind, Transition, Watchdog, WatchdogConfig};
use engine::Seq;
use runtime::Request;
use runtime::Shared;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    assert!(st.readiness().unwrap_err().to_string().contains("stalled"));
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
        st.health().clone(),
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
