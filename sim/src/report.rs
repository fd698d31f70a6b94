//! What a run measured, as text or JSON.
//!
//! Files: `stats` (chi-square and binomial tails), `wins` (adversary wins and fairness),
//! `grinder` (the grinders' wins against protocol 1.1's bound).

mod grinder;
pub mod stats;
mod wins;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chorus_consensus::{Chain, Hash32};
use serde::Serialize;

use crate::config::SimConfig;
use crate::world::{ChurnCounts, Observer};
pub use grinder::{GrinderWins, MARGIN_SIGMAS};
pub use wins::Wins;

/// What the world hands over at the end of a run.
pub struct RunData<'a> {
    /// The chains of the honest nodes running at the end.
    pub chains: Vec<&'a Chain>,
    /// What was recorded during the run.
    pub observed: &'a Observer,
    /// Adversary identities.
    pub adversaries: usize,
    /// Honest nodes running at the end.
    pub honest_live: usize,
}

/// Message counters, by message kind.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    published: BTreeMap<String, (u64, u64)>,
    delivered: BTreeMap<String, (u64, u64)>,
    requests: u64,
    violations: u64,
    fork_adoptions: u64,
    conflicts: u64,
}

impl Traffic {
    /// A node published a message of `size` bytes (its encoded envelope).
    pub fn count_publish(&mut self, kind: &str, size: usize) {
        let e = self.published.entry(kind.to_owned()).or_default();
        e.0 += 1;
        e.1 += size as u64;
    }

    /// A message of `size` bytes will reach `count` nodes.
    pub fn count_deliveries(&mut self, kind: &str, size: usize, count: usize) {
        let e = self.delivered.entry(kind.to_owned()).or_default();
        e.0 += count as u64;
        e.1 += (size * count) as u64;
    }

    /// A proposal fetch request was sent.
    pub fn count_request(&mut self) {
        self.requests += 1;
    }

    /// A node adopted another chain (PROTOCOL.md 9).
    pub fn count_fork_adoption(&mut self) {
        self.fork_adoptions += 1;
    }

    /// A node's finality saw conflicting decisions.
    pub fn count_conflicts(&mut self, n: usize) {
        self.conflicts += n as u64;
    }

    /// A machine reported a violation.
    pub fn count_violation(&mut self) {
        self.violations += 1;
    }
}

/// Traffic of one message kind, per node per slot.
#[derive(Clone, Debug, Serialize)]
pub struct KindTraffic {
    /// Messages a node publishes.
    pub sent: f64,
    /// Messages a node receives.
    pub received: f64,
    /// Bytes a node receives.
    pub bytes_received: f64,
}

/// The results of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The seed (printed first: it reproduces the run).
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Slots decided by consensus (after the genesis queue).
    pub slots: u64,
    /// Latency preset.
    pub latency: String,
    /// Loss probability.
    pub loss: f64,
    /// The protocol version whose rules the nodes followed (`1` or `1.1`).
    pub protocol: String,
    /// Slots of the run whose winner no honest node could fetch (a withholding adversary's
    /// track): reported `unavailable` (1.1) or as nothing played (1).
    pub withheld_slots: u64,
    /// Adversary identities.
    pub adversaries: usize,
    /// Honest nodes running at the end (agreement is measured over these only).
    pub live_honest_nodes: usize,
    /// Churn events.
    pub churn: ChurnCounts,
    /// Per partition, slots from its repair until every running honest node held one chain
    /// (checked at each slot start; None: not within the run).
    pub heal_slots: Vec<Option<u64>>,
    /// Adversary wins and fairness among honest proposers.
    pub wins: Wins,
    /// The grinders' wins against protocol 1.1's bound (None: no grinder in the run).
    pub grinder: Option<GrinderWins>,
    /// For each slot, the share of live honest nodes whose decision at the end of the run (a
    /// settling time after the last slot's finality) is the majority's.
    pub agreement: Vec<f64>,
    /// The lowest per-slot agreement.
    pub min_agreement: f64,
    /// Slots on which some node decided otherwise than the majority.
    pub disagreeing_slots: Vec<u64>,
    /// Slots on which honest nodes appended different outcomes at finality (healed or not by
    /// the fork rule afterwards).
    pub forked_at_finality: Vec<u64>,
    /// Live honest nodes that had not decided every slot when the run ended.
    pub incomplete_nodes: usize,
    /// Slots the majority decided as replays.
    pub replays: u64,
    /// The majority's chain hash at the last slot of the run: a fingerprint of the whole run.
    pub final_chain_hash: Option<String>,
    /// Traffic per node per slot, by message kind.
    pub traffic: BTreeMap<String, KindTraffic>,
    /// Proposal fetch requests per node per slot.
    pub requests: f64,
    /// Violations reported by all machines (and chain answers they refused).
    pub violations: u64,
    /// Chain adoptions after a fork, all nodes together.
    pub fork_adoptions: u64,
    /// Conflicting decisions seen at finality, all nodes together.
    pub conflicts: u64,
    /// Simulated events.
    pub events: u64,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Events per wall-clock second.
    pub events_per_s: f64,
}

/// What the live honest chains agree on, slot by slot.
struct Agreement {
    /// Per slot, the majority's share.
    shares: Vec<f64>,
    /// Slots on which some node decided otherwise than the majority (or did not decide).
    disagreeing: Vec<u64>,
    /// Slots the majority decided as replays.
    replays: u64,
    /// The majority's winning proposal per slot (None: a replay).
    winners: BTreeMap<u64, Option<Hash32>>,
}

impl Agreement {
    /// Compares the decisions of `chains` for every slot of `slots`.
    fn of(chains: &[&Chain], slots: std::ops::Range<u64>) -> Agreement {
        let mut agreement = Agreement {
            shares: Vec::new(),
            disagreeing: Vec::new(),
            replays: 0,
            winners: BTreeMap::new(),
        };
        for slot in slots {
            let mut votes: BTreeMap<(Option<Hash32>, Hash32), usize> = BTreeMap::new();
            for c in chains {
                if let Some(d) = c.decided(slot) {
                    *votes
                        .entry((d.proposal_id, d.track.track_hash))
                        .or_default() += 1;
                }
            }
            let decided: usize = votes.values().sum();
            let Some((&(proposal_id, _), &best)) = votes
                .iter()
                .max_by_key(|(k, v)| (**v, std::cmp::Reverse(**k)))
            else {
                agreement.shares.push(0.0);
                agreement.disagreeing.push(slot);
                continue;
            };
            if proposal_id.is_none() {
                agreement.replays += 1;
            }
            agreement.winners.insert(slot, proposal_id);
            agreement.shares.push(best as f64 / chains.len() as f64);
            if votes.len() > 1 || decided < chains.len() {
                agreement.disagreeing.push(slot);
            }
        }
        agreement
    }
}

/// Traffic per node per slot by message kind, `per` being nodes times slots.
fn traffic_per_kind(traffic: &Traffic, per: f64) -> BTreeMap<String, KindTraffic> {
    let mut per_kind = BTreeMap::new();
    for (kind, &(n, _)) in &traffic.published {
        let (rn, rb) = traffic.delivered.get(kind).copied().unwrap_or_default();
        per_kind.insert(
            kind.clone(),
            KindTraffic {
                sent: n as f64 / per,
                received: rn as f64 / per,
                bytes_received: rb as f64 / per,
            },
        );
    }
    per_kind
}

/// The chain hash most of `chains` hold at `slot` (on a tie, the smallest).
fn majority_hash(chains: &[&Chain], slot: u64) -> Option<String> {
    let mut heads: BTreeMap<Hash32, usize> = BTreeMap::new();
    for c in chains {
        if let Some(h) = c.chain_hash(slot) {
            *heads.entry(h).or_default() += 1;
        }
    }
    heads
        .iter()
        .max_by_key(|(h, n)| (**n, std::cmp::Reverse(**h)))
        .map(|(h, _)| h.to_string())
}

impl Report {
    /// Computes the report from every node's chain.
    pub fn new(
        cfg: &SimConfig,
        data: &RunData<'_>,
        traffic: &Traffic,
        events: u64,
        wall: Duration,
    ) -> Self {
        let chains = &data.chains;
        let first = chains.first().map(|c| c.lookahead()).unwrap_or(5);
        let target = first + cfg.slots;
        let agreement = Agreement::of(chains, first..target);
        let per = (cfg.nodes as f64) * (cfg.slots as f64);
        let wall_s = wall.as_secs_f64();
        Report {
            seed: cfg.seed,
            nodes: cfg.nodes,
            slots: cfg.slots,
            latency: cfg.latency.to_string(),
            loss: cfg.loss,
            protocol: cfg.protocol.to_string(),
            withheld_slots: data.observed.withheld.range(first..target).count() as u64,
            adversaries: data.adversaries,
            live_honest_nodes: data.honest_live,
            churn: data.observed.churn,
            heal_slots: data.observed.heal_slots.clone(),
            wins: Wins::new(&agreement.winners, data.observed),
            grinder: GrinderWins::new(&agreement.winners, data.observed, first..target),
            min_agreement: agreement.shares.iter().copied().fold(1.0, f64::min),
            agreement: agreement.shares,
            disagreeing_slots: agreement.disagreeing,
            forked_at_finality: data
                .observed
                .outcomes
                .range(first..target)
                .filter(|(_, o)| o.len() > 1)
                .map(|(s, _)| *s)
                .collect(),
            incomplete_nodes: chains.iter().filter(|c| c.len() < target).count(),
            replays: agreement.replays,
            final_chain_hash: majority_hash(chains, target - 1),
            traffic: traffic_per_kind(traffic, per),
            requests: traffic.requests as f64 / per,
            violations: traffic.violations,
            fork_adoptions: traffic.fork_adoptions,
            conflicts: traffic.conflicts,
            events,
            wall_s,
            events_per_s: if wall_s > 0.0 {
                events as f64 / wall_s
            } else {
                0.0
            },
        }
    }

    /// The lines on agreement, forks, replays, nodes, partitions and withheld winners.
    fn fmt_outcome(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "agreement at the end: min {:.4}, {} slots with any disagreement {:?}, {} nodes incomplete",
            self.min_agreement,
            self.disagreeing_slots.len(),
            self.disagreeing_slots,
            self.incomplete_nodes
        )?;
        writeln!(
            f,
            "slots forked at finality (then healed or not): {} {:?}",
            self.forked_at_finality.len(),
            self.forked_at_finality
        )?;
        writeln!(
            f,
            "replays: {} of {} slots; conflicts at finality: {}; fork adoptions: {}; violations: {}",
            self.replays, self.slots, self.conflicts, self.fork_adoptions, self.violations
        )?;
        writeln!(
            f,
            "live honest nodes: {}; adversaries: {}; churn: {} crashes, {} restarts, {} leaves, {} joins",
            self.live_honest_nodes,
            self.adversaries,
            self.churn.crashes,
            self.churn.restarts,
            self.churn.leaves,
            self.churn.joins
        )?;
        if !self.heal_slots.is_empty() {
            let heal: Vec<String> = self
                .heal_slots
                .iter()
                .map(|h| h.map_or("never".to_owned(), |s| s.to_string()))
                .collect();
            writeln!(
                f,
                "slots to heal after each partition's repair: {}",
                heal.join(", ")
            )?;
        }
        if self.withheld_slots > 0 {
            writeln!(
                f,
                "withheld winners (protocol {}): {} slots no honest node could fetch",
                self.protocol, self.withheld_slots
            )?;
        }
        Ok(())
    }

    /// The lines on adversary wins and fairness.
    fn fmt_wins(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.wins;
        writeln!(
            f,
            "adversary wins: {} of {} slots won (fair share {:.2}, P(X >= wins) {:.4}) {:?}",
            w.adversary_wins,
            w.slots_won,
            w.adversary_fair_share,
            w.adversary_win_p,
            w.adversary_wins_by_kind
        )?;
        if let Some(g) = &self.grinder {
            writeln!(
                f,
                "grinder ({} identities, protocol {}): won {} of {} slots won, share {:.4}; bound {:.4} = enrolled share {:.4} + withholding {:.4} + {MARGIN_SIGMAS} sigma {:.4}: {}",
                g.identities,
                self.protocol,
                g.wins,
                g.slots_won,
                g.share,
                g.bound,
                g.enrolled_share,
                g.withholding_bound,
                g.margin,
                if g.within_bound { "within" } else { "EXCEEDED" }
            )?;
            writeln!(
                f,
                "grinder: fresh identities proposed for {} slots and won {}; withheld a winning proposal in {} slots (held the lowest ticket L + 1 slots later, as foreseen, in {} of {} in the run)",
                g.targeted_slots,
                g.targeted_won,
                g.silent_slots,
                g.silent_foreseen,
                g.silent_checked
            )?;
        }
        writeln!(
            f,
            "fairness among honest proposers: chi2 {:.2}, df {}, p {:.4}",
            w.fairness_chi2, w.fairness_df, w.fairness_p
        )
    }

    /// The traffic table and the fetch requests.
    fn fmt_traffic(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "traffic per node per slot:")?;
        for (kind, t) in &self.traffic {
            writeln!(
                f,
                "  {kind:<9} sent {:>8.2}  received {:>9.2}  bytes received {:>11.0}",
                t.sent, t.received, t.bytes_received
            )?;
        }
        writeln!(f, "  fetch requests {:.3}", self.requests)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} nodes, {} slots, latency {}, loss {}",
            self.seed, self.nodes, self.slots, self.latency, self.loss
        )?;
        self.fmt_outcome(f)?;
        self.fmt_wins(f)?;
        self.fmt_traffic(f)?;
        write!(
            f,
            "{} events in {:.2} s: {:.0} events/s",
            self.events, self.wall_s, self.events_per_s
        )
    }
}
