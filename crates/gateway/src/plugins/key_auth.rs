//! `key-auth`: only clients that present a known key, in a header or a
//! query argument, are proxied (Kong's key-auth). A key is known when a
//! consumer has it among its `keyauth_credentials` (the client is then
//! that consumer: see [`crate::consumer`]), or when it is one of the
//! plugin's own inline `keys` (no consumer).
//!
//! ```toml
//! [[plugins]]
//! name = "key-auth"
//! config = { key_names = ["apikey"], hide_credentials = true }
//!
//! [[consumers]]
//! username = "alice"
//! keyauth_credentials = [{ key = "s3cret" }]
//! ```
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `keys` | `[]` | keys accepted without a consumer, beside consumers' credentials |
//! | `key_names` | `["apikey"]` | header and query argument names searched, in order |
//! | `key_in_header` | `true` | look in the request headers |
//! | `key_in_query` | `true` | look in the query string |
//! | `hide_credentials` | `false` | remove the key's header and query argument before proxying |
//! | `realm` | `"frameway"` | the realm of the `WWW-Authenticate` challenge |
//! | `anonymous` | none | a consumer's id or username: a client without a valid key is served as it instead of refused |
//!
//! As in Kong, for each name the header is tried before the query
//! argument. A request without a key is answered `401 {"message":"No API
//! key found in request"}`, one with a key that is not configured `401
//! {"message":"Invalid authentication credentials"}`, one carrying the key
//! twice `401 {"message":"Duplicate API key found"}`; all three with
//! `WWW-Authenticate: Key realm="frameway"`.
//!
//! A consumer's key sets, as Kong does, `X-Consumer-ID`,
//! `X-Consumer-Username`, `X-Consumer-Custom-ID` and
//! `X-Credential-Identifier` on the request to the upstream, each removed
//! when the consumer has no such value; so is each of them, and
//! `X-Anonymous-Consumer`, from any accepted request, so that a client
//! cannot send them itself. A client served as the `anonymous` consumer
//! gets that consumer's headers and `X-Anonymous-Consumer: true` (and no
//! credential); an `anonymous` that names no configured consumer answers
//! 500, as in Kong.

use http::header::{HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::consumer::Consumer;
use crate::plugin::{HandshakeContext, Plugin, PluginConfigError, PluginError};

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthConfig {
    /// Header and query argument names the key is looked for under.
    #[serde(default = "default_key_names")]
    pub key_names: Vec<String>,
    /// Keys accepted without a consumer.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Look for the key in the headers.
    #[serde(default = "yes")]
    pub key_in_header: bool,
    /// Look for the key in the query string.
    #[serde(default = "yes")]
    pub key_in_query: bool,
    /// Remove the key from the request before it goes upstream.
    #[serde(default)]
    pub hide_credentials: bool,
    /// The realm of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// The consumer (id or username) a client without a valid key is
    /// served as.
    pub anonymous: Option<String>,
    /// Kong's: check keys on CORS preflight (OPTIONS) requests too. A
    /// WebSocket handshake is a GET, never a preflight, so both values
    /// serve the same.
    #[serde(default = "yes")]
    pub run_on_preflight: bool,
    /// Kong's: look for the key in the request body. An upgrade request has
    /// none, so only `false` is accepted.
    #[serde(default)]
    pub key_in_body: bool,
}

fn default_key_names() -> Vec<String> {
    vec!["apikey".to_owned()]
}

fn default_realm() -> String {
    "frameway".to_owned()
}

fn yes() -> bool {
    true
}

/// The headers Kong sets for an authenticated consumer; each is removed
/// from the client's request before any is set.
const CONSUMER_HEADERS: [&str; 5] = [
    "x-consumer-id",
    "x-consumer-username",
    "x-consumer-custom-id",
    "x-credential-identifier",
    "x-anonymous-consumer",
];

/// Kong's answers.
const NO_KEY: &str = "No API key found in request";
const INVALID_KEY: &str = "Invalid authentication credentials";
const DUPLICATE_KEY: &str = "Duplicate API key found";

/// Checks the client's API key in the handshake phase.
#[derive(Debug)]
pub struct KeyAuth {
    config: KeyAuthConfig,
    challenge: HeaderValue,
}

/// Where a key was found, or why none was.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    Found { name: String, key: Vec<u8> },
    Missing,
    Duplicate,
}

impl KeyAuth {
    /// The name in the configuration.
    pub const NAME: &'static str = "key-auth";

    /// Checks the configuration: at least one key name (valid header names
    /// when headers are searched), at least one non-empty key, and
    /// somewhere to look.
    pub fn new(config: KeyAuthConfig) -> Result<Self, PluginConfigError> {
        fn err<T>(m: String) -> Result<T, PluginConfigError> {
            Err(PluginConfigError(m))
        }
        if config.key_names.is_empty() {
            return err("key_names must name at least one header or query argument".into());
        }
        for name in &config.key_names {
            if name.is_empty() {
                return err("key_names cannot contain an empty name".into());
            }
            if config.key_in_header && HeaderName::from_bytes(name.as_bytes()).is_err() {
                return err(format!("key_names: {name:?} is not a valid header name"));
            }
        }
        if config.key_in_body {
            return err("key_in_body: a WebSocket upgrade request has no body to look in".into());
        }
        if !config.key_in_header && !config.key_in_query {
            return err("key_in_header and key_in_query cannot both be false".into());
        }
        if config.keys.iter().any(String::is_empty) {
            return err("keys cannot contain an empty key".into());
        }
        let realm = &config.realm;
        if realm.contains(['"', '\\']) {
            return err("realm cannot contain quotes or backslashes".into());
        }
        let challenge = HeaderValue::from_str(&format!("Key realm=\"{realm}\""))
            .or_else(|_| err(format!("realm {realm:?} cannot be sent in a header")))?;
        Ok(KeyAuth { config, challenge })
    }

    /// Finds the key the way Kong does: for each name in order, the header
    /// first, then the query argument; a name given twice is an error
    /// rather than a guess at which one counts.
    fn lookup(&self, ctx: &HandshakeContext<'_>) -> Lookup {
        for name in &self.config.key_names {
            let mut values: Vec<Vec<u8>> = Vec::new();
            if self.config.key_in_header {
                values = ctx
                    .headers()
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| v.as_bytes().to_vec())
                    .collect();
            }
            if values.is_empty() && self.config.key_in_query {
                values = ctx
                    .query_args(name)
                    .into_iter()
                    .map(String::into_bytes)
                    .collect();
            }
            match values.len() {
                0 => continue,
                1 => {
                    let key = values.pop().expect("one value");
                    return Lookup::Found {
                        name: name.clone(),
                        key,
                    };
                }
                _ => return Lookup::Duplicate,
            }
        }
        Lookup::Missing
    }

    /// Whether `key` is configured. Every key is compared in full, so the
    /// time taken does not tell how much of a guess was right.
    fn accepts(&self, key: &[u8]) -> bool {
        self.config.keys.iter().fold(false, |found, k| {
            found | constant_time_eq(k.as_bytes(), key)
        })
    }

    /// Refuses the client, or serves it as the `anonymous` consumer.
    fn reject(&self, ctx: &mut HandshakeContext<'_>, message: &str) -> Result<(), PluginError> {
        if let Some(name) = &self.config.anonymous {
            let Some(consumer) = ctx.find_consumer(name).cloned() else {
                return Err(PluginError::new(format!(
                    "anonymous consumer {name:?} is not configured"
                )));
            };
            for header in CONSUMER_HEADERS {
                ctx.clear_upstream_header(header);
            }
            ctx.authenticate_anonymous(&consumer);
            set_consumer_headers(ctx, &consumer)?;
            ctx.set_upstream_header("x-anonymous-consumer", "true")?;
            return Ok(());
        }
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, self.challenge.clone());
        super::exit_json(ctx, StatusCode::UNAUTHORIZED, message, headers);
        Ok(())
    }
}

/// Kong's headers naming the consumer, toward the upstream.
fn set_consumer_headers(
    ctx: &mut HandshakeContext<'_>,
    consumer: &Consumer,
) -> Result<(), PluginError> {
    ctx.set_upstream_header("x-consumer-id", &consumer.id)?;
    if let Some(username) = &consumer.username {
        ctx.set_upstream_header("x-consumer-username", username)?;
    }
    if let Some(custom_id) = &consumer.custom_id {
        ctx.set_upstream_header("x-consumer-custom-id", custom_id)?;
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Plugin for KeyAuth {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn priority(&self) -> i32 {
        // Kong's key-auth priority.
        1250
    }

    /// Handshake only: its routes stay on the fast path.
    fn handles_frames(&self) -> bool {
        false
    }

    fn handshake(&self, ctx: &mut HandshakeContext<'_>) -> Result<(), PluginError> {
        let (name, key) = match self.lookup(ctx) {
            // Kong treats `apikey=` like no key at all.
            Lookup::Found { key, .. } if key.is_empty() => return self.reject(ctx, NO_KEY),
            Lookup::Found { name, key } => (name, key),
            Lookup::Missing => return self.reject(ctx, NO_KEY),
            Lookup::Duplicate => return self.reject(ctx, DUPLICATE_KEY),
        };
        for header in CONSUMER_HEADERS {
            ctx.clear_upstream_header(header);
        }
        if let Some(credential) = ctx.credential_by_key(&key).cloned() {
            ctx.authenticate(&credential);
            set_consumer_headers(ctx, &credential.consumer)?;
            ctx.set_upstream_header("x-credential-identifier", &credential.id)?;
        } else if !self.accepts(&key) {
            return self.reject(ctx, INVALID_KEY);
        }
        if self.config.hide_credentials {
            // As Kong does: both places go, whichever held the key.
            ctx.clear_upstream_header(&name);
            ctx.clear_upstream_query_arg(&name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::HandshakeHarness;

    fn plugin(extra: serde_json::Value) -> Result<KeyAuth, PluginConfigError> {
        let mut config = serde_json::json!({ "keys": ["s3cret", "other"] });
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        KeyAuth::new(serde_json::from_value(config).map_err(|e| PluginConfigError(e.to_string()))?)
    }

    fn error_of(extra: serde_json::Value) -> String {
        plugin(extra).unwrap_err().0
    }

    #[test]
    fn config_defaults_follow_kong() {
        let p = plugin(serde_json::json!({})).unwrap();
        assert_eq!(p.config.key_names, ["apikey"]);
        assert!(p.config.key_in_header && p.config.key_in_query);
        assert!(!p.config.hide_credentials);
        assert_eq!(p.challenge, "Key realm=\"frameway\"");
        assert_eq!(p.priority(), 1250);
        assert!(!p.handles_frames());
    }

    #[test]
    fn config_errors() {
        assert!(error_of(serde_json::json!({ "keys": [""] })).contains("empty key"));
        assert!(error_of(serde_json::json!({ "key_names": [] })).contains("key_names"));
        assert!(error_of(serde_json::json!({ "key_names": ["bad name"] }))
            .contains("not a valid header name"));
        assert!(
            error_of(serde_json::json!({ "key_in_header": false, "key_in_query": false }))
                .contains("cannot both be false")
        );
        assert!(error_of(serde_json::json!({ "realm": "a\"b" })).contains("realm"));
        assert!(error_of(serde_json::json!({ "key_in_body": true })).contains("has no body"));
        assert!(error_of(serde_json::json!({ "key_in_bodies": false })).contains("unknown field"));
        // Consumers' credentials alone will do.
        let consumers_only: KeyAuthConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(KeyAuth::new(consumers_only).is_ok());
        // A query-only name need not be a header name.
        assert!(
            plugin(serde_json::json!({ "key_names": ["a b"], "key_in_header": false })).is_ok()
        );
    }

    fn run(p: &KeyAuth, target: &str, headers: &[(&str, &str)]) -> HandshakeHarness {
        let mut h = HandshakeHarness::new(target, headers);
        h.run(p);
        h
    }

    fn message(h: &HandshakeHarness) -> String {
        let exit = h.exit.as_ref().expect("rejected");
        assert_eq!(exit.status, StatusCode::UNAUTHORIZED);
        assert_eq!(exit.headers[WWW_AUTHENTICATE], "Key realm=\"frameway\"");
        let body: serde_json::Value = serde_json::from_slice(&exit.body).unwrap();
        body["message"].as_str().unwrap().to_owned()
    }

    #[test]
    fn keys_are_found_in_headers_and_query() {
        let p = plugin(serde_json::json!({})).unwrap();
        assert!(run(&p, "/?apikey=s3cret", &[]).exit.is_none());
        assert!(run(&p, "/", &[("apikey", "other")]).exit.is_none());
        assert!(run(&p, "/", &[("ApiKey", "s3cret")]).exit.is_none());
        assert!(run(&p, "/?x=1&api%6Bey=s3cr%65t", &[]).exit.is_none());
        assert_eq!(message(&run(&p, "/", &[])), NO_KEY);
        assert_eq!(message(&run(&p, "/?apikey=", &[])), NO_KEY);
        assert_eq!(message(&run(&p, "/?apikey=nope", &[])), INVALID_KEY);
        assert_eq!(message(&run(&p, "/", &[("apikey", "s3cre")])), INVALID_KEY);
        assert_eq!(
            message(&run(&p, "/", &[("apikey", "s3cret!")])),
            INVALID_KEY
        );
        // The header wins over the query, as in Kong.
        assert_eq!(
            message(&run(&p, "/?apikey=s3cret", &[("apikey", "nope")])),
            INVALID_KEY
        );
        assert_eq!(
            message(&run(&p, "/?apikey=s3cret&apikey=s3cret", &[])),
            DUPLICATE_KEY
        );
        assert_eq!(
            message(&run(&p, "/", &[("apikey", "s3cret"), ("apikey", "other")])),
            DUPLICATE_KEY
        );
    }

    #[test]
    fn places_and_names_can_be_restricted() {
        let header_only = plugin(serde_json::json!({ "key_in_query": false })).unwrap();
        assert_eq!(message(&run(&header_only, "/?apikey=s3cret", &[])), NO_KEY);
        let query_only = plugin(serde_json::json!({ "key_in_header": false })).unwrap();
        assert_eq!(
            message(&run(&query_only, "/", &[("apikey", "s3cret")])),
            NO_KEY
        );
        let names = plugin(serde_json::json!({ "key_names": ["x-key", "token"] })).unwrap();
        assert!(run(&names, "/?token=s3cret", &[]).exit.is_none());
        assert!(run(&names, "/", &[("x-key", "s3cret")]).exit.is_none());
        assert_eq!(message(&run(&names, "/?apikey=s3cret", &[])), NO_KEY);
    }

    #[test]
    fn hide_credentials_strips_header_and_query_argument() {
        let shown = plugin(serde_json::json!({})).unwrap();
        let h = run(&shown, "/a?apikey=s3cret&b=2", &[("apikey", "s3cret")]);
        assert_eq!(h.upstream_target, "/a?apikey=s3cret&b=2");
        assert!(h.upstream_headers.contains_key("apikey"));

        let hidden = plugin(serde_json::json!({ "hide_credentials": true })).unwrap();
        let h = run(&hidden, "/a?b=2&apikey=s3cret", &[("x", "1")]);
        assert!(h.exit.is_none());
        assert_eq!(h.upstream_target, "/a?b=2");
        let h = run(&hidden, "/a", &[("apikey", "s3cret"), ("x", "1")]);
        assert!(!h.upstream_headers.contains_key("apikey"));
        assert!(h.upstream_headers.contains_key("x"));
    }

    #[test]
    fn a_consumers_key_identifies_it_upstream_and_spoofed_headers_are_removed() {
        use crate::consumer::{ConsumerSpec, Consumers};
        let consumers = || {
            Consumers::new(vec![ConsumerSpec {
                username: Some("alice".into()),
                keys: vec![("alice-key".into(), None)],
                ..Default::default()
            }])
            .unwrap()
        };
        let p = plugin(serde_json::json!({})).unwrap();
        let spoofed = [("apikey", "alice-key"), ("x-consumer-custom-id", "admin")];
        let mut h = HandshakeHarness::new("/", &spoofed).consumers(consumers());
        h.run(&p);
        assert!(h.exit.is_none());
        let who = h.authenticated.as_ref().expect("authenticated");
        assert_eq!(who.consumer.username.as_deref(), Some("alice"));
        assert_eq!(h.upstream_headers["x-consumer-id"], "alice");
        assert_eq!(h.upstream_headers["x-consumer-username"], "alice");
        assert_eq!(h.upstream_headers["x-credential-identifier"], "alice:key-1");
        assert!(!h.upstream_headers.contains_key("x-consumer-custom-id"));

        // An inline key: no consumer, and no consumer headers either.
        let mut h = HandshakeHarness::new("/", &[("apikey", "s3cret"), ("x-consumer-id", "x")])
            .consumers(consumers());
        h.run(&p);
        assert!(h.exit.is_none() && h.authenticated.is_none());
        assert!(!h.upstream_headers.contains_key("x-consumer-id"));

        let mut h = HandshakeHarness::new("/", &[("apikey", "bob-key")]).consumers(consumers());
        h.run(&p);
        assert_eq!(message(&h), INVALID_KEY);
    }

    #[test]
    fn anonymous_serves_a_client_without_a_valid_key_as_that_consumer() {
        use crate::consumer::{ConsumerSpec, Consumers};
        let consumers = || {
            Consumers::new(vec![ConsumerSpec {
                username: Some("guest".into()),
                ..Default::default()
            }])
            .unwrap()
        };
        let p = plugin(serde_json::json!({ "anonymous": "guest" })).unwrap();
        for target in ["/", "/?apikey=wrong"] {
            let mut h = HandshakeHarness::new(target, &[("x-credential-identifier", "forged")])
                .consumers(consumers());
            h.run(&p);
            assert!(h.exit.is_none(), "{target}");
            let who = h.authenticated.as_ref().expect("served as guest");
            assert_eq!(who.consumer.id, "guest");
            assert!(who.credential.is_none());
            assert_eq!(h.upstream_headers["x-anonymous-consumer"], "true");
            assert_eq!(h.upstream_headers["x-consumer-username"], "guest");
            assert!(!h.upstream_headers.contains_key("x-credential-identifier"));
        }
        // A valid key still identifies its own holder, not the anonymous one.
        let mut h = HandshakeHarness::new("/?apikey=s3cret", &[]).consumers(consumers());
        h.run(&p);
        assert!(h.exit.is_none() && h.authenticated.is_none());
    }

    #[test]
    fn an_anonymous_consumer_that_does_not_exist_is_a_plugin_error() {
        let p = plugin(serde_json::json!({ "anonymous": "ghost" })).unwrap();
        let mut h = HandshakeHarness::new("/", &[]);
        let err = h.try_run(&p).unwrap_err();
        assert!(err
            .to_string()
            .contains("anonymous consumer \"ghost\" is not configured"));
    }
}
