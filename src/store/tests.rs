//! Store tests on real redb files in temp dirs: write rules and read queries together.

use super::model::{Delivery, FLAG_DELIVERED, FLAG_EDITED, FLAG_PLAYED, FLAG_READ, MediaRef};
use super::queries;
use super::writes::{self, ChatUpdate, ContactUpdate, GroupUpdate, NewMessage, ReceiptApplied};
use super::{Context, Store};

pub(crate) struct TempStore {
    pub store: Store,
    dir: std::path::PathBuf,
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn temp_store() -> TempStore {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("wams-store-{name}"));
    let store = Store::open(&dir.join("store.redb"), 4).unwrap();
    TempStore { store, dir }
}

pub(crate) fn msg(chat: &str, id: &str, ts: u64, from_me: bool, body: &str) -> NewMessage {
    NewMessage {
        chat_jid: chat.into(),
        id: id.into(),
        sender: if from_me {
            "me@s.whatsapp.net".into()
        } else {
            chat.into()
        },
        from_me,
        timestamp_ms: ts,
        body: body.into(),
        kind: "conversation".into(),
        ..NewMessage::default()
    }
}

const A: &str = "111@s.whatsapp.net";
const B: &str = "222@s.whatsapp.net";

#[test]
fn messages_in_any_order_keep_the_newest_as_last_and_count_unread() {
    let t = temp_store();
    let live = msg(A, "L1", 2_000, false, "live");
    let old = msg(A, "H1", 1_000, false, "history");
    t.store
        .write_blocking(move |txn| writes::put_message(txn, &live).map(|_| ()))
        .unwrap();
    t.store
        .write_blocking(move |txn| writes::put_message(txn, &old).map(|_| ()))
        .unwrap();
    let chat = t
        .store
        .read_blocking(|r| queries::chat(r, A))
        .unwrap()
        .unwrap();
    let last = t
        .store
        .read_blocking(|r| queries::message_at(r, chat.last_doc))
        .unwrap()
        .unwrap();
    assert_eq!(last.row.id, "L1");
    assert_eq!(chat.ts, 2_000);
    assert_eq!(chat.unread, 2);
    // The same message again is not counted twice.
    let again = msg(A, "L1", 2_000, false, "live");
    t.store
        .write_blocking(move |txn| writes::put_message(txn, &again).map(|_| ()))
        .unwrap();
    assert_eq!(
        t.store
            .read_blocking(|r| queries::chat(r, A))
            .unwrap()
            .unwrap()
            .unread,
        2
    );
    // Reading returns the unread ids and resets the count; an older message stays read.
    let ids = smol::block_on(async {
        let (tx, rx) = async_channel::bounded(1);
        t.store
            .write(move |txn| {
                let ids = writes::mark_chat_read(txn, A)?;
                let _ = tx.try_send(ids);
                Ok(())
            })
            .await
            .unwrap();
        rx.recv().await.unwrap()
    });
    assert_eq!(ids, vec!["H1".to_string(), "L1".to_string()]);
    let older = msg(A, "H0", 500, false, "older");
    t.store
        .write_blocking(move |txn| writes::put_message(txn, &older).map(|_| ()))
        .unwrap();
    assert_eq!(
        t.store
            .read_blocking(|r| queries::chat(r, A))
            .unwrap()
            .unwrap()
            .unread,
        0
    );
    let newer = msg(A, "L2", 3_000, false, "newer");
    t.store
        .write_blocking(move |txn| writes::put_message(txn, &newer).map(|_| ()))
        .unwrap();
    assert_eq!(
        t.store
            .read_blocking(|r| queries::chat(r, A))
            .unwrap()
            .unwrap()
            .unread,
        1
    );
}

#[test]
fn chats_list_newest_first_and_names_survive_messages() {
    let t = temp_store();
    t.store
        .write_blocking(|txn| {
            writes::update_chat(
                txn,
                &ChatUpdate {
                    jid: B.into(),
                    name: Some("Bob".into()),
                    ..ChatUpdate::default()
                },
            )?;
            writes::put_message(txn, &msg(A, "1", 1_000, false, "a"))?;
            writes::put_message(txn, &msg(B, "2", 5_000, false, "b"))?;
            writes::put_message(txn, &msg(A, "3", 9_000, true, "c"))?;
            Ok(())
        })
        .unwrap();
    let mut order = Vec::new();
    t.store
        .read_blocking(|r| {
            queries::chats_newest(r, &mut |c| {
                order.push((c.jid, c.row.name));
                Ok(true)
            })
        })
        .unwrap();
    assert_eq!(
        order,
        vec![
            (A.to_string(), None),
            (B.to_string(), Some("Bob".to_string()))
        ]
    );
    let a = t
        .store
        .read_blocking(|r| queries::chat(r, A))
        .unwrap()
        .unwrap();
    assert_eq!(a.unread, 0, "our own message marks the chat read");
}

#[test]
fn stubs_upgrade_edits_and_revokes() {
    let t = temp_store();
    let mut stub = msg(A, "X", 1_000, false, "");
    stub.kind = "unknown".into();
    let full = NewMessage {
        media: Some(MediaRef {
            kind: "image".into(),
            ..MediaRef::default()
        }),
        ..msg(A, "X", 1_000, false, "caption")
    };
    t.store
        .write_blocking(move |txn| writes::put_message(txn, &stub).map(|_| ()))
        .unwrap();
    t.store
        .write_blocking(move |txn| writes::put_message(txn, &full).map(|_| ()))
        .unwrap();
    let m = t
        .store
        .read_blocking(|r| queries::message(r, A, "X"))
        .unwrap()
        .unwrap();
    assert_eq!(m.row.body, "caption");
    assert_eq!(m.row.kind, "conversation");
    assert!(m.row.has_media);
    assert!(
        t.store
            .read_blocking(move |r| queries::media(r, m.doc))
            .unwrap()
            .is_some()
    );

    t.store
        .write_blocking(|txn| writes::edit_message(txn, A, "X", "edited").map(|_| ()))
        .unwrap();
    let m = t
        .store
        .read_blocking(|r| queries::message(r, A, "X"))
        .unwrap()
        .unwrap();
    assert_eq!(m.row.body, "edited");
    t.store
        .write_blocking(|txn| writes::revoke_message(txn, A, "X").map(|_| ()))
        .unwrap();
    let m = t
        .store
        .read_blocking(|r| queries::message(r, A, "X"))
        .unwrap()
        .unwrap();
    assert!(m.row.is_revoked() && m.row.body.is_empty());
    t.store
        .write_blocking(|txn| writes::delete_message(txn, A, "X").map(|_| ()))
        .unwrap();
    assert!(
        t.store
            .read_blocking(|r| queries::message(r, A, "X"))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        t.store
            .read_blocking(|r| queries::chat(r, A))
            .unwrap()
            .unwrap()
            .last_doc,
        0
    );
}

#[test]
fn message_pages_and_public_ids() {
    let t = temp_store();
    t.store
        .write_blocking(|txn| {
            for i in 0..10u64 {
                writes::put_message(txn, &msg(A, &format!("M{i}"), 1_000 + i, false, "x"))?;
            }
            Ok(())
        })
        .unwrap();
    let newest = t
        .store
        .read_blocking(|r| queries::messages_before(r, A, None, 3))
        .unwrap();
    assert_eq!(
        newest.iter().map(|m| m.row.id.as_str()).collect::<Vec<_>>(),
        vec!["M9", "M8", "M7"]
    );
    let older = t
        .store
        .read_blocking(move |r| queries::messages_before(r, A, Some(newest[2].doc), 2))
        .unwrap();
    assert_eq!(
        older.iter().map(|m| m.row.id.as_str()).collect::<Vec<_>>(),
        vec!["M6", "M5"]
    );
    let after = t
        .store
        .read_blocking(move |r| queries::messages_after(r, A, older[1].doc, 2))
        .unwrap();
    assert_eq!(
        after.iter().map(|m| m.row.id.as_str()).collect::<Vec<_>>(),
        vec!["M6", "M7"]
    );
    let m = t
        .store
        .read_blocking(|r| queries::message_by_public_id(r, &format!("{A}:M4")))
        .unwrap()
        .unwrap();
    assert_eq!(m.public_id(), format!("{A}:M4"));
    assert_eq!(m.timestamp_ms(), 1_004);
    assert!(
        t.store
            .read_blocking(|r| queries::message_by_public_id(r, "garbage"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn contacts_merge_and_identities_resolve() {
    let t = temp_store();
    t.store
        .write_blocking(|txn| {
            writes::upsert_contact(
                txn,
                &ContactUpdate {
                    jid: A.into(),
                    name: Some("Ann".into()),
                    ..ContactUpdate::default()
                },
            )?;
            writes::upsert_contact(
                txn,
                &ContactUpdate {
                    jid: A.into(),
                    pushname: Some("annie".into()),
                    ..ContactUpdate::default()
                },
            )?;
            writes::put_mapping(txn, "999@lid", A)?;
            Ok(())
        })
        .unwrap();
    let c = t
        .store
        .read_blocking(|r| queries::contact(r, A))
        .unwrap()
        .unwrap();
    assert_eq!(c.name.as_deref(), Some("Ann"));
    assert_eq!(c.pushname.as_deref(), Some("annie"));
    assert_eq!(c.number.as_deref(), Some("111"));
    assert_eq!(
        t.store
            .read_blocking(|r| queries::canonical(r, "999@lid"))
            .unwrap(),
        A
    );
    assert_eq!(
        t.store
            .read_blocking(|r| queries::related_jids(r, A))
            .unwrap(),
        vec![A.to_string(), "999@lid".to_string()]
    );
    assert!(
        t.store
            .write_blocking(|txn| writes::put_mapping(txn, A, "999@lid"))
            .is_err()
    );
}

#[test]
fn groups_replace_members_and_name_their_chat() {
    let t = temp_store();
    let g = "1203-1@g.us";
    let update = GroupUpdate {
        jid: g.into(),
        subject: Some("Climbing".into()),
        participants: Some(vec![(A.into(), "admin".into()), (B.into(), String::new())]),
        ..GroupUpdate::default()
    };
    t.store
        .write_blocking(move |txn| writes::upsert_group(txn, &update))
        .unwrap();
    let shrink = GroupUpdate {
        jid: g.into(),
        participants: Some(vec![(B.into(), String::new())]),
        ..GroupUpdate::default()
    };
    t.store
        .write_blocking(move |txn| writes::upsert_group(txn, &shrink))
        .unwrap();
    let members = t
        .store
        .read_blocking(|r| queries::group_members(r, g))
        .unwrap();
    assert_eq!(members, vec![(B.to_string(), String::new())]);
    let row = t
        .store
        .read_blocking(|r| queries::group(r, g))
        .unwrap()
        .unwrap();
    assert_eq!(row.subject.as_deref(), Some("Climbing"));
    assert_eq!(row.size, 1);
    assert_eq!(
        t.store
            .read_blocking(|r| queries::chat(r, g))
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("Climbing")
    );
    assert!(
        t.store
            .write_blocking(|txn| writes::upsert_group(
                txn,
                &GroupUpdate {
                    jid: A.into(),
                    ..GroupUpdate::default()
                }
            ))
            .is_err()
    );
}

#[test]
fn group_commit_isolates_a_failing_write() {
    let t = temp_store();
    let store = t.store.clone();
    let results = smol::block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            let s = store.clone();
            tasks.push(smol::spawn(async move {
                if i == 25 {
                    s.write(|_txn| Err(super::StoreError("boom".into()))).await
                } else {
                    s.write(move |txn| {
                        writes::put_message(txn, &msg(A, &format!("G{i}"), 1_000 + i, false, "g"))
                            .map(|_| ())
                    })
                    .await
                }
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert!(results[25].is_err());
    let n = t.store.read_blocking(queries::counts).unwrap().messages;
    assert_eq!(n, 49);
}

#[test]
fn reopening_keeps_everything_and_a_second_open_is_refused() {
    let t = temp_store();
    t.store
        .write_blocking(|txn| {
            writes::put_message(txn, &msg(A, "P", 1, false, "persist")).map(|_| ())
        })
        .unwrap();
    let path = t.store.path().to_path_buf();
    assert!(matches!(
        Store::open(&path, 4),
        Err(super::OpenError::Locked(_))
    ));
    let _ = t.store.read_blocking(|r| queries::counts(r).ctx("x"));
}

fn delivery_of(t: &TempStore, chat: &'static str, id: &'static str) -> Delivery {
    t.store
        .read_blocking(move |r| queries::message(r, chat, id))
        .unwrap()
        .unwrap()
        .row
        .delivery()
}

fn receipt(t: &TempStore, chat: &'static str, ids: &[&str], state: Delivery) -> ReceiptApplied {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    let out = std::sync::Arc::new(std::sync::Mutex::new(ReceiptApplied::default()));
    let seen = out.clone();
    t.store
        .write_blocking(move |txn| {
            *seen.lock().unwrap() = writes::apply_receipt(txn, chat, &ids, state)?;
            Ok(())
        })
        .unwrap();
    *out.lock().unwrap()
}

#[test]
fn receipts_only_raise_our_messages_and_leave_text_and_search_alone() {
    let t = temp_store();
    let mut edited = msg(A, "M2", 2_000, true, "second");
    edited.kind = "extendedTextMessage".into();
    let batch = vec![
        msg(A, "M1", 1_000, true, "first receipt words"),
        edited,
        msg(A, "IN", 3_000, false, "theirs"),
    ];
    t.store
        .write_blocking(move |txn| writes::put_messages(txn, &batch).map(|_| ()))
        .unwrap();
    t.store
        .write_blocking(|txn| writes::edit_message(txn, A, "M2", "second edited").map(|_| ()))
        .unwrap();
    assert_eq!(delivery_of(&t, A, "M1"), Delivery::Sent);

    // Delivered, then read; a late delivery receipt keeps "read".
    let r = receipt(&t, A, &["M1", "M2"], Delivery::Delivered);
    assert_eq!(
        r,
        ReceiptApplied {
            known: 2,
            raised: 2
        }
    );
    assert_eq!(delivery_of(&t, A, "M1"), Delivery::Delivered);
    let r = receipt(&t, A, &["M1"], Delivery::Read);
    assert_eq!(
        r,
        ReceiptApplied {
            known: 1,
            raised: 1
        }
    );
    let r = receipt(&t, A, &["M1", "M2"], Delivery::Delivered);
    assert_eq!(
        r,
        ReceiptApplied {
            known: 2,
            raised: 0
        }
    );
    assert_eq!(delivery_of(&t, A, "M1"), Delivery::Read);
    assert_eq!(delivery_of(&t, A, "M2"), Delivery::Delivered);
    // A read receipt without a delivery receipt first still implies delivered.
    receipt(&t, A, &["M2"], Delivery::Played);
    let m2 = t
        .store
        .read_blocking(|r| queries::message(r, A, "M2"))
        .unwrap()
        .unwrap();
    assert_eq!(m2.row.delivery(), Delivery::Played);
    assert_eq!(
        m2.row.flags & (FLAG_DELIVERED | FLAG_READ | FLAG_PLAYED | FLAG_EDITED),
        FLAG_DELIVERED | FLAG_READ | FLAG_PLAYED | FLAG_EDITED,
        "the edit flag stays"
    );
    assert_eq!(m2.row.body, "second edited");
    assert_eq!(m2.row.kind, "extendedTextMessage");

    // Unknown ids, unknown chats and messages from others are ignored.
    assert_eq!(
        receipt(&t, A, &["NOPE", "IN"], Delivery::Read),
        ReceiptApplied::default()
    );
    assert_eq!(delivery_of(&t, A, "IN"), Delivery::Sent);
    assert_eq!(
        receipt(&t, B, &["M1"], Delivery::Read),
        ReceiptApplied::default()
    );
    assert!(
        t.store
            .read_blocking(|r| queries::chat(r, B))
            .unwrap()
            .is_none(),
        "a receipt creates no chat"
    );

    // The search index is untouched: the body is still found, once.
    let hits = t
        .store
        .read_blocking(|r| {
            let q = super::search::SearchQuery {
                text: "receipt words",
                after: None,
                before: None,
                limit: 10,
            };
            super::search::search(r, &q, &mut |d| {
                Ok(queries::message_at(r, d)?.map(|m| m.row.body))
            })
        })
        .unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    // And a receipt does not count as unread or move the chat.
    let chat = t
        .store
        .read_blocking(|r| queries::chat(r, A))
        .unwrap()
        .unwrap();
    assert_eq!(chat.unread, 1);
    assert_eq!(chat.ts, 3_000);
}

#[test]
fn a_group_message_counts_as_read_when_any_member_reads_it() {
    let t = temp_store();
    const G: &str = "1-2@g.us";
    let mine = msg(G, "GM", 1_000, true, "to the group");
    t.store
        .write_blocking(move |txn| writes::put_message(txn, &mine).map(|_| ()))
        .unwrap();
    // One member's delivery receipt is enough for "delivered"…
    receipt(&t, G, &["GM"], Delivery::Delivered);
    assert_eq!(delivery_of(&t, G, "GM"), Delivery::Delivered);
    // …one member's read for "read", and another member's later delivery does not lower it.
    receipt(&t, G, &["GM"], Delivery::Read);
    receipt(&t, G, &["GM"], Delivery::Delivered);
    assert_eq!(delivery_of(&t, G, "GM"), Delivery::Read);
}
