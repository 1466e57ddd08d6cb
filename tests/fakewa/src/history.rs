//! History sync from an account's mock phone (`POST /control/history`): the test's
//! conversations, messages, push names and LID↔phone mappings become a `HistorySync`
//! proto, zlib-compressed, media-encrypted ("WhatsApp History Keys") and stored on the CDN;
//! the phone (device 0) then sends a Signal-encrypted `HistorySyncNotification` to every
//! companion of the account. Owns only that; routing is route.rs's, the Signal stores are
//! phone.rs's, the blobs cdn.rs's.

use std::io::Write as _;

use buffa::Message as _;
use serde_json::Value;
use wacore::download::MediaType;
use wacore_binary::builder::NodeBuilder;
use waproto::whatsapp as wa;

use crate::state::{ControlError, State, now_secs};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryMessage {
    pub id: String,
    pub from_me: bool,
    /// The author in a group (or of an incoming message when given).
    pub sender: Option<String>,
    pub text: String,
    /// Unix seconds.
    pub timestamp: u64,
    pub push_name: Option<String>,
}

/// One conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryConversation {
    pub jid: String,
    pub name: Option<String>,
    pub unread_count: Option<u32>,
    pub lid: Option<String>,
    pub pn: Option<String>,
    pub messages: Vec<HistoryMessage>,
}

/// What `POST /control/history` asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRequest {
    /// The account's phone number or push name.
    pub account: String,
    pub sync_type: wa::history_sync::HistorySyncType,
    pub conversations: Vec<HistoryConversation>,
    /// (jid, name)
    pub push_names: Vec<(String, String)>,
    /// (lid, pn)
    pub lid_mappings: Vec<(String, String)>,
}

fn field_str(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses the control request; the error says what is missing.
pub fn parse_request(body: &Value) -> Result<HistoryRequest, String> {
    let account = field_str(body, "account").ok_or("expected \"account\" (number or push name)")?;
    let sync_type = match body.get("sync_type").and_then(Value::as_str) {
        None | Some("initial_bootstrap") => wa::history_sync::HistorySyncType::INITIAL_BOOTSTRAP,
        Some("recent") => wa::history_sync::HistorySyncType::RECENT,
        Some("full") => wa::history_sync::HistorySyncType::FULL,
        Some("push_name") => wa::history_sync::HistorySyncType::PUSH_NAME,
        Some(other) => {
            return Err(format!(
                "unknown sync_type {other:?} (initial_bootstrap, recent, full, push_name)"
            ));
        }
    };
    let mut conversations = Vec::new();
    let convs = match body.get("conversations") {
        None => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => return Err("\"conversations\" must be an array".into()),
    };
    for (i, c) in convs.iter().enumerate() {
        let jid = field_str(c, "jid").ok_or(format!("conversations[{i}] needs \"jid\""))?;
        let mut messages = Vec::new();
        let msgs = c
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, m) in msgs.iter().enumerate() {
            let id = field_str(m, "id")
                .ok_or(format!("conversations[{i}].messages[{j}] needs \"id\""))?;
            messages.push(HistoryMessage {
                id,
                from_me: m.get("from_me").and_then(Value::as_bool).unwrap_or(false),
                sender: field_str(m, "sender"),
                text: field_str(m, "text").unwrap_or_default(),
                timestamp: m
                    .get("timestamp")
                    .and_then(Value::as_u64)
                    .unwrap_or_else(now_secs),
                push_name: field_str(m, "push_name"),
            });
        }
        conversations.push(HistoryConversation {
            jid,
            name: field_str(c, "name"),
            unread_count: c
                .get("unread_count")
                .and_then(Value::as_u64)
                .map(|n| n.min(u64::from(u32::MAX)) as u32),
            lid: field_str(c, "lid"),
            pn: field_str(c, "pn"),
            messages,
        });
    }
    let pairs = |key: &str, a: &str, b: &str| -> Result<Vec<(String, String)>, String> {
        let list = match body.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(l)) => l,
            Some(_) => return Err(format!("\"{key}\" must be an array")),
        };
        list.iter()
            .enumerate()
            .map(|(i, v)| match (field_str(v, a), field_str(v, b)) {
                (Some(x), Some(y)) => Ok((x, y)),
                _ => Err(format!("{key}[{i}] needs \"{a}\" and \"{b}\"")),
            })
            .collect()
    };
    Ok(HistoryRequest {
        account,
        sync_type,
        conversations,
        push_names: pairs("push_names", "jid", "name")?,
        lid_mappings: pairs("lid_mappings", "lid", "pn")?,
    })
}

/// The `HistorySync` proto for a request, as seen by `own_jid`'s phone.
pub fn build_history_sync(req: &HistoryRequest) -> wa::HistorySync {
    let conversations = req
        .conversations
        .iter()
        .map(|c| {
            let is_group = c.jid.ends_with("@g.us");
            let messages: Vec<wa::HistorySyncMsg> = c
                .messages
                .iter()
                .enumerate()
                .map(|(order, m)| {
                    let participant = if is_group && !m.from_me {
                        m.sender.clone()
                    } else {
                        None
                    };
                    wa::HistorySyncMsg {
                        message: buffa::MessageField::some(wa::WebMessageInfo {
                            key: buffa::MessageField::some(wa::MessageKey {
                                remote_jid: Some(c.jid.clone()),
                                from_me: Some(m.from_me),
                                id: Some(m.id.clone()),
                                participant: participant.clone(),
                            }),
                            message: buffa::MessageField::some(wa::Message {
                                conversation: Some(m.text.clone()),
                                ..Default::default()
                            }),
                            message_timestamp: Some(m.timestamp),
                            participant,
                            push_name: m.push_name.clone(),
                            ..Default::default()
                        }),
                        msg_order_id: Some(order as u64 + 1),
                    }
                })
                .collect();
            let last = c.messages.iter().map(|m| m.timestamp).max();
            wa::Conversation {
                id: c.jid.clone(),
                messages,
                name: c.name.clone(),
                unread_count: c.unread_count,
                last_msg_timestamp: last,
                conversation_timestamp: last,
                lid_jid: c.lid.clone(),
                pn_jid: c.pn.clone(),
                ..Default::default()
            }
        })
        .collect();
    wa::HistorySync {
        sync_type: req.sync_type,
        conversations,
        chunk_order: Some(1),
        progress: Some(100),
        pushnames: req
            .push_names
            .iter()
            .map(|(jid, name)| wa::Pushname {
                id: Some(jid.clone()),
                pushname: Some(name.clone()),
            })
            .collect(),
        phone_number_to_lid_mappings: req
            .lid_mappings
            .iter()
            .map(|(lid, pn)| wa::PhoneNumberToLIDMapping {
                pn_jid: Some(pn.clone()),
                lid_jid: Some(lid.clone()),
            })
            .collect(),
        ..Default::default()
    }
}

/// zlib (as WhatsApp compresses history blobs).
pub fn zlib(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    Ok(enc.finish()?)
}

fn control_error(status: u16, message: impl Into<String>) -> ControlError {
    ControlError {
        status,
        message: message.into(),
    }
}

fn message_type(t: wa::history_sync::HistorySyncType) -> wa::message::HistorySyncType {
    use wa::history_sync::HistorySyncType as H;
    use wa::message::HistorySyncType as M;
    match t {
        H::RECENT => M::RECENT,
        H::FULL => M::FULL,
        H::PUSH_NAME => M::PUSH_NAME,
        _ => M::INITIAL_BOOTSTRAP,
    }
}

impl State {
    /// `POST /control/history`: builds and uploads the blob, then the account's phone sends
    /// the notification to each companion (live, or queued for its next login). Returns the
    /// device JIDs it was sent to.
    pub async fn push_history(&self, req: &HistoryRequest) -> Result<Vec<String>, ControlError> {
        let cdn = self
            .cdn
            .get()
            .cloned()
            .ok_or_else(|| control_error(503, "the CDN is not running"))?;
        let account = {
            let g = self.lock();
            let digits: String = req.account.chars().filter(char::is_ascii_digit).collect();
            g.accounts
                .iter()
                .position(|a| {
                    a.push_name == req.account
                        || a.display_name == req.account
                        || (!digits.is_empty() && a.number == digits)
                })
                .ok_or_else(|| control_error(404, "no such account"))?
        };
        let history = build_history_sync(req);
        let plain = history.encode_to_vec();
        let (compressed, encrypted) = smol::unblock(move || {
            let compressed = zlib(&plain)?;
            let encrypted = wacore::upload::encrypt_media(&compressed, MediaType::History)?;
            anyhow::Ok((compressed, encrypted))
        })
        .await
        .map_err(|e| control_error(500, format!("building the blob: {e:#}")))?;
        let token = base64::Engine::encode(
            &base64::prelude::BASE64_URL_SAFE_NO_PAD,
            encrypted.file_enc_sha256,
        );
        let stored = cdn.put(
            MediaType::History.mms_type(),
            Some(&token),
            encrypted.data_to_upload,
        );
        let message = wa::Message {
            protocol_message: buffa::MessageField::some(wa::message::ProtocolMessage {
                r#type: Some(wa::message::protocol_message::Type::HISTORY_SYNC_NOTIFICATION),
                history_sync_notification: buffa::MessageField::some(
                    wa::message::HistorySyncNotification {
                        file_sha256: Some(encrypted.file_sha256.to_vec()),
                        file_length: Some(compressed.len() as u64),
                        media_key: Some(encrypted.media_key.to_vec()),
                        file_enc_sha256: Some(encrypted.file_enc_sha256.to_vec()),
                        direct_path: Some(stored.direct_path.clone()),
                        sync_type: Some(message_type(req.sync_type)),
                        chunk_order: Some(1),
                        progress: Some(100),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.phone_send(account, &message).await
    }

    /// The account's phone (device 0) sends `message` to each of its companions,
    /// Signal-encrypted (a session from the device's uploaded keys when there is none yet).
    /// Returns the device JIDs it went to.
    pub(crate) async fn phone_send(
        &self,
        account: usize,
        message: &wa::Message,
    ) -> Result<Vec<String>, ControlError> {
        let (number, devices, phone_identity) = {
            let g = self.lock();
            let a = &g.accounts[account];
            (
                a.number.clone(),
                a.devices.clone(),
                a.phone_identity.clone(),
            )
        };
        let mut sent = Vec::new();
        for device in devices {
            let mut phones = self.phone_stores().lock().await;
            let store = phones
                .entry(account)
                .or_insert_with(|| crate::phone::PhoneStore::new(&phone_identity, 1));
            let bundle = if crate::phone::has_session(store, &number, device).await {
                None
            } else {
                let mut g = self.lock();
                g.accounts[account].keys.get_mut(&device).map(|k| {
                    let prekey = (!k.prekeys.is_empty()).then(|| k.prekeys.remove(0));
                    (k.clone(), prekey)
                })
            };
            let encrypted = crate::phone::encrypt_message(
                store,
                &number,
                device,
                bundle.as_ref().map(|(k, p)| (k, p.clone())),
                message,
            )
            .await;
            drop(phones);
            let (enc_type, ciphertext) = match encrypted {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("phone of {number}: cannot encrypt for device {device}: {e:#}");
                    continue;
                }
            };
            let mut g = self.lock();
            let id = State::next_id(&mut g, "ph").replace('.', "").to_uppercase();
            let node = NodeBuilder::new("message")
                .attrs([
                    ("from", format!("{number}@s.whatsapp.net")),
                    ("id", format!("3EB0{id}")),
                    ("type", "text".to_string()),
                    ("category", "peer".to_string()),
                    ("t", now_secs().to_string()),
                ])
                .children([NodeBuilder::new("enc")
                    .attr("v", "2")
                    .attr("type", enc_type)
                    .bytes(ciphertext)
                    .build()])
                .build();
            crate::route::deliver(&mut g, account, device, node);
            sent.push(g.accounts[account].device_jid(device));
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_parses_and_builds() {
        let body = json!({
            "account": "alice",
            "conversations": [{
                "jid": "15550000002@s.whatsapp.net", "name": "Bob", "unread_count": 2,
                "messages": [
                    {"id": "A1", "from_me": false, "text": "hi", "timestamp": 1700000000},
                    {"id": "A2", "from_me": true, "text": "yo", "timestamp": 1700000001}
                ]
            }],
            "push_names": [{"jid": "15550000002@s.whatsapp.net", "name": "Bobby"}],
            "lid_mappings": [{"lid": "100000000000002@lid", "pn": "15550000002@s.whatsapp.net"}]
        });
        let req = parse_request(&body).unwrap();
        assert_eq!(req.account, "alice");
        assert_eq!(req.conversations[0].messages.len(), 2);
        let hs = build_history_sync(&req);
        assert_eq!(hs.conversations[0].unread_count, Some(2));
        assert_eq!(hs.conversations[0].last_msg_timestamp, Some(1_700_000_001));
        assert_eq!(hs.pushnames[0].pushname.as_deref(), Some("Bobby"));
        assert_eq!(
            hs.phone_number_to_lid_mappings[0].lid_jid.as_deref(),
            Some("100000000000002@lid")
        );
        assert!(parse_request(&json!({})).is_err());
        assert!(parse_request(&json!({"account": "a", "conversations": [{}]})).is_err());
    }
}
