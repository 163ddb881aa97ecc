//! Consumers: who a client is, once an authentication plugin has recognised
//! one of its credentials (Kong's consumers and their key-auth
//! credentials).
//!
//! ```toml
//! [[consumers]]
//! username = "alice"
//! custom_id = "user-17"                 # optional
//! keyauth_credentials = [{ key = "alice-key-1" }, { key = "alice-key-2", id = "laptop" }]
//! ```
//!
//! `key-auth` looks a presented key up here ([`Consumers::by_key`]) and
//! records the consumer and credential for the connection
//! ([`Authenticated`]); plugins after it, native and Lua
//! (`kong.client.get_consumer()`), and limits keyed by consumer or
//! credential, read them from [`crate::plugin::ConnectionInfo::consumer`].

use std::collections::HashMap;
use std::sync::Arc;

/// A consumer: a user or application the gateway recognises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its identifier, sent upstream as `X-Consumer-ID`: the configured
    /// `id`, else the username, else the custom id.
    pub id: String,
    /// Its username (`X-Consumer-Username`).
    pub username: Option<String>,
    /// An identifier from another system (`X-Consumer-Custom-ID`).
    pub custom_id: Option<String>,
}

/// A consumer's key-auth credential, without its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Its identifier, sent upstream as `X-Credential-Identifier`: the
    /// configured `id`, else `CONSUMER-ID:key-N` (N counting from 1 in
    /// the consumer's list); never the key itself.
    pub id: String,
    /// Whose credential it is.
    pub consumer: Arc<Consumer>,
}

/// Who a connection's client is, as an authentication plugin found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The consumer.
    pub consumer: Arc<Consumer>,
    /// The credential it presented; `None` for the anonymous consumer a
    /// plugin falls back to (key-auth's `anonymous`).
    pub credential: Option<Arc<Credential>>,
}

/// Every configured consumer, and their credentials by key.
#[derive(Debug, Default)]
pub struct Consumers {
    list: Vec<Arc<Consumer>>,
    by_key: HashMap<Vec<u8>, Arc<Credential>>,
}

/// A consumer as configured, before [`Consumers::new`] checks it.
#[derive(Debug, Clone, Default)]
pub struct ConsumerSpec {
    /// `id`.
    pub id: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `custom_id`.
    pub custom_id: Option<String>,
    /// `keyauth_credentials`: (key, id) pairs.
    pub keys: Vec<(String, Option<String>)>,
}

/// Why a set of consumers cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// Neither a username nor a custom id.
    #[error("consumer {0}: needs a username or a custom_id")]
    Anonymous(usize),
    /// Two consumers with one identifier (id, username or custom id).
    #[error("consumers: {field} {value:?} is used twice")]
    Duplicate {
        /// `id`, `username` or `custom_id`.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// An empty key.
    #[error("consumer {0:?}: keyauth_credentials: a key cannot be empty")]
    EmptyKey(String),
    /// One key given to two credentials.
    #[error(
        "consumers {first:?} and {second:?} share a key-auth key: keys identify one credential"
    )]
    SharedKey {
        /// The consumer that has it first.
        first: String,
        /// The consumer that has it again.
        second: String,
    },
}

impl Consumers {
    /// Checks and indexes `specs`: each consumer needs a username or a
    /// custom id, identifiers are unique, and every key names one
    /// credential.
    ///
    /// ```
    /// use frameway_gateway::consumer::{ConsumerSpec, Consumers};
    ///
    /// let consumers = Consumers::new(vec![ConsumerSpec {
    ///     username: Some("alice".into()),
    ///     keys: vec![("s3cret".into(), None)],
    ///     ..Default::default()
    /// }])
    /// .unwrap();
    /// let credential = consumers.by_key(b"s3cret").unwrap();
    /// assert_eq!(credential.consumer.id, "alice");
    /// assert_eq!(credential.id, "alice:key-1");
    /// assert!(consumers.by_key(b"guess").is_none());
    /// ```
    pub fn new(specs: Vec<ConsumerSpec>) -> Result<Self, ConsumerError> {
        let mut consumers = Consumers::default();
        let mut seen: HashMap<(&'static str, String), ()> = HashMap::new();
        let mut owner: HashMap<Vec<u8>, String> = HashMap::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let id = spec
                .id
                .clone()
                .or_else(|| spec.username.clone())
                .or_else(|| spec.custom_id.clone())
                .ok_or(ConsumerError::Anonymous(index + 1))?;
            for (field, value) in [
                ("id", Some(&id)),
                ("username", spec.username.as_ref()),
                ("custom_id", spec.custom_id.as_ref()),
            ] {
                let Some(value) = value else { continue };
                if seen.insert((field, value.clone()), ()).is_some() {
                    return Err(ConsumerError::Duplicate {
                        field,
                        value: value.clone(),
                    });
                }
            }
            let consumer = Arc::new(Consumer {
                id,
                username: spec.username,
                custom_id: spec.custom_id,
            });
            for (n, (key, credential_id)) in spec.keys.into_iter().enumerate() {
                if key.is_empty() {
                    return Err(ConsumerError::EmptyKey(consumer.id.clone()));
                }
                if let Some(first) = owner.insert(key.clone().into_bytes(), consumer.id.clone()) {
                    return Err(ConsumerError::SharedKey {
                        first,
                        second: consumer.id.clone(),
                    });
                }
                let credential = Credential {
                    id: credential_id.unwrap_or_else(|| format!("{}:key-{}", consumer.id, n + 1)),
                    consumer: consumer.clone(),
                };
                consumers
                    .by_key
                    .insert(key.into_bytes(), Arc::new(credential));
            }
            consumers.list.push(consumer);
        }
        Ok(consumers)
    }

    /// The credential whose key is `key`, if any.
    pub fn by_key(&self, key: &[u8]) -> Option<&Arc<Credential>> {
        self.by_key.get(key)
    }

    /// The consumer whose id or username is `name` (how Kong's
    /// `anonymous` names one).
    pub fn find(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.list.iter().find(|c| c.id == name).or_else(|| {
            self.list
                .iter()
                .find(|c| c.username.as_deref() == Some(name))
        })
    }

    /// Every consumer, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Consumer>> {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(username: &str, keys: &[&str]) -> ConsumerSpec {
        ConsumerSpec {
            username: Some(username.into()),
            keys: keys.iter().map(|k| (k.to_string(), None)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_consumer_is_identified_by_its_id_else_its_username_else_its_custom_id() {
        let consumers = Consumers::new(vec![
            ConsumerSpec {
                id: Some("4a1c".into()),
                username: Some("alice".into()),
                keys: vec![("a".into(), Some("laptop".into()))],
                ..Default::default()
            },
            named("bob", &["b1", "b2"]),
            ConsumerSpec {
                custom_id: Some("svc-9".into()),
                keys: vec![("c".into(), None)],
                ..Default::default()
            },
        ])
        .unwrap();
        let alice = consumers.by_key(b"a").unwrap();
        assert_eq!(
            (alice.consumer.id.as_str(), alice.id.as_str()),
            ("4a1c", "laptop")
        );
        assert_eq!(consumers.by_key(b"b2").unwrap().id, "bob:key-2");
        assert_eq!(consumers.by_key(b"c").unwrap().consumer.id, "svc-9");
        assert_eq!(consumers.iter().count(), 3);
        assert_eq!(consumers.find("4a1c").unwrap().id, "4a1c");
        assert_eq!(consumers.find("alice").unwrap().id, "4a1c");
        assert!(consumers.find("nobody").is_none());
    }

    #[test]
    fn ambiguous_consumers_and_keys_are_refused() {
        assert_eq!(
            Consumers::new(vec![ConsumerSpec::default()]).unwrap_err(),
            ConsumerError::Anonymous(1)
        );
        assert!(matches!(
            Consumers::new(vec![named("a", &[]), named("a", &[])]).unwrap_err(),
            ConsumerError::Duplicate { field: "id", .. }
        ));
        assert_eq!(
            Consumers::new(vec![named("a", &["k"]), named("b", &["k"])]).unwrap_err(),
            ConsumerError::SharedKey {
                first: "a".into(),
                second: "b".into()
            }
        );
        assert_eq!(
            Consumers::new(vec![named("a", &[""])]).unwrap_err(),
            ConsumerError::EmptyKey("a".into())
        );
    }
}
