//! whatsapp-mcp-stream as a library: the modules the binary wires together (see ARCHITECTURE.md).
//!
//! The binary (`main.rs`) only wires these; integration tests and benchmarks drive the binary.

// The HTTP checks return the finished `Response` as their error: it is built only for a rejected
// request, so its size on the error path costs nothing that matters.
#![allow(clippy::result_large_err)]

pub mod config;
pub mod http;
pub mod json;
pub mod mcp;
pub mod runtime;
pub mod store;
pub mod tools;
pub mod wa;
