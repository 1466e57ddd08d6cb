//! Building HTTP responses and reading request bodies.
//!
//! Owns: the JSON error shape every route uses (`{"error": {"status", "message"}}`, never HTML)
//! and the capped, deadline-guarded body reader. Must not: decide routing or auth.

use crate::json::{self, Value};
use futures_lite::AsyncReadExt;
use http_types::{Request, Response, StatusCode};

/// A JSON response.
pub fn json(status: u16, body: &Value) -> Response {
    let mut res = Response::new(status_code(status));
    res.insert_header("Content-Type", "application/json");
    res.insert_header("Cache-Control", "no-store");
    res.set_body(json::to_string(body));
    res
}

/// A JSON error: `{"error": {"status": N, "message": "..."}}`.
pub fn error(status: u16, message: &str) -> Response {
    json(
        status,
        &json::obj([(
            "error",
            json::obj([
                ("status", json::int(status as i64)),
                ("message", json::s(message)),
            ]),
        )]),
    )
}

/// An empty response.
pub fn empty(status: u16) -> Response {
    Response::new(status_code(status))
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::try_from(status).unwrap_or(StatusCode::InternalServerError)
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over the cap: 413.
    TooLarge { limit: usize },
    /// The client stopped sending: 408.
    Stalled,
    /// Broken framing or a dropped connection: 400.
    Broken(String),
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(req: &mut Request, limit: usize) -> Result<Vec<u8>, BodyError> {
    if let Some(len) = req.len()
        && len > limit
    {
        return Err(BodyError::TooLarge { limit });
    }
    let body = req.take_body();
    let mut out = Vec::with_capacity(req.len().unwrap_or(0).min(limit));
    let mut limited = body.take(limit as u64 + 1);
    match limited.read_to_end(&mut out).await {
        Ok(_) if out.len() > limit => Err(BodyError::TooLarge { limit }),
        Ok(_) => Ok(out),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(BodyError::Stalled),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}
