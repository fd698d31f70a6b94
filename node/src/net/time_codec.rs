//! The `/chorus/time/1` codec. It stamps the four times of PROTOCOL.md 7 at the stream itself,
//! in the connection's task: `t0` just before the request is written, `t1` when its first bytes
//! arrive, `t2` just before the answer is written and `t3` when its first bytes arrive.
//!
//! Stamping in the swarm's event loop instead would count the loop's queueing and, on the
//! client, the opening and negotiation of the substream, which only the request direction
//! pays: a bias of a few hundred microseconds that the minimum round trip cannot filter out.
//! The wire format is plain CBOR of [`Ping`] and [`Pong`].
//!
//! The client never takes `t0` from the answer (PROTOCOL.md 12.4): the codec keeps the `t0` it
//! wrote and puts it into the answer it reads, so what reaches the driver carries this node's
//! own stamp. An answer that echoes another `t0` is refused with an error (and counted on the
//! clock, [`Clock::false_echoes`]): a peer that rewrites the echo is lying about its stamps.
//! This relies on `libp2p-request-response` (0.30, `handler.rs`,
//! `on_fully_negotiated_outbound`) writing the request and reading its response with one clone
//! of the codec, in one task; each outbound stream gets a fresh clone of a codec that never
//! wrote, so no `t0` leaks from one request to another.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use futures::prelude::*;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

use super::protocol::{Ping, Pong};
use crate::clock::Clock;

/// Largest time message read (both are a few dozen bytes).
const MAX: u64 = 1024;

/// A request as the server sees it: the ping and `t1`.
#[derive(Debug, Clone, Copy)]
pub struct TimeRequest {
    /// The client's message; its `t0` is stamped by the codec when written.
    pub ping: Ping,
    /// When its first bytes arrived (server's local clock, µs); 0 on the client side.
    pub received_us: u64,
}

/// An answer as the client sees it: the pong and `t3`.
#[derive(Debug, Clone, Copy)]
pub struct TimeResponse {
    /// The server's answer; its `t2` is stamped by the codec when written.
    pub pong: Pong,
    /// When its first bytes arrived (client's local clock, µs); 0 on the server side.
    pub received_us: u64,
}

/// The codec; it holds the node's clock, and on the client side the `t0` it wrote.
#[derive(Clone)]
pub struct TimeCodec {
    clock: Arc<Clock>,
    /// The `t0` of the request this clone wrote (client side), µs.
    sent_t0: Option<u64>,
}

impl TimeCodec {
    /// A codec stamping with `clock`'s local time.
    pub fn new(clock: Arc<Clock>) -> Self {
        TimeCodec {
            clock,
            sent_t0: None,
        }
    }

    fn now(&self) -> u64 {
        self.clock.local_us(Instant::now()).max(0) as u64
    }

    /// Reads a whole message; returns it and when its first bytes arrived.
    async fn read_stamped<T: AsyncRead + Unpin + Send>(
        &self,
        io: &mut T,
    ) -> io::Result<(Vec<u8>, u64)> {
        let mut first = [0u8; 64];
        let n = io.read(&mut first).await?;
        let stamp = self.now();
        let mut bytes = first[..n].to_vec();
        io.take(MAX).read_to_end(&mut bytes).await?;
        Ok((bytes, stamp))
    }

    async fn write_cbor<T: AsyncWrite + Unpin + Send, M: serde::Serialize>(
        io: &mut T,
        message: &M,
    ) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(64);
        ciborium::into_writer(message, &mut bytes).map_err(io::Error::other)?;
        io.write_all(&bytes).await
    }
}

fn decode<M: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<M> {
    ciborium::from_reader(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl Codec for TimeCodec {
    type Protocol = StreamProtocol;
    type Request = TimeRequest;
    type Response = TimeResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<TimeRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let (bytes, received_us) = self.read_stamped(io).await?;
        Ok(TimeRequest {
            ping: decode(&bytes)?,
            received_us,
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<TimeResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let (bytes, received_us) = self.read_stamped(io).await?;
        let sent = self
            .sent_t0
            .ok_or_else(|| io::Error::other("a time answer read before its request was written"))?;
        let mut pong: Pong = decode(&bytes)?;
        if pong.t0 != sent {
            self.clock.note_false_echo();
            tracing::debug!(
                echoed = pong.t0,
                sent,
                "time answer refused: it echoes t0 = {} µs, this node sent {sent}",
                pong.t0
            );
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "time answer echoes t0 = {} µs but this node sent {sent} µs: refused as a lie",
                    pong.t0
                ),
            ));
        }
        // Our own stamp, whatever the peer wrote (equal here, and kept so by construction).
        pong.t0 = sent;
        Ok(TimeResponse { pong, received_us })
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        _req: TimeRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let ping = Ping { t0: self.now() };
        self.sent_t0 = Some(ping.t0);
        Self::write_cbor(io, &ping).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: TimeResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let pong = Pong {
            t2: self.now(),
            ..res.pong
        };
        Self::write_cbor(io, &pong).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    fn protocol() -> StreamProtocol {
        StreamProtocol::new("/chorus/time/1")
    }

    fn cbor<M: serde::Serialize>(m: &M) -> Vec<u8> {
        let mut bytes = Vec::new();
        ciborium::into_writer(m, &mut bytes).expect("CBOR encodes");
        bytes
    }

    /// Writes a request with `codec` and returns the `t0` it put on the wire.
    fn write_ping(codec: &mut TimeCodec) -> u64 {
        let mut wire = Cursor::new(Vec::new());
        let request = TimeRequest {
            ping: Ping { t0: 0 },
            received_us: 0,
        };
        block_on(codec.write_request(&protocol(), &mut wire, request)).expect("written");
        let ping: Ping = decode(wire.get_ref()).expect("a ping");
        ping.t0
    }

    #[test]
    fn the_answer_carries_our_own_t0_and_a_false_echo_is_refused_and_counted() {
        let clock = Arc::new(Clock::new(0));
        let template = TimeCodec::new(clock.clone());

        // An honest answer: our t0 comes back.
        let mut codec = template.clone();
        let t0 = write_ping(&mut codec);
        assert!(t0 > 0);
        let pong = Pong {
            t0,
            t1: t0 + 100,
            t2: t0 + 130,
        };
        let mut wire = Cursor::new(cbor(&pong));
        let answer = block_on(codec.read_response(&protocol(), &mut wire)).expect("accepted");
        assert_eq!(answer.pong.t0, t0);
        assert!(answer.received_us >= t0);

        // The attack: the echo moved so that the round trip looks like 0. Refused, counted.
        let mut codec = template.clone();
        let t0 = write_ping(&mut codec);
        let lie = Pong {
            t0: t0 + 250,
            t1: t0 + 5_000_250,
            t2: t0 + 5_000_250,
        };
        let mut wire = Cursor::new(cbor(&lie));
        let err = block_on(codec.read_response(&protocol(), &mut wire)).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(clock.false_echoes(), 1);

        // A clone that wrote nothing (as each new stream's is) has no t0 to accept.
        let mut fresh = template.clone();
        let mut wire = Cursor::new(cbor(&pong));
        assert!(block_on(fresh.read_response(&protocol(), &mut wire)).is_err());
        assert_eq!(clock.false_echoes(), 1);
    }
}
