//! Malformed-frame fuzz: hundreds of thousands of random and mutated frames
//! (flipped bytes, truncations, changed lengths, templates, schemas, reserved
//! bytes, random splits of the byte stream) go into many sessions sharing
//! one engine with a well-behaved session. Nothing panics, every session's
//! memory stays bounded, every byte the server sends is a well-formed frame,
//! and the good session's requests are all answered, with report numbers
//! that have no holes and no duplicates.
//!
//! `TEST_WIRE_FUZZ_FRAMES` (default 250,000) sets the number of frames.

mod session_support;

use engine::rng::SplitMix64;
use engine::*;
use gateway::session::*;
use gateway::wire::*;
use session_support::*;
use std::collections::BTreeSet;
use std::sync::Arc;

fn frames_budget() -> usize {
    std::env::var("TEST_WIRE_FUZZ_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250_000)
}

/// A valid client frame of a random kind, with plausible values.
fn valid_frame(rng: &mut SplitMix64, request: u64, owner: u64) -> Vec<u8> {
    let mut f = Vec::new();
    match rng.below(16) {
        0..=3 => {
            let m = NewOrderMsg {
                request,
                client_order_id: rng.next_u64(),
                owner,
                price: 90 + rng.below(20),
                qty: 1 + rng.below(10),
                instrument: 1,
                side: rng.below(2) as u8,
                tif: rng.below(2) as u8,
                ..Default::default()
            };
            encode_frame(template::NEW_ORDER, &m, &mut f);
        }
        4 => encode_frame(
            template::CANCEL,
            &CancelMsg {
                request,
                owner,
                order_id: rng.below(64),
            },
            &mut f,
        ),
        5 => encode_frame(
            template::REPLACE,
            &ReplaceMsg {
                request,
                owner,
                order_id: rng.below(64),
                price: 90 + rng.below(20),
                qty: rng.below(5),
                flags: if rng.chance_pct(50) {
                    REPLACE_REQUEUE
                } else {
                    0
                },
                ..Default::default()
            },
            &mut f,
        ),
        6 => encode_frame(
            template::MASS_CANCEL,
            &MassCancelMsg {
                request,
                owner,
                instrument: INSTRUMENT_ANY,
                side: SIDE_ANY,
                reserved: [0; 3],
            },
            &mut f,
        ),
        7 => {
            let n = 1 + rng.below(4) as usize;
            let recs: Vec<TransferRecord> = (0..n)
                .map(|_| {
                    transfer_record_of(&TransferSpec {
                        id: TransferId(rng.next_u64() as u128),
                        debit_account: AccountId(1 + rng.below(3) as u128),
                        credit_account: AccountId(1 + rng.below(3) as u128),
                        amount: Amount(rng.below(5) as u128),
                        code: 1,
                        flags: TransferFlags(rng.below(2) as u16),
                        pending_id: TransferId(0),
                        timeout_ns: 0,
                    })
                })
                .collect();
            encode_transfer_batch(request, &recs, &mut f);
        }
        8 => encode_frame(
            template::QUERY_BALANCE,
            &QueryBalanceMsg {
                request,
                account: u128_bytes(1 + rng.below(3) as u128),
            },
            &mut f,
        ),
        9 => encode_frame(template::HEARTBEAT, &Heartbeat::default(), &mut f),
        10 => {
            let mut m = LookupTransfersMsg {
                request,
                count: 1 + rng.below(LOOKUP_TRANSFERS_MAX as u64) as u32,
                ..Default::default()
            };
            for id in &mut m.ids[..m.count as usize] {
                *id = u128_bytes(rng.below(8) as u128);
            }
            encode_frame(template::LOOKUP_TRANSFERS, &m, &mut f);
        }
        11 => encode_frame(
            template::GET_ACCOUNT_TRANSFERS,
            &GetAccountTransfersMsg {
                request,
                account: u128_bytes(1 + rng.below(3) as u128),
                lo: rng.below(4),
                hi: if rng.chance_pct(80) {
                    u64::MAX
                } else {
                    rng.below(8)
                },
                limit: rng.below(40) as u32,
                by: rng.below(2) as u8,
                flags: rng.below(2) as u8,
                reserved: 0,
            },
            &mut f,
        ),
        12 | 13 => encode_frame(
            template::CANCEL_BY_CLIENT_ID,
            &CancelByClientIdMsg {
                request,
                owner,
                client_order_id: rng.below(64),
            },
            &mut f,
        ),
        14 => encode_frame(
            template::REPLAY_REPORTS,
            &ReplayReportsMsg {
                request,
                after_seq: rng.below(4_096),
                partition: rng.below(2) as u32,
                reserved: 0,
            },
            &mut f,
        ),
        _ => encode_frame(
            template::HALT,
            &HaltMsg {
                request,
                instrument: 1,
                reserved: 0,
            },
            &mut f,
        ),
    }
    f
}

/// A random or mutated frame.
fn bad_frame(rng: &mut SplitMix64, request: u64) -> Vec<u8> {
    let owner = 20 + rng.below(3);
    let mut f = valid_frame(rng, request, owner);
    match rng.below(10) {
        0 => {
            // Pure noise, sometimes with a plausible header.
            let n = rng.below(200) as usize;
            f = (0..n).map(|_| rng.next_u64() as u8).collect();
            if rng.chance_pct(50) && n >= 8 {
                f[..4].copy_from_slice(&(n as u32).to_le_bytes());
                f[6] = SCHEMA_ID;
                f[7] = VERSION;
            }
        }
        1 => {
            // Flip bits anywhere but in the length (lying lengths are case 5:
            // one within MAX_FRAME swallows up to that many bytes, as in any
            // stream protocol, which would starve the rest of the run).
            for _ in 0..1 + rng.below(4) {
                let i = 4 + rng.below(f.len() as u64 - 4) as usize;
                f[i] ^= 1 << rng.below(8);
            }
        }
        2 => {
            // Flip bytes in the body only (header intact).
            let n = f.len() as u64;
            let i = 8 + rng.below(n.saturating_sub(8)) as usize;
            if let Some(b) = f.get_mut(i) {
                *b = rng.next_u64() as u8;
            }
        }
        3 => {
            // Truncate, fixing the length so the stream stays framed.
            let n = 8 + rng.below(f.len() as u64 - 7) as usize;
            f.truncate(n);
            f[..4].copy_from_slice(&(n as u32).to_le_bytes());
        }
        4 => {
            // Extend with junk, fixing the length.
            for _ in 0..1 + rng.below(40) {
                f.push(rng.next_u64() as u8);
            }
            let n = f.len() as u32;
            f[..4].copy_from_slice(&n.to_le_bytes());
        }
        5 => {
            // A lying length (desynchronises the stream).
            let n = f.len() as u32;
            let len = match rng.below(4) {
                0 => rng.below(8) as u32,
                1 => (MAX_FRAME as u32).wrapping_add(1 + rng.below(1 << 20) as u32),
                2 => (n + rng.below(64) as u32).saturating_sub(32).max(8),
                _ => rng.next_u64() as u32,
            };
            f[..4].copy_from_slice(&len.to_le_bytes());
        }
        6 => {
            // Another template id, known or not.
            let t = if rng.chance_pct(50) {
                rng.below(60) as u16
            } else {
                rng.next_u64() as u16
            };
            f[4..6].copy_from_slice(&t.to_le_bytes());
        }
        7 => {
            // Wrong schema or version.
            f[6 + rng.below(2) as usize] = rng.next_u64() as u8 | 2;
        }
        8 => {
            // A non-zero byte in the last bytes of the body (often reserved).
            let n = f.len();
            let i = n - 1 - rng.below(8.min(n as u64 - 8)) as usize;
            f[i] |= 1 + (rng.next_u64() as u8 & 0x7F);
        }
        _ => {
            // Valid as is (a retransmission or a fresh request).
        }
    }
    f
}

fn feed(s: &mut Session, rng: &mut SplitMix64, now: u64, bytes: &[u8]) {
    // Random splits: a stream delivers bytes in arbitrary pieces.
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = if rng.chance_pct(70) {
            rest.len()
        } else {
            1 + rng.below(rest.len() as u64) as usize
        };
        s.handle_bytes(now, &rest[..n]);
        rest = &rest[n..];
    }
}

#[test]
fn malformed_frames_never_panic_nor_disturb_other_sessions() {
    let budget = frames_budget();
    let auth = Arc::new(Auth::new());
    let trader = Perms {
        trade: true,
        transfer: true,
        admin: false,
        read: true,
        ledger_admin: false,
    };
    auth.add_token("good", vec![OwnerId(10)], trader);
    auth.add_token("bad", vec![OwnerId(20), OwnerId(21), OwnerId(22)], trader);
    let mut x = Exchange::new();
    x.window = Some(gateway::window::ReportWindow::new(1_024, x.seq()));
    let cfg = SessionConfig {
        throttle_per_s: 0,
        idle_timeout_ns: u64::MAX / 4,
        ..SessionConfig::default()
    };
    const BAD: usize = 31;
    let mut sessions: Vec<Session> = (0..=BAD as u64)
        .map(|i| Session::new(i + 1, cfg.clone(), auth.clone()))
        .collect();
    let login = |s: &mut Session, token: &str, id: u64, resume: u64| {
        s.handle_bytes(1, &login_frame(token, id, resume, 0));
    };
    login(&mut sessions[0], "good", 1, 0);
    for (i, s) in sessions.iter_mut().enumerate().skip(1) {
        login(s, "bad", i as u64 + 1, 0);
    }
    let mut rng = SplitMix64(0x5EED_F00D);
    let mut good_req = 1u64;
    let mut good_sent = BTreeSet::new();
    let mut good_reports: Vec<ExecutionReport> = Vec::new();
    let mut good_answered = BTreeSet::new();
    let (mut closes, mut rejects, mut reconnects) = (0u64, 0u64, 0u64);
    let mut buf = Vec::new();
    let mut now = 2u64;
    let mut pumped = 0usize;

    for frame in 0..budget {
        now += 1_000;
        let k = 1 + rng.below(BAD as u64) as usize;
        let last = sessions[k].last_request();
        let req = if rng.chance_pct(10) {
            // Retransmit an old number (or a lower one).
            rng.below(last.saturating_add(1))
        } else {
            last.wrapping_add(1)
        };
        let f = bad_frame(&mut rng, req);
        feed(&mut sessions[k], &mut rng, now, &f);
        if let Some((code, _)) = sessions[k].poll_close() {
            closes += 1;
            // (A mutated heartbeat can become a valid logout.)
            assert!(code <= close::TAKEN_OVER);
            // Flush, then the client reconnects and resumes.
            buf.clear();
            while sessions[k].poll_transmit(&mut buf) {}
            decode_all(&buf);
            for r in sessions[k].handle_disconnect() {
                x.apply(r, &mut sessions.iter_mut().collect::<Vec<_>>());
            }
            sessions[k].handle_reconnect(now);
            let last = sessions[k].last_report_seq();
            login(&mut sessions[k], "bad", k as u64 + 1, last);
            reconnects += 1;
        }
        assert!(
            sessions[k].memory_bytes() < MAX_FRAME + (6 << 20),
            "session {k} holds {} bytes",
            sessions[k].memory_bytes()
        );

        // The good session sends a valid request now and then.
        if frame % 8 == 0 {
            good_req += 1;
            let r = good_req;
            let f = match rng.below(4) {
                0 => cancel(r, 10, rng.below(64)),
                _ => limit(
                    r,
                    10,
                    r,
                    if rng.chance_pct(50) {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    95 + rng.below(10),
                    1 + rng.below(3),
                ),
            };
            good_sent.insert(r);
            feed(&mut sessions[0], &mut rng, now, &f);
        }
        if frame % 64 == 63 || frame + 1 == budget {
            x.now = now;
            let mut all: Vec<&mut Session> = sessions.iter_mut().collect();
            pumped += x.pump(&mut all);
            for (i, s) in sessions.iter_mut().enumerate() {
                // Replays are answered from the window, as the server does;
                // a session went live at its first login here.
                let window = x.window.as_ref().expect("window");
                s.handle_live_from(vec![window.newest()]);
                while s.poll_replay().is_some() {
                    s.handle_replay(window);
                }
                buf.clear();
                while s.poll_transmit(&mut buf) {}
                // Whatever the server sends is well formed.
                let msgs = decode_all(&buf);
                if i == 0 {
                    for m in msgs {
                        match m {
                            Msg::Report(r) => {
                                good_answered.insert(r.request);
                                good_reports.push(r);
                            }
                            Msg::LoginAccepted(_) => {}
                            other => panic!("good session got {other:?}"),
                        }
                    }
                } else {
                    rejects += msgs.iter().filter(|m| matches!(m, Msg::Reject(_))).count() as u64;
                }
            }
        }
    }
    let good = &mut sessions[0];
    assert_eq!(good.poll_close(), None, "the good session was never closed");
    assert!(good.logged_in());
    // Every request of the good session was answered.
    good_answered.remove(&0);
    assert_eq!(good_answered, good_sent);
    // Its report numbers are 1..=n: no holes, no duplicates.
    for (i, r) in good_reports.iter().enumerate() {
        assert_eq!(r.report_seq, i as u64 + 1);
    }
    assert_eq!(good.last_report_seq(), good_reports.len() as u64);
    // Fills keep cum + leaves = order qty for tracked orders.
    for r in &good_reports {
        if r.exec_type == exec_type::TRADE && r.ord_status != ord_status::UNKNOWN {
            assert_eq!(r.cum_qty + r.leaves_qty, r.order_qty, "{r:?}");
        }
    }
    println!(
        "{budget} frames: {rejects} protocol rejects, {closes} closes, {pumped} engine commands, {} good reports",
        good_reports.len()
    );
    assert!(closes > 100 && rejects > 10_000 && reconnects == closes);
}

#[test]
fn random_bytes_into_the_decoders_never_panic() {
    let mut rng = SplitMix64(42);
    let mut r = FrameReader::new();
    for _ in 0..20_000 {
        let n = rng.below(64) as usize;
        let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        let _ = peek_login(&bytes);
        if let Some(h) = read_pod::<Header>(&bytes) {
            let _ = decode_client(&h, &bytes[8..]);
            let _ = decode_server(&h, &bytes[8..]);
        }
        r.push(&bytes);
        while let Some(f) = r.next_frame() {
            if let Ok((h, body)) = f {
                let _ = decode_client(&h, body);
            }
        }
        assert!(r.buffered() <= MAX_FRAME + 64);
        if r.is_broken() {
            r.reset();
        }
    }
}

/// The transfer query templates refuse malformed frames by name: a count
/// outside 1..=8, ids past the count, unknown range or flag bits, reserved
/// bytes, wrong lengths; and the server's rows and ends decode back exactly.
#[test]
fn transfer_query_frames_are_validated_precisely() {
    let decode = |t: u16, body: &[u8]| {
        let h = Header {
            len: (HEADER_LEN + body.len()) as u32,
            template: t,
            schema: SCHEMA_ID,
            version: VERSION,
        };
        decode_client(&h, body).map(|_| ())
    };
    let lookup = |count: u32, ids: usize| {
        let mut m = LookupTransfersMsg {
            request: 1,
            count,
            ..Default::default()
        };
        for id in &mut m.ids[..ids] {
            *id = u128_bytes(7);
        }
        m
    };
    let t = template::LOOKUP_TRANSFERS;
    assert_eq!(decode(t, bytemuck::bytes_of(&lookup(8, 8))), Ok(()));
    for (m, want) in [
        (
            lookup(0, 0),
            FrameError::BadEnum {
                field: "lookup_transfers.count",
                value: 0,
            },
        ),
        (
            lookup(9, 8),
            FrameError::BadEnum {
                field: "lookup_transfers.count",
                value: 9,
            },
        ),
        (
            lookup(2, 3),
            FrameError::NonZeroReserved {
                field: "lookup_transfers.ids[count..]",
            },
        ),
        (
            LookupTransfersMsg {
                reserved: 1,
                ..lookup(1, 1)
            },
            FrameError::NonZeroReserved {
                field: "lookup_transfers.reserved",
            },
        ),
    ] {
        assert_eq!(decode(t, bytemuck::bytes_of(&m)), Err(want));
    }
    let one = lookup(1, 1);
    assert_eq!(
        decode(t, &bytemuck::bytes_of(&one)[..100]),
        Err(FrameError::Truncated {
            template: t,
            need: 152,
            got: 108
        })
    );

    let g = GetAccountTransfersMsg {
        request: 1,
        account: u128_bytes(101),
        hi: u64::MAX,
        limit: 20,
        ..Default::default()
    };
    let t = template::GET_ACCOUNT_TRANSFERS;
    // Range and limit are the engine's to judge: limit 0 and lo > hi decode.
    assert_eq!(
        decode(
            t,
            bytemuck::bytes_of(&GetAccountTransfersMsg {
                limit: 0,
                lo: 9,
                hi: 1,
                ..g
            })
        ),
        Ok(())
    );
    for (m, want) in [
        (
            GetAccountTransfersMsg { by: 2, ..g },
            FrameError::BadEnum {
                field: "get_account_transfers.by",
                value: 2,
            },
        ),
        (
            GetAccountTransfersMsg { flags: 2, ..g },
            FrameError::BadEnum {
                field: "get_account_transfers.flags",
                value: 2,
            },
        ),
        (
            GetAccountTransfersMsg { reserved: 1, ..g },
            FrameError::NonZeroReserved {
                field: "get_account_transfers.reserved",
            },
        ),
    ] {
        assert_eq!(decode(t, bytemuck::bytes_of(&m)), Err(want));
    }
    // The filter the engine gets is the one the client sent.
    let f = engine::history::AccountFilter {
        account: AccountId(101),
        by: engine::history::RangeBy::Time,
        lo: 5,
        hi: 9,
        limit: 3,
        newest_first: true,
    };
    assert_eq!(account_filter(&get_account_transfers_msg(4, &f)), f);

    // A row carries the whole record; states queries never return are refused.
    let rec = engine::history::TransferRecord {
        spec: TransferSpec {
            id: TransferId(u128::MAX),
            debit_account: AccountId(0),
            credit_account: AccountId(0),
            amount: Amount(0),
            code: 3,
            flags: TransferFlags(TransferFlags::POST_PENDING),
            pending_id: TransferId(9),
            timeout_ns: 0,
        },
        debit_account: AccountId(101),
        credit_account: AccountId(102),
        amount: Amount(200),
        state: engine::history::TransferState::Resolution,
        ledger_seq: 3,
        created_seq: Seq(8),
        created: Timestamp(200),
        change_seq: Seq(8),
    };
    let row = transfer_row_msg(5, &rec).expect("a resolution is a row");
    assert_eq!(transfer_row_record(&row), Some(rec));
    let failed = engine::history::TransferRecord {
        state: engine::history::TransferState::Failed(LedgerError::ExceedsCredits),
        ..rec
    };
    assert_eq!(transfer_row_msg(5, &failed), None);
    let server = |t: u16, body: &[u8]| {
        let h = Header {
            len: (HEADER_LEN + body.len()) as u32,
            template: t,
            schema: SCHEMA_ID,
            version: VERSION,
        };
        decode_server(&h, body).map(|_| ())
    };
    assert_eq!(
        server(template::TRANSFER_ROW, bytemuck::bytes_of(&row)),
        Ok(())
    );
    assert_eq!(
        server(
            template::TRANSFER_ROW,
            bytemuck::bytes_of(&TransferRowMsg { state: 6, ..row })
        ),
        Err(FrameError::BadEnum {
            field: "transfer_row.state",
            value: 6
        })
    );
    let end = TransfersEndMsg {
        request: 5,
        more: 2,
        ..Default::default()
    };
    assert_eq!(
        server(template::TRANSFERS_END, bytemuck::bytes_of(&end)),
        Err(FrameError::BadEnum {
            field: "transfers_end.more",
            value: 2
        })
    );
    // Clients never send the server's templates.
    assert!(is_server_template(template::TRANSFER_ROW));
    assert!(is_server_template(template::TRANSFERS_END));
}
