//! MCP: JSON-RPC 2.0, sessions, and the two transports (Streamable HTTP and stdio).
//!
//! Owns: the protocol. Must not: know about WhatsApp; tools are reached only through
//! `tools::Registry`.

pub mod dispatch;
pub mod http;
pub mod jsonrpc;
pub mod session;
pub mod sse;
pub mod stdio;
