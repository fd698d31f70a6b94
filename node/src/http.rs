//! The HTTP API (loopback by default): `GET /status`.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Serves the API on `addr` until `shutdown`; returns the bound address. A busy default port
/// falls back to any free port (the address is logged and written to `DATA/http.addr`).
pub async fn serve(
    addr: SocketAddr,
    snapshot: watch::Receiver<serde_json::Value>,
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
        .with_state(snapshot);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    });
    Ok(bound)
}

async fn status(
    State(snapshot): State<watch::Receiver<serde_json::Value>>,
) -> axum::Json<serde_json::Value> {
    axum::Json(snapshot.borrow().clone())
}
