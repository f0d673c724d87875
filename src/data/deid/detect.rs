//! Finding PHI: patterns for identifiers with a shape (dates, numbers, addresses), context
//! rules for names ("Dr.", "Patient:", "seen by", signature lines, credentials), name and
//! place dictionaries, and guards that keep eponyms, drugs, units and lab values out.
//! A name found once is then found everywhere in the same document.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

use crate::data::lexicon::lexicon;
use crate::data::phi::{PhiCategory, PhiSpan};

/// A regular expression whose capture group `group` (0 for all of it) is PHI of `category`.
struct Pattern {
    regex: Regex,
    group: usize,
    category: PhiCategory,
}

/// Finds PHI in text. Build once (it compiles its patterns) and share.
pub struct PhiDetector {
    patterns: Vec<Pattern>,
    /// Name patterns whose group 1 is a run of name words; stopwords are trimmed from it.
    name_patterns: Vec<Regex>,
    /// Medical terms named after people and drug names, matched case-insensitively; the
    /// dictionary and propagation rules do not fire inside them.
    guards: AhoCorasick,
    given_names: HashSet<String>,
    surnames: HashSet<String>,
    /// Dictionary names that are also ordinary or clinical words ("Hope", "Bell"): they
    /// count only next to another name or after a cue.
    ambiguous_names: HashSet<String>,
    /// Capitalised words that never start or extend a name.
    stopwords: HashSet<String>,
    /// City names of the dictionary, case-sensitive, longest first.
    city_names: AhoCorasick,
    ambiguous_cities: HashSet<String>,
    /// Words of hospital suffixes ("medical", "center"), lower case.
    hospital_suffix_words: HashSet<String>,
}

use super::dates::MONTH_NAMES as MONTHS_FULL;

/// Ordinal words up to the thirty-first, for dates in words ("the third of July").
pub(crate) const ORDINAL_WORDS: [&str; 31] = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
    "twenty-ninth",
    "thirtieth",
    "thirty-first",
];

/// Capitalised words common in notes that are not names, on top of the clinical lexicon.
const COMMON_WORDS: &str = "a about above after again against all also am an and any are as at be because been \
before being below between both but by can could did do does doing down during each few for from further had \
has have having he her here hers him his how i if in into is it its itself just me more most my no nor not now \
of off on once only or other our out over own same she should so some such than that the their them then there \
these they this those through to too under until up very was we were what when where which while who whom why \
will with would you your yes patient pt pts patients mr mrs ms dr doctor nurse denies reports states notes \
today yesterday tomorrow tonight morning evening night history hx plan assessment impression findings exam \
physical review systems general vitals vital signs labs lab results medications meds allergies allergy \
diagnosis diagnoses procedure procedures admission discharge discharged admitted follow up followup return \
home clinic hospital department emergency room unit ward floor icu ed er or pacu bed service team \
left right bilateral normal abnormal negative positive stable unchanged improved worse new old acute chronic \
mild moderate severe no none not unremarkable within limits noted seen given started stopped continue \
continued increase decrease hold resume take taking daily weekly monthly once twice per hour hours day days \
week weeks month months year years old male female man woman boy girl baby infant child son daughter wife \
husband mother father brother sister family social smoking tobacco alcohol drugs married single lives \
works retired chief complaint present illness past medical surgical hpi pmh psh ros hpi cc a p s o \
subjective objective signed electronically dictated transcribed attending resident fellow provider pcp \
primary care referred referring consult consultation note report summary study technique comparison \
indication contrast without with clinical information reason exam examination heart lungs abdomen \
head neck chest back extremities skin neuro psych heent cv resp gi gu msk ext blood pressure pulse \
temperature respiratory rate oxygen saturation weight height bmi pain fever cough nausea vomiting \
diarrhea constipation headache dizziness fatigue weakness shortness breath sob cp chest pain \
edema rash swelling tenderness mass lesion nodule fracture effusion consolidation opacity \
january february march april may june july august september october november december \
monday tuesday wednesday thursday friday saturday sunday mon tue wed thu fri sat sun \
east west north south street avenue road drive lane court new care health medical center \
clinical hospital university general memorial regional community state county city \
final preliminary addendum page date time name age sex dob mrn id number phone fax email \
tylenol advil motrin aspirin insulin physician physicians surgeon provider staff team service attending \
soft nontender tender distended mobile desk office home work sharp little bright green gray grey \
chambers temple cross bath reading independence orange newport bend humble";

/// Words that are also given names or surnames ("Grace", "Stone"): as dictionary names they
/// need context, but after a cue ("Patient: Grace Stone") they are names.
const NAME_LIKE_WORDS: &str = "grace hope faith joy will mark bill art rose dawn summer crystal hunter pat don guy young long brown \
white black bell hill king page rice stone wood cook price case bishop child hand foot gay may june april \
august autumn winter spring sunny star ray max rich frank sterling angel lane bay miles major paris \
china lincoln ford clay hall moss love sage sky river ocean iris ivy daisy lily violet ruby pearl amber \
jade jasper early north south west east";

impl PhiDetector {
    /// Compiles the patterns and loads the dictionaries.
    pub fn new() -> PhiDetector {
        let lexicon = lexicon();
        let lower = |s: &str| s.to_lowercase();

        let mut stopwords: HashSet<String> = COMMON_WORDS.split_whitespace().map(str::to_string).collect();
        // Words of the clinical vocabulary are not names either (a surname "Foley" is, but
        // "Foley catheter" is guarded as a phrase).
        let mut clinical_words: HashSet<String> = HashSet::new();
        let add_words = |text: &str, set: &mut HashSet<String>| {
            for word in text.split(|c: char| !c.is_alphanumeric() && c != '\'') {
                if word.len() > 2 {
                    set.insert(word.to_lowercase());
                }
            }
        };
        for d in &lexicon.diagnoses {
            add_words(d.name, &mut clinical_words);
        }
        for d in &lexicon.drugs {
            add_words(d.name, &mut clinical_words);
            add_words(d.indication, &mut clinical_words);
        }
        for l in &lexicon.labs {
            add_words(l.name, &mut clinical_words);
        }
        for f in &lexicon.imaging {
            add_words(f.finding, &mut clinical_words);
            add_words(f.location, &mut clinical_words);
            add_words(f.region, &mut clinical_words);
        }
        for (header, _) in &lexicon.sections {
            add_words(header, &mut stopwords);
        }

        let given_names: HashSet<String> = lexicon.given_names.iter().map(|g| lower(g.name)).collect();
        let surnames: HashSet<String> = lexicon.surnames.iter().map(|s| lower(s)).collect();
        let eponym_heads: HashSet<String> =
            lexicon.eponyms.iter().filter_map(|e| e.split([' ', '-', '\'', '’']).next()).map(lower).collect();
        let name_like: HashSet<&str> = NAME_LIKE_WORDS.split_whitespace().collect();
        for lab in &lexicon.labs {
            clinical_words.insert(lab.abbrev.to_lowercase());
        }
        let ambiguous_names: HashSet<String> = given_names
            .iter()
            .chain(surnames.iter())
            .filter(|n| {
                stopwords.contains(*n)
                    || clinical_words.contains(*n)
                    || eponym_heads.contains(*n)
                    || name_like.contains(n.as_str())
                    // Two letters ("Li", "Ma", "Oh") are as often an abbreviation.
                    || n.chars().count() <= 2
            })
            .cloned()
            .collect();
        // Clinical words that are not dictionary names also never extend a name.
        stopwords
            .extend(clinical_words.into_iter().filter(|w| !given_names.contains(w) && !surnames.contains(w)));

        let cities: HashSet<String> = lexicon.cities.iter().map(|c| lower(c.name)).collect();
        let ambiguous_cities: HashSet<String> = cities
            .iter()
            .filter(|c| stopwords.contains(*c) || given_names.contains(*c) || surnames.contains(*c))
            .cloned()
            .collect();

        // Literal lists go through Aho-Corasick: one pass over the text for hundreds of
        // terms, where a regex alternation of them would rebuild its automaton constantly.
        let mut guard_terms: Vec<&str> = lexicon.eponyms.clone();
        guard_terms.extend(lexicon.drugs.iter().map(|d| d.name));
        let guards = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&guard_terms)
            .expect("guard terms build an automaton");
        let city_names = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(lexicon.cities.iter().map(|c| c.name))
            .expect("city names build an automaton");

        PhiDetector {
            patterns: build_patterns(),
            name_patterns: build_name_patterns(),
            guards,
            given_names,
            surnames,
            ambiguous_names,
            stopwords,
            city_names,
            ambiguous_cities,
            hospital_suffix_words: lexicon
                .hospital_suffixes
                .iter()
                .flat_map(|w| w.split_whitespace())
                .chain(["Hospital", "Medical", "Center", "Clinic", "Health"])
                .map(str::to_lowercase)
                .collect(),
        }
    }

    /// Every PHI span in `text`, sorted, overlaps merged (the longer span's category wins).
    pub fn detect(&self, text: &str) -> Vec<PhiSpan> {
        let mut spans: Vec<PhiSpan> = Vec::new();
        let mut push = |start: usize, end: usize, category: PhiCategory| {
            let (start, end) = trim_span(text, start, end);
            if start < end {
                spans.push(PhiSpan { start, end, category: refine(text, start, end, category) });
            }
        };
        for pattern in &self.patterns {
            if pattern.group == 0 {
                // Whole matches need no capture search, which is the slow part.
                for m in pattern.regex.find_iter(text) {
                    push(m.start(), m.end(), pattern.category);
                }
            } else {
                for captures in pattern.regex.captures_iter(text) {
                    if let Some(m) = captures.get(pattern.group) {
                        push(m.start(), m.end(), pattern.category);
                    }
                }
            }
        }
        spans.retain(|s| !self.is_false_hit(text, s));

        let guarded: Vec<(usize, usize)> = self
            .guards
            .find_iter(text)
            .filter(|m| at_word_boundaries(text, m.start(), m.end()))
            .map(|m| (m.start(), m.end()))
            .collect();
        let is_guarded = |start: usize, end: usize| guarded.iter().any(|&(s, e)| start < e && s < end);

        // Names from context: titles, cues, credentials, "Surname, Given".
        for regex in &self.name_patterns {
            for captures in regex.captures_iter(text) {
                // "his sister Mary Joseph nodule" is an eponym after a cue.
                if let Some(m) = captures.get(1)
                    && let Some((start, end)) = self.trim_name(text, m.start(), m.end())
                    && !is_guarded(start, end)
                {
                    spans.push(PhiSpan { start, end, category: PhiCategory::Name });
                }
            }
        }

        // Names and cities from the dictionaries.
        let words = capitalised_words(text);
        let mut i = 0;
        while i < words.len() {
            let (start, end) = words[i];
            let word = text[start..end].to_lowercase();
            let known = self.given_names.contains(&word) || self.surnames.contains(&word);
            if known && !is_guarded(start, end) {
                // Grow over neighbouring name-like words on the same line.
                let mut first = i;
                while first > 0 && self.joins_name(text, words[first - 1], words[first]) {
                    first -= 1;
                }
                let mut last = i;
                while last + 1 < words.len() && self.joins_name(text, words[last], words[last + 1]) {
                    last += 1;
                }
                let run = &words[first..=last];
                let unambiguous = run.iter().any(|&(s, e)| {
                    let w = text[s..e].to_lowercase();
                    (self.given_names.contains(&w) || self.surnames.contains(&w))
                        && !self.ambiguous_names.contains(&w)
                });
                let name_like_run = run.len() > 1
                    && run.iter().all(|&(s, e)| !self.is_stopword(&text[s..e]))
                    && run.iter().any(|&(s, e)| text[s..e].chars().count() > 2);
                if unambiguous || name_like_run {
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

        // Cities from the dictionary: anywhere when unambiguous, after "in", "from" … when
        // the name is also a word or a person's name.
        for m in self.city_names.find_iter(text) {
            if !at_word_boundaries(text, m.start(), m.end()) || is_guarded(m.start(), m.end()) {
                continue;
            }
            let cue = preceding_word(text, m.start()).is_some_and(|w| {
                matches!(
                    w.to_lowercase().as_str(),
                    "in" | "from" | "near" | "to" | "of" | "at" | "resident" | "lives"
                )
            });
            if cue || !self.ambiguous_cities.contains(&text[m.start()..m.end()].to_lowercase()) {
                spans.push(PhiSpan { start: m.start(), end: m.end(), category: PhiCategory::City });
            }
        }

        // A name found once is a name everywhere in this document.
        let mut name_words: HashSet<String> = HashSet::new();
        for span in spans.iter().filter(|s| s.category == PhiCategory::Name) {
            for (s, e) in capitalised_words(&text[span.start..span.end]) {
                let word = &text[span.start + s..span.start + e];
                let letters = word.chars().filter(|c| c.is_alphabetic()).count();
                let particle = NAME_PARTICLES.contains(&word.to_lowercase().as_str());
                if letters > 2 && !particle && !self.is_stopword(word) {
                    name_words.insert(word.to_lowercase());
                }
            }
        }
        if !name_words.is_empty() {
            for &(start, end) in &words {
                if name_words.contains(&text[start..end].to_lowercase()) && !is_guarded(start, end) {
                    spans.push(PhiSpan { start, end, category: PhiCategory::Name });
                }
            }
        }
        // "de la Cruz", "van der Berg", "St. John": particles before a name belong to it.
        for span in spans.iter_mut().filter(|s| s.category == PhiCategory::Name) {
            span.start = extend_over_particles(text, span.start, |w| !self.is_stopword(w));
        }
        merge(spans)
    }

    /// Whether `b` continues the name that `a` is part of: same line, one space or a
    /// hyphen apart, and `b` is a name-like word (or `a` and `b` are "Surname, Given").
    fn joins_name(&self, text: &str, a: (usize, usize), b: (usize, usize)) -> bool {
        let gap = &text[a.1..b.0];
        // "Garcia, Maria": a known name then a comma joins the next word too.
        let surname_first = gap == ", " && self.is_dictionary_name(&text[a.0..a.1]);
        if !(gap == " "
            || gap == "-"
            || gap == ". " && a.1 - a.0 == 1
            || surname_first
            || is_particle_gap(gap))
        {
            return false;
        }
        let (wa, wb) = (&text[a.0..a.1], &text[b.0..b.1]);
        !self.is_stopword(wa) && !self.is_stopword(wb) && !is_all_caps_header_word(wb, wa)
    }

    fn is_stopword(&self, word: &str) -> bool {
        self.is_plain_word(word)
    }

    /// Trims stopwords from both ends of a name run; `None` when nothing name-like is left.
    fn trim_name(&self, text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
        // An initial ("A." in "A. Garcia") is part of the name, not the article "a".
        let plain = |s: usize, e: usize| {
            let word = &text[start + s..start + e];
            let initial = e - s == 1 && text[start + e..].starts_with('.');
            !initial && self.is_plain_word(word)
        };
        let mut keep: Vec<(usize, usize)> =
            capitalised_words(&text[start..end]).into_iter().skip_while(|&(s, e)| plain(s, e)).collect();
        while keep.last().is_some_and(|&(s, e)| plain(s, e)) {
            keep.pop();
        }
        let (first, last) = (keep.first()?, keep.last()?);
        Some((start + first.0, start + last.1))
    }

    fn is_dictionary_name(&self, word: &str) -> bool {
        let lower = word.to_lowercase();
        self.given_names.contains(&lower) || self.surnames.contains(&lower)
    }

    /// A capitalised word that is an ordinary word and not a dictionary name.
    fn is_plain_word(&self, word: &str) -> bool {
        let lower = word.to_lowercase();
        self.stopwords.contains(&lower)
            && !self.given_names.contains(&lower)
            && !self.surnames.contains(&lower)
    }

    /// Shapes that look like PHI but are not: a "date" whose numbers are no month and day,
    /// a cued "identifier" without digits, a short number after "cell", a TNM stage.
    fn is_false_hit(&self, text: &str, span: &PhiSpan) -> bool {
        let s = &text[span.start..span.end];
        match span.category {
            PhiCategory::Date => !plausible_numeric_date(s),
            // A value after "MRN", "member ID", "serial" … is an identifier only when it
            // holds digits: "Plan: start metformin" names no plan.
            PhiCategory::Mrn
            | PhiCategory::Account
            | PhiCategory::HealthPlan
            | PhiCategory::Vehicle
            | PhiCategory::License
            | PhiCategory::Device => s.chars().filter(char::is_ascii_digit).count() < 3,
            // "Red blood cell count: 3.64 10^6" is no phone number.
            // Pager numbers are short; other numbers need seven digits to be a phone's.
            PhiCategory::Phone | PhiCategory::Fax => {
                let from = text[..span.start].char_indices().rev().nth(11).map_or(0, |(i, _)| i);
                let pager = text[from..span.start].to_lowercase().contains("pager");
                !pager && s.chars().filter(char::is_ascii_digit).count() < 7
            }
            PhiCategory::Id if is_clinical_code(s) => true,
            PhiCategory::Id => {
                let digits = s.chars().filter(char::is_ascii_digit).count();
                let letters = s.chars().filter(char::is_ascii_alphabetic).count();
                !(letters == 0 && digits >= 7 || letters >= 2 && digits >= 3)
            }
            // "Cardiology Clinic", "Emergency Medical Center": a department, not a place.
            PhiCategory::Hospital => s
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
                .filter(|w| !self.hospital_suffix_words.contains(&w.to_lowercase()))
                .all(|w| self.is_plain_word(w)),
            _ => false,
        }
    }
}

impl Default for PhiDetector {
    fn default() -> Self {
        PhiDetector::new()
    }
}

/// TNM stages ("T2N0M0") and obstetric histories ("G3P2012") look like codes, are not ids.
fn is_clinical_code(s: &str) -> bool {
    static CODES: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    CODES
        .get_or_init(|| {
            Regex::new(r"^(?:[cpy]?T[0-4X][a-d]?N[0-3X][a-c]?M[01X][a-c]?|G[0-9]{1,2}P[0-9]{1,5})$")
                .expect("code pattern compiles")
        })
        .is_match(s)
}

/// Whether `start..end` begins and ends a word (no letter or digit just outside it).
fn at_word_boundaries(text: &str, start: usize, end: usize) -> bool {
    !text[..start].chars().next_back().is_some_and(char::is_alphanumeric)
        && !text[end..].chars().next().is_some_and(char::is_alphanumeric)
}

/// Lower-case words that join the parts of a name.
const NAME_PARTICLES: [&str; 24] = [
    "de", "del", "della", "da", "das", "dos", "do", "van", "von", "der", "den", "le", "la", "du", "di",
    "bin", "ibn", "al", "el", "los", "las", "ap", "ó", "mac",
];

/// A gap of spaces and name particles between two capitalised words ("Van der", " de los ").
fn is_particle_gap(gap: &str) -> bool {
    gap.starts_with(' ')
        && gap.ends_with(' ')
        && gap
            .split(' ')
            .filter(|w| !w.is_empty())
            .all(|w| NAME_PARTICLES.contains(&w.to_lowercase().as_str()))
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

/// Numeric dates must have a month 1–12 and a day 1–31 in some order.
fn plausible_numeric_date(s: &str) -> bool {
    let numbers: Vec<u32> = s.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    if numbers.len() < 2 || s.chars().any(|c| c.is_alphabetic()) {
        return true;
    }
    // Month/year ("3/80") and month/day ("2/18") with a cue were matched as such.
    if numbers.len() == 2 {
        return (1..=12).contains(&numbers[0]) && (1..=99).contains(&numbers[1]);
    }
    let (a, b) = if numbers[0] > 31 {
        (numbers[1], numbers[2.min(numbers.len() - 1)])
    } else {
        (numbers[0], numbers[1])
    };
    let month_day = (1..=12).contains(&a) && (1..=31).contains(&b);
    let day_month = (1..=31).contains(&a) && (1..=12).contains(&b);
    month_day || day_month
}

/// Byte ranges of words that start with an upper-case letter (letters, apostrophes and
/// inner hyphens; a single capital followed by "." is an initial).
fn capitalised_words(text: &str) -> Vec<(usize, usize)> {
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
        if c.is_uppercase() {
            words.push((start, end));
        }
    }
    words
}

fn preceding_word(text: &str, start: usize) -> Option<&str> {
    let before = text[..start].trim_end();
    // After the last non-word character, whatever its width in bytes ("“Boston").
    let word_start =
        before.char_indices().rev().find(|(_, c)| !c.is_alphanumeric()).map_or(0, |(i, c)| i + c.len_utf8());
    (word_start < before.len()).then(|| &before[word_start..])
}

/// Drops surrounding spaces and trailing sentence punctuation from a match.
fn trim_span(text: &str, mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && text[start..].starts_with(char::is_whitespace) {
        start += text[start..].chars().next().map_or(1, char::len_utf8);
    }
    while start < end {
        let last = text[..end].chars().next_back().unwrap_or(' ');
        if last.is_whitespace()
            || matches!(last, '.' | ',' | ';' | ':' | ')') && !text[start..end].ends_with("St.")
        {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    (start, end)
}

/// A phone number preceded by "fax" is a fax number.
fn refine(text: &str, start: usize, _end: usize, category: PhiCategory) -> PhiCategory {
    if category == PhiCategory::Phone {
        let from = text[..start].char_indices().rev().nth(15).map_or(0, |(i, _)| i);
        let before = text[from..start].to_lowercase();
        if before.contains("fax") || before.trim_end().ends_with("f:") {
            return PhiCategory::Fax;
        }
    }
    category
}

/// Sorts spans and merges overlapping ones; the longest span's category wins.
pub(crate) fn merge(mut spans: Vec<PhiSpan>) -> Vec<PhiSpan> {
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut merged: Vec<(PhiSpan, usize)> = Vec::with_capacity(spans.len());
    for span in spans {
        if let Some((last, longest)) = merged.last_mut()
            && span.start < last.end
        {
            if span.end - span.start > *longest {
                *longest = span.end - span.start;
                last.category = span.category;
            }
            last.end = last.end.max(span.end);
            continue;
        }
        merged.push((span, span.end - span.start));
    }
    merged.into_iter().map(|(s, _)| s).collect()
}

fn month_alternation() -> String {
    let mut forms: Vec<String> = Vec::new();
    for month in MONTHS_FULL {
        forms.push(month.to_string());
        forms.push(month.to_uppercase());
        if month.len() > 3 {
            let short = &month[..3];
            forms.push(format!(r"{short}\.?"));
            forms.push(format!(r"{}\.?", short.to_uppercase()));
        }
    }
    forms.push(r"Sept\.?".into());
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    format!("(?:{})", forms.join("|"))
}

fn state_alternation() -> String {
    let mut forms: Vec<String> = Vec::new();
    for (name, abbrev) in &lexicon().states {
        forms.push(regex::escape(name));
        forms.push(regex::escape(abbrev));
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    format!("(?:{})", forms.join("|"))
}

fn pattern(source: &str, group: usize, category: PhiCategory) -> Pattern {
    let regex = Regex::new(source).unwrap_or_else(|e| panic!("built-in PHI pattern does not compile: {e}"));
    Pattern { regex, group, category }
}

/// Capitals of the Latin scripts (with Latin-1, Extended-A and the Vietnamese range): a
/// small class keeps the automata small, where Unicode's \p{Lu} makes them rebuild often.
const UPPER: &str = "[A-ZÀ-ÖØ-ÞĀ-ſḀ-ỿ]";
/// Letters of the same scripts, for use inside a character class.
const LETTER: &str = "A-Za-zÀ-ÖØ-öø-ɏḀ-ỿ";

/// The identifier value after a cue: letters and digits with inner separators, holding a digit.
const ID_VALUE: &str = r"((?:[A-Za-z0-9]+[-./#])*[A-Za-z0-9]*[0-9][A-Za-z0-9]*(?:[-./#][A-Za-z0-9]+)*)";

fn cued(cue: &str, category: PhiCategory) -> Pattern {
    pattern(
        &format!(r"(?i:(?-u:\b)(?:{cue})(?:\s+(?:number|no\.?|num|#|id))?\s*(?:[:#]|is|of)?\s*){ID_VALUE}"),
        1,
        category,
    )
}

fn build_patterns() -> Vec<Pattern> {
    use PhiCategory::*;
    let month = month_alternation();
    let month_full = MONTHS_FULL.join("|");
    let month_short = MONTHS_FULL
        .iter()
        .flat_map(|m| {
            let short = &m[..3];
            [short.to_string(), short.to_uppercase()]
        })
        .collect::<Vec<_>>()
        .join("|");
    let ordinal_word = format!("(?:{})", ORDINAL_WORDS.join("|"));
    let day = r"(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?";
    let year = r"(?:19|20)[0-9]{2}";
    let states = state_alternation();
    let state_names = {
        let mut names: Vec<String> = lexicon().states.iter().map(|(n, _)| regex::escape(n)).collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        names.join("|")
    };
    let street_suffix = r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Drive|Dr|Lane|Ln|Way|Court|Ct|Place|Pl|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Trail|Trl|Square|Sq|Loop|Pike|Row|Alley|Crescent|Plaza)";
    let hospital_suffixes = {
        let mut s: Vec<String> = lexicon().hospital_suffixes.iter().map(|w| regex::escape(w)).collect();
        s.extend(["Hospital", "Medical Center", "Clinic", "Health Center"].map(String::from));
        s.sort_by_key(|f| std::cmp::Reverse(f.len()));
        s.dedup();
        s.join("|")
    };
    vec![
        // Dates.
        pattern(
            &format!(
                r"(?-u:\b)(?:0?[1-9]|[12][0-9]|3[01])[/-](?:0?[1-9]|[12][0-9]|3[01])[/-](?:{year}|[0-9]{{2}})(?-u:\b)"
            ),
            0,
            Date,
        ),
        pattern(
            &format!(r"(?-u:\b)(?:0?[1-9]|[12][0-9]|3[01])\.(?:0?[1-9]|1[0-2])\.{year}(?-u:\b)"),
            0,
            Date,
        ),
        pattern(
            &format!(
                r"(?-u:\b){year}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12][0-9]|3[01])(?:[T ][0-9]{{1,2}}:[0-9]{{2}}(?::[0-9]{{2}})?)?(?-u:\b)"
            ),
            0,
            Date,
        ),
        pattern(&format!(r"(?-u:\b){month}\s+{day}(?:,?\s+{year})?(?-u:\b)"), 0, Date),
        pattern(&format!(r"(?-u:\b){day}(?:\s+of)?\s+{month}(?:,?\s+{year})?(?-u:\b)"), 0, Date),
        pattern(&format!(r"(?-u:\b){month},?\s+{year}(?-u:\b)"), 0, Date),
        pattern(
            &format!(r"(?i:(?-u:\b)(?:the\s+)?{ordinal_word}\s+of\s+){month}(?:,?\s+{year})?(?-u:\b)"),
            0,
            Date,
        ),
        // Export shapes: "14-Mar-2024", "14MAR2024", "Mar-2019", and month/year "03/2019".
        pattern(
            &format!(
                r"(?-u:\b)(?:[0-3]?[0-9])-?(?:{month_short})-?(?:(?:19|20)[0-9]{{2}}|[0-9]{{2}})(?-u:\b)"
            ),
            0,
            Date,
        ),
        pattern(&format!(r"(?-u:\b)(?:{month_short})-(?:19|20)[0-9]{{2}}(?-u:\b)"), 0, Date),
        pattern(r"(?-u:\b)(?:0?[1-9]|1[0-2])/(?:19|20)[0-9]{2}(?-u:\b)", 0, Date),
        // A month alone is an element of a date ("since November"); the cue keeps "may" out.
        pattern(
            &format!(
                r"(?i:(?-u:\b)(?:since|in|during|until|till|by|last|early|late|mid|this|next)\s+)({month_full})(?-u:\b)"
            ),
            1,
            Date,
        ),
        // Month/day or month/year without the rest, after a preposition ("in 3/80", "cath 2/18").
        pattern(
            r"(?i:(?-u:\b)(?:in|on|since|from|until|till|by|dated|after|before|with|for|cath|surgery|seen)\s+)((?:0?[1-9]|1[0-2])/(?:[0-9]{2}|[1-9]))(?-u:\b)",
            1,
            Date,
        ),
        pattern(
            &format!(r"(?-u:\b){month}\s+(?:the\s+)?(?i:{ordinal_word})(?-u:\b)(?:,?\s+{year})?"),
            0,
            Date,
        ),
        pattern(
            r"(?i:(?-u:\b)(?:on|since|from|until|till|dated|dos|date|admitted|discharged|seen|visit)\s*:?\s+)((?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12][0-9]|3[01]))(?-u:\b)",
            1,
            Date,
        ),
        // Ages over 89.
        pattern(
            r"(?-u:\b)(9[0-9]|1[01][0-9])\s*-?\s*(?:years?|yrs?|y/o|yo|y\.o\.|year-old|-year-old)",
            1,
            Age,
        ),
        pattern(r"(?i:(?-u:\b)age[d:]?\s*:?\s*)(9[0-9]|1[01][0-9])(?-u:\b)", 1, Age),
        pattern(r"(?-u:\b)(9[0-9]|1[01][0-9])(?:M|F|yoM|yoF)(?-u:\b)", 1, Age),
        // Contact details and network addresses.
        pattern(r"(?i:(?-u:\b)(?:pager|beeper|pgr)\s*#?:?\s*)([0-9]{4,10})(?-u:\b)", 1, Phone),
        pattern(
            r"(?:\+1[\s.-]?)?(?:\([0-9]{3}\)\s?|(?-u:\b)[0-9]{3}[\s.-])[0-9]{3}[\s.-][0-9]{4}(?-u:\b)(?:\s*(?:x|ext\.?)\s*[0-9]{1,5})?",
            0,
            Phone,
        ),
        pattern(
            r"(?i:(?-u:\b)(?:phone|tel|telephone|cell|mobile|pager|contact|fax|ph)(?-u:\b)[^0-9\n]{0,12})([0-9]{10})(?-u:\b)",
            1,
            Phone,
        ),
        // Any shape after a cue, international ones included ("Mobile: 0490 75 40 81").
        pattern(
            r"(?i:(?-u:\b)(?:phone|tel|telephone|cell\s*phone|mobile|desk|fax|call\s+me\s+(?:on|at)|reach\s+me\s+at|registered)(?-u:\b)[^0-9+(\n]{0,12})(\+?\(?[0-9][0-9 ().-]{5,20}[0-9])",
            1,
            Phone,
        ),
        pattern(&format!(r"[{LETTER}0-9._%+-]+@[{LETTER}0-9.-]+\.[A-Za-z]{{2,}}(?-u:\b)"), 0, Email),
        pattern(r#"(?i:(?-u:\b)(?:https?://|www\.)[^\s<>"'\]\)]+)"#, 0, Url),
        pattern(
            r"(?i:(?-u:\b)[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|gov|health|info|io)(?:/[^\s]*)?)",
            0,
            Url,
        ),
        pattern(
            r"(?-u:\b)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?-u:\b)",
            0,
            Ip,
        ),
        pattern(r"(?-u:\b)(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?-u:\b)", 0, Ip),
        // Numbers with a shape or a cue.
        pattern(r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)", 0, Ssn),
        pattern(
            r"(?i:(?-u:\b)(?:ssn|social security)(?:\s+(?:number|no\.?|#))?\s*[:#]?\s*)([0-9]{9}|[0-9]{3}[ -][0-9]{2}[ -][0-9]{4})(?-u:\b)",
            1,
            Ssn,
        ),
        cued(
            r"mrn|mr\s?#|medical record|med(?:ical)?\s+rec(?:ord)?|chart|hospital\s+(?:#|no\.?|number)|unit\s+no\.?|patient\s+id|pt\s+id",
            Mrn,
        ),
        cued(r"acct|account|billing|encounter|visit|fin|invoice|claim|iban", Account),
        // IBANs: country, check digits, then the bank account.
        pattern(r"(?-u:\b)[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}(?-u:\b)", 0, Account),
        cued(
            r"member|policy|insurance|subscriber|health\s+plan|plan|medicaid|medicare|beneficiary|group",
            HealthPlan,
        ),
        cued(r"vin|vehicle(?:\s+identification)?|licen[cs]e\s+plate|plate", Vehicle),
        cued(r"licen[cs]e|lic\.?|dea|npi|certificate|cert\.?|registration", License),
        cued(r"serial|s/n|sn|device|udi|implant|pacemaker\s+serial|model|lot", Device),
        pattern(r"(?-u:\b)[A-HJ-NPR-Z0-9]{17}(?-u:\b)", 0, Vehicle),
        pattern(r"(?-u:\b)[0-9]{7,}(?-u:\b)", 0, Id),
        pattern(r"(?-u:\b)[A-Z]{1,3}-?[0-9]{6,}(?-u:\b)", 0, Id),
        // Plates and other codes of capitals and digits ("2JXX710"); filtered to mixed ones.
        pattern(r"(?-u:\b)[A-Z0-9]{6,10}(?-u:\b)", 0, Id),
        // Transcription marks: initials then user names ("XGT:holmes", "GPP/church/olinger").
        pattern(r"(?m)^[ \t]*[A-Z]{2,4}[:/]([a-z]{3,12})(?:/[a-z]{3,12})?[ \t]*$", 1, Name),
        pattern(r"(?m)^[ \t]*[A-Z]{2,4}/[a-z]{3,12}/([a-z]{3,12})[ \t]*$", 1, Name),
        pattern(r"(?m)^[ \t]*([A-Z][A-Z'-]+,[A-Z][A-Z'-]+)(?:[ \t]|$)", 1, Name),
        cued(r"study\s+(?:code|id)|subject\s+id|participant\s+id|voiceprint(?:\s+template)?", Id),
        // Places.
        pattern(
            &format!(
                r"(?-u:\b)[0-9]{{1,6}}\s+(?:[NSEW]\.?\s+)?(?:(?:[A-Z0-9][{LETTER}0-9'’.-]*|de|del|la|las|los|van|von|di|du|da|el)\s+){{1,5}}{street_suffix}(?-u:\b)\.?(?:,?\s+(?:Apt|Apartment|Unit|Suite|Ste|#)\.?\s*[A-Za-z0-9-]+)?"
            ),
            0,
            Address,
        ),
        pattern(r"(?i:(?-u:\b)P\.?\s?O\.?\s+Box\s+[0-9]+)", 0, Address),
        // "Springfield, IL 62704" and "Springfield, Illinois"; "Soft, ND" is an exam note.
        pattern(
            &format!(r"((?:{UPPER}[{LETTER}'’.-]+\s){{0,2}}{UPPER}[{LETTER}'’-]+),\s+{states}\s+[0-9]{{5}}"),
            1,
            City,
        ),
        pattern(
            &format!(
                r"((?:{UPPER}[{LETTER}'’.-]+\s){{0,2}}{UPPER}[{LETTER}'’-]+),\s+(?:{state_names})(?-u:\b)"
            ),
            1,
            City,
        ),
        pattern(
            &format!(r"((?:{UPPER}[{LETTER}]+\s)?{UPPER}[{LETTER}]+\s+(?:County|Parish|Borough))(?-u:\b)"),
            1,
            City,
        ),
        pattern(
            &format!(
                r"(?i:(?-u:\b)(?:city|town|village)\s+of\s+)({UPPER}[{LETTER}]+(?:\s{UPPER}[{LETTER}]+)?)"
            ),
            1,
            City,
        ),
        pattern(&format!(r"(?-u:\b){states},?\s+([0-9]{{5}}(?:-[0-9]{{4}})?)\b"), 1, Zip),
        pattern(
            r"(?i:(?-u:\b)(?:zip|postal)(?:\s*code)?\s*(?::|is)?\s*)([0-9]{3,5}(?:[- ][0-9]{2,4})?)(?-u:\b)",
            1,
            Zip,
        ),
        // Apartment and suite numbers, European street names with their house number.
        pattern(r"(?-u:\b)(?:Apt|Apartment|Suite|Ste|Unit)\.?\s*#?\s*[0-9]{1,5}[A-Z]?(?-u:\b)", 0, Address),
        pattern(
            &format!(
                r"(?-u:\b)(?:Rue|Via|Viale|Rua|Calle|Avenida|Piazza|Strada|Carrer)\s+(?:[{LETTER}'’-]+\s+){{0,5}}[0-9]{{1,5}}(?-u:\b)"
            ),
            0,
            Address,
        ),
        pattern(
            &format!(
                r"{UPPER}[{LETTER}]*(?:straße|strasse|gatan|vägen|vej|veien|katu|tie|gata|weg|laan|straat|gasse|ulica|utca)\s+[0-9]{{1,5}}(?-u:\b)"
            ),
            0,
            Address,
        ),
        pattern(
            &format!(
                r"((?:(?-u:\b)(?:St\.?|Saint)\s+)?(?:{UPPER}[{LETTER}'’.-]*\s+(?:(?:of|the|and|for|de|la|del)\s+)*){{1,5}}(?:{hospital_suffixes}))(?-u:\b)"
            ),
            1,
            Hospital,
        ),
    ]
}

fn build_name_patterns() -> Vec<Regex> {
    let word = format!(r"(?:{UPPER}[{LETTER}'’-]+|{UPPER}\.)");
    let particle =
        r"(?:(?i:de|del|de la|de los|da|dos|van|van der|van den|von|bin|al|el|le|la|di|du|ap|ó|St\.)[ \t]+)?";
    // Names stay on their line: "PCP: Gilbert Perez\nAttending: ..." is two names.
    let name_run = format!(r"({particle}{word}(?:[ \t]+{particle}{word}){{0,3}})");
    // After a cue the name may come surname first: "for Kapaona, Boubacar".
    let cued_run = format!(
        r"({particle}{word},[ \t]+{word}(?:[ \t]+{word})?|{particle}{word}(?:[ \t]+{particle}{word}){{0,3}})"
    );
    let sources = [
        format!(r"(?-u:\b)(?:(?i:Dr|Mr|Mrs)|Ms|Miss|Mx|Prof|Sra|Rev)\.?[ \t]+{name_run}"),
        format!(
            r"(?i:(?-u:\b)(?:patient(?:\s+name)?|name|pt(?:\s+name)?|seen\s+by|signed\s+by|electronically\s+signed(?:\s+by)?|dictated\s+by|transcribed\s+by|reviewed\s+by|attending(?:\s+physician)?|resident|fellow|pcp|primary\s+care(?:\s+(?:physician|provider))?|referr(?:ed|ing)(?:\s+(?:by|physician|provider))?|provider|nurse|emergency\s+contact|contact|guardian|spouse|husband|wife|son|daughter|mother|father|brother|sister|partner|accompanied\s+by|interpreter|caregiver|friend|niece|nephew|grandson|granddaughter|(?:summary|note|report|letter|record)\s+for|(?:my\s+)?name\s+is|named|call\s+me|says|said)\s*[:\-]?\s+){cued_run}"
        ),
        format!(
            r"{name_run},?\s+(?:(?:MD|DO|RN|NP|PA-C|PhD|DDS|PharmD|MSW|LCSW|CNM|FNP|APRN|CRNA|DPM|OD|FNP-BC|MBBS)(?-u:\b)|M\.D\.)"
        ),
        format!(r"(?i:(?-u:\b)(?:patient|name|pt)\s*:\s*)({UPPER}[{LETTER}'’-]+,\s*{word}(?:\s+{word})?)"),
    ];
    sources.iter().map(|s| Regex::new(s).unwrap_or_else(|e| panic!("built-in name pattern: {e}"))).collect()
}
