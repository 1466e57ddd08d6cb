//! Backup and seeding: the store as JSON Lines (interface; the implementation lands next).

use super::{Result, Store, StoreError};
use std::path::Path;

/// What an import wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub chats: u64,
    pub messages: u64,
    pub contacts: u64,
    pub groups: u64,
    pub mappings: u64,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} chats, {} messages, {} contacts, {} groups, {} mappings",
            self.chats, self.messages, self.contacts, self.groups, self.mappings
        )
    }
}

/// Imports a JSON Lines file, all or nothing.
pub fn import_file(_store: &Store, path: &Path) -> Result<ImportReport> {
    Err(StoreError(format!(
        "import of {} is not implemented yet",
        path.display()
    )))
}

/// Exports the store (or one chat) to `out` (`-` = standard output).
pub fn export_file(_store: &Store, _chat: Option<&str>, out: &Path) -> Result<ImportReport> {
    Err(StoreError(format!(
        "export to {} is not implemented yet",
        out.display()
    )))
}
