//! Full-text search over message bodies: folding, segmentation, the inverted index, queries.
//!
//! (Interface stub; the full implementation replaces the bodies below.)
//!
//! Owns: its own tables, `index`/`unindex` (called by `writes` inside the same write
//! transaction as the message change) and `search`. Must not: decide which messages a caller
//! may see; `search` asks the caller through `candidate`.

use super::Result;
use super::model::Doc;
use redb::{ReadTransaction, WriteTransaction};

/// Creates the search tables (called by `schema::init`).
pub fn create_tables(_txn: &WriteTransaction) -> Result<()> {
    Ok(())
}

/// Adds a message body to the index.
pub fn index(_txn: &WriteTransaction, _doc: Doc, _text: &str) -> Result<()> {
    Ok(())
}

/// Removes a message body (as it was indexed) from the index.
pub fn unindex(_txn: &WriteTransaction, _doc: Doc, _text: &str) -> Result<()> {
    Ok(())
}

/// A search request.
#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    /// Words, `"quoted phrases"`; the last word also matches as a prefix.
    pub text: &'a str,
    /// Only messages at or after this time (ms).
    pub after: Option<u64>,
    /// Only messages at or before this time (ms).
    pub before: Option<u64>,
    pub limit: usize,
}

/// How well a hit matches; better tiers rank first, then newer messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Phrase,
    AllWords,
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub doc: Doc,
    pub tier: Tier,
}

/// Runs a query. `candidate(doc)` returns the message body when the caller's other filters
/// (chat, sender) accept the message, or `None` to skip it.
pub fn search(
    _txn: &ReadTransaction,
    _query: &SearchQuery,
    _candidate: &mut dyn FnMut(Doc) -> Result<Option<String>>,
) -> Result<Vec<Hit>> {
    Ok(Vec::new())
}
