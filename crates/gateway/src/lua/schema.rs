//! A plugin's `schema.lua`, Kong's shape: the `config` record's fields with
//! `type` (string, number, integer, boolean, array, set, map, record),
//! `required`, `default`, `one_of`, `between`, `len_min`, `len_max`,
//! `elements`, `keys`, `values` and `fields`. Other validators Kong knows
//! are accepted and not checked. Validation fills in defaults and refuses
//! unknown keys, reporting every problem with its path (`config.limit`).

use mlua::{Table, Value};
use serde_json::{Map, Value as Json};

use super::json;

/// The schema of a plugin's configuration.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    /// The `config` record, if the schema declares one.
    config: Option<Field>,
}

/// One field: its type and checks.
#[derive(Debug, Clone)]
struct Field {
    kind: Kind,
    required: bool,
    default: Option<Json>,
    one_of: Option<Vec<Json>>,
    between: Option<(f64, f64)>,
    len_min: Option<usize>,
    len_max: Option<usize>,
}

#[derive(Debug, Clone)]
enum Kind {
    String,
    Number,
    Integer,
    Boolean,
    /// `array` and `set`, with their element's field.
    Array(Box<Field>),
    Map(Box<Field>, Box<Field>),
    Record(Vec<(String, Field)>),
    /// No `type`, or one this gateway does not check (`foreign`, `function`, typedefs it
    /// does not know).
    Any,
}

impl Schema {
    /// Reads the table `schema.lua` returned. `array_mt` is the state's
    /// cjson array marker, for defaults.
    pub(crate) fn from_lua(schema: &Table, array_mt: &Table) -> Result<Schema, String> {
        let fields: Option<Table> = schema
            .get("fields")
            .map_err(|_| "`fields` must be a table".to_owned())?;
        let Some(fields) = fields else {
            return Ok(Schema { config: None });
        };
        for (name, def) in named_fields(&fields, "fields")? {
            if name == "config" {
                let config = Field::from_lua(&def, "config", array_mt)?;
                if !matches!(config.kind, Kind::Record(_)) {
                    return Err("config: must be a record".into());
                }
                return Ok(Schema {
                    config: Some(config),
                });
            }
        }
        Ok(Schema { config: None })
    }

    /// Checks a plugin entry's `config` and returns it with defaults filled
    /// in; every problem is reported, joined by "; ".
    pub(crate) fn validate(&self, config: &Json) -> Result<Json, String> {
        let Some(field) = &self.config else {
            return Ok(config.clone());
        };
        let mut errors = Vec::new();
        let value = if config.is_null() {
            &Json::Object(Map::new())
        } else {
            config
        };
        let checked = field.check(value, "config", &mut errors);
        if errors.is_empty() {
            Ok(checked)
        } else {
            Err(errors.join("; "))
        }
    }
}

/// Kong lists fields as an array of one-key tables: `{ { name = {…} }, … }`.
fn named_fields(fields: &Table, path: &str) -> Result<Vec<(String, Table)>, String> {
    let mut out = Vec::new();
    for entry in fields.sequence_values::<Value>() {
        let entry = entry.map_err(|e| format!("{path}: {e}"))?;
        let Value::Table(entry) = entry else {
            return Err(format!(
                "{path}: each field must be a {{ name = {{ … }} }} table"
            ));
        };
        for pair in entry.pairs::<String, Table>() {
            let (name, def) = pair
                .map_err(|_| format!("{path}: each field must be a {{ name = {{ … }} }} table"))?;
            out.push((name, def));
        }
    }
    Ok(out)
}

impl Field {
    fn from_lua(def: &Table, path: &str, array_mt: &Table) -> Result<Field, String> {
        let get = |key: &str| -> Result<Value, String> {
            def.get::<Value>(key)
                .map_err(|e| format!("{path}.{key}: {e}"))
        };
        let type_name = match get("type")? {
            Value::String(s) => Some(s.to_string_lossy()),
            Value::Nil => None,
            _ => return Err(format!("{path}: `type` must be a string")),
        };
        let sub = |key: &str| -> Result<Box<Field>, String> {
            match get(key)? {
                Value::Table(t) => Ok(Box::new(Field::from_lua(
                    &t,
                    &format!("{path}.{key}"),
                    array_mt,
                )?)),
                Value::Nil => Ok(Box::new(Field::any())),
                _ => Err(format!("{path}.{key}: must be a field table")),
            }
        };
        let kind = match type_name.as_deref() {
            Some("string") => Kind::String,
            Some("number") => Kind::Number,
            Some("integer") => Kind::Integer,
            Some("boolean") => Kind::Boolean,
            Some("array") | Some("set") => Kind::Array(sub("elements")?),
            Some("map") => Kind::Map(sub("keys")?, sub("values")?),
            Some("record") => {
                let fields = match get("fields")? {
                    Value::Table(t) => named_fields(&t, &format!("{path}.fields"))?,
                    Value::Nil => Vec::new(),
                    _ => return Err(format!("{path}.fields: must be a table")),
                };
                let mut record = Vec::with_capacity(fields.len());
                for (name, def) in fields {
                    let field = Field::from_lua(&def, &format!("{path}.{name}"), array_mt)?;
                    record.push((name, field));
                }
                Kind::Record(record)
            }
            Some("foreign") | Some("function") | Some("any") | None => Kind::Any,
            Some(other) => return Err(format!("{path}: unknown type {other:?}")),
        };
        let to_json = |v: &Value, key: &str| {
            json::to_json(v, array_mt, 0).map_err(|e| format!("{path}.{key}: {e}"))
        };
        let default = match get("default")? {
            Value::Nil => None,
            v => Some(to_json(&v, "default")?),
        };
        let one_of = match get("one_of")? {
            Value::Nil => None,
            v => match to_json(&v, "one_of")? {
                Json::Array(items) => Some(items),
                _ => return Err(format!("{path}.one_of: must be an array")),
            },
        };
        let between = match get("between")? {
            Value::Nil => None,
            v => match to_json(&v, "between")? {
                Json::Array(b) if b.len() == 2 && b.iter().all(Json::is_number) => {
                    Some((b[0].as_f64().unwrap_or(0.0), b[1].as_f64().unwrap_or(0.0)))
                }
                _ => return Err(format!("{path}.between: must be {{ min, max }}")),
            },
        };
        let length = |key: &str| -> Result<Option<usize>, String> {
            match get(key)? {
                Value::Nil => Ok(None),
                Value::Integer(n) if n >= 0 => Ok(Some(n as usize)),
                _ => Err(format!("{path}.{key}: must be a non-negative integer")),
            }
        };
        Ok(Field {
            kind,
            required: matches!(get("required")?, Value::Boolean(true)),
            default,
            one_of,
            between,
            len_min: length("len_min")?,
            len_max: length("len_max")?,
        })
    }

    fn any() -> Field {
        Field {
            kind: Kind::Any,
            required: false,
            default: None,
            one_of: None,
            between: None,
            len_min: None,
            len_max: None,
        }
    }

    /// Checks a present, non-null value; returns it with defaults filled in.
    fn check(&self, value: &Json, path: &str, errors: &mut Vec<String>) -> Json {
        let before = errors.len();
        let checked = match (&self.kind, value) {
            (Kind::Any, v) => v.clone(),
            (Kind::String, Json::String(s)) => {
                self.check_len(s.chars().count(), path, errors);
                value.clone()
            }
            (Kind::Number, Json::Number(_)) => value.clone(),
            (Kind::Integer, Json::Number(n))
                if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) =>
            {
                value.clone()
            }
            (Kind::Boolean, Json::Bool(_)) => value.clone(),
            (Kind::Array(element), Json::Array(items)) => {
                self.check_len(items.len(), path, errors);
                let items = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        element.check_present(item, &format!("{path}[{}]", i + 1), errors)
                    })
                    .collect();
                Json::Array(items)
            }
            (Kind::Map(keys, values), Json::Object(map)) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let item_path = format!("{path}.{k}");
                    keys.check_present(&Json::String(k.clone()), &item_path, errors);
                    out.insert(k.clone(), values.check_present(v, &item_path, errors));
                }
                Json::Object(out)
            }
            (Kind::Record(fields), Json::Object(map)) => {
                self.check_record(fields, map, path, errors)
            }
            (kind, _) => {
                errors.push(format!("{path}: expected {}", kind.article()));
                return value.clone();
            }
        };
        if errors.len() == before {
            self.check_value(&checked, path, errors);
        }
        checked
    }

    /// Like [`Field::check`], with null treated as absent.
    fn check_present(&self, value: &Json, path: &str, errors: &mut Vec<String>) -> Json {
        if value.is_null() {
            if self.required {
                errors.push(format!("{path}: required field missing"));
            }
            return Json::Null;
        }
        self.check(value, path, errors)
    }

    fn check_record(
        &self,
        fields: &[(String, Field)],
        map: &Map<String, Json>,
        path: &str,
        errors: &mut Vec<String>,
    ) -> Json {
        for key in map.keys() {
            if !fields.iter().any(|(name, _)| name == key) {
                errors.push(format!("{path}.{key}: unknown field"));
            }
        }
        let mut out = Map::new();
        for (name, field) in fields {
            let field_path = format!("{path}.{name}");
            match map.get(name).filter(|v| !v.is_null()) {
                Some(v) => {
                    out.insert(name.clone(), field.check(v, &field_path, errors));
                }
                None => {
                    if let Some(v) = field.absent(&field_path, errors) {
                        out.insert(name.clone(), v);
                    }
                }
            }
        }
        Json::Object(out)
    }

    /// The value of an absent field: its default; for a record, a record of
    /// its subfields' defaults (as Kong fills them in); an error if required.
    fn absent(&self, path: &str, errors: &mut Vec<String>) -> Option<Json> {
        if let Some(default) = &self.default {
            return Some(default.clone());
        }
        if let Kind::Record(fields) = &self.kind {
            let mut inner = Vec::new();
            let filled = self.check_record(fields, &Map::new(), path, &mut inner);
            if inner.is_empty() {
                return Some(filled);
            }
            if self.required {
                errors.extend(inner);
            }
            return None;
        }
        if self.required {
            errors.push(format!("{path}: required field missing"));
        }
        None
    }

    fn check_len(&self, len: usize, path: &str, errors: &mut Vec<String>) {
        if let Some(min) = self.len_min.filter(|&min| len < min) {
            errors.push(format!("{path}: length must be at least {min}"));
        }
        if let Some(max) = self.len_max.filter(|&max| len > max) {
            errors.push(format!("{path}: length must be at most {max}"));
        }
    }

    fn check_value(&self, value: &Json, path: &str, errors: &mut Vec<String>) {
        if let Some(choices) = &self.one_of {
            if !choices.contains(value) {
                let list: Vec<String> = choices
                    .iter()
                    .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                    .collect();
                errors.push(format!("{path}: expected one of: {}", list.join(", ")));
            }
        }
        if let (Some((min, max)), Some(n)) = (self.between, value.as_f64()) {
            if n < min || n > max {
                errors.push(format!(
                    "{path}: value should be between {} and {}",
                    number(min),
                    number(max)
                ));
            }
        }
    }
}

/// `1` rather than `1.0` for whole numbers.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

impl Kind {
    /// Kong's wording: "expected an integer".
    fn article(&self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Integer => "an integer",
            Kind::Boolean => "a boolean",
            Kind::Array(_) => "an array",
            Kind::Map(..) => "a map",
            Kind::Record(_) => "a record",
            Kind::Any => "a value",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(source: &str) -> Schema {
        let lua = mlua::Lua::new();
        let array_mt = lua.create_table().unwrap();
        let table: Table = lua.load(source).eval().unwrap();
        Schema::from_lua(&table, &array_mt).unwrap()
    }

    const SCHEMA: &str = r#"
        return {
          name = "demo",
          fields = {
            { protocols = { type = "set", elements = { type = "string" } } },
            { config = {
                type = "record",
                fields = {
                  { field = { type = "string", required = true } },
                  { mode = { type = "string", default = "mask", one_of = { "mask", "drop" } } },
                  { limit = { type = "integer", default = 10, between = { 1, 100 } } },
                  { ratio = { type = "number" } },
                  { on = { type = "boolean", default = true } },
                  { names = { type = "array", elements = { type = "string", len_min = 1 }, default = { "a" } } },
                  { headers = { type = "map", keys = { type = "string" }, values = { type = "integer" } } },
                  { nested = { type = "record", fields = { { depth = { type = "integer", default = 2 } } } } },
                },
            } },
          },
        }
    "#;

    #[test]
    fn defaults_are_filled_in() {
        let s = schema(SCHEMA);
        let out = s.validate(&json!({ "field": "password" })).unwrap();
        assert_eq!(
            out,
            json!({
                "field": "password", "mode": "mask", "limit": 10, "on": true,
                "names": ["a"], "nested": { "depth": 2 }
            })
        );
    }

    #[test]
    fn every_violation_is_reported_with_its_path() {
        let s = schema(SCHEMA);
        let err = s
            .validate(&json!({
                "mode": "shout", "limit": 1.5, "ratio": "x", "on": 1,
                "names": ["", 3], "headers": { "a": "b" }, "nested": { "depth": 1, "x": 1 },
                "bogus": true
            }))
            .unwrap_err();
        for expected in [
            "config.bogus: unknown field",
            "config.field: required field missing",
            "config.mode: expected one of: mask, drop",
            "config.limit: expected an integer",
            "config.ratio: expected a number",
            "config.on: expected a boolean",
            "config.names[1]: length must be at least 1",
            "config.names[2]: expected a string",
            "config.headers.a: expected an integer",
            "config.nested.x: unknown field",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in {err}");
        }
        let err = s
            .validate(&json!({ "field": "f", "limit": 0 }))
            .unwrap_err();
        assert_eq!(err, "config.limit: value should be between 1 and 100");
    }

    #[test]
    fn no_config_field_accepts_anything() {
        let s = schema("return { name = 'x', fields = { { protocols = {} } } }");
        assert_eq!(
            s.validate(&json!({ "any": 1 })).unwrap(),
            json!({ "any": 1 })
        );
    }

    #[test]
    fn bad_schemas_are_refused() {
        let lua = mlua::Lua::new();
        let mt = lua.create_table().unwrap();
        for (source, expected) in [
            ("return { fields = { { config = { type = 'record', fields = { { x = { type = 'strnig' } } } } } } }", "config.x: unknown type \"strnig\""),
            ("return { fields = { { config = { type = 'string' } } } }", "config: must be a record"),
            ("return { fields = { { config = { type = 'record', fields = { { x = { type = 'integer', between = { 1 } } } } } } } }", "config.x.between"),
        ] {
            let table: Table = lua.load(source).eval().unwrap();
            let err = Schema::from_lua(&table, &mt).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }
}
