//! The server side of `bourse-md/1`: one task per subscriber connection,
//! on the thread that owns the hub. It authenticates the subscriber,
//! passes its requests to the hub, and writes what the hub queued for it:
//! its whole queue in one stream write per wake, heartbeats every
//! `heartbeat`.
//!
//! Invariants: the task borrows the hub only between awaits (never across
//! one); a write stuck on a stalled peer still sees a close the hub
//! decided (slow consumer) because the hub wakes the task; garbage from a
//! subscriber gets an `ERROR` record and a close; every connection that
//! ends is counted once under a `DisconnectReason`.

use super::now_ns;
use crate::control::{decode_ctl, encode_ctl, md_close, Ctl};
use crate::hub::{Close, MdHub, Req, SubId, Wake, TAKE_MAX_BYTES};
use gateway::counters::DisconnectReason;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::Notify;

impl Wake for Notify {
    fn wake(&self) {
        self.notify_one();
    }
}

/// Serves one accepted `bourse-md/1` connection.
pub async fn connection(hub: Rc<RefCell<MdHub>>, conn: quinn::Connection) {
    let Ok(Ok((mut send, mut recv))) =
        tokio::time::timeout(Duration::from_secs(10), conn.accept_bi()).await
    else {
        conn.close(quinn::VarInt::from_u32(md_close::PROTOCOL), b"no stream");
        return;
    };
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    if let Err((code, why)) = authenticate(&hub, &mut recv, &mut inbuf).await {
        hub.borrow_mut().ended(if code == md_close::UNAUTHORIZED {
            DisconnectReason::AuthFailed
        } else {
            DisconnectReason::NotLoggedIn
        });
        fail(&conn, &mut send, code, why).await;
        return;
    }
    let wake = Rc::new(Notify::new());
    let Some(id) = hub.borrow_mut().add_sub(wake.clone(), now_ns()) else {
        hub.borrow_mut().ended(DisconnectReason::ServerFull);
        let _ = send.write_all(&error_record(md_close::FULL)).await;
        conn.close(
            quinn::VarInt::from_u32(md_close::FULL),
            b"too many subscribers",
        );
        return;
    };
    let mut task = Task {
        hub,
        id,
        wake,
        inbuf,
        out: Vec::with_capacity(TAKE_MAX_BYTES),
    };
    let end = task.run(&mut send, &mut recv).await;
    let mut h = task.hub.borrow_mut();
    h.remove_sub(id);
    match end {
        End::Gone(why) => h.ended(why),
        End::Closed((code, why)) => {
            h.ended(close_reason(code));
            drop(h);
            conn.close(quinn::VarInt::from_u32(code), why.as_bytes());
        }
        End::Close((code, why)) => {
            h.ended(close_reason(code));
            drop(h);
            fail(&conn, &mut send, code, &why).await;
        }
    }
}

/// Reads the first record, which must be an `AUTH` with a token allowed to read.
async fn authenticate(
    hub: &RefCell<MdHub>,
    recv: &mut quinn::RecvStream,
    inbuf: &mut Vec<u8>,
) -> Result<(), (u32, &'static str)> {
    loop {
        match decode_ctl(inbuf) {
            Ok(Some((Ctl::Auth(t), n))) => {
                inbuf.drain(..n);
                return if hub.borrow().authorized(&t) {
                    Ok(())
                } else {
                    Err((md_close::UNAUTHORIZED, "unauthorized"))
                };
            }
            Ok(Some(_)) | Err(_) => return Err((md_close::PROTOCOL, "expected auth")),
            Ok(None) => {}
        }
        match tokio::time::timeout(Duration::from_secs(10), recv.read_chunk(4096, true)).await {
            Ok(Ok(Some(c))) => inbuf.extend_from_slice(&c.bytes),
            _ => return Err((md_close::PROTOCOL, "no auth")),
        }
    }
}

fn error_record(code: u32) -> Vec<u8> {
    let mut b = Vec::new();
    encode_ctl(&Ctl::Error(code), &mut b);
    b
}

/// Sends an `ERROR` record, lets it leave (briefly), and closes.
async fn fail(conn: &quinn::Connection, send: &mut quinn::SendStream, code: u32, why: &str) {
    let _ = send.write_all(&error_record(code)).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_millis(100), send.stopped()).await;
    conn.close(quinn::VarInt::from_u32(code), why.as_bytes());
}

/// How a subscriber's task ended.
enum End {
    /// The peer went away (no close of ours).
    Gone(DisconnectReason),
    /// A close to send (error record, then close).
    Close(Close),
    /// A close the hub decided while a write was stuck: close at once.
    Closed(Close),
}

struct Task {
    hub: Rc<RefCell<MdHub>>,
    id: SubId,
    wake: Rc<Notify>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
}

impl Task {
    async fn run(&mut self, send: &mut quinn::SendStream, recv: &mut quinn::RecvStream) -> End {
        let hb_every = self.hub.borrow().config().heartbeat;
        let mut next_hb = tokio::time::Instant::now() + hb_every;
        // One timer for the connection's life, reset when it fires (a new one
        // per loop turn would cost a timer-wheel insert per flush).
        let hb_timer = tokio::time::sleep_until(next_hb);
        tokio::pin!(hb_timer);
        loop {
            if let Err(c) = self.requests() {
                return End::Close(c);
            }
            let now = tokio::time::Instant::now();
            let hb = now >= next_hb;
            if hb {
                // Behind (a long write): no catch-up burst, the next one at
                // least half an interval from now.
                next_hb = (next_hb + hb_every).max(now + hb_every / 2);
                hb_timer.as_mut().reset(next_hb);
            }
            self.out.clear();
            let taken = self
                .hub
                .borrow_mut()
                .take(self.id, &mut self.out, TAKE_MAX_BYTES, hb, now_ns());
            if let Err(c) = taken {
                return End::Close(c);
            }
            if !self.out.is_empty() {
                if let Some(end) = self.write(send).await {
                    return end;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.wake.notified() => {}
                r = recv.read_chunk(4096, true) => match r {
                    Ok(Some(c)) => self.inbuf.extend_from_slice(&c.bytes),
                    Ok(None) => return End::Gone(DisconnectReason::Normal),
                    Err(quinn::ReadError::ConnectionLost(
                        quinn::ConnectionError::ApplicationClosed(a),
                    )) if a.error_code.into_inner() == 0 => {
                        return End::Gone(DisconnectReason::Normal)
                    }
                    Err(_) => return End::Gone(DisconnectReason::ConnectionLost),
                },
                _ = &mut hb_timer => {}
            }
        }
    }

    /// Hands the requests read so far to the hub.
    fn requests(&mut self) -> Result<(), Close> {
        loop {
            match decode_ctl(&self.inbuf) {
                Ok(None) => break,
                Ok(Some((c, n))) => {
                    self.inbuf.drain(..n);
                    let Some(req) = Req::from_ctl(&c) else {
                        return Err((md_close::PROTOCOL, "unexpected record".into()));
                    };
                    self.hub.borrow_mut().request(self.id, req, now_ns());
                }
                Err(_) => return Err((md_close::PROTOCOL, "malformed record".into())),
            }
        }
        if self.inbuf.len() > 4096 {
            return Err((md_close::PROTOCOL, "oversized record".into()));
        }
        Ok(())
    }

    /// Writes `out`. The publisher does not wait for this: it only appends
    /// to the queue. A write stuck on a stalled peer still notices a close
    /// decided by the hub (slow consumer).
    async fn write(&mut self, send: &mut quinn::SendStream) -> Option<End> {
        let w = send.write_all(&self.out);
        tokio::pin!(w);
        loop {
            tokio::select! {
                biased;
                r = &mut w => {
                    return r.is_err().then_some(End::Gone(DisconnectReason::ConnectionLost));
                }
                _ = self.wake.notified() => {
                    if let Some(c) = self.hub.borrow().close_of(self.id) {
                        return Some(End::Closed(c));
                    }
                }
            }
        }
    }
}

/// The disconnect reason of one of our close codes.
fn close_reason(code: u32) -> DisconnectReason {
    match code {
        md_close::NORMAL => DisconnectReason::Normal,
        md_close::UNAUTHORIZED => DisconnectReason::AuthFailed,
        md_close::SLOW_CONSUMER => DisconnectReason::SlowConsumer,
        md_close::FULL => DisconnectReason::ServerFull,
        _ => DisconnectReason::ProtocolViolation,
    }
}
