//! The HTTP server every service listens with: axum's router over hyper's HTTP/1 connections,
//! with the walls `axum::serve` lacks. A client gets `http.header_timeout` to send a request's
//! headers (which also ends idle keep-alive connections), `http.request_timeout` for the whole
//! request (408 past it), and about `http.max_connections` connections are open at once. At
//! shutdown the listener closes, open connections finish their request within the given drain
//! time, and whatever is left is closed: one slow client cannot hold a shutdown.
//!
//! The cap is not first come, first served: a client holding every slot with idle or keyless
//! connections would lock the service's users out. When the cap is reached, a new connection
//! is let in and the connection idle longest among those that never had a request with
//! credentials answered with a success is closed instead; only when there is none is the new
//! one refused. A flood of keyless connections costs the flooder its own connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower_http::add_extension::AddExtension;
use tower_http::timeout::TimeoutLayer;

use super::unparsable::UnparsableAnswers;
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
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(header_limits))
        .layer(axum::middleware::from_fn(track));
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's own limits answer 431 with no body; ours (below them) answer in the JSON error
    // format, so they are the ones a client meets.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_headers(MAX_HEADERS * 2);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(OpenConnections::default());
    let closing = CancellationToken::new();
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
        // At the cap, a connection that is closing for this one stands in for its slot.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) if open.evict_one() => {
                metrics::counter!("http_connections_evicted_total", "server" => name).increment(1);
                None
            }
            Err(_) => {
                metrics::counter!("http_connections_refused_total", "server" => name).increment(1);
                tracing::debug!(server = name, %peer, "connection limit reached and none to close; closing the new connection");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = open.add();
        let service = AddExtension::new(router.clone(), Arc::clone(&conn));
        let io = TokioIo::new(UnparsableAnswers::new(stream));
        let connection = http.serve_connection(io, TowerToHyperService::new(service));
        let gauge = Gauge::new(slot, name);
        let (open, stop) = (Arc::clone(&open), closing.clone());
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let mut ending = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(server = name, %peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    // Its request, if one is under way, is answered first.
                    _ = conn.evict.notified(), if !ending => {
                        ending = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ = stop.cancelled(), if !ending => {
                        ending = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            open.remove(conn.id);
            drop(gauge);
        });
    }
    drop(listener);
    closing.cancel();
    let drained =
        tokio::time::timeout(drain, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
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

/// The open connections, as the cap's policy sees them.
#[derive(Default)]
struct OpenConnections {
    next_id: AtomicU64,
    by_id: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl OpenConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self) -> Arc<Connection> {
        let conn = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            opened: Instant::now(),
            trusted: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.lock().insert(conn.id, Arc::clone(&conn));
        conn
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the connection idle longest among the untrusted idle ones to close; false when
    /// there is none.
    fn evict_one(&self) -> bool {
        let victim = {
            let open = self.lock();
            open.values().filter(|c| c.evictable()).min_by_key(|c| c.idle_since()).map(Arc::clone)
        };
        match victim {
            Some(c) => {
                c.evicting.store(true, Ordering::Relaxed);
                // Stored if the task is not waiting yet: it sees it at its next turn.
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// One open connection.
struct Connection {
    id: u64,
    opened: Instant,
    /// A request of it that carried credentials was answered with a success: a client of the
    /// service, never closed to make room.
    trusted: AtomicBool,
    /// Requests dispatched to the router and not answered yet.
    in_flight: AtomicU32,
    /// When its last request was answered (or it opened), in ms since it opened.
    idle_since_ms: AtomicU64,
    evicting: AtomicBool,
    evict: Notify,
}

impl Connection {
    fn evictable(&self) -> bool {
        !self.trusted.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && !self.evicting.load(Ordering::Relaxed)
    }

    fn idle_since(&self) -> Instant {
        self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed))
    }
}

/// A request under way on its connection (counted as such however it ends).
struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.0;
        c.idle_since_ms.store(c.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps each connection's state for the cap's policy: requests under way, and whether one
/// with credentials (an `Authorization` header) was answered with a success.
async fn track(request: Request, next: Next) -> Response {
    let Some(conn) = request.extensions().get::<Arc<Connection>>().cloned() else {
        return next.run(request).await;
    };
    let credentials = request.headers().contains_key(header::AUTHORIZATION);
    conn.in_flight.fetch_add(1, Ordering::Relaxed);
    let under_way = InFlight(conn);
    let response = next.run(request).await;
    if credentials && response.status().is_success() {
        under_way.0.trusted.store(true, Ordering::Relaxed);
    }
    response
}

/// One open connection's slot under `http.max_connections` (none when it came in at the cap,
/// in place of one being closed) and its share of the gauge, both given back however the
/// connection ends (also when it is aborted at shutdown).
struct Gauge {
    _slot: Option<OwnedSemaphorePermit>,
    server: &'static str,
}

impl Gauge {
    fn new(slot: Option<OwnedSemaphorePermit>, server: &'static str) -> Self {
        metrics::gauge!("http_connections_open", "server" => server).increment(1.0);
        Self { _slot: slot, server }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open", "server" => self.server).decrement(1.0);
    }
}

/// Headers in one request, at most (431 above).
const MAX_HEADERS: usize = 100;
/// Bytes of header names and values in one request, at most (431 above).
const MAX_HEADER_BYTES: usize = 32 * 1024;

async fn header_limits(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them"),
        );
    }
    next.run(request).await
}

/// Every error answer in the one JSON format, `{"error": {"code", "message"}}`: the answers the
/// services write themselves already are; this rewrites those of the framework (404 and 405 of
/// the router, a path that is not UTF-8, 408 of the request timeout) that would be plain text
/// or empty.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut rewritten = error_response(status, text);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

fn error_response(status: StatusCode, message: String) -> Response {
    (status, axum::Json(error_body(status, &message))).into_response()
}

/// The JSON error format, `{"error": {"code", "message"}}`, with the code named after `status`.
pub(crate) fn error_body(status: StatusCode, message: &str) -> serde_json::Value {
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request".to_owned(),
        StatusCode::UNAUTHORIZED => "unauthorized".to_owned(),
        StatusCode::NOT_FOUND => "not_found".to_owned(),
        StatusCode::INTERNAL_SERVER_ERROR => "internal".to_owned(),
        other => other
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
    };
    serde_json::json!({"error": {"code": code, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn framework_errors_become_json_with_a_code() {
        for (status, code) in [
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request_header_fields_too_large"),
            (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
        ] {
            let r = error_response(status, "x".into());
            assert_eq!(r.status(), status);
            let body = axum::body::to_bytes(r.into_body(), 1024).await.expect("body");
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["error"]["code"], code);
        }
    }
}
