//! The engine's HTTP client: whatsapp-rust's `HttpClient` on ureq 3 (rustls on ring, webpki
//! roots).
//!
//! Owns: every HTTP exchange the engine makes on its own (the `sw.js` version fetch, media upload
//! and download on the CDN hosts, history-sync and app-state blobs). Buffered requests run on
//! `smol::unblock`'s pool; the streaming methods are synchronous because whatsapp-rust already
//! calls them from a blocking thread (notes §4).
//!
//! Contract kept: a completed exchange is `Ok` whatever its status (`http_status_as_error(false)`:
//! 401/403/404/410 drive the engine's media-connection refresh); a streamed download is handed
//! over as a reader, never buffered whole; an upload carries an exact `Content-Length`, never
//! chunked encoding.
//!
//! Must not: read the environment (the caller passes `HttpClientConfig`); ever skip TLS
//! verification. Under `test-network` an extra CA (the `WA_TEST_CA` PEM file) is trusted; ureq
//! takes its roots either from webpki or from an explicit list, so with a test CA set the list is
//! that CA alone (test builds talk only to fakewa then).

use std::io::Read as _;
#[cfg(feature = "test-network")]
use std::path::PathBuf;
use std::time::Duration;

use ureq::http;
use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
use whatsapp_rust::anyhow::{self, Context as _, anyhow};
use whatsapp_rust::async_trait;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::wacore::net::{StreamingHttpResponse, UploadBody};

/// Timeouts, limits and proxy of the engine's HTTP client.
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// TCP + TLS connect, per attempt.
    pub connect_timeout: Duration,
    /// The whole of a buffered request (`execute`), body included.
    pub request_timeout: Duration,
    /// The whole of a streamed download or upload: media can be large and links slow.
    pub transfer_timeout: Duration,
    /// The largest body `execute` buffers in memory.
    pub max_buffered_body: u64,
    /// `WA_PROXY`: `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port`.
    pub proxy: Option<String>,
    /// `WA_TEST_CA`: a PEM file of CA certificates to trust (see the module doc).
    #[cfg(feature = "test-network")]
    pub extra_ca_pem: Option<PathBuf>,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(60),
            transfer_timeout: Duration::from_secs(15 * 60),
            max_buffered_body: 256 * 1024 * 1024,
            proxy: None,
            #[cfg(feature = "test-network")]
            extra_ca_pem: None,
        }
    }
}

/// whatsapp-rust's `HttpClient` on ureq. Cheap to clone (the agents share their pools).
#[derive(Debug, Clone)]
pub struct WaHttpClient {
    /// Buffered requests, bounded by `request_timeout`.
    agent: ureq::Agent,
    /// Streamed downloads and uploads, bounded by `transfer_timeout`.
    media: ureq::Agent,
    max_buffered_body: u64,
}

impl WaHttpClient {
    /// Builds both agents; reads the extra CA file under `test-network`.
    pub fn new(config: HttpClientConfig) -> anyhow::Result<Self> {
        let roots = root_certs(&config)?;
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(roots)
            .build();
        let proxy = match config.proxy.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => {
                // Like the transport, let a SOCKS5 proxy resolve names (no local DNS leak).
                let p = match p.split_once("://") {
                    Some((scheme, rest)) if scheme.eq_ignore_ascii_case("socks5") => {
                        format!("socks5h://{rest}")
                    }
                    _ => p.to_string(),
                };
                Some(ureq::Proxy::new(&p).map_err(|e| anyhow!("invalid WA_PROXY: {e}"))?)
            }
            // Explicitly none: ureq would otherwise read proxy variables from the environment.
            _ => None,
        };
        let agent = |total: Duration| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_connect(Some(config.connect_timeout))
                .timeout_global(Some(total))
                .tls_config(tls.clone())
                .proxy(proxy.clone())
                .build()
                .into()
        };
        Ok(Self {
            agent: agent(config.request_timeout),
            media: agent(config.transfer_timeout),
            max_buffered_body: config.max_buffered_body,
        })
    }

    /// Sends `request` on `agent` with `body`, returning the status and the unread body.
    fn send(
        agent: &ureq::Agent,
        request: HttpRequest,
        body: ureq::SendBody<'static>,
        content_length: Option<u64>,
    ) -> anyhow::Result<(u16, ureq::Body)> {
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| anyhow!("invalid HTTP method {:?}", request.method))?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(request.url.as_str());
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(len) = content_length {
            // An explicit Content-Length makes ureq send a length-delimited body, not chunked.
            builder = builder.header(http::header::CONTENT_LENGTH, len);
        }
        let req = builder
            .body(body)
            .with_context(|| format!("building {} {}", request.method, request.url))?;
        let response = agent
            .run(req)
            .with_context(|| format!("{} {}", request.method, request.url))?;
        let status = response.status().as_u16();
        Ok((status, response.into_body()))
    }

    /// The blocking half of `execute`.
    fn execute_blocking(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let (body, len) = in_memory_body(&request);
        let url = request.url.clone();
        let (status_code, body) = Self::send(&self.agent, request, body, len)?;
        let body = body
            .into_with_config()
            .limit(self.max_buffered_body)
            .read_to_vec()
            .with_context(|| format!("reading the body of {url}"))?;
        Ok(HttpResponse { status_code, body })
    }
}

/// A request's in-memory body for ureq, with its length (sent as Content-Length).
fn in_memory_body(request: &HttpRequest) -> (ureq::SendBody<'static>, Option<u64>) {
    match request.body.clone() {
        Some(bytes) => {
            let len = bytes.len() as u64;
            (
                ureq::SendBody::from_owned_reader(std::io::Cursor::new(bytes)),
                Some(len),
            )
        }
        None => (ureq::SendBody::none(), None),
    }
}

#[cfg(feature = "test-network")]
fn root_certs(config: &HttpClientConfig) -> anyhow::Result<RootCerts> {
    Ok(match &config.extra_ca_pem {
        Some(path) => {
            let certs = crate::wa::transport::load_ca_pem(path)?;
            RootCerts::new_with_certs(
                &certs
                    .iter()
                    .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                    .collect::<Vec<_>>(),
            )
        }
        None => RootCerts::WebPki,
    })
}

#[cfg(not(feature = "test-network"))]
fn root_certs(_config: &HttpClientConfig) -> anyhow::Result<RootCerts> {
    Ok(RootCerts::WebPki)
}

#[async_trait]
impl HttpClient for WaHttpClient {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        let client = self.clone();
        smol::unblock(move || client.execute_blocking(request)).await
    }

    fn supports_streaming(&self) -> bool {
        true
    }

    fn execute_streaming(&self, request: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        let (body, len) = in_memory_body(&request);
        let (status_code, body) = Self::send(&self.media, request, body, len)?;
        Ok(StreamingHttpResponse {
            status_code,
            body: Box::new(body.into_reader()),
        })
    }

    fn supports_upload_streaming(&self) -> bool {
        true
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        // Never send more than announced, whatever the reader holds.
        let body = ureq::SendBody::from_owned_reader(body.take(content_length));
        let url = request.url.clone();
        let (status_code, body) = Self::send(&self.media, request, body, Some(content_length))?;
        let body = body
            .into_with_config()
            .limit(self.max_buffered_body)
            .read_to_vec()
            .with_context(|| format!("reading the reply to the upload to {url}"))?;
        Ok(HttpResponse { status_code, body })
    }
}

#[cfg(test)]
// Most of these tests need the test CA, so some helpers go unused without `test-network`.
#[cfg_attr(not(feature = "test-network"), allow(dead_code, unused_imports))]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const BIG: usize = 8 * 1024 * 1024;
    const FIRST_PART: usize = 1024 * 1024;

    fn big_byte(i: usize) -> u8 {
        (i % 251) as u8
    }

    /// What a test HTTPS server saw of one request.
    #[derive(Debug, Default, Clone)]
    struct Seen {
        method: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    struct Server {
        port: u16,
        seen: std::sync::mpsc::Receiver<Seen>,
        /// Releases the rest of `/big` once the client proved it reads incrementally.
        gate: std::sync::mpsc::Sender<()>,
        big_done: Arc<AtomicBool>,
    }

    /// A tiny HTTPS/1.1 server on std threads + rustls, one request per connection.
    /// Routes: `/hello` 200, `/missing` 404, `/big` 8 MiB in two halves (the second after the
    /// gate opens), `/upload` echoes the request body.
    fn https_server(config: Arc<futures_rustls::rustls::ServerConfig>) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let (gate, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate_rx = Arc::new(std::sync::Mutex::new(gate_rx));
        let big_done = Arc::new(AtomicBool::new(false));
        let done = big_done.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { return };
                let config = config.clone();
                let seen_tx = seen_tx.clone();
                let gate_rx = gate_rx.clone();
                let done = done.clone();
                std::thread::spawn(move || {
                    let conn = futures_rustls::rustls::ServerConnection::new(config).unwrap();
                    let mut tls = futures_rustls::rustls::StreamOwned::new(conn, tcp);
                    let mut reader = BufReader::new(&mut tls);
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (n, v) = h.split_once(':').unwrap();
                        headers.push((n.trim().to_string(), v.trim().to_string()));
                    }
                    let mut seen = Seen {
                        method,
                        headers,
                        body: Vec::new(),
                    };
                    if let Some(len) = seen.header("content-length") {
                        let mut body = vec![0u8; len.parse().unwrap()];
                        reader.read_exact(&mut body).unwrap();
                        seen.body = body;
                    }
                    drop(reader);
                    let head = |status: &str, len: usize| {
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                        )
                    };
                    match path.as_str() {
                        "/hello" => {
                            tls.write_all(head("200 OK", 11).as_bytes()).unwrap();
                            tls.write_all(b"hello world").unwrap();
                        }
                        "/upload" => {
                            tls.write_all(head("200 OK", seen.body.len()).as_bytes())
                                .unwrap();
                            tls.write_all(&seen.body).unwrap();
                        }
                        "/big" => {
                            let data: Vec<u8> = (0..BIG).map(big_byte).collect();
                            tls.write_all(head("200 OK", BIG).as_bytes()).unwrap();
                            tls.write_all(&data[..FIRST_PART]).unwrap();
                            tls.flush().unwrap();
                            let _ = gate_rx
                                .lock()
                                .unwrap()
                                .recv_timeout(Duration::from_secs(10));
                            tls.write_all(&data[FIRST_PART..]).unwrap();
                            done.store(true, Ordering::SeqCst);
                        }
                        _ => {
                            tls.write_all(head("404 Not Found", 4).as_bytes()).unwrap();
                            tls.write_all(b"nope").unwrap();
                        }
                    }
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    let _ = seen_tx.send(seen);
                });
            }
        });
        Server {
            port,
            seen,
            gate,
            big_done,
        }
    }

    #[test]
    fn untrusted_certificate_is_an_error() {
        let pki = crate::wa::transport::tests::TestPki::new();
        let server = https_server(pki.server_config());
        let client = WaHttpClient::new(HttpClientConfig::default()).unwrap();
        let url = format!("https://127.0.0.1:{}/hello", server.port);
        let err = crate::runtime::block_on(2, client.execute(HttpRequest::get(url)));
        assert!(err.is_err());
    }

    #[cfg(feature = "test-network")]
    fn trusting_client(pki: &crate::wa::transport::tests::TestPki) -> WaHttpClient {
        WaHttpClient::new(HttpClientConfig {
            extra_ca_pem: Some(pki.ca_file()),
            ..HttpClientConfig::default()
        })
        .unwrap()
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn ok_and_not_found_are_both_ok() {
        let pki = crate::wa::transport::tests::TestPki::new();
        let server = https_server(pki.server_config());
        let client = trusting_client(&pki);
        crate::runtime::block_on(2, async {
            let ok = client
                .execute(
                    HttpRequest::get(format!("https://127.0.0.1:{}/hello", server.port))
                        .with_header("Origin", "https://web.whatsapp.com"),
                )
                .await
                .unwrap();
            assert_eq!(ok.status_code, 200);
            assert_eq!(ok.body, b"hello world");
            let seen = server.seen.recv().unwrap();
            assert_eq!(seen.method, "GET");
            assert_eq!(seen.header("origin"), Some("https://web.whatsapp.com"));

            let missing = client
                .execute(HttpRequest::get(format!(
                    "https://127.0.0.1:{}/missing",
                    server.port
                )))
                .await
                .unwrap();
            assert_eq!(missing.status_code, 404);
            assert_eq!(missing.body, b"nope");
        });
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn post_body_round_trips() {
        let pki = crate::wa::transport::tests::TestPki::new();
        let server = https_server(pki.server_config());
        let client = trusting_client(&pki);
        let reply = crate::runtime::block_on(
            2,
            client.execute(
                HttpRequest::post(format!("https://127.0.0.1:{}/upload", server.port))
                    .with_body(b"ping".to_vec()),
            ),
        )
        .unwrap();
        assert_eq!(
            (reply.status_code, reply.body.as_slice()),
            (200, &b"ping"[..])
        );
        let seen = server.seen.recv().unwrap();
        assert_eq!(seen.header("content-length"), Some("4"));
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn large_download_streams_incrementally() {
        let pki = crate::wa::transport::tests::TestPki::new();
        let server = https_server(pki.server_config());
        let client = trusting_client(&pki);
        assert!(client.supports_streaming());
        let mut response = client
            .execute_streaming(HttpRequest::get(format!(
                "https://127.0.0.1:{}/big",
                server.port
            )))
            .unwrap();
        assert_eq!(response.status_code, 200);
        // The server holds back everything past the first MiB until the gate opens: reading
        // that first part now proves nothing waits for the whole body.
        let mut first = vec![0u8; FIRST_PART];
        response.body.read_exact(&mut first).unwrap();
        assert!(!server.big_done.load(Ordering::SeqCst));
        server.gate.send(()).unwrap();
        let mut rest = Vec::new();
        response.body.read_to_end(&mut rest).unwrap();
        assert_eq!(FIRST_PART + rest.len(), BIG);
        assert!(first.iter().enumerate().all(|(i, b)| *b == big_byte(i)));
        assert!(
            rest.iter()
                .enumerate()
                .all(|(i, b)| *b == big_byte(FIRST_PART + i))
        );
    }

    #[cfg(feature = "test-network")]
    fn via_proxy(proxy: &str, pki: &crate::wa::transport::tests::TestPki, port: u16) -> Vec<u8> {
        let client = WaHttpClient::new(HttpClientConfig {
            extra_ca_pem: Some(pki.ca_file()),
            proxy: Some(proxy.to_string()),
            ..HttpClientConfig::default()
        })
        .unwrap();
        let url = format!("https://localhost:{port}/hello");
        let reply = crate::runtime::block_on(2, client.execute(HttpRequest::get(url))).unwrap();
        assert_eq!(reply.status_code, 200);
        reply.body
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn through_an_http_connect_proxy() {
        let pki = crate::wa::transport::tests::TestPki::new();
        let server = https_server(pki.server_config());
        let (proxy, heads) = crate::runtime::block_on(2, crate::wa::transport::tests::http_proxy());
        let body = via_proxy(&format!("http://user:pass@{proxy}"), &pki, server.port);
        assert_eq!(body, b"hello world");
        let head = heads.recv_blocking().unwrap();
        assert!(
            head.starts_with(&format!("CONNECT localhost:{} ", server.port)),
            "{head}"
        );
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn through_a_socks5_proxy() {
        let pki = crate::wa::transport::tests::TestPki::new();
        let server = https_server(pki.server_config());
        let (proxy, names) =
            crate::runtime::block_on(2, crate::wa::transport::tests::socks5_proxy());
        let body = via_proxy(&format!("socks5://u:p@{proxy}"), &pki, server.port);
        assert_eq!(body, b"hello world");
        assert_eq!(names.recv_blocking().unwrap(), "localhost");
    }

    #[cfg(feature = "test-network")]
    #[test]
    fn upload_sends_content_length_and_the_body() {
        let pki = crate::wa::transport::tests::TestPki::new();
        let server = https_server(pki.server_config());
        let client = trusting_client(&pki);
        assert!(client.supports_upload_streaming());
        let payload: Vec<u8> = (0..300_000).map(big_byte).collect();
        let reply = client
            .execute_upload(
                HttpRequest::post(format!("https://127.0.0.1:{}/upload", server.port)),
                Box::new(std::io::Cursor::new(payload.clone())),
                payload.len() as u64,
            )
            .unwrap();
        assert_eq!(reply.status_code, 200);
        assert_eq!(reply.body, payload);
        let seen = server.seen.recv().unwrap();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.header("content-length"), Some("300000"));
        assert_eq!(seen.header("transfer-encoding"), None);
        assert_eq!(seen.body, payload);
    }
}
