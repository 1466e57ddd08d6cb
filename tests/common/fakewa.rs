//! fakewa for the product's end-to-end tests: starting the fakewa binary, its control API, and
//! an MCP session on a product instance linked to it.
//!
//! fakewa is a workspace package, not a dependency (it must not change the product's features),
//! so its binary is looked up next to ours in the target dir and built once with
//! `cargo build -p fakewa` when it is missing. Waits poll a condition until a deadline.
#![allow(dead_code)]

use super::{Server, TempDir, serde_like::Json, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A fakewa process; killed on drop.
pub struct FakeWa {
    child: Child,
    pub listen: SocketAddr,
    pub control: SocketAddr,
    pub ca: PathBuf,
    _dir: TempDir,
}

impl Drop for FakeWa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn fakewa_bin() -> PathBuf {
    let ours = PathBuf::from(super::BIN);
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

pub fn start_fakewa() -> FakeWa {
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
pub fn control(fw: &FakeWa, method: &str, path: &str, body: &str) -> (u16, String) {
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

pub fn fakewa_state(fw: &FakeWa) -> Json {
    let (status, body) = control(fw, "GET", "/control/state", "");
    assert_eq!(status, 200, "{body}");
    Json::parse(&body).expect("state JSON")
}

pub fn counter(fw: &FakeWa, name: &str) -> f64 {
    fakewa_state(fw)
        .path(&format!("counters.{name}"))
        .num()
        .unwrap_or_else(|| panic!("no counters.{name} in /control/state"))
}

pub fn start_product(fw: &FakeWa, data: TempDir, push_name: &str) -> Server {
    start_product_with(fw, data, push_name, &[])
}

/// [`start_product`] with more environment variables.
pub fn start_product_with(
    fw: &FakeWa,
    data: TempDir,
    push_name: &str,
    env: &[(&str, &str)],
) -> Server {
    let url = format!("wss://{}/ws/chat", fw.listen);
    let ca = fw.ca.display().to_string();
    let mut all = vec![
        ("WA_WS_URL", url.as_str()),
        ("WA_TEST_CA", ca.as_str()),
        ("WA_PUSH_NAME", push_name),
    ];
    all.extend_from_slice(env);
    Server::start_in("127.0.0.1:0", data, &all)
}

/// An MCP session on the product.
pub struct Mcp<'a> {
    pub server: &'a Server,
    pub session: String,
}

impl Mcp<'_> {
    pub fn open(server: &Server) -> Mcp<'_> {
        let session = server.initialize(&[], "2025-06-18");
        Mcp { server, session }
    }

    /// The result of a tool call.
    pub fn call(&self, tool: &str, args: &str) -> Json {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        );
        let r = self.server.rpc(&self.session, &body);
        assert_eq!(r.status, 200, "{tool}: {}", r.text());
        let j = r.json();
        assert!(j.get("error").is_null(), "{tool}: {}", r.text());
        j.get("result")
    }

    pub fn text(&self, tool: &str) -> String {
        let result = self.call(tool, "{}");
        result
            .path("content.0.text")
            .str()
            .unwrap_or_else(|| panic!("{tool}: no text block"))
    }

    /// Polls check_auth_status until `ok` accepts its text.
    pub fn wait_status(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
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

    pub fn wait_connected(&self, what: &str, secs: u64) -> String {
        self.wait_status(what, secs, is_connected)
    }
}

pub fn is_connected(status: &str) -> bool {
    status.lines().any(|l| l.trim() == "state: connected")
}

/// get_qr_code until it returns the image and the raw payload; returns the payload.
pub fn wait_qr(mcp: &Mcp) -> String {
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
                std::thread::sleep(Duration::from_millis(50));
                None
            }
        },
    )
}

/// get_qr_code until it returns the image; returns the PNG bytes and the raw payload block.
pub fn wait_qr_image(mcp: &Mcp) -> (Vec<u8>, String) {
    use base64::Engine as _;
    wait_for(
        "a QR image from get_qr_code",
        Duration::from_secs(30),
        || {
            let result = mcp.call("get_qr_code", "{}");
            let content = result.get("content");
            if content.path("0.type").str().as_deref() != Some("image") {
                std::thread::sleep(Duration::from_millis(50));
                return None;
            }
            let data = content.path("0.data").str().unwrap_or_default();
            let png = base64::engine::general_purpose::STANDARD
                .decode(data)
                .expect("the image block is base64");
            Some((png, content.path("1.text").str().expect("a payload block")))
        },
    )
}

/// Decodes a QR code PNG back to its text: the PNG to 8-bit luma (any color type or bit depth),
/// then rqrr finds and reads the code.
pub fn decode_qr_png(png_bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    // Palette and low bit depths expand to 8 bits per sample; 16-bit samples are cut to 8.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("a frame size")];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => panic!("EXPAND leaves no indexed color"),
    };
    assert_eq!(
        info.bit_depth,
        png::BitDepth::Eight,
        "after EXPAND | STRIP_16"
    );
    let luma = |x: usize, y: usize| -> u8 {
        let px = &buf[(y * info.line_size) + x * channels..][..channels];
        let (v, alpha) = match channels {
            1 => (px[0] as u32, 255),
            2 => (px[0] as u32, px[1] as u32),
            // ITU-R BT.601 weights.
            _ => (
                (299 * px[0] as u32 + 587 * px[1] as u32 + 114 * px[2] as u32) / 1000,
                if channels == 4 { px[3] as u32 } else { 255 },
            ),
        };
        // Composite over white, as a viewer would show it.
        ((v * alpha + 255 * (255 - alpha)) / 255) as u8
    };
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, luma);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (_meta, text) = grids[0].decode().expect("the QR code decodes");
    text
}

/// Links the product by QR and waits until it is connected; returns the device JID.
pub fn link(fw: &FakeWa, mcp: &Mcp) -> String {
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
pub fn account_of(device: &str) -> String {
    let number = device.split([':', '@']).next().unwrap();
    format!("{number}@s.whatsapp.net")
}

/// The companion devices (device id ≠ 0) fakewa lists for an account.
pub fn companions(fw: &FakeWa, account: &str) -> Vec<String> {
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
pub fn logged_in(fw: &FakeWa, device: &str) -> bool {
    fakewa_state(fw).get("connections").arr().iter().any(|c| {
        c.get("jid").str().as_deref() == Some(device)
            && c.get("phase").str().as_deref() == Some("logged_in")
    })
}

pub fn healthz_ok(server: &Server) {
    let r = server.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200, "/healthz: {}", r.text());
}

/// `ping` and `tools/list` answer in the session.
pub fn mcp_answers(mcp: &Mcp) {
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

// --- Peers, history sync and tool JSON (messaging tests) ---

/// A peer client that fakewa runs (`POST /control/peers`).
#[derive(Debug, Clone)]
pub struct Peer {
    pub jid: String,
    pub lid: String,
    pub number: String,
}

/// Creates (links and connects) a peer named `name`.
pub fn create_peer(fw: &FakeWa, name: &str) -> Peer {
    let (status, body) = control(
        fw,
        "POST",
        "/control/peers",
        &format!(r#"{{"name":"{name}"}}"#),
    );
    assert_eq!(status, 200, "create peer {name}: {body}");
    let j = Json::parse(&body).expect("peer JSON");
    Peer {
        jid: j.get("jid").str().expect("peer jid"),
        lid: j.get("lid").str().unwrap_or_default(),
        number: j.get("number").str().expect("peer number"),
    }
}

/// `POST /control/peers/:number/send` with a raw JSON body; returns the answer's `id`.
pub fn peer_send(fw: &FakeWa, peer: &Peer, body: &str) -> String {
    let (status, answer) = control(
        fw,
        "POST",
        &format!("/control/peers/{}/send", peer.number),
        body,
    );
    assert_eq!(status, 200, "peer send {body}: {answer}");
    Json::parse(&answer)
        .and_then(|j| j.get("id").str())
        .unwrap_or_else(|| panic!("peer send answers an id: {answer}"))
}

/// The messages a peer has received (`GET /control/peers/:number/inbox`).
pub fn peer_inbox(fw: &FakeWa, peer: &Peer) -> Vec<Json> {
    peer_inbox_answer(fw, peer).get("messages").arr()
}

/// The receipts the peer got for its own messages (`receipts` in its inbox).
pub fn peer_receipts(fw: &FakeWa, peer: &Peer) -> Vec<Json> {
    peer_inbox_answer(fw, peer).get("receipts").arr()
}

/// `GET /control/peers/:number/inbox`, parsed.
fn peer_inbox_answer(fw: &FakeWa, peer: &Peer) -> Json {
    let (status, body) = control(
        fw,
        "GET",
        &format!("/control/peers/{}/inbox", peer.number),
        "",
    );
    assert_eq!(status, 200, "peer inbox: {body}");
    Json::parse(&body).expect("inbox JSON")
}

/// Waits until the peer's inbox holds a message `ok` accepts; returns it.
pub fn wait_peer_message(fw: &FakeWa, peer: &Peer, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
    wait_for(what, Duration::from_secs(30), || {
        let found = peer_inbox(fw, peer).into_iter().find(|m| ok(m));
        if found.is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        found
    })
}

impl Mcp<'_> {
    /// A tool's first text block parsed as JSON (panics on `isError`).
    pub fn json(&self, tool: &str, args: &str) -> Json {
        let result = self.call(tool, args);
        let text = result.path("content.0.text").str().unwrap_or_default();
        assert!(
            result.get("isError").bool() != Some(true),
            "{tool} {args}: {text}"
        );
        Json::parse(&text).unwrap_or_else(|| panic!("{tool}: not JSON: {text}"))
    }

    /// Polls a tool until `ok` accepts its JSON; returns that JSON.
    pub fn wait_json(
        &self,
        what: &str,
        tool: &str,
        args: &str,
        ok: impl Fn(&Json) -> bool,
    ) -> Json {
        wait_for(what, Duration::from_secs(30), || {
            let j = self.json(tool, args);
            if ok(&j) {
                Some(j)
            } else {
                std::thread::sleep(Duration::from_millis(50));
                None
            }
        })
    }
}
