//! Recall-first identifiers: a token that looks like an identifier — digits mixed with
//! letters or separators, or a long run of digits — is PHI unless it is recognised as a
//! clinical value (a dose, a lab value with its unit, a ratio, a range, a time, a score, a
//! stage, a gene or variant, a code of ICD-10, LOINC or HGVS shape). The allow-list is
//! what grows; anything it does not know is removed. Digit groups split by spaces
//! ("ABC 004 517 326", "0490 75 40 81") are one identifier.

use std::sync::OnceLock;

use regex::Regex;

use crate::data::phi::{PhiCategory, PhiSpan};

/// Separators that join the parts of one token ("QX21-0448-530", "5mg/325mg", "14:30").
fn is_joiner(c: u8) -> bool {
    matches!(c, b'-' | b'.' | b'/' | b'_' | b'#' | b':' | b'^' | b'+' | b'*' | b'(' | b')')
}

/// Byte ranges of tokens: letters and digits with inner joiners, holding a digit.
fn digit_tokens(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_alphanumeric() {
            at += 1;
            continue;
        }
        // A token starts at a word boundary: not inside a longer non-ASCII word.
        let start = at;
        let mut end = at;
        while end < bytes.len() {
            // A caret joins an exponent ("10^9/L"); before a letter it parts the components
            // of an HL7 field ("O23.02^Infection", "ADT^A01").
            let next = bytes.get(end + 1);
            let inner_joiner = is_joiner(bytes[end])
                && next.is_some_and(u8::is_ascii_alphanumeric)
                && (bytes[end] != b'^' || next.is_some_and(u8::is_ascii_digit))
                && end > start;
            if bytes[end].is_ascii_alphanumeric() || inner_joiner {
                end += 1;
            } else {
                break;
            }
        }
        let glued_to_letter = |b: Option<&u8>| b.is_some_and(|b| *b >= 0x80);
        let before_glued = start > 0 && glued_to_letter(bytes.get(start - 1));
        if bytes[start..end].iter().any(u8::is_ascii_digit)
            && !before_glued
            && !glued_to_letter(bytes.get(end))
        {
            tokens.push((start, end));
        }
        at = end.max(start + 1);
    }
    tokens
}

/// Units that may follow a number inside one token ("500mg", "37.2C", "12hr").
const UNITS: &str = "mg|mcg|ug|µg|μg|g|gm|gr|kg|lb|lbs|oz|ng|pg|fg|ml|mls|l|dl|cl|ul|µl|μl|mcl|fl|pl|cc|cm|mm|um|µm|nm|m|km|\
in|inch|ft|mmhg|cmh2o|bpm|hr|hrs|h|min|mins|sec|secs|s|ms|d|day|days|wk|wks|w|mo|mos|mth|yr|yrs|y|yo|yob|iu|miu|u|\
units|unit|meq|mmol|mol|umol|µmol|nmol|pmol|mosm|mosmol|k|kcal|cal|kj|hz|khz|mhz|kv|kvp|mas|gy|cgy|mgy|msv|sv|t|\
fr|f|c|ga|gauge|gtt|gtts|puff|puffs|tab|tabs|cap|caps|x|pct|pcs|mm3|cm2|cm3|m2|m3|l/min|lpm|mph|cells|copies|\
pts|pt|mosm/kg|gy/fx|fx|am|pm|a|p|st|nd|rd|th|xl|xr|er|sr|cr|la|dr|ct|od|os|ou|wpm|rpm|tpm|ppm|ppb|ppd|q|lt|rt|bl|\
kda|mb|kb|gb|bp|cgy/fx|mg/kg|iu/l|u/l|g/dl|mg/dl|mmol/l|ng/ml|pg/ml|meq/l|ml/hr|ml/min|ml/kg|mcg/kg|mcg/min|\
mg/hr|units/hr|u/hr|l/min|beats|bpm|breaths|rr|hpf|lpf|sq|kcal/kg|g/kg|ml/kg/hr|mg/m2|mg/kg/day";

struct Shapes {
    /// A clinical atom: a number (with a multiplication "2x3", a decimal, a sign) and
    /// an optional unit, a unit alone, an exponent.
    atom: Regex,
    /// Whole tokens of known clinical shapes.
    clinical: Regex,
    /// Tests and products named with a number ("CA19-9", "COVID-19", "SARS-CoV-2").
    versioned: Regex,
    /// Shapes of phone numbers within a token ("555-0199").
    phone: Regex,
}

fn shapes() -> &'static Shapes {
    static SHAPES: OnceLock<Shapes> = OnceLock::new();
    SHAPES.get_or_init(|| {
        let atom = format!(
            r"(?i)^(?:[<>~≥≤]?[x×]?[0-9]+(?:\.[0-9]+)?(?:[x×][0-9]+(?:\.[0-9]+)?)*(?:(?:{UNITS})(?:[0-9])?)?%?|(?:{UNITS})|[x×]?10\^[0-9]{{1,2}}|[0-9]{{1,2}}\^[0-9]{{1,2}}|q[0-9]+(?:h|hr|hrs|d|min|wk)?)$"
        );
        let clinical = [
            // ICD-10-CM ("S72.001A", "E11.65", "Z79.4"), ICD-9 with a dot ("250.00", "V58.67").
            r"[A-TV-Z][0-9]{2}(?:\.[0-9A-Z]{1,4})?",
            r"[VE]?[0-9]{3}\.[0-9]{1,2}",
            // LOINC ("2160-0", "4548-4").
            r"[0-9]{1,5}-[0-9]",
            // HGVS variants ("c.68_69delAG", "p.Arg117His", "g.12345A>G"), rsIDs.
            r"[cgmnpr]\.[A-Za-z0-9_*+>-]+",
            r"rs[0-9]+",
            // Procedure and supply codes of one letter and four digits (HCPCS "J7613",
            // dental "D2740"), amino-acid positions ("G12/G13").
            r"[A-Z][0-9]{4}",
            r"[A-Z][0-9]{1,4}[A-Z*]?(?:/[A-Z]?[0-9]{0,4}[A-Z*]?)+",
            // Reference sequences and genome builds ("NM_000059.4", "ENST00000380152", "GRCh38").
            r"(?:NM|NR|NP|NC|NG|NT|NW|XM|XR|XP|YP)_[0-9]+(?:\.[0-9]+)?",
            r"ENS[GTPE][0-9]{6,}(?:\.[0-9]+)?",
            r"GRCh3[78](?:\.p[0-9]+)?|hg(?:19|38)",
            // Cytobands ("17q21.31", "del5q").
            r"(?:chr)?(?:[0-9]{1,2}|X|Y)[pq][0-9]{1,2}(?:\.[0-9]{1,2})?",
            // Number-unit compounds joined by any joiner are handled by atoms; years ranges.
            r"(?:19|20)[0-9]{2}(?:-(?:19|20)?[0-9]{2})?",
            // TNM stages ("pT2aN1M0") and obstetric histories ("G3P2012", "G2P1A1").
            r"[cpyra]?T(?:[0-4X]|is)[a-d]?N[0-3X][a-c]?M[01X][a-c]?",
            r"G[0-9]{1,2}P[0-9]{1,5}(?:A[0-9]{1,2})?",
        ]
        .map(|s| format!("(?:{s})"))
        .join("|");
        Shapes {
            atom: Regex::new(&atom).expect("atom pattern compiles"),
            clinical: Regex::new(&format!("^(?:{clinical})$")).expect("clinical pattern compiles"),
            versioned: Regex::new(r"^[A-Za-z]{2,12}-?[0-9]{1,3}(?:-[0-9]{1,3})?$").expect("version pattern compiles"),
            phone: Regex::new(r"^(?:\+?1[-.])?(?:[0-9]{3}[-.])?[0-9]{3}[-.][0-9]{4}$").expect("phone pattern compiles"),
        }
    })
}

/// Whether `token` (letters and digits with joiners, at least one digit) is a clinical
/// value rather than an identifier.
pub(crate) fn is_clinical_value(token: &str) -> bool {
    let shapes = shapes();
    let digits = token.bytes().filter(u8::is_ascii_digit).count();
    let letters = token.bytes().filter(u8::is_ascii_alphabetic).count();
    if shapes.phone.is_match(token) {
        return false;
    }
    // Seven digits in a row are a record, account or specimen number whatever surrounds them.
    let longest_run = token.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
    if longest_run >= 7 {
        return false;
    }
    if letters == 0 && !token.bytes().any(is_joiner) {
        // A plain number: five digits and fewer are values and codes (CPT, counts); longer
        // runs, and five digits with a leading zero, are record, account and specimen numbers.
        return digits < 5 || digits == 5 && !token.starts_with('0');
    }
    if shapes.clinical.is_match(token) {
        return true;
    }
    let parts: Vec<&str> =
        token.split(['-', '/', ':', '+', '*', '_', '#', '(', ')']).filter(|p| !p.is_empty()).collect();
    // Letters with a zero-padded number are a code of someone's ("STD-031", "PT-007");
    // a decimal's fraction ("0.019x0.025") pads nothing.
    let zero_padded = token
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .flat_map(|group| group.split('.').next())
        .any(|group| group.len() >= 2 && group.starts_with('0'));
    // Sums ("3+3+3") and codon lists ("G12/G13", "V600E/K") are values.
    if token.contains('+') && parts.iter().all(|p| p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())) {
        return true;
    }
    if zero_padded && letters > 0 {
        return false;
    }
    if shapes.versioned.is_match(token) {
        return true;
    }

    let all_atoms = parts.iter().all(|p| shapes.atom.is_match(p));
    let numbers = parts.iter().filter(|p| p.bytes().all(|b| b.is_ascii_digit() || b == b'.')).count();
    if all_atoms {
        // "120/80", "5-10", "1:1000", "10-15mg", "5mg/325mg": at most two bare numbers, or
        // any number of parts when a unit names them. Three bare numbers ("004-517-326")
        // are no measurement; a long bare number inside is none either.
        let long_bare =
            parts.len() > 1 && parts.iter().any(|p| p.bytes().all(|b| b.is_ascii_digit()) && p.len() >= 5);
        return !long_bare && (numbers <= 2 || numbers < parts.len());
    }
    // Letters and digits mixed: a short code ("BRCA1", "L4-L5", "E4V5M6", "pT2N0M0",
    // "G2P1", "HLA-B27") holds few digits; an identifier ("QX21-0448-530", "FP-77881",
    // "A7731902") holds more.
    digits <= 3
}

/// Identifier tokens in `text` that no clinical shape accounts for, with a category from
/// the words before them (an MRN cue makes an MRN) or from their shape.
pub(crate) fn unrecognised_identifiers(text: &str) -> Vec<PhiSpan> {
    let mut spans = Vec::new();
    for (start, end) in digit_tokens(text) {
        let token = &text[start..end];
        // A number right after "#" or "No." with three digits or more is one ("(#4471)",
        // "provider # 17-7412"); "#2" is a list item.
        let numbered = text[..start].trim_end_matches(' ').ends_with('#')
            && token.bytes().filter(u8::is_ascii_digit).count() >= 3;
        if !numbered && (is_clinical_value(token) || followed_by_unit_word(text, end) && plain_number(token))
        {
            continue;
        }
        let category = if shapes().phone.is_match(token) {
            PhiCategory::Phone
        } else if is_compact_date(token) {
            PhiCategory::Date
        } else {
            cue_category(text, start)
        };
        spans.push(PhiSpan { start: with_letter_prefix(text, start), end, category });
    }
    spans.extend(spaced_digit_groups(text));
    spans
}

/// An identifier's start moved over a capitals prefix that belongs to it ("TCSO
/// 2023-088127", "KBCH 7782104"); a cue word ("MRN", "ID") is not part of the value.
fn with_letter_prefix(text: &str, start: usize) -> usize {
    const NOT_PREFIXES: [&str; 24] = [
        "zip", "ssn", "mrn", "dob", "fax", "tel", "cell", "npi", "dea", "clia", "ref", "acct", "hosp",
        "room", "bed", "unit", "apt", "suite", "lot", "box", "cpt", "icd", "ndc", "loinc",
    ];
    let before = &text[..start];
    let Some(rest) = before.strip_suffix(' ') else { return start };
    let word_start = rest
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_ascii_alphabetic())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &rest[word_start..];
    let boundary = word_start == 0 || !rest[..word_start].ends_with(|c: char| c.is_alphanumeric());
    // Two capitals are a state ("TN 4D-88K2"), a unit or a cue as often as a prefix.
    if (3..=6).contains(&word.len())
        && word.bytes().all(|b| b.is_ascii_uppercase())
        && boundary
        && !is_cue_word(word)
        && !NOT_PREFIXES.contains(&word.to_ascii_lowercase().as_str())
    {
        word_start
    } else {
        start
    }
}

/// Eight digits that read as a date, year first ("20240311").
fn is_compact_date(token: &str) -> bool {
    token.len() == 8
        && token.bytes().all(|b| b.is_ascii_digit())
        && matches!(&token[..2], "19" | "20")
        && token[4..6].parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
        && token[6..8].parse::<u32>().is_ok_and(|d| (1..=31).contains(&d))
}

/// Digits with separators only ("250000", "100-1500").
fn plain_number(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b',' | b'-' | b'/' | b':'))
}

/// "250000 cells", "125000 copies/mL", "1500000 IU": a count with its unit after a space.
fn followed_by_unit_word(text: &str, end: usize) -> bool {
    let rest = text[end..].trim_start_matches(' ');
    let word: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    const COUNT_UNITS: [&str; 16] = [
        "cells", "copies", "iu", "units", "u", "cfu", "per", "x", "ml", "mg", "mcg", "g", "kcal", "cal",
        "steps", "ng",
    ];
    COUNT_UNITS.contains(&word.as_str()) || word.is_empty() && rest.starts_with('/')
}

/// Runs of digit groups split by single spaces or hyphens, seven digits or more in three
/// groups or more ("004 517 326", "0490 75 40 81"), with a letter prefix that is not a cue
/// ("ABC 004 517 326").
fn spaced_digit_groups(text: &str) -> Vec<PhiSpan> {
    static GROUPS: OnceLock<Regex> = OnceLock::new();
    let groups = GROUPS.get_or_init(|| {
        Regex::new(r"(?-u:\b)(?:[A-Z]{1,6} )?[0-9]{1,5}(?:[ -][0-9]{1,5}){1,5}(?-u:\b)")
            .expect("groups compile")
    });
    let mut spans = Vec::new();
    for m in groups.find_iter(text) {
        let mut start = m.start();
        let value = m.as_str();
        let digits = value.bytes().filter(u8::is_ascii_digit).count();
        let prefix_end = value.find(' ').filter(|&i| value[..i].bytes().all(|b| b.is_ascii_uppercase()));
        let groups = value[prefix_end.map_or(0, |i| i + 1)..].split([' ', '-']).count();
        let spaced = value[prefix_end.map_or(0, |i| i + 1)..].contains(' ');
        // Hyphen-only runs are tokens (handled above); a decimal next to it is a lab list.
        // Without a letter prefix, three groups or more ("004 517 326"); with one, two
        // ("KBCH 778 2104").
        let enough_groups = groups >= 3 || groups == 2 && prefix_end.is_some();
        let decimal_next =
            text[m.end()..].starts_with('.') && text[m.end() + 1..].starts_with(char::is_numeric);
        if digits < 7 || !spaced || !enough_groups || decimal_next {
            continue;
        }
        if let Some(prefix_end) = prefix_end
            && (is_cue_word(&value[..prefix_end]) || prefix_end == 0)
        {
            start += prefix_end + 1;
        }
        spans.push(PhiSpan { start, end: m.end(), category: cue_category(text, start) });
    }
    spans
}

/// Cue words whose values are identifiers of a known category, lower case.
const CUES: [(&str, PhiCategory); 44] = [
    ("mrn", PhiCategory::Mrn),
    ("mr", PhiCategory::Mrn),
    ("record", PhiCategory::Mrn),
    ("chart", PhiCategory::Mrn),
    ("unit", PhiCategory::Mrn),
    ("hospital", PhiCategory::Mrn),
    ("acct", PhiCategory::Account),
    ("account", PhiCategory::Account),
    ("billing", PhiCategory::Account),
    ("encounter", PhiCategory::Account),
    ("visit", PhiCategory::Account),
    ("fin", PhiCategory::Account),
    ("claim", PhiCategory::Account),
    ("invoice", PhiCategory::Account),
    ("member", PhiCategory::HealthPlan),
    ("policy", PhiCategory::HealthPlan),
    ("insurance", PhiCategory::HealthPlan),
    ("subscriber", PhiCategory::HealthPlan),
    ("plan", PhiCategory::HealthPlan),
    ("group", PhiCategory::HealthPlan),
    ("medicaid", PhiCategory::HealthPlan),
    ("medicare", PhiCategory::HealthPlan),
    ("beneficiary", PhiCategory::HealthPlan),
    ("license", PhiCategory::License),
    ("licence", PhiCategory::License),
    ("lic", PhiCategory::License),
    ("dea", PhiCategory::License),
    ("npi", PhiCategory::License),
    ("clia", PhiCategory::License),
    ("certificate", PhiCategory::License),
    ("cert", PhiCategory::License),
    ("vin", PhiCategory::Vehicle),
    ("plate", PhiCategory::Vehicle),
    ("serial", PhiCategory::Device),
    ("sn", PhiCategory::Device),
    ("s/n", PhiCategory::Device),
    ("udi", PhiCategory::Device),
    ("device", PhiCategory::Device),
    ("lot", PhiCategory::Device),
    ("ssn", PhiCategory::Ssn),
    ("phone", PhiCategory::Phone),
    ("tel", PhiCategory::Phone),
    ("fax", PhiCategory::Fax),
    ("cell", PhiCategory::Phone),
];

fn is_cue_word(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    CUES.iter().any(|(cue, _)| *cue == lower)
        || matches!(
            lower.as_str(),
            "id" | "no"
                | "num"
                | "ref"
                | "pt"
                | "dob"
                | "tel"
                | "ph"
                | "fax"
                | "room"
                | "rm"
                | "bed"
                | "case"
                | "acc"
                | "order"
                | "req"
                | "job"
                | "doc"
                | "pin"
                | "code"
                | "npi"
                | "dea"
                | "enc"
                | "csn"
                | "har"
                | "fin"
        )
}

/// The category the words just before `start` (on its line, up to 32 bytes) give a value.
pub(crate) fn cue_category(text: &str, start: usize) -> PhiCategory {
    let mut from = start.saturating_sub(32);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    // A word cut by the window is not a cue ("…tel" of "hotel").
    while from > 0 && from < start && text.as_bytes()[from - 1].is_ascii_alphanumeric() {
        from += 1;
        while !text.is_char_boundary(from) {
            from += 1;
        }
    }
    let before = &text[from..start];
    let line = before.rsplit('\n').next().unwrap_or(before).to_ascii_lowercase();
    // The nearest cue wins: "Member ID 123, MRN 456" gives the MRN to 456.
    let mut best = PhiCategory::Id;
    let mut word_start = None;
    for (i, c) in line.char_indices().chain([(line.len(), ' ')]) {
        let in_word = c.is_ascii_alphanumeric() || c == '/';
        match (in_word, word_start) {
            (true, None) => word_start = Some(i),
            (false, Some(start)) => {
                if let Some((_, category)) = CUES.iter().find(|(cue, _)| *cue == &line[start..i]) {
                    best = *category;
                }
                word_start = None;
            }
            _ => {}
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<&str> {
        unrecognised_identifiers(text).iter().map(|s| &text[s.start..s.end]).collect()
    }

    #[test]
    fn identifiers_of_unknown_shape_are_phi() {
        for (text, id) in [
            ("Accession QX21-0448-530 received.", "QX21-0448-530"),
            ("Specimen S19-442-20931.", "S19-442-20931"),
            ("Report MR-1207-19-4418", "MR-1207-19-4418"),
            ("CLIA 05D2098765", "05D2098765"),
            ("fingerprint FP-77881 on file", "FP-77881"),
            ("Member XGH449120331", "XGH449120331"),
            ("plan id 88231007B", "88231007B"),
            ("ref 00482913", "00482913"),
            ("call 555-0199", "555-0199"),
            ("MRN ABC 004 517 326", "ABC 004 517 326"),
            ("Mobile 0490 75 40 81", "0490 75 40 81"),
        ] {
            assert!(found(text).contains(&id), "{id} not found in {text:?}: {:?}", found(text));
        }
    }

    #[test]
    fn clinical_values_are_not_identifiers() {
        for text in [
            "Metformin 500mg BID, hydrocodone/APAP 5/325mg q6h prn, 0.9% NS at 125mL/hr.",
            "BP 128/82, HR 76, T 37.2C, SpO2 97%, wt 82.5kg, WBC 12.4 x10^9/L, plt 250 x10^3/uL.",
            "BRCA1 c.68_69delAG, BRAF V600E, HLA-B27, CA19-9 42, COVID-19, SARS-CoV-2, HbA1c 7.2%.",
            "pT2N0M0, G2P1011, E4V5M6, L4-L5, C5-6, T12, ICD-10 E11.65, S72.001A, LOINC 2160-0.",
            "Epinephrine 1:1000, 2019-2021, 10-15 mg, CPT 99213, 2.3x1.4cm, 14:30, 3rd, x3, 12-lead.",
            "Platelets 250000 cells/uL, viral load 125000 copies/mL.",
        ] {
            assert!(found(text).is_empty(), "false hit in {text:?}: {:?}", found(text));
        }
    }

    #[test]
    fn zero_padded_numbers_and_numbers_after_a_hash_are_identifiers() {
        assert_eq!(found("Subject STD-031 randomised"), ["STD-031"]);
        assert_eq!(found("Officer R. Q. (#4471)"), ["4471"]);
        assert_eq!(found("ZIP 02332, code 99213, at 0800, item #2"), ["02332"]);
    }

    #[test]
    fn cues_name_the_category() {
        let text = "Member ID 88231007B, MRN 00482913, serial FP-77881";
        let categories: Vec<PhiCategory> =
            unrecognised_identifiers(text).iter().map(|s| s.category).collect();
        assert_eq!(categories, [PhiCategory::HealthPlan, PhiCategory::Mrn, PhiCategory::Device]);
    }

    #[test]
    fn a_capitals_prefix_belongs_to_the_identifier_and_a_cue_does_not() {
        assert_eq!(found("Police report TCSO 2023-088127 dated"), ["TCSO 2023-088127"]);
        assert_eq!(found("MRN 2023-088127"), ["2023-088127"]);
        assert_eq!(found("Enc# E240107-0031"), ["E240107-0031"]);
        assert_eq!(found("MRN KBCH 778 2104 seen"), ["KBCH 778 2104"]);
    }
}
