//! Startup configuration: command-line flags and environment variables.
//!
//! Owns: parsing `std::env::args` and the process environment into one immutable [`Config`], the
//! `--help` text, and the exit codes for bad input (2). Must not: touch the disk, the network or
//! the store; runtime settings that change while the server runs live elsewhere.
//!
//! Flags win over environment variables. Global flags (`--data-dir`, `--listen`, …) may stand
//! before or after a subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve MCP (HTTP or stdio), the admin page and the APIs.
    Serve,
    /// Print the access token and exit.
    Token,
    /// Import a JSON Lines file into the store.
    Import { file: PathBuf },
    /// Export the store (or one chat) as JSON Lines.
    Export { chat: Option<String>, out: PathBuf },
    /// Fill the store with synthetic data.
    DemoData { messages: u64, chats: u64 },
    /// Print the help text and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// How MCP is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Stdio,
}

/// The whole startup configuration. Built once, never mutated.
#[derive(Debug, Clone)]
pub struct Config {
    pub command: Command,
    pub transport: Transport,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The redb file (`DB_PATH`, default `<data-dir>/store.redb`).
    pub db_path: PathBuf,
    /// redb's page cache in MiB (`STORE_CACHE_MB`).
    pub store_cache_mb: usize,
    /// `AUTO_SELECT_CONTACT`: `get_chat_by_contact` picks a clear best match by itself.
    pub auto_select_contact: bool,
    /// `ACCESS_TOKEN`; the token file in the data dir is read later, by `http::auth`.
    pub access_token: Option<String>,
    /// `ALLOWED_HOSTS` entries, lower-case, without ports.
    pub allowed_hosts: Vec<String>,
    /// `ALLOWED_HOSTS=*`: the Host and Origin checks are off.
    pub allow_any_host: bool,
    /// `PUBLIC_BASE_URL` / `MEDIA_PUBLIC_BASE_URL`, trailing `/` removed.
    pub public_base_urls: Vec<String>,
    pub max_connections: usize,
    pub mcp_max_body_bytes: usize,
    pub json_response: bool,
    pub session_idle_secs: u64,
    pub max_sessions: usize,
    /// Seconds between `: keepalive` comments on quiet SSE streams.
    pub sse_keepalive_secs: u64,
    pub read_only: bool,
    /// Worker threads for the executor (`WORKER_THREADS`, default: the number of CPUs).
    pub worker_threads: usize,
    /// `WA_PROXY`: an `http://` or `socks5://` proxy for WhatsApp traffic (validated form).
    pub wa_proxy: Option<String>,
    /// `WA_PUSH_NAME`: the name the linked device shows (default `whatsapp-mcp-stream`).
    pub wa_push_name: String,
    /// `WA_WEB_VERSION`: the WhatsApp Web version to announce, `MAJOR.MINOR.PATCH`.
    pub wa_web_version: Option<(u32, u32, u32)>,
    /// `WA_WS_URL` (test-network builds only): the WebSocket URL instead of WhatsApp Web's.
    pub wa_ws_url: Option<String>,
    /// `WA_TEST_CA` (test-network builds only): a PEM CA trusted on top of the web roots.
    pub wa_test_ca: Option<PathBuf>,
    /// `WA_IDEMPOTENCY_TTL_MS`: how long an `idempotency_key` is remembered (default one day,
    /// at least one minute).
    pub idempotency_ttl_ms: u64,
    /// `SEND_ALLOWLIST`: the only recipients the send tools may write to, as normalized JIDs
    /// (phone numbers become `<digits>@s.whatsapp.net`); `None` allows everyone.
    pub send_allowlist: Option<Vec<String>>,
    /// `SEND_RATE_PER_MIN`: sends allowed per rolling minute (default 20; 0 = no limit).
    pub send_rate_per_min: u32,
    /// `SEND_LOG_BODIES`: the send log keeps the message text too.
    pub send_log_bodies: bool,
    /// `WA_SEND_DEDUP_WINDOW_MS`: the same text to the same chat within this window is not sent
    /// again (default 45000; 0 turns the window off).
    pub send_dedup_window_ms: u64,
}

/// Sends per minute allowed when `SEND_RATE_PER_MIN` is unset.
pub const DEFAULT_SEND_RATE_PER_MIN: u64 = 20;
/// The duplicate-send window when `WA_SEND_DEDUP_WINDOW_MS` is unset (the original's 45 s).
pub const DEFAULT_SEND_DEDUP_WINDOW_MS: u64 = 45_000;

/// The push name a linked device shows when `WA_PUSH_NAME` is unset.
pub const DEFAULT_PUSH_NAME: &str = "whatsapp-mcp-stream";

/// A configuration error: the message names the flag or variable and the accepted form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3003";

pub const HELP: &str = "\
whatsapp-mcp-stream: a WhatsApp MCP server for self-hosters

USAGE:
    whatsapp-mcp-stream [FLAGS] [COMMAND]

COMMANDS:
    (none)      serve MCP at /mcp, the admin page at /admin and the APIs
    token       print the access token (from ACCESS_TOKEN or the data dir) and exit
    import FILE
                import a JSON Lines backup (chats, messages, contacts, groups, mappings);
                all or nothing, and importing the same file twice changes nothing
    export [--chat JID] --out FILE
                export the whole store, or one chat, as JSON Lines (--out - for stdout)
    demo-data [--messages N] [--chats M]
                fill the store with realistic synthetic data (default 10000 messages, 50 chats)
    import, export and demo-data stop with exit code 3 if a running server holds the data dir.

FLAGS (they work before or after a command):
    --listen ADDR:PORT   bind address (env LISTEN, default 127.0.0.1:3003)
    --data-dir DIR       data folder (env DATA_DIR, default ./data)
    --stdio              serve MCP over stdin/stdout instead of HTTP (logs go to stderr)
    --http               serve MCP over HTTP (the default; kept for old setups)
    -h, --help           print this help
    -V, --version        print the version

ENVIRONMENT:
    LISTEN                          bind address, ADDR:PORT (default 127.0.0.1:3003)
    DATA_DIR                        data folder (default ./data)
    TRANSPORT                       http | stdio (default http)
    DB_PATH                         the store file (default DATA_DIR/store.redb)
    STORE_CACHE_MB                  the store's page cache in MiB (default 16)
    AUTO_SELECT_CONTACT             1/true: get_chat_by_contact picks a clear best match itself
    ACCESS_TOKEN                    bearer token for /mcp, /api/* and /media. On a non-loopback
                                    address without one, a token is generated into
                                    DATA_DIR/access_token (mode 0600) and logged once
    ALLOWED_HOSTS                   extra Host names allowed (comma list; * turns the check off)
    PUBLIC_BASE_URL                 public URL of this server; its host is allowed
    MEDIA_PUBLIC_BASE_URL           public URL for media links; its host is allowed
    MAX_CONNECTIONS                 open HTTP connections at most (default 4096)
    MCP_MAX_BODY_BYTES              largest /mcp request body (default 8388608)
    MCP_HTTP_ENABLE_JSON_RESPONSE   1/true/yes/on: answer POST /mcp as JSON (default);
                                    0/false/no/off: answer as SSE
    MCP_SESSION_IDLE_SECS           an MCP session expires after this idle time (default 1800)
    MCP_MAX_SESSIONS                open MCP sessions at most; the idlest is evicted (default 256)
    MCP_SSE_KEEPALIVE_SECS          seconds between keepalive comments on SSE streams (default 15)
    READ_ONLY                       1/true: remove the send tools
    WORKER_THREADS                  executor threads (default: number of CPUs)
    WA_PROXY                        proxy for WhatsApp traffic: http://[user:pass@]host:port or
                                    socks5://[user:pass@]host:port
    WA_PUSH_NAME                    the name this linked device shows (default whatsapp-mcp-stream)
    WA_WEB_VERSION                  WhatsApp Web version to announce, e.g. 2.3000.1027934701
    WA_IDEMPOTENCY_TTL_MS           how long an idempotency_key is remembered, in milliseconds
                                    (default 86400000, one day; at least 60000)
    WA_SEND_DEDUP_WINDOW_MS         the same text to the same chat within this many milliseconds
                                    is not sent twice (default 45000; 0 turns it off)
    SEND_ALLOWLIST                  comma list of JIDs or phone numbers: the only recipients the
                                    send tools may write to (default: anyone)
    SEND_RATE_PER_MIN               sends allowed per rolling minute (default 20; 0 = no limit)
    SEND_LOG_BODIES                 1/true: the send log keeps message texts too (default off)
    RUST_LOG                        log level: error, warn, info (default), debug, trace
";

impl Config {
    /// Parses the process arguments and environment.
    pub fn from_process() -> Result<Config, ConfigError> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Config::parse(&args, &|name| std::env::var(name).ok())
    }

    /// Parses `args` (without the program name) and the environment seen through `env`.
    pub fn parse(
        args: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let mut command = None;
        let mut listen_flag = None;
        let mut data_dir_flag = None;
        let mut transport_flag = None;
        let mut help = false;
        let mut version = false;
        // Command-specific flags, checked once the command is known.
        let mut chat_flag = None;
        let mut out_flag = None;
        let mut messages_flag = None;
        let mut chats_flag = None;
        let mut positional = Vec::new();

        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_str();
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg, None),
            };
            let mut value = |flag: &str| -> Result<String, ConfigError> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                i += 1;
                args.get(i)
                    .cloned()
                    .ok_or_else(|| ConfigError(format!("{flag} needs a value; see --help")))
            };
            match name {
                "--listen" => listen_flag = Some(value("--listen ADDR:PORT")?),
                "--data-dir" => data_dir_flag = Some(value("--data-dir DIR")?),
                "--stdio" => transport_flag = Some(Transport::Stdio),
                "--http" | "--streamable-http" => transport_flag = Some(Transport::Http),
                "-h" | "--help" => help = true,
                "-V" | "--version" => version = true,
                "--chat" => chat_flag = Some(value("--chat JID")?),
                "--out" => out_flag = Some(value("--out FILE")?),
                "--messages" => messages_flag = Some(value("--messages N")?),
                "--chats" => chats_flag = Some(value("--chats N")?),
                "token" | "import" | "export" | "demo-data" if command.is_none() => {
                    command = Some(name.to_string())
                }
                other if other.starts_with('-') => {
                    return Err(ConfigError(format!(
                        "unknown flag {other}; run whatsapp-mcp-stream --help for the list"
                    )));
                }
                other if command.is_some() => positional.push(other.to_string()),
                other => {
                    return Err(ConfigError(format!(
                        "unknown command {other:?}; the commands are: token, import, export, demo-data (see --help)"
                    )));
                }
            }
            i += 1;
        }
        let command = if help {
            Command::Help
        } else if version {
            Command::Version
        } else {
            build_command(
                command.as_deref(),
                positional,
                chat_flag,
                out_flag,
                messages_flag,
                chats_flag,
            )?
        };

        let transport = match transport_flag {
            Some(t) => t,
            None => match get("TRANSPORT").map(|v| v.to_ascii_lowercase()).as_deref() {
                None | Some("http") | Some("streamable_http") | Some("streamable-http") => {
                    Transport::Http
                }
                Some("stdio") => Transport::Stdio,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "TRANSPORT={other:?} is not valid; use http or stdio"
                    )));
                }
            },
        };

        let listen_src = listen_flag
            .map(|v| ("--listen", v))
            .or_else(|| get("LISTEN").map(|v| ("LISTEN", v)))
            .unwrap_or(("LISTEN", DEFAULT_LISTEN.to_string()));
        let listen = parse_listen(listen_src.0, &listen_src.1)?;

        let data_dir = PathBuf::from(
            data_dir_flag
                .or_else(|| get("DATA_DIR"))
                .unwrap_or_else(|| "./data".into()),
        );
        let db_path = get("DB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("store.redb"));
        let store_cache_mb = parse_number(&get, "STORE_CACHE_MB", 16, 1, 65_536)? as usize;
        let auto_select_contact = parse_bool(&get, "AUTO_SELECT_CONTACT", false)?;

        let access_token = match get("ACCESS_TOKEN") {
            Some(t) if t.len() < 16 => {
                return Err(ConfigError(
                    "ACCESS_TOKEN must be at least 16 characters (run `openssl rand -hex 32` for a good one)".into(),
                ));
            }
            Some(t) if !t.bytes().all(|b| (0x21..=0x7e).contains(&b)) => {
                return Err(ConfigError(
                    "ACCESS_TOKEN may only hold visible ASCII characters (no spaces)".into(),
                ));
            }
            other => other,
        };

        let mut allowed_hosts = Vec::new();
        let mut allow_any_host = false;
        if let Some(list) = get("ALLOWED_HOSTS") {
            for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if entry == "*" {
                    allow_any_host = true;
                } else {
                    let host = host_without_port(entry).ok_or_else(|| {
                        ConfigError(format!(
                            "ALLOWED_HOSTS entry {entry:?} is not a host name; use a comma list such as pi.local,192.168.1.20 or *"
                        ))
                    })?;
                    allowed_hosts.push(host);
                }
            }
        }

        let mut public_base_urls = Vec::new();
        for var in ["PUBLIC_BASE_URL", "MEDIA_PUBLIC_BASE_URL"] {
            if let Some(url) = get(var) {
                if url_host(&url).is_none() {
                    return Err(ConfigError(format!(
                        "{var}={url:?} is not an http(s) URL; use a form such as https://wa.example.com"
                    )));
                }
                public_base_urls.push(url.trim_end_matches('/').to_string());
            }
        }

        let max_connections = parse_number(&get, "MAX_CONNECTIONS", 4096, 1, 1_000_000)? as usize;
        let mcp_max_body_bytes =
            parse_number(&get, "MCP_MAX_BODY_BYTES", 8 * 1024 * 1024, 1024, 1 << 32)? as usize;
        let json_response = parse_bool(&get, "MCP_HTTP_ENABLE_JSON_RESPONSE", true)?;
        let session_idle_secs = parse_number(&get, "MCP_SESSION_IDLE_SECS", 1800, 1, 365 * 86400)?;
        let max_sessions = parse_number(&get, "MCP_MAX_SESSIONS", 256, 1, 1_000_000)? as usize;
        let sse_keepalive_secs = parse_number(&get, "MCP_SSE_KEEPALIVE_SECS", 15, 1, 3600)?;
        let read_only = parse_bool(&get, "READ_ONLY", false)?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2) as u64;
        let worker_threads = parse_number(&get, "WORKER_THREADS", cpus, 1, 256)? as usize;
        let wa_proxy = match get("WA_PROXY") {
            Some(p) => Some(parse_proxy(&p)?),
            None => None,
        };
        let wa_push_name = get("WA_PUSH_NAME").unwrap_or_else(|| DEFAULT_PUSH_NAME.to_string());
        let wa_web_version = match get("WA_WEB_VERSION") {
            Some(v) => Some(parse_version(&v)?),
            None => None,
        };
        let idempotency_ttl_ms = parse_number(
            &get,
            "WA_IDEMPOTENCY_TTL_MS",
            crate::store::idempotency::DEFAULT_TTL_MS,
            crate::store::idempotency::MIN_TTL_MS,
            365 * 86_400_000,
        )?;
        let send_allowlist = match get("SEND_ALLOWLIST") {
            Some(list) => Some(parse_allowlist(&list)?),
            None => None,
        };
        let send_rate_per_min = parse_number(
            &get,
            "SEND_RATE_PER_MIN",
            DEFAULT_SEND_RATE_PER_MIN,
            0,
            100_000,
        )? as u32;
        let send_log_bodies = parse_bool(&get, "SEND_LOG_BODIES", false)?;
        let send_dedup_window_ms = parse_number(
            &get,
            "WA_SEND_DEDUP_WINDOW_MS",
            DEFAULT_SEND_DEDUP_WINDOW_MS,
            0,
            86_400_000,
        )?;
        let wa_ws_url = get("WA_WS_URL");
        let wa_test_ca = get("WA_TEST_CA").map(PathBuf::from);
        if !cfg!(feature = "test-network") {
            for (var, set) in [
                ("WA_WS_URL", wa_ws_url.is_some()),
                ("WA_TEST_CA", wa_test_ca.is_some()),
            ] {
                if set {
                    return Err(ConfigError(format!(
                        "{var} is a test-only switch: this build has no test-network feature; unset {var}"
                    )));
                }
            }
        }

        Ok(Config {
            command,
            transport,
            listen,
            data_dir,
            db_path,
            store_cache_mb,
            auto_select_contact,
            access_token,
            allowed_hosts,
            allow_any_host,
            public_base_urls,
            max_connections,
            mcp_max_body_bytes,
            json_response,
            session_idle_secs,
            max_sessions,
            sse_keepalive_secs,
            read_only,
            worker_threads,
            wa_proxy,
            wa_push_name,
            wa_web_version,
            wa_ws_url,
            wa_test_ca,
            idempotency_ttl_ms,
            send_allowlist,
            send_rate_per_min,
            send_log_bodies,
            send_dedup_window_ms,
        })
    }

    /// The path of the generated access token.
    pub fn token_path(&self) -> PathBuf {
        self.data_dir.join("access_token")
    }
}

/// `WA_PROXY`: `http://` or `socks5://` (also `socks5h://`), a host and a port.
fn parse_proxy(raw: &str) -> Result<String, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "WA_PROXY={raw:?} is not valid; use http://[user:pass@]host:port or socks5://[user:pass@]host:port"
        ))
    };
    let (scheme, rest) = raw.split_once("://").ok_or_else(bad)?;
    if !["http", "socks5", "socks5h"].contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(bad());
    }
    let authority = rest.trim_end_matches('/');
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(raw.to_string())
}

/// `SEND_ALLOWLIST`: a comma list of JIDs (any form, normalized) or phone numbers (→ phone JIDs).
pub fn parse_allowlist(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let jid = crate::store::jid::parse_address(entry).ok_or_else(|| {
            ConfigError(format!(
                "SEND_ALLOWLIST entry {entry:?} is neither a JID nor a phone number; use a comma \
                 list such as +44 7700 900123,120363012345678901@g.us"
            ))
        })?;
        if !out.contains(&jid) {
            out.push(jid);
        }
    }
    if out.is_empty() {
        return Err(ConfigError(
            "SEND_ALLOWLIST is set but names nobody; list JIDs or phone numbers, or unset it"
                .into(),
        ));
    }
    Ok(out)
}

/// `WA_WEB_VERSION`: three dot-separated numbers.
fn parse_version(raw: &str) -> Result<(u32, u32, u32), ConfigError> {
    let parts: Vec<Option<u32>> = raw.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(a), Some(b), Some(c)] => Ok((*a, *b, *c)),
        _ => Err(ConfigError(format!(
            "WA_WEB_VERSION={raw:?} is not valid; use MAJOR.MINOR.PATCH such as 2.3000.1027934701"
        ))),
    }
}

/// Checks that each command gets exactly the flags and arguments it takes.
fn build_command(
    name: Option<&str>,
    positional: Vec<String>,
    chat: Option<String>,
    out: Option<String>,
    messages: Option<String>,
    chats: Option<String>,
) -> Result<Command, ConfigError> {
    let only = |cmd: &str, allowed: &[&str]| -> Result<(), ConfigError> {
        for (flag, set) in [
            ("--chat", chat.is_some()),
            ("--out", out.is_some()),
            ("--messages", messages.is_some()),
            ("--chats", chats.is_some()),
        ] {
            if set && !allowed.contains(&flag) {
                return Err(ConfigError(format!(
                    "{flag} does not apply to {cmd}; see --help"
                )));
            }
        }
        Ok(())
    };
    let no_args = |cmd: &str| -> Result<(), ConfigError> {
        match positional.first() {
            Some(extra) => Err(ConfigError(format!(
                "{cmd} takes no argument {extra:?}; see --help"
            ))),
            None => Ok(()),
        }
    };
    match name {
        None => {
            only("the server", &[])?;
            no_args("the server")?;
            Ok(Command::Serve)
        }
        Some("token") => {
            only("token", &[])?;
            no_args("token")?;
            Ok(Command::Token)
        }
        Some("import") => {
            only("import", &[])?;
            match positional.as_slice() {
                [file] => Ok(Command::Import {
                    file: PathBuf::from(file),
                }),
                _ => Err(ConfigError(
                    "import needs exactly one FILE: whatsapp-mcp-stream import backup.jsonl".into(),
                )),
            }
        }
        Some("export") => {
            only("export", &["--chat", "--out"])?;
            no_args("export")?;
            let out = out.ok_or_else(|| {
                ConfigError("export needs --out FILE (use - for standard output)".into())
            })?;
            Ok(Command::Export {
                chat,
                out: PathBuf::from(out),
            })
        }
        Some("demo-data") => {
            only("demo-data", &["--messages", "--chats"])?;
            no_args("demo-data")?;
            let number = |flag: &str,
                          v: Option<String>,
                          default: u64,
                          max: u64|
             -> Result<u64, ConfigError> {
                match v {
                    None => Ok(default),
                    Some(raw) => match raw.parse::<u64>() {
                        Ok(n) if (1..=max).contains(&n) => Ok(n),
                        _ => Err(ConfigError(format!(
                            "{flag} {raw:?} is not valid; use a whole number from 1 to {max}"
                        ))),
                    },
                }
            };
            let messages = number("--messages", messages, 10_000, 100_000_000)?;
            let chats = number("--chats", chats, 50, 1_000_000)?;
            Ok(Command::DemoData { messages, chats })
        }
        Some(other) => Err(ConfigError(format!("unknown command {other:?}"))),
    }
}

fn parse_listen(source: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    let bad = || {
        ConfigError(format!(
            "{source}={value:?} is not a bind address; use IP:PORT, for example 127.0.0.1:3003, 0.0.0.0:3003 or [::]:3003"
        ))
    };
    let value = value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    // `localhost:3003` is a common way to write the loopback address.
    if let Some(port) = value.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(bad())
}

fn parse_number(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError(format!(
            "{name}={raw:?} is not valid; use a whole number from {min} to {max} (default {default})"
        ))),
    }
}

fn parse_bool(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
) -> Result<bool, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(default);
    };
    match raw.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError(format!(
            "{name}={raw:?} is not valid; use 1/true/yes/on or 0/false/no/off"
        ))),
    }
}

/// Lower-cases a `host[:port]` (or `[v6]:port`) and drops the port and a trailing dot.
/// Returns `None` for something that cannot be a host.
pub fn host_without_port(value: &str) -> Option<String> {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty()
            || (after.starts_with(':') && after[1..].bytes().all(|b| b.is_ascii_digit())))
        {
            return None;
        }
        format!("[{}]", &rest[..end])
    } else {
        match value.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => {
                h.to_string()
            }
            Some(_) if value.contains(':') => {
                // A bare IPv6 address without brackets.
                value.parse::<std::net::Ipv6Addr>().ok()?;
                format!("[{value}]")
            }
            _ => value.to_string(),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    valid.then_some(host)
}

/// The host (lower-case, no port) of an `http://` or `https://` URL.
pub fn url_host(url: &str) -> Option<String> {
    let lower = url.trim();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .or_else(|| lower.strip_prefix("HTTP://"))
        .or_else(|| lower.strip_prefix("HTTPS://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    host_without_port(authority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(&args, &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.command, Command::Serve);
        assert_eq!(c.transport, Transport::Http);
        assert_eq!(c.listen.to_string(), "127.0.0.1:3003");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert!(c.json_response);
        assert_eq!(c.max_sessions, 256);
        assert_eq!(c.session_idle_secs, 1800);
        assert_eq!(c.max_connections, 4096);
        assert_eq!(c.mcp_max_body_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn global_flags_before_or_after_the_command() {
        let a = parse(&["token", "--data-dir", "/x"], &[]).unwrap();
        let b = parse(&["--data-dir=/x", "token"], &[]).unwrap();
        assert_eq!(a.command, Command::Token);
        assert_eq!(b.command, Command::Token);
        assert_eq!(a.data_dir, PathBuf::from("/x"));
        assert_eq!(b.data_dir, PathBuf::from("/x"));
    }

    #[test]
    fn subcommands_and_their_flags() {
        let c = parse(
            &["export", "--out", "f.jsonl", "--chat", "1@s.whatsapp.net"],
            &[],
        )
        .unwrap();
        assert_eq!(
            c.command,
            Command::Export {
                chat: Some("1@s.whatsapp.net".into()),
                out: PathBuf::from("f.jsonl")
            }
        );
        let c = parse(&["--data-dir", "/d", "import", "x.jsonl"], &[]).unwrap();
        assert_eq!(
            c.command,
            Command::Import {
                file: PathBuf::from("x.jsonl")
            }
        );
        assert_eq!(c.db_path, PathBuf::from("/d/store.redb"));
        let c = parse(&["demo-data", "--messages", "5", "--chats", "2"], &[]).unwrap();
        assert_eq!(
            c.command,
            Command::DemoData {
                messages: 5,
                chats: 2
            }
        );
        assert!(parse(&["export"], &[]).unwrap_err().0.contains("--out"));
        assert!(parse(&["import"], &[]).unwrap_err().0.contains("FILE"));
        assert!(
            parse(&["token", "--out", "x"], &[])
                .unwrap_err()
                .0
                .contains("--out")
        );
        assert!(
            parse(&["demo-data", "--messages", "0"], &[])
                .unwrap_err()
                .0
                .contains("--messages")
        );
        assert!(parse(&["--chat", "x"], &[]).is_err());
    }

    #[test]
    fn idempotency_ttl() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.idempotency_ttl_ms, 86_400_000);
        let c = parse(&[], &[("WA_IDEMPOTENCY_TTL_MS", "60000")]).unwrap();
        assert_eq!(c.idempotency_ttl_ms, 60_000);
        for bad in ["59999", "0", "-1", "soon"] {
            let e = parse(&[], &[("WA_IDEMPOTENCY_TTL_MS", bad)]).unwrap_err();
            assert!(e.0.contains("WA_IDEMPOTENCY_TTL_MS"), "{bad}: {e}");
        }
    }

    #[test]
    fn safe_sending_variables() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.send_allowlist, None);
        assert_eq!(c.send_rate_per_min, 20);
        assert!(!c.send_log_bodies);
        assert_eq!(c.send_dedup_window_ms, 45_000);
        let c = parse(
            &[],
            &[
                (
                    "SEND_ALLOWLIST",
                    "+44 7700-900123, 1203630123@G.US ,123:4@lid,447700900123",
                ),
                ("SEND_RATE_PER_MIN", "0"),
                ("SEND_LOG_BODIES", "1"),
                ("WA_SEND_DEDUP_WINDOW_MS", "0"),
            ],
        )
        .unwrap();
        assert_eq!(
            c.send_allowlist.as_deref(),
            Some(
                &[
                    "447700900123@s.whatsapp.net".to_string(),
                    "1203630123@g.us".to_string(),
                    "123@lid".to_string()
                ][..]
            )
        );
        assert_eq!(c.send_rate_per_min, 0);
        assert!(c.send_log_bodies);
        assert_eq!(c.send_dedup_window_ms, 0);
        for (var, bad) in [
            ("SEND_ALLOWLIST", "bob"),
            ("SEND_ALLOWLIST", ",,"),
            ("SEND_RATE_PER_MIN", "-1"),
            ("SEND_RATE_PER_MIN", "lots"),
            ("SEND_LOG_BODIES", "maybe"),
            ("WA_SEND_DEDUP_WINDOW_MS", "-5"),
        ] {
            let e = parse(&[], &[(var, bad)]).unwrap_err();
            assert!(e.0.contains(var), "{var}={bad}: {e}");
        }
    }

    #[test]
    fn flags_win_over_env() {
        let c = parse(
            &["--listen", "0.0.0.0:9"],
            &[("LISTEN", "127.0.0.1:1"), ("TRANSPORT", "stdio")],
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9");
        assert_eq!(c.transport, Transport::Stdio);
        let c = parse(&["--http"], &[("TRANSPORT", "stdio")]).unwrap();
        assert_eq!(c.transport, Transport::Http);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_form() {
        let e = parse(&[], &[("LISTEN", "nonsense")]).unwrap_err();
        assert!(e.0.contains("LISTEN") && e.0.contains("IP:PORT"), "{e}");
        let e = parse(&[], &[("MCP_MAX_SESSIONS", "-3")]).unwrap_err();
        assert!(
            e.0.contains("MCP_MAX_SESSIONS") && e.0.contains("whole number"),
            "{e}"
        );
        let e = parse(&[], &[("MCP_HTTP_ENABLE_JSON_RESPONSE", "maybe")]).unwrap_err();
        assert!(
            e.0.contains("MCP_HTTP_ENABLE_JSON_RESPONSE") && e.0.contains("1/true"),
            "{e}"
        );
        let e = parse(&[], &[("TRANSPORT", "carrier-pigeon")]).unwrap_err();
        assert!(e.0.contains("TRANSPORT"), "{e}");
        let e = parse(&["--bogus"], &[]).unwrap_err();
        assert!(e.0.contains("--bogus"), "{e}");
        let e = parse(&[], &[("ACCESS_TOKEN", "short")]).unwrap_err();
        assert!(e.0.contains("ACCESS_TOKEN"), "{e}");
        let e = parse(&["--listen"], &[]).unwrap_err();
        assert!(e.0.contains("--listen"), "{e}");
    }

    #[test]
    fn hosts_are_compared_without_ports() {
        assert_eq!(
            host_without_port("Example.COM:3003").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_without_port("[::1]:3003").as_deref(), Some("[::1]"));
        assert_eq!(host_without_port("::1").as_deref(), Some("[::1]"));
        assert_eq!(host_without_port("pi.local.").as_deref(), Some("pi.local"));
        assert_eq!(host_without_port("bad host"), None);
        assert_eq!(
            url_host("https://wa.example.com:8443/x").as_deref(),
            Some("wa.example.com")
        );
        assert_eq!(url_host("ftp://x"), None);
        let c = parse(&[], &[("ALLOWED_HOSTS", "Pi.Local:3003, 192.168.1.20 ,*")]).unwrap();
        assert_eq!(c.allowed_hosts, vec!["pi.local", "192.168.1.20"]);
        assert!(c.allow_any_host);
    }

    #[test]
    fn whatsapp_variables() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.wa_push_name, DEFAULT_PUSH_NAME);
        assert_eq!(c.wa_proxy, None);
        let c = parse(
            &[],
            &[
                ("WA_PROXY", "socks5://u:p@proxy.lan:1080"),
                ("WA_PUSH_NAME", "office"),
                ("WA_WEB_VERSION", "2.3000.1027934701"),
            ],
        )
        .unwrap();
        assert_eq!(c.wa_proxy.as_deref(), Some("socks5://u:p@proxy.lan:1080"));
        assert_eq!(c.wa_push_name, "office");
        assert_eq!(c.wa_web_version, Some((2, 3000, 1027934701)));
        for bad in ["ftp://x:1", "http://host", "socks5://:80", "http://h:0"] {
            let e = parse(&[], &[("WA_PROXY", bad)]).unwrap_err();
            assert!(e.0.contains("WA_PROXY"), "{bad}: {e}");
        }
        let e = parse(&[], &[("WA_WEB_VERSION", "2.3000")]).unwrap_err();
        assert!(e.0.contains("WA_WEB_VERSION"), "{e}");
        let ws = parse(&[], &[("WA_WS_URL", "ws://127.0.0.1:1/ws/chat")]);
        if cfg!(feature = "test-network") {
            assert!(ws.is_ok());
        } else {
            let e = ws.unwrap_err();
            assert!(e.0.contains("test-only"), "{e}");
        }
    }
}
