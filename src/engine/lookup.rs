//! Drafts for speculative copying (prompt-lookup decoding): most strings of an extraction
//! are copied from the report, so the text that followed the output's last bytes in the
//! prompt is a good guess of what comes next. A guess costs a batch position, not a
//! decoding step; verification keeps only what greedy decoding would have chosen.
//!
//! The match is on bytes, not tokens: a value inside a JSON string is tokenized apart
//! from the word it copies (`"Pne|umonia` against ` P|neum|onia`), so token n-grams would
//! rarely meet. The continuation is tokenized on its own, as the model most often spells it.

use crate::llama::{Model, Token};

/// Longest tail of the output looked up, and the shortest worth a draft.
const MAX_TAIL: usize = 16;
const MIN_TAIL: usize = 2;
/// Bytes of the source tokenized for one draft.
const CONTINUATION_BYTES: usize = 64;
/// Draft length bounds; a sequence starts at [`START_DRAFT`].
const MIN_DRAFT: usize = 1;
const MAX_DRAFT: usize = 16;
const START_DRAFT: usize = 4;

/// The drafting state of one sequence.
#[derive(Debug, Clone)]
pub(crate) struct PromptLookup {
    /// Where drafts are copied from (the document, or the whole prompt).
    source: String,
    /// Where the last match ended: copies tend to run on from there.
    cursor: usize,
    /// Tokens drafted next time.
    length: usize,
}

impl PromptLookup {
    /// Drafts copied from `source`.
    pub fn new(source: String) -> PromptLookup {
        PromptLookup { source, cursor: 0, length: START_DRAFT }
    }

    /// Up to `limit` tokens of the source text that follows the longest tail of `output`
    /// (up to 16 bytes, not reaching back past a `"`, at least 2) found in it: the
    /// occurrence after the last match first, else the earliest. Empty when none occurs.
    pub fn draft(&mut self, model: &Model, output: &[u8], limit: usize) -> Vec<Token> {
        let length = self.length.min(limit);
        if length == 0 {
            return Vec::new();
        }
        // A byte match may end inside a character of the source: nothing to draft there.
        let Some(end) = self.find(output).filter(|&end| self.source.is_char_boundary(end)) else {
            return Vec::new();
        };
        self.cursor = end;
        let mut stop = (end + CONTINUATION_BYTES).min(self.source.len());
        while !self.source.is_char_boundary(stop) {
            stop -= 1;
        }
        let mut tokens = model.tokenize(&self.source[end..stop], false, false).unwrap_or_default();
        // The last token may be a word cut short by the byte window.
        if stop < self.source.len() {
            tokens.pop();
        }
        tokens.truncate(length);
        tokens
    }

    /// The source offset just past the longest tail of `output` found in it.
    fn find(&self, output: &[u8]) -> Option<usize> {
        let start = output.len().saturating_sub(MAX_TAIL);
        let from = output[start..].iter().rposition(|&b| b == b'"').map_or(start, |q| start + q + 1);
        let source = self.source.as_bytes();
        let tail = &output[from..];
        (MIN_TAIL..=tail.len()).rev().find_map(|n| {
            let needle = &tail[tail.len() - n..];
            let after =
                |at: usize| source[at..].windows(n).position(|window| window == needle).map(|p| at + p + n);
            after(self.cursor.min(source.len())).or_else(|| after(0)).filter(|&end| end < source.len())
        })
    }

    /// Adapts the draft length to the last verification: longer while drafts are taken
    /// whole, shorter when they are refused.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        if drafted == 0 {
            return;
        }
        self.length = if accepted == drafted {
            (self.length * 2).min(MAX_DRAFT)
        } else {
            (accepted + 1).clamp(MIN_DRAFT, MAX_DRAFT)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_tail_inside_the_string_is_found_after_the_last_match() {
        let mut lookup = PromptLookup::new("Dx: pneumonia. Meds: ceftriaxone 1 g; ceftriaxone 2 g".into());
        // The tail stops at the quote: `{"dx":"pneu` looks up `pneu`.
        let end = lookup.find(br#"{"dx":"pneu"#).unwrap();
        assert_eq!(&lookup.source[end..end + 5], "monia");
        // The earliest occurrence, then the one after the cursor.
        let first = lookup.find(b"ceftri").unwrap();
        assert_eq!(&lookup.source[first..first + 7], "axone 1");
        lookup.cursor = first;
        let second = lookup.find(b"ceftri").unwrap();
        assert_eq!(&lookup.source[second..second + 7], "axone 2");
        // A shorter tail when the whole is not there; nothing below two bytes or at the end.
        assert_eq!(&lookup.source[lookup.find(b"xyz Meds").unwrap()..][..2], ": ");
        assert_eq!(lookup.find(br#""p"#), None);
        let short = PromptLookup::new("abc".into());
        assert_eq!(short.find(b"zab"), Some(2));
        assert_eq!(short.find(b"bc"), None);
    }

    #[test]
    fn draft_length_grows_while_accepted_and_shrinks_when_refused() {
        let mut lookup = PromptLookup::new(String::new());
        assert_eq!(lookup.length, START_DRAFT);
        lookup.record(START_DRAFT, START_DRAFT);
        assert_eq!(lookup.length, 2 * START_DRAFT);
        lookup.record(8, 8);
        lookup.record(16, 16);
        assert_eq!(lookup.length, MAX_DRAFT);
        lookup.record(MAX_DRAFT, 2);
        assert_eq!(lookup.length, 3);
        lookup.record(3, 0);
        assert_eq!(lookup.length, MIN_DRAFT);
        lookup.record(0, 0);
        assert_eq!(lookup.length, MIN_DRAFT);
    }
}
