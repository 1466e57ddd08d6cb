//! The WhatsApp engine recovering on its own, end to end: the real binary (built with
//! `test-network`) against the fakewa binary over TLS.
//!
//! - Reconnect: fakewa drops the connection; the product reconnects without pairing again.
//! - Refused connections: while fakewa refuses WebSocket upgrades, /mcp and /healthz keep
//!   answering and check_auth_status shows a non-connected state; afterwards it connects again.
//! - Two products on two accounts are both connected, and a third product with the first's push
//!   name becomes a second companion device of that account (checked in fakewa's
//!   `/control/state`: the product has no tool that lists an account's devices).
//! - Repeated drops: five drops in a row each reconnect within 10 s (a doubling backoff
//!   would need 16 s for the fifth).
//!
//! No fixed sleeps: every wait polls a condition until a deadline. The fakewa helpers mirror
//! `tests/engine_fakewa.rs` (fakewa is a workspace package, not a dependency, so its binary is
//! looked up next to ours and built once when missing).
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

fn counter(fw: &FakeWa, name: &str) -> f64 {
    fakewa_state(fw)
        .path(&format!("counters.{name}"))
        .num()
        .unwrap_or_else(|| panic!("no counters.{name} in /control/state"))
}

fn start_product(fw: &FakeWa, data: TempDir, push_name: &str) -> Server {
    let url = format!("wss://{}/ws/chat", fw.listen);
    let ca = fw.ca.display().to_string();
    Server::start_in(
        "127.0.0.1:0",
        data,
        &[
            ("WA_WS_URL", &url),
            ("WA_TEST_CA", &ca),
            ("WA_PUSH_NAME", push_name),
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
                std::thread::sleep(Duration::from_millis(50));
                None
            }
        })
    }

    fn wait_connected(&self, what: &str, secs: u64) -> String {
        self.wait_status(what, secs, is_connected)
    }
}

fn is_connected(status: &str) -> bool {
    status.lines().any(|l| l.trim() == "state: connected")
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
                content.path("1.text").str()
            } else {
                std::thread::sleep(Duration::from_millis(50));
                None
            }
        },
    )
}

/// Links the product by QR and waits until it is connected; returns the device JID.
fn link(fw: &FakeWa, mcp: &Mcp) -> String {
    let qr = wait_qr(mcp);
    let (status, body) = control(fw, "POST", "/control/scan", &format!(r#"{{"qr":"{qr}"}}"#));
    assert_eq!(status, 200, "scan: {body}");
    let jid = Json::parse(&body)
        .and_then(|j| j.get("jid").str())
        .expect("scan answers the device jid");
    mcp.wait_connected("state: connected after linking", 60);
    jid
}

/// The account JID (`N@s.whatsapp.net`) of a device JID (`N:D@s.whatsapp.net`).
fn account_of(device: &str) -> String {
    let number = device.split([':', '@']).next().unwrap();
    format!("{number}@s.whatsapp.net")
}

/// The companion devices (device id ≠ 0) fakewa lists for an account.
fn companions(fw: &FakeWa, account: &str) -> Vec<String> {
    let state = fakewa_state(fw);
    let acc = state
        .get("accounts")
        .arr()
        .into_iter()
        .find(|a| a.get("jid").str().as_deref() == Some(account))
        .unwrap_or_else(|| panic!("fakewa lists no account {account}"));
    acc.get("devices")
        .arr()
        .iter()
        .filter_map(Json::str)
        .filter(|d| d.contains(':'))
        .collect()
}

/// Whether fakewa has a logged-in connection for this device JID.
fn logged_in(fw: &FakeWa, device: &str) -> bool {
    fakewa_state(fw).get("connections").arr().iter().any(|c| {
        c.get("jid").str().as_deref() == Some(device)
            && c.get("phase").str().as_deref() == Some("logged_in")
    })
}

fn healthz_ok(server: &Server) {
    let r = server.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200, "/healthz: {}", r.text());
}

/// `ping` and `tools/list` answer in the session.
fn mcp_answers(mcp: &Mcp) {
    let r = mcp
        .server
        .rpc(&mcp.session, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!(r.status, 200, "ping: {}", r.text());
    assert!(r.json().get("error").is_null(), "ping: {}", r.text());
    let r = mcp.server.rpc(
        &mcp.session,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    );
    assert_eq!(r.status, 200, "tools/list: {}", r.text());
    let tools = r.json().path("result.tools").arr();
    assert!(
        tools
            .iter()
            .any(|t| t.get("name").str().as_deref() == Some("check_auth_status")),
        "tools/list: {}",
        r.text()
    );
}

#[test]
fn reconnects_by_itself_after_fakewa_drops_the_connection() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("reconnect"), "recover-drop");
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    wait_for(
        "fakewa sees the device logged in",
        Duration::from_secs(30),
        || logged_in(&fw, &device).then_some(()),
    );

    let pairings = counter(&fw, "pairing_attempts");
    let connections = counter(&fw, "connections");
    let logins = counter(&fw, "logins");
    let (status, body) = control(&fw, "POST", "/control/disconnect", "{}");
    assert_eq!(status, 200, "disconnect: {body}");
    let n = Json::parse(&body)
        .and_then(|j| j.get("disconnected").num())
        .expect("{disconnected: n}");
    assert!(n >= 1.0, "nothing was disconnected: {body}");

    // A new connection reaches fakewa and logs in again, and the product says connected.
    wait_for(
        "a new WebSocket connection to fakewa",
        Duration::from_secs(30),
        || (counter(&fw, "connections") > connections).then_some(()),
    );
    wait_for(
        "the device logged in again",
        Duration::from_secs(30),
        || (counter(&fw, "logins") > logins && logged_in(&fw, &device)).then_some(()),
    );
    let status = mcp.wait_connected("state: connected after the drop", 30);
    let number = device.split([':', '@']).next().unwrap();
    assert!(status.contains(&format!("number: +{number}")), "{status}");
    assert_eq!(
        counter(&fw, "pairing_attempts"),
        pairings,
        "a reconnect must not pair again"
    );
    assert_eq!(
        companions(&fw, &account_of(&device)),
        vec![device.clone()],
        "a reconnect must not add a device"
    );
    healthz_ok(&server);
}

#[test]
fn repeated_drops_each_reconnect() {
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("redrop"), "recover-redrop");
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    let pairings = counter(&fw, "pairing_attempts");
    for round in 1..=3 {
        wait_for("the device logged in", Duration::from_secs(30), || {
            logged_in(&fw, &device).then_some(())
        });
        let logins = counter(&fw, "logins");
        let (status, body) = control(&fw, "POST", "/control/disconnect", "{}");
        assert_eq!(status, 200, "disconnect: {body}");
        // whatsapp-rust's own reconnect delay grows (1, 1, 2, 3, 5 s) until a connection has
        // been stable for a while, so give each round room; what matters is that every drop is
        // followed by a login of the same device, never by a new pairing.
        wait_for(
            &format!("reconnect #{round}"),
            Duration::from_secs(30),
            || (counter(&fw, "logins") > logins && logged_in(&fw, &device)).then_some(()),
        );
        mcp.wait_connected(&format!("state: connected after drop #{round}"), 5);
    }
    assert_eq!(counter(&fw, "pairing_attempts"), pairings);
}

#[test]
fn keeps_serving_while_connections_are_refused_then_reconnects() {
    const REFUSE_SECS: u64 = 5;
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("refused"), "recover-refused");
    let mcp = Mcp::open(&server);
    let device = link(&fw, &mcp);
    wait_for(
        "fakewa sees the device logged in",
        Duration::from_secs(30),
        || logged_in(&fw, &device).then_some(()),
    );
    let pairings = counter(&fw, "pairing_attempts");

    let (status, body) = control(
        &fw,
        "POST",
        "/control/refuse-connections",
        &format!(r#"{{"secs":{REFUSE_SECS}}}"#),
    );
    assert_eq!(status, 200, "refuse-connections: {body}");
    let refused_at = std::time::Instant::now();
    let (status, body) = control(&fw, "POST", "/control/disconnect", "{}");
    assert_eq!(status, 200, "disconnect: {body}");

    // While refused the product cannot be connected; it says so, and everything else answers.
    let status = mcp.wait_status("a non-connected state", 10, |t| !is_connected(t));
    assert!(
        refused_at.elapsed() < Duration::from_secs(REFUSE_SECS),
        "the product noticed the drop only after the refusal window; cannot check it"
    );
    assert!(
        status.contains("state: connecting") || status.contains("state: unlinked"),
        "expected connecting while WhatsApp refuses connections: {status}"
    );
    assert!(!status.contains("state: logged_out"), "{status}");
    let mut rounds = 0;
    while refused_at.elapsed() < Duration::from_secs(REFUSE_SECS - 1) {
        mcp_answers(&mcp);
        healthz_ok(&server);
        let status = mcp.text("check_auth_status");
        assert!(
            !is_connected(&status),
            "connected while fakewa refuses connections: {status}"
        );
        // A fresh session works too.
        let _ = server.initialize(&[], "2025-06-18");
        rounds += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(rounds > 0);

    // After the window it links up again by itself, with the same keys.
    mcp.wait_connected("state: connected after the refusal window", 90);
    wait_for(
        "the device logged in again",
        Duration::from_secs(30),
        || logged_in(&fw, &device).then_some(()),
    );
    assert_eq!(
        counter(&fw, "pairing_attempts"),
        pairings,
        "refused connections must not lead to a new pairing"
    );
}

#[test]
fn two_accounts_and_a_second_device_of_the_same_account() {
    let fw = start_fakewa();
    let alice = start_product(&fw, TempDir::new("alice"), "recover-alice");
    let bob = start_product(&fw, TempDir::new("bob"), "recover-bob");
    let alice_mcp = Mcp::open(&alice);
    let bob_mcp = Mcp::open(&bob);
    let alice_dev = link(&fw, &alice_mcp);
    let bob_dev = link(&fw, &bob_mcp);
    let alice_acc = account_of(&alice_dev);
    let bob_acc = account_of(&bob_dev);
    assert_ne!(
        alice_acc, bob_acc,
        "different push names are different accounts"
    );

    // Both connected at the same time.
    alice_mcp.wait_connected("alice connected", 30);
    bob_mcp.wait_connected("bob connected", 30);
    wait_for("both logged in at fakewa", Duration::from_secs(30), || {
        (logged_in(&fw, &alice_dev) && logged_in(&fw, &bob_dev)).then_some(())
    });
    assert_eq!(companions(&fw, &alice_acc), vec![alice_dev.clone()]);
    assert_eq!(companions(&fw, &bob_acc), vec![bob_dev.clone()]);

    // A third instance with alice's push name is a new device of alice's account.
    let alice2 = start_product(&fw, TempDir::new("alice2"), "recover-alice");
    let alice2_mcp = Mcp::open(&alice2);
    let alice2_dev = link(&fw, &alice2_mcp);
    assert_eq!(
        account_of(&alice2_dev),
        alice_acc,
        "same push name, same account"
    );
    assert_ne!(alice2_dev, alice_dev, "a new device id");
    let mut devices = companions(&fw, &alice_acc);
    devices.sort();
    let mut want = vec![alice_dev.clone(), alice2_dev.clone()];
    want.sort();
    assert_eq!(
        devices, want,
        "alice's account lists both companion devices"
    );
    assert_eq!(companions(&fw, &bob_acc), vec![bob_dev.clone()]);

    // All three stay connected and show their own numbers.
    wait_for("all three logged in", Duration::from_secs(30), || {
        (logged_in(&fw, &alice_dev) && logged_in(&fw, &alice2_dev) && logged_in(&fw, &bob_dev))
            .then_some(())
    });
    for (mcp, dev) in [
        (&alice_mcp, &alice_dev),
        (&alice2_mcp, &alice2_dev),
        (&bob_mcp, &bob_dev),
    ] {
        let status = mcp.wait_connected("still connected", 30);
        let number = dev.split([':', '@']).next().unwrap();
        assert!(status.contains(&format!("number: +{number}")), "{status}");
    }
}

#[test]
fn a_tool_that_needs_the_connection_says_not_connected_while_refused() {
    const REFUSE_SECS: u64 = 4;
    let fw = start_fakewa();
    let server = start_product(&fw, TempDir::new("notconn"), "recover-notconn");
    let mcp = Mcp::open(&server);
    link(&fw, &mcp);
    let (status, body) = control(
        &fw,
        "POST",
        "/control/refuse-connections",
        &format!(r#"{{"secs":{REFUSE_SECS}}}"#),
    );
    assert_eq!(status, 200, "refuse-connections: {body}");
    let (status, body) = control(&fw, "POST", "/control/disconnect", "{}");
    assert_eq!(status, 200, "disconnect: {body}");
    mcp.wait_status("a non-connected state", 10, |t| !is_connected(t));

    // force_resync needs a live connection: an isError naming the state and the next step.
    let result = mcp.call("force_resync", "{}");
    let text = result.path("content.0.text").str().unwrap_or_default();
    assert_eq!(result.get("isError").bool(), Some(true), "{text}");
    assert!(
        text.contains("WhatsApp is not connected (state: "),
        "force_resync while refused: {text}"
    );
    mcp_answers(&mcp);
    healthz_ok(&server);
    mcp.wait_connected("state: connected after the refusal window", 90);
}
