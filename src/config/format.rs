//! `format` and `bin-transforms`: parsed into comparable specs (so that
//! identical formats across routes are built once) and built into the
//! codec's encoders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_yaml_ng::Value;
use sluice_codec::encode::{BinPolicy, Encoder, NameTransform, TextBatch};
use sluice_shards::plan::FormatPlan;

use super::tree::{join, Ctx, Obj};

/// A `format` section, resolved (schema files read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatSpec {
    /// `json_array`: batches as one JSON array instead of NDJSON.
    Json {
        json_array: bool,
    },
    FlatJson {
        metadata_key: String,
        json_array: bool,
    },
    MessagePack,
    Avro {
        /// The schema as JSON text.
        schema: String,
        stringify_map_keys: bool,
    },
    Xdr,
}

/// A `bin-transforms` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinSpec {
    /// None: every bin; Some: only these (empty: none).
    pub include: Option<BTreeSet<String>>,
    pub exclude: BTreeSet<String>,
    pub rename: BTreeMap<String, String>,
    pub transforms: Vec<NameTransform>,
}

impl FormatSpec {
    pub fn describe(&self) -> String {
        match self {
            FormatSpec::Json { json_array } => format!("json{}", framing(*json_array)),
            FormatSpec::FlatJson {
                metadata_key,
                json_array,
            } => format!(
                "flat-json (metadata-key {metadata_key}){}",
                framing(*json_array)
            ),
            FormatSpec::MessagePack => "message-pack".into(),
            FormatSpec::Avro {
                schema,
                stringify_map_keys,
            } => format!(
                "avro (schema {} bytes, stringify-map-keys {stringify_map_keys})",
                schema.len()
            ),
            FormatSpec::Xdr => "xdr".into(),
        }
    }
}

impl BinSpec {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        match &self.include {
            None => parts.push("bins: all".to_owned()),
            Some(set) if set.is_empty() => parts.push("bins: none".to_owned()),
            Some(set) => parts.push(format!("bins: {}", join_set(set))),
        }
        if !self.exclude.is_empty() {
            parts.push(format!("except {}", join_set(&self.exclude)));
        }
        if !self.rename.is_empty() {
            let r: Vec<String> = self
                .rename
                .iter()
                .map(|(a, b)| format!("{a}->{b}"))
                .collect();
            parts.push(format!("renamed {}", r.join(",")));
        }
        if !self.transforms.is_empty() {
            let t: Vec<&str> = self
                .transforms
                .iter()
                .map(|t| match t {
                    NameTransform::Uppercase => "uppercase",
                    NameTransform::Lowercase => "lowercase",
                    NameTransform::Trim => "trim",
                })
                .collect();
            parts.push(format!("names {}", t.join(",")));
        }
        format!("[{}]", parts.join("; "))
    }
}

fn join_set(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}

/// Builds the codec's encoder and bin policy for one distinct format.
pub fn build(spec: &FormatSpec, bins: &BinSpec) -> Result<FormatPlan, String> {
    let encoder = match spec {
        FormatSpec::Json { json_array } => text_batch(Encoder::json(), *json_array),
        FormatSpec::FlatJson {
            metadata_key,
            json_array,
        } => text_batch(Encoder::flat_json(metadata_key), *json_array),
        FormatSpec::MessagePack => Encoder::message_pack(),
        FormatSpec::Avro {
            schema,
            stringify_map_keys,
        } => Encoder::avro(schema, *stringify_map_keys).map_err(|e| e.to_string())?,
        FormatSpec::Xdr => Encoder::xdr(),
    };
    let mut policy = match &bins.include {
        None => BinPolicy::all(),
        Some(set) if set.is_empty() => BinPolicy::none(),
        Some(set) => BinPolicy::include(set),
    };
    policy = policy.exclude(&bins.exclude);
    for (from, to) in &bins.rename {
        policy = policy.rename(from, to);
    }
    for t in &bins.transforms {
        policy = policy.transform(*t);
    }
    Ok(FormatPlan {
        encoder,
        bins: policy,
    })
}

fn framing(json_array: bool) -> &'static str {
    if json_array {
        " (batches as a JSON array)"
    } else {
        ""
    }
}

fn text_batch(encoder: Encoder, json_array: bool) -> Encoder {
    if json_array {
        encoder.with_text_batch(TextBatch::JsonArray)
    } else {
        encoder.with_text_batch(TextBatch::Ndjson)
    }
}

/// `batch-framing` (extension): `ndjson` [default] or `json-array`.
fn json_array(ctx: &mut Ctx, obj: &Obj<'_>) -> Option<bool> {
    match obj.str(ctx, "batch-framing") {
        None | Some("ndjson") => Some(false),
        Some("json-array") => Some(true),
        Some(other) => {
            ctx.err(
                &join(&obj.path, "batch-framing"),
                format!("unknown batch framing `{other}` (ndjson or json-array)"),
            );
            None
        }
    }
}

/// Checks an avro schema with the encoder that will use it.
fn check_avro_schema(schema: &str, stringify_map_keys: bool) -> Result<(), String> {
    Encoder::avro(schema, stringify_map_keys)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Reads a `format` section.
pub fn format(ctx: &mut Ctx, path: &str, v: &Value, base: &Path) -> Option<FormatSpec> {
    let obj = ctx.obj(
        path,
        v,
        &[
            "mode",
            "metadata-key",
            "schema",
            "schema-file",
            "stringify-map-keys",
            "batch-framing",
        ],
        &[],
    )?;
    let Some((mp, mv)) = obj.get("mode") else {
        ctx.err(
            path,
            "`mode` is required (json, flat-json, message-pack, avro, xdr)",
        );
        return None;
    };
    let mode = ctx.str(&mp, mv)?;
    let only = |ctx: &mut Ctx, allowed: &[&str]| {
        for key in [
            "metadata-key",
            "schema",
            "schema-file",
            "stringify-map-keys",
            "batch-framing",
        ] {
            if !allowed.contains(&key) && obj.get(key).is_some() {
                ctx.err(
                    &join(path, key),
                    format!("`{key}` has no meaning with `mode: {mode}`"),
                );
            }
        }
    };
    match mode {
        "json" => {
            only(ctx, &["batch-framing"]);
            Some(FormatSpec::Json {
                json_array: json_array(ctx, &obj)?,
            })
        }
        "message-pack" => {
            only(ctx, &[]);
            Some(FormatSpec::MessagePack)
        }
        "xdr" => {
            only(ctx, &[]);
            Some(FormatSpec::Xdr)
        }
        "flat-json" => {
            only(ctx, &["metadata-key", "batch-framing"]);
            let key = obj.str(ctx, "metadata-key").unwrap_or("metadata");
            if key.is_empty() {
                ctx.err(&join(path, "metadata-key"), "must not be empty");
            }
            Some(FormatSpec::FlatJson {
                metadata_key: key.to_owned(),
                json_array: json_array(ctx, &obj)?,
            })
        }
        "avro" => {
            only(ctx, &["schema", "schema-file", "stringify-map-keys"]);
            let stringify_map_keys = obj.bool(ctx, "stringify-map-keys").unwrap_or(true);
            let (sp, schema) = match obj.get_either(ctx, "schema", "schema-file") {
                None => {
                    if obj.get("schema").is_none() || obj.get("schema-file").is_none() {
                        ctx.err(
                            path,
                            "`mode: avro` needs `schema` (inline JSON) or `schema-file`",
                        );
                    }
                    return None;
                }
                Some((sp, sv)) if sp.ends_with("schema-file") => {
                    let file = ctx.str(&sp, sv)?;
                    let full = if Path::new(file).is_absolute() {
                        Path::new(file).to_owned()
                    } else {
                        base.join(file)
                    };
                    match std::fs::read_to_string(&full) {
                        Ok(text) => (sp, text),
                        Err(e) => {
                            ctx.err(&sp, format!("cannot read {}: {e}", full.display()));
                            return None;
                        }
                    }
                }
                Some((sp, Value::String(s))) => (sp, s.clone()),
                Some((sp, other)) => match serde_json::to_string(other) {
                    Ok(s) => (sp, s),
                    Err(e) => {
                        ctx.err(&sp, format!("the schema cannot be turned into JSON: {e}"));
                        return None;
                    }
                },
            };
            if let Err(e) = check_avro_schema(&schema, stringify_map_keys) {
                ctx.err(&sp, format!("bad avro schema: {e}"));
                return None;
            }
            Some(FormatSpec::Avro {
                schema,
                stringify_map_keys,
            })
        }
        other => {
            ctx.err(
                &mp,
                format!("unknown format mode `{other}` (expected json, flat-json, message-pack, avro, xdr)"),
            );
            None
        }
    }
}

/// `include` / `exclude`: (`type`: all, none, specified; `bins`).
fn selection(ctx: &mut Ctx, path: &str, v: &Value) -> Option<Option<BTreeSet<String>>> {
    let obj = ctx.obj(path, v, &["type", "bins"], &[])?;
    let ty = obj.str(ctx, "type").unwrap_or("specified");
    let bins = obj.get("bins").map(|(p, v)| ctx.strings(&p, v));
    match ty {
        "all" | "none" => {
            if bins.is_some() {
                ctx.err(
                    &join(path, "bins"),
                    format!("`bins` has no meaning with `type: {ty}`"),
                );
            }
            Some((ty == "none").then(BTreeSet::new))
        }
        "specified" => match bins {
            Some(list) => Some(Some(list.into_iter().map(|(_, b)| b).collect())),
            None => {
                ctx.err(path, "`type: specified` needs `bins` (a list of bin names)");
                None
            }
        },
        other => {
            ctx.err(
                &join(path, "type"),
                format!("unknown type `{other}` (all, none, specified)"),
            );
            None
        }
    }
}

/// Reads a `bin-transforms` section.
pub fn bins(ctx: &mut Ctx, path: &str, v: &Value) -> Option<BinSpec> {
    let obj = ctx.obj(path, v, &["include", "exclude", "map", "transforms"], &[])?;
    let mut spec = BinSpec::default();
    if let Some((p, v)) = obj.get("include") {
        // type all: every bin; none: no bin; specified: these.
        spec.include = selection(ctx, &p, v)?.map(|s| s.into_iter().collect());
    }
    if let Some((p, v)) = obj.get("exclude") {
        match selection(ctx, &p, v)? {
            // Excluding "all" leaves no bin; excluding "none" changes nothing.
            None => spec.include = Some(BTreeSet::new()),
            Some(set) => spec.exclude = set,
        }
    }
    if let Some((p, v)) = obj.get("map") {
        for (mp, from, to) in ctx.entries(&p, v) {
            if let Some(to) = ctx.str(&mp, to) {
                spec.rename.insert(from, to.to_owned());
            }
        }
    }
    if let Some((p, v)) = obj.get("transforms") {
        for (tp, name) in ctx.strings(&p, v) {
            match NameTransform::parse(&name) {
                Some(t) => spec.transforms.push(t),
                None => ctx.err(
                    &tp,
                    format!("unknown transform `{name}` (uppercase, lowercase, trim)"),
                ),
            }
        }
    }
    Some(spec)
}
