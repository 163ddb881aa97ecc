//! `cjson` and `cjson.safe` (also `kong.json`): JSON for plugins, through
//! serde_json, with lua-cjson's conventions: `cjson.null` for JSON null,
//! empty tables encode as `{}`, and decoded arrays carry `cjson.array_mt` so
//! that `[]` survives a round trip.

use mlua::{Lua, MultiValue, Table, Value};
use serde_json::{Map, Number, Value as Json};

/// How deep a table may nest before encoding refuses (as lua-cjson does;
/// this also stops self-referencing tables).
const MAX_DEPTH: usize = 1000;

/// The `cjson` and `cjson.safe` modules of one state.
pub(crate) struct Modules {
    pub(crate) cjson: Table,
    pub(crate) safe: Table,
    /// The metatable marking a table as a JSON array.
    pub(crate) array_mt: Table,
}

/// Builds both modules.
pub(crate) fn modules(lua: &Lua) -> mlua::Result<Modules> {
    let array_mt = lua.create_table()?;
    let cjson = lua.create_table()?;
    let safe = lua.create_table()?;
    for module in [&cjson, &safe] {
        module.set("null", Value::NULL)?;
        module.set("array_mt", &array_mt)?;
        let empty = lua.create_table()?;
        empty.set_metatable(Some(array_mt.clone()))?;
        module.set("empty_array", empty)?;
    }

    let mt = array_mt.clone();
    cjson.set(
        "encode",
        lua.create_function(move |_, value: Value| {
            encode(&value, &mt).map_err(mlua::Error::runtime)
        })?,
    )?;
    let mt = array_mt.clone();
    cjson.set(
        "decode",
        lua.create_function(move |lua, text: mlua::String| {
            decode(lua, &text.as_bytes(), &mt).map_err(mlua::Error::runtime)
        })?,
    )?;
    // The safe variants answer `nil, message` instead of raising.
    let mt = array_mt.clone();
    safe.set(
        "encode",
        lua.create_function(move |lua, value: Value| {
            Ok(match encode(&value, &mt) {
                Ok(text) => MultiValue::from_iter([Value::String(lua.create_string(text)?)]),
                Err(e) => MultiValue::from_iter([Value::Nil, Value::String(lua.create_string(e)?)]),
            })
        })?,
    )?;
    let mt = array_mt.clone();
    safe.set(
        "decode",
        lua.create_function(move |lua, text: Value| {
            let decoded = match &text {
                Value::String(s) => decode(lua, &s.as_bytes(), &mt),
                other => Err(format!("expected a string, got {}", other.type_name())),
            };
            Ok(match decoded {
                Ok(value) => MultiValue::from_iter([value]),
                Err(e) => MultiValue::from_iter([Value::Nil, Value::String(lua.create_string(e)?)]),
            })
        })?,
    )?;
    Ok(Modules {
        cjson,
        safe,
        array_mt,
    })
}

/// Encodes a Lua value as JSON text.
pub(crate) fn encode(value: &Value, array_mt: &Table) -> Result<String, String> {
    let json = to_json(value, array_mt, 0)?;
    serde_json::to_string(&json).map_err(|e| e.to_string())
}

/// Converts a Lua value to JSON (also used for schema defaults).
pub(crate) fn to_json(value: &Value, array_mt: &Table, depth: usize) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "cannot encode: nesting deeper than {MAX_DEPTH} (a table that contains itself?)"
        ));
    }
    Ok(match value {
        Value::Nil => Json::Null,
        Value::LightUserData(p) if p.0.is_null() => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Number(n) => Json::Number(
            Number::from_f64(*n).ok_or_else(|| format!("cannot encode the number {n}"))?,
        ),
        Value::String(s) => Json::String(
            s.to_str()
                .map_err(|_| "cannot encode a string that is not UTF-8".to_owned())?
                .to_owned(),
        ),
        Value::Table(t) => table_to_json(t, array_mt, depth)?,
        other => return Err(format!("cannot encode a {}", other.type_name())),
    })
}

fn table_to_json(table: &Table, array_mt: &Table, depth: usize) -> Result<Json, String> {
    let marked_array = table.metatable().is_some_and(|mt| &mt == array_mt);
    let mut max_index = 0i64;
    let mut count = 0i64;
    let mut all_indices = true;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair.map_err(|e| e.to_string())?;
        count += 1;
        match key {
            Value::Integer(i) if i >= 1 => max_index = max_index.max(i),
            _ => all_indices = false,
        }
    }
    // A sequence 1..n is an array; so is an empty table marked as one.
    if (all_indices && count > 0 && max_index == count) || (marked_array && count == 0) {
        let mut items = Vec::with_capacity(count as usize);
        for i in 1..=count {
            let item: Value = table.raw_get(i).map_err(|e| e.to_string())?;
            items.push(to_json(&item, array_mt, depth + 1)?);
        }
        return Ok(Json::Array(items));
    }
    let mut map = Map::new();
    for pair in table.pairs::<Value, Value>() {
        let (key, item) = pair.map_err(|e| e.to_string())?;
        let key = match key {
            Value::String(s) => s
                .to_str()
                .map_err(|_| "cannot encode a key that is not UTF-8".to_owned())?
                .to_owned(),
            Value::Integer(i) => i.to_string(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("cannot encode a {} key", other.type_name())),
        };
        map.insert(key, to_json(&item, array_mt, depth + 1)?);
    }
    Ok(Json::Object(map))
}

/// Decodes JSON text to a Lua value.
pub(crate) fn decode(lua: &Lua, text: &[u8], array_mt: &Table) -> Result<Value, String> {
    let json: Json = serde_json::from_slice(text).map_err(|e| format!("invalid JSON: {e}"))?;
    from_json(lua, &json, array_mt).map_err(|e| e.to_string())
}

/// Converts JSON to a Lua value (also used for plugin configurations).
pub(crate) fn from_json(lua: &Lua, json: &Json, array_mt: &Table) -> mlua::Result<Value> {
    Ok(match json {
        Json::Null => Value::NULL,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, from_json(lua, item, array_mt)?)?;
            }
            table.set_metatable(Some(array_mt.clone()))?;
            Value::Table(table)
        }
        Json::Object(map) => {
            let table = lua.create_table_with_capacity(0, map.len())?;
            for (key, item) in map {
                table.raw_set(key.as_str(), from_json(lua, item, array_mt)?)?;
            }
            Value::Table(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> Lua {
        let lua = Lua::new();
        let m = modules(&lua).unwrap();
        lua.globals().set("cjson", m.cjson).unwrap();
        lua.globals().set("safe", m.safe).unwrap();
        lua
    }

    #[test]
    fn round_trips_keep_types_arrays_and_null() {
        let lua = state();
        let out: String = lua
            .load(
                r#"
                local v = cjson.decode('{"a":[1,2.5,"x",true,null],"e":[],"o":{}}')
                assert(v.a[5] == cjson.null and v.a[1] == 1 and math.type(v.a[1]) == "integer")
                return cjson.encode(v)
                "#,
            )
            .eval()
            .unwrap();
        assert_eq!(out, r#"{"a":[1,2.5,"x",true,null],"e":[],"o":{}}"#);
    }

    #[test]
    fn tables_encode_as_arrays_or_objects() {
        let lua = state();
        let out: String = lua
            .load(r#"return cjson.encode({ list = {1, 2, 3}, map = { [1] = "a", [3] = "c" }, empty = {}, arr = cjson.empty_array })"#)
            .eval()
            .unwrap();
        assert_eq!(
            out,
            r#"{"arr":[],"empty":{},"list":[1,2,3],"map":{"1":"a","3":"c"}}"#
        );
    }

    #[test]
    fn errors_raise_in_cjson_and_return_in_safe() {
        let lua = state();
        let err = lua.load("cjson.decode('{nope')").exec().unwrap_err();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
        let err = lua
            .load("local t = {} t.t = t cjson.encode(t)")
            .exec()
            .unwrap_err();
        assert!(err.to_string().contains("nesting"), "{err}");
        let (v, e): (Value, String) = lua.load("return safe.decode('[1,')").eval().unwrap();
        assert!(v.is_nil());
        assert!(e.contains("invalid JSON"), "{e}");
        let (v, e): (Value, String) = lua
            .load("return safe.encode({ f = print })")
            .eval()
            .unwrap();
        assert!(v.is_nil());
        assert!(e.contains("cannot encode a function"), "{e}");
        let err = lua.load("cjson.encode(0/0)").exec().unwrap_err();
        assert!(
            err.to_string().contains("cannot encode the number"),
            "{err}"
        );
    }
}
