//! The built-in plugins, under Kong's names where Kong has one.

mod size_limit;

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::plugin::{Plugin, PluginConfigError, PluginFactory, Registry};

pub use size_limit::SizeLimit;

/// Registers every built-in plugin.
pub(crate) fn register_builtins(registry: &mut Registry) {
    registry.register(SizeLimit::NAME, factory(SizeLimit::new));
}

/// A factory that deserialises the plugin's typed configuration (unknown
/// keys are errors) and builds it.
fn factory<C, P>(build: fn(C) -> Result<P, PluginConfigError>) -> PluginFactory
where
    C: DeserializeOwned + 'static,
    P: Plugin,
{
    Arc::new(move |value: &serde_json::Value| {
        let config: C =
            serde_json::from_value(value.clone()).map_err(|e| PluginConfigError(e.to_string()))?;
        Ok(Arc::new(build(config)?) as Arc<dyn Plugin>)
    })
}
