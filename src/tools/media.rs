//! Media tools: `send_media`, `download_media`, `stage_media`.
//!
//! Owns: sending files, fetching a stored message's media, and staging files in the media
//! directory. Must not: serve `/media` over HTTP (that is the http module) or read files outside
//! the media directory. The media store and the WhatsApp engine are not built yet, so every tool
//! here is a stub that says so.

use super::{Annotations, Param, Tool};

pub fn tools() -> Vec<Tool> {
    vec![
        Tool {
            sends: true,
            ..Tool::new(
                "send_media",
                "Send an image, video, audio file or document to a person or group. Give the file \
                 in one of three ways (the first one present wins): media_path (a file in the \
                 server's media directory, such as saved_path from stage_media), media_url (the \
                 server downloads it) or media_content (base64, with mime_type). Images and videos \
                 are sent with the caption, audio as an audio file or, with as_audio_message, as a \
                 voice note, anything else as a document. Returns {success, message, messageId, \
                 timestamp (epoch ms), filePathUsed?, deduplicated, idempotencyKey}.",
                vec![
                    Param::string(
                        "recipient_jid",
                        "JID of the person (...@s.whatsapp.net) or group (...@g.us) to send to, \
                         e.g. 447700900123@s.whatsapp.net.",
                    )
                    .required(),
                    Param::string(
                        "media_path",
                        "Absolute path of a file inside the server's media directory, such as the \
                         saved_path that stage_media returns. Files elsewhere are refused.",
                    ),
                    Param::uri(
                        "media_url",
                        "http(s) URL the server downloads the file from (public addresses only; \
                         time and size are limited).",
                    ),
                    Param::string(
                        "media_content",
                        "The file's content, base64-encoded. Needs mime_type.",
                    ),
                    Param::string(
                        "mime_type",
                        "MIME type of media_content, e.g. image/jpeg or application/pdf. Required \
                         with media_content.",
                    ),
                    Param::string(
                        "filename",
                        "File name the recipient sees for a document, e.g. report.pdf. Recommended \
                         with media_content.",
                    ),
                    Param::string(
                        "caption",
                        "Text shown under the image, video or document (audio has none).",
                    ),
                    Param::boolean(
                        "as_audio_message",
                        false,
                        "Send audio as a voice note instead of an audio file; it is converted to \
                         Ogg/Opus first when needed.",
                    ),
                    Param::idempotency_key(
                        "Optional key of 1 to 200 characters. Sending again with the same key \
                         returns the first call's result instead of sending the file a second \
                         time.",
                    ),
                    Param::boolean(
                        "include_full_data",
                        false,
                        "Also return the sent file as base64 (mediaData, with mimeType).",
                    ),
                ],
                Annotations {
                    read_only: false,
                    destructive: Some(false),
                    idempotent: true,
                    open_world: true,
                },
                crate::not_yet!(
                    "send_media",
                    "a linked WhatsApp account (the WhatsApp engine is not built yet)"
                ),
            )
        },
        Tool::new(
            "download_media",
            "Get the media (image, video, audio, document or sticker) of a stored message. Returns \
             a JSON text {filename, mimetype, filesize}; with save_to_disk it adds {savedPath, \
             savedFilename, url (/media/<file>), publicUrl?}. With include_full_data the content \
             follows as an image or audio block, or as base64 text for other files. Old media may \
             no longer be available from WhatsApp unless it was downloaded before.",
            vec![
                Param::string(
                    "message_id",
                    "Id of the message that carries the media: \"<chat jid>:<message id>\", as \
                     list_messages returns it.",
                )
                .required(),
                Param::boolean(
                    "include_full_data",
                    false,
                    "Also return the content: images as an image block, audio as an audio block, \
                     other files as base64 text.",
                ),
                Param::boolean(
                    "save_to_disk",
                    false,
                    "Keep the file in the server's media directory and return its path and a \
                     /media URL.",
                ),
            ],
            Annotations::READ_LOCAL,
            crate::not_yet!("download_media", "the media store (not built yet)"),
        ),
        Tool::new(
            "stage_media",
            "Save a file in the server's media directory without sending it, so that it can be \
             sent to several recipients (send_media with media_path set to the returned \
             saved_path) without uploading it each time. Give either media_url (the server \
             downloads it) or media_content (base64, with mime_type). Returns {success, \
             saved_path, filename, url (/media/<filename>), size (bytes), mimetype}.",
            vec![
                Param::uri(
                    "media_url",
                    "http(s) URL to download the file from (public addresses only; time and size \
                     are limited).",
                ),
                Param::string(
                    "media_content",
                    "The file's content, base64-encoded. Needs mime_type.",
                ),
                Param::string(
                    "mime_type",
                    "MIME type of media_content, e.g. application/pdf. Required with \
                     media_content.",
                ),
                Param::string(
                    "filename",
                    "Name to save the file under, with its extension, e.g. invoice.pdf; a \
                     timestamp is added to keep names unique.",
                ),
            ],
            Annotations {
                read_only: false,
                destructive: Some(false),
                idempotent: false,
                open_world: true,
            },
            crate::not_yet!("stage_media", "the media store (not built yet)"),
        ),
    ]
}
