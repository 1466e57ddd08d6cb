//! Synthetic data for demos and benchmarks (interface; the implementation lands next).

use super::{Result, Store, StoreError};

/// Fills the store with `messages` messages over `chats` chats.
pub fn generate(_store: &Store, messages: u64, chats: u64) -> Result<String> {
    Err(StoreError(format!(
        "demo-data ({messages} messages, {chats} chats) is not implemented yet"
    )))
}
