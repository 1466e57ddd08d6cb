//! The engine's WebSocket transport: whatsapp-rust's `TransportFactory` on smol.
//!
//! Owns: dialing the WhatsApp Web socket (`wss://web.whatsapp.com/ws/chat`, Origin
//! `https://web.whatsapp.com`) over smol TCP, an optional HTTP CONNECT or SOCKS5 proxy
//! (`WA_PROXY`), TLS through futures-rustls (ring, webpki roots) and an RFC 6455 client
//! (async-tungstenite, no runtime features) over that TLS stream; one read pump task per
//! connection that turns WebSocket messages into `TransportEvent`s.
//!
//! Must not: know anything about WhatsApp framing, Noise or the binary protocol (the client does
//! all of that; this is a dumb pipe: one `send` = one binary message); read the environment (the
//! caller passes `TransportConfig`); ever skip TLS verification. Under the `test-network` feature
//! only, a `ws://` URL is accepted and an extra CA from a PEM file is trusted on top of the
//! webpki roots (that is how tests reach fakewa).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
#[cfg(feature = "test-network")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::HeaderValue;
use async_tungstenite::tungstenite::http::header::ORIGIN;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message, error::ProtocolError};
use async_tungstenite::{WebSocketReceiver, WebSocketSender};
use base64::Engine as _;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use futures_rustls::TlsConnector;
use futures_rustls::pki_types::{CertificateDer, ServerName};
use futures_rustls::rustls::{ClientConfig, RootCertStore};
use whatsapp_rust::anyhow::{self, Context as _, anyhow, bail};
use whatsapp_rust::async_trait;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::transport::{DisconnectReason, Transport, TransportEvent, TransportFactory};
use whatsapp_rust::wacore::net::{WHATSAPP_WEB_ORIGIN, WHATSAPP_WEB_WS_URL};

/// How many transport events may queue before the read pump waits for the client.
const EVENT_QUEUE: usize = 64;
/// How long `disconnect` waits for the Close frame to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest proxy reply header we accept.
const MAX_PROXY_REPLY: usize = 8 * 1024;

/// What the factory dials. `Default` is WhatsApp Web, directly, with a 20 s connect timeout.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The socket URL. `wss://` only; `ws://` too under the `test-network` feature.
    pub url: String,
    /// The `Origin` header of the upgrade request.
    pub origin: String,
    /// `WA_PROXY`: `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port`.
    pub proxy: Option<String>,
    /// Bounds TCP connect, proxy handshake, TLS and WebSocket handshakes together.
    pub connect_timeout: Duration,
    /// `WA_TEST_CA`: a PEM file of CA certificates trusted on top of the webpki roots.
    #[cfg(feature = "test-network")]
    pub extra_ca_pem: Option<PathBuf>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            url: WHATSAPP_WEB_WS_URL.to_string(),
            origin: WHATSAPP_WEB_ORIGIN.to_string(),
            proxy: None,
            connect_timeout: Duration::from_secs(20),
            #[cfg(feature = "test-network")]
            extra_ca_pem: None,
        }
    }
}

/// whatsapp-rust's `TransportFactory`: every `create_transport` dials a fresh socket.
pub struct WaTransportFactory {
    url: String,
    endpoint: Endpoint,
    origin: HeaderValue,
    proxy: Option<Proxy>,
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl fmt::Debug for WaTransportFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaTransportFactory")
            .field("url", &self.url)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl WaTransportFactory {
    /// Validates the configuration and builds the TLS client once. Reads the extra CA file under
    /// `test-network`.
    pub fn new(config: TransportConfig) -> anyhow::Result<Self> {
        let endpoint = parse_ws_url(&config.url)?;
        let origin = HeaderValue::from_str(&config.origin).context("invalid Origin header")?;
        let proxy = match config.proxy.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => Some(Proxy::parse(p)?),
            _ => None,
        };
        #[cfg(feature = "test-network")]
        let extra = match &config.extra_ca_pem {
            Some(path) => load_ca_pem(path)?,
            None => Vec::new(),
        };
        #[cfg(not(feature = "test-network"))]
        let extra = Vec::new();
        Ok(Self {
            url: config.url,
            endpoint,
            origin,
            proxy,
            tls: tls_connector(extra)?,
            connect_timeout: config.connect_timeout,
        })
    }

    async fn dial(&self) -> anyhow::Result<WsStream> {
        let ep = &self.endpoint;
        let tcp = match &self.proxy {
            None => smol::net::TcpStream::connect((ep.host.as_str(), ep.port))
                .await
                .with_context(|| format!("connecting to {}:{}", ep.host, ep.port))?,
            Some(proxy) => proxy.connect(&ep.host, ep.port).await?,
        };
        // Frames are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let io: BoxIo = if ep.secure {
            let name = ServerName::try_from(ep.host.clone())
                .map_err(|e| anyhow!("invalid TLS server name {:?}: {e}", ep.host))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {}", ep.host))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .context("building the WebSocket upgrade request")?;
        request.headers_mut().insert(ORIGIN, self.origin.clone());
        let (ws, _response) = async_tungstenite::client_async(request, io)
            .await
            .context("WebSocket handshake")?;
        Ok(ws)
    }
}

#[async_trait]
impl TransportFactory for WaTransportFactory {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(Arc<dyn Transport>, Receiver<TransportEvent>)> {
        let timeout = self.connect_timeout;
        let ws = futures_lite::future::or(self.dial(), async move {
            async_io::Timer::after(timeout).await;
            Err(anyhow!("connecting timed out after {timeout:?}"))
        })
        .await
        .with_context(|| format!("connecting to {}", self.url))?;
        let (sink, stream) = ws.split();
        let (events_tx, events_rx) = async_channel::bounded(EVENT_QUEUE);
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        // The queue is empty, so this cannot fail for lack of room.
        let _ = events_tx.try_send(TransportEvent::Connected);
        crate::runtime::spawn(read_pump(stream, events_tx, stop_rx)).detach();
        let transport = WaTransport {
            sink: smol::lock::Mutex::new(Some(sink)),
            stop: stop_tx,
        };
        Ok((Arc::new(transport), events_rx))
    }
}

trait AsyncIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncIo for T {}
type BoxIo = Box<dyn AsyncIo>;
type WsStream = async_tungstenite::WebSocketStream<BoxIo>;

/// One live socket: the write half, and the switch that stops its read pump.
struct WaTransport {
    sink: smol::lock::Mutex<Option<WebSocketSender<BoxIo>>>,
    stop: Sender<()>,
}

#[async_trait]
impl Transport for WaTransport {
    async fn send(&self, data: Bytes) -> anyhow::Result<()> {
        let mut sink = self.sink.lock().await;
        let Some(sink) = sink.as_mut() else {
            bail!("the WebSocket is disconnected");
        };
        sink.send(Message::Binary(data))
            .await
            .context("WebSocket send")
    }

    async fn disconnect(&self) {
        let sink = self.sink.lock().await.take();
        if let Some(mut sink) = sink {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            let closing = async move {
                let _ = sink.close(Some(frame)).await;
            };
            let give_up = async {
                async_io::Timer::after(CLOSE_TIMEOUT).await;
            };
            futures_lite::future::or(closing, give_up).await;
        }
        self.stop.close();
    }
}

/// Forwards binary messages as `DataReceived` until the socket ends or `disconnect` stops it,
/// then reports why with one `Disconnected`.
async fn read_pump(
    mut stream: WebSocketReceiver<BoxIo>,
    events: Sender<TransportEvent>,
    stop: Receiver<()>,
) {
    let reason = loop {
        let next = futures_lite::future::or(async { Some(stream.next().await) }, async {
            let _ = stop.recv().await;
            None
        })
        .await;
        match next {
            None => break DisconnectReason::Unknown,
            Some(None) => break DisconnectReason::StreamEnded,
            Some(Some(Ok(Message::Binary(data)))) => {
                if events
                    .send(TransportEvent::DataReceived(data))
                    .await
                    .is_err()
                {
                    // Nobody listens any more: the client dropped the connection.
                    return;
                }
            }
            Some(Some(Ok(Message::Close(frame)))) => {
                break match frame {
                    Some(f) => DisconnectReason::ServerClose {
                        code: Some(u16::from(f.code)),
                        reason: f.reason.as_str().to_string(),
                    },
                    None => DisconnectReason::ServerClose {
                        code: None,
                        reason: String::new(),
                    },
                };
            }
            // Text, ping, pong: tungstenite answers pings itself; the rest is not ours.
            Some(Some(Ok(_))) => {}
            Some(Some(Err(e))) => break read_error_reason(e),
        }
    };
    log::debug!("WhatsApp socket ended: {reason}");
    let _ = events.send(TransportEvent::Disconnected(reason)).await;
}

fn read_error_reason(e: WsError) -> DisconnectReason {
    match e {
        WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            DisconnectReason::StreamEnded
        }
        WsError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DisconnectReason::StreamEnded
        }
        e => DisconnectReason::ReadError(e.to_string()),
    }
}

/// rustls on ring with the webpki roots, plus `extra` trust anchors (test CA only).
fn tls_connector(extra: Vec<CertificateDer<'static>>) -> anyhow::Result<TlsConnector> {
    Ok(TlsConnector::from(Arc::new(client_tls_config(extra)?)))
}

/// The rustls client configuration shared by the transport (and, in shape, the HTTP client).
pub(crate) fn client_tls_config(
    extra: Vec<CertificateDer<'static>>,
) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in extra {
        roots
            .add(cert)
            .context("the extra CA certificate is not a valid trust anchor")?;
    }
    let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Reads every certificate of a PEM file (the `WA_TEST_CA` file).
#[cfg(feature = "test-network")]
pub(crate) fn load_ca_pem(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    use futures_rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("parsing {}: {e:?}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// Where the socket URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    secure: bool,
    host: String,
    port: u16,
}

fn parse_ws_url(url: &str) -> anyhow::Result<Endpoint> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("not a WebSocket URL: {url:?}"))?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "wss" => true,
        #[cfg(feature = "test-network")]
        "ws" => false,
        _ => bail!("unsupported WebSocket URL scheme {scheme:?} (wss:// only)"),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        bail!("the WebSocket URL must not carry credentials");
    }
    let (host, port) = split_host_port(authority, if secure { 443 } else { 80 })?;
    Ok(Endpoint { secure, host, port })
}

/// Splits `host[:port]` or `[v6][:port]`; the host comes back without brackets.
fn split_host_port(authority: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("unterminated IPv6 address in {authority:?}"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => bail!("invalid authority {authority:?}"),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        bail!("no host in {authority:?}");
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| anyhow!("invalid port in {authority:?}"))?,
        None => default_port,
    };
    Ok((host.to_string(), port))
}

/// `host:port` as it appears in a request line (IPv6 in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyKind {
    HttpConnect,
    Socks5,
}

/// A parsed `WA_PROXY`.
#[derive(Clone, PartialEq, Eq)]
struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never log the password.
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

impl Proxy {
    fn parse(spec: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = spec.split_once("://").ok_or_else(|| {
            anyhow!("WA_PROXY must look like http://host:port or socks5://host:port")
        })?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::HttpConnect,
            "socks5" | "socks5h" => ProxyKind::Socks5,
            _ => bail!("unsupported WA_PROXY scheme {scheme:?} (http or socks5)"),
        };
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if hostport.is_empty() || hostport.contains('/') {
            bail!("invalid WA_PROXY address {hostport:?}");
        }
        let default_port = match kind {
            ProxyKind::HttpConnect => 8080,
            ProxyKind::Socks5 => 1080,
        };
        let (host, port) = split_host_port(hostport, default_port)?;
        let credentials = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                Some((percent_decode(user)?, percent_decode(pass)?))
            }
        };
        if kind == ProxyKind::Socks5
            && let Some((user, pass)) = &credentials
            && (user.len() > 255 || pass.len() > 255)
        {
            bail!("SOCKS5 user name and password are limited to 255 bytes");
        }
        Ok(Self {
            kind,
            host,
            port,
            credentials,
        })
    }

    /// Connects to the proxy and asks it for a tunnel to `host:port`.
    async fn connect(&self, host: &str, port: u16) -> anyhow::Result<smol::net::TcpStream> {
        let mut tcp = smol::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to the proxy {}:{}", self.host, self.port))?;
        match self.kind {
            ProxyKind::HttpConnect => self.http_connect(&mut tcp, host, port).await?,
            ProxyKind::Socks5 => self.socks5_connect(&mut tcp, host, port).await?,
        }
        Ok(tcp)
    }

    async fn http_connect(
        &self,
        tcp: &mut smol::net::TcpStream,
        host: &str,
        port: u16,
    ) -> anyhow::Result<()> {
        let target = authority(host, port);
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some((user, pass)) = &self.credentials {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .await
            .context("writing to the HTTP proxy")?;
        // Byte by byte, so nothing past the header (the server's TLS bytes) is consumed.
        let mut head = Vec::with_capacity(128);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_PROXY_REPLY {
                bail!("the HTTP proxy's reply header is too long");
            }
            let n = tcp
                .read(&mut byte)
                .await
                .context("reading the HTTP proxy's reply")?;
            if n == 0 {
                bail!("the HTTP proxy closed the connection during CONNECT");
            }
            head.push(byte[0]);
        }
        let status_line = head
            .split(|b| *b == b'\n')
            .next()
            .map(|l| String::from_utf8_lossy(l).trim().to_string())
            .unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("bad HTTP proxy reply {status_line:?}"))?;
        if !(200..300).contains(&status) {
            bail!("the HTTP proxy refused CONNECT {target}: {status_line}");
        }
        Ok(())
    }

    async fn socks5_connect(
        &self,
        tcp: &mut smol::net::TcpStream,
        host: &str,
        port: u16,
    ) -> anyhow::Result<()> {
        const VERSION: u8 = 5;
        const NO_AUTH: u8 = 0;
        const USER_PASS: u8 = 2;
        let greeting: &[u8] = if self.credentials.is_some() {
            &[VERSION, 2, NO_AUTH, USER_PASS]
        } else {
            &[VERSION, 1, NO_AUTH]
        };
        tcp.write_all(greeting).await.context("SOCKS5 greeting")?;
        let mut reply = [0u8; 2];
        tcp.read_exact(&mut reply)
            .await
            .context("SOCKS5 greeting reply")?;
        if reply[0] != VERSION {
            bail!("not a SOCKS5 proxy (version {})", reply[0]);
        }
        match (reply[1], &self.credentials) {
            (NO_AUTH, _) => {}
            (USER_PASS, Some((user, pass))) => {
                // RFC 1929; lengths were checked when parsing.
                let mut auth = vec![1u8, user.len() as u8];
                auth.extend_from_slice(user.as_bytes());
                auth.push(pass.len() as u8);
                auth.extend_from_slice(pass.as_bytes());
                tcp.write_all(&auth)
                    .await
                    .context("SOCKS5 authentication")?;
                let mut status = [0u8; 2];
                tcp.read_exact(&mut status)
                    .await
                    .context("SOCKS5 authentication reply")?;
                if status[1] != 0 {
                    bail!("the SOCKS5 proxy rejected the user name or password");
                }
            }
            (0xff, _) => bail!("the SOCKS5 proxy accepts none of our authentication methods"),
            (m, _) => bail!("the SOCKS5 proxy chose an unsupported method {m}"),
        }
        let mut request = vec![VERSION, 1, 0];
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        } else if let Ok(ip) = host.parse::<Ipv6Addr>() {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        } else {
            let len = u8::try_from(host.len()).map_err(|_| anyhow!("host name too long"))?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(host.as_bytes());
        }
        request.extend_from_slice(&port.to_be_bytes());
        tcp.write_all(&request).await.context("SOCKS5 connect")?;
        let mut head = [0u8; 4];
        tcp.read_exact(&mut head)
            .await
            .context("SOCKS5 connect reply")?;
        if head[1] != 0 {
            bail!(
                "the SOCKS5 proxy could not connect: {}",
                socks5_error(head[1])
            );
        }
        let skip = match head[3] {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => {
                let mut len = [0u8; 1];
                tcp.read_exact(&mut len)
                    .await
                    .context("SOCKS5 connect reply")?;
                usize::from(len[0]) + 2
            }
            t => bail!("bad SOCKS5 address type {t}"),
        };
        let mut bound = vec![0u8; skip];
        tcp.read_exact(&mut bound)
            .await
            .context("SOCKS5 connect reply")?;
        Ok(())
    }
}

fn socks5_error(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

/// Decodes `%XX` escapes in proxy credentials.
fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow!("bad %-escape in WA_PROXY credentials"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow!("WA_PROXY credentials are not UTF-8"))
}

#[cfg(test)]
// Most of these tests need the test CA, so some helpers go unused without `test-network`.
#[cfg_attr(not(feature = "test-network"), allow(dead_code, unused_imports))]
pub(crate) mod tests {
    use super::*;

    /// A throwaway CA and a leaf for 127.0.0.1 / localhost signed by it.
    pub(crate) struct TestPki {
        pub ca_pem: String,
        pub leaf_chain: Vec<CertificateDer<'static>>,
        pub leaf_key_der: Vec<u8>,
    }

    impl TestPki {
        pub(crate) fn new() -> Self {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "whatsapp-mcp-stream test CA");
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
            let leaf_key = rcgen::KeyPair::generate().unwrap();
            let leaf_params =
                rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
                    .unwrap();
            let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
            Self {
                ca_pem: ca.pem(),
                leaf_chain: vec![leaf.der().clone(), ca.der().clone()],
                leaf_key_der: leaf_key.serialize_der(),
            }
        }

        pub(crate) fn server_config(&self) -> Arc<futures_rustls::rustls::ServerConfig> {
            let provider = Arc::new(futures_rustls::rustls::crypto::ring::default_provider());
            let key =
                futures_rustls::pki_types::PrivateKeyDer::Pkcs8(self.leaf_key_der.clone().into());
            let config = futures_rustls::rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(self.leaf_chain.clone(), key)
                .unwrap();
            Arc::new(config)
        }

        /// Writes the CA to a fresh temp file and returns its path.
        pub(crate) fn ca_file(&self) -> std::path::PathBuf {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let path =
                std::env::temp_dir().join(format!("wa-test-ca-{}-{n}.pem", std::process::id()));
            std::fs::write(&path, &self.ca_pem).unwrap();
            path
        }
    }

    fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
        crate::runtime::block_on(2, fut)
    }

    /// What the echo server saw.
    struct Seen {
        origins: Receiver<String>,
        closes: Receiver<Option<u16>>,
    }

    /// A WebSocket echo server on 127.0.0.1 (TLS when `tls` is given). A binary "close-me"
    /// makes it send Close(4000, "bye"); a Close from the client is reported in `closes`.
    async fn echo_server(
        tls: Option<Arc<futures_rustls::rustls::ServerConfig>>,
    ) -> (std::net::SocketAddr, Seen) {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (origin_tx, origins) = async_channel::unbounded();
        let (close_tx, closes) = async_channel::unbounded();
        crate::runtime::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tls = tls.clone();
                let origin_tx = origin_tx.clone();
                let close_tx = close_tx.clone();
                crate::runtime::spawn(async move {
                    let io: BoxIo = match tls {
                        Some(cfg) => {
                            match futures_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                                Ok(s) => Box::new(s),
                                Err(_) => return,
                            }
                        }
                        None => Box::new(tcp),
                    };
                    let callback =
                        move |req: &async_tungstenite::tungstenite::handshake::server::Request,
                              resp| {
                            let origin = req
                                .headers()
                                .get("origin")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let _ = origin_tx.try_send(origin);
                            Ok(resp)
                        };
                    let Ok(mut ws) = async_tungstenite::accept_hdr_async(io, callback).await else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        match msg {
                            Message::Binary(b) if b.as_ref() == b"close-me" => {
                                let frame = CloseFrame {
                                    code: CloseCode::from(4000),
                                    reason: "bye".into(),
                                };
                                let _ = ws.close(Some(frame)).await;
                            }
                            Message::Binary(b) => {
                                // A failed echo shows up as the next read's error.
                                let _ = ws.send(Message::Binary(b)).await;
                            }
                            Message::Close(f) => {
                                let _ = close_tx.try_send(f.map(|f| u16::from(f.code)));
                            }
                            _ => {}
                        }
                    }
                })
                .detach();
            }
        })
        .detach();
        (addr, Seen { origins, closes })
    }

    async fn next_event(rx: &Receiver<TransportEvent>) -> TransportEvent {
        futures_lite::future::or(async { rx.recv().await.unwrap() }, async {
            async_io::Timer::after(Duration::from_secs(10)).await;
            panic!("no transport event within 10 s");
        })
        .await
    }

    /// Connected first, then an echo, then the server's Close(4000, "bye").
    async fn exercise(factory: &WaTransportFactory, seen: &Seen) {
        let (transport, events) = factory.create_transport().await.unwrap();
        assert!(matches!(
            next_event(&events).await,
            TransportEvent::Connected
        ));
        assert_eq!(seen.origins.recv().await.unwrap(), WHATSAPP_WEB_ORIGIN);
        transport.send(Bytes::from_static(b"hello")).await.unwrap();
        match next_event(&events).await {
            TransportEvent::DataReceived(b) => assert_eq!(b.as_ref(), b"hello"),
            other => panic!("expected the echo, got {other:?}"),
        }
        transport
            .send(Bytes::from_static(b"close-me"))
            .await
            .unwrap();
        match next_event(&events).await {
            TransportEvent::Disconnected(DisconnectReason::ServerClose { code, reason }) => {
                assert_eq!(code, Some(4000));
                assert_eq!(reason, "bye");
            }
            other => panic!("expected ServerClose, got {other:?}"),
        }
    }

    #[test]
    fn untrusted_certificate_is_refused() {
        run(async {
            let pki = TestPki::new();
            let (addr, _seen) = echo_server(Some(pki.server_config())).await;
            let factory = WaTransportFactory::new(TransportConfig {
                url: format!("wss://{addr}/ws/chat"),
                ..TransportConfig::default()
            })
            .unwrap();
            let err = match factory.create_transport().await {
                Ok(_) => panic!("an unknown CA must not be trusted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.to_lowercase().contains("certificate"), "{err}");
        });
    }

    #[cfg(feature = "test-network")]
    fn trusting(pki: &TestPki, url: String, proxy: Option<String>) -> WaTransportFactory {
        WaTransportFactory::new(TransportConfig {
            url,
            proxy,
            extra_ca_pem: Some(pki.ca_file()),
            ..TransportConfig::default()
        })
        .unwrap()
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn tls_echo_origin_and_server_close() {
        run(async {
            let pki = TestPki::new();
            let (addr, seen) = echo_server(Some(pki.server_config())).await;
            let factory = trusting(&pki, format!("wss://{addr}/ws/chat"), None);
            exercise(&factory, &seen).await;
        });
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn plain_ws_under_test_network() {
        run(async {
            let (addr, seen) = echo_server(None).await;
            let factory = WaTransportFactory::new(TransportConfig {
                url: format!("ws://{addr}/ws/chat"),
                ..TransportConfig::default()
            })
            .unwrap();
            exercise(&factory, &seen).await;
        });
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn disconnect_sends_close_1000_and_ends_the_pump() {
        run(async {
            let pki = TestPki::new();
            let (addr, seen) = echo_server(Some(pki.server_config())).await;
            let factory = trusting(&pki, format!("wss://{addr}/ws/chat"), None);
            let (transport, events) = factory.create_transport().await.unwrap();
            assert!(matches!(
                next_event(&events).await,
                TransportEvent::Connected
            ));
            transport.disconnect().await;
            assert_eq!(seen.closes.recv().await.unwrap(), Some(1000));
            assert!(matches!(
                next_event(&events).await,
                TransportEvent::Disconnected(_)
            ));
            assert!(transport.send(Bytes::from_static(b"late")).await.is_err());
        });
    }

    #[cfg(feature = "test-network")]
    /// Copies bytes both ways until either side closes.
    async fn splice(a: smol::net::TcpStream, b: smol::net::TcpStream) {
        let up = futures_lite::io::copy(a.clone(), b.clone());
        let down = futures_lite::io::copy(b, a);
        let _ = futures_lite::future::or(up, down).await;
    }

    #[cfg(feature = "test-network")]
    /// A one-shot HTTP CONNECT proxy that tunnels to 127.0.0.1 and reports the request head.
    pub(crate) async fn http_proxy() -> (std::net::SocketAddr, Receiver<String>) {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = async_channel::unbounded();
        crate::runtime::spawn(async move {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                client.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            let target = head.split_whitespace().nth(1).unwrap().to_string();
            let port: u16 = target.rsplit_once(':').unwrap().1.parse().unwrap();
            let upstream = smol::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .unwrap();
            let _ = tx.send(head).await;
            splice(client, upstream).await;
        })
        .detach();
        (addr, rx)
    }

    #[cfg(feature = "test-network")]
    /// A one-shot SOCKS5 proxy (user/pass "u"/"p" required) that tunnels to 127.0.0.1 and
    /// reports the requested domain name.
    pub(crate) async fn socks5_proxy() -> (std::net::SocketAddr, Receiver<String>) {
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = async_channel::unbounded();
        crate::runtime::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut hdr = [0u8; 2];
            c.read_exact(&mut hdr).await.unwrap();
            let mut methods = vec![0u8; usize::from(hdr[1])];
            c.read_exact(&mut methods).await.unwrap();
            assert!(methods.contains(&2));
            c.write_all(&[5, 2]).await.unwrap();
            let mut ver_ulen = [0u8; 2];
            c.read_exact(&mut ver_ulen).await.unwrap();
            let mut user = vec![0u8; usize::from(ver_ulen[1])];
            c.read_exact(&mut user).await.unwrap();
            let mut plen = [0u8; 1];
            c.read_exact(&mut plen).await.unwrap();
            let mut pass = vec![0u8; usize::from(plen[0])];
            c.read_exact(&mut pass).await.unwrap();
            let ok = user == b"u" && pass == b"p";
            c.write_all(&[1, if ok { 0 } else { 1 }]).await.unwrap();
            if !ok {
                return;
            }
            let mut req = [0u8; 4];
            c.read_exact(&mut req).await.unwrap();
            assert_eq!(req[..3], [5, 1, 0]);
            assert_eq!(req[3], 3, "domain-name addressing");
            let mut len = [0u8; 1];
            c.read_exact(&mut len).await.unwrap();
            let mut name = vec![0u8; usize::from(len[0])];
            c.read_exact(&mut name).await.unwrap();
            let mut port = [0u8; 2];
            c.read_exact(&mut port).await.unwrap();
            let upstream = smol::net::TcpStream::connect(("127.0.0.1", u16::from_be_bytes(port)))
                .await
                .unwrap();
            c.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
                .await
                .unwrap();
            let _ = tx.send(String::from_utf8(name).unwrap()).await;
            splice(c, upstream).await;
        })
        .detach();
        (addr, rx)
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn through_an_http_connect_proxy() {
        run(async {
            let pki = TestPki::new();
            let (addr, seen) = echo_server(Some(pki.server_config())).await;
            let (proxy, heads) = http_proxy().await;
            let factory = trusting(
                &pki,
                format!("wss://localhost:{}/ws/chat", addr.port()),
                Some(format!("http://user:p%40ss@{proxy}")),
            );
            exercise(&factory, &seen).await;
            let head = heads.recv().await.unwrap();
            assert!(head.starts_with(&format!("CONNECT localhost:{} HTTP/1.1\r\n", addr.port())));
            // base64("user:p@ss")
            assert!(
                head.contains("Proxy-Authorization: Basic dXNlcjpwQHNz\r\n"),
                "{head}"
            );
        });
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn through_a_socks5_proxy() {
        run(async {
            let pki = TestPki::new();
            let (addr, seen) = echo_server(Some(pki.server_config())).await;
            let (proxy, names) = socks5_proxy().await;
            let factory = trusting(
                &pki,
                format!("wss://localhost:{}/ws/chat", addr.port()),
                Some(format!("socks5://u:p@{proxy}")),
            );
            exercise(&factory, &seen).await;
            assert_eq!(names.recv().await.unwrap(), "localhost");
        });
    }

    #[test]
    fn proxy_failure_is_an_error_value() {
        run(async {
            // A listener that accepts and hangs up at once.
            let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            crate::runtime::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    drop(s);
                }
            })
            .detach();
            let factory = WaTransportFactory::new(TransportConfig {
                proxy: Some(format!("http://{addr}")),
                ..TransportConfig::default()
            })
            .unwrap();
            assert!(factory.create_transport().await.is_err());
        });
    }

    #[test]
    fn parses_urls_and_proxies() {
        assert_eq!(
            parse_ws_url(WHATSAPP_WEB_WS_URL).unwrap(),
            Endpoint {
                secure: true,
                host: "web.whatsapp.com".into(),
                port: 443
            }
        );
        assert_eq!(
            parse_ws_url("wss://[::1]:8443/ws/chat").unwrap(),
            Endpoint {
                secure: true,
                host: "::1".into(),
                port: 8443
            }
        );
        assert!(parse_ws_url("https://web.whatsapp.com").is_err());
        assert!(parse_ws_url("wss://u:p@host/ws").is_err());
        assert_eq!(
            parse_ws_url("ws://127.0.0.1:1/").is_ok(),
            cfg!(feature = "test-network")
        );

        let p = Proxy::parse("socks5://alice:s%3Acret@proxy.lan:1080").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5);
        assert_eq!((p.host.as_str(), p.port), ("proxy.lan", 1080));
        assert_eq!(p.credentials, Some(("alice".into(), "s:cret".into())));
        assert!(!format!("{p:?}").contains("cret"));
        let p = Proxy::parse("http://[::1]:3128/").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::HttpConnect, "::1", 3128)
        );
        assert_eq!(p.credentials, None);
        assert!(Proxy::parse("ftp://x:1").is_err());
        assert!(Proxy::parse("proxy:8080").is_err());
        assert!(Proxy::parse("http://host:notaport").is_err());
        assert_eq!(authority("::1", 443), "[::1]:443");
    }
}
