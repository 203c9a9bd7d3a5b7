//! The bench's coordinated-omission correction: a server that stalls for
//! 300 ms in the middle of a run must show in the corrected percentiles
//! (latency from each message's intended send time), while a measurement
//! from the actual send time — what a closed-loop tool reports — hides it
//! behind the one request that was in flight.
//!
//! Set-up as in wrk's classic example: one connection with one request in
//! flight at a time (window 1) at a modest rate, so the sender is blocked
//! for the whole stall and would, uncorrected, simply not measure it.

use bourse::bench::{in_process_server, run_load, LoadSpec, Target};
use journal::Durability;
use std::time::Duration;

#[test]
fn a_stalled_server_shows_in_the_corrected_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let server = in_process_server(dir.path(), Durability::None).expect("server");
    let id = gateway::identity::load_client_identity(dir.path()).unwrap();
    let target = Target {
        addr: server.addr(),
        cert_der: id.cert_der,
        token: id.operator_token.unwrap(),
    };
    let spec = LoadSpec {
        connections: 1,
        rate: 200,
        duration: Duration::from_secs(2),
        seed: 7,
        window: 1,
        client_spin: false,
        drain: Duration::from_secs(3),
        progress: false,
    };
    let stall = Duration::from_millis(300);
    let r = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(900));
            server.stall_for(stall);
        });
        run_load(&target, &spec).expect("load")
    });
    let ms = |v: u64| v as f64 / 1e6;
    let (c99, cmax) = (r.ack.value_at_quantile(0.99), r.ack.max());
    let (u99, umax) = (
        r.ack_uncorrected.value_at_quantile(0.99),
        r.ack_uncorrected.max(),
    );
    eprintln!(
        "sent {} answered {} | corrected p50 {:.2} ms p99 {:.2} ms max {:.2} ms | uncorrected p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        r.sent,
        r.answered,
        ms(r.ack.value_at_quantile(0.5)),
        ms(c99),
        ms(cmax),
        ms(r.ack_uncorrected.value_at_quantile(0.5)),
        ms(u99),
        ms(umax)
    );
    assert!(r.answered > 300, "the load ran: {} answered", r.answered);
    assert_eq!(r.unanswered, 0);
    let floor = 200_000_000; // 200 ms
    assert!(
        c99 >= floor,
        "corrected p99 shows the stall: {:.1} ms",
        ms(c99)
    );
    assert!(cmax >= floor, "corrected max shows the stall");
    // The requests intended during the stall (about 60 of 400) all waited:
    // well over 1 % of the corrected samples are above 100 ms.
    let over = r
        .ack
        .iter_recorded()
        .filter(|v| v.value_iterated_to() >= 100_000_000)
        .map(|v| v.count_at_value())
        .sum::<u64>();
    assert!(
        over * 100 >= r.ack.len() * 3,
        "{over} of {} over 100 ms",
        r.ack.len()
    );
    // Uncorrected, only the one request in flight saw the stall.
    assert!(umax >= floor, "the request in flight waited");
    assert!(
        u99 < floor,
        "uncorrected p99 hides the stall ({:.1} ms): that is the omission",
        ms(u99)
    );
    drop(server);
}
