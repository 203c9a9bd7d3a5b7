//! The journal subcommands' library functions on real files: verify counts,
//! dump as script JSON lines, replay reproduces the state hash, and damage is
//! named by file and offset.

mod support;

use bourse::journal_cli::{run_journal_dump, run_journal_verify, run_replay, CliError};
use bourse_tests::fixtures;
use engine::rng::SplitMix64;
use engine::*;
use journal::{Durability, FsStorage, JournalConfig, JournalWriter};
use support::tmp;

fn inputs(n: u64) -> Vec<Input> {
    let mut rng = SplitMix64(42);
    let mut v = vec![Input {
        seq: Seq(1),
        now: Timestamp(0),
        command: Command::AddInstrument(InstrumentSpec {
            qty_max: 1000,
            ..fixtures::instrument(1)
        }),
    }];
    for s in 2..=n {
        v.push(Input {
            seq: Seq(s),
            now: Timestamp(s / 10 * 1000),
            command: Command::NewOrder(NewOrder {
                owner: OwnerId(1 + rng.below(3)),
                instrument: InstrumentId(1),
                client_order_id: ClientOrderId(s),
                side: if rng.chance(1, 2) {
                    Side::Buy
                } else {
                    Side::Sell
                },
                order_type: OrderType::Limit,
                price: Some(Price(98 + rng.below(5))),
                qty: Qty(1 + rng.below(5)),
                tif: Tif::Gtc,
                expire_at: None,
                post_only: false,
                stp: Stp::None,
                display_qty: None,
                trigger_price: None,
            }),
        });
    }
    v
}

#[test]
fn verify_dump_replay_and_damage() {
    let dir = tmp("cli");
    let ins = inputs(500);
    let cfg = JournalConfig {
        segment_bytes: 16384,
        max_batch: 50,
        durability: Durability::Durable,
    };
    let (mut w, _) = JournalWriter::open(FsStorage, &dir, cfg).unwrap();
    for chunk in ins.chunks(50) {
        w.append_inputs(chunk).unwrap();
    }
    drop(w);

    let mut out = Vec::new();
    let rep = run_journal_verify(&dir, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(rep.journal.records, 500);
    assert!(
        text.contains("records: 500") && text.contains("last seq: 500"),
        "{text}"
    );
    assert!(text.contains("torn tail: none"));

    let mut out = Vec::new();
    run_journal_dump(&dir, Some(2), Some(12), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let orders = lines
        .iter()
        .filter(|l| l.contains("\"cmd\":\"order\""))
        .count();
    assert_eq!(orders, 11);
    assert!(lines.contains(&r#"{"cmd":"time","now":1000}"#), "{text}");
    for l in &lines {
        let _: serde_json::Value = serde_json::from_str(l).unwrap();
    }

    let mut reference = Engine::new(EngineConfig::small());
    let mut ev = reference.new_events();
    for i in &ins {
        reference.apply(i, &mut ev);
    }
    let mut out = Vec::new();
    let r = run_replay(&dir, EngineConfig::small(), &mut out).unwrap();
    assert_eq!(r.state_hash, reference.state_hash());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!("{:032x}", reference.state_hash())),
        "{text}"
    );

    // Damage the first block's body: named by file and offset.
    let seg = dir.join("journal-00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[300] ^= 4;
    std::fs::write(&seg, &bytes).unwrap();
    let err = run_journal_verify(&dir, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, CliError::Journal(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("journal-00000000000000000001.seg")
            && msg.contains("offset 0")
            && msg.contains("body checksum"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
