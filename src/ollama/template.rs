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

    /// The family `--chat-template NAME` names (chatml, llama3, gemma, mistral, phi3).
    pub fn from_template_name(name: &str) -> Option<ChatFamily> {
        match name {
            "chatml" => Some(ChatFamily::ChatMl),
            "llama3" => Some(ChatFamily::Llama3),
            "gemma" => Some(ChatFamily::Gemma),
            "mistral" => Some(ChatFamily::Mistral),
            "phi3" => Some(ChatFamily::Phi),
            _ => None,
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

// Gemma has no system turn: the system text opens the first user turn, as Gemma's own
// templates do, and the model speaks as "model".
const GEMMA: &str = "{{- $first := true }}{{- range .Messages }}
{{- if ne .Role \"system\" }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}user{{ end }}
{{ if and $first $.System (eq .Role \"user\") }}{{ $.System }}

{{ end }}{{ .Content }}<end_of_turn>
{{ $first = false }}{{ end }}
{{- end }}<start_of_turn>model
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

    /// Renders a template with Go's text/template, the engine Ollama runs templates with,
    /// over data shaped as Ollama hands it: the system text and the messages.
    fn render_with_go(template: &str, system: &str, messages: &[(&str, &str)]) -> String {
        const PROGRAM: &str = r#"package main

import (
	"encoding/json"
	"os"
	"text/template"
)

func main() {
	var input struct {
		Template string
		Data     map[string]any
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		panic(err)
	}
	t := template.Must(template.New("ollama").Parse(input.Template))
	if err := t.Execute(os.Stdout, input.Data); err != nil {
		panic(err)
	}
}
"#;
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("render.go"), PROGRAM).unwrap();
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|(role, content)| serde_json::json!({"Role": role, "Content": content}))
            .collect();
        let input =
            serde_json::json!({"Template": template, "Data": {"System": system, "Messages": messages}});
        let mut child = std::process::Command::new("go")
            .args(["run", "render.go"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("go (golang-go) is installed by scripts/setup.sh");
        child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    /// What each family's own chat format writes for: system S, user U1, assistant A1, user U2,
    /// then the opening of the assistant's turn (the tokenizer adds BOS itself).
    #[test]
    fn each_template_renders_in_go_as_the_family_writes_a_conversation() {
        let conversation = [("system", "S"), ("user", "U1"), ("assistant", "A1"), ("user", "U2")];
        let expected = [
            (
                ChatFamily::ChatMl,
                "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n",
            ),
            (
                ChatFamily::Llama3,
                "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            ),
            (
                ChatFamily::Gemma,
                "<start_of_turn>user\nS\n\nU1<end_of_turn>\n<start_of_turn>model\nA1<end_of_turn>\n<start_of_turn>user\nU2<end_of_turn>\n<start_of_turn>model\n",
            ),
            (ChatFamily::Mistral, "[INST] U1 [/INST] A1</s>[INST] S\n\nU2 [/INST]"),
            (
                ChatFamily::Phi,
                "<|system|>\nS<|end|>\n<|user|>\nU1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nU2<|end|>\n<|assistant|>\n",
            ),
        ];
        for (family, text) in expected {
            assert_eq!(render_with_go(family.go_template(), "S", &conversation), text, "{family:?}");
        }
        // Without a system prompt nothing of it appears.
        let plain = [("user", "U1")];
        assert_eq!(
            render_with_go(ChatFamily::Gemma.go_template(), "", &plain),
            "<start_of_turn>user\nU1<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(render_with_go(ChatFamily::Mistral.go_template(), "", &plain), "[INST] U1 [/INST]");
    }
}
