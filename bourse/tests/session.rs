//! The sans-IO order-entry session driven without sockets against a real
//! engine: login, authorization, request numbering and retransmission,
//! execution reports and resume, throttling, heartbeats and idle close,
//! garbage handling, transfer batches, busy, cancel-on-disconnect and the
//! memory bounds.

mod session_support;

use engine::*;
use gateway::session::*;
use gateway::wire::*;
use session_support::*;

const SEC: u64 = 1_000_000_000;

#[test]
fn login_ok_and_bad_token_refused() {
    let auth = auth();
    let mut s = Session::new(1, SessionConfig::default(), auth.clone());
    assert!(!s.logged_in());
    s.handle_bytes(1, &login_frame("alice", 77, 0, LOGIN_CANCEL_ON_DISCONNECT));
    let m = drain(&mut s);
    let [Msg::LoginAccepted(a)] = m.as_slice() else {
        panic!("{m:?}")
    };
    assert_eq!(a.session_id, 77);
    assert_eq!(a.perms, PERM_ALL);
    assert_eq!(a.cancel_on_disconnect, 1);
    assert!(s.logged_in() && s.cancel_on_disconnect());
    assert_eq!(s.owners(), &[OwnerId(1), OwnerId(2)]);
    assert_eq!(s.poll_close(), None);

    let mut s = Session::new(2, SessionConfig::default(), auth.clone());
    s.handle_bytes(1, &login_frame("mallory", 1, 0, 0));
    let m = drain(&mut s);
    assert!(matches!(
        m.as_slice(),
        [Msg::LoginRejected(LoginRejected {
            code: login_reject::BAD_TOKEN,
            ..
        })]
    ));
    assert!(!s.logged_in());
    assert_eq!(s.poll_close().map(|c| c.0), Some(close::AUTH_FAILED));
    assert_eq!(s.poll_request(), None);

    // Anything but a login first closes the connection.
    let mut s = Session::new(3, SessionConfig::default(), auth.clone());
    s.handle_bytes(1, &limit(1, 1, 1, Side::Buy, 100, 1));
    assert_eq!(s.poll_close().map(|c| c.0), Some(close::NOT_LOGGED_IN));
    assert_eq!(s.poll_request(), None);

    // peek_login reads the first frame without consuming it.
    let f = login_frame("alice", 9, 4, 0);
    let info = peek_login(&f).unwrap();
    assert_eq!(
        (info.token_str(), info.session_id, info.resume_after),
        (Some("alice"), 9, 4)
    );
    assert_eq!(peek_login(&f[..f.len() - 1]), None);
    assert_eq!(peek_login(&limit(1, 1, 1, Side::Buy, 1, 1)), None);
}

#[test]
fn a_session_acts_only_for_its_owners_and_permissions() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut s = logged_in(1, "alice", SessionConfig::default(), &auth);
    // Owner 3 is bob's.
    s.handle_bytes(2, &limit(1, 3, 1, Side::Buy, 100, 5));
    assert_eq!(s.poll_request(), None, "never reaches the engine");
    let r = reports(&drain(&mut s));
    assert_eq!(r.len(), 1);
    assert_eq!(
        (
            r[0].exec_type,
            r[0].ord_status,
            r[0].reject_code,
            r[0].request
        ),
        (
            exec_type::REJECTED,
            ord_status::REJECTED,
            code::NOT_AUTHORIZED,
            1
        )
    );
    s.handle_bytes(2, &cancel(2, 3, 1));
    assert_eq!(s.poll_request(), None);
    let r = reports(&drain(&mut s));
    assert_eq!(r[0].reject_code, code::NOT_AUTHORIZED);

    // A read-only token cannot trade even for its own owner.
    let mut rd = logged_in(2, "reader", SessionConfig::default(), &auth);
    rd.handle_bytes(2, &limit(1, 1, 1, Side::Buy, 100, 5));
    assert_eq!(rd.poll_request(), None);
    assert_eq!(
        reports(&drain(&mut rd))[0].reject_code,
        code::NOT_AUTHORIZED
    );

    // bob cannot halt (admin) nor transfer.
    let mut b = logged_in(3, "bob", SessionConfig::default(), &auth);
    let mut f = Vec::new();
    encode_frame(
        template::HALT,
        &HaltMsg {
            request: 1,
            instrument: 1,
            reserved: 0,
        },
        &mut f,
    );
    let rec = TransferRecord::default();
    encode_transfer_batch(2, &[rec], &mut f);
    b.handle_bytes(2, &f);
    assert_eq!(b.poll_request(), None);
    let m = drain(&mut b);
    assert!(matches!(
        m[0],
        Msg::Ack(RequestAck {
            request: 1,
            code: code::NOT_AUTHORIZED,
            ..
        })
    ));
    let Msg::Results(h, rs) = &m[1] else { panic!() };
    assert_eq!((h.request, rs[0].code), (2, code::NOT_AUTHORIZED));

    // The own owner works.
    s.handle_bytes(3, &limit(3, 2, 1, Side::Buy, 100, 5));
    assert_eq!(x.pump(&mut [&mut s]), 1);
    let r = reports(&drain(&mut s));
    assert_eq!((r[0].exec_type, r[0].owner), (exec_type::NEW, 2));
}

#[test]
fn retransmissions_are_answered_with_the_original_outcome_and_never_resubmitted() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut s = logged_in(1, "alice", SessionConfig::default(), &auth);
    s.handle_bytes(2, &limit(1, 1, 11, Side::Buy, 100, 5));
    assert_eq!(x.pump(&mut [&mut s]), 1);
    let first = drain(&mut s);
    let r = reports(&first);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].exec_type, r[0].report_seq, r[0].request),
        (exec_type::NEW, 1, 1)
    );

    // Same request number again (even with other content): the original answer.
    s.handle_bytes(3, &limit(1, 1, 12, Side::Buy, 101, 6));
    assert_eq!(s.poll_request(), None);
    assert_eq!(drain(&mut s), first);

    s.handle_bytes(4, &limit(5, 1, 13, Side::Buy, 99, 1));
    assert_eq!(x.pump(&mut [&mut s]), 1);
    let r = reports(&drain(&mut s));
    assert_eq!((r[0].report_seq, r[0].request), (2, 5));
    // Lower than the last, never seen: still not executed; answered as not kept.
    s.handle_bytes(5, &limit(3, 1, 14, Side::Buy, 99, 1));
    assert_eq!(s.poll_request(), None);
    let m = drain(&mut s);
    assert!(
        matches!(m.as_slice(), [Msg::Reject(p)] if p.code == reject::OUTCOME_NOT_KEPT && p.request == 3)
    );
    // Request 1 still answered with its original outcome.
    s.handle_bytes(6, &limit(1, 1, 11, Side::Buy, 100, 5));
    assert_eq!(drain(&mut s), first);
    // Request number 0 is a protocol error.
    s.handle_bytes(7, &limit(0, 1, 15, Side::Buy, 100, 5));
    let m = drain(&mut s);
    assert!(matches!(m.as_slice(), [Msg::Reject(p)] if p.code == reject::BAD_REQUEST_NUMBER));

    // A retransmission while the request is in flight is ignored: the answer comes once.
    s.handle_bytes(8, &limit(6, 1, 16, Side::Buy, 100, 5));
    s.handle_bytes(8, &limit(6, 1, 16, Side::Buy, 100, 5));
    assert_eq!(x.pump(&mut [&mut s]), 1);
    assert_eq!(reports(&drain(&mut s)).len(), 1);

    // Outcomes are kept in a bounded store: old ones are forgotten.
    let cfg = SessionConfig {
        outcomes_max: 4,
        ..SessionConfig::default()
    };
    let mut s = logged_in(2, "alice", cfg, &auth);
    for i in 1..=10 {
        s.handle_bytes(9, &limit(i, 2, 100 + i, Side::Sell, 200, 1));
        x.pump(&mut [&mut s]);
    }
    drain(&mut s);
    s.handle_bytes(9, &limit(2, 2, 102, Side::Sell, 200, 1));
    let m = drain(&mut s);
    assert!(matches!(m.as_slice(), [Msg::Reject(p)] if p.code == reject::OUTCOME_NOT_KEPT));
    s.handle_bytes(9, &limit(9, 2, 109, Side::Sell, 200, 1));
    let r = reports(&drain(&mut s));
    assert_eq!((r.len(), r[0].request), (1, 9));
    assert_eq!(s.poll_request(), None);
}

/// In a cluster, a login learns what the partitions committed of the
/// session under earlier leaders: the numbering goes on from there, and a
/// resent request is proposed again only where its partition did not
/// commit it (the server asks `executed_before` per partition); where it
/// did, the answer is `outcome_not_kept` and nothing is proposed, then or
/// on any later resend. Queries and transfers are always proposed again.
#[test]
fn a_login_after_a_leader_change_skips_what_the_partitions_committed() {
    let auth = auth();
    let cfg = SessionConfig {
        partitions: 2,
        ..SessionConfig::default()
    };
    let mut s = Session::new(1, cfg, auth.clone());
    let key = origin_key(9, &auth.check("alice").unwrap());
    assert_ne!(key, origin_key(9, &auth.check("bob").unwrap()));
    assert_ne!(key, origin_key(10, &auth.check("alice").unwrap()));
    s.handle_committed(key, vec![4, 2]);
    s.handle_bytes(1, &login_frame("alice", 9, 0, 0));
    match drain(&mut s).as_slice() {
        [Msg::LoginAccepted(a)] => assert_eq!(a.last_request, 4),
        other => panic!("{other:?}"),
    }
    // Request 3: committed by partition 0, not by partition 1.
    s.handle_bytes(2, &limit(3, 1, 13, Side::Buy, 100, 5));
    let req = s.poll_request().expect("a resend is offered to the server");
    assert_eq!(req.origin, journal::record::Origin::new(key, 3));
    assert!(s.executed_before(req.origin, &req.command, 0));
    assert!(!s.executed_before(req.origin, &req.command, 1));
    s.handle_executed_before(req.token);
    let not_kept = |m: &[Msg], request| matches!(m, [Msg::Reject(p)] if p.code == reject::OUTCOME_NOT_KEPT && p.request == request);
    assert!(not_kept(&drain(&mut s), 3));
    s.handle_bytes(3, &limit(3, 1, 13, Side::Buy, 100, 5));
    assert_eq!(s.poll_request(), None);
    assert!(not_kept(&drain(&mut s), 3));
    // A query resent is asked again, whatever was committed.
    s.handle_bytes(4, &balance_query(2, 77));
    let q = s.poll_request().expect("the query is proposed");
    assert!(!s.executed_before(q.origin, &q.command, 0));
    // A new request is never "executed before".
    s.handle_bytes(5, &limit(5, 1, 15, Side::Buy, 100, 5));
    let req = s.poll_request().expect("a new order");
    assert_eq!(req.origin, journal::record::Origin::new(key, 5));
    assert!(!(0..2).any(|p| s.executed_before(req.origin, &req.command, p)));

    // The same session logs in here again after another leader committed
    // its requests up to 7: numbers it saw itself (up to 5) are answered
    // from its own store as always; a number it never saw, from the table.
    s.handle_reconnect(6);
    s.handle_committed(key, vec![7, 2]);
    s.handle_bytes(7, &login_frame("alice", 9, 0, 0));
    match drain(&mut s).as_slice() {
        [Msg::LoginAccepted(a)] => assert_eq!(a.last_request, 7),
        other => panic!("{other:?}"),
    }
    s.handle_bytes(8, &limit(1, 1, 11, Side::Buy, 100, 5));
    assert_eq!(s.poll_request(), None);
    assert!(not_kept(&drain(&mut s), 1));
    s.handle_bytes(9, &limit(6, 1, 16, Side::Buy, 100, 5));
    let req = s.poll_request().expect("a number this session never saw");
    assert!(s.executed_before(req.origin, &req.command, 0));
}

#[test]
fn execution_reports_follow_fix_semantics() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut a = logged_in(1, "alice", SessionConfig::default(), &auth);
    let mut b = logged_in(2, "bob", SessionConfig::default(), &auth);
    a.handle_bytes(2, &limit(1, 1, 501, Side::Sell, 100, 10));
    x.pump(&mut [&mut a, &mut b]);
    let ra = reports(&drain(&mut a));
    let oid = ra[0].order_id;
    assert_eq!(
        (ra[0].leaves_qty, ra[0].cum_qty, ra[0].order_qty),
        (10, 0, 10)
    );

    b.handle_bytes(2, &limit(1, 3, 900, Side::Buy, 100, 4));
    x.pump(&mut [&mut a, &mut b]);
    let rb = reports(&drain(&mut b));
    // Taker: new, then filled.
    assert_eq!(rb.len(), 2);
    assert_eq!(
        (rb[0].exec_type, rb[0].ord_status),
        (exec_type::NEW, ord_status::NEW)
    );
    assert_eq!(
        (
            rb[1].exec_type,
            rb[1].ord_status,
            rb[1].last_qty,
            rb[1].last_px,
            rb[1].cum_qty,
            rb[1].leaves_qty
        ),
        (exec_type::TRADE, ord_status::FILLED, 4, 100, 4, 0)
    );
    assert_eq!(rb[1].client_order_id, 900);
    // Maker: unsolicited partial fill.
    let ra = reports(&drain(&mut a));
    assert_eq!(ra.len(), 1);
    assert_eq!(
        (
            ra[0].exec_type,
            ra[0].ord_status,
            ra[0].cum_qty,
            ra[0].leaves_qty,
            ra[0].request,
            ra[0].order_id,
            ra[0].client_order_id,
            ra[0].side
        ),
        (
            exec_type::TRADE,
            ord_status::PARTIALLY_FILLED,
            4,
            6,
            0,
            oid,
            501,
            Side::Sell as u8
        )
    );
    assert_eq!(ra[0].report_seq, 2);

    // Replace then cancel.
    let mut f = Vec::new();
    encode_frame(
        template::REPLACE,
        &ReplaceMsg {
            request: 2,
            owner: 1,
            order_id: oid,
            price: 101,
            qty: 3,
            ..Default::default()
        },
        &mut f,
    );
    a.handle_bytes(3, &f);
    x.pump(&mut [&mut a, &mut b]);
    let ra = reports(&drain(&mut a));
    assert_eq!(
        (
            ra[0].exec_type,
            ra[0].ord_status,
            ra[0].price,
            ra[0].cum_qty,
            ra[0].leaves_qty,
            ra[0].order_qty
        ),
        (
            exec_type::REPLACED,
            ord_status::PARTIALLY_FILLED,
            101,
            4,
            3,
            7
        )
    );
    a.handle_bytes(4, &cancel(3, 1, oid));
    x.pump(&mut [&mut a, &mut b]);
    let ra = reports(&drain(&mut a));
    assert_eq!(
        (
            ra[0].exec_type,
            ra[0].ord_status,
            ra[0].leaves_qty,
            ra[0].cum_qty,
            ra[0].request
        ),
        (exec_type::CANCELED, ord_status::CANCELED, 0, 4, 3)
    );
    assert_eq!(ra[0].cancel_reason, CancelReason::User as u8);
    // Cancelling again: the engine's unknown_order, with its code.
    a.handle_bytes(5, &cancel(4, 1, oid));
    x.pump(&mut [&mut a, &mut b]);
    let ra = reports(&drain(&mut a));
    assert_eq!(
        (ra[0].exec_type, ra[0].reject_code),
        (exec_type::REJECTED, RejectReason::UnknownOrder.code())
    );
    // A bad price: the engine's invalid_price.
    a.handle_bytes(6, &limit(5, 1, 502, Side::Sell, 0, 1));
    x.pump(&mut [&mut a, &mut b]);
    let ra = reports(&drain(&mut a));
    assert_eq!(
        (
            ra[0].exec_type,
            ra[0].ord_status,
            ra[0].reject_code,
            ra[0].client_order_id
        ),
        (
            exec_type::REJECTED,
            ord_status::REJECTED,
            RejectReason::InvalidPrice.code(),
            502
        )
    );

    // Open orders listing.
    a.handle_bytes(7, &limit(6, 2, 503, Side::Buy, 90, 2));
    x.pump(&mut [&mut a, &mut b]);
    drain(&mut a);
    let mut f = Vec::new();
    encode_frame(
        template::QUERY_OPEN_ORDERS,
        &QueryOpenOrders {
            request: 7,
            owner: 0,
        },
        &mut f,
    );
    a.handle_bytes(8, &f);
    // The engine answers (it knows every live order, not only this session's).
    x.pump(&mut [&mut a, &mut b]);
    let m = drain(&mut a);
    assert!(matches!(
        m[0],
        Msg::OpenOrder(OpenOrderRow {
            client_order_id: 503,
            leaves_qty: 2,
            ..
        })
    ));
    assert!(matches!(
        m[1],
        Msg::Ack(RequestAck {
            request: 7,
            count: 1,
            code: 0,
            ..
        })
    ));
    // Report numbering has no holes.
    a.handle_bytes(9, &limit(8, 1, 504, Side::Sell, 100, 1));
    x.pump(&mut [&mut a, &mut b]);
    let ra = reports(&drain(&mut a));
    assert_eq!(ra[0].report_seq, a.last_report_seq());
}

#[test]
fn resume_after_n_replays_exactly_the_missed_reports() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut a = logged_in(1, "alice", SessionConfig::default(), &auth);
    let mut b = logged_in(2, "bob", SessionConfig::default(), &auth);
    for i in 1..=5 {
        a.handle_bytes(2, &limit(i, 1, i, Side::Sell, 100 + i, 10));
    }
    x.pump(&mut [&mut a, &mut b]);
    let seen = reports(&drain(&mut a));
    assert_eq!(
        seen.iter().map(|r| r.report_seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // The client only processed up to 3 when the connection dropped.
    assert!(a.handle_disconnect().is_empty());
    assert!(!a.logged_in());
    // Fills happen while it is away.
    b.handle_bytes(3, &limit(1, 3, 1, Side::Buy, 105, 25));
    x.pump(&mut [&mut a, &mut b]);
    assert_eq!(a.last_report_seq(), 8);
    let mut buf = Vec::new();
    assert!(
        !a.poll_transmit(&mut buf),
        "nothing goes out while disconnected"
    );

    a.handle_reconnect(10);
    // A login of another token cannot take the session over.
    a.handle_bytes(10, &login_frame("bob", 1001, 3, 0));
    assert!(matches!(
        drain(&mut a).as_slice(),
        [Msg::LoginRejected(LoginRejected {
            code: login_reject::SESSION_MISMATCH,
            ..
        })]
    ));
    assert_eq!(a.poll_close().map(|c| c.0), Some(close::AUTH_FAILED));

    a.handle_reconnect(11);
    a.handle_bytes(11, &login_frame("alice", 1001, 3, 0));
    let m = drain(&mut a);
    let Msg::LoginAccepted(acc) = m[0] else {
        panic!("{m:?}")
    };
    assert_eq!(
        (acc.last_report_seq, acc.replay_from, acc.last_request),
        (8, 4, 5)
    );
    let r = reports(&m);
    assert_eq!(
        r.iter().map(|r| r.report_seq).collect::<Vec<_>>(),
        [4, 5, 6, 7, 8]
    );
    assert_eq!(&r[..2], &seen[3..5], "replayed reports are the originals");
    assert!(r[2..].iter().all(|r| r.exec_type == exec_type::TRADE));
    // Live again: the next report follows without duplicates.
    a.handle_bytes(12, &limit(6, 1, 6, Side::Sell, 200, 1));
    x.pump(&mut [&mut a, &mut b]);
    let r = reports(&drain(&mut a));
    assert_eq!(r.iter().map(|r| r.report_seq).collect::<Vec<_>>(), [9]);
    // New numbering continues: request 6 was taken, 6 again is a retransmission.
    a.handle_bytes(13, &limit(6, 1, 6, Side::Sell, 200, 1));
    assert_eq!(a.poll_request(), None);

    // Resume from beyond what exists replays nothing; a replay store smaller
    // than the gap replays nothing by number and says so: the client asks
    // by engine seq (`report_replay.rs`).
    let cfg = SessionConfig {
        replay_reports_max: 3,
        ..SessionConfig::default()
    };
    let mut c = logged_in(3, "alice", cfg, &auth);
    for i in 1..=6 {
        c.handle_bytes(14, &limit(i, 2, 100 + i, Side::Sell, 300, 1));
    }
    x.pump(&mut [&mut c]);
    drain(&mut c);
    c.handle_disconnect();
    c.handle_reconnect(15);
    c.handle_bytes(15, &login_frame("alice", 1003, 1, 0));
    let m = drain(&mut c);
    let Msg::LoginAccepted(acc) = m[0] else {
        panic!()
    };
    assert_eq!(
        acc.replay_from, 7,
        "reports 2..3 are gone: nothing by number, the client sees it"
    );
    assert_eq!(reports(&m), vec![]);
}

#[test]
fn throttle_rejects_new_orders_beyond_the_bucket_and_refills() {
    let auth = auth();
    let mut x = Exchange::new();
    let cfg = SessionConfig {
        throttle_per_s: 2,
        throttle_burst: 3,
        ..SessionConfig::default()
    };
    let mut s = logged_in(1, "alice", cfg, &auth);
    for i in 1..=4 {
        s.handle_bytes(SEC, &limit(i, 1, i, Side::Buy, 50, 1));
    }
    assert_eq!(x.pump(&mut [&mut s]), 3);
    let r = reports(&drain(&mut s));
    assert_eq!(r.len(), 4);
    let throttled: Vec<_> = r
        .iter()
        .filter(|r| r.reject_code == code::THROTTLED)
        .collect();
    assert_eq!(throttled.len(), 1);
    assert_eq!((throttled[0].request, throttled[0].throttle_budget), (4, 0));
    // Half a second later one token is back.
    s.handle_bytes(SEC + SEC / 2, &limit(5, 1, 5, Side::Buy, 50, 1));
    s.handle_bytes(SEC + SEC / 2, &limit(6, 1, 6, Side::Buy, 50, 1));
    assert_eq!(x.pump(&mut [&mut s]), 1);
    let r = reports(&drain(&mut s));
    assert_eq!(
        r.iter()
            .filter(|r| r.reject_code == code::THROTTLED)
            .count(),
        1
    );
    // Cancels are not throttled.
    let oid = r
        .iter()
        .find(|r| r.exec_type == exec_type::NEW)
        .unwrap()
        .order_id;
    s.handle_bytes(SEC + SEC / 2, &cancel(7, 1, oid));
    assert_eq!(x.pump(&mut [&mut s]), 1);
    assert_eq!(reports(&drain(&mut s))[0].exec_type, exec_type::CANCELED);
}

#[test]
fn max_open_orders_is_enforced_and_freed_by_terminal_states() {
    let auth = auth();
    let mut x = Exchange::new();
    let cfg = SessionConfig {
        max_open_orders: 2,
        ..SessionConfig::default()
    };
    let mut s = logged_in(1, "alice", cfg, &auth);
    for i in 1..=3 {
        s.handle_bytes(2, &limit(i, 1, i, Side::Buy, 50, 1));
    }
    x.pump(&mut [&mut s]);
    let r = reports(&drain(&mut s));
    // The third is refused at once (before the engine answered the first two).
    assert_eq!(
        (r[0].request, r[0].reject_code),
        (3, code::OPEN_ORDERS_LIMIT)
    );
    assert_eq!(
        (r[1].exec_type, r[2].exec_type),
        (exec_type::NEW, exec_type::NEW)
    );
    s.handle_bytes(3, &cancel(4, 1, r[1].order_id));
    x.pump(&mut [&mut s]);
    s.handle_bytes(3, &limit(5, 1, 5, Side::Buy, 50, 1));
    x.pump(&mut [&mut s]);
    let r = reports(&drain(&mut s));
    assert_eq!(
        (r[0].exec_type, r[1].exec_type),
        (exec_type::CANCELED, exec_type::NEW)
    );
}

#[test]
fn heartbeats_go_out_and_a_silent_peer_is_closed() {
    let auth = auth();
    let cfg = SessionConfig {
        heartbeat_interval_ns: SEC,
        idle_timeout_ns: 3 * SEC,
        ..SessionConfig::default()
    };
    let mut s = Session::new(1, cfg, auth);
    s.handle_bytes(0, &login_frame("alice", 1, 0, 0));
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(SEC));
    s.handle_timeout(SEC / 2);
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(SEC);
    assert!(matches!(drain(&mut s).as_slice(), [Msg::Heartbeat(_)]));
    assert_eq!(s.poll_timeout(), Some(2 * SEC));
    // The client's heartbeat keeps it alive.
    let mut hb = Vec::new();
    encode_frame(template::HEARTBEAT, &Heartbeat::default(), &mut hb);
    s.handle_bytes(2 * SEC, &hb);
    s.handle_timeout(4 * SEC);
    assert_eq!(s.poll_close(), None);
    s.handle_timeout(5 * SEC);
    assert_eq!(s.poll_close().map(|c| c.0), Some(close::IDLE_TIMEOUT));
    assert_eq!(s.poll_timeout(), None);

    // Logout closes normally.
    let mut s = logged_in(2, "alice", SessionConfig::default(), &auth_again());
    let mut f = Vec::new();
    encode_frame(template::LOGOUT, &Logout::default(), &mut f);
    s.handle_bytes(2, &f);
    assert!(matches!(drain(&mut s).as_slice(), [Msg::Logout]));
    assert_eq!(s.poll_close().map(|c| c.0), Some(close::NORMAL));
}

fn auth_again() -> std::sync::Arc<Auth> {
    auth()
}

#[test]
fn garbage_is_rejected_by_name_then_closed_after_the_limit() {
    let auth = auth();
    let cfg = SessionConfig {
        garbage_limit: 4,
        ..SessionConfig::default()
    };
    let mut s = logged_in(1, "alice", cfg, &auth);
    let text = |m: &[Msg]| match m {
        [Msg::Reject(p)] => (p.code, p.text().to_string()),
        other => panic!("{other:?}"),
    };
    // Unknown template.
    let mut f = Vec::new();
    encode_frame(999, &[0u8; 16], &mut f);
    s.handle_bytes(2, &f);
    let (c, t) = text(&drain(&mut s));
    assert_eq!(c, reject::UNKNOWN_TEMPLATE);
    assert!(t.contains("unknown template 999"), "{t}");
    // Non-zero reserved.
    let mut m = NewOrderMsg {
        request: 1,
        owner: 1,
        qty: 1,
        price: 1,
        instrument: 1,
        ..Default::default()
    };
    m.reserved[3] = 1;
    let mut f = Vec::new();
    encode_frame(template::NEW_ORDER, &m, &mut f);
    s.handle_bytes(2, &f);
    let (c, t) = text(&drain(&mut s));
    assert_eq!(c, reject::NON_ZERO_RESERVED);
    assert!(t.contains("new_order.reserved"), "{t}");
    // Truncated (a header naming a template longer than the frame).
    let mut f = Vec::new();
    encode_frame(template::CANCEL, &[0u64; 2], &mut f);
    s.handle_bytes(2, &f);
    let (c, t) = text(&drain(&mut s));
    assert_eq!(c, reject::TRUNCATED);
    assert!(t.contains("truncated"), "{t}");
    assert_eq!(s.poll_close(), None);
    // Bad enum: the limit is reached, the connection closes.
    let m = NewOrderMsg {
        request: 1,
        side: 7,
        ..Default::default()
    };
    let mut f = Vec::new();
    encode_frame(template::NEW_ORDER, &m, &mut f);
    s.handle_bytes(2, &f);
    let (c, t) = text(&drain(&mut s));
    assert_eq!(c, reject::BAD_ENUM);
    assert!(t.contains("side = 7"), "{t}");
    assert_eq!(s.poll_close().map(|c| c.0), Some(close::PROTOCOL_VIOLATION));
    assert_eq!(s.poll_request(), None);
    assert_eq!(s.last_request(), 0, "no garbage counted as a request");

    // An oversized frame is named, never buffered, and ends the connection
    // (a lying length would otherwise swallow the stream).
    let mut s = logged_in(2, "alice", SessionConfig::default(), &auth);
    let big = Header {
        len: (MAX_FRAME + 1) as u32,
        template: template::TRANSFER_BATCH,
        schema: SCHEMA_ID,
        version: VERSION,
    };
    s.handle_bytes(2, bytemuck::bytes_of(&big));
    s.handle_bytes(2, &vec![0xAB; MAX_FRAME + 1 - HEADER_LEN]);
    let (c, t) = text(&drain(&mut s));
    assert_eq!(c, reject::OVERSIZED);
    assert!(t.contains("oversized"), "{t}");
    assert!(s.memory_bytes() < 1 << 17);
    assert_eq!(s.poll_close().map(|c| c.0), Some(close::FRAMING_LOST));
    // A wrong schema is named and skipped; the stream stays usable.
    let mut s = logged_in(3, "alice", SessionConfig::default(), &auth);
    let bad = Header {
        len: 16,
        template: template::HEARTBEAT,
        schema: 9,
        version: VERSION,
    };
    s.handle_bytes(2, bytemuck::bytes_of(&bad));
    s.handle_bytes(2, &[0; 8]);
    let (c, t) = text(&drain(&mut s));
    assert_eq!(c, reject::BAD_SCHEMA);
    assert!(t.contains("schema 9"), "{t}");
    // The stream is still framed: a valid order goes through.
    s.handle_bytes(2, &limit(1, 1, 1, Side::Buy, 100, 1));
    assert!(s.poll_request().is_some());
    // A length below the header cannot be re-framed: closed at once.
    let bad = Header {
        len: 3,
        template: template::HEARTBEAT,
        schema: SCHEMA_ID,
        version: VERSION,
    };
    s.handle_bytes(2, bytemuck::bytes_of(&bad));
    assert_eq!(s.poll_close().map(|c| c.0), Some(close::FRAMING_LOST));
}

/// An OPEN_ACCOUNT frame (USD) for the session's own owner (`owner: 0`).
fn open_account(request: u64, id: u128, flags: u16) -> Vec<u8> {
    open_account_for(request, id, 0, flags)
}

#[test]
fn a_full_transfer_batch_is_answered_once_with_results_in_order() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut s = logged_in(1, "alice", SessionConfig::default(), &auth);
    s.handle_bytes(2, &open_account(1, 1, 0));
    s.handle_bytes(2, &open_account(2, 2, 0));
    s.handle_bytes(2, &open_account(3, 2, 0));
    x.pump(&mut [&mut s]);
    let m = drain(&mut s);
    assert!(matches!(
        m[0],
        Msg::Ack(RequestAck {
            request: 1,
            code: 0,
            ..
        })
    ));
    assert!(
        matches!(m[2], Msg::Ack(RequestAck { request: 3, code, .. }) if code == LedgerError::AccountExists.code())
    );

    let n = TRANSFER_BATCH_MAX;
    let mut recs = Vec::with_capacity(n);
    let mut expect = Vec::with_capacity(n);
    for i in 0..n {
        let mut t = TransferSpec {
            id: TransferId(i as u128 + 1),
            debit_account: AccountId(1),
            credit_account: AccountId(2),
            amount: Amount(1),
            code: 1,
            flags: TransferFlags(0),
            pending_id: TransferId(0),
            timeout_ns: 0,
        };
        let mut e = 0u16;
        if i % 100 == 7 {
            t.amount = Amount(0);
            e = LedgerError::AmountMustNotBeZero.code();
        }
        // A linked chain of three whose last member fails.
        if i == 1000 || i == 1001 {
            t.flags = TransferFlags(TransferFlags::LINKED);
            e = LedgerError::LinkedEventFailed.code();
        }
        if i == 1002 {
            t.credit_account = AccountId(99);
            e = LedgerError::CreditAccountNotFound.code();
        }
        recs.push(transfer_record_of(&t));
        expect.push(e);
    }
    let mut f = Vec::new();
    encode_transfer_batch(4, &recs, &mut f);
    assert!(f.len() <= MAX_FRAME);
    // Delivered in small pieces, as a stream would.
    for piece in f.chunks(1400) {
        s.handle_bytes(3, piece);
    }
    assert_eq!(x.pump(&mut [&mut s]), n);
    let m = drain(&mut s);
    assert_eq!(m.len(), 1);
    let Msg::Results(h, rs) = &m[0] else { panic!() };
    assert_eq!((h.request, h.count as usize), (4, n));
    assert!(rs.iter().enumerate().all(|(i, r)| r.index as usize == i));
    assert_eq!(rs.iter().map(|r| r.code).collect::<Vec<_>>(), expect);

    // Retransmitted: the same results, nothing re-executed.
    s.handle_bytes(4, &f);
    assert_eq!(s.poll_request(), None);
    assert_eq!(drain(&mut s), m);

    // Balance query.
    let mut q = Vec::new();
    encode_frame(
        template::QUERY_BALANCE,
        &QueryBalanceMsg {
            request: 5,
            account: u128_bytes(2),
        },
        &mut q,
    );
    s.handle_bytes(5, &q);
    x.pump(&mut [&mut s]);
    let ok = expect.iter().filter(|&&c| c == 0).count() as u128;
    let m = drain(&mut s);
    assert!(matches!(m.as_slice(), [Msg::Balance(b)] if u128_from(b.credits_posted) == ok));
}

#[test]
fn busy_is_reported_to_the_client() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut s = logged_in(1, "alice", SessionConfig::default(), &auth);
    s.handle_bytes(2, &limit(1, 1, 1, Side::Buy, 100, 1));
    let req = s.poll_request().unwrap();
    s.handle_busy(req.token);
    let r = reports(&drain(&mut s));
    assert_eq!(
        (r[0].exec_type, r[0].reject_code, r[0].request),
        (exec_type::REJECTED, RejectReason::Busy.code(), 1)
    );
    // The slot is free again, the answer is the stored outcome.
    s.handle_bytes(3, &limit(1, 1, 1, Side::Buy, 100, 1));
    assert_eq!(reports(&drain(&mut s)), r);
    assert_eq!(s.in_flight(), 0);

    // A transfer batch refused as a whole.
    let recs = vec![TransferRecord::default(); 3];
    let mut f = Vec::new();
    encode_transfer_batch(2, &recs, &mut f);
    s.handle_bytes(4, &f);
    let first = s.poll_request().unwrap();
    s.handle_busy(first.token);
    assert_eq!(s.poll_request(), None, "the rest of the batch is dropped");
    let m = drain(&mut s);
    let [Msg::Results(_, rs)] = m.as_slice() else {
        panic!("{m:?}")
    };
    assert!(rs.iter().all(|r| r.code == code::BUSY));
    // The engine still works for the session.
    s.handle_bytes(5, &limit(3, 1, 2, Side::Buy, 100, 1));
    x.pump(&mut [&mut s]);
    assert_eq!(reports(&drain(&mut s))[0].exec_type, exec_type::NEW);
}

#[test]
fn cancel_on_disconnect_cancels_the_sessions_owners_orders() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut s = Session::new(1, SessionConfig::default(), auth.clone());
    s.handle_bytes(1, &login_frame("alice", 5, 0, LOGIN_CANCEL_ON_DISCONNECT));
    s.handle_bytes(2, &limit(1, 1, 1, Side::Buy, 90, 1));
    s.handle_bytes(2, &limit(2, 2, 2, Side::Buy, 91, 1));
    x.pump(&mut [&mut s]);
    drain(&mut s);
    let cancels = s.handle_disconnect();
    // A mass cancel per owner, then the disarm of the session's arms.
    assert_eq!(cancels.len(), 3);
    assert_eq!(
        cancels[2].command,
        Command::CodDisarm {
            session: s.session_id()
        }
    );
    for c in cancels {
        x.apply(c, &mut [&mut s]);
    }
    assert_eq!(s.last_report_seq(), 4);
    s.handle_reconnect(3);
    s.handle_bytes(3, &login_frame("alice", 5, 2, 0));
    let r = reports(&drain(&mut s));
    assert!(r
        .iter()
        .all(|r| r.exec_type == exec_type::CANCELED
            && r.cancel_reason == CancelReason::MassCancel as u8));
    assert_eq!(r.len(), 2);
    // Without the option nothing is cancelled.
    assert!(s.handle_disconnect().is_empty());
}

#[test]
fn admin_creates_tokens_over_the_wire() {
    let auth = auth();
    let mut s = logged_in(1, "alice", SessionConfig::default(), &auth);
    let mut owners = [0u64; ADD_TOKEN_OWNERS_MAX];
    owners[0] = 42;
    let mut f = Vec::new();
    encode_frame(
        template::ADD_TOKEN,
        &AddTokenMsg {
            request: 1,
            token: token_bytes("carol-desk-token-0001").unwrap(),
            owners,
            owners_len: 1,
            perms: PERM_TRADE,
            reserved: [0; 6],
        },
        &mut f,
    );
    s.handle_bytes(2, &f);
    assert!(matches!(
        drain(&mut s).as_slice(),
        [Msg::Ack(RequestAck { code: 0, .. })]
    ));
    let g = auth.check("carol-desk-token-0001").unwrap();
    assert_eq!(g.owners, vec![OwnerId(42)]);
    assert!(g.perms.trade && !g.perms.admin);
    let c = logged_in(2, "carol-desk-token-0001", SessionConfig::default(), &auth);
    assert_eq!(c.owners(), &[OwnerId(42)]);
}

/// Tokens an admin session adds follow the configured tokens' rules: at
/// least `TOKEN_MIN` bytes, and no permission the creating token lacks (an
/// `admin` cannot mint a `ledger_admin` and so escalate to other owners'
/// money).
#[test]
fn an_added_token_is_long_and_grants_nothing_its_creator_lacks() {
    let auth = auth();
    auth.add_token(
        "setup-admin-token-01",
        vec![],
        Perms {
            admin: true,
            read: true,
            ..Perms::default()
        },
    );
    let mut s = logged_in(1, "setup-admin-token-01", SessionConfig::default(), &auth);
    // (token, perms, expected code)
    let cases: [(&str, u8, u16); 4] = [
        ("short-token", PERM_READ, code::INVALID_TOKEN),
        (
            "minted-ledger-admin-01",
            PERM_LEDGER_ADMIN,
            code::NOT_AUTHORIZED,
        ),
        ("minted-trader-token-01", PERM_TRADE, code::NOT_AUTHORIZED),
        ("minted-reader-token-01", PERM_READ, 0),
    ];
    for (i, (token, perms, want)) in cases.into_iter().enumerate() {
        let mut f = Vec::new();
        encode_frame(
            template::ADD_TOKEN,
            &AddTokenMsg {
                request: i as u64 + 1,
                token: token_bytes(token).unwrap(),
                perms,
                ..AddTokenMsg::default()
            },
            &mut f,
        );
        s.handle_bytes(2 + i as u64, &f);
        match drain(&mut s).as_slice() {
            [Msg::Ack(RequestAck { code, .. })] => assert_eq!(*code, want, "{token}"),
            other => panic!("{token}: {other:?}"),
        }
        assert_eq!(auth.check(token).is_some(), want == 0, "{token}");
    }
}

#[test]
fn a_flood_never_grows_memory_without_bound() {
    let auth = auth();
    let cfg = SessionConfig {
        max_in_flight: 64,
        throttle_per_s: 0,
        outgoing_bytes_max: 1 << 20,
        ..SessionConfig::default()
    };
    // The engine never answers and the client never reads.
    let mut s = logged_in(1, "alice", cfg, &auth);
    let mut f = Vec::new();
    for i in 1..=20_000u64 {
        f.extend_from_slice(&limit(i, 1, i, Side::Buy, 100, 1));
    }
    let mut peak = 0;
    for chunk in f.chunks(4096) {
        s.handle_bytes(2, chunk);
        peak = peak.max(s.memory_bytes());
    }
    assert!(s.in_flight() <= 64);
    assert!(peak < 8 << 20, "peak {peak}");
    assert_eq!(s.poll_close().map(|c| c.0), Some(close::SLOW_CONSUMER));
    let mut n = 0;
    while s.poll_request().is_some() {
        n += 1;
    }
    assert_eq!(n, 64);
}

// ----- ledger authorization: the engine decides, the session says who acts ---

/// An owner's token for the ledger: transfers and reads, no `ledger_admin`.
fn ledger_user() -> Perms {
    Perms {
        transfer: true,
        read: true,
        ..Perms::default()
    }
}

/// An OPEN_ACCOUNT frame (USD) for `owner`.
fn open_account_for(request: u64, id: u128, owner: u64, flags: u16) -> Vec<u8> {
    let mut f = Vec::new();
    encode_frame(
        template::OPEN_ACCOUNT,
        &OpenAccountMsg {
            request,
            id: u128_bytes(id),
            owner,
            asset: Asset::from_str_code("USD").unwrap().0,
            flags,
            reserved: 0,
        },
        &mut f,
    );
    f
}

/// A batch of one transfer (`flags`, `pending_id` for post/void).
fn one_transfer(
    request: u64,
    id: u128,
    dr: u128,
    cr: u128,
    amount: u128,
    flags: u16,
    pending: u128,
) -> Vec<u8> {
    let t = TransferSpec {
        id: TransferId(id),
        debit_account: AccountId(dr),
        credit_account: AccountId(cr),
        amount: Amount(amount),
        code: 1,
        flags: TransferFlags(flags),
        pending_id: TransferId(pending),
        timeout_ns: 0,
    };
    let mut f = Vec::new();
    encode_transfer_batch(request, &[transfer_record_of(&t)], &mut f);
    f
}

fn balance_query(request: u64, account: u128) -> Vec<u8> {
    let mut f = Vec::new();
    encode_frame(
        template::QUERY_BALANCE,
        &QueryBalanceMsg {
            request,
            account: u128_bytes(account),
        },
        &mut f,
    );
    f
}

/// Sends `frame` and returns the one answer's code (transfer result, ack)
/// or the credits posted of a balance.
fn answer(x: &mut Exchange, s: &mut Session, frame: &[u8]) -> Result<u16, u128> {
    s.handle_bytes(5, frame);
    x.pump(&mut [&mut *s]);
    match drain(s).as_slice() {
        [Msg::Results(_, rs)] if rs.len() == 1 => Ok(rs[0].code),
        [Msg::Ack(a)] => Ok(a.code),
        [Msg::Balance(b)] => Err(u128_from(b.credits_posted)),
        m => panic!("{m:?}"),
    }
}

#[test]
fn the_ledger_refuses_a_token_acting_on_accounts_it_does_not_own() {
    let auth = auth();
    auth.add_token("victim", vec![OwnerId(1)], ledger_user());
    auth.add_token("eve", vec![OwnerId(2)], ledger_user());
    auth.add_token("mallory", vec![OwnerId(3)], ledger_user());
    let mut x = Exchange::new();
    let cfg = SessionConfig::default;
    // alice has ledger_admin: the issuer (owner 0, no limit) and the funding.
    let mut admin = logged_in(1, "alice", cfg(), &auth);
    let mut victim = logged_in(2, "victim", cfg(), &auth);
    let mut eve = logged_in(3, "eve", cfg(), &auth);
    let mut mallory = logged_in(4, "mallory", cfg(), &auth);
    const D: u16 = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    let na = LedgerError::NotAuthorized.code();
    for (req, id, owner, flags) in [(1, 1, 0, 0), (2, 101, 1, D), (3, 201, 2, D)] {
        assert_eq!(
            answer(&mut x, &mut admin, &open_account_for(req, id, owner, flags)),
            Ok(0)
        );
    }
    assert_eq!(
        answer(&mut x, &mut admin, &one_transfer(4, 1, 1, 101, 1000, 0, 0)),
        Ok(0)
    );

    // Accounts: without ledger_admin only for an own owner, with the limit.
    let refused = Ok(code::NOT_AUTHORIZED);
    assert_eq!(
        answer(&mut x, &mut eve, &open_account_for(1, 301, 1, D)),
        refused
    );
    assert_eq!(
        answer(&mut x, &mut eve, &open_account_for(2, 301, 0, D)),
        refused
    );
    assert_eq!(
        answer(&mut x, &mut eve, &open_account_for(3, 301, 2, 0)),
        refused
    );
    assert_eq!(
        answer(&mut x, &mut eve, &open_account_for(4, 301, 2, D)),
        Ok(0)
    );

    // The attacks of the issue, each refused by the engine.
    let steal = one_transfer(10, 5, 101, 201, 777, 0, 0);
    assert_eq!(answer(&mut x, &mut eve, &steal), Ok(na), "foreign debit");
    let hold = one_transfer(11, 6, 101, 201, 99_000_000, TransferFlags::PENDING, 0);
    assert_eq!(
        answer(&mut x, &mut eve, &hold),
        Ok(na),
        "foreign pending hold"
    );
    let mint = one_transfer(12, 7, 1, 201, 1_000_000_000, 0, 0);
    assert_eq!(answer(&mut x, &mut eve, &mint), Ok(na), "issuer debit");
    assert_eq!(
        answer(&mut x, &mut eve, &balance_query(13, 101)),
        Ok(RejectReason::NotAuthorized.code()),
        "foreign balance read"
    );
    assert_eq!(
        answer(&mut x, &mut eve, &balance_query(14, 201)),
        Err(0),
        "own balance"
    );

    // Someone else's pending transfer: neither posted nor voided by a stranger.
    let pending = one_transfer(1, 20, 101, 201, 100, TransferFlags::PENDING, 0);
    assert_eq!(answer(&mut x, &mut victim, &pending), Ok(0));
    let post = one_transfer(1, 21, 0, 0, 0, TransferFlags::POST_PENDING, 20);
    let void = one_transfer(2, 21, 0, 0, 0, TransferFlags::VOID_PENDING, 20);
    assert_eq!(answer(&mut x, &mut mallory, &post), Ok(na));
    assert_eq!(answer(&mut x, &mut mallory, &void), Ok(na));

    // The ids eve and mallory tried are not burnt: their owners use them.
    let mine = one_transfer(2, 5, 101, 201, 10, 0, 0);
    assert_eq!(answer(&mut x, &mut victim, &mine), Ok(0));
    let post = one_transfer(3, 21, 0, 0, 0, TransferFlags::POST_PENDING, 20);
    assert_eq!(answer(&mut x, &mut victim, &post), Ok(0));
    assert_eq!(
        answer(&mut x, &mut victim, &balance_query(4, 101)),
        Err(1000)
    );

    // ledger_admin may do all of it.
    assert_eq!(
        answer(&mut x, &mut admin, &one_transfer(5, 30, 101, 201, 7, 0, 0)),
        Ok(0)
    );
    assert_eq!(
        answer(&mut x, &mut admin, &one_transfer(6, 31, 1, 201, 5, 0, 0)),
        Ok(0)
    );
    assert_eq!(
        answer(&mut x, &mut admin, &balance_query(7, 201)),
        Err(10 + 100 + 7 + 5)
    );
}

#[test]
fn asset_bytes_from_the_wire_must_be_codes() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut s = logged_in(1, "alice", SessionConfig::default(), &auth);
    // "US\0D" would print as "US" and is no code: refused, never merged.
    let holed = *b"US\0D\0\0\0\0\0\0\0\0";
    let mut f = open_account_for(1, 5, 1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    let body = HEADER_LEN + 8 + 16 + 8;
    f[body..body + 12].copy_from_slice(&holed);
    assert_eq!(
        answer(&mut x, &mut s, &f),
        Ok(LedgerError::InvalidAsset.code())
    );
    for (req, (id, base)) in [(7, holed), (8, [0; 12]), (9, *b"TWELVECHARSX")]
        .into_iter()
        .enumerate()
    {
        let mut spec = match session_support::instrument(id) {
            Command::AddInstrument(spec) => spec,
            c => panic!("{c:?}"),
        };
        spec.base = Asset(base);
        let mut f = Vec::new();
        encode_frame(
            template::ADD_INSTRUMENT,
            &add_instrument_msg(2 + req as u64, &spec),
            &mut f,
        );
        let want = if id == 9 {
            0
        } else {
            RejectReason::InvalidInstrument.code()
        };
        assert_eq!(answer(&mut x, &mut s, &f), Ok(want), "instrument {id}");
    }
    // Instrument id 0 is no instrument.
    let mut f = Vec::new();
    let Command::AddInstrument(spec) = session_support::instrument(0) else {
        unreachable!()
    };
    encode_frame(
        template::ADD_INSTRUMENT,
        &add_instrument_msg(9, &spec),
        &mut f,
    );
    assert_eq!(
        answer(&mut x, &mut s, &f),
        Ok(RejectReason::InvalidInstrument.code())
    );
}

#[test]
fn a_grant_of_more_owners_than_an_actor_holds_fails_closed() {
    let auth = auth();
    auth.add_token("many", (1..=9).map(OwnerId).collect(), ledger_user());
    let mut x = Exchange::new();
    let mut s = logged_in(1, "many", SessionConfig::default(), &auth);
    let t = one_transfer(1, 1, 101, 201, 1, 0, 0);
    assert_eq!(answer(&mut x, &mut s, &t), Ok(code::NOT_AUTHORIZED));
    assert_eq!(
        answer(&mut x, &mut s, &balance_query(2, 101)),
        Ok(code::NOT_AUTHORIZED)
    );
}

// ----- transfer queries: rows then an end, authorized by the engine -------

fn lookup_frame(request: u64, ids: &[u128]) -> Vec<u8> {
    let mut m = LookupTransfersMsg {
        request,
        count: ids.len() as u32,
        ..Default::default()
    };
    for (slot, id) in m.ids.iter_mut().zip(ids) {
        *slot = u128_bytes(*id);
    }
    let mut f = Vec::new();
    encode_frame(template::LOOKUP_TRANSFERS, &m, &mut f);
    f
}

fn listing_frame(request: u64, account: u128, limit: u32, newest: bool) -> Vec<u8> {
    let f = engine::history::AccountFilter {
        account: AccountId(account),
        by: engine::history::RangeBy::LedgerSeq,
        lo: 0,
        hi: u64::MAX,
        limit,
        newest_first: newest,
    };
    let mut out = Vec::new();
    encode_frame(
        template::GET_ACCOUNT_TRANSFERS,
        &get_account_transfers_msg(request, &f),
        &mut out,
    );
    out
}

/// Sends a query; returns the ids of its rows and its end (count, code, more).
fn rows_and_end(x: &mut Exchange, s: &mut Session, frame: &[u8]) -> (Vec<u128>, (u32, u16, bool)) {
    s.handle_bytes(5, frame);
    x.pump(&mut [&mut *s]);
    let mut ids = Vec::new();
    let mut end = None;
    for m in drain(s) {
        match m {
            Msg::Row(r) => {
                assert!(end.is_none(), "rows come before the end");
                ids.push(u128_from(r.id));
            }
            Msg::End(e) => end = Some((e.count, e.code, e.more == 1)),
            other => panic!("unexpected {other:?}"),
        }
    }
    (ids, end.expect("an end"))
}

#[test]
fn transfer_queries_answer_rows_then_an_end_and_only_to_owners() {
    let auth = auth();
    auth.add_token("victim", vec![OwnerId(1)], ledger_user());
    auth.add_token("eve", vec![OwnerId(2)], ledger_user());
    auth.add_token(
        "trader",
        vec![OwnerId(1)],
        Perms {
            trade: true,
            ..Perms::default()
        },
    );
    let mut x = Exchange::new();
    let cfg = SessionConfig::default;
    let mut admin = logged_in(1, "alice", cfg(), &auth);
    let mut victim = logged_in(2, "victim", cfg(), &auth);
    let mut eve = logged_in(3, "eve", cfg(), &auth);
    let mut trader = logged_in(4, "trader", cfg(), &auth);
    const D: u16 = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
    for (req, id, owner, flags) in [(1, 1, 0, 0), (2, 101, 1, D), (3, 201, 2, D)] {
        assert_eq!(
            answer(&mut x, &mut admin, &open_account_for(req, id, owner, flags)),
            Ok(0)
        );
    }
    for (req, id, dr, cr, amount) in [
        (4, 11, 1, 101, 1000),
        (5, 12, 101, 201, 10),
        (6, 13, 1, 201, 5),
    ] {
        assert_eq!(
            answer(
                &mut x,
                &mut admin,
                &one_transfer(req, id, dr, cr, amount, 0, 0)
            ),
            Ok(0)
        );
    }
    let ok = |ids: &[u128], more| (ids.to_vec(), (ids.len() as u32, 0, more));
    // Lookups: found rows in the order asked, a missing id simply absent.
    assert_eq!(
        rows_and_end(&mut x, &mut victim, &lookup_frame(1, &[12, 999, 11])),
        ok(&[12, 11], false)
    );
    // A stranger learns nothing about another owner's transfer (13 is eve's).
    assert_eq!(
        rows_and_end(&mut x, &mut eve, &lookup_frame(1, &[11, 13])),
        ok(&[13], false)
    );
    // Listings page by ledger_seq, both orders, with `more`.
    assert_eq!(
        rows_and_end(&mut x, &mut victim, &listing_frame(2, 101, 1, false)),
        ok(&[11], true)
    );
    assert_eq!(
        rows_and_end(&mut x, &mut victim, &listing_frame(3, 101, 5, true)),
        ok(&[12, 11], false)
    );
    assert_eq!(
        rows_and_end(&mut x, &mut admin, &listing_frame(7, 201, 5, false)),
        ok(&[12, 13], false)
    );
    // Another owner's account: the engine says not_authorized.
    let na = RejectReason::NotAuthorized.code();
    assert_eq!(
        rows_and_end(&mut x, &mut eve, &listing_frame(2, 101, 5, false)),
        (vec![], (0, na, false))
    );
    assert_eq!(
        rows_and_end(&mut x, &mut eve, &listing_frame(3, 777, 5, false)),
        (vec![], (0, RejectReason::AccountNotFound.code(), false))
    );
    assert_eq!(
        rows_and_end(&mut x, &mut victim, &listing_frame(4, 101, 0, false)),
        (vec![], (0, RejectReason::InvalidFilter.code(), false))
    );
    // Without `read` the session refuses before the engine.
    assert_eq!(
        rows_and_end(&mut x, &mut trader, &lookup_frame(1, &[11])),
        (vec![], (0, code::NOT_AUTHORIZED, false))
    );
    assert_eq!(
        rows_and_end(&mut x, &mut trader, &listing_frame(2, 101, 5, false)),
        (vec![], (0, code::NOT_AUTHORIZED, false))
    );
    // A retransmission is answered from the stored outcome, not re-run.
    victim.handle_bytes(6, &listing_frame(2, 101, 1, false));
    assert_eq!(x.pump(&mut [&mut victim]), 0, "not resubmitted");
    let again = drain(&mut victim);
    assert!(
        matches!(again.as_slice(), [Msg::Row(r), Msg::End(e)] if u128_from(r.id) == 11 && e.more == 1),
        "{again:?}"
    );
}

fn frame<T: bytemuck::Pod>(template: u16, body: &T) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(template, body, &mut v);
    v
}

/// Over the wire: a cancel by client order id is reported with the order's
/// side, price and client order id, a second one is refused `unknown_order`
/// echoing the client's id, and a requeue replace is reported as having
/// lost priority even when a plain one would keep it.
#[test]
fn cancel_by_client_order_id_and_requeue_over_the_wire() {
    let auth = auth();
    let mut x = Exchange::new();
    let mut a = logged_in(1, "alice", SessionConfig::default(), &auth);
    a.handle_bytes(2, &limit(1, 1, 41, Side::Sell, 105, 6));
    a.handle_bytes(2, &limit(2, 1, 42, Side::Buy, 99, 3));
    x.pump(&mut [&mut a]);
    let r = reports(&drain(&mut a));
    let sell_id = r[0].order_id;
    let requeue = ReplaceMsg {
        request: 3,
        owner: 1,
        order_id: sell_id,
        qty: 5,
        flags: REPLACE_REQUEUE,
        ..Default::default()
    };
    a.handle_bytes(3, &frame(template::REPLACE, &requeue));
    x.pump(&mut [&mut a]);
    let r = reports(&drain(&mut a));
    assert_eq!(
        (r[0].exec_type, r[0].flags & REPORT_PRIORITY_KEPT, r[0].side),
        (exec_type::REPLACED, 0, Side::Sell as u8)
    );
    assert_eq!((r[0].price, r[0].leaves_qty), (105, 5));
    let by_coid = |request, coid| CancelByClientIdMsg {
        request,
        owner: 1,
        client_order_id: coid,
    };
    a.handle_bytes(4, &frame(template::CANCEL_BY_CLIENT_ID, &by_coid(4, 41)));
    x.pump(&mut [&mut a]);
    let r = reports(&drain(&mut a));
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (
            r[0].exec_type,
            r[0].ord_status,
            r[0].request,
            r[0].order_id,
            r[0].client_order_id,
            r[0].side,
            r[0].price,
            r[0].leaves_qty
        ),
        (
            exec_type::CANCELED,
            ord_status::CANCELED,
            4,
            sell_id,
            41,
            Side::Sell as u8,
            105,
            0
        )
    );
    a.handle_bytes(5, &frame(template::CANCEL_BY_CLIENT_ID, &by_coid(5, 41)));
    x.pump(&mut [&mut a]);
    let r = reports(&drain(&mut a));
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (
            r[0].exec_type,
            r[0].request,
            r[0].order_id,
            r[0].client_order_id,
            r[0].reject_code
        ),
        (
            exec_type::REJECTED,
            5,
            0,
            41,
            RejectReason::UnknownOrder.code()
        )
    );
    // Another owner's client order id is not this session's to cancel.
    let foreign = CancelByClientIdMsg {
        request: 6,
        owner: 99,
        client_order_id: 42,
    };
    a.handle_bytes(6, &frame(template::CANCEL_BY_CLIENT_ID, &foreign));
    x.pump(&mut [&mut a]);
    let r = reports(&drain(&mut a));
    assert_eq!(
        (r[0].exec_type, r[0].reject_code),
        (exec_type::REJECTED, code::NOT_AUTHORIZED)
    );
    // A replace with unknown flag bits is refused at the protocol level.
    let bad = ReplaceMsg {
        flags: 2,
        ..requeue
    };
    a.handle_bytes(7, &frame(template::REPLACE, &bad));
    assert!(matches!(drain(&mut a).as_slice(), [Msg::Reject(_)]));
}

/// A login that asks for cancel-on-disconnect arms every owner in the
/// engine before any request of the session; a refused arm is held back
/// (and blocks what follows) until its retry.
#[test]
fn cancel_on_disconnect_arms_first_and_retries_a_refused_arm() {
    let auth = auth();
    let mut s = Session::new(9, SessionConfig::default(), auth.clone());
    s.handle_bytes(1, &login_frame("alice", 5, 0, LOGIN_CANCEL_ON_DISCONNECT));
    s.handle_bytes(2, &limit(1, 1, 1, Side::Buy, 90, 1));
    let arm = |owner| Command::CodArm {
        session: 9,
        owner: OwnerId(owner),
    };
    let first = s.poll_request().expect("an arm");
    assert_eq!(first.command, arm(1));
    // The ring refuses the second arm: nothing goes out until the retry.
    let second = s.poll_request().expect("an arm");
    assert_eq!(second.command, arm(2));
    s.handle_retry(second);
    assert!(s.retrying());
    assert_eq!(s.poll_request(), None);
    assert!(s.poll_timeout().unwrap() <= 2 + 1_000_000);
    s.handle_timeout(2 + 1_000_000);
    assert_eq!(s.poll_request().map(|r| r.command), Some(arm(2)));
    assert!(matches!(
        s.poll_request().map(|r| r.command),
        Some(Command::NewOrder(_))
    ));
    // A session without the option arms and disarms nothing.
    let mut p = Session::new(10, SessionConfig::default(), auth);
    p.handle_bytes(1, &login_frame("alice", 6, 0, 0));
    assert_eq!(p.poll_request(), None);
    assert!(p.handle_disconnect().is_empty());
}
