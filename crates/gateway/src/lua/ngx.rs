//! The part of OpenResty's `ngx` API that Kong plugins lean on and that
//! means something to a WebSocket gateway: the clock (`ngx.now`,
//! `ngx.time`, `ngx.update_time`), `ngx.log` with its level constants,
//! `ngx.ctx` (the connection's `kong.ctx.shared`), base64, SHA-1 and
//! HMAC-SHA1, MD5, URI escaping, `ngx.var` (the handshake's variables) and
//! `ngx.re` (see `ngx_re.rs`), `ngx.shared` (see `shared_dict.rs`).
//! Anything else under `ngx` (cosockets, timers, subrequests) raises an error naming the function, never a
//! nil-index error deep in a handler.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use mlua::{Lua, Table, Value, Variadic};
use sha1::{Digest, Sha1};

use super::pdk::log_at;
use super::shared_dict::SharedDict;
use crate::plugin::query;

/// nginx's log levels, as `ngx.log` takes them, and where each goes.
const LEVELS: [(&str, i64, tracing::Level); 9] = [
    ("STDERR", 0, tracing::Level::ERROR),
    ("EMERG", 1, tracing::Level::ERROR),
    ("ALERT", 2, tracing::Level::ERROR),
    ("CRIT", 3, tracing::Level::ERROR),
    ("ERR", 4, tracing::Level::ERROR),
    ("WARN", 5, tracing::Level::WARN),
    ("NOTICE", 6, tracing::Level::INFO),
    ("INFO", 7, tracing::Level::INFO),
    ("DEBUG", 8, tracing::Level::DEBUG),
];

/// Creates the `ngx` global. `kong` must be installed first (`ngx.ctx` is
/// its `kong.ctx.shared`).
pub(crate) fn install(lua: &Lua, dicts: &[(String, Arc<SharedDict>)]) -> mlua::Result<()> {
    let ngx = lua.create_table()?;
    ngx.set("shared", super::shared_dict::table(lua, dicts)?)?;
    for (name, number, _) in LEVELS {
        ngx.set(name, number)?;
    }
    ngx.set(
        "log",
        lua.create_function(|lua, (level, args): (i64, Variadic<Value>)| {
            let Some((_, _, level)) = LEVELS.iter().find(|(_, n, _)| *n == level) else {
                return Err(mlua::Error::runtime(format!(
                    "ngx.log: bad log level {level} (use ngx.ERR, ngx.WARN, ngx.INFO, ...)"
                )));
            };
            log_at(lua, *level, &args)
        })?,
    )?;
    ngx.set(
        "now",
        lua.create_function(|_, ()| Ok(since_epoch().as_millis() as f64 / 1000.0))?,
    )?;
    ngx.set(
        "time",
        lua.create_function(|_, ()| Ok(since_epoch().as_secs()))?,
    )?;
    // Frameway's clock is read on every call; there is no cached time to
    // update.
    ngx.set("update_time", lua.create_function(|_, ()| Ok(()))?)?;
    ngx.set(
        "encode_base64",
        lua.create_function(|_, (data, no_padding): (mlua::String, Option<bool>)| {
            let engine = match no_padding {
                Some(true) => &base64::engine::general_purpose::STANDARD_NO_PAD,
                _ => &base64::engine::general_purpose::STANDARD,
            };
            Ok(engine.encode(data.as_bytes()))
        })?,
    )?;
    ngx.set(
        "decode_base64",
        lua.create_function(|lua, text: mlua::String| {
            // nil for input that is not base64, as OpenResty answers.
            let decoded = base64::engine::general_purpose::STANDARD.decode(text.as_bytes());
            decoded
                .ok()
                .map(|bytes| lua.create_string(bytes))
                .transpose()
        })?,
    )?;
    ngx.set(
        "sha1_bin",
        lua.create_function(|lua, data: mlua::String| {
            lua.create_string(Sha1::digest(data.as_bytes()))
        })?,
    )?;
    ngx.set(
        "hmac_sha1",
        lua.create_function(|lua, (key, data): (mlua::String, mlua::String)| {
            lua.create_string(hmac_sha1(&key.as_bytes(), &data.as_bytes()))
        })?,
    )?;
    ngx.set(
        "md5",
        lua.create_function(|_, data: mlua::String| {
            Ok(format!("{:x}", md5::compute(data.as_bytes())))
        })?,
    )?;
    ngx.set(
        "md5_bin",
        lua.create_function(|lua, data: mlua::String| {
            lua.create_string(md5::compute(data.as_bytes()).0)
        })?,
    )?;
    ngx.set("re", super::ngx_re::table(lua)?)?;
    ngx.set(
        "escape_uri",
        lua.create_function(|_, text: mlua::String| Ok(query::encode(&text.as_bytes())))?,
    )?;
    ngx.set(
        "unescape_uri",
        lua.create_function(|_, text: mlua::String| Ok(query::decode(&text.to_string_lossy())))?,
    )?;
    let guard: Table = lua
        .load(GUARD)
        .set_name("=ngx")
        .call(lua.globals().get::<Table>("kong")?)?;
    ngx.set_metatable(Some(guard))?;
    lua.globals().set("ngx", ngx)
}

/// `ngx.ctx` is the connection's `kong.ctx.shared`; `ngx.var` reads the
/// handshake's nginx variables through the PDK; any other missing name is
/// an error that says what is missing.
const GUARD: &str = r#"
local kong = ...
local error, type = error, type

local function query()
  local q = kong.request.get_raw_query()
  if q == "" then return nil end
  return q
end

local function host()
  local h = kong.request.get_header("host")
  if not h then return nil end
  return (h:lower():gsub(":%d+$", ""))
end

local variables = {
  remote_addr = function() return kong.client.get_ip() end,
  uri = function() return kong.request.get_path() end,
  request_uri = function()
    local q = query()
    return q and (kong.request.get_path() .. "?" .. q) or kong.request.get_path()
  end,
  args = query,
  query_string = query,
  is_args = function() return query() and "?" or "" end,
  host = host,
  request_method = function() return kong.request.get_method() end,
}

local var = setmetatable({}, {
  __index = function(_, name)
    local read = variables[name]
    if read then return read() end
    if type(name) == "string" and name:sub(1, 5) == "http_" then
      return kong.request.get_header((name:sub(6):gsub("_", "-")))
    end
    error("ngx.var." .. tostring(name) .. " is not available in Frameway", 2)
  end,
  __newindex = function(_, name)
    error("ngx.var." .. tostring(name) .. " cannot be set in Frameway", 2)
  end,
})

return {
  __index = function(_, name)
    if name == "ctx" then return kong.ctx.shared end
    if name == "var" then return var end
    error("ngx." .. tostring(name) .. " is not available in Frameway", 2)
  end,
}
"#;

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// HMAC-SHA1 (RFC 2104) of `data` under `key`.
fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha1::new_with_prefix(pad(0x36));
    inner.update(data);
    let mut outer = Sha1::new_with_prefix(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc_2202() {
        let hex = |b: [u8; 20]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
        assert_eq!(
            hex(hmac_sha1(
                &[0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        );
    }
}
