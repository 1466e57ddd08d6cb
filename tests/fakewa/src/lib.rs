//! fakewa: a fake WhatsApp server for tests. The real whatsapp-rust client (built with
//! `danger-skip-cert-chain-verify`) links to it by QR and logs in, over WebSocket (TLS with a
//! CA fakewa mints, or plain) with Noise XX, the frame layer and the binary node codec.
//! See README.md for the CLI and the control API.

pub mod cdn;
pub mod certs;
pub mod client;
mod conn;
mod groups;
mod history;
mod http;
mod peers;
mod phone;
mod prekeys;
mod presence;
mod profile;
mod profile_iq;
mod route;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use serde_json::json;
use smol::net::{TcpListener, TcpStream};

pub use state::State;

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct Config {
    /// The WhatsApp side: `/ws/chat` and `/admin/mock-phone/scan-qr`.
    pub listen: SocketAddr,
    /// The JSON control API.
    pub control: SocketAddr,
    /// Created if missing; receives `ca.pem`.
    pub dir: PathBuf,
    /// Plain `ws://` and `http://` on the listen port instead of TLS.
    pub plain: bool,
}

/// A running server. Its accept loops run on smol's global executor until the process ends
/// or the `Server` is dropped.
pub struct Server {
    pub listen_addr: SocketAddr,
    pub control_addr: SocketAddr,
    pub ca_pem_path: PathBuf,
    pub state: Arc<State>,
    /// The media CDN (HTTPS on the listen IP, any free port).
    pub cdn_addr: SocketAddr,
    peers: Arc<peers::Peers>,
    _tasks: Vec<smol::Task<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.peers.stop_all();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Shared {
    state: Arc<State>,
    noise: Arc<conn::NoiseIdentity>,
    tls: Option<futures_rustls::TlsAcceptor>,
    peers: Arc<peers::Peers>,
}

/// Mints the keys, writes `DIR/ca.pem`, binds both ports and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("creating {}", config.dir.display()))?;
    let tls = certs::mint_tls()?;
    let ca_pem_path = config.dir.join("ca.pem");
    std::fs::write(&ca_pem_path, &tls.ca_pem)
        .with_context(|| format!("writing {}", ca_pem_path.display()))?;

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let control = TcpListener::bind(config.control)
        .await
        .with_context(|| format!("binding {}", config.control))?;
    let listen_addr = listener.local_addr()?;
    let control_addr = control.local_addr()?;
    let state = Arc::new(State::default());
    // Peers and the CDN use loopback when the listen address is a wildcard.
    let local_ip = match listen_addr.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    let (cdn, cdn_task) = cdn::start(
        local_ip,
        futures_rustls::TlsAcceptor::from(tls.server_config.clone()),
    )
    .await?;
    let cdn_addr = cdn.addr();
    let _ = state.cdn.set(cdn);
    let peers = Arc::new(peers::Peers::new(
        state.clone(),
        client::ClientConfig {
            addr: SocketAddr::new(local_ip, listen_addr.port()),
            tls: !config.plain,
            ca_pem: Some(tls.ca_pem.clone().into_bytes()),
        },
    ));
    let shared = Arc::new(Shared {
        state,
        noise: Arc::new(conn::NoiseIdentity::generate()),
        tls: (!config.plain).then(|| futures_rustls::TlsAcceptor::from(tls.server_config)),
        peers: peers.clone(),
    });

    let s = shared.clone();
    let listen_task = smol::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                smol::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let s = s.clone();
            smol::spawn(async move {
                if let Err(e) = serve_listen(tcp, s).await {
                    log::debug!("listen connection: {e:#}");
                }
            })
            .detach();
        }
    });
    let s = shared.clone();
    let control_task = smol::spawn(async move {
        loop {
            let Ok((tcp, _)) = control.accept().await else {
                smol::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let s = s.clone();
            smol::spawn(async move {
                if let Err(e) = serve_control(tcp, s).await {
                    log::debug!("control connection: {e:#}");
                }
            })
            .detach();
        }
    });
    Ok(Server {
        listen_addr,
        control_addr,
        ca_pem_path,
        state: shared.state.clone(),
        cdn_addr,
        peers,
        _tasks: vec![listen_task, control_task, cdn_task],
    })
}

async fn serve_listen(tcp: TcpStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    tcp.set_nodelay(true).ok();
    let mut io: Box<dyn Io> = match &shared.tls {
        Some(acceptor) => Box::new(acceptor.accept(tcp).await?),
        None => Box::new(tcp),
    };
    let req = http::read_request(&mut io).await?;
    let path = req.path.split('?').next().unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "/ws/chat") if req.is_websocket_upgrade() && shared.state.refusing() => {
            http::respond(&mut io, 503, "text/plain", b"refusing connections\n").await?;
            Ok(())
        }
        ("GET", "/ws/chat") if req.is_websocket_upgrade() => {
            let key = req
                .header("sec-websocket-key")
                .context("no Sec-WebSocket-Key")?;
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            io.write_all(head.as_bytes()).await?;
            io.flush().await?;
            let ws =
                async_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
            conn::serve(ws, shared.state.clone(), shared.noise.clone()).await;
            Ok(())
        }
        ("POST", "/admin/mock-phone/scan-qr") => {
            let qr = String::from_utf8_lossy(&req.body).into_owned();
            match shared.state.scan(&qr).await {
                Ok(jid) => http::respond(&mut io, 200, "text/plain", jid.as_bytes()).await?,
                Err(e) => {
                    http::respond(&mut io, e.status, "text/plain", e.message.as_bytes()).await?
                }
            }
            Ok(())
        }
        ("GET", "/") => {
            http::respond(&mut io, 200, "text/plain", b"fakewa\n").await?;
            Ok(())
        }
        _ => {
            http::respond(&mut io, 404, "text/plain", b"not found\n").await?;
            Ok(())
        }
    }
}

async fn serve_control(mut tcp: TcpStream, shared: Arc<Shared>) -> anyhow::Result<()> {
    // Large enough for a history sync of 100,000 messages.
    let req = http::read_request_limited(&mut tcp, 256 * 1024 * 1024).await?;
    let path = req.path.split('?').next().unwrap_or("");
    let body: serde_json::Value = if req.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => {
                http::respond_json(&mut tcp, 400, &json!({"error": format!("bad JSON: {e}")}))
                    .await?;
                return Ok(());
            }
        }
    };
    let (status, value) = match (req.method.as_str(), path) {
        ("GET", "/control/state") => (200, shared.state.snapshot()),
        ("POST", "/control/scan") => match body.get("qr").and_then(|v| v.as_str()) {
            None => (400, json!({"error": "expected {\"qr\": \"…\"}"})),
            Some(qr) => match shared.state.scan(qr).await {
                Ok(jid) => (200, json!({ "jid": jid })),
                Err(e) => (e.status, json!({ "error": e.message })),
            },
        },
        ("POST", "/control/disconnect") => {
            let jid = body.get("jid").and_then(|v| v.as_str());
            let n = shared.state.disconnect(jid);
            (200, json!({ "disconnected": n }))
        }
        ("POST", "/control/refuse-connections") => {
            match body.get("secs").and_then(serde_json::Value::as_f64) {
                Some(secs) if secs >= 0.0 => {
                    shared.state.refuse_connections(secs);
                    (200, json!({ "refusing_secs": secs }))
                }
                _ => (400, json!({"error": "expected {\"secs\": N}"})),
            }
        }
        ("POST", "/control/unlink") => match body.get("jid").and_then(|v| v.as_str()) {
            None => (400, json!({"error": "expected {\"jid\": \"…\"}"})),
            Some(jid) => match shared.state.unlink(jid) {
                Ok(removed) => (200, json!({ "removed": removed })),
                Err(e) => (e.status, json!({ "error": e.message })),
            },
        },
        ("POST", "/control/pair-code") => {
            let phone = body.get("phone").and_then(|v| v.as_str());
            let code = body.get("code").and_then(|v| v.as_str());
            match (phone, code) {
                (Some(phone), Some(code)) => {
                    match shared.state.enter_pair_code(phone, code).await {
                        Ok(jid) => (200, json!({ "jid": jid })),
                        Err(e) => (e.status, json!({ "error": e.message })),
                    }
                }
                _ => (
                    400,
                    json!({"error": "expected {\"phone\": \"…\", \"code\": \"…\"}"}),
                ),
            }
        }
        // A group created server-side (groups.rs).
        ("POST", "/control/groups") => {
            let subject = body.get("subject").and_then(|v| v.as_str()).unwrap_or("");
            let members: Option<Vec<String>> =
                body.get("members").and_then(|v| v.as_array()).map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str().map(str::to_string))
                        .collect()
                });
            match members {
                Some(members) => match shared.state.control_create_group(subject, &members) {
                    Ok(jid) => (200, json!({ "jid": jid })),
                    Err(e) => (e.status, json!({ "error": e.message })),
                },
                None => (
                    400,
                    json!({"error": "expected {\"subject\": \"…\", \"members\": [\"…\"]}"}),
                ),
            }
        }
        // Peers, history sync and profile pictures (peers.rs, history.rs).
        (method, p)
            if p == "/control/peers"
                || p.starts_with("/control/peers/")
                || p == "/control/history"
                || p == "/control/profile-pic" =>
        {
            peers::control(&shared.state, &shared.peers, method, &req.path, &body).await
        }
        _ => (404, json!({"error": "no such endpoint"})),
    };
    http::respond_json(&mut tcp, status, &value).await?;
    Ok(())
}
