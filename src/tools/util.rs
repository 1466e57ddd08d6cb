//! Utility tools: `ping`.
//!
//! Owns: tools that need nothing but the server itself. Must not: reach the store or WhatsApp.

use super::{Annotations, Tool, ToolCall, ToolResult};

pub fn tools() -> Vec<Tool> {
    vec![Tool::new(
        "ping",
        "Check that the MCP server is up and answering. Returns the text \"pong\".",
        vec![],
        Annotations::READ_LOCAL,
        crate::tool_fn!(ping),
    )]
}

async fn ping(_call: ToolCall) -> ToolResult {
    ToolResult::text("pong")
}

#[cfg(test)]
mod tests {
    //! The final tool list against the original's `tools/list` answer
    //! (`tests/fixtures/seed-tools-list.json`) and SPEC §9's additions.

    use super::super::{Annotations, ProgressSink, Registry, Tool, ToolEnv};
    use crate::json::{self, Object, Value};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    const SEED: &str = include_str!("../../tests/fixtures/seed-tools-list.json");

    /// The final list, in `tools/list` order: the original's order, new tools at the end of their
    /// group.
    const FINAL_NAMES: [&str; 33] = [
        "get_qr_code",
        "check_auth_status",
        "logout",
        "force_resync",
        "request_pairing_code",
        "search_contacts",
        "resolve_contact",
        "get_contact_by_id",
        "get_profile_pic",
        "get_group_info",
        "list_chats",
        "list_system_chats",
        "list_groups",
        "get_chat_by_id",
        "get_direct_chat_by_contact_number",
        "get_chat_by_contact",
        "analyze_group_overlaps",
        "find_members_without_direct_chat",
        "find_members_not_in_contacts",
        "run_group_audit",
        "list_messages",
        "get_message_by_id",
        "search_messages",
        "get_message_context",
        "get_last_interaction",
        "send_message",
        "send_reaction",
        "mark_as_read",
        "wait_for_messages",
        "send_media",
        "download_media",
        "stage_media",
        "ping",
    ];

    const NEW_TOOLS: [&str; 4] = [
        "request_pairing_code",
        "send_reaction",
        "mark_as_read",
        "wait_for_messages",
    ];

    /// Parameters that SPEC §9 adds to the original's tools.
    fn new_params(tool: &str) -> &'static [&'static str] {
        match tool {
            "send_message" => &["reply_to"],
            "search_messages" => &["from", "after", "before"],
            _ => &[],
        }
    }

    fn registry(read_only: bool) -> Registry {
        let store = crate::store::Store::open_in_memory().expect("an in-memory store");
        Registry::new(ToolEnv {
            read_only,
            auto_select_contact: false,
            store,
            engine: None,
            idempotency_ttl_ms: crate::store::idempotency::DEFAULT_TTL_MS,
            send_guard: Default::default(),
        })
    }

    fn seed_tools() -> Vec<Value> {
        let root = json::parse(SEED).expect("the seed fixture is JSON");
        let tools = json::get(&root, "response_body")
            .and_then(|b| json::get(b, "result"))
            .and_then(|r| json::get(r, "tools"))
            .expect("response_body.result.tools");
        match tools {
            Value::Array(items) => items.iter().cloned().collect(),
            _ => panic!("response_body.result.tools is not an array"),
        }
    }

    fn object(v: &Value) -> &Object {
        match v {
            Value::Object(o) => o,
            _ => panic!("expected an object, got {}", json::to_string(v)),
        }
    }

    /// Canonical text of an optional value (miniserde sorts object keys).
    fn canon(v: Option<&Value>) -> String {
        v.map(json::to_string).unwrap_or_else(|| "<absent>".into())
    }

    /// A property schema without its description: type, default and constraints only.
    fn shape(prop: &Value) -> String {
        let mut o = object(prop).clone();
        o.remove("description");
        json::to_string(&Value::Object(o))
    }

    fn property_names(schema: &Value) -> BTreeSet<String> {
        json::get(schema, "properties")
            .map(|p| object(p).keys().cloned().collect())
            .unwrap_or_default()
    }

    fn tool<'a>(reg: &'a Registry, name: &str) -> &'a Tool {
        reg.get(name)
            .unwrap_or_else(|| panic!("tool {name} is missing"))
    }

    #[test]
    fn the_final_list_is_the_original_29_plus_the_4_new_tools_in_order() {
        let reg = registry(false);
        let listed: Vec<&str> = reg.listed().map(|t| t.name).collect();
        assert_eq!(listed, FINAL_NAMES);

        let seed_names: Vec<String> = seed_tools()
            .iter()
            .map(|t| json::get_str(t, "name").expect("name").to_string())
            .collect();
        assert_eq!(seed_names.len(), 29);
        let ours_without_new: Vec<&str> = FINAL_NAMES
            .iter()
            .copied()
            .filter(|n| !NEW_TOOLS.contains(n))
            .collect();
        assert_eq!(seed_names, ours_without_new);
    }

    #[test]
    fn the_original_tools_keep_their_parameters_and_annotations() {
        let reg = registry(false);
        for seed in seed_tools() {
            let name = json::get_str(&seed, "name").expect("name");
            let ours = tool(&reg, name);
            let schema = ours.input_schema();
            let seed_schema = json::get(&seed, "inputSchema").expect("inputSchema");

            let mut expected = property_names(seed_schema);
            expected.extend(new_params(name).iter().map(|p| p.to_string()));
            assert_eq!(property_names(&schema), expected, "{name}: property names");

            let seed_props = json::get(seed_schema, "properties")
                .map(object)
                .cloned()
                .unwrap_or_default();
            let our_props = object(json::get(&schema, "properties").expect("properties"));
            for (prop, seed_prop) in &seed_props {
                // type, default, exclusiveMinimum, minLength, maxLength, format: all of them.
                assert_eq!(
                    shape(our_props.get(prop).expect("property")),
                    shape(seed_prop),
                    "{name}.{prop}: type, default or constraints"
                );
            }
            assert_eq!(
                canon(json::get(&schema, "required")),
                canon(json::get(seed_schema, "required")),
                "{name}: required"
            );

            let expected_annotations = if name == "stage_media" {
                // SPEC §9: the original had none.
                json::obj([
                    ("readOnlyHint", json::bool(false)),
                    ("destructiveHint", json::bool(false)),
                    ("idempotentHint", json::bool(false)),
                    ("openWorldHint", json::bool(true)),
                ])
            } else {
                json::get(&seed, "annotations")
                    .expect("annotations")
                    .clone()
            };
            assert_eq!(
                canon(json::get(&ours.to_value(), "annotations")),
                canon(Some(&expected_annotations)),
                "{name}: annotations"
            );
        }
    }

    #[test]
    fn the_new_tools_and_parameters_follow_spec_section_9() {
        let reg = registry(false);
        // (tool, property, shape without description)
        let props = [
            ("send_message", "reply_to", r#"{"type":"string"}"#),
            ("search_messages", "from", r#"{"type":"string"}"#),
            ("search_messages", "after", r#"{"type":"string"}"#),
            ("search_messages", "before", r#"{"type":"string"}"#),
            (
                "request_pairing_code",
                "phone_number",
                r#"{"type":"string"}"#,
            ),
            ("send_reaction", "chat_jid", r#"{"type":"string"}"#),
            ("send_reaction", "message_id", r#"{"type":"string"}"#),
            ("send_reaction", "emoji", r#"{"type":"string"}"#),
            ("mark_as_read", "chat_jid", r#"{"type":"string"}"#),
            (
                "mark_as_read",
                "message_ids",
                r#"{"type":"array","items":{"type":"string"}}"#,
            ),
            ("wait_for_messages", "chat_jid", r#"{"type":"string"}"#),
            ("wait_for_messages", "since", r#"{"type":"string"}"#),
            (
                "wait_for_messages",
                "timeout_secs",
                r#"{"type":"integer","exclusiveMinimum":0,"maximum":55,"default":25}"#,
            ),
        ];
        for (name, prop, want) in props {
            let schema = tool(&reg, name).input_schema();
            let got = json::get(&schema, "properties").and_then(|p| json::get(p, prop));
            let got = got.unwrap_or_else(|| panic!("{name}.{prop} is missing"));
            assert_eq!(
                shape(got),
                json::to_string(&json::parse(want).unwrap()),
                "{name}.{prop}"
            );
        }

        let required = [
            ("request_pairing_code", r#"["phone_number"]"#),
            ("send_reaction", r#"["chat_jid","message_id","emoji"]"#),
            ("mark_as_read", r#"["chat_jid"]"#),
            ("wait_for_messages", "<absent>"),
        ];
        for (name, want) in required {
            let schema = tool(&reg, name).input_schema();
            assert_eq!(
                canon(json::get(&schema, "required")),
                want,
                "{name}: required"
            );
        }
        for name in NEW_TOOLS {
            let expected: BTreeSet<String> = props
                .iter()
                .filter(|(t, _, _)| *t == name)
                .map(|(_, p, _)| p.to_string())
                .collect();
            assert_eq!(
                property_names(&tool(&reg, name).input_schema()),
                expected,
                "{name}: property names"
            );
        }

        let write = |idempotent| Annotations {
            read_only: false,
            destructive: Some(false),
            idempotent,
            open_world: true,
        };
        assert_eq!(tool(&reg, "request_pairing_code").annotations, write(false));
        assert_eq!(tool(&reg, "send_reaction").annotations, write(true));
        assert_eq!(tool(&reg, "mark_as_read").annotations, write(true));
        assert_eq!(
            tool(&reg, "wait_for_messages").annotations,
            Annotations::READ_LOCAL
        );
        assert_eq!(tool(&reg, "stage_media").annotations, write(false));
    }

    #[test]
    fn every_tool_is_described_and_its_schema_is_closed() {
        let reg = registry(false);
        for t in reg.listed() {
            assert!(
                !t.description.trim().is_empty(),
                "{}: empty description",
                t.name
            );
            for p in &t.params {
                assert!(
                    !p.description.trim().is_empty(),
                    "{}.{}: empty description",
                    t.name,
                    p.name
                );
            }
            let schema = t.input_schema();
            assert_eq!(
                json::get_str(&schema, "type"),
                Some("object"),
                "{}: type",
                t.name
            );
            assert_eq!(
                canon(json::get(&schema, "additionalProperties")),
                "false",
                "{}: additionalProperties",
                t.name
            );
        }
    }

    #[test]
    fn read_only_hides_exactly_the_send_tools() {
        let all: BTreeSet<&str> = registry(false).listed().map(|t| t.name).collect();
        let read_only: BTreeSet<&str> = registry(true).listed().map(|t| t.name).collect();
        let hidden: Vec<&str> = all.difference(&read_only).copied().collect();
        assert_eq!(hidden, ["send_media", "send_message", "send_reaction"]);
    }

    #[test]
    fn only_wait_for_messages_is_long_running() {
        let reg = registry(false);
        let long: Vec<&str> = reg
            .listed()
            .filter(|t| t.long_running)
            .map(|t| t.name)
            .collect();
        assert_eq!(long, ["wait_for_messages"]);
    }

    #[test]
    fn wait_for_messages_timeout_defaults_to_25_and_stays_within_1_to_55() {
        let reg = registry(false);
        let t = tool(&reg, "wait_for_messages");
        let args = |text: &str| json::parse(text).unwrap();
        assert_eq!(t.validate(None).unwrap().int("timeout_secs"), Some(25));
        assert_eq!(
            t.validate(Some(&args(r#"{"timeout_secs":55}"#)))
                .unwrap()
                .int("timeout_secs"),
            Some(55)
        );
        assert!(t.validate(Some(&args(r#"{"timeout_secs":56}"#))).is_err());
        assert!(t.validate(Some(&args(r#"{"timeout_secs":0}"#))).is_err());
    }

    struct NoProgress;

    impl ProgressSink for NoProgress {
        fn report(&self, _progress: f64, _total: Option<f64>, _message: Option<&str>) {}
    }

    /// The read tools served from the store (tested in `tests_read`).
    const FROM_STORE: [&str; 18] = [
        "search_contacts",
        "resolve_contact",
        "get_contact_by_id",
        "list_chats",
        "list_system_chats",
        "list_groups",
        "get_chat_by_id",
        "get_direct_chat_by_contact_number",
        "get_chat_by_contact",
        "analyze_group_overlaps",
        "find_members_without_direct_chat",
        "find_members_not_in_contacts",
        "run_group_audit",
        "list_messages",
        "get_message_by_id",
        "search_messages",
        "get_message_context",
        "get_last_interaction",
    ];

    /// The auth tools answered by the WhatsApp engine (tested end to end in
    /// `tests/engine_fakewa.rs`).
    const FROM_ENGINE: [&str; 5] = [
        "get_qr_code",
        "check_auth_status",
        "logout",
        "force_resync",
        "request_pairing_code",
    ];

    #[test]
    fn engine_tools_without_an_engine_say_so() {
        let reg = registry(false);
        for name in FROM_ENGINE {
            let mut args = Object::new();
            if name == "request_pairing_code" {
                args.insert("phone_number".into(), json::s("447700900123"));
            }
            let result =
                smol::block_on(reg.call(name, Some(&Value::Object(args)), Arc::new(NoProgress)))
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(result.is_error, "{name}");
            let text = json::to_string(&result.to_value());
            assert!(text.contains("engine is not running"), "{name}: {text}");
        }
    }

    /// Tools that send or ask WhatsApp live (`send.rs`, `wait.rs`, `contacts.rs`; tested in
    /// `tests_send.rs` and `tests/safe_sending.rs`).
    const LIVE: [&str; 6] = [
        "send_message",
        "send_reaction",
        "mark_as_read",
        "wait_for_messages",
        "get_profile_pic",
        "get_group_info",
    ];

    #[test]
    fn live_tools_without_an_engine_say_whatsapp_is_not_connected() {
        let reg = registry(false);
        for (name, args) in [
            (
                "send_message",
                r#"{"recipient_jid":"+44 7700 900123","message":"hi"}"#,
            ),
            ("get_profile_pic", r#"{"jid":"447700900123"}"#),
            ("get_group_info", r#"{"group_jid":"1203630001@g.us"}"#),
        ] {
            let args = json::parse(args).unwrap();
            let result = smol::block_on(reg.call(name, Some(&args), Arc::new(NoProgress)))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(result.is_error, "{name}");
            let text = json::to_string(&result.to_value());
            assert!(text.contains("WhatsApp is not connected"), "{name}: {text}");
        }
    }

    #[test]
    fn every_stub_answers_not_available_under_its_own_name() {
        let reg = registry(false);
        for t in reg.listed().filter(|t| {
            t.name != "ping"
                && !FROM_STORE.contains(&t.name)
                && !FROM_ENGINE.contains(&t.name)
                && !LIVE.contains(&t.name)
        }) {
            let mut args = Object::new();
            for p in t.params.iter().filter(|p| p.required) {
                args.insert(p.name.to_string(), json::s("x"));
            }
            let result =
                smol::block_on(reg.call(t.name, Some(&Value::Object(args)), Arc::new(NoProgress)))
                    .unwrap_or_else(|e| panic!("{}: {e:?}", t.name));
            assert!(result.is_error, "{}: a stub must answer isError", t.name);
            let text = json::to_string(&result.to_value());
            let prefix = format!("not available yet: {} needs ", t.name);
            assert!(text.contains(&prefix), "{}: {text}", t.name);
        }
    }
}
