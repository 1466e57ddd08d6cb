//! MCP Streamable HTTP against the real binary: every row of mcp-checklist §1.15 and the MUSTs.

mod common;

use common::{ACCEPT_BOTH, JSON_CT, Server, wait_for};
use std::time::Duration;

const PING: &str = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;

fn call(id: u32, tool: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
    )
}

#[test]
fn initialize_negotiates_and_issues_a_visible_ascii_session_id() {
    let s = Server::start(&[]);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = s.request("POST", "/mcp", &[ACCEPT_BOTH, JSON_CT], body.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let sid = r.header("mcp-session-id").unwrap();
    assert!(
        sid.len() >= 16 && sid.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "{sid}"
    );
    let j = r.json();
    assert_eq!(
        j.path("result.protocolVersion").str().as_deref(),
        Some("2025-06-18")
    );
    assert_eq!(
        j.path("result.serverInfo.name").str().as_deref(),
        Some("whatsapp-mcp-stream")
    );
    assert!(
        j.path("result.capabilities.tools")
            .keys()
            .contains(&"listChanged".to_string())
    );
    assert_eq!(j.get("id").num(), Some(1.0));

    for (asked, answered) in [
        ("2025-11-25", "2025-11-25"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("2099-01-01", "2025-11-25"),
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{asked}","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
        );
        let r = s.request("POST", "/mcp", &[ACCEPT_BOTH, JSON_CT], body.as_bytes());
        assert_eq!(
            r.json().path("result.protocolVersion").str().as_deref(),
            Some(answered),
            "asked {asked}"
        );
    }
    let other = s.initialize(&[], "2025-11-25");
    assert_ne!(other, sid, "session ids are unique");
}

#[test]
fn status_codes_follow_the_processing_order() {
    let s = Server::start(&[]);
    let sid = s.initialize(&[], "2025-11-25");
    let sess = ("MCP-Session-Id", sid.as_str());

    // 3. method
    let r = s.request(
        "PUT",
        "/mcp",
        &[ACCEPT_BOTH, JSON_CT, sess],
        PING.as_bytes(),
    );
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("POST"));
    // 4. Accept
    let r = s.request("POST", "/mcp", &[JSON_CT, sess], PING.as_bytes());
    assert_eq!(r.status, 406);
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("Accept")
    );
    let r = s.request("GET", "/mcp", &[("Accept", "application/json"), sess], b"");
    assert_eq!(r.status, 406);
    // 5. Content-Type
    let r = s.request(
        "POST",
        "/mcp",
        &[ACCEPT_BOTH, ("Content-Type", "text/plain"), sess],
        PING.as_bytes(),
    );
    assert_eq!(r.status, 415);
    // 6. JSON
    let r = s.request("POST", "/mcp", &[ACCEPT_BOTH, JSON_CT, sess], b"{not json");
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j.path("error.code").num(), Some(-32700.0));
    assert!(j.get("id").is_null());
    let r = s.request(
        "POST",
        "/mcp",
        &[ACCEPT_BOTH, JSON_CT, sess],
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffing\"}",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json().path("error.code").num(), Some(-32700.0));
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("UTF-8")
    );
    // 7. shape
    for bad in [
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
        "42",
    ] {
        let r = s.request(
            "POST",
            "/mcp",
            &[ACCEPT_BOTH, JSON_CT, sess],
            bad.as_bytes(),
        );
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json().path("error.code").num(), Some(-32600.0), "{bad}");
    }
    // 9. sessions
    let r = s.request("POST", "/mcp", &[ACCEPT_BOTH, JSON_CT], PING.as_bytes());
    assert_eq!(r.status, 400);
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("MCP-Session-Id")
    );
    let r = s.request(
        "POST",
        "/mcp",
        &[ACCEPT_BOTH, JSON_CT, ("MCP-Session-Id", "no-such-session")],
        PING.as_bytes(),
    );
    assert_eq!(r.status, 404);
    // 10. protocol version header
    let r = s.request(
        "POST",
        "/mcp",
        &[
            ACCEPT_BOTH,
            JSON_CT,
            sess,
            ("MCP-Protocol-Version", "1999-01-01"),
        ],
        PING.as_bytes(),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("2025-11-25")
    );
    let r = s.request(
        "POST",
        "/mcp",
        &[
            ACCEPT_BOTH,
            JSON_CT,
            sess,
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        PING.as_bytes(),
    );
    assert_eq!(r.status, 200);
    let r = s.rpc(&sid, PING);
    assert_eq!(r.status, 200, "an absent version header is fine");
    // 11. notifications and responses: 202, no body
    let r = s.rpc(
        &sid,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty());
    let r = s.rpc(&sid, r#"{"jsonrpc":"2.0","id":"srv-1","result":{}}"#);
    assert_eq!(r.status, 202);
    let r = s.rpc(
        &sid,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":999}}"#,
    );
    assert_eq!(r.status, 202);
    // initialize again inside a session
    let init = r#"{"jsonrpc":"2.0","id":5,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = s.rpc(&sid, init);
    assert_eq!(r.status, 400);
    assert_eq!(r.json().path("error.code").num(), Some(-32600.0));
}

#[test]
fn json_rpc_error_codes_are_exact() {
    let s = Server::start(&[]);
    let sid = s.initialize(&[], "2025-11-25");
    let r = s.rpc(
        &sid,
        r#"{"jsonrpc":"2.0","id":3,"method":"resources/list"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json().path("error.code").num(), Some(-32601.0));
    assert_eq!(r.json().get("id").num(), Some(3.0));
    let r = s.rpc(&sid, &call(4, "no_such_tool", "{}"));
    assert_eq!(r.json().path("error.code").num(), Some(-32602.0));
    let r = s.rpc(
        &sid,
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{}}"#,
    );
    assert_eq!(r.json().path("error.code").num(), Some(-32602.0));
    let r = s.rpc(
        &sid,
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/list","params":{"cursor":"bogus"}}"#,
    );
    assert_eq!(r.json().path("error.code").num(), Some(-32602.0));
    let r = s.rpc(
        &sid,
        r#"{"jsonrpc":"2.0","id":7,"method":"logging/setLevel","params":{"level":"loud"}}"#,
    );
    assert_eq!(r.json().path("error.code").num(), Some(-32602.0));
    let r = s.rpc(
        &sid,
        r#"{"jsonrpc":"2.0","id":8,"method":"logging/setLevel","params":{"level":"warning"}}"#,
    );
    assert!(r.json().get("result").keys().is_empty() && !r.json().get("result").is_null());
    let r = s.rpc(&sid, r#"{"jsonrpc":"2.0","id":"str-id","method":"ping"}"#);
    assert_eq!(r.json().get("id").str().as_deref(), Some("str-id"));
    assert!(!r.json().get("result").is_null());
}

#[test]
fn tools_are_served_before_initialized_and_validate_their_arguments() {
    let s = Server::start(&[]);
    let sid = s.initialize(&[], "2025-11-25");
    // No notifications/initialized was sent: tools/call still works.
    let r = s.rpc(&sid, &call(2, "ping", "{}"));
    let j = r.json();
    assert_eq!(
        j.path("result.content.0.type").str().as_deref(),
        Some("text")
    );
    assert_eq!(
        j.path("result.content.0.text").str().as_deref(),
        Some("pong")
    );
    assert!(j.path("result.isError").is_null() || j.path("result.isError").bool() == Some(false));

    let cases = [
        (call(3, "list_chats", r#"{"limit":"ten"}"#), "limit"),
        (call(4, "list_chats", r#"{"limit":0}"#), "limit"),
        (call(5, "get_chat_by_id", "{}"), "jid"),
        (call(6, "ping", r#"{"extra":1}"#), "extra"),
        (
            call(7, "logout", r#"{"idempotency_key":""}"#),
            "idempotency_key",
        ),
        (
            call(8, "list_chats", r#"{"include_last_message":"yes"}"#),
            "include_last_message",
        ),
    ];
    for (body, field) in cases {
        let j = s.rpc(&sid, &body).json();
        assert_eq!(j.path("result.isError").bool(), Some(true), "{body}");
        let text = j.path("result.content.0.text").str().unwrap();
        assert!(text.contains(field), "{body}: {text}");
    }
    // A tool that needs WhatsApp says that it is not connected and what to do.
    let j = s
        .rpc(
            &sid,
            &call(9, "get_profile_pic", r#"{"jid":"1@s.whatsapp.net"}"#),
        )
        .json();
    assert_eq!(j.path("result.isError").bool(), Some(true));
    let text = j.path("result.content.0.text").str().unwrap();
    assert!(
        text.contains("WhatsApp is not connected (state: "),
        "{text}"
    );
}

#[test]
fn tools_list_is_the_final_list_with_strict_schemas() {
    let s = Server::start(&[]);
    let sid = s.initialize(&[], "2025-11-25");
    let j = s
        .rpc(&sid, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .json();
    let tools = j.path("result.tools").arr();
    let names: Vec<String> = tools.iter().map(|t| t.get("name").str().unwrap()).collect();
    let expected: Vec<&str> = include_str!("interop/expected_tools.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut a = names.clone();
    a.sort();
    let mut b: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(names.len(), 33);
    assert!(j.path("result.nextCursor").is_null());
    for t in &tools {
        assert!(!t.get("description").str().unwrap().is_empty());
        assert_eq!(t.path("inputSchema.type").str().as_deref(), Some("object"));
        assert_eq!(
            t.path("inputSchema.additionalProperties").bool(),
            Some(false)
        );
        assert!(t.path("annotations.readOnlyHint").bool().is_some());
    }

    let ro = Server::start(&[("READ_ONLY", "1")]);
    let sid = ro.initialize(&[], "2025-11-25");
    let j = ro
        .rpc(&sid, r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .json();
    let names: Vec<String> = j
        .path("result.tools")
        .arr()
        .iter()
        .map(|t| t.get("name").str().unwrap())
        .collect();
    assert_eq!(names.len(), 30);
    for hidden in ["send_message", "send_media", "send_reaction"] {
        assert!(!names.contains(&hidden.to_string()));
    }
    let j = ro
        .rpc(
            &sid,
            &call(
                3,
                "send_message",
                r#"{"recipient_jid":"1@s.whatsapp.net","message":"hi"}"#,
            ),
        )
        .json();
    assert_eq!(j.path("result.isError").bool(), Some(true));
    assert!(
        j.path("result.content.0.text")
            .str()
            .unwrap()
            .contains("READ_ONLY")
    );
}

#[test]
fn delete_ends_a_session_and_later_use_is_404() {
    let s = Server::start(&[]);
    let sid = s.initialize(&[], "2025-11-25");
    assert_eq!(s.rpc(&sid, PING).status, 200);
    let r = s.request("DELETE", "/mcp", &[("MCP-Session-Id", &sid)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(s.rpc(&sid, PING).status, 404);
    assert_eq!(
        s.request("DELETE", "/mcp", &[("MCP-Session-Id", &sid)], b"")
            .status,
        404
    );
    assert_eq!(
        s.request(
            "GET",
            "/mcp",
            &[("Accept", "text/event-stream"), ("MCP-Session-Id", &sid)],
            b""
        )
        .status,
        404
    );
    assert_eq!(s.request("DELETE", "/mcp", &[], b"").status, 400);
}

#[test]
fn idle_sessions_expire_and_the_idlest_is_evicted_at_the_cap() {
    let s = Server::start(&[("MCP_SESSION_IDLE_SECS", "1")]);
    let sid = s.initialize(&[], "2025-11-25");
    assert_eq!(s.rpc(&sid, PING).status, 200);
    // Polling the session would keep it alive; wait for the sweeper to report the expiry.
    s.wait_log("idle MCP session(s) expired", Duration::from_secs(10));
    assert_eq!(s.rpc(&sid, PING).status, 404);

    let capped = Server::start(&[("MCP_MAX_SESSIONS", "2")]);
    let first = capped.initialize(&[], "2025-11-25");
    let second = capped.initialize(&[], "2025-11-25");
    assert_eq!(
        capped.rpc(&first, PING).status,
        200,
        "touch the first; the second is now the idlest"
    );
    let third = capped.initialize(&[], "2025-11-25");
    assert_eq!(capped.rpc(&second, PING).status, 404);
    assert_eq!(capped.rpc(&first, PING).status, 200);
    assert_eq!(capped.rpc(&third, PING).status, 200);
}

#[test]
fn batches_only_under_2025_03_26() {
    let s = Server::start(&[]);
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ping"}}]"#;
    for v in ["2025-11-25", "2025-06-18"] {
        let sid = s.initialize(&[], v);
        let r = s.rpc(&sid, batch);
        assert_eq!(r.status, 400, "{v}");
        assert_eq!(r.json().path("error.code").num(), Some(-32600.0));
    }
    let sid = s.initialize(&[], "2025-03-26");
    let r = s.rpc(&sid, batch);
    assert_eq!(r.status, 200);
    let answers = r.json().arr();
    assert_eq!(answers.len(), 2);
    assert_eq!(
        answers[1].path("result.content.0.text").str().as_deref(),
        Some("pong")
    );
    let r = s.rpc(
        &sid,
        r#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
    );
    assert_eq!(r.status, 202);
    assert_eq!(s.rpc(&sid, "[]").status, 400);
}

#[test]
fn the_stateless_revision_gets_a_clean_400_so_dual_era_clients_fall_back() {
    let s = Server::start(&[]);
    let discover = r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let r = s.request(
        "POST",
        "/mcp",
        &[ACCEPT_BOTH, JSON_CT, ("MCP-Protocol-Version", "2026-07-28")],
        discover.as_bytes(),
    );
    assert_eq!(r.status, 400);
    let code = r.json().path("error.code").num().unwrap();
    assert!(![-32020.0, -32021.0, -32022.0].contains(&code));
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("initialize")
    );
    let r = s.request("POST", "/mcp", &[ACCEPT_BOTH, JSON_CT], discover.as_bytes());
    assert_eq!(r.status, 400);
    // And the fallback works.
    let sid = s.initialize(&[], "2025-11-25");
    assert_eq!(s.rpc(&sid, PING).status, 200);
}

#[test]
fn get_streams_one_per_session_with_keepalive_comments() {
    let s = Server::start(&[("MCP_SSE_KEEPALIVE_SECS", "1")]);
    let sid = s.initialize(&[], "2025-11-25");
    let mut stream = s.conn();
    stream.write_request(
        "GET",
        "/mcp",
        &[("Accept", "text/event-stream"), ("MCP-Session-Id", &sid)],
        b"",
    );
    let (status, headers) = stream.read_head().unwrap();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"))
    );
    let second = s.request(
        "GET",
        "/mcp",
        &[("Accept", "text/event-stream"), ("MCP-Session-Id", &sid)],
        b"",
    );
    assert_eq!(second.status, 409);
    let text = stream.read_until(": keepalive");
    assert!(
        !text.contains("\"result\""),
        "no responses on the GET stream"
    );
    // A vanished client frees the slot.
    drop(stream);
    wait_for("the GET slot to free up", Duration::from_secs(10), || {
        let mut c = s.conn();
        c.write_request(
            "GET",
            "/mcp",
            &[("Accept", "text/event-stream"), ("MCP-Session-Id", &sid)],
            b"",
        );
        let (status, _) = c.read_head()?;
        (status == 200).then_some(())
    });
}

#[test]
fn sse_answers_when_json_responses_are_off_and_progress_when_asked() {
    let s = Server::start(&[("MCP_HTTP_ENABLE_JSON_RESPONSE", "0")]);
    let sid = s.initialize(&[], "2025-11-25");
    let r = s.rpc(&sid, PING);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert!(r.text().contains("event: message\ndata: {"));
    assert!(!r.json().get("result").is_null());

    let with_token = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"ping","arguments":{},"_meta":{"progressToken":"tok-1"}}}"#;
    let r = s.rpc(&sid, with_token);
    let text = r.text();
    let progress = text
        .find("notifications/progress")
        .expect("a progress notification");
    let result = text.find("\"result\"").expect("the result");
    assert!(
        progress < result,
        "progress comes before the result: {text}"
    );
    assert!(text.contains("\"progressToken\":\"tok-1\""));

    // A client that accepts only JSON still gets JSON.
    let r = s.request(
        "POST",
        "/mcp",
        &[
            ("Accept", "application/json"),
            JSON_CT,
            ("MCP-Session-Id", &sid),
        ],
        PING.as_bytes(),
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
}
