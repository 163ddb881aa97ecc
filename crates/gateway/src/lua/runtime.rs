//! The pool of Lua states shared by every Lua plugin of one configuration.
//!
//! There are as many states as CPUs, each loaded with every plugin. Each
//! thread that runs plugins uses one state (the first threads to ask get
//! states of their own), and a connection never leaves its worker's thread:
//! so with one worker per CPU (the default) each worker has a state of its
//! own, its lock is never contended, and a connection's `kong.ctx` tables
//! live in one state (`kong.ctx.shared` is one table for all its Lua
//! plugins). States are created once per configuration, at load and at
//! every reload, never per connection or frame.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use frameway::sync::lock;

use mlua::{Function, Lua, Table, Value};

use super::json::{self, Modules};
use super::loader::{self, PluginFiles};
use super::ngx;
use super::pdk::{self, Call, Current};
use super::sandbox::{self, Budget, BudgetExceeded, Limits};
use super::schema::Schema;
use crate::plugin::{FrameType, LuaLimit, PluginError};

/// Why a Lua plugin could not be loaded or configured: what the gateway's
/// configuration check reports, naming the file (and line, where Lua knows
/// it).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum LoadError {
    /// A Lua state could not be created.
    #[error("cannot start Lua: {0}")]
    Start(String),
    /// No `lua_plugins_dir` has a plugin of this name.
    #[error("no Lua plugin {0:?}")]
    Unknown(String),
    /// Running a file raised an error (its syntax, or its code).
    #[error("{0}")]
    Lua(String),
    /// A handler or schema file returned something other than a table.
    #[error("{}: must return the {what} table, returned {found}", path.display())]
    NotATable {
        path: PathBuf,
        what: &'static str,
        found: &'static str,
    },
    /// A phase handler that is not a function.
    #[error("{}: {key} must be a function, is a {found}", path.display())]
    NotAFunction {
        path: PathBuf,
        key: &'static str,
        found: &'static str,
    },
    /// What Kong requires of a handler table: an integer `PRIORITY` and a
    /// string `VERSION`.
    #[error("{}: {field} must be {expected}", path.display())]
    Declaration {
        path: PathBuf,
        field: &'static str,
        expected: &'static str,
    },
    /// The plugin's `schema.lua` is not a schema Frameway can check.
    #[error("{}: {message}", path.display())]
    Schema { path: PathBuf, message: String },
    /// A configuration the plugin's schema refuses.
    #[error("{0}")]
    Config(String),
}

impl From<&mlua::Error> for LoadError {
    fn from(err: &mlua::Error) -> Self {
        LoadError::Lua(describe(err))
    }
}

/// Which phase functions a handler module defines.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Phases {
    pub(crate) handshake: bool,
    pub(crate) client_frame: bool,
    pub(crate) upstream_frame: bool,
    pub(crate) close: bool,
}

/// A loaded plugin: what its handler declared, and its schema.
#[derive(Debug)]
pub(crate) struct Definition {
    pub(crate) name: Arc<str>,
    pub(crate) priority: i32,
    pub(crate) phases: Phases,
    schema: Option<Schema>,
}

/// A handler module's functions in one state.
#[derive(Clone)]
struct Module {
    handler: Table,
    handshake: Option<Function>,
    client_frame: Option<Function>,
    upstream_frame: Option<Function>,
    close: Option<Function>,
}

/// A configured plugin in one state: its module and its `conf` table.
pub(crate) struct Instance {
    pub(crate) handler: Table,
    pub(crate) conf: Table,
    pub(crate) handshake: Option<Function>,
    pub(crate) client_frame: Option<Function>,
    pub(crate) upstream_frame: Option<Function>,
    pub(crate) close: Option<Function>,
}

/// One Lua state and what lives in it.
pub(crate) struct Vm {
    pub(crate) lua: Lua,
    budget: Budget,
    /// `kong.ctx` data by connection id.
    conns: Table,
    /// Calls a handler as a connection's call (see [`pdk::Ctx`]).
    enter: Function,
    array_mt: Table,
    modules: HashMap<String, Module>,
    instances: HashMap<usize, Instance>,
    /// The frame type names, made once rather than per call.
    kinds: [mlua::String; 6],
}

impl Vm {
    fn new(plugins: &Arc<BTreeMap<String, PluginFiles>>, limits: &Limits) -> mlua::Result<Vm> {
        let (lua, budget) = sandbox::new_state(limits)?;
        let Modules {
            cjson,
            safe,
            array_mt,
        } = json::modules(&lua)?;
        let modules = Modules {
            cjson,
            safe,
            array_mt: array_mt.clone(),
        };
        loader::install_require(&lua, plugins.clone(), &modules, limits.unsafe_libs)?;
        let pdk::Ctx { conns, enter } = pdk::install(&lua, &modules, &limits.trusted_ips)?;
        ngx::install(&lua, &limits.dicts)?;
        lua.set_app_data(Current::default());
        let [a, b, c, d, e, f] = FrameType::ALL.map(|kind| lua.create_string(kind.as_str()));
        let kinds = [a?, b?, c?, d?, e?, f?];
        Ok(Vm {
            kinds,
            lua,
            budget,
            conns,
            enter,
            array_mt,
            modules: HashMap::new(),
            instances: HashMap::new(),
        })
    }

    /// Makes `call` the call in progress, with a fresh instruction budget.
    pub(crate) fn begin(&self, call: Call) {
        self.budget.reset();
        if let Ok(Some(mut current)) = self.lua.try_app_data_mut::<Current>() {
            current.0 = Some(call);
        }
    }

    /// Ends the call in progress and returns what it recorded.
    pub(crate) fn end(&self) -> Option<Call> {
        match self.lua.try_app_data_mut::<Current>() {
            Ok(Some(mut current)) => current.0.take(),
            _ => None,
        }
    }

    /// The Lua string naming a frame type.
    pub(crate) fn kind_name(&self, kind: FrameType) -> &mlua::String {
        let index = kind.index();
        &self.kinds[index]
    }

    /// The function a phase handler is called through:
    /// `enter(conn, slot, handler_function, ...)`, where `slot` is
    /// [`ctx_slot`] of the plugin instance.
    pub(crate) fn enter(&self) -> &Function {
        &self.enter
    }

    /// Runs a loaded chunk (a handler or schema file) in the init phase.
    fn run_init(&self, chunk: Function) -> mlua::Result<Value> {
        self.enter.call((Value::Nil, Value::Nil, chunk))
    }

    /// The instance `index` (created before any connection could use it).
    pub(crate) fn instance(&self, index: usize) -> Option<&Instance> {
        self.instances.get(&index)
    }

    /// Loads a handler module into this state.
    fn load_module(&mut self, name: &Arc<str>, files: &PluginFiles) -> Result<&Module, LoadError> {
        let path = files.handler();
        self.begin(Call::init(name.clone()));
        let loaded = files
            .load(&self.lua, &path)
            .and_then(|chunk| self.run_init(chunk));
        self.end();
        let handler = match loaded.map_err(|e| LoadError::from(&e))? {
            Value::Table(t) => t,
            other => {
                return Err(LoadError::NotATable {
                    path,
                    what: "handler",
                    found: other.type_name(),
                })
            }
        };
        let function = |keys: &[&'static str]| -> Result<Option<Function>, LoadError> {
            for key in keys {
                match handler
                    .get::<Value>(*key)
                    .map_err(|e| LoadError::from(&e))?
                {
                    Value::Nil => continue,
                    Value::Function(f) => return Ok(Some(f)),
                    other => {
                        return Err(LoadError::NotAFunction {
                            path: path.clone(),
                            key,
                            found: other.type_name(),
                        })
                    }
                }
            }
            Ok(None)
        };
        // `access` and `log` are Kong's HTTP names for the same moments.
        let module = Module {
            handshake: function(&["ws_handshake", "access"])?,
            client_frame: function(&["ws_client_frame"])?,
            upstream_frame: function(&["ws_upstream_frame"])?,
            close: function(&["ws_close", "log"])?,
            handler,
        };
        Ok(self.modules.entry(name.to_string()).or_insert(module))
    }

    /// Removes the `kong.ctx` data of ended connections.
    fn forget(&self, ended: &mut Vec<u64>) {
        for conn in ended.drain(..) {
            // Nothing to do if the connection never touched kong.ctx.
            let _ = self.conns.raw_set(conn as i64, Value::Nil);
        }
    }
}

/// The key of instance `instance`'s `kong.ctx.plugin` table in a
/// connection's `kong.ctx` data.
pub(crate) fn ctx_slot(instance: usize) -> i64 {
    instance as i64 + 1
}

/// A state behind its lock, and the connections that ended since it was
/// last used.
struct Slot {
    vm: Mutex<Vm>,
    ended: Mutex<Vec<u64>>,
    has_ended: AtomicBool,
}

/// Every state of one configuration, and what is loaded in them.
pub(crate) struct Runtime {
    slots: Box<[Slot]>,
    plugins: Arc<BTreeMap<String, PluginFiles>>,
    definitions: Mutex<HashMap<String, Arc<Definition>>>,
    next_instance: AtomicUsize,
}

impl Runtime {
    /// `states` Lua states, ready to load `plugins`.
    pub(crate) fn new(
        plugins: BTreeMap<String, PluginFiles>,
        limits: Limits,
        states: usize,
    ) -> Result<Runtime, LoadError> {
        let plugins = Arc::new(plugins);
        let slots = (0..states.max(1))
            .map(|_| {
                Ok(Slot {
                    vm: Mutex::new(Vm::new(&plugins, &limits)?),
                    ended: Mutex::new(Vec::new()),
                    has_ended: AtomicBool::new(false),
                })
            })
            .collect::<mlua::Result<_>>()
            .map_err(|e| LoadError::Start(describe(&e)))?;
        Ok(Runtime {
            slots,
            plugins,
            definitions: Mutex::new(HashMap::new()),
            next_instance: AtomicUsize::new(0),
        })
    }

    /// The index of the state the calling thread uses.
    pub(crate) fn thread_slot(&self) -> usize {
        static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
        }
        THREAD.with(|thread| *thread % self.slots.len())
    }

    /// Runs `f` on the calling thread's state.
    pub(crate) fn with_vm<R>(&self, f: impl FnOnce(&Vm) -> R) -> R {
        let slot = &self.slots[self.thread_slot()];
        let vm = lock(&slot.vm);
        if slot.has_ended.swap(false, Ordering::Relaxed) {
            let mut ended = lock(&slot.ended);
            vm.forget(&mut ended);
        }
        f(&vm)
    }

    /// A connection served with state `slot` ended: its `kong.ctx` data
    /// goes now if the state is free, or at its next use. (The connection's
    /// plugin states may be dropped on another thread than the one that
    /// served it, hence the explicit slot.)
    pub(crate) fn forget(&self, conn: u64, slot: usize) {
        let slot = &self.slots[slot];
        let mut ended = lock(&slot.ended);
        ended.push(conn);
        match slot.vm.try_lock() {
            Ok(vm) => vm.forget(&mut ended),
            Err(_) => slot.has_ended.store(true, Ordering::Relaxed),
        }
    }

    /// Loads plugin `name` into every state (once) and reads its schema.
    pub(crate) fn definition(&self, name: &str) -> Result<Arc<Definition>, LoadError> {
        let mut definitions = lock(&self.definitions);
        if let Some(def) = definitions.get(name) {
            return Ok(def.clone());
        }
        let files = self
            .plugins
            .get(name)
            .ok_or_else(|| LoadError::Unknown(name.to_owned()))?;
        let name: Arc<str> = name.into();
        let mut declared = None;
        for slot in self.slots.iter() {
            let mut vm = lock(&slot.vm);
            let module = vm.load_module(&name, files)?.clone();
            if declared.is_none() {
                declared = Some(read_declarations(&module, &files.handler())?);
            }
        }
        let (priority, phases) = declared.expect("there is at least one state");
        let schema = match files.schema() {
            Some(path) => Some(self.load_schema(&name, files, &path)?),
            None => None,
        };
        let def = Arc::new(Definition {
            name: name.clone(),
            priority,
            phases,
            schema,
        });
        definitions.insert(name.to_string(), def.clone());
        Ok(def)
    }

    fn load_schema(
        &self,
        name: &Arc<str>,
        files: &PluginFiles,
        path: &Path,
    ) -> Result<Schema, LoadError> {
        let vm = lock(&self.slots[0].vm);
        vm.begin(Call::init(name.clone()));
        let loaded = files
            .load(&vm.lua, path)
            .and_then(|chunk| vm.run_init(chunk));
        vm.end();
        match loaded.map_err(|e| LoadError::from(&e))? {
            Value::Table(t) => {
                Schema::from_lua(&t, &vm.array_mt).map_err(|message| LoadError::Schema {
                    path: path.to_owned(),
                    message,
                })
            }
            other => Err(LoadError::NotATable {
                path: path.to_owned(),
                what: "schema",
                found: other.type_name(),
            }),
        }
    }

    /// Checks `config` against the plugin's schema and creates an instance
    /// with it (defaults filled in) in every state; returns its index.
    pub(crate) fn instantiate(
        &self,
        def: &Definition,
        config: &serde_json::Value,
    ) -> Result<usize, LoadError> {
        let config = match &def.schema {
            Some(schema) => schema.validate(config).map_err(LoadError::Config)?,
            None => config.clone(),
        };
        let index = self.next_instance.fetch_add(1, Ordering::Relaxed);
        for slot in self.slots.iter() {
            let mut vm = lock(&slot.vm);
            let module = vm
                .modules
                .get(&*def.name)
                .cloned()
                .ok_or_else(|| LoadError::Unknown(def.name.to_string()))?;
            let conf = match json::from_json(&vm.lua, &config, &vm.array_mt) {
                Ok(Value::Table(t)) => t,
                Ok(_) => return Err(LoadError::Config("config must be a table".into())),
                Err(e) => return Err(LoadError::from(&e)),
            };
            vm.instances.insert(
                index,
                Instance {
                    handler: module.handler,
                    conf,
                    handshake: module.handshake,
                    client_frame: module.client_frame,
                    upstream_frame: module.upstream_frame,
                    close: module.close,
                },
            );
        }
        Ok(index)
    }
}

/// `PRIORITY`, `VERSION` (Kong refuses a handler without them) and the
/// phases a module defines.
fn read_declarations(module: &Module, path: &Path) -> Result<(i32, Phases), LoadError> {
    let declaration = |field, expected| LoadError::Declaration {
        path: path.to_owned(),
        field,
        expected,
    };
    let priority = match module.handler.get::<Value>("PRIORITY") {
        Ok(Value::Integer(n)) => i32::try_from(n).ok(),
        Ok(Value::Number(n)) if n.fract() == 0.0 => i32::try_from(n as i64).ok(),
        _ => None,
    }
    .ok_or_else(|| declaration("PRIORITY", "an integer"))?;
    if !matches!(module.handler.get::<Value>("VERSION"), Ok(Value::String(_))) {
        return Err(declaration("VERSION", "a string"));
    }
    Ok((
        priority,
        Phases {
            handshake: module.handshake.is_some(),
            client_frame: module.client_frame.is_some(),
            upstream_frame: module.upstream_frame.is_some(),
            close: module.close.is_some(),
        },
    ))
}

/// `err` as a plugin's error: a reached limit keeps its kind.
pub(crate) fn plugin_error(err: &mlua::Error) -> PluginError {
    let message = describe(err);
    match limit_reached(err) {
        Some(limit) => PluginError::LuaLimit { limit, message },
        None => PluginError::Lua(message),
    }
}

fn limit_reached(err: &mlua::Error) -> Option<LuaLimit> {
    match err {
        mlua::Error::MemoryError(_) => Some(LuaLimit::Memory),
        mlua::Error::ExternalError(e) if e.downcast_ref::<BudgetExceeded>().is_some() => {
            Some(LuaLimit::Instructions)
        }
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            limit_reached(cause)
        }
        _ => None,
    }
}

/// A Lua error as one line for logs and configuration errors: the message
/// with its `file:line:`, without the traceback.
pub(crate) fn describe(err: &mlua::Error) -> String {
    match err {
        mlua::Error::RuntimeError(message) => strip_traceback(message),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::MemoryError(_) => {
            "out of memory: the Lua state reached lua_max_memory".to_owned()
        }
        mlua::Error::CallbackError { traceback, cause } => {
            let inner = describe(cause);
            // Errors of argument conversion carry no location; the
            // traceback's first Lua frame is the caller.
            match first_lua_frame(traceback) {
                Some(at) if !inner.starts_with(at) => format!("{at}: {inner}"),
                _ => inner,
            }
        }
        mlua::Error::WithContext { context, cause } => format!("{context}: {}", describe(cause)),
        other => strip_traceback(&other.to_string()),
    }
}

fn strip_traceback(message: &str) -> String {
    message
        .split("\nstack traceback:")
        .next()
        .unwrap_or(message)
        .to_owned()
}

/// `file:line` of the first Lua function in a traceback.
fn first_lua_frame(traceback: &str) -> Option<&str> {
    traceback
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("[C]") && !l.starts_with("stack traceback"))
        .find_map(|l| {
            let (file_line, _) = l.split_once(": ")?;
            let (_, line) = file_line.rsplit_once(':')?;
            line.parse::<u32>().ok().map(|_| file_line)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_spread_over_the_states_and_keep_theirs_across_configurations() {
        let limits = Limits {
            max_instructions: 1_000,
            max_memory: 1 << 20,
            unsafe_libs: false,
            dicts: Arc::from(Vec::new()),
            trusted_ips: Arc::from(Vec::new()),
        };
        let runtime = || Arc::new(Runtime::new(BTreeMap::new(), limits.clone(), 2).unwrap());
        let (old, new) = (runtime(), runtime());
        let slots: Vec<usize> = (0..8)
            .map(|_| {
                let (old, new) = (old.clone(), new.clone());
                std::thread::spawn(move || {
                    let slot = old.thread_slot();
                    assert_eq!(slot, old.thread_slot(), "a thread keeps its state");
                    assert_eq!(slot, new.thread_slot(), "and the same one after a reload");
                    slot
                })
                .join()
                .unwrap()
            })
            .collect();
        assert!(slots.contains(&0) && slots.contains(&1), "{slots:?}");
    }
}
