//! Ticket vectors (PROTOCOL.md 4.1).

use libp2p_identity::PeerId;
use serde::Deserialize;

use super::{Report, hash, parse};
use crate::hash::from_hex;
use crate::ticket::{SlotContext, lowest, ticket};

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    network_id: String,
    slot: u64,
    peer_ids: Vec<String>,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    tickets: Vec<String>,
    winner_peer_id: String,
}

pub(super) fn run(name: &str, value: serde_json::Value) -> Report {
    let file: File = match parse(name, "tickets", value) {
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

pub(super) fn peer(text: &str) -> Result<PeerId, String> {
    let bytes = from_hex(text).map_err(|e| format!("peer id {text:?} is not hex: {e}"))?;
    PeerId::from_bytes(&bytes).map_err(|e| format!("peer id {text} is not a PeerId: {e}"))
}

fn check(case: &Case) -> Result<Vec<String>, String> {
    let ctx = SlotContext::detached(hash("network_id", &case.network_id)?, case.slot);
    let peers = case
        .peer_ids
        .iter()
        .map(|p| peer(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut problems = Vec::new();
    if case.expect.tickets.len() != peers.len() {
        problems.push(format!(
            "{} peer ids but {} expected tickets",
            peers.len(),
            case.expect.tickets.len()
        ));
    }
    for ((peer, text), expected) in peers.iter().zip(&case.peer_ids).zip(&case.expect.tickets) {
        let got = ticket(&ctx, peer);
        match expected.parse::<u64>() {
            Ok(expected) if expected == got => {}
            Ok(expected) => {
                problems.push(format!("ticket of {text}: expected {expected}, got {got}"))
            }
            Err(e) => problems.push(format!("expected ticket {expected:?} is not a u64: {e}")),
        }
    }
    let winner = lowest(&ctx, &peers).map(|(_, p)| crate::hash::to_hex(&p.to_bytes()));
    let expected = case.expect.winner_peer_id.to_lowercase();
    if winner.as_deref() != Some(expected.as_str()) {
        problems.push(format!(
            "winner: expected {expected}, got {}",
            winner.unwrap_or_else(|| "none".to_owned())
        ));
    }
    Ok(problems)
}
