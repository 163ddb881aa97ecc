//! A JSON Schema validator for `websocket-validator`: drafts 04 and 07
//! without regular expressions and without remote references.
//!
//! Schemas are compiled once, at configuration load, into a table of nodes;
//! every problem with a schema is found then. Validation walks the node
//! table and the instance, allocating only to describe a failure.
//!
//! Supported keywords (both drafts unless marked):
//!
//! - any type: `type`, `enum`, `const` (07), `allOf`, `anyOf`, `oneOf`,
//!   `not`, `if`/`then`/`else` (07), `$ref` to `#` or a JSON pointer
//!   `#/...` in the same schema (with `definitions`);
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`
//!   (booleans in 04, numbers in 07), `multipleOf`;
//! - strings: `minLength`, `maxLength` (counted in code points);
//! - arrays: `items` (a schema or a list), `additionalItems`, `minItems`,
//!   `maxItems`, `uniqueItems`, `contains` (07);
//! - objects: `properties`, `additionalProperties`, `required`,
//!   `minProperties`, `maxProperties`, `dependencies`, `propertyNames` (07).
//!
//! `pattern` and `patternProperties` need a regular-expression engine the
//! gateway does not carry: a schema using them is refused at load, never
//! silently half-checked. So are keywords of the draft not configured
//! (`const` under draft 04, `exclusiveMinimum: true` under 07), keywords
//! of later drafts (`unevaluatedProperties`, `prefixItems`, ...) and
//! references that leave the schema. `format` is an annotation, as both
//! drafts allow, and is not checked; other unknown keywords are ignored,
//! as the drafts require. `integer` accepts numbers without a fractional
//! part (`1.0` is an integer, as in draft 06 and later and in Kong).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

/// Which draft a schema is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Draft {
    /// JSON Schema draft 04 (what Kong's validator speaks).
    Draft4,
    /// JSON Schema draft 07.
    Draft7,
}

/// A compiled schema.
#[derive(Debug)]
pub(crate) struct Schema {
    nodes: Vec<Node>,
}

/// Why an instance is invalid: the failing keyword and where in the
/// instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// A JSON pointer into the instance.
    pub(crate) path: String,
    /// The keyword that failed.
    pub(crate) keyword: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: fails {:?}", self.keyword)
    }
}

type Id = usize;

#[derive(Debug)]
enum Node {
    /// `true` or `false` (07), or `{}`.
    Bool(bool),
    /// `$ref`, resolved once the whole schema is compiled.
    Ref(Id),
    Keywords(Box<Keywords>),
}

#[derive(Debug, Default)]
struct Keywords {
    types: Option<u8>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    all_of: Vec<Id>,
    any_of: Vec<Id>,
    one_of: Vec<Id>,
    not: Option<Id>,
    conditional: Option<(Id, Option<Id>, Option<Id>)>,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    multiple_of: Option<Number>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    items: Items,
    additional_items: Option<Id>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    contains: Option<Id>,
    /// Sorted by name.
    properties: Vec<(String, Id)>,
    additional_properties: Option<Id>,
    required: Vec<String>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    dependencies: Vec<(String, Dependency)>,
    property_names: Option<Id>,
}

#[derive(Debug, Clone, PartialEq)]
struct Bound {
    value: Number,
    exclusive: bool,
}

#[derive(Debug, Default)]
enum Items {
    #[default]
    Any,
    All(Id),
    Tuple(Vec<Id>),
}

#[derive(Debug)]
enum Dependency {
    Required(Vec<String>),
    Schema(Id),
}

const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const OBJECT: u8 = 4;
const ARRAY: u8 = 8;
const NUMBER: u8 = 16;
const INTEGER: u8 = 32;
const STRING: u8 = 64;

/// Keywords refused because honouring them needs something this validator
/// does not have, or because they belong to drafts after 07.
const REFUSED: [(&str, &str); 13] = [
    ("pattern", "regular expressions are not supported"),
    ("patternProperties", "regular expressions are not supported"),
    ("unevaluatedProperties", "a draft 2019-09 keyword"),
    ("unevaluatedItems", "a draft 2019-09 keyword"),
    (
        "dependentRequired",
        "a draft 2019-09 keyword (use dependencies)",
    ),
    (
        "dependentSchemas",
        "a draft 2019-09 keyword (use dependencies)",
    ),
    (
        "prefixItems",
        "a draft 2020-12 keyword (use items as a list)",
    ),
    ("minContains", "a draft 2019-09 keyword"),
    ("maxContains", "a draft 2019-09 keyword"),
    ("$recursiveRef", "a draft 2019-09 keyword"),
    ("$dynamicRef", "a draft 2020-12 keyword"),
    ("$anchor", "a draft 2019-09 keyword"),
    ("$vocabulary", "a draft 2019-09 keyword"),
];

const COUNT: &str = "must be a non-negative integer";
const TYPES: &str = "must be a type name or a list of them \
    (null, boolean, object, array, number, integer, string)";

/// Draft 06/07 keywords that draft 04 does not have.
const NOT_IN_DRAFT4: [&str; 6] = ["const", "contains", "propertyNames", "if", "then", "else"];

impl Schema {
    /// Compiles `schema`; the error says what is wrong and where in the
    /// schema (a JSON pointer).
    pub(crate) fn compile(schema: &Value, draft: Draft) -> Result<Schema, String> {
        let mut compiler = Compiler {
            root: schema,
            draft,
            nodes: Vec::new(),
            at: HashMap::new(),
            refs: Vec::new(),
        };
        compiler.node(schema, String::new())?;
        // References are resolved after the pass, compiling their targets
        // on demand, so a schema may refer to itself.
        while let Some((id, pointer, target)) = compiler.refs.pop() {
            let value = schema
                .pointer(&target)
                .ok_or_else(|| format!("{}: $ref points to nothing", show(&pointer)))?;
            let resolved = match compiler.at.get(&target) {
                Some(&resolved) => resolved,
                None => compiler.node(value, target)?,
            };
            compiler.nodes[id] = Node::Ref(resolved);
        }
        let schema = Schema {
            nodes: compiler.nodes,
        };
        schema.check_cycles()?;
        Ok(schema)
    }

    /// Checks `instance`.
    pub(crate) fn validate(&self, instance: &Value) -> Result<(), Invalid> {
        BUDGET.with(|b| b.set(Budget::default()));
        self.check(0, instance).map_err(|f| Invalid {
            path: f.path.iter().rev().fold(String::new(), |mut s, step| {
                s.push('/');
                s.push_str(&step.replace('~', "~0").replace('/', "~1"));
                s
            }),
            keyword: f.keyword,
        })
    }

    /// Whether `instance` is valid, without describing failures.
    fn is_valid(&self, id: Id, instance: &Value) -> bool {
        self.check(id, instance).is_ok()
    }

    /// A reference chain, or keywords that apply to the same instance
    /// (`allOf` of a `$ref` to itself ...), that loops back would never end:
    /// such a schema is refused.
    fn check_cycles(&self) -> Result<(), String> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; self.nodes.len()];
        for start in 0..self.nodes.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative depth-first search over same-instance edges.
            let mut stack = vec![(start, 0usize)];
            marks[start] = Mark::Active;
            while let Some(top) = stack.last_mut() {
                let id = top.0;
                let edges = self.same_instance_edges(id);
                if let Some(&child) = edges.get(top.1) {
                    top.1 += 1;
                    match marks[child] {
                        Mark::Active => {
                            return Err("the schema refers to itself without descending into the \
                                 message ($ref loop), so it could never finish"
                                .into())
                        }
                        Mark::New => {
                            marks[child] = Mark::Active;
                            stack.push((child, 0));
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[id] = Mark::Done;
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    fn same_instance_edges(&self, id: Id) -> Vec<Id> {
        match &self.nodes[id] {
            Node::Bool(_) => Vec::new(),
            Node::Ref(target) => vec![*target],
            Node::Keywords(k) => {
                let mut edges: Vec<Id> = k
                    .all_of
                    .iter()
                    .chain(&k.any_of)
                    .chain(&k.one_of)
                    .chain(&k.not)
                    .copied()
                    .collect();
                if let Some((i, t, e)) = k.conditional {
                    edges.push(i);
                    edges.extend(t);
                    edges.extend(e);
                }
                edges.extend(k.dependencies.iter().filter_map(|(_, d)| match d {
                    Dependency::Schema(id) => Some(*id),
                    Dependency::Required(_) => None,
                }));
                edges
            }
        }
    }

    /// Checks `v` against node `id` within this thread's [`Budget`]: a
    /// message nested deep through a schema that refers back to itself
    /// would otherwise recurse until the stack overflows and the process
    /// aborts.
    fn check(&self, id: Id, v: &Value) -> Result<(), Failure> {
        let entered = BUDGET.with(|b| {
            let budget = b.get();
            let within = budget.depth < MAX_DEPTH && budget.steps < MAX_STEPS;
            if within {
                b.set(Budget {
                    depth: budget.depth + 1,
                    steps: budget.steps + 1,
                });
            }
            within
        });
        if !entered {
            return Err(Failure::new(TOO_COMPLEX));
        }
        let result = self.check_node(id, v);
        BUDGET.with(|b| {
            let budget = b.get();
            b.set(Budget {
                depth: budget.depth - 1,
                ..budget
            })
        });
        result
    }

    fn check_node(&self, id: Id, v: &Value) -> Result<(), Failure> {
        let k = match &self.nodes[id] {
            Node::Bool(true) => return Ok(()),
            Node::Bool(false) => return Err(Failure::new("false")),
            Node::Ref(target) => return self.check(*target, v),
            Node::Keywords(k) => k,
        };
        if let Some(types) = k.types {
            if types & type_bits(v) == 0 {
                return Err(Failure::new("type"));
            }
        }
        if let Some(values) = &k.enumeration {
            if !values.iter().any(|e| json_eq(e, v)) {
                return Err(Failure::new("enum"));
            }
        }
        if let Some(c) = &k.constant {
            if !json_eq(c, v) {
                return Err(Failure::new("const"));
            }
        }
        for &sub in &k.all_of {
            self.check(sub, v)?;
        }
        if !k.any_of.is_empty() && !k.any_of.iter().any(|&s| self.is_valid(s, v)) {
            return Err(Failure::new("anyOf"));
        }
        if !k.one_of.is_empty() && k.one_of.iter().filter(|&&s| self.is_valid(s, v)).count() != 1 {
            return Err(Failure::new("oneOf"));
        }
        if let Some(not) = k.not {
            if self.is_valid(not, v) {
                return Err(Failure::new("not"));
            }
        }
        if let Some((cond, then, otherwise)) = k.conditional {
            let branch = if self.is_valid(cond, v) {
                then
            } else {
                otherwise
            };
            if let Some(branch) = branch {
                self.check(branch, v)?;
            }
        }
        match v {
            Value::Number(n) => self.check_number(k, n),
            Value::String(s) => {
                if k.min_length.is_some() || k.max_length.is_some() {
                    let len = s.chars().count() as u64;
                    if k.min_length.is_some_and(|min| len < min) {
                        return Err(Failure::new("minLength"));
                    }
                    if k.max_length.is_some_and(|max| len > max) {
                        return Err(Failure::new("maxLength"));
                    }
                }
                Ok(())
            }
            Value::Array(items) => self.check_array(k, items),
            Value::Object(map) => self.check_object(k, v, map),
            Value::Null | Value::Bool(_) => Ok(()),
        }
    }

    fn check_number(&self, k: &Keywords, n: &Number) -> Result<(), Failure> {
        if let Some(min) = &k.minimum {
            let ord = num_cmp(n, &min.value);
            if ord == Ordering::Less || (min.exclusive && ord == Ordering::Equal) {
                return Err(Failure::new(if min.exclusive {
                    "exclusiveMinimum"
                } else {
                    "minimum"
                }));
            }
        }
        if let Some(max) = &k.maximum {
            let ord = num_cmp(n, &max.value);
            if ord == Ordering::Greater || (max.exclusive && ord == Ordering::Equal) {
                return Err(Failure::new(if max.exclusive {
                    "exclusiveMaximum"
                } else {
                    "maximum"
                }));
            }
        }
        if let Some(m) = &k.multiple_of {
            if !is_multiple(n, m) {
                return Err(Failure::new("multipleOf"));
            }
        }
        Ok(())
    }

    fn check_array(&self, k: &Keywords, items: &[Value]) -> Result<(), Failure> {
        let len = items.len() as u64;
        if k.min_items.is_some_and(|min| len < min) {
            return Err(Failure::new("minItems"));
        }
        if k.max_items.is_some_and(|max| len > max) {
            return Err(Failure::new("maxItems"));
        }
        match &k.items {
            Items::Any => {}
            Items::All(schema) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(*schema, item).map_err(|f| f.at(i.to_string()))?;
                }
            }
            Items::Tuple(schemas) => {
                for (i, item) in items.iter().enumerate() {
                    let schema = match schemas.get(i) {
                        Some(&s) => s,
                        None => match k.additional_items {
                            Some(s) => s,
                            None => break,
                        },
                    };
                    self.check(schema, item).map_err(|f| f.at(i.to_string()))?;
                }
            }
        }
        if k.unique_items && !all_unique(items) {
            return Err(Failure::new("uniqueItems"));
        }
        if let Some(contains) = k.contains {
            if !items.iter().any(|item| self.is_valid(contains, item)) {
                return Err(Failure::new("contains"));
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        k: &Keywords,
        v: &Value,
        map: &Map<String, Value>,
    ) -> Result<(), Failure> {
        let len = map.len() as u64;
        if k.min_properties.is_some_and(|min| len < min) {
            return Err(Failure::new("minProperties"));
        }
        if k.max_properties.is_some_and(|max| len > max) {
            return Err(Failure::new("maxProperties"));
        }
        if let Some(missing) = k.required.iter().find(|r| !map.contains_key(r.as_str())) {
            return Err(Failure::new("required").at(missing.clone()));
        }
        for (name, schema) in &k.properties {
            if let Some(value) = map.get(name) {
                self.check(*schema, value).map_err(|f| f.at(name.clone()))?;
            }
        }
        if let Some(additional) = k.additional_properties {
            for (name, value) in map {
                let declared = k
                    .properties
                    .binary_search_by(|(p, _)| p.as_str().cmp(name))
                    .is_ok();
                if !declared {
                    self.check(additional, value)
                        .map_err(|f| f.at(name.clone()))?;
                }
            }
        }
        for (name, dependency) in &k.dependencies {
            if !map.contains_key(name) {
                continue;
            }
            match dependency {
                Dependency::Required(names) => {
                    if let Some(missing) = names.iter().find(|n| !map.contains_key(n.as_str())) {
                        return Err(Failure::new("dependencies").at(missing.clone()));
                    }
                }
                Dependency::Schema(schema) => self.check(*schema, v)?,
            }
        }
        if let Some(names) = k.property_names {
            for name in map.keys() {
                self.check(names, &Value::String(name.clone()))
                    .map_err(|f| f.at(name.clone()))?;
            }
        }
        Ok(())
    }
}

/// Nested checks one validation may have in progress: each is a few stack
/// frames, and 256 of them fit well within a 2 MiB worker stack.
const MAX_DEPTH: u32 = 256;
/// Checks one validation may make in all (`anyOf`/`oneOf` over nested
/// arrays multiply), so a message costs bounded work.
const MAX_STEPS: u32 = 1_000_000;
/// The keyword reported when a message exceeds either bound.
const TOO_COMPLEX: &str = "(nesting or work beyond the validator's limits)";

/// What the validation running on this thread has used.
#[derive(Clone, Copy, Default)]
struct Budget {
    depth: u32,
    steps: u32,
}

thread_local! {
    static BUDGET: std::cell::Cell<Budget> = const { std::cell::Cell::new(Budget { depth: 0, steps: 0 }) };
}

/// A failure on its way up: the keyword, and the instance path in reverse.
struct Failure {
    keyword: &'static str,
    path: Vec<String>,
}

impl Failure {
    fn new(keyword: &'static str) -> Self {
        Failure {
            keyword,
            path: Vec::new(),
        }
    }

    fn at(mut self, step: String) -> Self {
        self.path.push(step);
        self
    }
}

struct Compiler<'a> {
    root: &'a Value,
    draft: Draft,
    nodes: Vec<Node>,
    /// Compiled nodes by their JSON pointer in the schema.
    at: HashMap<String, Id>,
    /// `$ref` nodes to resolve: the node, where it is, the target pointer.
    refs: Vec<(Id, String, String)>,
}

impl Compiler<'_> {
    fn node(&mut self, value: &Value, pointer: String) -> Result<Id, String> {
        let id = self.nodes.len();
        self.nodes.push(Node::Bool(true));
        self.at.insert(pointer.clone(), id);
        let node = match value {
            Value::Bool(b) => Node::Bool(*b),
            Value::Object(map) => match map.get("$ref") {
                Some(r) => {
                    // Siblings of $ref are ignored in drafts 04 and 07, but
                    // definitions next to it are still reachable by pointer.
                    let target = self.ref_target(r, &pointer)?;
                    self.refs.push((id, pointer.clone(), target));
                    if let Some(defs) = map.get("definitions") {
                        self.definitions(defs, &pointer)?;
                    }
                    Node::Bool(true)
                }
                None => Node::Keywords(Box::new(self.keywords(map, &pointer)?)),
            },
            _ => return Err(format!("{}: a schema must be an object", show(&pointer))),
        };
        self.nodes[id] = node;
        Ok(id)
    }

    fn ref_target(&self, r: &Value, pointer: &str) -> Result<String, String> {
        let r = r
            .as_str()
            .ok_or_else(|| format!("{}: $ref must be a string", show(pointer)))?;
        let Some(fragment) = r.strip_prefix('#') else {
            return Err(format!(
                "{}: $ref {r:?} leaves the schema; only \"#\" and \"#/...\" are supported",
                show(pointer)
            ));
        };
        if !fragment.is_empty() && !fragment.starts_with('/') {
            return Err(format!(
                "{}: $ref {r:?} names an anchor; only JSON pointers (\"#/...\") are supported",
                show(pointer)
            ));
        }
        let target = percent_decode(fragment)
            .ok_or_else(|| format!("{}: $ref {r:?} is badly escaped", show(pointer)))?;
        // Pointers are compared as written by this compiler: re-escape
        // each step the same way.
        let canonical = target
            .split('/')
            .skip(1)
            .map(|step| step.replace("~1", "/").replace("~0", "~"))
            .fold(String::new(), |mut s, step| {
                let _ = write!(s, "/{}", escape(&step));
                s
            });
        if self.root.pointer(&canonical).is_none() {
            return Err(format!(
                "{}: $ref {r:?} points to nothing in the schema",
                show(pointer)
            ));
        }
        Ok(canonical)
    }

    fn definitions(&mut self, defs: &Value, pointer: &str) -> Result<(), String> {
        let defs = defs
            .as_object()
            .ok_or_else(|| format!("{pointer}/definitions: must be an object"))?;
        for (name, def) in defs {
            self.child(def, pointer, &["definitions", name])?;
        }
        Ok(())
    }

    fn child(&mut self, value: &Value, pointer: &str, steps: &[&str]) -> Result<Id, String> {
        let mut p = pointer.to_owned();
        for step in steps {
            p.push('/');
            p.push_str(&escape(step));
        }
        if let Some(&id) = self.at.get(&p) {
            return Ok(id);
        }
        self.node(value, p)
    }

    fn keywords(&mut self, map: &Map<String, Value>, at: &str) -> Result<Keywords, String> {
        let here = show(at);
        let err = |key: &str, what: &str| format!("{here}: {key} {what}");
        for (key, why) in REFUSED {
            if map.contains_key(key) {
                return Err(format!("{here}: {key} is not supported: {why}"));
            }
        }
        if self.draft == Draft::Draft4 {
            if let Some(key) = NOT_IN_DRAFT4.iter().find(|k| map.contains_key(**k)) {
                return Err(format!(
                    "{here}: {key} is not a draft 04 keyword (use type = \"draft7\")"
                ));
            }
        }
        let mut k = Keywords::default();
        for (key, value) in map {
            let counted = || count(value).ok_or_else(|| err(key, COUNT));
            match key.as_str() {
                "type" => k.types = Some(types(value).ok_or_else(|| err(key, TYPES))?),
                "enum" => {
                    let values = value.as_array().ok_or_else(|| err(key, "must be a list"))?;
                    k.enumeration = Some(values.clone());
                }
                "const" => k.constant = Some(value.clone()),
                "allOf" | "anyOf" | "oneOf" => {
                    let list = value
                        .as_array()
                        .filter(|l| !l.is_empty())
                        .ok_or_else(|| err(key, "must be a non-empty list of schemas"))?;
                    let mut ids = Vec::with_capacity(list.len());
                    for (i, s) in list.iter().enumerate() {
                        ids.push(self.child(s, at, &[key, &i.to_string()])?);
                    }
                    match key.as_str() {
                        "allOf" => k.all_of = ids,
                        "anyOf" => k.any_of = ids,
                        _ => k.one_of = ids,
                    }
                }
                "not" => k.not = Some(self.child(value, at, &[key])?),
                "if" => {
                    let cond = self.child(value, at, &["if"])?;
                    let mut branch = |name: &str| {
                        map.get(name)
                            .map(|s| self.child(s, at, &[name]))
                            .transpose()
                    };
                    let then = branch("then")?;
                    let otherwise = branch("else")?;
                    k.conditional = Some((cond, then, otherwise));
                }
                "minimum" | "maximum" => {
                    let n = number(value).ok_or_else(|| err(key, "must be a number"))?;
                    let bound = Some(Bound {
                        value: n,
                        exclusive: false,
                    });
                    if key == "minimum" {
                        k.minimum = bound;
                    } else {
                        k.maximum = bound;
                    }
                }
                "multipleOf" => {
                    let n = number(value)
                        .filter(|n| n.as_f64().is_some_and(|f| f > 0.0))
                        .ok_or_else(|| err(key, "must be a number greater than 0"))?;
                    k.multiple_of = Some(n);
                }
                "minLength" => k.min_length = Some(counted()?),
                "maxLength" => k.max_length = Some(counted()?),
                "minItems" => k.min_items = Some(counted()?),
                "maxItems" => k.max_items = Some(counted()?),
                "minProperties" => k.min_properties = Some(counted()?),
                "maxProperties" => k.max_properties = Some(counted()?),
                "uniqueItems" => {
                    k.unique_items = value
                        .as_bool()
                        .ok_or_else(|| err(key, "must be true or false"))?;
                }
                "items" => {
                    k.items = match value {
                        Value::Array(list) => {
                            let mut ids = Vec::with_capacity(list.len());
                            for (i, s) in list.iter().enumerate() {
                                ids.push(self.child(s, at, &["items", &i.to_string()])?);
                            }
                            Items::Tuple(ids)
                        }
                        other => Items::All(self.child(other, at, &["items"])?),
                    }
                }
                "additionalItems" => k.additional_items = Some(self.child(value, at, &[key])?),
                "contains" => k.contains = Some(self.child(value, at, &[key])?),
                "properties" => {
                    let props = value
                        .as_object()
                        .ok_or_else(|| err(key, "must be an object of schemas"))?;
                    for (name, s) in props {
                        let id = self.child(s, at, &["properties", name])?;
                        k.properties.push((name.clone(), id));
                    }
                    // Sorted, for additionalProperties' binary search.
                    k.properties.sort_by(|a, b| a.0.cmp(&b.0));
                }
                "additionalProperties" => {
                    k.additional_properties = Some(self.child(value, at, &[key])?);
                }
                "propertyNames" => k.property_names = Some(self.child(value, at, &[key])?),
                "required" => {
                    k.required = string_list(value)
                        .ok_or_else(|| err(key, "must be a list of property names"))?;
                }
                "dependencies" => {
                    let deps = value
                        .as_object()
                        .ok_or_else(|| err(key, "must be an object"))?;
                    for (name, dep) in deps {
                        let dep = match dep {
                            Value::Array(_) => Dependency::Required(
                                string_list(dep)
                                    .ok_or_else(|| err(key, "lists must hold property names"))?,
                            ),
                            other => Dependency::Schema(self.child(
                                other,
                                at,
                                &["dependencies", name],
                            )?),
                        };
                        k.dependencies.push((name.clone(), dep));
                    }
                }
                "definitions" => self.definitions(value, at)?,
                _ => {}
            }
        }
        self.exclusive_bounds(map, &mut k, &here)?;
        Ok(k)
    }

    /// `exclusiveMinimum`/`exclusiveMaximum`: in draft 04 a flag on
    /// `minimum`/`maximum`, in draft 07 a bound of their own.
    fn exclusive_bounds(
        &self,
        map: &Map<String, Value>,
        k: &mut Keywords,
        here: &str,
    ) -> Result<(), String> {
        for (key, plain) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            let Some(value) = map.get(key) else { continue };
            let is_min = key == "exclusiveMinimum";
            match self.draft {
                Draft::Draft4 => {
                    let flag = value.as_bool().ok_or_else(|| {
                        format!("{here}: {key} must be true or false in draft 04")
                    })?;
                    let bound = if is_min {
                        &mut k.minimum
                    } else {
                        &mut k.maximum
                    };
                    match bound {
                        Some(b) => b.exclusive = flag,
                        None => return Err(format!("{here}: {key} needs {plain} in draft 04")),
                    }
                }
                Draft::Draft7 => {
                    let n = number(value)
                        .ok_or_else(|| format!("{here}: {key} must be a number in draft 07"))?;
                    let bound = if is_min {
                        &mut k.minimum
                    } else {
                        &mut k.maximum
                    };
                    let exclusive = Bound {
                        value: n,
                        exclusive: true,
                    };
                    // Both may be given: the tighter one holds.
                    let tighter = match bound {
                        None => true,
                        Some(b) => {
                            let ord = num_cmp(&exclusive.value, &b.value);
                            if is_min {
                                ord != Ordering::Less
                            } else {
                                ord != Ordering::Greater
                            }
                        }
                    };
                    if tighter {
                        *bound = Some(exclusive);
                    }
                }
            }
        }
        Ok(())
    }
}

fn show(pointer: &str) -> String {
    format!("schema #{pointer}")
}

fn escape(step: &str) -> String {
    step.replace('~', "~0").replace('/', "~1")
}

/// Decodes `%XX` escapes of a URI fragment; `None` if malformed.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn types(value: &Value) -> Option<u8> {
    let one = |v: &Value| match v.as_str()? {
        "null" => Some(NULL),
        "boolean" => Some(BOOLEAN),
        "object" => Some(OBJECT),
        "array" => Some(ARRAY),
        // A number type admits integers too.
        "number" => Some(NUMBER | INTEGER),
        "integer" => Some(INTEGER),
        "string" => Some(STRING),
        _ => None,
    };
    match value {
        Value::Array(list) if !list.is_empty() => {
            list.iter().try_fold(0, |acc, v| Some(acc | one(v)?))
        }
        Value::Array(_) => None,
        other => one(other),
    }
}

fn type_bits(v: &Value) -> u8 {
    match v {
        Value::Null => NULL,
        Value::Bool(_) => BOOLEAN,
        Value::Object(_) => OBJECT,
        Value::Array(_) => ARRAY,
        Value::String(_) => STRING,
        Value::Number(n) => {
            let integral = n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0);
            if integral {
                NUMBER | INTEGER
            } else {
                NUMBER
            }
        }
    }
}

fn number(v: &Value) -> Option<Number> {
    match v {
        Value::Number(n) => Some(n.clone()),
        _ => None,
    }
}

/// A non-negative integer (`2.0` counts, as the drafts allow).
fn count(v: &Value) -> Option<u64> {
    let n = v.as_number()?;
    n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
    })
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Compares two JSON numbers exactly, whatever their representations.
fn num_cmp(a: &Number, b: &Number) -> Ordering {
    match (as_int(a), as_int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(x), None) => int_float_cmp(x, b.as_f64().unwrap_or(f64::NAN)),
        (None, Some(y)) => int_float_cmp(y, a.as_f64().unwrap_or(f64::NAN)).reverse(),
        (None, None) => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

fn as_int(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// `i` against `f` without the rounding of `i as f64` deciding: if the
/// rounded value differs from `f` the order is already right (rounding is
/// monotonic and `f` is exact); if it equals `f`, `f` is an integer within
/// ±2^64 and compares exactly as one.
fn int_float_cmp(i: i128, f: f64) -> Ordering {
    let rounded = i as f64;
    match rounded.partial_cmp(&f) {
        Some(Ordering::Equal) => i.cmp(&(f as i128)),
        Some(ord) => ord,
        None => Ordering::Equal,
    }
}

/// Whether `n` is a multiple of `m` (`m > 0`): exact for integers; for
/// fractions, within a relative tolerance of the quotient, so that `0.3`
/// is a multiple of `0.1` as a person means it.
fn is_multiple(n: &Number, m: &Number) -> bool {
    if let (Some(x), Some(y)) = (as_int(n), as_int(m)) {
        return y != 0 && x % y == 0;
    }
    let (Some(x), Some(y)) = (n.as_f64(), m.as_f64()) else {
        return false;
    };
    let q = x / y;
    if !q.is_finite() {
        return false;
    }
    (q - q.round()).abs() <= 1e-9 * q.abs().max(1.0)
}

/// JSON equality: numbers by value (`1` equals `1.0`), objects regardless
/// of key order.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, p)| y.get(key).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}

/// `uniqueItems` in linear time: each item is written in a canonical form
/// (object keys sorted, numbers by value) and the forms are hashed, so a
/// long array in a message cannot cost quadratic time.
fn all_unique(items: &[Value]) -> bool {
    let mut seen = HashSet::with_capacity(items.len());
    items.iter().all(|item| {
        let mut form = String::new();
        canonical(item, &mut form);
        seen.insert(form)
    })
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) => {
            let integral = as_int(n).or_else(|| {
                let f = n.as_f64()?;
                // Within ±2^64 an integral float is written as the integer
                // it equals, so `1.0` and `1` collide as they should.
                (f.fract() == 0.0 && f.abs() < 1.9e19).then_some(f as i128)
            });
            match integral {
                Some(i) => {
                    let _ = write!(out, "n{i}");
                }
                None => {
                    let _ = write!(out, "f{:?}", n.as_f64().unwrap_or(0.0));
                }
            }
        }
        Value::Array(items) => {
            out.push('[');
            for item in items {
                canonical(item, out);
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for key in keys {
                let _ = write!(out, "{key:?}:");
                canonical(&map[key], out);
                out.push(',');
            }
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(schema: Value) -> Schema {
        Schema::compile(&schema, Draft::Draft7).unwrap_or_else(|e| panic!("{e}"))
    }

    fn compile4(schema: Value) -> Schema {
        Schema::compile(&schema, Draft::Draft4).unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(schema: Value, draft: Draft) -> String {
        Schema::compile(&schema, draft).unwrap_err()
    }

    fn ok(s: &Schema, v: Value) -> bool {
        s.validate(&v).is_ok()
    }

    fn fail(s: &Schema, v: Value) -> String {
        s.validate(&v).unwrap_err().to_string()
    }

    #[test]
    fn types() {
        let s = compile(json!({ "type": "object" }));
        assert!(ok(&s, json!({})));
        assert!(!ok(&s, json!([])));
        let s = compile(json!({ "type": ["string", "null"] }));
        assert!(ok(&s, json!("x")) && ok(&s, json!(null)));
        assert!(!ok(&s, json!(1)));
        let s = compile(json!({ "type": "integer" }));
        assert!(ok(&s, json!(1)) && ok(&s, json!(-1)) && ok(&s, json!(1.0)));
        assert!(ok(&s, json!(u64::MAX)));
        assert!(!ok(&s, json!(1.5)) && !ok(&s, json!("1")));
        let s = compile(json!({ "type": "number" }));
        assert!(ok(&s, json!(1)) && ok(&s, json!(1.5)));
        let s = compile(json!({ "type": "boolean" }));
        assert!(ok(&s, json!(false)) && !ok(&s, json!(0)));
        assert_eq!(
            fail(&compile(json!({ "type": "array" })), json!(1)),
            "/: fails \"type\""
        );
    }

    #[test]
    fn objects() {
        let s = compile(json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 3 },
                "age": { "type": "integer", "minimum": 0 }
            },
            "additionalProperties": false,
            "minProperties": 1,
            "maxProperties": 2
        }));
        assert!(ok(&s, json!({ "name": "Ann" })));
        assert!(ok(&s, json!({ "name": "Çéè", "age": 3 })));
        assert_eq!(fail(&s, json!({ "age": 3 })), "/name: fails \"required\"");
        assert_eq!(
            fail(&s, json!({ "name": "" })),
            "/name: fails \"minLength\""
        );
        assert_eq!(
            fail(&s, json!({ "name": "Anne" })),
            "/name: fails \"maxLength\""
        );
        assert_eq!(
            fail(&s, json!({ "name": "A", "age": -1 })),
            "/age: fails \"minimum\""
        );
        assert_eq!(
            fail(&s, json!({ "name": "A", "x/y": 1 })),
            "/x~1y: fails \"false\""
        );
        let s =
            compile(json!({ "additionalProperties": { "type": "number" }, "maxProperties": 2 }));
        assert!(ok(&s, json!({ "a": 1, "b": 2 })));
        assert!(!ok(&s, json!({ "a": "1" })));
        assert_eq!(
            fail(&s, json!({ "a": 1, "b": 2, "c": 3 })),
            "/: fails \"maxProperties\""
        );
        let s = compile(json!({ "minProperties": 1 }));
        assert!(!ok(&s, json!({})));
        assert!(ok(&s, json!("not an object")));
    }

    #[test]
    fn dependencies_and_property_names() {
        let s = compile(json!({
            "dependencies": {
                "card": ["billing"],
                "vip": { "required": ["since"] }
            },
            "propertyNames": { "maxLength": 7 }
        }));
        assert!(ok(&s, json!({ "card": 1, "billing": 2 })));
        assert!(ok(&s, json!({ "billing": 2 })));
        assert_eq!(
            fail(&s, json!({ "card": 1 })),
            "/billing: fails \"dependencies\""
        );
        assert!(!ok(&s, json!({ "vip": true })));
        assert!(ok(&s, json!({ "vip": true, "since": 2001 })));
        assert_eq!(
            fail(&s, json!({ "toolongname": 1 })),
            "/toolongname: fails \"maxLength\""
        );
    }

    #[test]
    fn arrays() {
        let s = compile(json!({
            "type": "array",
            "items": { "type": "integer" },
            "minItems": 1,
            "maxItems": 3,
            "uniqueItems": true
        }));
        assert!(ok(&s, json!([1, 2, 3])));
        assert_eq!(fail(&s, json!([])), "/: fails \"minItems\"");
        assert_eq!(fail(&s, json!([1, 2, 3, 4])), "/: fails \"maxItems\"");
        assert_eq!(fail(&s, json!([1, "2"])), "/1: fails \"type\"");
        assert_eq!(fail(&s, json!([1, 1.0])), "/: fails \"uniqueItems\"");
        let tuple = compile(json!({
            "items": [{ "type": "string" }, { "type": "number" }],
            "additionalItems": false
        }));
        assert!(ok(&tuple, json!(["a", 1])));
        assert!(ok(&tuple, json!(["a"])));
        assert_eq!(fail(&tuple, json!(["a", 1, null])), "/2: fails \"false\"");
        assert_eq!(fail(&tuple, json!([1])), "/0: fails \"type\"");
        let open = compile(json!({ "items": [{ "type": "string" }] }));
        assert!(ok(&open, json!(["a", 1, null])));
        let contains = compile(json!({ "contains": { "const": "x" } }));
        assert!(ok(&contains, json!([1, "x"])));
        assert_eq!(fail(&contains, json!([1, "y"])), "/: fails \"contains\"");
    }

    #[test]
    fn unique_items_compares_json_values() {
        let s = compile(json!({ "uniqueItems": true }));
        assert!(ok(&s, json!([{ "a": 1, "b": 2 }, { "a": 1, "b": 3 }])));
        assert!(!ok(&s, json!([{ "a": 1, "b": 2 }, { "b": 2.0, "a": 1 }])));
        assert!(ok(&s, json!([[1, 2], [2, 1], "1", 1, true, null])));
        assert!(!ok(&s, json!([null, null])));
        assert!(ok(&s, json!([9007199254740993u64, 9007199254740992.0])));
        assert!(ok(&s, json!([0.1, 0.2])));
        assert!(!ok(&s, json!(["a\"", "a\""])));
        // Linear, not quadratic: a long array is no trouble.
        let long: Vec<u64> = (0..200_000).collect();
        assert!(ok(&s, json!(long)));
    }

    #[test]
    fn numbers() {
        let s = compile(json!({ "minimum": 1, "maximum": 10, "multipleOf": 3 }));
        assert!(ok(&s, json!(3)) && ok(&s, json!(9)) && ok(&s, json!(9.0)));
        assert_eq!(fail(&s, json!(0)), "/: fails \"minimum\"");
        assert_eq!(fail(&s, json!(12)), "/: fails \"maximum\"");
        assert_eq!(fail(&s, json!(4)), "/: fails \"multipleOf\"");
        let s = compile(json!({ "multipleOf": 0.1 }));
        assert!(ok(&s, json!(0.3)) && ok(&s, json!(7)) && !ok(&s, json!(0.35)));
        let s = compile(json!({ "exclusiveMinimum": 0, "exclusiveMaximum": 1.5 }));
        assert!(ok(&s, json!(1)) && ok(&s, json!(0.1)));
        assert_eq!(fail(&s, json!(0)), "/: fails \"exclusiveMinimum\"");
        assert_eq!(fail(&s, json!(1.5)), "/: fails \"exclusiveMaximum\"");
        // The tighter of minimum and exclusiveMinimum holds.
        let s = compile(json!({ "minimum": 5, "exclusiveMinimum": 2 }));
        assert!(!ok(&s, json!(4)) && ok(&s, json!(5)));
        let s = compile4(json!({
            "minimum": 0, "exclusiveMinimum": true,
            "maximum": 2, "exclusiveMaximum": false
        }));
        assert!(!ok(&s, json!(0)) && ok(&s, json!(2)) && ok(&s, json!(0.001)));
        // Large integers compare exactly, also against floats.
        let s = compile(json!({ "maximum": 9007199254740992u64 }));
        assert!(ok(&s, json!(9007199254740992u64)));
        assert!(!ok(&s, json!(9007199254740993u64)));
        let s = compile(json!({ "maximum": 9007199254740992.0 }));
        assert!(!ok(&s, json!(9007199254740993u64)));
        assert!(ok(&s, json!(-9007199254740993i64)));
        let s = compile(json!({ "minimum": -1.5 }));
        assert!(ok(&s, json!(-1)) && !ok(&s, json!(-2)) && ok(&s, json!(u64::MAX)));
    }

    #[test]
    fn enum_and_const() {
        let s = compile(json!({ "enum": ["a", 1, { "k": [true] }, null] }));
        assert!(ok(&s, json!("a")) && ok(&s, json!(1.0)) && ok(&s, json!({ "k": [true] })));
        assert!(ok(&s, json!(null)));
        assert!(!ok(&s, json!("b")) && !ok(&s, json!({ "k": [false] })));
        let s = compile(json!({ "const": { "v": 2 } }));
        assert!(ok(&s, json!({ "v": 2.0 })));
        assert_eq!(fail(&s, json!({ "v": 3 })), "/: fails \"const\"");
    }

    #[test]
    fn combinators_and_conditionals() {
        let s = compile(json!({
            "anyOf": [{ "type": "string" }, { "type": "integer" }],
            "not": { "const": 13 }
        }));
        assert!(ok(&s, json!("x")) && ok(&s, json!(12)));
        assert_eq!(fail(&s, json!(1.5)), "/: fails \"anyOf\"");
        assert_eq!(fail(&s, json!(13)), "/: fails \"not\"");
        let s = compile(json!({ "oneOf": [{ "minimum": 0 }, { "maximum": 10 }] }));
        assert!(ok(&s, json!(-5)) && ok(&s, json!(50)));
        assert_eq!(fail(&s, json!(5)), "/: fails \"oneOf\"");
        let s = compile(json!({ "allOf": [{ "required": ["a"] }, { "required": ["b"] }] }));
        assert!(ok(&s, json!({ "a": 1, "b": 2 })));
        assert_eq!(fail(&s, json!({ "a": 1 })), "/b: fails \"required\"");
        let s = compile(json!({
            "if": { "properties": { "kind": { "const": "ping" } } },
            "then": { "required": ["id"] },
            "else": { "required": ["body"] }
        }));
        assert!(ok(&s, json!({ "kind": "ping", "id": 1 })));
        assert!(!ok(&s, json!({ "kind": "ping" })));
        assert!(ok(&s, json!({ "kind": "msg", "body": "" })));
        assert!(!ok(&s, json!({ "kind": "msg" })));
        let s = compile(json!(false));
        assert!(!ok(&s, json!(1)));
        let s = compile(json!({}));
        assert!(ok(&s, json!([1, { "a": null }])));
    }

    #[test]
    fn local_references() {
        let tree = compile(json!({
            "definitions": {
                "node": {
                    "type": "object",
                    "required": ["value"],
                    "properties": {
                        "value": { "type": "number" },
                        "children": { "type": "array", "items": { "$ref": "#/definitions/node" } }
                    }
                }
            },
            "$ref": "#/definitions/node"
        }));
        assert!(ok(
            &tree,
            json!({ "value": 1, "children": [{ "value": 2, "children": [] }] })
        ));
        assert_eq!(
            fail(&tree, json!({ "value": 1, "children": [{ "value": "x" }] })),
            "/children/0/value: fails \"type\""
        );
        let root = compile(json!({
            "properties": { "next": { "$ref": "#" }, "n": { "type": "integer" } }
        }));
        assert!(ok(&root, json!({ "n": 1, "next": { "n": 2, "next": {} } })));
        assert!(!ok(&root, json!({ "next": { "next": { "n": "x" } } })));
        let escaped = compile(json!({
            "definitions": { "a/b c": { "type": "string" }, "t~": { "type": "null" } },
            "properties": {
                "x": { "$ref": "#/definitions/a~1b%20c" },
                "y": { "$ref": "#/definitions/t~0" }
            }
        }));
        assert!(ok(&escaped, json!({ "x": "s", "y": null })));
        assert!(!ok(&escaped, json!({ "x": 1 })));
        assert!(!ok(&escaped, json!({ "y": 1 })));
        let pointer = compile(json!({
            "properties": { "a": { "type": "string" }, "b": { "$ref": "#/properties/a" } }
        }));
        assert!(!ok(&pointer, json!({ "b": 1 })));
        let chain = compile(json!({
            "definitions": { "x": { "$ref": "#/definitions/y" }, "y": { "type": "null" } },
            "$ref": "#/definitions/x"
        }));
        assert!(ok(&chain, json!(null)) && !ok(&chain, json!(0)));
    }

    #[test]
    fn schema_errors() {
        let e = |s: Value| error(s, Draft::Draft7);
        assert!(e(json!({ "pattern": "^a" })).contains("pattern is not supported"));
        assert!(
            e(json!({ "properties": { "a": { "patternProperties": {} } } }))
                .contains("schema #/properties/a: patternProperties is not supported")
        );
        assert!(e(json!({ "type": "str" })).contains("type must be"));
        assert!(e(json!({ "type": [] })).contains("type must be"));
        assert!(e(json!({ "minLength": -1 })).contains("minLength must be a non-negative"));
        assert!(e(json!({ "maxItems": 1.5 })).contains("maxItems"));
        assert!(e(json!({ "multipleOf": 0 })).contains("greater than 0"));
        assert!(e(json!({ "required": [1] })).contains("required"));
        assert!(e(json!({ "enum": 1 })).contains("enum must be a list"));
        assert!(e(json!({ "allOf": [] })).contains("non-empty list"));
        assert!(e(json!({ "items": 3 })).contains("schema #/items: a schema must be an object"));
        assert!(e(json!({ "$ref": "other.json#" })).contains("leaves the schema"));
        assert!(e(json!({ "$ref": "#foo" })).contains("anchor"));
        assert!(e(json!({ "$ref": "#/definitions/none" })).contains("points to nothing"));
        assert!(e(json!({ "$ref": "#/a%zz" })).contains("badly escaped"));
        assert!(e(json!({ "prefixItems": [] })).contains("2020-12"));
        assert!(e(json!({ "exclusiveMinimum": true })).contains("must be a number in draft 07"));
        assert!(e(json!({ "definitions": { "bad": { "type": 1 } } }))
            .contains("schema #/definitions/bad: type must be"));
        assert!(e(json!([])).contains("a schema must be an object"));
        // Loops that never descend into the instance.
        assert!(e(json!({ "$ref": "#" })).contains("loop"));
        assert!(e(json!({ "allOf": [{ "$ref": "#" }] })).contains("loop"));
        assert!(e(json!({
            "definitions": {
                "a": { "anyOf": [{ "$ref": "#/definitions/b" }] },
                "b": { "not": { "$ref": "#/definitions/a" } }
            },
            "$ref": "#/definitions/a"
        }))
        .contains("loop"));
        let e4 = |s: Value| error(s, Draft::Draft4);
        assert!(e4(json!({ "const": 1 })).contains("not a draft 04 keyword"));
        assert!(e4(json!({ "if": {} })).contains("not a draft 04 keyword"));
        assert!(e4(json!({ "exclusiveMinimum": 1, "minimum": 0 })).contains("true or false"));
        assert!(e4(json!({ "exclusiveMaximum": true })).contains("needs maximum"));
    }

    #[test]
    fn annotations_and_unknown_keywords_are_ignored() {
        let s = compile4(json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "id": "http://example.com/s",
            "title": "t",
            "description": "d",
            "default": 1,
            "format": "email",
            "x-custom": { "anything": true },
            "type": "string"
        }));
        assert!(ok(&s, json!("not an email")));
        assert!(!ok(&s, json!(1)));
    }
}
