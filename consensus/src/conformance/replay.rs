//! Replay selection vectors (PROTOCOL.md 4.3).

use serde::Deserialize;

use super::{Report, hash, parse};
use crate::select::select;

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    domain: String,
    network_id: String,
    slot: u64,
    start_ms: u64,
    track_hashes: Vec<String>,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    n: u64,
    seed: String,
    index: u64,
    winner: String,
}

pub(super) fn run(name: &str, value: serde_json::Value) -> Report {
    let file: File = match parse(name, "replay", value) {
        Ok(file) => file,
        Err(report) => return report,
    };
    let mut report = Report::default();
    for (i, case) in file.cases.iter().enumerate() {
        let problems = check(case).unwrap_or_else(|e| vec![e]);
        report.check(format!("{name} case {i} (slot {})", case.slot), problems);
    }
    report
}

fn check(case: &Case) -> Result<Vec<String>, String> {
    let network_id = hash("network_id", &case.network_id)?;
    let candidates = case
        .track_hashes
        .iter()
        .map(|h| hash("track hash", h))
        .collect::<Result<Vec<_>, _>>()?;
    let expected_seed = hash("expect.seed", &case.expect.seed)?;
    let expected_winner = hash("expect.winner", &case.expect.winner)?;
    let Some(got) = select(
        &case.domain,
        &network_id,
        case.slot,
        case.start_ms,
        &candidates,
    ) else {
        return Ok(vec!["no candidate to select from".to_owned()]);
    };
    let mut problems = Vec::new();
    if u64::from(got.n) != case.expect.n {
        problems.push(format!("n: expected {}, got {}", case.expect.n, got.n));
    }
    if got.seed != expected_seed {
        problems.push(format!("seed: expected {expected_seed}, got {}", got.seed));
    }
    if got.index != case.expect.index {
        problems.push(format!(
            "index: expected {}, got {}",
            case.expect.index, got.index
        ));
    }
    if got.winner != expected_winner {
        problems.push(format!(
            "winner: expected {expected_winner}, got {}",
            got.winner
        ));
    }
    Ok(problems)
}
