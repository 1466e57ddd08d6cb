//! Test helpers: fakewa in process, and a real whatsapp-rust client on smol (runtime,
//! WebSocket transport over TLS trusting `DIR/ca.pem` or plain, a stub HTTP client).

#![allow(dead_code)]

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest as _;
use async_tungstenite::tungstenite::http::HeaderValue;
use futures_lite::{AsyncRead, AsyncWrite, StreamExt as _};
use futures_rustls::rustls;
use whatsapp_rust::async_trait;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::net::{
    DisconnectReason, HttpClient, HttpRequest, HttpResponse, Transport, TransportEvent,
    TransportFactory,
};
use whatsapp_rust::wacore::runtime::{AbortHandle, Runtime};
use whatsapp_rust::wacore::store::InMemoryBackend;

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
type BoxFutSend = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The engine's runtime on smol's global executor.
pub struct SmolRuntime;

#[async_trait]
impl Runtime for SmolRuntime {
    fn spawn(&self, f: BoxFut) -> AbortHandle {
        // A detached handle must not cancel the task: abort through `abortable` instead of
        // dropping the smol task.
        let (f, h) = whatsapp_rust::futures::future::abortable(f);
        smol::spawn(async move {
            let _ = f.await;
        })
        .detach();
        AbortHandle::new(move || h.abort())
    }
    fn spawn_detached(&self, f: BoxFut) {
        smol::spawn(f).detach();
    }
    fn sleep(&self, d: Duration) -> BoxFutSend {
        Box::pin(async move {
            smol::Timer::after(d).await;
        })
    }
    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send + 'static>) -> BoxFutSend {
        Box::pin(smol::unblock(f))
    }
    fn yield_now(&self) -> Option<BoxFutSend> {
        Some(Box::pin(smol::future::yield_now()))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Dials fakewa's `/ws/chat`: TLS trusting only fakewa's CA, or plain.
pub struct WsFactory {
    pub addr: SocketAddr,
    pub tls: Option<futures_rustls::TlsConnector>,
}

impl WsFactory {
    pub fn new(addr: SocketAddr, ca_pem: Option<&std::path::Path>) -> Self {
        let tls = ca_pem.map(|path| {
            let pem = std::fs::read(path).expect("ca.pem");
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
                roots.add(cert.expect("PEM certificate")).expect("CA");
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            futures_rustls::TlsConnector::from(Arc::new(config))
        });
        Self { addr, tls }
    }
}

struct WsTransport {
    sink: smol::lock::Mutex<async_tungstenite::WebSocketSender<Box<dyn Io>>>,
}

#[async_trait]
impl Transport for WsTransport {
    async fn send(&self, data: Bytes) -> anyhow::Result<()> {
        self.sink.lock().await.send(Message::Binary(data)).await?;
        Ok(())
    }
    async fn disconnect(&self) {
        let _ = self.sink.lock().await.close(None).await;
    }
}

#[async_trait]
impl TransportFactory for WsFactory {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
        let tcp = smol::net::TcpStream::connect(self.addr).await?;
        let (io, scheme): (Box<dyn Io>, _) = match &self.tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::from(self.addr.ip());
                (Box::new(connector.connect(name, tcp).await?), "wss")
            }
            None => (Box::new(tcp), "ws"),
        };
        let mut req = format!("{scheme}://{}/ws/chat", self.addr).into_client_request()?;
        req.headers_mut().insert(
            "Origin",
            HeaderValue::from_static("https://web.whatsapp.com"),
        );
        let (ws, _) = async_tungstenite::client_async(req, io).await?;
        let (sink, mut rx) = ws.split();
        let (tx, events) = async_channel::bounded(64);
        tx.send(TransportEvent::Connected).await?;
        smol::spawn(async move {
            let reason = loop {
                match rx.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        if tx.send(TransportEvent::DataReceived(b)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        break DisconnectReason::ServerClose {
                            code: frame.as_ref().map(|f| u16::from(f.code)),
                            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                        };
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break DisconnectReason::ReadError(e.to_string()),
                    None => break DisconnectReason::StreamEnded,
                }
            };
            let _ = tx.send(TransportEvent::Disconnected(reason)).await;
        })
        .detach();
        let transport: Arc<dyn Transport> = Arc::new(WsTransport {
            sink: smol::lock::Mutex::new(sink),
        });
        Ok((transport, events))
    }
}

/// No HTTP in these tests (the version is pinned with `with_version`).
pub struct NoHttp;

#[async_trait]
impl HttpClient for NoHttp {
    async fn execute(&self, req: HttpRequest) -> anyhow::Result<HttpResponse> {
        Ok(HttpResponse {
            status_code: 404,
            body: format!("fakewa tests make no HTTP requests ({})", req.url).into_bytes(),
        })
    }
}

/// A fakewa in this process on 127.0.0.1:0, in a fresh temporary directory.
pub async fn start_fakewa(plain: bool) -> fakewa::Server {
    let _ = env_logger::builder().is_test(true).try_init();
    let dir = scratch_dir();
    fakewa::start(fakewa::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        control: "127.0.0.1:0".parse().unwrap(),
        dir,
        plain,
    })
    .await
    .expect("fakewa starts")
}

pub fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fakewa-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A real whatsapp-rust client with `push_name`, connected to `server`; its events arrive
/// on the returned channel.
pub async fn start_client(
    server: &fakewa::Server,
    plain: bool,
    push_name: &str,
) -> (BotHandle, async_channel::Receiver<Arc<Event>>) {
    let ca = (!plain).then_some(server.ca_pem_path.as_path());
    start_client_at(server.listen_addr, ca, push_name).await
}

/// Like `start_client`, for a fakewa at `addr` (TLS trusting `ca`, or plain without it).
pub async fn start_client_at(
    addr: SocketAddr,
    ca: Option<&std::path::Path>,
    push_name: &str,
) -> (BotHandle, async_channel::Receiver<Arc<Event>>) {
    start_client_with(addr, ca, push_name, Arc::new(InMemoryBackend::new())).await
}

/// Like `start_client_at`, over an existing store (a restarted client).
pub async fn start_client_with(
    addr: SocketAddr,
    ca: Option<&std::path::Path>,
    push_name: &str,
    backend: Arc<InMemoryBackend>,
) -> (BotHandle, async_channel::Receiver<Arc<Event>>) {
    let (ev_tx, ev_rx) = async_channel::unbounded();
    let factory = WsFactory::new(addr, ca);
    let bot = Bot::builder()
        .with_backend_arc(backend)
        .with_transport_factory(factory)
        .with_http_client(NoHttp)
        .with_runtime(SmolRuntime)
        .with_version((2, 3000, 0))
        .with_push_name(push_name)
        .on_event(move |ev, _client| {
            let tx = ev_tx.clone();
            async move {
                let _ = tx.send(ev).await;
            }
        })
        .build()
        .await
        .expect("bot builds");
    (bot.spawn(), ev_rx)
}

/// Waits up to `secs` for an event `pick` accepts.
pub async fn wait_for<T>(
    events: &async_channel::Receiver<Arc<Event>>,
    secs: u64,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let next = futures_lite::future::or(async { events.recv().await.ok() }, async {
            smol::Timer::after(left).await;
            None
        })
        .await;
        match next {
            Some(ev) => {
                if let Some(v) = pick(&ev) {
                    return v;
                }
            }
            None => panic!("timed out after {secs}s waiting for {what}"),
        }
    }
}

/// A blocking HTTP/1.1 exchange with the control port (std only): (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `http` off the async thread.
pub async fn http_async(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let (method, path, body) = (method.to_string(), path.to_string(), body.to_string());
    smol::unblock(move || http(addr, &method, &path, &body)).await
}

pub async fn state(server: &fakewa::Server) -> serde_json::Value {
    state_at(server.control_addr).await
}

pub async fn state_at(control: SocketAddr) -> serde_json::Value {
    let (status, body) = http_async(control, "GET", "/control/state", "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("state JSON")
}

/// A client with `push_name` linked by QR (through `/control/scan`) and `Connected`;
/// returns its handle, client, event channel and device JID.
pub async fn link_connected(
    server: &fakewa::Server,
    push_name: &str,
) -> (
    BotHandle,
    Arc<whatsapp_rust::Client>,
    async_channel::Receiver<Arc<Event>>,
    String,
) {
    let (bot, events) = start_client(server, true, push_name).await;
    let qr = wait_for(&events, 30, "PairingQrCode", |ev| match ev {
        Event::PairingQrCode(q) => Some(q.code.clone()),
        _ => None,
    })
    .await;
    let body = serde_json::json!({ "qr": qr }).to_string();
    let (status, answer) = http_async(server.control_addr, "POST", "/control/scan", &body).await;
    assert_eq!(status, 200, "{answer}");
    let jid = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["jid"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(&events, 30, "Connected", |ev| {
        matches!(ev, Event::Connected(_)).then_some(())
    })
    .await;
    let client = bot.client();
    (bot, client, events, jid)
}

/// Polls `/control/state` until `check` accepts it.
pub async fn wait_state(
    server: &fakewa::Server,
    secs: u64,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let st = state(server).await;
        if check(&st) {
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        smol::Timer::after(Duration::from_millis(50)).await;
    }
}
