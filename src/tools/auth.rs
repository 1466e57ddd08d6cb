//! Auth tools: `get_qr_code`, `check_auth_status`, `logout`, `force_resync`, and the new
//! `request_pairing_code`.
//!
//! Owns: the tools that link, inspect, resync and unlink the WhatsApp account, and rendering the
//! QR payload as a PNG (qrcodegen for the matrix, the `png` crate for the encoding), and
//! `logout`'s `idempotency_key` (its answer is kept in the store's `idempotency` table for
//! `WA_IDEMPOTENCY_TTL_MS` and replayed to a repeat). Must not: talk to WhatsApp directly or
//! touch the store beyond that table; it asks the engine facade (`crate::wa::engine`), which
//! speaks plain data.

use super::{Annotations, Content, Param, Tool, ToolCall, ToolResult};
use crate::wa::engine::{Engine, EngineState, Snapshot};
use base64::Engine as _;

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
            crate::tool_fn!(get_qr_code),
        ),
        Tool::new(
            "check_auth_status",
            "Report whether this server is linked to a WhatsApp account and connected. Returns a \
             text with a line `state: <name>`, where name is one of unlinked, waiting_for_qr, \
             pairing, connecting, connected, logged_out or banned, and a hint on what to do next. \
             Call it before sending, or after linking to confirm that linking worked.",
            vec![],
            Annotations::READ_LOCAL,
            crate::tool_fn!(check_auth_status),
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
            crate::tool_fn!(logout),
        ),
        Tool::new(
            "force_resync",
            "Ask WhatsApp to send the whole app state again in full (chat list, contact names, \
             archive, pin and mute flags): every app-state collection is fetched as a fresh \
             snapshot instead of as changes. Use it when chats or contacts look stale or missing. \
             Stored messages are kept. Needs a connected account; returns a text once the resync \
             has started, and it continues in the background for a while.",
            vec![],
            Annotations {
                read_only: false,
                destructive: Some(true),
                idempotent: false,
                open_world: false,
            },
            crate::tool_fn!(force_resync),
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
            crate::tool_fn!(request_pairing_code),
        ),
    ]
}

/// Pixels per QR module in the PNG.
const QR_SCALE: usize = 8;
/// The quiet zone around the code, in modules (the standard asks for 4).
const QR_BORDER: usize = 4;

fn engine(call: &ToolCall) -> Result<&Engine, ToolResult> {
    call.env
        .engine
        .as_ref()
        .ok_or_else(|| ToolResult::error("the WhatsApp engine is not running in this process"))
}

/// What to do next in each state.
fn next_step(snap: &Snapshot) -> &'static str {
    match snap.state {
        EngineState::Unlinked => {
            "No account is linked and no QR code is ready yet; call get_qr_code again in a few \
             seconds, or link by number with request_pairing_code."
        }
        EngineState::WaitingForQr => {
            "Call get_qr_code and scan it on the phone (WhatsApp > Settings > Linked devices > \
             Link a device), or use request_pairing_code."
        }
        EngineState::Pairing => {
            "Type the pair code on the phone (Linked devices > Link a device > Link with phone \
             number instead), then call check_auth_status again."
        }
        EngineState::Connecting => {
            "The account is linked and the connection is being set up; call check_auth_status \
             again shortly."
        }
        EngineState::Connected => "Ready: the tools that talk to WhatsApp can be used.",
        EngineState::LoggedOut => {
            "WhatsApp ended the link; call get_qr_code or request_pairing_code to link again."
        }
        EngineState::Banned => "WhatsApp has banned this account; nothing can be sent or linked.",
    }
}

async fn check_auth_status(call: ToolCall) -> ToolResult {
    let engine = match engine(&call) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let snap = engine.snapshot();
    let mut text = format!("state: {}\n", snap.state.name());
    if let Some(number) = snap.own_number() {
        text.push_str(&format!("number: +{number}\n"));
    }
    if let Some(jid) = &snap.own_jid {
        text.push_str(&format!("jid: {jid}\n"));
    }
    if let Some(err) = &snap.last_error {
        text.push_str(&format!("last error: {err}\n"));
    }
    text.push_str(&format!("next: {}", next_step(&snap)));
    ToolResult::text(text)
}

async fn get_qr_code(call: ToolCall) -> ToolResult {
    let engine = match engine(&call) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let snap = engine.snapshot();
    match snap.state {
        EngineState::Connected | EngineState::Connecting => {
            return ToolResult::text(format!(
                "Already linked to +{} (state: {}); no QR code is needed. Call logout first to \
                 link another account.",
                snap.own_number().unwrap_or_else(|| "unknown".into()),
                snap.state.name()
            ));
        }
        EngineState::LoggedOut => {
            engine.relink();
            return ToolResult::text(
                "No QR code yet: WhatsApp ended the previous link (state: logged_out). A new \
                 device is being prepared; call get_qr_code again in a few seconds.",
            );
        }
        EngineState::Banned => {
            return ToolResult::error(
                "No QR code: WhatsApp has banned this account (state: banned).",
            );
        }
        _ => {}
    }
    let Some(qr) = snap.qr else {
        return ToolResult::text(format!(
            "No QR code yet (state: {}): the connection to WhatsApp is still starting{}. Call \
             get_qr_code again in a few seconds.",
            snap.state.name(),
            snap.last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        ));
    };
    let png = match qr_png(&qr) {
        Ok(p) => p,
        Err(e) => return ToolResult::error(format!("could not render the QR code: {e}")),
    };
    ToolResult {
        content: vec![
            Content::Image {
                data_base64: base64::engine::general_purpose::STANDARD.encode(png),
                mime_type: "image/png".into(),
            },
            Content::Text(qr),
        ],
        is_error: false,
    }
}

/// Renders `payload` as a black-on-white PNG (8-bit grayscale).
pub(crate) fn qr_png(payload: &str) -> Result<Vec<u8>, String> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(payload, QrCodeEcc::Medium).map_err(|e| e.to_string())?;
    let modules = qr.size() as usize + 2 * QR_BORDER;
    let side = modules * QR_SCALE;
    let mut pixels = vec![255u8; side * side];
    for y in 0..side {
        for x in 0..side {
            let mx = (x / QR_SCALE) as i32 - QR_BORDER as i32;
            let my = (y / QR_SCALE) as i32 - QR_BORDER as i32;
            if qr.get_module(mx, my) {
                pixels[y * side + x] = 0;
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

async fn request_pairing_code(call: ToolCall) -> ToolResult {
    let engine = match engine(&call) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let phone = call
        .args
        .str("phone_number")
        .unwrap_or_default()
        .to_string();
    match engine.request_pairing_code(&phone).await {
        Ok(p) => ToolResult::json(&crate::json::obj([
            ("code", crate::json::s(p.code)),
            ("expires_at", crate::json::int(p.expires_at)),
        ])),
        Err(e) => ToolResult::error(e),
    }
}

async fn force_resync(call: ToolCall) -> ToolResult {
    let engine = match engine(&call) {
        Ok(e) => e,
        Err(r) => return r,
    };
    match engine.force_resync() {
        Ok(()) => ToolResult::text(
            "Resync started: WhatsApp was asked for every app-state collection (chat list, contact \
             names, archive, pin and mute flags) again in full. It continues in the background; \
             stored messages are kept. Call list_chats again in a minute.",
        ),
        Err(e) => ToolResult::error(e),
    }
}

/// The note added when a logout answer is replayed from its idempotency record.
const REPLAYED: &str = "Replayed: this idempotency_key was already used by an earlier logout; its \
                        result is returned above and no second logout was performed.";

async fn logout(call: ToolCall) -> ToolResult {
    // A replay needs no engine: the answer comes from the store.
    let key = call.args.str("idempotency_key").map(str::to_string);
    let now = crate::store::idempotency::now_ms();
    if let Some(key) = key.clone() {
        let found = call
            .env
            .store
            .read(move |txn| crate::store::idempotency::get(txn, &key, now))
            .await;
        match found {
            Ok(Some(record)) if record.op == "logout" => {
                return ToolResult {
                    content: vec![Content::Text(record.result), Content::Text(REPLAYED.into())],
                    is_error: false,
                };
            }
            Ok(Some(record)) => {
                return ToolResult::error(format!(
                    "this idempotency_key was already used by {}; use a new key for logout",
                    record.op
                ));
            }
            Ok(None) => {}
            Err(e) => return ToolResult::error(format!("could not read the idempotency key: {e}")),
        }
    }
    let engine = match engine(&call) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let text = match engine.logout().await {
        Ok(true) => "Logged out: the device was unlinked from the WhatsApp account and the local \
                     keys were deleted; stored chats and messages are kept. Link again with \
                     get_qr_code or request_pairing_code."
            .to_string(),
        Ok(false) => format!(
            "No account was linked (state: {}); nothing to log out.",
            engine.snapshot().state.name()
        ),
        Err(e) => return ToolResult::error(e),
    };
    if let Some(key) = key {
        let record = crate::store::idempotency::Record {
            op: "logout".into(),
            fingerprint: "logout".into(),
            result: text.clone(),
            expires_at: now.saturating_add(call.env.idempotency_ttl_ms),
        };
        let stored = call
            .env
            .store
            .write(move |txn| crate::store::idempotency::put(txn, &key, &record))
            .await;
        if let Err(e) = stored {
            // The logout itself happened; say so, and that a retry is not protected.
            return ToolResult {
                content: vec![
                    Content::Text(text),
                    Content::Text(format!(
                        "Note: the idempotency_key could not be stored ({e}); a retry with it \
                         would run logout again."
                    )),
                ],
                is_error: false,
            };
        }
    }
    ToolResult::text(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn qr_png_is_a_png() {
        let png = super::qr_png("2@abc,def,ghi,jkl,1").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn qr_png_pixels_are_the_modules() {
        let payload = "2@abc,def,ghi,jkl,1";
        let qr = qrcodegen::QrCode::encode_text(payload, qrcodegen::QrCodeEcc::Medium).unwrap();
        let png = super::qr_png(payload).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let side = (qr.size() as usize + 2 * super::QR_BORDER) * super::QR_SCALE;
        assert_eq!((info.width as usize, info.height as usize), (side, side));
        for my in 0..qr.size() {
            for mx in 0..qr.size() {
                let x = (mx as usize + super::QR_BORDER) * super::QR_SCALE + super::QR_SCALE / 2;
                let y = (my as usize + super::QR_BORDER) * super::QR_SCALE + super::QR_SCALE / 2;
                let dark = buf[y * side + x] == 0;
                assert_eq!(dark, qr.get_module(mx, my), "module {mx},{my}");
            }
        }
        assert_eq!(buf[0], 255, "the quiet zone is white");
    }

    struct NoProgress;
    impl crate::tools::ProgressSink for NoProgress {
        fn report(&self, _progress: f64, _total: Option<f64>, _message: Option<&str>) {}
    }

    fn texts(reg: &crate::tools::Registry, args: &str) -> (bool, Vec<String>) {
        let args = crate::json::parse(args).unwrap();
        let r = smol::block_on(reg.call("logout", Some(&args), std::sync::Arc::new(NoProgress)))
            .unwrap();
        let texts = r
            .content
            .iter()
            .map(|c| match c {
                super::Content::Text(t) => t.clone(),
                other => panic!("not text: {other:?}"),
            })
            .collect();
        (r.is_error, texts)
    }

    #[test]
    fn logout_replays_a_stored_answer_and_ignores_an_expired_one() {
        use crate::store::idempotency::{Record, now_ms, put};
        let store = crate::store::Store::open_in_memory().unwrap();
        let live = Record {
            op: "logout".into(),
            fingerprint: "logout".into(),
            result: "Logged out: earlier".into(),
            expires_at: now_ms() + 60_000,
        };
        let expired = Record {
            expires_at: now_ms().saturating_sub(1),
            ..live.clone()
        };
        let sent = Record {
            op: "send_message".into(),
            ..live.clone()
        };
        store
            .write_blocking(move |txn| {
                put(txn, "live", &live)?;
                put(txn, "old", &expired)?;
                put(txn, "sent", &sent)
            })
            .unwrap();
        let reg = crate::tools::Registry::new(crate::tools::ToolEnv {
            read_only: false,
            auto_select_contact: false,
            store,
            engine: None,
            idempotency_ttl_ms: crate::store::idempotency::DEFAULT_TTL_MS,
            send_guard: Default::default(),
        });
        // A live record: the stored text unchanged, then the replay note; no engine is needed.
        let (err, t) = texts(&reg, r#"{"idempotency_key":"live"}"#);
        assert!(!err, "{t:?}");
        assert_eq!(t[0], "Logged out: earlier");
        assert!(t[1].starts_with("Replayed"), "{t:?}");
        // An expired record is ignored: the call goes to the engine (absent here).
        let (err, t) = texts(&reg, r#"{"idempotency_key":"old"}"#);
        assert!(err && t[0].contains("engine is not running"), "{t:?}");
        // A key used by another tool is refused.
        let (err, t) = texts(&reg, r#"{"idempotency_key":"sent"}"#);
        assert!(err && t[0].contains("send_message"), "{t:?}");
    }
}
