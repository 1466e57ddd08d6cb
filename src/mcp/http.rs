//! MCP Streamable HTTP at `/mcp`: POST, GET and DELETE, with sessions.
//!
//! Owns: the transport rules of mcp-checklist §1.15 from step 3 on (method → 405, Accept → 406,
//! Content-Type → 415, JSON → 400/−32700, shape → 400/−32600, sessions → 400/404,
//! `MCP-Protocol-Version` → 400, notifications → 202), and the choice between a JSON and an SSE
//! answer. Must not: check Host, Origin or the token (the router did, steps 1 and 2) or know
//! what a tool does.

use super::dispatch::{self, Dispatcher};
use super::jsonrpc::{self, Id, Message};
use super::session::{self, Session, Sessions};
use super::sse;
use crate::http::auth::Auth;
use crate::http::reply::{self, BodyError};
use crate::json::{self, Value};
use http_types::{Method, Request, Response};
use std::sync::Arc;
use std::time::Duration;

pub const SESSION_HEADER: &str = "MCP-Session-Id";
pub const VERSION_HEADER: &str = "MCP-Protocol-Version";

/// The `/mcp` endpoint.
pub struct McpHttp {
    pub dispatcher: Arc<Dispatcher>,
    pub sessions: Arc<Sessions>,
    pub json_response: bool,
    pub max_body: usize,
    pub keepalive: Duration,
}

/// What the client's `Accept` allows.
struct Accepts {
    json: bool,
    sse: bool,
}

fn accepts(req: &Request) -> Accepts {
    let mut a = Accepts {
        json: false,
        sse: false,
    };
    if let Some(values) = req.header("Accept") {
        for v in values.iter() {
            for part in v.as_str().split(',') {
                let media = part
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                match media.as_str() {
                    "application/json" => a.json = true,
                    "text/event-stream" => a.sse = true,
                    "*/*" => {
                        a.json = true;
                        a.sse = true;
                    }
                    "application/*" => a.json = true,
                    "text/*" => a.sse = true,
                    _ => {}
                }
            }
        }
    }
    a
}

/// A transport-level rejection: an HTTP status with a JSON-RPC error body.
fn reject(status: u16, code: i64, message: &str, id: Option<&Id>) -> Response {
    reply::json(status, &jsonrpc::error(id, code, message, None))
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name).map(|v| v.last().as_str())
}

impl McpHttp {
    /// Serves one request to `/mcp`. `credential` is the bearer token that passed the auth
    /// check (`None` when auth is off).
    pub async fn handle(&self, req: Request, credential: Option<String>) -> (Response, bool) {
        match req.method() {
            Method::Post => self.post(req, credential).await,
            Method::Get => (self.get(&req, credential.as_deref()), false),
            Method::Delete => (self.delete(&req, credential.as_deref()), false),
            _ => {
                let mut res = reject(
                    405,
                    jsonrpc::TRANSPORT_ERROR,
                    "Method not allowed: /mcp takes POST, GET and DELETE",
                    None,
                );
                res.insert_header("Allow", "GET, POST, DELETE");
                (res, false)
            }
        }
    }

    /// Finds the session a request names. Errors: 400 when the header is missing, 404 when the
    /// session is unknown, ended, expired or bound to another credential.
    fn session_for(
        &self,
        req: &Request,
        credential: Option<&str>,
        id: Option<&Id>,
    ) -> Result<Arc<Session>, Response> {
        let Some(sid) = header(req, SESSION_HEADER) else {
            return Err(reject(
                400,
                jsonrpc::TRANSPORT_ERROR,
                "Bad Request: missing MCP-Session-Id header; send initialize first and use the session id it returns",
                id,
            ));
        };
        match self.sessions.get(sid) {
            Some(s) if Auth::same_credential(s.credential.as_deref(), credential) => Ok(s),
            _ => Err(reject(
                404,
                -32001,
                "Session not found: it ended, expired or never existed; send initialize without a session id to start a new one",
                id,
            )),
        }
    }

    /// 400 for an unsupported `MCP-Protocol-Version` header.
    fn check_version_header(req: &Request, id: Option<&Id>) -> Result<(), Response> {
        match header(req, VERSION_HEADER) {
            None => Ok(()),
            Some(v) if dispatch::is_supported(v) => Ok(()),
            Some(v) if v == dispatch::STATELESS_VERSION => Err(stateless_not_served(id)),
            Some(v) => Err(reject(
                400,
                jsonrpc::TRANSPORT_ERROR,
                &format!(
                    "Bad Request: unsupported MCP-Protocol-Version {v:?}; supported: {}",
                    dispatch::SUPPORTED_VERSIONS.join(", ")
                ),
                id,
            )),
        }
    }

    async fn post(&self, mut req: Request, credential: Option<String>) -> (Response, bool) {
        let accept = accepts(&req);
        if !accept.json && !accept.sse {
            return (
                reject(
                    406,
                    jsonrpc::TRANSPORT_ERROR,
                    "Not Acceptable: send Accept: application/json, text/event-stream",
                    None,
                ),
                false,
            );
        }
        let content_type = header(&req, "Content-Type").unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return (
                reject(
                    415,
                    jsonrpc::TRANSPORT_ERROR,
                    "Unsupported Media Type: send the JSON-RPC message with Content-Type: application/json",
                    None,
                ),
                true,
            );
        }
        let body = match reply::read_body(&mut req, self.max_body).await {
            Ok(b) => b,
            Err(BodyError::TooLarge { limit }) => {
                let msg = format!(
                    "Payload Too Large: /mcp bodies are capped at {limit} bytes (MCP_MAX_BODY_BYTES); \
                     upload large media through /api/upload-multipart and pass its path instead"
                );
                return (reject(413, jsonrpc::TRANSPORT_ERROR, &msg, None), true);
            }
            Err(BodyError::Stalled) => {
                let msg = "Request Timeout: the body stopped arriving (10 s without a byte)";
                return (reject(408, jsonrpc::TRANSPORT_ERROR, msg, None), true);
            }
            Err(BodyError::Broken(why)) => {
                return (
                    reject(
                        400,
                        jsonrpc::TRANSPORT_ERROR,
                        &format!("Bad Request: {why}"),
                        None,
                    ),
                    true,
                );
            }
        };
        let Ok(text) = std::str::from_utf8(&body) else {
            return (
                reject(
                    400,
                    jsonrpc::PARSE_ERROR,
                    "Parse error: the body is not valid UTF-8",
                    None,
                ),
                false,
            );
        };
        let Some(value) = json::parse(text) else {
            return (
                reject(
                    400,
                    jsonrpc::PARSE_ERROR,
                    "Parse error: the body is not valid JSON",
                    None,
                ),
                false,
            );
        };
        let response = match value {
            Value::Array(items) => {
                self.post_batch(
                    &req,
                    items.into_iter().collect(),
                    credential.as_deref(),
                    &accept,
                )
                .await
            }
            single => self.post_single(&req, single, credential, &accept).await,
        };
        (response, false)
    }

    async fn post_single(
        &self,
        req: &Request,
        value: Value,
        credential: Option<String>,
        accept: &Accepts,
    ) -> Response {
        let msg = match jsonrpc::classify(&value) {
            Ok(m) => m,
            Err((id, why)) => {
                return reject(
                    400,
                    jsonrpc::INVALID_REQUEST,
                    &format!("Invalid Request: {why}"),
                    id.as_ref(),
                );
            }
        };
        let req_id = match &msg {
            Message::Request { id, .. } => Some(id.clone()),
            _ => None,
        };
        let has_session = header(req, SESSION_HEADER).is_some();
        if header(req, VERSION_HEADER) == Some(dispatch::STATELESS_VERSION)
            || (msg.method() == Some("server/discover") && !has_session)
        {
            return stateless_not_served(req_id.as_ref());
        }
        if let Message::Request { id, method, params } = &msg
            && method == "initialize"
            && !has_session
        {
            return self.initialize(id, params.as_ref(), credential, accept);
        }
        let session = match self.session_for(req, credential.as_deref(), req_id.as_ref()) {
            Ok(s) => s,
            Err(res) => return res,
        };
        if let Err(res) = Self::check_version_header(req, req_id.as_ref()) {
            return res;
        }
        match msg {
            Message::Notification { method, params } => {
                self.dispatcher.notify(&session, &method, params.as_ref());
                reply::empty(202)
            }
            Message::Response => reply::empty(202),
            Message::Request { id, method, params } => {
                if method == "initialize" {
                    return reject(
                        400,
                        jsonrpc::INVALID_REQUEST,
                        "Invalid Request: this session is already initialized; send initialize without MCP-Session-Id to start a new one",
                        Some(&id),
                    );
                }
                let streams = self.dispatcher.wants_stream(&Message::Request {
                    id: id.clone(),
                    method: method.clone(),
                    params: params.clone(),
                });
                let use_sse = self.pick_sse(accept, streams);
                if use_sse {
                    let (tx, rx) = async_channel::bounded(64);
                    let dispatcher = self.dispatcher.clone();
                    crate::runtime::spawn(async move {
                        if let Some(answer) = dispatcher
                            .request(&session, &id, &method, params.as_ref(), Some(tx.clone()))
                            .await
                        {
                            let _ = tx.send(answer).await;
                        }
                    })
                    .detach();
                    sse::response(rx, self.keepalive)
                } else {
                    match self
                        .dispatcher
                        .request(&session, &id, &method, params.as_ref(), None)
                        .await
                    {
                        Some(answer) => reply::json(200, &answer),
                        // Cancelled: the client asked for no answer.
                        None => reply::empty(202),
                    }
                }
            }
        }
    }

    /// SSE when configured or when the request streams progress, as far as Accept allows.
    fn pick_sse(&self, accept: &Accepts, streams: bool) -> bool {
        let prefer_sse = !self.json_response || streams;
        if prefer_sse { accept.sse } else { !accept.json }
    }

    fn initialize(
        &self,
        id: &Id,
        params: Option<&Value>,
        credential: Option<String>,
        accept: &Accepts,
    ) -> Response {
        let Some(requested) = params.and_then(|p| json::get_str(p, "protocolVersion")) else {
            return reply::json(
                200,
                &jsonrpc::error(
                    Some(id),
                    jsonrpc::INVALID_PARAMS,
                    "Invalid params: initialize needs params.protocolVersion, params.capabilities and params.clientInfo",
                    None,
                ),
            );
        };
        let version = dispatch::negotiate(Some(requested));
        let session = match self.sessions.create(version, credential) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot create an MCP session: {e}");
                return reject(
                    500,
                    jsonrpc::INTERNAL_ERROR,
                    "Internal error: could not create a session",
                    Some(id),
                );
            }
        };
        log::debug!(
            "mcp session {} created, protocol {version}",
            session::short(&session.id)
        );
        let answer = jsonrpc::result(id, self.dispatcher.initialize_result(version));
        let mut res = if self.pick_sse(accept, false) {
            let (tx, rx) = async_channel::bounded(1);
            let _ = tx.try_send(answer);
            sse::response(rx, self.keepalive)
        } else {
            reply::json(200, &answer)
        };
        res.insert_header(SESSION_HEADER, session.id.as_str());
        res
    }

    async fn post_batch(
        &self,
        req: &Request,
        items: Vec<Value>,
        credential: Option<&str>,
        accept: &Accepts,
    ) -> Response {
        let session = match self.session_for(req, credential, None) {
            Ok(s) => s,
            Err(res) => return res,
        };
        if !dispatch::allows_batches(session.protocol_version) {
            return reject(
                400,
                jsonrpc::INVALID_REQUEST,
                &format!(
                    "Invalid Request: JSON-RPC batches are not part of protocol {}; send one message per POST",
                    session.protocol_version
                ),
                None,
            );
        }
        if items.is_empty() {
            return reject(
                400,
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: the batch is empty",
                None,
            );
        }
        if let Err(res) = Self::check_version_header(req, None) {
            return res;
        }
        let mut answers = Vec::new();
        for item in &items {
            match jsonrpc::classify(item) {
                Err((id, why)) => answers.push(jsonrpc::error(
                    id.as_ref(),
                    jsonrpc::INVALID_REQUEST,
                    &format!("Invalid Request: {why}"),
                    None,
                )),
                Ok(Message::Notification { method, params }) => {
                    self.dispatcher.notify(&session, &method, params.as_ref())
                }
                Ok(Message::Response) => {}
                Ok(Message::Request { id, method, .. }) if method == "initialize" => {
                    answers.push(jsonrpc::error(
                        Some(&id),
                        jsonrpc::INVALID_REQUEST,
                        "Invalid Request: initialize must not be part of a batch",
                        None,
                    ))
                }
                Ok(Message::Request { id, method, params }) => {
                    if let Some(a) = self
                        .dispatcher
                        .request(&session, &id, &method, params.as_ref(), None)
                        .await
                    {
                        answers.push(a);
                    }
                }
            }
        }
        if answers.is_empty() {
            return reply::empty(202);
        }
        if self.pick_sse(accept, false) {
            let (tx, rx) = async_channel::bounded(answers.len());
            for a in answers {
                let _ = tx.try_send(a);
            }
            sse::response(rx, self.keepalive)
        } else {
            reply::json(200, &Value::Array(answers.into_iter().collect()))
        }
    }

    fn get(&self, req: &Request, credential: Option<&str>) -> Response {
        if !accepts(req).sse {
            return reject(
                406,
                jsonrpc::TRANSPORT_ERROR,
                "Not Acceptable: a GET stream needs Accept: text/event-stream",
                None,
            );
        }
        let session = match self.session_for(req, credential, None) {
            Ok(s) => s,
            Err(res) => return res,
        };
        if let Err(res) = Self::check_version_header(req, None) {
            return res;
        }
        match session.open_get_stream() {
            Some(rx) => sse::response(rx, self.keepalive),
            None => reject(
                409,
                jsonrpc::TRANSPORT_ERROR,
                "Conflict: this session already has an open GET stream",
                None,
            ),
        }
    }

    fn delete(&self, req: &Request, credential: Option<&str>) -> Response {
        let session = match self.session_for(req, credential, None) {
            Ok(s) => s,
            Err(res) => return res,
        };
        self.sessions.remove(&session.id);
        log::debug!(
            "mcp session {} ended by DELETE",
            session::short(&session.id)
        );
        reply::empty(200)
    }
}

fn stateless_not_served(id: Option<&Id>) -> Response {
    reject(
        400,
        jsonrpc::TRANSPORT_ERROR,
        "Bad Request: protocol revision 2026-07-28 (stateless, server/discover) is not served yet; \
         connect with initialize (2025-11-25, 2025-06-18 or 2025-03-26)",
        id,
    )
}
