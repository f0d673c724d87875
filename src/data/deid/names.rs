//! Names: from context (titles, cues, credentials, sign-offs, "Surname, Given"), from the
//! dictionaries (grown over neighbouring name-like words), from pairs of capitalised words
//! that no vocabulary knows, from cues in lower-case notes ("pt john smith"), and from
//! the record itself (a patient field). A name found once is then found everywhere in the
//! document, in any case and across line breaks, each word alone as well.

use std::collections::HashSet;

use regex::Regex;

use super::patterns::build_name_patterns;
use super::words::{NAME_PARTICLES, Words, base_form};
use crate::data::phi::{PhiCategory, PhiSpan};

pub(crate) struct NameFinder {
    /// Name patterns whose group 1 is a run of name words; stopwords are trimmed from it.
    context: Vec<(Regex, bool)>,
    /// Cues followed by lower-case words, for notes typed without capitals.
    lower_case_cue: Regex,
    /// Initials after "by", "per", "initials" ("Gross by MTK", "initials A.B.").
    initials: Regex,
    /// "E. Zielińska", "J. R. Tolliver": initials and a capitalised word.
    initial_and_surname: Regex,
    /// Initials that sign a line ("— ksh", "[lmr]").
    signature_initials: Regex,
    /// "THUNDERCHILD, ROSE M": a surname and a given name in capitals.
    capitals_surname_given: Regex,
}

/// Ranges already known not to hold names (eponyms, drug names).
pub(crate) struct Guarded(pub(crate) Vec<(usize, usize)>);

impl Guarded {
    pub(crate) fn covers(&self, start: usize, end: usize) -> bool {
        self.0.iter().any(|&(s, e)| start < e && s < end)
    }
}

impl NameFinder {
    pub(crate) fn new() -> NameFinder {
        let lower_case_cue = Regex::new(
            r"(?i:(?-u:\b)(?:pt|patient|name|dr|mr|mrs|ms|miss|seen\s+by|signed\s+by|spoke\s+with|(?:my\s+|his\s+|her\s+)?(wife|husband|son|daughter|mother|father|sister|brother|grandson|granddaughter|boyfriend|girlfriend|partner|niece|nephew)|thanks,?|thank\s+you,?|regards,?|sincerely,?)\.?:?[ \t]*\n?[ \t]*)([a-z][a-z'-]+(?:[ \t]+[a-z][a-z'-]+){0,2})",
        )
        .expect("lower-case cue pattern compiles");
        let upper = super::patterns::UPPER;
        let letter = super::patterns::LETTER;
        let initials = Regex::new(
            r"(?-u:\b)(?:by|per|initials|entered\s+by|verified\s+by|cc|cc:|transcriptionist:?)[ \t]*:?[ \t]+((?:[A-Z]\.){2,3}|[A-Z]{2,3})(?-u:\b)",
        )
        .expect("initials pattern compiles");
        let initial_and_surname =
            Regex::new(&format!(r"(?-u:\b)((?:[A-Z]\.[ ]?){{1,2}}{upper}[{letter}'’-]+)"))
                .expect("initial pattern compiles");
        let signature_initials = Regex::new(r"(?m)(?:^|[ \t])(?:[-—–]|\[)[ \t]*([a-z]{2,3})\]?[ \t]*\]?$")
            .expect("signature pattern compiles");
        let capitals_surname_given = Regex::new(&format!(
            r"(?-u:\b)({upper}{upper}+(?:[-'’]{upper}+)?),[ \t]+({upper}{upper}+)(?:[ \t]+{upper}\.?)?(?-u:\b)"
        ))
        .expect("capitals name pattern compiles");
        NameFinder {
            capitals_surname_given,
            context: build_name_patterns(),
            lower_case_cue,
            initials,
            initial_and_surname,
            signature_initials,
        }
    }

    /// Every name span in `text`; `known` are names the record itself gives.
    pub(crate) fn find(
        &self,
        text: &str,
        words: &Words,
        guarded: &Guarded,
        known: &[String],
    ) -> Vec<PhiSpan> {
        let mut spans = Vec::new();
        self.names_after_cues(text, words, guarded, &mut spans);
        self.names_in_lower_case(text, words, &mut spans);
        lower_case_full_names(text, words, guarded, &mut spans);
        name_lists(text, words, guarded, &mut spans);
        self.initials_and_surnames(text, words, guarded, &mut spans);
        self.surnames_first_in_capitals(text, words, guarded, &mut spans);
        from_dictionaries(text, words, guarded, &mut spans);
        propagate(text, words, guarded, known, &mut spans);
        // "de la Cruz", "van der Berg", "St. John": particles before a name belong to it.
        for span in spans.iter_mut() {
            span.start = extend_over_particles(text, span.start, |w| !words.is_plain_word(w));
        }
        spans
    }

    fn names_after_cues(&self, text: &str, words: &Words, guarded: &Guarded, spans: &mut Vec<PhiSpan>) {
        for (regex, weak) in &self.context {
            for captures in regex.captures_iter(text) {
                // "his sister Mary Joseph nodule" is an eponym after a cue.
                if let Some(m) = captures.get(1)
                    && let Some((start, end)) = trim_name(text, m.start(), m.end(), words, *weak)
                    && !guarded.covers(start, end)
                {
                    spans.push(PhiSpan { start, end, category: PhiCategory::Name });
                }
            }
        }
    }

    /// "pt john smith", "dr jones": after a cue, lower-case words that are dictionary names
    /// and not ordinary words.
    fn names_in_lower_case(&self, text: &str, words: &Words, spans: &mut Vec<PhiSpan>) {
        for captures in self.lower_case_cue.captures_iter(text) {
            let Some(m) = captures.get(2) else { continue };
            // After a relative ("my son angel") a dictionary name counts even when it is
            // also a word; after other cues it must not be one.
            let relative = captures.get(1).is_some();
            let mut at = m.start();
            let mut after_name = false;
            for word in m.as_str().split([' ', '\t']) {
                let start = at;
                at += word.len() + 1;
                if word.is_empty() {
                    continue;
                }
                // "pt john smith": after a name, a surname counts even when it is a word too.
                let surname_after_name =
                    after_name && words.is_surname(word) && !words.is_function_word(word);
                let is_name = word.chars().all(|c| c.is_lowercase() || c == '\'' || c == '-')
                    && words.is_dictionary_name(word)
                    && !words.is_plain_word(word)
                    && (relative
                        || surname_after_name
                        || !words.is_known_word(word)
                        || words.is_unambiguous_name(word));
                if !is_name {
                    break;
                }
                after_name = true;
                spans.push(PhiSpan { start, end: start + word.len(), category: PhiCategory::Name });
            }
        }
    }
}

impl NameFinder {
    /// "THUNDERCHILD, ROSE M" in a line of capitals, where no vocabulary helps the case:
    /// a given name of the dictionaries after a comma, and before it a word that is a
    /// dictionary name or no known word at all.
    fn surnames_first_in_capitals(
        &self,
        text: &str,
        words: &Words,
        guarded: &Guarded,
        spans: &mut Vec<PhiSpan>,
    ) {
        for captures in self.capitals_surname_given.captures_iter(text) {
            let (Some(whole), Some(surname), Some(given)) =
                (captures.get(0), captures.get(1), captures.get(2))
            else {
                continue;
            };
            let surname_like = |w: &str| {
                !words.is_plain_word(w)
                    && !words.is_medical_word(w)
                    && (words.is_dictionary_name(w) || !words.is_known_word(w))
            };
            let surname_ok = surname_like(surname.as_str())
                || surname.as_str().split(['-', '\'', '’']).all(|part| part.len() > 1 && surname_like(part));
            let given_ok = words.is_given_name(given.as_str())
                && !words.is_plain_word(given.as_str())
                && !words.is_medical_word(given.as_str());
            if surname_ok && given_ok && !guarded.covers(whole.start(), whole.end()) {
                spans.push(PhiSpan { start: whole.start(), end: whole.end(), category: PhiCategory::Name });
            }
        }
    }

    /// Initials in a name's place, and an initial before a word no vocabulary knows.
    fn initials_and_surnames(&self, text: &str, words: &Words, guarded: &Guarded, spans: &mut Vec<PhiSpan>) {
        for captures in self.initials.captures_iter(text) {
            let Some(m) = captures.get(1) else { continue };
            let letters: String = m.as_str().chars().filter(char::is_ascii_alphabetic).collect();
            if m.as_str().contains('.') || !words.is_known_word(&letters) {
                spans.push(PhiSpan { start: m.start(), end: m.end(), category: PhiCategory::Name });
            }
        }
        for captures in self.initial_and_surname.captures_iter(text) {
            let Some(m) = captures.get(1) else { continue };
            let surname = m.as_str().rsplit(['.', ' ']).next().unwrap_or("");
            let name_like = words.is_dictionary_name(surname) || !words.is_known_word(surname);
            if surname.chars().count() >= 2
                && name_like
                && !words.is_medical_word(surname)
                && !guarded.covers(m.start(), m.end())
            {
                spans.push(PhiSpan { start: m.start(), end: m.end(), category: PhiCategory::Name });
            }
        }
        for captures in self.signature_initials.captures_iter(text) {
            let Some(m) = captures.get(1) else { continue };
            if !words.is_known_word(m.as_str()) {
                spans.push(PhiSpan { start: m.start(), end: m.end(), category: PhiCategory::Name });
            }
        }
    }
}

/// Dictionary names grown over neighbouring name-like words on the same line, and pairs of
/// capitalised words no vocabulary knows ("Zorbly Quaxton").
fn from_dictionaries(text: &str, words: &Words, guarded: &Guarded, spans: &mut Vec<PhiSpan>) {
    let found = capitalised_words(text);
    let mut i = 0;
    while i < found.len() {
        let (start, end) = found[i];
        let word = &text[start..end];
        // "SEM", "MAR", "ESI" in a mixed-case line are abbreviations, not names.
        let abbreviation = word.chars().count() <= 4
            && word.chars().all(|c| !c.is_lowercase())
            && !line_is_all_caps(text, start);
        let known = words.is_dictionary_name(word) && !abbreviation;
        let unknown = is_unknown_name_like(text, found[i], words);
        if (known || unknown) && !guarded.covers(start, end) {
            let mut first = i;
            while first > 0 && joins_name(text, found[first - 1], found[first], words) {
                first -= 1;
            }
            let mut last = i;
            while last + 1 < found.len() && joins_name(text, found[last], found[last + 1], words) {
                last += 1;
            }
            let run = &found[first..=last];
            let unambiguous = run.iter().any(|&(s, e)| words.is_unambiguous_name(&text[s..e]));
            // Neighbouring words make a name when each is a dictionary name or a word no
            // vocabulary knows ("Hope Adeyemi", not "Case Management"), a lone letter only
            // as an initial ("J. Smith", not "Small L"); a line of capitals needs more.
            let name_like_run = run.len() > 1
                && !line_is_all_caps(text, start)
                && run.iter().all(|&(s, e)| {
                    let w = &text[s..e];
                    let single = w.chars().count() == 1;
                    !words.is_plain_word(w)
                        && (words.is_dictionary_name(w) || !words.is_known_word(w))
                        && (!single || text[e..].starts_with('.'))
                })
                && run.iter().any(|&(s, e)| text[s..e].chars().count() > 2)
                && run.iter().any(|&(s, e)| words.is_dictionary_name(&text[s..e]));
            // Two capitalised words that no vocabulary knows are a name (or a place; either
            // way an identifier), at the start of a sentence too: capitals there make no
            // unknown word known.
            let unknown_pair = run.len() > 1
                && run.iter().filter(|&&w| is_unknown_name_like(text, w, words)).count() == run.len();
            if (unambiguous || name_like_run || unknown_pair)
                && !guarded.covers(run[0].0, run[run.len() - 1].1)
            {
                spans.push(PhiSpan {
                    start: run[0].0,
                    end: run[run.len() - 1].1,
                    category: PhiCategory::Name,
                });
            }
            i = last + 1;
            continue;
        }
        i += 1;
    }
}

/// "mary o'connell" in a note typed without capitals and without a cue: a given name
/// followed by a surname, neither of them an ordinary or clinical word.
fn lower_case_full_names(text: &str, words: &Words, guarded: &Guarded, spans: &mut Vec<PhiSpan>) {
    let found = all_words(text);
    let lower = |(s, e): (usize, usize)| text[s..e].chars().all(|c| !c.is_uppercase());
    for pair in found.windows(2) {
        let (given, surname) = (pair[0], pair[1]);
        let gap = &text[given.1..surname.0];
        if lower(given)
            && lower(surname)
            && (gap == " " || gap == "\t")
            && is_lower_case_name(&text[given.0..given.1], words, Words::is_given_name)
            && is_lower_case_name(&text[surname.0..surname.1], words, Words::is_surname)
            && (words.is_unambiguous_name(&text[given.0..given.1])
                || words.is_unambiguous_name(&text[surname.0..surname.1]))
            && !guarded.covers(given.0, surname.1)
        {
            spans.push(PhiSpan { start: given.0, end: surname.1, category: PhiCategory::Name });
        }
    }
}

/// "they had 6: romi, erik, amy and nathaniel": in a list of three or more single words
/// of which most are dictionary names and none is a clinical word, every word not an
/// ordinary one is a name.
fn name_lists(text: &str, words: &Words, guarded: &Guarded, spans: &mut Vec<PhiSpan>) {
    let found: Vec<(usize, usize)> =
        all_words(text).into_iter().filter(|&(s, e)| !matches!(&text[s..e], "and" | "or")).collect();
    let separator = |gap: &str| matches!(gap, ", " | " and " | ", and " | " & " | ", & " | " or " | ", or ");
    let mut i = 0;
    while i < found.len() {
        let mut last = i;
        while last + 1 < found.len() && separator(&text[found[last].1..found[last + 1].0]) {
            last += 1;
        }
        let items = &found[i..=last];
        i = last + 1;
        if items.len() < 3 {
            continue;
        }
        let item = |&(s, e): &(usize, usize)| &text[s..e];
        let names = items
            .iter()
            .filter(|w| words.is_dictionary_name(item(w)) && !words.is_common_word(item(w)))
            .count();
        let clinical =
            items.iter().any(|w| words.is_medical_word(item(w)) && !words.is_dictionary_name(item(w)));
        if clinical || names * 2 <= items.len() || names < 2 {
            continue;
        }
        for &(s, e) in items {
            let word = &text[s..e];
            let ordinary = words.is_known_word(word) && !words.is_dictionary_name(word);
            if !ordinary && !guarded.covers(s, e) {
                spans.push(PhiSpan { start: s, end: e, category: PhiCategory::Name });
            }
        }
    }
}

/// A dictionary name of the given kind that is no everyday or function word (a part of
/// a clinical phrase, "mary" of "Sister Mary Joseph nodule", still counts).
fn is_lower_case_name(word: &str, words: &Words, of_kind: fn(&Words, &str) -> bool) -> bool {
    of_kind(words, word) && !words.is_common_word(word) && !words.is_function_word(word)
}

/// Whether the line around `at` has no lower-case letter.
fn line_is_all_caps(text: &str, at: usize) -> bool {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    !text[start..end].chars().any(char::is_lowercase)
}

/// A capitalised word (not all capitals) of three letters or more that no vocabulary knows.
fn is_unknown_name_like(text: &str, (start, end): (usize, usize), words: &Words) -> bool {
    let word = &text[start..end];
    let letters = word.chars().filter(|c| c.is_alphabetic()).count();
    let all_caps = word.chars().filter(|c| c.is_alphabetic()).all(char::is_uppercase);
    letters >= 3 && !all_caps && !words.is_known_word(word) && !words.is_dictionary_name(word)
}

/// A name found once is a name everywhere: every word of it (three letters or more, not a
/// plain word), in any case, and the names the record gives. A word that is also an
/// ordinary word counts only where it is capitalised.
fn propagate(text: &str, words: &Words, guarded: &Guarded, known: &[String], spans: &mut Vec<PhiSpan>) {
    let mut name_words: HashSet<String> = HashSet::new();
    // Words of the names the record itself gives: those are sure, so they are found in
    // lower case too ("rose" for a patient named Rose), unless they are grammar words.
    let mut record_words: HashSet<String> = HashSet::new();
    let name_word = |word: &str| {
        let letters = word.chars().filter(|c| c.is_alphabetic()).count();
        let particle = NAME_PARTICLES.contains(&word.to_lowercase().as_str());
        // An ordinary word found inside a name ("Sending" of "Sending RN") is not spread;
        // a dictionary name that is also a word ("Faith") is.
        let ordinary = words.is_known_word(word) && !words.is_dictionary_name(word);
        letters > 2 && !particle && !ordinary
    };
    let found_names: Vec<&str> =
        spans.iter().filter(|s| s.category == PhiCategory::Name).map(|s| &text[s.start..s.end]).collect();
    for name in &found_names {
        for (s, e) in all_words(name) {
            if name_word(&name[s..e]) {
                name_words.insert(base_form(&name[s..e]));
            }
        }
    }
    for name in known {
        for (s, e) in all_words(name) {
            let word = &name[s..e];
            let letters = word.chars().filter(|c| c.is_alphabetic()).count();
            if letters > 2 && !NAME_PARTICLES.contains(&word.to_lowercase().as_str()) {
                record_words.insert(base_form(word));
            }
        }
    }
    let user_names = user_names(&found_names, known);
    spans.extend(user_name_spans(text, &user_names));
    if name_words.is_empty() && record_words.is_empty() {
        return;
    }
    for (start, end) in all_words(text) {
        let word = &text[start..end];
        let base = base_form(word);
        if guarded.covers(start, end) {
            continue;
        }
        let capitalised = word.chars().next().is_some_and(char::is_uppercase);
        let spread = name_words.contains(&base) && (capitalised || !words.is_known_word(word))
            || record_words.contains(&base) && (capitalised || !words.is_function_word(word));
        if spread {
            spans.push(PhiSpan { start, end, category: PhiCategory::Name });
        }
    }
}

/// Log-in and user names a person's name makes ("jsmith", "smithj", "john.smith",
/// "j_smith"), lower case, from names of a given name (or initial) and a surname. Names the
/// record gives make the surname-first forms too; names found in the text only the forms
/// that start with the given name, which no ordinary word takes.
fn user_names(found: &[&str], known: &[String]) -> HashSet<String> {
    let mut forms = HashSet::new();
    let parts = |name: &str| -> Vec<String> {
        all_words(name)
            .into_iter()
            .map(|(s, e)| name[s..e].to_lowercase())
            .filter(|w| !NAME_PARTICLES.contains(&w.as_str()))
            .collect()
    };
    let mut add = |name: &str, from_record: bool| {
        let words = parts(name);
        if words.len() < 2 {
            return;
        }
        // "Smith, John" is surname first.
        let (given, surname) =
            if name.contains(',') { (&words[1], &words[0]) } else { (&words[0], &words[words.len() - 1]) };
        let Some(initial) = given.chars().next() else { return };
        if surname.chars().count() < 3 {
            return;
        }
        forms.insert(format!("{initial}{surname}"));
        for separator in [".", "_", "-", ""] {
            if given.chars().count() > 1 {
                forms.insert(format!("{given}{separator}{surname}"));
            }
            forms.insert(format!("{initial}{separator}{surname}"));
        }
        if from_record {
            forms.insert(format!("{surname}{initial}"));
            forms.insert(format!("{surname}.{initial}"));
            forms.insert(format!("{surname}_{initial}"));
            if given.chars().count() > 1 {
                forms.insert(format!("{surname}.{given}"));
                forms.insert(format!("{surname}{given}"));
            }
        }
    };
    for name in found {
        add(name, false);
    }
    for name in known {
        add(name, true);
    }
    // Too short a form would take ordinary tokens.
    forms.retain(|f| f.chars().count() >= 4);
    forms
}

/// Tokens of `text` (letters, digits, `.`, `_`, `-`) that are one of `user_names`, maybe
/// with digits after it ("jsmith2", "SMITHJ01").
fn user_name_spans(text: &str, user_names: &HashSet<String>) -> Vec<PhiSpan> {
    if user_names.is_empty() {
        return Vec::new();
    }
    let mut spans = Vec::new();
    let is_token = |c: char| c.is_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut at = 0;
    for piece in text.split(|c: char| !is_token(c)) {
        let start = at;
        at += piece.len();
        // The separator that ended the piece.
        at += text[at..].chars().next().map_or(0, char::len_utf8);
        let token = piece.trim_matches(['.', '-', '_']);
        if token.is_empty() {
            continue;
        }
        let lead = piece.len() - piece.trim_start_matches(['.', '-', '_']).len();
        let stem = token.trim_end_matches(|c: char| c.is_ascii_digit()).to_lowercase();
        if user_names.contains(&stem) {
            spans.push(PhiSpan {
                start: start + lead,
                end: start + lead + token.len(),
                category: PhiCategory::Name,
            });
        }
    }
    spans
}

/// Whether `b` continues the name that `a` is part of: same line, one space or a
/// hyphen apart, and `b` is a name-like word (or `a` and `b` are "Surname, Given").
fn joins_name(text: &str, a: (usize, usize), b: (usize, usize), words: &Words) -> bool {
    let gap = &text[a.1..b.0];
    // "Garcia, Maria", "Garcia-Lopez, Maria", "Zorblatt, Maria": a known name (or one of
    // hyphenated known names, or a word no vocabulary knows before a given name) then a
    // comma joins the next word too.
    let surname_first = gap == ", " && {
        let (wa, wb) = (&text[a.0..a.1], &text[b.0..b.1]);
        words.is_dictionary_name(wa)
            || wa.contains('-') && wa.split('-').any(|part| words.is_dictionary_name(part))
            || !words.is_known_word(wa) && words.is_given_name(wb) && !words.is_common_word(wb)
    };
    if !(gap == " " || gap == "-" || gap == ". " && a.1 - a.0 == 1 || surname_first || is_particle_gap(gap)) {
        return false;
    }
    let (wa, wb) = (&text[a.0..a.1], &text[b.0..b.1]);
    !words.is_plain_word(wa) && !words.is_plain_word(wb) && !is_all_caps_header_word(wb, wa)
}

/// Trims plain words from both ends of a name run; `None` when nothing name-like is left.
fn trim_name(text: &str, start: usize, end: usize, words: &Words, weak: bool) -> Option<(usize, usize)> {
    // An initial ("A." in "A. Garcia") is part of the name, not the article "a".
    let plain = |s: usize, e: usize| {
        let word = &text[start + s..start + e];
        let initial = e - s == 1 && text[start + e..].starts_with('.');
        let ordinary = words.is_plain_word(word)
            || (words.is_medical_word(word) || weak && words.is_known_word(word))
                && !words.is_dictionary_name(word);
        !initial && ordinary
    };
    let mut keep: Vec<(usize, usize)> =
        capitalised_words(&text[start..end]).into_iter().skip_while(|&(s, e)| plain(s, e)).collect();
    while keep.last().is_some_and(|&(s, e)| plain(s, e)) {
        keep.pop();
    }
    let (first, last) = (keep.first()?, keep.last()?);
    Some((start + first.0, start + last.1))
}

/// A gap of spaces and name particles between two capitalised words ("Van der", " de los ").
fn is_particle_gap(gap: &str) -> bool {
    let mut particles = gap.split(' ').filter(|w| !w.is_empty()).peekable();
    gap.starts_with(' ')
        && gap.ends_with(' ')
        && !gap.contains("  ")
        && particles.peek().is_some()
        && particles.all(|w| NAME_PARTICLES.contains(&w.to_lowercase().as_str()))
        && gap.trim().len() < 12
}

/// Moves `start` left over name particles ("de la ") and, when there were any, over the
/// capitalised word before them if `is_name_word` accepts it.
fn extend_over_particles(text: &str, start: usize, is_name_word: impl Fn(&str) -> bool) -> usize {
    let mut at = start;
    let mut moved = false;
    loop {
        let before = &text[..at];
        let Some(rest) = before.strip_suffix(' ') else { break };
        if let Some(saint) = rest.strip_suffix("St.")
            && (saint.is_empty() || saint.ends_with(|c: char| !c.is_alphanumeric()))
        {
            at = saint.len();
            moved = true;
            continue;
        }
        let word_start = rest
            .rfind(|c: char| !c.is_alphabetic())
            .map_or(0, |i| i + rest[i..].chars().next().map_or(1, char::len_utf8));
        let word = &rest[word_start..];
        if NAME_PARTICLES.contains(&word.to_lowercase().as_str()) && !word.is_empty() {
            at = word_start;
            moved = true;
        } else {
            if moved && word.chars().next().is_some_and(char::is_uppercase) && is_name_word(word) {
                at = word_start;
            }
            break;
        }
    }
    if moved { at } else { start }
}

/// An all-caps word after a non-all-caps one is a header ("Garcia HPI"), not a name part.
fn is_all_caps_header_word(word: &str, previous: &str) -> bool {
    let caps = |w: &str| w.len() > 1 && w.chars().all(|c| !c.is_lowercase());
    caps(word) && !caps(previous)
}

/// Byte ranges of words that start with an upper-case letter (letters, apostrophes and
/// inner hyphens; a single capital followed by "." is an initial).
pub(crate) fn capitalised_words(text: &str) -> Vec<(usize, usize)> {
    all_words(text)
        .into_iter()
        .filter(|&(s, _)| text[s..].chars().next().is_some_and(char::is_uppercase))
        .collect()
}

/// Byte ranges of all words (letters, apostrophes and inner hyphens).
fn all_words(text: &str) -> Vec<(usize, usize)> {
    let mut words = Vec::new();
    let mut iter = text.char_indices().peekable();
    while let Some((start, c)) = iter.next() {
        if !c.is_alphabetic() {
            continue;
        }
        let mut end = start + c.len_utf8();
        while let Some(&(i, n)) = iter.peek() {
            let inner = (n == '\'' || n == '’' || n == '-')
                && text[i + n.len_utf8()..].chars().next().is_some_and(char::is_alphabetic);
            if n.is_alphabetic() || inner {
                end = i + n.len_utf8();
                iter.next();
            } else {
                break;
            }
        }
        words.push((start, end));
    }
    words
}
