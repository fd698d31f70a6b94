//! Misbehaving nodes: what each kind does, and how `--adversary KIND:COUNT` is written.

use std::fmt;
use std::str::FromStr;

/// What a misbehaving node does. Every adversary runs the real state machine; the simulator
/// rewrites, delays, duplicates or drops what it sends (see docs/sim.md, "Adversaries").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdversaryKind {
    /// Publishes two different signed proposal bodies for every slot it proposes in.
    Equivocate,
    /// Its proposals (published and served) carry a wrong `rules_hash`.
    WrongRules,
    /// Holds each proposal back until after the proposal window, and never serves it.
    Late,
    /// Its gossip reaches only half of the nodes (fixed per adversary); it answers no request.
    Withhold,
    /// Publishes junk every slot: undecodable, oversized, badly signed and unknown-kind
    /// envelopes.
    Spam,
    /// Plays its own tracks but never tells its machine, so its Status and `plays` claim
    /// consensus while it is diverged.
    Liar,
    /// Unlimited key generation against the lottery (PROTOCOL.md 4.1 and 12.3): for every slot
    /// it grinds a fresh identity whose ticket beats every eligible honest node's and proposes
    /// with it; in protocol 1.1 it also enrolls like anyone and withholds a winning proposal
    /// when silence moves the beacon so that it wins the slot whose ticket that beacon decides.
    Grinder,
}

impl AdversaryKind {
    /// Every kind, in a fixed order.
    pub const ALL: [AdversaryKind; 7] = [
        AdversaryKind::Equivocate,
        AdversaryKind::WrongRules,
        AdversaryKind::Late,
        AdversaryKind::Withhold,
        AdversaryKind::Spam,
        AdversaryKind::Liar,
        AdversaryKind::Grinder,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            AdversaryKind::Equivocate => "equivocate",
            AdversaryKind::WrongRules => "wrong-rules",
            AdversaryKind::Late => "late",
            AdversaryKind::Withhold => "withhold",
            AdversaryKind::Spam => "spam",
            AdversaryKind::Liar => "liar",
            AdversaryKind::Grinder => "grinder",
        }
    }
}

impl fmt::Display for AdversaryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `COUNT` adversaries of one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adversaries {
    /// What they do.
    pub kind: AdversaryKind,
    /// How many identities.
    pub count: usize,
}

/// An adversary that is not `KIND:COUNT`.
#[derive(Debug, thiserror::Error)]
#[error(
    "adversary {0:?}: expected KIND:COUNT with KIND one of equivocate, wrong-rules, late, withhold, spam, liar, grinder (for example equivocate:2)"
)]
pub struct ParseAdversaryError(String);

impl FromStr for Adversaries {
    type Err = ParseAdversaryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseAdversaryError(s.to_owned());
        let (kind, count) = s.split_once(':').ok_or_else(err)?;
        let kind = AdversaryKind::ALL
            .into_iter()
            .find(|k| k.name() == kind.trim())
            .ok_or_else(err)?;
        let count: usize = count.trim().parse().map_err(|_| err())?;
        if count == 0 {
            return Err(err());
        }
        Ok(Adversaries { kind, count })
    }
}

impl fmt::Display for Adversaries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        for kind in AdversaryKind::ALL {
            let a: Adversaries = format!("{kind}:3").parse().unwrap();
            assert_eq!((a.kind, a.count), (kind, 3));
        }
        assert!("equivocate".parse::<Adversaries>().is_err());
        assert!("equivocate:0".parse::<Adversaries>().is_err());
        assert!("sybil:2".parse::<Adversaries>().is_err());
    }
}
