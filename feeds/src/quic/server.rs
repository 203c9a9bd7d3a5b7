//! The server side of `bourse-md/1`, on the thread that owns the hub: one
//! task per subscriber connection, and one flusher per hub.
//!
//! The flusher does the fan-out as a raw writer would: when the hub queues
//! bytes for idle subscribers it wakes the flusher once, which takes each
//! one's whole queue and writes it to its stream without waiting (a poll
//! that returns what the stream accepted). Only a write the stream cannot
//! take at once (flow control: a slow or stalled peer) goes to the
//! subscriber's own task, which awaits it; so the common case costs no
//! task wake per subscriber per update. The task also authenticates the
//! subscriber, hands its requests to the hub, sends heartbeats every
//! `heartbeat` and closes the connection.
//!
//! Invariants: nothing borrows the hub across an await; a subscriber's
//! stream is written by its task or by the flusher, never both (the
//! flusher only while the task has parked the stream in its `Link`); a
//! write stuck on a stalled peer still sees a close the hub decided (slow
//! consumer) because the hub's wake reaches the task; garbage from a
//! subscriber gets an `ERROR` record and a close; every connection that
//! ends is counted once under a `DisconnectReason`.

use super::now_ns;
use crate::control::{decode_ctl, encode_ctl, md_close, Ctl};
use crate::hub::{Close, MdHub, Req, SubId, Wake, TAKE_MAX_BYTES};
use gateway::counters::DisconnectReason;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;

/// What a subscriber's task and the flusher share.
struct Link {
    id: Cell<SubId>,
    /// The stream while the task is idle: the flusher may write it.
    send: RefCell<Option<quinn::SendStream>>,
    /// Bytes the flusher could not write at once: the task writes them.
    carry: RefCell<Vec<u8>>,
    /// Already in the flusher's list.
    marked: Cell<bool>,
    /// Wakes the task (a carry to write, a close to notice).
    task: Notify,
    flusher: Rc<Flusher>,
}

impl Wake for Link {
    fn wake(&self) {
        if !self.marked.replace(true) {
            let mut dirty = self.flusher.dirty.borrow_mut();
            if dirty.is_empty() {
                self.flusher.notify.notify_one();
            }
            dirty.push(self.id.get());
        }
    }
}

/// The hub's fan-out writer (one per hub, kept in `MdHub::transport`).
#[derive(Default)]
struct Flusher {
    /// Subscribers the hub woke since the last pass.
    dirty: RefCell<Vec<SubId>>,
    links: RefCell<Vec<Option<Rc<Link>>>>,
    notify: Notify,
}

impl Flusher {
    /// The hub's flusher, started with its first subscriber.
    fn of(hub: &Rc<RefCell<MdHub>>) -> Rc<Flusher> {
        if let Some(f) = hub.borrow().transport.clone() {
            if let Ok(f) = f.downcast::<Flusher>() {
                return f;
            }
        }
        let f = Rc::new(Flusher::default());
        hub.borrow_mut().transport = Some(f.clone());
        tokio::task::spawn_local(flush_loop(Rc::downgrade(hub), f.clone()));
        f
    }

    fn link(&self, id: SubId) -> Option<Rc<Link>> {
        self.links.borrow().get(id).cloned().flatten()
    }

    fn set_link(&self, id: SubId, link: Option<Rc<Link>>) {
        let mut links = self.links.borrow_mut();
        if links.len() <= id {
            links.resize(id + 1, None);
        }
        links[id] = link;
    }
}

/// One pass per wake: every subscriber the hub woke gets its queue written.
async fn flush_loop(hub: Weak<RefCell<MdHub>>, f: Rc<Flusher>) {
    let mut ids = Vec::new();
    let mut out = Vec::with_capacity(TAKE_MAX_BYTES);
    loop {
        f.notify.notified().await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        std::mem::swap(&mut ids, &mut *f.dirty.borrow_mut());
        for id in ids.drain(..) {
            if let Some(link) = f.link(id) {
                link.marked.set(false);
                flush_one(&hub, &link, &mut out);
            }
        }
    }
}

/// Writes subscriber `link`'s queue if its task has parked the stream; what
/// the stream does not take at once, or anything else to handle (a close,
/// a busy stream), goes to its task.
fn flush_one(hub: &RefCell<MdHub>, link: &Link, out: &mut Vec<u8>) {
    let mut slot = link.send.borrow_mut();
    let Some(send) = slot.as_mut() else {
        // Its task is writing (and takes again after), or closing.
        link.task.notify_one();
        return;
    };
    loop {
        out.clear();
        let taken = hub
            .borrow_mut()
            .take(link.id.get(), out, TAKE_MAX_BYTES, false, now_ns());
        if taken.is_err() {
            link.task.notify_one();
            return;
        }
        if out.is_empty() {
            return;
        }
        let n = try_write(send, out);
        if n < out.len() {
            link.carry.borrow_mut().extend_from_slice(&out[n..]);
            link.task.notify_one();
            return;
        }
    }
}

/// Writes as much of `buf` as the stream takes without waiting.
fn try_write(send: &mut quinn::SendStream, buf: &[u8]) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut at = 0;
    while at < buf.len() {
        let w = send.write(&buf[at..]);
        let w = std::pin::pin!(w);
        match w.poll(&mut cx) {
            Poll::Ready(Ok(n)) if n > 0 => at += n,
            // Blocked, or an error its task's own write will report.
            _ => break,
        }
    }
    at
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
    let flusher = Flusher::of(&hub);
    let link = Rc::new(Link {
        id: Cell::new(0),
        send: RefCell::new(None),
        carry: RefCell::new(Vec::new()),
        marked: Cell::new(false),
        task: Notify::new(),
        flusher: flusher.clone(),
    });
    let Some(id) = hub.borrow_mut().add_sub(link.clone(), now_ns()) else {
        hub.borrow_mut().ended(DisconnectReason::ServerFull);
        let _ = send.write_all(&error_record(md_close::FULL)).await;
        conn.close(
            quinn::VarInt::from_u32(md_close::FULL),
            b"too many subscribers",
        );
        return;
    };
    link.id.set(id);
    flusher.set_link(id, Some(link.clone()));
    *link.send.borrow_mut() = Some(send);
    let mut task = Task {
        hub,
        id,
        link,
        inbuf,
        out: Vec::with_capacity(TAKE_MAX_BYTES),
    };
    let end = task.run(&mut recv).await;
    let Task { hub, link, .. } = task;
    flusher.set_link(id, None);
    let send = link.send.borrow_mut().take();
    let why = match &end {
        End::Gone(why) => *why,
        End::Closed((code, _)) | End::Close((code, _)) => close_reason(*code),
    };
    {
        let mut h = hub.borrow_mut();
        h.remove_sub(id);
        h.ended(why);
    }
    match (end, send) {
        (End::Gone(_), _) => {}
        (End::Close((code, why)), Some(mut send)) => fail(&conn, &mut send, code, &why).await,
        (End::Closed((code, why)) | End::Close((code, why)), _) => {
            conn.close(quinn::VarInt::from_u32(code), why.as_bytes());
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
    link: Rc<Link>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
}

impl Task {
    async fn run(&mut self, recv: &mut quinn::RecvStream) -> End {
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
            if let Some(c) = self.hub.borrow().close_of(self.id) {
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
            if hb || !self.link.carry.borrow().is_empty() {
                if let Some(end) = self.write_all_queued(hb).await {
                    return end;
                }
            }
            tokio::select! {
                biased;
                _ = self.link.task.notified() => {}
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

    /// Takes the stream from the flusher and writes, waiting as long as it
    /// takes: the flusher's carry, then the queue (with heartbeats when
    /// `hb`) until it is empty; then parks the stream for the flusher again.
    async fn write_all_queued(&mut self, mut hb: bool) -> Option<End> {
        let Some(mut send) = self.link.send.borrow_mut().take() else {
            return Some(End::Gone(DisconnectReason::ConnectionLost));
        };
        loop {
            self.out.clear();
            std::mem::swap(&mut self.out, &mut *self.link.carry.borrow_mut());
            if self.out.is_empty() {
                let taken = self.hub.borrow_mut().take(
                    self.id,
                    &mut self.out,
                    TAKE_MAX_BYTES,
                    hb,
                    now_ns(),
                );
                hb = false;
                if let Err(c) = taken {
                    *self.link.send.borrow_mut() = Some(send);
                    return Some(End::Close(c));
                }
            }
            if self.out.is_empty() {
                *self.link.send.borrow_mut() = Some(send);
                return None;
            }
            if let Some(end) = self.write(&mut send).await {
                *self.link.send.borrow_mut() = Some(send);
                return Some(end);
            }
        }
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
                _ = self.link.task.notified() => {
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
