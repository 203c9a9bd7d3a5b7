//! Cancel-on-disconnect arms: `sessions_lost` cancels exactly the armed
//! owners' live orders (each owner once, ascending), forgets every arm, and
//! the arms survive a snapshot (and only change the state hash while armed).
mod common;
use common::*;
use engine::*;

/// Applies `cmds` in order; returns each command's events.
fn run(e: &mut Engine, cmds: &[Command]) -> Vec<Vec<Event>> {
    let mut out = e.new_events();
    let mut all = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        let input = Input {
            seq: Seq(i as u64 + 1),
            now: Timestamp(1_000 + i as u64),
            command: *c,
        };
        e.apply(&input, &mut out);
        all.push(out.iter().copied().collect());
    }
    all
}

fn canceled_owners(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Canceled { owner, reason, .. } => {
                assert_eq!(*reason, CancelReason::MassCancel);
                Some(owner.0)
            }
            _ => None,
        })
        .collect()
}

fn arm(session: u64, owner: u64) -> Command {
    Command::CodArm {
        session,
        owner: OwnerId(owner),
    }
}

#[test]
fn sessions_lost_cancels_armed_owners_once_each_then_forgets_the_arms() {
    let mut e = Engine::new(EngineConfig::small());
    let events = run(
        &mut e,
        &[
            Command::AddInstrument(spec()),
            limit(3, 1, Side::Buy, 90, 5),
            limit(1, 1, Side::Buy, 91, 5),
            limit(2, 1, Side::Sell, 110, 5),
            limit(1, 2, Side::Sell, 111, 5),
            arm(7, 3),
            arm(7, 1),
            arm(8, 1), // owner 1 armed twice: cancelled once
            arm(7, 1), // the same arm again: one arm
            arm(9, 2),
            Command::CodDisarm { session: 9 }, // owner 2 no longer armed
            Command::SessionsLost,
            Command::SessionsLost, // nothing armed any more
        ],
    );
    assert!(events[5..11].iter().all(Vec::is_empty), "{events:?}");
    assert_eq!(canceled_owners(&events[11]), vec![1, 1, 3]);
    assert!(events[12].is_empty());
    assert_eq!(e.live_orders(), 1, "owner 2's order stays");
    assert!(e.cod_arms().is_empty());
}

#[test]
fn arms_survive_a_snapshot_and_change_the_hash_only_while_armed() {
    let mut e = Engine::new(EngineConfig::small());
    run(
        &mut e,
        &[
            Command::AddInstrument(spec()),
            limit(4, 1, Side::Buy, 90, 5),
        ],
    );
    let unarmed = e.state_hash();
    run(&mut e, &[arm(5, 4), arm(6, 4)]);
    let armed = e.state_hash();
    assert_ne!(armed, unarmed);
    let bytes = e.snapshot();
    let mut r = Engine::restore(EngineConfig::small(), &bytes).expect("restores");
    assert_eq!(r.state_hash(), armed);
    assert_eq!(r.cod_arms(), &[(5, 4), (6, 4)]);
    let events = run(&mut r, &[Command::SessionsLost]);
    assert_eq!(canceled_owners(&events[0]), vec![4]);
    // Disarmed states hash as they did before arms existed.
    let mut d = Engine::restore(EngineConfig::small(), &bytes).expect("restores");
    run(
        &mut d,
        &[
            Command::CodDisarm { session: 5 },
            Command::CodDisarm { session: 6 },
        ],
    );
    assert_eq!(d.state_hash(), unarmed);
}

#[test]
fn a_version_3_snapshot_restores_with_no_arms_and_bad_arms_are_refused() {
    let mut e = Engine::new(EngineConfig::small());
    run(
        &mut e,
        &[
            Command::AddInstrument(spec()),
            limit(4, 1, Side::Buy, 90, 5),
        ],
    );
    let hash = e.state_hash();
    let v4 = e.snapshot();
    // Version 3 is version 4 without the arms' count (0) at the end.
    let mut v3 = v4[..v4.len() - 8].to_vec();
    v3[8..12].copy_from_slice(&3u32.to_le_bytes());
    let r = Engine::restore(EngineConfig::small(), &v3).expect("a version-3 snapshot restores");
    assert_eq!(r.state_hash(), hash);
    // Arms out of order are refused, naming the field.
    run(&mut e, &[arm(5, 4), arm(6, 4)]);
    let mut bad = e.snapshot();
    let n = bad.len();
    let (a, b) = (bad[n - 32..n - 16].to_vec(), bad[n - 16..].to_vec());
    bad[n - 32..n - 16].copy_from_slice(&b);
    bad[n - 16..].copy_from_slice(&a);
    assert!(matches!(
        Engine::restore(EngineConfig::small(), &bad),
        Err(SnapshotError::BadValue {
            field: "cod_arms order",
            ..
        })
    ));
}

#[test]
fn a_full_arm_table_rejects_capacity_exceeded_and_keeps_the_arms_it_has() {
    let mut e = Engine::new(EngineConfig::small());
    let mut out = e.new_events();
    for i in 0..COD_ARMS_MAX as u64 {
        let input = Input {
            seq: Seq(i + 1),
            now: Timestamp(1),
            command: arm(i / 8, i % 8 + 1),
        };
        e.apply(&input, &mut out);
        assert!(out.is_empty());
    }
    let input = Input {
        seq: Seq(COD_ARMS_MAX as u64 + 1),
        now: Timestamp(1),
        command: arm(u64::MAX, 1),
    };
    e.apply(&input, &mut out);
    assert_eq!(
        out.iter().copied().collect::<Vec<_>>(),
        vec![Event::Rejected {
            target: RejectTarget::Session(u64::MAX),
            reason: RejectReason::CapacityExceeded,
        }]
    );
    assert_eq!(e.cod_arms().len(), COD_ARMS_MAX);
}
