//! Turning a plugin entry of the configuration into a plugin instance.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Plugin;

/// Why a plugin's configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PluginConfigError(pub String);

/// Builds a plugin from its `config` table (as JSON).
pub type PluginFactory =
    Arc<dyn Fn(&serde_json::Value) -> Result<Arc<dyn Plugin>, PluginConfigError> + Send + Sync>;

/// The plugins the gateway knows by name: the built-ins, plus any
/// registered by the embedding program (or loaded from Lua).
///
/// ```
/// use std::sync::Arc;
/// use frameway_gateway::plugin::{Plugin, Registry};
///
/// struct Noop;
/// impl Plugin for Noop {
///     fn name(&self) -> &str { "noop" }
///     // No frame phases: its routes stay on the fast path.
///     fn handles_frames(&self) -> bool { false }
/// }
///
/// let mut registry = Registry::with_builtins();
/// registry.register("noop", Arc::new(|_config| Ok(Arc::new(Noop) as Arc<dyn Plugin>)));
/// assert!(registry.build("noop", &serde_json::json!({})).is_ok());
/// assert!(registry.build("nope", &serde_json::json!({})).is_err());
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, PluginFactory>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The built-in plugins.
    pub fn with_builtins() -> Self {
        let mut registry = Registry::new();
        crate::plugins::register_builtins(&mut registry);
        registry
    }

    /// Adds (or replaces) a plugin by name.
    pub fn register(&mut self, name: &str, factory: PluginFactory) {
        self.factories.insert(name.to_owned(), factory);
    }

    /// Whether a plugin of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The known plugin names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Builds the plugin `name` with `config`.
    pub fn build(
        &self,
        name: &str,
        config: &serde_json::Value,
    ) -> Result<Arc<dyn Plugin>, PluginConfigError> {
        let factory = self.factories.get(name).ok_or_else(|| {
            let known: Vec<_> = self.names().collect();
            PluginConfigError(format!(
                "unknown plugin {name:?} (known: {})",
                known.join(", ")
            ))
        })?;
        factory(config)
    }
}
