//! Extraction schemas: loading, the fail-closed check (every keyword must be enforceable
//! during decoding), bounds on every string, array and open object, and the largest
//! output the bounded schema allows, which sets the token budget.

use std::collections::HashSet;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::ExtractError;
use super::prompt::{Example, parse_examples, read_examples};

/// Keywords the constraint engine enforces while decoding.
const ENFORCED: &[&str] = &[
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "const",
    "enum",
    "type",
    "items",
    "additionalItems",
    "prefixItems",
    "minItems",
    "maxItems",
    "properties",
    "additionalProperties",
    "patternProperties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

/// Keywords that describe rather than constrain; safe to pass through.
const ANNOTATIONS: &[&str] = &[
    "$anchor",
    "$defs",
    "definitions",
    "$schema",
    "$id",
    "id",
    "$comment",
    "title",
    "description",
    "default",
    "readOnly",
    "writeOnly",
    "examples",
    "contentMediaType",
    "contentEncoding",
];

/// String formats the constraint engine turns into patterns.
const FORMATS: &[&str] =
    &["date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid", "uri"];

/// The built-in schemas under `grammars/` with their worked examples, compiled into the
/// binary so `--schema NAME` works from any folder: (name, schema, examples).
pub const BUILT_IN_SCHEMAS: &[(&str, &str, &str)] = &[
    (
        "discharge_summary",
        include_str!("../../grammars/discharge_summary.schema.json"),
        include_str!("../../grammars/discharge_summary.examples.jsonl"),
    ),
    (
        "radiology_report",
        include_str!("../../grammars/radiology_report.schema.json"),
        include_str!("../../grammars/radiology_report.examples.jsonl"),
    ),
    (
        "lab_report",
        include_str!("../../grammars/lab_report.schema.json"),
        include_str!("../../grammars/lab_report.examples.jsonl"),
    ),
    (
        "medication_list",
        include_str!("../../grammars/medication_list.schema.json"),
        include_str!("../../grammars/medication_list.examples.jsonl"),
    ),
    (
        "clinic_note",
        include_str!("../../grammars/clinic_note.schema.json"),
        include_str!("../../grammars/clinic_note.examples.jsonl"),
    ),
];

/// A schema as found, with the worked examples that go with it.
#[derive(Debug, Clone)]
pub struct SchemaSource {
    /// The built-in name or the file.
    pub name: String,
    /// The schema.
    pub schema: Value,
    /// Its examples: built in, or a `NAME.examples.jsonl` beside a `NAME.schema.json`.
    pub examples: Vec<Example>,
}

/// Defaults for what a schema leaves unbounded.
#[derive(Debug, Clone, Copy)]
pub struct SchemaLimits {
    /// `maxItems` for arrays (and `maxProperties` for open objects) without one.
    pub max_items: u64,
    /// `maxLength` for strings without one.
    pub max_string: u64,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        SchemaLimits { max_items: 16, max_string: 200 }
    }
}

/// A schema ready for extraction.
#[derive(Debug, Clone)]
pub struct ExtractionSchema {
    /// The built-in name or the file it came from.
    pub name: String,
    /// The schema with bounds added; what decoding enforces and records are validated
    /// against (it accepts a subset of what the original accepts).
    pub bounded: Value,
    /// The schema as shown to the model: compact, annotations kept, our bounds left out.
    pub prompt_text: String,
    /// The most bytes a document valid under `bounded` can take, compactly written.
    pub max_output_bytes: u64,
}

/// Finds a schema: a readable file path, else a built-in name (`discharge_summary`).
pub fn load_schema(spec: &str) -> Result<SchemaSource, ExtractError> {
    let path = Path::new(spec);
    if path.is_file() {
        let unreadable = |reason: String| ExtractError::SchemaUnreadable { name: spec.to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let schema = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let examples = match file_name.strip_suffix(".schema.json") {
            Some(stem) => {
                let sibling = path.with_file_name(format!("{stem}.examples.jsonl"));
                if sibling.is_file() { read_examples(&sibling)? } else { Vec::new() }
            }
            None => Vec::new(),
        };
        return Ok(SchemaSource { name: spec.to_string(), schema, examples });
    }
    let name = spec.strip_suffix(".schema.json").unwrap_or(spec);
    match BUILT_IN_SCHEMAS.iter().find(|(n, _, _)| *n == name) {
        Some((name, schema, examples)) => Ok(SchemaSource {
            name: name.to_string(),
            schema: serde_json::from_str(schema).expect("built-in schemas are valid JSON (tested)"),
            examples: parse_examples(examples, name)?,
        }),
        None => Err(ExtractError::SchemaUnknown {
            name: spec.to_string(),
            known: BUILT_IN_SCHEMAS.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", "),
        }),
    }
}

impl ExtractionSchema {
    /// Checks that every keyword can be enforced (naming the first that cannot, with its
    /// JSON pointer), adds bounds, and computes the output budget.
    pub fn compile(
        name: &str,
        schema: &Value,
        limits: SchemaLimits,
    ) -> Result<ExtractionSchema, ExtractError> {
        check_enforceable(schema, "")?;
        let mut bounded = schema.clone();
        add_bounds(&mut bounded, "", limits)?;
        let root = bounded.clone();
        let max_output_bytes = max_bytes(&bounded, &root, "", &mut Vec::new())?;
        let compiled = ExtractionSchema {
            name: name.to_string(),
            bounded,
            prompt_text: prompt_rendering(schema),
            max_output_bytes,
        };
        compiled.check_with_constraint_engine()?;
        Ok(compiled)
    }

    /// Compiles the schema with llguidance over a byte-level vocabulary: whatever it refuses
    /// (a regex it cannot parse, contradictory bounds) is refused before a model loads.
    fn check_with_constraint_engine(&self) -> Result<(), ExtractError> {
        use llguidance::api::TopLevelGrammar;
        let env = llguidance::toktrie::ApproximateTokEnv::single_byte_env();
        let mut factory = llguidance::ParserFactory::new_simple(&env)
            .map_err(|e| ExtractError::Constraint(e.to_string()))?;
        factory.quiet();
        factory
            .create_parser(TopLevelGrammar::from_json_schema(self.constraint_schema()))
            .map(|_| ())
            .map_err(|e| ExtractError::Constraint(format!("schema {}: {e}", self.name)))
    }

    /// The schema handed to llguidance: bounded, with compact output and no free whitespace.
    pub fn constraint_schema(&self) -> Value {
        let mut schema = self.bounded.clone();
        if let Some(object) = schema.as_object_mut() {
            object.insert(
                "x-guidance".into(),
                json!({
                    "whitespace_flexible": false,
                    "item_separator": ",",
                    "key_separator": ":",
                    "lenient": false,
                    // No \uXXXX escapes: a character is at most 4 bytes, which the budget assumes.
                    "json_allowed_escapes": "nrbtf\"\\",
                }),
            );
        }
        schema
    }
}

fn unenforceable(keyword: &str, pointer: &str, why: &str) -> ExtractError {
    ExtractError::SchemaUnenforceable {
        keyword: keyword.to_string(),
        pointer: if pointer.is_empty() { "/".into() } else { pointer.to_string() },
        reason: why.to_string(),
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Walks every subschema; every key must be enforced or a pure annotation.
fn check_enforceable(node: &Value, pointer: &str) -> Result<(), ExtractError> {
    let object = match node {
        Value::Object(object) => object,
        Value::Bool(_) => return Ok(()),
        _ => return Err(unenforceable("(schema)", pointer, "a schema must be an object or a boolean")),
    };
    for (key, value) in object {
        let here = format!("{pointer}/{}", escape_pointer(key));
        if ANNOTATIONS.contains(&key.as_str()) {
            if key == "$defs" || key == "definitions" {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    check_enforceable(sub, &format!("{here}/{}", escape_pointer(name)))?;
                }
            }
            continue;
        }
        if key.starts_with("x-") && key != "x-guidance" {
            continue;
        }
        if !ENFORCED.contains(&key.as_str()) {
            return Err(unenforceable(key, &here, "medllm cannot enforce it while decoding"));
        }
        match key.as_str() {
            "properties" | "patternProperties" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    check_enforceable(sub, &format!("{here}/{}", escape_pointer(name)))?;
                }
            }
            "items" | "additionalItems" | "additionalProperties" => check_enforceable(value, &here)?,
            "prefixItems" | "anyOf" | "oneOf" | "allOf" => {
                for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                    check_enforceable(sub, &format!("{here}/{i}"))?;
                }
            }
            "$ref" => {
                let target = value.as_str().unwrap_or("");
                if !target.starts_with('#') {
                    return Err(unenforceable(
                        key,
                        &here,
                        "only references inside the schema (#/...) work offline",
                    ));
                }
            }
            "format" => {
                let format = value.as_str().unwrap_or("");
                if !FORMATS.contains(&format) {
                    return Err(unenforceable(
                        key,
                        &here,
                        &format!("format \"{format}\" is not one medllm enforces ({})", FORMATS.join(", ")),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The JSON types a subschema admits (empty when it only combines or references others).
fn types_of(object: &Map<String, Value>) -> Vec<String> {
    match object.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
        _ => {
            let mut inferred = Vec::new();
            if object.contains_key("properties") || object.contains_key("additionalProperties") {
                inferred.push("object".into());
            }
            if object.contains_key("items") || object.contains_key("prefixItems") {
                inferred.push("array".into());
            }
            if object.contains_key("maxLength") || object.contains_key("pattern") {
                inferred.push("string".into());
            }
            inferred
        }
    }
}

/// Adds maxLength / maxItems / closed objects where the schema leaves them open.
fn add_bounds(node: &mut Value, pointer: &str, limits: SchemaLimits) -> Result<(), ExtractError> {
    let Value::Object(object) = node else {
        return Ok(());
    };
    let literal = object.contains_key("enum") || object.contains_key("const");
    let types = types_of(object);
    if !literal && types.iter().any(|t| t == "string") && !object.contains_key("maxLength") {
        object.insert("maxLength".into(), json!(limits.max_string));
    }
    if types.iter().any(|t| t == "array") && !object.contains_key("maxItems") {
        let fixed = object.get("items") == Some(&Value::Bool(false));
        if !fixed {
            object.insert("maxItems".into(), json!(limits.max_items));
        }
    }
    if types.iter().any(|t| t == "object") {
        match object.get("additionalProperties") {
            // Extraction output is closed unless the schema opens it.
            None => {
                object.insert("additionalProperties".into(), Value::Bool(false));
            }
            Some(Value::Bool(false)) => {}
            Some(_) => {
                if !object.contains_key("maxProperties") {
                    object.insert("maxProperties".into(), json!(limits.max_items));
                }
            }
        }
        if object.contains_key("patternProperties") && !object.contains_key("maxProperties") {
            object.insert("maxProperties".into(), json!(limits.max_items));
        }
    }
    for (key, value) in object.iter_mut() {
        let here = format!("{pointer}/{}", escape_pointer(key));
        match key.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" => {
                if let Value::Object(children) = value {
                    for (name, sub) in children.iter_mut() {
                        add_bounds(sub, &format!("{here}/{}", escape_pointer(name)), limits)?;
                    }
                }
            }
            "items" | "additionalItems" | "additionalProperties" => add_bounds(value, &here, limits)?,
            "prefixItems" | "anyOf" | "oneOf" | "allOf" => {
                if let Value::Array(children) = value {
                    for (i, sub) in children.iter_mut().enumerate() {
                        add_bounds(sub, &format!("{here}/{i}"), limits)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Bytes of the longest compact JSON text valid under `node`. Unbounded schemas (a bare
/// `{}` or `true`, recursion through `$ref`) are errors: the budget must be finite.
fn max_bytes(node: &Value, root: &Value, pointer: &str, refs: &mut Vec<String>) -> Result<u64, ExtractError> {
    let unbounded = |why: &str| ExtractError::SchemaUnbounded {
        pointer: if pointer.is_empty() { "/".into() } else { pointer.to_string() },
        reason: why.to_string(),
    };
    let object = match node {
        Value::Object(object) => object,
        Value::Bool(true) => return Err(unbounded("`true` accepts any value; give it a type")),
        Value::Bool(false) => return Ok(0),
        _ => return Err(unbounded("not a schema")),
    };
    if let Some(Value::String(target)) = object.get("$ref") {
        if refs.contains(target) {
            return Err(unbounded("recursive $ref: a recursive structure has no bounded size"));
        }
        let resolved =
            resolve_ref(root, target).ok_or_else(|| unbounded(&format!("$ref {target} not found")))?;
        refs.push(target.clone());
        let bytes = max_bytes(resolved, root, target.trim_start_matches('#'), refs);
        refs.pop();
        return bytes;
    }
    if let Some(value) = object.get("const") {
        return Ok(serde_json::to_string(value).map_or(0, |s| s.len() as u64));
    }
    if let Some(Value::Array(options)) = object.get("enum") {
        return Ok(options
            .iter()
            .map(|v| serde_json::to_string(v).map_or(0, |s| s.len() as u64))
            .max()
            .unwrap_or(0));
    }
    for combinator in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = object.get(combinator) {
            let mut best = 0;
            for (i, option) in options.iter().enumerate() {
                best = best.max(max_bytes(option, root, &format!("{pointer}/{combinator}/{i}"), refs)?);
            }
            return Ok(best);
        }
    }
    if let Some(Value::Array(parts)) = object.get("allOf") {
        // Every part must hold at once; the tightest part bounds the whole.
        let mut best = u64::MAX;
        for (i, part) in parts.iter().enumerate() {
            if let Ok(bytes) = max_bytes(part, root, &format!("{pointer}/allOf/{i}"), refs) {
                best = best.min(bytes);
            }
        }
        return if best == u64::MAX { Err(unbounded("no part of allOf is bounded")) } else { Ok(best) };
    }
    let types = types_of(object);
    if types.is_empty() {
        return Err(unbounded("no type: the schema accepts any value; give it a type"));
    }
    // Past this, a bound means nothing: the schema is unbounded in practice.
    const TOO_LARGE: u64 = 1 << 40;
    let mut best = 0u64;
    for t in &types {
        let bytes = match t.as_str() {
            "null" => 4,
            "boolean" => 5,
            // Integers: sign and up to 19 digits. Numbers: llguidance's number syntax with a
            // fraction and exponent; long fractions are possible but rare.
            "integer" => 20,
            "number" => 32,
            "string" => {
                let max_len = object.get("maxLength").and_then(Value::as_u64).unwrap_or(0);
                max_len.saturating_mul(4).saturating_add(2)
            }
            "array" => array_bytes(object, root, pointer, refs)?,
            "object" => object_bytes(object, root, pointer, refs)?,
            other => return Err(unbounded(&format!("unknown type {other}"))),
        };
        best = best.max(bytes);
    }
    if best >= TOO_LARGE {
        return Err(unbounded(&format!("the bounds allow {best} bytes of output")));
    }
    Ok(best)
}

fn array_bytes(
    object: &Map<String, Value>,
    root: &Value,
    pointer: &str,
    refs: &mut Vec<String>,
) -> Result<u64, ExtractError> {
    let prefix: Vec<&Value> =
        object.get("prefixItems").and_then(Value::as_array).into_iter().flatten().collect();
    let max_items = object.get("maxItems").and_then(Value::as_u64).unwrap_or(prefix.len() as u64);
    let mut total = 2u64;
    for (i, item) in prefix.iter().enumerate().take(max_items.min(usize::MAX as u64) as usize) {
        total = total.saturating_add(max_bytes(item, root, &format!("{pointer}/prefixItems/{i}"), refs)? + 1);
    }
    let rest = max_items.saturating_sub(prefix.len() as u64);
    if rest > 0 {
        let item = match object.get("items") {
            Some(Value::Bool(false)) => None,
            Some(item) => Some(item),
            None => None,
        };
        if let Some(item) = item {
            let each = max_bytes(item, root, &format!("{pointer}/items"), refs)?.saturating_add(1);
            total = total.saturating_add(rest.saturating_mul(each));
        }
    }
    Ok(total)
}

fn object_bytes(
    object: &Map<String, Value>,
    root: &Value,
    pointer: &str,
    refs: &mut Vec<String>,
) -> Result<u64, ExtractError> {
    let mut total = 2u64;
    let mut named = HashSet::new();
    for (name, sub) in object.get("properties").and_then(Value::as_object).into_iter().flatten() {
        named.insert(name.clone());
        let key = serde_json::to_string(name).map_or(0, |s| s.len() as u64);
        total += key
            + 1
            + max_bytes(sub, root, &format!("{pointer}/properties/{}", escape_pointer(name)), refs)?
            + 1;
    }
    let open = !matches!(object.get("additionalProperties"), Some(Value::Bool(false)) | None);
    if open || object.contains_key("patternProperties") {
        let extra = object
            .get("maxProperties")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .saturating_sub(named.len() as u64);
        let value = object.get("additionalProperties").filter(|v| v.is_object());
        let value_bytes = match value {
            Some(schema) => max_bytes(schema, root, &format!("{pointer}/additionalProperties"), refs)?,
            None => 64,
        };
        // An invented key is a string too: bounded like any other.
        total = total.saturating_add(extra.saturating_mul(value_bytes.saturating_add(2 + 4 * 64 + 2)));
    }
    Ok(total)
}

fn resolve_ref<'a>(root: &'a Value, target: &str) -> Option<&'a Value> {
    let pointer = target.strip_prefix('#')?;
    if pointer.is_empty() { Some(root) } else { root.pointer(pointer) }
}

/// The schema shown to the model: a compact skeleton of the answer, each value written as
/// its type (`string|null`), its allowed literals (`"male"|"female"`) or its shape, with
/// descriptions as comments. Small models follow this far better than JSON Schema syntax.
fn prompt_rendering(schema: &Value) -> String {
    let mut out = String::new();
    render_skeleton(schema, schema, 0, &mut out);
    out
}

fn render_skeleton(node: &Value, root: &Value, depth: usize, out: &mut String) {
    let Some(object) = node.as_object() else {
        out.push_str("any");
        return;
    };
    if depth > 12 {
        out.push('…');
        return;
    }
    if let Some(target) = object.get("$ref").and_then(Value::as_str) {
        match resolve_ref(root, target) {
            Some(resolved) => render_skeleton(resolved, root, depth + 1, out),
            None => out.push_str("any"),
        }
        return;
    }
    if let Some(value) = object.get("const") {
        out.push_str(&serde_json::to_string(value).unwrap_or_default());
        return;
    }
    if let Some(Value::Array(options)) = object.get("enum") {
        let literals: Vec<String> =
            options.iter().map(|v| serde_json::to_string(v).unwrap_or_default()).collect();
        out.push_str(&literals.join("|"));
        return;
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(options)) = object.get(combinator) {
            for (i, option) in options.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                render_skeleton(option, root, depth + 1, out);
                if combinator == "allOf" {
                    break;
                }
            }
            return;
        }
    }
    let types = types_of(object);
    if types.is_empty() {
        out.push_str("any");
    }
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        match t.as_str() {
            "object" => {
                out.push('{');
                let properties = object.get("properties").and_then(Value::as_object);
                for (k, (name, sub)) in properties.into_iter().flatten().enumerate() {
                    if k > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(name).unwrap_or_default());
                    out.push(':');
                    render_skeleton(sub, root, depth + 1, out);
                    if let Some(description) = sub.get("description").and_then(Value::as_str) {
                        out.push_str(&format!(" /* {description} */"));
                    }
                }
                out.push('}');
            }
            "array" => {
                out.push('[');
                match object.get("items") {
                    Some(items) if items.is_object() => render_skeleton(items, root, depth + 1, out),
                    _ => out.push_str("any"),
                }
                out.push_str(",…]");
            }
            "boolean" => out.push_str("true|false"),
            other => out.push_str(other),
        }
    }
}

/// JSON pointer patterns (with `*` for any array index) of string values that come from an
/// `enum` or `const`: categories, not quotations, so grounding skips them.
pub(crate) fn enum_pointers(schema: &Value) -> Vec<String> {
    fn visit(node: &Value, root: &Value, pointer: &str, out: &mut Vec<String>, depth: usize) {
        if depth > 32 {
            return;
        }
        let Some(object) = node.as_object() else { return };
        if let Some(Value::String(target)) = object.get("$ref")
            && let Some(resolved) =
                target.strip_prefix('#').and_then(|p| if p.is_empty() { Some(root) } else { root.pointer(p) })
        {
            visit(resolved, root, pointer, out, depth + 1);
        }
        if object.contains_key("enum") || object.contains_key("const") {
            out.push(pointer.to_string());
        }
        for (name, sub) in object.get("properties").and_then(Value::as_object).into_iter().flatten() {
            visit(sub, root, &format!("{pointer}/{name}"), out, depth + 1);
        }
        if let Some(items) = object.get("items") {
            visit(items, root, &format!("{pointer}/*"), out, depth + 1);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for sub in object.get(key).and_then(Value::as_array).into_iter().flatten() {
                visit(sub, root, pointer, out, depth + 1);
            }
        }
    }
    let mut out = Vec::new();
    visit(schema, schema, "", &mut out, 0);
    out
}

/// Whether `path` (a JSON pointer) matches `pattern` (a pointer with `*` for indices).
pub(crate) fn matches_pattern(pattern: &str, path: &str) -> bool {
    let mut a = pattern.split('/');
    let mut b = path.split('/');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y || (x == "*" && y.bytes().all(|c| c.is_ascii_digit())) => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(schema: Value) -> Result<ExtractionSchema, ExtractError> {
        ExtractionSchema::compile("test", &schema, SchemaLimits { max_items: 4, max_string: 10 })
    }

    #[test]
    fn unenforceable_keyword_is_named_with_its_pointer() {
        let schema = json!({"type":"object","properties":{"meds":{"type":"array","items":{"type":"object",
            "properties":{"name":{"type":"string","not":{"const":"x"}}}}}}});
        let err = compile(schema).unwrap_err();
        assert_eq!(
            err.to_string(),
            "schema keyword \"not\" at /properties/meds/items/properties/name/not cannot be enforced: medllm cannot enforce it while decoding"
        );
        let err = compile(json!({"type":"array","uniqueItems":true})).unwrap_err();
        assert!(err.to_string().contains("\"uniqueItems\" at /uniqueItems"), "{err}");
        let err = compile(json!({"type":"string","format":"phone"})).unwrap_err();
        assert!(err.to_string().contains("format \"phone\""), "{err}");
        let err = compile(json!({"$ref":"https://example.com/s.json"})).unwrap_err();
        assert!(err.to_string().contains("$ref"), "{err}");
    }

    #[test]
    fn annotations_and_extensions_pass() {
        let schema = json!({"title":"t","description":"d",
            "x-ui":"hint","type":"object","properties":{"a":{"type":"string","examples":["x"]}}});
        assert!(compile(schema).is_ok());
    }

    #[test]
    fn bounds_are_added_and_budget_follows() {
        let schema = json!({"type":"object","properties":{
            "name":{"type":"string"},
            "tags":{"type":"array","items":{"type":"string","maxLength":3}},
            "sex":{"enum":["male","female"]}}});
        let compiled = compile(schema).unwrap();
        assert_eq!(compiled.bounded["properties"]["name"]["maxLength"], 10);
        assert_eq!(compiled.bounded["properties"]["tags"]["maxItems"], 4);
        assert_eq!(compiled.bounded["properties"]["tags"]["items"]["maxLength"], 3);
        assert_eq!(compiled.bounded["additionalProperties"], false);
        // {"name":<2+40>,"tags":[4 x (2+12) + 4 commas],"sex":"female"} with separators.
        let name = 6 + 1 + 42 + 1;
        let tags = 6 + 1 + (2 + 4 * (14 + 1)) + 1;
        let sex = 5 + 1 + 8 + 1;
        assert_eq!(compiled.max_output_bytes, 2 + name + tags + sex);
    }

    #[test]
    fn unbounded_shapes_are_refused() {
        let err = compile(json!({"type":"object","properties":{"anything":{}}})).unwrap_err();
        assert!(err.to_string().contains("/properties/anything"), "{err}");
        let recursive = json!({"$defs":{"node":{"type":"object","properties":{"child":{"$ref":"#/$defs/node"}}}},
            "$ref":"#/$defs/node"});
        assert!(compile(recursive).unwrap_err().to_string().contains("recursive"));
    }

    #[test]
    fn pointer_patterns_match_indices() {
        assert!(matches_pattern("/meds/*/status", "/meds/3/status"));
        assert!(!matches_pattern("/meds/*/status", "/meds/x/status"));
        assert!(!matches_pattern("/sex", "/sex/0"));
        let schema = serde_json::json!({"type":"object","properties":{"sex":{"enum":["m","f"]},
            "meds":{"type":"array","items":{"$ref":"#/$defs/m"}}},
            "$defs":{"m":{"type":"object","properties":{"status":{"enum":["a"]},"name":{"type":"string"}}}}});
        assert_eq!(enum_pointers(&schema), vec!["/sex", "/meds/*/status"]);
    }

    #[test]
    fn built_in_schemas_compile() {
        for (name, _, _) in BUILT_IN_SCHEMAS {
            let source = load_schema(name).unwrap();
            let compiled =
                ExtractionSchema::compile(&source.name, &source.schema, SchemaLimits::default()).unwrap();
            assert!(compiled.max_output_bytes > 10, "{name}");
            // Every worked example is valid under the bounded schema, and its strings can be
            // grounded in its text: it teaches the model what we ask of it.
            assert!(!source.examples.is_empty(), "{name} has no example");
            let validator = jsonschema::validator_for(&compiled.bounded).unwrap();
            for example in &source.examples {
                assert!(validator.is_valid(&example.data), "{name}: example does not validate");
                let categories = enum_pointers(&compiled.bounded);
                let skip = |path: &str| categories.iter().any(|p| matches_pattern(p, path));
                let (_, ungrounded) = crate::extract::ground(&example.text, &example.data, 1.0, &skip);
                assert!(ungrounded.is_empty(), "{name}: example strings not in its text: {ungrounded:?}");
            }
        }
        assert!(matches!(load_schema("no_such_schema"), Err(ExtractError::SchemaUnknown { .. })));
    }
}
