//! Auth tools: `get_qr_code`, `check_auth_status`, `logout`, `force_resync`, and the new
//! `request_pairing_code`.
//!
//! Owns: the tools that link, inspect, resync and unlink the WhatsApp account. Must not: talk to
//! WhatsApp directly or touch the store; it asks the WhatsApp engine (not built yet, so every tool
//! here is a stub that says so).

use super::{Annotations, Param, Tool};

pub fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "get_qr_code",
            "Get the QR code that links this server to a WhatsApp account (on the phone: WhatsApp \
             > Settings > Linked devices > Link a device). Returns a PNG image block plus a text \
             block holding the raw QR payload, for clients that cannot show images. The code is \
             replaced about every 20 seconds, so fetch a fresh one if scanning fails. If the \
             account is already linked, or no code is ready yet because the connection is still \
             starting, returns a text saying so instead. To link without a camera, use \
             request_pairing_code.",
            vec![],
            Annotations::READ_LOCAL,
            crate::not_yet!(
                "get_qr_code",
                "the WhatsApp engine to produce a QR code (not built yet)"
            ),
        ),
        Tool::new(
            "check_auth_status",
            "Report whether this server is linked to a WhatsApp account and connected. Returns a \
             text with a line `state: <name>`, where name is one of unlinked, waiting_for_qr, \
             pairing, connecting, connected, logged_out or banned, and a hint on what to do next. \
             Call it before sending, or after linking to confirm that linking worked.",
            vec![],
            Annotations::READ_LOCAL,
            crate::not_yet!("check_auth_status", "the WhatsApp engine (not built yet)"),
        ),
        Tool::new(
            "logout",
            "Unlink this server from the WhatsApp account: the linked device is removed on \
             WhatsApp's side too, and the local keys are deleted. Stored chats and messages are \
             kept. Afterwards, link again with get_qr_code or request_pairing_code. Returns a \
             confirmation text, or a note that no account was linked. Pass idempotency_key to make \
             a retry safe.",
            vec![Param::idempotency_key(
                "Optional key of 1 to 200 characters. Calling logout again with the same key \
                 returns the first call's result instead of logging out a second time.",
            )],
            Annotations {
                read_only: false,
                destructive: Some(true),
                idempotent: true,
                open_world: false,
            },
            crate::not_yet!(
                "logout",
                "a linked WhatsApp account (the WhatsApp engine is not built yet)"
            ),
        ),
        Tool::new(
            "force_resync",
            "Throw away the locally held WhatsApp app state (chat list, contact names, archive and \
             mute flags) and reconnect, so that WhatsApp sends it again in full. Use it when chats \
             or contacts look stale or missing. Stored messages are kept. Returns a text once the \
             reconnect has started; the replay continues in the background for a while.",
            vec![],
            Annotations {
                read_only: false,
                destructive: Some(true),
                idempotent: false,
                open_world: false,
            },
            crate::not_yet!(
                "force_resync",
                "a linked WhatsApp account (the WhatsApp engine is not built yet)"
            ),
        ),
        Tool::new(
            "request_pairing_code",
            "Link a WhatsApp account by phone number instead of scanning a QR code. Returns {code, \
             expires_at}: a code to type on the phone (WhatsApp > Settings > Linked devices > Link \
             a device > Link with phone number instead) and when it expires, in epoch \
             milliseconds. Works only while no account is linked; check_auth_status then shows \
             state: pairing until the phone confirms.",
            vec![
                Param::string(
                    "phone_number",
                    "Phone number of the WhatsApp account to link, in international form with the \
                     country code, e.g. 447700900123 (a leading + and spaces are ignored).",
                )
                .required(),
            ],
            Annotations {
                read_only: false,
                destructive: Some(false),
                idempotent: false,
                open_world: true,
            },
            crate::not_yet!(
                "request_pairing_code",
                "the WhatsApp engine (not built yet)"
            ),
        ),
    ]
}
