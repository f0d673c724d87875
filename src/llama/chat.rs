//! Chat templates: turning messages into the prompt text a model was trained on.

use std::ffi::CString;

use serde::{Deserialize, Serialize};

use super::LlamaError;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: &str, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// Renders `messages` with `template` (a model's `tokenizer.chat_template`), ending with
/// the assistant's turn opened when `add_assistant` is set. llama.cpp recognises the
/// common template families; an unknown one is an error naming the problem.
pub fn apply_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_assistant: bool,
) -> Result<String, LlamaError> {
    let template_c = CString::new(template).map_err(|_| LlamaError::NulByte)?;
    let owned: Vec<(CString, CString)> = messages
        .iter()
        .map(|m| Ok((CString::new(m.role.as_str())?, CString::new(m.content.as_str())?)))
        .collect::<Result<_, std::ffi::NulError>>()
        .map_err(|_| LlamaError::NulByte)?;
    let raw: Vec<llama_sys::llama_chat_message> = owned
        .iter()
        .map(|(role, content)| llama_sys::llama_chat_message {
            role: role.as_ptr(),
            content: content.as_ptr(),
        })
        .collect();
    let mut buf = vec![0u8; messages.iter().map(|m| m.content.len() * 2 + 64).sum::<usize>().max(256)];
    for _ in 0..2 {
        // SAFETY: every pointer in `raw` points into `owned`, alive for the call; `buf`
        // has room for `buf.len()` bytes and llama.cpp writes no more than that.
        let n = unsafe {
            llama_sys::llama_chat_apply_template(
                template_c.as_ptr(),
                raw.as_ptr(),
                raw.len(),
                add_assistant,
                buf.as_mut_ptr().cast(),
                i32::try_from(buf.len()).unwrap_or(i32::MAX),
            )
        };
        let n = usize::try_from(n).map_err(|_| {
            LlamaError::ChatTemplate("the model's template is not one llama.cpp knows; use --raw".into())
        })?;
        if n <= buf.len() {
            buf.truncate(n);
            return String::from_utf8(buf)
                .map_err(|_| LlamaError::ChatTemplate("template output is not UTF-8".into()));
        }
        buf.resize(n, 0);
    }
    Err(LlamaError::ChatTemplate("template output size changed between calls".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_renders_with_generation_prompt() {
        let template = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";
        let text = apply_chat_template(
            template,
            &[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")],
            true,
        )
        .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn unknown_template_is_an_error() {
        let err = apply_chat_template("{{ nonsense }}", &[ChatMessage::new("user", "x")], true).unwrap_err();
        assert!(matches!(err, LlamaError::ChatTemplate(_)), "{err}");
    }
}
