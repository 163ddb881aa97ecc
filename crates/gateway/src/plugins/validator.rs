//! `websocket-validator`: checks every text and binary message against a
//! JSON Schema, per direction and per message type (Kong's
//! websocket-validator).
//!
//! ```toml
//! [[services.plugins]]
//! name = "websocket-validator"
//!   [services.plugins.config.client.text]
//!   type = "draft4"
//!   schema = '{ "type": "object", "required": ["name"] }'
//!   [services.plugins.config.upstream.binary]
//!   type = "draft7"
//!   schema = { type = "array", items = { type = "number" } }
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `client.text`, `client.binary` | none | schema for messages from the client |
//! | `upstream.text`, `upstream.binary` | none | schema for messages from the upstream |
//! | `….type` | `"draft4"` | `"draft4"` (Kong's only choice), `"draft6"`, `"draft7"`, `"draft2019-09"`, `"draft2020-12"` |
//! | `….schema` | (required) | the schema, as a JSON string (Kong's form) or a TOML table |
//! | `….format_assertions` | `false` | check `format` (`email`, `date-time`, `ipv4`, `uuid`, ...) |
//! | `action` | `"close"` | `"close"`: 1007 `Invalid Frame Payload` to the sender and 1001 to the other side; `"drop"`: the message is dropped and the connection goes on |
//!
//! At least one schema is required. A message of a type with no schema
//! passes; so do pings, pongs and close frames. Binary messages are parsed
//! as JSON too (UTF-8 JSON text), as Kong does; a message that is not JSON
//! is invalid.
//!
//! Validation is the `jsonschema` crate's, without remote fetching: drafts
//! 4, 6, 7, 2019-09 and 2020-12, `pattern` and `patternProperties` (ECMA
//! 262 regular expressions), `$ref` within the schema and to its `$id`s.
//! Each schema is checked against its draft's meta-schema when the
//! configuration loads; a schema that refers to another document is a
//! configuration error, never a request on the network. `format` is an
//! annotation unless `format_assertions = true`.

use serde::Deserialize;

use super::FrameAction;
use crate::plugin::{FrameContext, FrameType, Plugin, PluginConfigError, PluginError};
use jsonschema::Draft;

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Schemas for messages from the client.
    #[serde(default)]
    pub client: DirectionSchemas,
    /// Schemas for messages from the upstream.
    #[serde(default)]
    pub upstream: DirectionSchemas,
    /// What happens to an invalid message.
    #[serde(default)]
    pub action: FrameAction,
}

/// The schemas of one direction.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionSchemas {
    /// For text messages.
    pub text: Option<MessageSchema>,
    /// For binary messages.
    pub binary: Option<MessageSchema>,
}

/// One schema.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageSchema {
    /// The JSON Schema draft.
    #[serde(rename = "type", default)]
    pub draft: SchemaDraft,
    /// The schema: a JSON string, or the schema itself as a table.
    pub schema: serde_json::Value,
    /// Whether `format` is checked (by default an annotation, as the
    /// drafts have it).
    #[serde(default)]
    pub format_assertions: bool,
}

/// A JSON Schema draft (the `type` of a schema, as Kong calls it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SchemaDraft {
    /// Draft 04, Kong's.
    #[default]
    #[serde(rename = "draft4")]
    Draft4,
    /// Draft 06.
    #[serde(rename = "draft6")]
    Draft6,
    /// Draft 07.
    #[serde(rename = "draft7")]
    Draft7,
    /// Draft 2019-09.
    #[serde(rename = "draft2019-09")]
    Draft201909,
    /// Draft 2020-12.
    #[serde(rename = "draft2020-12")]
    Draft202012,
}

impl SchemaDraft {
    fn draft(self) -> Draft {
        match self {
            SchemaDraft::Draft4 => Draft::Draft4,
            SchemaDraft::Draft6 => Draft::Draft6,
            SchemaDraft::Draft7 => Draft::Draft7,
            SchemaDraft::Draft201909 => Draft::Draft201909,
            SchemaDraft::Draft202012 => Draft::Draft202012,
        }
    }
}

type Schema = jsonschema::Validator;

/// The compiled schemas of one direction.
#[derive(Debug, Default)]
struct Schemas {
    text: Option<Schema>,
    binary: Option<Schema>,
}

/// Validates messages against JSON Schemas.
#[derive(Debug)]
pub struct Validator {
    client: Schemas,
    upstream: Schemas,
    action: FrameAction,
}

/// Kong's close message.
const INVALID: &str = "Invalid Frame Payload";

impl Validator {
    /// The name in the configuration.
    pub const NAME: &'static str = "websocket-validator";

    /// Compiles the schemas; an error names the schema and what is wrong
    /// in it.
    pub fn new(config: ValidatorConfig) -> Result<Self, PluginConfigError> {
        let client = compile_direction("client", &config.client)?;
        let upstream = compile_direction("upstream", &config.upstream)?;
        let any = [&client, &upstream]
            .iter()
            .any(|s| s.text.is_some() || s.binary.is_some());
        if !any {
            return Err(PluginConfigError(
                "no schema: configure client.text, client.binary, upstream.text or upstream.binary"
                    .into(),
            ));
        }
        Ok(Validator {
            client,
            upstream,
            action: config.action,
        })
    }

    fn check(&self, ctx: &mut FrameContext<'_>, schemas: &Schemas) -> Result<(), PluginError> {
        let (data, kind, _) = ctx.get_frame();
        let schema = match kind {
            FrameType::Text => &schemas.text,
            FrameType::Binary => &schemas.binary,
            _ => return Ok(()),
        };
        let Some(schema) = schema else {
            return Ok(());
        };
        let problem = match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(value) => match validate(schema, &value) {
                Ok(()) => return Ok(()),
                Err(problem) => problem,
            },
            Err(e) => format!("not JSON: {e}"),
        };
        tracing::debug!(
            connection = ctx.connection().id,
            direction = ctx.direction().as_str(),
            kind = kind.as_str(),
            action = ?self.action,
            "invalid message: {problem}"
        );
        match self.action {
            FrameAction::Close => ctx.close(Some(1007), Some(INVALID), Some(1001), None)?,
            FrameAction::Drop => ctx.drop_frame()?,
        }
        Ok(())
    }
}

/// Messages nested deeper than this are validated on a stack of their own.
const SHALLOW: usize = 8;

/// The stack a deep message is validated on: room for serde_json's 128
/// levels times a long chain of `allOf`/`$ref` at each. Reserved, not
/// committed: only the pages the validation touches take memory.
const DEEP_STACK: usize = 256 << 20;

/// Validates `value`, with a problem worth logging if it is invalid.
///
/// The `jsonschema` crate recurses once per schema level at each instance
/// level and has no bound of its own, so a client's deeply nested message
/// against a schema with long reference chains would overflow the worker's
/// stack and abort the process (tests/validator_limits.rs). Shallow
/// messages, nearly all of them, are validated where they are; a deep one
/// on a stack large enough for the deepest message serde_json parses.
fn validate(schema: &Schema, value: &serde_json::Value) -> Result<(), String> {
    let check = || {
        schema
            .validate(value)
            .map_err(|invalid| format!("{invalid} (at {})", invalid.instance_path()))
    };
    if depth(value) <= SHALLOW {
        check()
    } else {
        stacker::grow(DEEP_STACK, check)
    }
}

/// How deeply `value` nests (a scalar is 1), without recursing.
fn depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 1)];
    while let Some((value, level)) = pending.pop() {
        deepest = deepest.max(level);
        match value {
            serde_json::Value::Array(items) => pending.extend(items.iter().map(|v| (v, level + 1))),
            serde_json::Value::Object(map) => pending.extend(map.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

fn compile_direction(side: &str, schemas: &DirectionSchemas) -> Result<Schemas, PluginConfigError> {
    let compile = |kind: &str, s: &Option<MessageSchema>| {
        s.as_ref()
            .map(|s| compile_one(s).map_err(|e| PluginConfigError(format!("{side}.{kind}: {e}"))))
            .transpose()
    };
    Ok(Schemas {
        text: compile("text", &schemas.text)?,
        binary: compile("binary", &schemas.binary)?,
    })
}

fn compile_one(s: &MessageSchema) -> Result<Schema, String> {
    let parsed;
    let schema = match &s.schema {
        // Kong's form: the schema as a JSON string.
        serde_json::Value::String(text) => {
            parsed = serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("schema is not valid JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    jsonschema::options()
        .with_draft(s.draft.draft())
        .should_validate_formats(s.format_assertions)
        .build(schema)
        .map_err(|e| format!("invalid schema: {e} (at {})", e.schema_path()))
}

impl Plugin for Validator {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        // Kong's websocket-validator priority.
        999
    }

    fn handles_frames(&self) -> bool {
        true
    }

    fn client_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        self.check(ctx, &self.client)
    }

    fn upstream_frame(&self, ctx: &mut FrameContext<'_>) -> Result<(), PluginError> {
        self.check(ctx, &self.upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{Direction, PlannedClose, Verdict};
    use std::sync::Arc;

    use crate::plugins::testing::FrameHarness;
    use frameway_wire::CloseCode;
    use serde_json::json;

    fn plugin(config: serde_json::Value) -> Result<Validator, String> {
        let config: ValidatorConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
        Validator::new(config).map_err(|e| e.0)
    }

    const NAMED: &str = r#"{ "type": "object", "required": ["name"] }"#;

    fn closed() -> Verdict {
        Verdict::Close {
            sender: PlannedClose {
                status: CloseCode::new(1007).unwrap(),
                message: INVALID.into(),
            },
            peer: PlannedClose {
                status: CloseCode::new(1001).unwrap(),
                message: String::new(),
            },
        }
    }

    #[test]
    fn config_errors() {
        assert!(plugin(json!({})).unwrap_err().contains("no schema"));
        assert!(plugin(json!({ "client": {} }))
            .unwrap_err()
            .contains("no schema"));
        let e = plugin(json!({ "client": { "text": { "schema": "{ nope" } } })).unwrap_err();
        assert!(
            e.starts_with("client.text: schema is not valid JSON"),
            "{e}"
        );
        // Checked against the draft's meta-schema at load.
        let e = plugin(json!({ "upstream": { "binary": { "schema": r#"{"minLength": -1}"# } } }))
            .unwrap_err();
        assert!(e.starts_with("upstream.binary: invalid schema"), "{e}");
        let e = plugin(json!({ "client": { "text": { "schema": r#"{"type": "strin"}"# } } }))
            .unwrap_err();
        assert!(e.starts_with("client.text: invalid schema"), "{e}");
        // Never a request on the network (or the disk).
        let remote = r#"{"$ref": "https://schemas.example.com/order.json"}"#;
        let e = plugin(json!({ "client": { "text": { "type": "draft7", "schema": remote } } }))
            .unwrap_err();
        assert!(e.starts_with("client.text: invalid schema"), "{e}");
        let e = plugin(json!({ "client": { "text": { "type": "draft3", "schema": "{}" } } }))
            .unwrap_err();
        assert!(e.contains("draft3"), "{e}");
        let e = plugin(json!({ "client": { "text": { "type": "draft4" } } })).unwrap_err();
        assert!(e.contains("schema"), "{e}");
        let e = plugin(json!({ "client": { "ping": { "schema": "{}" } } })).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = plugin(json!({ "client": { "text": { "schema": "{}" } }, "action": "log" }))
            .unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
        for draft in ["draft4", "draft6", "draft7", "draft2019-09", "draft2020-12"] {
            assert!(
                plugin(json!({ "client": { "text": { "type": draft, "schema": NAMED } } })).is_ok(),
                "{draft}"
            );
        }
    }

    fn verdicts(config: serde_json::Value, messages: &[&'static str]) -> Vec<Verdict> {
        let mut h = FrameHarness::new(Arc::new(plugin(config).unwrap()));
        messages
            .iter()
            .map(|m| h.frame(Direction::Client, FrameType::Text, *m).unwrap())
            .collect()
    }

    #[test]
    fn pattern_and_pattern_properties_accept_and_refuse_the_right_messages() {
        // Kong's form: draft 4, the schema as a JSON string.
        let schema = r#"{
            "type": "object",
            "properties": { "room": { "type": "string", "pattern": "^[a-z]+-[0-9]{1,4}$" } },
            "patternProperties": { "^x-": { "type": "string" } },
            "additionalProperties": false
        }"#;
        let config = json!({ "client": { "text": { "type": "draft4", "schema": schema } } });
        let messages = [
            r#"{"room":"lobby-12"}"#,
            r#"{"room":"lobby-12","x-trace":"abc"}"#,
            r#"{"room":"Lobby-12"}"#,
            r#"{"room":"lobby-12345"}"#,
            r#"{"room":"lobby-1","x-trace":7}"#,
            r#"{"room":"lobby-1","trace":"abc"}"#,
        ];
        let forward = Verdict::Forward;
        assert_eq!(
            verdicts(config, &messages),
            [
                forward.clone(),
                forward,
                closed(),
                closed(),
                closed(),
                closed()
            ]
        );
    }

    #[test]
    fn formats_are_checked_only_when_asked() {
        let schema = r#"{ "type": "string", "format": "email" }"#;
        let messages = [r#""ada@example.com""#, r#""not an address""#];
        let annotation = json!({ "client": { "text": { "type": "draft7", "schema": schema } } });
        assert_eq!(
            verdicts(annotation, &messages),
            [Verdict::Forward, Verdict::Forward]
        );
        let asserted = json!({ "client": { "text": {
            "type": "draft7", "schema": schema, "format_assertions": true
        } } });
        assert_eq!(verdicts(asserted, &messages), [Verdict::Forward, closed()]);
    }

    #[test]
    fn references_to_ids_within_the_schema_resolve() {
        let schema = json!({
            "$id": "https://schemas.example.com/message",
            "type": "object",
            "properties": { "user": { "$ref": "user" } },
            "$defs": { "user": {
                "$id": "https://schemas.example.com/user",
                "type": "object", "required": ["name"]
            } }
        });
        let config = json!({ "client": { "text": { "type": "draft2020-12", "schema": schema } } });
        assert_eq!(
            verdicts(config, &[r#"{"user":{"name":"ada"}}"#, r#"{"user":{}}"#]),
            [Verdict::Forward, closed()]
        );
    }

    #[test]
    fn invalid_messages_close_with_1007() {
        let p =
            plugin(json!({ "client": { "text": { "type": "draft4", "schema": NAMED } } })).unwrap();
        assert_eq!(p.priority(), 999);
        assert!(p.handles_frames());
        let p = Arc::new(p);
        let mut h = FrameHarness::new(p.clone());
        let text = FrameType::Text;
        assert_eq!(
            h.frame(Direction::Client, text, r#"{"name":"Alex"}"#)
                .unwrap(),
            Verdict::Forward
        );
        assert_eq!(
            h.frame(Direction::Client, text, r#"{"missing_name":true}"#)
                .unwrap(),
            closed()
        );
        assert_eq!(
            h.frame(Direction::Client, text, "not json").unwrap(),
            closed()
        );
        assert_eq!(h.frame(Direction::Client, text, "").unwrap(), closed());
        // No schema for binary messages or for the upstream: they pass.
        assert_eq!(
            h.frame(Direction::Client, FrameType::Binary, "x").unwrap(),
            Verdict::Forward
        );
        assert_eq!(
            h.frame(Direction::Upstream, text, "x").unwrap(),
            Verdict::Forward
        );
        // Control frames are never validated.
        assert_eq!(
            h.frame(Direction::Client, FrameType::Ping, "x").unwrap(),
            Verdict::Forward
        );
        assert_eq!(
            h.frame(Direction::Client, FrameType::Close, "x").unwrap(),
            Verdict::Forward
        );
    }

    #[test]
    fn binary_messages_are_json_too() {
        let p = plugin(json!({
            "upstream": { "binary": {
                "type": "draft7",
                "schema": { "type": "array", "items": { "type": "number" } }
            } }
        }))
        .unwrap();
        let p = Arc::new(p);
        let mut h = FrameHarness::new(p.clone());
        let binary = FrameType::Binary;
        assert_eq!(
            h.frame(Direction::Upstream, binary, "[1, 2.5]").unwrap(),
            Verdict::Forward
        );
        assert_eq!(
            h.frame(Direction::Upstream, binary, "[1, \"2\"]").unwrap(),
            closed()
        );
        assert_eq!(
            h.frame(Direction::Upstream, binary, vec![0xff, 0x00])
                .unwrap(),
            closed()
        );
        assert_eq!(
            h.frame(Direction::Upstream, FrameType::Text, "x").unwrap(),
            Verdict::Forward
        );
        assert_eq!(
            h.frame(Direction::Client, binary, "x").unwrap(),
            Verdict::Forward
        );
    }

    #[test]
    fn drop_mode_drops_and_goes_on() {
        let p = plugin(json!({
            "client": { "text": { "schema": NAMED }, "binary": { "schema": NAMED } },
            "action": "drop"
        }))
        .unwrap();
        let p = Arc::new(p);
        let mut h = FrameHarness::new(p.clone());
        assert_eq!(
            h.frame(Direction::Client, FrameType::Text, "{}").unwrap(),
            Verdict::Drop
        );
        assert_eq!(
            h.frame(Direction::Client, FrameType::Binary, "{}").unwrap(),
            Verdict::Drop
        );
        assert_eq!(
            h.frame(Direction::Client, FrameType::Text, r#"{"name":1}"#)
                .unwrap(),
            Verdict::Forward
        );
    }
}
