//! Who won: adversaries against their fair share, and fairness among honest proposers.

use std::collections::BTreeMap;

use chorus_consensus::Hash32;
use serde::Serialize;

use super::stats::{binomial_sf, chi_square_gof};
use crate::world::Observer;

/// Wins of the adversaries and fairness among honest proposers, over the slots the live honest
/// majority decided.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Wins {
    /// Slots won by a proposal (not replays) whose proposer is known.
    pub slots_won: u64,
    /// Slots won by an adversary identity.
    pub adversary_wins: u64,
    /// Adversary wins by kind.
    pub adversary_wins_by_kind: BTreeMap<String, u64>,
    /// Expected adversary wins if every eligible identity had the same chance: the sum over
    /// won slots of k/n (k adversary identities among n eligible).
    pub adversary_fair_share: f64,
    /// `P(X >= adversary_wins)` for `X ~ Binomial(slots_won, k/n)` (mean k/n): below 0.001
    /// means the adversaries win more than their share allows.
    pub adversary_win_p: f64,
    /// Pearson's chi-square of wins per honest proposer against the uniform share among the
    /// eligible honest proposers of each slot won by an honest node.
    pub fairness_chi2: f64,
    /// Its degrees of freedom.
    pub fairness_df: u64,
    /// Its p-value (1.0 when there is nothing to test).
    pub fairness_p: f64,
}

impl Wins {
    /// From the winners' proposal ids, slot by slot (None: a replay).
    pub fn new(winners: &BTreeMap<u64, Option<Hash32>>, obs: &Observer) -> Wins {
        let mut w = Wins {
            fairness_p: 1.0,
            ..Wins::default()
        };
        let mut observed: BTreeMap<usize, f64> = BTreeMap::new();
        let mut expected: BTreeMap<usize, f64> = BTreeMap::new();
        let mut share_sum = 0.0;
        for (slot, id) in winners {
            let (Some(id), Some(eligible)) = (id, obs.eligible.get(slot)) else {
                continue;
            };
            let Some(&node) = obs.proposers.get(id) else {
                continue;
            };
            w.slots_won += 1;
            let n = eligible.honest.len() + eligible.adversaries;
            if n > 0 {
                share_sum += eligible.adversaries as f64 / n as f64;
            }
            if let Some(kind) = obs.adversaries.get(&node) {
                w.adversary_wins += 1;
                *w.adversary_wins_by_kind
                    .entry((*kind).to_owned())
                    .or_default() += 1;
                continue;
            }
            *observed.entry(node).or_default() += 1.0;
            let h = eligible.honest.len() as f64;
            for &i in &eligible.honest {
                *expected.entry(i).or_default() += 1.0 / h;
            }
        }
        w.adversary_fair_share = share_sum;
        if w.slots_won > 0 {
            let p = share_sum / w.slots_won as f64;
            w.adversary_win_p = binomial_sf(w.slots_won, p, w.adversary_wins);
        } else {
            w.adversary_win_p = 1.0;
        }
        let (obs_v, exp_v): (Vec<f64>, Vec<f64>) = expected
            .iter()
            .map(|(i, e)| (observed.get(i).copied().unwrap_or(0.0), *e))
            .unzip();
        if exp_v.len() > 1 {
            let (stat, df, p) = chi_square_gof(&obs_v, &exp_v);
            (w.fairness_chi2, w.fairness_df, w.fairness_p) = (stat, df, p);
        }
        w
    }
}
