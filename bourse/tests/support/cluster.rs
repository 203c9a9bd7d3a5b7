//! What the cluster tests ask a leader, whichever processes they run.

use gateway::client::{Client, Reply};
use std::time::Duration;

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
