//! The request desk of the HTTP API (`crate::requests` keeps the rules and the file):
//! - `GET /library?q=TEXT`: this node's library, searched by title, artist and album (every
//!   word must match, case-insensitive), at most 50 tracks;
//! - `GET /requests`: the station's rules and the recent requests (without addresses);
//! - `POST /requests` with `{"track_hash": "...", "name": "..."}` (JSON): a listener's request;
//!   open to every listener, `201` with the request or an error saying why not (`404` unknown
//!   track, `400` bad input, `409` cooldown, `429` the listener's limit, `503` a full list);
//! - `POST /requests/ID/approve` and `/reject`: the operator's decision (a control: the
//!   operator token, or loopback);
//! - `GET /operator`: whether this request may use the controls.

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
    tracks: Vec<TrackRef>,
    policy: Policy,
    book: Mutex<Book>,
}

impl Desk {
    /// The desk of `data_dir` for the library `tracks`. A requests file that does not parse is
    /// set aside (renamed `.damaged`, with a warning) and the desk starts empty.
    pub fn open(data_dir: PathBuf, tracks: Vec<TrackRef>, policy: Policy) -> Desk {
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
}

fn error(code: StatusCode, message: impl std::fmt::Display) -> Response {
    (code, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

fn track_json(t: &TrackRef) -> serde_json::Value {
    json!({
        "track_hash": t.track_hash.to_hex(),
        "title": t.title,
        "artist": t.artist,
        "album": t.album,
        "duration_ms": t.duration_ms,
    })
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
        .map(track_json)
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
    let mut book = desk.book();
    let mut changed = book.clone();
    match changed.request(track, &new.name, &listener, now_ms, &desk.policy, &proposed) {
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
                Refusal::Cooldown { .. } => StatusCode::CONFLICT,
                Refusal::Limit { .. } => StatusCode::TOO_MANY_REQUESTS,
                Refusal::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(code, refusal)
        }
    }
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
