//! What the grinders won (`--adversary grinder:COUNT`), against what protocol 1.1 promises: the
//! enrolled share of the eligible identities, plus what withholding can add, plus a binomial
//! margin.

use std::collections::BTreeMap;
use std::ops::Range;

use chorus_consensus::Hash32;
use serde::Serialize;

use crate::world::Observer;

/// Standard deviations of the margin over the bound's mean.
pub const MARGIN_SIGMAS: f64 = 3.0;

/// The grinders' wins, over the slots the live honest majority decided by a proposal whose
/// publisher is known (those of [`super::Wins`]).
///
/// The bound: in a slot where the grinders hold a share `s` of the identities that could
/// propose (under 1.1 the enrolled ones), they win it with probability `s` with fair tickets.
/// Withholding (PROTOCOL.md 12.3) lets them choose between two beacons for the slot L + 1
/// later, but only when they held the lowest ticket of the earlier slot (probability `s`), and
/// it gains only when the other beacon makes them win where theirs does not (at most
/// `s (1 - s)`): at most `p = s + s^2 (1 - s)` per slot. The bound is the mean of `p` over the
/// slots plus [`MARGIN_SIGMAS`] standard deviations of the sum of those Bernoulli draws,
/// divided by the slots.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GrinderWins {
    /// Grinder identities (nodes), not counting the fresh ones.
    pub identities: usize,
    /// Slots won by a proposal whose publisher is known.
    pub slots_won: u64,
    /// Those won by a grinder (with a fresh identity or its own).
    pub wins: u64,
    /// `wins / slots_won`.
    pub share: f64,
    /// Slots of the run a grinder proposed for with a fresh identity of a winning ticket.
    pub targeted_slots: u64,
    /// Slots won by such a fresh identity.
    pub targeted_won: u64,
    /// Slots of the run for which a grinder withheld its winning proposal.
    pub silent_slots: u64,
    /// Of those, the slots k whose slot k + L + 1 is in the run too.
    pub silent_checked: u64,
    /// Of those, the slots k whose slot k + L + 1 a grinder then held the lowest ticket of, as
    /// foreseen: it won that slot, or withheld it in turn.
    pub silent_foreseen: u64,
    /// The mean over the slots won of the grinders' share of the identities that could
    /// propose.
    pub enrolled_share: f64,
    /// The mean over the slots won of `s^2 (1 - s)`, what withholding can add.
    pub withholding_bound: f64,
    /// [`MARGIN_SIGMAS`] standard deviations of the wins under the bound, as a share.
    pub margin: f64,
    /// `enrolled_share + withholding_bound + margin`.
    pub bound: f64,
    /// `share <= bound`.
    pub within_bound: bool,
}

impl GrinderWins {
    /// From the winners' proposal ids, slot by slot (None: a replay); None when the run has no
    /// grinder.
    pub fn new(
        winners: &BTreeMap<u64, Option<Hash32>>,
        obs: &Observer,
        slots: Range<u64>,
    ) -> Option<GrinderWins> {
        let identities = obs
            .adversaries
            .values()
            .filter(|k| **k == "grinder")
            .count();
        if identities == 0 {
            return None;
        }
        let mut g = GrinderWins {
            identities,
            targeted_slots: obs.targeted.range(slots.clone()).count() as u64,
            silent_slots: obs.silent.range(slots.clone()).count() as u64,
            ..GrinderWins::default()
        };
        let won_by_grinder = |slot: u64| {
            winners
                .get(&slot)
                .and_then(|id| obs.proposers.get(id.as_ref()?))
                .is_some_and(|node| obs.adversaries.get(node) == Some(&"grinder"))
        };
        // slots.start is L: the slot whose ticket uses beacon(k) is k + L + 1.
        let checked: Vec<u64> = obs
            .silent
            .range(slots.clone())
            .map(|k| k + slots.start + 1)
            .filter(|j| slots.contains(j))
            .collect();
        g.silent_checked = checked.len() as u64;
        g.silent_foreseen = checked
            .iter()
            .filter(|j| won_by_grinder(**j) || obs.silent.contains(j))
            .count() as u64;
        let (mut share_sum, mut gain_sum, mut variance) = (0.0, 0.0, 0.0);
        for (slot, id) in winners {
            let (Some(id), Some(eligible)) = (id, obs.eligible.get(slot)) else {
                continue;
            };
            let Some(node) = obs.proposers.get(id) else {
                continue;
            };
            g.slots_won += 1;
            if obs.adversaries.get(node) == Some(&"grinder") {
                g.wins += 1;
                g.targeted_won += u64::from(obs.ground.contains(id));
            }
            let n = eligible.honest.len() + eligible.adversaries;
            let s = if n > 0 {
                eligible.grinders as f64 / n as f64
            } else {
                0.0
            };
            let gain = s * s * (1.0 - s);
            share_sum += s;
            gain_sum += gain;
            variance += (s + gain) * (1.0 - s - gain);
        }
        if g.slots_won > 0 {
            let won = g.slots_won as f64;
            g.share = g.wins as f64 / won;
            g.enrolled_share = share_sum / won;
            g.withholding_bound = gain_sum / won;
            g.margin = MARGIN_SIGMAS * variance.sqrt() / won;
        }
        g.bound = g.enrolled_share + g.withholding_bound + g.margin;
        g.within_bound = g.share <= g.bound;
        Some(g)
    }
}
