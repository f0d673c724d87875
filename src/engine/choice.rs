//! Picking a token among those a constraint allows: greedily, or sampled with a small
//! deterministic generator
//! ([`SeededRng`]).

use llguidance::toktrie::SimpleVob;

use crate::data::rng::SeededRng;
use crate::llama::Token;

/// The one token a mask allows, if it allows exactly one.
pub(crate) fn only_token(mask: &SimpleVob) -> Option<Token> {
    if mask.num_set() != 1 {
        return None;
    }
    let mut found = None;
    mask.iter_set_entries(|i| found = Some(Token(i as i32)));
    found
}

/// The most likely allowed token, or one sampled among the allowed at `temperature`.
pub(crate) fn choose(
    logits: &[f32],
    mask: &SimpleVob,
    temperature: f32,
    rng: &mut SeededRng,
) -> Option<Token> {
    let mut best: Option<(usize, f32)> = None;
    let mut allowed: Vec<(usize, f32)> = Vec::new();
    mask.iter_set_entries(|i| {
        if let Some(&logit) = logits.get(i) {
            if best.is_none_or(|(_, b)| logit > b) {
                best = Some((i, logit));
            }
            if temperature > 0.0 {
                allowed.push((i, logit));
            }
        }
    });
    let (best_index, best_logit) = best?;
    if temperature <= 0.0 || allowed.len() == 1 {
        return Some(Token(best_index as i32));
    }
    let weights: Vec<f64> =
        allowed.iter().map(|(_, l)| (((l - best_logit) / temperature) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut target = rng.unit() * total;
    for ((i, _), w) in allowed.iter().zip(&weights) {
        target -= w;
        if target <= 0.0 {
            return Some(Token(*i as i32));
        }
    }
    Some(Token(best_index as i32))
}
