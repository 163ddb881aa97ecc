//! OpenResty's `ngx` API as Kong plugins use it, from the handshake and
//! frame phases: the clock, `ngx.log`, `ngx.ctx`, base64, SHA-1, HMAC-SHA1,
//! URI escaping, and a clear error for what Frameway does not offer.

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
