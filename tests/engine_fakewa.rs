//! The WhatsApp engine end to end: the real binary (built with `test-network`) against the fakewa
//! binary over TLS trusting fakewa's CA. Linking by QR through MCP, a restart that stays linked,
//! and logout.
//!
//! fakewa is a workspace package, not a dependency (it must not change the product's features),
//! so its binary is looked up next to ours in the target dir and built once with
//! `cargo build -p fakewa` when it is missing.
#![cfg(feature = "test-network")]

mod common;

use common::{Server, TempDir, serde_like::Json, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A fakewa process; killed on drop.
struct FakeWa {
    child: Child,
    listen: SocketAddr,
    control: SocketAddr,
    ca: PathBuf,
    _dir: TempDir,
}

impl Drop for FakeWa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fakewa_bin() -> PathBuf {
    let ours = PathBuf::from(common::BIN);
    let bin = ours.with_file_name(format!("fakewa{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        eprintln!(
            "{} is missing; building it once with `cargo build -p fakewa`",
            bin.display()
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "fakewa"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p fakewa");
        assert!(status.success(), "cargo build -p fakewa failed");
    }
    assert!(bin.exists(), "no fakewa binary at {}", bin.display());
    bin
}

fn start_fakewa() -> FakeWa {
    let dir = TempDir::new("fakewa");
    let mut child = Command::new(fakewa_bin())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fakewa");
    let stdout = child.stdout.take().expect("fakewa stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut listen, mut control, mut ca) = (None, None, None);
    while listen.is_none() || control.is_none() || ca.is_none() {
        let line = lines
            .next()
            .expect("fakewa printed its addresses")
            .expect("fakewa stdout");
        if let Some(v) = line.strip_prefix("listen=") {
            listen = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("control=") {
            control = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("ca=") {
            ca = Some(PathBuf::from(v));
        }
    }
    // Keep draining stdout so fakewa never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    FakeWa {
        child,
        listen: listen.unwrap(),
        control: control.unwrap(),
        ca: ca.unwrap(),
        _dir: dir,
    }
}

/// One plain HTTP/1.1 exchange with fakewa's control port: (status, body).
fn control(fw: &FakeWa, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(fw.control).expect("connect to fakewa control");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        fw.control,
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("control response");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn fakewa_state(fw: &FakeWa) -> Json {
    let (status, body) = control(fw, "GET", "/control/state", "");
    assert_eq!(status, 200, "{body}");
    Json::parse(&body).expect("state JSON")
}

fn start_product(fw: &FakeWa, data: TempDir) -> Server {
    let url = format!("wss://{}/ws/chat", fw.listen);
    let ca = fw.ca.display().to_string();
    Server::start_in(
        "127.0.0.1:0",
        data,
        &[
            ("WA_WS_URL", &url),
            ("WA_TEST_CA", &ca),
            ("WA_PUSH_NAME", "engine-test"),
        ],
    )
}

/// An MCP session on the product.
struct Mcp<'a> {
    server: &'a Server,
    session: String,
}

impl Mcp<'_> {
    fn open(server: &Server) -> Mcp<'_> {
        let session = server.initialize(&[], "2025-06-18");
        Mcp { server, session }
    }

    /// The result of a tool call.
    fn call(&self, tool: &str, args: &str) -> Json {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        );
        let r = self.server.rpc(&self.session, &body);
        assert_eq!(r.status, 200, "{tool}: {}", r.text());
        let j = r.json();
        assert!(j.get("error").is_null(), "{tool}: {}", r.text());
        j.get("result")
    }

    fn text(&self, tool: &str) -> String {
        let result = self.call(tool, "{}");
        result
            .path("content.0.text")
            .str()
            .unwrap_or_else(|| panic!("{tool}: no text block"))
    }

    /// Polls check_auth_status until `ok` accepts its text.
    fn wait_status(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        wait_for(what, Duration::from_secs(secs), || {
            last = self.text("check_auth_status");
            if ok(&last) {
                Some(last.clone())
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
    }
}

/// get_qr_code until it returns the image and the raw payload; returns the payload.
fn wait_qr(mcp: &Mcp) -> String {
    wait_for(
        "a QR code from get_qr_code",
        Duration::from_secs(30),
        || {
            let result = mcp.call("get_qr_code", "{}");
            let content = result.get("content");
            if content.path("0.type").str().as_deref() == Some("image") {
                assert_eq!(
                    content.path("0.mimeType").str().as_deref(),
                    Some("image/png")
                );
                assert!(!content.path("0.data").str().unwrap_or_default().is_empty());
                content.path("1.text").str()
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        },
    )
}

fn link(fw: &FakeWa, mcp: &Mcp) -> String {
    let qr = wait_qr(mcp);
    let (status, body) = control(fw, "POST", "/control/scan", &format!(r#"{{"qr":"{qr}"}}"#));
    assert_eq!(status, 200, "scan: {body}");
    Json::parse(&body)
        .and_then(|j| j.get("jid").str())
        .expect("scan answers the device jid")
}

#[test]
fn link_by_qr_restart_and_logout() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("engine"));
    let mcp = Mcp::open(&server);

    let device = link(&fw, &mcp);
    let number = device.split([':', '@']).next().unwrap().to_string();
    let status = mcp.wait_status("state: connected", 60, |t| t.contains("state: connected"));
    assert!(status.contains(&format!("number: +{number}")), "{status}");

    // /api/status agrees.
    let api = server.request("GET", "/api/status", &[], b"").json();
    assert_eq!(api.get("state").str().as_deref(), Some("connected"));
    assert_eq!(api.get("authenticated").bool(), Some(true));
    assert_eq!(api.get("ready").bool(), Some(true));
    assert_eq!(api.get("ownJid").str().as_deref(), Some(device.as_str()));

    // Already linked: get_qr_code says so instead of a code.
    let qr = mcp.text("get_qr_code");
    assert!(qr.contains("Already linked"), "{qr}");
    drop(mcp);

    // A restart comes back connected from the keys in redb, without a new pairing.
    let pairings = fakewa_state(&fw)
        .path("counters.pairing_attempts")
        .num()
        .unwrap_or(0.0);
    let data = server.stop();
    let server = start_product(&fw, data);
    let mcp = Mcp::open(&server);
    let status = mcp.wait_status("connected after restart", 60, |t| {
        t.contains("state: connected")
    });
    assert!(status.contains(&format!("number: +{number}")), "{status}");
    assert_eq!(
        fakewa_state(&fw)
            .path("counters.pairing_attempts")
            .num()
            .unwrap_or(0.0),
        pairings,
        "a restart must not pair again"
    );

    // Logout unlinks on fakewa's side and returns to unlinked (then a new QR).
    let out = mcp.text("logout");
    assert!(out.contains("Logged out"), "{out}");
    let status = mcp.text("check_auth_status");
    assert!(
        status.contains("state: unlinked") || status.contains("state: waiting_for_qr"),
        "{status}"
    );
    let devices: Vec<String> = fakewa_state(&fw)
        .path("accounts.0.devices")
        .arr()
        .iter()
        .filter_map(Json::str)
        .collect();
    assert!(!devices.contains(&device), "{device} still in {devices:?}");
    // A fresh device offers a new QR code.
    wait_qr(&mcp);
    let again = mcp.text("logout");
    assert!(again.contains("No account was linked"), "{again}");
}

#[test]
fn tools_answer_while_whatsapp_is_unreachable() {
    // Nothing listens on this port: the engine keeps retrying in the background.
    let dir = TempDir::new("unreach");
    let server = Server::start_in(
        "127.0.0.1:0",
        dir,
        &[("WA_WS_URL", "ws://127.0.0.1:9/ws/chat")],
    );
    let mcp = Mcp::open(&server);
    let status = mcp.text("check_auth_status");
    assert!(status.contains("state: unlinked"), "{status}");
    let qr = mcp.text("get_qr_code");
    assert!(qr.contains("No QR code yet"), "{qr}");
    // A tool that needs the live connection says so, with the state and the next step.
    let result = mcp.call("force_resync", "{}");
    assert_eq!(result.get("isError").bool(), Some(true), "{result:?}");
    let text = result.path("content.0.text").str().unwrap_or_default();
    assert!(
        text.starts_with("WhatsApp is not connected (state: unlinked): "),
        "{text}"
    );
    let health = server.request("GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    // /api/status carries the original's keys.
    let api = server.request("GET", "/api/status", &[], b"").json();
    let keys = api.keys();
    for key in [
        "authenticated",
        "ready",
        "qrAvailable",
        "ownJid",
        "chatCount",
        "messageCount",
        "dbChats",
        "dbMessages",
        "dbMedia",
        "dbContacts",
        "lastDisconnectReason",
        "lastDisconnectAt",
        "timestamp",
        "state",
    ] {
        assert!(
            keys.iter().any(|k| k == key),
            "/api/status lacks {key}: {keys:?}"
        );
    }
    assert_eq!(api.get("dbMessages").num(), Some(0.0));
    assert!(
        api.get("timestamp").num().unwrap_or(0.0) > 1.0e12,
        "ms: {api:?}"
    );
}

#[test]
fn force_resync_on_a_connected_client() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("resync"));
    let mcp = Mcp::open(&server);
    link(&fw, &mcp);
    mcp.wait_status("state: connected", 60, |t| t.contains("state: connected"));
    let result = mcp.call("force_resync", "{}");
    assert_ne!(result.get("isError").bool(), Some(true), "{result:?}");
    let text = result.path("content.0.text").str().unwrap_or_default();
    assert!(text.starts_with("Resync started"), "{text}");
    // The resync runs in the background; the link stays up.
    std::thread::sleep(Duration::from_secs(2));
    let status = mcp.text("check_auth_status");
    assert!(status.contains("state: connected"), "{status}");
}

#[test]
fn link_by_pair_code() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("paircode"));
    let mcp = Mcp::open(&server);
    // The socket is up once a QR code is offered.
    wait_qr(&mcp);
    let phone = "15557770001";
    let result = mcp.call(
        "request_pairing_code",
        &format!(r#"{{"phone_number":"+{phone}"}}"#),
    );
    assert_ne!(result.get("isError").bool(), Some(true), "{result:?}");
    let text = result.path("content.0.text").str().expect("a text block");
    let answer = Json::parse(&text).expect("{code, expires_at}");
    let code = answer.get("code").str().expect("code");
    assert!(
        answer.get("expires_at").num().unwrap_or(0.0) > 0.0,
        "{text}"
    );
    let status = mcp.text("check_auth_status");
    assert!(status.contains("state: pairing"), "{status}");
    let (status, body) = control(
        &fw,
        "POST",
        "/control/pair-code",
        &format!(r#"{{"phone":"{phone}","code":"{code}"}}"#),
    );
    assert_eq!(status, 200, "pair-code: {body}");
    let status = mcp.wait_status("connected by pair code", 60, |t| {
        t.contains("state: connected")
    });
    assert!(status.contains(&format!("number: +{phone}")), "{status}");
}

#[test]
fn unlink_from_the_phone_is_logged_out_without_a_new_pairing() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("unlink"));
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    mcp.wait_status("state: connected", 60, |t| t.contains("state: connected"));
    let (status, body) = control(
        &fw,
        "POST",
        "/control/unlink",
        &format!(r#"{{"jid":"{device}"}}"#),
    );
    assert_eq!(status, 200, "unlink: {body}");
    mcp.wait_status("state: logged_out", 30, |t| t.contains("state: logged_out"));
    let pairings = fakewa_state(&fw).path("counters.pairing_attempts").num();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        fakewa_state(&fw).path("counters.pairing_attempts").num(),
        pairings,
        "no pairing may start by itself after a logout from the phone"
    );
    // Asking for a code links again from scratch.
    wait_qr(&mcp);
}
