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
        let target = median(members.iter().map(|s| s.offset_us).collect()).clamp(lo, hi);
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
