//! Finding plugins on disk (Kong's layout: `DIR/NAME/handler.lua` and an
//! optional `DIR/NAME/schema.lua`), loading Lua files as text chunks named
//! after their path (so errors read `plugins/NAME/handler.lua:12: …`), and
//! the restricted `require`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mlua::{ChunkMode, Function, Lua, Table, Value};

use super::json::Modules;

/// A plugin found in one of the `lua_plugin_dirs`, or one built in.
#[derive(Debug, Clone)]
pub(crate) struct PluginFiles {
    /// `DIR/NAME` (`<built-in>/NAME` for a built-in one).
    pub(crate) dir: PathBuf,
    /// A built-in plugin's handler and schema, in place of files.
    pub(crate) built_in: Option<BuiltIn>,
}

/// The sources of a plugin that comes with the gateway.
#[derive(Debug, Clone)]
pub(crate) struct BuiltIn {
    pub(crate) handler: String,
    pub(crate) schema: String,
}

impl PluginFiles {
    /// A plugin of a `lua_plugin_dirs` directory.
    pub(crate) fn in_dir(dir: PathBuf) -> Self {
        PluginFiles {
            dir,
            built_in: None,
        }
    }

    /// `DIR/NAME/handler.lua`.
    pub(crate) fn handler(&self) -> PathBuf {
        self.dir.join("handler.lua")
    }

    /// `DIR/NAME/schema.lua`, if there is one.
    pub(crate) fn schema(&self) -> Option<PathBuf> {
        Some(self.dir.join("schema.lua")).filter(|p| self.built_in.is_some() || p.is_file())
    }

    /// Compiles the plugin's `path` (its handler or its schema).
    pub(crate) fn load(&self, lua: &Lua, path: &Path) -> mlua::Result<Function> {
        let Some(built_in) = &self.built_in else {
            return load_file(lua, path);
        };
        let source = if path.ends_with("schema.lua") {
            &built_in.schema
        } else {
            &built_in.handler
        };
        lua.load(source.as_str())
            .set_name(format!("@{}", path.display()))
            .set_mode(ChunkMode::Text)
            .into_function()
    }
}

/// The plugins by name, found in `dirs`; the first directory that has a
/// name wins. Unreadable directories are returned as (index, message).
pub(crate) fn discover(dirs: &[PathBuf]) -> (BTreeMap<String, PluginFiles>, Vec<(usize, String)>) {
    let mut found = BTreeMap::new();
    let mut errors = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                errors.push((index, format!("cannot read {}: {e}", dir.display())));
                continue;
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("handler.lua").is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        for name in names {
            found
                .entry(name.clone())
                .or_insert_with(|| PluginFiles::in_dir(dir.join(&name)));
        }
    }
    (found, errors)
}

/// Compiles a Lua file as a text chunk named after its path.
fn load_file(lua: &Lua, path: &Path) -> mlua::Result<Function> {
    let source = std::fs::read(path)
        .map_err(|e| mlua::Error::runtime(format!("cannot read {}: {e}", path.display())))?;
    lua.load(source)
        .set_name(format!("@{}", path.display()))
        .set_mode(ChunkMode::Text)
        .into_function()
}

/// Kong's `kong.db.schema.typedefs`, as far as a `config` record needs it:
/// the common typed definitions, and an untyped field for anything else, so
/// that Kong schemas load unchanged.
const TYPEDEFS: &str = r#"
local typedefs = {
  port = { type = "integer", between = { 0, 65535 } },
  timeout = { type = "integer", between = { 0, 2147483646 } },
  host = { type = "string" },
  ip = { type = "string" },
  cidr = { type = "string" },
  url = { type = "string" },
  path = { type = "string" },
  header_name = { type = "string" },
  no_consumer = { type = "foreign" },
  no_route = { type = "foreign" },
  no_service = { type = "foreign" },
}
return setmetatable(typedefs, { __index = function() return {} end })
"#;

/// Replaces `require` with one that gives `cjson`, `cjson.safe`,
/// `kong.db.schema.typedefs` and the plugins' own modules
/// (`kong.plugins.NAME.MODULE` is `DIR/NAME/MODULE.lua`), and, with
/// `unsafe_libs`, anything Lua's own `require` finds.
pub(crate) fn install_require(
    lua: &Lua,
    plugins: Arc<BTreeMap<String, PluginFiles>>,
    json: &Modules,
    unsafe_libs: bool,
) -> mlua::Result<()> {
    let loaded = lua.create_table()?;
    loaded.set("cjson", &json.cjson)?;
    loaded.set("cjson.safe", &json.safe)?;
    let typedefs: Table = lua.load(TYPEDEFS).set_name("=typedefs").eval()?;
    loaded.set("kong.db.schema.typedefs", typedefs)?;
    let fallback: Option<Function> = if unsafe_libs {
        lua.globals().get("require")?
    } else {
        None
    };
    let require = lua.create_function(move |lua, name: String| {
        let cached: Value = loaded.raw_get(name.as_str())?;
        if !cached.is_nil() {
            return Ok(cached);
        }
        if let Some(path) = plugin_module(&plugins, &name) {
            let module: Value = load_file(lua, &path)?.call(name.as_str())?;
            let module = if module.is_nil() {
                Value::Boolean(true)
            } else {
                module
            };
            loaded.raw_set(name.as_str(), &module)?;
            return Ok(module);
        }
        match &fallback {
            Some(require) => require.call(name),
            None => Err(mlua::Error::runtime(format!(
                "module '{name}' not found: Lua plugins may require cjson, cjson.safe and \
                 kong.plugins.NAME.* modules of their own (set lua_unsafe = true in [gateway] \
                 for others)"
            ))),
        }
    })?;
    lua.globals().set("require", require)
}

/// `kong.plugins.NAME.a.b` → `DIR/NAME/a/b.lua`, when that file exists.
fn plugin_module(plugins: &BTreeMap<String, PluginFiles>, name: &str) -> Option<PathBuf> {
    let rest = name.strip_prefix("kong.plugins.")?;
    let (plugin, module) = rest.split_once('.')?;
    let files = plugins.get(plugin).filter(|f| f.built_in.is_none())?;
    if module
        .split('.')
        .any(|part| part.is_empty() || part.contains(['/', '\\']))
    {
        return None;
    }
    let path = files.dir.join(format!("{}.lua", module.replace('.', "/")));
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_modules_resolve_inside_their_directory_only() {
        let dir = std::env::temp_dir().join(format!("frameway-loader-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("p/util")).unwrap();
        std::fs::write(dir.join("p/handler.lua"), "return {}").unwrap();
        std::fs::write(dir.join("p/util/strings.lua"), "return {}").unwrap();
        let (plugins, errors) = discover(&[dir.clone(), dir.join("missing")]);
        assert_eq!(plugins.keys().collect::<Vec<_>>(), ["p"]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 1);
        assert_eq!(
            plugin_module(&plugins, "kong.plugins.p.util.strings"),
            Some(dir.join("p/util/strings.lua"))
        );
        assert_eq!(plugin_module(&plugins, "kong.plugins.p..util"), None);
        assert_eq!(plugin_module(&plugins, "kong.plugins.q.handler"), None);
        assert_eq!(plugin_module(&plugins, "os"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
