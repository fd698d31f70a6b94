//! The request-response protocols the event loop answers and asks (`/chorus/sync/1`,
//! `/chorus/time/1`) and the DHT's provider queries: each outbound request waits in a pending
//! map until its answer or failure settles it.

use std::collections::HashMap;

use libp2p::PeerId;
use libp2p::kad::{self, GetProvidersOk, QueryId};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};

use super::{EventLoop, Reply};
use crate::net::protocol::{Pong, SyncRequest, SyncResponse};
use crate::net::time_codec::{TimeRequest, TimeResponse};
use crate::net::{Event, RequestError};

impl EventLoop {
    /// Answers a providers query with the first providers found (or none once it ends).
    pub(super) fn on_providers(
        &mut self,
        id: QueryId,
        result: kad::GetProvidersResult,
        done: bool,
    ) {
        if let Some((found, _)) = self.pending_providers.get_mut(&id)
            && let Ok(GetProvidersOk::FoundProviders { providers, .. }) = result
        {
            found.extend(providers);
        }
        let finished = done
            || self
                .pending_providers
                .get(&id)
                .is_some_and(|(found, _)| !found.is_empty());
        if finished && let Some((found, reply)) = self.pending_providers.remove(&id) {
            let _ = reply.send(found);
            if !done && let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                q.finish();
            }
        }
    }

    pub(super) fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        if let Some((peer, request, channel)) = route(&mut self.pending_sync, event, |r| r) {
            self.emit(Event::SyncRequest {
                peer,
                request,
                channel,
            });
        }
    }

    pub(super) fn on_time(&mut self, event: request_response::Event<TimeRequest, TimeResponse>) {
        let answered = |r: TimeResponse| (r.pong, r.received_us);
        if let Some((_, request, channel)) = route(&mut self.pending_time, event, answered) {
            // t1 was stamped by the codec on arrival, t2 is stamped as it writes.
            let pong = Pong {
                t0: request.ping.t0,
                t1: request.received_us,
                t2: 0,
            };
            let response = TimeResponse {
                pong,
                received_us: 0,
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .time
                .send_response(channel, response);
        }
    }
}

/// One request-response event of any of the protocols: an inbound request is returned for the
/// caller to answer; an answer (through `answered`) or an outbound failure settles the pending
/// request it belongs to; the rest is nothing to do.
pub(super) fn route<Req, Resp, T>(
    pending: &mut HashMap<OutboundRequestId, (PeerId, Reply<T>)>,
    event: request_response::Event<Req, Resp>,
    answered: impl FnOnce(Resp) -> T,
) -> Option<(PeerId, Req, ResponseChannel<Resp>)> {
    match event {
        request_response::Event::Message { peer, message, .. } => match message {
            request_response::Message::Request {
                request, channel, ..
            } => return Some((peer, request, channel)),
            request_response::Message::Response {
                request_id,
                response,
            } => settle(pending, request_id, Ok(answered(response))),
        },
        request_response::Event::OutboundFailure {
            peer,
            request_id,
            error,
            ..
        } => fail(pending, request_id, peer, &error),
        _ => {}
    }
    None
}

/// Hands a pending request its result (the requester may have gone: then nobody listens).
fn settle<T>(
    pending: &mut HashMap<OutboundRequestId, (PeerId, Reply<T>)>,
    request_id: OutboundRequestId,
    result: Result<T, RequestError>,
) {
    if let Some((_, reply)) = pending.remove(&request_id) {
        let _ = reply.send(result);
    }
}

/// Ends a pending request with the failure libp2p reported.
fn fail<T>(
    pending: &mut HashMap<OutboundRequestId, (PeerId, Reply<T>)>,
    request_id: OutboundRequestId,
    peer: PeerId,
    error: &request_response::OutboundFailure,
) {
    let reason = error.to_string();
    settle(
        pending,
        request_id,
        Err(RequestError::Failed { peer, reason }),
    );
}
