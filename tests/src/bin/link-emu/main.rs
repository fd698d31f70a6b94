//! `link-emu`: a user-space network link between two TAP (or TUN) devices, for kernels without
//! netem (docs/testbed.md).
//!
//!     ip netns exec ROUTER link-emu --a wan --b home0 --b-netns INTERNET \
//!         --up delay=40ms,jitter=5ms,loss=1%,rate=5mbit --down delay=40ms --seed 7
//!
//! Every frame read from device a goes through the `up` shape and is written to device b;
//! every frame read from b goes through `down` to a. A shape drops a random fraction, queues
//! behind a rate cap (tail drop when its queue is full), and holds each frame for the delay
//! plus jitter (frames may overtake each other unless `order=keep`). Randomness comes from the
//! seed, which is logged. Device b may live in another namespace (`--b-netns`).
//!
//! Prints `ready` on stdout once attached to both devices; on SIGTERM or SIGINT (or when stdin
//! closes, with `--watch-stdin`) stops and prints its counters: a human line on stderr and one
//! JSON line on stdout (`chorus_tests::testbed::Report`).
//!
//! # Layout
//! - this file: arguments, the event loop.
//! - `tap.rs`: attaching to the devices.
//! - `signals.rs`: SIGTERM as a pollable descriptor.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chorus_tests::testbed::pipe::Pipe;
use chorus_tests::testbed::rng::Rng;
use chorus_tests::testbed::{DirectionReport, Report, Shape};
use clap::Parser;

mod signals;
mod tap;

/// A user-space link between two TAP devices with delay, jitter, loss and a rate cap.
#[derive(Parser, Debug)]
#[command(name = "link-emu")]
struct Args {
    /// Device a (the inside: a router's or host's uplink), in this process's namespace unless
    /// --a-netns is given.
    #[arg(long)]
    a: String,
    /// Namespace of device a.
    #[arg(long)]
    a_netns: Option<String>,
    /// Device b (the internet's side).
    #[arg(long)]
    b: String,
    /// Namespace of device b.
    #[arg(long)]
    b_netns: Option<String>,
    /// Shape from a to b, e.g. `delay=40ms,jitter=5ms,dist=normal,loss=0.1,rate=5mbit`.
    #[arg(long, default_value = "none")]
    up: Shape,
    /// Shape from b to a.
    #[arg(long, default_value = "none")]
    down: Shape,
    /// Seed of the random loss and jitter (drawn from the clock and logged if absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Layer-3 TUN devices instead of layer-2 TAP devices.
    #[arg(long)]
    tun: bool,
    /// Stop when stdin closes (the parent died).
    #[arg(long)]
    watch_stdin: bool,
    /// Name used in log lines.
    #[arg(long, default_value = "link-emu")]
    name: String,
}

/// One direction: its state machine and what went wrong writing its frames.
struct Direction {
    pipe: Pipe,
    write_errors: u64,
}

impl Direction {
    /// Writes every frame that is due to `out`.
    fn flush(&mut self, mut out: &File, now: Instant) {
        while let Some(frame) = self.pipe.poll_transmit(now) {
            if out.write(&frame).is_err() {
                self.write_errors += 1;
            }
        }
    }

    /// Reads every frame `input` has; gives up on the first error that is not "no more".
    fn drain(&mut self, mut input: &File, buf: &mut [u8]) -> Result<()> {
        loop {
            match input.read(buf) {
                Ok(n) => {
                    self.pipe.handle_packet(Instant::now(), buf[..n].to_vec());
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("reading a device"),
            }
        }
    }

    fn report(&self) -> DirectionReport {
        DirectionReport {
            counters: self.pipe.counters(),
            write_errors: self.write_errors,
            in_flight: self.pipe.in_flight() as u64,
        }
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("{}: {e:#}", args.name);
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let stop = signals::stop_signals()?;
    let a = tap::open(&args.a, args.a_netns.as_deref(), !args.tun)?;
    let b = tap::open(&args.b, args.b_netns.as_deref(), !args.tun)?;
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut seeds = Rng::new(seed);
    let mut up = Direction {
        pipe: Pipe::new(args.up.clone(), seeds.next_u64()),
        write_errors: 0,
    };
    let mut down = Direction {
        pipe: Pipe::new(args.down.clone(), seeds.next_u64()),
        write_errors: 0,
    };
    eprintln!(
        "{}: a={} b={}{} up=[{}] down=[{}] seed={seed}",
        args.name,
        args.a,
        args.b_netns
            .as_deref()
            .map(|n| format!("{n}:"))
            .unwrap_or_default(),
        args.b,
        args.up,
        args.down
    );
    println!("ready");
    let result = event_loop(&a, &b, &stop, args.watch_stdin, &mut up, &mut down);
    let report = Report {
        seed,
        up: up.report(),
        down: down.report(),
    };
    eprintln!("{}: {}", args.name, summary(&report));
    println!("{}", report.to_json());
    result
}

/// Moves frames until a stop signal (or stdin's end, when watched).
fn event_loop(
    a: &File,
    b: &File,
    stop: &File,
    watch_stdin: bool,
    up: &mut Direction,
    down: &mut Direction,
) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    let fds = [a.as_raw_fd(), b.as_raw_fd(), stop.as_raw_fd(), 0];
    let polled = if watch_stdin { 4 } else { 3 };
    loop {
        let now = Instant::now();
        up.flush(b, now);
        down.flush(a, now);
        let next = [up.pipe.poll_timeout(), down.pipe.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let mut pfd = fds.map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        poll(
            &mut pfd[..polled],
            next.map(|t| t.saturating_duration_since(Instant::now())),
        )?;
        if pfd[2].revents != 0 || (watch_stdin && stdin_closed(pfd[3].revents)) {
            return Ok(());
        }
        if pfd[0].revents != 0 {
            up.drain(a, &mut buf)?;
        }
        if pfd[1].revents != 0 {
            down.drain(b, &mut buf)?;
        }
    }
}

/// Whether stdin, reported ready, has reached its end (what it carries otherwise is ignored).
fn stdin_closed(revents: libc::c_short) -> bool {
    if revents == 0 {
        return false;
    }
    let mut byte = [0u8; 64];
    !matches!(std::io::stdin().read(&mut byte), Ok(n) if n > 0)
}

/// ppoll(2) with a nanosecond timeout (`None`: wait for a descriptor).
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> Result<()> {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: fds is a live, exclusively borrowed array of fds.len() pollfd; ts_ptr is null or
    // points at a timespec that outlives the call; a null sigmask keeps ours.
    let rc = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e).context("ppoll");
        }
    }
    Ok(())
}

fn summary(r: &Report) -> String {
    let one = |name: &str, d: &DirectionReport| {
        let c = d.counters;
        format!(
            "{name} in={} out={} bytes_out={} lost={} queue_dropped={} write_errors={} in_flight={}",
            c.packets_in,
            c.packets_out,
            c.bytes_out,
            c.lost,
            c.queue_dropped,
            d.write_errors,
            d.in_flight
        )
    };
    format!("{}; {}", one("up", &r.up), one("down", &r.down))
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Rng::new(nanos ^ u64::from(std::process::id())).next_u64()
}
