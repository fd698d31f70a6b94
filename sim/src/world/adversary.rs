//! What misbehaving nodes do to their traffic. Their machines run as usual; what they publish
//! and serve passes through here.

use std::collections::BTreeSet;

use chorus_consensus::message::track_index;
use chorus_consensus::schedule::{proposal_window, selection_window};
use chorus_consensus::{Envelope, Hash32, Message, Proposal};

use super::{Event, World};
use crate::adversary::AdversaryKind;
use crate::config::Protocol;

/// Junk envelopes a spammer publishes per slot.
pub const SPAM_PER_SLOT: usize = 8;
/// Size of an oversized junk body (over the 64 KiB gossip limit).
const OVERSIZED_BYTES: usize = 70_000;
const _: () = assert!(OVERSIZED_BYTES > chorus_consensus::limits::GOSSIP_MAX_BYTES);

impl World {
    /// A machine asked to publish `envelope`: honest nodes gossip it; adversaries may rewrite,
    /// double or delay it.
    pub(super) fn publish(&mut self, i: usize, envelope: Envelope) {
        let kind = envelope.kind.clone();
        let Some(adversary) = self.nodes[i].adversary.filter(|_| kind == "proposal") else {
            self.gossip(i, envelope, &kind);
            return;
        };
        let Some(proposal) = self.open_proposal(i, &envelope) else {
            self.gossip(i, envelope, &kind);
            return;
        };
        match adversary {
            AdversaryKind::Equivocate => {
                let second = self.equivocation(i, &proposal);
                self.gossip(i, envelope, &kind);
                if let Some(second) = second {
                    self.gossip(i, second, &kind);
                }
            }
            AdversaryKind::WrongRules => {
                let wrong = self.wrong_rules(i, proposal).unwrap_or(envelope);
                self.gossip(i, wrong, &kind);
            }
            AdversaryKind::Late => {
                let Some(m) = self.nodes[i].machine() else {
                    return;
                };
                let chain = m.chain();
                let (Some(pw), Some(sw)) = (
                    proposal_window(chain, proposal.slot),
                    selection_window(chain, proposal.slot),
                ) else {
                    return;
                };
                // After the proposal window, before the decision point (node clock).
                let span = sw.end_ms.saturating_sub(pw.end_ms);
                let local = pw.end_ms + 1 + self.adv_rng.below(span.max(1));
                let at = local
                    .saturating_add_signed(-self.nodes[i].skew_ms)
                    .max(self.now);
                let inc = self.nodes[i].inc;
                self.push(
                    at,
                    Event::Publish {
                        node: i,
                        inc,
                        envelope,
                    },
                );
            }
            AdversaryKind::Grinder => match self.cfg.protocol {
                Protocol::V1 => self.gossip(i, envelope, &kind),
                Protocol::V1_1 => self.hold_proposal(i, envelope, &proposal),
            },
            AdversaryKind::Withhold | AdversaryKind::Spam | AdversaryKind::Liar => {
                self.gossip(i, envelope, &kind);
            }
        }
    }

    pub(super) fn open_proposal(&self, i: usize, envelope: &Envelope) -> Option<Proposal> {
        let network_id = *self.nodes[i].machine()?.chain().network_id();
        match envelope.clone().open(&network_id).ok()?.message {
            Message::Proposal(p) => Some(p),
            _ => None,
        }
    }

    /// A second, different, validly signed body for the same slot: another track.
    fn equivocation(&self, i: usize, proposal: &Proposal) -> Option<Envelope> {
        let node = &self.nodes[i];
        let other = node
            .library
            .iter()
            .find(|t| t.track_hash != proposal.track.track_hash)?;
        let hashes: Vec<Hash32> = node.library.iter().map(|t| t.track_hash).collect();
        let mut second = proposal.clone();
        second.track = other.clone();
        second.track_index = track_index(&hashes, &other.track_hash)?;
        Envelope::seal(&second, &node.key).ok()
    }

    /// The proposal re-signed with a rules hash that is not the network's.
    fn wrong_rules(&self, i: usize, mut proposal: Proposal) -> Option<Envelope> {
        proposal.rules_hash = Hash32::digest(b"chorus-sim: other rules");
        Envelope::seal(&proposal, &self.nodes[i].key).ok()
    }

    /// What `server` answers to a `Proposals` request (None: no answer).
    pub(super) fn serve_proposals(
        &mut self,
        server: usize,
        envelopes: Vec<Envelope>,
    ) -> Option<Vec<Envelope>> {
        let node = &self.nodes[server];
        let own_key = node.key.public().encode_protobuf();
        match node.adversary {
            Some(AdversaryKind::Withhold) => None,
            Some(AdversaryKind::Late) => {
                Some(envelopes.into_iter().filter(|e| e.key != own_key).collect())
            }
            Some(AdversaryKind::WrongRules) => Some(
                envelopes
                    .into_iter()
                    .map(|e| {
                        if e.key != own_key {
                            return e;
                        }
                        self.open_proposal(server, &e)
                            .and_then(|p| self.wrong_rules(server, p))
                            .unwrap_or(e)
                    })
                    .collect(),
            ),
            Some(AdversaryKind::Grinder) => Some(
                envelopes
                    .into_iter()
                    .filter(|e| !self.grind.unpublished(&e.id()))
                    .collect(),
            ),
            _ => Some(envelopes),
        }
    }

    /// Slot `s` starts: a winner from a withholding adversary's library cannot be fetched
    /// (it serves no segments, and nobody else holds them), so every live honest node playing
    /// it tells its machine so, as the node's driver does when its fetcher asked every known
    /// provider: `unavailable` in version 1.1 (PROTOCOL.md 12.2), nothing played in version 1.
    /// The withholder's own machine is told nothing: its `plays` claim the winner. This is the
    /// capture attack of 12.2: in version 1 every honest node is ineligible five slots later
    /// and only adversaries can win there, again and again.
    pub(super) fn withheld_winner(&mut self, s: u64) {
        let withheld: BTreeSet<_> = self
            .nodes
            .iter()
            .filter(|n| n.adversary == Some(AdversaryKind::Withhold))
            .flat_map(|n| n.library.iter().map(|t| t.track_hash))
            .collect();
        if withheld.is_empty() {
            return;
        }
        let protocol = self.cfg.protocol;
        let mut any = false;
        for node in self.nodes.iter_mut().filter(|n| n.adversary.is_none()) {
            let Some(m) = node.machine_mut() else {
                continue;
            };
            if !m
                .chain()
                .winner(s)
                .is_some_and(|w| withheld.contains(&w.track_hash))
            {
                continue;
            }
            match protocol {
                Protocol::V1 => m.report_played(s, None),
                Protocol::V1_1 => m.report_unavailable(s),
            }
            any = true;
        }
        if any {
            self.obs.withheld.insert(s);
            // The reports change what the machines publish (a Status flip) at once.
            for i in 0..self.nodes.len() {
                if self.nodes[i].adversary.is_none() && self.nodes[i].machine().is_some() {
                    self.reschedule(i);
                }
            }
        }
    }

    /// Whether `server` answers no request at all.
    pub(super) fn withholds(&self, server: usize) -> bool {
        self.nodes[server].adversary == Some(AdversaryKind::Withhold)
    }

    /// A withholding adversary's gossip never reaches a fixed, seeded half of the nodes.
    pub(super) fn choose_victims(&mut self, i: usize) {
        if self.nodes[i].adversary != Some(AdversaryKind::Withhold) {
            return;
        }
        let n = self.nodes.len();
        let victims = (0..n)
            .filter(|&j| j != i && self.adv_rng.chance(0.5))
            .collect();
        self.nodes[i].victims = victims;
    }

    /// A spammer's junk for one slot: undecodable bodies, oversized envelopes, bad signatures
    /// and unknown kinds, in turn.
    pub(super) fn spam(&mut self, i: usize) {
        if self.nodes[i].adversary != Some(AdversaryKind::Spam) || self.nodes[i].machine().is_none()
        {
            return;
        }
        for j in 0..SPAM_PER_SLOT {
            let junk: Vec<u8> = (0..24).map(|_| self.adv_rng.next_u64() as u8).collect();
            let key = &self.nodes[i].key;
            let envelope = match j % 4 {
                0 => Envelope::sign_bytes("proposal", junk, key),
                1 => Envelope::sign_bytes("tally", vec![0xa5; OVERSIZED_BYTES], key),
                2 => Envelope::sign_bytes("decision", junk, key).map(|mut e| {
                    e.sig[0] ^= 0xff;
                    e
                }),
                _ => Envelope::sign_bytes("chat", junk, key),
            };
            if let Ok(envelope) = envelope {
                self.gossip(i, envelope, "spam");
            }
        }
    }
}
