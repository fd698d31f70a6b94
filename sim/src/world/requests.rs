//! The `/chorus/sync/1` requests between nodes (PROTOCOL.md 2): `Proposals{slot, ids}` and
//! `Chain{from_slot}`, one latency draw per leg, each leg lost or cut off like a message. The
//! server's machine builds the answer as a node's driver has it do
//! ([`chorus_consensus::Consensus::answer_proposals`], [`chorus_consensus::Consensus::answer_chain`]);
//! an adversary may change what it serves ([`World::serve_proposals`], [`World::withholds`]).

use chorus_consensus::{DecidedSlot, Envelope, Hash32};

use super::node::NodeState;
use super::{Event, World};

impl World {
    /// Sends `client`'s `Proposals{slot, ids}` request to `server`.
    pub(super) fn request_proposals(
        &mut self,
        client: usize,
        server: usize,
        slot: u64,
        ids: Vec<Hash32>,
    ) {
        if let Some(at) = self.leg(client, server) {
            let event = Event::FetchRequest {
                server,
                client,
                slot,
                ids,
            };
            self.push(at, event);
        }
    }

    /// Sends `client`'s `Chain{from_slot}` request to `server`.
    pub(super) fn request_chain(&mut self, client: usize, server: usize, from_slot: u64) {
        if let Some(at) = self.leg(client, server) {
            let event = Event::ChainRequest {
                server,
                client,
                from_slot,
            };
            self.push(at, event);
        }
    }

    /// A `Proposals` request reached `server`: it answers if it runs (and serves at all).
    pub(super) fn proposals_asked(
        &mut self,
        server: usize,
        client: usize,
        slot: u64,
        ids: &[Hash32],
    ) {
        let Some(m) = self.nodes[server].machine() else {
            return;
        };
        let envelopes = m.answer_proposals(slot, ids);
        let Some(envelopes) = self.serve_proposals(server, envelopes) else {
            return;
        };
        if let Some(at) = self.leg(server, client) {
            let inc = self.nodes[client].inc;
            let event = Event::FetchResponse {
                client,
                inc,
                envelopes,
            };
            self.push(at, event);
        }
    }

    /// The answer to a `Proposals` request reached `client` (void if it restarted since).
    pub(super) fn proposals_answered(&mut self, client: usize, inc: u32, envelopes: Vec<Envelope>) {
        if self.nodes[client].inc != inc {
            return;
        }
        let t = self.node_time(client);
        if let Some(m) = self.nodes[client].machine_mut() {
            m.handle_fetched(t, envelopes);
            self.drain_actions(client);
        }
    }

    /// A `Chain` request reached `server`: it answers if it runs and is no withholder.
    pub(super) fn chain_asked(&mut self, server: usize, client: usize, from_slot: u64) {
        if self.withholds(server) {
            return;
        }
        let Some(m) = self.nodes[server].machine() else {
            return;
        };
        let slots = m.answer_chain(from_slot);
        if let Some(at) = self.leg(server, client) {
            let inc = self.nodes[client].inc;
            let event = Event::ChainResponse {
                client,
                inc,
                server,
                slots,
            };
            self.push(at, event);
        }
    }

    /// The answer to a `Chain` request reached `client` (void if it restarted since): a node
    /// syncing before it starts appends it, a running one hands it to its machine.
    pub(super) fn chain_answered(
        &mut self,
        client: usize,
        inc: u32,
        server: usize,
        slots: Vec<DecidedSlot>,
    ) {
        if self.nodes[client].inc != inc {
            return;
        }
        if matches!(self.nodes[client].state, NodeState::Syncing { .. }) {
            self.synced(client, server, slots);
            return;
        }
        let t = self.node_time(client);
        let peer = self.nodes[server].peer;
        let Some(m) = self.nodes[client].machine_mut() else {
            return;
        };
        // A refused answer that breaks a rule (PROTOCOL.md 12.1) comes out as an
        // `Action::Violation`, counted below; one from another chain (a fork older than the
        // slots asked for) is no violation, and the machine asks again.
        let _ = m.handle_chain(t, peer, slots);
        self.drain_actions(client);
    }
}
