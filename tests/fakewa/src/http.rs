//! Just enough HTTP/1.1 for the admin and control endpoints and the WebSocket upgrade.

use anyhow::{Context as _, bail};
use futures_lite::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;

pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_websocket_upgrade(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }
}

/// Reads one request head and its `Content-Length` body (no chunked bodies).
pub async fn read_request<S: AsyncRead + Unpin>(io: &mut S) -> anyhow::Result<Request> {
    read_request_limited(io, MAX_BODY).await
}

/// `read_request` with a body of up to `max_body` bytes (the CDN's uploads).
pub async fn read_request_limited<S: AsyncRead + Unpin>(
    io: &mut S,
    max_body: usize,
) -> anyhow::Result<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let head_len = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > MAX_HEAD {
            bail!("request head too large");
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before the request head ended");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    req.parse(&buf[..head_len]).context("bad request head")?;
    let method = req.method.unwrap_or("").to_string();
    let path = req.path.unwrap_or("").to_string();
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut request = Request {
        method,
        path,
        headers,
        body: buf[head_len..].to_vec(),
    };
    let len: usize = request
        .header("content-length")
        .map(|v| v.trim().parse())
        .transpose()
        .context("bad Content-Length")?
        .unwrap_or(0);
    if len > max_body {
        bail!("body too large");
    }
    while request.body.len() < len {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed inside the body");
        }
        request.body.extend_from_slice(&chunk[..n]);
    }
    request.body.truncate(len);
    Ok(request)
}

/// Writes a complete response and closes the exchange (`Connection: close`).
pub async fn respond<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    io.write_all(head.as_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await?;
    io.close().await
}

pub async fn respond_json<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: u16,
    value: &serde_json::Value,
) -> std::io::Result<()> {
    respond(io, status, "application/json", value.to_string().as_bytes()).await
}
