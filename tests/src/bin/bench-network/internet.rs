//! `internet`: the propagation benchmark on the namespace testbed (docs/testbed.md): a public
//! bootstrap node and N-1 homes behind cone NATs, each home's uplink 40 ms +- 10 ms (normal),
//! 1 % loss and 5 Mbit/s up, its downlink 40 ms +- 10 ms and 1 % loss. The homes are given
//! only the public node's address. The public node's library is short (7 s tracks, so the
//! seed slots pass quickly); each home has 8 tracks (so that winners are new) lasting
//! `--seconds` (30 by default: five 6-s segments, about 600 KB). For each slot from the one in
//! which every home may propose (once enrolled, PROTOCOL.md 12.3) on: the
//! time from the first decision (`prefetch`) to the last node holding the winner, the
//! proposer's upload in copies of the track, and whether every node played it in full. Needs
//! root.

use std::time::Duration;

use anyhow::{Result, bail};
use chorus_tests::internet::{Joiner, Radio, home_link};
use chorus_tests::net::{Node, slot};
use chorus_tests::testbed::{HomeSpec, Spec, Testbed};

use crate::{LONG, slot_propagation};

const MS: Duration = Duration::from_millis(1);

pub fn internet(n: usize, slots: u64, seconds: f64) -> Result<()> {
    if n < 2 {
        bail!("--nodes counts the public node: at least 2");
    }
    if let Some(why) = chorus_tests::testbed::unavailable() {
        bail!("the testbed is unavailable: {why}");
    }
    let mut spec = Spec::new().public();
    for _ in 1..n {
        spec = spec.home(HomeSpec::new(1).link(home_link()));
    }
    let tb = Testbed::new("bench_internet", &spec)?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    println!("logs in {} (kept with CHORUS_BENCH_KEEP=1)", root.display());
    let names: Vec<String> = (1..n).map(|i| format!("n{i}")).collect();
    let joiners: Vec<Joiner<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Joiner::new(name, tb.host(i, 0)))
        .collect();
    let start_in = Duration::from_secs(15 + 2 * n as u64);
    let radio = Radio::start(root, tb.public(0), start_in, &joiners, (8, seconds), false);
    println!("nodes {n} (1 public, {} homes behind cone NATs)", n - 1);
    let first = radio.eligible_from();
    println!("every home proposes from slot {first} (enrolled, PROTOCOL.md 12.3)");
    measure(&radio.nodes, first, slots);
    home_connections(&radio);
    for node in &radio.nodes {
        for panic in node.panics() {
            println!("{}: PANIC {panic}", node.name);
        }
    }
    if std::env::var_os("CHORUS_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
    drop(tb);
    Ok(())
}

/// Per slot from `first` on: propagation, the proposer's upload, and nodes that started the
/// slot without every segment; then the median and maximum propagation.
fn measure(nodes: &[Node], first: u64, slots: u64) {
    let n = nodes.len();
    let mut times = Vec::new();
    for k in first..first + slots {
        if let Some(ms) = slot_propagation(nodes, k) {
            times.push(ms);
        }
        let late: Vec<&str> = nodes
            .iter()
            .filter(|node| {
                let p = node.wait_for(&format!("playing {k}"), LONG, |v| {
                    v["event"] == "playing" && slot(v) == Some(k)
                });
                p["segments_held"] != p["segments"]
            })
            .map(|node| node.name.as_str())
            .collect();
        if !late.is_empty() {
            println!("slot {k}: started without every segment on {late:?}");
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    if let (Some(median), Some(max)) = (times.get(times.len() / 2), times.last()) {
        println!(
            "propagation to all {n} nodes on the testbed: median {median:.0} ms, max {max:.0} ms over {} slots",
            times.len()
        );
    }
}

/// Connection success between NATed homes: of every pair of homes, those that hold a direct
/// (hole-punched) connection, those connected only through a relay, and those not connected,
/// as each home's `/status` tells it (a pair counts as direct when either side says so).
fn home_connections(radio: &Radio) {
    let statuses: Vec<serde_json::Value> = radio.nodes.iter().map(Node::status).collect();
    let route = |i: usize, j: usize| -> Option<String> {
        statuses[i]["peers"]
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == radio.ids[j].as_str() && p["connected"] == true)
            .and_then(|p| p["route"].as_str().map(str::to_owned))
    };
    let (mut direct, mut relayed, mut none) = (0, 0, 0);
    let homes = 1..radio.nodes.len();
    for i in homes.clone() {
        for j in homes.clone().filter(|j| *j > i) {
            let routes = [route(i, j), route(j, i)];
            if routes.iter().any(|r| r.as_deref() == Some("direct")) {
                direct += 1;
            } else if routes.iter().any(Option::is_some) {
                relayed += 1;
            } else {
                none += 1;
            }
        }
    }
    let pairs = direct + relayed + none;
    println!(
        "home pairs (cone NATs): {direct} of {pairs} connected directly, {relayed} only through a relay, {none} not connected; hole punching succeeded for {direct} of {} connected pairs",
        direct + relayed
    );
}

/// `sync --testbed`: the sync benchmark across the testbed. A public bootstrap node (no sink)
/// and four homes behind cone NATs, each home's uplink 25 ms +- 5 ms up and 15 ms +- 5 ms down
/// (uniform): one-way delays differ by 10 ms on every link, 40 ms +- 10 ms from home to home
/// either way. Homes a, b and c (wav sinks) have clocks skewed by -400, 0 and +350 ms (with
/// `--rates` also running -80, 0 and +100 ppm fast); home d (no skew) joins once slot 2 plays.
/// Every home is given only the public node's address. The figures are those of loopback
/// `sync`.
pub fn sync(seconds: u64, rates: bool) -> Result<()> {
    use std::time::{Instant, SystemTime, UNIX_EPOCH};

    use chorus_tests::testbed::{Jitter, Link, Shape};

    use crate::{RATES_PPM, SKEWS, print_convergence, print_late_joiner, print_offsets, sync_rows};

    if let Some(why) = chorus_tests::testbed::unavailable() {
        bail!("the testbed is unavailable: {why}");
    }
    let link = Link::new(
        Shape::wire().delay(25 * MS).jitter(5 * MS, Jitter::Uniform),
        Shape::wire().delay(15 * MS).jitter(5 * MS, Jitter::Uniform),
    );
    let mut spec = Spec::new().public();
    for _ in 0..4 {
        spec = spec.home(HomeSpec::new(1).link(link.clone()));
    }
    let tb = Testbed::new("bench_sync", &spec)?;
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    println!("logs in {} (kept with CHORUS_BENCH_KEEP=1)", root.display());
    let sink = |name: &str, k: Option<usize>| {
        let skew = k.map_or(0, |k| SKEWS[k].1);
        let rate = k.filter(|_| rates).map_or(0, |k| RATES_PPM[k]);
        vec![
            "--audio".to_owned(),
            format!("wav:{}", root.join(format!("{name}.wav")).display()),
            format!("--clock-skew-ms={skew}"),
            format!("--clock-rate-ppm={rate}"),
        ]
    };
    let joiners: Vec<Joiner<'_>> = SKEWS
        .iter()
        .enumerate()
        .map(|(k, (name, _))| Joiner {
            name,
            host: tb.host(k, 0),
            extra: sink(name, Some(k)),
        })
        .collect();
    let started = Instant::now();
    let radio = Radio::start(
        root,
        tb.public(0),
        Duration::from_secs(10),
        &joiners,
        (6, 7.0),
        false,
    );
    radio.nodes[1].wait_for("slot 2", LONG, |v| {
        v["event"] == "playing" && slot(v) == Some(2)
    });
    let d_start = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as i64;
    let d = Radio::join(
        root,
        &Joiner {
            name: "d",
            host: tb.host(3, 0),
            extra: sink("d", None),
        },
        20,
        (6, 7.0),
        &radio.network,
        &radio.peer,
        false,
    );
    let left = Duration::from_secs(seconds).saturating_sub(started.elapsed());
    // The benchmark's length, not an event: the nodes play for that long.
    std::thread::sleep(left);
    let (rows, steps) = sync_rows(root, [&radio.nodes[1], &radio.nodes[2], &radio.nodes[3]])?;
    drop(d);
    drop(radio);
    if std::env::var_os("CHORUS_BENCH_KEEP").is_some() {
        println!("kept {}", tmp.keep().display());
    }
    println!("sync across the testbed: 4 homes behind cone NATs, links 25/15 ms +- 5 ms");
    let last_bad = print_offsets(&rows)?;
    print_convergence(&rows, &last_bad, &steps);
    print_late_joiner(&rows, d_start)
}

/// `hop`: one hop between two homes as the testbed's ten-node radio has it, measured with plain
/// TCP (the kernel's, as the nodes' TCP transport uses): two public hosts, each behind the home
/// link (40 ms +- 10 ms and 1 % loss each way, 5 Mbit/s up), so a round trip crosses four
/// emulated directions (about 160 ms). For each size, `rounds` transfers of that many bytes on
/// a fresh connection, on one connection after `idle` of silence, and back to back on one
/// connection; each is timed from the first byte written (the connect, for a fresh one) to the
/// receiver's one-byte answer after the last. Prints the median and the maximum beside the
/// link's floor (size at 5 Mbit/s plus one round trip). With `to_public` the receiver has a
/// plain link (a home sending to the public node, as `internet --nodes 2` measures; about 80 ms
/// of round trip). Needs root.
pub fn hop(rounds: usize, idle_ms: u64, to_public: bool) -> Result<()> {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Instant;

    if let Some(why) = chorus_tests::testbed::unavailable() {
        bail!("the testbed is unavailable: {why}");
    }
    let spec = Spec::new().public_with(home_link());
    let (spec, rtt_ms) = if to_public {
        (spec.public(), 80.0)
    } else {
        (spec.public_with(home_link()), 160.0)
    };
    let tb = Testbed::new("bench_hop", &spec)?;
    let (sender, receiver) = (tb.public(0), tb.public(1));
    let listener = receiver.tcp_listener(7000)?;
    let to: SocketAddr = listener.local_addr()?;
    std::thread::spawn(move || acknowledge_transfers(&listener));
    let sysctl =
        |name: &str| sender.run(|| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")));
    println!(
        "sender's TCP: congestion control {}, slow start after idle {}",
        sysctl("tcp_congestion_control")?.trim(),
        sysctl("tcp_slow_start_after_idle")?.trim()
    );
    let send = |conn: &mut TcpStream, size: usize| -> Result<()> {
        conn.write_all(&(size as u32).to_be_bytes())?;
        conn.write_all(&vec![7u8; size])?;
        let mut ack = [0u8; 1];
        conn.read_exact(&mut ack)?;
        Ok(())
    };
    let connect = || -> Result<TcpStream> {
        let conn = sender.tcp_connect(to, Duration::from_secs(5))?;
        conn.set_nodelay(true)?;
        Ok(conn)
    };
    for size in [125_000usize, 625_000] {
        let floor = size as f64 * 8.0 / 5e6 * 1000.0 + rtt_ms;
        let mut fresh = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            let mut conn = connect()?;
            send(&mut conn, size)?;
            fresh.push(start.elapsed());
        }
        let mut conn = connect()?;
        send(&mut conn, size)?;
        let mut idle = Vec::new();
        for _ in 0..rounds {
            std::thread::sleep(Duration::from_millis(idle_ms));
            let start = Instant::now();
            send(&mut conn, size)?;
            idle.push(start.elapsed());
        }
        let mut busy = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            send(&mut conn, size)?;
            busy.push(start.elapsed());
        }
        println!("{size} bytes (floor {floor:.0} ms: the size at 5 Mbit/s and one round trip):");
        for (what, times) in [
            ("fresh connection", fresh),
            (&format!("after {idle_ms} ms idle") as &str, idle),
            ("back to back", busy),
        ] {
            let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
            ms.sort_by(f64::total_cmp);
            println!(
                "  {what}: median {:.0} ms, max {:.0} ms over {rounds}",
                ms[ms.len() / 2],
                ms[ms.len() - 1]
            );
        }
    }
    drop(tb);
    Ok(())
}

/// `hop`'s receiver: on every connection, reads a 4-byte length and that many bytes, then
/// answers one byte; until the connection closes.
fn acknowledge_transfers(listener: &std::net::TcpListener) {
    use std::io::{Read, Write};
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { return };
        std::thread::spawn(move || {
            let mut len = [0u8; 4];
            let mut buf = vec![0u8; 64 * 1024];
            let cap = buf.len();
            while conn.read_exact(&mut len).is_ok() {
                let mut left = u32::from_be_bytes(len) as usize;
                while left > 0 {
                    match conn.read(&mut buf[..left.min(cap)]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => left -= n,
                    }
                }
                if conn.write_all(&[1]).is_err() {
                    return;
                }
            }
        });
    }
}
