//! Text that comes from files (GGUF metadata, tensor names) printed for people: control
//! characters and bidirectional overrides are shown as escapes (`\u{1b}`, `\r`), so a file
//! cannot move the cursor, recolour or clear the screen, rewrite a line or reorder what the
//! terminal shows. JSON output needs none of this: serde escapes control characters.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1) and bidirectional formatting
/// character escaped; unchanged (borrowed) when it holds none.
pub(crate) fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_become_visible_escapes() {
        assert!(matches!(terminal_safe("SmolLM2 135M – Instruct"), Cow::Borrowed(_)));
        assert_eq!(terminal_safe("a\u{1b}[2Jb\rc\0d\u{7f}\u{9b}e"), "a\\u{1b}[2Jb\\rc\\u{0}d\\u{7f}\\u{9b}e");
        assert_eq!(terminal_safe("x\ny\tz"), "x\\ny\\tz");
        assert_eq!(terminal_safe("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
