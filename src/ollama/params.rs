//! Run parameters (`PARAMETER temperature 0.2`): checked against the names and types Ollama
//! accepts, and written as the JSON object of the params layer.

use std::collections::BTreeMap;

use serde_json::Value;

use super::OllamaError;

/// The JSON type Ollama reads a parameter as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamKind {
    Int,
    Float,
    Bool,
    /// `stop`: given once per string, stored as a list.
    StringList,
}

/// Ollama's run options (model options and runner options), by name.
const KNOWN_PARAMETERS: &[(&str, ParamKind)] = &[
    ("num_ctx", ParamKind::Int),
    ("num_batch", ParamKind::Int),
    ("num_gpu", ParamKind::Int),
    ("main_gpu", ParamKind::Int),
    ("num_thread", ParamKind::Int),
    ("num_keep", ParamKind::Int),
    ("num_predict", ParamKind::Int),
    ("seed", ParamKind::Int),
    ("top_k", ParamKind::Int),
    ("repeat_last_n", ParamKind::Int),
    ("mirostat", ParamKind::Int),
    ("top_p", ParamKind::Float),
    ("min_p", ParamKind::Float),
    ("typical_p", ParamKind::Float),
    ("temperature", ParamKind::Float),
    ("repeat_penalty", ParamKind::Float),
    ("presence_penalty", ParamKind::Float),
    ("frequency_penalty", ParamKind::Float),
    ("mirostat_tau", ParamKind::Float),
    ("mirostat_eta", ParamKind::Float),
    ("tfs_z", ParamKind::Float),
    ("use_mmap", ParamKind::Bool),
    ("use_mlock", ParamKind::Bool),
    ("numa", ParamKind::Bool),
    ("penalize_newline", ParamKind::Bool),
    ("low_vram", ParamKind::Bool),
    ("vocab_only", ParamKind::Bool),
    ("stop", ParamKind::StringList),
];

/// Checked run parameters, in the order Ollama stores them (by name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters {
    values: BTreeMap<String, Value>,
}

impl Parameters {
    /// Adds `name value` (as text from a Modelfile or `--param`); `stop` accumulates.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), OllamaError> {
        let name = name.trim().to_ascii_lowercase();
        let kind = KNOWN_PARAMETERS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k).ok_or_else(|| {
            OllamaError::BadParameter {
                name: name.clone(),
                reason: format!(
                    "Ollama has no such parameter; known ones: {}",
                    KNOWN_PARAMETERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            }
        })?;
        let value = unquote(value.trim());
        let bad = |expected: &str| OllamaError::BadParameter {
            name: name.clone(),
            reason: format!("{value:?} is not {expected}"),
        };
        let parsed = match kind {
            ParamKind::Int => Value::from(value.parse::<i64>().map_err(|_| bad("an integer"))?),
            ParamKind::Float => {
                let number =
                    value.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| bad("a number"))?;
                serde_json::Number::from_f64(number).map(Value::Number).ok_or_else(|| bad("a number"))?
            }
            ParamKind::Bool => Value::Bool(match value.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(bad("true or false")),
            }),
            ParamKind::StringList => {
                if value.is_empty() {
                    return Err(bad("a non-empty string"));
                }
                let list = self.values.entry(name.clone()).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = list
                    && !items.iter().any(|i| i.as_str() == Some(value))
                {
                    items.push(Value::String(value.to_string()));
                }
                return Ok(());
            }
        };
        self.values.insert(name, parsed);
        Ok(())
    }

    /// Sets `stop` to these strings unless stop strings were given already.
    pub fn default_stops(&mut self, stops: &[&str]) {
        if !self.values.contains_key("stop") && !stops.is_empty() {
            self.values.insert(
                "stop".into(),
                Value::Array(stops.iter().map(|s| Value::String(s.to_string())).collect()),
            );
        }
    }

    /// Whether no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The params layer: a JSON object, keys sorted.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.values).expect("parameters always serialise")
    }

    /// `(name, value as a Modelfile writes it)`, one per `PARAMETER` line.
    pub fn modelfile_lines(&self) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        for (name, value) in &self.values {
            match value {
                Value::Array(items) => {
                    for item in items {
                        lines.push((name.clone(), quote(item.as_str().unwrap_or_default())));
                    }
                }
                other => lines.push((name.clone(), other.to_string())),
            }
        }
        lines
    }
}

/// `"<|im_end|>"` → `<|im_end|>`: stop strings are often quoted.
fn unquote(value: &str) -> &str {
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
}

fn quote(value: &str) -> String {
    if value.contains(char::is_whitespace) || value.starts_with('"') {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_take_their_ollama_types_and_keys_sort() {
        let mut params = Parameters::default();
        params.set("temperature", "0.2").unwrap();
        params.set("NUM_CTX", "4096").unwrap();
        params.set("stop", "\"<|im_end|>\"").unwrap();
        params.set("stop", "<|im_start|>").unwrap();
        params.set("stop", "<|im_end|>").unwrap();
        params.set("use_mmap", "false").unwrap();
        assert_eq!(
            String::from_utf8(params.to_json()).unwrap(),
            r#"{"num_ctx":4096,"stop":["<|im_end|>","<|im_start|>"],"temperature":0.2,"use_mmap":false}"#
        );
        params.default_stops(&["</s>"]);
        assert!(!String::from_utf8(params.to_json()).unwrap().contains("</s>"), "given stops win");
    }

    #[test]
    fn unknown_names_and_wrong_types_are_refused() {
        let mut params = Parameters::default();
        let err = params.set("temprature", "0.2").unwrap_err().to_string();
        assert!(err.contains("temprature") && err.contains("no such parameter"), "{err}");
        let err = params.set("num_ctx", "4k").unwrap_err().to_string();
        assert!(err.contains("not an integer"), "{err}");
        let err = params.set("top_p", "high").unwrap_err().to_string();
        assert!(err.contains("not a number"), "{err}");
        let err = params.set("use_mmap", "yes").unwrap_err().to_string();
        assert!(err.contains("true or false"), "{err}");
        assert!(params.is_empty());
    }
}
