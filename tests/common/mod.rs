//! Test harness: starts the real binary on a random loopback port and talks raw HTTP/1.1 to it.
//!
//! Nothing here sleeps for a fixed time: waits poll a condition until a deadline.
#![allow(dead_code)]

#[cfg(feature = "test-network")]
pub mod fakewa;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_whatsapp-mcp-stream");
pub const ACCEPT_BOTH: (&str, &str) = ("Accept", "application/json, text/event-stream");
pub const JSON_CT: (&str, &str) = ("Content-Type", "application/json");

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let mut bytes = [0u8; 8];
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("wams-{tag}-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub data: TempDir,
    pub log: mpsc::Receiver<String>,
    /// Log lines printed before the server was serving.
    pub early_log: Vec<String>,
}

impl Server {
    /// Starts the server on 127.0.0.1 with a random port and extra env vars.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Server::start_on("127.0.0.1:0", env)
    }

    pub fn start_on(listen: &str, env: &[(&str, &str)]) -> Server {
        Server::start_in(listen, TempDir::new("srv"), env)
    }

    /// Starts the server over an existing data dir (a restart keeps the store).
    pub fn start_in(listen: &str, data: TempDir, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data.path());
        cmd.env_remove("ACCESS_TOKEN")
            .env_remove("ALLOWED_HOSTS")
            .env("RUST_LOG", "info");
        // Keep test servers off the real WhatsApp: a closed local port unless a test says
        // otherwise (only test-network builds accept WA_WS_URL).
        if cfg!(feature = "test-network") {
            cmd.env("WA_WS_URL", "ws://127.0.0.1:9/ws/chat");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("serving on http://").nth(1) {
                        let a = rest.split(':').take(2).collect::<Vec<_>>().join(":");
                        let a = a.trim_end_matches(|c: char| !c.is_ascii_digit());
                        let mut addr: SocketAddr = a.parse().expect("bound address");
                        if addr.ip().is_unspecified() {
                            addr.set_ip([127, 0, 0, 1].into());
                        }
                        break addr;
                    }
                    seen.push(line);
                }
                Err(_) => panic!("server did not start; log:\n{}", seen.join("\n")),
            }
        };
        Server {
            child,
            addr,
            data,
            log: rx,
            early_log: seen,
        }
    }

    pub fn conn(&self) -> Conn {
        Conn::open(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.conn().send(method, path, headers, body)
    }

    /// Initializes an MCP session; returns its id.
    pub fn initialize(&self, extra: &[(&str, &str)], version: &str) -> String {
        let mut h = vec![ACCEPT_BOTH, JSON_CT];
        h.extend_from_slice(extra);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{version}","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#
        );
        let r = self.request("POST", "/mcp", &h, body.as_bytes());
        assert_eq!(r.status, 200, "initialize: {}", r.text());
        r.header("mcp-session-id").expect("session id").to_string()
    }

    /// POSTs one JSON-RPC message in a session.
    pub fn rpc(&self, session: &str, body: &str) -> Resp {
        self.request(
            "POST",
            "/mcp",
            &[ACCEPT_BOTH, JSON_CT, ("MCP-Session-Id", session)],
            body.as_bytes(),
        )
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, within: Duration) -> String {
        if let Some(line) = self.early_log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {needle:?}"),
            }
        }
    }
}

impl Server {
    /// Stops the process and hands back its data dir.
    pub fn stop(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.data, TempDir(PathBuf::new()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON (for SSE bodies, the last `data:` event).
    pub fn json(&self) -> serde_like::Json {
        let text = self.text();
        let payload = if self
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream"))
        {
            text.lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .next_back()
                .unwrap_or("")
                .to_string()
        } else {
            text
        };
        serde_like::Json::parse(&payload).unwrap_or_else(|| panic!("not JSON: {payload:?}"))
    }
}

/// A keep-alive connection.
pub struct Conn {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader }
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.write_request(method, path, headers, body);
        self.read_response().expect("response")
    }

    pub fn write_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            head.push_str("Host: 127.0.0.1\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).unwrap();
        self.stream.write_all(body).unwrap();
    }

    /// Reads a response head and a Content-Length or chunked body. `None` on EOF.
    pub fn read_response(&mut self) -> Option<Resp> {
        let (status, headers) = self.read_head()?;
        let body = if let Some(len) = find(&headers, "content-length") {
            let mut b = vec![0u8; len.parse().unwrap()];
            self.reader.read_exact(&mut b).ok()?;
            b
        } else if find(&headers, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            let mut out = Vec::new();
            while let Some(chunk) = self.read_chunk() {
                out.extend_from_slice(&chunk);
            }
            out
        } else {
            Vec::new()
        };
        Some(Resp {
            status,
            headers,
            body,
        })
    }

    pub fn read_head(&mut self) -> Option<(u16, Vec<(String, String)>)> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        Some((status, headers))
    }

    /// Reads one chunk of a chunked body; `None` at the last chunk.
    pub fn read_chunk(&mut self) -> Option<Vec<u8>> {
        let mut size = String::new();
        self.reader.read_line(&mut size).ok()?;
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut chunk = vec![0u8; n + 2];
        self.reader.read_exact(&mut chunk).ok()?;
        chunk.truncate(n);
        if n == 0 { None } else { Some(chunk) }
    }

    /// Reads chunks until the text so far contains `needle`.
    pub fn read_until(&mut self, needle: &str) -> String {
        let mut text = String::new();
        while !text.contains(needle) {
            match self.read_chunk() {
                Some(c) => text.push_str(&String::from_utf8_lossy(&c)),
                None => panic!("stream ended before {needle:?}; got {text:?}"),
            }
        }
        text
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Polls `f` until it returns `Some`, or panics at the deadline.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// JSON for assertions: a thin reader over miniserde's `Value` (clones are fine in tests).
pub mod serde_like {
    use miniserde::json::{Number, Value};

    #[derive(Debug, Clone)]
    pub struct Json(pub Value);

    impl Json {
        pub fn parse(text: &str) -> Option<Json> {
            miniserde::json::from_str(text).ok().map(Json)
        }
        pub fn get(&self, key: &str) -> Json {
            match &self.0 {
                Value::Object(o) => Json(o.get(key).cloned().unwrap_or(Value::Null)),
                _ => Json(Value::Null),
            }
        }
        pub fn at(&self, i: usize) -> Json {
            match &self.0 {
                Value::Array(a) => Json(a.get(i).cloned().unwrap_or(Value::Null)),
                _ => Json(Value::Null),
            }
        }
        /// `a.b.0.c`: object keys and array indexes.
        pub fn path(&self, path: &str) -> Json {
            path.split('.')
                .fold(self.clone(), |v, k| match k.parse::<usize>() {
                    Ok(i) if matches!(v.0, Value::Array(_)) => v.at(i),
                    _ => v.get(k),
                })
        }
        pub fn str(&self) -> Option<String> {
            if let Value::String(s) = &self.0 {
                Some(s.clone())
            } else {
                None
            }
        }
        pub fn num(&self) -> Option<f64> {
            match &self.0 {
                Value::Number(Number::U64(n)) => Some(*n as f64),
                Value::Number(Number::I64(n)) => Some(*n as f64),
                Value::Number(Number::F64(n)) => Some(*n),
                _ => None,
            }
        }
        pub fn bool(&self) -> Option<bool> {
            if let Value::Bool(b) = &self.0 {
                Some(*b)
            } else {
                None
            }
        }
        pub fn arr(&self) -> Vec<Json> {
            match &self.0 {
                Value::Array(a) => a.iter().cloned().map(Json).collect(),
                _ => Vec::new(),
            }
        }
        pub fn keys(&self) -> Vec<String> {
            match &self.0 {
                Value::Object(o) => o.keys().cloned().collect(),
                _ => Vec::new(),
            }
        }
        pub fn is_null(&self) -> bool {
            matches!(self.0, Value::Null)
        }
    }
}
