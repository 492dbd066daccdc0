//! One HTTP listener (the admin API and the webhook receiver each have their own): an accept
//! loop that holds at most `max_connections` connections, HTTP/1 with a header read timeout,
//! a deadline and a size cap for reading a request body, `{"error": ...}` for every error
//! answer, and a graceful stop on a token.
//!
//! `axum::serve` has none of these limits, so 1,100 clients sending half a request could hold
//! every descriptor of the process. Here a listener at its limit stops accepting: further
//! connections wait in the kernel's backlog, using no descriptor of ours, and the other
//! listener (its own semaphore) is unaffected. A connection that has not sent a whole request
//! head within `header_timeout` (also between keep-alive requests) is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ListenerSettings;

/// How long open connections get to finish their request at a stop (within the drain).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A body up to this many times the limit is read (and dropped) before the 413.
const DRAIN_FACTOR: usize = 4;

/// The largest error body of an inner handler that is rewrapped as `{"error": ...}`.
const ERROR_TEXT_LIMIT: usize = 16 * 1024;

/// What one listener allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub body_limit: usize,
}

impl Limits {
    pub fn new(settings: &ListenerSettings, body_limit: usize) -> Limits {
        Limits {
            max_connections: settings.max_connections,
            header_timeout: settings.header_timeout,
            body_timeout: settings.body_timeout,
            body_limit,
        }
    }
}

/// Wraps a router with the body rules (size cap, read deadline) and the JSON error bodies.
pub fn harden<S: Clone + Send + Sync + 'static>(router: Router<S>, limits: Limits) -> Router<S> {
    router
        .layer(axum::extract::DefaultBodyLimit::max(limits.body_limit))
        .layer(middleware::from_fn_with_state(limits, read_body))
        .layer(middleware::from_fn(json_errors))
}

/// Serves `router` on `listener` until `stop` is cancelled; then lets open requests finish
/// (at most `STOP_GRACE`). `name` names the listener in log lines.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    name: &'static str,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let accept_warnings = WarnLimiter::new(Duration::from_secs(10));
    let mut full_logged = false;
    loop {
        if slots.available_permits() == 0 && !full_logged {
            // Once per episode: the listener is full until a connection ends.
            tracing::warn!(
                listener = name,
                max_connections = limits.max_connections,
                "connection limit reached; new connections wait until one ends"
            );
            full_logged = true;
        }
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        if slots.available_permits() > 0 {
            full_logged = false;
        }
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // EMFILE and friends: wait a little rather than spin, and say so once
                    // per 10 s.
                    if let Some(more) = accept_warnings.check((name, "accept"), Instant::now()) {
                        tracing::warn!(listener = name, %error, more_since_last = more,
                            "cannot accept a connection; retrying");
                    }
                    drop(slot);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            router.clone(),
            limits.header_timeout,
            name,
            stop.clone(),
            slot,
        ));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(STOP_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open at the stop were dropped"
        );
    }
}

/// One accepted connection: HTTP/1 with a header-read timeout, closed gracefully at the stop.
/// `_slot` is the listener's connection permit, released when the connection ends.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    header_timeout: Duration,
    name: &'static str,
    stop: CancellationToken,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let service = TowerToHyperService::new(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(STOP_GRACE, connection.as_mut())
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(error) = result {
        // Timeouts and clients that hang up: routine, and a flood must not fill the log.
        tracing::debug!(listener = name, %error, "connection ended with an error");
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, axum::Json(json!({ "error": message.into() }))).into_response();
    if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::REQUEST_TIMEOUT {
        // The rest of the body is not read: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

enum BodyError {
    TooLarge,
    Broken(axum::Error),
}

/// Reads the whole body before the handler runs: at most `body_limit` bytes (413 past it),
/// within `body_timeout` (408 past it), so a client that trickles a body holds a connection
/// for a bounded time only.
async fn read_body(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than the limit of {} bytes",
                limits.body_limit
            ),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // A body somewhat over the limit is read to its end and dropped before the 413, so the
    // client, still sending, does not lose the answer to a reset connection.
    let drain_limit = limits.body_limit.saturating_mul(DRAIN_FACTOR);
    if declared.is_some_and(|n| n > drain_limit as u64) {
        return too_large();
    }
    let mut stream = body.into_data_stream();
    let collect = async {
        let mut buf = Vec::new();
        let mut seen = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(BodyError::Broken)?;
            seen = seen.saturating_add(chunk.len());
            if seen > drain_limit {
                return Err(BodyError::TooLarge);
            }
            if seen <= limits.body_limit {
                buf.extend_from_slice(&chunk);
            }
        }
        if seen > limits.body_limit {
            return Err(BodyError::TooLarge);
        }
        Ok(buf)
    };
    match tokio::time::timeout(limits.body_timeout, collect).await {
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body was not received within {}",
                humantime::format_duration(limits.body_timeout)
            ),
        ),
        Ok(Err(BodyError::TooLarge)) => too_large(),
        Ok(Err(BodyError::Broken(e))) => error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {e}"),
        ),
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(Bytes::from(bytes))))
                .await
        }
    }
}

/// Every error answer is `{"error": ...}`: axum's own rejections (a bad query string, a path
/// that is not UTF-8, an unknown method) answer in plain text, so their text is rewrapped.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, ERROR_TEXT_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    let body = json!({ "error": message }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// A reason to log: a pair such as (route, cause).
pub type Reason = (&'static str, &'static str);

/// At most one log line per reason and `every`: `check` says whether to log now and how many
/// were held back since the last line. The rest are only counted (and a metric counts all).
pub struct WarnLimiter {
    every: Duration,
    /// Per reason: when its last line was logged, and how many were held back since.
    seen: Mutex<HashMap<Reason, (Instant, u64)>>,
}

impl WarnLimiter {
    pub fn new(every: Duration) -> WarnLimiter {
        WarnLimiter {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(held back since the last line)` when a line is due for `reason` (a pair, such
    /// as route and cause) at `now`.
    pub fn check(&self, reason: Reason, now: Instant) -> Option<u64> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.get_mut(&reason) {
            Some((last, held)) if now.saturating_duration_since(*last) < self.every => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let more = *held;
                *last = now;
                *held = 0;
                Some(more)
            }
            None => {
                seen.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WarnLimiter;
    use std::time::{Duration, Instant};

    #[test]
    fn one_line_per_reason_and_interval_with_the_count_held_back() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.check(("contacts", "bad_signature"), t0), Some(0));
        let lines = (1..1000)
            .filter_map(|i| {
                limiter.check(("contacts", "bad_signature"), t0 + Duration::from_millis(i))
            })
            .count();
        assert_eq!(lines, 0, "all within 10 s of the first line");
        assert_eq!(
            limiter.check(("contacts", "unsigned"), t0),
            Some(0),
            "reasons are apart"
        );
        assert_eq!(
            limiter.check(("contacts", "bad_signature"), t0 + Duration::from_secs(10)),
            Some(999),
            "the next line says how many were held back"
        );
        assert_eq!(
            limiter.check(("contacts", "bad_signature"), t0 + Duration::from_secs(11)),
            None
        );
    }
}
