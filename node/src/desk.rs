//! The request desk of the HTTP API (`crate::requests` keeps the rules and the file):
//! - `GET /library?q=TEXT`: this node's library, searched by title, artist and album (every
//!   word must match, case-insensitive), at most 50 tracks;
//! - `GET /requests`: the station's rules and the recent requests (without addresses);
//! - `POST /requests` with `{"track_hash": "...", "name": "..."}` (JSON): a listener's request;
//!   open to every listener, `201` with the request or an error saying why not (`404` unknown
//!   track, `400` bad input, `409` cooldown, `429` the listener's limit, `503` a full list);
//! - `POST /requests/ID/approve` and `/reject`: the operator's decision (a control: the
//!   operator token, or loopback);
//! - `GET /operator`: whether this request may use the controls;
//! - `POST /queue` with `{"track_hash": ...}` and `POST /queue/ID/remove`: the operator adds a
//!   track of the library to the DJ's queue or removes an entry (a control);
//! - `POST /blacklist` and `POST /blacklist/remove` with `{"track_hash": ...}`: the operator
//!   blacklists a track (any track of the network, by hash) or lifts that rule (a control).
//!
//! The queue and the blacklist are the files `chorus queue` and `chorus blacklist` edit; both
//! writers take the file's lock for each edit, and the driver rereads the files as they change.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chorus_consensus::TrackRef;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::http::Shared;
use crate::requests::{self, Book, Policy, Refusal};

/// Tracks a search answers at most.
pub const SEARCH_MAX: usize = 50;
/// A search text is at most this many characters.
pub const QUERY_MAX: usize = 200;

/// See the module's doc.
pub struct Desk {
    data_dir: PathBuf,
    config_dir: PathBuf,
    tracks: Vec<TrackRef>,
    policy: Policy,
    book: Mutex<Book>,
}

impl Desk {
    /// The desk of `data_dir` for the library `tracks`. A requests file that does not parse is
    /// set aside (renamed `.damaged`, with a warning) and the desk starts empty.
    pub fn open(
        data_dir: PathBuf,
        config_dir: PathBuf,
        tracks: Vec<TrackRef>,
        policy: Policy,
    ) -> Desk {
        let book = Book::load(&data_dir).unwrap_or_else(|e| {
            let path = Book::path(&data_dir);
            let aside = path.with_extension("json.damaged");
            let _ = std::fs::rename(&path, &aside);
            warn!(
                event = "requests_invalid",
                "{e:#}; set aside as {}",
                aside.display()
            );
            Book::default()
        });
        Desk {
            data_dir,
            config_dir,
            tracks,
            policy,
            book: Mutex::new(book),
        }
    }

    /// The station's rules.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn proposed(&self) -> BTreeSet<u64> {
        requests::load_proposed(&self.data_dir).unwrap_or_default()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The desk's routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/library", get(library))
        .route("/requests", get(list).post(request))
        .route("/requests/{id}/{decision}", post(decide))
        .route("/operator", get(operator))
        .route("/queue", post(queue_add))
        .route("/queue/{id}/remove", post(queue_remove))
        .route("/blacklist", post(blacklist_add))
        .route("/blacklist/remove", post(blacklist_remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackBody {
    track_hash: String,
}

fn track_body(body: &[u8]) -> Result<TrackBody, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the body is JSON: {{\"track_hash\": \"...\"}} ({e})"),
        ))
    })
}

/// Runs a locked edit of a shared file on a blocking thread.
async fn edit<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(move || crate::files::locked(&path, f))
        .await
        .map_err(|e| anyhow::anyhow!("the edit failed: {e}"))?
}

async fn queue_add(State(shared): State<Shared>, body: Bytes) -> Response {
    let wanted = match track_body(&body) {
        Ok(b) => b.track_hash,
        Err(r) => return *r,
    };
    let desk = &shared.desk;
    let Some(track) = desk
        .tracks
        .iter()
        .find(|t| t.track_hash.to_hex() == wanted)
        .cloned()
    else {
        let shown: String = wanted.chars().take(64).collect();
        return error(StatusCode::NOT_FOUND, Refusal::UnknownTrack(shown));
    };
    let (config_dir, data_dir) = (desk.config_dir.clone(), desk.data_dir.clone());
    let path = crate::queue::Queue::path(&config_dir);
    let added = edit(path, move || {
        let proposed = crate::queue::load_proposed(&data_dir)?;
        let mut q = crate::queue::Queue::load(&config_dir)?;
        if q.pending(&proposed).count() >= crate::queue::ENTRIES_MAX {
            anyhow::bail!(
                "the queue holds {} tracks at most",
                crate::queue::ENTRIES_MAX
            );
        }
        q.drop_proposed(&proposed);
        let id = q.push(track.track_hash, &track.title, &track.artist);
        q.save(&config_dir)?;
        Ok(id)
    })
    .await;
    match added {
        Ok(id) => (
            StatusCode::CREATED,
            axum::Json(json!({ "id": id, "track_hash": wanted })),
        )
            .into_response(),
        Err(e) => error(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

async fn queue_remove(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "an entry id is a number");
    };
    let desk = &shared.desk;
    let (config_dir, data_dir) = (desk.config_dir.clone(), desk.data_dir.clone());
    let path = crate::queue::Queue::path(&config_dir);
    let removed = edit(path, move || {
        let proposed = crate::queue::load_proposed(&data_dir)?;
        let mut q = crate::queue::Queue::load(&config_dir)?;
        if !q.pending(&proposed).any(|e| e.id == id) {
            return Ok(false);
        }
        q.drop_proposed(&proposed);
        q.entries.retain(|e| e.id != id);
        q.save(&config_dir)?;
        Ok(true)
    })
    .await;
    match removed {
        Ok(true) => axum::Json(json!({ "removed": id })).into_response(),
        Ok(false) => error(
            StatusCode::NOT_FOUND,
            format!("the queue has no entry {id} waiting"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn blacklist_add(State(shared): State<Shared>, body: Bytes) -> Response {
    blacklist_edit(&shared, &body, true).await
}

async fn blacklist_remove(State(shared): State<Shared>, body: Bytes) -> Response {
    blacklist_edit(&shared, &body, false).await
}

async fn blacklist_edit(shared: &Shared, body: &[u8], add: bool) -> Response {
    let wanted = match track_body(body) {
        Ok(b) => b.track_hash,
        Err(r) => return *r,
    };
    let hash = match crate::blacklist::parse_hash(&wanted) {
        Ok(h) => h,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    };
    let config_dir = shared.desk.config_dir.clone();
    let path = crate::blacklist::Blacklist::path(&config_dir);
    let rule = crate::blacklist::Rule::Hash(hash);
    let edited = {
        let rule = rule.clone();
        edit(path, move || {
            let mut list = crate::blacklist::Blacklist::load(&config_dir)?;
            let changed = if add {
                list.rules.insert(rule)
            } else {
                list.rules.remove(&rule)
            };
            if changed {
                list.save(&config_dir)?;
            }
            Ok(changed)
        })
        .await
    };
    match edited {
        Ok(changed) if add || changed => {
            info!(event = "blacklist_edited", added = add, rule = %rule,
                "the operator {} the blacklist rule {rule}", if add { "added" } else { "removed" });
            axum::Json(json!({ "rule": rule.to_string(), "blacklisted": add, "changed": changed }))
                .into_response()
        }
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            format!("the blacklist has no rule {rule}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

fn error(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (code, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

#[derive(Deserialize)]
struct Search {
    q: Option<String>,
}

async fn library(State(shared): State<Shared>, Query(search): Query<Search>) -> Response {
    let q = search.q.unwrap_or_default();
    if q.chars().count() > QUERY_MAX {
        return error(
            StatusCode::BAD_REQUEST,
            format!("a search is at most {QUERY_MAX} characters"),
        );
    }
    let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
    let found: Vec<serde_json::Value> = shared
        .desk
        .tracks
        .iter()
        .filter(|t| {
            let text = format!("{} {} {}", t.title, t.artist, t.album).to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .take(SEARCH_MAX)
        .map(crate::node::snapshot::track_json)
        .collect();
    axum::Json(json!({ "tracks": found, "library_size": shared.desk.tracks.len() })).into_response()
}

async fn list(State(shared): State<Shared>) -> Response {
    let desk = &shared.desk;
    let proposed = desk.proposed();
    let book = desk.book();
    let recent: Vec<serde_json::Value> = book
        .requests
        .iter()
        .rev()
        .take(50)
        .map(|r| r.public_json(proposed.contains(&r.id)))
        .collect();
    let p = desk.policy;
    axum::Json(json!({
        "policy": {
            "cooldown_minutes": p.cooldown_ms / 60_000,
            "per_listener_per_hour": p.per_hour,
            "approve": p.approve,
            "open_max": p.open_max,
        },
        "requests": recent,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    track_hash: String,
    #[serde(default)]
    name: String,
}

async fn request(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let new: NewRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("a request is JSON: {{\"track_hash\": \"...\", \"name\": \"...\"}} ({e})"),
            );
        }
    };
    let desk = &shared.desk;
    let Some(track) = desk
        .tracks
        .iter()
        .find(|t| t.track_hash.to_hex() == new.track_hash)
    else {
        let shown: String = new.track_hash.chars().take(64).collect();
        return error(StatusCode::NOT_FOUND, Refusal::UnknownTrack(shown));
    };
    let listener = requests::listener_of(peer.ip());
    let proposed = desk.proposed();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let on_air = on_air(&shared.snapshot.borrow(), track);
    let mut book = desk.book();
    let mut changed = book.clone();
    match changed.request(
        track,
        &new.name,
        &listener,
        now_ms,
        &desk.policy,
        &proposed,
        on_air,
    ) {
        Ok(r) => {
            if let Err(e) = changed.save(&desk.data_dir) {
                warn!(event = "requests_invalid", "{e:#}");
                return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
            }
            *book = changed;
            info!(event = "requested", id = r.id, track_hash = %r.track_hash, waiting = desk.policy.approve,
                "listener request {}: \"{}\"{}", r.id, r.title,
                if desk.policy.approve { " (waits for approval)" } else { "" });
            (StatusCode::CREATED, axum::Json(r.public_json(false))).into_response()
        }
        Err(refusal) => {
            let code = match refusal {
                Refusal::UnknownTrack(_) => StatusCode::NOT_FOUND,
                Refusal::BadName => StatusCode::BAD_REQUEST,
                Refusal::Cooldown { .. }
                | Refusal::Upcoming { .. }
                | Refusal::Playing { .. }
                | Refusal::Recent { .. } => StatusCode::CONFLICT,
                Refusal::Limit { .. } => StatusCode::TOO_MANY_REQUESTS,
                Refusal::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(code, refusal)
        }
    }
}

/// Whether `track` is decided for a coming slot or played in the recent ones, from the
/// status document (`next`, `playing`, `history`): a request of it would only wait.
fn on_air(status: &serde_json::Value, track: &TrackRef) -> Option<Refusal> {
    let hash = track.track_hash.to_hex();
    let is = |v: &serde_json::Value| v["track"]["track_hash"].as_str() == Some(hash.as_str());
    let title = track.title.clone();
    if let Some(n) = status["next"]
        .as_array()
        .and_then(|n| n.iter().find(|v| is(v)))
    {
        let slot = n["slot"].as_u64().unwrap_or(0);
        return Some(Refusal::Upcoming { title, slot });
    }
    let playing = &status["playing"];
    if playing["consensus_track"]["track_hash"].as_str() == Some(hash.as_str()) || is(playing) {
        return Some(Refusal::Playing { title });
    }
    let current = playing["slot"].as_u64()?;
    let played = status["history"].as_array()?.iter().find(|v| is(v))?;
    let ago = current.saturating_sub(played["slot"].as_u64()?);
    Some(Refusal::Recent { title, ago })
}

async fn decide(
    State(shared): State<Shared>,
    Path((id, decision)): Path<(String, String)>,
) -> Response {
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return error(StatusCode::NOT_FOUND, "approve or reject"),
    };
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "a request id is a number");
    };
    let desk = &shared.desk;
    let mut book = desk.book();
    let mut changed = book.clone();
    match changed.decide(id, approve) {
        Ok(r) => {
            if let Err(e) = changed.save(&desk.data_dir) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
            }
            *book = changed;
            info!(
                event = "request_decided",
                id,
                approved = approve,
                "request {id} \"{}\" {}",
                r.title,
                if approve { "approved" } else { "rejected" }
            );
            axum::Json(r.public_json(false)).into_response()
        }
        Err(e) if e.starts_with("no request") => error(StatusCode::NOT_FOUND, e),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// The guard has let this request through: it presented the operator token, or it comes from
/// the node's own machine (where the controls answer without one).
async fn operator(ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap) -> Response {
    let by_token = crate::operator::presented(&headers).is_some();
    let local = crate::http::is_loopback(peer.ip());
    axum::Json(json!({ "operator": by_token || local, "by_token": by_token })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::tests::track;
    use chorus_consensus::Hash32;

    #[test]
    fn a_track_coming_up_playing_or_played_lately_is_not_worth_a_request() {
        let t = |n: u8| json!({ "track_hash": Hash32([n; 32]).to_hex() });
        let status = json!({
            "playing": { "slot": 30, "consensus_track": t(1), "track": t(1) },
            "next": [ { "slot": 31, "track": t(2) }, { "slot": 32 } ],
            "history": [ { "slot": 29, "track": t(3) }, { "slot": 12, "track": t(4) } ],
        });
        assert_eq!(
            on_air(&status, &track(1)),
            Some(Refusal::Playing {
                title: "Song 1".into()
            })
        );
        assert_eq!(
            on_air(&status, &track(2)).map(|r| r.to_string()),
            Some("\u{201c}Song 2\u{201d} is coming up already (slot 31)".into())
        );
        assert_eq!(
            on_air(&status, &track(4)).map(|r| r.to_string()),
            Some(
                "\u{201c}Song 4\u{201d} played 18 tracks ago; a track waits 20 tracks before it plays again"
                    .into()
            )
        );
        assert_eq!(on_air(&status, &track(5)), None);
        assert_eq!(on_air(&serde_json::Value::Null, &track(5)), None);
    }
}
