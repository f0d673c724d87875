//! Drafts for speculative copying (prompt-lookup decoding): most strings of an extraction
//! are copied from the report, so the text that followed the output's last bytes in the
//! prompt is a good guess of what comes next. A guess costs a batch position, not a
//! decoding step; verification keeps only what greedy decoding would have chosen.
//!
//! The match is on bytes, not tokens: a value inside a JSON string is tokenized apart
//! from the word it copies (`"Pne|umonia` against ` P|neum|onia`), so token n-grams would
//! rarely meet. Where the match ends on a token boundary of the source, the draft is the
//! source's own next tokens (inside a copied phrase the model spells words as the prompt
//! did); where it ends inside a source token, the rest of the text is tokenized on its
//! own, as the model most often spells it.

use crate::llama::{Model, Token};

/// Longest tail of the output looked up, and the shortest worth a draft.
const MAX_TAIL: usize = 16;
const MIN_TAIL: usize = 2;
/// Bytes of the source tokenized for one draft that starts inside a source token.
const CONTINUATION_BYTES: usize = 64;
/// Draft length bounds; a sequence starts at [`START_DRAFT`].
const MIN_DRAFT: usize = 1;
const MAX_DRAFT: usize = 16;
const START_DRAFT: usize = 4;

/// The drafting state of one sequence.
#[derive(Debug, Clone)]
pub(crate) struct PromptLookup {
    /// Where drafts are copied from (the document, or the whole prompt), as bytes, with
    /// its tokens and the byte offset where each ends.
    source: Vec<u8>,
    tokens: Vec<Token>,
    token_ends: Vec<usize>,
    /// Where the last match ended: copies tend to run on from there.
    cursor: usize,
    /// Tokens drafted next time.
    length: usize,
}

impl PromptLookup {
    /// Drafts copied from the text of `tokens`.
    pub fn new(model: &Model, tokens: Vec<Token>) -> PromptLookup {
        let pieces = tokens.iter().map(|&token| (token, model.token_piece(token, false)));
        PromptLookup::from_pieces(pieces)
    }

    fn from_pieces(pieces: impl IntoIterator<Item = (Token, Vec<u8>)>) -> PromptLookup {
        let (mut source, mut tokens, mut token_ends) = (Vec::new(), Vec::new(), Vec::new());
        for (token, piece) in pieces {
            source.extend_from_slice(&piece);
            tokens.push(token);
            token_ends.push(source.len());
        }
        PromptLookup { source, tokens, token_ends, cursor: 0, length: START_DRAFT }
    }

    /// Up to `limit` tokens of the source that follow the longest tail of `output` (up to
    /// 16 bytes, not reaching back past a `"`, at least 2) found in it: the occurrence
    /// after the last match first, else the earliest. Empty when none occurs.
    pub fn draft(&mut self, model: &Model, output: &[u8], limit: usize) -> Vec<Token> {
        let length = self.length.min(limit);
        if length == 0 {
            return Vec::new();
        }
        let Some(end) = self.find(output) else { return Vec::new() };
        self.cursor = end;
        if let Ok(boundary) = self.token_ends.binary_search(&end) {
            let next = boundary + 1;
            return self.tokens[next..(next + length).min(self.tokens.len())].to_vec();
        }
        let stop = (end + CONTINUATION_BYTES).min(self.source.len());
        // A byte match may end inside a character: nothing to draft there. The window may
        // cut the last character short: tokenize up to it.
        let text = match std::str::from_utf8(&self.source[end..stop]) {
            Ok(text) => text,
            Err(e) if e.valid_up_to() > 0 && e.error_len().is_none() => {
                std::str::from_utf8(&self.source[end..end + e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Vec::new(),
        };
        let mut tokens = model.tokenize(text, false, false).unwrap_or_default();
        // The last token may be a word cut short by the byte window.
        if end + text.len() < self.source.len() {
            tokens.pop();
        }
        tokens.truncate(length);
        tokens
    }

    /// The source offset just past the longest tail of `output` found in it.
    fn find(&self, output: &[u8]) -> Option<usize> {
        let start = output.len().saturating_sub(MAX_TAIL);
        let from = output[start..].iter().rposition(|&b| b == b'"').map_or(start, |q| start + q + 1);
        let source = self.source.as_slice();
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

    /// A source of one token per byte.
    fn from_text(text: &str) -> PromptLookup {
        PromptLookup::from_pieces(text.bytes().map(|b| (Token(i32::from(b)), vec![b])))
    }

    #[test]
    fn the_longest_tail_inside_the_string_is_found_after_the_last_match() {
        let mut lookup = from_text("Dx: pneumonia. Meds: ceftriaxone 1 g; ceftriaxone 2 g");
        // The tail stops at the quote: `{"dx":"pneu` looks up `pneu`.
        let end = lookup.find(br#"{"dx":"pneu"#).unwrap();
        assert_eq!(&lookup.source[end..end + 5], b"monia");
        // The earliest occurrence, then the one after the cursor.
        let first = lookup.find(b"ceftri").unwrap();
        assert_eq!(&lookup.source[first..first + 7], b"axone 1");
        lookup.cursor = first;
        let second = lookup.find(b"ceftri").unwrap();
        assert_eq!(&lookup.source[second..second + 7], b"axone 2");
        // A shorter tail when the whole is not there; nothing below two bytes or at the end.
        assert_eq!(&lookup.source[lookup.find(b"xyz Meds").unwrap()..][..2], b": ");
        assert_eq!(lookup.find(br#""p"#), None);
        let short = from_text("abc");
        assert_eq!(short.find(b"zab"), Some(2));
        assert_eq!(short.find(b"bc"), None);
    }

    #[test]
    fn on_a_token_boundary_the_draft_is_the_sources_next_tokens() {
        let model = crate::llama::Model::load(
            crate::test_support::tiny_model_path(),
            &crate::llama::ModelParams::default(),
        )
        .unwrap();
        // Tokens 100.. spelling "ceftri|axone| 1| g| IV": the model's vocabulary is not
        // asked, so the draft can only come from the source's own tokens.
        let words: [&[u8]; 5] = [b"ceftri", b"axone", b" 1", b" g", b" IV"];
        let mut lookup = PromptLookup::from_pieces(
            words.iter().enumerate().map(|(i, w)| (Token(100 + i as i32), w.to_vec())),
        );
        assert_eq!(
            lookup.draft(&model, br#"{"m":"ceftriaxone"#, 16),
            vec![Token(102), Token(103), Token(104)]
        );
        assert_eq!(lookup.draft(&model, br#"{"m":"ceftriaxone 1 g"#, 16), vec![Token(104)]);
        // The draft length is bounded by the limit and by what was learnt.
        assert_eq!(lookup.draft(&model, br#"{"m":"ceftri"#, 1), vec![Token(101)]);
        lookup.record(4, 0);
        assert_eq!(lookup.draft(&model, br#"{"m":"ceftri"#, 16), vec![Token(101)]);
    }

    #[test]
    fn draft_length_grows_while_accepted_and_shrinks_when_refused() {
        let mut lookup = from_text("");
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
