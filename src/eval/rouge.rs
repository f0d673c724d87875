//! ROUGE-1, ROUGE-2 and ROUGE-L F1 as the Python package `rouge-score` computes them
//! (its `RougeScorer` with `rouge1`, `rouge2`, `rougeL`), so figures can be compared with
//! published ones.
//!
//! Tokens: the text in lower case, every run of characters other than `a`–`z` and `0`–`9`
//! made a separator; with stemming, tokens longer than three letters are replaced by
//! their Porter stem ([`porter_stem`]). ROUGE-N counts shared n-grams (clipped counts);
//! ROUGE-L uses the longest common subsequence of the two token lists. Each is an F1 of
//! precision (over the prediction) and recall (over the reference); a corpus score is
//! the mean of the per-pair F1s.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::porter::porter_stem;

/// Tokens of `text` the way `rouge-score` makes them.
pub fn rouge_tokens(text: &str, stem: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| if stem && t.len() > 3 { porter_stem(t) } else { t.to_string() })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Precision, recall and F1 of one comparison.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    /// Matches / prediction size.
    pub precision: f64,
    /// Matches / reference size.
    pub recall: f64,
    /// Harmonic mean.
    pub f1: f64,
}

impl Prf {
    fn new(matches: usize, predicted: usize, reference: usize) -> Prf {
        let precision = matches as f64 / predicted.max(1) as f64;
        let recall = matches as f64 / reference.max(1) as f64;
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        Prf { precision, recall, f1 }
    }
}

/// ROUGE-1, -2 and -L of one prediction against one reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RougeScores {
    /// Unigram overlap.
    pub rouge1: Prf,
    /// Bigram overlap.
    pub rouge2: Prf,
    /// Longest common subsequence.
    pub rouge_l: Prf,
}

/// Scores `prediction` against `reference`.
pub fn rouge(reference: &str, prediction: &str, stem: bool) -> RougeScores {
    let r = rouge_tokens(reference, stem);
    let p = rouge_tokens(prediction, stem);
    RougeScores { rouge1: rouge_n(&r, &p, 1), rouge2: rouge_n(&r, &p, 2), rouge_l: rouge_lcs(&r, &p) }
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    if tokens.len() >= n {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

fn rouge_n(reference: &[String], prediction: &[String], n: usize) -> Prf {
    let r = ngram_counts(reference, n);
    let p = ngram_counts(prediction, n);
    let matches: usize = p.iter().map(|(gram, &c)| c.min(r.get(gram).copied().unwrap_or(0))).sum();
    Prf::new(matches, p.values().sum(), r.values().sum())
}

fn rouge_lcs(reference: &[String], prediction: &[String]) -> Prf {
    if reference.is_empty() || prediction.is_empty() {
        return Prf::default();
    }
    Prf::new(lcs_length(reference, prediction), prediction.len(), reference.len())
}

/// Length of the longest common subsequence (one row of the table at a time).
pub(crate) fn lcs_length<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut previous = vec![0usize; b.len() + 1];
    let mut current = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            current[j + 1] = if x == y { previous[j] + 1 } else { previous[j + 1].max(current[j]) };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Mean F1s over a corpus, with and without stemming.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorpusRouge {
    /// Pairs scored.
    pub pairs: usize,
    /// Mean ROUGE-1 F1, no stemming.
    pub rouge1: f64,
    /// Mean ROUGE-2 F1, no stemming.
    pub rouge2: f64,
    /// Mean ROUGE-L F1, no stemming.
    pub rouge_l: f64,
    /// Mean ROUGE-1 F1 on Porter stems.
    pub rouge1_stemmed: f64,
    /// Mean ROUGE-2 F1 on Porter stems.
    pub rouge2_stemmed: f64,
    /// Mean ROUGE-L F1 on Porter stems.
    pub rouge_l_stemmed: f64,
    /// Per-pair ROUGE-L F1 (stemmed), for intervals.
    #[serde(skip)]
    pub rouge_l_stemmed_each: Vec<f64>,
}

/// Mean ROUGE F1s of `(reference, prediction)` pairs.
pub fn corpus_rouge<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> CorpusRouge {
    let mut out = CorpusRouge::default();
    for (reference, prediction) in pairs {
        let plain = rouge(reference, prediction, false);
        let stemmed = rouge(reference, prediction, true);
        out.pairs += 1;
        out.rouge1 += plain.rouge1.f1;
        out.rouge2 += plain.rouge2.f1;
        out.rouge_l += plain.rouge_l.f1;
        out.rouge1_stemmed += stemmed.rouge1.f1;
        out.rouge2_stemmed += stemmed.rouge2.f1;
        out.rouge_l_stemmed += stemmed.rouge_l.f1;
        out.rouge_l_stemmed_each.push(stemmed.rouge_l.f1);
    }
    let n = out.pairs.max(1) as f64;
    for v in [
        &mut out.rouge1,
        &mut out.rouge2,
        &mut out.rouge_l,
        &mut out.rouge1_stemmed,
        &mut out.rouge2_stemmed,
        &mut out.rouge_l_stemmed,
    ] {
        *v /= n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_drop_punctuation_and_stem_long_words_only() {
        assert_eq!(
            rouge_tokens("The patient's BP: 120/80, stable.", false),
            ["the", "patient", "s", "bp", "120", "80", "stable"]
        );
        assert_eq!(rouge_tokens("Cats running hopefully; was", true), ["cat", "run", "hope", "was"]);
        // Letters outside a–z are separators, as in rouge-score.
        assert_eq!(rouge_tokens("naïve café", false), ["na", "ve", "caf"]);
    }

    #[test]
    fn hand_computed_scores() {
        // ref: the cat sat on the mat (6); pred: the cat lay on the rug (6).
        // unigrams shared: the×2, cat, on → 4 → P = R = F = 4/6.
        // bigrams: ref {the cat, cat sat, sat on, on the, the mat}; pred {the cat, cat lay,
        // lay on, on the, the rug} → 2 shared of 5 → 0.4. LCS: the cat on the → 4/6.
        let s = rouge("the cat sat on the mat", "the cat lay on the rug", false);
        assert!((s.rouge1.f1 - 4.0 / 6.0).abs() < 1e-12);
        assert!((s.rouge2.f1 - 0.4).abs() < 1e-12);
        assert!((s.rouge_l.f1 - 4.0 / 6.0).abs() < 1e-12);
        // Unequal lengths: ref a b c d (4), pred a c (2): LCS 2, P = 1, R = 0.5, F = 2/3.
        let s = rouge("a b c d", "a c", false);
        assert_eq!(s.rouge_l.precision, 1.0);
        assert_eq!(s.rouge_l.recall, 0.5);
        assert!((s.rouge_l.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.rouge2.f1, 0.0);
        // Empty prediction scores zero, not NaN.
        assert_eq!(rouge("a b", "", false).rouge1.f1, 0.0);
        assert_eq!(rouge("a b", "...", true).rouge_l.f1, 0.0);
    }

    #[test]
    fn stemming_matches_inflections() {
        let plain = rouge("patients were treated", "patient was treating", false);
        let stemmed = rouge("patients were treated", "patient was treating", true);
        assert_eq!(plain.rouge1.f1, 0.0);
        assert!((stemmed.rouge1.f1 - 2.0 / 3.0).abs() < 1e-12);
    }
}
