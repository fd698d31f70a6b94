//! The log lines (and metrics) of what the state machines decided: one function per kind of
//! output, so that the driver only routes outputs here. Event names and fields are the
//! operator's interface (docs/node.md) and the tests'.

use chorus_consensus::{Chain, FinalReport, ForkChoice, ForkReport, StatusSummary, TrackRef};
use libp2p::PeerId;
use tracing::{info, warn};

use super::playback::{Missed, Playing, Start};
use crate::metrics::Metrics;

/// "Artist - Title", or the title alone.
pub fn track_name(track: &TrackRef) -> String {
    if track.artist.is_empty() {
        track.title.clone()
    } else {
        format!("{} - {}", track.artist, track.title)
    }
}

/// PROTOCOL.md 1: every slot start moves each pending slot one phase on.
pub fn phase(slot: u64, lookahead: u64) {
    let l = lookahead;
    info!(
        event = "phase",
        slot,
        playing = slot,
        final_through = slot + l - 2,
        selection = slot + l - 1,
        proposal = slot + l,
        "phase slot={slot}: playing {slot}, final through {}, selection {}, proposal {}",
        slot + l - 2,
        slot + l - 1,
        slot + l
    );
}

/// `playing` (or `waiting`).
pub fn started(s: &Start) {
    let Start {
        slot,
        ref winner,
        position_ms: position,
        held,
        total,
        ..
    } = *s;
    let name = track_name(winner);
    match &s.playing {
        Playing::Winner if s.late => {
            info!(event = "playing", slot, track_hash = %winner.track_hash, track = %name, position_ms = position, segments_held = held, segments = total, late = true,
                "playing slot={slot} track=\"{name}\" position={position}ms segments={held}/{total} (started late)");
        }
        Playing::Winner => {
            info!(event = "playing", slot, track_hash = %winner.track_hash, track = %name, position_ms = position, segments_held = held, segments = total,
                "playing slot={slot} track=\"{name}\" position={position}ms segments={held}/{total}");
        }
        Playing::Substitute(sub) => {
            let (hash, sub_name) = sub.as_ref().map_or((None, "silence".to_owned()), |t| {
                (Some(t.track_hash), track_name(t))
            });
            info!(event = "playing", slot, track_hash = hash.map(|h| h.to_hex()).as_deref(), track = %sub_name, substitute = true, consensus_track = %winner.track_hash,
                "playing slot={slot} substitute \"{sub_name}\" instead of the blacklisted \"{name}\"");
        }
        Playing::StandIn(t) => {
            let sub_name = track_name(t);
            info!(event = "playing", slot, track_hash = %t.track_hash, track = %sub_name, substitute = true, stand_in = true, consensus_track = %winner.track_hash, position_ms = position,
                "playing slot={slot} \"{sub_name}\" from the own library in place of \"{name}\", which did not arrive (position={position}ms, fading out at the slot's end)");
        }
        Playing::Waiting(_) => {
            info!(event = "waiting", slot, track_hash = %winner.track_hash, "slot={slot} \"{name}\": waiting for its segments");
        }
        Playing::Missing => {}
    }
}

/// `diverged`: nothing of the winner played.
pub fn diverged(metrics: &Metrics, slot: u64, winner: &TrackRef, why: &Missed) {
    metrics.divergences.inc();
    let name = track_name(winner);
    match why {
        Missed::Unavailable { asked, refused } => {
            let reason = if *refused {
                "its manifest was refused".to_owned()
            } else {
                format!("none of the {asked} peers asked had it")
            };
            warn!(event = "diverged", slot, reason = "unavailable", asked, refused, track_hash = %winner.track_hash,
                "diverged slot={slot} reason=unavailable: no segment of \"{name}\" arrived and {reason}; reported unavailable (this node stays eligible)");
        }
        Missed::NotFetched => {
            warn!(event = "diverged", slot, reason = "not_fetched", track_hash = %winner.track_hash,
                "diverged slot={slot} reason=not_fetched: no segment of \"{name}\" arrived in time");
        }
    }
}

/// `diverged` with reason `blacklisted`: consensus plays a substitute.
pub fn substituted(
    metrics: &Metrics,
    slot: u64,
    winner: Option<&TrackRef>,
    rule: &str,
    sub: Option<&TrackRef>,
) {
    metrics.divergences.inc();
    let sub = sub.map_or_else(|| "silence".to_owned(), track_name);
    warn!(event = "diverged", slot, reason = "blacklisted", track_hash = winner.map(|w| w.track_hash.to_hex()).as_deref(), rule = %rule, substitute = %sub,
        "diverged slot={slot} reason=blacklisted: \"{}\" is on the blacklist ({rule}); playing \"{sub}\" instead",
        winner.map_or_else(String::new, track_name));
}

/// `final`, and a `conflict` line per conflicting decision.
pub fn final_slot(metrics: &Metrics, chain: &Chain, report: &FinalReport) {
    let Some(track) = chain.winner(report.slot) else {
        return;
    };
    let ticket = chain.decided(report.slot).and_then(|d| d.ticket);
    let proposer = report.proposer.map(|p| p.to_string());
    let conflicts = report.conflicts.len();
    metrics.decisions.inc();
    metrics.conflicts.inc_by(conflicts as u64);
    info!(event = "final", slot = report.slot, track_hash = %track.track_hash, manifest_id = %track.manifest_id, track = %track_name(track),
        ticket = ticket.map(|t| format!("{t:016x}")).as_deref(), proposer = proposer.as_deref().unwrap_or("-"), proposal_id = report.proposal_id.map(|h| h.to_hex()).as_deref(), replay = report.proposal_id.is_none(),
        conflicts, decisions = report.decisions,
        "final slot={} track=\"{}\" ticket={} proposer={} conflicts={conflicts}",
        report.slot, track_name(track),
        ticket.map_or_else(|| "replay".to_owned(), |t| format!("{t:016x}")),
        proposer.as_deref().unwrap_or("-"));
    for c in &report.conflicts {
        info!(event = "conflict", slot = report.slot, from = %c.from, winner = %c.winner, reason = ?c.reason,
            "conflict at slot {}: {} decided {} ({:?})", report.slot, c.from, c.winner, c.reason);
    }
}

/// `peer`: a peer's state in the table changed.
pub fn peer_changed(c: &chorus_consensus::PeerChange) {
    info!(event = "peer", peer = %c.peer, from = %c.from, to = %c.to, reason = %c.reason,
        "peer {} {}: {}", c.peer, c.to, c.reason);
}

/// `fork`.
pub fn fork(r: &ForkReport) {
    let choice = match &r.choice {
        ForkChoice::Keep => "keeping own chain".to_owned(),
        ForkChoice::Wait => "waiting one more evaluation".to_owned(),
        ForkChoice::Adopt { from } => format!("adopting the other chain from {from}"),
        other => format!("{other:?}"),
    };
    warn!(event = "fork", slot = r.slot, own_hash = %r.own.chain_hash, own_supporters = r.own.supporters,
        other_hash = %r.other.chain_hash, other_supporters = r.other.supporters, choice = %choice,
        "fork detected at slot {}: own chain {} has {} supporters, other {} has {}; {choice}",
        r.slot, r.own.chain_hash, r.own.supporters, r.other.chain_hash, r.other.supporters);
}

/// `adopted`.
pub fn adopted(from_slot: u64, slots: usize) {
    info!(
        event = "adopted",
        from_slot,
        slots,
        "adopted the other chain from slot {from_slot} ({slots} slots); rejoining playback"
    );
}

/// `status`: the peer table as this node publishes its Status, and the peer gauges.
pub fn status(metrics: &Metrics, summary: &StatusSummary, connected: usize) {
    // Peers only: `in_sync` counts this node too.
    metrics
        .peers_in_sync
        .set(summary.in_sync.saturating_sub(1) as i64);
    metrics.peers_diverged.set(summary.diverged.len() as i64);
    metrics.peers_excluded.set(summary.excluded.len() as i64);
    metrics.peers_connected.set(connected as i64);
    // Lists as one string of comma-separated peer ids (JSON log fields are plain values).
    let list = |v: &[PeerId]| {
        v.iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    info!(event = "status", slot = summary.slot, in_sync = summary.in_sync, total = summary.total,
        diverged = %list(&summary.diverged), excluded = %list(&summary.excluded), "{summary}");
}

/// `prefetch`: the node's own decision for `slot` names `track`, fetched now, before the slot
/// is final.
pub fn prefetch(slot: u64, track: &TrackRef) {
    info!(event = "prefetch", slot, track_hash = %track.track_hash, track = %track_name(track),
        "prefetch slot={slot} track=\"{}\": the node's own decision, wanted now, ahead of finality", track_name(track));
}

/// `prefetch_dropped`: finality chose `winner` for `slot`, not the `leaning` fetched ahead.
pub fn prefetch_dropped(slot: u64, leaning: &TrackRef, winner: &TrackRef, forgotten: bool) {
    let what = if forgotten {
        "its fetch is dropped"
    } else {
        "its fetch goes on for another slot"
    };
    info!(event = "prefetch_dropped", slot, track_hash = %leaning.track_hash, winner_hash = %winner.track_hash, forgotten,
        "prefetch_dropped slot={slot} track=\"{}\": finality chose \"{}\"; {what}", track_name(leaning), track_name(winner));
}

/// `proposed`.
pub fn proposed(slot: u64, track: &TrackRef) {
    info!(event = "proposed", slot, track_hash = %track.track_hash,
        "proposed slot={slot} track=\"{}\"", track_name(track));
}

/// Protocol violations and corrupt blocks seen, by peer, with their log lines under a budget (a
/// flood must not flood the log).
pub struct Misbehaviour {
    /// Violations in all.
    pub violations: u64,
    /// Corrupt blocks by peer.
    pub corrupt: std::collections::HashMap<PeerId, u64>,
    log: crate::ratelog::LogBudget,
}

impl Default for Misbehaviour {
    fn default() -> Self {
        Misbehaviour {
            violations: 0,
            corrupt: std::collections::HashMap::new(),
            log: crate::ratelog::LogBudget::new(10, std::time::Duration::from_secs(10)),
        }
    }
}

impl Misbehaviour {
    /// `violation`: `peer` broke the protocol.
    pub fn violation(&mut self, metrics: &Metrics, peer: &PeerId, reason: &dyn std::fmt::Display) {
        self.violations += 1;
        metrics.violations.inc();
        if let Some(n) = self.log.take(std::time::Instant::now()) {
            warn!(event = "violation", peer = %peer, reason = %reason, "violation by {peer}: {reason}{}", crate::ratelog::left_out(n));
        }
    }

    /// `corrupt_block`: `peer` served bytes that hash to something else.
    pub fn corrupt(&mut self, metrics: &Metrics, peer: PeerId, block: &chorus_consensus::Hash32) {
        *self.corrupt.entry(peer).or_default() += 1;
        metrics.corrupt_blocks.inc();
        warn!(event = "corrupt_block", peer = %peer, block = %block,
            "peer {peer} sent block {block} with bytes that hash to something else: dropped, peer left out of the exchange for {} s, asking another provider",
            crate::fetch::BAN.as_secs());
    }
}

/// `fetched` (when any block came from peers), and the exchange's metrics.
pub fn fetched(metrics: &Metrics, event: &crate::fetch::FetchEvent) {
    let crate::fetch::FetchEvent::Complete {
        track,
        fetched,
        bytes,
        elapsed,
    } = event
    else {
        return;
    };
    metrics.fetch_bytes.inc_by(*bytes);
    if *fetched > 0 {
        metrics.fetch_seconds.observe(elapsed.as_secs_f64());
        info!(event = "fetched", track_hash = %track.track_hash, blocks = fetched, bytes, ms = elapsed.as_millis() as u64,
            "fetched \"{}\": {fetched} blocks, {bytes} bytes in {} ms", track_name(track), elapsed.as_millis());
    }
}

/// At start: the own enrollment as the chain records it (PROTOCOL.md 12.3), and how the seed
/// was found.
pub fn enrollment(consensus: &chorus_consensus::Consensus, origin: &crate::enrollment::SeedOrigin) {
    use crate::enrollment::SeedOrigin;
    let view = consensus.enrollment();
    let delay = consensus.chain().rules().enroll_delay;
    let seed = match origin {
        SeedOrigin::Loaded => "loaded".to_owned(),
        SeedOrigin::Created => "created (none was stored)".to_owned(),
        SeedOrigin::Replaced(aside) => format!(
            "created (the stored one was damaged, kept as {})",
            aside.display()
        ),
    };
    match (view.enrolled_at, view.eligible_from) {
        (Some(slot), Some(from)) => info!(
            event = "enrollment",
            enrolled_at = slot,
            eligible_from = from,
            roster = view.roster,
            "enrolled at slot {slot}, proposes from slot {from}; the roster holds {}",
            view.roster
        ),
        _ if view.reenrolling => warn!(event = "reenroll", seed = %seed, roster = view.roster,
            "this node's beacon seed was {seed}: its commit is not the one the chain enrolled, so it re-enrolls \
             (its Enroll goes out with each Status; it proposes again {delay} slots after a winning proposal carries it)"),
        _ => info!(event = "enrolling", seed = %seed, roster = view.roster,
            "not enrolled yet (seed {seed}): publishing its Enroll; it proposes {delay} slots after a winning proposal carries it"),
    }
}

/// The chain enrolled this node's commit.
pub fn enrolled(slot: u64, eligible_from: u64, roster: usize) {
    info!(
        event = "enrolled",
        slot,
        eligible_from,
        roster,
        "enrolled at slot {slot}: proposes from slot {eligible_from}; the roster holds {roster}"
    );
}

/// A peer's proposal revealed a value that is not the next of its committed chain.
pub fn reveal_invalid(peer: &PeerId, slot: u64, reason: &str) {
    warn!(event = "reveal_invalid", peer = %peer, slot, "proposal of {peer} for slot {slot} refused: {reason}");
}
