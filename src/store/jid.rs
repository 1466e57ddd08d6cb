//! WhatsApp addresses (JIDs) as plain strings: normalizing, classifying, phone numbers.
//!
//! Owns: the string rules of seed-behaviour §2.1 and phone-number normalization. Must not: look
//! anything up (LID↔phone merging lives in `queries`, which has the mappings).
//!
//! Forms: `<digits>@s.whatsapp.net` (phone, "PN"), `<digits>@lid` (privacy id, "LID"),
//! `<id>@g.us` (group), `status@broadcast`, `<id>@broadcast`, legacy `<x>@c.us` (→ PN).

pub const PN_SERVER: &str = "s.whatsapp.net";
pub const LID_SERVER: &str = "lid";
pub const GROUP_SERVER: &str = "g.us";
pub const STATUS_BROADCAST: &str = "status@broadcast";

/// Lower-cases the server, drops `:device` and `_agent` suffixes of the user part and maps
/// `c.us` to `s.whatsapp.net`. `None` when `raw` has no `@` or an empty user or server.
pub fn normalize(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (user, server) = raw.split_once('@')?;
    let server = server.trim().to_ascii_lowercase();
    let user = user.split(':').next().unwrap_or("");
    let user = user.split('_').next().unwrap_or("");
    if user.is_empty() || server.is_empty() || server.contains('@') {
        return None;
    }
    let server = if server == "c.us" {
        PN_SERVER.to_string()
    } else {
        server
    };
    Some(format!("{user}@{server}"))
}

pub fn user(jid: &str) -> &str {
    jid.split_once('@').map(|(u, _)| u).unwrap_or(jid)
}

pub fn server(jid: &str) -> &str {
    jid.split_once('@').map(|(_, s)| s).unwrap_or("")
}

pub fn is_pn(jid: &str) -> bool {
    jid.ends_with("@s.whatsapp.net")
}

pub fn is_lid(jid: &str) -> bool {
    jid.ends_with("@lid")
}

pub fn is_group(jid: &str) -> bool {
    jid.ends_with("@g.us")
}

pub fn is_broadcast(jid: &str) -> bool {
    jid.ends_with("@broadcast")
}

/// Only the digits of `raw`; `None` when there are none.
pub fn digits(raw: &str) -> Option<String> {
    let d: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    (!d.is_empty()).then_some(d)
}

/// A phone number in any common form (`+44 7700-900123`, `(0044) 7700 900123`, `447700900123`)
/// as a PN JID. Needs 6 to 15 digits (E.164 allows at most 15).
pub fn pn_from_number(raw: &str) -> Option<String> {
    let d = digits(raw)?;
    let d = d
        .strip_prefix("00")
        .filter(|rest| raw.trim_start().starts_with("00") && !rest.is_empty())
        .unwrap_or(&d);
    (6..=15)
        .contains(&d.len())
        .then(|| format!("{d}@{PN_SERVER}"))
}

/// A JID from what a person typed: a JID as is (normalized), or a phone number.
pub fn parse_address(raw: &str) -> Option<String> {
    if raw.contains('@') {
        normalize(raw)
    } else {
        pn_from_number(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_follows_the_original() {
        assert_eq!(
            normalize("123:5@s.whatsapp.net").as_deref(),
            Some("123@s.whatsapp.net")
        );
        assert_eq!(normalize("abc:3@lid").as_deref(), Some("abc@lid"));
        assert_eq!(
            normalize("123_1@s.whatsapp.net").as_deref(),
            Some("123@s.whatsapp.net")
        );
        assert_eq!(
            normalize("4477@c.us").as_deref(),
            Some("4477@s.whatsapp.net")
        );
        assert_eq!(normalize("12345"), None);
        assert_eq!(normalize("@s.whatsapp.net"), None);
        assert_eq!(normalize("1203-45@G.US").as_deref(), Some("1203-45@g.us"));
    }

    #[test]
    fn phone_numbers_in_every_common_form() {
        let want = Some("447700900123@s.whatsapp.net".to_string());
        assert_eq!(pn_from_number("+44 7700-900123"), want);
        assert_eq!(pn_from_number("447700900123"), want);
        assert_eq!(pn_from_number("0044 7700 900123"), want);
        assert_eq!(pn_from_number("(44) 7700.900.123"), want);
        assert_eq!(pn_from_number("123"), None);
        assert_eq!(pn_from_number("abc"), None);
        assert_eq!(parse_address("+44 7700 900123"), want);
        assert_eq!(parse_address("1@lid").as_deref(), Some("1@lid"));
    }

    #[test]
    fn classification() {
        assert!(is_pn("1@s.whatsapp.net") && is_lid("1@lid") && is_group("1-2@g.us"));
        assert!(is_broadcast(STATUS_BROADCAST));
        assert_eq!(user("12@lid"), "12");
        assert_eq!(server("12@lid"), "lid");
    }
}
