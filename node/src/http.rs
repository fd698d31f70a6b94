//! The HTTP API (loopback by default): `GET /status`, and the local audio controls
//! `POST /volume?level=N` and `POST /mute?on=true|false`, which answer only on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chorus_media::player::Player;
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
}

/// Serves the API on `addr` until `shutdown`; returns the bound address. A busy default port
/// falls back to any free port (the address is logged and written to `DATA/http.addr`).
pub async fn serve(
    addr: SocketAddr,
    shared: Shared,
    shutdown: CancellationToken,
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
        .route("/volume", post(volume))
        .route("/mute", post(mute))
        .with_state(shared);
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
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
    }
    axum::Json(doc)
}

/// Volume and mute are local to the node: only its own machine may change them.
fn loopback_only(peer: SocketAddr) -> Result<(), Box<Response>> {
    if peer.ip().is_loopback() {
        Ok(())
    } else {
        Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                "volume and mute can only be changed from the node's own machine (loopback)\n",
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

async fn volume(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(shared): State<Shared>,
    Query(q): Query<VolumeQuery>,
) -> Response {
    if let Err(r) = loopback_only(peer) {
        return *r;
    }
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

async fn mute(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(shared): State<Shared>,
    Query(q): Query<MuteQuery>,
) -> Response {
    if let Err(r) = loopback_only(peer) {
        return *r;
    }
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
    }
}
