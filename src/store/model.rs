//! The stored rows and their encodings.
//!
//! Owns: what each table's value holds, and `encode`/`decode` through `codec`. New fields go at
//! the end of a row, so older rows still decode (with defaults). Must not: do I/O.
//!
//! Timestamps are epoch milliseconds everywhere.

use super::StoreError;
use super::codec::{Dec, Enc};

const V1: u8 = 1;

/// A message's position: `(timestamp_ms << 20) | seq`. Ordering docs orders messages by time, so
/// a chat's timeline and the search postings are sorted newest-last by key.
pub type Doc = u64;
pub const DOC_SEQ_BITS: u32 = 20;

pub fn doc_time(doc: Doc) -> u64 {
    doc >> DOC_SEQ_BITS
}

/// The smallest doc at time `ts_ms` (for range bounds).
pub fn doc_floor(ts_ms: u64) -> Doc {
    ts_ms.min(u64::MAX >> DOC_SEQ_BITS) << DOC_SEQ_BITS
}

/// Message flags. Rows written before the delivery flags existed have none of them set, so
/// they read as [`Delivery::Sent`].
pub const FLAG_EDITED: u64 = 1;
pub const FLAG_REVOKED: u64 = 2;
/// Our message reached a device of the recipient (or of a group member).
pub const FLAG_DELIVERED: u64 = 4;
/// Our message was read. Always set together with [`FLAG_DELIVERED`].
pub const FLAG_READ: u64 = 8;
/// Our voice note or video was played. Always set with [`FLAG_READ`] and [`FLAG_DELIVERED`].
pub const FLAG_PLAYED: u64 = 16;

/// How far one of our own messages got, from the receipts WhatsApp sent back. It only ever
/// rises: each state's flags include every lower state's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Delivery {
    /// Stored after the server acknowledged it; no receipt yet.
    #[default]
    Sent,
    Delivered,
    Read,
    Played,
}

impl Delivery {
    /// Every state, lowest first.
    pub const ALL: [Delivery; 4] = [
        Delivery::Sent,
        Delivery::Delivered,
        Delivery::Read,
        Delivery::Played,
    ];

    /// The flags that mark this state (cumulative).
    pub fn flags(self) -> u64 {
        match self {
            Delivery::Sent => 0,
            Delivery::Delivered => FLAG_DELIVERED,
            Delivery::Read => FLAG_DELIVERED | FLAG_READ,
            Delivery::Played => FLAG_DELIVERED | FLAG_READ | FLAG_PLAYED,
        }
    }

    /// The state a message's flags record (the highest flag set wins).
    pub fn of_flags(flags: u64) -> Delivery {
        if flags & FLAG_PLAYED != 0 {
            Delivery::Played
        } else if flags & FLAG_READ != 0 {
            Delivery::Read
        } else if flags & FLAG_DELIVERED != 0 {
            Delivery::Delivered
        } else {
            Delivery::Sent
        }
    }

    /// `sent`, `delivered`, `read` or `played` (the message view's `status`, the backup's key).
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Sent => "sent",
            Delivery::Delivered => "delivered",
            Delivery::Read => "read",
            Delivery::Played => "played",
        }
    }

    pub fn parse(s: &str) -> Option<Delivery> {
        Delivery::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageRow {
    /// The chat's number (`CHAT_NUMBERS`).
    pub chat_no: u32,
    /// WhatsApp's message id (the key id).
    pub id: String,
    /// Who sent it: a JID, or the own JID for our messages.
    pub sender: String,
    pub from_me: bool,
    pub body: String,
    /// The message type (`conversation`, `imageMessage`, `reactionMessage`, …).
    pub kind: String,
    pub has_media: bool,
    pub flags: u64,
    /// The id of the message this one quotes.
    pub quoted_id: Option<String>,
    /// The sender's push name when the message arrived.
    pub push_name: Option<String>,
}

impl MessageRow {
    pub fn encode(&self) -> Vec<u8> {
        Enc::new(V1)
            .u64(self.chat_no as u64)
            .str(&self.id)
            .str(&self.sender)
            .bool(self.from_me)
            .str(&self.body)
            .str(&self.kind)
            .bool(self.has_media)
            .u64(self.flags)
            .opt_str(self.quoted_id.as_deref())
            .opt_str(self.push_name.as_deref())
            .finish()
    }
    pub fn decode(bytes: &[u8]) -> Result<MessageRow, StoreError> {
        let mut d = Dec::new(bytes)?;
        Ok(MessageRow {
            chat_no: d.u32()?,
            id: d.str()?,
            sender: d.str()?,
            from_me: d.bool()?,
            body: d.str()?,
            kind: d.str()?,
            has_media: d.bool()?,
            flags: d.u64()?,
            quoted_id: d.opt_str()?,
            push_name: d.opt_str()?,
        })
    }
    pub fn is_revoked(&self) -> bool {
        self.flags & FLAG_REVOKED != 0
    }
    /// How far the message got (meaningful for our own messages; others' read as `Sent`).
    pub fn delivery(&self) -> Delivery {
        Delivery::of_flags(self.flags)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatRow {
    /// A name WhatsApp gave the chat (history sync, group subject). Never reset by messages.
    pub name: Option<String>,
    pub is_group: bool,
    pub unread: u32,
    /// Last activity (ms): the newest message, or a conversation timestamp from history sync.
    pub ts: u64,
    /// The newest message (0 = none).
    pub last_doc: Doc,
    /// Messages up to this doc are read.
    pub read_upto: Doc,
    pub archived: bool,
    pub pinned: bool,
    /// Muted until (ms); 0 = not muted.
    pub muted_until: u64,
}

impl ChatRow {
    pub fn encode(&self) -> Vec<u8> {
        Enc::new(V1)
            .opt_str(self.name.as_deref())
            .bool(self.is_group)
            .u64(self.unread as u64)
            .u64(self.ts)
            .u64(self.last_doc)
            .u64(self.read_upto)
            .bool(self.archived)
            .bool(self.pinned)
            .u64(self.muted_until)
            .finish()
    }
    pub fn decode(bytes: &[u8]) -> Result<ChatRow, StoreError> {
        let mut d = Dec::new(bytes)?;
        Ok(ChatRow {
            name: d.opt_str()?,
            is_group: d.bool()?,
            unread: d.u32()?,
            ts: d.u64()?,
            last_doc: d.u64()?,
            read_upto: d.u64()?,
            archived: d.bool()?,
            pinned: d.bool()?,
            muted_until: d.u64()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactRow {
    /// The name in the address book (or the verified business name).
    pub name: Option<String>,
    /// The name the person set for themselves.
    pub pushname: Option<String>,
    /// Phone digits, when known.
    pub number: Option<String>,
    pub is_my_contact: bool,
    pub updated_at: u64,
}

impl ContactRow {
    pub fn encode(&self) -> Vec<u8> {
        Enc::new(V1)
            .opt_str(self.name.as_deref())
            .opt_str(self.pushname.as_deref())
            .opt_str(self.number.as_deref())
            .bool(self.is_my_contact)
            .u64(self.updated_at)
            .finish()
    }
    pub fn decode(bytes: &[u8]) -> Result<ContactRow, StoreError> {
        let mut d = Dec::new(bytes)?;
        Ok(ContactRow {
            name: d.opt_str()?,
            pushname: d.opt_str()?,
            number: d.opt_str()?,
            is_my_contact: d.bool()?,
            updated_at: d.u64()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRow {
    pub subject: Option<String>,
    pub owner: Option<String>,
    pub subject_owner: Option<String>,
    pub subject_time: u64,
    pub desc: Option<String>,
    pub creation: u64,
    pub size: u64,
    pub announce: bool,
    pub restrict: bool,
    pub updated_at: u64,
}

impl GroupRow {
    pub fn encode(&self) -> Vec<u8> {
        Enc::new(V1)
            .opt_str(self.subject.as_deref())
            .opt_str(self.owner.as_deref())
            .opt_str(self.subject_owner.as_deref())
            .u64(self.subject_time)
            .opt_str(self.desc.as_deref())
            .u64(self.creation)
            .u64(self.size)
            .bool(self.announce)
            .bool(self.restrict)
            .u64(self.updated_at)
            .finish()
    }
    pub fn decode(bytes: &[u8]) -> Result<GroupRow, StoreError> {
        let mut d = Dec::new(bytes)?;
        Ok(GroupRow {
            subject: d.opt_str()?,
            owner: d.opt_str()?,
            subject_owner: d.opt_str()?,
            subject_time: d.u64()?,
            desc: d.opt_str()?,
            creation: d.u64()?,
            size: d.u64()?,
            announce: d.bool()?,
            restrict: d.bool()?,
            updated_at: d.u64()?,
        })
    }
}

/// What is needed to download a message's media later, and where a copy was saved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaRef {
    /// `image`, `video`, `audio`, `document` or `sticker`.
    pub kind: String,
    pub mimetype: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    pub direct_path: Option<String>,
    pub url: Option<String>,
    pub media_key: Option<Vec<u8>>,
    pub file_sha256: Option<Vec<u8>>,
    pub file_enc_sha256: Option<Vec<u8>>,
    /// A downloaded copy in the media dir (file name only).
    pub local_file: Option<String>,
    /// Voice note (push-to-talk).
    pub ptt: bool,
}

impl MediaRef {
    pub fn encode(&self) -> Vec<u8> {
        Enc::new(V1)
            .str(&self.kind)
            .opt_str(self.mimetype.as_deref())
            .opt_str(self.filename.as_deref())
            .u64(self.size)
            .opt_str(self.direct_path.as_deref())
            .opt_str(self.url.as_deref())
            .opt_bytes(self.media_key.as_deref())
            .opt_bytes(self.file_sha256.as_deref())
            .opt_bytes(self.file_enc_sha256.as_deref())
            .opt_str(self.local_file.as_deref())
            .bool(self.ptt)
            .finish()
    }
    pub fn decode(bytes: &[u8]) -> Result<MediaRef, StoreError> {
        let mut d = Dec::new(bytes)?;
        Ok(MediaRef {
            kind: d.str()?,
            mimetype: d.opt_str()?,
            filename: d.opt_str()?,
            size: d.u64()?,
            direct_path: d.opt_str()?,
            url: d.opt_str()?,
            media_key: d.opt_bytes()?,
            file_sha256: d.opt_bytes()?,
            file_enc_sha256: d.opt_bytes()?,
            local_file: d.opt_str()?,
            ptt: d.bool()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let m = MessageRow {
            chat_no: 7,
            id: "ABC".into(),
            sender: "1@s.whatsapp.net".into(),
            from_me: true,
            body: "héllo".into(),
            kind: "conversation".into(),
            has_media: false,
            flags: FLAG_EDITED,
            quoted_id: Some("Q".into()),
            push_name: None,
        };
        assert_eq!(MessageRow::decode(&m.encode()).unwrap(), m);
        let c = ChatRow {
            name: Some("x".into()),
            is_group: true,
            unread: 3,
            ts: 5,
            last_doc: 9,
            ..ChatRow::default()
        };
        assert_eq!(ChatRow::decode(&c.encode()).unwrap(), c);
        let k = ContactRow {
            name: None,
            pushname: Some("p".into()),
            number: Some("1".into()),
            is_my_contact: true,
            updated_at: 2,
        };
        assert_eq!(ContactRow::decode(&k.encode()).unwrap(), k);
        let g = GroupRow {
            subject: Some("s".into()),
            size: 4,
            ..GroupRow::default()
        };
        assert_eq!(GroupRow::decode(&g.encode()).unwrap(), g);
        let r = MediaRef {
            kind: "image".into(),
            media_key: Some(vec![1, 2]),
            ..MediaRef::default()
        };
        assert_eq!(MediaRef::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn delivery_states_are_cumulative_and_old_flags_read_as_sent() {
        for d in Delivery::ALL {
            assert_eq!(Delivery::of_flags(d.flags()), d);
            assert_eq!(Delivery::parse(d.as_str()), Some(d));
            // Edit and revoke flags do not change the state.
            assert_eq!(
                Delivery::of_flags(d.flags() | FLAG_EDITED | FLAG_REVOKED),
                d
            );
            for lower in Delivery::ALL.into_iter().filter(|l| *l <= d) {
                assert_eq!(
                    d.flags() & lower.flags(),
                    lower.flags(),
                    "{d:?} ⊇ {lower:?}"
                );
            }
        }
        // A row written before the delivery flags existed.
        let old = MessageRow {
            from_me: true,
            flags: FLAG_EDITED,
            ..MessageRow::default()
        };
        let decoded = MessageRow::decode(&old.encode()).unwrap();
        assert_eq!(decoded.delivery(), Delivery::Sent);
        assert_eq!(Delivery::parse("seen"), None);
    }

    #[test]
    fn docs_order_by_time() {
        let a = doc_floor(1_700_000_000_000) | 5;
        let b = doc_floor(1_700_000_000_001);
        assert!(a < b);
        assert_eq!(doc_time(a), 1_700_000_000_000);
    }
}
