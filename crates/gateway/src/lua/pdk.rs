//! The `kong` global: Kong's PDK functions as Lua sees them, bound to the
//! call in progress.
//!
//! The functions are created once per state. Each call into a plugin puts a
//! [`Call`] (what the handler may see, and what it asked for) in the state's
//! app data; the functions read and record there, and the adapter applies
//! the outcome to the Rust context once the handler returns. Misuse raises
//! a Lua error located at the caller, as Kong's `error(msg, 2)` does.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use mlua::{Function, Lua, Table, Value, Variadic};

use super::json::{self, Modules};
use crate::cidr::Cidr;
use crate::consumer::Authenticated;
use crate::plugin::{
    checked_payload, checked_response_header, checked_status, drop_verdict, query, Direction, Exit,
    FrameType, PlannedClose, Reroute, Verdict,
};

/// The phase a call runs in, under Kong's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Loading a handler or schema at configuration time.
    Init,
    /// `ws_handshake`.
    Handshake,
    /// `ws_client_frame`.
    ClientFrame,
    /// `ws_upstream_frame`.
    UpstreamFrame,
    /// `ws_close`.
    Close,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Handshake => "ws_handshake",
            Phase::ClientFrame => "ws_client_frame",
            Phase::UpstreamFrame => "ws_upstream_frame",
            Phase::Close => "ws_close",
        }
    }

    /// The frame phase of a direction.
    pub(crate) fn frame(direction: Direction) -> Phase {
        match direction {
            Direction::Client => Phase::ClientFrame,
            Direction::Upstream => Phase::UpstreamFrame,
        }
    }
}

/// The in-flight frame of a frame phase.
pub(crate) struct FrameCall {
    pub(crate) kind: FrameType,
    /// The payload as Lua sees it now (after any `set_frame_data`).
    pub(crate) data: mlua::String,
    pub(crate) data_changed: bool,
    pub(crate) status: Option<u16>,
    pub(crate) status_changed: bool,
    /// What the handler decided, as the native PDK's verdict.
    pub(crate) verdict: Verdict,
}

/// The request of a handshake phase, and what the handler asked for.
#[derive(Default)]
pub(crate) struct HandshakeCall {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: HeaderMap,
    /// `set_header` (`Some`) and `clear_header` (`None`), in call order.
    pub(crate) upstream_headers: Vec<(String, Option<String>)>,
    /// `kong.response.set_header`, `add_header` and `clear_header`, in call
    /// order.
    pub(crate) response_headers: Vec<ResponseHeader>,
    pub(crate) exit: Option<Exit>,
    pub(crate) client_limit: Option<u64>,
    pub(crate) upstream_limit: Option<u64>,
    /// The configured upstreams' names, for `kong.service.set_upstream`.
    pub(crate) upstreams: Vec<String>,
    /// `kong.service.set_target` or `set_upstream`, the last one called.
    pub(crate) reroute: Option<Reroute>,
}

/// What a handler did to a header of the client's answer.
pub(crate) enum ResponseHeader {
    Set(String, String),
    Add(String, String),
    Clear(String),
}

/// One call into a plugin.
pub(crate) struct Call {
    pub(crate) phase: Phase,
    /// The plugin's name, for logs.
    pub(crate) plugin: Arc<str>,
    /// The connection (its `kong.ctx`).
    pub(crate) conn: u64,
    pub(crate) client_ip: Option<IpAddr>,
    /// Who the client is, if a plugin authenticated it.
    pub(crate) consumer: Option<Arc<Authenticated>>,
    pub(crate) frame: Option<FrameCall>,
    pub(crate) handshake: Option<Box<HandshakeCall>>,
}

impl Call {
    /// A call with no connection: loading code at configuration time.
    pub(crate) fn init(plugin: Arc<str>) -> Call {
        Call {
            phase: Phase::Init,
            plugin,
            conn: 0,
            client_ip: None,
            consumer: None,
            frame: None,
            handshake: None,
        }
    }

    fn only_in(&self, phases: &[Phase], function: &str) -> Result<(), String> {
        if phases.contains(&self.phase) {
            Ok(())
        } else {
            Err(format!(
                "{function}: function cannot be called in {} phase",
                self.phase.name()
            ))
        }
    }

    fn frame_in(&mut self, direction: Direction, function: &str) -> Result<&mut FrameCall, String> {
        self.only_in(&[Phase::frame(direction)], function)?;
        self.frame
            .as_mut()
            .ok_or_else(|| format!("{function}: no frame in flight"))
    }

    fn handshake(&mut self, function: &str) -> Result<&mut HandshakeCall, String> {
        self.only_in(&[Phase::Handshake], function)?;
        self.handshake
            .as_deref_mut()
            .ok_or_else(|| format!("{function}: no request"))
    }
}

/// The app data slot holding the call in progress.
#[derive(Default)]
pub(crate) struct Current(pub(crate) Option<Call>);

/// Raised by `kong.response.exit` to end the handler, as Kong's exit does;
/// the adapter treats it as a normal return.
#[derive(Debug)]
pub(crate) struct ExitSignal;

impl std::fmt::Display for ExitSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("kong.response.exit")
    }
}

impl std::error::Error for ExitSignal {}

/// Whether `err` is the unwinding of `kong.response.exit`.
pub(crate) fn is_exit(err: &mlua::Error) -> bool {
    match err {
        mlua::Error::CallbackError { cause, .. } => is_exit(cause),
        mlua::Error::WithContext { cause, .. } => is_exit(cause),
        mlua::Error::ExternalError(e) => e.downcast_ref::<ExitSignal>().is_some(),
        _ => false,
    }
}

/// Runs `f` on the call in progress; its error becomes a Lua error located
/// at the Lua code that called the PDK function.
fn with_call<R>(lua: &Lua, f: impl FnOnce(&mut Call) -> Result<R, String>) -> mlua::Result<R> {
    let result = {
        let mut current = lua
            .try_app_data_mut::<Current>()
            .map_err(|_| mlua::Error::runtime("the kong PDK was re-entered"))?
            .ok_or_else(|| mlua::Error::runtime("no kong PDK in this state"))?;
        match current.0.as_mut() {
            Some(call) => f(call),
            None => Err("the kong PDK is only available while a plugin runs".to_owned()),
        }
    };
    result.map_err(|message| raise(lua, message))
}

/// A Lua error prefixed with the caller's `file:line:`.
fn raise(lua: &Lua, message: String) -> mlua::Error {
    mlua::Error::runtime(match caller(lua) {
        Some(at) => format!("{at}: {message}"),
        None => message,
    })
}

/// `file:line` of the Lua function that called the running Rust function.
fn caller(lua: &Lua) -> Option<String> {
    lua.inspect_stack(1, |debug| {
        let line = debug.current_line()?;
        let source = debug.source();
        Some(format!(
            "{}:{line}",
            source.short_src.as_deref().unwrap_or("?")
        ))
    })
    .flatten()
}

/// Creates the `kong` global (and `print`, which logs); returns what the
/// runtime needs to run handlers and drop ended connections' `kong.ctx`.
pub(crate) fn install(lua: &Lua, json: &Modules, trusted_ips: &Arc<[Cidr]>) -> mlua::Result<Ctx> {
    let kong = lua.create_table()?;
    kong.set("ip", ip(lua, trusted_ips.clone())?)?;
    let websocket = lua.create_table()?;
    websocket.set("client", side(lua, Direction::Client)?)?;
    websocket.set("upstream", side(lua, Direction::Upstream)?)?;
    kong.set("websocket", websocket)?;
    kong.set("request", request(lua)?)?;
    kong.set("client", client(lua)?)?;
    kong.set("response", response(lua, json)?)?;
    kong.set("service", service(lua)?)?;
    let log = log(lua)?;
    lua.globals().set("print", log.get::<Value>("notice")?)?;
    kong.set("log", log)?;
    let conns = lua.create_table()?;
    let (ctx, enter) = lua
        .load(CTX)
        .set_name("=kong.ctx")
        .call::<(Table, Function)>(&conns)?;
    kong.set("ctx", ctx)?;
    kong.set("json", &json.cjson)?;
    kong.set("node", node(lua)?)?;
    kong.set("table", table(lua)?)?;
    lua.load(GUARD)
        .set_name("=kong")
        .call::<()>((&kong, &json.cjson))?;
    lua.globals().set("kong", kong)?;
    Ok(Ctx { conns, enter })
}

/// What Kong has and Frameway not (`kong.cache`, `kong.db`,
/// `kong.service.set_tls_verify`, ...) is an error that names it where it
/// is used, not a nil-index error deep in a handler: every table under
/// `kong` without a metatable of its own gets one that says so (`kong.json`,
/// the cjson module, is left as it is).
const GUARD: &str = r#"
local kong, json = ...
local error, pairs, type, tostring = error, pairs, type, tostring
local getmetatable, setmetatable = getmetatable, setmetatable
local function guard(t, path)
  if t == json or getmetatable(t) then return end
  for key, value in pairs(t) do
    if type(value) == "table" and type(key) == "string" then
      guard(value, path .. "." .. key)
    end
  end
  setmetatable(t, { __index = function(_, name)
    error(path .. "." .. tostring(name) .. " is not available in Frameway", 2)
  end })
end
guard(kong, "kong")
"#;

/// `kong.websocket.client` or `kong.websocket.upstream`.
fn side(lua: &Lua, direction: Direction) -> mlua::Result<Table> {
    let side = lua.create_table()?;
    let prefix = format!("kong.websocket.{}", direction.as_str());

    let name = format!("{prefix}.get_frame");
    side.set(
        "get_frame",
        lua.create_function(move |lua, ()| {
            with_call(lua, |call| {
                let frame = call.frame_in(direction, &name)?;
                Ok((frame.data.clone(), frame.kind.as_str(), frame.status))
            })
        })?,
    )?;

    let name = format!("{prefix}.set_frame_data");
    side.set(
        "set_frame_data",
        lua.create_function(move |lua, data: Value| {
            with_call(lua, |call| {
                let frame = call.frame_in(direction, &name)?;
                let Value::String(data) = data else {
                    return Err(format!(
                        "{name}: data must be a string, got {}",
                        data.type_name()
                    ));
                };
                // What the peer would refuse is refused here, where the
                // error can name the plugin's line.
                checked_payload(frame.kind, &data.as_bytes())
                    .map_err(|e| format!("{name}: {e}"))?;
                frame.data = data;
                frame.data_changed = true;
                Ok(())
            })
        })?,
    )?;

    let name = format!("{prefix}.set_status");
    side.set(
        "set_status",
        lua.create_function(move |lua, status: Value| {
            with_call(lua, |call| {
                let frame = call.frame_in(direction, &name)?;
                let status = close_status(&status, &name)?;
                let status =
                    checked_status(frame.kind, status).map_err(|e| format!("{name}: {e}"))?;
                frame.status = Some(status);
                frame.status_changed = true;
                Ok(())
            })
        })?,
    )?;

    let name = format!("{prefix}.drop_frame");
    side.set(
        "drop_frame",
        lua.create_function(move |lua, ()| {
            with_call(lua, |call| {
                let frame = call.frame_in(direction, &name)?;
                frame.verdict = drop_verdict(frame.kind).map_err(|e| format!("{name}: {e}"))?;
                Ok(())
            })
        })?,
    )?;

    // `close(status, message, other_status, other_payload)`: the first pair
    // goes to this side, the second to the other, whichever side sent the
    // frame in flight.
    let name = format!("{prefix}.close");
    side.set(
        "close",
        lua.create_function(
            move |lua, (status, message, other_status, other_message): (Value, Value, Value, Value)| {
                with_call(lua, |call| {
                    call.only_in(&[Phase::ClientFrame, Phase::UpstreamFrame], &name)?;
                    let mine = close_pair(&status, &message, &name)?;
                    let other = close_pair(&other_status, &other_message, &name)?;
                    let sender = match call.phase {
                        Phase::ClientFrame => Direction::Client,
                        _ => Direction::Upstream,
                    };
                    let frame = call
                        .frame
                        .as_mut()
                        .ok_or_else(|| format!("{name}: no frame in flight"))?;
                    let (to_sender, to_peer) = if sender == direction {
                        (mine, other)
                    } else {
                        (other, mine)
                    };
                    let (sender, peer) = PlannedClose::pair(
                        to_sender.0,
                        to_sender.1.as_deref(),
                        to_peer.0,
                        to_peer.1.as_deref(),
                    )
                    .map_err(|e| format!("{name}: {e}"))?;
                    frame.verdict = Verdict::Close { sender, peer };
                    Ok(())
                })
            },
        )?,
    )?;

    let name = format!("{prefix}.set_max_payload_size");
    side.set(
        "set_max_payload_size",
        lua.create_function(move |lua, size: Value| {
            with_call(lua, |call| {
                let request = call.handshake(&name)?;
                let size = match size {
                    Value::Integer(n) if n >= 0 => n as u64,
                    Value::Number(n) if n >= 0.0 && n.fract() == 0.0 => n as u64,
                    _ => return Err(format!("{name}: size must be a non-negative integer")),
                };
                match direction {
                    Direction::Client => request.client_limit = Some(size),
                    Direction::Upstream => request.upstream_limit = Some(size),
                }
                Ok(())
            })
        })?,
    )?;
    Ok(side)
}

/// A close status: an integer that may be sent on the wire.
fn close_status(status: &Value, function: &str) -> Result<u16, String> {
    let code = match status {
        Value::Integer(n) => *n,
        Value::Number(n) if n.fract() == 0.0 => *n as i64,
        other => {
            return Err(format!(
                "{function}: status must be an integer, got {}",
                other.type_name()
            ))
        }
    };
    // Whether a code may be sent is the PDK's rule (`PdkError::InvalidStatus`);
    // this only turns a Lua number into one.
    u16::try_from(code).map_err(|_| {
        format!("{function}: invalid close status {code}: use 1000-1003, 1007-1014 or 3000-4999")
    })
}

/// An optional status and message for a close frame.
fn close_pair(
    status: &Value,
    message: &Value,
    function: &str,
) -> Result<(Option<u16>, Option<String>), String> {
    let status = match status {
        Value::Nil => None,
        s => Some(close_status(s, function)?),
    };
    let message = match message {
        Value::Nil => None,
        Value::String(s) => {
            // Its length is the PDK's rule (`PdkError::MessageTooLong`).
            let text = s
                .to_str()
                .map_err(|_| format!("{function}: close message must be UTF-8"))?;
            Some(text.to_owned())
        }
        other => {
            return Err(format!(
                "{function}: message must be a string, got {}",
                other.type_name()
            ))
        }
    };
    Ok((status, message))
}

/// `kong.request`: the client's handshake request.
fn request(lua: &Lua) -> mlua::Result<Table> {
    let request = lua.create_table()?;
    request.set(
        "get_method",
        lua.create_function(|lua, ()| {
            with_call(lua, |call| {
                Ok(call.handshake("kong.request.get_method")?.method.clone())
            })
        })?,
    )?;
    request.set(
        "get_path",
        lua.create_function(|lua, ()| {
            with_call(lua, |call| {
                Ok(call.handshake("kong.request.get_path")?.path.clone())
            })
        })?,
    )?;
    request.set(
        "get_raw_query",
        lua.create_function(|lua, ()| {
            with_call(lua, |call| {
                let request = call.handshake("kong.request.get_raw_query")?;
                Ok(request.query.clone().unwrap_or_default())
            })
        })?,
    )?;
    request.set(
        "get_query_arg",
        lua.create_function(|lua, name: String| {
            let arg = with_call(lua, |call| {
                let request = call.handshake("kong.request.get_query_arg")?;
                Ok(query::arg(request.query.as_deref().unwrap_or(""), &name))
            })?;
            // Kong: `true` for an argument without a value (`?flag`).
            Ok(match arg {
                Some(Some(value)) => Value::String(lua.create_string(value)?),
                Some(None) => Value::Boolean(true),
                None => Value::Nil,
            })
        })?,
    )?;
    request.set(
        "get_header",
        lua.create_function(|lua, name: String| {
            let value = with_call(lua, |call| {
                let request = call.handshake("kong.request.get_header")?;
                Ok(request
                    .headers
                    .get(query::header_name(&name))
                    .map(|v| Bytes::copy_from_slice(v.as_bytes())))
            })?;
            value.map(|v| lua.create_string(v)).transpose()
        })?,
    )?;
    // Values of repeated headers come as an array; lookups ignore case and
    // take `_` as `-`, like Kong's.
    let lookup: Table = lua
        .load(
            r#"return { __index = function(t, k)
                 if type(k) == "string" then
                   local key = k:lower():gsub("_", "-")
                   return rawget(t, key)
                 end
               end }"#,
        )
        .set_name("=kong.request")
        .eval()?;
    request.set(
        "get_headers",
        lua.create_function(move |lua, _max: Option<i64>| {
            let headers = with_call(lua, |call| {
                Ok(call.handshake("kong.request.get_headers")?.headers.clone())
            })?;
            let table = lua.create_table()?;
            for name in headers.keys() {
                let mut values = headers.get_all(name).iter();
                let (first, rest) = (values.next(), values.next());
                let value = match (first, rest) {
                    (Some(v), None) => Value::String(lua.create_string(v.as_bytes())?),
                    _ => {
                        let list = lua.create_table()?;
                        for v in headers.get_all(name) {
                            list.push(lua.create_string(v.as_bytes())?)?;
                        }
                        Value::Table(list)
                    }
                };
                table.raw_set(name.as_str(), value)?;
            }
            table.set_metatable(Some(lookup.clone()))?;
            Ok(table)
        })?,
    )?;
    Ok(request)
}

/// `kong.client`.
fn client(lua: &Lua) -> mlua::Result<Table> {
    let client = lua.create_table()?;
    client.set(
        "get_ip",
        lua.create_function(|lua, ()| {
            with_call(lua, |call| {
                call.only_in(CONNECTION_PHASES, "kong.client.get_ip")?;
                Ok(call.client_ip.map(|ip| ip.to_string()))
            })
        })?,
    )?;
    // Kong's shapes: the consumer entity's fields, and the credential's
    // `id` and `consumer = { id }` (never its key).
    client.set(
        "get_consumer",
        lua.create_function(|lua, ()| {
            let consumer = with_call(lua, |call| {
                call.only_in(CONNECTION_PHASES, "kong.client.get_consumer")?;
                Ok(call.consumer.as_ref().map(|a| a.consumer.clone()))
            })?;
            let Some(consumer) = consumer else {
                return Ok(Value::Nil);
            };
            let table = lua.create_table()?;
            table.set("id", consumer.id.as_str())?;
            table.set("username", consumer.username.as_deref())?;
            table.set("custom_id", consumer.custom_id.as_deref())?;
            Ok(Value::Table(table))
        })?,
    )?;
    client.set(
        "get_credential",
        lua.create_function(|lua, ()| {
            let credential = with_call(lua, |call| {
                call.only_in(CONNECTION_PHASES, "kong.client.get_credential")?;
                Ok(call.consumer.as_ref().and_then(|a| a.credential.clone()))
            })?;
            let Some(credential) = credential else {
                return Ok(Value::Nil);
            };
            let table = lua.create_table()?;
            table.set("id", credential.id.as_str())?;
            let consumer = lua.create_table()?;
            consumer.set("id", credential.consumer.id.as_str())?;
            table.set("consumer", consumer)?;
            Ok(Value::Table(table))
        })?,
    )?;
    Ok(client)
}

/// The phases of a connection: every one but loading.
const CONNECTION_PHASES: &[Phase] = &[
    Phase::Handshake,
    Phase::ClientFrame,
    Phase::UpstreamFrame,
    Phase::Close,
];

/// `kong.response.exit(status, body, headers)`: answers the handshake
/// instead of the upstream and ends the handler.
fn response(lua: &Lua, json: &Modules) -> mlua::Result<Table> {
    let response = lua.create_table()?;
    let array_mt = json.array_mt.clone();
    response.set(
        "exit",
        lua.create_function(move |lua, (status, body, headers): (Value, Value, Value)| {
            let name = "kong.response.exit";
            let status = match status {
                Value::Integer(n) => u16::try_from(n).ok(),
                Value::Number(n) if n.fract() == 0.0 => u16::try_from(n as i64).ok(),
                _ => None,
            }
            .and_then(|n| StatusCode::from_u16(n).ok())
            .filter(|s| (100..=599).contains(&s.as_u16()));
            let mut map = HeaderMap::new();
            let body = match body {
                Value::Nil => Ok(Bytes::new()),
                Value::String(s) => Ok(Bytes::copy_from_slice(&s.as_bytes())),
                Value::Table(_) => json::encode(&body, &array_mt).map(|text| {
                    map.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/json; charset=utf-8"),
                    );
                    Bytes::from(text)
                }),
                other => Err(format!(
                    "body must be a string or a table, got {}",
                    other.type_name()
                )),
            };
            let headers = header_list(&headers);
            with_call(lua, |call| {
                let request = call.handshake(name)?;
                let status = status
                    .ok_or_else(|| format!("{name}: code must be a number between 100 and 599"))?;
                let body = body.map_err(|e| format!("{name}: {e}"))?;
                for (k, v) in headers.map_err(|e| format!("{name}: {e}"))? {
                    let k = HeaderName::try_from(k.as_str())
                        .map_err(|_| format!("{name}: invalid header name {k:?}"))?;
                    let v = HeaderValue::try_from(v.as_str())
                        .map_err(|_| format!("{name}: invalid header value {v:?}"))?;
                    map.append(k, v);
                }
                request.exit = Some(Exit {
                    status,
                    body,
                    headers: map,
                });
                Ok(())
            })?;
            Err::<(), _>(mlua::Error::external(ExitSignal))
        })?,
    )?;
    for (function, add) in [("set_header", false), ("add_header", true)] {
        response.set(
            function,
            lua.create_function(move |lua, (name, value): (String, Value)| {
                let function = format!("kong.response.{function}");
                let value = header_text(&value);
                with_call(lua, |call| {
                    let request = call.handshake(&function)?;
                    let value = value.map_err(|e| format!("{function}: {e}"))?;
                    checked_response_header(&name, &value)
                        .map_err(|e| format!("{function}: {e}"))?;
                    request.response_headers.push(match add {
                        false => ResponseHeader::Set(name, value),
                        true => ResponseHeader::Add(name, value),
                    });
                    Ok(())
                })
            })?,
        )?;
    }
    response.set(
        "clear_header",
        lua.create_function(|lua, name: String| {
            with_call(lua, |call| {
                let request = call.handshake("kong.response.clear_header")?;
                request.response_headers.push(ResponseHeader::Clear(name));
                Ok(())
            })
        })?,
    )?;
    Ok(response)
}

/// A Lua table of headers (`name = value` or `name = { values }`) as pairs.
fn header_list(headers: &Value) -> Result<Vec<(String, String)>, String> {
    let table = match headers {
        Value::Nil => return Ok(Vec::new()),
        Value::Table(t) => t,
        other => {
            return Err(format!(
                "headers must be a table, got {}",
                other.type_name()
            ))
        }
    };
    let mut out = Vec::new();
    for pair in table.pairs::<String, Value>() {
        let (name, value) = pair.map_err(|_| "header names must be strings".to_owned())?;
        match value {
            Value::Table(values) => {
                for v in values.sequence_values::<Value>() {
                    out.push((name.clone(), header_text(&v.map_err(|e| e.to_string())?)?));
                }
            }
            v => out.push((name, header_text(&v)?)),
        }
    }
    Ok(out)
}

fn header_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.to_string_lossy()),
        Value::Integer(_) | Value::Number(_) | Value::Boolean(_) => {
            value.to_string().map_err(|e| e.to_string())
        }
        other => Err(format!(
            "header values must be strings, got {}",
            other.type_name()
        )),
    }
}

/// `kong.service`: where the connection goes (`set_target`,
/// `set_upstream`) and, under `request`, the headers of the request to the
/// upstream.
fn service(lua: &Lua) -> mlua::Result<Table> {
    let request = lua.create_table()?;
    request.set(
        "set_header",
        lua.create_function(|lua, (name, value): (String, Value)| {
            let function = "kong.service.request.set_header";
            let value = header_text(&value);
            with_call(lua, |call| {
                let request = call.handshake(function)?;
                let value = value.map_err(|e| format!("{function}: {e}"))?;
                HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("{function}: invalid header name {name:?}"))?;
                HeaderValue::try_from(value.as_str())
                    .map_err(|_| format!("{function}: invalid header value {value:?}"))?;
                request.upstream_headers.push((name, Some(value)));
                Ok(())
            })
        })?,
    )?;
    request.set(
        "clear_header",
        lua.create_function(|lua, name: String| {
            with_call(lua, |call| {
                let request = call.handshake("kong.service.request.clear_header")?;
                request.upstream_headers.push((name, None));
                Ok(())
            })
        })?,
    )?;
    let service = lua.create_table()?;
    service.set("request", request)?;
    service.set(
        "set_target",
        lua.create_function(|lua, (host, port): (String, i64)| {
            let function = "kong.service.set_target";
            with_call(lua, |call| {
                let request = call.handshake(function)?;
                let port = u16::try_from(port)
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| {
                        format!("{function}: port must be from 1 to 65535, got {port}")
                    })?;
                if host.is_empty() {
                    return Err(format!("{function}: host must not be empty"));
                }
                request.reroute = Some(Reroute::Target { host, port });
                Ok(())
            })
        })?,
    )?;
    // Kong's answer: `true`, or `nil` and why.
    service.set(
        "set_upstream",
        lua.create_function(|lua, name: String| {
            with_call(lua, |call| {
                let request = call.handshake("kong.service.set_upstream")?;
                if !request.upstreams.contains(&name) {
                    return Ok((
                        None,
                        Some(format!("could not find an Upstream named '{name}'")),
                    ));
                }
                request.reroute = Some(Reroute::Upstream(name));
                Ok((Some(true), None))
            })
        })?,
    )?;
    Ok(service)
}

/// `kong.log.*`: to tracing, with the plugin's name, the connection and the
/// caller's `file:line`.
fn log(lua: &Lua) -> mlua::Result<Table> {
    use tracing::Level;
    let log = lua.create_table()?;
    for (name, level) in [
        ("debug", Level::DEBUG),
        ("info", Level::INFO),
        ("notice", Level::INFO),
        ("warn", Level::WARN),
        ("err", Level::ERROR),
        ("crit", Level::ERROR),
        ("alert", Level::ERROR),
        ("emerg", Level::ERROR),
    ] {
        log.set(
            name,
            lua.create_function(move |lua, args: Variadic<Value>| log_at(lua, level, &args))?,
        )?;
    }
    Ok(log)
}

/// Logs `args`, concatenated, at `level`, with the plugin's name, the
/// connection and the calling Lua code's `file:line` (`kong.log.*`,
/// `ngx.log`).
pub(crate) fn log_at(lua: &Lua, level: tracing::Level, args: &[Value]) -> mlua::Result<()> {
    if !enabled(level) {
        return Ok(());
    }
    let mut message = String::new();
    for arg in args {
        match arg {
            Value::String(s) => message.push_str(&s.to_string_lossy()),
            other => message.push_str(&other.to_string()?),
        }
    }
    let (plugin, conn) = match lua.try_app_data_ref::<Current>() {
        Ok(Some(current)) => current
            .0
            .as_ref()
            .map_or(("?".into(), 0), |c| (c.plugin.clone(), c.conn)),
        _ => ("?".into(), 0),
    };
    let at = caller(lua).unwrap_or_default();
    emit(level, &plugin, conn, &at, &message);
    Ok(())
}

fn enabled(level: tracing::Level) -> bool {
    use tracing::Level;
    match level {
        Level::DEBUG => tracing::enabled!(Level::DEBUG),
        Level::INFO => tracing::enabled!(Level::INFO),
        Level::WARN => tracing::enabled!(Level::WARN),
        _ => tracing::enabled!(Level::ERROR),
    }
}

fn emit(level: tracing::Level, plugin: &str, conn: u64, at: &str, message: &str) {
    use tracing::Level;
    match level {
        Level::DEBUG => tracing::debug!(plugin, connection = conn, "{at}: {message}"),
        Level::INFO => tracing::info!(plugin, connection = conn, "{at}: {message}"),
        Level::WARN => tracing::warn!(plugin, connection = conn, "{at}: {message}"),
        _ => tracing::error!(plugin, connection = conn, "{at}: {message}"),
    }
}

/// `kong.ip`: `is_trusted(address)`, against `[gateway] trusted_ips`
/// (none by default, as Kong's `trusted_ips`).
fn ip(lua: &Lua, trusted: Arc<[Cidr]>) -> mlua::Result<Table> {
    let ip = lua.create_table()?;
    ip.set(
        "is_trusted",
        lua.create_function(move |_, address: String| {
            Ok(address
                .parse::<std::net::IpAddr>()
                .is_ok_and(|addr| trusted.iter().any(|range| range.contains(addr))))
        })?,
    )?;
    Ok(ip)
}

/// `kong.node`: `get_id`.
fn node(lua: &Lua) -> mlua::Result<Table> {
    let node = lua.create_table()?;
    node.set(
        "get_id",
        lua.create_function(|_, ()| Ok(crate::node::id()))?,
    )?;
    Ok(node)
}

/// `kong.table`: `new(narr, nrec)` (a table with room for `narr` array and
/// `nrec` hash entries) and `clear(t)`.
fn table(lua: &Lua) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    table.set(
        "new",
        lua.create_function(|lua, (narr, nrec): (Option<usize>, Option<usize>)| {
            lua.create_table_with_capacity(narr.unwrap_or(0), nrec.unwrap_or(0))
        })?,
    )?;
    table.set("clear", lua.create_function(|_, t: Table| t.clear())?)?;
    Ok(table)
}

/// `kong.ctx` (`plugin`: this plugin instance's table; `shared`: one table
/// for all Lua plugins; both per connection) and the function every phase
/// handler is called through, which tells it whose call is running.
///
/// Written in Lua because a handler reads `kong.ctx.plugin` on nearly every
/// frame: a Rust metamethod costs a protected callback and several registry
/// references per access, several times the Lua lookup it replaces.
const CTX: &str = r#"
local conns = ...
local error = error
-- The connection and the `kong.ctx.plugin` key of the call in progress;
-- nil while code loads (the init phase).
local conn, slot
local ctx = setmetatable({}, {
  __index = function(_, key)
    if conn == nil then
      error("kong.ctx: function cannot be called in init phase", 2)
    end
    local k
    if key == "plugin" then k = slot elseif key == "shared" then k = "shared" else return nil end
    local entry = conns[conn]
    if entry == nil then
      entry = {}
      conns[conn] = entry
    end
    local t = entry[k]
    if t == nil then
      t = {}
      entry[k] = t
    end
    return t
  end,
  __newindex = function()
    error("kong.ctx is read-only: use kong.ctx.plugin or kong.ctx.shared", 2)
  end,
})
local function enter(c, s, f, ...)
  conn, slot = c, s
  return f(...)
end
return ctx, enter
"#;

/// What [`install`] leaves for the runtime.
pub(crate) struct Ctx {
    /// `kong.ctx` data by connection id, kept until the connection ends.
    pub(crate) conns: Table,
    /// `enter(conn, slot, f, ...)` calls `f(...)` as connection `conn`'s
    /// call with `kong.ctx.plugin` key `slot`; `enter(nil, nil, f)` runs `f`
    /// in the init phase.
    pub(crate) enter: Function,
}
