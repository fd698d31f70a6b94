//! What a run simulates: from the command line or a scenario file (TOML).

use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::adversary::Adversaries;
use crate::latency::Latency;

/// Bounds of the (uniform) track lengths of the simulated libraries and genesis queue, ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackLengths {
    /// Shortest track, ms.
    pub min_ms: u64,
    /// Longest track, ms.
    pub max_ms: u64,
}

/// Track lengths that are not `MIN..MAX` in ms.
#[derive(Debug, thiserror::Error)]
#[error(
    "track lengths {0:?}: expected MIN..MAX in milliseconds, MIN <= MAX (for example 20000..40000)"
)]
pub struct ParseTrackLengthsError(String);

impl FromStr for TrackLengths {
    type Err = ParseTrackLengthsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseTrackLengthsError(s.to_owned());
        let (a, b) = s.split_once("..").ok_or_else(err)?;
        let min_ms: u64 = a.trim().parse().map_err(|_| err())?;
        let max_ms: u64 = b.trim().parse().map_err(|_| err())?;
        if min_ms <= max_ms {
            Ok(TrackLengths { min_ms, max_ms })
        } else {
            Err(err())
        }
    }
}

impl std::fmt::Display for TrackLengths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.min_ms, self.max_ms)
    }
}

/// A network partition: at slot `at_slot`, the first `split_pct` % of the nodes and the rest
/// stop hearing each other for `slots` slots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partition {
    /// The slot at whose start the partition begins.
    pub at_slot: u64,
    /// Percentage of nodes on the first side, 1 to 99.
    pub split_pct: u8,
    /// How many slots it lasts.
    pub slots: u64,
}

/// A partition that is not `AT:SPLIT:DURATION`.
#[derive(Debug, thiserror::Error)]
#[error(
    "partition {0:?}: expected AT:SPLIT:DURATION (start slot, percent of nodes on one side 1-99, length in slots), for example 20:50:5"
)]
pub struct ParsePartitionError(String);

impl FromStr for Partition {
    type Err = ParsePartitionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePartitionError(s.to_owned());
        let parts: Vec<&str> = s.split(':').map(str::trim).collect();
        let [at, split, len] = parts.as_slice() else {
            return Err(err());
        };
        let p = Partition {
            at_slot: at.parse().map_err(|_| err())?,
            split_pct: split.parse().map_err(|_| err())?,
            slots: len.parse().map_err(|_| err())?,
        };
        if (1..=99).contains(&p.split_pct) && p.slots > 0 {
            Ok(p)
        } else {
            Err(err())
        }
    }
}

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// For people.
    Text,
    /// One JSON object.
    Json,
}

/// The protocol version whose rules the nodes follow, where the simulator models a difference
/// (PROTOCOL.md 12: version 1.1 replaces version 1; version 1 is kept to show what 1.1
/// prevents).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
pub enum Protocol {
    /// Version 1: a node that could not fetch the winner by its slot reports that it played
    /// nothing (`plays` null), which makes it ineligible five slots later.
    #[value(name = "1")]
    #[serde(rename = "1")]
    V1,
    /// Version 1.1: it reports the mark `unavailable` instead (12.2), which keeps it eligible.
    #[default]
    #[value(name = "1.1")]
    #[serde(rename = "1.1")]
    V1_1,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::V1 => "1",
            Protocol::V1_1 => "1.1",
        })
    }
}

/// Everything a run depends on. The same config and seed give the same run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Consensus slots to decide after the genesis queue.
    pub slots: u64,
    /// The seed of every random draw.
    pub seed: u64,
    /// Per-hop latency.
    pub latency: Latency,
    /// Probability that a message (or a request or a response) never reaches a given node.
    pub loss: f64,
    /// Partitions.
    pub partitions: Vec<Partition>,
    /// Each node's clock is off by a fixed amount drawn uniformly in [-skew_ms, +skew_ms].
    pub skew_ms: u64,
    /// Tracks in each node's library.
    pub library_size: usize,
    /// Churn: expected churn events per node per slot (see docs/sim.md, "Churn").
    pub churn: f64,
    /// Misbehaving nodes, by kind.
    pub adversaries: Vec<Adversaries>,
    /// Lengths of the tracks in the libraries and the genesis queue.
    pub track_ms: TrackLengths,
    /// The genesis rules' `status_interval_ms`; None keeps the default (5 s). Longer intervals
    /// make long runs cheap (fewer Status messages) but slow down fork healing.
    pub status_interval_ms: Option<u64>,
    /// Threads that run the machines (1: all on the calling thread). The report does not
    /// depend on it.
    pub threads: usize,
    /// The protocol version's rules where they differ (default 1.1).
    pub protocol: Protocol,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 10,
            slots: 20,
            seed: 1,
            latency: Latency::Lan,
            loss: 0.0,
            partitions: Vec::new(),
            skew_ms: 0,
            library_size: 8,
            churn: 0.0,
            adversaries: Vec::new(),
            track_ms: TrackLengths {
                min_ms: 120_000,
                max_ms: 299_999,
            },
            status_interval_ms: None,
            threads: 1,
            protocol: Protocol::V1_1,
        }
    }
}

/// A config that makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value out of range.
    #[error("{0}")]
    Invalid(String),
    /// The scenario file cannot be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The scenario file is not valid.
    #[error("scenario {path}: {message}")]
    Scenario {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        message: String,
    },
}

impl SimConfig {
    /// Checks every value; all validation is here.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !(2..=100_000).contains(&self.nodes) {
            return bad(format!("nodes must be 2 to 100000, not {}", self.nodes));
        }
        if self.slots == 0 {
            return bad("slots must be at least 1".into());
        }
        if !(1..=64).contains(&self.threads) {
            return bad(format!("threads must be 1 to 64, not {}", self.threads));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return bad(format!("loss must be in [0, 1), not {}", self.loss));
        }
        if self.library_size == 0 {
            return bad("library_size must be at least 1".into());
        }
        if !(0.0..=0.5).contains(&self.churn) {
            return bad(format!(
                "churn must be in [0, 0.5] events per node per slot, not {}",
                self.churn
            ));
        }
        let adversaries = self.adversary_count();
        if adversaries * 2 >= self.nodes {
            return bad(format!(
                "{adversaries} adversaries among {} nodes: they must be a strict minority",
                self.nodes
            ));
        }
        let rules = chorus_consensus::Rules::default();
        let TrackLengths { min_ms, max_ms } = self.track_ms;
        if min_ms < rules.min_track_ms || max_ms > rules.max_track_ms {
            return bad(format!(
                "track lengths {} must lie within the rules' {}..{} ms",
                self.track_ms, rules.min_track_ms, rules.max_track_ms
            ));
        }
        if self.status_interval_ms == Some(0) {
            return bad("status_interval_ms must be positive".into());
        }
        for p in &self.partitions {
            if p.at_slot >= self.slots + 5 {
                return bad(format!(
                    "a partition at slot {} starts after the run ends",
                    p.at_slot
                ));
            }
        }
        Ok(())
    }

    /// Adversary identities of every kind together.
    pub fn adversary_count(&self) -> usize {
        self.adversaries.iter().map(|a| a.count).sum()
    }
}

/// The TOML form of a scenario: every field optional, defaults as on the command line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for reports.
    pub name: Option<String>,
    /// Number of nodes.
    pub nodes: Option<usize>,
    /// Slots to decide.
    pub slots: Option<u64>,
    /// Seed.
    pub seed: Option<u64>,
    /// `lan`, `wan` or `MIN..MAX`.
    pub latency: Option<String>,
    /// Loss probability.
    pub loss: Option<f64>,
    /// Partitions as `AT:SPLIT:DURATION`.
    #[serde(default)]
    pub partition: Vec<String>,
    /// Clock skew bound, ms.
    pub skew_ms: Option<u64>,
    /// Tracks per library.
    pub library_size: Option<usize>,
    /// Report format.
    pub report: Option<ReportFormat>,
    /// Expected churn events per node per slot.
    pub churn: Option<f64>,
    /// Adversaries as `KIND:COUNT`.
    #[serde(default)]
    pub adversary: Vec<String>,
    /// Track lengths as `MIN..MAX` (ms).
    pub track_ms: Option<String>,
    /// The rules' Status interval, ms.
    pub status_interval_ms: Option<u64>,
    /// The protocol version, `"1"` or `"1.1"`.
    pub protocol: Option<Protocol>,
}

impl Scenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Scenario {
            path: p,
            message: e.to_string(),
        })
    }

    /// Applies the scenario over `cfg`.
    pub fn apply(&self, cfg: &mut SimConfig) -> Result<(), ConfigError> {
        let invalid = |e: &dyn std::fmt::Display| ConfigError::Invalid(e.to_string());
        if let Some(v) = self.nodes {
            cfg.nodes = v;
        }
        if let Some(v) = self.slots {
            cfg.slots = v;
        }
        if let Some(v) = self.seed {
            cfg.seed = v;
        }
        if let Some(v) = &self.latency {
            cfg.latency = v.parse().map_err(|e| invalid(&e))?;
        }
        if let Some(v) = self.loss {
            cfg.loss = v;
        }
        for p in &self.partition {
            cfg.partitions.push(p.parse().map_err(|e| invalid(&e))?);
        }
        if let Some(v) = self.skew_ms {
            cfg.skew_ms = v;
        }
        if let Some(v) = self.library_size {
            cfg.library_size = v;
        }
        if let Some(v) = self.churn {
            cfg.churn = v;
        }
        for a in &self.adversary {
            cfg.adversaries.push(a.parse().map_err(|e| invalid(&e))?);
        }
        if let Some(v) = &self.track_ms {
            cfg.track_ms = v.parse().map_err(|e| invalid(&e))?;
        }
        if let Some(v) = self.status_interval_ms {
            cfg.status_interval_ms = Some(v);
        }
        if let Some(v) = self.protocol {
            cfg.protocol = v;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse_strictly() {
        assert_eq!(
            "20:50:5".parse::<Partition>().unwrap(),
            Partition {
                at_slot: 20,
                split_pct: 50,
                slots: 5
            }
        );
        assert!("20:0:5".parse::<Partition>().is_err());
        assert!("20:50".parse::<Partition>().is_err());
        assert!("x:50:5".parse::<Partition>().is_err());
    }

    #[test]
    fn scenarios_apply_and_reject_unknown_keys() {
        let s: Scenario =
            toml::from_str("nodes = 100\nlatency = \"wan\"\nloss = 0.1\npartition = [\"8:80:3\"]")
                .unwrap();
        let mut cfg = SimConfig::default();
        s.apply(&mut cfg).unwrap();
        assert_eq!((cfg.nodes, cfg.latency, cfg.loss), (100, Latency::Wan, 0.1));
        assert_eq!(cfg.partitions.len(), 1);
        cfg.validate().unwrap();
        let err = toml::from_str::<Scenario>("nodez = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodez"), "{err}");
        cfg.loss = 1.0;
        assert!(cfg.validate().is_err());
        let s: Scenario = toml::from_str(
            "nodes = 10\nchurn = 0.05\nadversary = [\"equivocate:2\", \"spam:1\"]\ntrack_ms = \"20000..40000\"",
        )
        .unwrap();
        let mut cfg = SimConfig::default();
        s.apply(&mut cfg).unwrap();
        assert_eq!(cfg.adversary_count(), 3);
        assert_eq!(cfg.track_ms.min_ms, 20_000);
        cfg.validate().unwrap();
        cfg.adversaries[0].count = 4;
        assert!(cfg.validate().is_err(), "5 of 10 is not a minority");
        let s: Scenario = toml::from_str("protocol = \"1\"").unwrap();
        let mut cfg = SimConfig::default();
        assert_eq!(cfg.protocol, Protocol::V1_1);
        s.apply(&mut cfg).unwrap();
        assert_eq!(cfg.protocol, Protocol::V1);
        assert!(toml::from_str::<Scenario>("protocol = \"2\"").is_err());
    }
}
