//! Which chat template turns messages into prompt text: the model's own, a built-in one named
//! with `--chat-template`, a template file, or none (plain text). Every command that builds
//! prompts resolves its choice here, so one rule holds everywhere: a model without a template
//! and no `--chat-template` gets plain text, with one note.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{ChatMessage, LlamaError, apply_chat_template};

/// A chat format medllm knows by name; llama.cpp renders each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinTemplate {
    /// `<|im_start|>role … <|im_end|>` (SmolLM2, Qwen, many fine-tunes).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|> … <|eot_id|>`.
    Llama3,
    /// `<start_of_turn>user … <end_of_turn>`; the system text opens the first user turn.
    Gemma,
    /// `[INST] … [/INST]` as Mistral 7B Instruct v0.3 writes it.
    Mistral,
    /// `<|user|> … <|end|>`.
    Phi3,
}

impl BuiltinTemplate {
    /// Every built-in template.
    pub const ALL: [BuiltinTemplate; 5] = [
        BuiltinTemplate::ChatMl,
        BuiltinTemplate::Llama3,
        BuiltinTemplate::Gemma,
        BuiltinTemplate::Mistral,
        BuiltinTemplate::Phi3,
    ];

    /// The name `--chat-template` takes.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinTemplate::ChatMl => "chatml",
            BuiltinTemplate::Llama3 => "llama3",
            BuiltinTemplate::Gemma => "gemma",
            BuiltinTemplate::Mistral => "mistral",
            BuiltinTemplate::Phi3 => "phi3",
        }
    }

    /// The name llama.cpp's own renderer knows the format by.
    fn llama_cpp_name(self) -> &'static str {
        match self {
            BuiltinTemplate::Mistral => "mistral-v3",
            other => other.name(),
        }
    }

    fn from_name(name: &str) -> Option<BuiltinTemplate> {
        BuiltinTemplate::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What `--chat-template` names: `none`, a built-in name, or a file holding a Jinja chat
/// template (a model's `tokenizer.chat_template`, of one of the families llama.cpp renders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplateArg {
    /// Plain text: the messages' contents as they are.
    None,
    /// A built-in format.
    Builtin(BuiltinTemplate),
    /// A Jinja template file.
    File(PathBuf),
}

/// The names `--chat-template` accepts, for help and error messages.
pub fn template_names() -> String {
    let mut names: Vec<&str> = BuiltinTemplate::ALL.iter().map(|t| t.name()).collect();
    names.push("none");
    names.join(", ")
}

impl FromStr for ChatTemplateArg {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "none" {
            return Ok(ChatTemplateArg::None);
        }
        if let Some(builtin) = BuiltinTemplate::from_name(value) {
            return Ok(ChatTemplateArg::Builtin(builtin));
        }
        if Path::new(value).is_file() {
            return Ok(ChatTemplateArg::File(PathBuf::from(value)));
        }
        Err(format!("`{value}` is neither a built-in template ({}) nor a file", template_names()))
    }
}

/// Where a resolved template came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// The model's `tokenizer.chat_template`.
    Model,
    /// `--chat-template NAME`.
    Builtin(BuiltinTemplate),
    /// `--chat-template FILE`.
    File(PathBuf),
}

/// How messages become prompt text, once the choice is resolved against the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptFormat {
    /// A template llama.cpp renders (Jinja text it recognises, or one of its format names).
    Template {
        /// What llama.cpp is handed.
        source: String,
        /// Where it came from.
        origin: TemplateOrigin,
    },
    /// No template: the messages' contents joined by blank lines, nothing added for the
    /// assistant's turn (a single prompt is sent exactly as given).
    Plain,
}

/// The outcome of resolving `--chat-template` for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTemplate {
    /// The format to render with.
    pub format: PromptFormat,
    /// Set when the model has no template and none was chosen, so the format fell back to
    /// plain text: the caller prints [`NO_TEMPLATE_NOTE`] once.
    pub fell_back: bool,
}

/// The one note for a model without a chat template when `--chat-template` is not given.
pub const NO_TEMPLATE_NOTE: &str =
    "the model has no chat template: prompts are plain text (choose one with --chat-template NAME|FILE)";

/// Applies the rule shared by every command: `--chat-template` wins; else the model's own
/// template; else plain text, flagged so the caller notes it once. A template file that cannot
/// be read is an error naming the file.
pub fn resolve_template(
    choice: Option<&ChatTemplateArg>,
    model_template: Option<String>,
) -> Result<ResolvedTemplate, LlamaError> {
    let format = match choice {
        Some(ChatTemplateArg::None) => PromptFormat::Plain,
        Some(ChatTemplateArg::Builtin(builtin)) => PromptFormat::Template {
            source: builtin.llama_cpp_name().to_string(),
            origin: TemplateOrigin::Builtin(*builtin),
        },
        Some(ChatTemplateArg::File(path)) => {
            let source = std::fs::read_to_string(path).map_err(|e| {
                LlamaError::ChatTemplate(format!("cannot read the template file {}: {e}", path.display()))
            })?;
            PromptFormat::Template { source, origin: TemplateOrigin::File(path.clone()) }
        }
        None => match model_template {
            Some(source) => PromptFormat::Template { source, origin: TemplateOrigin::Model },
            None => return Ok(ResolvedTemplate { format: PromptFormat::Plain, fell_back: true }),
        },
    };
    Ok(ResolvedTemplate { format, fell_back: false })
}

impl PromptFormat {
    /// Renders `messages`, opening the assistant's turn when `add_assistant` is set. A template
    /// llama.cpp does not recognise is an error that points at `--chat-template`.
    pub fn render(&self, messages: &[ChatMessage], add_assistant: bool) -> Result<String, LlamaError> {
        match self {
            PromptFormat::Plain => {
                Ok(messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n\n"))
            }
            PromptFormat::Template { source, origin } => {
                apply_chat_template(source, messages, add_assistant).map_err(|e| match e {
                    LlamaError::ChatTemplate(_) => LlamaError::ChatTemplate(match origin {
                        TemplateOrigin::Model => format!(
                            "the model's chat template is not one llama.cpp knows; choose one with --chat-template ({})",
                            template_names()
                        ),
                        TemplateOrigin::File(path) => format!(
                            "the template in {} is not one llama.cpp knows (it recognises the ChatML, Llama 3, Gemma, Mistral and Phi-3 families among others)",
                            path.display()
                        ),
                        TemplateOrigin::Builtin(b) => format!("llama.cpp cannot render the {} format", b.name()),
                    }),
                    other => other,
                })
            }
        }
    }

    /// Whether the prompt carries a chat format's control text (false for plain text).
    pub fn is_chat(&self) -> bool {
        matches!(self, PromptFormat::Template { .. })
    }

    /// The Jinja text or format name handed to llama.cpp, if any.
    pub fn source(&self) -> Option<&str> {
        match self {
            PromptFormat::Template { source, .. } => Some(source),
            PromptFormat::Plain => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello"),
            ChatMessage::new("user", "Dose?"),
        ]
    }

    fn builtin(name: &str) -> PromptFormat {
        let arg: ChatTemplateArg = name.parse().unwrap();
        resolve_template(Some(&arg), None).unwrap().format
    }

    #[test]
    fn every_builtin_renders_its_family_and_opens_the_assistant_turn() {
        let expected = [
            ("chatml", "<|im_start|>user\nDose?<|im_end|>\n", "<|im_start|>assistant\n"),
            (
                "llama3",
                "<|start_header_id|>user<|end_header_id|>\n\nDose?<|eot_id|>",
                "assistant<|end_header_id|>\n\n",
            ),
            ("gemma", "<start_of_turn>user\nDose?<end_of_turn>\n", "<start_of_turn>model\n"),
            ("mistral", "[INST] Dose?[/INST]", "[/INST]"),
            ("phi3", "<|user|>\nDose?<|end|>\n", "<|assistant|>\n"),
        ];
        for (name, last_user, ending) in expected {
            let text = builtin(name).render(&conversation(), true).unwrap();
            assert!(text.contains(last_user), "{name}: {text:?}");
            assert!(text.ends_with(ending), "{name}: {text:?}");
            assert!(text.contains("Be brief."), "{name} keeps the system text: {text:?}");
        }
        // Gemma has no system turn: the system text opens the first user turn.
        let gemma = builtin("gemma").render(&conversation(), true).unwrap();
        assert!(gemma.starts_with("<start_of_turn>user\nBe brief."), "{gemma:?}");
        assert!(gemma.contains("<start_of_turn>model\nHello<end_of_turn>"), "{gemma:?}");
    }

    #[test]
    fn the_choice_wins_then_the_models_template_then_plain_text_with_a_flag() {
        let own = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}".to_string();
        let gemma = ChatTemplateArg::Builtin(BuiltinTemplate::Gemma);
        let chosen = resolve_template(Some(&gemma), Some(own.clone())).unwrap();
        assert_eq!(chosen.format.source(), Some("gemma"));
        assert!(!chosen.fell_back);
        let model = resolve_template(None, Some(own.clone())).unwrap();
        assert_eq!(model.format, PromptFormat::Template { source: own, origin: TemplateOrigin::Model });
        assert!(!model.fell_back);
        let bare = resolve_template(None, None).unwrap();
        assert_eq!(bare, ResolvedTemplate { format: PromptFormat::Plain, fell_back: true });
        let none = resolve_template(Some(&ChatTemplateArg::None), None).unwrap();
        assert_eq!(none, ResolvedTemplate { format: PromptFormat::Plain, fell_back: false });
    }

    #[test]
    fn plain_text_is_the_contents_and_a_single_prompt_is_unchanged() {
        let plain = builtin("none");
        assert_eq!(
            plain.render(&[ChatMessage::new("user", "The capital of France is")], true).unwrap(),
            "The capital of France is"
        );
        assert_eq!(plain.render(&conversation(), true).unwrap(), "Be brief.\n\nHi\n\nHello\n\nDose?");
        assert!(!plain.is_chat());
    }

    #[test]
    fn a_template_file_is_read_and_a_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gemma.jinja");
        std::fs::write(&file, "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}").unwrap();
        let arg: ChatTemplateArg = file.to_str().unwrap().parse().unwrap();
        assert_eq!(arg, ChatTemplateArg::File(file.clone()));
        let format = resolve_template(Some(&arg), None).unwrap().format;
        let text = format.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
        assert_eq!(text, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");

        let unknown = dir.path().join("odd.jinja");
        std::fs::write(&unknown, "{{ messages }}").unwrap();
        let arg: ChatTemplateArg = unknown.to_str().unwrap().parse().unwrap();
        let err =
            resolve_template(Some(&arg), None).unwrap().format.render(&conversation(), true).unwrap_err();
        assert!(err.to_string().contains("odd.jinja"), "{err}");

        let err = "no-such-template".parse::<ChatTemplateArg>().unwrap_err();
        assert!(err.contains("chatml, llama3, gemma, mistral, phi3, none"), "{err}");
    }
}
