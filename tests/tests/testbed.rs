//! The testbed itself (`chorus_tests::testbed`, docs/testbed.md): NAT hides home addresses,
//! homes are isolated, a symmetric NAT changes ports, and `link-emu` really delays, jitters,
//! drops and rate-limits. Needs root; skips with a message elsewhere, never in CI.

// Test code: its helpers outside `#[test]` functions panic on failure as the tests do.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chorus_tests::testbed::{HomeSpec, Host, Jitter, Link, Nat, Shape, Spec, Testbed, Uplink};

const MS: Duration = Duration::from_millis(1);

/// A UDP echo server on a host: answers every datagram with the datagram followed by
/// ` from <peer address>`, and remembers who sent what.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<SocketAddr>>>,
}

impl Echo {
    fn start(host: &Host, port: u16) -> Echo {
        Echo::on(host.udp_socket(port).unwrap())
    }

    /// An echo server on `sock`.
    fn on(sock: UdpSocket) -> Echo {
        sock.set_read_timeout(Some(20 * MS)).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peers = Vec::new();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let mut reply = buf[..n].to_vec();
                reply.extend_from_slice(format!(" from {peer}").as_bytes());
                let _ = sock.send_to(&reply, peer);
                peers.push(peer);
            }
            peers
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it; returns the peer of every datagram it got.
    fn peers(mut self) -> Vec<SocketAddr> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends `payload` from `sock` to `to` until an answer comes (up to `tries`, 200 ms apart);
/// returns the peer address the echo server saw, or `None`. A send that fails (a firewall's
/// refusal on the sending host) counts as a try.
fn ask(sock: &UdpSocket, to: SocketAddr, payload: &str, tries: usize) -> Option<SocketAddr> {
    sock.set_read_timeout(Some(200 * MS)).unwrap();
    let mut buf = [0u8; 2048];
    for _ in 0..tries {
        let _ = sock.send_to(payload.as_bytes(), to);
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if from == to && text.starts_with(payload) {
                return Some(text.rsplit(' ').next().unwrap().parse().unwrap());
            }
        }
    }
    None
}

#[test]
fn nat_shows_the_router_address_to_the_internet() {
    let spec = Spec::new().public().home(HomeSpec::new(1));
    let Some(tb) = Testbed::new_or_skip("nat", &spec) else {
        return;
    };
    let (public, host) = (tb.public(0), tb.host(0, 0));
    let router = tb.home(0).router().public_addr();
    assert_ne!(router, host.addr());
    // Programs run on the host see its private address.
    let out = host
        .command("ip")
        .args(["-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("inet {}/24", host.addr())),
        "{shown}"
    );

    let echo = Echo::start(public, 7000);
    let sock = host.udp_socket(0).unwrap();
    let seen = ask(&sock, echo.addr, "hello", 10).expect("the public host answers");
    assert_eq!(
        seen.ip(),
        router,
        "the internet sees the router, not {}",
        host.addr()
    );
    // Plain masquerade keeps the port when it is free.
    assert_eq!(seen.port(), sock.local_addr().unwrap().port());

    let listener = public.tcp_listener(7001).unwrap();
    let to = listener.local_addr().unwrap();
    let mut client = host.tcp_connect(to, Duration::from_secs(5)).unwrap();
    let (mut conn, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), router);
    client.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    assert!(echo.peers().iter().all(|p| p.ip() == router));
}

#[test]
fn ipv6_beside_ipv4_homes_go_out_through_nat66() {
    let spec = Spec::new()
        .ipv6()
        .public()
        .home(HomeSpec::new(1))
        .home(HomeSpec::new(1));
    let Some(tb) = Testbed::new_or_skip("ipv6", &spec) else {
        return;
    };
    let (public, host, other) = (tb.public(0), tb.host(0, 0), tb.host(1, 0));
    let router6 = tb.home(0).router().public_addr6().expect("an IPv6 testbed");
    assert_eq!(host.public_addr6(), Some(router6));
    assert_ne!(host.addr6(), Some(router6));
    // Programs run on the host see its own (ULA) address.
    let out = host
        .command("ip")
        .args(["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    let own = host.addr6().unwrap();
    assert!(shown.contains(&format!("inet6 {own}/64")), "{shown}");

    // UDP and TCP over IPv6 reach the public host from the router's address.
    let echo = Echo::on(public.udp_socket6(7000).unwrap());
    let sock = host.udp_socket6(0).unwrap();
    let seen = ask(&sock, echo.addr, "hello over IPv6", 10).expect("the public host answers");
    assert_eq!(
        seen.ip(),
        std::net::IpAddr::V6(router6),
        "NAT66 hides {own}"
    );
    let listener = public.tcp_listener6(7001).unwrap();
    let to = listener.local_addr().unwrap();
    let mut client = host.tcp_connect(to, Duration::from_secs(5)).unwrap();
    let (mut conn, peer) = listener.accept().unwrap();
    assert_eq!(peer.ip(), std::net::IpAddr::V6(router6));
    client.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");

    // IPv4 works beside it, as on every testbed.
    let echo4 = Echo::start(public, 7000);
    let sock4 = host.udp_socket(0).unwrap();
    let seen4 = ask(&sock4, echo4.addr, "hello over IPv4", 10).expect("an answer");
    assert_eq!(seen4.ip(), tb.home(0).router().public_addr());

    // Another home's private IPv6 address is out of reach, as its IPv4 one is.
    let hidden = Echo::on(other.udp_socket6(7002).unwrap());
    assert_eq!(ask(&sock, hidden.addr, "anyone?", 3), None);
    assert!(hidden.peers().is_empty());
}

#[test]
fn symmetric_nat_changes_the_port_for_every_destination() {
    let spec = Spec::new()
        .public()
        .public()
        .public()
        .home(HomeSpec::new(1))
        .home(HomeSpec::new(1).nat(Nat::Symmetric));
    let Some(tb) = Testbed::new_or_skip("symmetric", &spec) else {
        return;
    };
    let echoes: Vec<Echo> = (0..3).map(|k| Echo::start(tb.public(k), 7000)).collect();
    let ports = |host: &Host| -> BTreeSet<u16> {
        let sock = host.udp_socket(0).unwrap();
        echoes
            .iter()
            .map(|e| ask(&sock, e.addr, "which port", 10).expect("answer").port())
            .collect()
    };
    let cone = ports(tb.host(0, 0));
    assert_eq!(
        cone.len(),
        1,
        "a cone NAT shows one port to everyone: {cone:?}"
    );
    let symmetric = ports(tb.host(1, 0));
    assert!(
        symmetric.len() > 1,
        "a symmetric NAT shows each destination its own port: {symmetric:?}"
    );
}

#[test]
fn homes_cannot_reach_each_others_private_addresses() {
    let spec = Spec::new()
        .public()
        .home(HomeSpec::new(1))
        .home(HomeSpec::new(2));
    let Some(tb) = Testbed::new_or_skip("isolation", &spec) else {
        return;
    };
    let (a, b0, b1) = (tb.host(0, 0), tb.host(1, 0), tb.host(1, 1));
    let target = Echo::start(b0, 9000);
    let public_echo = Echo::start(tb.public(0), 9000);
    // Controls: home A reaches the internet, and home B's LAN reaches the target.
    let from_a = a.udp_socket(0).unwrap();
    assert!(ask(&from_a, public_echo.addr, "out", 10).is_some());
    let from_b1 = b1.udp_socket(0).unwrap();
    assert_eq!(
        ask(&from_b1, target.addr, "lan", 10),
        Some(from_b1.local_addr().unwrap())
    );

    // From home A and from the internet, neither B's private address nor its router's public
    // one (no port is forwarded) gets through.
    let b_router = SocketAddr::new(tb.home(1).router().public_addr().into(), 9000);
    let from_public = tb.public(0).udp_socket(0).unwrap();
    for (sock, to) in [
        (&from_a, target.addr),
        (&from_a, b_router),
        (&from_public, target.addr),
        (&from_public, b_router),
    ] {
        // A send may fail at once (no route, or an ICMP error from an earlier try).
        let _ = sock.send_to(b"intruder", to);
    }
    let tcp = a.tcp_connect(target.addr, Duration::from_secs(1));
    assert!(
        tcp.is_err(),
        "home A opened a TCP connection to {}",
        target.addr
    );
    assert_eq!(ask(&from_a, target.addr, "intruder", 3), None);
    let peers = target.peers();
    assert!(
        peers.iter().all(|p| p.ip() == b1.addr()),
        "only home B's own host may reach it, got {peers:?}"
    );
}

/// One numbered datagram's round trip.
struct Probe {
    /// Round-trip time of each datagram (`None`: no echo).
    rtts: Vec<Option<Duration>>,
    /// Datagram numbers in the order their echoes came back.
    order: Vec<u32>,
}

impl Probe {
    fn sorted_ms(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .rtts
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        let v = self.sorted_ms();
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    fn inversions(&self) -> usize {
        self.order.windows(2).filter(|w| w[0] > w[1]).count()
    }
}

const END: u32 = u32::MAX;

/// Sends `n` numbered datagrams from `sock` to an [`Echo`] at `to`, `gap` apart, and collects
/// the echoes. Ends when every echo is back or, on a lossy link that keeps order, when the
/// echo of an end marker (sent every 20 ms after the last datagram) is back: everything sent
/// before it has arrived or is lost.
fn probe(sock: &UdpSocket, to: SocketAddr, n: u32, gap: Duration) -> Probe {
    let sender = sock.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let sending = std::thread::spawn(move || {
        let mut sent = Vec::new();
        for seq in 0..n {
            sent.push(Instant::now());
            sender.send_to(&seq.to_be_bytes(), to).unwrap();
            std::thread::sleep(gap);
        }
        while !stop.load(Ordering::Relaxed) {
            let _ = sender.send_to(&END.to_be_bytes(), to);
            std::thread::sleep(20 * MS);
        }
        sent
    });
    sock.set_read_timeout(Some(100 * MS)).unwrap();
    let mut back = vec![None; n as usize];
    let mut order = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 2048];
    while order.len() < n as usize && Instant::now() < deadline {
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
        if seq == END {
            break;
        }
        // A stray datagram (a late answer to the warm-up) is no probe.
        if len > 4 && back.get(seq as usize).is_some_and(Option::is_none) {
            back[seq as usize] = Some(Instant::now());
            order.push(seq);
        }
    }
    done.store(true, Ordering::Relaxed);
    let sent = sending.join().unwrap();
    let rtts = back
        .iter()
        .zip(&sent)
        .map(|(b, s)| b.map(|b| b - *s))
        .collect();
    Probe { rtts, order }
}

/// A socket on `host` that has had one answer from the echo at `to` (so ARP is settled on
/// the way and nothing measured waits for it).
fn warm_socket(host: &Host, to: SocketAddr) -> UdpSocket {
    let sock = host.udp_socket(0).unwrap();
    ask(&sock, to, "warm", 50).expect("the echo answers");
    sock
}

#[test]
fn link_emulator_adds_delay_and_jitter() {
    let delay = Shape::wire().delay(40 * MS);
    let jitter = Shape::wire()
        .delay(20 * MS)
        .jitter(10 * MS, Jitter::Uniform);
    let spec = Spec::new()
        .public()
        .home(HomeSpec::new(1).link(Link::both(delay)))
        .home(HomeSpec::new(1).link(Link::new(jitter.clone(), Shape::wire())))
        .home(HomeSpec::new(1).link(Link::new(jitter.in_order(), Shape::wire())));
    let Some(mut tb) = Testbed::new_or_skip("delay", &spec) else {
        return;
    };
    let echo = Echo::start(tb.public(0), 7000);

    let rtt = probe(
        &warm_socket(tb.host(0, 0), echo.addr),
        echo.addr,
        100,
        5 * MS,
    );
    let (min, median) = (rtt.quantile_ms(0.0), rtt.quantile_ms(0.5));
    println!("40 ms each way: RTT min {min:.1} ms, median {median:.1} ms");
    assert_eq!(rtt.sorted_ms().len(), 100, "no loss configured");
    assert!(
        min >= 80.0,
        "a round trip is never shorter than 2 x 40 ms: {min}"
    );
    assert!(median < 110.0, "median RTT {median} ms, configured 80");

    let reordered = probe(
        &warm_socket(tb.host(1, 0), echo.addr),
        echo.addr,
        200,
        MS / 2,
    );
    let kept = probe(
        &warm_socket(tb.host(2, 0), echo.addr),
        echo.addr,
        200,
        MS / 2,
    );
    for (name, p) in [("any order", &reordered), ("in order", &kept)] {
        let (lo, p10, p90) = (p.quantile_ms(0.0), p.quantile_ms(0.1), p.quantile_ms(0.9));
        println!(
            "20 +- 10 ms up, {name}: RTT min {lo:.1} p10 {p10:.1} p90 {p90:.1} ms, {} inversions",
            p.inversions()
        );
        assert!(
            lo >= 10.0,
            "{name}: jitter of 10 ms around 20 ms went below 10: {lo}"
        );
    }
    let (p10, p90) = (reordered.quantile_ms(0.1), reordered.quantile_ms(0.9));
    assert!(
        p90 - p10 >= 8.0,
        "uniform +-10 ms spreads p10..p90 over 16 ms: {p10}..{p90}"
    );
    assert!(
        reordered.inversions() > 0,
        "jitter with 0.5 ms between packets reorders"
    );
    assert_eq!(kept.inversions(), 0, "order=keep must keep order");

    // A link can be changed under running hosts.
    let report = tb
        .set_link(Uplink::Home(0), &Link::both(Shape::wire().delay(10 * MS)))
        .unwrap()
        .expect("an emulator ran");
    assert!(report.up.counters.packets_out >= 100 && report.down.counters.packets_out >= 100);
    let rtt = probe(
        &warm_socket(tb.host(0, 0), echo.addr),
        echo.addr,
        20,
        5 * MS,
    );
    let min = rtt.quantile_ms(0.0);
    assert!(
        (20.0..80.0).contains(&min),
        "after set_link to 10 ms each way: {min}"
    );
}

#[test]
fn link_emulator_drops_the_configured_fraction() {
    let lossy = Link::new(Shape::wire().loss(0.1), Shape::wire());
    let spec = Spec::new().public().home(HomeSpec::new(1).link(lossy));
    let Some(mut tb) = Testbed::new_or_skip("loss", &spec) else {
        return;
    };
    let echo = Echo::start(tb.public(0), 7000);
    let sock = warm_socket(tb.host(0, 0), echo.addr);
    let n = 1000;
    let p = probe(&sock, echo.addr, n, MS / 4);
    let lost = p.rtts.iter().filter(|r| r.is_none()).count() as u64;
    let report = tb.stop_link(Uplink::Home(0)).unwrap();
    println!(
        "loss 10 % over {n}: {lost} lost end to end; emulator: up {:?}",
        report.up
    );
    // Binomial(1000, 0.1): mean 100, standard deviation 9.5; 50 is over 5 deviations.
    assert!(
        (50..=150).contains(&lost),
        "{lost} of {n} lost, configured 10 %"
    );
    // The emulator's own count agrees (it also saw the warm-up and the end markers).
    let counted = report.up.counters.lost;
    assert!((50..=160).contains(&counted), "{report:?}");
    assert_eq!(report.down.counters.lost, 0);
}

#[test]
fn link_emulator_caps_throughput() {
    let rate = 5_000_000;
    let capped = Link::new(
        Shape::wire().delay(10 * MS).rate(rate),
        Shape::wire().delay(10 * MS),
    );
    let spec = Spec::new().public().home(HomeSpec::new(1).link(capped));
    let Some(tb) = Testbed::new_or_skip("rate", &spec) else {
        return;
    };
    let listener = tb.public(0).tcp_listener(7000).unwrap();
    let to = listener.local_addr().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut total = 0u64;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        conn.write_all(&total.to_be_bytes()).unwrap();
    });
    let size = 1_000_000usize;
    let mut conn = tb
        .host(0, 0)
        .tcp_connect(to, Duration::from_secs(5))
        .unwrap();
    let start = Instant::now();
    conn.write_all(&vec![7u8; size]).unwrap();
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut total = [0u8; 8];
    conn.read_exact(&mut total).unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    sink.join().unwrap();
    assert_eq!(u64::from_be_bytes(total), size as u64);
    let ideal = size as f64 * 8.0 / rate as f64;
    println!(
        "TCP {size} bytes over {} Mbit/s: {elapsed:.2} s ({:.2} Mbit/s of payload; ideal {ideal:.2} s)",
        rate / 1_000_000,
        size as f64 * 8.0 / elapsed / 1e6
    );
    assert!(
        elapsed >= 0.95 * ideal,
        "faster than the cap: {elapsed} s < {ideal} s"
    );
    assert!(
        elapsed <= 2.0 * ideal,
        "far below the cap: {elapsed} s for {ideal} s"
    );
}

#[test]
fn cleanup_removes_namespaces_after_a_panic_and_leftovers_of_dead_runs() {
    if chorus_tests::testbed::unavailable().is_some() {
        // Testbed::new_or_skip says why (or fails in CI).
        let _ = Testbed::new_or_skip("cleanup", &Spec::new());
        return;
    }
    let exists = |ns: &str| chorus_tests::testbed::netns::path(ns).exists();
    // No process has pid_max as its id.
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
    let leftover = format!("chorus-tb-{}-0-old-inet", pid_max.trim());
    chorus_tests::testbed::netns::ip(&["netns", "add", &leftover]).unwrap();
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let spec = Spec::new()
            .public()
            .home(HomeSpec::new(1).link(Link::default()));
        let tb = Testbed::new("cleanup", &spec).unwrap();
        names = tb.namespaces().to_vec();
        assert!(names.iter().all(|n| exists(n)));
        panic!("a test failing with a testbed up (this panic is expected)");
    }));
    assert!(result.is_err());
    assert_eq!(
        names.len(),
        4,
        "internet, public host, router, home host: {names:?}"
    );
    let left: Vec<&String> = names.iter().filter(|n| exists(n)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!exists(&leftover), "the dead run's leftover is still there");
}

#[test]
fn a_cut_splits_the_internet_in_two_and_heal_joins_it() {
    cut_and_heal("cut", false);
}

#[test]
fn a_cut_splits_ipv6_beside_ipv4() {
    cut_and_heal("cut6", true);
}

/// public0 and home0 on one side, public1 and home1 on the other; emulated uplinks on one
/// side, plain ones on the other. With `ipv6` the testbed has IPv6 beside IPv4 and every check
/// is made over both.
fn cut_and_heal(name: &str, ipv6: bool) {
    let wire = Link::both(Shape::wire().delay(MS));
    let spec = Spec::new()
        .public()
        .public_with(wire.clone())
        .home(HomeSpec::new(1))
        .home(HomeSpec::new(1).link(wire));
    let spec = if ipv6 { spec.ipv6() } else { spec };
    let Some(mut tb) = Testbed::new_or_skip(name, &spec) else {
        return;
    };
    let mut families = vec![Family::start(&tb, false)];
    if ipv6 {
        families.push(Family::start(&tb, true));
    }
    for f in &families {
        // Before: everyone reaches both public hosts. An established mapping (and its
        // conntrack entry) exists from here on, so the cut must stop packets of a flow.
        assert!(f.reach(&f.from_home0, 0, 10) && f.reach(&f.from_home0, 1, 10));
        assert!(f.reach(&f.from_home1, 0, 10) && f.reach(&f.from_home1, 1, 10));
        assert!(f.reach(&f.from_public1, 0, 10));
    }

    tb.cut(&[Uplink::Public(1), Uplink::Home(1)]).unwrap();
    for f in &families {
        let v = f.name;
        // Each side still works inside itself...
        assert!(f.reach(&f.from_home0, 0, 10), "home0 reaches public0 ({v})");
        assert!(f.reach(&f.from_home1, 1, 10), "home1 reaches public1 ({v})");
        // ...and nothing crosses, either way.
        assert!(
            !f.reach(&f.from_home0, 1, 5),
            "home0 is cut from public1 ({v})"
        );
        assert!(
            !f.reach(&f.from_home1, 0, 5),
            "home1 is cut from public0 ({v})"
        );
        assert!(
            !f.reach(&f.from_public1, 0, 5),
            "public1 is cut from public0 ({v})"
        );
    }

    tb.heal().unwrap();
    for f in families {
        let v = f.name;
        assert!(
            f.reach(&f.from_home0, 1, 10),
            "home0 reaches public1 again ({v})"
        );
        assert!(
            f.reach(&f.from_home1, 0, 10),
            "home1 reaches public0 again ({v})"
        );
        assert!(
            f.reach(&f.from_public1, 0, 10),
            "public1 reaches public0 again ({v})"
        );
        // The same sockets went on: the flows across the cut resumed, not new ones.
        let router = if f.name == "IPv6" {
            IpAddr::V6(tb.home(1).router().public_addr6().unwrap())
        } else {
            IpAddr::V4(tb.home(1).router().public_addr())
        };
        let home1 = SocketAddr::new(router, f.from_home1.local_addr().unwrap().port());
        let [echo0, _] = f.echo;
        assert!(echo0.peers().contains(&home1), "{v}");
    }
}

/// An echo server on each public host and the sockets that ask them, in one address family.
struct Family {
    name: &'static str,
    echo: [Echo; 2],
    from_home0: UdpSocket,
    from_home1: UdpSocket,
    from_public1: UdpSocket,
}

impl Family {
    fn start(tb: &Testbed, ipv6: bool) -> Family {
        let sock = |host: &Host, port| {
            if ipv6 {
                host.udp_socket6(port).unwrap()
            } else {
                host.udp_socket(port).unwrap()
            }
        };
        Family {
            name: if ipv6 { "IPv6" } else { "IPv4" },
            echo: [
                Echo::on(sock(tb.public(0), 7000)),
                Echo::on(sock(tb.public(1), 7000)),
            ],
            from_home0: sock(tb.host(0, 0), 0),
            from_home1: sock(tb.host(1, 0), 0),
            from_public1: sock(tb.public(1), 0),
        }
    }

    /// Whether `sock` reaches public host `k`'s echo within `tries` asks.
    fn reach(&self, sock: &UdpSocket, k: usize, tries: usize) -> bool {
        ask(sock, self.echo[k].addr, "x", tries).is_some()
    }
}
