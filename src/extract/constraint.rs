//! The token constraint: llguidance over the model's vocabulary. Built once per model
//! (the token trie), then one matcher per document.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{self, SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use super::ExtractError;

/// The first line of an llguidance message: the kind of failure, without the context
/// lines it may quote.
fn first_line(message: impl ToString) -> String {
    message.to_string().lines().next().unwrap_or("").to_string()
}
use crate::llama::{Model, Token};

/// The model's vocabulary as llguidance sees it: the bytes of every token, with control
/// tokens marked special so that no grammar can produce them as text.
struct VocabularyEnv {
    trie: TokTrie,
}

impl TokenizerEnv for VocabularyEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    // Used for literal text inside grammars; greedy longest-match over the vocabulary is
    // a valid (if not canonical) tokenization, which is all the matcher needs.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<toktrie::TokenId> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

/// Compiles grammars for one model and makes matchers from them.
pub struct ConstraintFactory {
    factory: ParserFactory,
    env: TokEnv,
    eos: Token,
}

impl std::fmt::Debug for ConstraintFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintFactory").field("eos", &self.eos).finish_non_exhaustive()
    }
}

impl ConstraintFactory {
    /// Builds the token trie of `model`'s vocabulary (a few tens of milliseconds).
    pub fn new(model: &Model) -> Result<ConstraintFactory, ExtractError> {
        let n_vocab = model.n_vocab();
        let mut words: Vec<Vec<u8>> = Vec::with_capacity(n_vocab);
        for id in 0..n_vocab {
            let token = Token(id as i32);
            if model.is_control(token) {
                let mut word = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                word.extend(model.token_piece(token, true));
                words.push(word);
            } else {
                words.push(model.token_piece(token, false));
            }
        }
        // The end of the answer: end-of-turn where the model has one (chat models), else EOS.
        let eos = model.end_of_turn().or(model.eos()).unwrap_or(Token(0));
        let info = TokRxInfo {
            vocab_size: n_vocab as u32,
            tok_eos: eos.0 as u32,
            tok_bos: model.bos().map(|t| t.0 as u32),
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: model.end_of_turn().map(|t| t.0 as u32),
        };
        let env: TokEnv = Arc::new(VocabularyEnv { trie: TokTrie::from(&info, &words) });
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| ExtractError::Constraint(first_line(e)))?;
        factory.quiet();
        // Verbose errors quote the generated text and grammar lines (which, under
        // --extractive, hold the document): patient data stays out of messages.
        factory.limits_mut().verbose_errors = false;
        Ok(ConstraintFactory { factory, env, eos })
    }

    /// Tokens for text the grammar forces: the model's own tokenization when it spells the
    /// bytes exactly, else the longest vocabulary matches.
    pub fn tokenize_forced(&self, model: &Model, bytes: &[u8]) -> Vec<Token> {
        if let Ok(text) = std::str::from_utf8(bytes)
            && let Ok(tokens) = model.tokenize(text, false, false)
            && tokens.iter().flat_map(|t| model.token_piece(*t, false)).eq(bytes.iter().copied())
        {
            return tokens;
        }
        self.env.tok_trie().greedy_tokenize(bytes).into_iter().map(|t| Token(t as i32)).collect()
    }

    /// The token that ends an answer.
    pub fn eos(&self) -> Token {
        self.eos
    }

    /// A matcher that enforces `schema` (already carrying its `x-guidance` options).
    pub fn json_matcher(&self, schema: &serde_json::Value) -> Result<DocumentConstraint, ExtractError> {
        self.matcher(TopLevelGrammar::from_json_schema(schema.clone()))
    }

    /// A matcher for a Lark grammar.
    pub fn lark_matcher(&self, grammar: &str) -> Result<DocumentConstraint, ExtractError> {
        self.matcher(TopLevelGrammar::from_lark(grammar.to_string()))
    }

    fn matcher(&self, grammar: TopLevelGrammar) -> Result<DocumentConstraint, ExtractError> {
        let parser =
            self.factory.create_parser(grammar).map_err(|e| ExtractError::Constraint(first_line(e)))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(error) = matcher.get_error() {
            return Err(ExtractError::Constraint(first_line(error)));
        }
        Ok(DocumentConstraint { matcher })
    }
}

/// The constraint state of one document being generated.
#[derive(Clone)]
pub struct DocumentConstraint {
    matcher: Matcher,
}

impl DocumentConstraint {
    /// Tokens allowed next.
    pub fn allowed(&mut self) -> Result<SimpleVob, ExtractError> {
        self.matcher.compute_mask().map_err(|e| ExtractError::Constraint(first_line(e)))
    }

    /// Records the chosen token.
    pub fn accept(&mut self, token: Token) -> Result<(), ExtractError> {
        self.matcher.consume_token(token.0 as u32).map_err(|e| ExtractError::Constraint(first_line(e)))
    }

    /// Bytes the grammar forces next, whatever the model would prefer.
    pub fn forced_bytes(&mut self) -> Vec<u8> {
        self.matcher.compute_ff_bytes()
    }

    /// Accepts as many of `tokens` as the grammar allows, in order; returns how many.
    pub fn accept_prefix(&mut self, tokens: &[Token]) -> Result<usize, ExtractError> {
        let ids: Vec<u32> = tokens.iter().map(|t| t.0 as u32).collect();
        self.matcher.try_consume_tokens(&ids).map_err(|e| ExtractError::Constraint(first_line(e)))
    }

    /// Whether the grammar has stopped (completed, or failed).
    pub fn is_stopped(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// The matcher's error, if it failed (its first line only).
    pub fn error(&self) -> Option<String> {
        self.matcher.get_error().map(first_line)
    }

    /// Undoes the last `n` accepted tokens.
    pub fn rollback(&mut self, n: usize) -> Result<(), ExtractError> {
        self.matcher.rollback(n).map_err(|e| ExtractError::Constraint(first_line(e)))
    }
}
