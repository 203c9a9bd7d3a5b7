//! The market-data client: one `bourse-md/1` connection, authenticated,
//! that sends control records and yields decoded items (`MdItem`).
//!
//! Invariants: bytes from the server are decoded by `control::decode_item`
//! (never trusted: a bad record is `MdError::Protocol`, never a panic); one
//! read buffer per connection, compacted only when it holds no whole record.

use crate::control::{decode_item, encode_ctl, Ctl, MdItem};
use crate::msg::Channel;
use crate::wire as fw;
use gateway::net::{self, Tuning};
use std::net::SocketAddr;

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum MdError {
    /// Socket / TLS.
    #[error(transparent)]
    Net(#[from] gateway::net::NetError),
    /// Connecting.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// Stream ended.
    #[error("stream closed")]
    Closed,
    /// Bad bytes from the server.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A market-data subscriber connection.
#[derive(Debug)]
pub struct MdClient {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: Vec<u8>,
    at: usize,
}

impl MdClient {
    /// Connects to `addr` trusting `cert_der` and authenticates with `token`.
    pub async fn connect(
        addr: SocketAddr,
        cert_der: &[u8],
        token: &str,
        tuning: &Tuning,
    ) -> Result<MdClient, MdError> {
        let qc = net::client_config(cert_der, fw::ALPN, tuning)?;
        let endpoint = net::client_endpoint(addr, qc, tuning)?;
        let conn = endpoint
            .connect(addr, gateway::identity::SERVER_NAME)?
            .await?;
        let (send, recv) = conn.open_bi().await?;
        let mut c = MdClient {
            _endpoint: endpoint,
            conn,
            send,
            recv,
            buf: Vec::with_capacity(256 << 10),
            at: 0,
        };
        c.request(&Ctl::Auth(token.to_string())).await?;
        Ok(c)
    }

    /// The QUIC connection.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Closes the connection with a `bourse-md/1` close code
    /// (`md_close`) and a reason.
    pub fn close(&self, code: u32, reason: &[u8]) {
        self.conn.close(quinn::VarInt::from_u32(code), reason);
    }

    /// Sends a control record.
    pub async fn request(&mut self, c: &Ctl) -> Result<(), MdError> {
        let mut b = Vec::with_capacity(80);
        encode_ctl(c, &mut b);
        self.send_raw(&b).await
    }

    /// Sends raw bytes (tests send garbage with it).
    pub async fn send_raw(&mut self, b: &[u8]) -> Result<(), MdError> {
        self.send.write_all(b).await?;
        Ok(())
    }

    /// Subscribes to (instrument, channel).
    pub async fn subscribe(&mut self, instrument: u32, channel: Channel) -> Result<(), MdError> {
        self.request(&Ctl::Subscribe {
            instrument,
            channel,
        })
        .await
    }

    fn parse(&mut self) -> Result<Option<MdItem>, MdError> {
        match decode_item(&self.buf[self.at..]) {
            Ok(Some((item, n))) => {
                self.at += n;
                Ok(Some(item))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(MdError::Protocol(e.0)),
        }
    }

    /// The next item.
    pub async fn next(&mut self) -> Result<MdItem, MdError> {
        loop {
            if let Some(i) = self.parse()? {
                return Ok(i);
            }
            if self.at > 0 {
                self.buf.drain(..self.at);
                self.at = 0;
            }
            match self.recv.read_chunk(256 << 10, true).await? {
                Some(c) => self.buf.extend_from_slice(&c.bytes),
                None => return Err(MdError::Closed),
            }
        }
    }
}
