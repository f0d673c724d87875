//! Finding PHI. Detection runs on a normalised view of the text ([`NormalisedText`]) and
//! combines: patterns for identifiers with a shape or a cue (dates, ages, contacts,
//! addresses, numbers after their cue words); recall-first identifier tokens (anything
//! identifier-shaped that no clinical shape accounts for); organisations by their head
//! words; names from context, dictionaries, unknown capitalised pairs, lower-case cues and
//! the record itself, then everywhere in the document; cities. Spans are mapped back to
//! the original text and merged.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

use super::identifiers::unrecognised_identifiers;
use super::names::{Guarded, NameFinder};
use super::normalize::NormalisedText;
use super::organisations::OrganisationFinder;
use super::patterns::{Pattern, build_patterns};
use super::structure::structured_spans;
use super::words::Words;
use crate::data::lexicon::lexicon;
use crate::data::phi::{PhiCategory, PhiSpan};

/// Identifying values a record gives about itself, outside its text: the patient's name in
/// a header field, an MRN column. The detector finds them wherever they occur in the text.
#[derive(Debug, Clone, Default)]
pub struct KnownPhi {
    /// Names (searched word by word, in any case).
    pub names: Vec<String>,
    /// Other values (searched as written, ignoring ASCII case).
    pub values: Vec<String>,
}

/// Finds PHI in text. Build once (it compiles its patterns and loads its dictionaries) and
/// share between threads.
pub struct PhiDetector {
    patterns: Vec<Pattern>,
    words: Words,
    names: NameFinder,
    organisations: OrganisationFinder,
    /// City names of the dictionary, case-sensitive, longest first.
    city_names: AhoCorasick,
    ambiguous_cities: HashSet<String>,
    /// Places named after a cue ("lives in Xyz", "from Abc Springs").
    cued_place: Regex,
    /// A capitalised phrase after "in", "from", "near" …, a place if no vocabulary knows it.
    unknown_place: Regex,
    /// A town after a street address or an organisation and a comma.
    place_after_comma: Regex,
    /// "Gallows Creek, MT": a town and a state abbreviation.
    place_and_state: Regex,
    /// Words of hospital suffixes ("medical", "center"), lower case.
    hospital_suffix_words: HashSet<String>,
    /// A postcode after a town: an optional region abbreviation, then four to six digits
    /// ("Cape Town 7750", "Maroochydore QLD 4558", "Tamworth NSW 2340").
    postcode_after_place: Regex,
    /// A unit, level or lot before a street address ("Level 2, ", "Shop 3/", "apt 3, ")
    /// and one after it (", Int. 4", ", Apt 5B").
    unit_before_address: Regex,
    unit_after_address: Regex,
    /// What may follow a date as its time, or a phone number as its extension.
    date_time_after: Regex,
    weekday_before: Regex,
    phone_extension: Regex,
}

impl PhiDetector {
    /// Compiles the patterns and loads the dictionaries.
    pub fn new() -> PhiDetector {
        let lexicon = lexicon();
        let words = Words::new();
        let place_names: Vec<&str> =
            lexicon.cities.iter().map(|c| c.name).chain(lexicon.detector_places.iter().copied()).collect();
        let cities: HashSet<String> = place_names.iter().map(|c| c.to_lowercase()).collect();
        let ambiguous_cities: HashSet<String> = cities
            .iter()
            .filter(|c| words.is_plain_word(c) || words.is_dictionary_name(c) || words.is_common_word(c))
            .cloned()
            .collect();
        let city_names = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&place_names)
            .expect("city names build an automaton");
        let upper = super::patterns::UPPER;
        let letter = super::patterns::LETTER;
        let cued_place = Regex::new(&format!(
            r"(?i:(?-u:\b)(?:lives|living|resides|residing|resident\s+of|moved\s+(?:here\s+)?(?:to|from)|relocated\s+(?:to|from)|native\s+of|born\s+in|grew\s+up\s+in|home\s+in|house\s+in|apartment\s+in|travell?ed\s+to|trip\s+to|visiting|vacation\s+in|works\s+in|employed\s+in)(?:[ \t]+(?:in|at|near|outside|with[ \t]+\w+[ \t]+in))?[ \t]+)({upper}[{letter}'’.-]+(?:[ -]{upper}[{letter}'’.-]+){{0,2}})"
        ))
        .expect("place cue pattern compiles");
        let place_words = format!(r"{upper}[{letter}'’-]+(?:[ -]{upper}[{letter}'’-]+){{0,2}}");
        let unknown_place = Regex::new(&format!(
            r"(?-u:\b)(?:in|from|near|to|outside|at|terminal|visiting|toward|towards|around)\s+({place_words})"
        ))
        .expect("place pattern compiles");
        let place_after_comma =
            Regex::new(&format!(r"^,[ \t]*({place_words})")).expect("place pattern compiles");
        let abbreviations = lexicon.states.iter().map(|(_, a)| *a).collect::<Vec<_>>().join("|");
        let place_and_state = Regex::new(&format!(r"({place_words}),[ \t]+(?:{abbreviations})(?-u:\b)"))
            .expect("place pattern compiles");
        let postcode_after_place =
            Regex::new(r"^,?[ \t]{0,3}(?:([A-Z]{2,3})\.?,?[ \t]{1,3})?([0-9]{4,6})(?-u:\b)")
                .expect("postcode pattern compiles");
        let unit_words = r"unit|apt|apartment|suite|ste|level|lvl|floor|fl|shop|flat|house|plot|lot|stand|block|blk|bldg|building|room|rm|app|appt|apto|int|interior|dept|piso|purok|site|box";
        let unit_before_address = Regex::new(&format!(
            r"(?i:(?:(?-u:\b)(?:{unit_words})\.?[ \t]*#?[ \t]*[0-9]{{1,5}}[a-z]?[ \t]*[,/]?[ \t]*)+|(?-u:\b)[0-9]{{1,5}}[a-z]?[ \t]*/[ \t]*)$"
        ))
        .expect("unit pattern compiles");
        let unit_after_address = Regex::new(&format!(
            r"^,?[ \t]*(?i:(?:{unit_words}|#)\.?[ \t]*#?[ \t]*[0-9]{{1,5}}[a-z]?)(?-u:\b)"
        ))
        .expect("unit pattern compiles");
        PhiDetector {
            unit_before_address,
            unit_after_address,
            postcode_after_place,
            patterns: build_patterns(),
            words,
            names: NameFinder::new(),
            organisations: OrganisationFinder::new(),
            city_names,
            ambiguous_cities,
            cued_place,
            unknown_place,
            place_after_comma,
            place_and_state,
            hospital_suffix_words: lexicon
                .hospital_suffixes
                .iter()
                .flat_map(|w| w.split_whitespace())
                .chain(["Hospital", "Medical", "Center", "Clinic", "Health"])
                .map(str::to_lowercase)
                .collect(),
            date_time_after: Regex::new(
                r"^(?:,?\s*(?:at|@|à|a las|~)?\s*)(?:[0-2]?[0-9]:[0-5][0-9](?::[0-5][0-9])?(?:\s*[AaPp]\.?[Mm]\.?)?|[0-2][0-9][0-5][0-9](?:\s*(?:h|hrs|hours)(?-u:\b))?|[01]?[0-9]\s*[AaPp]\.?[Mm]\.?|[0-2]?[0-9]\s?h\s?[0-5][0-9])(?-u:\b)",
            )
            .expect("time pattern compiles"),
            weekday_before: Regex::new(
                r"(?i:(?-u:\b)(?:mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?\.?,?\s+)$",
            )
            .expect("weekday pattern compiles"),
            phone_extension: Regex::new(r"^\s*(?:x|ext\.?|extension|#)\s*[0-9]{1,6}(?-u:\b)")
                .expect("extension pattern compiles"),
        }
    }

    /// Every PHI span in `text`, sorted, overlaps merged (the longer span's category wins).
    pub fn detect(&self, text: &str) -> Vec<PhiSpan> {
        self.detect_with(text, &KnownPhi::default())
    }

    /// Every PHI span in `text`, with the values the record gives about itself found too.
    pub fn detect_with(&self, text: &str, known: &KnownPhi) -> Vec<PhiSpan> {
        let normalised = NormalisedText::new(text);
        let found = self.detect_in_view(normalised.view(), known);
        let mapped = found
            .into_iter()
            .map(|s| {
                let (start, end) = normalised.to_original(s.start, s.end);
                PhiSpan { start, end, category: s.category }
            })
            .filter(|s| s.start < s.end)
            .collect();
        merge(mapped)
    }

    fn detect_in_view(&self, text: &str, known: &KnownPhi) -> Vec<PhiSpan> {
        let mut spans: Vec<PhiSpan> = Vec::new();
        let mut push = |start: usize, end: usize, category: PhiCategory| {
            let (start, end) = trim_span(text, start, end);
            if start < end {
                spans.push(PhiSpan { start, end, category: refine(text, start, end, category) });
            }
        };
        for pattern in &self.patterns {
            let kept = |start: usize, end: usize| pattern.keep.is_none_or(|keep| keep(text, start, end));
            if pattern.group == 0 {
                // Whole matches need no capture search, which is the slow part.
                for m in pattern.regex.find_iter(text) {
                    if kept(m.start(), m.end()) {
                        push(m.start(), m.end(), pattern.category);
                    }
                }
            } else {
                for captures in pattern.regex.captures_iter(text) {
                    if let Some(m) = captures.get(pattern.group)
                        && kept(m.start(), m.end())
                    {
                        push(m.start(), m.end(), pattern.category);
                    }
                }
            }
        }
        spans.retain(|s| !self.is_false_hit(text, s));
        spans.extend(unrecognised_identifiers(text));

        let guarded = Guarded(
            self.words
                .guards
                .find_iter(text)
                .filter(|m| at_word_boundaries(text, m.start(), m.end()))
                .map(|m| (m.start(), m.end()))
                .collect(),
        );
        spans.extend(self.organisations.find(text, &self.words));
        spans.extend(structured_spans(text, &self.words));
        // An HL7 message's names are searched for in its free text as the record's own are.
        let (message_spans, message_names) = super::hl7::hl7_spans(text);
        spans.extend(message_spans);
        let known_names: std::borrow::Cow<'_, [String]> = if message_names.is_empty() {
            std::borrow::Cow::Borrowed(&known.names)
        } else {
            std::borrow::Cow::Owned(known.names.iter().cloned().chain(message_names).collect())
        };
        spans.extend(super::addresses::address_blocks(text, &self.words));
        spans.extend(self.names.find(text, &self.words, &guarded, &known_names));
        self.cities(text, &guarded, &mut spans);
        self.postcodes_after_places(text, &mut spans);
        known_values(text, &known.values, &mut spans);
        organisations_everywhere(text, &self.words, &mut spans);
        self.extend_dates_and_phones(text, &mut spans);
        merge(spans)
    }

    /// Cities from the dictionary — anywhere when unambiguous, after "in", "from" … when
    /// the name is also a word or a person's name — and any place after a residence cue.
    fn cities(&self, text: &str, guarded: &Guarded, spans: &mut Vec<PhiSpan>) {
        for m in self.city_names.find_iter(text) {
            if !at_word_boundaries(text, m.start(), m.end()) || guarded.covers(m.start(), m.end()) {
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
        let states: HashSet<String> = lexicon().states.iter().map(|(n, _)| n.to_lowercase()).collect();
        let not_a_place = |place: &str| {
            let lower = place.to_lowercase();
            states.contains(&lower) || is_country(&lower)
        };
        // "in Okemos", "from Edinburgh", "in East Palo Alto": a phrase no vocabulary knows.
        for captures in self.unknown_place.captures_iter(text) {
            let Some(m) = captures.get(1) else { continue };
            let (start, end) = trim_span(text, m.start(), m.end());
            let place = &text[start..end];
            let last = place.rsplit([' ', '-']).next().unwrap_or(place);
            if last.chars().count() >= 4 && !self.words.is_known_word(last) && !not_a_place(place) {
                spans.push(PhiSpan { start, end, category: PhiCategory::City });
            }
        }
        // "118 Harbour St, Bayfront", "Krishna Memorial Hospital, Vijayawada".
        let anchors: Vec<usize> = spans
            .iter()
            .filter(|s| matches!(s.category, PhiCategory::Address | PhiCategory::Hospital))
            .map(|s| s.end)
            .collect();
        for end in anchors {
            let Some(captures) = self.place_after_comma.captures(&text[end..]) else { continue };
            let Some(m) = captures.get(1) else { continue };
            let (start, stop) = trim_span(text, end + m.start(), end + m.end());
            let place = &text[start..stop];
            let known = place
                .split([' ', '-'])
                .all(|w| self.words.is_function_word(w) || self.words.is_medical_word(w));
            if start < stop && !known && !not_a_place(place) {
                spans.push(PhiSpan { start, end: stop, category: PhiCategory::City });
            }
        }
        // "Gallows Creek, MT": a phrase with an unknown word or a place word, then a state.
        for captures in self.place_and_state.captures_iter(text) {
            let Some(m) = captures.get(1) else { continue };
            let place = m.as_str();
            let place_word = place
                .rsplit([' ', '-'])
                .next()
                .is_some_and(|w| PLACE_SUFFIXES.contains(&w.to_lowercase().as_str()));
            let unknown = place.split([' ', '-']).any(|w| !self.words.is_known_word(w));
            if (place_word || unknown) && !not_a_place(place) {
                spans.push(PhiSpan { start: m.start(), end: m.end(), category: PhiCategory::City });
            }
        }
        for captures in self.cued_place.captures_iter(text) {
            let Some(m) = captures.get(1) else { continue };
            let (start, end) = trim_span(text, m.start(), m.end());
            let place = text[start..end].to_lowercase();
            if start < end && !states.contains(&place) && !self.words.is_plain_word(&text[start..end]) {
                spans.push(PhiSpan { start, end, category: PhiCategory::City });
            }
        }
    }

    /// Postcodes written after their town, which have no shape of their own outside the
    /// United States: four to six digits right after a town, alone or after a region
    /// abbreviation. A year is read as a postcode only after a region ("Seen in Denver 2019"
    /// is a visit, "Sydney NSW 2000" an address) or on an address line.
    fn postcodes_after_places(&self, text: &str, spans: &mut Vec<PhiSpan>) {
        let towns: Vec<(usize, usize)> = spans
            .iter()
            .filter(|s| matches!(s.category, PhiCategory::City))
            .map(|s| (s.start, s.end))
            .collect();
        let address_line_starts: HashSet<usize> = spans
            .iter()
            .filter(|s| matches!(s.category, PhiCategory::Address))
            .map(|s| text[..s.start].rfind('\n').map_or(0, |i| i + 1))
            .collect();
        for (town_start, town_end) in towns {
            let Some(captures) = self.postcode_after_place.captures(&text[town_end..]) else { continue };
            let Some(code) = captures.get(2) else { continue };
            let (start, end) = (town_end + code.start(), town_end + code.end());
            // Part of a longer number ("7750.5", "2340-12") is something else.
            if text[end..].starts_with(['.', ',', '-', '/', ':'])
                && text[end + 1..].starts_with(|c: char| c.is_ascii_digit())
            {
                continue;
            }
            let value: u32 = text[start..end].parse().unwrap_or(0);
            let region = captures.get(1).is_some();
            let line_start = text[..town_start].rfind('\n').map_or(0, |i| i + 1);
            let year_like = end - start == 4 && (1900..=2099).contains(&value);
            if !year_like || region || address_line_starts.contains(&line_start) {
                spans.push(PhiSpan { start, end, category: PhiCategory::Zip });
            }
        }
    }

    /// A time written after a date is part of it ("03/14/2024 08:30", "March 3 at 2 PM"),
    /// and so is a weekday before it; an extension is part of its phone number, a unit or
    /// a level part of its street address.
    fn extend_dates_and_phones(&self, text: &str, spans: &mut [PhiSpan]) {
        for span in spans.iter_mut() {
            match span.category {
                PhiCategory::Date => {
                    if let Some(m) = self.date_time_after.find(&text[span.end..]) {
                        span.end += m.end();
                    }
                    let from = text[..span.start].char_indices().rev().nth(15).map_or(0, |(i, _)| i);
                    if let Some(m) = self.weekday_before.find(&text[from..span.start]) {
                        span.start = from + m.start();
                    }
                }
                PhiCategory::Address => {
                    let from = text[..span.start].char_indices().rev().nth(40).map_or(0, |(i, _)| i);
                    if let Some(m) = self.unit_before_address.find(&text[from..span.start]) {
                        span.start = from + m.start();
                    }
                    if let Some(m) = self.unit_after_address.find(&text[span.end..]) {
                        span.end += m.end();
                    }
                }
                PhiCategory::Phone | PhiCategory::Fax => {
                    if let Some(m) = self.phone_extension.find(&text[span.end..]) {
                        span.end += m.end();
                    }
                }
                _ => {}
            }
        }
    }

    /// Shapes that look like PHI but are not: a "date" whose numbers are no month and day,
    /// a cued "identifier" without digits, a short number after "cell".
    fn is_false_hit(&self, text: &str, span: &PhiSpan) -> bool {
        let s = &text[span.start..span.end];
        let digits = s.chars().filter(char::is_ascii_digit).count();
        match span.category {
            PhiCategory::Date => !plausible_numeric_date(s),
            // A value after "MRN", "member ID", "serial" … is an identifier only when it
            // holds digits: "Plan: start metformin" names no plan, "Group B" no group.
            PhiCategory::Mrn
            | PhiCategory::Account
            | PhiCategory::HealthPlan
            | PhiCategory::Vehicle
            | PhiCategory::License
            | PhiCategory::Device
            | PhiCategory::Id => {
                // Digits read out as words ("four seven seven …") hold no digit at all.
                let spelled = digits == 0 && s.split_whitespace().count() >= 5;
                digits < 2 && !(digits == 1 && s.chars().count() >= 5) && !spelled
            }
            // "Red blood cell count: 3.64 10^6" is no phone number.
            // Pager numbers are short; other numbers need seven digits to be a phone's.
            PhiCategory::Phone | PhiCategory::Fax => {
                let from = text[..span.start].char_indices().rev().nth(11).map_or(0, |(i, _)| i);
                let before = text[from..span.start].to_lowercase();
                let short_allowed =
                    ["pager", "ext", "pgr", "beeper", "bleep", "page"].iter().any(|cue| before.contains(cue));
                !short_allowed && digits < 7
            }
            // "Cardiology Clinic", "Emergency Medical Center": a department, not a place.
            PhiCategory::Hospital => s
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
                .filter(|w| !self.hospital_suffix_words.contains(&w.to_lowercase()))
                .all(|w| self.words.is_plain_word(w)),
            _ => false,
        }
    }
}

impl PhiDetector {
    /// Each component's spans in `text`, with the component's name (for developing the
    /// detector on synthetic documents: the output holds the text it found).
    #[doc(hidden)]
    pub fn explain(&self, text: &str) -> Vec<(&'static str, String, PhiCategory)> {
        let normalised = NormalisedText::new(text);
        let view = normalised.view();
        let mut out = Vec::new();
        let mut add = |origin: &'static str, spans: Vec<PhiSpan>| {
            for s in spans {
                out.push((origin, view[s.start..s.end].to_string(), s.category));
            }
        };
        let mut patterns = Vec::new();
        for pattern in &self.patterns {
            for captures in pattern.regex.captures_iter(view) {
                if let Some(m) = captures.get(pattern.group)
                    && pattern.keep.is_none_or(|keep| keep(view, m.start(), m.end()))
                {
                    let span = PhiSpan { start: m.start(), end: m.end(), category: pattern.category };
                    if !self.is_false_hit(view, &span) {
                        patterns.push(span);
                    }
                }
            }
        }
        add("pattern", patterns);
        add("identifier", unrecognised_identifiers(view));
        add("organisation", self.organisations.find(view, &self.words));
        add("structure", structured_spans(view, &self.words));
        let guarded = Guarded(Vec::new());
        add("name", self.names.find(view, &self.words, &guarded, &[]));
        out
    }
}

impl Default for PhiDetector {
    fn default() -> Self {
        PhiDetector::new()
    }
}

/// Last words of place names ("Gallows Creek", "Seaside Heights").
const PLACE_SUFFIXES: [&str; 36] = [
    "city", "town", "township", "springs", "falls", "heights", "beach", "harbor", "harbour", "village",
    "junction", "creek", "valley", "hills", "lake", "ridge", "grove", "point", "bay", "mills", "crossing",
    "landing", "station", "corners", "park", "woods", "glen", "haven", "port", "ford", "bluff", "hollow",
    "shores", "center", "centre", "borough",
];

/// Countries and large regions: not PHI under Safe Harbor, so not taken for towns.
pub(crate) fn is_country(lower: &str) -> bool {
    const COUNTRIES: &str = "afghanistan albania algeria america andorra angola argentina armenia australia austria \
azerbaijan bahamas bahrain bangladesh barbados belarus belgium belize benin bhutan bolivia bosnia botswana brazil \
brunei bulgaria burkina burundi cambodia cameroon canada chad chile china colombia comoros congo croatia cuba \
cyprus czechia czech denmark djibouti dominica ecuador egypt england eritrea estonia eswatini ethiopia europe \
fiji finland france gabon gambia georgia germany ghana greece greenland grenada guatemala guinea guyana haiti \
honduras hungary iceland india indonesia iran iraq ireland israel italy jamaica japan jordan kazakhstan kenya \
kiribati korea kosovo kuwait kyrgyzstan laos latvia lebanon lesotho liberia libya liechtenstein lithuania \
luxembourg madagascar malawi malaysia maldives mali malta mauritania mauritius mexico micronesia moldova monaco \
mongolia montenegro morocco mozambique myanmar namibia nauru nepal netherlands nicaragua niger nigeria norway \
oman pakistan palau palestine panama paraguay peru philippines poland portugal qatar romania russia rwanda samoa \
scotland senegal serbia seychelles singapore slovakia slovenia somalia spain sudan suriname sweden switzerland \
syria taiwan tajikistan tanzania thailand togo tonga trinidad tunisia turkey turkmenistan tuvalu uganda ukraine \
uruguay uzbekistan vanuatu venezuela vietnam wales yemen zambia zimbabwe africa asia antarctica usa uk u.s. \
united states united kingdom puerto rico guam new zealand south africa saudi arabia sri lanka el salvador \
costa rica ivory coast sierra leone papua new guinea north korea south korea hong kong";
    static SET: std::sync::OnceLock<HashSet<&'static str>> = std::sync::OnceLock::new();
    let set = SET.get_or_init(|| COUNTRIES.split_whitespace().collect());
    let multi = [
        "united states",
        "united kingdom",
        "puerto rico",
        "new zealand",
        "south africa",
        "saudi arabia",
        "sri lanka",
        "el salvador",
        "costa rica",
        "ivory coast",
        "sierra leone",
        "papua new guinea",
        "north korea",
        "south korea",
        "hong kong",
    ];
    set.contains(lower) || multi.contains(&lower)
}

/// Values the record gives (an MRN column, a phone field) wherever they occur in the text.
fn known_values(text: &str, values: &[String], spans: &mut Vec<PhiSpan>) {
    if values.is_empty() {
        return;
    }
    let lower = text.to_ascii_lowercase();
    for value in values {
        let value = value.trim().to_ascii_lowercase();
        // Short values ("F", "yes", "12") would match everywhere and identify no one.
        if value.chars().filter(|c| c.is_alphanumeric()).count() < 4 {
            continue;
        }
        let mut from = 0;
        while let Some(at) = lower[from..].find(&value) {
            let (start, end) = (from + at, from + at + value.len());
            if at_word_boundaries(text, start, end) {
                spans.push(PhiSpan { start, end, category: PhiCategory::Id });
            }
            from = end;
        }
    }
}

/// An organisation found once is found everywhere in the document: its name in any case,
/// and its acronym — the one written after it in parentheses, or the initials of its
/// capitalised words ("Blue Spruce Regional Medical Center" → "BSRMC").
fn organisations_everywhere(text: &str, words: &Words, spans: &mut Vec<PhiSpan>) {
    let mut names: HashSet<String> = HashSet::new();
    let mut acronyms: HashSet<String> = HashSet::new();
    for span in spans.iter().filter(|s| s.category == PhiCategory::Hospital) {
        let name = &text[span.start..span.end];
        let name_words: Vec<&str> = name.split_whitespace().collect();
        if name_words.len() < 2 {
            continue;
        }
        names.insert(name.to_lowercase());
        let initials: String = name_words
            .iter()
            .filter(|w| w.chars().next().is_some_and(char::is_uppercase) && !words.is_function_word(w))
            .filter_map(|w| w.chars().next())
            .collect();
        if initials.chars().count() >= 3 {
            acronyms.insert(initials);
        }
        let after = text[span.end..].trim_start();
        if let Some(inner) = after.strip_prefix('(').and_then(|a| a.split_once(')')).map(|(a, _)| a)
            && (2..=8).contains(&inner.len())
            && inner.chars().all(|c| c.is_ascii_uppercase() || c == '-' || c == '&')
        {
            acronyms.insert(inner.to_string());
        }
    }
    // A clinical abbreviation ("ICU", "CABG") is never taken for an organisation's.
    acronyms.retain(|a| !words.is_medical_word(a) && !words.is_function_word(a));
    if names.is_empty() && acronyms.is_empty() {
        return;
    }
    let lower = text.to_lowercase();
    let mut found = Vec::new();
    for name in &names {
        for (at, _) in lower.match_indices(name.as_str()) {
            // Lower-casing can change byte lengths outside ASCII: check it maps back.
            let end = at + name.len();
            if text.is_char_boundary(at) && text.is_char_boundary(end) && at_word_boundaries(text, at, end) {
                found.push(PhiSpan { start: at, end, category: PhiCategory::Hospital });
            }
        }
    }
    for acronym in &acronyms {
        for (at, _) in text.match_indices(acronym.as_str()) {
            if at_word_boundaries(text, at, at + acronym.len()) {
                found.push(PhiSpan { start: at, end: at + acronym.len(), category: PhiCategory::Hospital });
            }
        }
    }
    spans.extend(found);
}

/// Whether `start..end` begins and ends a word (no letter or digit just outside it).
fn at_word_boundaries(text: &str, start: usize, end: usize) -> bool {
    !text[..start].chars().next_back().is_some_and(char::is_alphanumeric)
        && !text[end..].chars().next().is_some_and(char::is_alphanumeric)
}

/// Numeric dates must have a month 1–12 and a day 1–31 in some order.
fn plausible_numeric_date(s: &str) -> bool {
    let numbers: Vec<u32> = s.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    if numbers.len() < 2 || s.chars().any(|c| c.is_alphabetic()) {
        return true;
    }
    // Month/year ("3/80") and month/day ("2/18") with a cue were matched as such, and
    // day/month ("28/05") where the day cannot be a month.
    if numbers.len() == 2 {
        let year_month = (1900..=2099).contains(&numbers[0]) && (1..=12).contains(&numbers[1]);
        let day_month = (13..=31).contains(&numbers[0]) && (1..=12).contains(&numbers[1]);
        return year_month
            || day_month
            || (1..=12).contains(&numbers[0])
                && ((1..=99).contains(&numbers[1]) || (1900..=2099).contains(&numbers[1]));
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
