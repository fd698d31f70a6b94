//! Listener requests: a listener picks a track of this node's library on the status page and
//! asks for it; the request joins the DJ's queue after the DJ's own entries (or waits for the
//! operator's approval when the node is set to approve). A community station's rules hold: a
//! track requested lately cannot be requested again within the cooldown, and one listener (an
//! IPv4 address, an IPv6 /64) gets a few requests per hour.
//!
//! The requests live in `DATA/requests.json`, written only by the HTTP API (atomic writes); the
//! driver rereads it when it changes and proposes the queued ones. The requests it proposed are
//! recorded, by id, in `DATA/requests-proposed.json`, which only the driver writes. Both survive
//! kill -9 and restarts.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use chorus_consensus::TrackRef;
use serde::{Deserialize, Serialize};

use crate::files;

/// The requests, in the data directory.
pub const FILE: &str = "requests.json";
/// The ids of the requests proposed, in the data directory.
pub const PROPOSED_FILE: &str = "requests-proposed.json";
/// A requester's name is at most this many characters.
pub const NAME_MAX: usize = 40;
/// Requests kept at most (older closed ones are dropped first).
pub const KEPT_MAX: usize = 1000;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waits for the operator's approval.
    Pending,
    /// In the queue (proposed once the driver records it).
    Queued,
    /// Refused by the operator.
    Rejected,
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Its id (never reused).
    pub id: u64,
    /// The track (hex).
    pub track_hash: String,
    /// The track's title when requested.
    pub title: String,
    /// The track's artist when requested.
    pub artist: String,
    /// The name the listener gave; may be empty.
    pub name: String,
    /// The listener: an IPv4 address or an IPv6 /64, for the per-listener limit; never shown.
    pub listener: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Where it stands.
    pub state: State,
}

impl Request {
    /// The request as the page shows it (without the listener's address); `proposed` when the
    /// driver has proposed it.
    pub fn public_json(&self, proposed: bool) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "track_hash": self.track_hash,
            "title": self.title,
            "artist": self.artist,
            "requested_by": self.name,
            "at_ms": self.at_ms,
            "state": if proposed { "proposed" } else { match self.state {
                State::Pending => "pending",
                State::Queued => "queued",
                State::Rejected => "rejected",
            } },
        })
    }
}

/// The station's rules for requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A track requested (and not rejected) cannot be requested again for this long, ms.
    pub cooldown_ms: u64,
    /// Requests one listener may make per hour.
    pub per_hour: u32,
    /// Requests wait for the operator's approval.
    pub approve: bool,
    /// Requests open at once (waiting or queued and not proposed yet): a full list refuses more.
    pub open_max: usize,
}

impl Default for Policy {
    /// An hour between two requests of one track, three requests per listener per hour, 50
    /// open at once, no approval.
    fn default() -> Policy {
        Policy {
            cooldown_ms: 60 * 60 * 1000,
            per_hour: 3,
            approve: false,
            open_max: 50,
        }
    }
}

const HOUR_MS: u64 = 60 * 60 * 1000;

/// Why a request is refused: the message says it to the listener.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such track in this node's library.
    #[error("this node's library has no track {0}")]
    UnknownTrack(String),
    /// The name is too long or holds control characters.
    #[error("a name is at most {NAME_MAX} characters, without line breaks")]
    BadName,
    /// The track was requested within the cooldown.
    #[error("\u{201c}{title}\u{201d} was requested {ago}; it can be requested again in {left} min")]
    Cooldown {
        /// The track's title.
        title: String,
        /// How long ago it was last requested ("a moment ago", "10 min ago").
        ago: String,
        /// Minutes until it may be requested again.
        left: u64,
    },
    /// The listener made its requests for this hour.
    #[error("you made {count} requests in the last hour; your next one is possible in {left} min")]
    Limit {
        /// Requests in the last hour.
        count: u32,
        /// Minutes until the next is possible.
        left: u64,
    },
    /// The track is decided for a coming slot.
    #[error("\u{201c}{title}\u{201d} is coming up already (slot {slot})")]
    Upcoming {
        /// The track's title.
        title: String,
        /// The slot it plays in.
        slot: u64,
    },
    /// The track is playing now.
    #[error("\u{201c}{title}\u{201d} is playing now")]
    Playing {
        /// The track's title.
        title: String,
    },
    /// The track played within the last 20 slots: it would wait in the queue.
    #[error(
        "\u{201c}{title}\u{201d} played {ago} tracks ago; a track waits 20 tracks before it plays again"
    )]
    Recent {
        /// The track's title.
        title: String,
        /// Slots since it played.
        ago: u64,
    },
    /// Too many requests are open.
    #[error("the request list is full ({0} waiting); try again after the next few tracks")]
    Full(usize),
}

/// The requests as the file holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    /// The id the next request gets.
    #[serde(default)]
    pub next_id: u64,
    /// The requests, oldest first.
    #[serde(default)]
    pub requests: Vec<Request>,
}

/// The listener a request comes from: an IPv4 address, or the /64 of an IPv6 one (one home).
pub fn listener_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn minutes_up(ms: u64) -> u64 {
    ms.div_ceil(60_000).max(1)
}

impl Book {
    /// The file of a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE)
    }

    /// Loads the requests (none when the file does not exist).
    pub fn load(data_dir: &Path) -> Result<Book> {
        let path = Self::path(data_dir);
        let book = files::read_json(&path, || {
            format!("the listener requests {} are not valid", path.display())
        })?;
        Ok(book.unwrap_or_default())
    }

    /// Saves the requests atomically.
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).context("cannot encode the requests")?;
        files::write_atomic(&Self::path(data_dir), &bytes)
    }

    /// Adds a request of `track` by `listener` named `name`, or says why not: a bad name, the
    /// track's cooldown, the listener's limit, then `on_air` (the track is coming up, playing or
    /// played lately, as the caller found it), then a full list. `proposed` are the ids the
    /// driver has proposed (no longer open).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        track: &TrackRef,
        name: &str,
        listener: &str,
        now_ms: u64,
        policy: &Policy,
        proposed: &BTreeSet<u64>,
        on_air: Option<Refusal>,
    ) -> Result<Request, Refusal> {
        let name = name.trim();
        if name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
            return Err(Refusal::BadName);
        }
        let hash = track.track_hash.to_hex();
        if let Some(last) = self
            .requests
            .iter()
            .rev()
            .find(|r| r.track_hash == hash && r.state != State::Rejected)
            && now_ms.saturating_sub(last.at_ms) < policy.cooldown_ms
        {
            let ago = now_ms.saturating_sub(last.at_ms);
            return Err(Refusal::Cooldown {
                title: track.title.clone(),
                ago: match ago / 60_000 {
                    0 => "a moment ago".to_owned(),
                    m => format!("{m} min ago"),
                },
                left: minutes_up(policy.cooldown_ms - ago),
            });
        }
        let mine: Vec<&Request> = self
            .requests
            .iter()
            .filter(|r| r.listener == listener && now_ms.saturating_sub(r.at_ms) < HOUR_MS)
            .collect();
        if mine.len() >= policy.per_hour as usize {
            let oldest = mine.iter().map(|r| r.at_ms).min().unwrap_or(now_ms);
            return Err(Refusal::Limit {
                count: mine.len() as u32,
                left: minutes_up(HOUR_MS - now_ms.saturating_sub(oldest)),
            });
        }
        if let Some(refusal) = on_air {
            return Err(refusal);
        }
        let open = self.open(proposed).count();
        if open >= policy.open_max {
            return Err(Refusal::Full(open));
        }
        let request = Request {
            id: self.next_id,
            track_hash: hash,
            title: track.title.clone(),
            artist: track.artist.clone(),
            name: name.to_owned(),
            listener: listener.to_owned(),
            at_ms: now_ms,
            state: if policy.approve {
                State::Pending
            } else {
                State::Queued
            },
        };
        self.next_id += 1;
        self.requests.push(request.clone());
        self.forget(now_ms, policy, proposed);
        Ok(request)
    }

    /// Requests waiting, or queued and not proposed yet.
    pub fn open<'a>(&'a self, proposed: &'a BTreeSet<u64>) -> impl Iterator<Item = &'a Request> {
        self.requests.iter().filter(|r| match r.state {
            State::Pending => true,
            State::Queued => !proposed.contains(&r.id),
            State::Rejected => false,
        })
    }

    /// The operator approves (or rejects) a waiting request.
    pub fn decide(&mut self, id: u64, approve: bool) -> Result<Request, String> {
        let r = self
            .requests
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| format!("no request {id}"))?;
        if r.state != State::Pending {
            return Err(format!("request {id} does not wait for approval"));
        }
        r.state = if approve {
            State::Queued
        } else {
            State::Rejected
        };
        Ok(r.clone())
    }

    /// Drops closed requests older than both the cooldown and the hour (they limit nothing any
    /// more), and the oldest closed ones beyond [`KEPT_MAX`].
    fn forget(&mut self, now_ms: u64, policy: &Policy, proposed: &BTreeSet<u64>) {
        let keep_ms = policy.cooldown_ms.max(HOUR_MS);
        let closed = |r: &Request| match r.state {
            State::Pending => false,
            State::Queued => proposed.contains(&r.id),
            State::Rejected => true,
        };
        self.requests
            .retain(|r| !closed(r) || now_ms.saturating_sub(r.at_ms) < keep_ms);
        while self.requests.len() > KEPT_MAX {
            let Some(i) = self.requests.iter().position(closed) else {
                break;
            };
            self.requests.remove(i);
        }
    }
}

/// When the requests file last changed (None: absent).
pub fn stamp(data_dir: &Path) -> Option<SystemTime> {
    files::modified(&Book::path(data_dir))
}

/// The ids of the requests the driver has proposed.
pub fn load_proposed(data_dir: &Path) -> Result<BTreeSet<u64>> {
    let path = data_dir.join(PROPOSED_FILE);
    let ids = files::read_json(&path, || {
        format!(
            "the record of proposed requests {} is not valid",
            path.display()
        )
    })?;
    Ok(ids.unwrap_or_default())
}

/// Records the ids of the requests proposed (only the driver calls it).
pub fn save_proposed(data_dir: &Path, ids: &BTreeSet<u64>) -> Result<()> {
    files::write_json(&data_dir.join(PROPOSED_FILE), ids)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chorus_consensus::Hash32;

    /// A track of 7 s titled `Song n` by `Artist` (tests of the requests and the desk).
    pub(crate) fn track(n: u8) -> TrackRef {
        TrackRef {
            track_hash: Hash32([n; 32]),
            manifest_id: Hash32([n + 100; 32]),
            duration_ms: 7000,
            segment_count: 2,
            title: format!("Song {n}"),
            artist: "Artist".into(),
            album: String::new(),
            loudness_lufs: None,
        }
    }

    const MIN: u64 = 60_000;

    #[test]
    fn cooldown_per_track_and_limit_per_listener() {
        let policy = Policy::default();
        let none = BTreeSet::new();
        let mut book = Book::default();
        let t0 = 1_800_000_000_000;
        let r = book
            .request(&track(1), " Ada ", "10.0.0.1", t0, &policy, &none, None)
            .expect("first request");
        assert_eq!((r.id, r.state, r.name.as_str()), (0, State::Queued, "Ada"));
        // The same track within the hour: refused, whoever asks.
        let e = book
            .request(
                &track(1),
                "",
                "10.0.0.2",
                t0 + 10 * MIN,
                &policy,
                &none,
                None,
            )
            .expect_err("cooldown");
        assert_eq!(
            e.to_string(),
            "\u{201c}Song 1\u{201d} was requested 10 min ago; it can be requested again in 50 min"
        );
        // After the cooldown it may be requested again.
        book.request(
            &track(1),
            "",
            "10.0.0.2",
            t0 + 61 * MIN,
            &policy,
            &none,
            None,
        )
        .expect("after the cooldown");
        // Three per listener per hour; the fourth waits until the first is an hour old.
        for n in 2..4 {
            book.request(
                &track(n),
                "",
                "10.0.0.1",
                t0 + u64::from(n) * MIN,
                &policy,
                &none,
                None,
            )
            .expect("within the limit");
        }
        let e = book
            .request(
                &track(9),
                "",
                "10.0.0.1",
                t0 + 5 * MIN,
                &policy,
                &none,
                None,
            )
            .expect_err("limit");
        assert_eq!(e, Refusal::Limit { count: 3, left: 55 });
        assert_eq!(book.requests.len(), 4, "refusals change nothing");
    }

    #[test]
    fn approval_names_and_a_full_list() {
        let policy = Policy {
            approve: true,
            open_max: 2,
            ..Policy::default()
        };
        let none = BTreeSet::new();
        let mut book = Book::default();
        let t0 = 1_800_000_000_000;
        assert_eq!(
            book.request(&track(1), &"x".repeat(41), "a", t0, &policy, &none, None),
            Err(Refusal::BadName)
        );
        assert_eq!(
            book.request(&track(1), "a\nb", "a", t0, &policy, &none, None),
            Err(Refusal::BadName)
        );
        let r = book
            .request(&track(1), "", "a", t0, &policy, &none, None)
            .expect("request");
        assert_eq!(r.state, State::Pending);
        book.request(&track(2), "", "b", t0, &policy, &none, None)
            .expect("request");
        assert_eq!(
            book.request(&track(3), "", "c", t0, &policy, &none, None),
            Err(Refusal::Full(2))
        );
        assert_eq!(book.decide(0, true).expect("approve").state, State::Queued);
        assert!(book.decide(0, false).is_err(), "decided already");
        assert!(book.decide(7, true).is_err(), "no such request");
        // Once proposed, a request is no longer open: room for another.
        let proposed = BTreeSet::from([0]);
        book.request(&track(3), "", "c", t0, &policy, &proposed, None)
            .expect("room again");
    }

    #[test]
    fn ipv6_listeners_are_their_slash_64_and_files_round_trip() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        assert_eq!(listener_of(a), listener_of(b));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().expect("ip");
        assert_eq!(listener_of(mapped), "10.1.2.3");

        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Book::load(dir.path()).expect("absent"), Book::default());
        let mut book = Book::default();
        book.request(
            &track(1),
            "",
            "a",
            1,
            &Policy::default(),
            &BTreeSet::new(),
            None,
        )
        .expect("request");
        book.save(dir.path()).expect("save");
        assert_eq!(Book::load(dir.path()).expect("load"), book);
        std::fs::write(Book::path(dir.path()), b"{ damaged").expect("write");
        let e = Book::load(dir.path()).expect_err("damaged");
        assert!(format!("{e:#}").contains(FILE), "{e:#}");
        save_proposed(dir.path(), &BTreeSet::from([3, 4])).expect("save");
        assert_eq!(
            load_proposed(dir.path()).expect("load"),
            BTreeSet::from([3, 4])
        );
    }
}
