//! The Modelfile: Ollama's recipe for a model. Instructions are case-insensitive, one per
//! line; a value may be `"quoted"` or a `"""block"""` spanning lines; `#` starts a comment.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::OllamaError;

/// One message of the conversation a model starts from (`MESSAGE user Hello`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// Roles a `MESSAGE` may have.
pub const MESSAGE_ROLES: &[&str] = &["system", "user", "assistant"];

impl Message {
    /// A message, checking its role.
    pub fn new(role: &str, content: &str) -> Result<Message, OllamaError> {
        let role = role.to_ascii_lowercase();
        if !MESSAGE_ROLES.contains(&role.as_str()) {
            return Err(OllamaError::BadMessage {
                reason: format!("role {role:?} is none of {}", MESSAGE_ROLES.join(", ")),
            });
        }
        Ok(Message { role, content: content.to_string() })
    }
}

/// Most instructions a Modelfile may hold. Ollama's own have a handful and a long few-shot
/// conversation a few hundred; far more is a mistake or an attack, refused with a message.
pub const MAX_INSTRUCTIONS: usize = 10_000;

/// A parsed Modelfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modelfile {
    /// `FROM`: the weights (a GGUF path, relative to the Modelfile's folder).
    pub from: String,
    /// `ADAPTER`: LoRA adapters in GGUF.
    pub adapters: Vec<String>,
    /// `TEMPLATE`: the Go prompt template.
    pub template: Option<String>,
    /// `SYSTEM`: the default system prompt.
    pub system: Option<String>,
    /// `PARAMETER name value`, in file order.
    pub parameters: Vec<(String, String)>,
    /// `LICENSE`: licence texts.
    pub licenses: Vec<String>,
    /// `MESSAGE role text`, in order.
    pub messages: Vec<Message>,
}

impl Modelfile {
    /// Parses Modelfile text, in time linear in its length.
    pub fn parse(text: &str) -> Result<Modelfile, OllamaError> {
        let mut parser = Parser { text, pos: 0, line: 1, counted_to: 0 };
        let mut modelfile = Modelfile::default();
        let mut from = None;
        let mut instructions = 0usize;
        loop {
            parser.skip_blank_and_comments();
            if parser.at_end() {
                break;
            }
            let line = parser.line();
            instructions += 1;
            if instructions > MAX_INSTRUCTIONS {
                return Err(parser.error(
                    line,
                    &format!("more than {MAX_INSTRUCTIONS} instructions; a Modelfile this long is refused"),
                ));
            }
            let instruction = parser.word();
            if instruction.is_empty() {
                return Err(parser.error(line, "expected an instruction (FROM, PARAMETER, TEMPLATE, …)"));
            }
            parser.skip_spaces();
            match instruction.to_ascii_uppercase().as_str() {
                "FROM" => from = Some(parser.value(line)?),
                "ADAPTER" => modelfile.adapters.push(parser.value(line)?),
                "TEMPLATE" => modelfile.template = Some(parser.value(line)?),
                "SYSTEM" => modelfile.system = Some(parser.value(line)?),
                "LICENSE" => modelfile.licenses.push(parser.value(line)?),
                "PARAMETER" => {
                    let name = parser.word();
                    if name.is_empty() {
                        return Err(parser.error(line, "PARAMETER needs a name and a value"));
                    }
                    parser.skip_spaces();
                    let value = parser.value(line)?;
                    modelfile.parameters.push((name.to_ascii_lowercase(), value));
                }
                "MESSAGE" => {
                    let role = parser.word();
                    parser.skip_spaces();
                    let content = parser.value(line)?;
                    let message =
                        Message::new(role, &content).map_err(|e| parser.error(line, &e.to_string()))?;
                    modelfile.messages.push(message);
                }
                other => {
                    return Err(parser.error(
                        line,
                        &format!(
                            "unknown instruction {other}; a Modelfile has FROM, ADAPTER, TEMPLATE, SYSTEM, PARAMETER, LICENSE and MESSAGE"
                        ),
                    ));
                }
            }
        }
        modelfile.from = from.ok_or_else(|| OllamaError::BadModelfile {
            line: 0,
            reason: "no FROM instruction: a Modelfile names its weights with FROM".into(),
        })?;
        Ok(modelfile)
    }

    /// The Modelfile text; [`Modelfile::parse`] reads it back to the same value.
    pub fn print(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "FROM {}", self.from);
        for adapter in &self.adapters {
            let _ = writeln!(out, "ADAPTER {adapter}");
        }
        if let Some(template) = &self.template {
            let _ = writeln!(out, "TEMPLATE {}", block(template));
        }
        if let Some(system) = &self.system {
            let _ = writeln!(out, "SYSTEM {}", block(system));
        }
        for (name, value) in &self.parameters {
            let _ = writeln!(out, "PARAMETER {name} {value}");
        }
        for license in &self.licenses {
            let _ = writeln!(out, "LICENSE {}", block(license));
        }
        for message in &self.messages {
            let _ = writeln!(out, "MESSAGE {} {}", message.role, block(&message.content));
        }
        out
    }
}

fn block(value: &str) -> String {
    format!("\"\"\"{value}\"\"\"")
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// The line of `counted_to`: lines are counted once, as the position moves on.
    line: usize,
    counted_to: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    /// 1-based line of the current position (which only moves forward).
    fn line(&mut self) -> usize {
        self.line += self.text.as_bytes()[self.counted_to..self.pos].iter().filter(|&&b| b == b'\n').count();
        self.counted_to = self.pos;
        self.line
    }

    fn error(&self, line: usize, reason: &str) -> OllamaError {
        OllamaError::BadModelfile { line, reason: reason.to_string() }
    }

    fn skip_blank_and_comments(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if trimmed.starts_with('#') {
                self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    fn skip_spaces(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches([' ', '\t']).len();
    }

    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// A value: a `"""block"""`, a `"quoted string"`, or the rest of the line.
    fn value(&mut self, line: usize) -> Result<String, OllamaError> {
        let rest = self.rest();
        let (value, used) = if let Some(inner) = rest.strip_prefix("\"\"\"") {
            let end =
                inner.find("\"\"\"").ok_or_else(|| self.error(line, "a \"\"\" block is never closed"))?;
            (inner[..end].to_string(), end + 6)
        } else if let Some(inner) = rest.strip_prefix('"') {
            let end = inner.find('"').ok_or_else(|| self.error(line, "a quoted value is never closed"))?;
            (inner[..end].to_string(), end + 2)
        } else {
            let end = rest.find('\n').unwrap_or(rest.len());
            (rest[..end].trim_end().to_string(), end)
        };
        self.pos += used;
        let after = self.rest();
        let line_rest = &after[..after.find('\n').unwrap_or(after.len())];
        if !line_rest.trim().is_empty() {
            return Err(self.error(line, &format!("unexpected {:?} after the value", line_rest.trim())));
        }
        if value.is_empty() {
            return Err(self.error(line, "the instruction has no value"));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"# Discharge summaries, clinic edition
from ./discharge.gguf
ADAPTER ./notes-lora.gguf

Template """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
SYSTEM "You summarise discharge letters."
PARAMETER temperature 0.2
parameter stop "<|im_end|>"
PARAMETER stop <|im_start|>
  # an indented comment
LICENSE """Apache-2.0"""
MESSAGE user What does BID mean?
MESSAGE assistant """Twice a day."""
"#;

    #[test]
    fn parses_the_hand_checked_example() {
        let modelfile = Modelfile::parse(EXAMPLE).unwrap();
        assert_eq!(modelfile.from, "./discharge.gguf");
        assert_eq!(modelfile.adapters, ["./notes-lora.gguf"]);
        assert_eq!(
            modelfile.template.as_deref(),
            Some(
                "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
            )
        );
        assert_eq!(modelfile.system.as_deref(), Some("You summarise discharge letters."));
        assert_eq!(
            modelfile.parameters,
            [
                ("temperature".to_string(), "0.2".to_string()),
                ("stop".to_string(), "<|im_end|>".to_string()),
                ("stop".to_string(), "<|im_start|>".to_string())
            ]
        );
        assert_eq!(modelfile.licenses, ["Apache-2.0"]);
        assert_eq!(
            modelfile.messages,
            [
                Message::new("user", "What does BID mean?").unwrap(),
                Message::new("assistant", "Twice a day.").unwrap()
            ]
        );
    }

    #[test]
    fn prints_what_it_parses() {
        let modelfile = Modelfile::parse(EXAMPLE).unwrap();
        let printed = modelfile.print();
        assert!(
            printed.starts_with("FROM ./discharge.gguf\nADAPTER ./notes-lora.gguf\nTEMPLATE \"\"\"{{- range")
        );
        assert!(printed.contains("\nPARAMETER stop <|im_end|>\n"));
        assert!(printed.contains("\nMESSAGE user \"\"\"What does BID mean?\"\"\"\n"));
        assert_eq!(Modelfile::parse(&printed).unwrap(), modelfile);
    }

    #[test]
    fn a_huge_modelfile_is_refused_at_the_limit_and_one_below_it_parses() {
        // Quadratic line counting made 200k lines run for minutes; now both finish at once.
        let lines = |n: usize| {
            let mut text = String::from("FROM a.gguf\n");
            for i in 0..n {
                text.push_str(&format!("PARAMETER stop s{i}\n"));
            }
            text
        };
        match Modelfile::parse(&lines(200_000)) {
            Err(OllamaError::BadModelfile { line, reason }) => {
                assert_eq!(line, MAX_INSTRUCTIONS + 1, "the first instruction past the limit");
                assert!(reason.contains("more than 10000 instructions"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let parsed = Modelfile::parse(&lines(MAX_INSTRUCTIONS - 1)).unwrap();
        assert_eq!(parsed.parameters.len(), MAX_INSTRUCTIONS - 1);
        assert_eq!(parsed.parameters.last().unwrap().1, format!("s{}", MAX_INSTRUCTIONS - 2));
    }

    #[test]
    fn mistakes_name_their_line() {
        for (text, line, expected) in [
            ("FROM a.gguf\nTEMPLTE x", 2, "unknown instruction TEMPLTE"),
            ("FROM a.gguf\n\nSYSTEM \"\"\"never closed", 3, "never closed"),
            ("FROM a.gguf\nMESSAGE doctor hi", 2, "role \"doctor\""),
            ("FROM a.gguf\nPARAMETER", 2, "needs a name"),
            ("FROM a.gguf\nSYSTEM \"x\" y", 2, "unexpected \"y\""),
            ("# nothing\nSYSTEM hi", 0, "no FROM"),
        ] {
            match Modelfile::parse(text) {
                Err(OllamaError::BadModelfile { line: l, reason }) => {
                    assert_eq!(l, line, "{text}");
                    assert!(reason.contains(expected), "{text}: {reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
