//! `chorus status`: a running node's `GET /status` as a table.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Fetches `/status` with a minimal HTTP/1.1 request (loopback, no TLS).
pub fn fetch(addr: SocketAddr) -> Result<Value> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("no node answers on {addr}; is it running?"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("the node answered {}", head.lines().next().unwrap_or(""));
    }
    serde_json::from_str(body).context("the node's status is not JSON")
}

/// `chorus status`.
pub fn run(data_dir: &Path, http: Option<SocketAddr>, json: bool) -> Result<ExitCode> {
    let addr = match http {
        Some(a) => a,
        None => {
            let file = data_dir.join("http.addr");
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "no node has run in {} (no {}); pass --http ADDR",
                    data_dir.display(),
                    file.display()
                )
            })?;
            text.trim()
                .parse()
                .with_context(|| format!("{} is damaged", file.display()))?
        }
    };
    let v = fetch(addr)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&v);
    Ok(ExitCode::SUCCESS)
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn name(t: &Value) -> String {
    let artist = t["artist"].as_str().unwrap_or("");
    let title = t["title"].as_str().unwrap_or("");
    if artist.is_empty() {
        title.to_owned()
    } else {
        format!("{artist} - {title}")
    }
}

/// The enrollment line (PROTOCOL.md 12.3).
fn enrollment(e: &Value) -> String {
    let state = match (e["enrolled_at"].as_u64(), e["eligible_from"].as_u64()) {
        (Some(at), Some(from)) => format!("enrolled at slot {at}, eligible from slot {from}"),
        _ if e["reenrolling"].as_bool() == Some(true) => "re-enrolling (seed replaced)".to_owned(),
        _ => "not enrolled yet".to_owned(),
    };
    format!(
        "{state}; roster {}, {} Enrolls pending",
        s(&e["roster"]),
        s(&e["pending"])
    )
}

fn print_table(v: &Value) {
    println!("node      {}", s(&v["identity"]));
    match v["network"]["name"].as_str().filter(|n| !n.is_empty()) {
        Some(name) => println!("network   {name} ({})", s(&v["network"]["id"])),
        None => println!("network   {}", s(&v["network"]["id"])),
    }
    println!("reachable {}", s(&v["reachability"]));
    let c = &v["consensus"];
    println!(
        "consensus in sync {}/{}, chain {} slots",
        s(&c["in_sync"]),
        s(&c["total"]),
        s(&v["chain"]["len"])
    );
    println!("enrolled  {}", enrollment(&v["enrollment"]));
    match v["playing"].as_object() {
        Some(_) => {
            let p = &v["playing"];
            let pos = p["position_ms"].as_u64().unwrap_or(0) / 1000;
            let dur = p["consensus_track"]["duration_ms"].as_u64().unwrap_or(0) / 1000;
            let track = if p["track"].is_null() {
                "silence".to_owned()
            } else {
                name(&p["track"])
            };
            let mark = if p["diverged"].as_bool() == Some(true) {
                "  (diverged)"
            } else {
                ""
            };
            println!(
                "playing   slot {}  {track}  {}:{:02} / {}:{:02}{mark}",
                s(&p["slot"]),
                pos / 60,
                pos % 60,
                dur / 60,
                dur % 60
            );
        }
        None => println!("playing   nothing"),
    }
    println!();
    println!("{:<6} {:<10} track", "slot", "phase");
    for n in v["next"].as_array().into_iter().flatten() {
        let track = if n["track"].is_null() {
            "-".to_owned()
        } else {
            name(&n["track"])
        };
        let held = match n["held"].as_bool() {
            Some(true) => " (held)",
            Some(false) => " (fetching)",
            None => "",
        };
        println!("{:<6} {:<10} {track}{held}", s(&n["slot"]), s(&n["phase"]));
    }
    println!();
    println!(
        "{:<54} {:<10} {:>9} {:>10} {:>10}",
        "peer", "state", "connected", "rtt ms", "offset ms"
    );
    for p in v["peers"].as_array().into_iter().flatten() {
        let connected = match (p["connected"].as_bool(), p["route"].as_str()) {
            (Some(true), Some("relayed")) => "relayed",
            (Some(true), _) => "direct",
            _ => "no",
        };
        println!(
            "{:<54} {:<10} {:>9} {:>10} {:>10}",
            s(&p["peer_id"]),
            s(&p["state"]),
            connected,
            s(&p["rtt_ms"]),
            s(&p["clock_offset_ms"])
        );
    }
    println!();
    let mb = v["store"]["bytes"].as_u64().unwrap_or(0) as f64 / 1e6;
    println!("store     {mb:.1} MB");
}
