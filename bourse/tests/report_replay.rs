//! `REPLAY_REPORTS`, sans-IO: a session that logs in on a server that
//! never saw it (a restart, a new cluster leader) gets the reports it lost
//! again from that server's report window, made as the old server made
//! them live. Cross-checked over seeded random order streams: the replayed
//! reports equal, field for field that the events carry, what a session
//! connected throughout received live. The seed prints on failure; more
//! seeds with `REPLAY_SEEDS=N`.

mod session_support;

use engine::rng::SplitMix64;
use engine::Side;
use gateway::session::{origin_key, Perms, Session, SessionConfig};
use gateway::window::ReportWindow;
use gateway::wire::*;
use session_support::*;

/// What a report says that a replay can know (a refused cancel's order
/// details and a refused new order's price and quantity went with the
/// request, not the event).
type Said = (u64, u8, u64, u64, u64, u64, u64, u64, u64, u16, u8, bool);

fn said(r: &ExecutionReport) -> Said {
    let refused_order = r.exec_type == exec_type::REJECTED && r.order_id != 0;
    let (coid, cum, leaves, status) = if refused_order {
        (0, 0, 0, ord_status::REJECTED)
    } else {
        (r.client_order_id, r.cum_qty, r.leaves_qty, r.ord_status)
    };
    (
        r.engine_seq,
        r.exec_type,
        r.order_id,
        r.request,
        coid,
        cum,
        leaves,
        r.last_qty,
        r.last_px,
        r.reject_code,
        status,
        r.flags & REPORT_OWN_REQUEST != 0,
    )
}

fn cfg() -> SessionConfig {
    SessionConfig {
        throttle_per_s: 0,
        ..SessionConfig::default()
    }
}

fn replay_frame(request: u64, partition: u32, after_seq: u64) -> Vec<u8> {
    let mut v = Vec::new();
    let m = ReplayReportsMsg {
        request,
        after_seq,
        partition,
        reserved: 0,
    };
    encode_frame(template::REPLAY_REPORTS, &m, &mut v);
    v
}

fn replace(request: u64, owner: u64, order_id: u64, price: u64, qty: u64) -> Vec<u8> {
    let mut v = Vec::new();
    let m = ReplaceMsg {
        request,
        owner,
        order_id,
        price,
        qty,
        ..Default::default()
    };
    encode_frame(template::REPLACE, &m, &mut v);
    v
}

/// A seeded stream: alice (session 9, owners 1 and 2) places, cancels and
/// replaces orders, some refused (duplicate client ids, unknown orders);
/// bob (owner 3) trades against them. Returns alice's live session, the
/// exchange (its window fed) and alice's last request.
fn stream(seed: u64, steps: usize, window_events: usize) -> (Session, Exchange, u64) {
    let auth = auth();
    let mut x = Exchange::new();
    x.window = Some(ReportWindow::new(window_events, x.seq()));
    let mut a = Session::new(1, cfg(), auth.clone());
    a.handle_committed(origin_key(9, &auth.check("alice").unwrap()), vec![0]);
    a.handle_bytes(1, &login_frame("alice", 9, 0, 0));
    let mut b = logged_in(2, "bob", cfg(), &auth);
    drain(&mut a);
    let mut rng = SplitMix64::new(seed);
    let mut ids: Vec<u64> = vec![999];
    let mut request = 0;
    for step in 0..steps {
        let pick = rng.next_u64() % 10;
        let price = 95 + rng.next_u64() % 10;
        let qty = 1 + rng.next_u64() % 9;
        let side = if rng.next_u64().is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        };
        let id = ids[(rng.next_u64() % ids.len() as u64) as usize];
        let frame = match pick {
            0..=3 => {
                request += 1;
                // Every eighth client order id repeats: refused while live.
                let coid = if step % 8 == 7 { 1 } else { 1 + step as u64 };
                let owner = 1 + rng.next_u64() % 2;
                limit(request, owner, coid, side, price, qty)
            }
            4 => {
                request += 1;
                cancel(request, 1 + rng.next_u64() % 2, id)
            }
            5 => {
                request += 1;
                replace(request, 1 + rng.next_u64() % 2, id, price, qty)
            }
            _ => {
                let coid = 100_000 + step as u64;
                b.handle_bytes(x.now, &limit(step as u64 + 1, 3, coid, side, price, qty));
                x.pump(&mut [&mut a, &mut b]);
                drain(&mut b);
                continue;
            }
        };
        a.handle_bytes(x.now, &frame);
        x.pump(&mut [&mut a, &mut b]);
        drain(&mut b);
        for r in reports(&a_replies(&mut a)) {
            if r.order_id != 0 && !ids.contains(&r.order_id) {
                ids.push(r.order_id);
            }
        }
    }
    (a, x, request)
}

/// Alice's replies, kept on the session for the comparison (`drain` takes
/// them; the live report stream is also in the replay store).
fn a_replies(a: &mut Session) -> Vec<Msg> {
    drain(a)
}

/// Alice logging in on a server that never saw her session, asking for
/// every report of partition 0 after `after`, following pages: the
/// reports and the final ack.
fn replay(
    x: &mut Exchange,
    last_request: u64,
    after: u64,
    cfg: SessionConfig,
) -> (Vec<ExecutionReport>, RequestAck) {
    let auth = auth();
    let mut s = Session::new(5, cfg, auth.clone());
    let key = origin_key(9, &auth.check("alice").unwrap());
    s.handle_committed(key, vec![last_request]);
    s.handle_bytes(1, &login_frame("alice", 9, 7, 0));
    match drain(&mut s).as_slice() {
        [Msg::LoginAccepted(l)] => {
            assert_eq!((l.replay_from, l.partitions), (1, 1), "a new server")
        }
        other => panic!("{other:?}"),
    }
    let window = x.window.as_ref().expect("window");
    s.handle_live_from(vec![window.newest()]);
    let mut got = Vec::new();
    let mut after = after;
    let mut request = last_request;
    for _ in 0..10_000 {
        request += 1;
        s.handle_bytes(2, &replay_frame(request, 0, after));
        assert_eq!(s.poll_replay(), Some(0));
        s.handle_replay(window);
        assert_eq!(s.poll_replay(), None);
        let msgs = drain(&mut s);
        let ack = match msgs.last() {
            Some(Msg::Ack(a)) => *a,
            other => panic!("a replay ends with its ack: {other:?}"),
        };
        let rs = reports(&msgs);
        assert_eq!(ack.count as usize, rs.len());
        assert!(rs.iter().all(|r| r.flags & REPORT_REPLAYED != 0));
        assert!(rs.iter().all(|r| r.engine_seq > after && r.partition == 0));
        got.extend(rs);
        if ack.code != code::REPLAY_MORE {
            return (got, ack);
        }
        assert!(ack.engine_seq > after, "a page moves on");
        after = ack.engine_seq;
    }
    panic!("replay never ended");
}

fn live(a: &mut Session) -> Vec<ExecutionReport> {
    // Everything alice received, from her replay store: resume from 0.
    a.handle_reconnect(0);
    a.handle_bytes(1, &login_frame("alice", 9, 0, 0));
    reports(&drain(a))
        .into_iter()
        .filter(|r| r.engine_seq != 0)
        .collect()
}

fn seeds() -> u64 {
    std::env::var("REPLAY_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

#[test]
fn a_replay_on_a_server_that_never_saw_the_session_says_what_was_said_live() {
    for seed in 0..seeds() {
        let (mut a, mut x, last) = stream(seed, 200, 1 << 16);
        let want: Vec<Said> = live(&mut a).iter().map(said).collect();
        assert!(want.len() > 50, "seed {seed}: a stream worth replaying");
        // Input 1 (the instrument) came before the window started: asking
        // from 0 is a gap, from 1 is everything.
        let (got, ack) = replay(&mut x, last, 0, cfg());
        assert_eq!(
            (ack.code, ack.engine_seq, got.len()),
            (code::REPLAY_GAP, 1, 0)
        );
        let (got, ack) = replay(&mut x, last, 1, cfg());
        assert_eq!((ack.code, ack.engine_seq), (0, x.seq()), "seed {seed}");
        let got: Vec<Said> = got.iter().map(said).collect();
        assert_eq!(got, want, "seed {seed}");
        // In pages of 4 (a page ends on an input boundary): the same.
        let small = SessionConfig {
            replay_reports_max: 8,
            ..cfg()
        };
        let (paged, _) = replay(&mut x, last, 1, small);
        let paged: Vec<Said> = paged.iter().map(said).collect();
        assert_eq!(paged, want, "seed {seed}: paged");
    }
}

#[test]
fn a_window_that_lost_the_start_says_so_and_replays_the_rest() {
    let (mut a, mut x, last) = stream(3, 200, 64);
    let want = live(&mut a);
    let (got, ack) = replay(&mut x, last, 0, cfg());
    assert_eq!(ack.code, code::REPLAY_GAP);
    assert!(got.is_empty());
    let floor = ack.engine_seq;
    assert_eq!(floor, x.window.as_ref().unwrap().floor());
    assert!(floor > 1, "the window is smaller than the stream");
    let (got, ack) = replay(&mut x, last, floor, cfg());
    assert_eq!(ack.code, 0);
    // Orders accepted before the floor are reported untracked (no client
    // id, cum or leaves: their accept is gone): compare what the events say.
    let event = |r: &ExecutionReport| {
        let s = said(r);
        (s.0, s.1, s.2, s.3, s.7, s.8, s.9)
    };
    let tail: Vec<_> = want
        .iter()
        .filter(|r| r.engine_seq > floor)
        .map(event)
        .collect();
    assert_eq!(got.iter().map(event).collect::<Vec<_>>(), tail);
}

/// Reports the session got live on this server (after its first login
/// here) are not replayed; a bad replay request is refused with a code.
#[test]
fn a_replay_stops_where_the_session_went_live_and_refuses_what_it_cannot_answer() {
    let auth = auth();
    let mut x = Exchange::new();
    x.window = Some(ReportWindow::new(1 << 10, x.seq()));
    let mut a = logged_in(1, "alice", cfg(), &auth);
    a.handle_bytes(2, &limit(1, 1, 11, Side::Buy, 100, 5));
    x.pump(&mut [&mut a]);
    drain(&mut a);
    let before = x.seq();
    // A second session of alice's logs in on this server now.
    let mut s = logged_in(2, "alice", cfg(), &auth);
    s.handle_live_from(vec![x.window.as_ref().unwrap().newest()]);
    a.handle_bytes(3, &limit(2, 1, 12, Side::Buy, 100, 5));
    x.pump(&mut [&mut a, &mut s]);
    let live = reports(&drain(&mut s));
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].partition, 0);
    assert!(live[0].engine_seq > before);
    s.handle_bytes(4, &replay_frame(1, 0, 1));
    s.handle_replay(x.window.as_ref().unwrap());
    let msgs = drain(&mut s);
    let replayed = reports(&msgs);
    assert_eq!(
        replayed.len(),
        1,
        "only the order before the login: {msgs:?}"
    );
    assert_eq!(
        (replayed[0].client_order_id, replayed[0].engine_seq),
        (11, before)
    );
    // Placed by alice's other session: not this one's own request.
    assert_eq!(replayed[0].flags & REPORT_OWN_REQUEST, 0);
    assert!(matches!(msgs.last(), Some(Msg::Ack(a)) if a.code == 0 && a.engine_seq == before));
    // Partition 1 of a one-partition server: unroutable, answered at once.
    s.handle_bytes(5, &replay_frame(2, 1, 0));
    assert_eq!(s.poll_replay(), None);
    assert!(matches!(drain(&mut s).as_slice(), [Msg::Ack(a)] if a.code == code::UNROUTABLE));
    // A token without read or trade permission may not.
    let clerk = Perms {
        transfer: true,
        ..Perms::default()
    };
    auth.add_token("clerk", vec![engine::OwnerId(1)], clerk);
    let mut admin = logged_in(3, "clerk", cfg(), &auth);
    admin.handle_bytes(6, &replay_frame(1, 0, 0));
    assert_eq!(admin.poll_replay(), None);
    assert!(
        matches!(drain(&mut admin).as_slice(), [Msg::Ack(a)] if a.code == code::NOT_AUTHORIZED)
    );
    // A reserved field that is not zero is a protocol reject.
    let mut bad = replay_frame(3, 0, 0);
    let n = bad.len();
    bad[n - 1] = 1;
    s.handle_bytes(7, &bad);
    assert!(
        matches!(drain(&mut s).as_slice(), [Msg::Reject(r)] if r.code == reject::NON_ZERO_RESERVED)
    );
}

/// Replays asked in one burst wait for the server at most one per
/// partition's worth; each is answered from the window of the partition it
/// names, in order.
#[test]
fn a_burst_of_replays_is_bounded_and_each_reads_its_own_partition() {
    let auth = auth();
    let cfg = SessionConfig {
        partitions: 2,
        ..cfg()
    };
    let mut s = logged_in(1, "alice", cfg, &auth);
    s.handle_live_from(vec![5, 9]);
    let windows = [ReportWindow::new(8, 5), ReportWindow::new(8, 7)];
    let mut burst = replay_frame(1, 0, 5);
    burst.extend(replay_frame(2, 1, 3));
    burst.extend(replay_frame(3, 0, 5));
    s.handle_bytes(2, &burst);
    // The third is refused at once; the two others wait for the server.
    assert!(matches!(drain(&mut s).as_slice(),
        [Msg::Ack(a)] if a.request == 3 && a.code == code::TOO_MANY_IN_FLIGHT));
    let mut acks = Vec::new();
    while let Some(p) = s.poll_replay() {
        let answer = s.handle_replay(&windows[p]).expect("an answer");
        for m in drain(&mut s) {
            if let Msg::Ack(a) = m {
                assert_eq!((answer.code, answer.reports), (a.code, a.count));
                acks.push((p, a.request, a.code, a.engine_seq));
            }
        }
    }
    // Partition 0 is covered through 5 already; partition 1's window
    // starts after 7, past the 3 asked for.
    assert_eq!(
        acks,
        vec![(0, 1, 0, 5), (1, 2, code::REPLAY_GAP, 7)],
        "(partition, request, code, engine_seq)"
    );
    assert_eq!(s.handle_replay(&windows[0]), None, "nothing waits");
}

/// A login on the same server whose replay store no longer holds every
/// report the client lacks sends nothing by number (`replay_from` past the
/// newest) and moves the session's replay bound to now, so a replay by
/// engine seq from what the client holds brings back every report it
/// missed, the ones the store lost included.
#[test]
fn a_login_the_replay_store_cannot_resume_falls_back_to_replay_by_seq() {
    let auth = auth();
    let mut x = Exchange::new();
    x.window = Some(ReportWindow::new(1 << 12, x.seq()));
    let small = SessionConfig {
        replay_reports_max: 4,
        ..cfg()
    };
    let mut a = logged_in(1, "alice", small, &auth);
    a.handle_live_from(vec![x.window.as_ref().unwrap().newest()]);
    let mut b = logged_in(2, "bob", cfg(), &auth);
    for i in 1..=10 {
        a.handle_bytes(2, &limit(i, 1, 10 + i, Side::Sell, 100, 1));
    }
    x.pump(&mut [&mut a, &mut b]);
    let held = reports(&drain(&mut a));
    let seen = held.iter().map(|r| r.engine_seq).max().unwrap();
    let last = held.last().unwrap().report_seq;
    a.handle_disconnect();
    // Bob takes all ten while she is away: more fills than her store keeps.
    b.handle_bytes(3, &limit(1, 3, 99, Side::Buy, 100, 10));
    x.pump(&mut [&mut a, &mut b]);
    a.handle_reconnect(4);
    a.handle_bytes(4, &login_frame("alice", 1001, last, 0));
    let m = drain(&mut a);
    match m.as_slice() {
        [Msg::LoginAccepted(l)] => assert_eq!(l.replay_from, last + 11, "{l:?}"),
        other => panic!("nothing by number: {other:?}"),
    }
    assert!(!a.live(), "the server sets the replay bound again");
    let window = x.window.as_ref().unwrap();
    a.handle_live_from(vec![window.newest()]);
    a.handle_bytes(5, &replay_frame(11, 0, seen));
    a.handle_replay(window);
    let got = reports(&drain(&mut a));
    assert_eq!(got.len(), 10, "every fill: {got:?}");
    assert!(got
        .iter()
        .all(|r| r.exec_type == exec_type::TRADE && r.owner == 1 && r.last_qty == 1));
    assert!(got.iter().all(|r| r.engine_seq > seen));
}

/// A replay asked on a connection that ends before the server answers it
/// goes with the connection: answered on the next one, its reports would
/// be read there as those of a replay asked there (the client's coverage
/// counts a replay's reports from where it asked). The client asks again.
#[test]
fn a_replay_the_connection_did_not_get_goes_with_it() {
    let auth = auth();
    let x = {
        let mut x = Exchange::new();
        x.window = Some(ReportWindow::new(1 << 12, x.seq()));
        x
    };
    let mut a = logged_in(1, "alice", cfg(), &auth);
    a.handle_live_from(vec![x.window.as_ref().unwrap().newest()]);
    drain(&mut a);
    a.handle_bytes(2, &replay_frame(5, 0, 0));
    assert_eq!(a.poll_replay(), Some(0), "asked");
    a.handle_disconnect();
    a.handle_reconnect(3);
    a.handle_bytes(3, &login_frame("alice", 1001, 0, 0));
    drain(&mut a);
    assert_eq!(a.poll_replay(), None, "nothing answered on this connection");
}
