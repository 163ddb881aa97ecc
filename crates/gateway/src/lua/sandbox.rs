//! A Lua state fit to run plugins: the safe standard libraries only (no
//! `os`, `io`, `debug`, `package` unless unsafe), text chunks only, a memory
//! cap and an instruction budget per call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, VmState};

use super::shared_dict::SharedDict;
use crate::cidr::Cidr;

/// Limits and permissions of every Lua state, and what they share.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Instructions one call may run.
    pub(crate) max_instructions: u64,
    /// Bytes one state may allocate.
    pub(crate) max_memory: usize,
    /// Load `os`, `io` and `package` too.
    pub(crate) unsafe_libs: bool,
    /// `ngx.shared`'s dictionaries, by name.
    pub(crate) dicts: Arc<[(String, Arc<SharedDict>)]>,
    /// What `kong.ip.is_trusted` trusts.
    pub(crate) trusted_ips: Arc<[Cidr]>,
}

/// The hook fires every this many instructions (or every `max_instructions`
/// if that is smaller): rare enough to cost nothing measurable, frequent
/// enough that the budget is enforced within 1% at the default.
const HOOK_EVERY: u64 = 10_000;

/// Instructions run by the current call, counted by the hook; reset before
/// each call into Lua.
#[derive(Clone, Default)]
pub(crate) struct Budget(Arc<AtomicU64>);

impl Budget {
    /// Starts a fresh budget for the next call.
    pub(crate) fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// The error the instruction hook raises: a type of its own, so that
/// reaching the budget is told apart from the handler's own errors.
#[derive(Debug)]
pub(crate) struct BudgetExceeded(String);

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BudgetExceeded {}

/// Lua code run once per state, after the libraries: replaces `load` with a
/// text-only version (binary chunks are not verified by Lua and can crash
/// the process) and removes the file loaders.
const PRELUDE: &str = r##"
local raw_load = load
load = function(chunk, name, _mode, ...)
  if select("#", ...) > 0 then
    return raw_load(chunk, name, "t", ...)
  end
  return raw_load(chunk, name, "t")
end
dofile = nil
loadfile = nil
"##;

/// A new state with the libraries plugins may use, the memory cap and the
/// instruction hook installed.
pub(crate) fn new_state(limits: &Limits) -> mlua::Result<(Lua, Budget)> {
    let mut libs = StdLib::COROUTINE | StdLib::TABLE | StdLib::STRING | StdLib::UTF8 | StdLib::MATH;
    if limits.unsafe_libs {
        libs |= StdLib::IO | StdLib::OS | StdLib::PACKAGE;
    }
    // `new_with` refuses `debug` and C modules even in unsafe mode: a plugin
    // can never load native code into the gateway.
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    // Kong's handlers are written for LuaJIT (Lua 5.1), where it is global.
    lua.load("unpack = table.unpack")
        .set_name("=compat")
        .exec()?;
    if !limits.unsafe_libs {
        lua.load(PRELUDE).set_name("=sandbox").exec()?;
    }
    lua.set_memory_limit(limits.max_memory)?;
    // Every frame a handler sees is a new string that dies when the call
    // returns. The incremental collector pays for each allocated byte by
    // marking the long-lived heap (the loaded plugins and libraries) again;
    // the generational one mostly looks only at the young objects.
    lua.gc_gen(0, 0);

    let budget = Budget::default();
    let used = budget.0.clone();
    let max = limits.max_instructions;
    let every = HOOK_EVERY.min(max).max(1);
    // A global hook, so that coroutines created by plugin code inherit it:
    // a loop inside a coroutine is stopped like any other.
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(every as u32),
        move |_lua, debug| {
            let ran = used.fetch_add(every, Ordering::Relaxed) + every;
            if ran < max {
                return Ok(VmState::Continue);
            }
            let source = debug.source();
            let file = source.short_src.as_deref().unwrap_or("?");
            let line = debug.current_line().unwrap_or(0);
            Err(mlua::Error::external(BudgetExceeded(format!(
                "{file}:{line}: instruction budget of {max} exceeded (lua_max_instructions)"
            ))))
        },
    )?;
    Ok((lua, budget))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_instructions: 100_000,
            max_memory: 4 << 20,
            unsafe_libs: false,
            dicts: Arc::from(Vec::new()),
            trusted_ips: Arc::from(Vec::new()),
        }
    }

    #[test]
    fn unsafe_libraries_are_absent() {
        let (lua, _) = new_state(&limits()).unwrap();
        let missing: bool = lua
            .load("return os == nil and io == nil and debug == nil and package == nil and dofile == nil and loadfile == nil")
            .eval()
            .unwrap();
        assert!(missing);
    }

    #[test]
    fn binary_chunks_are_refused() {
        let (lua, _) = new_state(&limits()).unwrap();
        let (ok, err): (bool, String) = lua
            .load(
                r#"
                local f, e = load(string.dump(function() return 1 end))
                return f ~= nil, tostring(e)
                "#,
            )
            .eval()
            .unwrap();
        assert!(!ok);
        assert!(err.contains("binary"), "{err}");
        // Text chunks still load, with or without an environment.
        let n: i64 = lua
            .load("return load('return 1 + 1')() + load('return x', 'c', 't', { x = 3 })()")
            .eval()
            .unwrap();
        assert_eq!(n, 5);
    }

    #[test]
    fn runaway_loops_stop_and_the_state_stays_usable() {
        let (lua, budget) = new_state(&limits()).unwrap();
        for code in [
            "while true do end",
            "coroutine.wrap(function() while true do end end)()",
        ] {
            budget.reset();
            let err = lua.load(code).set_name("@loop.lua").exec().unwrap_err();
            assert!(
                err.to_string()
                    .contains("loop.lua:1: instruction budget of 100000 exceeded"),
                "{err}"
            );
        }
        budget.reset();
        let n: i64 = lua
            .load("local n = 0 for i = 1, 1000 do n = n + i end return n")
            .eval()
            .unwrap();
        assert_eq!(n, 500_500);
    }

    #[test]
    fn memory_is_capped_and_the_state_stays_usable() {
        let (lua, budget) = new_state(&Limits {
            max_instructions: u64::MAX,
            ..limits()
        })
        .unwrap();
        budget.reset();
        let err = lua
            .load("local t = {} for i = 1, 1e8 do t[i] = i end")
            .exec()
            .unwrap_err();
        assert!(matches!(err, mlua::Error::MemoryError(_)), "{err}");
        let s: String = lua.load("return ('x'):rep(10)").eval().unwrap();
        assert_eq!(s, "xxxxxxxxxx");
    }

    #[test]
    fn unsafe_mode_has_os_and_io() {
        let (lua, _) = new_state(&Limits {
            unsafe_libs: true,
            ..limits()
        })
        .unwrap();
        let present: bool = lua
            .load("return os ~= nil and io ~= nil and package ~= nil")
            .eval()
            .unwrap();
        assert!(present);
    }
}
