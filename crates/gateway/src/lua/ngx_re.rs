//! OpenResty's `ngx.re.match`, `find`, `sub` and `gsub` on the `regex`
//! crate: matching in linear time, so a handler's pattern cannot backtrack
//! for ever. PCRE-only syntax (look-around, backreferences) does not
//! compile, and the error says so.
//!
//! Options are PCRE's letters as OpenResty takes them: `i` (caseless), `m`
//! (multi-line), `s` (dot matches newline), `x` (extended) and `a`
//! (anchored at the start position); `j`, `o`, `u` and `U` (JIT, compile
//! once, UTF-8) say how PCRE compiles and mean nothing here. Any other
//! letter is an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use frameway::sync::lock;
use mlua::{Function, Lua, Table, Value};
use regex::bytes::{Captures, Regex, RegexBuilder};

/// Compiled patterns kept, by pattern and options; past this many the
/// cache starts again (handlers use a handful of literal patterns).
const CACHE_SIZE: usize = 256;

type Cache = Mutex<HashMap<(String, String), Arc<Regex>>>;

/// Creates `ngx.re`.
pub(crate) fn table(lua: &Lua) -> mlua::Result<Table> {
    let re = lua.create_table()?;
    let cache: Arc<Cache> = Arc::default();
    let c = cache.clone();
    re.set(
        "match",
        lua.create_function(
            move |lua,
                  (subject, pattern, options, ctx): (
                mlua::String,
                String,
                Option<String>,
                Option<Table>,
            )| {
                let regex = compile(&c, "ngx.re.match", &pattern, options.as_deref())?;
                let start = start_at(ctx.as_ref())?;
                let subject = subject.as_bytes();
                match captures_at(&regex, &subject, start, options.as_deref()) {
                    Some(caps) => {
                        advance(ctx.as_ref(), &caps)?;
                        Ok(Value::Table(capture_table(lua, &regex, &caps)?))
                    }
                    None => Ok(Value::Nil),
                }
            },
        )?,
    )?;
    let c = cache.clone();
    re.set(
        "find",
        lua.create_function(
            move |_,
                  (subject, pattern, options, ctx, nth): (
                mlua::String,
                String,
                Option<String>,
                Option<Table>,
                Option<usize>,
            )| {
                let regex = compile(&c, "ngx.re.find", &pattern, options.as_deref())?;
                let start = start_at(ctx.as_ref())?;
                let subject = subject.as_bytes();
                let Some(caps) = captures_at(&regex, &subject, start, options.as_deref()) else {
                    return Ok((None, None));
                };
                advance(ctx.as_ref(), &caps)?;
                // 1-based and inclusive, as Lua's string.find.
                Ok(match caps.get(nth.unwrap_or(0)) {
                    Some(m) => (Some(m.start() + 1), Some(m.end())),
                    None => (None, None),
                })
            },
        )?,
    )?;
    for (name, global) in [("sub", false), ("gsub", true)] {
        let c = cache.clone();
        let function = format!("ngx.re.{name}");
        re.set(
            name,
            lua.create_function(
                move |lua,
                      (subject, pattern, replace, options): (
                    mlua::String,
                    String,
                    Value,
                    Option<String>,
                )| {
                    let regex = compile(&c, &function, &pattern, options.as_deref())?;
                    substitute(
                        lua,
                        &function,
                        &regex,
                        &subject.as_bytes(),
                        replace,
                        global,
                        options.as_deref(),
                    )
                },
            )?,
        )?;
    }
    Ok(re)
}

fn compile(
    cache: &Cache,
    function: &str,
    pattern: &str,
    options: Option<&str>,
) -> mlua::Result<Arc<Regex>> {
    let options = options.unwrap_or("");
    let key = (pattern.to_owned(), options.to_owned());
    if let Some(regex) = lock(cache).get(&key) {
        return Ok(regex.clone());
    }
    let mut builder = RegexBuilder::new(pattern);
    for flag in options.chars() {
        match flag {
            'i' => builder.case_insensitive(true),
            'm' => builder.multi_line(true),
            's' => builder.dot_matches_new_line(true),
            'x' => builder.ignore_whitespace(true),
            // Anchoring is applied when matching; the others are about
            // how PCRE compiles, which is not how this engine does.
            'a' | 'u' | 'U' | 'j' | 'o' => &mut builder,
            other => {
                return Err(mlua::Error::runtime(format!(
                    "{function}: option {other:?} is not supported in Frameway (i, m, s, x, a, u, j, o)"
                )))
            }
        };
    }
    let regex = builder.build().map_err(|e| {
        mlua::Error::runtime(format!(
            "{function}: cannot compile {pattern:?}: Frameway's regular expressions have no \
             PCRE-only syntax (look-around, backreferences, possessive quantifiers): {e}"
        ))
    })?;
    let regex = Arc::new(regex);
    let mut cache = lock(cache);
    if cache.len() >= CACHE_SIZE {
        cache.clear();
    }
    cache.insert(key, regex.clone());
    Ok(regex)
}

/// Where matching starts: `ctx.pos` (1-based), else the start.
fn start_at(ctx: Option<&Table>) -> mlua::Result<usize> {
    let pos: Option<usize> = match ctx {
        Some(ctx) => ctx.get("pos")?,
        None => None,
    };
    Ok(pos.map_or(0, |p| p.saturating_sub(1)))
}

/// After a match, `ctx.pos` is the position after it, as OpenResty sets it.
fn advance(ctx: Option<&Table>, caps: &Captures<'_>) -> mlua::Result<()> {
    if let (Some(ctx), Some(m)) = (ctx, caps.get(0)) {
        ctx.set("pos", m.end() + 1)?;
    }
    Ok(())
}

fn captures_at<'s>(
    regex: &Regex,
    subject: &'s [u8],
    start: usize,
    options: Option<&str>,
) -> Option<Captures<'s>> {
    if start > subject.len() {
        return None;
    }
    let caps = regex.captures_at(subject, start)?;
    let anchored = options.is_some_and(|o| o.contains('a'));
    (!anchored || caps.get(0).is_some_and(|m| m.start() == start)).then_some(caps)
}

/// OpenResty's capture table: `[0]` the whole match, `[n]` each group
/// (`false` when it did not take part), and named groups by name.
fn capture_table(lua: &Lua, regex: &Regex, caps: &Captures<'_>) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    for i in 0..caps.len() {
        let value = match caps.get(i) {
            Some(m) => Value::String(lua.create_string(m.as_bytes())?),
            None => Value::Boolean(false),
        };
        table.raw_set(i, value.clone())?;
    }
    for (i, name) in regex.capture_names().enumerate() {
        if let Some(name) = name {
            let value = match caps.get(i) {
                Some(m) => Value::String(lua.create_string(m.as_bytes())?),
                None => Value::Boolean(false),
            };
            table.raw_set(name, value)?;
        }
    }
    Ok(table)
}

/// `sub` and `gsub`: the new string and the number of replacements.
fn substitute(
    lua: &Lua,
    function: &str,
    regex: &Regex,
    subject: &[u8],
    replace: Value,
    global: bool,
    options: Option<&str>,
) -> mlua::Result<(mlua::String, usize)> {
    let mut out = Vec::with_capacity(subject.len());
    let mut last = 0;
    let mut count = 0;
    let mut at = 0;
    while let Some(caps) = captures_at(regex, subject, at, options) {
        let whole = caps.get(0).expect("group 0 always matches");
        out.extend_from_slice(&subject[last..whole.start()]);
        match &replace {
            Value::String(template) => expand(function, &template.as_bytes(), &caps, &mut out)?,
            Value::Function(f) => out.extend_from_slice(&call_replacer(lua, f, regex, &caps)?),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "{function}: the replacement must be a string or a function, got {}",
                    other.type_name()
                )))
            }
        }
        last = whole.end();
        count += 1;
        if !global {
            break;
        }
        // An empty match moves on by one byte, or it would match again.
        at = if whole.is_empty() {
            whole.end() + 1
        } else {
            whole.end()
        };
        if at > subject.len() {
            break;
        }
    }
    out.extend_from_slice(&subject[last.min(subject.len())..]);
    Ok((lua.create_string(out)?, count))
}

fn call_replacer(
    lua: &Lua,
    f: &Function,
    regex: &Regex,
    caps: &Captures<'_>,
) -> mlua::Result<Vec<u8>> {
    let table = capture_table(lua, regex, caps)?;
    let value: Value = f.call(table)?;
    match value {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Integer(n) => Ok(n.to_string().into_bytes()),
        Value::Number(n) => Ok(n.to_string().into_bytes()),
        other => Err(mlua::Error::runtime(format!(
            "the replacement function must return a string, returned {}",
            other.type_name()
        ))),
    }
}

/// OpenResty's template: `$0`, `$1` … or `${1}` for a group, `$$` for `$`.
fn expand(
    function: &str,
    template: &[u8],
    caps: &Captures<'_>,
    out: &mut Vec<u8>,
) -> mlua::Result<()> {
    let bad = || {
        mlua::Error::runtime(format!(
            "{function}: bad replacement template {:?}",
            String::from_utf8_lossy(template)
        ))
    };
    let mut i = 0;
    while i < template.len() {
        let b = template[i];
        if b != b'$' {
            out.push(b);
            i += 1;
            continue;
        }
        let rest = &template[i + 1..];
        let (digits, skip) = match rest.first() {
            Some(b'$') => {
                out.push(b'$');
                i += 2;
                continue;
            }
            Some(b'{') => {
                let close = rest.iter().position(|&c| c == b'}').ok_or_else(bad)?;
                (&rest[1..close], close + 1)
            }
            _ => {
                let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                (&rest[..n], n)
            }
        };
        let group: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(bad)?;
        if let Some(m) = caps.get(group) {
            out.extend_from_slice(m.as_bytes());
        }
        i += 1 + skip;
    }
    Ok(())
}
