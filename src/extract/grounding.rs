//! Grounding: where in the source each extracted string came from. Exact match first,
//! then case- and whitespace-insensitive, then fuzzy above a threshold. Offsets count
//! Unicode scalar values (Rust `char`s), so `text == source.chars()[start..end]`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a value was found in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// The value occurs verbatim.
    Exact,
    /// It occurs up to letter case and runs of whitespace.
    Normalized,
    /// A passage is similar enough (edit distance) to the value.
    Fuzzy,
}

/// One grounded value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundingSpan {
    /// JSON pointer of the value in `data`, e.g. `/medications/0/name`.
    pub path: String,
    /// First character of the passage in the source (Unicode scalar values).
    pub start: usize,
    /// One past its last character.
    pub end: usize,
    /// The passage itself: the source's characters `start..end`.
    pub text: String,
    /// How it matched.
    #[serde(rename = "match")]
    pub kind: MatchKind,
}

/// The source text prepared once for many look-ups.
pub struct SourceIndex<'s> {
    source: &'s str,
    /// Byte offset of each char, plus the end.
    char_starts: Vec<usize>,
    /// The normalised text (lower case, whitespace runs as one space), as chars...
    normalized: Vec<char>,
    /// ...and, for each, the index of the source char it came from.
    origin: Vec<usize>,
}

impl<'s> SourceIndex<'s> {
    /// Indexes `source`.
    pub fn new(source: &'s str) -> SourceIndex<'s> {
        let mut char_starts: Vec<usize> = source.char_indices().map(|(b, _)| b).collect();
        char_starts.push(source.len());
        let (normalized, origin) = normalize(source.chars());
        SourceIndex { source, char_starts, normalized, origin }
    }

    fn char_index_of_byte(&self, byte: usize) -> usize {
        self.char_starts.partition_point(|&b| b < byte)
    }

    fn text(&self, start: usize, end: usize) -> String {
        self.source[self.char_starts[start]..self.char_starts[end]].to_string()
    }

    /// Finds `value` in the source; `None` when not even a fuzzy match reaches `threshold`.
    pub fn find(&self, value: &str, threshold: f32) -> Option<(usize, usize, MatchKind)> {
        if value.trim().is_empty() {
            return None;
        }
        if let Some(byte) = self.source.find(value) {
            let start = self.char_index_of_byte(byte);
            let end = self.char_index_of_byte(byte + value.len());
            return Some((start, end, MatchKind::Exact));
        }
        let (needle, _) = normalize(value.trim().chars());
        if needle.is_empty() {
            return None;
        }
        if let Some(at) = find_chars(&self.normalized, &needle) {
            let (start, end) = self.span_of(at, at + needle.len());
            return Some((start, end, MatchKind::Normalized));
        }
        self.fuzzy(&needle, threshold).map(|(start, end)| (start, end, MatchKind::Fuzzy))
    }

    /// Maps a range of normalised chars back to source chars.
    fn span_of(&self, from: usize, to: usize) -> (usize, usize) {
        let start = self.origin[from];
        let end = self.origin[to - 1] + 1;
        (start, end)
    }

    /// The window of whole words most similar to `needle`, if similar enough.
    fn fuzzy(&self, needle: &[char], threshold: f32) -> Option<(usize, usize)> {
        let words = word_bounds(&self.normalized);
        let needle_words = word_bounds(needle).len().max(1);
        let mut best: Option<(f32, usize, usize)> = None;
        for first in 0..words.len() {
            for n in needle_words.saturating_sub(1).max(1)..=needle_words + 1 {
                let last = first + n - 1;
                if last >= words.len() {
                    break;
                }
                let (from, to) = (words[first].0, words[last].1);
                let window = &self.normalized[from..to];
                // Lengths too far apart cannot reach the threshold.
                let longest = window.len().max(needle.len()) as f32;
                if (window.len() as f32 - needle.len() as f32).abs() / longest > 1.0 - threshold {
                    continue;
                }
                let similarity = 1.0 - levenshtein(window, needle) as f32 / longest;
                if similarity >= threshold && best.is_none_or(|(s, _, _)| similarity > s) {
                    best = Some((similarity, from, to));
                }
            }
        }
        best.map(|(_, from, to)| self.span_of(from, to))
    }
}

/// Grounds every string in `data` except those at `skip` paths (enumerations: categories,
/// not quotations). Returns the spans and the pointers of strings not found.
pub fn ground(
    source: &str,
    data: &Value,
    threshold: f32,
    skip: &dyn Fn(&str) -> bool,
) -> (Vec<GroundingSpan>, Vec<String>) {
    let index = SourceIndex::new(source);
    let mut spans = Vec::new();
    let mut ungrounded = Vec::new();
    let mut visit = |path: &str, value: &str| {
        if skip(path) {
            return;
        }
        match index.find(value, threshold) {
            Some((start, end, kind)) => spans.push(GroundingSpan {
                path: path.to_string(),
                start,
                end,
                text: index.text(start, end),
                kind,
            }),
            None => ungrounded.push(path.to_string()),
        }
    };
    walk_strings(data, &mut String::new(), &mut visit);
    (spans, ungrounded)
}

/// Calls `visit(pointer, text)` for every string value in `value`.
pub fn walk_strings(value: &Value, pointer: &mut String, visit: &mut dyn FnMut(&str, &str)) {
    match value {
        Value::String(text) => visit(pointer, text),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                walk_strings(item, pointer, visit);
                pointer.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk_strings(item, pointer, visit);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// Lower case, whitespace runs as one space; returns the chars and, for each, the index
/// of the input char it came from. Quotes and backslashes count as space: `--extractive`
/// copies passages with them blanked out.
fn normalize(chars: impl Iterator<Item = char>) -> (Vec<char>, Vec<usize>) {
    let mut out = Vec::new();
    let mut origin = Vec::new();
    let mut in_space = false;
    for (i, c) in chars.enumerate() {
        if c.is_whitespace() || c == '"' || c == '\\' {
            if !in_space && !out.is_empty() {
                out.push(' ');
                origin.push(i);
            }
            in_space = true;
            continue;
        }
        in_space = false;
        for lower in c.to_lowercase() {
            out.push(lower);
            origin.push(i);
        }
    }
    if out.last() == Some(&' ') {
        out.pop();
        origin.pop();
    }
    (out, origin)
}

fn find_chars(haystack: &[char], needle: &[char]) -> Option<usize> {
    if needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len()).find(|&i| haystack[i..i + needle.len()] == *needle)
}

/// (start, end) of each run of non-space chars.
fn word_bounds(chars: &[char]) -> Vec<(usize, usize)> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in chars.iter().enumerate() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                words.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push((s, chars.len()));
    }
    words
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chars(s: &str, start: usize, end: usize) -> String {
        s.chars().skip(start).take(end - start).collect()
    }

    #[test]
    fn exact_normalized_and_fuzzy_spans_use_char_offsets() {
        let source = "Pt: 67 yo mâle. Dx: Community-Acquired   Pneumonia.\nMeds: ceftriaxone 1 g IV daily, metforminn 500 mg.";
        let data = json!({"age_text":"67 yo", "sex":"mâle", "dx":"community-acquired pneumonia",
            "meds":[{"name":"ceftriaxone"},{"name":"metformin 500 mg"}], "other":"warfarin"});
        let (spans, ungrounded) = ground(source, &data, 0.85, &|_| false);
        let by_path = |p: &str| spans.iter().find(|s| s.path == p).unwrap().clone();
        for span in &spans {
            assert_eq!(span.text, chars(source, span.start, span.end), "{span:?}");
        }
        assert_eq!(by_path("/sex").kind, MatchKind::Exact);
        assert_eq!(by_path("/sex").start, 10, "offsets count characters, not bytes");
        let dx = by_path("/dx");
        assert_eq!(dx.kind, MatchKind::Normalized);
        assert_eq!(dx.text, "Community-Acquired   Pneumonia");
        let metformin = by_path("/meds/1/name");
        assert_eq!(metformin.kind, MatchKind::Fuzzy);
        assert_eq!(metformin.text, "metforminn 500 mg.");
        assert_eq!(by_path("/meds/0/name").kind, MatchKind::Exact);
        assert_eq!(ungrounded, vec!["/other"]);
    }

    #[test]
    fn skipped_paths_are_neither_grounded_nor_ungrounded() {
        let (spans, ungrounded) =
            ground("male patient", &json!({"sex":"unknown","x":"male"}), 0.9, &|p| p == "/sex");
        assert_eq!(spans.len(), 1);
        assert!(ungrounded.is_empty());
    }

    #[test]
    fn levenshtein_distances() {
        let d =
            |a: &str, b: &str| levenshtein(&a.chars().collect::<Vec<_>>(), &b.chars().collect::<Vec<_>>());
        assert_eq!(d("kitten", "sitting"), 3);
        assert_eq!(d("", "abc"), 3);
        assert_eq!(d("same", "same"), 0);
    }
}
