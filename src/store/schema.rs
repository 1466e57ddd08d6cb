//! The tables of the store, their key layouts, and the schema-version record.
//!
//! Owns: every `TableDefinition` of the app's tables, and `init`, which creates them and checks
//! the schema version. Must not: encode values (`model.rs`) or run queries.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name | bytes: `schema_version` (u32 LE), `seq` (u64 LE), `own_jid` |
//! | `chats` | chat JID | `ChatRow` |
//! | `chats_by_time` | (activity ms, chat JID) | () — newest chats first by reverse scan |
//! | `chat_numbers` | chat JID | u32 chat number (keeps message keys short) |
//! | `chat_jids` | u32 chat number | chat JID |
//! | `messages` | doc (ms << 20 \| seq) | `MessageRow` |
//! | `chat_timeline` | (chat number, doc) | () — a chat's messages by time |
//! | `message_ids` | (chat number, WhatsApp id) | doc — a message by `jid:id` |
//! | `media` | doc | `MediaRef` |
//! | `reactions` | (doc, reactor JID) | emoji |
//! | `contacts` | JID | `ContactRow` |
//! | `lid_to_pn` / `pn_to_lid` | LID JID / PN JID | the other JID |
//! | `groups` | group JID | `GroupRow` |
//! | `group_members` | (group JID, member JID) | admin role (`""`, `admin`, `superadmin`) |
//! | `idempotency` | key | `idempotency::Record` {op, fingerprint, result, expires_at} |
//! | `send_log` | sequence | entry (send issue) |
//!
//! The search index has its own tables, listed in `search.rs`; whatsapp-rust's storage backend
//! has its own (`wa_*`), listed in `wa/backend.rs`.

use super::{Context, Result, SCHEMA_VERSION, StoreError};
use redb::{Database, ReadableTable, TableDefinition};

pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const CHATS: TableDefinition<&str, &[u8]> = TableDefinition::new("chats");
pub const CHATS_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("chats_by_time");
pub const CHAT_NUMBERS: TableDefinition<&str, u32> = TableDefinition::new("chat_numbers");
pub const CHAT_JIDS: TableDefinition<u32, &str> = TableDefinition::new("chat_jids");
pub const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
pub const CHAT_TIMELINE: TableDefinition<(u32, u64), ()> = TableDefinition::new("chat_timeline");
pub const MESSAGE_IDS: TableDefinition<(u32, &str), u64> = TableDefinition::new("message_ids");
pub const MEDIA: TableDefinition<u64, &[u8]> = TableDefinition::new("media");
pub const REACTIONS: TableDefinition<(u64, &str), &str> = TableDefinition::new("reactions");
pub const CONTACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("contacts");
pub const LID_TO_PN: TableDefinition<&str, &str> = TableDefinition::new("lid_to_pn");
pub const PN_TO_LID: TableDefinition<&str, &str> = TableDefinition::new("pn_to_lid");
pub const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
pub const GROUP_MEMBERS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("group_members");
pub const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
pub const SEND_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("send_log");

/// Creates every table and checks (or writes) the schema version.
pub fn init(db: &Database) -> Result<()> {
    let txn = db.begin_write().ctx("starting the schema transaction")?;
    {
        let mut meta = txn.open_table(META).ctx("opening meta")?;
        let found = meta
            .get("schema_version")
            .ctx("reading the schema version")?
            .map(|v| {
                let b = v.value();
                u32::from_le_bytes([
                    b.first().copied().unwrap_or(0),
                    b.get(1).copied().unwrap_or(0),
                    b.get(2).copied().unwrap_or(0),
                    b.get(3).copied().unwrap_or(0),
                ])
            });
        match found {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError(format!(
                    "the store has schema version {v}, newer than this build understands ({SCHEMA_VERSION}); upgrade whatsapp-mcp-stream"
                )));
            }
            Some(_) => {}
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_le_bytes()[..])
                    .ctx("writing the schema version")?;
            }
        }
    }
    txn.open_table(CHATS).ctx("creating chats")?;
    txn.open_table(CHATS_BY_TIME)
        .ctx("creating chats_by_time")?;
    txn.open_table(CHAT_NUMBERS).ctx("creating chat_numbers")?;
    txn.open_table(CHAT_JIDS).ctx("creating chat_jids")?;
    txn.open_table(MESSAGES).ctx("creating messages")?;
    txn.open_table(CHAT_TIMELINE)
        .ctx("creating chat_timeline")?;
    txn.open_table(MESSAGE_IDS).ctx("creating message_ids")?;
    txn.open_table(MEDIA).ctx("creating media")?;
    txn.open_table(REACTIONS).ctx("creating reactions")?;
    txn.open_table(CONTACTS).ctx("creating contacts")?;
    txn.open_table(LID_TO_PN).ctx("creating lid_to_pn")?;
    txn.open_table(PN_TO_LID).ctx("creating pn_to_lid")?;
    txn.open_table(GROUPS).ctx("creating groups")?;
    txn.open_table(GROUP_MEMBERS)
        .ctx("creating group_members")?;
    txn.open_table(IDEMPOTENCY).ctx("creating idempotency")?;
    txn.open_table(SEND_LOG).ctx("creating send_log")?;
    super::search::create_tables(&txn)?;
    crate::wa::backend::create_tables(&txn)?;
    txn.commit().ctx("committing the schema")
}

/// Reads a u64 counter from `meta`.
pub fn meta_u64(meta: &impl ReadableTable<&'static str, &'static [u8]>, name: &str) -> Result<u64> {
    Ok(meta
        .get(name)
        .ctx("reading meta")?
        .map(|v| {
            let b = v.value();
            let mut a = [0u8; 8];
            let n = b.len().min(8);
            a[..n].copy_from_slice(&b[..n]);
            u64::from_le_bytes(a)
        })
        .unwrap_or(0))
}
