//! whatsapp-mcp-stream: wiring only. Config → auth → tools → MCP → HTTP (or stdio).
//!
//! Owns: the order things start in and the exit codes (0 fine, 1 runtime failure, 2 bad
//! configuration). Must not: hold logic that belongs to a module.

use whatsapp_mcp_stream::{config, http, mcp, runtime, store, tools, wa};

use config::{Command, Config, Transport};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn main() -> ExitCode {
    let config = match Config::from_process() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("whatsapp-mcp-stream: {e}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    let result = match config.command {
        Command::Help => {
            print!("{}", config::HELP);
            Ok(())
        }
        Command::Version => {
            println!("whatsapp-mcp-stream {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Token => print_token(&config),
        Command::Import { ref file } => open_store(&config).and_then(|s| run_import(&s, file)),
        Command::Export { ref chat, ref out } => {
            open_store(&config).and_then(|s| run_export(&s, chat.as_deref(), out))
        }
        Command::DemoData { messages, chats } => {
            open_store(&config).and_then(|s| run_demo(&s, messages, chats))
        }
        Command::Serve => serve(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Busy(e)) => {
            eprintln!("whatsapp-mcp-stream: {e}");
            ExitCode::from(3)
        }
        Err(Failure::Fatal(e)) => {
            log::error!("{e}");
            eprintln!("whatsapp-mcp-stream: {e}");
            ExitCode::from(1)
        }
    }
}

/// How a command failed: exit 3 when the data dir is held by a running server, else 1.
enum Failure {
    Busy(String),
    Fatal(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Failure {
        Failure::Fatal(e)
    }
}

fn open_store(config: &Config) -> Result<store::Store, Failure> {
    store::Store::open(&config.db_path, config.store_cache_mb).map_err(|e| match e {
        store::OpenError::Locked(_) => Failure::Busy(e.to_string()),
        store::OpenError::Other(_) => Failure::Fatal(e.to_string()),
    })
}

fn run_import(store: &store::Store, file: &std::path::Path) -> Result<(), Failure> {
    let report = store::jsonl::import_file(store, file).map_err(|e| e.to_string())?;
    println!("{report}");
    Ok(())
}

fn run_export(
    store: &store::Store,
    chat: Option<&str>,
    out: &std::path::Path,
) -> Result<(), Failure> {
    let report = store::jsonl::export_file(store, chat, out).map_err(|e| e.to_string())?;
    eprintln!("{report}");
    Ok(())
}

fn run_demo(store: &store::Store, messages: u64, chats: u64) -> Result<(), Failure> {
    let report = store::demo::generate(store, messages, chats).map_err(|e| e.to_string())?;
    println!("{report}");
    Ok(())
}

fn print_token(config: &Config) -> Result<(), Failure> {
    if let Some(t) = &config.access_token {
        println!("{t}");
        return Ok(());
    }
    match http::auth::read_token_file(&config.token_path())? {
        Some(t) => {
            println!("{t}");
            Ok(())
        }
        None => Err(Failure::Fatal(format!(
            "no access token is configured: ACCESS_TOKEN is unset and {} does not exist. \
             One is generated the first time the server listens on a non-loopback address, \
             or set ACCESS_TOKEN yourself",
            config.token_path().display()
        ))),
    }
}

fn serve(config: Config) -> Result<(), Failure> {
    let store = open_store(&config)?;
    // Starting only spawns: WhatsApp never holds up MCP or the admin page.
    let engine = wa::engine::Engine::start(
        store.clone(),
        wa::engine::EngineConfig {
            ws_url: config.wa_ws_url.clone(),
            proxy: config.wa_proxy.clone(),
            extra_ca: config.wa_test_ca.clone(),
            version: config.wa_web_version,
            push_name: config.wa_push_name.clone(),
        },
    )
    .map_err(Failure::Fatal)?;
    let registry = tools::Registry::new(tools::ToolEnv {
        read_only: config.read_only,
        auto_select_contact: config.auto_select_contact,
        store: store.clone(),
        engine: Some(engine.clone()),
        idempotency_ttl_ms: config.idempotency_ttl_ms,
        send_guard: Arc::new(tools::safety::SendGuard::new(tools::safety::SendPolicy {
            allowlist: config.send_allowlist.clone(),
            rate_per_min: config.send_rate_per_min,
            log_bodies: config.send_log_bodies,
            dedup_window_ms: config.send_dedup_window_ms,
        })),
    });
    let dispatcher = Arc::new(mcp::dispatch::Dispatcher::new(registry));
    let threads = config.worker_threads;
    if config.transport == Transport::Stdio {
        log::info!("serving MCP on stdio");
        return runtime::block_on(threads, mcp::stdio::serve(dispatcher))
            .map_err(|e| Failure::Fatal(format!("stdio failed: {e}")));
    }
    let auth = http::auth::Auth::init(&config).map_err(Failure::Fatal)?;
    let sessions = Arc::new(mcp::session::Sessions::new(
        Duration::from_secs(config.session_idle_secs),
        config.max_sessions,
    ));
    let mcp_http = mcp::http::McpHttp {
        dispatcher,
        sessions: sessions.clone(),
        json_response: config.json_response,
        max_body: config.mcp_max_body_bytes,
        keepalive: Duration::from_secs(config.sse_keepalive_secs),
    };
    let listen = config.listen;
    let token_required = auth.token_required();
    let app = Arc::new(http::App::new(config, auth, mcp_http, Some(engine)).with_store(store));
    runtime::block_on(threads, async move {
        let listener = smol::net::TcpListener::bind(listen).await.map_err(|e| {
            format!("cannot listen on {listen}: {e}; is another server using the port? choose another with --listen or LISTEN")
        })?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        log::info!(
            "serving on http://{bound}: MCP at /mcp, admin at /admin ({})",
            if token_required {
                "access token required"
            } else {
                "no access token: loopback only"
            }
        );
        let sweeper = runtime::spawn(async move {
            loop {
                async_io::Timer::after(sessions.sweep_interval()).await;
                let n = sessions.sweep();
                if n > 0 {
                    log::info!("{n} idle MCP session(s) expired");
                }
            }
        });
        http::serve(listener, app).await;
        drop(sweeper);
        Ok::<(), String>(())
    })
    .map_err(Failure::Fatal)
}
