//! Protocol 1.1 vectors (PROTOCOL.md 12.3): hash chains and reveals, the beacon, ticket v2.

use serde::Deserialize;

use super::{Report, hash, parse};
use crate::beacon::{
    HashChain, beacon_genesis, beacon_next, ticket_beacon_slot, ticket_v2, verify_reveal,
};
use crate::hash::Hash32;
use crate::ticket::rank_cmp;

#[derive(Deserialize)]
struct File {
    chains: Vec<Chain>,
    beacons: Vec<Beacon>,
    tickets_v2: Vec<Tickets>,
}

#[derive(Deserialize)]
struct Chain {
    seed: String,
    len: u64,
    commit: String,
    values: Vec<Value>,
    reveals: Vec<Reveal>,
}

#[derive(Deserialize)]
struct Value {
    i: u64,
    v: String,
}

#[derive(Deserialize)]
struct Reveal {
    reveal: String,
    i: u64,
    known: String,
    j: u64,
    valid: bool,
}

#[derive(Deserialize)]
struct Beacon {
    network_id: String,
    genesis: String,
    steps: Vec<Step>,
    expect: Vec<String>,
}

#[derive(Deserialize)]
struct Step {
    slot: u64,
    reveal: Option<String>,
}

#[derive(Deserialize)]
struct Tickets {
    network_id: String,
    slot: u64,
    lookahead: u64,
    beacon_slot: u64,
    beacon: String,
    peer_ids: Vec<String>,
    expect: Expected,
}

#[derive(Deserialize)]
struct Expected {
    tickets: Vec<String>,
    winner_peer_id: String,
}

pub(super) fn run(name: &str, value: serde_json::Value) -> Report {
    let file: File = match parse(name, "beacon", value) {
        Ok(file) => file,
        Err(report) => return report,
    };
    let mut report = Report::default();
    for (n, c) in file.chains.iter().enumerate() {
        let problems = check_chain(c).unwrap_or_else(|e| vec![e]);
        report.check(format!("{name} chain {n} (len {})", c.len), problems);
    }
    for (n, b) in file.beacons.iter().enumerate() {
        let problems = check_beacon(b).unwrap_or_else(|e| vec![e]);
        report.check(format!("{name} beacon {n}"), problems);
    }
    for (n, t) in file.tickets_v2.iter().enumerate() {
        let problems = check_tickets(t).unwrap_or_else(|e| vec![e]);
        report.check(format!("{name} tickets_v2 {n} (slot {})", t.slot), problems);
    }
    report
}

fn differs(what: String, expected: &Hash32, got: &Hash32) -> Option<String> {
    (expected != got).then(|| {
        format!(
            "{what}: expected {}, got {}",
            expected.to_hex(),
            got.to_hex()
        )
    })
}

fn check_chain(c: &Chain) -> Result<Vec<String>, String> {
    let chain = HashChain::new(&hash("seed", &c.seed)?, c.len);
    let mut problems = Vec::new();
    problems.extend(differs(
        "commit".into(),
        &hash("commit", &c.commit)?,
        &chain.commit(),
    ));
    for v in &c.values {
        let got = chain
            .value(v.i)
            .ok_or_else(|| format!("v({}) is past the chain's end", v.i))?;
        problems.extend(differs(format!("v({})", v.i), &hash("v", &v.v)?, &got));
    }
    for r in &c.reveals {
        let got = verify_reveal(
            &hash("reveal", &r.reveal)?,
            r.i,
            &hash("known", &r.known)?,
            r.j,
            c.len,
        );
        if got != r.valid {
            problems.push(format!(
                "reveal v({}) against v({}): expected {}, got {}",
                r.i,
                r.j,
                if r.valid { "valid" } else { "invalid" },
                if got { "valid" } else { "invalid" }
            ));
        }
    }
    Ok(problems)
}

fn check_beacon(b: &Beacon) -> Result<Vec<String>, String> {
    let network = hash("network_id", &b.network_id)?;
    let mut problems = Vec::new();
    let mut beacon = beacon_genesis(&network);
    problems.extend(differs(
        "beacon(L-1)".into(),
        &hash("genesis", &b.genesis)?,
        &beacon,
    ));
    if b.steps.len() != b.expect.len() {
        problems.push(format!(
            "{} steps but {} expected beacons",
            b.steps.len(),
            b.expect.len()
        ));
    }
    for (step, expected) in b.steps.iter().zip(&b.expect) {
        let reveal = step
            .reveal
            .as_deref()
            .map(|r| hash("reveal", r))
            .transpose()?;
        beacon = beacon_next(&beacon, step.slot, reveal.as_ref());
        problems.extend(differs(
            format!("beacon({})", step.slot),
            &hash("expect", expected)?,
            &beacon,
        ));
    }
    Ok(problems)
}

fn check_tickets(t: &Tickets) -> Result<Vec<String>, String> {
    let network = hash("network_id", &t.network_id)?;
    let beacon = hash("beacon", &t.beacon)?;
    let mut problems = Vec::new();
    let slot = ticket_beacon_slot(t.slot, t.lookahead);
    if slot != t.beacon_slot {
        problems.push(format!(
            "beacon slot of {}: expected {}, got {slot}",
            t.slot, t.beacon_slot
        ));
    }
    let peers = t
        .peer_ids
        .iter()
        .map(|p| super::tickets::peer(p))
        .collect::<Result<Vec<_>, _>>()?;
    let tickets: Vec<u64> = peers
        .iter()
        .map(|p| ticket_v2(&network, t.slot, &beacon, p))
        .collect();
    for ((got, text), expected) in tickets.iter().zip(&t.peer_ids).zip(&t.expect.tickets) {
        if expected.parse::<u64>().ok() != Some(*got) {
            problems.push(format!("ticket of {text}: expected {expected}, got {got}"));
        }
    }
    let winner = peers
        .iter()
        .zip(&tickets)
        .min_by(|a, b| rank_cmp((*a.1, a.0), (*b.1, b.0)))
        .map(|(p, _)| crate::hash::to_hex(&p.to_bytes()));
    if winner.as_deref() != Some(t.expect.winner_peer_id.to_lowercase().as_str()) {
        problems.push(format!(
            "winner: expected {}, got {}",
            t.expect.winner_peer_id,
            winner.unwrap_or_else(|| "none".into())
        ));
    }
    Ok(problems)
}
