//! The HTTP server every service listens with: axum's router over hyper's HTTP/1 connections,
//! with the walls `axum::serve` lacks. A client gets `http.header_timeout` to send a request's
//! headers (which also ends idle keep-alive connections), `http.request_timeout` for the whole
//! request (408 past it), and no more than `http.max_connections` connections are open at
//! once. At shutdown the listener closes, open connections finish their request within the
//! given drain time, and whatever is left is closed: one slow client cannot hold a shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::config::HttpConfig;

/// Serves `router` on `listener` until `shutdown`, then drains open connections for at most
/// `drain`. `name` labels the metrics (`http_connections_open{server}`, …).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpConfig,
    name: &'static str,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let router = router
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Finished connections are reaped as we go, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(server = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!("http_connections_refused_total", "server" => name).increment(1);
            tracing::debug!(server = name, %peer, "connection limit reached; closing the new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let connection = graceful.watch(connection);
        let open = Open::new(slot, name);
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(server = name, %peer, error = %e, "connection ended with an error");
            }
            drop(open);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            server = name,
            ?drain,
            open = connections.len(),
            "connections still open after the drain time; closing them"
        );
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

/// One open connection: its slot under `http.max_connections` and its share of the gauge,
/// both given back however the connection ends (also when it is aborted at shutdown).
struct Open {
    _slot: OwnedSemaphorePermit,
    server: &'static str,
}

impl Open {
    fn new(slot: OwnedSemaphorePermit, server: &'static str) -> Self {
        metrics::gauge!("http_connections_open", "server" => server).increment(1.0);
        Self { _slot: slot, server }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open", "server" => self.server).decrement(1.0);
    }
}
