//! `Playback`: what the node plays in each slot, as a sans-IO state machine (the shape of the
//! consensus machine: `handle_*` in, `poll_output` out, time passed in as network ms).
//!
//! It is the one place that knows, per slot, whether the node plays the winner, a substitute
//! for a blacklisted winner, waits for the winner's first segment, or missed it; per track, how
//! many segments are held (told by the exchange) and whether the exchange gave it up as
//! unavailable (PROTOCOL.md 12.2); and per slot, the segments the player found missing at their
//! deadline. Its outputs are what the driver does about it: fetch a slot's winner, hand the
//! player a new schedule, report to consensus what was played, log.
//!
//! Inputs come from four places: the chain (every call gets the current `&Chain`), consensus
//! ([`Playback::handle_leaning`], [`Playback::handle_substitute`],
//! [`Playback::handle_adopted`]), the exchange ([`Playback::handle_held`],
//! [`Playback::handle_unavailable`]) and the player thread ([`Playback::handle_player`]).
//!
//! Prefetch: a slot's winner is final at `start(k-3)`, but the node's own decision for it is
//! made most of a slot earlier, at the end of the selection window. When that decision names a
//! proposal (consensus's `Action::Leaning`), its track is wanted at once. At finality the same
//! winner needs nothing more; another winner is wanted as usual and the exchange is told to
//! forget the leaning's track, unless another slot wants it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chorus_consensus::{Chain, Hash32, TrackRef};
use chorus_media::player::{PlayerEvent, SlotPlan, TrackAudio, TrackTags, gain_db};
use libp2p::PeerId;

use crate::fetch::{FetchCommand, FetchEvent};

#[cfg(test)]
mod tests;

/// Slots of history kept (states, substitutes, missed segments).
const HISTORY: u64 = 8;
/// A substitute or stand-in fades out over this long before its slot ends (PROTOCOL.md 5).
pub const SUBSTITUTE_FADE_MS: u32 = 2000;
/// Tracks reported unavailable remembered at most (one per withheld winner).
const UNAVAILABLE_MAX: usize = 1024;

/// What the node plays in a slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Playing {
    /// The consensus winner.
    Winner,
    /// A substitute for a blacklisted winner (`None`: silence).
    Substitute(Option<TrackRef>),
    /// A track of the own library in place of a winner that did not arrive in time (missing
    /// or unavailable): the slot still counts as diverged, and consensus is told what the
    /// winner's fate was, not the stand-in.
    StandIn(TrackRef),
    /// No segment of the winner yet: waiting since (network time, ms).
    Waiting(u64),
    /// No segment of the winner arrived within one segment of its start.
    Missing,
}

/// Why a slot did not play its winner.
#[derive(Debug, Clone, PartialEq)]
pub enum Missed {
    /// PROTOCOL.md 12.2: every known provider was asked and delivered nothing (`asked` peers),
    /// or its manifest was `refused`. The node stays eligible.
    Unavailable {
        /// Peers asked.
        asked: usize,
        /// The manifest was refused.
        refused: bool,
    },
    /// No segment arrived in time, for no reason the exchange could name.
    NotFetched,
}

/// What the driver is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Tell the exchange: fetch a slot's winner (or likely winner) by the slot's start, the
    /// proposer as a hint ([`FetchCommand::Want`]), or forget a likely winner that lost
    /// ([`FetchCommand::Forget`]).
    Want(FetchCommand),
    /// The likely winner of `slot` (the node's own decision) is fetched ahead of finality.
    Prefetch {
        /// The slot.
        slot: u64,
        /// The track wanted.
        track: TrackRef,
    },
    /// Finality chose another winner for `slot` than the one fetched ahead of it.
    PrefetchDropped {
        /// The slot.
        slot: u64,
        /// The track fetched ahead, no longer wanted for this slot.
        leaning: TrackRef,
        /// The final winner, wanted now.
        winner: TrackRef,
        /// Whether the exchange was told to forget `leaning` (false: another slot wants it).
        forgotten: bool,
    },
    /// The player's new schedule (from the slot before the current one on).
    Schedule(Vec<SlotPlan>),
    /// Consensus: the node played `track` (None: nothing) in `slot`.
    Played {
        /// The slot.
        slot: u64,
        /// What was played.
        track: Option<Hash32>,
    },
    /// Consensus: the winner of `slot` is unavailable (PROTOCOL.md 12.2).
    Unavailable {
        /// The slot.
        slot: u64,
    },
    /// A new slot began: the phases moved on.
    SlotStarted {
        /// The slot now playing.
        slot: u64,
    },
    /// The slot's winner (or substitute) starts, or waits for its segments.
    Started(Start),
    /// The winner of the slot playing now did not arrive in time: the driver picks a track of
    /// the own library to play in its place ([`Playback::handle_stand_in`]).
    StandIn {
        /// The slot.
        slot: u64,
    },
    /// The slot plays nothing of its winner.
    Diverged {
        /// The slot.
        slot: u64,
        /// Its winner.
        winner: TrackRef,
        /// Why.
        why: Missed,
    },
}

/// What a slot plays as it starts (or as its first segment arrives, `late`).
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// The slot.
    pub slot: u64,
    /// The consensus winner.
    pub winner: TrackRef,
    /// What plays.
    pub playing: Playing,
    /// Milliseconds since the slot's start.
    pub position_ms: u64,
    /// Segments of the winner held.
    pub held: u64,
    /// Segments of the winner.
    pub total: u64,
    /// It started after the slot's start, once its first segment arrived.
    pub late: bool,
}

/// A slot's likely winner, wanted ahead of finality.
#[derive(Debug, Clone, PartialEq)]
struct Leaning {
    track: TrackRef,
    proposer: PeerId,
}

/// The playback state machine.
#[derive(Debug, Default)]
pub struct Playback {
    /// The slot playing now.
    current: Option<u64>,
    playing: BTreeMap<u64, Playing>,
    substitutes: BTreeMap<u64, Option<TrackRef>>,
    /// Tracks of the own library played in place of winners that did not arrive.
    stand_ins: BTreeMap<u64, TrackRef>,
    /// Segments held per track (by track hash): (held, total).
    held: BTreeMap<Hash32, (u64, u64)>,
    /// Tracks held in full.
    complete: BTreeSet<Hash32>,
    /// Tracks the exchange gave up (12.2): peers asked, manifest refused.
    unavailable: BTreeMap<Hash32, (usize, bool)>,
    /// Slots handed to the exchange.
    wanted: BTreeSet<u64>,
    /// Slots not final yet whose likely winner was handed to the exchange.
    leanings: BTreeMap<u64, Leaning>,
    /// Segments the player found missing at their deadline, per slot.
    missed: BTreeMap<u64, BTreeSet<usize>>,
    /// The schedule last handed to the player.
    plans: Vec<SlotPlan>,
    out: VecDeque<Output>,
}

impl Playback {
    /// A machine that holds the tracks of `library` (the node's own) in full.
    pub fn new<'a>(library: impl IntoIterator<Item = &'a TrackRef>) -> Playback {
        let mut p = Playback::default();
        for t in library {
            p.complete.insert(t.track_hash);
            p.held
                .insert(t.track_hash, (t.segment_count, t.segment_count));
        }
        p
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The slot playing now.
    pub fn current(&self) -> Option<u64> {
        self.current
    }

    /// Tracks held in full, by track hash.
    pub fn complete(&self) -> &BTreeSet<Hash32> {
        &self.complete
    }

    /// What the current slot plays, when it is a substitute.
    pub fn substitute_now(&self) -> Option<Option<TrackRef>> {
        match self.playing.get(&self.current?) {
            Some(Playing::Substitute(t)) => Some(t.clone()),
            Some(Playing::StandIn(t)) => Some(Some(t.clone())),
            _ => None,
        }
    }

    /// Segments found missing at their deadline in `slot`.
    pub fn missed(&self, slot: u64) -> usize {
        self.missed.get(&slot).map_or(0, BTreeSet::len)
    }

    /// The schedule last handed to the player.
    pub fn plans(&self) -> &[SlotPlan] {
        &self.plans
    }

    /// When [`Playback::handle_tick`] is next due: the next slot's start, or the moment a
    /// waiting slot counts as diverged.
    pub fn poll_timeout(&self, now: u64, chain: &Chain) -> Option<u64> {
        let next_slot = match chain.slot_at(now) {
            Some(s) => chain.start(s + 1),
            None => chain.start(0).filter(|s| *s > now),
        };
        let diverges = self.current.and_then(|slot| match self.playing.get(&slot) {
            Some(Playing::Waiting(since)) => {
                let start = chain.start(slot)?.max(*since);
                Some(start + chain.rules().segment_ms + 1)
            }
            _ => None,
        });
        [next_slot, diverges].into_iter().flatten().min()
    }

    /// Time passed, or the chain changed: start a new slot when one began, resolve a waiting
    /// one, ask for the winners of decided slots, and hand the player a changed schedule.
    pub fn handle_tick(&mut self, now: u64, chain: &Chain) {
        if let Some(slot) = chain.slot_at(now)
            && self.current != Some(slot)
        {
            self.start_slot(now, slot, chain);
        }
        self.check_waiting(now, chain);
        self.want_decided(now, chain);
        self.reschedule(now, chain);
    }

    /// Consensus decided to play `track` (None: silence) in place of the blacklisted winner of
    /// `slot`.
    pub fn handle_substitute(&mut self, slot: u64, track: Option<TrackRef>) {
        self.substitutes.insert(slot, track);
    }

    /// The driver's answer to [`Output::StandIn`]: `track` (None: the library has nothing to
    /// play, silence goes on) plays in place of `slot`'s winner, from the slot's current
    /// position, faded out at its end.
    pub fn handle_stand_in(&mut self, now: u64, slot: u64, track: Option<TrackRef>, chain: &Chain) {
        let (Some(track), Some(winner)) = (track, chain.winner(slot).cloned()) else {
            return;
        };
        if self.playing.get(&slot) != Some(&Playing::Missing) {
            return;
        }
        self.stand_ins.insert(slot, track.clone());
        let playing = Playing::StandIn(track);
        self.playing.insert(slot, playing.clone());
        let (held, total) = self.held_of(&winner);
        self.out.push_back(Output::Started(Start {
            slot,
            playing,
            winner,
            position_ms: now.saturating_sub(chain.start(slot).unwrap_or(now)),
            held,
            total,
            late: true,
        }));
        self.reschedule(now, chain);
    }

    /// The chain was replaced from `from_slot` on (a fork adopted): those slots are asked for
    /// again and the current one starts again. Likely winners of those slots are forgotten:
    /// their `start(slot)` may have moved, and finality wants the winner afresh.
    pub fn handle_adopted(&mut self, from_slot: u64) {
        self.wanted.retain(|s| *s < from_slot);
        self.leanings.retain(|s, _| *s < from_slot);
        self.current = None;
    }

    /// Consensus decided `slot` (not final yet) for `proposer`'s proposal of `track`, which
    /// plays from `start_ms`: the likely winner is wanted at once (once per slot), with the
    /// proposer as a hint. Ignored for a slot already final or over.
    pub fn handle_leaning(
        &mut self,
        chain: &Chain,
        slot: u64,
        track: TrackRef,
        proposer: PeerId,
        start_ms: u64,
    ) {
        let over = self.current.is_some_and(|c| slot < c);
        if over
            || slot < chain.len()
            || self.wanted.contains(&slot)
            || self.leanings.contains_key(&slot)
        {
            return;
        }
        self.out.push_back(Output::Prefetch {
            slot,
            track: track.clone(),
        });
        self.out.push_back(Output::Want(FetchCommand::Want {
            slot,
            track: track.clone(),
            start_ms,
            segment_ms: chain.rules().segment_ms,
            hint: Some(proposer),
        }));
        self.leanings.insert(slot, Leaning { track, proposer });
    }

    /// An event of the exchange: segments held, a track complete or unavailable.
    pub fn handle_fetched(&mut self, chain: &Chain, event: &FetchEvent) {
        match event {
            FetchEvent::Progress { track, held, total } => self.handle_held(*track, *held, *total),
            FetchEvent::Complete { track, .. } => {
                let n = track.segment_count;
                self.handle_held(track.track_hash, n, n);
            }
            FetchEvent::Unavailable {
                track,
                slot,
                asked,
                refused,
            } => self.handle_unavailable(chain, *track, *slot, *asked, *refused),
            FetchEvent::Corrupt { .. } => {}
        }
    }

    /// The exchange holds `held` of the `total` segments of `track` (by track hash).
    pub fn handle_held(&mut self, track: Hash32, held: u64, total: u64) {
        let e = self.held.entry(track).or_default();
        *e = (e.0.max(held), total);
        if total > 0 && held >= total {
            self.complete.insert(track);
        }
    }

    /// Tracks evicted from the store (by track hash).
    pub fn handle_evicted(&mut self, tracks: &[Hash32]) {
        for t in tracks {
            self.complete.remove(t);
            self.held.remove(t);
        }
    }

    /// PROTOCOL.md 12.2: the exchange gave up `track`, first wanted for `slot`. Reported at
    /// once when it is the winner of a slot not yet over: proposals published before then
    /// carry `unavailable` rather than a claim to play it. Segments that still arrive are
    /// played, and the report then follows what was played.
    pub fn handle_unavailable(
        &mut self,
        chain: &Chain,
        track: Hash32,
        slot: u64,
        asked: usize,
        refused: bool,
    ) {
        if self.unavailable.len() >= UNAVAILABLE_MAX {
            self.unavailable.pop_first();
        }
        self.unavailable.insert(track, (asked, refused));
        let winner_here = chain.winner(slot).is_some_and(|w| w.track_hash == track);
        if winner_here && self.current.is_none_or(|c| slot >= c) {
            self.out.push_back(Output::Unavailable { slot });
        }
    }

    /// An event of the player thread.
    pub fn handle_player(&mut self, now: u64, chain: &Chain, event: PlayerEvent) {
        match event {
            PlayerEvent::Sounded { slot, .. } => {
                // The player found a segment: a waiting slot starts (its segments may have
                // come before the exchange said so).
                if self.current == Some(slot)
                    && matches!(self.playing.get(&slot), Some(Playing::Waiting(_)))
                    && let Some(winner) = chain.winner(slot)
                {
                    let e = self.held.entry(winner.track_hash).or_default();
                    *e = (e.0.max(1), winner.segment_count.max(e.1));
                    self.check_waiting(now, chain);
                }
            }
            PlayerEvent::SegmentMissing { slot, segment } => {
                self.missed.entry(slot).or_default().insert(segment);
            }
        }
    }

    fn held_of(&self, track: &TrackRef) -> (u64, u64) {
        match self.held.get(&track.track_hash) {
            Some(&(held, total)) if total > 0 => (held, total),
            _ => (0, track.segment_count),
        }
    }

    fn start_slot(&mut self, now: u64, slot: u64, chain: &Chain) {
        self.current = Some(slot);
        self.out.push_back(Output::SlotStarted { slot });
        self.forget_before(slot.saturating_sub(HISTORY));
        let Some(winner) = chain.winner(slot).cloned() else {
            return;
        };
        let position_ms = now.saturating_sub(chain.start(slot).unwrap_or(now));
        let (held, total) = self.held_of(&winner);
        let playing = match self.substitutes.get(&slot) {
            Some(sub) => Playing::Substitute(sub.clone()),
            None if held == 0 => Playing::Waiting(now),
            None => Playing::Winner,
        };
        self.playing.insert(slot, playing.clone());
        if playing == Playing::Winner && self.unavailable.contains_key(&winner.track_hash) {
            // Reported unavailable early; it arrived after all.
            self.out.push_back(Output::Played {
                slot,
                track: Some(winner.track_hash),
            });
        }
        self.out.push_back(Output::Started(Start {
            slot,
            winner,
            playing,
            position_ms,
            held,
            total,
            late: false,
        }));
    }

    /// A slot waiting for its first segment starts as soon as one is held (at the current
    /// position, PROTOCOL.md 8), and counts as diverged when none came within one segment.
    fn check_waiting(&mut self, now: u64, chain: &Chain) {
        let Some(slot) = self.current else { return };
        let Some(&Playing::Waiting(since)) = self.playing.get(&slot) else {
            return;
        };
        let Some(winner) = chain.winner(slot).cloned() else {
            return;
        };
        let start = chain.start(slot).unwrap_or(now);
        let (held, total) = self.held_of(&winner);
        if held > 0 {
            if self.unavailable.contains_key(&winner.track_hash) {
                self.out.push_back(Output::Played {
                    slot,
                    track: Some(winner.track_hash),
                });
            }
            self.playing.insert(slot, Playing::Winner);
            self.out.push_back(Output::Started(Start {
                slot,
                winner,
                playing: Playing::Winner,
                position_ms: now.saturating_sub(start),
                held,
                total,
                late: true,
            }));
        } else if now > start.max(since) + chain.rules().segment_ms
            || self.unavailable.contains_key(&winner.track_hash)
        {
            let why = match self.unavailable.get(&winner.track_hash) {
                Some(&(asked, refused)) => {
                    // 12.2: diverged for display, eligible all the same.
                    self.out.push_back(Output::Unavailable { slot });
                    Missed::Unavailable { asked, refused }
                }
                None => {
                    self.out.push_back(Output::Played { slot, track: None });
                    Missed::NotFetched
                }
            };
            self.playing.insert(slot, Playing::Missing);
            self.out.push_back(Output::Diverged { slot, winner, why });
            self.out.push_back(Output::StandIn { slot });
        }
    }

    /// Asks the exchange for every decided slot from the one playing on (each once). A slot
    /// whose likely winner was wanted ahead ([`Playback::handle_leaning`]) needs nothing more
    /// when it won; when another track won, the winner is wanted and the leaning's track is
    /// forgotten unless another slot wants it.
    fn want_decided(&mut self, now: u64, chain: &Chain) {
        let from = chain.slot_at(now).unwrap_or(0);
        let segment_ms = chain.rules().segment_ms;
        for slot in from..chain.len() {
            if self.wanted.contains(&slot) {
                continue;
            }
            let (Some(track), Some(start_ms)) = (chain.winner(slot), chain.start(slot)) else {
                continue;
            };
            self.wanted.insert(slot);
            let hint = chain.proposer(slot);
            let want = Output::Want(FetchCommand::Want {
                slot,
                track: track.clone(),
                start_ms,
                segment_ms,
                hint,
            });
            match self.leanings.remove(&slot) {
                Some(l) if l.track.track_hash == track.track_hash => {
                    // The fetch is under way. The same track proposed by another author only
                    // adds a holder (the exchange keeps the track's earliest deadline).
                    if hint.is_some_and(|h| h != l.proposer) {
                        self.out.push_back(want);
                    }
                    // An `unavailable` the exchange reported before the slot was final.
                    if self.unavailable.contains_key(&track.track_hash) {
                        self.out.push_back(Output::Unavailable { slot });
                    }
                }
                leaning => {
                    self.out.push_back(want);
                    if let Some(l) = leaning {
                        self.overturned(from, chain, slot, l.track, track.clone());
                    }
                }
            }
        }
    }

    /// Finality chose `winner` for `slot`, not the likely winner `leaning` wanted ahead: the
    /// exchange forgets `leaning` unless another slot wants it (the likely winner of a slot not
    /// final yet, or the winner of a decided slot from `from`, the one playing, on).
    fn overturned(
        &mut self,
        from: u64,
        chain: &Chain,
        slot: u64,
        leaning: TrackRef,
        winner: TrackRef,
    ) {
        let hash = leaning.track_hash;
        let leaned_elsewhere = self.leanings.values().any(|l| l.track.track_hash == hash);
        let won_elsewhere = (from..chain.len())
            .filter(|s| *s != slot)
            .any(|s| chain.winner(s).is_some_and(|w| w.track_hash == hash));
        let forgotten = !(leaned_elsewhere || won_elsewhere);
        self.out.push_back(Output::PrefetchDropped {
            slot,
            leaning,
            winner,
            forgotten,
        });
        if forgotten {
            self.out
                .push_back(Output::Want(FetchCommand::Forget { track: hash }));
        }
    }

    /// The player's schedule from the slot before the current one on: winners at their
    /// loudness gain, substitutes for blacklisted winners (silence when there is none).
    fn reschedule(&mut self, now: u64, chain: &Chain) {
        let from = match chain.slot_at(now) {
            Some(s) => s.saturating_sub(1),
            None if chain.start(0).is_some() => 0,
            None => return,
        };
        let target = chain.rules().target_lufs;
        let gap = chain.rules().gap_ms;
        let mut plans = Vec::new();
        for slot in from..chain.len() {
            let (Some(winner), Some(start_ms)) = (chain.winner(slot), chain.start(slot)) else {
                continue;
            };
            let end_ms = chain
                .start(slot + 1)
                .unwrap_or(start_ms + winner.duration_ms + gap);
            let (track, fade_out_ms) =
                match (self.substitutes.get(&slot), self.stand_ins.get(&slot)) {
                    (Some(sub), _) => (sub.as_ref(), SUBSTITUTE_FADE_MS),
                    (None, Some(stand_in)) => (Some(stand_in), SUBSTITUTE_FADE_MS),
                    (None, None) => (Some(winner), 0),
                };
            plans.push(SlotPlan {
                slot,
                start_ms,
                end_ms,
                audio: track.map(|t| TrackAudio {
                    manifest_id: t.manifest_id,
                    gain_db: gain_db(target, t.loudness_lufs),
                    fade_out_ms,
                    tags: TrackTags {
                        title: t.title.clone(),
                        artist: t.artist.clone(),
                        album: t.album.clone(),
                    },
                }),
            });
        }
        if plans != self.plans {
            self.plans = plans.clone();
            self.out.push_back(Output::Schedule(plans));
        }
    }

    fn forget_before(&mut self, keep_from: u64) {
        self.playing = self.playing.split_off(&keep_from);
        self.substitutes = self.substitutes.split_off(&keep_from);
        self.stand_ins = self.stand_ins.split_off(&keep_from);
        self.missed = self.missed.split_off(&keep_from);
        self.wanted = self.wanted.split_off(&keep_from);
        self.leanings = self.leanings.split_off(&keep_from);
    }
}
