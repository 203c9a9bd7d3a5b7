//! Ledger traffic over QUIC for the integration tests: two accounts of
//! owner 1 beside the demo's (901, 902), transfers between them in
//! batches, retried while memory is full (`capacity_exceeded` is a live
//! limit, never remembered), as a client would.

use engine::event::LedgerError;
use gateway::client::{Client, Reply};
use gateway::wire::TransferRecord;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Transfer ids are `BASE + n` (the demo's own transfers are 1..).
pub const BASE: u128 = 1 << 40;
/// Transfers per request.
const BATCH: usize = 40;

/// Transfer `BASE + id`: 1 unit from account 901 to 902.
pub fn transfer(id: u128) -> TransferRecord {
    transfer_of(BASE + id, (901, 902), 1)
}

/// Transfer `id` (as is) of `amount` from `accounts.0` to `accounts.1`.
pub fn transfer_of(id: u128, (debit, credit): (u128, u128), amount: u128) -> TransferRecord {
    TransferRecord {
        id: id.to_le_bytes(),
        debit_account: debit.to_le_bytes(),
        credit_account: credit.to_le_bytes(),
        amount: amount.to_le_bytes(),
        code: 7,
        ..TransferRecord::default()
    }
}

/// Sends one batch; returns its result codes (no retry).
pub async fn send(c: &mut Client, recs: &[TransferRecord]) -> Vec<u16> {
    let r = c.transfer_batch(recs);
    c.flush().await.unwrap();
    reply(c, "transfer results", |m| match m {
        Reply::TransferResults { request, results } if *request == r => {
            Some(results.iter().map(|x| x.code).collect::<Vec<_>>())
        }
        _ => None,
    })
    .await
}

/// The first reply `pick` takes, within 20 s.
pub async fn reply<T>(c: &mut Client, what: &str, pick: impl Fn(&Reply) -> Option<T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let r = c.next().await.unwrap().expect("stream ended");
            if let Some(v) = pick(&r) {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within 20 s"))
}

/// Sends transfers `ids` in batches; returns each one's result code. A
/// transfer refused `capacity_exceeded` (memory full of records no
/// installed run covers yet: a live limit, never remembered) is sent again
/// after a pause, as a client would, for at most 60 s.
pub async fn transfers(c: &mut Client, ids: std::ops::Range<u128>) -> Vec<u16> {
    let full = LedgerError::CapacityExceeded.code();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut codes = BTreeMap::new();
    let all: Vec<u128> = ids.collect();
    for chunk in all.chunks(BATCH) {
        let mut todo = chunk.to_vec();
        while !todo.is_empty() {
            let recs: Vec<TransferRecord> = todo.iter().map(|&i| transfer(i)).collect();
            let got = send(c, &recs).await;
            let mut again = Vec::new();
            for (&id, code) in todo.iter().zip(got) {
                codes.insert(id, code);
                if code == full {
                    again.push(id);
                }
            }
            assert!(
                again.is_empty() || Instant::now() < deadline,
                "{} transfers still capacity_exceeded after 60 s: runs are not installed",
                again.len()
            );
            if !again.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            todo = again;
        }
    }
    codes.into_values().collect()
}

/// Opens accounts 901 and 902 (owner 1, USD).
pub async fn open_accounts(c: &mut Client) {
    // Beside the demo's accounts (and its funding transfers, ids 1..).
    for id in 901..=902u128 {
        let r = c.open_account(id, 1, "USD", 0);
        c.flush().await.unwrap();
        let ack = reply(c, "account ack", |m| match m {
            Reply::Ack(a) if a.request == r => Some(a.code),
            _ => None,
        })
        .await;
        assert_eq!(ack, 0, "account {id}");
    }
}
