//! Shared helpers for the sans-IO session tests: a real engine driven
//! in-process (one partition), a router that hands each output to the
//! session(s) it concerns, and a decoder of what a session transmits.
#![allow(dead_code)]

use bourse_tests::fixtures;
use engine::*;
use gateway::session::{token_session, Auth, EngineRequest, Perms, Session, SessionConfig};
use gateway::window::ReportWindow;
use gateway::wire::*;
use std::sync::Arc;

/// A single-partition engine plus the sessions' side of the runtime.
pub struct Exchange {
    pub engine: Engine,
    events: Events,
    seq: u64,
    pub now: u64,
    /// Fed every applied request's outputs, as a server's is (origins
    /// included), when set.
    pub window: Option<ReportWindow>,
}

impl Exchange {
    pub fn new() -> Self {
        let engine = Engine::new(EngineConfig::small());
        let events = engine.new_events();
        let mut x = Exchange {
            engine,
            events,
            seq: 0,
            now: 1,
            window: None,
        };
        x.apply_raw(instrument(1));
        x
    }

    /// The last input's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn apply_raw(&mut self, command: Command) -> Input {
        self.seq += 1;
        let input = Input {
            seq: Seq(self.seq),
            now: Timestamp(self.now),
            command,
        };
        self.engine.apply(&input, &mut self.events);
        input
    }

    /// Applies one request and delivers its outputs: every event to the
    /// session that sent it and to every session trading for an owner it names.
    pub fn apply(&mut self, req: EngineRequest, sessions: &mut [&mut Session]) {
        let input = self.apply_raw(req.command);
        if let Some(w) = &mut self.window {
            let caller = runtime::Caller {
                token: req.token,
                origin: req.origin,
            };
            w.handle_output(&runtime::Output::of(caller, &input, &self.events));
        }
        let seq = Seq(self.seq);
        let evs: Vec<Event> = self.events.iter().copied().collect();
        for s in sessions.iter_mut() {
            let mine = token_session(req.token) == s.session_id();
            for e in &evs {
                if mine || concerns(e, s.owners()) {
                    s.handle_event(self.now, if mine { req.token } else { 0 }, 0, seq, e);
                }
                // A transfer query's rows follow its event, to the asker only.
                if let (true, Event::Transfers { rows, .. }) = (mine, e) {
                    for r in self.events.rows(*rows) {
                        s.handle_row(req.token, r);
                    }
                }
            }
            if mine {
                s.handle_end(req.token);
            }
        }
    }

    /// Submits every queued request of every session until none is left.
    pub fn pump(&mut self, sessions: &mut [&mut Session]) -> usize {
        let mut n = 0;
        loop {
            let mut any = false;
            for i in 0..sessions.len() {
                while let Some(r) = sessions[i].poll_request() {
                    any = true;
                    n += 1;
                    self.apply(r, sessions);
                }
            }
            if !any {
                return n;
            }
        }
    }
}

pub fn concerns(e: &Event, owners: &[OwnerId]) -> bool {
    let has = |o: &OwnerId| owners.contains(o);
    match e {
        Event::Accepted { owner, .. }
        | Event::Canceled { owner, .. }
        | Event::Reduced { owner, .. }
        | Event::Replaced { owner, .. }
        | Event::Triggered { owner, .. } => has(owner),
        Event::Trade {
            maker_owner,
            taker_owner,
            ..
        } => has(maker_owner) || has(taker_owner),
        _ => false,
    }
}

pub fn instrument(id: u32) -> Command {
    Command::AddInstrument(fixtures::instrument(id))
}

pub fn auth() -> Arc<Auth> {
    let a = Auth::new();
    a.add_token("alice", vec![OwnerId(1), OwnerId(2)], Perms::ALL);
    a.add_token(
        "bob",
        vec![OwnerId(3)],
        Perms {
            trade: true,
            transfer: false,
            admin: false,
            read: true,
            ledger_admin: false,
        },
    );
    a.add_token(
        "reader",
        vec![OwnerId(1)],
        Perms {
            read: true,
            ..Perms::default()
        },
    );
    Arc::new(a)
}

/// A decoded server frame, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    LoginAccepted(LoginAccepted),
    LoginRejected(LoginRejected),
    Heartbeat(Heartbeat),
    Logout,
    Report(ExecutionReport),
    Results(TransferResultsHead, Vec<TransferResult>),
    Balance(BalanceMsg),
    OpenOrder(OpenOrderRow),
    Ack(RequestAck),
    Reject(ProtocolRejectMsg),
    Row(TransferRowMsg),
    End(TransfersEndMsg),
}

/// Splits bytes into server messages (panics on anything malformed: the
/// server must never send it).
pub fn decode_all(bytes: &[u8]) -> Vec<Msg> {
    let mut r = FrameReader::new();
    r.push(bytes);
    let mut v = Vec::new();
    while let Some(f) = r.next_frame() {
        let (h, body) = f.expect("server frame well formed");
        v.push(
            match decode_server(&h, body).expect("server frame decodes") {
                ServerMsg::LoginAccepted(m) => Msg::LoginAccepted(m),
                ServerMsg::LoginRejected(m) => Msg::LoginRejected(m),
                ServerMsg::Heartbeat(m) => Msg::Heartbeat(m),
                ServerMsg::Logout => Msg::Logout,
                ServerMsg::ExecutionReport(m) => Msg::Report(m),
                ServerMsg::TransferResults(h, rs) => Msg::Results(
                    h,
                    (0..h.count as usize)
                        .map(|i| transfer_result(rs, i).unwrap())
                        .collect(),
                ),
                ServerMsg::Balance(m) => Msg::Balance(m),
                ServerMsg::OpenOrder(m) => Msg::OpenOrder(m),
                ServerMsg::RequestAck(m) => Msg::Ack(m),
                ServerMsg::ProtocolReject(m) => Msg::Reject(m),
                ServerMsg::TransferRow(m) => Msg::Row(m),
                ServerMsg::TransfersEnd(m) => Msg::End(m),
            },
        );
    }
    assert_eq!(r.buffered(), 0, "server output ends on a frame boundary");
    v
}

/// Everything the session wants to send, decoded.
pub fn drain(s: &mut Session) -> Vec<Msg> {
    let mut buf = Vec::new();
    while s.poll_transmit(&mut buf) {}
    decode_all(&buf)
}

pub fn reports(msgs: &[Msg]) -> Vec<ExecutionReport> {
    msgs.iter()
        .filter_map(|m| match m {
            Msg::Report(r) => Some(*r),
            _ => None,
        })
        .collect()
}

pub fn login_frame(token: &str, session_id: u64, resume_after: u64, flags: u32) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(
        template::LOGIN,
        &Login {
            token: token_bytes(token).unwrap(),
            session_id,
            resume_after,
            flags,
            reserved: 0,
        },
        &mut v,
    );
    v
}

/// A logged-in session (login answered and drained).
pub fn logged_in(id: u64, token: &str, cfg: SessionConfig, auth: &Arc<Auth>) -> Session {
    let mut s = Session::new(id, cfg, auth.clone());
    s.handle_bytes(1, &login_frame(token, 1000 + id, 0, 0));
    let m = drain(&mut s);
    assert!(
        matches!(m.as_slice(), [Msg::LoginAccepted(_)]),
        "login: {m:?}"
    );
    assert!(s.logged_in());
    s
}

pub fn limit(request: u64, owner: u64, coid: u64, side: Side, price: u64, qty: u64) -> Vec<u8> {
    let mut v = Vec::new();
    let m = NewOrderMsg {
        request,
        client_order_id: coid,
        owner,
        price,
        qty,
        instrument: 1,
        side: side as u8,
        ..Default::default()
    };
    encode_frame(template::NEW_ORDER, &m, &mut v);
    v
}

pub fn cancel(request: u64, owner: u64, order_id: u64) -> Vec<u8> {
    let mut v = Vec::new();
    encode_frame(
        template::CANCEL,
        &CancelMsg {
            request,
            owner,
            order_id,
        },
        &mut v,
    );
    v
}
