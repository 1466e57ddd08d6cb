//! Safe sending and waiting, end to end on the real binary (no WhatsApp account linked: every
//! refusal happens before anything would reach WhatsApp):
//! - `READ_ONLY=1` hides the send tools and refuses calls to them;
//! - `SEND_ALLOWLIST` refuses other recipients, naming the rule;
//! - `SEND_RATE_PER_MIN` refuses with the seconds to wait;
//! - each refusal is in `GET /api/send-log` (token-guarded), without the text unless
//!   `SEND_LOG_BODIES=1`;
//! - `wait_for_messages` answers at its timeout with no messages and a cursor, and a
//!   `notifications/cancelled` ends a running wait without an answer.

mod common;

use common::serde_like::Json;
use common::{ACCEPT_BOTH, Conn, JSON_CT, Resp, Server};
use std::sync::mpsc;
use std::time::Duration;

const TOKEN: &str = "safe-sending-test-token-0123456789";

fn call(id: u64, name: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#
    )
}

/// A session with the access token.
struct Mcp {
    server: Server,
    session: String,
    /// The `Authorization` header's value.
    auth: String,
}

impl Mcp {
    fn start(env: &[(&str, &str)]) -> Mcp {
        let mut all = vec![("ACCESS_TOKEN", TOKEN)];
        all.extend_from_slice(env);
        let server = Server::start(&all);
        let auth = format!("Bearer {TOKEN}");
        let session = server.initialize(&[("Authorization", auth.as_str())], "2025-11-25");
        Mcp {
            server,
            session,
            auth,
        }
    }

    /// The headers of a request on the session.
    fn headers(&self) -> [(&str, &str); 4] {
        [
            ACCEPT_BOTH,
            JSON_CT,
            ("MCP-Session-Id", self.session.as_str()),
            ("Authorization", self.auth.as_str()),
        ]
    }

    /// `POST /mcp` on the session, whatever the answer.
    fn request(&self, body: &str) -> Resp {
        self.server
            .request("POST", "/mcp", &self.headers(), body.as_bytes())
    }

    fn post(&self, body: &str) -> Json {
        let r = self.request(body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Writes `POST /mcp` on the session on a fresh connection and leaves the answer (an SSE
    /// stream, with a progress token) to be read from it.
    fn open_stream(&self, body: &str) -> Conn {
        let mut conn = self.server.conn();
        conn.write_request("POST", "/mcp", &self.headers(), body.as_bytes());
        conn
    }

    /// Calls a tool; returns (isError, text).
    fn tool(&self, name: &str, args: &str) -> (bool, String) {
        let j = self.post(&call(7, name, args));
        let is_error = j.path("result.isError").bool().unwrap_or(false);
        let text = j
            .path("result.content.0.text")
            .str()
            .unwrap_or_else(|| panic!("{name}: no text in {:?}", j.0));
        (is_error, text)
    }

    fn tool_names(&self) -> Vec<String> {
        let j = self.post(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
        j.path("result.tools")
            .arr()
            .iter()
            .filter_map(|t| t.get("name").str())
            .collect()
    }

    /// The send log, newest first.
    fn send_log(&self) -> Vec<Json> {
        let r = self.server.request(
            "GET",
            "/api/send-log?limit=50",
            &[("Authorization", self.auth.as_str())],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().get("entries").arr()
    }
}

fn send(to: &str, text: &str) -> String {
    format!(r#"{{"recipient_jid":"{to}","message":"{text}"}}"#)
}

#[test]
fn read_only_hides_and_refuses_the_send_tools_and_logs_the_refusal() {
    let m = Mcp::start(&[("READ_ONLY", "1")]);
    let names = m.tool_names();
    for hidden in ["send_message", "send_media", "send_reaction"] {
        assert!(!names.contains(&hidden.to_string()), "{hidden} is listed");
    }
    for shown in ["list_messages", "wait_for_messages", "mark_as_read"] {
        assert!(names.contains(&shown.to_string()), "{shown} is missing");
    }
    let (is_error, text) = m.tool("send_message", &send("+44 7700 900123", "private words"));
    assert!(is_error);
    assert!(text.contains("READ_ONLY"), "{text}");
    let (is_error, text) = m.tool(
        "send_reaction",
        r#"{"chat_jid":"447700900123@s.whatsapp.net","message_id":"x","emoji":"👍"}"#,
    );
    assert!(is_error && text.contains("READ_ONLY"), "{text}");
    let log = m.send_log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].get("tool").str().as_deref(), Some("send_reaction"));
    assert_eq!(log[1].get("tool").str().as_deref(), Some("send_message"));
    assert_eq!(
        log[1].get("result").str().as_deref(),
        Some("refused:read_only")
    );
    assert_eq!(
        log[1].get("recipient").str().as_deref(),
        Some("+44 7700 900123")
    );
    assert_eq!(
        log[1].get("bytes").num(),
        Some("private words".len() as f64)
    );
    assert!(log[1].get("timestamp").num().is_some());
    assert!(
        !log[1].keys().contains(&"body".to_string()),
        "no text without SEND_LOG_BODIES"
    );
}

#[test]
fn the_allowlist_refuses_other_recipients_and_the_log_keeps_bodies_when_asked() {
    let m = Mcp::start(&[
        ("SEND_ALLOWLIST", "+44 7700 900001, 120363000000000001@g.us"),
        ("SEND_LOG_BODIES", "1"),
    ]);
    let (is_error, text) = m.tool("send_message", &send("447700900002", "hello stranger"));
    assert!(is_error);
    assert!(text.contains("SEND_ALLOWLIST"), "{text}");
    assert!(text.contains("447700900002@s.whatsapp.net"), "{text}");
    // A listed number passes the allowlist; without a linked account the send stops there.
    let (is_error, text) = m.tool(
        "send_message",
        &send("447700900001@s.whatsapp.net", "hello friend"),
    );
    assert!(is_error);
    assert!(text.contains("WhatsApp is not connected"), "{text}");
    let log = m.send_log();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].get("result").str().as_deref(),
        Some("refused:allowlist")
    );
    assert_eq!(
        log[1].get("recipient").str().as_deref(),
        Some("447700900002@s.whatsapp.net")
    );
    assert_eq!(log[1].get("body").str().as_deref(), Some("hello stranger"));
    let result = log[0].get("result").str().unwrap_or_default();
    assert!(
        result.starts_with("error:WhatsApp is not connected"),
        "{result}"
    );
    assert_eq!(log[0].get("body").str().as_deref(), Some("hello friend"));
}

#[test]
fn attempts_that_cannot_reach_whatsapp_use_up_no_sends() {
    // The refusal itself, on a linked product, is in tests/messaging.rs.
    let m = Mcp::start(&[("SEND_RATE_PER_MIN", "1"), ("WA_SEND_DEDUP_WINDOW_MS", "0")]);
    for text in ["one", "two", "three"] {
        let (is_error, answer) = m.tool("send_message", &send("447700900002", text));
        assert!(is_error);
        assert!(answer.contains("not connected"), "{answer}");
        assert!(!answer.contains("SEND_RATE_PER_MIN"), "{answer}");
    }
    let log = m.send_log();
    assert_eq!(log.len(), 3, "{log:?}");
    for e in &log {
        let result = e.get("result").str().unwrap_or_default();
        assert!(result.starts_with("error:"), "{result}");
    }
}

#[test]
fn the_send_log_needs_the_token_and_a_sane_limit() {
    let m = Mcp::start(&[]);
    let r = m.server.request("GET", "/api/send-log", &[], b"");
    assert_eq!(r.status, 401);
    let auth = m.auth.as_str();
    let r = m.server.request(
        "GET",
        "/api/send-log?limit=0",
        &[("Authorization", auth)],
        b"",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("limit"), "{}", r.text());
    let r = m
        .server
        .request("GET", "/api/send-log", &[("Authorization", auth)], b"");
    assert_eq!(r.status, 200);
    assert!(r.json().get("entries").arr().is_empty());
}

#[test]
fn wait_for_messages_times_out_with_no_messages_and_a_cursor() {
    let m = Mcp::start(&[]);
    let (is_error, text) = m.tool("wait_for_messages", r#"{"timeout_secs":1}"#);
    assert!(!is_error, "{text}");
    let j = Json::parse(&text).unwrap();
    assert!(j.get("messages").arr().is_empty());
    let cursor = j.get("cursor").str().unwrap();
    assert!(cursor.contains('.'), "{cursor}");
    // The cursor is accepted as since; a chat filter too.
    let (is_error, text) = m.tool(
        "wait_for_messages",
        &format!(r#"{{"timeout_secs":1,"since":"{cursor}","chat_jid":"+44 7700 900123"}}"#),
    );
    assert!(!is_error, "{text}");
    let (is_error, text) = m.tool("wait_for_messages", r#"{"since":"yesterday"}"#);
    assert!(is_error && text.contains("since"), "{text}");
    let (is_error, text) = m.tool("wait_for_messages", r#"{"timeout_secs":56}"#);
    assert!(is_error && text.contains("55"), "{text}");
}

#[test]
fn a_cancelled_wait_stops_without_an_answer() {
    let m = Mcp::start(&[]);
    // With a progress token the answer is an SSE stream; read it on another thread.
    let body = r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"wait_for_messages","arguments":{"timeout_secs":55},"_meta":{"progressToken":"w1"}}}"#;
    let mut conn = m.open_stream(body);
    let (status, _) = conn.read_head().expect("a response head");
    assert_eq!(status, 200);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        while let Some(chunk) = conn.read_chunk() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        let _ = tx.send(text);
    });
    // Cancel until the stream ends (the first cancel may come before the call is registered).
    let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":41,"reason":"test"}}"#;
    let ended = common::wait_for(
        "the cancelled stream to end",
        Duration::from_secs(30),
        || {
            let r = m.request(cancel);
            assert_eq!(r.status, 202);
            rx.recv_timeout(Duration::from_millis(200)).ok()
        },
    );
    assert!(
        !ended.contains("\"result\""),
        "a cancelled wait sends no answer: {ended}"
    );
    // The server goes on serving.
    let (is_error, _) = m.tool("ping", "{}");
    assert!(!is_error);
}

#[test]
fn a_wait_with_a_progress_token_streams_progress_every_ten_seconds() {
    let m = Mcp::start(&[]);
    let body = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"wait_for_messages","arguments":{"timeout_secs":11},"_meta":{"progressToken":"p-wait"}}}"#;
    let mut conn = m.open_stream(body);
    let (status, headers) = conn.read_head().expect("a response head");
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")),
        "{headers:?}"
    );
    let text = conn.read_until("\"result\"");
    let progress = text
        .find("notifications/progress")
        .unwrap_or_else(|| panic!("no progress before the answer: {text}"));
    assert!(progress < text.find("\"result\"").unwrap_or(0), "{text}");
    assert!(text.contains("\"progressToken\":\"p-wait\""), "{text}");
    assert!(
        text.contains("messages") && text.contains("cursor"),
        "{text}"
    );
}
