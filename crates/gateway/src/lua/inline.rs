//! Kong's `pre-function` and `post-function`: Lua code given inline in the
//! configuration, one list of chunks per phase (`ws_handshake`,
//! `ws_client_frame`, `ws_upstream_frame`, `ws_close`, and `access` and
//! `log`, their HTTP names), run first (`pre-function`, priority 1000000)
//! or last (`post-function`, -1000) of a connection's plugins.
//!
//! They are Lua plugins like any other, whose handler comes with the
//! gateway: the same sandbox, budget and `kong` API. As in Kong, a chunk
//! that returns a function is run once, and that function is what runs
//! from then on (state kept in its upvalues lives as long as the plugin's
//! configuration).

use std::path::PathBuf;

use mlua::{ChunkMode, Lua};

use super::loader::{BuiltIn, PluginFiles};

/// The phases that run chunks.
const PHASES: [&str; 6] = [
    "access",
    "ws_handshake",
    "ws_client_frame",
    "ws_upstream_frame",
    "ws_close",
    "log",
];

/// Kong's HTTP phases a WebSocket connection does not have: a chunk for
/// one of them would never run, so it is refused.
const ABSENT_PHASES: [&str; 4] = ["certificate", "rewrite", "header_filter", "body_filter"];

/// The two plugins, by name.
pub(crate) fn plugins() -> [(String, PluginFiles); 2] {
    [("pre-function", 1_000_000), ("post-function", -1000)].map(|(name, priority)| {
        let files = PluginFiles {
            dir: PathBuf::from("<built-in>").join(name),
            built_in: Some(BuiltIn {
                handler: HANDLER
                    .replace("@PRIORITY@", &priority.to_string())
                    .replace("@NAME@", name),
                schema: schema(),
            }),
        };
        (name.to_owned(), files)
    })
}

/// Whether `name` is one of these plugins.
pub(crate) fn is_inline(name: &str) -> bool {
    matches!(name, "pre-function" | "post-function")
}

/// What the schema cannot say: chunks for phases a WebSocket does not
/// have, and chunks that do not compile (named by their place, as
/// `config.ws_handshake[2]`).
pub(crate) fn check(config: &serde_json::Value) -> Result<(), String> {
    for phase in ABSENT_PHASES {
        if config
            .get(phase)
            .and_then(|v| v.as_array())
            .is_some_and(|chunks| !chunks.is_empty())
        {
            return Err(format!(
                "config.{phase}: a WebSocket connection has no {phase} phase (chunks run in {})",
                PHASES.join(", ")
            ));
        }
    }
    let lua = Lua::new();
    for phase in PHASES {
        let Some(chunks) = config.get(phase).and_then(|v| v.as_array()) else {
            continue;
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let Some(code) = chunk.as_str() else { continue };
            let place = format!("config.{phase}[{}]", i + 1);
            lua.load(code)
                .set_name(format!("={place}"))
                .set_mode(ChunkMode::Text)
                .into_function()
                .map_err(|e| match e {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => format!("{place}: {other}"),
                })?;
        }
    }
    Ok(())
}

fn schema() -> String {
    let fields: Vec<String> = PHASES
        .iter()
        .chain(&ABSENT_PHASES)
        .map(|phase| format!("{{ {phase} = chunks }}"))
        .collect();
    format!(
        "local chunks = {{ type = \"array\", default = {{}}, elements = {{ type = \"string\" }} }}\n\
         return {{ fields = {{ {{ config = {{ type = \"record\", fields = {{ {} }} }} }} }} }}\n",
        fields.join(", ")
    )
}

const HANDLER: &str = r#"
local Inline = { PRIORITY = @PRIORITY@, VERSION = "3.0.0" }

-- Compiled chunks, by configuration table and phase.
local compiled = setmetatable({}, { __mode = "k" })

local function functions(conf, phase)
  local by_phase = compiled[conf]
  if not by_phase then
    by_phase = {}
    compiled[conf] = by_phase
  end
  local fns = by_phase[phase]
  if fns then
    return fns
  end
  fns = {}
  for i, code in ipairs(conf[phase]) do
    local chunk = assert(load(code, "=@NAME@ config." .. phase .. "[" .. i .. "]", "t"))
    fns[i] = function(...)
      local result = chunk(...)
      if type(result) == "function" then
        fns[i] = result
        return result(...)
      end
      fns[i] = chunk
    end
  end
  by_phase[phase] = fns
  return fns
end

local function run(conf, phase, ...)
  local fns = functions(conf, phase)
  for i = 1, #fns do
    fns[i](...)
  end
end

function Inline:ws_handshake(conf)
  run(conf, "access")
  run(conf, "ws_handshake")
end

function Inline:ws_client_frame(conf, ...)
  run(conf, "ws_client_frame", ...)
end

function Inline:ws_upstream_frame(conf, ...)
  run(conf, "ws_upstream_frame", ...)
end

function Inline:ws_close(conf)
  run(conf, "ws_close")
  run(conf, "log")
end

return Inline
"#;
