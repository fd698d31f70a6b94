//! `chorus-sim`: run a simulated Chorus network and print what happened.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use chorus_sim::adversary::Adversaries;
use chorus_sim::config::{Partition, Protocol, ReportFormat, Scenario, TrackLengths};
use chorus_sim::latency::Latency;
use chorus_sim::{SimConfig, run};
use clap::Parser;

/// Simulates N Chorus nodes (the real consensus code) on a virtual clock over a simulated
/// network, and reports agreement, replays and traffic. The seed is printed first; the same
/// seed and flags reproduce the run exactly.
#[derive(Debug, Parser)]
#[command(name = "chorus-sim", version)]
struct Cli {
    /// A scenario file (TOML) with any of the settings below; flags given too override it.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Number of nodes.
    #[arg(long)]
    nodes: Option<usize>,
    /// Consensus slots to decide after the genesis queue.
    #[arg(long)]
    slots: Option<u64>,
    /// Seed of every random draw (default: 1).
    #[arg(long)]
    seed: Option<u64>,
    /// Per-hop latency: lan, wan (heavy-tailed) or MIN..MAX in ms.
    #[arg(long)]
    latency: Option<Latency>,
    /// Probability that a message never reaches a given node.
    #[arg(long)]
    loss: Option<f64>,
    /// A partition AT:SPLIT:DURATION (start slot, percent of nodes on one side, slots); repeatable.
    #[arg(long)]
    partition: Vec<Partition>,
    /// Clock skew bound in ms: each node's clock is off by up to this much either way.
    #[arg(long)]
    skew: Option<u64>,
    /// Churn: expected churn events (crash and restart, leave, join) per node per slot.
    #[arg(long, value_name = "RATE")]
    churn: Option<f64>,
    /// Misbehaving nodes KIND:COUNT (equivocate, wrong-rules, late, withhold, spam, liar,
    /// grinder);
    /// repeatable. All adversaries together must be a strict minority.
    #[arg(long, value_name = "KIND:COUNT")]
    adversary: Vec<Adversaries>,
    /// Track lengths MIN..MAX in ms (default 120000..299999); short tracks make long runs cheap.
    #[arg(long, value_name = "MIN..MAX")]
    track_ms: Option<TrackLengths>,
    /// The rules' Status interval in ms (default 5000); longer makes long runs cheap.
    #[arg(long, value_name = "MS")]
    status_ms: Option<u64>,
    /// Protocol version whose rules the nodes follow where they differ: 1.1 (default) or 1,
    /// to show what 1.1 prevents (a node that could not fetch a winner reports it
    /// `unavailable` in 1.1, as nothing played in 1).
    #[arg(long, value_enum, value_name = "VERSION")]
    protocol: Option<Protocol>,
    /// Report format.
    #[arg(long, value_enum)]
    report: Option<ReportFormat>,
    /// Threads that run the machines (default: the number of cores). The report is the same
    /// for any number.
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chorus-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let mut cfg = SimConfig::default();
    let mut format = ReportFormat::Text;
    if let Some(path) = &cli.scenario {
        let scenario = Scenario::load(path)?;
        scenario.apply(&mut cfg)?;
        format = scenario.report.unwrap_or(format);
    }
    cfg.nodes = cli.nodes.unwrap_or(cfg.nodes);
    cfg.slots = cli.slots.unwrap_or(cfg.slots);
    cfg.seed = cli.seed.unwrap_or(cfg.seed);
    cfg.latency = cli.latency.unwrap_or(cfg.latency);
    cfg.loss = cli.loss.unwrap_or(cfg.loss);
    cfg.partitions.extend(cli.partition);
    cfg.skew_ms = cli.skew.unwrap_or(cfg.skew_ms);
    cfg.churn = cli.churn.unwrap_or(cfg.churn);
    cfg.adversaries.extend(cli.adversary);
    cfg.track_ms = cli.track_ms.unwrap_or(cfg.track_ms);
    cfg.status_interval_ms = cli.status_ms.or(cfg.status_interval_ms);
    cfg.protocol = cli.protocol.unwrap_or(cfg.protocol);
    cfg.threads = cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let format = cli.report.unwrap_or(format);
    cfg.validate()?;
    eprintln!("seed {}", cfg.seed);
    let report = run(cfg);
    match format {
        ReportFormat::Text => println!("{report}"),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(
        if report.disagreeing_slots.is_empty() && report.incomplete_nodes == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
