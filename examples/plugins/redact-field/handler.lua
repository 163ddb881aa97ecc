-- redact-field: replaces the values of chosen JSON fields, at any depth, in
-- text messages in both directions (for example, keep passwords and tokens
-- out of what the other side, and any logging plugin after this one, sees).
--
--   [gateway]
--   lua_plugin_dirs = ["examples/plugins"]
--
--   [[plugins]]
--   name = "redact-field"
--   config = { fields = ["password", "token"] }

local cjson = require("cjson.safe")

local RedactField = {
  PRIORITY = 900,   -- before logging plugins, after authentication
  VERSION = "1.0.0",
}

-- conf.fields as a set, built once per configuration.
local sets = setmetatable({}, { __mode = "k" })

local function names(conf)
  local set = sets[conf]
  if not set then
    set = {}
    for _, name in ipairs(conf.fields) do
      set[name] = true
    end
    sets[conf] = set
  end
  return set
end

-- Replaces matching keys in place; returns whether anything changed.
local function redact(value, set, replacement)
  if type(value) ~= "table" then
    return false
  end
  local changed = false
  for key, item in pairs(value) do
    if set[key] then
      value[key] = replacement
      changed = true
    elseif redact(item, set, replacement) then
      changed = true
    end
  end
  return changed
end

local function handle(side, conf, typ, data)
  if typ ~= "text" then
    return
  end
  local doc = cjson.decode(data)
  if doc == nil then
    if conf.on_invalid == "drop" then
      side.drop_frame()
    elseif conf.on_invalid == "close" then
      side.close(1007, "invalid JSON")
    end
    return
  end
  -- Untouched messages are forwarded byte for byte.
  if redact(doc, names(conf), conf.replacement) then
    side.set_frame_data(cjson.encode(doc))
  end
end

function RedactField:ws_client_frame(conf, typ, data)
  handle(kong.websocket.client, conf, typ, data)
end

function RedactField:ws_upstream_frame(conf, typ, data)
  handle(kong.websocket.upstream, conf, typ, data)
end

return RedactField
