//! Lua plugins with Kong's WebSocket PDK, so that a Kong WebSocket plugin's
//! handler runs unchanged.
//!
//! A plugin `NAME` is the directory `DIR/NAME` of one of the
//! `[gateway] lua_plugin_dirs`, in Kong's layout: `handler.lua` returns a
//! table with `PRIORITY`, `VERSION` and any of `ws_handshake(self, conf)`
//! (or `access`), `ws_client_frame(self, conf, type, data, status)`,
//! `ws_upstream_frame(self, conf, type, data, status)` and `ws_close(self,
//! conf)` (or `log`); an optional `schema.lua` declares its `config` record,
//! checked (and its defaults filled in) at configuration load. It is enabled
//! like a built-in: `[[plugins]] name = "NAME"  config = { … }`. Kong's
//! `pre-function` and `post-function` (inline chunks per phase) are Lua
//! plugins that come with the gateway.
//!
//! Inside the phases, the `kong` global offers `kong.websocket.client.*` and
//! `kong.websocket.upstream.*` (`get_frame`, `set_frame_data`, `set_status`,
//! `drop_frame`, `close`, `set_max_payload_size`), `kong.request.*`,
//! `kong.client.get_ip`, `kong.response.exit`,
//! `kong.service.request.set_header`/`clear_header`, `kong.log.*`,
//! `kong.ctx.plugin`, `kong.ctx.shared` and `kong.json`; `require("cjson")`
//! and `require("cjson.safe")` work too.
//!
//! # Why Lua 5.4 and not LuaJIT
//!
//! The gateway must stop a runaway handler (an instruction budget per call)
//! and bound each state's memory. mlua enforces the budget with a count
//! hook, and LuaJIT does not call hooks from JIT-compiled code: a hot
//! `while true do end` is compiled to a trace and would never be
//! interrupted. Turning the JIT off to keep the hooks would leave LuaJIT's
//! interpreter, with nothing gained over Lua's. Lua 5.4 runs every
//! instruction through the interpreter, so the hook always fires; mlua caps
//! its memory through its own allocator; it has real integers (sizes, ids and
//! close codes stay exact) and builds from C sources with the `cc` crate
//! alone (the `vendored` feature), so a fresh machine needs nothing
//! installed. Kong's handlers are written for LuaJIT's 5.1 dialect; what they
//! use of it runs on 5.4 (`unpack` is kept as an alias of `table.unpack`).
//!
//! # Safety
//!
//! - Only the `string`, `table`, `math`, `utf8` and `coroutine` libraries and
//!   the safe base functions; `load` takes text only (Lua does not verify
//!   binary chunks); `require` gives `cjson`, `cjson.safe`,
//!   `kong.db.schema.typedefs` and the plugin's own `kong.plugins.NAME.*`
//!   files. `[gateway] lua_unsafe = true` adds `os`, `io` and Lua's own
//!   `require` for every Lua plugin; native modules are never loadable.
//! - Every call into a plugin may run `lua_max_instructions` instructions
//!   (default 1,000,000, enforced within 1%); past that it fails like any
//!   Lua error: the connection is closed with 1011 on both sides and the
//!   error is logged with the plugin's name, file and line. Time spent inside
//!   one C function (a huge `string.rep`, a pathological pattern) is not
//!   counted; the memory cap bounds the former.
//! - Each Lua state may allocate `lua_max_memory` bytes (default 16 MiB).
//!
//! # Speed
//!
//! States are created at configuration load, one per CPU, each with every
//! plugin loaded, and reused for every call: a connection is pinned to one
//! state, whose table of per-connection data (`kong.ctx`) drops the
//! connection's entry when it ends. A frame call copies the payload into Lua
//! once and out once if the handler replaced it.

mod inline;
mod json;
mod loader;
mod ngx;
mod ngx_re;
mod pdk;
mod plugin;
mod runtime;
mod sandbox;
mod schema;
mod shared_dict;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::cidr::Cidr;
use crate::config::GatewaySection;
use crate::plugin::{Plugin, PluginConfigError, Registry};
use plugin::LuaPlugin;
use runtime::{LoadError, Runtime};
use sandbox::Limits;

/// Limits and permissions of Lua plugins (`[gateway] lua_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuaOptions {
    /// Instructions one call into a plugin may run.
    pub max_instructions: u64,
    /// Bytes each Lua state may allocate.
    pub max_memory: usize,
    /// Give plugins `os`, `io` and Lua's own `require`.
    pub unsafe_libs: bool,
    /// `ngx.shared` dictionaries: name and size in bytes.
    pub shared_dicts: Vec<(String, usize)>,
    /// The addresses `kong.ip.is_trusted` trusts (`[gateway] trusted_ips`).
    pub trusted_ips: Vec<Cidr>,
}

impl Default for LuaOptions {
    fn default() -> Self {
        LuaOptions {
            max_instructions: 1_000_000,
            max_memory: 16 << 20,
            unsafe_libs: false,
            shared_dicts: Vec::new(),
            trusted_ips: Vec::new(),
        }
    }
}

/// The smallest accepted `lua_max_instructions`: below it even small
/// handlers fail, which is a typo rather than a policy.
pub const MIN_INSTRUCTIONS: u64 = 1_000;
/// The smallest accepted `lua_max_memory`: the libraries and the `kong` API
/// alone take a few hundred KiB.
pub const MIN_MEMORY: u64 = 1 << 20;

/// The smallest `lua_shared_dicts` size (nginx's is 8k too).
const MIN_DICT: usize = 8 << 10;
/// The largest: a dictionary lives in the process's memory.
const MAX_DICT: usize = 1 << 30;

/// A Lua plugin directory that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lua_plugin_dirs: {message}")]
pub struct LuaDirError {
    /// Which of the directories (0-based).
    pub index: usize,
    /// Why.
    pub message: String,
}

/// Adds every plugin found in `dirs` (`DIR/NAME/handler.lua`) to `registry`,
/// and Kong's `pre-function` and `post-function` (inline Lua, see
/// `inline.rs`) unless a directory has its own; the first directory with a
/// name wins, and a Lua plugin replaces a built-in of the same name. Unreadable directories are reported, and the
/// plugins of the others are still added.
///
/// Nothing is loaded until a plugin is configured: building one (through
/// [`Registry::build`]) loads its handler and schema into the Lua states,
/// which are created then, once for all the plugins registered here.
///
/// ```no_run
/// use frameway_gateway::lua::{register, LuaOptions};
/// use frameway_gateway::plugin::Registry;
///
/// let mut registry = Registry::with_builtins();
/// register(&mut registry, &["plugins".into()], LuaOptions::default()).unwrap();
/// let plugin = registry.build("redact-field", &serde_json::json!({ "fields": ["password"] }));
/// ```
pub fn register(
    registry: &mut Registry,
    dirs: &[PathBuf],
    options: LuaOptions,
) -> Result<(), Vec<LuaDirError>> {
    let (mut plugins, errors) = loader::discover(dirs);
    for (name, files) in inline::plugins() {
        plugins.entry(name).or_insert(files);
    }
    let names: Vec<String> = plugins.keys().cloned().collect();
    let limits = Limits {
        max_instructions: options.max_instructions,
        max_memory: options.max_memory,
        unsafe_libs: options.unsafe_libs,
        dicts: options
            .shared_dicts
            .iter()
            .map(|(name, size)| (name.clone(), shared_dict::declare(name, *size)))
            .collect(),
        trusted_ips: options.trusted_ips.into(),
    };
    let starter = Arc::new(Starter {
        plugins,
        limits,
        started: OnceLock::new(),
    });
    for name in names {
        if registry.contains(&name) {
            tracing::warn!("the Lua plugin {name:?} replaces the built-in plugin of that name");
        }
        let starter = starter.clone();
        let plugin_name = name.clone();
        let inline = starter.plugins[&name].built_in.is_some() && inline::is_inline(&name);
        registry.register(
            &name,
            Arc::new(move |config: &serde_json::Value| {
                if inline {
                    inline::check(config).map_err(PluginConfigError)?;
                }
                let refused = |e: LoadError| PluginConfigError(e.to_string());
                let runtime = starter.runtime().map_err(refused)?;
                let def = runtime.definition(&plugin_name).map_err(refused)?;
                let instance = runtime.instantiate(&def, config).map_err(refused)?;
                Ok(Arc::new(LuaPlugin::new(runtime, def, instance)) as Arc<dyn Plugin>)
            }),
        );
    }
    let errors: Vec<LuaDirError> = errors
        .into_iter()
        .map(|(index, message)| LuaDirError { index, message })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The Lua states of one [`register`] call, created when the first of its
/// plugins is configured and shared by all of them.
struct Starter {
    plugins: BTreeMap<String, loader::PluginFiles>,
    limits: Limits,
    started: OnceLock<Result<Arc<Runtime>, LoadError>>,
}

impl Starter {
    fn runtime(&self) -> Result<Arc<Runtime>, LoadError> {
        self.started
            .get_or_init(|| {
                // One state per CPU: as many as calls can run at once.
                let states = std::thread::available_parallelism().map_or(1, |n| n.get());
                Runtime::new(self.plugins.clone(), self.limits.clone(), states).map(Arc::new)
            })
            .clone()
    }
}

/// A problem with the `lua_*` keys, with the span of the value at fault.
pub(crate) type LocatedError = (Option<Range<usize>>, String);

/// The configuration loader's hook: `registry` plus the Lua plugins of
/// `[gateway] lua_plugin_dirs` (relative to `base`, the configuration
/// file's directory), and every problem with the `lua_*` keys, located.
pub(crate) fn with_config(
    registry: &Registry,
    base: &Path,
    gateway: &GatewaySection,
) -> (Registry, Vec<LocatedError>) {
    let mut registry = registry.clone();
    let mut errors = Vec::new();
    // A bad value is reported and the default used, so that the plugins
    // are still found and checked (the configuration is refused anyway).
    let defaults = LuaOptions::default();
    let instructions = &gateway.lua_max_instructions;
    let max_instructions = if *instructions.get_ref() < MIN_INSTRUCTIONS {
        errors.push((
            Some(instructions.span()),
            format!("lua_max_instructions must be at least {MIN_INSTRUCTIONS}"),
        ));
        defaults.max_instructions
    } else {
        *instructions.get_ref()
    };
    let memory = &gateway.lua_max_memory;
    let max_memory = match usize::try_from(*memory.get_ref()) {
        Ok(bytes) if *memory.get_ref() >= MIN_MEMORY => bytes,
        _ => {
            errors.push((
                Some(memory.span()),
                format!("lua_max_memory must be at least {MIN_MEMORY} bytes"),
            ));
            defaults.max_memory
        }
    };
    let dirs: Vec<PathBuf> = gateway
        .lua_plugin_dirs
        .iter()
        .map(|d| base.join(d.get_ref()))
        .collect();
    let mut shared_dicts = Vec::new();
    for (name, size) in &gateway.lua_shared_dicts {
        let bytes = match size.get_ref() {
            serde_json::Value::String(text) => shared_dict::parse_size(text),
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
            _ => None,
        };
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match bytes {
            Some(bytes) if valid_name && (MIN_DICT..=MAX_DICT).contains(&bytes) => {
                shared_dicts.push((name.clone(), bytes))
            }
            _ if !valid_name => errors.push((
                Some(size.span()),
                format!("lua_shared_dicts: {name:?} is not a name (letters, digits, _ and -)"),
            )),
            _ => errors.push((
                Some(size.span()),
                format!(
                    "lua_shared_dicts.{name}: the size must be from 8k to 1024m (bytes, or nginx's k and m units)"
                ),
            )),
        }
    }
    let mut trusted_ips = Vec::new();
    for range in &gateway.trusted_ips {
        match Cidr::parse(range.get_ref()) {
            Ok(cidr) => trusted_ips.push(cidr),
            Err(e) => errors.push((Some(range.span()), format!("trusted_ips: {e}"))),
        }
    }
    let options = LuaOptions {
        max_instructions,
        max_memory,
        unsafe_libs: gateway.lua_unsafe,
        shared_dicts,
        trusted_ips,
    };
    if let Err(dir_errors) = register(&mut registry, &dirs, options) {
        for e in dir_errors {
            let span = gateway.lua_plugin_dirs[e.index].span();
            errors.push((Some(span), e.to_string()));
        }
    }
    (registry, errors)
}
