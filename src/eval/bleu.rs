//! Corpus BLEU as the Python package `sacrebleu` computes it with its defaults: the
//! `13a` tokenizer (mteval-v13a's rules), case kept, n-grams up to 4, one reference per
//! hypothesis, the `exp` smoothing (a precision with no match counts as 1/(2^k · total),
//! k counting such orders) and the brevity penalty over the whole corpus. Scores are on
//! sacrebleu's 0–100 scale.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

const MAX_ORDER: usize = 4;

/// Whitespace as Python's `str.split()` sees it (Unicode spaces plus U+001C–U+001F).
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Punctuation the first 13a rule sets apart: `{|}~ [\]^_` and the backquote, space
/// `!"#$%&`, `()*+`, `:;<=>?@` and `/`.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// One left-to-right pass of a two-character rule, as a regular-expression substitution
/// makes it: at each place where `rule` matches, its output replaces both characters and
/// the scan goes on after them.
fn substitute_pairs(chars: &[char], rule: impl Fn(char, char) -> Option<String>) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len()
            && let Some(replacement) = rule(chars[i], chars[i + 1])
        {
            out.extend(replacement.chars());
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The tokens of a line under sacrebleu's `13a` tokenizer.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let padded: Vec<char> = format!(" {line} ").chars().collect();
    let mut chars: Vec<char> = Vec::with_capacity(padded.len() * 2);
    for c in padded {
        if is_13a_symbol(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    // Period and comma split off unless preceded by a digit…
    let chars =
        substitute_pairs(&chars, |a, b| (!digit(a) && matches!(b, '.' | ',')).then(|| format!("{a} {b} ")));
    // …unless followed by one…
    let chars =
        substitute_pairs(&chars, |a, b| (matches!(a, '.' | ',') && !digit(b)).then(|| format!(" {a} {b}")));
    // …and a dash after a digit.
    let chars = substitute_pairs(&chars, |a, b| (digit(a) && b == '-').then(|| format!("{a} - ")));
    let text: String = chars.into_iter().collect();
    text.split(is_python_space).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// Corpus BLEU and its parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bleu {
    /// BLEU, 0–100.
    pub score: f64,
    /// The n-gram precisions, 0–100 (smoothed where no n-gram matched).
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub brevity_penalty: f64,
    /// Hypothesis tokens.
    pub hypothesis_length: usize,
    /// Reference tokens.
    pub reference_length: usize,
}

/// Corpus BLEU of `(reference, hypothesis)` pairs.
pub fn corpus_bleu<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Bleu {
    let mut correct = [0usize; MAX_ORDER];
    let mut total = [0usize; MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (reference, hypothesis) in pairs {
        // sacrebleu strips trailing whitespace before tokenizing.
        let hyp = tokenize_13a(hypothesis.trim_end_matches(is_python_space));
        let refs = tokenize_13a(reference.trim_end_matches(is_python_space));
        sys_len += hyp.len();
        ref_len += refs.len();
        for n in 1..=MAX_ORDER {
            let h = counts(&hyp, n);
            let r = counts(&refs, n);
            correct[n - 1] += h.iter().map(|(g, &c)| c.min(r.get(g).copied().unwrap_or(0))).sum::<usize>();
            total[n - 1] += hyp.len().saturating_sub(n - 1);
        }
    }
    let brevity_penalty = if sys_len >= ref_len {
        1.0
    } else if sys_len > 0 {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        0.0
    };
    let mut precisions = [0.0f64; MAX_ORDER];
    if correct.iter().all(|&c| c == 0) {
        let (hypothesis_length, reference_length) = (sys_len, ref_len);
        return Bleu { score: 0.0, precisions, brevity_penalty, hypothesis_length, reference_length };
    }
    let mut smooth = 1.0f64;
    for n in 0..MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        if correct[n] == 0 {
            smooth *= 2.0;
            precisions[n] = 100.0 / (smooth * total[n] as f64);
        } else {
            precisions[n] = 100.0 * correct[n] as f64 / total[n] as f64;
        }
    }
    // sacrebleu takes log(0) as a huge negative number, which makes the score 0.
    let log_sum: f64 = precisions.iter().map(|&p| if p == 0.0 { -9_999_999_999.0 } else { p.ln() }).sum();
    let score = brevity_penalty * (log_sum / MAX_ORDER as f64).exp();
    Bleu { score, precisions, brevity_penalty, hypothesis_length: sys_len, reference_length: ref_len }
}

fn counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut out = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *out.entry(gram).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_rules() {
        assert_eq!(tokenize_13a("Hello, world."), ["Hello", ",", "world", "."]);
        // Numbers keep their separators; a dash after a digit splits; quotes stay attached.
        assert_eq!(
            tokenize_13a("BP 120/80, 3.5 mg, 1,000 x 5-10 don't"),
            ["BP", "120", "/", "80", ",", "3.5", "mg", ",", "1,000", "x", "5", "-", "10", "don't"]
        );
        assert_eq!(tokenize_13a("a&amp;b (x)"), ["a", "&", "b", "(", "x", ")"]);
        // Two periods: the first split by rule 2, the second by rule 3.
        assert_eq!(tokenize_13a("end.. next"), ["end", ".", ".", "next"]);
    }

    #[test]
    fn perfect_match_is_100_and_hand_computed_case() {
        let b = corpus_bleu([("the cat sat on the mat", "the cat sat on the mat")]);
        assert!((b.score - 100.0).abs() < 1e-9);
        // ref 6 tokens, hyp "the cat sat on the rug" (6): 1-grams 5/6, 2-grams 4/5,
        // 3-grams 3/4, 4-grams 2/3, BP 1.
        let b = corpus_bleu([("the cat sat on the mat", "the cat sat on the rug")]);
        let expected = 100.0 * ((5.0f64 / 6.0) * (4.0 / 5.0) * (3.0 / 4.0) * (2.0 / 3.0)).powf(0.25);
        assert!((b.score - expected).abs() < 1e-9, "{} vs {expected}", b.score);
        // A short hypothesis: 2 tokens against 4, no bigram matches, 3- and 4-grams absent.
        let b = corpus_bleu([("a b c d", "a c")]);
        assert!((b.brevity_penalty - (1.0f64 - 2.0).exp()).abs() < 1e-12);
        assert_eq!(b.score, 0.0);
        assert!((b.precisions[1] - 100.0 / 2.0).abs() < 1e-12);
    }
}
