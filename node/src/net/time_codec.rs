//! The `/chorus/time/1` codec. It stamps the four times of PROTOCOL.md 7 at the stream itself,
//! in the connection's task: `t0` just before the request is written, `t1` when its first bytes
//! arrive, `t2` just before the answer is written and `t3` when its first bytes arrive.
//!
//! Stamping in the swarm's event loop instead would count the loop's queueing and, on the
//! client, the opening and negotiation of the substream, which only the request direction
//! pays: a bias of a few hundred microseconds that the minimum round trip cannot filter out.
//! The wire format is plain CBOR of [`Ping`] and [`Pong`].

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

/// The codec; it holds the node's clock.
#[derive(Clone)]
pub struct TimeCodec {
    clock: Arc<Clock>,
}

impl TimeCodec {
    /// A codec stamping with `clock`'s local time.
    pub fn new(clock: Arc<Clock>) -> Self {
        TimeCodec { clock }
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
        Ok(TimeResponse {
            pong: decode(&bytes)?,
            received_us,
        })
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
