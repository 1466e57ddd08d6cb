//! whatsapp-rust's storage `Backend` on redb: [`RedbBackend`].
//!
//! Owns: the engine's own tables (all named `wa_*`) in the app's one redb `Database`, and the
//! five store traits of whatsapp-rust 0.7.0 (`SignalStore`, `AppSyncStore`, `ProtocolStore`,
//! `DeviceStore`, `MsgSecretStore`, hence `Backend`) over them. Every write goes through
//! [`Store::write`], the app's single writer thread with group commit, so each method returns
//! only after its commit is durable (`Durability::Immediate`). Reads run on [`Store::read`].
//!
//! Must not: touch the app's tables (chats, messages, …) or know about MCP; the rest of the app
//! reaches WhatsApp only through `src/wa`.
//!
//! # Tables and key layouts
//! | table | key | value |
//! |---|---|---|
//! | `wa_meta` | name | `device` (JSON `Device`), `next_device_id` (i32 LE), `latest_sync_key_id` (bytes) |
//! | `wa_identities` | Signal address | 32-byte identity key |
//! | `wa_sessions` | Signal address | session record |
//! | `wa_prekeys` | prekey id | 1 byte uploaded flag, then the record |
//! | `wa_signed_prekeys` | signed prekey id | record |
//! | `wa_sender_keys` | sender-key address | record |
//! | `wa_sync_keys` | key id (bytes) | JSON `AppStateSyncKey` |
//! | `wa_app_versions` | collection name | JSON `HashState` |
//! | `wa_mutation_macs` | (collection, index MAC) | value MAC |
//! | `wa_sender_key_devices` | (group JID, device JID) | has key (bool) |
//! | `wa_lid_mappings` | LID user | JSON `LidPnMappingEntry` |
//! | `wa_pn_to_lid` | phone user | LID user (reverse index of `wa_lid_mappings`) |
//! | `wa_base_keys` | (address, message id) | base key |
//! | `wa_device_lists` | user | JSON `DeviceListRecord` |
//! | `wa_group_metadata` | group JID | opaque blob |
//! | `wa_tc_tokens` | JID | JSON `TcTokenEntry` |
//! | `wa_sent_messages` | (chat JID, message id) | stored-at secs (i64 LE), then the payload |
//! | `wa_pending_inbound` | (chat, sender, stanza id) | stored-at secs (i64 LE), then the message |
//! | `wa_msg_secrets` | (chat, sender, message id) | secret (32), `expires_at` (i64 LE), `message_ts` (i64 LE) |
//! | `wa_inbox` | (chat, sender, stanza id) | committed-at secs (i64 LE), message time secs (i64 LE), from-me (u8), push-name length (u16 LE), push name, then the encoded `wa::Message` |
//!
//! # Semantics kept from whatsapp-rust's `InMemoryBackend` (the reference)
//! - Each method is one write job, so one transaction: batch methods (`*_batch`, `put_lid_mappings`,
//!   `update_device_lists`, `put_msg_secrets`, …) are atomic, and every read-modify-write runs
//!   inside the writer: `take_sent_message` is an atomic take, `store_received_tc_token` is
//!   newer-wins, `touch_tc_token_sender_timestamp` only moves forward, and `put_msg_secrets`
//!   merges with `merge_msg_secret_expiry` / `merge_msg_secret_message_ts`.
//! - `mark_prekeys_uploaded` updates existing rows only; it never resurrects a consumed prekey.
//! - The sent-message store is bounded at [`MAX_SENT_MESSAGES`] rows: at the cap the oldest are
//!   dropped down to three quarters of it (ties by key order), as the reference does.
//! - The pending-inbound buffer is implemented for real (the trait defaults fail closed), and
//!   `wa_inbox` is where the engine's inbound durability hook commits each decrypted message
//!   ([`RedbBackend::commit_inbox`]): whatsapp-rust buffers a batch in `wa_pending_inbound`, the
//!   hook commits it to `wa_inbox`, and only then does the client acknowledge it to WhatsApp.
//!   `wa_inbox` is message history waiting for the materializer, not key material.
//! - [`RedbBackend::clear`] (for logout) empties every `wa_*` table except `wa_inbox` in one
//!   transaction.
//! - Write jobs may run twice (a failed group commit retries each alone): they only write what
//!   they captured, and results are handed back through a slot overwritten on each run.

use crate::store::{Context, Store, StoreError as AppError};
use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use whatsapp_rust::async_trait;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::serde::{Serialize, de::DeserializeOwned};
use whatsapp_rust::serde_json;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::wacore::store::error::{Result as WaResult, StoreError as WaError};
use whatsapp_rust::wacore::store::traits::{
    AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry,
    MsgSecretEntry, MsgSecretStore, PendingInboundKey, PendingInboundRow, ProtocolStore,
    SignalStore, TcTokenEntry, merge_msg_secret_expiry, merge_msg_secret_message_ts,
};

type AppResult<T> = std::result::Result<T, AppError>;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_meta");
const IDENTITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_identities");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_sessions");
const PREKEYS: TableDefinition<u32, &[u8]> = TableDefinition::new("wa_prekeys");
const SIGNED_PREKEYS: TableDefinition<u32, &[u8]> = TableDefinition::new("wa_signed_prekeys");
const SENDER_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_sender_keys");
const SYNC_KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("wa_sync_keys");
const APP_VERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_app_versions");
const MUTATION_MACS: TableDefinition<(&str, &[u8]), &[u8]> =
    TableDefinition::new("wa_mutation_macs");
const SENDER_KEY_DEVICES: TableDefinition<(&str, &str), bool> =
    TableDefinition::new("wa_sender_key_devices");
const LID_MAPPINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_lid_mappings");
const PN_TO_LID: TableDefinition<&str, &str> = TableDefinition::new("wa_pn_to_lid");
const BASE_KEYS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("wa_base_keys");
const DEVICE_LISTS: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_device_lists");
const GROUP_METADATA: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_group_metadata");
const TC_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("wa_tc_tokens");
const SENT_MESSAGES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("wa_sent_messages");
const PENDING_INBOUND: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("wa_pending_inbound");
const MSG_SECRETS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("wa_msg_secrets");
const INBOX: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("wa_inbox");

/// One decrypted inbound message as committed to `wa_inbox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub chat: String,
    pub sender: String,
    /// The stanza id (unique within a chat and sender).
    pub id: String,
    /// The message time, epoch seconds.
    pub timestamp: i64,
    pub from_me: bool,
    pub push_name: String,
    /// The encoded `wa::Message`.
    pub message: Vec<u8>,
}

impl InboxRow {
    fn encode(&self, committed_at: i64) -> Vec<u8> {
        let name = self.push_name.as_bytes();
        let name = &name[..name.len().min(u16::MAX as usize)];
        let mut v = Vec::with_capacity(19 + name.len() + self.message.len());
        v.extend_from_slice(&committed_at.to_le_bytes());
        v.extend_from_slice(&self.timestamp.to_le_bytes());
        v.push(u8::from(self.from_me));
        v.extend_from_slice(&(name.len() as u16).to_le_bytes());
        v.extend_from_slice(name);
        v.extend_from_slice(&self.message);
        v
    }

    fn decode(chat: &str, sender: &str, id: &str, v: &[u8]) -> Option<InboxRow> {
        let timestamp = read_i64(v, 8)?;
        let from_me = *v.get(16)? != 0;
        let len = u16::from_le_bytes(v.get(17..19)?.try_into().ok()?) as usize;
        let push_name = String::from_utf8_lossy(v.get(19..19 + len)?).into_owned();
        Some(InboxRow {
            chat: chat.to_owned(),
            sender: sender.to_owned(),
            id: id.to_owned(),
            timestamp,
            from_me,
            push_name,
            message: v.get(19 + len..)?.to_vec(),
        })
    }
}

const META_DEVICE: &str = "device";
const META_NEXT_DEVICE_ID: &str = "next_device_id";
const META_LATEST_SYNC_KEY: &str = "latest_sync_key_id";

/// Hard cap on retained sent messages (the reference's bound): time-based pruning is the client's
/// keepalive sweep; this only bounds a burst between sweeps.
pub const MAX_SENT_MESSAGES: usize = 4096;

/// The length of a message secret (whatsapp-rust's `MessageSecret`).
const SECRET_LEN: usize = 32;

/// Creates the backend's tables; called by `store::schema::init` in the schema transaction.
pub fn create_tables(txn: &WriteTransaction) -> AppResult<()> {
    txn.open_table(META).ctx("creating wa_meta")?;
    txn.open_table(IDENTITIES).ctx("creating wa_identities")?;
    txn.open_table(SESSIONS).ctx("creating wa_sessions")?;
    txn.open_table(PREKEYS).ctx("creating wa_prekeys")?;
    txn.open_table(SIGNED_PREKEYS)
        .ctx("creating wa_signed_prekeys")?;
    txn.open_table(SENDER_KEYS).ctx("creating wa_sender_keys")?;
    txn.open_table(SYNC_KEYS).ctx("creating wa_sync_keys")?;
    txn.open_table(APP_VERSIONS)
        .ctx("creating wa_app_versions")?;
    txn.open_table(MUTATION_MACS)
        .ctx("creating wa_mutation_macs")?;
    txn.open_table(SENDER_KEY_DEVICES)
        .ctx("creating wa_sender_key_devices")?;
    txn.open_table(LID_MAPPINGS)
        .ctx("creating wa_lid_mappings")?;
    txn.open_table(PN_TO_LID).ctx("creating wa_pn_to_lid")?;
    txn.open_table(BASE_KEYS).ctx("creating wa_base_keys")?;
    txn.open_table(DEVICE_LISTS)
        .ctx("creating wa_device_lists")?;
    txn.open_table(GROUP_METADATA)
        .ctx("creating wa_group_metadata")?;
    txn.open_table(TC_TOKENS).ctx("creating wa_tc_tokens")?;
    txn.open_table(SENT_MESSAGES)
        .ctx("creating wa_sent_messages")?;
    txn.open_table(PENDING_INBOUND)
        .ctx("creating wa_pending_inbound")?;
    txn.open_table(MSG_SECRETS).ctx("creating wa_msg_secrets")?;
    txn.open_table(INBOX).ctx("creating wa_inbox")?;
    Ok(())
}

/// Removes materialized messages from `wa_inbox` inside the caller's write transaction (ingest
/// prunes what it has written into the app's tables).
pub fn inbox_remove(txn: &WriteTransaction, rows: &[InboxRow]) -> AppResult<()> {
    let mut t = txn.open_table(INBOX).ctx("opening wa_inbox")?;
    for r in rows {
        t.remove((r.chat.as_str(), r.sender.as_str(), r.id.as_str()))
            .ctx("pruning wa_inbox")?;
    }
    Ok(())
}

/// whatsapp-rust's storage backend over the app's [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct RedbBackend {
    store: Store,
}

impl RedbBackend {
    pub fn new(store: Store) -> RedbBackend {
        RedbBackend { store }
    }

    /// Forgets the linked device: empties every `wa_*` table in one transaction (after a logout;
    /// the app's own tables, the history, are untouched). The next `create` starts a new device.
    pub async fn clear(&self) -> WaResult<()> {
        self.write("clearing the WhatsApp keys", |txn| {
            fn empty<K: redb::Key + 'static, V: redb::Value + 'static>(
                txn: &WriteTransaction,
                def: TableDefinition<'static, K, V>,
            ) -> AppResult<()> {
                let mut t = txn.open_table(def).ctx("opening a wa table")?;
                t.retain(|_, _| false).ctx("emptying a wa table")?;
                Ok(())
            }
            empty(txn, META)?;
            empty(txn, IDENTITIES)?;
            empty(txn, SESSIONS)?;
            empty(txn, PREKEYS)?;
            empty(txn, SIGNED_PREKEYS)?;
            empty(txn, SENDER_KEYS)?;
            empty(txn, SYNC_KEYS)?;
            empty(txn, APP_VERSIONS)?;
            empty(txn, MUTATION_MACS)?;
            empty(txn, SENDER_KEY_DEVICES)?;
            empty(txn, LID_MAPPINGS)?;
            empty(txn, PN_TO_LID)?;
            empty(txn, BASE_KEYS)?;
            empty(txn, DEVICE_LISTS)?;
            empty(txn, GROUP_METADATA)?;
            empty(txn, TC_TOKENS)?;
            empty(txn, SENT_MESSAGES)?;
            empty(txn, PENDING_INBOUND)?;
            empty(txn, MSG_SECRETS)?;
            Ok(())
        })
        .await
    }

    /// Commits a batch of decrypted inbound messages to `wa_inbox` in one transaction; returns
    /// once the commit is durable. Idempotent: a redelivered message overwrites its own row.
    pub async fn commit_inbox(&self, rows: Vec<InboxRow>) -> WaResult<()> {
        self.write_inbox("commit_inbox", rows, |_| Ok(())).await
    }

    /// Commits a batch to `wa_inbox` and runs `also` in the same transaction (ingest writes the
    /// same messages into the app's tables), so both are durable together on return.
    pub async fn commit_inbox_with<F>(&self, rows: Vec<InboxRow>, also: F) -> WaResult<()>
    where
        F: Fn(&WriteTransaction) -> AppResult<()> + Send + 'static,
    {
        self.write_inbox("commit_inbox_with", rows, also).await
    }

    /// The one write behind `commit_inbox` and `commit_inbox_with`, named `what` in errors.
    async fn write_inbox<F>(&self, what: &'static str, rows: Vec<InboxRow>, also: F) -> WaResult<()>
    where
        F: Fn(&WriteTransaction) -> AppResult<()> + Send + 'static,
    {
        let now = now_secs();
        let rows: Vec<(InboxRow, Vec<u8>)> = rows
            .into_iter()
            .map(|r| {
                let v = r.encode(now);
                (r, v)
            })
            .collect();
        self.write(what, move |txn| {
            {
                let mut t = txn.open_table(INBOX).ctx("opening wa_inbox")?;
                for (r, value) in &rows {
                    t.insert(
                        (r.chat.as_str(), r.sender.as_str(), r.id.as_str()),
                        value.as_slice(),
                    )
                    .ctx("writing an inbox message")?;
                }
            }
            also(txn)
        })
        .await
    }

    /// Up to `limit` committed inbound messages of `wa_inbox` in key order, starting after
    /// `after` (startup reconciliation with the app's tables, page by page).
    pub async fn inbox_page(
        &self,
        after: Option<(String, String, String)>,
        limit: usize,
    ) -> WaResult<Vec<InboxRow>> {
        self.read("inbox_page", move |r| {
            let t = r.open_table(INBOX).ctx("opening wa_inbox")?;
            let mut out = Vec::new();
            let range = match &after {
                Some((c, s, i)) => t.range((c.as_str(), s.as_str(), i.as_str())..),
                None => t.range::<(&str, &str, &str)>(..),
            }
            .ctx("reading wa_inbox")?;
            for entry in range {
                let (k, v) = entry.ctx("reading wa_inbox")?;
                let (chat, sender, id) = k.value();
                if after.as_ref().is_some_and(|(c, s, i)| {
                    (c.as_str(), s.as_str(), i.as_str()) == (chat, sender, id)
                }) {
                    continue;
                }
                if let Some(row) = InboxRow::decode(chat, sender, id, v.value()) {
                    out.push(row);
                }
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    /// Reads one committed inbound message back from `wa_inbox`.
    pub async fn inbox_get(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> WaResult<Option<InboxRow>> {
        let (chat, sender, id) = (chat.to_owned(), sender.to_owned(), id.to_owned());
        self.read("inbox_get", move |r| {
            let t = r.open_table(INBOX).ctx("opening wa_inbox")?;
            let row = t
                .get((chat.as_str(), sender.as_str(), id.as_str()))
                .ctx("reading an inbox message")?;
            Ok(row.and_then(|v| InboxRow::decode(&chat, &sender, &id, v.value())))
        })
        .await
    }

    /// Runs a write job and waits for its commit.
    async fn write<F>(&self, what: &'static str, job: F) -> WaResult<()>
    where
        F: Fn(&WriteTransaction) -> AppResult<()> + Send + 'static,
    {
        self.store.write(job).await.map_err(|e| wa_err(what, e))
    }

    /// Runs a write job that produces a value, and returns the value of the run that committed.
    async fn write_returning<T, F>(&self, what: &'static str, job: F) -> WaResult<T>
    where
        T: Send + 'static,
        F: Fn(&WriteTransaction) -> AppResult<T> + Send + 'static,
    {
        let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
        let filled = slot.clone();
        self.store
            .write(move |txn| {
                let value = job(txn)?;
                *filled
                    .lock()
                    .map_err(|_| AppError("a result slot was poisoned".into()))? = Some(value);
                Ok(())
            })
            .await
            .map_err(|e| wa_err(what, e))?;
        let value = slot.lock().ok().and_then(|mut s| s.take());
        value.ok_or_else(|| {
            wa_err(
                what,
                AppError("the write committed without a result".into()),
            )
        })
    }

    /// Runs a read on a blocking thread.
    async fn read<T, F>(&self, what: &'static str, query: F) -> WaResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> AppResult<T> + Send + 'static,
    {
        self.store.read(query).await.map_err(|e| wa_err(what, e))
    }

    async fn read_str(
        &self,
        what: &'static str,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        key: &str,
    ) -> WaResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(what, move |r| {
            let t = r.open_table(def).ctx("opening a wa table")?;
            Ok(t.get(key.as_str())
                .ctx("reading")?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn put_str(
        &self,
        what: &'static str,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        key: &str,
        value: Vec<u8>,
    ) -> WaResult<()> {
        let key = key.to_owned();
        self.write(what, move |txn| {
            let mut t = txn.open_table(def).ctx("opening a wa table")?;
            t.insert(key.as_str(), value.as_slice()).ctx("writing")?;
            Ok(())
        })
        .await
    }

    async fn delete_str(
        &self,
        what: &'static str,
        def: TableDefinition<'static, &'static str, &'static [u8]>,
        key: &str,
    ) -> WaResult<()> {
        let key = key.to_owned();
        self.write(what, move |txn| {
            let mut t = txn.open_table(def).ctx("opening a wa table")?;
            t.remove(key.as_str()).ctx("deleting")?;
            Ok(())
        })
        .await
    }
}

/// A store error as whatsapp-rust's error type, with the method that failed.
fn wa_err(what: &str, e: AppError) -> WaError {
    WaError::Database(Box::new(AppError(format!("{what}: {e}"))))
}

fn to_json<T: Serialize>(value: &T, what: &'static str) -> WaResult<Vec<u8>> {
    serde_json::to_vec(value)
        .map_err(|e| WaError::Serialization(Box::new(AppError(format!("{what}: {e}")))))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> AppResult<T> {
    serde_json::from_slice(bytes).ctx(what)
}

/// `secs` (i64 LE) followed by `body`.
fn stamped(secs: i64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&secs.to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn read_i64(bytes: &[u8], at: usize) -> Option<i64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(i64::from_le_bytes(b))
}

/// Splits a [`stamped`] value.
fn unstamp(bytes: &[u8]) -> AppResult<(i64, &[u8])> {
    match (read_i64(bytes, 0), bytes.get(8..)) {
        (Some(ts), Some(body)) => Ok((ts, body)),
        _ => Err(AppError(format!(
            "a stamped row is {} bytes, shorter than its timestamp",
            bytes.len()
        ))),
    }
}

/// A message-secret row: the secret, `expires_at`, `message_ts`.
fn encode_secret(secret: &[u8; SECRET_LEN], expires_at: i64, message_ts: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(SECRET_LEN + 16);
    v.extend_from_slice(secret);
    v.extend_from_slice(&expires_at.to_le_bytes());
    v.extend_from_slice(&message_ts.to_le_bytes());
    v
}

fn decode_secret(bytes: &[u8]) -> AppResult<([u8; SECRET_LEN], i64, i64)> {
    let secret: Option<[u8; SECRET_LEN]> = bytes.get(..SECRET_LEN).and_then(|s| s.try_into().ok());
    match (
        secret,
        read_i64(bytes, SECRET_LEN),
        read_i64(bytes, SECRET_LEN + 8),
    ) {
        (Some(s), Some(e), Some(m)) => Ok((s, e, m)),
        _ => Err(AppError(format!(
            "a message-secret row is {} bytes, not {}",
            bytes.len(),
            SECRET_LEN + 16
        ))),
    }
}

/// Deletes the rows of a stamped table (values start with their 8-byte stored-at time) stored
/// before `cutoff`; returns how many went.
fn delete_stamped_before<K: redb::Key + 'static>(
    txn: &redb::WriteTransaction,
    table: TableDefinition<K, &'static [u8]>,
    cutoff: i64,
    name: &str,
) -> crate::store::Result<u32> {
    let mut t = txn.open_table(table).ctx(&format!("opening {name}"))?;
    let mut removed = 0usize;
    t.retain(|_, v| {
        let keep = read_i64(v, 0).is_none_or(|ts| ts >= cutoff);
        if !keep {
            removed += 1;
        }
        keep
    })
    .ctx(&format!("deleting expired rows of {name}"))?;
    Ok(count(removed))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn now_secs() -> i64 {
    whatsapp_rust::wacore::time::now_secs()
}

/// Whether any key of `def` names `user` (device 0 `user@server` or `user:dev@server`).
fn has_user_key(
    r: &ReadTransaction,
    def: TableDefinition<'static, &'static str, &'static [u8]>,
    user: &str,
) -> AppResult<bool> {
    let t = r.open_table(def).ctx("opening a wa table")?;
    for sep in ['@', ':'] {
        let prefix = format!("{user}{sep}");
        if let Some(first) = t.range(prefix.as_str()..).ctx("scanning")?.next() {
            let (k, _) = first.ctx("scanning")?;
            if k.value().starts_with(&prefix) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Inserts a LID mapping and keeps the reverse index right (one job, shared by the batch form).
fn put_lid_mapping_in(txn: &WriteTransaction, lid: &str, pn: &str, json: &[u8]) -> AppResult<()> {
    let mut mappings = txn
        .open_table(LID_MAPPINGS)
        .ctx("opening wa_lid_mappings")?;
    let mut reverse = txn.open_table(PN_TO_LID).ctx("opening wa_pn_to_lid")?;
    let old = mappings
        .get(lid)
        .ctx("reading a lid mapping")?
        .map(|v| v.value().to_vec());
    if let Some(old) = old {
        let old: LidPnMappingEntry = from_json(&old, "decoding a lid mapping")?;
        if old.phone_number != pn {
            // Drop the stale reverse entry, unless the old number now points at another LID.
            let points_here = reverse
                .get(old.phone_number.as_str())
                .ctx("reading pn_to_lid")?
                .is_some_and(|v| v.value() == lid);
            if points_here {
                reverse
                    .remove(old.phone_number.as_str())
                    .ctx("deleting a stale pn_to_lid")?;
            }
        }
    }
    reverse.insert(pn, lid).ctx("writing pn_to_lid")?;
    mappings.insert(lid, json).ctx("writing a lid mapping")?;
    Ok(())
}

/// Drops the oldest sent messages down to 3/4 of the cap once the cap is reached.
fn bound_sent_messages(txn: &WriteTransaction) -> AppResult<()> {
    let mut t = txn
        .open_table(SENT_MESSAGES)
        .ctx("opening wa_sent_messages")?;
    let len = usize::try_from(t.len().ctx("counting sent messages")?).unwrap_or(usize::MAX);
    if len < MAX_SENT_MESSAGES {
        return Ok(());
    }
    let drop_count = len.saturating_sub(MAX_SENT_MESSAGES * 3 / 4);
    let mut rows: Vec<(i64, String, String)> = Vec::with_capacity(len);
    for row in t.iter().ctx("scanning sent messages")? {
        let (k, v) = row.ctx("scanning sent messages")?;
        let (chat, id) = k.value();
        // A row too short to carry its timestamp counts as the oldest.
        let ts = read_i64(v.value(), 0).unwrap_or(i64::MIN);
        rows.push((ts, chat.to_owned(), id.to_owned()));
    }
    // Oldest first; the stable sort keeps key order within one second.
    rows.sort_by_key(|r| r.0);
    for (_, chat, id) in rows.into_iter().take(drop_count) {
        t.remove((chat.as_str(), id.as_str()))
            .ctx("evicting a sent message")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// SignalStore
// ---------------------------------------------------------------------------

#[async_trait]
impl SignalStore for RedbBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> WaResult<()> {
        self.put_str("put_identity", IDENTITIES, address, key.to_vec())
            .await
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> WaResult<()> {
        let rows = identities.to_vec();
        self.write("put_identities_batch", move |txn| {
            let mut t = txn.open_table(IDENTITIES).ctx("opening wa_identities")?;
            for (address, key) in &rows {
                t.insert(address.as_ref(), &key[..])
                    .ctx("writing an identity")?;
            }
            Ok(())
        })
        .await
    }

    async fn load_identity(&self, address: &str) -> WaResult<Option<[u8; 32]>> {
        let Some(bytes) = self.read_str("load_identity", IDENTITIES, address).await? else {
            return Ok(None);
        };
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            WaError::Validation(format!(
                "the stored identity for {address} is {} bytes, not 32",
                bytes.len()
            ))
        })?;
        Ok(Some(key))
    }

    async fn delete_identity(&self, address: &str) -> WaResult<()> {
        self.delete_str("delete_identity", IDENTITIES, address)
            .await
    }

    async fn get_session(&self, address: &str) -> WaResult<Option<Bytes>> {
        Ok(self
            .read_str("get_session", SESSIONS, address)
            .await?
            .map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> WaResult<()> {
        self.put_str("put_session", SESSIONS, address, session.to_vec())
            .await
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> WaResult<()> {
        let rows = sessions.to_vec();
        self.write("put_sessions_batch", move |txn| {
            let mut t = txn.open_table(SESSIONS).ctx("opening wa_sessions")?;
            for (address, session) in &rows {
                t.insert(address.as_ref(), session.as_ref())
                    .ctx("writing a session")?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, address: &str) -> WaResult<()> {
        self.delete_str("delete_session", SESSIONS, address).await
    }

    async fn has_session(&self, address: &str) -> WaResult<bool> {
        let address = address.to_owned();
        self.read("has_session", move |r| {
            let t = r.open_table(SESSIONS).ctx("opening wa_sessions")?;
            Ok(t.get(address.as_str()).ctx("reading a session")?.is_some())
        })
        .await
    }

    async fn has_signal_state_for_user(&self, user: &str) -> WaResult<bool> {
        let user = user.to_owned();
        self.read("has_signal_state_for_user", move |r| {
            Ok(has_user_key(r, SESSIONS, &user)? || has_user_key(r, IDENTITIES, &user)?)
        })
        .await
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> WaResult<()> {
        let value = prekey_value(record, uploaded);
        self.write("store_prekey", move |txn| {
            let mut t = txn.open_table(PREKEYS).ctx("opening wa_prekeys")?;
            t.insert(id, value.as_slice()).ctx("writing a prekey")?;
            Ok(())
        })
        .await
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> WaResult<()> {
        let rows: Vec<(u32, Vec<u8>)> = keys
            .iter()
            .map(|(id, record)| (*id, prekey_value(record, uploaded)))
            .collect();
        self.write("store_prekeys_batch", move |txn| {
            let mut t = txn.open_table(PREKEYS).ctx("opening wa_prekeys")?;
            for (id, value) in &rows {
                t.insert(*id, value.as_slice()).ctx("writing a prekey")?;
            }
            Ok(())
        })
        .await
    }

    async fn load_prekey(&self, id: u32) -> WaResult<Option<Bytes>> {
        let mut found = self.load_prekeys_batch(&[id]).await?;
        Ok(found.pop().map(|(_, record)| record))
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> WaResult<Vec<(u32, Bytes)>> {
        let ids = ids.to_vec();
        self.read("load_prekeys_batch", move |r| {
            let t = r.open_table(PREKEYS).ctx("opening wa_prekeys")?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(v) = t.get(id).ctx("reading a prekey")? {
                    let record = v.value().get(1..).unwrap_or_default();
                    out.push((id, Bytes::copy_from_slice(record)));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> WaResult<()> {
        let ids = ids.to_vec();
        self.write("mark_prekeys_uploaded", move |txn| {
            let mut t = txn.open_table(PREKEYS).ctx("opening wa_prekeys")?;
            for &id in &ids {
                // UPDATE only: a prekey consumed meanwhile stays deleted.
                let existing = t
                    .get(id)
                    .ctx("reading a prekey")?
                    .map(|v| v.value().to_vec());
                if let Some(mut value) = existing
                    && let Some(flag) = value.first_mut()
                {
                    *flag = 1;
                    t.insert(id, value.as_slice()).ctx("marking a prekey")?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn remove_prekey(&self, id: u32) -> WaResult<()> {
        self.write("remove_prekey", move |txn| {
            let mut t = txn.open_table(PREKEYS).ctx("opening wa_prekeys")?;
            t.remove(id).ctx("deleting a prekey")?;
            Ok(())
        })
        .await
    }

    async fn get_max_prekey_id(&self) -> WaResult<u32> {
        self.read("get_max_prekey_id", |r| {
            let t = r.open_table(PREKEYS).ctx("opening wa_prekeys")?;
            Ok(t.last()
                .ctx("reading the last prekey")?
                .map(|(k, _)| k.value())
                .unwrap_or(0))
        })
        .await
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> WaResult<()> {
        let record = record.to_vec();
        self.write("store_signed_prekey", move |txn| {
            let mut t = txn
                .open_table(SIGNED_PREKEYS)
                .ctx("opening wa_signed_prekeys")?;
            t.insert(id, record.as_slice())
                .ctx("writing a signed prekey")?;
            Ok(())
        })
        .await
    }

    async fn load_signed_prekey(&self, id: u32) -> WaResult<Option<Vec<u8>>> {
        self.read("load_signed_prekey", move |r| {
            let t = r
                .open_table(SIGNED_PREKEYS)
                .ctx("opening wa_signed_prekeys")?;
            Ok(t.get(id)
                .ctx("reading a signed prekey")?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn load_all_signed_prekeys(&self) -> WaResult<Vec<(u32, Vec<u8>)>> {
        self.read("load_all_signed_prekeys", |r| {
            let t = r
                .open_table(SIGNED_PREKEYS)
                .ctx("opening wa_signed_prekeys")?;
            let mut out = Vec::new();
            for row in t.iter().ctx("scanning signed prekeys")? {
                let (k, v) = row.ctx("scanning signed prekeys")?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    async fn remove_signed_prekey(&self, id: u32) -> WaResult<()> {
        self.write("remove_signed_prekey", move |txn| {
            let mut t = txn
                .open_table(SIGNED_PREKEYS)
                .ctx("opening wa_signed_prekeys")?;
            t.remove(id).ctx("deleting a signed prekey")?;
            Ok(())
        })
        .await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> WaResult<()> {
        self.put_str("put_sender_key", SENDER_KEYS, address, record.to_vec())
            .await
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> WaResult<()> {
        let rows = sender_keys.to_vec();
        self.write("put_sender_keys_batch", move |txn| {
            let mut t = txn.open_table(SENDER_KEYS).ctx("opening wa_sender_keys")?;
            for (address, record) in &rows {
                t.insert(address.as_ref(), record.as_ref())
                    .ctx("writing a sender key")?;
            }
            Ok(())
        })
        .await
    }

    async fn get_sender_key(&self, address: &str) -> WaResult<Option<Vec<u8>>> {
        self.read_str("get_sender_key", SENDER_KEYS, address).await
    }

    async fn delete_sender_key(&self, address: &str) -> WaResult<()> {
        self.delete_str("delete_sender_key", SENDER_KEYS, address)
            .await
    }
}

fn prekey_value(record: &[u8], uploaded: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + record.len());
    v.push(u8::from(uploaded));
    v.extend_from_slice(record);
    v
}

// ---------------------------------------------------------------------------
// AppSyncStore
// ---------------------------------------------------------------------------

#[async_trait]
impl AppSyncStore for RedbBackend {
    async fn get_sync_key(&self, key_id: &[u8]) -> WaResult<Option<AppStateSyncKey>> {
        let key_id = key_id.to_vec();
        self.read("get_sync_key", move |r| {
            let t = r.open_table(SYNC_KEYS).ctx("opening wa_sync_keys")?;
            let found = t.get(key_id.as_slice()).ctx("reading a sync key")?;
            found
                .map(|v| from_json(v.value(), "decoding a sync key"))
                .transpose()
        })
        .await
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> WaResult<()> {
        let json = to_json(&key, "set_sync_key")?;
        let key_id = key_id.to_vec();
        self.write("set_sync_key", move |txn| {
            let mut t = txn.open_table(SYNC_KEYS).ctx("opening wa_sync_keys")?;
            t.insert(key_id.as_slice(), json.as_slice())
                .ctx("writing a sync key")?;
            let mut meta = txn.open_table(META).ctx("opening wa_meta")?;
            meta.insert(META_LATEST_SYNC_KEY, key_id.as_slice())
                .ctx("writing the latest sync key id")?;
            Ok(())
        })
        .await
    }

    async fn get_version(&self, name: &str) -> WaResult<HashState> {
        let name = name.to_owned();
        self.read("get_version", move |r| {
            let t = r.open_table(APP_VERSIONS).ctx("opening wa_app_versions")?;
            let found = t.get(name.as_str()).ctx("reading a version")?;
            Ok(found
                .map(|v| from_json(v.value(), "decoding a version"))
                .transpose()?
                .unwrap_or_default())
        })
        .await
    }

    async fn set_version(&self, name: &str, state: HashState) -> WaResult<()> {
        let json = to_json(&state, "set_version")?;
        self.put_str("set_version", APP_VERSIONS, name, json).await
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        _version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> WaResult<()> {
        let name = name.to_owned();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = mutations
            .iter()
            .map(|m| (m.index_mac.clone(), m.value_mac.clone()))
            .collect();
        self.write("put_mutation_macs", move |txn| {
            let mut t = txn
                .open_table(MUTATION_MACS)
                .ctx("opening wa_mutation_macs")?;
            for (index, value) in &rows {
                t.insert((name.as_str(), index.as_slice()), value.as_slice())
                    .ctx("writing a mutation MAC")?;
            }
            Ok(())
        })
        .await
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> WaResult<Option<Vec<u8>>> {
        let name = name.to_owned();
        let index_mac = index_mac.to_vec();
        self.read("get_mutation_mac", move |r| {
            let t = r
                .open_table(MUTATION_MACS)
                .ctx("opening wa_mutation_macs")?;
            Ok(t.get((name.as_str(), index_mac.as_slice()))
                .ctx("reading a mutation MAC")?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn get_mutation_macs(
        &self,
        name: &str,
        index_macs: &[[u8; 32]],
    ) -> WaResult<HashMap<[u8; 32], Vec<u8>>> {
        let name = name.to_owned();
        let index_macs = index_macs.to_vec();
        self.read("get_mutation_macs", move |r| {
            let t = r
                .open_table(MUTATION_MACS)
                .ctx("opening wa_mutation_macs")?;
            let mut out = HashMap::with_capacity(index_macs.len());
            for index in index_macs {
                if let Some(v) = t
                    .get((name.as_str(), &index[..]))
                    .ctx("reading a mutation MAC")?
                {
                    out.insert(index, v.value().to_vec());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> WaResult<()> {
        let name = name.to_owned();
        let index_macs = index_macs.to_vec();
        self.write("delete_mutation_macs", move |txn| {
            let mut t = txn
                .open_table(MUTATION_MACS)
                .ctx("opening wa_mutation_macs")?;
            for index in &index_macs {
                t.remove((name.as_str(), index.as_slice()))
                    .ctx("deleting a mutation MAC")?;
            }
            Ok(())
        })
        .await
    }

    async fn clear_mutation_macs(&self, name: &str) -> WaResult<()> {
        let name = name.to_owned();
        self.write("clear_mutation_macs", move |txn| {
            let mut t = txn
                .open_table(MUTATION_MACS)
                .ctx("opening wa_mutation_macs")?;
            let mut doomed: Vec<Vec<u8>> = Vec::new();
            for row in t
                .range((name.as_str(), &[][..])..)
                .ctx("scanning mutation MACs")?
            {
                let (k, _) = row.ctx("scanning mutation MACs")?;
                let (n, index) = k.value();
                if n != name {
                    break;
                }
                doomed.push(index.to_vec());
            }
            for index in &doomed {
                t.remove((name.as_str(), index.as_slice()))
                    .ctx("deleting a mutation MAC")?;
            }
            Ok(())
        })
        .await
    }

    async fn get_latest_sync_key_id(&self) -> WaResult<Option<Vec<u8>>> {
        self.read_str("get_latest_sync_key_id", META, META_LATEST_SYNC_KEY)
            .await
    }
}

// ---------------------------------------------------------------------------
// ProtocolStore
// ---------------------------------------------------------------------------

#[async_trait]
impl ProtocolStore for RedbBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> WaResult<Vec<(String, bool)>> {
        let group = group_jid.to_owned();
        self.read("get_sender_key_devices", move |r| {
            let t = r
                .open_table(SENDER_KEY_DEVICES)
                .ctx("opening wa_sender_key_devices")?;
            let mut out = Vec::new();
            for row in t
                .range((group.as_str(), "")..)
                .ctx("scanning sender key devices")?
            {
                let (k, v) = row.ctx("scanning sender key devices")?;
                let (g, device) = k.value();
                if g != group {
                    break;
                }
                out.push((device.to_owned(), v.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn set_sender_key_status(
        &self,
        group_jid: &str,
        entries: &[(&str, bool)],
    ) -> WaResult<()> {
        let group = group_jid.to_owned();
        let rows: Vec<(String, bool)> =
            entries.iter().map(|(d, h)| ((*d).to_owned(), *h)).collect();
        self.write("set_sender_key_status", move |txn| {
            let mut t = txn
                .open_table(SENDER_KEY_DEVICES)
                .ctx("opening wa_sender_key_devices")?;
            for (device, has_key) in &rows {
                t.insert((group.as_str(), device.as_str()), *has_key)
                    .ctx("writing a sender key status")?;
            }
            Ok(())
        })
        .await
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> WaResult<()> {
        let group = group_jid.to_owned();
        self.write("clear_sender_key_devices", move |txn| {
            let mut t = txn
                .open_table(SENDER_KEY_DEVICES)
                .ctx("opening wa_sender_key_devices")?;
            let mut doomed: Vec<String> = Vec::new();
            for row in t
                .range((group.as_str(), "")..)
                .ctx("scanning sender key devices")?
            {
                let (k, _) = row.ctx("scanning sender key devices")?;
                let (g, device) = k.value();
                if g != group {
                    break;
                }
                doomed.push(device.to_owned());
            }
            for device in &doomed {
                t.remove((group.as_str(), device.as_str()))
                    .ctx("deleting a sender key status")?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> WaResult<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let devices: Vec<String> = device_jids.iter().map(|d| (*d).to_owned()).collect();
        self.write("delete_sender_key_device_rows", move |txn| {
            let mut t = txn
                .open_table(SENDER_KEY_DEVICES)
                .ctx("opening wa_sender_key_devices")?;
            t.retain(|(_, device), _| !devices.iter().any(|d| d == device))
                .ctx("deleting sender key statuses")?;
            Ok(())
        })
        .await
    }

    async fn clear_all_sender_key_devices(&self) -> WaResult<()> {
        self.write("clear_all_sender_key_devices", |txn| {
            let mut t = txn
                .open_table(SENDER_KEY_DEVICES)
                .ctx("opening wa_sender_key_devices")?;
            t.retain(|_, _| false)
                .ctx("deleting every sender key status")?;
            Ok(())
        })
        .await
    }

    async fn get_lid_mapping(&self, lid: &str) -> WaResult<Option<LidPnMappingEntry>> {
        let lid = lid.to_owned();
        self.read("get_lid_mapping", move |r| {
            let t = r.open_table(LID_MAPPINGS).ctx("opening wa_lid_mappings")?;
            let found = t.get(lid.as_str()).ctx("reading a lid mapping")?;
            found
                .map(|v| from_json(v.value(), "decoding a lid mapping"))
                .transpose()
        })
        .await
    }

    async fn get_pn_mapping(&self, phone: &str) -> WaResult<Option<LidPnMappingEntry>> {
        let phone = phone.to_owned();
        self.read("get_pn_mapping", move |r| {
            let reverse = r.open_table(PN_TO_LID).ctx("opening wa_pn_to_lid")?;
            let Some(lid) = reverse
                .get(phone.as_str())
                .ctx("reading pn_to_lid")?
                .map(|v| v.value().to_owned())
            else {
                return Ok(None);
            };
            let t = r.open_table(LID_MAPPINGS).ctx("opening wa_lid_mappings")?;
            let found = t.get(lid.as_str()).ctx("reading a lid mapping")?;
            found
                .map(|v| from_json(v.value(), "decoding a lid mapping"))
                .transpose()
        })
        .await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> WaResult<()> {
        self.put_lid_mappings(std::slice::from_ref(entry)).await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> WaResult<()> {
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            rows.push((
                e.lid.clone(),
                e.phone_number.clone(),
                to_json(e, "put_lid_mappings")?,
            ));
        }
        self.write("put_lid_mappings", move |txn| {
            for (lid, pn, json) in &rows {
                put_lid_mapping_in(txn, lid, pn, json)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_all_lid_mappings(&self) -> WaResult<Vec<LidPnMappingEntry>> {
        self.read("get_all_lid_mappings", |r| {
            let t = r.open_table(LID_MAPPINGS).ctx("opening wa_lid_mappings")?;
            let mut out = Vec::new();
            for row in t.iter().ctx("scanning lid mappings")? {
                let (_, v) = row.ctx("scanning lid mappings")?;
                out.push(from_json(v.value(), "decoding a lid mapping")?);
            }
            Ok(out)
        })
        .await
    }

    async fn save_base_key(
        &self,
        address: &str,
        message_id: &str,
        base_key: &[u8],
    ) -> WaResult<()> {
        let (address, message_id, base_key) =
            (address.to_owned(), message_id.to_owned(), base_key.to_vec());
        self.write("save_base_key", move |txn| {
            let mut t = txn.open_table(BASE_KEYS).ctx("opening wa_base_keys")?;
            t.insert((address.as_str(), message_id.as_str()), base_key.as_slice())
                .ctx("writing a base key")?;
            Ok(())
        })
        .await
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> WaResult<bool> {
        let (address, message_id, current) = (
            address.to_owned(),
            message_id.to_owned(),
            current_base_key.to_vec(),
        );
        self.read("has_same_base_key", move |r| {
            let t = r.open_table(BASE_KEYS).ctx("opening wa_base_keys")?;
            Ok(t.get((address.as_str(), message_id.as_str()))
                .ctx("reading a base key")?
                .is_some_and(|v| v.value() == current.as_slice()))
        })
        .await
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> WaResult<()> {
        let (address, message_id) = (address.to_owned(), message_id.to_owned());
        self.write("delete_base_key", move |txn| {
            let mut t = txn.open_table(BASE_KEYS).ctx("opening wa_base_keys")?;
            t.remove((address.as_str(), message_id.as_str()))
                .ctx("deleting a base key")?;
            Ok(())
        })
        .await
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> WaResult<()> {
        self.update_device_lists(vec![record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> WaResult<()> {
        let mut rows = Vec::with_capacity(records.len());
        for r in &records {
            rows.push((r.user.clone(), to_json(r, "update_device_lists")?));
        }
        self.write("update_device_lists", move |txn| {
            let mut t = txn
                .open_table(DEVICE_LISTS)
                .ctx("opening wa_device_lists")?;
            for (user, json) in &rows {
                t.insert(user.as_str(), json.as_slice())
                    .ctx("writing a device list")?;
            }
            Ok(())
        })
        .await
    }

    async fn get_devices(&self, user: &str) -> WaResult<Option<DeviceListRecord>> {
        let user = user.to_owned();
        self.read("get_devices", move |r| {
            let t = r.open_table(DEVICE_LISTS).ctx("opening wa_device_lists")?;
            let found = t.get(user.as_str()).ctx("reading a device list")?;
            found
                .map(|v| from_json(v.value(), "decoding a device list"))
                .transpose()
        })
        .await
    }

    async fn delete_devices(&self, user: &str) -> WaResult<()> {
        self.delete_str("delete_devices", DEVICE_LISTS, user).await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> WaResult<Option<Vec<u8>>> {
        self.read_str("get_group_metadata", GROUP_METADATA, group_jid)
            .await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> WaResult<()> {
        self.put_str(
            "put_group_metadata",
            GROUP_METADATA,
            group_jid,
            blob.to_vec(),
        )
        .await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> WaResult<()> {
        self.delete_str("delete_group_metadata", GROUP_METADATA, group_jid)
            .await
    }

    async fn get_tc_token(&self, jid: &str) -> WaResult<Option<TcTokenEntry>> {
        let Some(bytes) = self.read_str("get_tc_token", TC_TOKENS, jid).await? else {
            return Ok(None);
        };
        from_json(&bytes, "decoding a tc token")
            .map(Some)
            .map_err(|e| wa_err("get_tc_token", e))
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> WaResult<()> {
        let json = to_json(entry, "put_tc_token")?;
        self.put_str("put_tc_token", TC_TOKENS, jid, json).await
    }

    async fn delete_tc_token(&self, jid: &str) -> WaResult<()> {
        self.delete_str("delete_tc_token", TC_TOKENS, jid).await
    }

    async fn get_all_tc_token_jids(&self) -> WaResult<Vec<String>> {
        self.read("get_all_tc_token_jids", |r| {
            let t = r.open_table(TC_TOKENS).ctx("opening wa_tc_tokens")?;
            let mut out = Vec::new();
            for row in t.iter().ctx("scanning tc tokens")? {
                let (k, _) = row.ctx("scanning tc tokens")?;
                out.push(k.value().to_owned());
            }
            Ok(out)
        })
        .await
    }

    async fn delete_expired_tc_tokens(
        &self,
        token_cutoff: i64,
        sender_cutoff: i64,
    ) -> WaResult<u32> {
        self.write_returning("delete_expired_tc_tokens", move |txn| {
            let mut t = txn.open_table(TC_TOKENS).ctx("opening wa_tc_tokens")?;
            // A row goes only when both its received token and its sender bucket are stale.
            let mut doomed: Vec<String> = Vec::new();
            for row in t.iter().ctx("scanning tc tokens")? {
                let (k, v) = row.ctx("scanning tc tokens")?;
                let entry: TcTokenEntry = from_json(v.value(), "decoding a tc token")?;
                let token_live = !entry.token.is_empty() && entry.token_timestamp >= token_cutoff;
                let sender_live = entry.sender_timestamp.is_some_and(|ts| ts >= sender_cutoff);
                if !(token_live || sender_live) {
                    doomed.push(k.value().to_owned());
                }
            }
            for jid in &doomed {
                t.remove(jid.as_str()).ctx("deleting a tc token")?;
            }
            Ok(count(doomed.len()))
        })
        .await
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> WaResult<()> {
        let jid = jid.to_owned();
        self.write("touch_tc_token_sender_timestamp", move |txn| {
            let mut t = txn.open_table(TC_TOKENS).ctx("opening wa_tc_tokens")?;
            let existing = t
                .get(jid.as_str())
                .ctx("reading a tc token")?
                .map(|v| v.value().to_vec());
            let entry = match existing {
                Some(bytes) => {
                    let mut entry: TcTokenEntry = from_json(&bytes, "decoding a tc token")?;
                    // Only ever forward.
                    entry.sender_timestamp = Some(
                        entry
                            .sender_timestamp
                            .map_or(sender_timestamp, |e| e.max(sender_timestamp)),
                    );
                    entry
                }
                None => TcTokenEntry {
                    token: Vec::new(),
                    token_timestamp: sender_timestamp,
                    sender_timestamp: Some(sender_timestamp),
                },
            };
            let json = serde_json::to_vec(&entry).ctx("encoding a tc token")?;
            t.insert(jid.as_str(), json.as_slice())
                .ctx("writing a tc token")?;
            Ok(())
        })
        .await
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> WaResult<()> {
        let jid = jid.to_owned();
        let token = token.to_vec();
        self.write("store_received_tc_token", move |txn| {
            let mut t = txn.open_table(TC_TOKENS).ctx("opening wa_tc_tokens")?;
            let existing = t
                .get(jid.as_str())
                .ctx("reading a tc token")?
                .map(|v| v.value().to_vec());
            let entry = match existing {
                Some(bytes) => {
                    let mut entry: TcTokenEntry = from_json(&bytes, "decoding a tc token")?;
                    // Newer-wins; a byte-less placeholder never blocks a real token.
                    if !entry.token.is_empty() && token_timestamp < entry.token_timestamp {
                        return Ok(());
                    }
                    entry.token = token.clone();
                    entry.token_timestamp = token_timestamp;
                    entry
                }
                None => TcTokenEntry {
                    token: token.clone(),
                    token_timestamp,
                    sender_timestamp: None,
                },
            };
            let json = serde_json::to_vec(&entry).ctx("encoding a tc token")?;
            t.insert(jid.as_str(), json.as_slice())
                .ctx("writing a tc token")?;
            Ok(())
        })
        .await
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> WaResult<()> {
        let (chat, id) = (chat_jid.to_owned(), message_id.to_owned());
        let value = stamped(now_secs(), payload);
        self.write("store_sent_message", move |txn| {
            bound_sent_messages(txn)?;
            let mut t = txn
                .open_table(SENT_MESSAGES)
                .ctx("opening wa_sent_messages")?;
            t.insert((chat.as_str(), id.as_str()), value.as_slice())
                .ctx("writing a sent message")?;
            Ok(())
        })
        .await
    }

    async fn take_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
    ) -> WaResult<Option<Vec<u8>>> {
        let (chat, id) = (chat_jid.to_owned(), message_id.to_owned());
        // Read and delete in one write job: two retry receipts can never both get the payload.
        self.write_returning("take_sent_message", move |txn| {
            let mut t = txn
                .open_table(SENT_MESSAGES)
                .ctx("opening wa_sent_messages")?;
            let taken = t
                .remove((chat.as_str(), id.as_str()))
                .ctx("taking a sent message")?
                .map(|v| v.value().to_vec());
            taken
                .map(|v| unstamp(&v).map(|(_, payload)| payload.to_vec()))
                .transpose()
        })
        .await
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> WaResult<u32> {
        self.write_returning("delete_expired_sent_messages", move |txn| {
            delete_stamped_before(txn, SENT_MESSAGES, cutoff_timestamp, "wa_sent_messages")
        })
        .await
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> WaResult<()> {
        self.store_pending_inbound_batch(&[PendingInboundRow {
            chat,
            sender,
            id,
            message,
        }])
        .await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> WaResult<Option<Vec<u8>>> {
        let (chat, sender, id) = (chat.to_owned(), sender.to_owned(), id.to_owned());
        self.read("get_pending_inbound", move |r| {
            let t = r
                .open_table(PENDING_INBOUND)
                .ctx("opening wa_pending_inbound")?;
            let found = t
                .get((chat.as_str(), sender.as_str(), id.as_str()))
                .ctx("reading a pending inbound message")?;
            found
                .map(|v| unstamp(v.value()).map(|(_, message)| message.to_vec()))
                .transpose()
        })
        .await
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> WaResult<()> {
        self.delete_pending_inbound_batch(&[PendingInboundKey { chat, sender, id }])
            .await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> WaResult<u32> {
        self.write_returning("delete_expired_pending_inbound", move |txn| {
            delete_stamped_before(txn, PENDING_INBOUND, cutoff_timestamp, "wa_pending_inbound")
        })
        .await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> WaResult<()> {
        let now = now_secs();
        let rows: Vec<(String, String, String, Vec<u8>)> = rows
            .iter()
            .map(|r| {
                (
                    r.chat.to_owned(),
                    r.sender.to_owned(),
                    r.id.to_owned(),
                    stamped(now, r.message),
                )
            })
            .collect();
        self.write("store_pending_inbound_batch", move |txn| {
            let mut t = txn
                .open_table(PENDING_INBOUND)
                .ctx("opening wa_pending_inbound")?;
            for (chat, sender, id, value) in &rows {
                t.insert(
                    (chat.as_str(), sender.as_str(), id.as_str()),
                    value.as_slice(),
                )
                .ctx("writing a pending inbound message")?;
            }
            Ok(())
        })
        .await
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> WaResult<()> {
        let keys: Vec<(String, String, String)> = keys
            .iter()
            .map(|k| (k.chat.to_owned(), k.sender.to_owned(), k.id.to_owned()))
            .collect();
        self.write("delete_pending_inbound_batch", move |txn| {
            let mut t = txn
                .open_table(PENDING_INBOUND)
                .ctx("opening wa_pending_inbound")?;
            for (chat, sender, id) in &keys {
                t.remove((chat.as_str(), sender.as_str(), id.as_str()))
                    .ctx("deleting a pending inbound message")?;
            }
            Ok(())
        })
        .await
    }
}

// ---------------------------------------------------------------------------
// MsgSecretStore
// ---------------------------------------------------------------------------

#[async_trait]
impl MsgSecretStore for RedbBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> WaResult<usize> {
        let stored = entries.len();
        self.write("put_msg_secrets", move |txn| {
            let mut t = txn.open_table(MSG_SECRETS).ctx("opening wa_msg_secrets")?;
            for e in &entries {
                let key = (e.chat.as_ref(), e.sender.as_ref(), e.msg_id.as_ref());
                let existing = t
                    .get(key)
                    .ctx("reading a message secret")?
                    .map(|v| v.value().to_vec());
                let (expires_at, message_ts) = match existing {
                    Some(bytes) => {
                        let (_, old_expiry, old_ts) = decode_secret(&bytes)?;
                        (
                            merge_msg_secret_expiry(old_expiry, e.expires_at),
                            merge_msg_secret_message_ts(old_ts, e.message_ts),
                        )
                    }
                    None => (e.expires_at, e.message_ts),
                };
                let value = encode_secret(&e.secret, expires_at, message_ts);
                t.insert(key, value.as_slice())
                    .ctx("writing a message secret")?;
            }
            Ok(())
        })
        .await?;
        Ok(stored)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> WaResult<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> WaResult<Option<(Vec<u8>, i64)>> {
        let (chat, sender, msg_id) = (chat.to_owned(), sender.to_owned(), msg_id.to_owned());
        self.read("get_msg_secret_with_ts", move |r| {
            let t = r.open_table(MSG_SECRETS).ctx("opening wa_msg_secrets")?;
            let found = t
                .get((chat.as_str(), sender.as_str(), msg_id.as_str()))
                .ctx("reading a message secret")?;
            found
                .map(|v| decode_secret(v.value()).map(|(s, _, ts)| (s.to_vec(), ts)))
                .transpose()
        })
        .await
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> WaResult<u32> {
        self.write_returning("delete_expired_msg_secrets", move |txn| {
            let mut t = txn.open_table(MSG_SECRETS).ctx("opening wa_msg_secrets")?;
            let mut removed = 0usize;
            // Keep rows that never expire (0) or whose deadline is still ahead.
            t.retain(|_, v| {
                let keep = read_i64(v, SECRET_LEN)
                    .is_none_or(|expires_at| expires_at == 0 || expires_at > cutoff_timestamp);
                if !keep {
                    removed += 1;
                }
                keep
            })
            .ctx("deleting expired message secrets")?;
            Ok(count(removed))
        })
        .await
    }
}

// ---------------------------------------------------------------------------
// DeviceStore
// ---------------------------------------------------------------------------

#[async_trait]
impl DeviceStore for RedbBackend {
    async fn save(&self, device: &Device) -> WaResult<()> {
        let json = to_json(device, "save")?;
        self.put_str("save device", META, META_DEVICE, json).await
    }

    async fn load(&self) -> WaResult<Option<Device>> {
        let Some(bytes) = self.read_str("load device", META, META_DEVICE).await? else {
            return Ok(None);
        };
        from_json(&bytes, "decoding the device")
            .map(Some)
            .map_err(|e| wa_err("load device", e))
    }

    async fn exists(&self) -> WaResult<bool> {
        Ok(self
            .read_str("device exists", META, META_DEVICE)
            .await?
            .is_some())
    }

    async fn create(&self) -> WaResult<i32> {
        // Generated outside the job (which may run twice); written only if no device exists.
        let fresh = to_json(&Device::new(), "create device")?;
        self.write_returning("create device", move |txn| {
            let mut meta = txn.open_table(META).ctx("opening wa_meta")?;
            let id = meta
                .get(META_NEXT_DEVICE_ID)
                .ctx("reading the next device id")?
                .and_then(|v| v.value().try_into().ok())
                .map(i32::from_le_bytes)
                .unwrap_or(1);
            meta.insert(META_NEXT_DEVICE_ID, &id.saturating_add(1).to_le_bytes()[..])
                .ctx("writing the next device id")?;
            let exists = meta.get(META_DEVICE).ctx("reading the device")?.is_some();
            if !exists {
                meta.insert(META_DEVICE, fresh.as_slice())
                    .ctx("writing a new device")?;
            }
            Ok(id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    //! The reference backend's (`wacore::store::in_memory`) unit tests, ported to a real redb
    //! file, plus the redb-specific ones: pending inbound, restart, atomic take, merge rules.

    use super::*;
    use whatsapp_rust::wacore::store::traits::Backend;

    /// A store in a fresh temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            TempDir(std::env::temp_dir().join(format!("wams-wa-backend-{name}")))
        }
        fn file(&self) -> std::path::PathBuf {
            self.0.join("store.redb")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Opens the store file, waiting for a previous handle's writer thread to let go of it.
    fn open(dir: &TempDir) -> Store {
        for _ in 0..500 {
            match Store::open(&dir.file(), 4) {
                Ok(s) => return s,
                Err(crate::store::OpenError::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("opening the store: {e}"),
            }
        }
        panic!("the store stayed locked");
    }

    fn backend() -> (RedbBackend, TempDir) {
        let dir = TempDir::new();
        (RedbBackend::new(open(&dir)), dir)
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        smol::block_on(f)
    }

    /// Test hook: writes sent-message rows with chosen timestamps in one job.
    fn put_sent_rows(b: &RedbBackend, rows: Vec<(String, i64)>) {
        b.store
            .write_blocking(move |txn| {
                let mut t = txn.open_table(SENT_MESSAGES).ctx("open")?;
                for (id, ts) in &rows {
                    t.insert(
                        ("chat@g.us", id.as_str()),
                        stamped(*ts, b"payload").as_slice(),
                    )
                    .ctx("insert")?;
                }
                Ok(())
            })
            .unwrap();
    }

    fn sent_ids(b: &RedbBackend) -> Vec<String> {
        b.store
            .read_blocking(|r| {
                let t = r.open_table(SENT_MESSAGES).ctx("open")?;
                let mut out = Vec::new();
                for row in t.iter().ctx("iter")? {
                    let (k, _) = row.ctx("row")?;
                    out.push(k.value().1.to_owned());
                }
                Ok(out)
            })
            .unwrap()
    }

    fn is_backend<T: Backend>() {}

    #[test]
    fn redb_backend_implements_backend() {
        is_backend::<RedbBackend>();
    }

    #[test]
    fn put_sessions_batch_inserts_and_updates() {
        let (backend, _d) = backend();
        run(async {
            let first: Arc<str> = "15550000001:1@s.whatsapp.net".into();
            let second: Arc<str> = "15550000002:2@s.whatsapp.net".into();
            backend
                .put_sessions_batch(&[
                    (first.clone(), Bytes::from_static(b"first")),
                    (second.clone(), Bytes::from_static(b"second")),
                ])
                .await
                .unwrap();
            backend
                .put_sessions_batch(&[(first.clone(), Bytes::from_static(b"updated"))])
                .await
                .unwrap();
            assert_eq!(
                backend.get_session(&first).await.unwrap().unwrap(),
                Bytes::from_static(b"updated")
            );
            assert_eq!(
                backend.get_session(&second).await.unwrap().unwrap(),
                Bytes::from_static(b"second")
            );
            assert!(backend.has_session(&first).await.unwrap());
            backend.delete_session(&first).await.unwrap();
            assert!(!backend.has_session(&first).await.unwrap());
        });
    }

    #[test]
    fn group_metadata_round_trip() {
        let (backend, _d) = backend();
        run(async {
            let jid = "120363000000000001@g.us";
            assert!(backend.get_group_metadata(jid).await.unwrap().is_none());
            backend.put_group_metadata(jid, b"blob-v1").await.unwrap();
            assert_eq!(
                backend.get_group_metadata(jid).await.unwrap().as_deref(),
                Some(&b"blob-v1"[..])
            );
            backend.put_group_metadata(jid, b"blob-v2").await.unwrap();
            assert_eq!(
                backend.get_group_metadata(jid).await.unwrap().as_deref(),
                Some(&b"blob-v2"[..])
            );
            backend.delete_group_metadata(jid).await.unwrap();
            assert!(backend.get_group_metadata(jid).await.unwrap().is_none());
        });
    }

    #[test]
    fn clear_mutation_macs_wipes_only_named_collection() {
        let (backend, _d) = backend();
        run(async {
            let mac = |i: u8, v: u8| AppStateMutationMAC {
                index_mac: vec![i],
                value_mac: vec![v],
            };
            backend
                .put_mutation_macs("regular", 1, &[mac(1, 10), mac(3, 30)])
                .await
                .unwrap();
            backend
                .put_mutation_macs("critical", 1, &[mac(2, 20)])
                .await
                .unwrap();
            // A collection whose name extends the cleared one is a different collection.
            backend
                .put_mutation_macs("regular_low", 1, &[mac(4, 40)])
                .await
                .unwrap();
            backend.clear_mutation_macs("regular").await.unwrap();
            assert!(
                backend
                    .get_mutation_mac("regular", &[1])
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(
                backend
                    .get_mutation_mac("regular", &[3])
                    .await
                    .unwrap()
                    .is_none()
            );
            assert_eq!(
                backend.get_mutation_mac("critical", &[2]).await.unwrap(),
                Some(vec![20])
            );
            assert_eq!(
                backend.get_mutation_mac("regular_low", &[4]).await.unwrap(),
                Some(vec![40])
            );
        });
    }

    #[test]
    fn has_signal_state_for_user_matches_by_user_prefix() {
        run(async {
            let user = "5511999990000";
            let (backend, _d) = backend();
            assert!(!backend.has_signal_state_for_user(user).await.unwrap());
            backend
                .put_session("5511999990000@s.whatsapp.net", b"sess")
                .await
                .unwrap();
            assert!(backend.has_signal_state_for_user(user).await.unwrap());

            // A different user that this one is a prefix of must NOT match.
            let (other, _d2) = super::tests::backend();
            other
                .put_session("55119999900001@s.whatsapp.net", b"sess")
                .await
                .unwrap();
            assert!(!other.has_signal_state_for_user(user).await.unwrap());

            // Non-zero device is keyed `user:dev@server`; identity-only also counts.
            let (dev, _d3) = super::tests::backend();
            dev.put_identity("5511999990000:5@s.whatsapp.net", [7u8; 32])
                .await
                .unwrap();
            assert!(dev.has_signal_state_for_user(user).await.unwrap());
        });
    }

    #[test]
    fn store_sent_message_is_memory_bounded() {
        let (backend, _d) = backend();
        let now = now_secs();
        put_sent_rows(
            &backend,
            (0..MAX_SENT_MESSAGES)
                .map(|i| (format!("m{i}"), now))
                .collect(),
        );
        run(async {
            for i in MAX_SENT_MESSAGES..(MAX_SENT_MESSAGES + 100) {
                backend
                    .store_sent_message("chat@g.us", &format!("m{i}"), b"payload")
                    .await
                    .unwrap();
            }
        });
        let len = sent_ids(&backend).len();
        assert!(len <= MAX_SENT_MESSAGES, "over the cap: {len}");
        let last = format!("m{}", MAX_SENT_MESSAGES + 100 - 1);
        assert!(
            run(backend.take_sent_message("chat@g.us", &last))
                .unwrap()
                .is_some(),
            "the newest message must survive count-cap eviction"
        );
    }

    #[test]
    fn store_sent_message_eviction_trims_when_all_timestamps_tie() {
        let (backend, _d) = backend();
        put_sent_rows(
            &backend,
            (0..MAX_SENT_MESSAGES)
                .map(|i| (format!("m{i}"), 1_000))
                .collect(),
        );
        run(backend.store_sent_message("chat@g.us", "trigger", b"payload")).unwrap();
        let ids = sent_ids(&backend);
        assert_eq!(
            ids.len(),
            MAX_SENT_MESSAGES * 3 / 4 + 1,
            "eviction must trim to 3/4 of the cap plus the insert that triggered it"
        );
        assert!(ids.iter().any(|id| id == "trigger"));
    }

    #[test]
    fn store_sent_message_eviction_drops_the_oldest_first() {
        let (backend, _d) = backend();
        let old_ids: Vec<String> = (0..16).map(|i| format!("m{i}")).collect();
        put_sent_rows(
            &backend,
            (0..MAX_SENT_MESSAGES)
                .map(|i| {
                    let id = format!("m{i}");
                    let ts = if old_ids.contains(&id) { 500 } else { 1_000 };
                    (id, ts)
                })
                .collect(),
        );
        run(backend.store_sent_message("chat@g.us", "trigger", b"payload")).unwrap();
        let ids = sent_ids(&backend);
        for id in &old_ids {
            assert!(!ids.contains(id), "{id} is older than the cutoff");
        }
    }

    #[test]
    fn msg_secret_round_trip() {
        let (backend, _d) = backend();
        run(async {
            let secret = [7u8; 32];
            backend
                .put_msg_secret("12345@s.whatsapp.net", "9999@lid", "MID1", &secret)
                .await
                .unwrap();
            let got = backend
                .get_msg_secret("12345@s.whatsapp.net", "9999@lid", "MID1")
                .await
                .unwrap();
            assert_eq!(got.as_deref(), Some(&secret[..]));
        });
    }

    #[test]
    fn msg_secret_miss_returns_none() {
        let (backend, _d) = backend();
        assert!(
            run(backend.get_msg_secret("12345@s.whatsapp.net", "9999@lid", "MID1"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn msg_secret_keyed_by_all_three_columns() {
        let (backend, _d) = backend();
        run(async {
            backend
                .put_msg_secret("chatA", "senderX", "M1", &[1u8; 32])
                .await
                .unwrap();
            backend
                .put_msg_secret("chatA", "senderX", "M2", &[2u8; 32])
                .await
                .unwrap();
            backend
                .put_msg_secret("chatA", "senderY", "M1", &[3u8; 32])
                .await
                .unwrap();
            backend
                .put_msg_secret("chatB", "senderX", "M1", &[4u8; 32])
                .await
                .unwrap();
            for (chat, sender, id, v) in [
                ("chatA", "senderX", "M1", 1u8),
                ("chatA", "senderX", "M2", 2),
                ("chatA", "senderY", "M1", 3),
                ("chatB", "senderX", "M1", 4),
            ] {
                assert_eq!(
                    backend
                        .get_msg_secret(chat, sender, id)
                        .await
                        .unwrap()
                        .unwrap(),
                    vec![v; 32]
                );
            }
        });
    }

    fn entry(id: &str, v: u8, expires_at: i64, message_ts: i64) -> MsgSecretEntry {
        MsgSecretEntry {
            chat: "chat".into(),
            sender: "sender".into(),
            msg_id: id.into(),
            secret: [v; SECRET_LEN],
            expires_at,
            message_ts,
        }
    }

    #[test]
    fn msg_secret_batch_round_trip_and_overwrite() {
        let (backend, _d) = backend();
        run(async {
            let stored = backend
                .put_msg_secrets(vec![
                    entry("M1", 1, 0, 0),
                    entry("M2", 2, 0, 0),
                    entry("M1", 9, 0, 0),
                ])
                .await
                .unwrap();
            assert_eq!(stored, 3);
            assert_eq!(
                backend
                    .get_msg_secret("chat", "sender", "M1")
                    .await
                    .unwrap()
                    .unwrap(),
                vec![9u8; 32]
            );
            assert_eq!(
                backend
                    .get_msg_secret("chat", "sender", "M2")
                    .await
                    .unwrap()
                    .unwrap(),
                vec![2u8; 32]
            );
        });
    }

    #[test]
    fn delete_expired_msg_secrets_removes_only_old_rows() {
        let (backend, _d) = backend();
        run(async {
            let now = now_secs();
            backend
                .put_msg_secrets(vec![entry("OLD", 1, now - 86_400 * 30, 0)])
                .await
                .unwrap();
            backend
                .put_msg_secret("chat", "sender", "NEW", &[2u8; 32])
                .await
                .unwrap();
            backend
                .put_msg_secrets(vec![entry("LATER", 3, now + 86_400, 0)])
                .await
                .unwrap();
            let removed = backend
                .delete_expired_msg_secrets(now - 86_400 * 14)
                .await
                .unwrap();
            assert_eq!(removed, 1);
            assert!(
                backend
                    .get_msg_secret("chat", "sender", "OLD")
                    .await
                    .unwrap()
                    .is_none()
            );
            for id in ["NEW", "LATER"] {
                assert!(
                    backend
                        .get_msg_secret("chat", "sender", id)
                        .await
                        .unwrap()
                        .is_some()
                );
            }
        });
    }

    #[test]
    fn msg_secret_overwrite_on_same_key() {
        let (backend, _d) = backend();
        run(async {
            backend
                .put_msg_secret("chat", "sender", "M", &[1u8; 32])
                .await
                .unwrap();
            backend
                .put_msg_secret("chat", "sender", "M", &[9u8; 32])
                .await
                .unwrap();
            assert_eq!(
                backend
                    .get_msg_secret("chat", "sender", "M")
                    .await
                    .unwrap()
                    .unwrap(),
                vec![9u8; 32]
            );
        });
    }

    #[test]
    fn msg_secret_merge_rules_never_shrink_the_window_or_forget_the_parent_time() {
        let (backend, _d) = backend();
        run(async {
            backend
                .put_msg_secrets(vec![entry("M", 1, 1_000, 500)])
                .await
                .unwrap();
            // An earlier deadline and an unknown parent time do not shrink or clobber.
            backend
                .put_msg_secrets(vec![entry("M", 2, 900, 0)])
                .await
                .unwrap();
            assert_eq!(
                backend
                    .get_msg_secret_with_ts("chat", "sender", "M")
                    .await
                    .unwrap(),
                Some((vec![2u8; 32], 500))
            );
            assert_eq!(backend.delete_expired_msg_secrets(950).await.unwrap(), 0);
            // "Never" (0) wins over any deadline.
            backend
                .put_msg_secrets(vec![entry("M", 3, 0, 700)])
                .await
                .unwrap();
            backend
                .put_msg_secrets(vec![entry("M", 4, 2_000, 600)])
                .await
                .unwrap();
            assert_eq!(
                backend.delete_expired_msg_secrets(i64::MAX).await.unwrap(),
                0
            );
            assert_eq!(
                backend
                    .get_msg_secret_with_ts("chat", "sender", "M")
                    .await
                    .unwrap(),
                Some((vec![4u8; 32], 700))
            );
        });
    }

    #[test]
    fn touch_tc_token_creates_placeholder_then_preserves_real_token() {
        let (backend, _d) = backend();
        run(async {
            backend
                .touch_tc_token_sender_timestamp("u1", 1000)
                .await
                .unwrap();
            let placeholder = backend.get_tc_token("u1").await.unwrap().unwrap();
            assert!(placeholder.token.is_empty());
            assert_eq!(placeholder.sender_timestamp, Some(1000));
            backend
                .put_tc_token(
                    "u1",
                    &TcTokenEntry {
                        token: vec![7, 8, 9],
                        token_timestamp: 2000,
                        sender_timestamp: None,
                    },
                )
                .await
                .unwrap();
            backend
                .touch_tc_token_sender_timestamp("u1", 3000)
                .await
                .unwrap();
            let merged = backend.get_tc_token("u1").await.unwrap().unwrap();
            assert_eq!(merged.token, vec![7, 8, 9]);
            assert_eq!(merged.token_timestamp, 2000);
            assert_eq!(merged.sender_timestamp, Some(3000));
        });
    }

    #[test]
    fn touch_sender_timestamp_only_advances() {
        let (backend, _d) = backend();
        run(async {
            backend
                .touch_tc_token_sender_timestamp("uadv", 5000)
                .await
                .unwrap();
            backend
                .touch_tc_token_sender_timestamp("uadv", 3000)
                .await
                .unwrap();
            assert_eq!(
                backend
                    .get_tc_token("uadv")
                    .await
                    .unwrap()
                    .unwrap()
                    .sender_timestamp,
                Some(5000)
            );
        });
    }

    #[test]
    fn store_received_tc_token_preserves_sender_timestamp() {
        let (backend, _d) = backend();
        run(async {
            backend
                .touch_tc_token_sender_timestamp("u2", 5000)
                .await
                .unwrap();
            backend
                .store_received_tc_token("u2", &[1, 2, 3], 4000)
                .await
                .unwrap();
            let entry = backend.get_tc_token("u2").await.unwrap().unwrap();
            assert_eq!(entry.token, vec![1, 2, 3]);
            assert_eq!(entry.token_timestamp, 4000);
            assert_eq!(entry.sender_timestamp, Some(5000));
            backend
                .store_received_tc_token("u3", &[9], 4000)
                .await
                .unwrap();
            let fresh = backend.get_tc_token("u3").await.unwrap().unwrap();
            assert_eq!(fresh.sender_timestamp, None);
        });
    }

    #[test]
    fn store_received_tc_token_is_newer_wins() {
        let (backend, _d) = backend();
        run(async {
            backend
                .store_received_tc_token("c", &[1, 1, 1], 5000)
                .await
                .unwrap();
            backend
                .store_received_tc_token("c", &[2, 2, 2], 3000)
                .await
                .unwrap();
            let e = backend.get_tc_token("c").await.unwrap().unwrap();
            assert_eq!(e.token, vec![1, 1, 1], "older write must not overwrite");
            assert_eq!(e.token_timestamp, 5000);
            backend
                .store_received_tc_token("c", &[3, 3, 3], 7000)
                .await
                .unwrap();
            let e = backend.get_tc_token("c").await.unwrap().unwrap();
            assert_eq!(e.token, vec![3, 3, 3]);
            assert_eq!(e.token_timestamp, 7000);
            backend
                .touch_tc_token_sender_timestamp("p", 9000)
                .await
                .unwrap();
            backend
                .store_received_tc_token("p", &[4, 4, 4], 6000)
                .await
                .unwrap();
            let e = backend.get_tc_token("p").await.unwrap().unwrap();
            assert_eq!(
                e.token,
                vec![4, 4, 4],
                "placeholder must accept first real token"
            );
            assert_eq!(e.token_timestamp, 6000);
            assert_eq!(e.sender_timestamp, Some(9000), "sender bucket preserved");
        });
    }

    #[test]
    fn prune_respects_sender_and_token_windows() {
        let (backend, _d) = backend();
        run(async {
            backend
                .touch_tc_token_sender_timestamp("recent_ph", 2500)
                .await
                .unwrap();
            backend
                .touch_tc_token_sender_timestamp("stale_ph", 100)
                .await
                .unwrap();
            let tok = |token: Vec<u8>, token_timestamp, sender_timestamp| TcTokenEntry {
                token,
                token_timestamp,
                sender_timestamp,
            };
            backend
                .put_tc_token("expired_tok_live_sender", &tok(vec![1], 1, Some(2500)))
                .await
                .unwrap();
            backend
                .put_tc_token("orphan_expired", &tok(vec![2], 1, None))
                .await
                .unwrap();
            backend
                .put_tc_token("fresh_tok", &tok(vec![3], 5000, None))
                .await
                .unwrap();
            let removed = backend.delete_expired_tc_tokens(1000, 2000).await.unwrap();
            assert_eq!(removed, 2, "only fully-stale rows are pruned");
            for (jid, kept) in [
                ("recent_ph", true),
                ("stale_ph", false),
                ("expired_tok_live_sender", true),
                ("orphan_expired", false),
                ("fresh_tok", true),
            ] {
                assert_eq!(
                    backend.get_tc_token(jid).await.unwrap().is_some(),
                    kept,
                    "{jid}"
                );
            }
            let mut jids = backend.get_all_tc_token_jids().await.unwrap();
            jids.sort();
            assert_eq!(jids, ["expired_tok_live_sender", "fresh_tok", "recent_ph"]);
        });
    }

    // --- Beyond the reference's tests ---

    #[test]
    fn take_sent_message_is_an_atomic_take_even_under_concurrency() {
        let (backend, _d) = backend();
        run(async {
            backend
                .store_sent_message("chat@s.whatsapp.net", "M1", b"payload")
                .await
                .unwrap();
            // Concurrent takes land in one group commit; exactly one gets the payload.
            let takes: Vec<_> = (0..8)
                .map(|_| {
                    let b = backend.clone();
                    smol::spawn(
                        async move { b.take_sent_message("chat@s.whatsapp.net", "M1").await },
                    )
                })
                .collect();
            let mut got = 0;
            for t in takes {
                if let Some(p) = t.await.unwrap() {
                    assert_eq!(p, b"payload");
                    got += 1;
                }
            }
            assert_eq!(got, 1);
            backend
                .store_sent_message("chat@s.whatsapp.net", "M2", b"x")
                .await
                .unwrap();
            assert_eq!(
                backend
                    .delete_expired_sent_messages(now_secs() - 60)
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(
                backend
                    .delete_expired_sent_messages(now_secs() + 60)
                    .await
                    .unwrap(),
                1
            );
        });
    }

    #[test]
    fn inbox_commit_round_trip_survives_logout_clear() {
        let (backend, _d) = backend();
        run(async {
            let row = InboxRow {
                chat: "c@g.us".into(),
                sender: "s@s.whatsapp.net".into(),
                id: "ID1".into(),
                timestamp: 1_700_000_000,
                from_me: false,
                push_name: "Ann".into(),
                message: b"encoded".to_vec(),
            };
            assert!(
                backend
                    .inbox_get("c@g.us", "s@s.whatsapp.net", "ID1")
                    .await
                    .unwrap()
                    .is_none()
            );
            backend.commit_inbox(vec![row.clone()]).await.unwrap();
            // A redelivery overwrites its own row.
            backend.commit_inbox(vec![row.clone()]).await.unwrap();
            assert_eq!(
                backend
                    .inbox_get("c@g.us", "s@s.whatsapp.net", "ID1")
                    .await
                    .unwrap(),
                Some(row.clone())
            );
            backend
                .store_pending_inbound("c@g.us", "s@s.whatsapp.net", "ID1", b"x")
                .await
                .unwrap();
            backend.clear().await.unwrap();
            assert!(
                backend
                    .get_pending_inbound("c@g.us", "s@s.whatsapp.net", "ID1")
                    .await
                    .unwrap()
                    .is_none()
            );
            assert_eq!(
                backend
                    .inbox_get("c@g.us", "s@s.whatsapp.net", "ID1")
                    .await
                    .unwrap(),
                Some(row),
                "history is not key material: logout keeps it"
            );
        });
    }

    #[test]
    fn pending_inbound_round_trip_batches_and_expiry() {
        let (backend, _d) = backend();
        run(async {
            backend
                .store_pending_inbound("c@g.us", "s@s.whatsapp.net", "ID1", b"one")
                .await
                .unwrap();
            backend
                .store_pending_inbound_batch(&[
                    PendingInboundRow {
                        chat: "c@g.us",
                        sender: "s@s.whatsapp.net",
                        id: "ID2",
                        message: b"two",
                    },
                    // Same stanza id from another sender is another row.
                    PendingInboundRow {
                        chat: "c@g.us",
                        sender: "t@s.whatsapp.net",
                        id: "ID1",
                        message: b"other",
                    },
                ])
                .await
                .unwrap();
            let get = |s: &'static str, id: &'static str| {
                let b = backend.clone();
                async move { b.get_pending_inbound("c@g.us", s, id).await.unwrap() }
            };
            assert_eq!(
                get("s@s.whatsapp.net", "ID1").await.as_deref(),
                Some(&b"one"[..])
            );
            assert_eq!(
                get("s@s.whatsapp.net", "ID2").await.as_deref(),
                Some(&b"two"[..])
            );
            assert_eq!(
                get("t@s.whatsapp.net", "ID1").await.as_deref(),
                Some(&b"other"[..])
            );
            backend
                .delete_pending_inbound("c@g.us", "s@s.whatsapp.net", "ID1")
                .await
                .unwrap();
            assert_eq!(get("s@s.whatsapp.net", "ID1").await, None);
            backend
                .delete_pending_inbound_batch(&[PendingInboundKey {
                    chat: "c@g.us",
                    sender: "s@s.whatsapp.net",
                    id: "ID2",
                }])
                .await
                .unwrap();
            assert_eq!(get("s@s.whatsapp.net", "ID2").await, None);
            // Rows are stamped now: an older cutoff keeps them, a later one sweeps them.
            assert_eq!(
                backend
                    .delete_expired_pending_inbound(now_secs() - 60)
                    .await
                    .unwrap(),
                0
            );
            assert_eq!(
                backend
                    .delete_expired_pending_inbound(now_secs() + 60)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(get("t@s.whatsapp.net", "ID1").await, None);
        });
    }

    #[test]
    fn pending_inbound_and_sessions_survive_a_restart() {
        let dir = TempDir::new();
        {
            let backend = RedbBackend::new(open(&dir));
            run(async {
                backend
                    .store_pending_inbound("c@g.us", "s@s.whatsapp.net", "ID1", b"buffered")
                    .await
                    .unwrap();
                backend
                    .put_session("s:3@s.whatsapp.net", b"ratchet")
                    .await
                    .unwrap();
                backend
                    .put_identity("s:3@s.whatsapp.net", [5u8; 32])
                    .await
                    .unwrap();
                backend.create().await.unwrap();
                backend
                    .put_msg_secret("c@g.us", "s@s.whatsapp.net", "M", &[6u8; 32])
                    .await
                    .unwrap();
            });
            // Dropped here: nothing is flushed later, every write above already committed.
        }
        let backend = RedbBackend::new(open(&dir));
        run(async {
            assert_eq!(
                backend
                    .get_pending_inbound("c@g.us", "s@s.whatsapp.net", "ID1")
                    .await
                    .unwrap()
                    .as_deref(),
                Some(&b"buffered"[..])
            );
            assert_eq!(
                backend
                    .get_session("s:3@s.whatsapp.net")
                    .await
                    .unwrap()
                    .as_deref(),
                Some(&b"ratchet"[..])
            );
            assert_eq!(
                backend.load_identity("s:3@s.whatsapp.net").await.unwrap(),
                Some([5u8; 32])
            );
            assert!(backend.exists().await.unwrap());
            assert!(backend.load().await.unwrap().is_some());
            assert_eq!(
                backend
                    .get_msg_secret("c@g.us", "s@s.whatsapp.net", "M")
                    .await
                    .unwrap(),
                Some(vec![6u8; 32])
            );
            // The device id counter carried on too.
            assert_eq!(backend.create().await.unwrap(), 2);
        });
    }

    #[test]
    fn clear_forgets_the_device_and_keys_but_not_the_app_tables() {
        let (backend, _d) = backend();
        run(async {
            backend.create().await.unwrap();
            backend.put_session("a@s.whatsapp.net", b"s").await.unwrap();
            backend
                .store_pending_inbound("c", "s", "i", b"m")
                .await
                .unwrap();
            backend
                .put_lid_mapping(&mapping("100", "555"))
                .await
                .unwrap();
            backend.clear().await.unwrap();
            assert!(!backend.exists().await.unwrap());
            assert!(
                backend
                    .get_session("a@s.whatsapp.net")
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(
                backend
                    .get_pending_inbound("c", "s", "i")
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(backend.get_pn_mapping("555").await.unwrap().is_none());
            assert!(backend.get_all_lid_mappings().await.unwrap().is_empty());
            // The schema version (the app's `meta`) is still there.
            let version = backend
                .store
                .read_blocking(|r| {
                    let meta = r.open_table(crate::store::schema::META).ctx("open")?;
                    Ok(meta.get("schema_version").ctx("get")?.is_some())
                })
                .unwrap();
            assert!(version);
            assert_eq!(backend.create().await.unwrap(), 1);
            assert!(backend.exists().await.unwrap());
        });
    }

    #[test]
    fn device_create_save_load() {
        let (backend, _d) = backend();
        run(async {
            assert!(!backend.exists().await.unwrap());
            assert!(backend.load().await.unwrap().is_none());
            assert_eq!(backend.create().await.unwrap(), 1);
            assert!(backend.exists().await.unwrap());
            let mut device = backend.load().await.unwrap().unwrap();
            device.registration_id = 4242;
            device.push_name = "Ada".into();
            backend.save(&device).await.unwrap();
            // create() never replaces an existing device.
            assert_eq!(backend.create().await.unwrap(), 2);
            let loaded = backend.load().await.unwrap().unwrap();
            assert_eq!(loaded.registration_id, 4242);
            assert_eq!(loaded.push_name, "Ada");
            assert_eq!(loaded.adv_secret_key, device.adv_secret_key);
        });
    }

    #[test]
    fn prekeys_batch_max_id_and_mark_uploaded_never_resurrects() {
        let (backend, _d) = backend();
        run(async {
            assert_eq!(backend.get_max_prekey_id().await.unwrap(), 0);
            backend
                .store_prekeys_batch(
                    &[
                        (1, Bytes::from_static(b"k1")),
                        (7, Bytes::from_static(b"k7")),
                    ],
                    false,
                )
                .await
                .unwrap();
            backend.store_prekey(3, b"k3", true).await.unwrap();
            assert_eq!(backend.get_max_prekey_id().await.unwrap(), 7);
            assert_eq!(
                backend.load_prekey(7).await.unwrap(),
                Some(Bytes::from_static(b"k7"))
            );
            backend.remove_prekey(7).await.unwrap();
            backend.mark_prekeys_uploaded(&[1, 7]).await.unwrap();
            assert_eq!(backend.load_prekey(7).await.unwrap(), None);
            assert_eq!(
                backend.load_prekey(1).await.unwrap(),
                Some(Bytes::from_static(b"k1"))
            );
            let batch = backend.load_prekeys_batch(&[1, 2, 3]).await.unwrap();
            assert_eq!(
                batch,
                vec![
                    (1, Bytes::from_static(b"k1")),
                    (3, Bytes::from_static(b"k3"))
                ]
            );
            backend.store_signed_prekey(9, b"s9").await.unwrap();
            backend.store_signed_prekey(2, b"s2").await.unwrap();
            assert_eq!(
                backend.load_all_signed_prekeys().await.unwrap(),
                vec![(2, b"s2".to_vec()), (9, b"s9".to_vec())]
            );
            backend.remove_signed_prekey(9).await.unwrap();
            assert_eq!(backend.load_signed_prekey(9).await.unwrap(), None);
            assert_eq!(
                backend.load_signed_prekey(2).await.unwrap(),
                Some(b"s2".to_vec())
            );
        });
    }

    #[test]
    fn identities_and_sender_keys() {
        let (backend, _d) = backend();
        run(async {
            let a: Arc<str> = "a@s.whatsapp.net".into();
            backend
                .put_identities_batch(&[(a.clone(), [1u8; 32])])
                .await
                .unwrap();
            assert_eq!(backend.load_identity(&a).await.unwrap(), Some([1u8; 32]));
            backend.delete_identity(&a).await.unwrap();
            assert_eq!(backend.load_identity(&a).await.unwrap(), None);
            backend
                .put_sender_keys_batch(&[(a.clone(), Bytes::from_static(b"sk"))])
                .await
                .unwrap();
            backend.put_sender_key("b", b"sk-b").await.unwrap();
            assert_eq!(
                backend.get_sender_key(&a).await.unwrap(),
                Some(b"sk".to_vec())
            );
            backend.delete_sender_key(&a).await.unwrap();
            assert_eq!(backend.get_sender_key(&a).await.unwrap(), None);
            assert_eq!(
                backend.get_sender_key("b").await.unwrap(),
                Some(b"sk-b".to_vec())
            );
        });
    }

    #[test]
    fn sync_keys_versions_and_mac_batches() {
        let (backend, _d) = backend();
        run(async {
            assert_eq!(backend.get_latest_sync_key_id().await.unwrap(), None);
            let key = AppStateSyncKey {
                key_data: vec![1, 2],
                fingerprint: vec![3],
                timestamp: 99,
            };
            backend.set_sync_key(b"k1", key.clone()).await.unwrap();
            backend.set_sync_key(b"k2", key).await.unwrap();
            assert_eq!(
                backend.get_latest_sync_key_id().await.unwrap(),
                Some(b"k2".to_vec())
            );
            let got = backend.get_sync_key(b"k1").await.unwrap().unwrap();
            assert_eq!((got.key_data, got.timestamp), (vec![1, 2], 99));
            assert!(backend.get_sync_key(b"nope").await.unwrap().is_none());

            assert_eq!(backend.get_version("regular").await.unwrap().version, 0);
            let mut state = HashState {
                version: 12,
                ..HashState::default()
            };
            state.hash[0] = 0xAB;
            state.index_value_map.insert("idx".into(), vec![1, 2, 3]);
            backend.set_version("regular", state).await.unwrap();
            let back = backend.get_version("regular").await.unwrap();
            assert_eq!(back.version, 12);
            assert_eq!(back.hash[0], 0xAB);
            assert_eq!(back.index_value_map.get("idx"), Some(&vec![1, 2, 3]));

            let m = |i: u8, v: u8| AppStateMutationMAC {
                index_mac: vec![i; 32],
                value_mac: vec![v],
            };
            backend
                .put_mutation_macs("regular", 12, &[m(1, 10), m(2, 20)])
                .await
                .unwrap();
            let found = backend
                .get_mutation_macs("regular", &[[1u8; 32], [3u8; 32]])
                .await
                .unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found.get(&[1u8; 32]), Some(&vec![10]));
            backend
                .delete_mutation_macs("regular", &[vec![1u8; 32]])
                .await
                .unwrap();
            assert!(
                backend
                    .get_mutation_mac("regular", &[1u8; 32])
                    .await
                    .unwrap()
                    .is_none()
            );
            assert_eq!(
                backend
                    .get_mutation_mac("regular", &[2u8; 32])
                    .await
                    .unwrap(),
                Some(vec![20])
            );
        });
    }

    fn mapping(lid: &str, pn: &str) -> LidPnMappingEntry {
        LidPnMappingEntry {
            lid: lid.into(),
            phone_number: pn.into(),
            created_at: 1,
            updated_at: 2,
            learning_source: "usync".into(),
        }
    }

    #[test]
    fn lid_mappings_keep_the_reverse_index_right() {
        let (backend, _d) = backend();
        run(async {
            backend
                .put_lid_mappings(&[mapping("100", "555"), mapping("200", "666")])
                .await
                .unwrap();
            assert_eq!(
                backend.get_pn_mapping("555").await.unwrap().unwrap().lid,
                "100"
            );
            // The LID moves to a new number: the old number no longer resolves.
            backend
                .put_lid_mapping(&mapping("100", "777"))
                .await
                .unwrap();
            assert!(backend.get_pn_mapping("555").await.unwrap().is_none());
            assert_eq!(
                backend.get_pn_mapping("777").await.unwrap().unwrap().lid,
                "100"
            );
            assert_eq!(
                backend
                    .get_lid_mapping("100")
                    .await
                    .unwrap()
                    .unwrap()
                    .phone_number,
                "777"
            );
            assert_eq!(backend.get_all_lid_mappings().await.unwrap().len(), 2);
        });
    }

    #[test]
    fn sender_key_devices_base_keys_and_device_lists() {
        let (backend, _d) = backend();
        run(async {
            backend
                .set_sender_key_status("g1", &[("d1", true), ("d2", false)])
                .await
                .unwrap();
            backend
                .set_sender_key_status("g2", &[("d1", true)])
                .await
                .unwrap();
            backend
                .set_sender_key_status("g1", &[("d2", true)])
                .await
                .unwrap();
            assert_eq!(
                backend.get_sender_key_devices("g1").await.unwrap(),
                vec![("d1".to_string(), true), ("d2".to_string(), true)]
            );
            backend
                .delete_sender_key_device_rows(&["d1"])
                .await
                .unwrap();
            assert_eq!(
                backend.get_sender_key_devices("g1").await.unwrap(),
                vec![("d2".to_string(), true)]
            );
            assert!(
                backend
                    .get_sender_key_devices("g2")
                    .await
                    .unwrap()
                    .is_empty()
            );
            backend
                .set_sender_key_status("g2", &[("d3", false)])
                .await
                .unwrap();
            backend.clear_sender_key_devices("g1").await.unwrap();
            assert!(
                backend
                    .get_sender_key_devices("g1")
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(backend.get_sender_key_devices("g2").await.unwrap().len(), 1);
            backend.clear_all_sender_key_devices().await.unwrap();
            assert!(
                backend
                    .get_sender_key_devices("g2")
                    .await
                    .unwrap()
                    .is_empty()
            );

            backend.save_base_key("a", "m", b"bk").await.unwrap();
            assert!(backend.has_same_base_key("a", "m", b"bk").await.unwrap());
            assert!(!backend.has_same_base_key("a", "m", b"other").await.unwrap());
            backend.delete_base_key("a", "m").await.unwrap();
            assert!(!backend.has_same_base_key("a", "m", b"bk").await.unwrap());

            use whatsapp_rust::wacore::store::traits::DeviceInfo;
            let record = |user: &str, n: u32| DeviceListRecord {
                user: user.into(),
                devices: (0..n).map(|d| DeviceInfo::new(d, Some(d))).collect(),
                timestamp: 5,
                phash: Some("2:abc".into()),
                raw_id: Some(7),
            };
            backend
                .update_device_lists(vec![record("u1", 2), record("u2", 3)])
                .await
                .unwrap();
            backend.update_device_list(record("u1", 4)).await.unwrap();
            let u1 = backend.get_devices("u1").await.unwrap().unwrap();
            assert_eq!((u1.devices.len(), u1.raw_id), (4, Some(7)));
            backend.delete_devices("u1").await.unwrap();
            assert!(backend.get_devices("u1").await.unwrap().is_none());
            assert_eq!(
                backend
                    .get_devices("u2")
                    .await
                    .unwrap()
                    .unwrap()
                    .devices
                    .len(),
                3
            );
        });
    }
}
