//! The HTTP API (loopback by default; `--http-listen 0.0.0.0:PORT` opens it):
//! - `GET /status`: the node's state as JSON;
//! - `GET /live.m3u8` and `GET /live/ID.aac`: the live HLS stream of what the node plays, each
//!   segment's ID3 tag carrying its track's title, artist and album; `GET /segments/ID`: a block
//!   of the store as it is;
//! - `GET /stream`: the same audio as one Icecast-style AAC stream with ICY metadata
//!   ([`crate::icy`]);
//! - `POST /volume?level=N` and `POST /mute?on=true|false`: the local audio controls, which
//!   answer only on loopback. Read-only endpoints need no authentication.
//!
//! Web pages open in a browser on the node's machine are the threat here, since they can reach
//! loopback: a cross-site form POST (no preflight) would change the volume, and a DNS-rebinding
//! page (its own name resolved to 127.0.0.1) could read `/status` (paths, peer addresses). So
//! [`guard`] refuses, with 403: controls whose `Host` is not a loopback name or the listen
//! address, whose `Origin` (when present) is not the node's own, or whose peer is not loopback;
//! and, while the listener is loopback only, reads whose `Host` is not a loopback name or the
//! listen address. A rebinding page always sends its own domain as `Host`; an IP literal
//! cannot be rebound. `::ffff:127.0.0.1` (IPv4 on a dual-stack listener) counts as loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::Path;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chorus_media::live::LiveView;
use chorus_media::player::Player;
use chorus_media::{BlockStore, Hash32};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// What the handlers read.
#[derive(Clone)]
pub struct Shared {
    /// The driver's last status document.
    pub snapshot: watch::Receiver<serde_json::Value>,
    /// The player, for live audio figures and the controls.
    pub player: Arc<Player>,
    /// The network clock.
    pub clock: Arc<Clock>,
    /// The live playlist's text and window.
    pub playlist: watch::Receiver<LiveView>,
    /// The Icecast-style stream's feed.
    pub icy: Arc<crate::icy::Feed>,
    /// Listener requests and the library they pick from.
    pub desk: Arc<crate::desk::Desk>,
    /// The operator's token.
    pub token: Arc<crate::operator::Token>,
    /// The block store, for segments.
    pub store: BlockStore,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Serves the API on `addr` until `shutdown`; returns the bound address. A busy default port
/// falls back to any free port (the address is logged and written to `DATA/http.addr`).
pub async fn serve(
    addr: SocketAddr,
    shared: Shared,
    shutdown: CancellationToken,
    tasks: &mut crate::supervise::Critical,
) -> Result<SocketAddr> {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrInUse
                && addr.port() == crate::cli::DEFAULT_HTTP_PORT =>
        {
            tracing::warn!(
                "HTTP port {} is in use; taking a free port instead",
                addr.port()
            );
            tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .with_context(|| format!("cannot listen for HTTP on {}", addr.ip()))?
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot listen for HTTP on {addr} (--http-listen)"));
        }
    };
    let bound = listener
        .local_addr()
        .context("HTTP listener has no address")?;
    let app = Router::new()
        .route("/status", get(status))
        .route("/", get(page))
        .route("/assets/hls.min.js", get(hls_js))
        .route("/metrics", get(metrics))
        .route("/live.m3u8", get(live))
        .route("/segments/{id}", get(segment))
        .route("/live/{id}", get(live_segment))
        .route("/stream", get(stream))
        .route("/volume", post(volume))
        .route("/mute", post(mute))
        .merge(crate::desk::routes())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_MAX))
        .layer(axum::middleware::from_fn_with_state(
            Guard {
                bound,
                token: shared.token.clone(),
            },
            guard,
        ))
        .with_state(shared);
    let stopped = shutdown.clone();
    tasks.spawn("HTTP API", async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
        if let Err(e) = served {
            tracing::error!(event = "http_failed", "the HTTP API stopped: {e}");
        }
        // Stopping at shutdown is expected; only an unexpected end is reported.
        stopped.cancelled().await;
    });
    Ok(bound)
}

async fn status(State(shared): State<Shared>) -> axum::Json<serde_json::Value> {
    let mut doc = shared.snapshot.borrow().clone();
    if let Some(map) = doc.as_object_mut() {
        // Live figures, fresher than the driver's last snapshot.
        map.insert("audio".into(), json!(shared.player.stats()));
        map.insert(
            "clock_offset_ms".into(),
            json!(shared.clock.offset_us_at(std::time::Instant::now()) / 1000.0),
        );
        map.insert(
            "stream".into(),
            json!({ "listeners": shared.icy.listeners(), "max_listeners": crate::icy::MAX_LISTENERS }),
        );
    }
    axum::Json(doc)
}

/// The status page (node/assets/index.html): now playing, the next five, peers, and a player
/// for the live stream.
async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../assets/index.html"),
    )
        .into_response()
}

/// hls.js, vendored from the npm registry (node/assets/README.md): no CDN at run time.
async fn hls_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_bytes!("../assets/hls.min.js").as_slice(),
    )
        .into_response()
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let offset_ms = shared.clock.offset_us_at(std::time::Instant::now()) / 1000.0;
    let text = shared.metrics.encode(offset_ms, shared.player.stats());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn live(State(shared): State<Shared>) -> Response {
    let text = shared.playlist.borrow().playlist.clone();
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            // A live playlist changes every segment: clients must not keep it.
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        text,
    )
        .into_response()
}

/// A segment from the store: `ID.aac` (or `ID`). The id must be exactly 64 lowercase hex
/// digits (nothing else names a file, so no path can leave the store); the bytes are verified
/// against it.
async fn segment(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    let id = match segment_id(&name) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.get(&id)).await {
        Ok(Ok(bytes)) => (
            [
                (header::CONTENT_TYPE, "audio/aac".to_owned()),
                // Content-addressed: the bytes behind an id never change.
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_owned(),
                ),
                (header::ETAG, format!("\"{}\"", id.to_hex())),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            "no such segment in this node's store\n",
        )
            .into_response(),
    }
}

/// The id in a segment's name, `ID.aac` or `ID`: exactly 64 lowercase hex digits (nothing else
/// names a file, so no path can leave the store).
fn segment_id(name: &str) -> Result<Hash32, Box<Response>> {
    let id = name.strip_suffix(".aac").unwrap_or(name);
    id.parse::<Hash32>().map_err(|_| {
        Box::new(
            (
                StatusCode::BAD_REQUEST,
                "a segment id is 64 lowercase hex digits\n",
            )
                .into_response(),
        )
    })
}

/// A segment of the live playlist as the playlist lists it (`live/ID.aac`): the block with its
/// ID3 tag carrying, beside the timestamp, the title, artist and album of the track it belongs
/// to (HLS timed metadata). Only segments in the live window are served here.
async fn live_segment(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    let id = match segment_id(&name) {
        Ok(id) => id,
        Err(r) => return *r,
    };
    let tags = shared
        .playlist
        .borrow()
        .entries
        .iter()
        .find(|e| e.id == id)
        .map(|e| e.tags.clone());
    let Some(tags) = tags else {
        return (
            StatusCode::NOT_FOUND,
            "no such segment in the live window (it lists the last six)\n",
        )
            .into_response();
    };
    let store = shared.store.clone();
    let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || store.get(&id)).await else {
        return (
            StatusCode::NOT_FOUND,
            "no such segment in this node's store\n",
        )
            .into_response();
    };
    let texts = [
        (*b"TIT2", tags.title.as_str()),
        (*b"TPE1", tags.artist.as_str()),
        (*b"TALB", tags.album.as_str()),
    ];
    // A segment that is not a timestamp tag and ADTS (a peer's bytes) goes as it is.
    let body = chorus_media::adts::with_text_frames(&bytes, &texts).unwrap_or(bytes);
    (
        [
            (header::CONTENT_TYPE, "audio/aac"),
            (header::CACHE_CONTROL, "public, max-age=60"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

/// The Icecast-style stream (see [`crate::icy`]): `icy-name` is the network's name, and
/// `icy-metaint` comes when the client sends `Icy-MetaData: 1`.
async fn stream(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let Some(listener) = shared.icy.listen() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "30")],
            format!(
                "this node serves {} stream listeners at most; try again later\n",
                crate::icy::MAX_LISTENERS
            ),
        )
            .into_response();
    };
    let metadata = headers
        .get("icy-metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "1");
    let name = shared.snapshot.borrow()["network"]["name"]
        .as_str()
        .map(|n| chorus_media::adts::clean_text(n, 200))
        .unwrap_or_default();
    let name = header::HeaderValue::from_bytes(name.as_bytes())
        .unwrap_or(header::HeaderValue::from_static("Chorus"));
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, "audio/aac")
        .header(header::CACHE_CONTROL, "no-cache, no-store")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .header("icy-name", name)
        .header("icy-pub", "0");
    if metadata {
        response = response.header("icy-metaint", crate::icy::METAINT);
    }
    let body = crate::icy::body(listener, metadata.then_some(crate::icy::METAINT));
    response
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response())
}

/// Request bodies are at most this long (a listener's request is a few dozen bytes).
const BODY_MAX: usize = 4096;

/// What [`guard`] checks requests against.
#[derive(Clone, Debug)]
struct Guard {
    /// The address the API listens on.
    bound: SocketAddr,
    /// The operator's token.
    token: Arc<crate::operator::Token>,
}

/// Refuses cross-site and DNS-rebinding requests (see the module's doc).
async fn guard(
    State(g): State<Guard>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let control = !matches!(*request.method(), Method::GET | Method::HEAD);
    let listener_request = *request.method() == Method::POST && request.uri().path() == "/requests";
    let verdict = if let Some(token) = crate::operator::presented(request.headers()) {
        // A token presented must be the right one, whatever else the request could do.
        if g.token.matches(token) {
            Ok(())
        } else {
            Err(Box::new(
                (
                    StatusCode::UNAUTHORIZED,
                    "wrong operator token (the link the node prints at start has the right one)\n",
                )
                    .into_response(),
            ))
        }
    } else if listener_request {
        // Open to every listener; JSON only, which a cross-site form cannot send and a
        // cross-site script cannot send without a preflight this API never grants. A listener
        // on the network names the node by whatever address it reached it at (the listener
        // may be 0.0.0.0): only a loopback listener checks the Host.
        let origin = if is_loopback(g.bound.ip()) {
            same_origin(&g, request.headers())
        } else {
            origin_is_host(request.headers())
        };
        origin.and_then(|()| json_body(request.headers()))
    } else if control {
        loopback_only(peer).and_then(|()| same_origin(&g, request.headers()))
    } else if is_loopback(g.bound.ip()) {
        host_allowed(&g, request.headers())
    } else {
        Ok(())
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(r) => {
            tracing::debug!(peer = %peer, path = %request.uri().path(), "HTTP request refused");
            *r
        }
    }
}

fn forbidden(why: &'static str) -> Box<Response> {
    Box::new((StatusCode::FORBIDDEN, why).into_response())
}

/// Loopback, including IPv4 on a dual-stack listener (`::ffff:127.0.0.1`).
pub(crate) fn is_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The host part of a `Host` or `Origin` authority: `name`, `1.2.3.4` or `[::1]`, port removed.
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// A loopback name (`localhost`, `*.localhost`, a loopback IP) or the listen address's IP.
fn allowed_host(g: &Guard, authority: &str) -> bool {
    let host = host_part(authority).to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            is_loopback(ip)
                || (!g.bound.ip().is_unspecified()
                    && ip.to_canonical() == g.bound.ip().to_canonical())
        }
        Err(_) => false,
    }
}

/// A browser always sends `Host`; a request without one is not a page's.
fn host_allowed(g: &Guard, headers: &HeaderMap) -> Result<(), Box<Response>> {
    match headers.get(header::HOST).map(|h| h.to_str()) {
        None => Ok(()),
        Some(Ok(host)) if allowed_host(g, host) => Ok(()),
        Some(_) => Err(forbidden(
            "this node answers only to its own address or a loopback name (Host)\n",
        )),
    }
}

/// `Host` allowed, and `Origin`, when a browser sends one, the node's own (`http://` + Host).
fn same_origin(g: &Guard, headers: &HeaderMap) -> Result<(), Box<Response>> {
    host_allowed(g, headers)?;
    origin_is_host(headers)
}

/// `Origin`, when a browser sends one, is `http://` + the request's `Host`: the page that sends
/// it is one the node served.
fn origin_is_host(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let own = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"));
    match (origin.to_str(), own) {
        (Ok(o), Some(own)) if o.eq_ignore_ascii_case(&own) => Ok(()),
        _ => Err(forbidden(
            "controls answer only to pages of the node itself (Origin)\n",
        )),
    }
}

/// Without the operator token, the controls answer only to the node's own machine.
fn loopback_only(peer: SocketAddr) -> Result<(), Box<Response>> {
    if is_loopback(peer.ip()) {
        Ok(())
    } else {
        Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "the controls need the operator token (the link the node prints at start) from any address but the node's own machine\n",
            )
                .into_response(),
        ))
    }
}

/// `Content-Type: application/json`.
fn json_body(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if json {
        Ok(())
    } else {
        Err(Box::new(
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a request is sent as application/json\n",
            )
                .into_response(),
        ))
    }
}

fn audio_state(player: &Player) -> axum::Json<serde_json::Value> {
    let s = player.stats();
    axum::Json(json!({ "volume": (s.volume * 100.0).round() as u8, "muted": s.muted }))
}

#[derive(Deserialize)]
struct VolumeQuery {
    level: Option<String>,
}

async fn volume(State(shared): State<Shared>, Query(q): Query<VolumeQuery>) -> Response {
    match q.level.as_deref().map(str::parse::<u8>) {
        Some(Ok(level)) if level <= 100 => {
            shared.player.set_volume(f32::from(level) / 100.0);
            tracing::info!(event = "volume", level, "volume set to {level}%");
            audio_state(&shared.player).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "give the volume as ?level=N with N from 0 to 100\n",
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct MuteQuery {
    on: Option<String>,
}

async fn mute(State(shared): State<Shared>, Query(q): Query<MuteQuery>) -> Response {
    let on = match q.on.as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => {
            return (StatusCode::BAD_REQUEST, "give ?on=true or ?on=false\n").into_response();
        }
    };
    shared.player.set_muted(on);
    tracing::info!(
        event = "mute",
        muted = on,
        "{}",
        if on { "muted" } else { "unmuted" }
    );
    audio_state(&shared.player).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_answer_only_on_loopback() {
        assert!(loopback_only("127.0.0.1:5000".parse().expect("addr")).is_ok());
        assert!(loopback_only("[::1]:5000".parse().expect("addr")).is_ok());
        let refused = loopback_only("192.168.1.20:5000".parse().expect("addr"))
            .expect_err("a LAN address is refused");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(
            loopback_only("[::ffff:127.0.0.1]:5000".parse().expect("addr")).is_ok(),
            "IPv4 loopback on a dual-stack listener"
        );
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn hosts_and_origins() {
        let token = Arc::new(crate::operator::Token::new("t".into()));
        let g = Guard {
            bound: "127.0.0.1:7300".parse().expect("addr"),
            token: token.clone(),
        };
        for ok in [
            "127.0.0.1:7300",
            "localhost:7300",
            "LOCALHOST",
            "radio.localhost:7300",
            "[::1]:7300",
            "127.0.0.2",
        ] {
            assert!(allowed_host(&g, ok), "{ok}");
        }
        for bad in [
            "evil.example:7300",
            "127.0.0.1.evil.example",
            "[::2]:7300",
            "10.0.0.1",
        ] {
            assert!(!allowed_host(&g, bad), "{bad}");
        }
        let lan = Guard {
            bound: "192.168.1.5:7300".parse().expect("addr"),
            token,
        };
        assert!(allowed_host(&lan, "192.168.1.5:7300"));
        assert!(!allowed_host(&lan, "192.168.1.6:7300"));

        let own = headers(&[
            (header::HOST, "127.0.0.1:7300"),
            (header::ORIGIN, "http://127.0.0.1:7300"),
        ]);
        assert!(same_origin(&g, &own).is_ok());
        assert!(same_origin(&g, &headers(&[(header::HOST, "127.0.0.1:7300")])).is_ok());
        // A listener on the network: the page it was served, by any address of the node.
        let lan = headers(&[
            (header::HOST, "192.168.1.5:7300"),
            (header::ORIGIN, "http://192.168.1.5:7300"),
        ]);
        assert!(origin_is_host(&lan).is_ok());
        let foreign = headers(&[
            (header::HOST, "192.168.1.5:7300"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(origin_is_host(&foreign).is_err());
        for (host, origin) in [
            ("127.0.0.1:7300", "http://evil.example"),
            ("127.0.0.1:7300", "null"),
            ("127.0.0.1:7300", "http://127.0.0.1:8000"),
            ("evil.example:7300", "http://evil.example:7300"),
        ] {
            let h = headers(&[(header::HOST, host), (header::ORIGIN, origin)]);
            let refused = same_origin(&g, &h).expect_err(origin);
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        }
    }
}
