//! Messaging benchmark against fakewa and its peers (real whatsapp-rust clients inside fakewa;
//! loopback, Linux only: /proc). Prints one `name=value` line per figure, and `# ` comment lines
//! saying what each group measured; it asserts nothing about timings.
//!
//! - `send_*_ms` (p50, p90, p99, n): a `send_message` `tools/call` request sent → the peer's
//!   inbox (`GET /control/peers/:number/inbox`, polled in a tight loop while the call runs)
//!   shows that unique text (the sends rotate over 4 peers, so each inbox stays short);
//!   `send_call_*_ms` is the same call's own answer time (the server's ack included);
//! - `inbound_*_ms` (p50, p90, p99, n): just before the peer's `POST /control/peers/:n/send` →
//!   a `wait_for_messages` call already pending on another connection answers with that text;
//! - `history_*`: `POST /control/history` with `HISTORY_MESSAGES` messages (default 100,000)
//!   over `HISTORY_CONVERSATIONS` conversations (default 500) for the product's account; the
//!   ingest time runs from fakewa's answer to that POST (the notification has then been sent;
//!   building the blob is fakewa's time, printed apart as `history_post_ms`) until
//!   `/api/status`'s `messageCount` has grown by all of them; the peak RSS is the highest VmRSS
//!   sampled every 2 ms meanwhile (and the process's VmHWM).
//!
//!     bench/run_messaging.sh
//!
//! builds everything and runs it. Builds nothing itself. Binaries, overridable:
//!
//! - `NET_BIN` (default `target/bench-net/release/whatsapp-mcp-stream`): the release binary
//!   built with `--features test-network` (only it accepts `WA_WS_URL` and `WA_TEST_CA`);
//! - `FAKEWA` (default `target/debug/fakewa`).
//!
//! `SENDS` (default 200) and `INBOUND` (default 100) set the sample counts; `LOG_FILE` keeps
//! the product's stderr (`RUST_LOG` is passed through) for looking into a figure.

use miniserde::json::{Number, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const PROTOCOL: &str = "2025-06-18";
const PUSH_NAME: &str = "messaging-bench";
const PEER_NAME: &str = "bench-peer";
/// Peers the sends rotate over, so each inbox (re-read whole on every poll) stays short.
const SEND_PEERS: usize = 4;
/// Samples run first and left out of the figures (Signal session setup, caches).
const WARMUP: usize = 5;
/// Pause between two inbox polls (the poll's own round trip comes on top).
const POLL_PAUSE: Duration = Duration::from_micros(500);
/// How long a pending `wait_for_messages` is given to reach its wait before the peer sends.
const WAIT_SETTLE: Duration = Duration::from_millis(20);
/// `/api/status` and /proc sampling period during the history ingest.
const SAMPLE_EVERY: Duration = Duration::from_millis(2);

type Result<T> = std::result::Result<T, String>;

/// A child process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `/proc/PID/status` field in kB.
fn proc_status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} line in /proc/{pid}/status"))
}

impl Proc {
    fn check_alive(&mut self, what: &str) -> Result<()> {
        match self.0.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{what} exited: {status}")),
            Err(e) => Err(format!("cannot check {what}: {e}")),
        }
    }
}

/// A directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "wams-messaging-bench-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {dir:?}: {e}"))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): (status, headers, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    timeout: Duration,
) -> Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write {path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {text:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, head.to_string(), body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

fn parse(text: &str) -> Result<Value> {
    // An SSE body carries the answer in its last `data:` line.
    let payload = if text.contains("data: ") {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .next_back()
            .unwrap_or("")
    } else {
        text
    };
    miniserde::json::from_str(payload).map_err(|_| format!("not JSON: {payload:?}"))
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(o) => o.get(*k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn get_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    match get(v, path) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn get_num(v: &Value, path: &[&str]) -> Option<f64> {
    match get(v, path) {
        Some(Value::Number(Number::U64(n))) => Some(*n as f64),
        Some(Value::Number(Number::I64(n))) => Some(*n as f64),
        Some(Value::Number(Number::F64(n))) => Some(*n),
        _ => None,
    }
}

/// A JSON string literal.
fn js(s: &str) -> String {
    miniserde::json::to_string(&s)
}

/// fakewa with its listen and control addresses and CA.
struct FakeWa {
    proc: Proc,
    listen: SocketAddr,
    control: SocketAddr,
    ca: PathBuf,
    _dir: Scratch,
}

fn start_fakewa(bin: &str) -> Result<FakeWa> {
    let dir = Scratch::new("fakewa")?;
    let mut child = Command::new(bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(&dir.0)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {bin}: {e}; build it with cargo build -p fakewa"))?;
    let stdout = child.stdout.take().ok_or("fakewa stdout")?;
    let proc = Proc(child);
    let mut lines = BufReader::new(stdout).lines();
    let (mut listen, mut control, mut ca) = (None, None, None);
    while listen.is_none() || control.is_none() || ca.is_none() {
        let line = lines
            .next()
            .ok_or("fakewa exited before printing its addresses")?
            .map_err(|e| format!("fakewa stdout: {e}"))?;
        if let Some(v) = line.strip_prefix("listen=") {
            listen = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("control=") {
            control = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("ca=") {
            ca = Some(PathBuf::from(v));
        }
    }
    thread::spawn(move || for _ in lines {});
    let (Some(listen), Some(control), Some(ca)) = (listen, control, ca) else {
        return Err("fakewa printed no addresses".into());
    };
    Ok(FakeWa {
        proc,
        listen,
        control,
        ca,
        _dir: dir,
    })
}

impl FakeWa {
    /// A control request's raw answer body (200 only).
    fn control_raw(
        &self,
        method: &str,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<String> {
        let (status, _, body) = http(
            self.control,
            method,
            path,
            &[("Content-Type", "application/json")],
            body,
            timeout,
        )?;
        if status != 200 {
            return Err(format!("fakewa {method} {path}: HTTP {status} {body}"));
        }
        Ok(body)
    }

    fn control(&self, method: &str, path: &str, body: &str) -> Result<Value> {
        parse(&self.control_raw(method, path, body, Duration::from_secs(120))?)
    }
}

fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

const MCP_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

/// The product process.
struct Product {
    proc: Proc,
    addr: SocketAddr,
}

/// An MCP session on the product.
struct Session {
    addr: SocketAddr,
    id: String,
}

fn start_product(bin: &str, data: &Path, fw: &FakeWa) -> Result<Product> {
    let addr = free_addr()?;
    let mut cmd = Command::new(bin);
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data)
        .env("WA_WS_URL", format!("wss://{}/ws/chat", fw.listen))
        .env("WA_TEST_CA", &fw.ca)
        .env("WA_PUSH_NAME", PUSH_NAME)
        .env("SEND_RATE_PER_MIN", "0")
        .env("WA_SEND_DEDUP_WINDOW_MS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for var in [
        "ACCESS_TOKEN",
        "ALLOWED_HOSTS",
        "TRANSPORT",
        "LISTEN",
        "DATA_DIR",
        "WA_PROXY",
        "WA_WEB_VERSION",
        "READ_ONLY",
        "SEND_ALLOWLIST",
        "SEND_LOG_BODIES",
    ] {
        cmd.env_remove(var);
    }
    match std::env::var("LOG_FILE") {
        Ok(path) => {
            let file = std::fs::File::create(&path).map_err(|e| format!("create {path}: {e}"))?;
            cmd.stderr(file);
        }
        Err(_) => {
            cmd.env_remove("RUST_LOG").stderr(Stdio::null());
        }
    }
    let child = cmd.spawn().map_err(|e| {
        format!(
            "cannot run {bin}: {e}; build it with cargo build --release --features test-network"
        )
    })?;
    Ok(Product {
        proc: Proc(child),
        addr,
    })
}

impl Product {
    fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// A new MCP session, once the product answers `initialize`.
    fn session(&mut self) -> Result<Session> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL}","capabilities":{{}},"clientInfo":{{"name":"messaging_bench","version":"1"}}}}}}"#
        );
        loop {
            if let Ok((200, head, _)) = http(
                self.addr,
                "POST",
                "/mcp",
                &MCP_HEADERS,
                &init,
                Duration::from_secs(30),
            ) && let Some(id) = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("mcp-session-id")
                    .then(|| v.trim().to_string())
            }) {
                let session = Session {
                    addr: self.addr,
                    id,
                };
                session.rpc(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
                return Ok(session);
            }
            self.proc.check_alive("the product")?;
            if Instant::now() > deadline {
                return Err("the product did not answer initialize within 20 s".into());
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// `/api/status`'s `messageCount`.
    fn message_count(&self) -> Result<u64> {
        let (status, _, body) = http(
            self.addr,
            "GET",
            "/api/status",
            &[],
            "",
            Duration::from_secs(30),
        )?;
        if status != 200 {
            return Err(format!("/api/status: HTTP {status} {body}"));
        }
        get_num(&parse(&body)?, &["messageCount"])
            .map(|n| n as u64)
            .ok_or_else(|| format!("/api/status has no messageCount: {body}"))
    }
}

impl Session {
    fn rpc(&self, body: &str) -> Result<String> {
        let mut headers = MCP_HEADERS.to_vec();
        headers.push(("MCP-Session-Id", &self.id));
        headers.push(("MCP-Protocol-Version", PROTOCOL));
        let (status, _, body) = http(
            self.addr,
            "POST",
            "/mcp",
            &headers,
            body,
            Duration::from_secs(90),
        )?;
        if !(200..300).contains(&status) {
            return Err(format!("/mcp: HTTP {status} {body}"));
        }
        Ok(body)
    }

    /// The result of a tool call.
    fn call(&self, tool: &str, args: &str) -> Result<Value> {
        let body = self.rpc(&format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        ))?;
        let v = parse(&body)?;
        get(&v, &["result"])
            .cloned()
            .ok_or_else(|| format!("{tool}: no result in {body}"))
    }

    /// A tool's first text block, parsed as JSON; `isError` is an error.
    fn call_json(&self, tool: &str, args: &str) -> Result<Value> {
        let result = self.call(tool, args)?;
        let text = get_str(&result, &["content", "0", "text"]).unwrap_or("");
        if matches!(get(&result, &["isError"]), Some(Value::Bool(true))) {
            return Err(format!("{tool} {args}: {text}"));
        }
        parse(text)
    }

    fn connected(&self) -> Result<bool> {
        let result = self.call("check_auth_status", "{}")?;
        let text = get_str(&result, &["content", "0", "text"]).unwrap_or("");
        Ok(text.lines().any(|l| l.trim() == "state: connected"))
    }
}

/// Links a fresh product by QR through fakewa's mock phone; returns the account JID.
fn link(product: &mut Product, session: &Session, fw: &FakeWa) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let qr = loop {
        let result = session.call("get_qr_code", "{}")?;
        if get_str(&result, &["content", "0", "type"]) == Some("image")
            && let Some(qr) = get_str(&result, &["content", "1", "text"])
        {
            break qr.to_string();
        }
        product.proc.check_alive("the product")?;
        if Instant::now() > deadline {
            return Err("no QR code within 30 s".into());
        }
        thread::sleep(Duration::from_millis(20));
    };
    let scanned = fw.control("POST", "/control/scan", &format!(r#"{{"qr":{}}}"#, js(&qr)))?;
    let device = get_str(&scanned, &["jid"]).ok_or("scan answered no jid")?;
    let number = device.split([':', '@']).next().unwrap_or(device);
    let account = format!("{number}@s.whatsapp.net");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !session.connected()? {
        product.proc.check_alive("the product")?;
        if Instant::now() > deadline {
            return Err("not connected within 60 s of the scan".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(account)
}

/// A peer's (jid, number).
fn create_peer(fw: &FakeWa, name: &str) -> Result<(String, String)> {
    let peer = fw.control(
        "POST",
        "/control/peers",
        &format!(r#"{{"name":{}}}"#, js(name)),
    )?;
    let jid = get_str(&peer, &["jid"]).ok_or("peer without jid")?;
    let number = get_str(&peer, &["number"]).ok_or("peer without number")?;
    Ok((jid.to_string(), number.to_string()))
}

fn figure(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
}

fn note(text: &str) {
    println!("# {text}");
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_count(name: &str, default: usize) -> Result<usize> {
    env_or(name, &default.to_string())
        .parse()
        .map_err(|_| format!("{name} is not a number"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p90, p99 (nearest rank), min, max and n of millisecond samples, as `prefix_*` figures.
fn percentiles(prefix: &str, samples: &[f64]) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        figure(&format!("{prefix}_n"), 0);
        return;
    }
    let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    figure(&format!("{prefix}_p50_ms"), format!("{:.2}", rank(0.50)));
    figure(&format!("{prefix}_p90_ms"), format!("{:.2}", rank(0.90)));
    figure(&format!("{prefix}_p99_ms"), format!("{:.2}", rank(0.99)));
    figure(&format!("{prefix}_min_ms"), format!("{:.2}", s[0]));
    figure(
        &format!("{prefix}_max_ms"),
        format!("{:.2}", s[s.len() - 1]),
    );
    figure(&format!("{prefix}_n"), s.len());
}

/// `send_message` → the peer's inbox, rotating over `peers` (jid, number); the first send to
/// each is a warm-up. Returns (round trips, call answer times, mean poll round trip), all in
/// ms, warm-up samples left out.
fn bench_sends(
    fw: &FakeWa,
    session: &Session,
    peers: &[(String, String)],
    count: usize,
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let warmup = WARMUP.max(peers.len());
    let (mut trips, mut calls) = (Vec::new(), Vec::new());
    let (mut polls, mut poll_time) = (0u64, Duration::ZERO);
    for i in 0..warmup + count {
        let (peer_jid, peer_number) = &peers[i % peers.len()];
        let inbox_path = format!("/control/peers/{peer_number}/inbox");
        let text = format!("bench send {} {i}", std::process::id());
        let needle = format!("\"text\":{}", js(&text));
        let args = format!(
            r#"{{"recipient_jid":{},"message":{}}}"#,
            js(peer_jid),
            js(&text)
        );
        let (trip, call) = thread::scope(|s| -> Result<(Duration, Duration)> {
            let started = Instant::now();
            let args = &args;
            let caller = s.spawn(move || {
                let answer = session.call_json("send_message", args);
                (answer, started.elapsed())
            });
            let deadline = started + Duration::from_secs(60);
            let seen = loop {
                let poll_start = Instant::now();
                let body = fw.control_raw("GET", &inbox_path, "", Duration::from_secs(30))?;
                let now = Instant::now();
                polls += 1;
                poll_time += now - poll_start;
                if body.contains(&needle) {
                    break now - started;
                }
                if now > deadline {
                    return Err(format!("send {i} never reached the peer's inbox"));
                }
                thread::sleep(POLL_PAUSE);
            };
            let (answer, call) = caller
                .join()
                .map_err(|_| "the send_message thread panicked".to_string())?;
            let answer = answer?;
            get_str(&answer, &["messageId"])
                .ok_or_else(|| format!("send_message answered no messageId: {answer:?}"))?;
            Ok((seen, call))
        })?;
        if i >= warmup {
            trips.push(ms(trip));
            calls.push(ms(call));
        }
    }
    let poll_ms = ms(poll_time) / polls.max(1) as f64;
    Ok((trips, calls, poll_ms))
}

/// A peer's send → a pending `wait_for_messages` answers. Returns ms samples, warm-up left out.
fn bench_inbound(
    fw: &FakeWa,
    waiter: &Session,
    own: &str,
    peer_jid: &str,
    peer_number: &str,
    count: usize,
) -> Result<Vec<f64>> {
    let send_path = format!("/control/peers/{peer_number}/send");
    // A cursor from now (a 1 s wait that times out).
    let first = waiter.call_json("wait_for_messages", r#"{"timeout_secs":1}"#)?;
    let mut cursor = get_str(&first, &["cursor"])
        .ok_or("wait_for_messages answered no cursor")?
        .to_string();
    let mut samples = Vec::new();
    for i in 0..WARMUP + count {
        let text = format!("bench inbound {} {i}", std::process::id());
        let args = format!(
            r#"{{"chat_jid":{},"since":{},"timeout_secs":30}}"#,
            js(peer_jid),
            js(&cursor)
        );
        let (latency, next) = thread::scope(|s| -> Result<(Duration, String)> {
            let waiting = s.spawn(|| {
                let answer = waiter.call_json("wait_for_messages", &args);
                (answer, Instant::now())
            });
            thread::sleep(WAIT_SETTLE);
            let body = format!(r#"{{"to":{},"text":{}}}"#, js(own), js(&text));
            let started = Instant::now();
            fw.control_raw("POST", &send_path, &body, Duration::from_secs(60))?;
            let (answer, answered) = waiting
                .join()
                .map_err(|_| "the wait_for_messages thread panicked".to_string())?;
            let answer = answer?;
            let has_it = match get(&answer, &["messages"]) {
                Some(Value::Array(msgs)) => msgs
                    .iter()
                    .any(|m| get_str(m, &["body"]) == Some(text.as_str())),
                _ => false,
            };
            if !has_it {
                return Err(format!(
                    "wait_for_messages answered without inbound {i}: {answer:?}"
                ));
            }
            let next = get_str(&answer, &["cursor"])
                .ok_or("wait_for_messages answered no cursor")?
                .to_string();
            Ok((answered.saturating_duration_since(started), next))
        })?;
        cursor = next;
        if i >= WARMUP {
            samples.push(ms(latency));
        }
    }
    Ok(samples)
}

/// The `/control/history` body: `messages` messages over `conversations` chats of strangers.
fn history_body(account: &str, conversations: usize, messages: usize) -> String {
    let mut body = String::with_capacity(messages * 160);
    body.push_str(&format!(
        r#"{{"account":{},"sync_type":"initial_bootstrap","conversations":["#,
        js(account)
    ));
    for c in 0..conversations {
        // Spread `messages` as evenly as possible.
        let n = messages / conversations + usize::from(c < messages % conversations);
        if c > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"jid":"1555300{c:04}@s.whatsapp.net","name":"History Contact {c}","unread_count":0,"messages":["#
        ));
        for m in 0..n {
            if m > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"id":"HB{c:04}X{m:06}","from_me":{},"text":"history message {m} in conversation {c} about the weather and the news","timestamp":{}}}"#,
                m % 3 == 0,
                1_600_000_000 + c * 100_000 + m
            ));
        }
        body.push_str("]}");
    }
    body.push_str("]}");
    body
}

/// What the ingest sampler saw.
struct Ingest {
    /// POST answered → the count first grew / reached the target.
    first_ms: Option<f64>,
    done_ms: Option<f64>,
    stored: u64,
    peak_rss_kb: u64,
}

fn bench_history(
    fw: &FakeWa,
    product: &mut Product,
    account: &str,
    conversations: usize,
    messages: usize,
) -> Result<()> {
    let number = account.split('@').next().unwrap_or(account);
    let body = history_body(number, conversations, messages);
    let before = product.message_count()?;
    let rss_before = proc_status_kb(product.pid(), "VmRSS:")?;
    let hwm_before = proc_status_kb(product.pid(), "VmHWM:")?;
    let pid = product.pid();

    // RSS sampler, from before the POST (the product may start downloading before fakewa
    // answers).
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(kb) = proc_status_kb(pid, "VmRSS:") {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                thread::sleep(SAMPLE_EVERY);
            }
        })
    };
    let posted = Instant::now();
    let answer = fw.control_raw("POST", "/control/history", &body, Duration::from_secs(600));
    let answered = Instant::now();
    drop(body);
    let outcome = answer.and_then(|a| {
        let sent_to = parse(&a)?;
        match get(&sent_to, &["sent_to"]) {
            Some(Value::Array(d)) if !d.is_empty() => Ok(()),
            _ => Err(format!("/control/history went to no device: {a}")),
        }
    });
    let ingest = outcome.and_then(|()| {
        let target = before + messages as u64;
        let mut seen = Ingest {
            first_ms: None,
            done_ms: None,
            stored: 0,
            peak_rss_kb: 0,
        };
        let mut last_growth = Instant::now();
        loop {
            let count = product.message_count()?;
            let now = Instant::now();
            let stored = count.saturating_sub(before);
            if stored > seen.stored {
                seen.stored = stored;
                last_growth = now;
                seen.first_ms.get_or_insert(ms(now - answered));
            }
            if count >= target {
                seen.done_ms = Some(ms(now - answered));
                break;
            }
            product.proc.check_alive("the product")?;
            // Nothing more for 60 s: report what went through.
            if now - last_growth > Duration::from_secs(60) {
                break;
            }
            thread::sleep(SAMPLE_EVERY);
        }
        Ok(seen)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let mut ingest = ingest?;
    ingest.peak_rss_kb = peak.load(Ordering::Relaxed);
    let hwm_after = proc_status_kb(pid, "VmHWM:")?;

    note(&format!(
        "history: {messages} messages over {conversations} conversations in one \
         /control/history push (one HistorySync blob); ingest time from fakewa's answer to the \
         POST until /api/status messageCount grew by all of them (sampled every {} ms)",
        SAMPLE_EVERY.as_millis()
    ));
    figure("history_messages", messages);
    figure("history_conversations", conversations);
    figure("history_post_ms", format!("{:.1}", ms(answered - posted)));
    figure("history_stored", ingest.stored);
    if let Some(first) = ingest.first_ms {
        figure("history_first_stored_ms", format!("{first:.1}"));
    }
    match ingest.done_ms {
        Some(done) => {
            figure("history_ingest_ms", format!("{done:.1}"));
            figure(
                "history_ingest_msgs_per_s",
                format!("{:.0}", messages as f64 / (done / 1000.0)),
            );
        }
        None => note(&format!(
            "history: only {} of {messages} stored (no growth for 60 s)",
            ingest.stored
        )),
    }
    figure("history_rss_before_kb", rss_before);
    // VmHWM can trail the sampled VmRSS a little (per-thread RSS counters are folded in lazily).
    figure(
        "history_ingest_peak_rss_kb",
        ingest.peak_rss_kb.max(hwm_after),
    );
    figure("history_vmhwm_before_kb", hwm_before);
    figure("history_vmhwm_after_kb", hwm_after);
    Ok(())
}

fn run() -> Result<()> {
    let net_bin = env_or("NET_BIN", "target/bench-net/release/whatsapp-mcp-stream");
    let fakewa_bin = env_or("FAKEWA", "target/debug/fakewa");
    let sends = env_count("SENDS", 200)?;
    let inbound = env_count("INBOUND", 100)?;
    let history_messages = env_count("HISTORY_MESSAGES", 100_000)?;
    let history_conversations = env_count("HISTORY_CONVERSATIONS", 500)?.max(1);
    for (var, path) in [("NET_BIN", &net_bin), ("FAKEWA", &fakewa_bin)] {
        if !Path::new(path).is_file() {
            return Err(format!(
                "no binary at {path} ({var}): run bench/run_messaging.sh, or set {var}"
            ));
        }
    }

    let mut fw = start_fakewa(&fakewa_bin)?;
    let data = Scratch::new("data")?;
    let mut product = start_product(&net_bin, &data.0, &fw)?;
    let session = product.session()?;
    let own = link(&mut product, &session, &fw)?;
    let peers = (0..SEND_PEERS)
        .map(|k| create_peer(&fw, &format!("{PEER_NAME}-{k}")))
        .collect::<Result<Vec<_>>>()?;
    let (peer_jid, peer_number) = &peers[0];
    note(&format!(
        "product {own} (pid {}), {} peers; fakewa at {fakewa_bin}, product at {net_bin}",
        product.pid(),
        peers.len(),
    ));

    if sends > 0 {
        let (trips, calls, poll_ms) = bench_sends(&fw, &session, &peers, sends)?;
        note(&format!(
            "send: send_message tools/call sent → the text in the peer's inbox; the inbox is \
             polled every {} µs plus one poll round trip (mean {poll_ms:.2} ms), so a figure \
             is late by up to about {:.2} ms; sends rotate over {} peers, the first {} sends \
             (warm-up) left out",
            POLL_PAUSE.as_micros(),
            poll_ms + POLL_PAUSE.as_secs_f64() * 1000.0,
            peers.len(),
            WARMUP.max(peers.len()),
        ));
        percentiles("send", &trips);
        percentiles("send_call", &calls);
        figure("send_inbox_poll_ms", format!("{poll_ms:.2}"));
        fw.proc.check_alive("fakewa")?;
    }

    if inbound > 0 {
        let waiter = product.session()?;
        let samples = bench_inbound(&fw, &waiter, &own, peer_jid, peer_number, inbound)?;
        note(&format!(
            "inbound: just before POST /control/peers/:n/send → the answer of a \
             wait_for_messages pending on another connection (started {} ms before); \
             {WARMUP} warm-up messages left out",
            WAIT_SETTLE.as_millis()
        ));
        percentiles("inbound", &samples);
        fw.proc.check_alive("fakewa")?;
    }

    if history_messages > 0 {
        bench_history(
            &fw,
            &mut product,
            &own,
            history_conversations,
            history_messages,
        )?;
    }
    product.proc.check_alive("the product")?;
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) is ignored.
    if let Err(e) = run() {
        eprintln!("messaging_bench: {e}");
        std::process::exit(1);
    }
}
