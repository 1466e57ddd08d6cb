//! The router: which handler answers which path, after the Host, Origin and token checks.
//!
//! Owns: the route table, the order of the checks (Host → 421, Origin → 403, token → 401, then
//! the handler), the embedded admin assets and the panic guard around every handler. Must not:
//! implement MCP (mcp::http) or read the socket (conn.rs).

use super::App;
use super::conn::Handled;
use super::reply;
use crate::json;
use futures_lite::FutureExt;
use http_types::{Method, Request, Response};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

const ADMIN_HTML: &[u8] = include_bytes!("../../www/admin.html");
const ADMIN_CSS: &[u8] = include_bytes!("../../www/admin.css");
const ADMIN_JS: &[u8] = include_bytes!("../../www/admin.js");

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).map(|v| v.last().as_str())
}

/// Answers one request; a panic inside a handler becomes a 500 JSON error.
pub async fn handle(app: Arc<App>, req: Request, peer: SocketAddr, local: SocketAddr) -> Handled {
    let started = Instant::now();
    let method = req.method();
    let path = req.url().path().to_string();
    log::debug!("http {method} {path} from {peer}: entry");
    let outcome = AssertUnwindSafe(route(&app, req, local))
        .catch_unwind()
        .await;
    let handled = outcome.unwrap_or_else(|_| {
        log::error!("http {method} {path}: the handler panicked");
        Handled {
            response: reply::error(500, "internal error; the server logged the details"),
            close: true,
        }
    });
    log::debug!(
        "http {method} {path}: finish {} in {:.3} ms",
        handled.response.status(),
        started.elapsed().as_secs_f64() * 1e3
    );
    handled
}

fn done(response: Response) -> Handled {
    Handled {
        response,
        close: false,
    }
}

async fn route(app: &App, req: Request, local: SocketAddr) -> Handled {
    let path = req.url().path().to_string();
    let method = req.method();
    if path == "/healthz" {
        return done(healthz(app));
    }
    if let Err(res) = app.auth.check_host(header(&req, "Host"), local) {
        return done(res);
    }
    let state_changing = !matches!(method, Method::Get | Method::Head | Method::Options);
    if (path == "/mcp" || state_changing)
        && let Err(res) = app.auth.check_origin(header(&req, "Origin"), local)
    {
        return done(res);
    }
    match (method, path.as_str()) {
        (Method::Get, "/") => {
            let mut res = reply::empty(302);
            res.insert_header("Location", "/admin");
            done(res)
        }
        (Method::Get, "/admin") | (Method::Get, "/admin/") => {
            done(asset(ADMIN_HTML, "text/html; charset=utf-8"))
        }
        (Method::Get, "/admin/admin.css") => done(asset(ADMIN_CSS, "text/css; charset=utf-8")),
        (Method::Get, "/admin/admin.js") => done(asset(ADMIN_JS, "text/javascript; charset=utf-8")),
        (_, "/mcp") => {
            let credential = match app.auth.check_bearer(header(&req, "Authorization")) {
                Ok(c) => c,
                Err(res) => return done(res),
            };
            let (response, close) = app.mcp.handle(req, credential).await;
            Handled { response, close }
        }
        (m, p) if p.starts_with("/api/") => {
            if let Err(res) = app.auth.check_bearer(header(&req, "Authorization")) {
                return done(res);
            }
            match (m, p) {
                (Method::Get, "/api/status") => done(status(app).await),
                (Method::Get, "/api/send-log") => done(send_log(app, req.url().query()).await),
                (Method::Post, "/api/restart-wa") => done(restart_wa(app).await),
                _ => done(reply::error(404, &format!("no API endpoint {m} {p}"))),
            }
        }
        (m, p) => done(reply::error(
            404,
            &format!("nothing at {m} {p}; MCP is served at /mcp and the admin page at /admin"),
        )),
    }
}

/// Entries `GET /api/send-log` returns without `?limit=`, and at most.
const SEND_LOG_DEFAULT: usize = 100;
const SEND_LOG_MAX: usize = 1000;

/// `GET /api/send-log?limit=N`: the newest send attempts, newest first, as
/// `{"entries": [...]}` (shape in `tools::safety::entry_value`).
async fn send_log(app: &App, query: Option<&str>) -> Response {
    let raw = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="));
    let limit = match raw {
        None => SEND_LOG_DEFAULT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=SEND_LOG_MAX).contains(&n) => n,
            _ => {
                return reply::error(
                    400,
                    &format!("limit must be a whole number from 1 to {SEND_LOG_MAX}"),
                );
            }
        },
    };
    let Some(store) = &app.store else {
        return reply::json(200, &json::obj([("entries", json::arr([]))]));
    };
    match crate::tools::safety::newest_entries(store, limit).await {
        Ok(entries) => reply::json(200, &json::obj([("entries", entries)])),
        Err(e) => {
            log::error!("/api/send-log: {e}");
            reply::error(
                500,
                "could not read the send log; the server logged the details",
            )
        }
    }
}

fn asset(bytes: &'static [u8], content_type: &str) -> Response {
    let mut res = reply::empty(200);
    res.insert_header("Content-Type", content_type);
    res.insert_header("Cache-Control", "no-cache");
    res.insert_header("X-Content-Type-Options", "nosniff");
    res.insert_header(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    );
    res.set_body(bytes);
    res
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `/api/status`: the original's keys (seed-behaviour §6.3) from the engine's snapshot and the
/// store's counts, plus `state`. `timestamp` is epoch milliseconds.
async fn status(app: &App) -> Response {
    let snap = app.engine.as_ref().map(|e| e.snapshot());
    let counts = match &app.engine {
        Some(e) => match e.counts().await {
            Ok(c) => c,
            Err(e) => {
                log::error!("/api/status: {e}");
                return reply::json(
                    500,
                    &json::obj([("error", json::s("Failed to get status"))]),
                );
            }
        },
        None => crate::store::queries::Counts::default(),
    };
    let last_reason = snap
        .as_ref()
        .and_then(|s| s.last_disconnect_reason.clone())
        .map_or(json::Value::Null, json::s);
    let last_at = snap
        .as_ref()
        .and_then(|s| s.last_disconnect_at)
        .map_or(json::Value::Null, json::int);
    let state = snap.as_ref().map_or("unlinked", |s| s.state.name());
    let connected = state == "connected";
    let authenticated = snap.as_ref().is_some_and(|s| s.own_jid.is_some());
    reply::json(
        200,
        &json::obj([
            ("authenticated", json::bool(authenticated)),
            ("ready", json::bool(connected)),
            ("state", json::s(state)),
            (
                "qrAvailable",
                json::bool(snap.as_ref().is_some_and(|s| s.qr.is_some())),
            ),
            (
                "ownJid",
                snap.and_then(|s| s.own_jid)
                    .map_or(json::Value::Null, json::s),
            ),
            ("chatCount", json::int(counts.chats as i64)),
            ("messageCount", json::int(counts.messages as i64)),
            ("dbChats", json::int(counts.chats as i64)),
            ("dbMessages", json::int(counts.messages as i64)),
            ("dbMedia", json::int(counts.media as i64)),
            ("dbContacts", json::int(counts.contacts as i64)),
            ("lastDisconnectReason", last_reason.clone()),
            ("lastDisconnectAt", last_at.clone()),
            // History sync, warmups, sync recovery and auto-download are not built yet: these
            // report what is true today (nothing happened), with the original's keys.
            ("lastHistorySyncAt", json::Value::Null),
            ("lastChatsSyncAt", json::Value::Null),
            ("lastMessagesSyncAt", json::Value::Null),
            ("warmupAttempts", json::int(0)),
            ("warmupInProgress", json::bool(false)),
            ("lastRecoveryReason", json::Value::Null),
            ("lastRecoveryAt", json::Value::Null),
            ("syncRecoveryAttempts", json::int(0)),
            ("syncRecoveryInProgress", json::bool(false)),
            (
                "autoDownload",
                json::obj([
                    ("inFlight", json::int(0)),
                    ("queued", json::int(0)),
                    ("enabled", json::bool(false)),
                ]),
            ),
            (
                "messageIndex",
                json::obj([
                    ("messageCount", json::int(counts.messages as i64)),
                    ("chatCount", json::int(counts.chats as i64)),
                ]),
            ),
            (
                "recovery",
                json::obj([
                    ("reconnecting", json::bool(state == "connecting")),
                    ("lastDisconnectReason", last_reason),
                    ("lastDisconnectAt", last_at),
                    ("syncRecoveryInProgress", json::bool(false)),
                    ("syncRecoveryAttempts", json::int(0)),
                ]),
            ),
            ("mcpSessions", json::int(app.mcp.sessions.len() as i64)),
            (
                "uptimeMs",
                json::int(app.started.elapsed().as_millis() as i64),
            ),
            ("version", json::s(env!("CARGO_PKG_VERSION"))),
            ("timestamp", json::int(now_ms())),
        ]),
    )
}

/// `/healthz`: 200 while the server runs; WhatsApp health joins in a later step.
fn healthz(app: &App) -> Response {
    reply::json(
        200,
        &json::obj([
            ("ok", json::bool(true)),
            ("reason", json::s("starting")),
            ("ready", json::bool(false)),
            ("authenticated", json::bool(false)),
            (
                "uptimeMs",
                json::int(app.started.elapsed().as_millis() as i64),
            ),
            ("timestamp", json::int(now_ms())),
        ]),
    )
}

/// `POST /api/restart-wa`: drops the WhatsApp connection and builds a fresh client over the same
/// keys and history (the admin page's restart; a way out of a stuck connection).
async fn restart_wa(app: &App) -> Response {
    match &app.engine {
        None => reply::error(503, "the WhatsApp engine is not running in this process"),
        Some(engine) => {
            let restarted = engine.restart().await;
            reply::json(
                200,
                &json::obj([
                    ("ok", json::bool(true)),
                    ("restarted", json::bool(restarted)),
                    ("state", json::s(engine.snapshot().state.name())),
                ]),
            )
        }
    }
}
