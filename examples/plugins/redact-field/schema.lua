-- Configuration of redact-field, in Kong's schema shape.
return {
  name = "redact-field",
  fields = {
    { config = {
        type = "record",
        fields = {
          -- Object keys whose values are replaced, at any depth.
          { fields = { type = "array", elements = { type = "string" }, required = true, len_min = 1 } },
          { replacement = { type = "string", default = "[redacted]" } },
          -- What to do with a text message that is not JSON.
          { on_invalid = { type = "string", default = "forward", one_of = { "forward", "drop", "close" } } },
        },
    } },
  },
}
