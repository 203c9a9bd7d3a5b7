//! What the cluster tests ask a leader, whichever processes they run.

use gateway::client::{connect_any, limit, Client, ClientConfig, Reply};
use gateway::wire::exec_type;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The demo BTC-USD instrument's id.
pub const BTC: u32 = 1;

/// Adds the demo BTC-USD instrument (the orders' market).
pub async fn add_instrument(c: &mut Client) {
    let spec = gateway::demo::instruments()[0];
    let r = c.add_instrument(gateway::wire::add_instrument_msg(0, &spec));
    c.flush().await.expect("flush");
    loop {
        match c.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Reply::Ack(a))) if a.request == r => return,
            Ok(Some(_)) => {}
            other => panic!("instrument: {other:?}"),
        }
    }
}

/// The client order ids of owner 1's open orders, sorted.
pub async fn open_coids(c: &mut Client) -> Vec<u64> {
    let q = c.query_open_orders(1);
    c.flush().await.expect("flush");
    let mut coids = Vec::new();
    loop {
        match c.next_timeout(Duration::from_secs(10)).await {
            Ok(Some(Reply::OpenOrder(o))) => coids.push(o.client_order_id),
            Ok(Some(Reply::Ack(a))) if a.request == q => break,
            Ok(Some(_)) => {}
            other => panic!("open orders: {other:?}"),
        }
    }
    coids.sort_unstable();
    coids
}

/// Places orders (owner 1, one resting buy each) until `until` or the
/// session ends, reconnecting through `addrs` first; the client order ids
/// acknowledged (`NEW` reports) are pushed to `acked`.
pub async fn place(
    addrs: &[SocketAddr],
    cfg: &ClientConfig,
    coid: &mut u64,
    until: Instant,
    acked: &mut Vec<u64>,
) {
    let Ok(mut c) = connect_any(addrs, cfg).await else {
        tokio::time::sleep(Duration::from_millis(100)).await;
        return;
    };
    while Instant::now() < until {
        *coid += 1;
        let price = 59_000 - *coid % 1_000;
        let r = c.order(limit(1, BTC, engine::Side::Buy, price, 1, *coid));
        if c.flush().await.is_err() {
            return;
        }
        loop {
            match c.next_timeout(Duration::from_secs(3)).await {
                Ok(Some(Reply::Report(e))) if e.request == r => {
                    if e.exec_type == exec_type::NEW {
                        acked.push(*coid);
                    }
                    break;
                }
                Ok(Some(_)) => {}
                // The session ended (its node died or stopped serving):
                // the order's fate is the new leader's to tell.
                _ => return,
            }
        }
    }
    c.disconnect().await;
}
