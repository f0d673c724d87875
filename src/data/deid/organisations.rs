//! Organisations that locate a patient: a capitalised phrase headed by an organisation
//! word — laboratory, imaging, infusion, clinic, hospital or "Hosp", pharmacy, associates,
//! group, court, school, church, company words — with at least one word that makes it a
//! particular one ("Lakeside Regional Laboratory", "Regional Hosp", "Pinnacle
//! Orthopaedic Associates", "Marion County Superior Court"). A phrase of generic words
//! alone ("Cardiology Clinic", "Emergency Department", "Home Health") is a service, not a
//! place, and stays.

use std::collections::HashSet;

use super::words::Words;
use crate::data::phi::{PhiCategory, PhiSpan};

/// Words that make a capitalised phrase an organisation, lower case, without a final dot.
const HEADS: &str = "hospital hospitals hosp hospitalists infirmary sanatorium sanitarium polyclinic clinic clinics \
klinik center centre ctr centers centres medical med health healthcare health-care healthsystem wellness \
laboratory laboratories lab labs imaging radiology diagnostics diagnostic pathology infusion infusions pharmacy \
pharmacies drugstore drug drugs apothecary pharmaceuticals associates assoc partners group practice physicians \
specialists doctors institute inst foundation services svcs court school schools academy college university univ \
church chapel cathedral mosque synagogue temple parish ministries ministry company co inc incorporated llc llp \
pllc pc corp corporation ltd limited hospice dialysis surgical surgery surgeons dental dentistry orthodontics \
pediatrics paediatrics orthopedics orthopaedics orthopedic orthopaedic cardiology oncology neurology dermatology \
urology gastroenterology ophthalmology optometry podiatry chiropractic physiotherapy rehab rehabilitation \
therapy therapeutics manor villa residence residences shelter mission prison jail penitentiary correctional \
detention police sheriff bank store market industries systems solutions logistics motors airlines agency bureau \
firm network alliance cooperative consortium society association federation union league club ymca ywca \
kindergarten daycare preschool seminary elementary obgyn midwifery medicine nursing home homes care living \
general memorial district authority library museum commission council defender polytechnic supply supplies \
genomics genetics biosciences biotech parts ems rescue ambulance transport transit lumber mills mill works \
factory farms ranch dairy bakery restaurant diner cafe grill pub hotel motel inn resort casino mall stores shop \
outlet supermarket grocery foods depot warehouse storage trucking freight construction builders roofing \
plumbing electric energy utilities mining steel textiles textile manufacturing technologies software studios \
media publishing bank realty properties apartments lodge airport airlines railway railroad marina zoo stadium \
arena theater theatre gym fitness conservatory prep preparatory montessori army navy corps regiment battalion \
troop mission ministries abbey monastery convent congregation fellowship assembly tabernacle funeral mortuary \
cemetery crematorium rx pharma endodontics periodontics prosthodontics orthodontists endodontist \
dermatology pulmonology nephrology rheumatology endocrinology hematology allergy audiology sleep vision eyecare \
optical opticians imaging lifeflight medflight airmed telehealth telemedicine medride consultants consulting partnership \
cooperative collective trust credit service hub haven express rentals rental transportation \
boatworks superette studio salon salons barbershop garage pharmacie laboratoire clinique hôpital hopital \
clínica clinica farmacia laboratorio sanatorio policlínico policlinico ospedale klinikum krankenhaus praxis \
apotheke ziekenhuis apotek sjukhus botika cic hardware co-op coop farm orchard orchards vineyard vineyards \
winery brewery distillery stevedoring shipping packing packers cannery quarry nursery nurseries greenhouse \
greenhouses landscaping";

/// Heads that are also everyday words ("Park", "Station", "Unit"): the particular word must
/// be a proper one (no everyday word) or a modifier.
const WEAK_HEADS: &str = "unit units board office station park place court village heights gardens terrace \
towers yard bar power water gas oil house tower center centre care home homes living group services system \
network program programme project team arms private";

/// Heads that come first in the languages that name a place after its kind ("Hôpital
/// Sainte-Justine", "Clínica San José", "CLSC du Plateau"): the particular words follow.
const LEADING_HEADS: &str = "hôpital hopital clinique centre centro clínica clinica farmacia pharmacie \
laboratoire laboratorio sanatorio policlínico policlinico ospedale klinikum krankenhaus apotheke \
ziekenhuis sjukhus botika clsc gmf chu chsld école ecole collège college escuela colegio universidad \
université universidade iglesia église eglise parroquia paroisse";

/// Heads that end a phrase even when capitalised words follow ("Acme Labs Inc").
const COMPANY_SUFFIXES: &str = "inc incorporated llc llp pllc pc corp corporation ltd limited co plc gmbh lp";

/// Words that make an organisation particular although they are ordinary words.
const MODIFIERS: &str = "regional memorial community university county state city national international \
united american christian baptist methodist presbyterian lutheran catholic adventist episcopal evangelical \
jewish mercy grace hope providence samaritan sacred heart saint st mount mt north south east west northern \
southern eastern western central northeast northwest southeast southwest valley lake lakeside river riverside \
mountain hill hills park bay coast coastal harbor harbour pine oak cedar maple willow sunrise sunset summit \
pinnacle premier golden silver crescent highland highlands metro metropolitan capital district tri-county \
tri-state veterans greater lady";

/// Generic words of services and departments: a phrase of these (and heads) names a kind
/// of place, not one place.
const GENERIC: &str = "emergency urgent primary family internal general outpatient inpatient ambulatory day acute \
critical intensive long-term short-term skilled assisted memory senior adult adults child children children's \
women's womens women men's mens pediatric paediatric neonatal maternal fetal behavioral behavioural mental \
public sexual reproductive occupational physical speech respiratory wound sleep pain palliative comfort \
supportive hospice home personal respite foster cancer heart vascular vein spine joint bone eye ear dental \
infusion dialysis transplant trauma burn stroke diabetes weight bariatric cardiac cardiovascular pulmonary \
renal kidney liver digestive breast imaging radiology laboratory lab surgical surgery medical clinical \
specialty specialist specialists multispecialty multi-specialty health care services service department dept \
unit units floor ward wing main central satellite outreach community-based local nearest nearby outside \
same other another any all a an the our my your his her their this that these those new old next previous \
prior patient patients pt family student employee staff walk-in after-hours express immediate minor \
infectious travel vaccine immunization allergy asthma wellness recovery addiction substance detox treatment \
rehab rehabilitation therapy therapeutic nursing home homes care living facility center centre clinic \
hospital hospitals group practice association society network system systems program programs office \
court school college university church company";

/// Words that join the words of an organisation's name.
const CONNECTORS: [&str; 29] = [
    "of", "the", "and", "&", "for", "at", "de", "la", "del", "du", "des", "los", "las", "y", "on", "upon",
    "ni", "ng", "di", "da", "do", "dos", "das", "della", "van", "von", "der", "den", "et",
];

pub(crate) struct OrganisationFinder {
    heads: HashSet<&'static str>,
    leading_heads: HashSet<&'static str>,
    weak_heads: HashSet<&'static str>,
    company_suffixes: HashSet<&'static str>,
    modifiers: HashSet<&'static str>,
    generic: HashSet<&'static str>,
}

/// A word of a line with its byte range and whether punctuation closed it ("Center," ends
/// the phrase).
#[derive(Clone, Copy)]
struct Word {
    start: usize,
    end: usize,
    closed: bool,
}

impl OrganisationFinder {
    pub(crate) fn new() -> OrganisationFinder {
        OrganisationFinder {
            heads: HEADS
                .split_whitespace()
                .chain(WEAK_HEADS.split_whitespace())
                .chain(LEADING_HEADS.split_whitespace())
                .collect(),
            leading_heads: LEADING_HEADS.split_whitespace().collect(),
            weak_heads: WEAK_HEADS.split_whitespace().collect(),
            company_suffixes: COMPANY_SUFFIXES.split_whitespace().collect(),
            modifiers: MODIFIERS.split_whitespace().collect(),
            generic: GENERIC.split_whitespace().collect(),
        }
    }

    /// Organisation spans in `text`; a name may run over a line break.
    pub(crate) fn find(&self, text: &str, words: &Words) -> Vec<PhiSpan> {
        let joined = join_wrapped_names(text);
        let text = joined.as_str();
        let mut spans = Vec::new();
        let mut line_start = 0;
        for line in text.split_inclusive('\n') {
            self.find_in_line(text, line_start, line.trim_end_matches('\n'), words, &mut spans);
            line_start += line.len();
        }
        spans
    }

    fn find_in_line(&self, text: &str, offset: usize, line: &str, words: &Words, spans: &mut Vec<PhiSpan>) {
        let tokens = line_words(line);
        if tokens.is_empty() {
            return;
        }
        let lower = |w: &Word| key(&line[w.start..w.end]);
        let capitalised =
            |w: &Word| line[w.start..w.end].chars().next().is_some_and(|c| c.is_uppercase() || c == '&');
        let all_caps_line = line.chars().filter(|c| c.is_alphabetic()).all(|c| !c.is_lowercase());
        let mut i = 0;
        while i < tokens.len() {
            // A run of capitalised words and inner connectors, unbroken by punctuation.
            if !capitalised(&tokens[i]) {
                i += 1;
                continue;
            }
            let mut run = vec![tokens[i]];
            let mut j = i + 1;
            while j < tokens.len() && !run.last().is_some_and(|w| w.closed) {
                let w = tokens[j];
                // A dash or a slash between words parts two phrases ("Progress Note — Hospital").
                let gap = &line[run.last().map_or(w.start, |p| p.end)..w.start];
                if !gap.chars().all(char::is_whitespace) {
                    break;
                }
                if capitalised(&w) || CONNECTORS.contains(&lower(&w).as_str()) {
                    run.push(w);
                    j += 1;
                } else {
                    break;
                }
            }
            while run.last().is_some_and(|w| CONNECTORS.contains(&lower(w).as_str())) {
                run.pop();
            }
            i = j.max(i + 1);
            if let Some((first, last)) = self.organisation_in(line, &run, words, all_caps_line) {
                let last_word = &line[run[last].start..run[last].end];
                let mut end = run[last].end;
                if last_word.ends_with('.') && !is_abbreviation(last_word) {
                    end -= 1;
                }
                let end = end + trailing_designation(&line[end..]);
                let _ = text;
                spans.push(PhiSpan {
                    start: offset + run[first].start,
                    end: offset + end,
                    category: PhiCategory::Hospital,
                });
            }
        }
    }

    /// The organisation inside a run of capitalised words: first and last word indexes.
    fn organisation_in(
        &self,
        line: &str,
        run: &[Word],
        words: &Words,
        all_caps_line: bool,
    ) -> Option<(usize, usize)> {
        let keys: Vec<String> = run.iter().map(|w| key(&line[w.start..w.end])).collect();
        // "Midwest Axle & Gear": capitalised words joined by "&" name a firm whatever
        // their last word is.
        let ampersand = (1..run.len().saturating_sub(1))
            .rev()
            .find(|&k| keys[k] == "&" && !all_caps_line)
            .map(|_| run.len() - 1);
        let head = (0..run.len()).rev().find(|&k| self.heads.contains(keys[k].as_str())).or(ampersand)?;
        // A head followed by "of" and a particular name: "Hospital of Saint Mary".
        let mut last = head;
        while last + 1 < run.len() && self.company_suffixes.contains(keys[last + 1].as_str()) {
            last += 1;
        }
        if last == head && head + 2 < run.len() && keys[head + 1] == "of" {
            let mut k = head + 2;
            while k < run.len()
                && (CONNECTORS.contains(&keys[k].as_str())
                    || self.is_distinctive(&line[run[k].start..run[k].end], &keys[k], words))
            {
                k += 1;
            }
            while k > head + 2 && CONNECTORS.contains(&keys[k - 1].as_str()) {
                k -= 1;
            }
            if k > head + 2 {
                last = k - 1;
            }
        }
        // A head that leads its name: "Hôpital Sainte-Ursule-du-Parc", "CLSC du Plateau".
        if last == head && self.leading_heads.contains(keys[head].as_str()) {
            let mut k = head + 1;
            while k < run.len()
                && (CONNECTORS.contains(&keys[k].as_str())
                    || self.is_distinctive(&line[run[k].start..run[k].end], &keys[k], words))
            {
                k += 1;
            }
            while k > head + 1 && CONNECTORS.contains(&keys[k - 1].as_str()) {
                k -= 1;
            }
            if k > head + 1 {
                last = k - 1;
            }
        }
        // Leading words that are not part of the name: connectors, plain words, and an
        // ordinary word that starts the sentence or an all-capitals line.
        let mut first = 0;
        while first < head {
            let word = &line[run[first].start..run[first].end];
            let k = keys[first].as_str();
            let sentence_start = is_sentence_start(line, run[first].start);
            // A capitalised everyday word inside a sentence belongs to the name ("at Green
            // Mountain Endodontics", "New Halden Free Public Library"); grammar words and
            // words that start the sentence or a line of capitals do not.
            let grammar_word = words.is_function_word(word)
                && (sentence_start || all_caps_line || LEADING_GRAMMAR_WORDS.contains(&k));
            let droppable = CONNECTORS.contains(&k)
                || !self.modifiers.contains(k)
                    && (grammar_word
                        || (all_caps_line || words.is_medical_word(word) && !words.is_dictionary_name(word))
                            && (words.is_common_word(word) || words.is_medical_word(word))
                            && self.has_distinctive_after(line, run, &keys, first + 1, head, words));
            // "Hearing at …", "Followed at the …": a word before "at", "to", "from" … is
            // what happened there, not the place's name.
            let before_preposition = first + 1 < head
                && matches!(keys[first + 1].as_str(), "at" | "to" | "from" | "in" | "by" | "with" | "on")
                && !self.modifiers.contains(k)
                && !self.heads.contains(k);
            if before_preposition {
                first += 1;
                while first < head && CONNECTORS.contains(&keys[first].as_str()) {
                    first += 1;
                }
                continue;
            }
            if !droppable {
                break;
            }
            first += 1;
        }
        // In a line of capitals every word looks like a name: ask for a proper word there too.
        let weak = self.weak_heads.contains(keys[head].as_str()) || all_caps_line;
        let distinctive =
            (first..=last).filter(|&k| k != head && !CONNECTORS.contains(&keys[k].as_str())).any(|k| {
                let word = &line[run[k].start..run[k].end];
                self.is_distinctive(word, &keys[k], words)
                    && (!weak || self.modifiers.contains(keys[k].as_str()) || !words.is_common_word(word))
            });
        distinctive.then_some((first, last))
    }

    fn has_distinctive_after(
        &self,
        line: &str,
        run: &[Word],
        keys: &[String],
        from: usize,
        head: usize,
        words: &Words,
    ) -> bool {
        (from..head).any(|k| {
            self.is_distinctive(&line[run[k].start..run[k].end], &keys[k], words)
                && !words.is_common_word(&line[run[k].start..run[k].end])
        })
    }

    /// A word that makes an organisation one in particular: a modifier, or a word that is
    /// neither generic nor medical nor plain.
    fn is_distinctive(&self, word: &str, key: &str, words: &Words) -> bool {
        if self.modifiers.contains(key) {
            return true;
        }
        if self.generic.contains(key) || self.heads.contains(key) || self.company_suffixes.contains(key) {
            return false;
        }
        // Initials and acronyms ("UCSF", "MGH") count; a lone capital does not.
        let letters = word.chars().filter(|c| c.is_alphabetic()).count();
        // A person's name in an organisation counts even when a disease bears it ("Jefferson").
        letters >= 2
            && (!words.is_medical_word(word) || words.is_dictionary_name(word))
            && !words.is_function_word(word)
    }
}

/// `text` with the line breaks that wrap a name ("Trinity\n  Lutheran Church", "Metro
/// Prairie Community\nCollege") turned into spaces of the same length, so offsets hold: a
/// break between a capitalised word ending one line and a capitalised word starting the
/// next, with no punctuation and no blank line between.
fn join_wrapped_names(text: &str) -> String {
    let mut joined = text.as_bytes().to_vec();
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices('\n') {
        let before = &text[..at];
        let last_word_start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_alphanumeric() && !matches!(c, '\'' | '’' | '-' | '.'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let last_word = &before[last_word_start..];
        let ends_capitalised = last_word.chars().next().is_some_and(char::is_uppercase)
            && last_word.chars().last().is_some_and(char::is_alphabetic);
        let indent = text[at + 1..].len() - text[at + 1..].trim_start_matches([' ', '\t']).len();
        let next = at + 1 + indent;
        let starts_capitalised = text[next..].chars().next().is_some_and(char::is_uppercase);
        // The next line's first word must not be a label ("Phone:") or a list item.
        let next_word: &str = text[next..].split(|c: char| c.is_whitespace()).next().unwrap_or("");
        // Headers and table rows are lines of their own: a line of capitals or one with a tab.
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let next_end = text[next..].find('\n').map_or(text.len(), |i| next + i);
        let table_or_header = |line: &str| {
            line.contains('\t') || line.chars().filter(|c| c.is_alphabetic()).all(|c| !c.is_lowercase())
        };
        if ends_capitalised
            && starts_capitalised
            && !next_word.ends_with(':')
            && last_word_start < at
            && !table_or_header(&text[line_start..at])
            && !table_or_header(&text[next..next_end])
        {
            for b in &mut joined[at..next] {
                *b = b' ';
            }
        }
    }
    let _ = bytes;
    // Only ASCII bytes ('\n', ' ', '\t') were replaced by spaces, so the text is still UTF-8.
    String::from_utf8(joined).unwrap_or_else(|_| text.to_string())
}

/// Words that open a phrase before a name and never start one.
const LEADING_GRAMMAR_WORDS: &[&str] = &[
    "the", "a", "an", "at", "to", "from", "in", "of", "on", "and", "or", "with", "by", "for", "per", "via",
    "our", "his", "her", "their", "my", "your", "its", "this", "that", "these", "those", "seen", "see",
    "call", "called", "contact", "dear", "re", "cc", "fax", "tel", "phone", "attn", "visit", "visited",
    "patient",
];

/// Bytes after an organisation's name that belong to it: ", LLC", " Inc.", " #2281",
/// " No. 4", " – Harbour Street" is left out.
fn trailing_designation(rest: &str) -> usize {
    static DESIGNATION: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let designation = DESIGNATION.get_or_init(|| {
        regex::Regex::new(
            r"^(?:(?:,?\s*\(?(?i:l\.l\.c\.|p\.c\.|p\.a\.|s\.a\.|s\.p\.a\.|b\.v\.|n\.v\.|inc\.|ltd\.|co\.|corp\.|pvt\.|pty\.|de\s+c\.v\.)\)?|,?\s*\(?(?:(?i:llc|inc|ltd|pllc|llp|corp|plc|gmbh|pty|pvt|private|limited)|PC|LP|CIC|ULC|SAS|SARL|SRL|SpA|SPA|BV|NV|AG|Oy|AB|AS|ApS|Sdn\s+Bhd|Bhd|Pte|KK)(?-u:\b)\)?)+|\s*(?:#|No\.?\s*|Store\s*#?\s*)[0-9]{1,6}(?-u:\b))",
        )
            .expect("designation pattern compiles")
    });
    designation.find(rest).map_or(0, |m| m.end())
}

/// A word of the generic vocabulary of services ("emergency", "clinic", "department").
pub(crate) fn is_generic_word(word: &str) -> bool {
    static GENERIC_WORDS: std::sync::OnceLock<HashSet<&'static str>> = std::sync::OnceLock::new();
    GENERIC_WORDS.get_or_init(|| GENERIC.split_whitespace().collect()).contains(key(word).as_str())
}

/// Lower case without a final dot or a possessive ("Hosp." → "hosp", "Mary's" → "mary's").
fn key(word: &str) -> String {
    word.trim_end_matches('.').to_lowercase()
}

/// Whether `at` starts a sentence of `line`: the line's first word, or after ". ", "? ", "! ".
fn is_sentence_start(line: &str, at: usize) -> bool {
    let before = line[..at].trim_end();
    before.is_empty() || before.ends_with(['.', '?', '!', ':', '-', '•', '*', ')'])
}

/// Words of a line: letters, digits and inner `'`, `’`, `.`, `-`, `&`, `/`; "&" alone is a word.
fn line_words(line: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let bytes = line.as_bytes();
    let mut at = 0;
    while at < line.len() {
        let c = line[at..].chars().next().unwrap_or(' ');
        if c == '&' {
            words.push(Word { start: at, end: at + 1, closed: false });
            at += 1;
            continue;
        }
        if !c.is_alphanumeric() {
            at += c.len_utf8();
            continue;
        }
        let start = at;
        let mut end = at;
        for (i, n) in line[at..].char_indices() {
            let inner = matches!(n, '\'' | '’' | '-' | '&' | '/')
                && line[at + i + n.len_utf8()..].chars().next().is_some_and(char::is_alphanumeric);
            if n.is_alphanumeric() || inner {
                end = at + i + n.len_utf8();
            } else if n == '.' {
                // "St.", "Hosp.", "Co." keep their dot; a sentence's dot closes the word.
                end = at + i + 1;
                break;
            } else {
                break;
            }
        }
        let after = line[end..].chars().next();
        let closed = line[..end].ends_with('.') && !is_abbreviation(&line[start..end])
            || matches!(after, Some(',' | ';' | ':' | '(' | ')' | '"' | '|' | '[' | ']'));
        let _ = bytes;
        words.push(Word { start, end, closed });
        at = end.max(start + 1);
    }
    words
}

/// Abbreviations whose dot does not end the name: "St.", "Mt.", "Hosp.", "Ctr.".
pub(crate) fn is_abbreviation(word: &str) -> bool {
    let stem = word.trim_end_matches('.');
    matches!(
        stem.to_ascii_lowercase().as_str(),
        "st" | "mt"
            | "ft"
            | "hosp"
            | "ctr"
            | "med"
            | "assoc"
            | "univ"
            | "inst"
            | "dept"
            | "co"
            | "inc"
            | "corp"
            | "ltd"
            | "svcs"
            | "n"
            | "s"
            | "e"
            | "w"
            | "gen"
            | "mem"
            | "reg"
            | "comm"
            | "natl"
            | "intl"
    ) || stem.chars().count() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn organisations(text: &str) -> Vec<&str> {
        let words = Words::new();
        OrganisationFinder::new().find(text, &words).into_iter().map(|s| &text[s.start..s.end]).collect()
    }

    #[test]
    fn particular_organisations_are_found() {
        for (text, name) in [
            ("Specimen sent to Cascade Regional Laboratory for culture.", "Cascade Regional Laboratory"),
            ("Supplies from Brightwater Home Infusion, weekly.", "Brightwater Home Infusion"),
            ("Order of the Marion County Superior Court dated", "Marion County Superior Court"),
            ("Transferred from Regional Hosp. yesterday.", "Regional Hosp."),
            ("Follows with Pinnacle Orthopaedic Associates.", "Pinnacle Orthopaedic Associates"),
            ("CT at Northgate Imaging LLC showed", "Northgate Imaging LLC"),
            ("Admitted to the Hospital of Saint Bartholomew.", "Hospital of Saint Bartholomew"),
            ("She teaches at Jefferson Elementary School.", "Jefferson Elementary School"),
        ] {
            assert!(
                organisations(text).contains(&name),
                "{name} not found in {text:?}: {:?}",
                organisations(text)
            );
        }
    }

    #[test]
    fn services_and_departments_are_not_organisations() {
        for text in [
            "Seen in the Emergency Department, then Cardiology Clinic.",
            "Referred to Home Health and Physical Therapy.",
            "Wound Care Center follow-up; Outpatient Infusion Center next week.",
            "Comfort Care was discussed. Medical Center policy.",
        ] {
            assert!(organisations(text).is_empty(), "false hit in {text:?}: {:?}", organisations(text));
        }
    }
}
