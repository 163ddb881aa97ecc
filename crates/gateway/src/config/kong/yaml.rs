//! Reading a YAML (or JSON) document with every value's place in the file,
//! and keeping count of the fields a translation took: a field nobody took
//! is an error, never dropped.

use std::ops::Range;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use toml::Spanned;

/// A node of the document, with its place.
pub(super) type Node<'i> = MarkedYaml<'i>;

/// Fields every entity may carry that ask nothing of the proxy.
const METADATA: [&str; 3] = ["tags", "created_at", "updated_at"];

/// The document's text positions and the errors found so far.
pub(super) struct Doc {
    /// Byte offset of each character (YAML markers count characters), and
    /// of the end.
    offsets: Vec<usize>,
    pub(super) errors: Vec<super::Problem>,
}

impl Doc {
    /// Parses `text`, which starts at byte `offset` of what spans count
    /// in; a syntax error is returned with its place.
    pub(super) fn parse(text: &str, offset: usize) -> (Doc, Result<Node<'_>, String>) {
        let mut doc = Doc {
            offsets: text
                .char_indices()
                .map(|(at, _)| at)
                .chain([text.len()])
                .map(|at| at + offset)
                .collect(),
            errors: Vec::new(),
        };
        let root = match MarkedYaml::load_from_str(text) {
            Ok(mut docs) if docs.len() == 1 => Ok(docs.remove(0)),
            Ok(_) => Err("a declarative file holds exactly one YAML document".to_owned()),
            Err(e) => {
                let at = doc.byte(e.marker().index());
                doc.errors
                    .push((Some(at..at + 1), format!("not valid YAML: {}", e.info())));
                return (doc, Err(String::new()));
            }
        };
        if let Err(message) = &root {
            doc.errors.push((None, message.clone()));
        }
        (doc, root)
    }

    fn byte(&self, char_index: usize) -> usize {
        self.offsets
            .get(char_index)
            .or(self.offsets.last())
            .copied()
            .unwrap_or(0)
    }

    /// The bytes of the text `node` covers (never empty, so that its place
    /// is always reported).
    pub(super) fn span(&self, node: &Node<'_>) -> Range<usize> {
        let start = self.byte(node.span.start.index());
        let end = self.byte(node.span.end.index()).max(start + 1);
        start..end
    }

    pub(super) fn error(&mut self, node: &Node<'_>, message: String) {
        let span = self.span(node);
        self.errors.push((Some(span), message));
    }

    pub(super) fn spanned<T>(&self, node: &Node<'_>, value: T) -> Spanned<T> {
        Spanned::new(self.span(node), value)
    }

    /// A string, or a number or boolean written where a string is wanted.
    pub(super) fn str(&mut self, node: &Node<'_>, what: &str) -> Option<Spanned<String>> {
        let text = match &node.data {
            YamlData::Value(Scalar::String(s)) => s.to_string(),
            YamlData::Value(Scalar::Integer(n)) => n.to_string(),
            _ => {
                self.error(node, format!("{what} must be a string"));
                return None;
            }
        };
        Some(self.spanned(node, text))
    }

    pub(super) fn uint(&mut self, node: &Node<'_>, what: &str) -> Option<u64> {
        match &node.data {
            YamlData::Value(Scalar::Integer(n)) if *n >= 0 => Some(*n as u64),
            _ => {
                self.error(node, format!("{what} must be a whole number, 0 or more"));
                None
            }
        }
    }

    /// Seconds (Kong's unit for health-check times), as milliseconds.
    pub(super) fn seconds_as_ms(&mut self, node: &Node<'_>, what: &str) -> Option<u64> {
        let seconds = match &node.data {
            YamlData::Value(Scalar::Integer(n)) => *n as f64,
            YamlData::Value(Scalar::FloatingPoint(f)) => f.into_inner(),
            _ => f64::NAN,
        };
        if !(0.0..=86_400.0).contains(&seconds) {
            self.error(node, format!("{what} must be from 0 to 86400 seconds"));
            return None;
        }
        Some((seconds * 1000.0).round() as u64)
    }

    pub(super) fn bool(&mut self, node: &Node<'_>, what: &str) -> Option<bool> {
        match &node.data {
            YamlData::Value(Scalar::Boolean(b)) => Some(*b),
            _ => {
                self.error(node, format!("{what} must be true or false"));
                None
            }
        }
    }

    /// The items of a sequence (none, after an error, if it is not one).
    pub(super) fn seq<'n, 'i>(&mut self, node: &'n Node<'i>, what: &str) -> &'n [Node<'i>] {
        match &node.data {
            YamlData::Sequence(items) => items,
            _ => {
                self.error(node, format!("{what} must be a list"));
                &[]
            }
        }
    }

    pub(super) fn strings(&mut self, node: &Node<'_>, what: &str) -> Vec<Spanned<String>> {
        let items = self.seq(node, what);
        items
            .iter()
            .filter_map(|item| self.str(item, what))
            .collect()
    }

    /// The node as JSON, for plugin configurations. A null field is left
    /// out: in Kong it means "not set", which is what a missing field means
    /// to our plugins.
    pub(super) fn json(&mut self, node: &Node<'_>) -> serde_json::Value {
        use serde_json::Value;
        match &node.data {
            YamlData::Value(Scalar::Null) => Value::Null,
            YamlData::Value(Scalar::Boolean(b)) => Value::Bool(*b),
            YamlData::Value(Scalar::Integer(n)) => Value::from(*n),
            YamlData::Value(Scalar::FloatingPoint(f)) => {
                serde_json::Number::from_f64(f.into_inner()).map_or(Value::Null, Value::Number)
            }
            YamlData::Value(Scalar::String(s)) => Value::String(s.to_string()),
            YamlData::Sequence(items) => Value::Array(items.iter().map(|i| self.json(i)).collect()),
            YamlData::Mapping(map) => {
                let mut out = serde_json::Map::new();
                for (key, value) in map {
                    if matches!(value.data, YamlData::Value(Scalar::Null)) {
                        continue;
                    }
                    if let Some(key) = self.str(key, "a key") {
                        let value = self.json(value);
                        out.insert(key.into_inner(), value);
                    }
                }
                Value::Object(out)
            }
            YamlData::Tagged(_, inner) => self.json(inner),
            _ => {
                self.error(node, "YAML aliases are not supported".to_owned());
                Value::Null
            }
        }
    }
}

pub(super) fn is_mapping(node: &Node<'_>) -> bool {
    matches!(node.data, YamlData::Mapping(_))
}

pub(super) fn is_null(node: &Node<'_>) -> bool {
    matches!(node.data, YamlData::Value(Scalar::Null))
}

/// The fields of one entity, each taken at most once.
pub(super) struct Fields<'n, 'i> {
    what: String,
    entries: Vec<(&'n Node<'i>, &'n Node<'i>)>,
    taken: Vec<bool>,
}

impl<'n, 'i> Fields<'n, 'i> {
    /// The fields of `node`, an entity described as `what` in errors
    /// (`service "chat"`). `None`, after an error, if it is not a mapping.
    pub(super) fn of(doc: &mut Doc, node: &'n Node<'i>, what: String) -> Option<Self> {
        let YamlData::Mapping(map) = &node.data else {
            doc.error(node, format!("{what} must be a mapping of fields"));
            return None;
        };
        let entries: Vec<_> = map.iter().collect();
        Some(Fields {
            what,
            taken: vec![false; entries.len()],
            entries,
        })
    }

    /// Names the entity in errors from now on (once its name is read).
    pub(super) fn rename(&mut self, what: String) {
        self.what = what;
    }

    /// How errors name this entity.
    pub(super) fn what(&self) -> &str {
        &self.what
    }

    /// The value of `key`, unless it is missing or null (Kong's "not set").
    pub(super) fn take(&mut self, key: &str) -> Option<&'n Node<'i>> {
        let at = self.entries.iter().position(|(k, _)| key_is(k, key))?;
        self.taken[at] = true;
        Some(self.entries[at].1).filter(|v| !is_null(v))
    }

    /// Accepts `key` only at Kong's default (or unset): Frameway has that
    /// behaviour and no other.
    pub(super) fn at_default(&mut self, doc: &mut Doc, key: &str, default: serde_json::Value) {
        if let Some(node) = self.take(key) {
            if doc.json(node) != default {
                let message = format!(
                    "{}: `{key}` is not supported by Frameway (only Kong's default, {default})",
                    self.what
                );
                doc.error(node, message);
            }
        }
    }

    /// Reports every field nobody took.
    pub(super) fn finish(self, doc: &mut Doc, hint: impl Fn(&str) -> Option<&'static str>) {
        for ((key, _), taken) in self.entries.iter().zip(self.taken) {
            let name = match &key.data {
                YamlData::Value(Scalar::String(s)) => s.to_string(),
                _ => format!("{:?}", doc.json(key)),
            };
            if taken || METADATA.contains(&name.as_str()) {
                continue;
            }
            let mut message = format!("{}: `{name}` is not supported by Frameway", self.what);
            if let Some(hint) = hint(&name) {
                message.push_str("; ");
                message.push_str(hint);
            }
            doc.error(key, message);
        }
    }
}

fn key_is(node: &Node<'_>, key: &str) -> bool {
    matches!(&node.data, YamlData::Value(Scalar::String(s)) if s == key)
}
