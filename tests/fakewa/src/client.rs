//! The glue a real whatsapp-rust client needs to run on smol against fakewa: the `Runtime`
//! on smol's global executor, a WebSocket `TransportFactory` (TLS trusting fakewa's CA, or
//! plain), an HTTPS `HttpClient` for the CDN (trusting the same CA), and `start_bot`, which
//! builds a client over an in-memory store and forwards its events to a channel. Peers
//! (`peers.rs`) and the integration tests share it. It knows nothing of fakewa's state.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::client::IntoClientRequest as _;
use async_tungstenite::tungstenite::http::HeaderValue;
use futures_lite::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, StreamExt as _};
use futures_rustls::rustls;
use whatsapp_rust::async_trait;
use whatsapp_rust::bot::{Bot, BotHandle, EventDelivery};
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

/// A TLS connector trusting only the certificates in `ca_pem` (fakewa's `ca.pem`).
pub fn tls_connector(ca_pem: &[u8]) -> anyhow::Result<futures_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem) {
        roots
            .add(cert.context("PEM certificate")?)
            .context("adding the CA")?;
    }
    if roots.is_empty() {
        bail!("no certificate in the CA PEM");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(futures_rustls::TlsConnector::from(Arc::new(config)))
}

/// Dials fakewa's `/ws/chat`: TLS trusting only fakewa's CA, or plain.
pub struct WsFactory {
    pub addr: SocketAddr,
    pub tls: Option<futures_rustls::TlsConnector>,
}

impl WsFactory {
    /// `ca_pem` given: `wss://` trusting it; none: plain `ws://`.
    pub fn new(addr: SocketAddr, ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        let tls = ca_pem.map(tls_connector).transpose()?;
        Ok(Self { addr, tls })
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
        tcp.set_nodelay(true).ok();
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

/// A one-request-per-connection HTTP/1.1 client: `https://` trusting fakewa's CA (the CDN),
/// `http://` plain. Bodies are sent with `Content-Length`; answers are read to their
/// `Content-Length` (or to the end of the connection).
pub struct CdnHttpClient {
    tls: Option<futures_rustls::TlsConnector>,
}

/// The largest answer body the client reads.
const MAX_HTTP_BODY: usize = 512 * 1024 * 1024;

impl CdnHttpClient {
    /// `ca_pem` none: `https://` requests fail with a clear error.
    pub fn new(ca_pem: Option<&[u8]>) -> anyhow::Result<Self> {
        Ok(Self {
            tls: ca_pem.map(tls_connector).transpose()?,
        })
    }
}

/// `scheme://host[:port]/path?query` → (tls, host, port, path-and-query).
fn split_url(url: &str) -> anyhow::Result<(bool, String, u16, String)> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        bail!("unsupported URL {url:?}");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.to_string(), p.parse().context("bad port")?)
        }
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((tls, host, port, path.to_string()))
}

#[async_trait]
impl HttpClient for CdnHttpClient {
    async fn execute(&self, req: HttpRequest) -> anyhow::Result<HttpResponse> {
        let (tls, host, port, path) = split_url(&req.url)?;
        let tcp = smol::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        let mut io: Box<dyn Io> = if tls {
            let connector = self
                .tls
                .as_ref()
                .context("this client trusts no CA, so it makes no HTTPS requests")?;
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::from(ip),
                Err(_) => rustls::pki_types::ServerName::try_from(host.clone())
                    .context("bad host name")?,
            };
            Box::new(connector.connect(name, tcp).await?)
        } else {
            Box::new(tcp)
        };
        let body = req.body.unwrap_or_default();
        let mut head = format!(
            "{} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
            req.method,
            body.len()
        );
        for (k, v) in &req.headers {
            if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host") {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        head.push_str("\r\n");
        io.write_all(head.as_bytes()).await?;
        io.write_all(&body).await?;
        io.flush().await?;
        read_response(&mut io).await
    }
}

async fn read_response(io: &mut Box<dyn Io>) -> anyhow::Result<HttpResponse> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 64 * 1024];
    let head_len = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            bail!("the connection closed before the answer's head ended");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(&buf[..head_len])
        .context("bad HTTP answer head")?;
    let status = resp.code.context("no status")?;
    let length: Option<usize> = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok());
    let mut body = buf[head_len..].to_vec();
    loop {
        if length.is_some_and(|l| body.len() >= l) {
            break;
        }
        if body.len() > MAX_HTTP_BODY {
            bail!("answer body too large");
        }
        let n = match io.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify still ended the body.
            Err(e) if length.is_none() => {
                log::debug!("HTTP read ended: {e}");
                0
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            if let Some(l) = length {
                bail!("the answer body ended at {} of {l} bytes", body.len());
            }
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if let Some(l) = length {
        body.truncate(l);
    }
    Ok(HttpResponse {
        status_code: status,
        body,
    })
}

/// How to reach fakewa.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// fakewa's listen address.
    pub addr: SocketAddr,
    /// `wss://` (trusting `ca_pem`) rather than `ws://`.
    pub tls: bool,
    /// fakewa's CA: trusted by the WebSocket (with `tls`) and by the CDN client.
    pub ca_pem: Option<Vec<u8>>,
}

/// A real whatsapp-rust client with `push_name` on `backend`, connecting to fakewa; its
/// events arrive in order on the returned channel.
pub async fn start_bot(
    config: &ClientConfig,
    push_name: &str,
    backend: Arc<InMemoryBackend>,
) -> anyhow::Result<(BotHandle, async_channel::Receiver<Arc<Event>>)> {
    let ws_ca = if config.tls {
        Some(
            config
                .ca_pem
                .as_deref()
                .context("a TLS connection needs fakewa's CA")?,
        )
    } else {
        None
    };
    let factory = WsFactory::new(config.addr, ws_ca)?;
    let http = CdnHttpClient::new(config.ca_pem.as_deref())?;
    let (ev_tx, ev_rx) = async_channel::unbounded();
    let bot = Bot::builder()
        .with_backend_arc(backend)
        .with_transport_factory(factory)
        .with_http_client(http)
        .with_runtime(SmolRuntime)
        .with_version((2, 3000, 0))
        .with_push_name(push_name)
        .with_event_delivery(EventDelivery::Ordered { capacity: 65_536 })
        .on_event(move |ev, _client| {
            let tx = ev_tx.clone();
            async move {
                let _ = tx.send(ev).await;
            }
        })
        .build()
        .await
        .context("building the client")?;
    Ok((bot.spawn(), ev_rx))
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("https://127.0.0.1:4443/mms/x?a=1").unwrap(),
            (true, "127.0.0.1".into(), 4443, "/mms/x?a=1".into())
        );
        assert_eq!(
            split_url("http://localhost/").unwrap(),
            (false, "localhost".into(), 80, "/".into())
        );
        assert_eq!(
            split_url("https://[::1]:9/p").unwrap(),
            (true, "::1".into(), 9, "/p".into())
        );
        assert!(split_url("ftp://x").is_err());
    }
}
