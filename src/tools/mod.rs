//! The tool framework and the registry of every MCP tool.
//!
//! Owns: what a tool is ([`Tool`]: name, description, parameters, annotations, function), the
//! input JSON Schema generated from the parameters, argument validation (with defaults filled in
//! before the function runs), and [`ToolResult`]. Must not: know about HTTP, sessions or
//! JSON-RPC framing; the `mcp` module calls [`Registry::call`] and frames the answer.
//!
//! One file per tool group (auth, contacts, chats, messages, media, audit, util). A group file
//! only declares tools and their functions; adding a tool never touches this file.

mod audit;
mod auth;
mod chats;
mod contacts;
mod media;
mod messages;
pub mod safety;
mod send;
#[cfg(test)]
mod tests_read;
#[cfg(test)]
mod tests_send;
mod util;
pub mod views;
mod wait;

use crate::json::{self, Object, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The type of one parameter, with its constraints.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A string; `min_len`/`max_len` in characters, `format` as JSON Schema's (only `"uri"`).
    String {
        min_len: Option<usize>,
        max_len: Option<usize>,
        format: Option<&'static str>,
    },
    /// An integer; `exclusive_min` and `max` as JSON Schema's `exclusiveMinimum`/`maximum`.
    Integer {
        exclusive_min: Option<i64>,
        max: Option<i64>,
    },
    Boolean,
    /// An array of strings.
    StringArray,
}

/// One named parameter of a tool.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub description: &'static str,
    pub required: bool,
    /// Filled in when the caller leaves the parameter out.
    pub default: Option<Value>,
}

impl Param {
    pub fn string(name: &'static str, description: &'static str) -> Param {
        Param {
            name,
            kind: Kind::String {
                min_len: None,
                max_len: None,
                format: None,
            },
            description,
            required: false,
            default: None,
        }
    }

    /// An optional `idempotency_key`: 1 to 200 characters.
    pub fn idempotency_key(description: &'static str) -> Param {
        Param {
            kind: Kind::String {
                min_len: Some(1),
                max_len: Some(200),
                format: None,
            },
            ..Param::string("idempotency_key", description)
        }
    }

    /// A string that must be an absolute URI (`format: uri`).
    pub fn uri(name: &'static str, description: &'static str) -> Param {
        Param {
            kind: Kind::String {
                min_len: None,
                max_len: None,
                format: Some("uri"),
            },
            ..Param::string(name, description)
        }
    }

    /// A positive integer (`exclusiveMinimum: 0`) with a default.
    pub fn positive(name: &'static str, default: i64, description: &'static str) -> Param {
        Param {
            name,
            kind: Kind::Integer {
                exclusive_min: Some(0),
                max: None,
            },
            description,
            required: false,
            default: Some(json::int(default)),
        }
    }

    pub fn boolean(name: &'static str, default: bool, description: &'static str) -> Param {
        Param {
            name,
            kind: Kind::Boolean,
            description,
            required: false,
            default: Some(json::bool(default)),
        }
    }

    pub fn string_array(name: &'static str, description: &'static str) -> Param {
        Param {
            name,
            kind: Kind::StringArray,
            description,
            required: false,
            default: None,
        }
    }

    /// Marks the parameter as required.
    pub fn required(mut self) -> Param {
        self.required = true;
        self
    }

    /// Sets an inclusive maximum on an integer parameter.
    pub fn max(mut self, max: i64) -> Param {
        if let Kind::Integer { max: m, .. } = &mut self.kind {
            *m = Some(max);
        }
        self
    }

    /// This parameter's JSON Schema.
    fn schema(&self) -> Value {
        let mut o = Object::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_string(), v);
        };
        match &self.kind {
            Kind::String {
                min_len,
                max_len,
                format,
            } => {
                put("type", json::s("string"));
                if let Some(n) = min_len {
                    put("minLength", json::int(*n as i64));
                }
                if let Some(n) = max_len {
                    put("maxLength", json::int(*n as i64));
                }
                if let Some(f) = format {
                    put("format", json::s(*f));
                }
            }
            Kind::Integer { exclusive_min, max } => {
                put("type", json::s("integer"));
                if let Some(n) = exclusive_min {
                    put("exclusiveMinimum", json::int(*n));
                }
                if let Some(n) = max {
                    put("maximum", json::int(*n));
                }
            }
            Kind::Boolean => put("type", json::s("boolean")),
            Kind::StringArray => {
                put("type", json::s("array"));
                put("items", json::obj([("type", json::s("string"))]));
            }
        }
        put("description", json::s(self.description));
        if let Some(d) = &self.default {
            put("default", d.clone());
        }
        Value::Object(o)
    }
}

/// The MCP tool annotations (hints for clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Annotations {
    pub read_only: bool,
    /// `None` leaves `destructiveHint` out (it only means something for tools that write).
    pub destructive: Option<bool>,
    pub idempotent: bool,
    pub open_world: bool,
}

impl Annotations {
    /// A tool that only reads local state.
    pub const READ_LOCAL: Annotations = Annotations {
        read_only: true,
        destructive: None,
        idempotent: true,
        open_world: false,
    };
    /// A tool that only reads, but may ask WhatsApp.
    pub const READ_REMOTE: Annotations = Annotations {
        read_only: true,
        destructive: None,
        idempotent: true,
        open_world: true,
    };

    fn to_value(self) -> Value {
        let mut o = Object::new();
        o.insert("readOnlyHint".into(), json::bool(self.read_only));
        if let Some(d) = self.destructive {
            o.insert("destructiveHint".into(), json::bool(d));
        }
        o.insert("idempotentHint".into(), json::bool(self.idempotent));
        o.insert("openWorldHint".into(), json::bool(self.open_world));
        Value::Object(o)
    }
}

/// One content block of a tool result.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text(String),
    Image {
        data_base64: String,
        mime_type: String,
    },
    Audio {
        data_base64: String,
        mime_type: String,
    },
    ResourceLink {
        uri: String,
        name: String,
        mime_type: Option<String>,
    },
}

impl Content {
    fn to_value(&self) -> Value {
        match self {
            Content::Text(t) => {
                json::obj([("type", json::s("text")), ("text", json::s(t.clone()))])
            }
            Content::Image {
                data_base64,
                mime_type,
            } => json::obj([
                ("type", json::s("image")),
                ("data", json::s(data_base64.clone())),
                ("mimeType", json::s(mime_type.clone())),
            ]),
            Content::Audio {
                data_base64,
                mime_type,
            } => json::obj([
                ("type", json::s("audio")),
                ("data", json::s(data_base64.clone())),
                ("mimeType", json::s(mime_type.clone())),
            ]),
            Content::ResourceLink {
                uri,
                name,
                mime_type,
            } => {
                let mut v = json::obj([
                    ("type", json::s("resource_link")),
                    ("uri", json::s(uri.clone())),
                    ("name", json::s(name.clone())),
                ]);
                if let (Value::Object(o), Some(m)) = (&mut v, mime_type) {
                    o.insert("mimeType".into(), json::s(m.clone()));
                }
                v
            }
        }
    }
}

/// What a tool answers: content blocks, and whether it is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    pub content: Vec<Content>,
    pub is_error: bool,
}

impl ToolResult {
    pub fn text(text: impl Into<String>) -> ToolResult {
        ToolResult {
            content: vec![Content::Text(text.into())],
            is_error: false,
        }
    }

    /// A result whose text is `value` as indented JSON.
    pub fn json(value: &Value) -> ToolResult {
        ToolResult::text(json::to_pretty(value))
    }

    /// A failed call: the text says what went wrong and what to do.
    pub fn error(text: impl Into<String>) -> ToolResult {
        ToolResult {
            content: vec![Content::Text(text.into())],
            is_error: true,
        }
    }

    /// The answer of a tool whose backing part is not built yet.
    pub fn not_available(tool: &str, needs: &str) -> ToolResult {
        ToolResult::error(format!("not available yet: {tool} needs {needs}"))
    }

    /// The MCP `CallToolResult` object.
    pub fn to_value(&self) -> Value {
        let mut o = Object::new();
        o.insert(
            "content".into(),
            json::arr(self.content.iter().map(Content::to_value)),
        );
        if self.is_error {
            o.insert("isError".into(), json::bool(true));
        }
        Value::Object(o)
    }
}

/// Validated arguments: every declared parameter with a default is present.
#[derive(Debug, Clone, Default)]
pub struct Args(Object);

impl Args {
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(json::as_i64)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        match self.0.get(name) {
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|v| {
                        if let Value::String(s) = v {
                            Some(s.clone())
                        } else {
                            None
                        }
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Reports progress on a running tool call. A no-op when the caller asked for none.
pub trait ProgressSink: Send + Sync {
    fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>);
}

/// What the server hands every tool call.
#[derive(Clone)]
pub struct ToolEnv {
    /// `READ_ONLY=1`: the send tools are refused.
    pub read_only: bool,
    /// `AUTO_SELECT_CONTACT=1`: `get_chat_by_contact` picks a clear best match itself.
    pub auto_select_contact: bool,
    /// Everything the app knows.
    pub store: crate::store::Store,
    /// The WhatsApp engine; `None` where none runs (unit tests, benches).
    pub engine: Option<crate::wa::engine::Engine>,
    /// `WA_IDEMPOTENCY_TTL_MS`: how long an `idempotency_key`'s answer is replayed.
    pub idempotency_ttl_ms: u64,
    /// Safe sending: the allowlist, the rate limit, the duplicate window and the send log.
    pub send_guard: Arc<safety::SendGuard>,
}

/// One call in flight: arguments plus the environment and a progress reporter.
pub struct ToolCall {
    pub args: Args,
    pub env: Arc<ToolEnv>,
    pub progress: Arc<dyn ProgressSink>,
}

pub type ToolFuture = Pin<Box<dyn Future<Output = ToolResult> + Send>>;
pub type ToolFn = fn(ToolCall) -> ToolFuture;

/// One MCP tool.
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    pub params: Vec<Param>,
    /// `None` for a tool that the original advertised without annotations.
    pub annotations: Annotations,
    /// True for tools that send to WhatsApp; `READ_ONLY=1` removes them.
    pub sends: bool,
    /// True for tools that may run for long and report progress; with a progress token the
    /// transport answers them as an SSE stream.
    pub long_running: bool,
    pub run: ToolFn,
}

impl Tool {
    /// A tool with no flags set; groups adjust the fields they need.
    pub fn new(
        name: &'static str,
        description: &'static str,
        params: Vec<Param>,
        annotations: Annotations,
        run: ToolFn,
    ) -> Tool {
        Tool {
            name,
            description,
            params,
            annotations,
            sends: false,
            long_running: false,
            run,
        }
    }

    /// The `inputSchema`: JSON Schema 2020-12 (no `$schema` means 2020-12 in MCP 2025-11-25).
    pub fn input_schema(&self) -> Value {
        let mut props = Object::new();
        for p in &self.params {
            props.insert(p.name.to_string(), p.schema());
        }
        let mut o = Object::new();
        o.insert("type".into(), json::s("object"));
        o.insert("properties".into(), Value::Object(props));
        let required: Vec<Value> = self
            .params
            .iter()
            .filter(|p| p.required)
            .map(|p| json::s(p.name))
            .collect();
        if !required.is_empty() {
            o.insert(
                "required".into(),
                Value::Array(required.into_iter().collect()),
            );
        }
        o.insert("additionalProperties".into(), json::bool(false));
        Value::Object(o)
    }

    /// The `Tool` object of `tools/list`.
    pub fn to_value(&self) -> Value {
        json::obj([
            ("name", json::s(self.name)),
            ("description", json::s(self.description)),
            ("inputSchema", self.input_schema()),
            ("annotations", self.annotations.to_value()),
        ])
    }

    /// Checks `arguments` against the parameters and fills in defaults. The error names the
    /// field and says what is expected.
    pub fn validate(&self, arguments: Option<&Value>) -> Result<Args, String> {
        let given = match arguments {
            None | Some(Value::Null) => Object::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(_) => return Err("arguments must be a JSON object".into()),
        };
        for key in given.keys() {
            if !self.params.iter().any(|p| p.name == key) {
                let accepted: Vec<&str> = self.params.iter().map(|p| p.name).collect();
                return Err(if accepted.is_empty() {
                    format!("unknown field `{key}`: this tool takes no arguments")
                } else {
                    format!(
                        "unknown field `{key}`: this tool accepts {}",
                        accepted.join(", ")
                    )
                });
            }
        }
        let mut out = Object::new();
        for p in &self.params {
            match given.get(p.name) {
                None | Some(Value::Null) => {
                    if p.required {
                        return Err(format!(
                            "missing required field `{}` ({})",
                            p.name, p.description
                        ));
                    }
                    if let Some(d) = &p.default {
                        out.insert(p.name.to_string(), d.clone());
                    }
                }
                Some(v) => {
                    check_kind(p, v)?;
                    out.insert(p.name.to_string(), v.clone());
                }
            }
        }
        Ok(Args(out))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_kind(p: &Param, v: &Value) -> Result<(), String> {
    let name = p.name;
    match (&p.kind, v) {
        (
            Kind::String {
                min_len,
                max_len,
                format,
            },
            Value::String(s),
        ) => {
            let chars = s.chars().count();
            if let Some(min) = min_len
                && chars < *min
            {
                return Err(format!(
                    "field `{name}` must have at least {min} characters (got {chars})"
                ));
            }
            if let Some(max) = max_len
                && chars > *max
            {
                return Err(format!(
                    "field `{name}` must have at most {max} characters (got {chars})"
                ));
            }
            if *format == Some("uri") && !looks_like_uri(s) {
                return Err(format!(
                    "field `{name}` must be an absolute URL such as https://example.com/file.jpg"
                ));
            }
            Ok(())
        }
        (Kind::Integer { exclusive_min, max }, Value::Number(_)) => {
            let Some(n) = json::as_i64(v) else {
                // A whole number beyond 64 bits (`1e300`, `2^64`, `-1e300`) is out of range;
                // anything else (`1.5`, NaN) is not whole.
                let (whole, negative) = match v {
                    Value::Number(json::Number::F64(f)) => (f.fract() == 0.0, *f < 0.0),
                    _ => (true, false),
                };
                return Err(match (whole, negative, exclusive_min, max) {
                    (false, ..) => format!("field `{name}` must be a whole number"),
                    (true, true, Some(min), _) => {
                        format!("field `{name}` must be greater than {min}")
                    }
                    (true, false, _, Some(max)) => format!("field `{name}` must be at most {max}"),
                    _ => format!("field `{name}` is out of range"),
                });
            };
            if let Some(min) = exclusive_min
                && n <= *min
            {
                return Err(format!(
                    "field `{name}` must be greater than {min} (got {n})"
                ));
            }
            if let Some(max) = max
                && n > *max
            {
                return Err(format!("field `{name}` must be at most {max} (got {n})"));
            }
            Ok(())
        }
        (Kind::Boolean, Value::Bool(_)) => Ok(()),
        (Kind::StringArray, Value::Array(items)) => {
            if items.iter().all(|i| matches!(i, Value::String(_))) {
                Ok(())
            } else {
                Err(format!("field `{name}` must be an array of strings"))
            }
        }
        (kind, other) => {
            let want = match kind {
                Kind::String { .. } => "a string",
                Kind::Integer { .. } => "an integer",
                Kind::Boolean => "a boolean (true or false)",
                Kind::StringArray => "an array of strings",
            };
            Err(format!(
                "field `{name}` must be {want} (got {})",
                type_name(other)
            ))
        }
    }
}

fn looks_like_uri(s: &str) -> bool {
    match s.split_once("://") {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Why a call could not run at all (a JSON-RPC error, not an `isError` result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    UnknownTool(String),
}

/// Every tool the server offers, in `tools/list` order.
pub struct Registry {
    tools: Vec<Tool>,
    env: Arc<ToolEnv>,
}

impl Registry {
    /// A registry of exactly `tools` (tests of the protocol layer use their own tools).
    #[cfg(test)]
    pub(crate) fn with_tools(tools: Vec<Tool>, env: ToolEnv) -> Registry {
        Registry {
            tools,
            env: Arc::new(env),
        }
    }

    /// The final tool list: the original's 29 plus the new ones.
    pub fn new(env: ToolEnv) -> Registry {
        let mut tools = Vec::new();
        tools.extend(auth::tools());
        tools.extend(contacts::tools());
        tools.extend(chats::tools());
        tools.extend(audit::tools());
        tools.extend(messages::tools());
        tools.extend(media::tools());
        tools.extend(util::tools());
        Registry {
            tools,
            env: Arc::new(env),
        }
    }

    /// The tools that `tools/list` shows (send tools are hidden under `READ_ONLY`).
    pub fn listed(&self) -> impl Iterator<Item = &Tool> {
        self.tools
            .iter()
            .filter(|t| !(self.env.read_only && t.sends))
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Validates and runs one call. Invalid arguments are an `isError` result naming the field.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<&Value>,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<ToolResult, CallError> {
        let tool = self
            .get(name)
            .ok_or_else(|| CallError::UnknownTool(name.to_string()))?;
        if tool.sends && self.env.read_only {
            self.log_read_only_refusal(name, arguments).await;
            return Ok(ToolResult::error(format!(
                "{name} is switched off: this server runs with READ_ONLY=1, which allows no sending. \
                 Ask the operator to unset READ_ONLY if sending is intended."
            )));
        }
        let args = match tool.validate(arguments) {
            Ok(a) => a,
            Err(why) => {
                return Ok(ToolResult::error(format!(
                    "Invalid arguments for tool {name}: {why}"
                )));
            }
        };
        Ok((tool.run)(ToolCall {
            args,
            env: self.env.clone(),
            progress,
        })
        .await)
    }
}

impl Registry {
    /// Records a send refused by `READ_ONLY` in the send log, with what the call named.
    async fn log_read_only_refusal(&self, name: &str, arguments: Option<&Value>) {
        let field = |k: &str| {
            arguments
                .and_then(|a| json::get_str(a, k))
                .map(str::to_string)
        };
        let text = field("message")
            .or_else(|| field("emoji"))
            .or_else(|| field("caption"));
        let entry = crate::store::send_log::Entry {
            tool: name.to_string(),
            recipient: field("recipient_jid")
                .or_else(|| field("chat_jid"))
                .unwrap_or_default(),
            bytes: text.as_ref().map_or(0, |t| t.len() as u64),
            result: safety::REFUSED_READ_ONLY.into(),
            idempotency_key: field("idempotency_key"),
            body: text,
            ..Default::default()
        };
        self.env.send_guard.log(&self.env.store, entry).await;
    }
}

/// Wraps an `async fn(ToolCall) -> ToolResult` into a [`ToolFn`]-compatible boxed future.
#[macro_export]
macro_rules! tool_fn {
    ($f:path) => {{
        fn run(call: $crate::tools::ToolCall) -> $crate::tools::ToolFuture {
            Box::pin($f(call))
        }
        run as $crate::tools::ToolFn
    }};
}

/// A [`ToolFn`] for a tool whose backing part is not built yet.
#[macro_export]
macro_rules! not_yet {
    ($name:literal, $needs:literal) => {{
        fn run(_call: $crate::tools::ToolCall) -> $crate::tools::ToolFuture {
            Box::pin(async { $crate::tools::ToolResult::not_available($name, $needs) })
        }
        run as $crate::tools::ToolFn
    }};
}
