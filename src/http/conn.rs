//! One HTTP/1.1 connection: the request-head reader, deadlines, keep-alive.
//!
//! Owns: reading each request head ourselves (so that an oversized head gets 431, a malformed
//! one 400, a slow one 408, all with JSON bodies), then handing the connection to
//! `async_h1::server::decode` for the body framing and writing the response with
//! `async_h1::server::Encoder`. Must not: route, authenticate or look into bodies.
//!
//! Deadlines: the first head must arrive within [`HEAD_DEADLINE`] of the accept; later heads on a
//! kept-alive connection within [`HEAD_DEADLINE`] of their first byte, after up to
//! [`KEEP_ALIVE_IDLE`] of silence. A body stalls out after [`BODY_IDLE`] without a byte; the
//! read then fails with `TimedOut`, which the handlers answer with 408.

use async_io::Timer;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use http_types::{Request, Response};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
pub const BODY_IDLE: Duration = Duration::from_secs(10);
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(75);
/// The largest request head (request line plus headers), as async-h1 enforces.
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 128;

/// The socket, shared by the head reader, async-h1's decoder and the response writer. Bytes read
/// ahead of what a reader consumed are kept in `prefix` and served first.
#[derive(Clone)]
pub struct ConnIo {
    stream: Arc<async_io::Async<std::net::TcpStream>>,
    state: Arc<Mutex<IoState>>,
}

struct IoState {
    prefix: Vec<u8>,
    idle_timer: Option<Timer>,
}

impl ConnIo {
    pub fn new(stream: smol::net::TcpStream) -> ConnIo {
        ConnIo {
            stream: stream.into(),
            state: Arc::new(Mutex::new(IoState {
                prefix: Vec::new(),
                idle_timer: None,
            })),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, IoState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts bytes back in front of the stream.
    fn unread(&self, bytes: &[u8]) {
        let mut st = self.state();
        let mut joined = bytes.to_vec();
        joined.extend_from_slice(&st.prefix);
        st.prefix = joined;
    }

    fn take_prefix(&self) -> Vec<u8> {
        std::mem::take(&mut self.state().prefix)
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut st = this.state();
        if !st.prefix.is_empty() {
            let n = buf.len().min(st.prefix.len());
            buf[..n].copy_from_slice(&st.prefix[..n]);
            st.prefix.drain(..n);
            return Poll::Ready(Ok(n));
        }
        match Pin::new(&mut &*this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                st.idle_timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timer = st.idle_timer.get_or_insert_with(|| Timer::after(BODY_IDLE));
                match Pin::new(timer).poll(cx) {
                    Poll::Ready(_) => {
                        st.idle_timer = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no byte received for {} s", BODY_IDLE.as_secs()),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.stream).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.stream).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.stream).poll_close(cx)
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum HeadError {
    /// The peer closed the connection before sending anything.
    Closed,
    /// The peer was silent (between kept-alive requests): close without an answer.
    Idle,
    TooLarge,
    Malformed(String),
    UnsupportedVersion,
    Timeout,
    Io(io::Error),
}

/// Reads one request head into the connection's prefix and checks it with httparse.
async fn read_head(io: &ConnIo, first_request: bool) -> Result<(), HeadError> {
    let mut head = io.take_prefix();
    let mut io_reader = io.clone();
    let mut chunk = [0u8; 4096];
    // Before the first byte: the head deadline (first request) or the keep-alive idle time.
    let mut deadline = Timer::after(if first_request {
        HEAD_DEADLINE
    } else {
        KEEP_ALIVE_IDLE
    });
    let mut started = !head.is_empty() || first_request;
    loop {
        if let Some(end) = find_head_end(&head) {
            if end > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            check_head(&head[..end])?;
            io.unread(&head);
            return Ok(());
        }
        if head.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let read = async { Some(io_reader.read(&mut chunk).await) }.or(async {
            (&mut deadline).await;
            None
        });
        match read.await {
            None if !started => return Err(HeadError::Idle),
            None => return Err(HeadError::Timeout),
            Some(Ok(0)) if head.is_empty() => return Err(HeadError::Closed),
            Some(Ok(0)) => {
                return Err(HeadError::Malformed(
                    "the connection closed in the middle of the request head".into(),
                ));
            }
            Some(Ok(n)) => {
                if !started {
                    started = true;
                    deadline.set_after(HEAD_DEADLINE);
                }
                head.extend_from_slice(&chunk[..n]);
            }
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                // The per-read idle timer fired; the head deadline decides.
                continue;
            }
            Some(Err(e)) => return Err(HeadError::Io(e)),
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

fn check_head(head: &[u8]) -> Result<(), HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HeadError::Malformed(
                "the request head is incomplete".into(),
            ));
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => {
            return Err(HeadError::Malformed(format!(
                "the request head is malformed ({e})"
            )));
        }
    }
    if req.version != Some(1) {
        return Err(HeadError::UnsupportedVersion);
    }
    if !req.path.is_some_and(|p| p.starts_with('/')) {
        return Err(HeadError::Malformed(
            "the request target must be a path starting with /".into(),
        ));
    }
    for h in req.headers.iter() {
        if std::str::from_utf8(h.value).is_err() {
            return Err(HeadError::Malformed(format!(
                "header {} is not valid UTF-8",
                h.name
            )));
        }
    }
    if !req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("host"))
    {
        return Err(HeadError::Malformed("the Host header is missing".into()));
    }
    Ok(())
}

/// What the connection loop needs to know about a handled request.
pub struct Handled {
    pub response: Response,
    /// Close the connection after this response (the body was not read to its end).
    pub close: bool,
}

/// Serves requests on one connection until it closes. `handler` answers each request.
pub async fn serve<H, F>(
    stream: smol::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    handler: H,
) where
    H: Fn(Request, SocketAddr, SocketAddr) -> F,
    F: Future<Output = Handled>,
{
    let _ = stream.set_nodelay(true);
    let io = ConnIo::new(stream);
    let mut first = true;
    loop {
        if let Err(e) = read_head(&io, first).await {
            let reply = match e {
                HeadError::Closed | HeadError::Idle => None,
                HeadError::Io(e) => {
                    log::debug!("http connection from {peer}: read failed: {e}");
                    None
                }
                HeadError::TooLarge => Some(super::reply::error(
                    431,
                    &format!(
                        "the request head is larger than {} bytes; send fewer or shorter headers",
                        MAX_HEAD
                    ),
                )),
                HeadError::Malformed(why) => {
                    Some(super::reply::error(400, &format!("bad request: {why}")))
                }
                HeadError::UnsupportedVersion => Some(super::reply::error(
                    505,
                    "only HTTP/1.1 is served; send the request as HTTP/1.1",
                )),
                HeadError::Timeout => Some(super::reply::error(
                    408,
                    &format!(
                        "the request head did not arrive within {} s",
                        HEAD_DEADLINE.as_secs()
                    ),
                )),
            };
            if let Some(res) = reply {
                let _ = write_response(&io, res, http_types::Method::Get, true).await;
            }
            return;
        }
        first = false;

        let decoded = async_h1::server::decode(io.clone()).await;
        let (req, mut body) = match decoded {
            Ok(Some(pair)) => pair,
            Ok(None) => return,
            Err(e) => {
                let res = super::reply::error(400, &format!("bad request: {e}"));
                let _ = write_response(&io, res, http_types::Method::Get, true).await;
                return;
            }
        };
        let method = req.method();
        let wants_close = req
            .header(http_types::headers::CONNECTION)
            .is_some_and(|c| {
                c.as_str()
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("close"))
            });
        let handled = handler(req, peer, local).await;
        let close = wants_close || handled.close;
        if write_response(&io, handled.response, method, close)
            .await
            .is_err()
        {
            return;
        }
        if close {
            return;
        }
        // Discard what the handler left of the body, within limits; otherwise close.
        let mut sink = [0u8; 8192];
        let mut left = 64 * 1024;
        loop {
            match body.read(&mut sink).await {
                Ok(0) => break,
                Ok(n) if n <= left => left -= n,
                _ => return,
            }
        }
    }
}

async fn write_response(
    io: &ConnIo,
    mut res: Response,
    method: http_types::Method,
    close: bool,
) -> io::Result<()> {
    if close {
        res.insert_header(http_types::headers::CONNECTION, "close");
    } else {
        res.insert_header(
            "Keep-Alive",
            format!("timeout={}", KEEP_ALIVE_IDLE.as_secs() - 5),
        );
    }
    let mut encoder = async_h1::server::Encoder::new(res, method);
    let mut out = io.clone();
    futures_lite::io::copy(&mut encoder, &mut out).await?;
    out.flush().await?;
    if close {
        let _ = out.close().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_checked() {
        assert!(check_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_ok());
        assert!(matches!(
            check_head(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"),
            Err(HeadError::UnsupportedVersion)
        ));
        assert!(matches!(
            check_head(b"GET / HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            check_head(b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            check_head(b"GET x HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"),
            Some(27)
        );
    }
}
