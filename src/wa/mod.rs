//! The WhatsApp engine: the only module that imports `whatsapp-rust`.
//!
//! Owns: the platform adapters whatsapp-rust 0.7.0 needs to run on this product's stack: the smol
//! `Runtime` (`runtime`), the WebSocket `TransportFactory` on smol TCP + rustls
//! (`transport`), the ureq-backed `HttpClient` (`http_client`), and the storage `Backend` on the
//! app's redb store (`backend`).
//!
//! Must not: leak whatsapp-rust types to the rest of the app (`engine` is the app's only entry
//! point, and it speaks plain data); pull in tokio (`cargo tree -e normal -i tokio` must find nothing);
//! skip TLS verification (the `test-network` feature only adds a trusted test CA).

pub mod backend;
pub mod engine;
pub mod groups;
pub mod http_client;
pub mod ingest;
pub mod runtime;
pub mod send;
pub mod transport;
