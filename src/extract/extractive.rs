//! `--extractive`: string values may only be passages of the source document, enforced
//! while decoding. The bounded schema is rewritten as a Lark grammar (llguidance) in which
//! every free string is a substring of the document; everything else (numbers, enums,
//! patterns, formats) keeps its JSON Schema constraint through `%json`.

use serde_json::{Value, json};

use super::ExtractError;

/// Options that make embedded JSON Schemas compact, as in the non-extractive path.
fn compact() -> Value {
    json!({"whitespace_flexible": false, "item_separator": ",", "key_separator": ":", "lenient": false,
           "json_allowed_escapes": "nrbtf\"\\"})
}

/// The document as a source of string values: characters that a JSON string would need
/// to escape (quotes, backslashes, control characters) become spaces, so every substring
/// is a valid JSON string body and still lines up with the source for grounding.
fn passage_source(document: &str) -> String {
    document.chars().map(|c| if c == '"' || c == '\\' || c.is_control() { ' ' } else { c }).collect()
}

/// Builds the Lark grammar for `schema` (already bounded) over `document`.
pub fn extractive_grammar(schema: &Value, document: &str) -> Result<String, ExtractError> {
    let mut builder = GrammarBuilder { root: schema, rules: Vec::new(), lengths: Vec::new() };
    let start = builder.rule(schema, 0)?;
    let source =
        serde_json::to_string(&passage_source(document)).map_err(|e| ExtractError::Prompt(e.to_string()))?;
    let mut grammar = format!("start: {start}\n");
    for (name, body) in &builder.rules {
        grammar.push_str(&format!("{name}: {body}\n"));
    }
    grammar.push_str(&format!("PASSAGE: %regex {{\"substring_chars\": {source}}}\n"));
    // A passage also keeps the string's maxLength: both must hold.
    for (min, max) in &builder.lengths {
        grammar.push_str(&format!("PASSAGE{min}_{max}: PASSAGE & /(?s:.{{{min},{max}}})/\n"));
    }
    Ok(grammar)
}

struct GrammarBuilder<'s> {
    root: &'s Value,
    rules: Vec<(String, String)>,
    /// The (minLength, maxLength) pairs strings use, one lexeme each.
    lengths: Vec<(u64, u64)>,
}

impl GrammarBuilder<'_> {
    /// A rule for `node`; returns its name.
    fn rule(&mut self, node: &Value, depth: usize) -> Result<String, ExtractError> {
        if depth > 24 {
            return Err(ExtractError::Constraint("schema nested too deeply for --extractive".into()));
        }
        let name = format!("v{}", self.rules.len());
        self.rules.push((name.clone(), String::new()));
        let body = self.body(node, depth)?;
        let slot = self.rules.iter_mut().find(|(n, _)| *n == name).expect("pushed above");
        slot.1 = body;
        Ok(name)
    }

    fn body(&mut self, node: &Value, depth: usize) -> Result<String, ExtractError> {
        let Some(object) = node.as_object() else { return Ok(json_rule(node)) };
        if let Some(target) = object.get("$ref").and_then(Value::as_str) {
            let resolved = target
                .strip_prefix('#')
                .and_then(|p| if p.is_empty() { Some(self.root) } else { self.root.pointer(p) })
                .ok_or_else(|| ExtractError::Constraint(format!("$ref {target} not found")))?;
            let name = self.rule(&resolved.clone(), depth + 1)?;
            return Ok(name);
        }
        // Literals, and strings with a pattern or format, keep their own constraint.
        let has = |k: &str| object.contains_key(k);
        if has("enum") || has("const") || has("pattern") || has("format") {
            return Ok(json_rule(node));
        }
        for combinator in ["anyOf", "oneOf"] {
            if let Some(options) = object.get(combinator).and_then(Value::as_array) {
                let mut alternatives = Vec::new();
                for option in options {
                    alternatives.push(self.rule(option, depth + 1)?);
                }
                return Ok(alternatives.join(" | "));
            }
        }
        let types: Vec<String> = match object.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
            _ if has("properties") => vec!["object".into()],
            _ if has("items") => vec!["array".into()],
            _ => return Ok(json_rule(node)),
        };
        let mut alternatives = Vec::new();
        for t in types {
            alternatives.push(match t.as_str() {
                "string" => {
                    let max = object.get("maxLength").and_then(Value::as_u64).unwrap_or(200);
                    let min = object.get("minLength").and_then(Value::as_u64).unwrap_or(0).min(max);
                    if !self.lengths.contains(&(min, max)) {
                        self.lengths.push((min, max));
                    }
                    format!("\"\\\"\" PASSAGE{min}_{max} \"\\\"\"")
                }
                "null" => "\"null\"".to_string(),
                "object" => self.object(object, depth)?,
                "array" => self.array(object, depth)?,
                other => {
                    let mut single = node.clone();
                    single["type"] = Value::String(other.to_string());
                    json_rule(&single)
                }
            });
        }
        Ok(alternatives.join(" | "))
    }

    /// Every declared property, in order: a valid document may hold them all.
    fn object(
        &mut self,
        object: &serde_json::Map<String, Value>,
        depth: usize,
    ) -> Result<String, ExtractError> {
        let mut parts = vec!["\"{\"".to_string()];
        let properties = object.get("properties").and_then(Value::as_object);
        for (i, (key, sub)) in properties.into_iter().flatten().enumerate() {
            let literal = format!(
                "{}{}:",
                if i > 0 { "," } else { "" },
                serde_json::to_string(key).unwrap_or_default()
            );
            parts.push(lark_literal(&literal));
            parts.push(self.rule(sub, depth + 1)?);
        }
        parts.push("\"}\"".to_string());
        Ok(format!("({})", parts.join(" ")))
    }

    fn array(
        &mut self,
        object: &serde_json::Map<String, Value>,
        depth: usize,
    ) -> Result<String, ExtractError> {
        let items = object.get("items").cloned().unwrap_or(Value::Bool(true));
        let item = self.rule(&items, depth + 1)?;
        let min = object.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = object.get("maxItems").and_then(Value::as_u64).unwrap_or(16).max(min);
        if max == 0 {
            return Ok("\"[]\"".into());
        }
        let more = format!("(\",\" {item}){{{},{}}}", min.saturating_sub(1), max - 1);
        let list = format!("{item} {more}");
        Ok(if min == 0 { format!("(\"[\" ({list})? \"]\")") } else { format!("(\"[\" {list} \"]\")") })
    }
}

/// A Lark string literal for `text`.
fn lark_literal(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// `%json { schema }` with compact output.
fn json_rule(node: &Value) -> String {
    let mut schema = node.clone();
    if let Some(object) = schema.as_object_mut() {
        object.insert("x-guidance".into(), compact());
    }
    format!("%json {}", serde_json::to_string(&schema).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_become_passages_and_the_rest_keeps_its_schema() {
        let schema = json!({"type":"object","properties":{
            "age":{"type":["integer","null"]},
            "sex":{"enum":["male","female"]},
            "dx":{"type":["string","null"],"maxLength":50},
            "meds":{"type":"array","maxItems":3,"items":{"type":"object","properties":{"name":{"type":"string"}}}}}});
        let grammar = extractive_grammar(&schema, "Pt \"A\" has\ncough").unwrap();
        assert!(grammar.contains("PASSAGE: %regex {\"substring_chars\": \"Pt  A  has cough\"}"), "{grammar}");
        assert!(grammar.contains("PASSAGE0_50: PASSAGE & /(?s:.{0,50})/"), "{grammar}");
        assert!(grammar.contains("%json {\"type\":\"integer\""), "{grammar}");
        assert!(grammar.contains("\"enum\":[\"male\",\"female\"]"), "{grammar}");
        assert!(grammar.contains("\"\\\"\" PASSAGE0_50 \"\\\"\" | \"null\""), "{grammar}");
        assert!(grammar.contains("{0,2}"), "{grammar}");
    }
}

#[cfg(test)]
mod engine_tests {
    use llguidance::api::TopLevelGrammar;
    use llguidance::toktrie::ApproximateTokEnv;
    use llguidance::{Matcher, ParserFactory};

    use super::*;

    /// Whether the grammar accepts `text` exactly (byte-level vocabulary).
    fn accepts(grammar: &str, text: &str) -> bool {
        let env = ApproximateTokEnv::single_byte_env();
        let factory = ParserFactory::new_simple(&env).unwrap();
        let parser = factory.create_parser(TopLevelGrammar::from_lark(grammar.to_string())).unwrap();
        let mut matcher = Matcher::new(Ok(parser));
        let tokens: Vec<u32> = text.bytes().map(u32::from).collect();
        matcher.consume_tokens(&tokens).is_ok() && matcher.is_accepting().unwrap_or(false)
    }

    #[test]
    fn only_passages_of_the_document_within_max_length() {
        let schema = json!({"type":"object","properties":{"dx":{"type":["string","null"],"minLength":2,"maxLength":12},
            "n":{"type":"integer"}}});
        let grammar = extractive_grammar(&schema, "Dx: community-acquired pneumonia. Cough.").unwrap();
        assert!(accepts(&grammar, r#"{"dx":"pneumonia","n":3}"#));
        assert!(accepts(&grammar, r#"{"dx":null,"n":-1}"#));
        assert!(!accepts(&grammar, r#"{"dx":"influenza","n":3}"#), "not in the document");
        assert!(!accepts(&grammar, r#"{"dx":"community-acquired","n":3}"#), "longer than maxLength");
        assert!(!accepts(&grammar, r#"{"dx": "pneumonia","n":3}"#), "no free whitespace");
        assert!(!accepts(&grammar, r#"{"dx":"D","n":3}"#), "shorter than minLength");
    }
}
