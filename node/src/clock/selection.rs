//! Selection (the module's documentation, "Selection"): the sources' intervals, their
//! agreement, and the median rules that choose a target when they do not agree.

use std::collections::HashSet;

use super::{MIN_HALF_WIDTH_US, MIN_NETWORKS, SourceNet};

/// Which rule of [`Estimator::select`](super::Estimator::select) chose a target (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A strict majority of the sources, from at least three networks, agree within their
    /// round trips.
    Agreement,
    /// The median of the sources, from at least three networks, before the node locked; it
    /// locks now.
    Acquisition,
    /// The median of fewer than three networks' sources (or while a peer still lacks its three
    /// samples), before the node locked.
    Provisional,
    /// The median, after locking, within a round trip of the last accepted offset.
    Refinement,
}

/// A target offset and how it was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// The target offset, µs.
    pub offset_us: f64,
    /// The rule that chose it.
    pub rule: Rule,
    /// Sources counted, this node included.
    pub sources: usize,
    /// Distinct networks among them, this node's own included.
    pub networks: usize,
    /// Sources whose offsets the target is the median of (those of the agreement, or all).
    pub agreeing: usize,
}

/// A source as selection sees it.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) net: SourceNet,
    pub(super) offset_us: f64,
    pub(super) half_us: f64,
    /// The offset's standard error (the statistical one, far below `half_us` once a peer's
    /// line has many samples); unused for this node's own clock ([`combine`]).
    pub(super) se_us: f64,
}

impl Source {
    fn lo(&self) -> f64 {
        self.offset_us - self.half_us
    }

    fn hi(&self) -> f64 {
        self.offset_us + self.half_us
    }
}

pub(super) fn count_networks<'a>(sources: impl IntoIterator<Item = &'a Source>) -> usize {
    sources
        .into_iter()
        .map(|s| &s.net)
        .collect::<HashSet<_>>()
        .len()
}

/// The median of a non-empty list (the mean of the middle two for an even count).
pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The intersection step: among the points where sources' intervals overlap (every maximal
/// overlap begins at some interval's low end), the set of sources covering one that is a strict
/// majority of all the sources and spans at least [`MIN_NETWORKS`] networks; the largest such
/// set wins, then the one with more networks, then the one whose target is nearest `near` (the
/// last accepted offset). Returns the median of its offsets clamped into its common interval,
/// its size, and the common interval's half-width.
pub(super) fn agreement(sources: &[Source], near: f64) -> Option<(f64, usize, f64)> {
    let n = sources.len();
    let mut best: Option<(usize, usize, f64, f64, f64)> = None;
    for point in sources.iter().map(Source::lo) {
        let members: Vec<&Source> = sources
            .iter()
            .filter(|s| s.lo() <= point && point <= s.hi())
            .collect();
        let size = members.len();
        if 2 * size <= n {
            continue;
        }
        let networks = count_networks(members.iter().copied());
        if networks < MIN_NETWORKS {
            continue;
        }
        let lo = members.iter().map(|s| s.lo()).fold(f64::MIN, f64::max);
        let hi = members.iter().map(|s| s.hi()).fold(f64::MAX, f64::min);
        if lo > hi {
            continue;
        }
        let target = combine(&members).clamp(lo, hi);
        let distance = (target - near).abs();
        let better = best.is_none_or(|(s, w, d, _, _)| {
            (size, networks) > (s, w) || ((size, networks) == (s, w) && distance < d)
        });
        if better {
            best = Some((size, networks, distance, target, (hi - lo) / 2.0));
        }
    }
    best.map(|(size, _, _, target, half)| (target, size, half))
}

/// The smallest standard error [`combine`] counts with, µs: a peer cannot buy all the weight
/// by sending samples that fit a line perfectly.
const MIN_SE_US: f64 = 50.0;

/// The median of `sources`' offsets, refined as NTP's cluster and combine steps do (RFC 5905
/// 11.2.2 and 11.2.3): of the sources, those within three standard errors of the median (the
/// same clock as the median's, as far as their samples can tell) are averaged, each weighted
/// by `1 / se²`, and the result is held between the median's neighbours. Where the median
/// takes one noisy estimate, the average of the estimates of one clock divides their noise:
/// on the testbed two homes of one clock and the public node (whose asymmetric path puts it
/// 5 ms off, so it is left out) were each home's middle sources, and the median took whichever
/// estimate of the two was higher. This node's own clock joins with the median standard error
/// of the peers that joined, as one more estimate of equal standing (with none it would
/// outweigh all the others and keep the node on its own clock; with the smallest, a liar
/// claiming none would lend it that weight).
///
/// What a liar gains: only a source near the median joins, with at least [`MIN_SE_US`], and
/// the result stays between the median's neighbours, which lie among honest offsets while
/// fewer than a third of the sources lie (as the median does).
pub(super) fn combine(sources: &[&Source]) -> f64 {
    let mut offsets: Vec<f64> = sources.iter().map(|s| s.offset_us).collect();
    let m = median(offsets.clone());
    offsets.sort_by(f64::total_cmp);
    let n = offsets.len();
    if n < 2 {
        return m;
    }
    // The median's neighbours: the order statistics just outside the middle one (or two).
    let (lo, hi) = (
        offsets[((n - 1) / 2).saturating_sub(1)],
        offsets[(n / 2 + 1).min(n - 1)],
    );
    let near = |s: &Source, se: f64| (s.offset_us - m).abs() <= 3.0 * se;
    let peers: Vec<(&Source, f64)> = sources
        .iter()
        .filter(|s| s.net != SourceNet::Local)
        .map(|s| (*s, s.se_us.max(MIN_SE_US)))
        .filter(|(s, se)| near(s, *se))
        .collect();
    if peers.is_empty() {
        return m;
    }
    let own_se = median(peers.iter().map(|(_, se)| *se).collect());
    let own = sources
        .iter()
        .filter(|s| s.net == SourceNet::Local && near(s, own_se))
        .map(|s| (*s, own_se));
    let (sum, weights) =
        peers
            .iter()
            .copied()
            .chain(own)
            .fold((0.0, 0.0), |(sum, weights), (s, se)| {
                let w = 1.0 / (se * se);
                (sum + w * s.offset_us, weights + w)
            });
    (sum / weights).clamp(lo, hi)
}

/// How far the median may move from the last accepted offset once locked: the median source's
/// own half-width (the smaller of the middle two for an even count) plus `last_half_us`, the
/// uncertainty the last offset was accepted with (at least the 1 ms floor), so that the new
/// median still agrees with the old one within both their round trips. Without the second
/// term, a lock taken on a median source whose first samples had long round trips (a loaded
/// machine) could never be corrected by that source's better samples later.
pub(super) fn refinement_tolerance(sources: &[Source], last_half_us: f64) -> f64 {
    let mut by_offset: Vec<&Source> = sources.iter().collect();
    by_offset.sort_by(|a, b| a.offset_us.total_cmp(&b.offset_us));
    let n = by_offset.len();
    let half = match n {
        0 => 0.0,
        _ if n % 2 == 1 => by_offset[n / 2].half_us,
        _ => by_offset[n / 2 - 1].half_us.min(by_offset[n / 2].half_us),
    };
    half + last_half_us.max(MIN_HALF_WIDTH_US)
}

/// The uncertainty of a median of the sources: the middle source's half-width, or for an even
/// count the half-width of the interval around the mean of the middle two that covers both of
/// theirs.
pub(super) fn median_half(sources: &[Source]) -> f64 {
    let mut by_offset: Vec<&Source> = sources.iter().collect();
    by_offset.sort_by(|a, b| a.offset_us.total_cmp(&b.offset_us));
    let n = by_offset.len();
    match n {
        0 => MIN_HALF_WIDTH_US,
        _ if n % 2 == 1 => by_offset[n / 2].half_us,
        _ => {
            let (a, b) = (by_offset[n / 2 - 1], by_offset[n / 2]);
            (b.offset_us - a.offset_us) / 2.0 + a.half_us.max(b.half_us)
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p::PeerId;

    use super::{Source, SourceNet, combine};

    fn peer(offset_us: f64, se_us: f64) -> Source {
        Source {
            net: SourceNet::Peer(PeerId::random()),
            offset_us,
            half_us: 30_000.0,
            se_us,
        }
    }

    fn own() -> Source {
        Source {
            net: SourceNet::Local,
            offset_us: 0.0,
            half_us: 1000.0,
            se_us: 0.0,
        }
    }

    #[test]
    fn two_estimates_of_the_median_clock_are_averaged_and_a_biased_one_is_left_out() {
        // A home of the testbed: its own clock, two homes of the median clock, the public node
        // 5 ms off (its path is asymmetric), a fast home.
        let sources = [
            own(),
            peer(405_000.0, 300.0),
            peer(400_400.0, 400.0),
            peer(399_600.0, 400.0),
            peer(750_000.0, 400.0),
        ];
        let all: Vec<&Source> = sources.iter().collect();
        // The median alone takes the higher of the two homes' estimates.
        assert_eq!(
            super::median(sources.iter().map(|s| s.offset_us).collect()),
            400_400.0
        );
        assert!(
            (combine(&all) - 400_000.0).abs() < 1e-6,
            "{}",
            combine(&all)
        );
    }

    #[test]
    fn this_nodes_own_clock_counts_as_one_estimate_among_equals() {
        // The median clock is this node's: its own clock and one peer of the same clock.
        let sources = [
            peer(-400_000.0, 400.0),
            own(),
            peer(300.0, 400.0),
            peer(5_000.0, 300.0),
            peer(350_000.0, 400.0),
        ];
        let all: Vec<&Source> = sources.iter().collect();
        assert!((combine(&all) - 150.0).abs() < 1e-6, "{}", combine(&all));
    }

    #[test]
    fn a_liar_claiming_no_error_near_the_median_moves_it_only_to_a_neighbour() {
        // Honest: 0 (own), 100, 200 and 5000; the liar claims 130 with a perfect line.
        let sources = [
            own(),
            peer(100.0, 400.0),
            peer(200.0, 400.0),
            peer(5_000.0, 400.0),
            peer(130.0, 0.0),
        ];
        let all: Vec<&Source> = sources.iter().collect();
        let c = combine(&all);
        // Its weight is capped (50 µs of error at least), and the result stays between the
        // median's neighbours (100 and 200), among the honest offsets.
        assert!((100.0..=200.0).contains(&c), "{c}");
        assert!(c > 125.0 && c < 131.0, "{c}");
    }
}
