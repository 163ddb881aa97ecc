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
//! | `….type` | `"draft4"` | `"draft4"` (Kong's only choice) or `"draft7"` |
//! | `….schema` | (required) | the schema, as a JSON string (Kong's form) or a TOML table |
//! | `action` | `"close"` | `"close"`: 1007 `Invalid Frame Payload` to the sender and 1001 to the other side; `"drop"`: the message is dropped and the connection goes on |
//!
//! At least one schema is required. A message of a type with no schema
//! passes; so do pings, pongs and close frames. Binary messages are parsed
//! as JSON too (UTF-8 JSON text), as Kong does; a message that is not JSON
//! is invalid. Schemas are checked when the configuration loads: what the
//! validator supports, and what it refuses (`pattern`, remote `$ref`s), is
//! listed below. The validator does not use a JSON Schema crate: the
//! smallest one (`jsonschema` without default features) brings 48 crates,
//! regular-expression engines and bignum arithmetic among them, into a
//! gateway that otherwise needs none of them.
//!
//! Supported keywords: `type`, `enum`, `const` (07), `allOf`, `anyOf`,
//! `oneOf`, `not`, `if`/`then`/`else` (07), `$ref` within the schema
//! (`#`, `#/definitions/...`, any `#/` pointer), `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum` (booleans in 04, numbers in
//! 07), `multipleOf`, `minLength`, `maxLength`, `items` (schema or list),
//! `additionalItems`, `minItems`, `maxItems`, `uniqueItems`, `contains`
//! (07), `properties`, `additionalProperties`, `required`,
//! `minProperties`, `maxProperties`, `dependencies`, `propertyNames` (07).
//! `format` is an annotation and is not checked; unknown keywords are
//! ignored, as the drafts require; `pattern`, `patternProperties`, keywords
//! of later drafts and references to other documents are configuration
//! errors.

use serde::Deserialize;

use super::json_schema::{Draft, Schema};
use super::FrameAction;
use crate::plugin::{FrameContext, FrameType, Plugin, PluginConfigError, PluginError};

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
}

/// A JSON Schema draft (the `type` of a schema, as Kong calls it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SchemaDraft {
    /// Draft 04, Kong's.
    #[default]
    #[serde(rename = "draft4")]
    Draft4,
    /// Draft 07.
    #[serde(rename = "draft7")]
    Draft7,
}

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
            Ok(value) => match schema.validate(&value) {
                Ok(()) => return Ok(()),
                Err(invalid) => invalid.to_string(),
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
    let draft = match s.draft {
        SchemaDraft::Draft4 => Draft::Draft4,
        SchemaDraft::Draft7 => Draft::Draft7,
    };
    Schema::compile(schema, draft)
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
        let e = plugin(json!({ "upstream": { "binary": { "schema": r#"{"pattern": "a"}"# } } }))
            .unwrap_err();
        assert!(
            e.starts_with("upstream.binary: schema #: pattern is not supported"),
            "{e}"
        );
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
        let e =
            plugin(json!({ "client": { "text": { "schema": r#"{"const": 1}"# } } })).unwrap_err();
        assert!(e.contains("not a draft 04 keyword"), "{e}");
        assert!(plugin(json!({
            "client": { "text": { "type": "draft7", "schema": r#"{"const": 1}"# } }
        }))
        .is_ok());
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
