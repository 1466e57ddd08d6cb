//! WhatsApp engine benchmark against fakewa (loopback, Linux only: /proc). Prints one
//! `name=value` line per figure:
//!
//! - `connect_ms`: process start → `check_auth_status` says `state: connected`, for an already
//!   linked device (the median of three restarts; `connect_ms_min` and `connect_ms_max` too);
//! - `idle_connected_rss_kb`: VmRSS after 60 s connected and idle;
//! - `binary_bytes`: the size of the stripped release binary.
//!
//!     bench/run_engine.sh
//!
//! builds everything and runs it. Builds nothing itself. Three binaries, all overridable:
//!
//! - `NET_BIN` (default `target/bench-net/release/whatsapp-mcp-stream`): the release binary
//!   built with `--features test-network`, since only that build accepts `WA_WS_URL` and
//!   `WA_TEST_CA`; it is the one that is started, linked, timed and measured;
//! - `BIN` (default `target/release/whatsapp-mcp-stream`): the real release artifact (no
//!   test-network), whose size is `binary_bytes`;
//! - `FAKEWA` (default `target/debug/fakewa`).
//!
//! `IDLE_SECS` (default 60) shortens the idle wait for a quick try.

use miniserde::json::{Number, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const PROTOCOL: &str = "2025-06-18";
const PUSH_NAME: &str = "engine-bench";
const RESTARTS: usize = 3;

type Result<T> = std::result::Result<T, String>;

/// A child process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn check_alive(&mut self, what: &str) -> Result<()> {
        match self.0.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{what} exited: {status}")),
            Err(e) => Err(format!("cannot check {what}: {e}")),
        }
    }

    fn rss_kb(&self) -> Result<u64> {
        let pid = self.0.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS line in /proc/PID/status".into())
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
            "wams-engine-bench-{tag}-{}-{nanos}",
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
) -> Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
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
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
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
    Ok(FakeWa {
        proc,
        listen: listen.unwrap(),
        control: control.unwrap(),
        ca: ca.unwrap(),
        _dir: dir,
    })
}

impl FakeWa {
    fn control(&self, method: &str, path: &str, body: &str) -> Result<Value> {
        let (status, _, body) = http(
            self.control,
            method,
            path,
            &[("Content-Type", "application/json")],
            body,
        )?;
        if status != 200 {
            return Err(format!("fakewa {path}: HTTP {status} {body}"));
        }
        parse(&body)
    }
}

fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

/// The product process and its MCP session.
struct Product {
    proc: Proc,
    addr: SocketAddr,
    session: String,
}

/// Spawns the product over `data` and returns it once it answers `initialize`, with the spawn
/// instant.
fn start_product(bin: &str, data: &Path, fw: &FakeWa) -> Result<(Product, Instant)> {
    let addr = free_addr()?;
    let mut cmd = Command::new(bin);
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data)
        .env("WA_WS_URL", format!("wss://{}/ws/chat", fw.listen))
        .env("WA_TEST_CA", &fw.ca)
        .env("WA_PUSH_NAME", PUSH_NAME)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for var in [
        "ACCESS_TOKEN",
        "ALLOWED_HOSTS",
        "TRANSPORT",
        "LISTEN",
        "DATA_DIR",
        "RUST_LOG",
        "WA_PROXY",
        "WA_WEB_VERSION",
    ] {
        cmd.env_remove(var);
    }
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| {
        format!(
            "cannot run {bin}: {e}; build it with cargo build --release --features test-network"
        )
    })?;
    let mut proc = Proc(child);
    let deadline = started + Duration::from_secs(20);
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL}","capabilities":{{}},"clientInfo":{{"name":"engine_bench","version":"1"}}}}}}"#
    );
    loop {
        if let Ok((200, head, _)) = http(addr, "POST", "/mcp", &MCP_HEADERS, &init)
            && let Some(session) = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("mcp-session-id")
                    .then(|| v.trim().to_string())
            })
        {
            let product = Product {
                proc,
                addr,
                session,
            };
            product.rpc(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
            return Ok((product, started));
        }
        proc.check_alive("the product")?;
        if Instant::now() > deadline {
            return Err("the product did not answer initialize within 20 s".into());
        }
        thread::sleep(Duration::from_millis(1));
    }
}

const MCP_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

impl Product {
    fn rpc(&self, body: &str) -> Result<String> {
        let mut headers = MCP_HEADERS.to_vec();
        headers.push(("MCP-Session-Id", &self.session));
        headers.push(("MCP-Protocol-Version", PROTOCOL));
        let (status, _, body) = http(self.addr, "POST", "/mcp", &headers, body)?;
        if !(200..300).contains(&status) {
            return Err(format!("/mcp: HTTP {status} {body}"));
        }
        Ok(body)
    }

    /// The result of a tool call.
    fn call(&self, tool: &str) -> Result<Value> {
        let body = self.rpc(&format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        ))?;
        let v = parse(&body)?;
        get(&v, &["result"])
            .cloned()
            .ok_or_else(|| format!("{tool}: no result in {body}"))
    }

    fn connected(&self) -> Result<bool> {
        let result = self.call("check_auth_status")?;
        let text = get_str(&result, &["content", "0", "text"]).unwrap_or("");
        Ok(text.lines().any(|l| l.trim() == "state: connected"))
    }

    /// Polls check_auth_status until connected; returns when it first said so.
    fn wait_connected(&mut self, within: Duration) -> Result<Instant> {
        let deadline = Instant::now() + within;
        loop {
            if self.connected()? {
                return Ok(Instant::now());
            }
            self.proc.check_alive("the product")?;
            if Instant::now() > deadline {
                return Err(format!("not connected within {within:?}"));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Links a fresh product by QR through fakewa's mock phone.
fn link(bin: &str, data: &Path, fw: &FakeWa) -> Result<()> {
    let (mut product, _) = start_product(bin, data, fw)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let qr = loop {
        let result = product.call("get_qr_code")?;
        if get_str(&result, &["content", "0", "type"]) == Some("image")
            && let Some(qr) = get_str(&result, &["content", "1", "text"])
        {
            break qr.to_string();
        }
        if Instant::now() > deadline {
            return Err("no QR code within 30 s".into());
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut body = String::from(r#"{"qr":"#);
    body.push_str(&miniserde::json::to_string(&qr));
    body.push('}');
    let scanned = fw.control("POST", "/control/scan", &body)?;
    get_str(&scanned, &["jid"]).ok_or("scan answered no jid")?;
    product.wait_connected(Duration::from_secs(60))?;
    Ok(())
}

fn figure(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn run() -> Result<()> {
    let bin = env_or("BIN", "target/release/whatsapp-mcp-stream");
    let net_bin = env_or("NET_BIN", "target/bench-net/release/whatsapp-mcp-stream");
    let fakewa_bin = env_or("FAKEWA", "target/debug/fakewa");
    let idle_secs: u64 = env_or("IDLE_SECS", "60")
        .parse()
        .map_err(|_| "IDLE_SECS is not a number")?;
    for (var, path) in [
        ("BIN", &bin),
        ("NET_BIN", &net_bin),
        ("FAKEWA", &fakewa_bin),
    ] {
        if !Path::new(path).is_file() {
            return Err(format!(
                "no binary at {path} ({var}): run bench/run_engine.sh, or set {var}"
            ));
        }
    }

    let mut fw = start_fakewa(&fakewa_bin)?;
    let data = Scratch::new("data")?;
    link(&net_bin, &data.0, &fw)?;
    let pairings = fw
        .control("GET", "/control/state", "")
        .map(|s| get_num(&s, &["counters", "pairing_attempts"]))?;

    // Restarts of the linked device: spawn → connected.
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..RESTARTS {
        drop(last.take());
        let (mut product, started) = start_product(&net_bin, &data.0, &fw)?;
        let at = product.wait_connected(Duration::from_secs(60))?;
        times.push(at.duration_since(started));
        last = Some(product);
    }
    let state = fw.control("GET", "/control/state", "")?;
    if get_num(&state, &["counters", "pairing_attempts"]) != pairings {
        return Err("a restart paired again; the figures are not for a linked device".into());
    }
    times.sort();
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    figure("connect_ms", ms(times[times.len() / 2]));
    figure("connect_ms_min", ms(times[0]));
    figure("connect_ms_max", ms(times[times.len() - 1]));

    // Connected and idle.
    let mut product = last.ok_or("no product")?;
    let idle_until = Instant::now() + Duration::from_secs(idle_secs);
    while Instant::now() < idle_until {
        thread::sleep(Duration::from_millis(500));
        product.proc.check_alive("the product")?;
        fw.proc.check_alive("fakewa")?;
    }
    if !product.connected()? {
        return Err(format!("not connected after {idle_secs} s idle"));
    }
    figure("idle_secs", idle_secs);
    figure("idle_connected_rss_kb", product.proc.rss_kb()?);
    drop(product);

    let size = std::fs::metadata(&bin)
        .map_err(|e| format!("stat {bin}: {e}"))?
        .len();
    figure("binary_bytes", size);
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument (a filter) is ignored.
    if let Err(e) = run() {
        eprintln!("engine_bench: {e}");
        std::process::exit(1);
    }
}
