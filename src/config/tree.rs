//! Typed access to the parsed YAML that collects every error instead of
//! stopping at the first.
//!
//! serde's derive stops at the first unknown field or wrong type; an operator
//! fixing a file wants all of them at once, each with its key path and line.
//! So the loader walks `serde_yaml_ng::Value` by hand through [`Ctx`]: every
//! mapping is opened with the list of keys it accepts (and the keys of the
//! original connector that are not implemented here), and every getter
//! records a precise error and returns `None` when the value does not fit.

use serde_yaml_ng::{Mapping, Value};

use super::lines::LineIndex;
use super::ConfigError;

/// The error sink and line index of one load.
pub struct Ctx {
    lines: LineIndex,
    pub errors: Vec<ConfigError>,
}

/// A mapping that passed the key check, with its path.
pub struct Obj<'a> {
    pub path: String,
    pub map: &'a Mapping,
}

/// Joins a key path and a key.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// What a value is, for "expected X, found Y" messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A mapping key as text (YAML allows numbers and booleans as keys).
pub fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number or boolean written as a quoted string (`"8080"`): the original
/// connector's config binding (Jackson) accepts those, so files in the wild
/// contain them.
pub fn numeric_text<T: std::str::FromStr>(v: &Value) -> Option<T> {
    v.as_str().and_then(|s| s.trim().parse().ok())
}

/// Edit distance, for "did you mean" on unknown keys.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

impl Ctx {
    pub fn new(lines: LineIndex) -> Ctx {
        Ctx {
            lines,
            errors: Vec::new(),
        }
    }

    pub fn err(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: path.to_owned(),
            line: self.lines.line_of(path),
            message: message.into(),
        });
    }

    fn type_err(&mut self, path: &str, expected: &str, found: &Value) {
        self.err(path, format!("expected {expected}, found {}", kind(found)));
    }

    /// Opens `v` as a mapping that accepts `keys`; `unimplemented` lists keys
    /// of the original connector that this one refuses, with the reason.
    /// Every other key is an error.
    pub fn obj<'a>(
        &mut self,
        path: &str,
        v: &'a Value,
        keys: &[&str],
        unimplemented: &[(&str, &str)],
    ) -> Option<Obj<'a>> {
        let Value::Mapping(map) = v else {
            self.type_err(path, "a mapping", v);
            return None;
        };
        for k in map.keys() {
            let Some(name) = key_text(k) else {
                self.err(path, format!("a key must be text, found {}", kind(k)));
                continue;
            };
            let at = join(path, &name);
            if keys.contains(&name.as_str()) {
                continue;
            }
            if let Some((_, why)) = unimplemented.iter().find(|(u, _)| *u == name) {
                self.err(&at, format!("not implemented in sluice: {why}"));
            } else {
                let hint = keys
                    .iter()
                    .find(|k| distance(k, &name) <= 2)
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                self.err(
                    &at,
                    format!(
                        "unknown key `{name}` ({hint}expected one of: {})",
                        keys.join(", ")
                    ),
                );
            }
        }
        Some(Obj {
            path: path.to_owned(),
            map,
        })
    }

    /// The entries of a mapping whose keys are names (destinations,
    /// namespaces, sets, ports).
    pub fn entries<'a>(&mut self, path: &str, v: &'a Value) -> Vec<(String, String, &'a Value)> {
        let Value::Mapping(map) = v else {
            if !v.is_null() {
                self.type_err(path, "a mapping", v);
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in map {
            match key_text(k) {
                Some(name) => out.push((join(path, &name), name, v)),
                None => self.err(path, format!("a key must be text, found {}", kind(k))),
            }
        }
        out
    }

    /// `u64` with a type check; `what` says the unit ("milliseconds").
    pub fn u64(&mut self, path: &str, v: &Value, what: &str) -> Option<u64> {
        match v.as_u64().or_else(|| numeric_text(v)) {
            Some(n) => Some(n),
            None => {
                self.type_err(path, &format!("a non-negative integer ({what})"), v);
                None
            }
        }
    }

    pub fn i64(&mut self, path: &str, v: &Value, what: &str) -> Option<i64> {
        match v.as_i64().or_else(|| numeric_text(v)) {
            Some(n) => Some(n),
            None => {
                self.type_err(path, &format!("an integer ({what})"), v);
                None
            }
        }
    }

    pub fn bool(&mut self, path: &str, v: &Value) -> Option<bool> {
        match v.as_bool().or_else(|| numeric_text(v)) {
            Some(b) => Some(b),
            None => {
                self.type_err(path, "true or false", v);
                None
            }
        }
    }

    pub fn str<'a>(&mut self, path: &str, v: &'a Value) -> Option<&'a str> {
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.type_err(path, "a string", v);
                None
            }
        }
    }

    /// One value or a list of them (`port: 3000` or `port: [3000, 3001]`),
    /// each with its own path.
    pub fn one_or_list<'a>(&mut self, path: &str, v: &'a Value) -> Vec<(String, &'a Value)> {
        match v {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| (format!("{path}[{i}]"), item))
                .collect(),
            other => vec![(path.to_owned(), other)],
        }
    }

    /// A list of strings.
    pub fn strings(&mut self, path: &str, v: &Value) -> Vec<(String, String)> {
        let Value::Sequence(items) = v else {
            self.type_err(path, "a list of strings", v);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{path}[{i}]");
            if let Some(s) = self.str(&at, item) {
                out.push((at, s.to_owned()));
            }
        }
        out
    }
}

impl<'a> Obj<'a> {
    /// The value of `key`, with its path; a null value counts as absent.
    pub fn get(&self, key: &str) -> Option<(String, &'a Value)> {
        self.map
            .get(key)
            .filter(|v| !v.is_null())
            .map(|v| (join(&self.path, key), v))
    }

    /// The value of a setting that has two spellings; both given is an error.
    pub fn get_either(&self, ctx: &mut Ctx, key: &str, alt: &str) -> Option<(String, &'a Value)> {
        match (self.get(key), self.get(alt)) {
            (Some(_), Some((alt_path, _))) => {
                ctx.err(
                    &alt_path,
                    format!("`{key}` and `{alt}` are two spellings of one setting: give only one"),
                );
                None
            }
            (a, b) => a.or(b),
        }
    }

    pub fn u64(&self, ctx: &mut Ctx, key: &str, what: &str) -> Option<u64> {
        let (p, v) = self.get(key)?;
        ctx.u64(&p, v, what)
    }

    /// A count that must be at least 1, `default` when absent.
    pub fn count(&self, ctx: &mut Ctx, key: &str, what: &str, default: usize) -> usize {
        match self.u64(ctx, key, what) {
            None => default,
            Some(0) => {
                ctx.err(&join(&self.path, key), "must be at least 1");
                default
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }

    pub fn bool(&self, ctx: &mut Ctx, key: &str) -> Option<bool> {
        let (p, v) = self.get(key)?;
        ctx.bool(&p, v)
    }

    pub fn str(&self, ctx: &mut Ctx, key: &str) -> Option<&'a str> {
        let (p, v) = self.get(key)?;
        ctx.str(&p, v)
    }
}
