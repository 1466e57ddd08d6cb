//! MCP server benchmark: drives the release binary over loopback with a minimal blocking
//! HTTP/1.1 keep-alive client (std only) and prints one `name=value` line per figure.
//!
//!     cargo build --release && BIN=target/release/whatsapp-mcp-stream cargo bench --bench mcp_bench
//!
//! (`bench/run.sh` does both.) Builds nothing itself: `BIN` names the server binary (default
//! `target/release/whatsapp-mcp-stream`). The server runs with its defaults, a temporary data
//! dir and a free port on 127.0.0.1; Linux only (/proc). Figures:
//!
//! - `startup_ms`: spawn until the first successful `initialize` (retried every ≤ 1 ms);
//! - `idle_rss_kb`: VmRSS after 10 s idle;
//! - `ping_p50_us`, `ping_p99_us`: 2,000 sequential `tools/call ping` on one connection;
//! - `throughput_calls_per_s`, `cpu_us_per_call`, `rss_growth_kb_per_call`: 64 threads, each with
//!   its own connection and session, calling ping for 10 s (server CPU from /proc/PID/stat);
//! - `rss_after_10k_sessions_kb`: VmRSS after 10,000 `initialize` calls whose sessions are never
//!   deleted (the server evicts beyond MCP_MAX_SESSIONS).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const PROTOCOL: &str = "2025-11-25";
const PING_CALLS: usize = 2_000;
const THREADS: usize = 64;
const LOAD_SECS: u64 = 10;
const IDLE_SECS: u64 = 10;
const SESSIONS: usize = 10_000;

type Result<T> = std::result::Result<T, String>;

/// One keep-alive HTTP/1.1 connection to `/mcp`, with an optional MCP session.
struct Conn {
    reader: BufReader<TcpStream>,
    host: String,
    session: Option<String>,
    next_id: u64,
    line: String,
}

struct Reply {
    status: u16,
    session: Option<String>,
    body: Vec<u8>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Result<Conn> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            reader: BufReader::with_capacity(16 * 1024, stream),
            host: addr.to_string(),
            session: None,
            next_id: 1,
            line: String::new(),
        })
    }

    fn post(&mut self, body: &str) -> Result<Reply> {
        let mut req = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(sid) = &self.session {
            req.push_str("Mcp-Session-Id: ");
            req.push_str(sid);
            req.push_str("\r\nMCP-Protocol-Version: ");
            req.push_str(PROTOCOL);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        self.read_reply()
    }

    fn read_line(&mut self) -> Result<&str> {
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => Err("the server closed the connection".into()),
            Ok(_) => Ok(self.line.trim_end_matches(['\r', '\n'])),
            Err(e) => Err(format!("read: {e}")),
        }
    }

    fn read_reply(&mut self) -> Result<Reply> {
        let status_line = self.read_line()?.to_string();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        let mut session = None;
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("bad header line {line:?}"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().map_err(|e| e.to_string())?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("mcp-session-id") {
                session = Some(value.to_string());
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let size_line = self.read_line()?;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("bad chunk size {size_line:?}"))?;
                if size == 0 {
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.reader
                    .read_exact(&mut body[start..])
                    .map_err(|e| format!("read chunk: {e}"))?;
                self.read_line()?;
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.reader
                .read_exact(&mut body)
                .map_err(|e| format!("read body: {e}"))?;
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            return Err(format!(
                "HTTP {status} without Content-Length or chunked framing"
            ));
        }
        Ok(Reply {
            status,
            session,
            body,
        })
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// `initialize` (the session id is kept), without `notifications/initialized`.
    fn initialize_only(&mut self) -> Result<()> {
        self.session = None;
        let id = self.id();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{PROTOCOL}","capabilities":{{}},"clientInfo":{{"name":"mcp_bench","version":"1"}}}}}}"#
        );
        let reply = self.post(&body)?;
        if reply.status != 200 || !contains(&reply.body, br#""protocolVersion""#) {
            return Err(format!(
                "initialize: HTTP {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
        self.session = Some(
            reply
                .session
                .ok_or("initialize: no MCP-Session-Id header")?,
        );
        Ok(())
    }

    /// `initialize` then `notifications/initialized`: a ready session.
    fn open_session(&mut self) -> Result<()> {
        self.initialize_only()?;
        let reply = self.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
        if reply.status != 202 {
            return Err(format!("notifications/initialized: HTTP {}", reply.status));
        }
        Ok(())
    }

    /// One `tools/call ping`; checks that the answer is "pong".
    fn ping(&mut self) -> Result<()> {
        let id = self.id();
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"ping","arguments":{{}}}}}}"#
        );
        let reply = self.post(&body)?;
        if reply.status != 200 || !contains(&reply.body, br#""text":"pong""#) {
            return Err(format!(
                "tools/call ping: HTTP {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The server process; killed when dropped, with its data dir removed.
struct Server {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kb(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .map_err(|e| format!("read /proc/{}/status: {e}", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS line in /proc/PID/status".into())
    }

    /// utime + stime in clock ticks.
    fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map_err(|e| format!("read /proc/{}/stat: {e}", self.pid()))?;
        // Fields after the command name "(…)": state is the first, utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        match (num(11), num(12)) {
            (Some(u), Some(s)) => Ok(u + s),
            _ => Err(format!("cannot parse /proc/{}/stat", self.pid())),
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("the server exited: {status}")),
            Err(e) => Err(format!("cannot check the server: {e}")),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn free_addr() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map_err(|e| e.to_string())
}

/// Spawns the server and returns it with the time until its first successful initialize.
fn start(bin: &str) -> Result<(Server, Conn, Duration)> {
    let addr = free_addr()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let data_dir = std::env::temp_dir().join(format!("wams-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("create {data_dir:?}: {e}"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(&data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for var in [
        "ACCESS_TOKEN",
        "MCP_HTTP_ENABLE_JSON_RESPONSE",
        "MCP_MAX_SESSIONS",
        "MCP_SESSION_IDLE_SECS",
        "MAX_CONNECTIONS",
        "READ_ONLY",
        "TRANSPORT",
        "LISTEN",
        "DATA_DIR",
        "WORKER_THREADS",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {bin}: {e}; build it with cargo build --release"))?;
    let mut server = Server {
        child,
        addr,
        data_dir,
    };
    let deadline = started + Duration::from_secs(20);
    loop {
        if let Ok(mut conn) = Conn::connect(addr)
            && conn.initialize_only().is_ok()
        {
            return Ok((server, conn, started.elapsed()));
        }
        server.check_alive()?;
        if Instant::now() > deadline {
            return Err("the server did not answer initialize within 20 s".into());
        }
        thread::sleep(Duration::from_micros(500));
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn figure(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
}

fn run() -> Result<()> {
    let bin =
        std::env::var("BIN").unwrap_or_else(|_| "target/release/whatsapp-mcp-stream".to_string());
    if !std::path::Path::new(&bin).is_file() {
        return Err(format!(
            "no server binary at {bin}: run cargo build --release, or set BIN"
        ));
    }
    eprintln!("mcp_bench: {bin}");
    let ticks = clock_ticks();

    // Startup.
    let (mut server, first, startup) = start(&bin)?;
    figure("startup_ms", format!("{:.2}", startup.as_secs_f64() * 1e3));
    drop(first);

    // Idle memory.
    eprintln!("mcp_bench: idle for {IDLE_SECS} s");
    thread::sleep(Duration::from_secs(IDLE_SECS));
    server.check_alive()?;
    figure("idle_rss_kb", server.rss_kb()?);

    // Sequential latency on one connection.
    let mut conn = Conn::connect(server.addr)?;
    conn.open_session()?;
    let mut times = Vec::with_capacity(PING_CALLS);
    for _ in 0..PING_CALLS {
        let t = Instant::now();
        conn.ping()?;
        times.push(t.elapsed());
    }
    drop(conn);
    times.sort();
    figure("ping_p50_us", percentile(&times, 50.0).as_micros());
    figure("ping_p99_us", percentile(&times, 99.0).as_micros());

    // Throughput: THREADS connections, one session each.
    eprintln!("mcp_bench: {THREADS} connections calling ping for {LOAD_SECS} s");
    let start_line = Arc::new(Barrier::new(THREADS + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..THREADS {
        let (start_line, stop, calls, addr) =
            (start_line.clone(), stop.clone(), calls.clone(), server.addr);
        workers.push(thread::spawn(move || -> Result<()> {
            let setup = Conn::connect(addr).and_then(|mut c| c.open_session().map(|_| c));
            start_line.wait();
            let mut conn = setup?;
            let mut n = 0;
            let result = loop {
                if stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
                if let Err(e) = conn.ping() {
                    break Err(e);
                }
                n += 1;
            };
            calls.fetch_add(n, Ordering::Relaxed);
            result
        }));
    }
    start_line.wait();
    let (rss_before, cpu_before, t0) = (server.rss_kb()?, server.cpu_ticks()?, Instant::now());
    thread::sleep(Duration::from_secs(LOAD_SECS));
    stop.store(true, Ordering::Relaxed);
    let mut errors = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a load thread panicked".into()),
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (rss_after, cpu_after) = (server.rss_kb()?, server.cpu_ticks()?);
    if !errors.is_empty() {
        return Err(format!(
            "{} of {THREADS} load connections failed; first: {}",
            errors.len(),
            errors[0]
        ));
    }
    let total = calls.load(Ordering::Relaxed).max(1) as f64;
    let cpu_us = (cpu_after - cpu_before) as f64 * 1e6 / ticks as f64;
    figure("throughput_calls_per_s", format!("{:.0}", total / elapsed));
    figure("cpu_us_per_call", format!("{:.1}", cpu_us / total));
    figure(
        "rss_growth_kb_per_call",
        format!("{:.4}", (rss_after as f64 - rss_before as f64) / total),
    );

    // Many sessions, never deleted.
    eprintln!("mcp_bench: {SESSIONS} initialize calls");
    let mut conn = Conn::connect(server.addr)?;
    for _ in 0..SESSIONS {
        conn.initialize_only()?;
    }
    drop(conn);
    server.check_alive()?;
    figure("rss_after_10k_sessions_kb", server.rss_kb()?);
    Ok(())
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this program takes no arguments.
    if let Err(e) = run() {
        eprintln!("mcp_bench: error: {e}");
        std::process::exit(1);
    }
}
