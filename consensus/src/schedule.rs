//! The phases of a slot (PROTOCOL.md 1): proposal, selection, finality, fetch, play.
//!
//! Every boundary of target slot k >= L is a pure function of the chain's earlier, final slots;
//! each function returns None when the chain does not reach far enough yet.

use crate::chain::Chain;

/// Proposals for slot k are made while slot `k - PROPOSAL_OFFSET` plays.
pub const PROPOSAL_OFFSET: u64 = 5;
/// Selection for slot k happens while slot `k - SELECTION_OFFSET` plays.
pub const SELECTION_OFFSET: u64 = 4;
/// The decision for slot k is final at `start(k - FINALITY_OFFSET)`.
pub const FINALITY_OFFSET: u64 = 3;

/// A half-open interval of network time `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// First millisecond inside.
    pub start_ms: u64,
    /// First millisecond after.
    pub end_ms: u64,
}

impl Window {
    /// Whether `t_ms` is inside.
    pub fn contains(&self, t_ms: u64) -> bool {
        (self.start_ms..self.end_ms).contains(&t_ms)
    }

    /// Length, ms.
    pub fn len_ms(&self) -> u64 {
        self.end_ms - self.start_ms
    }
}

/// `min(max_ms, duration_ms * pct / 100)`, without overflow.
pub fn phase_len(duration_ms: u64, pct: u64, max_ms: u64) -> u64 {
    let share = u128::from(duration_ms) * u128::from(pct) / 100;
    u64::try_from(share).unwrap_or(u64::MAX).min(max_ms)
}

/// The window that opens at `start(j)` and lasts `phase_len(dur(j), pct, max)`.
fn window_in_slot(chain: &Chain, slot: u64, pct: u64, max_ms: u64) -> Option<Window> {
    let start_ms = chain.start(slot)?;
    let duration = chain.winner(slot)?.duration_ms;
    let len = phase_len(duration, pct, max_ms);
    Some(Window {
        start_ms,
        end_ms: start_ms.saturating_add(len),
    })
}

/// The proposal window of slot k: `[start(k-5), start(k-5) + W)`,
/// `W = min(proposal_max_ms, dur(k-5) * proposal_pct / 100)`. None for genesis slots.
pub fn proposal_window(chain: &Chain, slot: u64) -> Option<Window> {
    if slot < chain.lookahead() {
        return None;
    }
    let rules = chain.rules();
    window_in_slot(
        chain,
        slot.checked_sub(PROPOSAL_OFFSET)?,
        rules.proposal_pct,
        rules.proposal_max_ms,
    )
}

/// The selection window of slot k: `[start(k-4), start(k-4) + min(selection_max_ms,
/// dur(k-4) * selection_pct / 100))`; its end is the decision point.
pub fn selection_window(chain: &Chain, slot: u64) -> Option<Window> {
    if slot < chain.lookahead() {
        return None;
    }
    let rules = chain.rules();
    window_in_slot(
        chain,
        slot.checked_sub(SELECTION_OFFSET)?,
        rules.selection_pct,
        rules.selection_max_ms,
    )
}

/// The moment the decision for slot k becomes final: `start(k-3)`.
pub fn finality_ms(chain: &Chain, slot: u64) -> Option<u64> {
    if slot < chain.lookahead() {
        return None;
    }
    chain.start(slot.checked_sub(FINALITY_OFFSET)?)
}

/// When an eligible node publishes its proposal for slot k:
/// `start(k-5) + (W / 2) * ticket / 2^64`, so that low tickets go first.
pub fn proposal_time(chain: &Chain, slot: u64, ticket: u64) -> Option<u64> {
    let window = proposal_window(chain, slot)?;
    let half = u128::from(window.len_ms() / 2);
    let delay = (half * u128::from(ticket)) >> 64;
    let delay = u64::try_from(delay).expect("invariant: (W/2) * ticket / 2^64 < W fits u64");
    Some(window.start_ms + delay)
}

/// The play window of slot k: `[start(k), start(k+1))`, once its winner is known.
pub fn play_window(chain: &Chain, slot: u64) -> Option<Window> {
    Some(Window {
        start_ms: chain.start(slot)?,
        end_ms: chain.start(slot.checked_add(1)?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Outcome;
    use crate::track::tests::track;

    #[test]
    fn phase_len_takes_the_smaller_bound() {
        assert_eq!(phase_len(60_000, 25, 30_000), 15_000);
        assert_eq!(phase_len(600_000, 25, 30_000), 30_000);
        assert_eq!(phase_len(u64::MAX, 100, u64::MAX), u64::MAX);
    }

    #[test]
    fn windows_of_the_first_consensus_slot() {
        // Genesis slots last 60, 61, 62, 63, 64 s.
        let chain = crate::testing::open_chain();
        let s0 = chain.start(0).expect("start(0)");
        assert_eq!(
            proposal_window(&chain, 4),
            None,
            "genesis slots are not proposed"
        );
        assert_eq!(
            proposal_window(&chain, 5),
            Some(Window {
                start_ms: s0,
                end_ms: s0 + 15_000
            })
        );
        let s1 = s0 + 60_000;
        assert_eq!(
            selection_window(&chain, 5),
            Some(Window {
                start_ms: s1,
                end_ms: s1 + 24_400
            })
        );
        assert_eq!(finality_ms(&chain, 5), Some(s1 + 61_000));
        assert_eq!(finality_ms(&chain, 5), chain.start(2));
        // Slot 9's windows lie in slots 4 and 5: 5 is undecided, so only the proposal is known.
        assert!(proposal_window(&chain, 9).is_some());
        assert_eq!(selection_window(&chain, 10), None);
        assert_eq!(play_window(&chain, 4).map(|w| w.len_ms()), Some(64_000));
        assert_eq!(play_window(&chain, 5), None);
    }

    #[test]
    fn long_tracks_cap_the_windows() {
        let mut chain = crate::testing::open_chain();
        chain.push(Outcome {
            track: track("long", 900_000),
            proposal: None,
            envelope: None,
            equivocators: vec![],
        });
        let w = proposal_window(&chain, 10).expect("slot 5 is decided");
        assert_eq!(w.len_ms(), 30_000);
        assert_eq!(w.start_ms, chain.start(5).expect("known"));
        let s = selection_window(&chain, 9).expect("slot 5 is decided");
        assert_eq!(s.len_ms(), 60_000);
    }

    #[test]
    fn proposal_time_orders_by_ticket_within_the_first_half() {
        let chain = crate::testing::open_chain();
        let w = proposal_window(&chain, 5).expect("known");
        assert_eq!(proposal_time(&chain, 5, 0), Some(w.start_ms));
        let last = proposal_time(&chain, 5, u64::MAX).expect("known");
        assert!(last < w.start_ms + w.len_ms() / 2);
        assert!(last >= w.start_ms + w.len_ms() / 2 - 1);
        let mid = proposal_time(&chain, 5, 1 << 63).expect("known");
        assert_eq!(mid, w.start_ms + w.len_ms() / 4);
    }
}
