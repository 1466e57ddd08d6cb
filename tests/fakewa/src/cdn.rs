//! The media CDN: an HTTPS server on loopback (the same CA and leaf as the listen port),
//! announced by the `media_conn` IQ answer. Uploads (`POST /mms/<type>/<token>?auth=…`)
//! need the session auth token and answer `{url, direct_path}`; downloads
//! (`GET <direct_path>`) need no auth: the path authorizes. Blobs live in memory. It knows
//! nothing of accounts or messages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use serde_json::json;
use smol::net::{TcpListener, TcpStream};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::http;

/// The largest upload the CDN takes.
const MAX_UPLOAD: usize = 256 * 1024 * 1024;

/// The blobs and the address they are served from.
pub struct Cdn {
    addr: SocketAddr,
    auth: String,
    next: AtomicU64,
    inner: Mutex<Blobs>,
}

#[derive(Default)]
struct Blobs {
    /// direct path → bytes.
    by_path: HashMap<String, Arc<Vec<u8>>>,
    /// upload token → direct path (a resume probe of a finished upload).
    by_token: HashMap<String, String>,
    uploads: u64,
    downloads: u64,
}

/// Where a stored blob is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub url: String,
    pub direct_path: String,
}

impl Cdn {
    fn lock(&self) -> MutexGuard<'_, Blobs> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `host:port` as `media_conn` announces it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The session auth token uploads must carry.
    pub fn auth(&self) -> &str {
        &self.auth
    }

    /// Stores `bytes` (of media kind `kind`, e.g. `md-msg-hist`) under a new direct path.
    pub fn put(&self, kind: &str, token: Option<&str>, bytes: Vec<u8>) -> Stored {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let kind: String = kind
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let direct_path = format!("/v/fakewa/{kind}/{n}.enc");
        let mut g = self.lock();
        g.uploads += 1;
        g.by_path.insert(direct_path.clone(), Arc::new(bytes));
        if let Some(t) = token {
            g.by_token.insert(t.to_string(), direct_path.clone());
        }
        Stored {
            url: format!("https://{}{direct_path}", self.addr),
            direct_path,
        }
    }

    /// Stores `bytes` at a direct path the caller chose (profile pictures), replacing what
    /// was there.
    pub fn put_at(&self, direct_path: &str, bytes: Vec<u8>) -> Stored {
        let mut g = self.lock();
        g.uploads += 1;
        g.by_path.insert(direct_path.to_string(), Arc::new(bytes));
        Stored {
            url: format!("https://{}{direct_path}", self.addr),
            direct_path: direct_path.to_string(),
        }
    }

    /// Whether a blob is stored at `direct_path`.
    pub fn has(&self, direct_path: &str) -> bool {
        self.lock().by_path.contains_key(direct_path)
    }

    /// The blob at `direct_path` (a query, if any, is ignored).
    pub fn get(&self, direct_path: &str) -> Option<Arc<Vec<u8>>> {
        let path = direct_path.split('?').next().unwrap_or_default();
        let mut g = self.lock();
        let blob = g.by_path.get(path).cloned();
        if blob.is_some() {
            g.downloads += 1;
        }
        blob
    }

    /// (uploads, downloads, stored blobs) so far.
    pub fn counts(&self) -> (u64, u64, usize) {
        let g = self.lock();
        (g.uploads, g.downloads, g.by_path.len())
    }

    /// The `<media_conn>` child of the `w:m` IQ answer: the auth token and this CDN as
    /// the only (primary) host.
    pub fn media_conn_node(&self) -> Node {
        NodeBuilder::new("media_conn")
            .attr("auth", self.auth.clone())
            .attr("ttl", "3600")
            .attr("auth_ttl", "3600")
            .attr("max_buckets", "12")
            .children([NodeBuilder::new("host")
                .attr("hostname", self.host())
                .attr("type", "primary")
                .build()])
            .build()
    }
}

/// Binds `ip:0` and serves HTTPS with `tls` until the returned task is dropped.
pub async fn start(
    ip: std::net::IpAddr,
    tls: futures_rustls::TlsAcceptor,
) -> anyhow::Result<(Arc<Cdn>, smol::Task<()>)> {
    let listener = TcpListener::bind((ip, 0))
        .await
        .context("binding the CDN port")?;
    let addr = listener.local_addr()?;
    let auth = base64::Engine::encode(
        &base64::prelude::BASE64_URL_SAFE_NO_PAD,
        crate::state::random_bytes(24),
    );
    let cdn = Arc::new(Cdn {
        addr,
        auth,
        next: AtomicU64::new(1),
        inner: Mutex::new(Blobs::default()),
    });
    let c = cdn.clone();
    let task = smol::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                smol::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let (c, tls) = (c.clone(), tls.clone());
            smol::spawn(async move {
                if let Err(e) = serve(tcp, tls, c).await {
                    log::debug!("CDN connection: {e:#}");
                }
            })
            .detach();
        }
    });
    Ok((cdn, task))
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn serve(
    tcp: TcpStream,
    tls: futures_rustls::TlsAcceptor,
    cdn: Arc<Cdn>,
) -> anyhow::Result<()> {
    tcp.set_nodelay(true).ok();
    let mut io = tls.accept(tcp).await?;
    let req = http::read_request_limited(&mut io, MAX_UPLOAD).await?;
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    match req.method.as_str() {
        "POST" if path.starts_with("/mms/") => {
            if query_param(query, "auth") != Some(cdn.auth()) {
                let body = json!({"error": "bad or missing auth"});
                http::respond_json(&mut io, 401, &body).await?;
                return Ok(());
            }
            let mut parts = path.trim_start_matches("/mms/").splitn(2, '/');
            let kind = parts.next().unwrap_or_default().to_string();
            let token = parts
                .next()
                .map(str::to_string)
                .or_else(|| query_param(query, "token").map(str::to_string));
            if query_param(query, "resume") == Some("1") {
                let done = token
                    .as_deref()
                    .and_then(|t| cdn.lock().by_token.get(t).cloned());
                match done {
                    Some(direct_path) => {
                        let url = format!("https://{}{direct_path}", cdn.host());
                        let body =
                            json!({"resume": "complete", "url": url, "direct_path": direct_path});
                        http::respond_json(&mut io, 200, &body).await?;
                    }
                    None => {
                        http::respond_json(&mut io, 404, &json!({"error": "no such upload"}))
                            .await?;
                    }
                }
                return Ok(());
            }
            let stored = cdn.put(&kind, token.as_deref(), req.body);
            let body = json!({"url": stored.url, "direct_path": stored.direct_path});
            http::respond_json(&mut io, 200, &body).await?;
        }
        "GET" => match cdn.get(path) {
            Some(blob) => {
                http::respond(&mut io, 200, "application/octet-stream", &blob).await?;
            }
            None => {
                http::respond(&mut io, 404, "text/plain", b"no such blob\n").await?;
            }
        },
        _ => {
            http::respond(&mut io, 405, "text/plain", b"method not allowed\n").await?;
        }
    }
    Ok(())
}
