//! The HTTP server: accept loop, connection cap, and the shared [`App`] state.
//!
//! Owns: binding, accepting, the `MAX_CONNECTIONS` cap (503 beyond it) and spawning one task per
//! connection. Must not: parse requests (conn.rs) or route them (router.rs).

pub mod auth;
pub mod conn;
pub mod reply;
mod router;

use crate::config::Config;
use crate::mcp::http::McpHttp;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Everything a request handler can reach.
pub struct App {
    pub config: Config,
    pub auth: auth::Auth,
    pub mcp: McpHttp,
    pub started: Instant,
    /// The WhatsApp engine, for `/api/status` and `/healthz`.
    pub engine: Option<crate::wa::engine::Engine>,
    /// The store, for `/api/send-log`.
    pub store: Option<crate::store::Store>,
    connections: AtomicUsize,
}

impl App {
    pub fn new(
        config: Config,
        auth: auth::Auth,
        mcp: McpHttp,
        engine: Option<crate::wa::engine::Engine>,
    ) -> App {
        App {
            config,
            auth,
            mcp,
            started: Instant::now(),
            engine,
            store: None,
            connections: AtomicUsize::new(0),
        }
    }

    /// Gives the handlers the store (`/api/send-log`).
    pub fn with_store(mut self, store: crate::store::Store) -> App {
        self.store = Some(store);
        self
    }
}

/// Counts one open connection; the count drops when this is dropped.
struct ConnectionSlot(Arc<App>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections forever.
pub async fn serve(listener: smol::net::TcpListener, app: Arc<App>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                log::warn!("accept failed: {e}");
                async_io::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let open = app.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let slot = ConnectionSlot(app.clone());
        if open > app.config.max_connections {
            crate::runtime::spawn(async move {
                let _slot = slot;
                refuse_busy(stream).await;
            })
            .detach();
            continue;
        }
        let app = app.clone();
        crate::runtime::spawn(async move {
            let _slot = slot;
            conn::serve(stream, peer, local, |req, peer, local| {
                router::handle(app.clone(), req, peer, local)
            })
            .await;
        })
        .detach();
    }
}

async fn refuse_busy(mut stream: smol::net::TcpStream) {
    use futures_lite::AsyncWriteExt;
    let body = r#"{"error":{"status":503,"message":"too many open connections (MAX_CONNECTIONS); retry shortly"}}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.close().await;
}
