//! The estimator: the last samples of each peer, the sources they make, and the target offset
//! the selection rules choose among them.

use std::collections::{HashMap, VecDeque};

use libp2p::PeerId;

use super::selection::{
    Source, agreement, combine, count_networks, median_half, refinement_tolerance,
};
use super::{
    DRIFT_PPM, MAX_CLOCK_OFFSET_US, MAX_PEERS, MAX_RTT_US, MIN_HALF_WIDTH_US, MIN_NETWORKS,
    MIN_SAMPLES, RESIDUAL_DRIFT_PPM, Refusal, Rejected, Rule, SAMPLES_PER_PEER,
    SOURCES_PER_NETWORK, Sample, Selection, SourceNet, Trend, Verdict,
};

/// The state of the time sources, for a log line and the status ([`Estimator::take_report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Sources counted now, this node included.
    pub sources: usize,
    /// Distinct networks among them, this node's own included.
    pub networks: usize,
    /// Whether the estimator has locked (acquisition or agreement accepted).
    pub locked: bool,
    /// Samples dropped since start-up, by reason.
    pub rejected: Rejected,
}

/// One peer's samples.
#[derive(Debug)]
struct PeerSamples {
    net: SourceNet,
    samples: VecDeque<Sample>,
    /// The line through all its samples (short round trips), once it has enough of them.
    trend: Trend,
    /// A dropped sample of this peer was reported as `first` already.
    warned: bool,
    /// Samples of this peer dropped.
    dropped: usize,
}

impl PeerSamples {
    /// The peer's offset now (its newest sample's arrival) and the half-width of what its last
    /// samples allow: the line's value within those bounds once the line has enough samples,
    /// else the middle of the bounds ([`least_error`]).
    ///
    /// Also the estimate's standard error: the line's, or the half-width before the line.
    fn estimate(&self) -> Option<Estimate> {
        let (bounded, half_us) = least_error(&self.samples)?;
        let newest = self.samples.iter().map(|s| s.at_us).max()?;
        let (offset_us, se_us) = match self.trend.at(newest) {
            Some(fit) => (
                fit.offset_us
                    .clamp(bounded.offset_us - half_us, bounded.offset_us + half_us),
                fit.se_us,
            ),
            None => (bounded.offset_us, half_us),
        };
        Some(Estimate {
            offset_us,
            half_us,
            se_us,
        })
    }
}

/// A peer's offset now ([`PeerSamples::estimate`]).
#[derive(Debug, Clone, Copy)]
struct Estimate {
    /// The offset, µs.
    offset_us: f64,
    /// Half the width of what the last samples allow.
    half_us: f64,
    /// The standard error.
    se_us: f64,
}

/// The network offset estimator of PROTOCOL.md 7 under the rules of 12.4 (the module's
/// documentation says how it selects). Sans-IO: feed it samples with [`Estimator::add`], forget
/// disconnected peers with [`Estimator::remove`], and after each sample ask
/// [`Estimator::select`] for a target to hand to [`Clock::adjust`](super::Clock::adjust); `None` means keep the
/// current one.
#[derive(Debug, Default)]
pub struct Estimator {
    peers: HashMap<PeerId, PeerSamples>,
    rejected: Rejected,
    /// An acquisition or an agreement has been accepted: from now on the estimate moves only by
    /// agreement or refinement.
    locked: bool,
    /// The last target returned, µs.
    last_us: Option<f64>,
    /// The uncertainty that target was chosen with, µs: the half-width of the median source
    /// (or of the agreement's common interval). A refinement may move by it.
    last_half_us: f64,
    /// What the last report said of the sources: (sources, networks, locked).
    reported: Option<(usize, usize, bool)>,
    /// The next total of dropped samples worth a report (1, 2, 4, 8, ...).
    next_refusal_report: u64,
}

impl Estimator {
    /// Checks a sample from `peer`, connected in `net`, and keeps it among the peer's last 8, or
    /// drops and counts it (negative or over-2-s round trip; offset beyond the bound).
    pub fn add(&mut self, peer: PeerId, net: SourceNet, sample: Sample) -> Verdict {
        let entry = self.peers.entry(peer).or_insert_with(|| PeerSamples {
            net: net.clone(),
            samples: VecDeque::new(),
            trend: Trend::default(),
            warned: false,
            dropped: 0,
        });
        entry.net = net;
        let refusal = if sample.rtt_us < 0 || sample.rtt_us > sample.elapsed_us {
            Some(Refusal::NegativeRtt)
        } else if sample.rtt_us > MAX_RTT_US {
            Some(Refusal::LongRtt)
        } else if !sample.offset_us.is_finite() || sample.offset_us.abs() > MAX_CLOCK_OFFSET_US {
            Some(Refusal::BeyondBound)
        } else {
            None
        };
        let Some(reason) = refusal else {
            entry.samples.push_back(sample);
            while entry.samples.len() > SAMPLES_PER_PEER {
                entry.samples.pop_front();
            }
            let shortest = entry.samples.iter().map(|s| s.rtt_us).min();
            if shortest.is_some_and(|shortest| Trend::takes(sample.rtt_us, shortest)) {
                entry
                    .trend
                    .add(sample.at_us, sample.offset_us, sample.rtt_us);
            }
            return Verdict::Kept;
        };
        let first = !std::mem::replace(&mut entry.warned, true);
        entry.dropped += 1;
        let counter = match reason {
            Refusal::NegativeRtt => &mut self.rejected.negative_rtt,
            Refusal::LongRtt => &mut self.rejected.long_rtt,
            Refusal::BeyondBound => &mut self.rejected.beyond_bound,
        };
        *counter += 1;
        Verdict::Dropped { reason, first }
    }

    /// Forgets a peer (disconnected).
    pub fn remove(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// A peer's kept sample with the smallest error bound now (round trip and age), and how
    /// many it has kept.
    pub fn best(&self, peer: &PeerId) -> Option<(Sample, usize)> {
        let s = &self.peers.get(peer)?.samples;
        Some((least_error(s)?.0, s.len()))
    }

    /// Peers with a kept sample.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers
            .iter()
            .filter(|(_, p)| !p.samples.is_empty())
            .map(|(id, _)| id)
    }

    /// Samples dropped since start-up, by reason.
    pub fn rejected(&self) -> Rejected {
        self.rejected
    }

    /// A report when it says something new: the counted sources or networks changed, the
    /// estimator locked, or the dropped samples reached a power of two (1, 2, 4, ...), so that
    /// a flood of lies gives a few lines and not one per sample. Call it after each sample.
    pub fn take_report(&mut self) -> Option<Report> {
        let sources = self.sources();
        let state = (sources.len(), count_networks(&sources), self.locked);
        let total = self.rejected.total();
        let refusals_due = total >= self.next_refusal_report.max(1);
        if self.reported == Some(state) && !refusals_due {
            return None;
        }
        self.reported = Some(state);
        if refusals_due {
            self.next_refusal_report = total.saturating_mul(2).max(1);
        }
        Some(Report {
            sources: state.0,
            networks: state.1,
            locked: state.2,
            rejected: self.rejected,
        })
    }

    /// Whether an acquisition or agreement has been accepted (from then on only agreement or
    /// refinement moves the estimate).
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The target offset, µs, as [`Estimator::select`] chooses it.
    pub fn target_us(&mut self) -> Option<f64> {
        self.select().map(|s| s.offset_us)
    }

    /// Chooses the target offset by the rules of the module's documentation; `None` when no
    /// peer counts yet, or when the node must keep its last accepted offset.
    pub fn select(&mut self) -> Option<Selection> {
        let sources = self.sources();
        if sources.len() < 2 {
            return None;
        }
        let networks = count_networks(&sources);
        if let Some((offset_us, agreeing, half_us)) =
            agreement(&sources, self.last_us.unwrap_or(0.0))
        {
            self.locked = true;
            self.last_us = Some(offset_us);
            self.last_half_us = half_us;
            return Some(Selection {
                offset_us,
                rule: Rule::Agreement,
                sources: sources.len(),
                networks,
                agreeing,
            });
        }
        let offset_us = combine(&sources.iter().collect::<Vec<_>>());
        let rule = if !self.locked {
            if networks >= MIN_NETWORKS && self.all_counted() {
                self.locked = true;
                Rule::Acquisition
            } else {
                Rule::Provisional
            }
        } else if networks >= MIN_NETWORKS
            && self.last_us.is_some_and(|last| {
                (offset_us - last).abs() <= refinement_tolerance(&sources, self.last_half_us)
            })
        {
            Rule::Refinement
        } else {
            return None;
        };
        self.last_us = Some(offset_us);
        self.last_half_us = median_half(&sources);
        Some(Selection {
            offset_us,
            rule,
            sources: sources.len(),
            networks,
            agreeing: sources.len(),
        })
    }

    /// Every peer with a kept sample has the three it needs to count, so that acquisition
    /// sees all the peers there are rather than the first few.
    fn all_counted(&self) -> bool {
        self.peers
            .values()
            .all(|p| p.samples.is_empty() || p.samples.len() >= MIN_SAMPLES)
    }

    /// The peers whose offsets count now (this node's own clock aside), which the caller
    /// samples more often than the rest.
    pub fn source_peers(&self) -> Vec<PeerId> {
        self.counted().into_iter().map(|(peer, _)| peer).collect()
    }

    /// Samples `peer`'s line has taken (0 for an unknown peer).
    pub fn line_samples(&self, peer: &PeerId) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.trend.taken())
    }

    /// Whether `peer` has given fewer samples than it needs to count, kept or dropped: a peer
    /// whose samples are all dropped (a liar beyond the bound) is not new for ever.
    pub fn is_new(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_none_or(|p| p.samples.len().saturating_add(p.dropped) < MIN_SAMPLES)
    }

    /// This node's clock first, then the counted peers ([`Estimator::counted`]).
    fn sources(&self) -> Vec<Source> {
        let mut sources = vec![Source {
            net: SourceNet::Local,
            offset_us: 0.0,
            half_us: MIN_HALF_WIDTH_US,
            se_us: 0.0,
        }];
        sources.extend(self.counted().into_iter().map(|(_, source)| source));
        sources
    }

    /// The counted peers: those with three samples, at most [`SOURCES_PER_NETWORK`] per
    /// network and [`MAX_PEERS`] in all, by the shortest measured round trip (ties by peer id).
    fn counted(&self) -> Vec<(PeerId, Source)> {
        let mut candidates: Vec<(i64, PeerId, &SourceNet, Estimate)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.samples.len() >= MIN_SAMPLES && p.net != SourceNet::Local)
            .filter_map(|(id, p)| {
                let best = p.estimate()?;
                let elapsed = p.samples.iter().map(|s| s.elapsed_us).min()?;
                Some((elapsed, *id, &p.net, best))
            })
            .collect();
        candidates.sort_by_key(|c| (c.0, c.1));
        let mut per_net: HashMap<&SourceNet, usize> = HashMap::new();
        let mut counted = Vec::new();
        for (_, peer, net, estimate) in candidates {
            if counted.len() >= MAX_PEERS {
                break;
            }
            let n = per_net.entry(net).or_default();
            if *n >= SOURCES_PER_NETWORK {
                continue;
            }
            *n += 1;
            counted.push((
                peer,
                Source {
                    net: net.clone(),
                    offset_us: estimate.offset_us,
                    half_us: estimate.half_us.max(MIN_HALF_WIDTH_US),
                    se_us: estimate.se_us,
                },
            ));
        }
        counted
    }
}

/// A peer's offset now (at the newest sample's arrival) with its error bound: the sample with
/// the smallest error bound ([`Sample::error_us`]), its offset replaced by the middle of what
/// all the samples allow together. Clocks run at slightly different rates, so an older
/// sample's offset is first moved by the peer's measured [`Drift`], and what remains of the
/// drift is counted in its error.
///
/// Each sample bounds the true offset: with one-way delays `up` and `down`, its offset is
/// `truth + (up - down) / 2` and its round trip `up + down`, so `offset - rtt / 2 = truth -
/// down` and `offset + rtt / 2 = truth + up`, and the truth lies in between. The intersection
/// of the samples' intervals, `[truth - min down, truth + min up]`, takes the shortest leg of
/// each direction from whichever samples had it, where the single shortest round trip takes
/// both from one sample: on a jittery path (each leg 40 ms +- 10 ms) the middle of the
/// intersection is off by a median 1.0 ms where the shortest round trip is off by 1.7 ms (8
/// samples, simulated; p99 3.7 against 5.9 ms). An empty intersection (a peer whose samples
/// contradict each other: it lies, or its drift is not what was measured) leaves the sample
/// as it is. A peer controls its own samples, so this moves nothing but its own estimate.
fn least_error<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Option<(Sample, f64)> {
    let samples: Vec<Sample> = samples.into_iter().copied().collect();
    let now = samples.iter().map(|s| s.at_us).max()?;
    let drift = Drift::of(&samples);
    let moved: Vec<(Sample, f64)> = samples
        .into_iter()
        .map(|s| {
            let age_s = now.saturating_sub(s.at_us).max(0) as f64 / 1e6;
            let moved = Sample {
                offset_us: s.offset_us + drift.ppm * age_s,
                ..s
            };
            (moved, s.error_us(now, drift.residual_ppm))
        })
        .collect();
    let (best, error_us) = moved.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let lo = moved
        .iter()
        .map(|(s, e)| s.offset_us - e)
        .fold(f64::MIN, f64::max);
    let hi = moved
        .iter()
        .map(|(s, e)| s.offset_us + e)
        .fold(f64::MAX, f64::min);
    if lo > hi {
        return Some((best, error_us));
    }
    let within = Sample {
        offset_us: (lo + hi) / 2.0,
        ..best
    };
    Some((within, ((hi - lo) / 2.0).min(error_us)))
}

/// The drift of a peer's clock against ours, µs per second (ppm), as its samples tell it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Drift {
    /// The slope the samples are moved by: 0 unless measured clearly (below).
    pub(super) ppm: f64,
    /// How far the true drift may lie from `ppm`: the slope's standard error, at least
    /// [`RESIDUAL_DRIFT_PPM`].
    pub(super) residual_ppm: f64,
}

impl Drift {
    const NONE: Drift = Drift {
        ppm: 0.0,
        residual_ppm: RESIDUAL_DRIFT_PPM,
    };

    /// The slope of the offsets over their arrival times by least squares, each sample weighted
    /// by its round trip (a sample that spent long on the way may be off by half of it, and
    /// would tilt the line), never beyond [`DRIFT_PPM`] (a peer cannot make its past samples
    /// say more). Its standard error comes from the residuals, so that offsets made noisy by a
    /// loaded machine or a jittery path widen it: a slope within two standard errors of zero
    /// is not applied (applied, a slope of noise moved a 14-s-old sample by 2.8 ms and the
    /// node's clock followed it), and the error stays in `residual_ppm`, which makes old
    /// samples count less. [`Drift::NONE`] with fewer than three samples or no time between
    /// them.
    pub(super) fn of(samples: &[Sample]) -> Drift {
        if samples.len() < 3 {
            return Drift::NONE;
        }
        let t0 = samples.iter().map(|s| s.at_us).min().unwrap_or(0);
        let t = |s: &Sample| (s.at_us - t0) as f64 / 1e6;
        // Half the round trip bounds a sample's error; 50 µs of floor for stamping noise.
        let w = |s: &Sample| 1.0 / (s.rtt_us.max(0) as f64 / 2.0 + 50.0).powi(2);
        let total: f64 = samples.iter().map(w).sum();
        let mean_t = samples.iter().map(|s| w(s) * t(s)).sum::<f64>() / total;
        let mean_o = samples.iter().map(|s| w(s) * s.offset_us).sum::<f64>() / total;
        let var: f64 = samples.iter().map(|s| w(s) * (t(s) - mean_t).powi(2)).sum();
        if var * samples.len() as f64 / total < 1.0 {
            return Drift::NONE;
        }
        let cov: f64 = samples
            .iter()
            .map(|s| w(s) * (t(s) - mean_t) * (s.offset_us - mean_o))
            .sum();
        let slope = cov / var;
        let squares: f64 = samples
            .iter()
            .map(|s| w(s) * (s.offset_us - mean_o - slope * (t(s) - mean_t)).powi(2))
            .sum();
        let se = (squares / (samples.len() - 2) as f64 / var).sqrt();
        let residual_ppm = se.clamp(RESIDUAL_DRIFT_PPM, DRIFT_PPM);
        if slope.abs() < 2.0 * se {
            return Drift {
                ppm: 0.0,
                residual_ppm,
            };
        }
        Drift {
            ppm: slope.clamp(-DRIFT_PPM, DRIFT_PPM),
            residual_ppm,
        }
    }
}
