//! OpenResty's `ngx` API as Kong plugins use it, from the handshake and
//! frame phases: the clock, `ngx.log`, `ngx.ctx`, base64, SHA-1, HMAC-SHA1,
//! MD5, URI escaping, `ngx.var`, `ngx.re`, and a clear error for what
//! Frameway does not offer.

mod support;

use bytes::Bytes;
use frameway_gateway::plugin::{Direction, FrameType, Session};
use support::lua::*;
use support::*;

const NGX_HANDLER: &str = r#"
function P:ws_client_frame(conf, typ, data)
  local now, t = ngx.now(), ngx.time()
  ngx.update_time()
  ngx.ctx.seen = (ngx.ctx.seen or 0) + 1
  local out = {
    math.abs(now - t) <= 1 and math.type(t) == "integer",
    ngx.encode_base64("hello?"), ngx.encode_base64("hi", true),
    ngx.decode_base64("aGVsbG8/"), tostring(ngx.decode_base64("%%%")),
    #ngx.sha1_bin("abc"), ngx.encode_base64(ngx.hmac_sha1("Jefe", "what do ya want for nothing?")),
    ngx.escape_uri("a b/é"), ngx.unescape_uri("a%20b+c%2F"),
    kong.ctx.shared.seen,
  }
  ngx.log(ngx.WARN, "seen ", ngx.ctx.seen)
  local ok, err = pcall(function() return ngx.timer.at(0, print) end)
  out[#out + 1] = err
  for i, v in ipairs(out) do out[i] = tostring(v) end
  kong.websocket.client.set_frame_data(table.concat(out, "|"))
end
"#;

#[test]
fn ngx_functions_answer_as_openresty_does_in_a_frame_handler() {
    let dir = plugin_dir(&[("ngxy", "handler.lua", &handler(NGX_HANDLER))]);
    let mut session = Session::new(lua_chain(&dir, "ngxy"));
    let (out, logged) = capture_log(|| {
        session
            .frame(Direction::Client, FrameType::Text, Bytes::from("x"), None)
            .unwrap()
    });
    let text = String::from_utf8(out.data.to_vec()).unwrap();
    let fields: Vec<&str> = text.split('|').collect();
    assert_eq!(
        fields[..10],
        [
            "true",
            "aGVsbG8/",
            "aGk",
            "hello?",
            "nil",
            "20",
            "7/zfauXrL6LSdBbV8YTfnCWafHk=",
            "a%20b%2F%C3%A9",
            "a b c/",
            "1",
        ],
        "{text}"
    );
    assert!(
        fields[10].ends_with("ngx.timer is not available in Frameway"),
        "{text}"
    );
    assert_eq!(logged.len(), 1, "{logged:?}");
    let (level, plugin, message) = &logged[0];
    assert_eq!((*level, plugin.as_str()), (tracing::Level::WARN, "ngxy"));
    assert!(
        message.ends_with("ngxy/handler.lua:15: seen 1"),
        "{message}"
    );
}

#[test]
fn a_bad_ngx_log_level_is_an_error_that_names_it() {
    let body = r#"
function P:ws_client_frame(conf, typ, data)
  ngx.log(42, "x")
end
"#;
    let dir = plugin_dir(&[("badlog", "handler.lua", &handler(body))]);
    let mut session = Session::new(lua_chain(&dir, "badlog"));
    let err = session
        .frame(Direction::Client, FrameType::Text, Bytes::from("x"), None)
        .unwrap_err();
    assert!(
        err.to_string().contains("ngx.log: bad log level 42"),
        "{err}"
    );
}

#[tokio::test]
async fn ngx_runs_in_the_handshake_phase_too() {
    bounded(async {
        let body = r#"
function P:ws_handshake(conf)
  ngx.ctx.stamp = ngx.encode_base64(ngx.sha1_bin("stamp"))
  kong.service.request.set_header("X-Stamp", ngx.ctx.stamp)
end
"#;
        let dir = plugin_dir(&[("stamp", "handler.lua", &handler(body))]);
        let (up, mut conns) = scripted_upstream().await;
        let gw = lua_gateway(up, &dir, &[("stamp", "{}")]).await;
        let _client = connect(gw, "/").await;
        let upstream = next_upstream(&mut conns).await;
        assert_eq!(
            upstream.request.headers()["x-stamp"],
            "v4+AWDOng2plNiAOUNpdyuPdqIY="
        );
    })
    .await;
}

const RE_HANDLER: &str = r#"
function P:ws_client_frame(conf, typ, data)
  local m = ngx.re.match(data, [[(?<user>\w+)@(\w+)(?:\.(org|com))?]], "jo")
  local ctx = { pos = 1 }
  local from, to = ngx.re.find(data, "[0-9]+", "jo", ctx)
  local again = ngx.re.find(data, "[0-9]+", "jo", ctx)
  local swapped, n = ngx.re.gsub(data, [[(\w+)@(\w+)]], "$2@$1")
  local shouted = ngx.re.sub(data, "[a-z]+", function(m) return m[0]:upper() end)
  local caseless = ngx.re.match("HELLO", "hello", "i")
  local ok, err = pcall(ngx.re.match, data, [[(a)\1]])
  local out = {
    m[0], m.user, m[1], m[2], tostring(m[3]),
    from, to, ctx.pos, tostring(again),
    swapped, n, shouted, caseless[0],
    ngx.md5("abc"), #ngx.md5_bin("abc"),
    err,
  }
  for i, v in ipairs(out) do out[i] = tostring(v) end
  kong.websocket.client.set_frame_data(table.concat(out, "|"))
end
"#;

#[test]
fn ngx_re_and_md5_answer_as_openresty_does() {
    let dir = plugin_dir(&[("rex", "handler.lua", &handler(RE_HANDLER))]);
    let mut session = Session::new(lua_chain(&dir, "rex"));
    let out = session
        .frame(
            Direction::Client,
            FrameType::Text,
            Bytes::from("mail ann@example now 42"),
            None,
        )
        .unwrap();
    let text = String::from_utf8(out.data.to_vec()).unwrap();
    let fields: Vec<&str> = text.split('|').collect();
    assert_eq!(
        fields[..15],
        [
            "ann@example",
            "ann",
            "ann",
            "example",
            "false",
            "22",
            "23",
            "24",
            "nil",
            "mail example@ann now 42",
            "1",
            "MAIL ann@example now 42",
            "HELLO",
            "900150983cd24fb0d6963f7d28e17f72",
            "16",
        ],
        "{text}"
    );
    assert!(
        fields[15].contains("no PCRE-only syntax (look-around, backreferences"),
        "{text}"
    );
}

#[tokio::test]
async fn ngx_var_reads_the_handshakes_variables() {
    bounded(async {
        let body = r#"
function P:ws_handshake(conf)
  local v = ngx.var
  local seen = table.concat({ v.remote_addr, v.uri, v.request_uri, v.args, v.is_args,
    v.host, v.request_method, v.http_x_trace_id }, " ")
  local ok, err = pcall(function() return v.upstream_addr end)
  kong.service.request.set_header("X-Vars", seen .. " | " .. err)
end
"#;
        let dir = plugin_dir(&[("vars", "handler.lua", &handler(body))]);
        let (up, mut conns) = scripted_upstream().await;
        let gw = lua_gateway(up, &dir, &[("vars", "{}")]).await;
        let request = upgrade_request_to("Chat.Example:8080", "/room?a=1", "X-Trace-Id: t-9\r\n");
        let _client = raw_ws_client(gw, &request, b"").await;
        let upstream = next_upstream(&mut conns).await;
        let vars = upstream.request.headers()["x-vars"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            vars.starts_with("127.0.0.1 /room /room?a=1 a=1 ? chat.example GET t-9 | "),
            "{vars}"
        );
        assert!(
            vars.ends_with("ngx.var.upstream_addr is not available in Frameway"),
            "{vars}"
        );
    })
    .await;
}

#[test]
fn what_kong_has_and_frameway_not_is_an_error_that_names_it() {
    let body = r#"
function P:ws_client_frame(conf, typ, data)
  local out = {}
  for _, probe in ipairs({
    function() return kong.cache:get("k") end,
    function() return kong.db.consumers:select({}) end,
    function() return kong.service.set_tls_verify(true) end,
    function() return kong.request.get_body() end,
  }) do
    local ok, err = pcall(probe)
    out[#out + 1] = err
  end
  kong.websocket.client.set_frame_data(table.concat(out, "|"))
end
"#;
    let dir = plugin_dir(&[("probe", "handler.lua", &handler(body))]);
    let mut session = Session::new(lua_chain(&dir, "probe"));
    let out = session
        .frame(Direction::Client, FrameType::Text, Bytes::from("x"), None)
        .unwrap();
    let text = String::from_utf8(out.data.to_vec()).unwrap();
    let errors: Vec<&str> = text.split('|').collect();
    for (error, name) in errors.iter().zip([
        "kong.cache",
        "kong.db",
        "kong.service.set_tls_verify",
        "kong.request.get_body",
    ]) {
        assert!(
            error.contains("probe/handler.lua:")
                && error.ends_with(&format!("{name} is not available in Frameway")),
            "{text}"
        );
    }
}
