//! Network time from the driver's side (PROTOCOL.md 7 and 12.4): samples each directly connected
//! peer, feeds the answers to the [`Estimator`] (the policy: bounds, one source per network,
//! agreement) and applies its selection to the [`Clock`]. It logs what it refused and what it
//! chose.
//!
//! How often: a peer that has not given three samples (kept or dropped), and a peer whose
//! offset counts (at most 8) until its line has [`FAST_SAMPLES`], every [`FAST`]; a counted
//! peer after that every [`SOURCE_EVERY`]; the others every [`EVERY`]; never two requests to
//! one peer at once. A source's estimate is a line through its samples (`clock/trend.rs`),
//! whose error falls with the square root of their number: on the testbed's jittery links
//! (40 ms +- 10 ms between homes) a sample every 2 s left the homes up to 5 ms apart. The fast minute gives a new
//! source's line its samples; after it, one a second keeps about as many within the line's
//! memory (3 minutes). The cost, measured on the testbed: sampling four sources every 250 ms
//! sent about 10 KB/s more up each home's link than every 2 s (each request and answer on a
//! stream of its own); one a second costs about a quarter of that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::network::Answer;
use super::snapshot::PeerTime;
use crate::clock::{Adjust, Clock, Estimator, Exchange, Selection, SourceNet, Verdict};
use crate::net::Client;
use crate::supervise;

/// How often the time of a connected peer that is not a source is sampled (`/chorus/time/1`).
pub const EVERY: Duration = Duration::from_secs(2);
/// How often a new source (and a peer still short of its three samples) is sampled.
pub const FAST: Duration = Duration::from_millis(250);
/// Samples a source's line takes at [`FAST`] (a minute's worth).
pub const FAST_SAMPLES: u64 = 240;
/// How often a source whose line has [`FAST_SAMPLES`] is sampled.
pub const SOURCE_EVERY: Duration = Duration::from_secs(1);
/// A time request out for longer than this marks its peer stalled ([`TimeKeeper::stalled`]);
/// an answer takes a round trip and a few milliseconds.
pub const STALLED_AFTER: Duration = Duration::from_secs(1);
/// How often the driver calls [`TimeKeeper::sample_due`].
pub const TICK: Duration = FAST;

/// See the module's doc.
pub struct TimeKeeper {
    clock: Arc<Clock>,
    estimator: Estimator,
    /// The estimate has locked once (the one lock that may step the clock).
    locked_once: bool,
    /// When each peer was last asked, and whether its answer is still out.
    asked: HashMap<PeerId, (Instant, bool)>,
}

impl TimeKeeper {
    /// Keeps `clock` in line with the network.
    pub fn new(clock: Arc<Clock>) -> TimeKeeper {
        TimeKeeper {
            clock,
            estimator: Estimator::default(),
            locked_once: false,
            asked: HashMap::new(),
        }
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// A peer went away: its samples no longer count.
    pub fn forget(&mut self, peer: &PeerId) {
        self.estimator.remove(peer);
        self.asked.remove(peer);
    }

    /// One `/chorus/time/1` exchange with `peer`, answered as [`Answer::Time`]; none with a
    /// peer that is not a time source (only relayed, or an address of no network). `t0` is the
    /// one this node recorded: the codec puts it into the answer, whatever the peer echoed.
    pub fn sample(
        &mut self,
        client: &Client,
        answers: &mpsc::Sender<Answer>,
        peer: PeerId,
        addr: &Multiaddr,
    ) {
        if SourceNet::of(addr, &peer).is_none() {
            return;
        }
        self.clock.peer_asked();
        self.asked.insert(peer, (Instant::now(), true));
        let client = client.clone();
        let tx = answers.clone();
        supervise::spawn("time sample", async move {
            match client.time(peer).await {
                Ok((pong, t3)) => {
                    let exchange = Exchange {
                        t0: pong.t0 as i64,
                        t1: pong.t1 as i64,
                        t2: pong.t2 as i64,
                        t3: t3 as i64,
                    };
                    let _ = tx.send(Answer::Time(peer, Some(exchange))).await;
                }
                Err(e) => {
                    debug!("time sample from {peer} failed: {e}");
                    let _ = tx.send(Answer::Time(peer, None)).await;
                }
            }
        });
    }

    /// Samples the connected peers that are due (the module's documentation says when).
    pub fn sample_due(
        &mut self,
        client: &Client,
        answers: &mpsc::Sender<Answer>,
        connected: &BTreeMap<PeerId, Multiaddr>,
    ) {
        let now = Instant::now();
        let sources: HashSet<PeerId> = self.estimator.source_peers().into_iter().collect();
        for (peer, addr) in connected {
            let every = if self.estimator.is_new(peer) {
                FAST
            } else if sources.contains(peer) {
                if self.estimator.line_samples(peer) < FAST_SAMPLES {
                    FAST
                } else {
                    SOURCE_EVERY
                }
            } else {
                EVERY
            };
            let due = self.asked.get(peer).is_none_or(|&(at, out)| {
                !out && now.saturating_duration_since(at) + TICK / 2 >= every
            });
            if due {
                self.sample(client, answers, *peer, addr);
            }
        }
    }

    /// The peers whose time request has been out for more than [`STALLED_AFTER`]: their
    /// connection stalls (after a partition's repair TCP may wait seconds for its next
    /// retransmission), so other requests to them should go elsewhere first.
    pub fn stalled(&self) -> impl Iterator<Item = PeerId> + '_ {
        let now = Instant::now();
        self.asked
            .iter()
            .filter(move |(_, (at, out))| {
                *out && now.saturating_duration_since(*at) > STALLED_AFTER
            })
            .map(|(peer, _)| *peer)
    }

    /// An exchange came back (`None`: the request failed). Only a peer still connected is a
    /// time source, counted in the network of its address (12.4); a late answer of a gone peer
    /// is dropped.
    pub fn answered(
        &mut self,
        peer: PeerId,
        addr: Option<&Multiaddr>,
        exchange: Option<&Exchange>,
    ) {
        if let Some((_, out)) = self.asked.get_mut(&peer) {
            *out = false;
        }
        let Some(exchange) = exchange else {
            return;
        };
        let Some(net) = addr.and_then(|a| SourceNet::of(a, &peer)) else {
            return;
        };
        if let Verdict::Dropped { reason, first } = self.estimator.add(peer, net, exchange.sample())
        {
            let rejected = self.estimator.rejected().total();
            if first {
                warn!(event = "time_sample_refused", peer = %peer, reason = %reason,
                    "time sample from {peer} refused ({reason}); later ones from it are logged at debug level ({rejected} refused in all)");
            } else {
                debug!(event = "time_sample_refused", peer = %peer, reason = %reason,
                    "time sample from {peer} refused ({reason})");
            }
        }
        if let Some(selection) = self.estimator.select() {
            // The first lock of the node's life steps: slewing from a provisional guess (say,
            // the midpoint of two clocks before a third peer connected) would keep the node up
            // to 200 ms off for 40 s. A correction that slews within a second is slewed all the
            // same. Later locks (the estimate lost agreement for a moment, as when a new peer's
            // unconverged clock joins the sources) only adjust: stepping there moved settled
            // nodes by up to 200 ms.
            let far = (selection.offset_us - self.clock.offset_us_at(std::time::Instant::now()))
                .abs()
                > crate::clock::SLEW_US_PER_S;
            let first_lock = !self.locked_once && self.estimator.is_locked();
            self.locked_once |= self.estimator.is_locked();
            let adjust = if first_lock && far {
                self.clock.step_to(selection.offset_us)
            } else {
                self.clock.adjust(selection.offset_us)
            };
            if let Adjust::Step { from_us, to_us } = adjust {
                log_step(&selection, from_us, to_us);
            }
            if first_lock {
                // After the step: the player's first sound comes at the locked time.
                self.clock.locked();
            }
        }
        if let Some(r) = self.estimator.take_report() {
            let false_echoes = self.clock.false_echoes();
            info!(
                event = "time_sources",
                sources = r.sources,
                networks = r.networks,
                locked = r.locked,
                refused_rtt_negative = r.rejected.negative_rtt,
                refused_rtt_long = r.rejected.long_rtt,
                refused_offset = r.rejected.beyond_bound,
                false_echoes,
                "time sources: {} counted in {} networks (this node included), {}; refused samples: {} negative round trip, {} round trip over 2 s, {} offset beyond 2000 ms; {false_echoes} answers with a false t0",
                r.sources,
                r.networks,
                if r.locked { "locked" } else { "not locked yet" },
                r.rejected.negative_rtt,
                r.rejected.long_rtt,
                r.rejected.beyond_bound
            );
        }
    }

    /// The best sample of each peer, for `/status`.
    pub fn peers(&self) -> HashMap<PeerId, PeerTime> {
        self.estimator
            .peers()
            .filter_map(|p| {
                let (best, samples) = self.estimator.best(p)?;
                Some((
                    *p,
                    PeerTime {
                        offset_ms: best.offset_us / 1000.0,
                        rtt_ms: best.rtt_us as f64 / 1000.0,
                        samples,
                    },
                ))
            })
            .collect()
    }

    /// The `time` object of `/status`.
    pub fn json(&self) -> serde_json::Value {
        let refused = self.estimator.rejected();
        serde_json::json!({
            "locked": self.estimator.is_locked(),
            "refused_offset": refused.beyond_bound,
            "refused_rtt_negative": refused.negative_rtt,
            "refused_rtt_long": refused.long_rtt,
            "false_echoes": self.clock.false_echoes(),
        })
    }
}

fn log_step(selection: &Selection, from_us: f64, to_us: f64) {
    info!(
        event = "clock_step",
        from_ms = from_us / 1000.0,
        to_ms = to_us / 1000.0,
        rule = ?selection.rule,
        "network time stepped: offset {:.3} ms -> {:.3} ms ({:?}: median of {} of {} sources in {} networks, this node included)",
        from_us / 1000.0,
        to_us / 1000.0,
        selection.rule,
        selection.agreeing,
        selection.sources,
        selection.networks
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::net::test_peer as peer;

    #[test]
    fn a_peer_is_stalled_while_its_request_is_out_past_the_limit() {
        let mut keeper = TimeKeeper::new(Arc::new(Clock::new(0)));
        let now = Instant::now();
        let long_ago = now - STALLED_AFTER * 2;
        keeper.asked.insert(peer(1), (long_ago, true));
        keeper.asked.insert(peer(2), (long_ago, false));
        keeper.asked.insert(peer(3), (now, true));
        assert_eq!(keeper.stalled().collect::<Vec<_>>(), [peer(1)]);
        // Its answer (or its failure) comes back: no longer stalled.
        keeper.answered(peer(1), None, None);
        assert_eq!(keeper.stalled().count(), 0);
    }
}
