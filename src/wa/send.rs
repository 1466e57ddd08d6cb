//! Sending: text (with an optional quote), reactions and read receipts, as methods on
//! [`Engine`].
//!
//! Owns: building the outgoing `wa::Message`, sending it under the message id the caller chose
//! (`SendOptions::with_message_id`, so an id persisted before the send is the id on the wire),
//! waiting for the server's ack of that id ([`AckWaiters`], fed by the engine's event handler
//! from `Event::ServerAck`), the group 403 refresh-and-retry, and storing what we sent in the
//! app's tables (committed before the call returns, so reads see our own writes).
//!
//! Must not: decide whether a send is allowed (rate limits, allowlist, read-only and idempotency
//! live in the tools), or hand whatsapp-rust types out of `src/wa`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use whatsapp_rust::Jid;
use whatsapp_rust::send::SendOptions;
use whatsapp_rust::types::events::ServerAck;
use whatsapp_rust::wacore_binary::JidExt;
use whatsapp_rust::waproto::buffa::MessageField;
use whatsapp_rust::waproto::whatsapp as wa;

use super::engine::{Engine, lock, now_ms};
use crate::store::writes::{self, NewMessage};

/// How long a send waits for the server's ack of its message id.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a group send refused with 403 waits, after refreshing the group, before its one
/// retry.
pub const GROUP_RETRY_DELAY: Duration = Duration::from_secs(2);

/// A stored message being quoted (reply_to).
#[derive(Debug, Clone)]
pub struct Quote {
    /// The quoted message's WhatsApp id.
    pub id: String,
    /// Who wrote it (own JID when from_me); in a 1:1 chat the chat JID when !from_me.
    pub sender_jid: String,
    pub from_me: bool,
    /// Its body (may be empty for media).
    pub text: String,
}

/// What a successful send returns.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The message id (the one passed in).
    pub id: String,
    /// The chat it went to, as stored (phone JID for 1:1 when known, group JID).
    pub chat_jid: String,
    pub timestamp_ms: u64,
}

/// The server's answer to one outgoing message stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The nack code (`"403"`, `"479"`, …); `None` for a plain ack.
    pub error: Option<String>,
    /// The server time of the ack, epoch milliseconds, when it carried one.
    pub at_ms: Option<u64>,
}

/// Outgoing message ids waiting for their server ack.
#[derive(Default)]
pub struct AckWaiters {
    waiting: Mutex<HashMap<String, async_channel::Sender<Ack>>>,
}

impl AckWaiters {
    /// Starts waiting for the ack of `id`; register before sending (an ack can beat the send's
    /// return).
    pub fn register(&self, id: &str) -> async_channel::Receiver<Ack> {
        let (tx, rx) = async_channel::bounded(1);
        lock(&self.waiting).insert(id.to_string(), tx);
        rx
    }

    pub fn forget(&self, id: &str) {
        lock(&self.waiting).remove(id);
    }

    /// Hands a server ack to its waiter, if any (message acks only: receipts and notifications
    /// are acked under other ids and classes).
    pub fn resolve(&self, ack: &ServerAck) {
        if ack.class.as_deref().is_some_and(|c| c != "message") {
            return;
        }
        let waiter = lock(&self.waiting).remove(&ack.id);
        if let Some(tx) = waiter {
            let _ = tx.try_send(Ack {
                error: ack.error.clone(),
                at_ms: ack.timestamp.map(|t| t.timestamp_millis().max(0) as u64),
            });
        }
    }
}

/// `N:D@server` → `N@server` (a device JID's account).
pub fn account_of(jid: &str) -> String {
    match jid.split_once('@') {
        Some((user, server)) => {
            let user = user.split(':').next().unwrap_or(user);
            format!("{user}@{server}")
        }
        None => jid.to_string(),
    }
}

/// The message for a text send: a plain `conversation`, or an `extendedTextMessage` carrying
/// the quote's `ContextInfo` (stanza id, participant, quoted message).
pub fn text_message(text: &str, quote: Option<&Quote>) -> wa::Message {
    match quote {
        None => wa::Message {
            conversation: Some(text.to_string()),
            ..Default::default()
        },
        Some(q) => {
            let quoted = wa::Message {
                conversation: Some(q.text.clone()),
                ..Default::default()
            };
            let context = wa::ContextInfo {
                stanza_id: Some(q.id.clone()),
                participant: Some(account_of(&q.sender_jid)),
                quoted_message: MessageField::some(quoted),
                ..Default::default()
            };
            wa::Message {
                extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                    text: Some(text.to_string()),
                    context_info: MessageField::some(context),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
    }
}

/// The message for a reaction to `target_id` in `chat`; an empty `emoji` removes ours.
pub fn reaction_message(
    chat: &str,
    target_id: &str,
    target_sender: Option<&str>,
    target_from_me: bool,
    emoji: &str,
    at_ms: i64,
) -> wa::Message {
    let key = wa::MessageKey {
        remote_jid: Some(chat.to_string()),
        from_me: Some(target_from_me),
        id: Some(target_id.to_string()),
        participant: target_sender.map(account_of),
    };
    whatsapp_rust::wacore::proto_helpers::build_reaction_message(key, emoji, at_ms)
}

/// Whether a send failure is WhatsApp refusing a group send (not a member / stale membership).
fn is_forbidden(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("403") || e.contains("forbidden") || e.contains("not-authorized")
}

fn parse_jid(jid: &str) -> Result<Jid, String> {
    jid.parse::<Jid>()
        .map_err(|e| format!("{jid:?} is not a WhatsApp JID: {e}"))
}

impl Engine {
    /// A fresh WhatsApp-style message id (`3EB0…`); works while disconnected.
    pub fn new_message_id(&self) -> String {
        let own = self.snapshot().own_jid.and_then(|j| j.parse::<Jid>().ok());
        let secs = (now_ms().max(0) / 1000) as u64;
        whatsapp_rust::wacore::request::RequestUtils::message_id_at(own.as_ref(), secs)
    }

    /// The account's own JID without device (`N@s.whatsapp.net`), once linked.
    pub fn own_account_jid(&self) -> Option<String> {
        self.snapshot().own_jid.map(|j| account_of(&j))
    }

    /// Sends `message` to `to` under `id` and waits for the server's ack. A group send refused
    /// with 403 refreshes the group's metadata, waits [`GROUP_RETRY_DELAY`] and tries once more
    /// under the same id. Returns the ack's time when it carried one.
    async fn send_acked(
        &self,
        to: &Jid,
        message: &wa::Message,
        id: &str,
    ) -> Result<Option<u64>, String> {
        let first = self.send_once(to, message, id, false).await;
        match first {
            Err(e) if to.is_group() && is_forbidden(&e) => {
                log::info!("whatsapp: group send {id} to {to} refused ({e}); refreshing the group");
                if let Err(e) = self.group_info(&to.to_string()).await {
                    log::warn!("whatsapp: refreshing {to} after a 403 failed: {e}");
                }
                async_io::Timer::after(GROUP_RETRY_DELAY).await;
                self.send_once(to, message, id, true).await
            }
            other => other,
        }
    }

    async fn send_once(
        &self,
        to: &Jid,
        message: &wa::Message,
        id: &str,
        fresh_group: bool,
    ) -> Result<Option<u64>, String> {
        let client = self.connected_client()?;
        let mut options = SendOptions::default().with_message_id(id);
        if fresh_group {
            options = options.with_group_metadata_freshness(whatsapp_rust::Freshness::Refresh);
        }
        let acks = self.ack_waiters();
        let rx = acks.register(id);
        if let Err(e) = client
            .send_message_with_options(to.clone(), message.clone(), options)
            .await
        {
            acks.forget(id);
            return Err(format!("sending to {to} failed: {e}"));
        }
        let ack = futures_lite::future::or(async { rx.recv().await.ok() }, async {
            async_io::Timer::after(ACK_WAIT).await;
            None
        })
        .await;
        acks.forget(id);
        match ack {
            Some(Ack { error: None, at_ms }) => Ok(at_ms),
            Some(Ack {
                error: Some(code), ..
            }) => Err(format!(
                "WhatsApp refused message {id} to {to} (error {code})"
            )),
            None => Err(format!(
                "WhatsApp did not acknowledge message {id} to {to} within {} s; it may not have \
                 been delivered (retrying with the same id cannot deliver it twice)",
                ACK_WAIT.as_secs()
            )),
        }
    }

    /// The chat JID our message is stored under: a LID with a known phone number is stored
    /// under the phone JID; anything else as given (without device).
    async fn stored_chat_jid(&self, to: &Jid) -> String {
        let chat = to.to_non_ad_string();
        if !to.is_lid() {
            return chat;
        }
        let lid = chat.clone();
        self.store()
            .read(move |txn| crate::store::queries::pn_for_lid(txn, &lid))
            .await
            .ok()
            .flatten()
            .unwrap_or(chat)
    }

    /// Sends `text` to `to` (a full JID) with message id `id`, quoting `quote` if given; waits
    /// for the server's ack, then stores the message (fromMe, same id) and commits it before
    /// returning. See the interface notes in `/tmp/briefs/interface.md`.
    pub async fn send_text(
        &self,
        to: &str,
        text: &str,
        id: &str,
        quote: Option<&Quote>,
    ) -> Result<Sent, String> {
        if id.is_empty() {
            return Err("a message id is needed".into());
        }
        let to_jid = parse_jid(to)?;
        let message = text_message(text, quote);
        let acked_at = self.send_acked(&to_jid, &message, id).await?;
        let timestamp_ms = acked_at.unwrap_or_else(|| now_ms().max(0) as u64);
        let chat_jid = self.stored_chat_jid(&to_jid).await;
        let sender = self.own_account_jid().unwrap_or_default();
        let row = NewMessage {
            chat_jid: chat_jid.clone(),
            id: id.to_string(),
            sender,
            from_me: true,
            timestamp_ms,
            body: text.to_string(),
            kind: if quote.is_some() {
                "extendedTextMessage".into()
            } else {
                "conversation".into()
            },
            has_media: false,
            quoted_id: quote.map(|q| q.id.clone()),
            push_name: None,
            media: None,
        };
        self.store()
            .write(move |txn| writes::put_message(txn, &row).map(|_| ()))
            .await
            .map_err(|e| format!("message {id} was sent, but storing it failed: {e}"))?;
        Ok(Sent {
            id: id.to_string(),
            chat_jid,
            timestamp_ms,
        })
    }

    /// Reacts to message `target_id` in `chat` (`target_sender`: the author's JID in groups,
    /// `None` in 1:1 chats; `target_from_me` when we wrote it). An empty `emoji` removes our
    /// reaction. Stores the reaction.
    pub async fn send_reaction(
        &self,
        chat: &str,
        target_id: &str,
        target_sender: Option<&str>,
        target_from_me: bool,
        emoji: &str,
    ) -> Result<Sent, String> {
        let chat_jid = parse_jid(chat)?;
        let id = self.new_message_id();
        let message = reaction_message(
            &chat_jid.to_non_ad_string(),
            target_id,
            target_sender,
            target_from_me,
            emoji,
            now_ms(),
        );
        let acked_at = self.send_acked(&chat_jid, &message, &id).await?;
        let timestamp_ms = acked_at.unwrap_or_else(|| now_ms().max(0) as u64);
        let stored_chat = self.stored_chat_jid(&chat_jid).await;
        let reactor = self.own_account_jid().unwrap_or_default();
        let (chat_key, target, emoji_owned) = (
            stored_chat.clone(),
            target_id.to_string(),
            emoji.to_string(),
        );
        let raw_chat = chat_jid.to_non_ad_string();
        self.store()
            .write(move |txn| {
                if !writes::put_reaction(txn, &chat_key, &target, &reactor, &emoji_owned)? {
                    writes::put_reaction(txn, &raw_chat, &target, &reactor, &emoji_owned)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| format!("the reaction was sent, but storing it failed: {e}"))?;
        Ok(Sent {
            id,
            chat_jid: stored_chat,
            timestamp_ms,
        })
    }

    /// Sends read receipts for `messages` (id, sender JID for group messages / `None` in 1:1)
    /// of `chat`. Does not touch the store's read state.
    pub async fn mark_read(
        &self,
        chat: &str,
        messages: &[(String, Option<String>)],
    ) -> Result<(), String> {
        let chat_jid = parse_jid(chat)?;
        let client = self.connected_client()?;
        // One receipt per sender (WhatsApp addresses group receipts to the author).
        let mut by_sender: Vec<(Option<String>, Vec<&str>)> = Vec::new();
        for (id, sender) in messages {
            match by_sender.iter_mut().find(|(s, _)| s == sender) {
                Some((_, ids)) => ids.push(id),
                None => by_sender.push((sender.clone(), vec![id])),
            }
        }
        for (sender, ids) in by_sender {
            let sender_jid = sender.as_deref().map(parse_jid).transpose()?;
            client
                .mark_as_read(&chat_jid, sender_jid.as_ref(), &ids)
                .await
                .map_err(|e| format!("sending read receipts to {chat} failed: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_a_conversation() {
        let m = text_message("hello", None);
        assert_eq!(m.conversation.as_deref(), Some("hello"));
        assert!(m.extended_text_message.as_option().is_none());
    }

    #[test]
    fn a_reply_carries_the_quote() {
        let q = Quote {
            id: "3EB0QUOTED".into(),
            sender_jid: "15550000002:3@s.whatsapp.net".into(),
            from_me: false,
            text: "the original".into(),
        };
        let m = text_message("the answer", Some(&q));
        assert!(m.conversation.is_none());
        let ext = m.extended_text_message.as_option().unwrap();
        assert_eq!(ext.text.as_deref(), Some("the answer"));
        let ctx = ext.context_info.as_option().unwrap();
        assert_eq!(ctx.stanza_id.as_deref(), Some("3EB0QUOTED"));
        assert_eq!(
            ctx.participant.as_deref(),
            Some("15550000002@s.whatsapp.net")
        );
        assert_eq!(
            ctx.quoted_message
                .as_option()
                .unwrap()
                .conversation
                .as_deref(),
            Some("the original")
        );
    }

    #[test]
    fn a_reaction_keys_its_target() {
        let m = reaction_message(
            "123@g.us",
            "3EB0T",
            Some("15550000002@s.whatsapp.net"),
            false,
            "👍",
            1_700_000_000_000,
        );
        let r = m.reaction_message.as_option().unwrap();
        assert_eq!(r.text.as_deref(), Some("👍"));
        let key = r.key.as_option().unwrap();
        assert_eq!(key.remote_jid.as_deref(), Some("123@g.us"));
        assert_eq!(key.id.as_deref(), Some("3EB0T"));
        assert_eq!(key.from_me, Some(false));
        assert_eq!(
            key.participant.as_deref(),
            Some("15550000002@s.whatsapp.net")
        );
    }

    #[test]
    fn acks_reach_their_waiter_only() {
        use whatsapp_rust::wacore::chrono::DateTime;
        let waiters = AckWaiters::default();
        let rx = waiters.register("3EB0A");
        // A receipt's ack under the same id is not the message's.
        waiters.resolve(
            &ServerAck::builder()
                .id("3EB0A".into())
                .class("receipt".into())
                .build(),
        );
        assert!(rx.try_recv().is_err());
        waiters.resolve(
            &ServerAck::builder()
                .id("3EB0A".into())
                .class("message".into())
                .maybe_timestamp(DateTime::from_timestamp(1_700_000_000, 0))
                .build(),
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            Ack {
                error: None,
                at_ms: Some(1_700_000_000_000)
            }
        );
        let rx = waiters.register("3EB0B");
        waiters.resolve(
            &ServerAck::builder()
                .id("3EB0B".into())
                .error("403".into())
                .build(),
        );
        assert_eq!(rx.try_recv().unwrap().error.as_deref(), Some("403"));
        assert!(is_forbidden("WhatsApp refused message X (error 403)"));
        assert!(!is_forbidden("error 479"));
    }

    #[test]
    fn account_of_drops_the_device() {
        assert_eq!(
            account_of("15550000001:7@s.whatsapp.net"),
            "15550000001@s.whatsapp.net"
        );
        assert_eq!(account_of("100000000000001@lid"), "100000000000001@lid");
        assert_eq!(account_of("123-456@g.us"), "123-456@g.us");
    }
}
