//! Per-hop network latency presets.

use std::fmt;
use std::str::FromStr;

use crate::rng::Rng;

/// How long one gossip hop (or one request-response leg) takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// A LAN: 0.2 to 2 ms per hop.
    Lan,
    /// The Internet: lognormal around 40 ms per hop, and one hop in twenty from a heavy
    /// (Pareto) tail reaching seconds.
    Wan,
    /// Uniform between two bounds, ms.
    Range(f64, f64),
}

impl Latency {
    /// One hop's latency in ms.
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        match *self {
            Latency::Lan => 0.2 + 1.8 * rng.f64(),
            Latency::Wan => {
                if rng.chance(0.05) {
                    rng.pareto(80.0, 1.5).min(5_000.0)
                } else {
                    (40f64.ln() + 0.5 * rng.normal()).exp()
                }
            }
            Latency::Range(lo, hi) => lo + (hi - lo) * rng.f64(),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Latency::Lan => f.write_str("lan"),
            Latency::Wan => f.write_str("wan"),
            Latency::Range(a, b) => write!(f, "{a}..{b}"),
        }
    }
}

/// A latency that is not `lan`, `wan` or `MIN..MAX` (ms, MIN <= MAX).
#[derive(Debug, thiserror::Error)]
#[error("latency {0:?}: expected lan, wan or MIN..MAX in milliseconds (for example 10..80)")]
pub struct ParseLatencyError(String);

impl FromStr for Latency {
    type Err = ParseLatencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseLatencyError(s.to_owned());
        match s.trim() {
            "lan" => Ok(Latency::Lan),
            "wan" => Ok(Latency::Wan),
            other => {
                let (a, b) = other.split_once("..").ok_or_else(err)?;
                let a: f64 = a.trim().parse().map_err(|_| err())?;
                let b: f64 = b.trim().parse().map_err(|_| err())?;
                if a.is_finite() && b.is_finite() && 0.0 <= a && a <= b {
                    Ok(Latency::Range(a, b))
                } else {
                    Err(err())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!("lan".parse::<Latency>().unwrap(), Latency::Lan);
        assert_eq!(
            "10..80".parse::<Latency>().unwrap(),
            Latency::Range(10.0, 80.0)
        );
        assert!("80..10".parse::<Latency>().is_err());
        assert!("fast".parse::<Latency>().is_err());
    }

    #[test]
    fn wan_has_a_heavy_tail() {
        let mut rng = Rng::new(3);
        let mut v: Vec<f64> = (0..20_000).map(|_| Latency::Wan.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        let p50 = v[v.len() / 2];
        let p999 = v[v.len() * 999 / 1000];
        assert!((30.0..55.0).contains(&p50), "{p50}");
        assert!(p999 > 10.0 * p50, "p99.9 {p999} vs p50 {p50}");
        let mut rng = Rng::new(3);
        assert!((0..1000).all(|_| (0.2..=2.0).contains(&Latency::Lan.sample(&mut rng))));
    }
}
