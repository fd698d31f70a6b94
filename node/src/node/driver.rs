//! The driver: moves events between the state machines and the world, and nothing else. Gossip,
//! answers and timers go to the consensus machine; the exchange's and the player's events and
//! the chain go to the playback machine; each machine's outputs become a network call, a
//! fetch, a write (off the async threads), a schedule for the player or a log line. The policy
//! lives in the machines (`chorus_consensus::Consensus`, [`Playback`], the fetch planner).

use std::time::Duration;

use anyhow::Result;
use chorus_consensus::{Action, Topic};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::network::Answer;
use super::playback::Output;
use super::report::{self, Misbehaviour};
use super::timekeeper;
use super::{Inputs, Parts, garbage, queueing, snapshot};
use crate::fetch::{FetchCommand, FetchEvent};
use crate::net::Event;

/// See the module's doc.
pub struct Driver {
    p: Parts,
    bad: Misbehaviour,
}

fn interval(every: Duration) -> Interval {
    let mut i = tokio::time::interval(every);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

impl Driver {
    /// A driver of `parts`.
    pub fn new(parts: Parts) -> Driver {
        Driver {
            p: parts,
            bad: Misbehaviour::default(),
        }
    }

    /// Runs until `shutdown` fires or the swarm stops; then flushes the chain log and the live
    /// playlist.
    pub async fn run(mut self, mut inputs: Inputs, shutdown: CancellationToken) -> Result<()> {
        self.p.net.subscribe_and_provide(&self.p.library).await;
        for event in std::mem::take(&mut inputs.replay) {
            self.on_event(event).await;
        }
        self.apply_blacklist(true, true);
        self.apply_queue(true);
        let (mut tick, mut time_tick) = (
            interval(Duration::from_millis(500)),
            interval(timekeeper::TICK),
        );
        let mut garbage_tick = interval(Duration::from_millis(700));
        loop {
            let wake = self.p.time.clock().instant_at(self.next_wake());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = inputs.events.recv() => match event {
                    Some(e) => self.on_event(e).await,
                    None => break,
                },
                Some(answer) = inputs.answers.recv() => self.on_answer(answer),
                Some(e) = inputs.fetched.recv() => self.on_fetched(e),
                Some(e) = inputs.player.recv() => {
                    let now = self.now();
                    self.p.playback.handle_player(now, self.p.consensus.chain(), e);
                }
                _ = tokio::time::sleep_until(wake) => {}
                _ = tick.tick() => {
                    self.apply_blacklist(false, false);
                    self.apply_queue(false);
                    self.publish_snapshot();
                }
                _ = time_tick.tick() => {
                    let net = &self.p.net;
                    self.p.time.sample_due(&net.client, &net.answers(), &net.connected);
                    // Chain fetches ask the peers whose time sample is overdue last.
                    self.p.consensus.set_stalled(self.p.time.stalled());
                }
                _ = garbage_tick.tick(), if self.p.garbage => garbage::send(&self.p).await,
            }
            self.step().await;
        }
        self.p.chain_log.follow(self.p.consensus.chain());
        self.p.chain_log.close().await;
        self.p.audio.close().await;
        info!(event = "stopped", "node stopped");
        Ok(())
    }

    fn now(&self) -> u64 {
        self.p.time.clock().now_ms()
    }

    /// The next moment something is due in either machine.
    fn next_wake(&self) -> u64 {
        let now = self.now();
        let playback = self.p.playback.poll_timeout(now, self.p.consensus.chain());
        [self.p.consensus.poll_timeout(), playback]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + 1000)
    }

    /// After every input: timers, then both machines' outputs until neither has any.
    async fn step(&mut self) {
        let now = self.now();
        self.p.consensus.handle_timeout(now);
        loop {
            self.p.playback.handle_tick(now, self.p.consensus.chain());
            let mut any = false;
            while let Some(action) = self.p.consensus.poll_action() {
                any = true;
                self.on_action(action).await;
            }
            while let Some(output) = self.p.playback.poll_output() {
                any = true;
                self.on_output(output).await;
            }
            if !any {
                break;
            }
        }
        self.p.chain_log.follow(self.p.consensus.chain());
    }

    async fn on_event(&mut self, event: Event) {
        let now = self.now();
        match event {
            Event::Listening(addr) => self.p.net.listening(addr),
            Event::Connected(peer, addr) => {
                let net = &self.p.net;
                self.p.time.sample(&net.client, &net.answers(), peer, &addr);
                self.p.net.connected(peer, addr);
                self.p.consensus.peer_connected(peer);
            }
            Event::Route(peer, addr) => {
                // A direct connection (a hole punched) makes the peer a time source at once.
                let net = &self.p.net;
                self.p.time.sample(&net.client, &net.answers(), peer, &addr);
                self.p.net.route(peer, addr);
            }
            Event::Reachability(r) => self.p.net.reachability = r,
            Event::Disconnected(peer) => {
                self.p.net.disconnected(&peer);
                self.p.consensus.peer_disconnected(&peer);
                self.p.time.forget(&peer);
            }
            Event::Gossip {
                id,
                source,
                topic,
                data,
            } => {
                let verdict =
                    self.p
                        .net
                        .validate(&mut self.p.consensus, now, source, &topic, &data);
                let acceptance = verdict.unwrap_or_else(|e| {
                    self.bad.violation(&self.p.metrics, &source, &e);
                    libp2p::gossipsub::MessageAcceptance::Reject
                });
                self.p.net.client.validate(id, source, acceptance).await;
            }
            Event::SyncRequest {
                peer,
                request,
                channel,
            } => {
                let consensus = &self.p.consensus;
                self.p.net.respond(consensus, peer, request, channel).await;
            }
        }
    }

    fn on_answer(&mut self, answer: Answer) {
        let now = self.now();
        match answer {
            Answer::Proposals(envelopes) => self.p.consensus.handle_fetched(now, envelopes),
            Answer::Chain(peer, slots) => {
                let taken = slots.and_then(|s| {
                    let e = self.p.consensus.handle_chain(now, peer, s).err();
                    e.map_or(Ok(()), |e| Err(format!("not taken: {e}")))
                });
                if let Err(e) = taken {
                    warn!(event = "chain_sync_failed", peer = %peer, "chain from {peer}: {e}");
                }
            }
            Answer::Time(peer, exchange) => {
                let addr = self.p.net.connected.get(&peer);
                self.p.time.answered(peer, addr, exchange.as_ref());
            }
        }
    }

    fn on_fetched(&mut self, event: FetchEvent) {
        let chain = self.p.consensus.chain();
        match &event {
            FetchEvent::Complete { track, .. } => {
                report::fetched(&self.p.metrics, &event);
                self.p.storage.fetched(track, chain);
            }
            FetchEvent::Corrupt { peer, block } => {
                self.bad.corrupt(&self.p.metrics, *peer, block);
                self.publish_snapshot();
            }
            FetchEvent::Progress { .. } | FetchEvent::Unavailable { .. } => {}
        }
        self.p.playback.handle_fetched(chain, &event);
    }

    async fn on_action(&mut self, action: Action) {
        match action {
            Action::Publish { topic, envelope } => {
                if topic == Topic::Status {
                    let summary = self.p.consensus.status_summary(self.now());
                    report::status(&self.p.metrics, &summary, self.p.net.connected.len());
                }
                self.p.net.publish(topic, &envelope).await;
            }
            Action::Proposed { slot, track } => {
                report::proposed(slot, &track);
                match self.p.queue.proposed(&track.track_hash) {
                    Some(queueing::Taken::Dj(entry)) => {
                        info!(event = "queue_proposed", slot, entry, track_hash = %track.track_hash,
                            "proposed entry {entry} of the DJ's queue for slot {slot}");
                    }
                    Some(queueing::Taken::Request(request)) => {
                        info!(event = "request_proposed", slot, request, track_hash = %track.track_hash,
                            "proposed listener request {request} for slot {slot}");
                    }
                    None => {}
                }
            }
            Action::FetchProposals { peer, slot, ids } => {
                self.p.net.fetch_proposals(peer, slot, ids)
            }
            Action::FetchChain { peer, from_slot } => self.p.net.fetch_chain(peer, from_slot),
            Action::Leaning {
                slot,
                track,
                proposer,
                start_ms,
            } => {
                let chain = self.p.consensus.chain();
                self.p
                    .playback
                    .handle_leaning(chain, slot, track, proposer, start_ms);
            }
            Action::Decided(d) => {
                self.p.storage.decided(d.slot, &d.track);
                self.apply_blacklist(false, true);
            }
            Action::Final(r) => report::final_slot(&self.p.metrics, self.p.consensus.chain(), &r),
            Action::PlaySubstitute { slot, track } => {
                let winner = self.p.consensus.chain().winner(slot);
                let rule = self.p.blacklist.rule_for(winner);
                report::substituted(&self.p.metrics, slot, winner, &rule, track.as_ref());
                self.p.playback.handle_substitute(slot, track);
            }
            Action::PeerChanged(c) => report::peer_changed(&c),
            Action::Fork(r) => report::fork(&r),
            Action::Adopted { from_slot, slots } => {
                report::adopted(from_slot, slots.len());
                self.p
                    .chain_log
                    .adopted(self.p.consensus.chain(), from_slot);
                self.p.playback.handle_adopted(from_slot);
                self.apply_blacklist(false, true);
            }
            Action::Enrolled {
                slot,
                eligible_from,
                roster,
            } => report::enrolled(slot, eligible_from, roster),
            Action::RevealInvalid { peer, slot, reason } => {
                report::reveal_invalid(&peer, slot, &reason)
            }
            Action::Violation { peer, reason } => {
                self.bad.violation(&self.p.metrics, &peer, &reason)
            }
        }
    }

    async fn on_output(&mut self, output: Output) {
        let chain = self.p.consensus.chain();
        match output {
            Output::Want(want) => {
                if let FetchCommand::Want {
                    track, start_ms, ..
                } = &want
                {
                    // Super-seeding holds its copy bound until shortly before the slot.
                    let ahead = Duration::from_millis(start_ms.saturating_sub(self.now()));
                    let at = std::time::Instant::now() + ahead;
                    self.p.net.client.due(track.manifest_id, at).await;
                }
                if self.p.fetch.send(want).await.is_err() {
                    warn!("the segment exchange is gone: a winner will not be fetched");
                }
            }
            Output::Schedule(plans) => self.p.audio.schedule(plans),
            Output::Played { slot, track } => self.p.consensus.report_played(slot, track),
            Output::Unavailable { slot } => self.p.consensus.report_unavailable(slot),
            Output::StandIn { slot } => {
                let track = self.p.consensus.pick_substitute(slot);
                let now = self.now();
                let chain = self.p.consensus.chain();
                self.p.playback.handle_stand_in(now, slot, track, chain);
            }
            Output::SlotStarted { slot } => {
                self.p.metrics.slot.set(slot as i64);
                report::phase(slot, chain.lookahead());
                self.apply_blacklist(false, false);
                let evicted = self
                    .p
                    .storage
                    .enforce_budget(slot, self.p.consensus.chain())
                    .await;
                self.p.playback.handle_evicted(&evicted);
                // The status document and the live playlist show the new slot before the log
                // says it plays.
                self.p.audio.sync_live().await;
                self.publish_snapshot();
            }
            Output::Prefetch { slot, track } => report::prefetch(slot, &track),
            Output::PrefetchDropped {
                slot,
                leaning,
                winner,
                forgotten,
            } => report::prefetch_dropped(slot, &leaning, &winner, forgotten),
            Output::Started(start) => report::started(&start),
            Output::Diverged { slot, winner, why } => {
                report::diverged(&self.p.metrics, slot, &winner, &why)
            }
        }
    }

    /// Reloads the blacklist when its file changed (or `force`); when it did, or the chain
    /// `changed`, hands consensus the hashes it catches.
    fn apply_blacklist(&mut self, force: bool, changed: bool) {
        if !self.p.blacklist.reload(force) && !changed {
            return;
        }
        let hashes = self
            .p
            .blacklist
            .hashes(self.p.consensus.chain(), &self.p.library);
        self.p.consensus.set_blacklist(hashes);
    }

    /// Rereads the DJ's queue and the listeners' requests when a file changed (or `force`) and
    /// hands consensus the tracks to propose first.
    fn apply_queue(&mut self, force: bool) {
        if self.p.queue.reload(force) {
            self.p.consensus.set_queue(self.p.queue.hashes());
            // `/status` shows the queue before the log says it changed.
            self.publish_snapshot();
            self.p.queue.log(force);
        }
    }

    fn publish_snapshot(&self) {
        snapshot::publish(&self.p, &self.bad);
    }
}
