//! Chain hash vectors (PROTOCOL.md 11).

use serde::Deserialize;

use super::{Report, hash, parse};
use crate::chain::{genesis_chain_hash, next_chain_hash};
use crate::hash::Hash32;

#[derive(Deserialize)]
struct File {
    network_id: String,
    #[serde(rename = "expect_chain_hash_L_minus_1")]
    expect_genesis_hash: String,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    slot: u64,
    winner: String,
    proposal_id: String,
    expect_chain_hash: String,
}

pub(super) fn run(name: &str, value: serde_json::Value) -> Report {
    let file: File = match parse(name, "chain", value) {
        Ok(file) => file,
        Err(report) => return report,
    };
    let mut report = Report::default();
    let network_id = match hash("network_id", &file.network_id) {
        Ok(id) => id,
        Err(e) => return Report::failure(format!("{name}: {e}")),
    };
    // Each step extends the hash this crate computed, so a wrong expectation fails only its step.
    let mut previous = genesis_chain_hash(&network_id);
    report.check(
        format!("{name} chain_hash(L-1)"),
        compare(&file.expect_genesis_hash, &previous),
    );
    for step in &file.steps {
        let problems = match step_hash(&previous, step) {
            Ok(got) => {
                let problems = compare(&step.expect_chain_hash, &got);
                previous = got;
                problems
            }
            Err(e) => vec![e],
        };
        report.check(format!("{name} slot {}", step.slot), problems);
    }
    report
}

fn step_hash(previous: &Hash32, step: &Step) -> Result<Hash32, String> {
    let winner = hash("winner", &step.winner)?;
    let proposal_id = hash("proposal_id", &step.proposal_id)?;
    let proposal_id = (proposal_id != Hash32::ZERO).then_some(proposal_id);
    Ok(next_chain_hash(
        previous,
        step.slot,
        &winner,
        proposal_id.as_ref(),
    ))
}

fn compare(expected: &str, got: &Hash32) -> Vec<String> {
    match hash("expected chain hash", expected) {
        Ok(expected) if expected == *got => vec![],
        Ok(expected) => vec![format!("chain hash: expected {expected}, got {got}")],
        Err(e) => vec![e],
    }
}
