//! The prompt template Ollama needs (a Go template) derived from the Jinja chat template a
//! GGUF carries, for the chat formats in wide use, with each format's stop strings.

use super::OllamaError;

/// A chat format recognised in a GGUF's `tokenizer.chat_template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFamily {
    /// `<|im_start|>role … <|im_end|>` (SmolLM2, Qwen, many fine-tunes).
    ChatMl,
    /// `<|start_header_id|>role<|end_header_id|> … <|eot_id|>`.
    Llama3,
    /// `<start_of_turn>user … <end_of_turn>`; no system role, the model speaks as `model`.
    Gemma,
    /// `[INST] … [/INST]`.
    Mistral,
    /// Phi-3: `<|user|> … <|end|>`.
    Phi,
}

impl ChatFamily {
    /// All families, for messages that list them.
    pub const ALL: [ChatFamily; 5] =
        [ChatFamily::ChatMl, ChatFamily::Llama3, ChatFamily::Gemma, ChatFamily::Mistral, ChatFamily::Phi];

    /// The family's usual name.
    pub fn name(self) -> &'static str {
        match self {
            ChatFamily::ChatMl => "ChatML",
            ChatFamily::Llama3 => "Llama 3",
            ChatFamily::Gemma => "Gemma",
            ChatFamily::Mistral => "Mistral",
            ChatFamily::Phi => "Phi",
        }
    }

    /// Recognises the family of a Jinja chat template by the control tokens it writes.
    pub fn detect(jinja: &str) -> Option<ChatFamily> {
        // Most specific markers first: several formats mention `[INST]` or `<|end|>`.
        if jinja.contains("<|start_header_id|>") && jinja.contains("<|eot_id|>") {
            Some(ChatFamily::Llama3)
        } else if jinja.contains("<start_of_turn>") {
            Some(ChatFamily::Gemma)
        } else if jinja.contains("<|im_start|>") {
            Some(ChatFamily::ChatMl)
        } else if jinja.contains("<|end|>") && jinja.contains("<|assistant|>") {
            Some(ChatFamily::Phi)
        } else if jinja.contains("[INST]") && !jinja.contains("<<SYS>>") {
            // Llama 2 also writes [INST] but wraps the system prompt in <<SYS>>: not this one.
            Some(ChatFamily::Mistral)
        } else {
            None
        }
    }

    /// The Ollama template (Go `text/template` over `.Messages`) for this family.
    pub fn go_template(self) -> &'static str {
        match self {
            ChatFamily::ChatMl => CHATML,
            ChatFamily::Llama3 => LLAMA3,
            ChatFamily::Gemma => GEMMA,
            ChatFamily::Mistral => MISTRAL,
            ChatFamily::Phi => PHI,
        }
    }

    /// Strings that end the model's turn in this format.
    pub fn stops(self) -> &'static [&'static str] {
        match self {
            ChatFamily::ChatMl => &["<|im_start|>", "<|im_end|>"],
            ChatFamily::Llama3 => &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            ChatFamily::Gemma => &["<start_of_turn>", "<end_of_turn>"],
            ChatFamily::Mistral => &["[INST]", "[/INST]"],
            ChatFamily::Phi => &["<|end|>", "<|user|>", "<|assistant|>"],
        }
    }
}

// Each template walks the conversation and ends by opening the assistant's turn. Ollama puts
// the model's SYSTEM text into .Messages as a "system" message unless the request has one.
const CHATML: &str = "{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
";

const LLAMA3: &str = "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>
{{- end }}<|start_header_id|>assistant<|end_header_id|>

";

// Gemma has no system turn: system text goes in a user turn of its own.
const GEMMA: &str = "{{- range .Messages }}<start_of_turn>
{{- if eq .Role \"assistant\" }}model{{ else }}user{{ end }}
{{ .Content }}<end_of_turn>
{{ end }}<start_of_turn>model
";

// Mistral has no system turn either: the system text opens the last user instruction.
const MISTRAL: &str = "{{- range $i, $m := .Messages }}
{{- if eq $m.Role \"user\" }}[INST] {{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}

{{ end }}{{ $m.Content }} [/INST]
{{- else if eq $m.Role \"assistant\" }} {{ $m.Content }}</s>
{{- end }}
{{- end }}";

const PHI: &str = "{{- range .Messages }}<|{{ .Role }}|>
{{ .Content }}<|end|>
{{ end }}<|assistant|>
";

/// The template and stop strings for a model whose GGUF carries `chat_template`.
pub fn derive_template(
    chat_template: Option<&str>,
) -> Result<(String, &'static [&'static str]), OllamaError> {
    let families = ChatFamily::ALL.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ");
    let jinja = chat_template.ok_or_else(|| OllamaError::NoTemplate {
        reason: format!(
            "the GGUF has no tokenizer.chat_template to derive one from (known families: {families})"
        ),
    })?;
    let family = ChatFamily::detect(jinja).ok_or_else(|| OllamaError::NoTemplate {
        reason: format!("the GGUF's chat template is none of the known families ({families})"),
    })?;
    Ok((family.go_template().to_string(), family.stops()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short Jinja templates in each family's style, as GGUF files carry them.
    const JINJA: &[(&str, ChatFamily)] = &[
        (
            "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
            ChatFamily::ChatMl,
        ),
        (
            "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
            ChatFamily::Llama3,
        ),
        (
            "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
            ChatFamily::Gemma,
        ),
        (
            "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
            ChatFamily::Mistral,
        ),
        (
            "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}",
            ChatFamily::Phi,
        ),
    ];

    #[test]
    fn each_family_is_recognised_and_gets_its_template_and_stops() {
        for (jinja, family) in JINJA {
            assert_eq!(ChatFamily::detect(jinja), Some(*family), "{jinja}");
            let (template, stops) = derive_template(Some(jinja)).unwrap();
            assert_eq!(stops, family.stops());
            assert!(template.contains(".Messages"), "{family:?}");
            assert_eq!(template.matches("{{").count(), template.matches("}}").count(), "{family:?}");
            // The template writes the turn-ending marker that is among the stops, or the
            // opening marker of the next turn.
            assert!(stops.iter().any(|s| template.contains(s)), "{family:?}");
        }
        let (chatml, _) = derive_template(Some(JINJA[0].0)).unwrap();
        assert!(chatml.ends_with("<|im_start|>assistant\n"));
        let (llama3, stops) = derive_template(Some(JINJA[1].0)).unwrap();
        assert!(llama3.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"));
        assert_eq!(stops, ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]);
        let (gemma, _) = derive_template(Some(JINJA[2].0)).unwrap();
        assert!(gemma.contains("model{{ else }}user"), "assistant speaks as model");
    }

    #[test]
    fn unknown_or_missing_templates_ask_for_one() {
        let llama2 = "{% if messages[0]['role'] == 'system' %}[INST] <<SYS>>\n{{ messages[0]['content'] }}\n<</SYS>>\n\n{% endif %}";
        for template in [Some("{{ messages }}"), Some(llama2), None] {
            let err = derive_template(template).unwrap_err().to_string();
            assert!(err.contains("ChatML, Llama 3, Gemma, Mistral, Phi"), "{err}");
            assert!(err.contains("--template"), "{err}");
        }
    }
}
