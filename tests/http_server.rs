//! The HTTP server against the real binary: auth, Host/Origin, the LAN case, limits, deadlines,
//! keep-alive, and the plain routes.

mod common;

use common::{ACCEPT_BOTH, JSON_CT, Server, TempDir, wait_for};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef";
const PING: &str = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;

#[test]
fn without_a_token_on_loopback_auth_is_off() {
    let s = Server::start(&[]);
    let sid = s.initialize(&[], "2025-11-25");
    assert_eq!(s.rpc(&sid, PING).status, 200);
    assert_eq!(s.request("GET", "/api/status", &[], b"").status, 200);
}

#[test]
fn a_configured_token_is_required_everywhere_but_health_and_the_page() {
    let s = Server::start(&[("ACCESS_TOKEN", TOKEN)]);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = s.request("POST", "/mcp", &[ACCEPT_BOTH, JSON_CT], init.as_bytes());
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"whatsapp-mcp-stream\"")
    );
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let r = s.request(
        "POST",
        "/mcp",
        &[
            ACCEPT_BOTH,
            JSON_CT,
            ("Authorization", "Bearer wrong-token-xxxxxxxx"),
        ],
        init.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("Authorization", bearer.as_str());
    let sid = s.initialize(&[auth], "2025-11-25");
    let r = s.request(
        "POST",
        "/mcp",
        &[ACCEPT_BOTH, JSON_CT, auth, ("MCP-Session-Id", &sid)],
        PING.as_bytes(),
    );
    assert_eq!(r.status, 200);
    // The session id alone is no credential.
    let r = s.request(
        "POST",
        "/mcp",
        &[ACCEPT_BOTH, JSON_CT, ("MCP-Session-Id", &sid)],
        PING.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(s.request("GET", "/api/status", &[], b"").status, 401);
    assert_eq!(s.request("GET", "/api/status", &[auth], b"").status, 200);
    assert_eq!(s.request("GET", "/healthz", &[], b"").status, 200);
    assert_eq!(s.request("GET", "/admin", &[], b"").status, 200);
}

#[test]
fn bad_hosts_get_421_and_bad_origins_403() {
    let s = Server::start(&[]);
    let r = s.request(
        "POST",
        "/mcp",
        &[("Host", "evil.example:3003"), ACCEPT_BOTH, JSON_CT],
        PING.as_bytes(),
    );
    assert_eq!(r.status, 421);
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("ALLOWED_HOSTS")
    );
    assert_eq!(
        s.request("GET", "/api/status", &[("Host", "evil.example")], b"")
            .status,
        421
    );
    assert_eq!(
        s.request("GET", "/healthz", &[("Host", "evil.example")], b"")
            .status,
        200,
        "health is reachable by any name"
    );
    for ok_host in ["localhost:3003", "127.0.0.1", "[::1]:3003"] {
        assert_eq!(
            s.request("GET", "/api/status", &[("Host", ok_host)], b"")
                .status,
            200,
            "{ok_host}"
        );
    }

    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let r = s.request(
        "POST",
        "/mcp",
        &[("Origin", "http://evil.example"), ACCEPT_BOTH, JSON_CT],
        init.as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("Origin")
    );
    let r = s.request(
        "POST",
        "/mcp",
        &[("Origin", "http://localhost:3003"), ACCEPT_BOTH, JSON_CT],
        init.as_bytes(),
    );
    assert_eq!(r.status, 200, "a legitimate origin works");

    let extra = Server::start(&[("ALLOWED_HOSTS", "wa.example.com")]);
    assert_eq!(
        extra
            .request(
                "GET",
                "/api/status",
                &[("Host", "wa.example.com:8443")],
                b""
            )
            .status,
        200
    );
    let r = extra.request(
        "POST",
        "/mcp",
        &[("Origin", "https://wa.example.com"), ACCEPT_BOTH, JSON_CT],
        init.as_bytes(),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn lan_host_is_served_only_when_allowed() {
    let env = [("ACCESS_TOKEN", TOKEN), ("ALLOWED_HOSTS", "192.168.1.20")];
    let allowed = Server::start_on("0.0.0.0:0", &env);
    let bearer = format!("Bearer {TOKEN}");
    let lan = [
        ("Host", "192.168.1.20:3003"),
        ("Authorization", bearer.as_str()),
    ];
    let r = allowed.request("GET", "/api/status", &lan, b"");
    assert_eq!(r.status, 200);
    let mut h = lan.to_vec();
    h.extend([ACCEPT_BOTH, JSON_CT]);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    assert_eq!(
        allowed.request("POST", "/mcp", &h, init.as_bytes()).status,
        200
    );

    let refused = Server::start_on("0.0.0.0:0", &[("ACCESS_TOKEN", TOKEN)]);
    let r = refused.request("GET", "/api/status", &lan, b"");
    assert_eq!(r.status, 421);
    assert_eq!(
        refused.request("POST", "/mcp", &h, init.as_bytes()).status,
        421
    );
}

#[test]
fn a_token_is_generated_on_a_non_loopback_address() {
    let s = Server::start_on("0.0.0.0:0", &[]);
    let path = s.data.path().join("access_token");
    let token = std::fs::read_to_string(&path)
        .expect("token file")
        .trim()
        .to_string();
    assert!(token.len() >= 32);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    s.wait_log("generated an access token", Duration::from_secs(5));
    assert_eq!(s.request("GET", "/api/status", &[], b"").status, 401);
    let bearer = format!("Bearer {token}");
    assert_eq!(
        s.request(
            "GET",
            "/api/status",
            &[("Authorization", bearer.as_str())],
            b""
        )
        .status,
        200
    );
    // `token` prints it again, with --data-dir after the command.
    let out = std::process::Command::new(common::BIN)
        .arg("token")
        .arg("--data-dir")
        .arg(s.data.path())
        .env_remove("ACCESS_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token);
}

#[test]
fn oversized_bodies_get_413_with_a_json_error() {
    let s = Server::start(&[("MCP_MAX_BODY_BYTES", "2048")]);
    let sid = s.initialize(&[], "2025-11-25");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let r = s.rpc(&sid, &big);
    assert_eq!(r.status, 413);
    let msg = r.json().path("error.message").str().unwrap();
    assert!(
        msg.contains("2048")
            && msg.contains("MCP_MAX_BODY_BYTES")
            && msg.contains("upload-multipart"),
        "{msg}"
    );
    // Chunked bodies are capped too.
    let mut c = s.conn();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nMCP-Session-Id: {sid}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    c.stream.write_all(head.as_bytes()).unwrap();
    for _ in 0..4 {
        c.stream
            .write_all(format!("400\r\n{}\r\n", "y".repeat(1024)).as_bytes())
            .unwrap();
    }
    c.stream.write_all(b"0\r\n\r\n").unwrap();
    assert_eq!(c.read_response().unwrap().status, 413);
}

#[test]
fn oversized_and_malformed_heads_get_json_errors_not_resets() {
    let s = Server::start(&[]);
    let mut c = s.conn();
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    head.push_str(&format!("X-Big: {}\r\n\r\n", "a".repeat(9000)));
    c.stream.write_all(head.as_bytes()).unwrap();
    let r = c.read_response().expect("an answer, not a reset");
    assert_eq!(r.status, 431);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json().path("error.message").str().is_some());

    for bad in [
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        "GET /healthz HTTP/1.1\r\n\r\n",
    ] {
        let mut c = s.conn();
        c.stream.write_all(bad.as_bytes()).unwrap();
        let r = c.read_response().expect("an answer");
        assert_eq!(r.status, 400, "{bad:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let mut c = s.conn();
    c.stream
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 505);
}

#[test]
fn slow_heads_and_stalled_bodies_get_408() {
    let s = Server::start(&[]);
    let sid = s.initialize(&[], "2025-11-25");
    let head_thread = {
        let addr = s.addr;
        std::thread::spawn(move || {
            let mut c = common::Conn::open(addr);
            c.stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .unwrap();
            let started = Instant::now();
            let r = c.read_response().expect("a 408, not a reset");
            (r, started.elapsed())
        })
    };
    let mut c = s.conn();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nMCP-Session-Id: {sid}\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\""
    );
    c.stream.write_all(head.as_bytes()).unwrap();
    let r = c.read_response().expect("a 408");
    assert_eq!(r.status, 408);
    assert!(
        r.json()
            .path("error.message")
            .str()
            .unwrap()
            .contains("10 s")
    );
    let (r, waited) = head_thread.join().unwrap();
    assert_eq!(r.status, 408);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(waited < Duration::from_secs(15));
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let s = Server::start(&[]);
    let sid = s.initialize(&[], "2025-11-25");
    let mut c = s.conn();
    for i in 0..50 {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"ping"}}}}"#
        );
        let r = c.send(
            "POST",
            "/mcp",
            &[ACCEPT_BOTH, JSON_CT, ("MCP-Session-Id", &sid)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.json().get("id").num(), Some(i as f64));
    }
}

#[test]
fn the_connection_cap_answers_503() {
    let s = Server::start(&[("MAX_CONNECTIONS", "2")]);
    let _a = s.conn();
    let _b = s.conn();
    // The held connections count once the server accepted them; poll until the third is refused.
    wait_for(
        "a 503 beyond MAX_CONNECTIONS",
        Duration::from_secs(10),
        || {
            let mut c = TcpStream::connect(s.addr).ok()?;
            c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            let mut buf = String::new();
            let _ = c.read_to_string(&mut buf);
            buf.starts_with("HTTP/1.1 503").then_some(buf)
        },
    );
}

#[test]
fn plain_routes() {
    let s = Server::start(&[]);
    let r = s.request("GET", "/", &[], b"");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/admin"));
    let r = s.request("GET", "/admin", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("WhatsApp MCP"));
    assert_eq!(s.request("GET", "/admin/admin.js", &[], b"").status, 200);
    let r = s.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json().get("ok").bool(), Some(true));
    assert_eq!(r.json().get("reason").str().as_deref(), Some("starting"));
    let r = s.request("GET", "/api/status", &[], b"");
    assert_eq!(r.json().get("authenticated").bool(), Some(false));
    assert_eq!(r.json().get("ready").bool(), Some(false));
    let r = s.request("GET", "/nope", &[], b"");
    assert_eq!(r.status, 404);
    assert!(r.json().path("error.message").str().is_some());
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let out = std::process::Command::new(common::BIN)
        .env("LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("LISTEN") && err.contains("IP:PORT"), "{err}");
    let out = std::process::Command::new(common::BIN)
        .env("MCP_MAX_SESSIONS", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MCP_MAX_SESSIONS"));
    let out = std::process::Command::new(common::BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--listen",
        "--data-dir",
        "--stdio",
        "ACCESS_TOKEN",
        "ALLOWED_HOSTS",
        "MCP_MAX_SESSIONS",
        "token",
    ] {
        assert!(help.contains(word), "help lacks {word}");
    }
    let out = std::process::Command::new(common::BIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("whatsapp-mcp-stream "));
    // `token` with nothing configured says what to do.
    let dir = TempDir::new("tok");
    let out = std::process::Command::new(common::BIN)
        .args(["--data-dir"])
        .arg(dir.path())
        .arg("token")
        .env_remove("ACCESS_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ACCESS_TOKEN"));
}
