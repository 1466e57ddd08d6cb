//! The MCP method dispatcher, shared by every transport (Streamable HTTP and stdio).
//!
//! Owns: version negotiation, the `initialize` result, and the methods `ping`, `tools/list`,
//! `tools/call` (with cancellation and progress), `logging/setLevel` and the client
//! notifications. Must not: know about HTTP status codes or how answers are framed; a transport
//! turns a [`Reply`] into bytes.

use super::jsonrpc::{self, Id, Message};
use super::session::Session;
use crate::json::{self, Value};
use crate::tools::{CallError, ProgressSink, Registry};
use futures_lite::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The revisions served with the `initialize` handshake, newest first.
pub const SUPPORTED_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
pub const LATEST_VERSION: &str = SUPPORTED_VERSIONS[0];
/// The stateless revision, not served yet: a clean 400 lets dual-era clients fall back.
pub const STATELESS_VERSION: &str = "2026-07-28";

const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The version to answer an `initialize` with: the requested one if supported, else the latest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    SUPPORTED_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(LATEST_VERSION)
}

pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// Batches (JSON arrays) exist only in the revisions before 2025-06-18.
pub fn allows_batches(version: &str) -> bool {
    matches!(version, "2025-03-26" | "2024-11-05")
}

/// The protocol engine: tools plus server identity.
pub struct Dispatcher {
    pub tools: Registry,
}

/// Where messages sent while a request runs (progress notifications) go. `None` drops them, as
/// for a JSON answer, which has no room for them.
pub type Outbox = Option<async_channel::Sender<Value>>;

impl Dispatcher {
    pub fn new(tools: Registry) -> Dispatcher {
        Dispatcher { tools }
    }

    /// The `InitializeResult` for a negotiated version.
    pub fn initialize_result(&self, version: &str) -> Value {
        json::obj([
            ("protocolVersion", json::s(version)),
            (
                "capabilities",
                json::obj([
                    ("logging", json::obj([])),
                    ("tools", json::obj([("listChanged", json::bool(true))])),
                ]),
            ),
            (
                "serverInfo",
                json::obj([
                    ("name", json::s("whatsapp-mcp-stream")),
                    ("title", json::s("WhatsApp MCP")),
                    ("version", json::s(env!("CARGO_PKG_VERSION"))),
                ]),
            ),
            (
                "instructions",
                json::s(
                    "This server reads and sends WhatsApp messages for one linked account. \
                     Start with check_auth_status; if the account is not linked, use get_qr_code \
                     or request_pairing_code. Timestamps are epoch milliseconds.",
                ),
            ),
        ])
    }

    /// Whether answering `msg` may stream progress (a `tools/call` of a long-running tool that
    /// carries a progress token). Transports answer those as SSE when the client accepts it.
    pub fn wants_stream(&self, msg: &Message) -> bool {
        match msg {
            Message::Request {
                method,
                params: Some(p),
                ..
            } if method == "tools/call" => {
                progress_token(p).is_some()
                    && json::get_str(p, "name")
                        .and_then(|n| self.tools.get(n))
                        .is_some_and(|t| t.long_running)
            }
            _ => false,
        }
    }

    /// Handles a notification from the client.
    pub fn notify(&self, session: &Session, method: &str, params: Option<&Value>) {
        match method {
            "notifications/initialized" => session.mark_initialized(),
            "notifications/cancelled" => {
                if let Some(id) = params
                    .and_then(|p| json::get(p, "requestId"))
                    .and_then(Id::from_value)
                {
                    let found = session.cancel_request(&id);
                    log::debug!(
                        "mcp cancel of request {id:?}: {}",
                        if found { "stopped" } else { "not in flight" }
                    );
                }
            }
            other => log::debug!("mcp notification {other} ignored"),
        }
    }

    /// Answers one request. `None` means the request was cancelled: no answer is sent.
    pub async fn request(
        &self,
        session: &Session,
        id: &Id,
        method: &str,
        params: Option<&Value>,
        outbox: Outbox,
    ) -> Option<Value> {
        let started = Instant::now();
        log::debug!(
            "mcp request {method} id={id:?} session={} dispatch",
            super::session::short(&session.id)
        );
        let answer = match method {
            "ping" => Some(jsonrpc::result(id, json::obj([]))),
            "initialize" => Some(jsonrpc::error(
                Some(id),
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: this session is already initialized; send initialize without a session id to start a new one",
                None,
            )),
            "tools/list" => Some(self.tools_list(id, params)),
            "tools/call" => self.tools_call(session, id, params, outbox).await,
            "logging/setLevel" => Some(set_level(session, id, params)),
            _ => Some(jsonrpc::error(
                Some(id),
                jsonrpc::METHOD_NOT_FOUND,
                &format!("Method not found: {method}"),
                None,
            )),
        };
        log::debug!(
            "mcp request {method} id={id:?} {} in {:.3} ms",
            if answer.is_some() {
                "completed"
            } else {
                "cancelled"
            },
            started.elapsed().as_secs_f64() * 1e3
        );
        answer
    }

    fn tools_list(&self, id: &Id, params: Option<&Value>) -> Value {
        // All tools fit one page. The only valid cursor is the one we never hand out, so any
        // cursor is invalid (−32602), as the spec recommends.
        if let Some(cursor) = params.and_then(|p| json::get(p, "cursor"))
            && !matches!(cursor, Value::Null)
        {
            return jsonrpc::error(
                Some(id),
                jsonrpc::INVALID_PARAMS,
                "Invalid params: unknown cursor; call tools/list without a cursor (all tools fit one page)",
                None,
            );
        }
        let tools = json::arr(self.tools.listed().map(|t| t.to_value()));
        jsonrpc::result(id, json::obj([("tools", tools)]))
    }

    async fn tools_call(
        &self,
        session: &Session,
        id: &Id,
        params: Option<&Value>,
        outbox: Outbox,
    ) -> Option<Value> {
        let Some(params) = params else {
            return Some(invalid_params(
                id,
                "tools/call needs params with a tool name",
            ));
        };
        let Some(name) = json::get_str(params, "name") else {
            return Some(invalid_params(
                id,
                "tools/call needs params.name, the tool to call",
            ));
        };
        let arguments = json::get(params, "arguments");
        let progress = Arc::new(Progress::new(progress_token(params), outbox));
        let cancel = session.begin_request(id);

        let call =
            AssertUnwindSafe(self.tools.call(name, arguments, progress.clone())).catch_unwind();
        let outcome = async { Some(call.await) }.or(async {
            let _ = cancel.recv().await;
            None
        });
        let outcome = outcome.await;
        session.end_request(id);
        match outcome? {
            Ok(Ok(result)) => {
                progress.finish();
                Some(jsonrpc::result(id, result.to_value()))
            }
            Ok(Err(CallError::UnknownTool(name))) => Some(invalid_params(
                id,
                &format!("Unknown tool: {name}; call tools/list for the tools this server offers"),
            )),
            Err(_) => {
                log::error!("tool {name} panicked; answering with an internal error");
                Some(jsonrpc::error(
                    Some(id),
                    jsonrpc::INTERNAL_ERROR,
                    "Internal error: the tool failed unexpectedly",
                    None,
                ))
            }
        }
    }
}

fn invalid_params(id: &Id, message: &str) -> Value {
    jsonrpc::error(
        Some(id),
        jsonrpc::INVALID_PARAMS,
        &format!("Invalid params: {message}"),
        None,
    )
}

fn set_level(session: &Session, id: &Id, params: Option<&Value>) -> Value {
    match params.and_then(|p| json::get_str(p, "level")) {
        Some(level) if LOG_LEVELS.contains(&level) => {
            session.set_log_level(level);
            jsonrpc::result(id, json::obj([]))
        }
        _ => invalid_params(
            id,
            &format!(
                "logging/setLevel needs params.level, one of {}",
                LOG_LEVELS.join(", ")
            ),
        ),
    }
}

fn progress_token(params: &Value) -> Option<Value> {
    let token = json::get(params, "_meta").and_then(|m| json::get(m, "progressToken"))?;
    matches!(token, Value::String(_) | Value::Number(_)).then(|| token.clone())
}

/// Sends `notifications/progress` for one request; progress only ever increases.
struct Progress {
    token: Option<Value>,
    outbox: Outbox,
    last: Mutex<Option<f64>>,
}

impl Progress {
    fn new(token: Option<Value>, outbox: Outbox) -> Progress {
        Progress {
            token,
            outbox,
            last: Mutex::new(None),
        }
    }

    /// Reports completion if the tool reported nothing, so a client that asked sees the end.
    fn finish(&self) {
        let reported = self.last.lock().map(|l| l.is_some()).unwrap_or(true);
        if !reported {
            self.report(1.0, Some(1.0), Some("done"));
        }
    }
}

impl ProgressSink for Progress {
    fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let (Some(token), Some(outbox)) = (&self.token, &self.outbox) else {
            return;
        };
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_some_and(|l| progress <= l) {
            return;
        }
        *last = Some(progress);
        let mut p = json::obj([
            ("progressToken", token.clone()),
            ("progress", json::float(progress)),
        ]);
        if let Value::Object(o) = &mut p {
            if let Some(t) = total {
                o.insert("total".into(), json::float(t));
            }
            if let Some(m) = message {
                o.insert("message".into(), json::s(m));
            }
        }
        let _ = outbox.try_send(jsonrpc::notification("notifications/progress", p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_supported_versions_and_falls_back_to_the_latest() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2024-11-05")), "2024-11-05");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_VERSION);
        assert_eq!(negotiate(None), LATEST_VERSION);
        assert!(allows_batches("2025-03-26"));
        assert!(!allows_batches("2025-06-18"));
    }

    /// A tool that reports progress twice and then waits until it is cancelled.
    async fn forever(call: crate::tools::ToolCall) -> crate::tools::ToolResult {
        call.progress.report(1.0, Some(3.0), Some("started"));
        call.progress
            .report(0.5, Some(3.0), Some("a step back is never sent"));
        call.progress.report(2.0, Some(3.0), None);
        std::future::pending::<()>().await;
        crate::tools::ToolResult::text("unreachable")
    }

    fn dispatcher() -> Dispatcher {
        let tool = crate::tools::Tool::new(
            "forever",
            "waits until cancelled",
            vec![],
            crate::tools::Annotations::READ_LOCAL,
            crate::tool_fn!(forever),
        );
        let store = crate::store::Store::open_in_memory().unwrap();
        let env = crate::tools::ToolEnv {
            read_only: false,
            auto_select_contact: false,
            store,
            engine: None,
            idempotency_ttl_ms: crate::store::idempotency::DEFAULT_TTL_MS,
            send_guard: Default::default(),
        };
        Dispatcher::new(Registry::with_tools(vec![tool], env))
    }

    #[test]
    fn a_cancelled_call_stops_and_sends_no_answer_and_progress_only_increases() {
        let d = dispatcher();
        let session = Session::new("s".into(), LATEST_VERSION, None);
        let (tx, rx) = async_channel::unbounded();
        let params = json::parse(r#"{"name":"forever","_meta":{"progressToken":"p1"}}"#).unwrap();
        let id = Id::Int(42);
        let answer = smol::block_on(async {
            let call = d.request(&session, &id, "tools/call", Some(&params), Some(tx));
            let cancel = async {
                // Cancel once the tool has started (its first progress report arrived).
                let first = rx.recv().await.unwrap();
                let cancel = json::parse(r#"{"requestId":42,"reason":"user"}"#).unwrap();
                d.notify(&session, "notifications/cancelled", Some(&cancel));
                first
            };
            let (answer, first) = futures_lite::future::zip(call, cancel).await;
            assert_eq!(
                json::get(&json::get(&first, "params").cloned().unwrap(), "progress")
                    .and_then(json::as_i64),
                Some(1)
            );
            answer
        });
        assert!(answer.is_none(), "a cancelled request gets no answer");
        let progress: Vec<i64> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|n| {
                json::get(&n, "params")
                    .and_then(|p| json::get(p, "progress"))
                    .and_then(json::as_i64)
            })
            .collect();
        assert_eq!(
            progress,
            vec![2],
            "only increasing progress is sent, and no completion after a cancel"
        );
    }

    #[test]
    fn a_call_without_a_progress_token_reports_nothing() {
        let d = dispatcher();
        let session = Session::new("s".into(), LATEST_VERSION, None);
        let (tx, rx) = async_channel::unbounded();
        let params = json::parse(r#"{"name":"forever"}"#).unwrap();
        let id = Id::Str("x".into());
        smol::block_on(async {
            let call = d.request(&session, &id, "tools/call", Some(&params), Some(tx));
            // `zip` polls the call first, so it is registered (and waiting) before this runs.
            let cancel = async {
                d.notify(
                    &session,
                    "notifications/cancelled",
                    Some(&json::parse(r#"{"requestId":"x"}"#).unwrap()),
                );
            };
            let (answer, ()) = futures_lite::future::zip(call, cancel).await;
            assert!(answer.is_none());
        });
        assert!(rx.try_recv().is_err());
    }
}
