//! `ngx.shared.DICT`: dictionaries shared by every connection and worker
//! of the process, declared in `[gateway] lua_shared_dicts` with a size
//! (`{ cache = "10m" }`, nginx's `lua_shared_dict`). As in OpenResty, a
//! dictionary outlives reloads that keep its name, values are strings,
//! numbers or booleans, entries may expire, and a full dictionary makes
//! room by evicting the least recently used entries (`set`, `add`,
//! `incr`) or refuses (`safe_set`, `safe_add`: `nil, "no memory"`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use frameway::sync::lock;
use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};

/// What each entry costs beyond its key and value, as accounted.
const ENTRY_OVERHEAD: usize = 64;

/// One dictionary.
#[derive(Debug)]
pub struct SharedDict {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    used: usize,
    entries: HashMap<Vec<u8>, Entry>,
    /// Keys by last use, oldest first.
    lru: BTreeMap<u64, Vec<u8>>,
    clock: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Stored,
    flags: u32,
    expires: Option<Instant>,
    used_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Stored {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(Vec<u8>),
}

impl Stored {
    fn size(&self) -> usize {
        match self {
            Stored::Str(s) => s.len(),
            _ => 8,
        }
    }

    fn from_lua(value: &Value, function: &str) -> mlua::Result<Stored> {
        Ok(match value {
            Value::Boolean(b) => Stored::Bool(*b),
            Value::Integer(n) => Stored::Int(*n),
            Value::Number(n) => Stored::Num(*n),
            Value::String(s) => Stored::Str(s.as_bytes().to_vec()),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "{function}: bad value type {} (strings, numbers and booleans only)",
                    other.type_name()
                )))
            }
        })
    }

    fn into_lua(self, lua: &Lua) -> mlua::Result<Value> {
        Ok(match self {
            Stored::Bool(b) => Value::Boolean(b),
            Stored::Int(n) => Value::Integer(n),
            Stored::Num(n) => Value::Number(n),
            Stored::Str(s) => Value::String(lua.create_string(s)?),
        })
    }
}

/// How a write treats an existing key and a full dictionary.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    Set,
    Add,
    Replace,
}

/// Every dictionary of the process, by name: a reload that declares a name
/// again gets the same one.
fn registry() -> &'static Mutex<HashMap<String, Arc<SharedDict>>> {
    static DICTS: OnceLock<Mutex<HashMap<String, Arc<SharedDict>>>> = OnceLock::new();
    DICTS.get_or_init(Default::default)
}

/// The dictionary `name` with room for `capacity` bytes (a new one, or the
/// one already declared, resized).
pub(crate) fn declare(name: &str, capacity: usize) -> Arc<SharedDict> {
    let mut all = lock(registry());
    let dict = all
        .entry(name.to_owned())
        .or_insert_with(|| {
            Arc::new(SharedDict {
                inner: Mutex::new(Inner {
                    capacity,
                    used: 0,
                    entries: HashMap::new(),
                    lru: BTreeMap::new(),
                    clock: 0,
                }),
            })
        })
        .clone();
    let mut inner = lock(&dict.inner);
    inner.capacity = capacity;
    inner.make_room(0, true, Instant::now());
    drop(inner);
    dict
}

/// Reads nginx's size syntax: bytes, or `k`/`m` (and `K`/`M`) units.
pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (at, 'k' | 'K') => (&text[..at], 1 << 10),
        (at, 'm' | 'M') => (&text[..at], 1 << 20),
        _ => (text, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

impl Inner {
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        let expired = self
            .entries
            .get(key)
            .is_some_and(|e| e.expires.is_some_and(|t| t <= now));
        if expired {
            self.remove(key);
            return None;
        }
        self.entries.get_mut(key)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.lru.remove(&entry.used_at);
        self.used -= key.len() + entry.value.size() + ENTRY_OVERHEAD;
        Some(entry)
    }

    fn touch(&mut self, key: &[u8]) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(entry) = self.entries.get_mut(key) {
            self.lru.remove(&entry.used_at);
            entry.used_at = clock;
            self.lru.insert(clock, key.to_vec());
        }
    }

    /// Frees `needed` bytes: expired entries first, then (if `evict`) the
    /// least recently used. Whether there is room.
    fn make_room(&mut self, needed: usize, evict: bool, now: Instant) -> bool {
        if self.used + needed <= self.capacity {
            return true;
        }
        let expired: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
        while evict && self.used + needed > self.capacity {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&key) {
                self.used -= key.len() + entry.value.size() + ENTRY_OVERHEAD;
            }
        }
        self.used + needed <= self.capacity
    }

    /// A write; `Ok(forcible)` (whether others were evicted for it) or the
    /// error OpenResty gives.
    fn write(
        &mut self,
        key: &[u8],
        value: Stored,
        ttl: Option<Duration>,
        flags: u32,
        how: Write,
        evict: bool,
    ) -> Result<bool, &'static str> {
        let now = Instant::now();
        let exists = self.live(key, now).is_some();
        match how {
            Write::Add if exists => return Err("exists"),
            Write::Replace if !exists => return Err("not found"),
            _ => {}
        }
        self.remove(key);
        let needed = key.len() + value.size() + ENTRY_OVERHEAD;
        let before = self.entries.len();
        if !self.make_room(needed, evict, now) {
            return Err("no memory");
        }
        let forcible = self.entries.len() < before;
        self.clock += 1;
        self.entries.insert(
            key.to_vec(),
            Entry {
                value,
                flags,
                expires: ttl.map(|t| now + t),
                used_at: self.clock,
            },
        );
        self.lru.insert(self.clock, key.to_vec());
        self.used += needed;
        Ok(forcible)
    }
}

/// `exptime` in seconds (0: never), as OpenResty takes it.
fn ttl(exptime: Option<f64>, function: &str) -> mlua::Result<Option<Duration>> {
    match exptime {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(t) => Duration::try_from_secs_f64(t)
            .map(Some)
            .map_err(|_| mlua::Error::runtime(format!("{function}: bad exptime {t}"))),
    }
}

type WriteArgs = (mlua::String, Value, Option<f64>, Option<u32>);

impl UserData for Handle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, this, key: mlua::String| {
            let mut inner = lock(&this.0.inner);
            let key = key.as_bytes();
            let Some(entry) = inner.live(&key, Instant::now()).cloned() else {
                return Ok(MultiValue::from_vec(vec![Value::Nil]));
            };
            inner.touch(&key);
            let mut out = vec![entry.value.into_lua(lua)?];
            if entry.flags != 0 {
                out.push(Value::Integer(entry.flags.into()));
            }
            Ok(MultiValue::from_vec(out))
        });
        for (name, how, evict) in [
            ("set", Write::Set, true),
            ("safe_set", Write::Set, false),
            ("add", Write::Add, true),
            ("safe_add", Write::Add, false),
            ("replace", Write::Replace, true),
        ] {
            methods.add_method(
                name,
                move |_, this, (key, value, exptime, flags): WriteArgs| {
                    let function = format!("ngx.shared.DICT:{name}");
                    let key = key.as_bytes();
                    let mut inner = lock(&this.0.inner);
                    if value.is_nil() && how == Write::Set {
                        inner.remove(&key);
                        return Ok((true, None, false));
                    }
                    let value = Stored::from_lua(&value, &function)?;
                    let ttl = ttl(exptime, &function)?;
                    Ok(
                        match inner.write(&key, value, ttl, flags.unwrap_or(0), how, evict) {
                            Ok(forcible) => (true, None, forcible),
                            Err(why) => (false, Some(why), false),
                        },
                    )
                },
            );
        }
        methods.add_method("delete", |_, this, key: mlua::String| {
            lock(&this.0.inner).remove(&key.as_bytes());
            Ok(())
        });
        methods.add_method(
            "incr",
            |lua, this, (key, by, init, init_ttl): (mlua::String, Value, Option<Value>, Option<f64>)| {
                let key = key.as_bytes();
                let mut inner = lock(&this.0.inner);
                let now = Instant::now();
                let current = inner.live(&key, now).map(|e| e.value.clone());
                let (base, fresh) = match (current, init) {
                    (Some(v), _) => (v, false),
                    (None, Some(init)) if !init.is_nil() => {
                        (Stored::from_lua(&init, "ngx.shared.DICT:incr")?, true)
                    }
                    (None, _) => return Ok((Value::Nil, Some("not found"), false)),
                };
                let sum = match (&base, &by) {
                    (Stored::Int(a), Value::Integer(b)) => Stored::Int(a.wrapping_add(*b)),
                    (Stored::Int(a), Value::Number(b)) => Stored::Num(*a as f64 + b),
                    (Stored::Num(a), Value::Integer(b)) => Stored::Num(a + *b as f64),
                    (Stored::Num(a), Value::Number(b)) => Stored::Num(a + b),
                    (_, Value::Integer(_) | Value::Number(_)) => {
                        return Ok((Value::Nil, Some("not a number"), false))
                    }
                    _ => {
                        return Err(mlua::Error::runtime(
                            "ngx.shared.DICT:incr: the increment must be a number",
                        ))
                    }
                };
                if fresh {
                    let ttl = ttl(init_ttl, "ngx.shared.DICT:incr")?;
                    return match inner.write(&key, sum.clone(), ttl, 0, Write::Set, true) {
                        Ok(forcible) => Ok((sum.into_lua(lua)?, None, forcible)),
                        Err(why) => Ok((Value::Nil, Some(why), false)),
                    };
                }
                inner.touch(&key);
                if let Some(entry) = inner.entries.get_mut(&*key) {
                    entry.value = sum.clone();
                }
                Ok((sum.into_lua(lua)?, None, false))
            },
        );
        methods.add_method("ttl", |_, this, key: mlua::String| {
            let mut inner = lock(&this.0.inner);
            let now = Instant::now();
            Ok(match inner.live(&key.as_bytes(), now) {
                Some(entry) => (
                    Some(entry.expires.map_or(0.0, |t| (t - now).as_secs_f64())),
                    None,
                ),
                None => (None, Some("not found")),
            })
        });
        methods.add_method("expire", |_, this, (key, exptime): (mlua::String, f64)| {
            let ttl = ttl(Some(exptime), "ngx.shared.DICT:expire")?;
            let mut inner = lock(&this.0.inner);
            let now = Instant::now();
            Ok(match inner.live(&key.as_bytes(), now) {
                Some(entry) => {
                    entry.expires = ttl.map(|t| now + t);
                    (true, None)
                }
                None => (false, Some("not found")),
            })
        });
        methods.add_method("get_keys", |_, this, max: Option<usize>| {
            let mut inner = lock(&this.0.inner);
            inner.make_room(0, false, Instant::now());
            let max = match max {
                Some(0) => usize::MAX,
                Some(n) => n,
                None => 1024,
            };
            Ok(inner
                .entries
                .keys()
                .take(max)
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>())
        });
        methods.add_method("flush_all", |_, this, ()| {
            let mut inner = lock(&this.0.inner);
            inner.entries.clear();
            inner.lru.clear();
            inner.used = 0;
            Ok(())
        });
        methods.add_method("flush_expired", |_, this, ()| {
            let mut inner = lock(&this.0.inner);
            let before = inner.entries.len();
            let capacity = inner.capacity;
            // Asking for the whole capacity clears every expired entry and
            // evicts nothing.
            inner.make_room(capacity + 1, false, Instant::now());
            Ok(before - inner.entries.len())
        });
        methods.add_method("capacity", |_, this, ()| Ok(lock(&this.0.inner).capacity));
        methods.add_method("free_space", |_, this, ()| {
            let inner = lock(&this.0.inner);
            Ok(inner.capacity.saturating_sub(inner.used))
        });
    }
}

/// A dictionary as Lua holds it.
struct Handle(Arc<SharedDict>);

/// `ngx.shared`: the declared dictionaries; any other name is an error that
/// says where dictionaries are declared.
pub(crate) fn table(lua: &Lua, dicts: &[(String, Arc<SharedDict>)]) -> mlua::Result<Table> {
    let shared = lua.create_table()?;
    for (name, dict) in dicts {
        shared.raw_set(name.as_str(), Handle(dict.clone()))?;
    }
    // In Lua, so that the error is a string that names the caller's line.
    let guard: Table = lua
        .load(
            r#"return { __index = function(_, name)
                 error("ngx.shared." .. tostring(name)
                   .. " is not declared (add it to [gateway] lua_shared_dicts)", 2)
               end }"#,
        )
        .set_name("=ngx.shared")
        .eval()?;
    shared.set_metatable(Some(guard))?;
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_nginx_writes_them() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("10g"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn a_full_dictionary_evicts_the_least_recently_used_or_refuses_safely() {
        let dict = declare("unit-lru", 3 * (ENTRY_OVERHEAD + 9));
        let mut inner = lock(&dict.inner);
        for key in [b"a", b"b", b"c"] {
            assert_eq!(
                inner.write(key, Stored::Int(1), None, 0, Write::Set, true),
                Ok(false)
            );
        }
        inner.touch(b"a");
        assert_eq!(
            inner.write(b"d", Stored::Int(1), None, 0, Write::Set, false),
            Err("no memory")
        );
        assert_eq!(
            inner.write(b"d", Stored::Int(1), None, 0, Write::Set, true),
            Ok(true)
        );
        assert!(inner.entries.contains_key(&b"a"[..]));
        assert!(!inner.entries.contains_key(&b"b"[..]));
        assert_eq!(
            inner.write(b"a", Stored::Int(2), None, 0, Write::Add, true),
            Err("exists")
        );
        assert_eq!(
            inner.write(b"z", Stored::Int(2), None, 0, Write::Replace, true),
            Err("not found")
        );
    }

    /// What a reload does: the new configuration declares its dictionaries
    /// again, and each keeps what connections stored in it.
    #[test]
    fn a_dictionary_declared_again_keeps_its_values() {
        let first = declare("unit-reload", 1 << 20);
        lock(&first.inner)
            .write(b"hits", Stored::Int(7), None, 0, Write::Set, true)
            .unwrap();
        let again = declare("unit-reload", 2 << 20);
        assert!(Arc::ptr_eq(&first, &again));
        let mut inner = lock(&again.inner);
        assert_eq!(inner.capacity, 2 << 20);
        assert!(inner.live(b"hits", Instant::now()).is_some());
    }
}
