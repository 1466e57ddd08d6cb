//! What the fakewa-driven benches (engine_bench, messaging_bench) share: child processes and
//! scratch directories removed on drop, raw HTTP/1.1 over loopback, JSON reading with
//! miniserde, fakewa's start and control API, the product's command line and its MCP session.
//! Each bench is its own crate and includes this file with `#[path = "support/mod.rs"] mod
//! support;`. It holds no figures and no bench logic: those stay in the benches.
#![allow(dead_code)]

use miniserde::json::{Number, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub const PROTOCOL: &str = "2025-06-18";

pub type Result<T> = std::result::Result<T, String>;

/// A child process, killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn check_alive(&mut self, what: &str) -> Result<()> {
        match self.0.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{what} exited: {status}")),
            Err(e) => Err(format!("cannot check {what}: {e}")),
        }
    }
}

/// A `/proc/PID/status` field in kB (`field` with its colon: `"VmRSS:"`).
pub fn proc_status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} line in /proc/{pid}/status"))
}

/// A directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `wams-<bench>-<tag>-<pid>-<nanos>` under the temp dir.
    pub fn new(tag: &str) -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "wams-{}-{tag}-{}-{nanos}",
            env!("CARGO_CRATE_NAME"),
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
pub fn http(
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

pub fn parse(text: &str) -> Result<Value> {
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

pub fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| match v {
        Value::Object(o) => o.get(*k),
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

pub fn get_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    match get(v, path) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

pub fn get_num(v: &Value, path: &[&str]) -> Option<f64> {
    match get(v, path) {
        Some(Value::Number(Number::U64(n))) => Some(*n as f64),
        Some(Value::Number(Number::I64(n))) => Some(*n as f64),
        Some(Value::Number(Number::F64(n))) => Some(*n),
        _ => None,
    }
}

/// A JSON string literal.
pub fn js(s: &str) -> String {
    miniserde::json::to_string(&s)
}

/// fakewa with its listen and control addresses and CA.
pub struct FakeWa {
    pub proc: Proc,
    pub listen: SocketAddr,
    pub control: SocketAddr,
    pub ca: PathBuf,
    _dir: Scratch,
}

pub fn start_fakewa(bin: &str) -> Result<FakeWa> {
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
    pub fn control_raw(
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

    pub fn control(&self, method: &str, path: &str, body: &str) -> Result<Value> {
        parse(&self.control_raw(method, path, body, Duration::from_secs(120))?)
    }
}

pub fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

/// The product's command line against `fw`, listening on `addr`, with the environment
/// variables that would change what it does removed; stdin and stdout go nowhere, stderr is the
/// caller's to set.
pub fn product_command(
    bin: &str,
    addr: SocketAddr,
    data: &Path,
    fw: &FakeWa,
    push_name: &str,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data)
        .env("WA_WS_URL", format!("wss://{}/ws/chat", fw.listen))
        .env("WA_TEST_CA", &fw.ca)
        .env("WA_PUSH_NAME", push_name)
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
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// The error for a product binary that would not start.
pub fn spawn_error(bin: &str, e: std::io::Error) -> String {
    format!("cannot run {bin}: {e}; build it with cargo build --release --features test-network")
}

const MCP_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/json"),
    ("Accept", "application/json, text/event-stream"),
];

/// An MCP session on the product.
pub struct Session {
    pub addr: SocketAddr,
    pub id: String,
}

impl Session {
    /// A new session on the product at `addr`, once it answers `initialize` (within 20 s);
    /// `proc` is checked while waiting.
    pub fn open(addr: SocketAddr, proc: &mut Proc) -> Result<Session> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL}","capabilities":{{}},"clientInfo":{{"name":"{}","version":"1"}}}}}}"#,
            env!("CARGO_CRATE_NAME")
        );
        loop {
            if let Ok((200, head, _)) = http(
                addr,
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
                let session = Session { addr, id };
                session.rpc(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
                return Ok(session);
            }
            proc.check_alive("the product")?;
            if Instant::now() > deadline {
                return Err("the product did not answer initialize within 20 s".into());
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn rpc(&self, body: &str) -> Result<String> {
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
    pub fn call(&self, tool: &str, args: &str) -> Result<Value> {
        let body = self.rpc(&format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
        ))?;
        let v = parse(&body)?;
        get(&v, &["result"])
            .cloned()
            .ok_or_else(|| format!("{tool}: no result in {body}"))
    }

    /// A tool's first text block, parsed as JSON; `isError` is an error.
    pub fn call_json(&self, tool: &str, args: &str) -> Result<Value> {
        let result = self.call(tool, args)?;
        let text = get_str(&result, &["content", "0", "text"]).unwrap_or("");
        if matches!(get(&result, &["isError"]), Some(Value::Bool(true))) {
            return Err(format!("{tool} {args}: {text}"));
        }
        parse(text)
    }

    pub fn connected(&self) -> Result<bool> {
        let result = self.call("check_auth_status", "{}")?;
        let text = get_str(&result, &["content", "0", "text"]).unwrap_or("");
        Ok(text.lines().any(|l| l.trim() == "state: connected"))
    }

    /// Asks for the QR code until there is one (within 30 s) and scans it with fakewa's mock
    /// phone; returns the linked device's JID. `proc` is checked while waiting.
    pub fn scan_qr(&self, proc: &mut Proc, fw: &FakeWa) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let qr = loop {
            let result = self.call("get_qr_code", "{}")?;
            if get_str(&result, &["content", "0", "type"]) == Some("image")
                && let Some(qr) = get_str(&result, &["content", "1", "text"])
            {
                break qr.to_string();
            }
            proc.check_alive("the product")?;
            if Instant::now() > deadline {
                return Err("no QR code within 30 s".into());
            }
            thread::sleep(Duration::from_millis(20));
        };
        let scanned = fw.control("POST", "/control/scan", &format!(r#"{{"qr":{}}}"#, js(&qr)))?;
        let device = get_str(&scanned, &["jid"]).ok_or("scan answered no jid")?;
        Ok(device.to_string())
    }
}

pub fn figure(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
}

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}
