//! JSON-RPC 2.0 messages: classifying what a client sent, and building answers.
//!
//! Owns: the message shapes and the exact error codes. Must not: know about transports or
//! sessions.

use crate::json::{self, Object, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Transport-level rejections (bad session, bad headers), as the official SDKs do.
pub const TRANSPORT_ERROR: i64 = -32000;

/// A request id: a string or an integer, never null.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Id {
    Str(String),
    Int(i64),
}

impl Id {
    pub fn from_value(v: &Value) -> Option<Id> {
        match v {
            Value::String(s) => Some(Id::Str(s.clone())),
            Value::Number(_) => json::as_i64(v).map(Id::Int),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            Id::Str(s) => json::s(s.clone()),
            Id::Int(n) => json::int(*n),
        }
    }
}

/// One message from the client.
#[derive(Debug, Clone)]
pub enum Message {
    Request {
        id: Id,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// An answer to a request the server sent (accepted and ignored: we send none).
    Response,
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response => None,
        }
    }
}

/// Classifies one JSON value. `Err` holds the message of a −32600 Invalid Request, and the id
/// when one could be read.
pub fn classify(v: &Value) -> Result<Message, (Option<Id>, String)> {
    let Value::Object(o) = v else {
        return Err((None, "a JSON-RPC message must be a JSON object".into()));
    };
    let id_value = o.get("id");
    let id = id_value.and_then(Id::from_value);
    if json::get_str(v, "jsonrpc") != Some("2.0") {
        return Err((id, "the message must carry \"jsonrpc\": \"2.0\"".into()));
    }
    match o.get("method") {
        Some(Value::String(method)) => {
            let params = match o.get("params") {
                None => None,
                Some(p @ Value::Object(_)) | Some(p @ Value::Array(_)) => Some(p.clone()),
                Some(_) => return Err((id, "\"params\" must be an object".into())),
            };
            match id_value {
                None => Ok(Message::Notification {
                    method: method.clone(),
                    params,
                }),
                Some(raw) => match id {
                    Some(id) => Ok(Message::Request {
                        id,
                        method: method.clone(),
                        params,
                    }),
                    None if matches!(raw, Value::Null) => Err((
                        None,
                        "a request id must be a string or an integer, not null".into(),
                    )),
                    None => Err((None, "a request id must be a string or an integer".into())),
                },
            }
        }
        Some(_) => Err((id, "\"method\" must be a string".into())),
        None => {
            let is_response =
                (o.contains_key("result") || o.contains_key("error")) && id_value.is_some();
            if is_response {
                Ok(Message::Response)
            } else {
                Err((
                    id,
                    "the message has no \"method\"; it is neither a request nor a response".into(),
                ))
            }
        }
    }
}

/// A success answer.
pub fn result(id: &Id, result: Value) -> Value {
    let mut o = Object::new();
    o.insert("jsonrpc".into(), json::s("2.0"));
    o.insert("id".into(), id.to_value());
    o.insert("result".into(), result);
    Value::Object(o)
}

/// An error answer. `id` is `None` when it could not be read (it is then `null`).
pub fn error(id: Option<&Id>, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut e = Object::new();
    e.insert("code".into(), json::int(code));
    e.insert("message".into(), json::s(message));
    if let Some(d) = data {
        e.insert("data".into(), d);
    }
    let mut o = Object::new();
    o.insert("jsonrpc".into(), json::s("2.0"));
    o.insert("id".into(), id.map(Id::to_value).unwrap_or(Value::Null));
    o.insert("error".into(), Value::Object(e));
    Value::Object(o)
}

/// A notification from the server.
pub fn notification(method: &str, params: Value) -> Value {
    json::obj([
        ("jsonrpc", json::s("2.0")),
        ("method", json::s(method)),
        ("params", params),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> Result<Message, (Option<Id>, String)> {
        classify(&json::parse(text).unwrap())
    }

    #[test]
    fn classifies_requests_notifications_and_responses() {
        assert!(matches!(
            c(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Message::Request { id: Id::Int(1), .. })
        ));
        assert!(matches!(
            c(r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#),
            Ok(Message::Request { id: Id::Str(_), .. })
        ));
        assert!(matches!(
            c(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert!(matches!(
            c(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#),
            Ok(Message::Response)
        ));
    }

    #[test]
    fn rejects_what_is_not_json_rpc() {
        assert!(c(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).is_err());
        assert!(c(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).is_err());
        assert!(c(r#"{"id":1,"method":"ping"}"#).is_err());
        assert!(c(r#"{"jsonrpc":"2.0","id":1}"#).is_err());
        assert!(c(r#"{"jsonrpc":"2.0","id":1,"method":5}"#).is_err());
        assert!(c(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#).is_err());
        assert!(c(r#"[1]"#).is_err());
    }

    #[test]
    fn error_ids_are_null_when_unknown() {
        let e = error(None, PARSE_ERROR, "Parse error", None);
        assert_eq!(
            json::to_string(&e),
            r#"{"error":{"code":-32700,"message":"Parse error"},"id":null,"jsonrpc":"2.0"}"#
        );
    }
}
