//! PHI that the layout of a document announces: the value of a labelled field
//! ("Patient: …", "emergency_contact: …", "Last name: __…__", "City: …") and the cells of
//! a table column whose header names a kind of identifier ("NAME", "patient_last",
//! "ATTENDING", "user"). A label says what its value is whatever the value looks like, so
//! a name nobody's dictionary knows, in a header or an export, is found by where it is.

use super::words::Words;
use crate::data::phi::{PhiCategory, PhiSpan};

/// What a label announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    Name,
    Organisation,
    City,
    Address,
    Zip,
    Phone,
    Fax,
    Age,
    Date,
    Identifier,
}

/// Last words of labels whose value is a person's name.
const NAME_HEADS: &[&str] = &[
    "name",
    "names",
    "patient",
    "pt",
    "decedent",
    "deceased",
    "defendant",
    "petitioner",
    "respondent",
    "plaintiff",
    "claimant",
    "client",
    "insured",
    "subscriber",
    "guarantor",
    "contact",
    "kin",
    "nok",
    "spouse",
    "husband",
    "wife",
    "partner",
    "mother",
    "father",
    "parent",
    "parents",
    "guardian",
    "poa",
    "proxy",
    "caregiver",
    "provider",
    "physician",
    "doctor",
    "attending",
    "resident",
    "intern",
    "fellow",
    "surgeon",
    "assistant",
    "anesthesiologist",
    "anaesthetist",
    "anesthesia",
    "nurse",
    "rn",
    "lpn",
    "np",
    "author",
    "by",
    "signer",
    "cosigner",
    "pcp",
    "transcriptionist",
    "scribe",
    "technologist",
    "tech",
    "technician",
    "sonographer",
    "radiologist",
    "pathologist",
    "interpreter",
    "witness",
    "user",
    "username",
    "login",
    "examiner",
    "coordinator",
    "investigator",
    "pi",
    "driver",
    "employee",
    "student",
    "nickname",
    "aka",
    "alias",
    "maiden",
    "last",
    "first",
    "middle",
    "given",
    "family",
    "surname",
    "mi",
    "initials",
    "caller",
    "recipient",
    "sender",
    "to",
    "from",
    "attn",
    "attention",
    "judge",
    "officer",
    "manager",
    "worker",
    "chaplain",
    "pharmacist",
    "therapist",
    "counselor",
    "counsellor",
    "dietitian",
    "midwife",
    "sponsor",
    "friend",
    "son",
    "daughter",
    "brother",
    "sister",
    "grandson",
    "granddaughter",
    "aunt",
    "uncle",
    "niece",
    "nephew",
    "cousin",
    "child",
    "baby",
    "infant",
    "newborn",
    "mom",
    "dad",
    "referrer",
    "referring",
    "ordering",
    "requester",
    "requestor",
    "dictated",
    "transcribed",
    "reviewed",
    "verified",
    "approved",
    "prepared",
    "completed",
    "entered",
    "performed",
    "collected",
    "interpreted",
    "signed",
    "clinician",
    "practitioner",
    "consultant",
    "specialist",
    "registrar",
    "dentist",
    "hygienist",
    "optometrist",
    "podiatrist",
    "chiropractor",
    "paramedic",
    "emt",
    "clerk",
    "staff",
    "supervisor",
    "director",
    "owner",
    "preferred",
    "goes",
    "known",
    "informant",
    "historian",
    "accompanied",
    "escort",
    "visitor",
    "roommate",
    "neighbor",
    "neighbour",
    "employer contact",
    "pastor",
    "priest",
    "rabbi",
    "imam",
    "advocate",
    "attorney",
    "lawyer",
    "counsel",
    "deputy",
    "trooper",
    "detective",
    "sergeant",
    "agent",
    "inspector",
    "signature",
    "sign",
    "signatory",
    "prosecutor",
    "defence",
    "defense",
    "representative",
    "rep",
    "liaison",
    "navigator",
    "doula",
    "aide",
    "helper",
    "housemate",
    "fiance",
    "fiancee",
    "girlfriend",
    "boyfriend",
    "stepmother",
    "stepfather",
    "grandmother",
    "grandfather",
    "godparent",
    "custodian",
    "conservator",
    "executor",
    "beneficiary name",
];

/// Last words of labels whose value is an organisation that could locate the patient.
const ORGANISATION_HEADS: &[&str] = &[
    "hospital",
    "facility",
    "employer",
    "school",
    "pharmacy",
    "clinic",
    "practice",
    "agency",
    "company",
    "lab",
    "laboratory",
    "organization",
    "organisation",
    "institution",
    "church",
    "court",
    "firm",
    "workplace",
    "hospice",
    "snf",
    "shelter",
    "vendor",
    "supplier",
    "dme",
    "center",
    "centre",
    "system",
    "occupation employer",
    "college",
    "university",
    "daycare",
    "congregation",
    "parish",
    "ems",
];

const CITY_HEADS: &[&str] = &[
    "city",
    "town",
    "municipality",
    "county",
    "village",
    "suburb",
    "neighborhood",
    "neighbourhood",
    "birthplace",
    "hometown",
    "locality",
    "borough",
    "township",
];
const ADDRESS_HEADS: &[&str] = &["address", "addr", "street", "residence", "mailing", "domicile", "lives"];
const ZIP_HEADS: &[&str] = &["zip", "zipcode", "postal", "postcode", "zip code", "post code", "postal code"];
const PHONE_HEADS: &[&str] = &[
    "phone",
    "tel",
    "telephone",
    "mobile",
    "cell",
    "pager",
    "bleep",
    "beeper",
    "ph",
    "callback",
    "cellphone",
];
const DATE_HEADS: &[&str] = &[
    "dob",
    "birthdate",
    "birthday",
    "date",
    "dos",
    "datetime",
    "timestamp",
    "admitted",
    "discharged",
    "born",
    "admit",
    "discharge",
    "dt",
    "collected at",
    "died",
    "death",
    "expired",
    "visit",
    "appointment",
    "appt",
    "scheduled",
    "lmp",
    "edd",
    "edc",
    "dod",
];
/// Last words of labels whose value is an identifying number.
const IDENTIFIER_HEADS: &[&str] = &[
    "mrn",
    "id",
    "number",
    "no",
    "num",
    "nbr",
    "acct",
    "account",
    "ssn",
    "npi",
    "dea",
    "license",
    "licence",
    "lic",
    "policy",
    "group",
    "claim",
    "encounter",
    "enc",
    "fin",
    "csn",
    "har",
    "accession",
    "specimen",
    "case",
    "order",
    "requisition",
    "req",
    "serial",
    "sn",
    "vin",
    "plate",
    "badge",
    "udi",
    "mbi",
    "hicn",
    "nhs",
    "medicare",
    "medicaid",
    "member",
    "chart",
    "record",
    "ref",
    "reference",
    "ticket",
    "voucher",
    "confirmation",
    "tracking",
    "passport",
    "permit",
    "certificate",
    "cert",
    "clia",
    "ncpdp",
    "tin",
    "ein",
    "pin",
    "code",
    "key",
    "uid",
    "guid",
    "uuid",
    "barcode",
    "tag",
    "asset",
    "lot",
    "kit",
    "subject",
    "participant",
    "screening",
    "randomisation",
    "randomization",
    "session",
    "job",
    "doc",
    "docid",
    "msg",
    "message",
];
/// Words a label may end with that say nothing of its kind ("dob (mm/dd)", "timestamp utc").
const LABEL_TAILS: &[&str] =
    &["utc", "gmt", "local", "mm", "dd", "yyyy", "yy", "line1", "line2", "line", "1", "2", "3"];

/// Values that stand for no value.
const EMPTY_VALUES: &[&str] = &[
    "n/a",
    "na",
    "none",
    "unknown",
    "unk",
    "self",
    "same",
    "yes",
    "no",
    "declined",
    "not provided",
    "not given",
    "pending",
    "tbd",
    "nil",
    "-",
    "—",
    "null",
    "redacted",
    "withheld",
    "n",
    "y",
    "m",
    "f",
    "x",
    "other",
];

/// What a label announces, from its words (`patient_name`, "Emergency contact",
/// "Hospital no.").
pub(crate) fn classify_label(label: &str) -> Option<FieldKind> {
    // "postalCode", "birthDate", "phoneNumber": a key's words are split at its capitals.
    let mut normal = String::with_capacity(label.len() + 4);
    let mut previous_lower = false;
    for c in label.chars() {
        if c.is_uppercase() && previous_lower {
            normal.push(' ');
        }
        previous_lower = c.is_lowercase();
        normal.push(if c.is_alphanumeric() { c.to_ascii_lowercase() } else { ' ' });
    }
    let mut words: Vec<&str> = normal.split_whitespace().collect();
    // "SSN last 4", "card last four digits": the last digits of an identifier.
    let joined = words.join(" ");
    if ["last 4", "last four", "last digits", "last 4 digits"].iter().any(|p| joined.ends_with(p))
        && words.len() > 2
    {
        return Some(FieldKind::Identifier);
    }
    while words.len() > 1
        && words.last().is_some_and(|w| LABEL_TAILS.contains(w) || w.bytes().all(|b| b.is_ascii_digit()))
    {
        words.pop();
    }
    if words.is_empty() || words.len() > 5 {
        return None;
    }
    let phrase = words.join(" ");
    // Phrases that settle it whatever their last word says.
    match phrase.as_str() {
        "ip address" | "ip" | "mac address" | "email address" | "email" | "e mail" | "web address"
        | "url" | "host" | "workstation" | "source host" | "ip addr" => return None,
        _ => {}
    }
    // "signed_at", "collected_at": a timestamp key.
    if label.trim().ends_with("_at") {
        return Some(FieldKind::Date);
    }
    let head = *words.last()?;
    let two = (words.len() >= 2).then(|| format!("{} {}", words[words.len() - 2], head));
    let has = |list: &[&str]| list.contains(&head) || two.as_deref().is_some_and(|t| list.contains(&t));
    let any = |list: &[&str]| words.iter().any(|w| list.contains(w));
    // The head decides, in this order ("fax phone" is a fax, "zip code" a ZIP).
    let by_head: [(&[&str], FieldKind); 9] = [
        (&["fax"], FieldKind::Fax),
        (PHONE_HEADS, FieldKind::Phone),
        (ZIP_HEADS, FieldKind::Zip),
        (IDENTIFIER_HEADS, FieldKind::Identifier),
        (&["age"], FieldKind::Age),
        (DATE_HEADS, FieldKind::Date),
        (CITY_HEADS, FieldKind::City),
        (ADDRESS_HEADS, FieldKind::Address),
        (ORGANISATION_HEADS, FieldKind::Organisation),
    ];
    if let Some((_, kind)) = by_head.iter().find(|(heads, _)| has(heads)) {
        return Some(*kind);
    }
    if has(NAME_HEADS) {
        // "Drug name", "Test name", "Plan name" name no person; "Hospital name" a place.
        const NOT_A_PERSON: &[&str] = &[
            "drug",
            "medication",
            "med",
            "test",
            "procedure",
            "study",
            "protocol",
            "file",
            "device",
            "program",
            "diagnosis",
            "plan",
            "insurance",
            "insurer",
            "payer",
            "product",
            "brand",
            "generic",
            "document",
            "report",
            "form",
            "template",
            "panel",
            "exam",
            "order",
            "item",
            "vaccine",
            "allergen",
            "organism",
            "specimen",
            "source",
            "system",
            "app",
            "application",
            "event",
            "unit",
            "ward",
            "room",
            "bed",
            "team",
            "service",
            "department",
            "dept",
            "location",
            "site",
            "street",
            "county",
            "city",
            "state",
            "country",
            "region",
            "district",
        ];
        if any(NOT_A_PERSON) {
            return None;
        }
        if any(ORGANISATION_HEADS) {
            return Some(FieldKind::Organisation);
        }
        return Some(FieldKind::Name);
    }
    None
}

fn category_of(kind: FieldKind, label: &str) -> PhiCategory {
    match kind {
        FieldKind::Name => PhiCategory::Name,
        FieldKind::Organisation => PhiCategory::Hospital,
        FieldKind::City => PhiCategory::City,
        FieldKind::Address => PhiCategory::Address,
        FieldKind::Zip => PhiCategory::Zip,
        FieldKind::Phone => PhiCategory::Phone,
        FieldKind::Fax => PhiCategory::Fax,
        FieldKind::Age => PhiCategory::Age,
        FieldKind::Date => PhiCategory::Date,
        FieldKind::Identifier => {
            let category = super::identifiers::cue_category(label, label.len());
            if category == PhiCategory::Phone { PhiCategory::Id } else { category }
        }
    }
}

/// Labelled field values and table cells in `text`.
pub(crate) fn structured_spans(text: &str, words: &Words) -> Vec<PhiSpan> {
    let mut spans = Vec::new();
    let lines: Vec<(usize, &str)> = line_offsets(text);
    labelled_fields(text, &lines, words, &mut spans);
    table_columns(text, &lines, words, &mut spans);
    spans
}

fn line_offsets(text: &str) -> Vec<(usize, &str)> {
    let mut at = 0;
    text.split('\n')
        .map(|line| {
            let start = at;
            at += line.len() + 1;
            (start, line)
        })
        .collect()
}

/// "Label: value" on a line, several per line ("Pt: X   DOB 3/4/89   MRN 123").
fn labelled_fields(text: &str, lines: &[(usize, &str)], words: &Words, spans: &mut Vec<PhiSpan>) {
    for &(offset, line) in lines {
        let bytes = line.as_bytes();
        for (colon, separator) in line.char_indices().filter(|(_, c)| matches!(c, ':' | '=')) {
            // "14:30", "http://", "a=b" inside a token are no labels.
            let before = bytes[..colon].last().copied();
            let after = bytes.get(colon + 1).copied();
            if separator == ':'
                && (before.is_some_and(|b| b.is_ascii_digit()) && after.is_some_and(|b| b.is_ascii_digit())
                    || after == Some(b'/'))
            {
                continue;
            }
            // A JSON key: its string, its value a string, an array of strings or a scalar.
            if separator == ':' && line[..colon].trim_end().ends_with('"') {
                json_field(line, colon, words, &mut |start, end, category| {
                    spans.push(PhiSpan { start: offset + start, end: offset + end, category });
                });
                continue;
            }
            let Some(label_start) = label_start(line, colon) else { continue };
            let label = &line[label_start..colon];
            let Some(kind) = classify_label(label) else { continue };
            let value_start = colon + 1;
            let value_end = value_end(line, value_start);
            if let Some((start, end)) = value_span(line, value_start, value_end, kind, words) {
                spans.push(PhiSpan {
                    start: offset + start,
                    end: offset + end,
                    category: category_of(kind, label),
                });
            }
        }
    }
    let _ = text;
}

/// The value of the JSON key that ends before `colon` (`"city": "Manilla"`, `"given":
/// ["Thi", "Hoa"]`, `"postalCode": 2346`), each string of it reported on its own. FHIR's
/// `family` and `given` name a person.
fn json_field(line: &str, colon: usize, words: &Words, report: &mut dyn FnMut(usize, usize, PhiCategory)) {
    let key_end = line[..colon].trim_end().len() - 1;
    let Some(key_start) = line[..key_end].rfind('"').map(|i| i + 1) else { return };
    let key = &line[key_start..key_end];
    let kind = match key {
        "family" | "given" => Some(FieldKind::Name),
        _ => classify_label(key),
    };
    let Some(kind) = kind else { return };
    let mut at = colon + 1;
    at += line[at..].len() - line[at..].trim_start().len();
    let in_array = line[at..].starts_with('[');
    if in_array {
        at += 1;
    }
    loop {
        at += line[at..].len() - line[at..].trim_start().len();
        let (start, end, next) = if line[at..].starts_with('"') {
            let body = at + 1;
            let close = line[body..]
                .char_indices()
                .scan(false, |escaped, (i, c)| {
                    let closes = c == '"' && !*escaped;
                    *escaped = c == '\\' && !*escaped;
                    Some((i, closes))
                })
                .find(|&(_, closes)| closes)
                .map_or(line.len(), |(i, _)| body + i);
            (body, close, (close + 1).min(line.len()))
        } else {
            let end = line[at..].find([',', '}', ']']).map_or(line.len(), |i| at + i);
            (at, end, end)
        };
        if start < end
            && let Some((s, e)) = value_span(line, start, end, kind, words)
        {
            report(s, e, category_of(kind, key));
        }
        at = next;
        at += line[at..].len() - line[at..].trim_start().len();
        if !(in_array && line[at..].starts_with(',')) {
            break;
        }
        at += 1;
    }
}

/// Where the label before `colon` starts: after the line's start, a run of two spaces, a
/// tab, `|`, `;`, a bullet or the end of a sentence; at most five words.
fn label_start(line: &str, colon: usize) -> Option<usize> {
    let before = &line[..colon];
    let mut start = 0;
    for (i, c) in before.char_indices().rev() {
        let next = before[i + c.len_utf8()..].chars().next();
        let boundary = matches!(c, '\t' | '|' | ';' | '•' | '*' | '(' | '[' | '"' | '>')
            || c == ' ' && before[..i].ends_with(' ')
            || matches!(c, '.' | ',') && next == Some(' ');
        if boundary {
            start = i + c.len_utf8();
            break;
        }
    }
    let label = before[start..].trim_start_matches([' ', '-', '_']);
    let start = colon - label.len();
    let label = label.trim_end();
    let words = label.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).count();
    (words > 0 && words <= 5 && label.len() <= 48 && label.chars().next().is_some_and(char::is_alphabetic))
        .then_some(start)
}

/// A value ends at the line's end, a tab, `|`, or two spaces (the next field of a header).
fn value_end(line: &str, start: usize) -> usize {
    let rest = &line[start..];
    let mut end = rest.len();
    let trimmed_start = rest.len() - rest.trim_start_matches([' ', '_']).len();
    let body = &rest[trimmed_start..];
    for (i, c) in body.char_indices() {
        if matches!(c, '\t' | '|')
            || c == ' ' && body[i + 1..].starts_with(' ')
            || c == '_' && body[i + 1..].starts_with('_')
        {
            end = trimmed_start + i;
            break;
        }
    }
    start + end
}

/// The part of `line[start..end]` that is the value of a field of `kind`, if any.
fn value_span(
    line: &str,
    start: usize,
    end: usize,
    kind: FieldKind,
    words: &Words,
) -> Option<(usize, usize)> {
    let raw = &line[start..end];
    let lead = raw.len() - raw.trim_start_matches([' ', '_', '*', '"', '\'']).len();
    let value = raw[lead..].trim_end_matches([' ', '_', '.', ',', ';', '*', '"', '\'']);
    if value.is_empty() || EMPTY_VALUES.contains(&value.to_lowercase().as_str()) || value.starts_with('[') {
        return None;
    }
    // An empty field followed by the next label ("Preferred name: ____  Pronouns: …").
    if value.split_whitespace().next().is_some_and(|w| w.ends_with(':')) {
        return None;
    }
    let value_start = start + lead;
    // A value stops at the end of its sentence ("MRN: 123. Acct # 456."), not at an
    // abbreviation's dot ("Regional Hosp. East").
    let value = &value[..sentence_end(value)];
    let has_digit = value.bytes().any(|b| b.is_ascii_digit());
    let end_of = |len: usize| (len > 0).then_some((value_start, value_start + len));
    match kind {
        FieldKind::Name => name_value(value, words).and_then(end_of),
        FieldKind::Organisation | FieldKind::City => {
            // Up to a comma, a parenthesis or a digit: "Grand River Imaging, 2100 …".
            let cut = value.find([',', '(', ';']).unwrap_or(value.len());
            let part = value[..cut].trim_end();
            let capitalised = part.chars().next().is_some_and(|c| c.is_uppercase());
            // "Geriatrics Clinic" names a service; "Mercy Hospital" one place.
            let only_known = part.split_whitespace().all(|w| {
                words.is_function_word(w)
                    || words.is_medical_word(w)
                    || super::organisations::is_generic_word(w)
            });
            (capitalised && !only_known && !part.bytes().any(|b| b.is_ascii_digit()))
                .then(|| (value_start, value_start + part.len()))
        }
        FieldKind::Address => {
            let letters = value.chars().any(char::is_alphabetic);
            (letters && (has_digit || value.split_whitespace().count() >= 2))
                .then(|| end_of(value.len()))
                .flatten()
        }
        FieldKind::Zip | FieldKind::Phone | FieldKind::Fax | FieldKind::Identifier => {
            if !has_digit {
                return None;
            }
            let part = &value[..identifier_run(value)];
            let digits = part.bytes().filter(u8::is_ascii_digit).count();
            let enough = match kind {
                FieldKind::Phone | FieldKind::Fax => digits >= 7 || digits >= 3 && part.len() <= 6,
                _ => digits >= 2 || digits >= 1 && part.len() >= 4,
            };
            if enough { end_of(part.len()) } else { None }
        }
        FieldKind::Age => {
            let number: String = value.chars().take_while(char::is_ascii_digit).collect();
            let years = number.parse::<u32>().ok()?;
            (90..130).contains(&years).then(|| end_of(number.len())).flatten()
        }
        FieldKind::Date => {
            let lower = value.to_lowercase();
            let month_word =
                super::calendar::MONTH_NAMES.iter().any(|m| lower.contains(&m[..3].to_lowercase()));
            if !(has_digit && date_shaped(value) || month_word) {
                return None;
            }
            end_of(date_run(value))
        }
    }
}

/// Digits in a date's shape: "03/14/2024", "2024-03-14", "14.03.2024", "20240314".
fn date_shaped(value: &str) -> bool {
    static SHAPE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    SHAPE
        .get_or_init(|| {
            regex::Regex::new(
                r"[0-9]{1,4}[/-][0-9]{1,2}|[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{2,4}|(?:19|20)[0-9]{6}",
            )
            .expect("date shape compiles")
        })
        .is_match(value)
}

/// The space-separated tokens of a value with their byte offsets, without trailing
/// `,`, `;` or `.`; empty ones skipped.
fn value_tokens(value: &str) -> impl Iterator<Item = (usize, &str)> {
    value
        .split_inclusive(' ')
        .scan(0, |at, piece| {
            let start = *at;
            *at += piece.len();
            Some((start, piece.trim_end().trim_end_matches([',', ';', '.'])))
        })
        .filter(|(_, token)| !token.is_empty())
}

/// The leading run of a date value: tokens with digits, month and weekday names, "at",
/// "of", "the", "am"/"pm".
fn date_run(value: &str) -> usize {
    let mut end = 0;
    for (start, token) in value_tokens(value) {
        let lower = token.to_lowercase();
        let calendar = super::calendar::MONTH_NAMES
            .iter()
            .chain(super::calendar::WEEKDAY_NAMES.iter())
            .any(|m| lower.starts_with(&m[..3].to_lowercase()));
        if token.bytes().any(|b| b.is_ascii_digit()) || calendar {
            end = start + token.len();
        } else if !matches!(
            lower.as_str(),
            "at" | "of" | "the" | "am" | "pm" | "a.m." | "p.m." | "@" | "-" | "–"
        ) {
            break;
        }
    }
    end
}

/// Where the first sentence of a value ends: ". " after a word that is no abbreviation.
fn sentence_end(value: &str) -> usize {
    for (i, _) in value.match_indices(". ") {
        let word_start = value[..i].rfind([' ', '(']).map_or(0, |j| j + 1);
        if !super::organisations::is_abbreviation(&value[word_start..=i]) {
            return i;
        }
    }
    value.len()
}

/// The leading run of an identifier value: tokens holding digits, short capital prefixes
/// and suffixes ("RWI 601 4472 X", "CSH 4418 22970 01"), spaced digits ("6 1 8 - 2 2");
/// the first ordinary word ends it.
fn identifier_run(value: &str) -> usize {
    let mut end = 0;
    let mut seen_digit = false;
    for (start, token) in value_tokens(value) {
        let digit = token.bytes().any(|b| b.is_ascii_digit());
        let capitals = token.len() <= 6 && token.bytes().all(|b| b.is_ascii_uppercase());
        let joiner = matches!(token, "-" | "/" | "#" | "x" | "ext" | "ext." | "–");
        if digit || capitals && (seen_digit || end == 0) || joiner && seen_digit {
            seen_digit |= digit;
            if digit || capitals {
                end = start + token.len();
            }
            continue;
        }
        break;
    }
    if seen_digit { end } else { 0 }
}

/// The length of the leading run of `value` that reads as a name: capitalised words,
/// initials, particles, quoted nicknames, "Surname, Given"; an ordinary lower-case word,
/// a digit or a bracket ends it.
fn name_value(value: &str, words: &Words) -> Option<usize> {
    let mut end = 0;
    let mut names = 0;
    let mut at = 0;
    for piece in value.split_inclusive([' ', ',']) {
        let word = piece.trim_end_matches([' ', ',']).trim_matches(['"', '“', '”', '(', ')', '\'']);
        let start = at;
        at += piece.len();
        if word.is_empty() {
            continue;
        }
        let lower = word.to_lowercase();
        let title = matches!(
            lower.trim_end_matches('.'),
            "dr" | "mr"
                | "mrs"
                | "ms"
                | "miss"
                | "mx"
                | "prof"
                | "hon"
                | "rev"
                | "sr"
                | "officer"
                | "judge"
                | "baby"
                | "girl"
                | "boy"
                | "infant"
                | "twin"
                | "male"
                | "female"
                | "master"
        );
        let particle = super::words::NAME_PARTICLES.contains(&lower.as_str());
        let initial = word.trim_end_matches('.').chars().all(char::is_alphabetic)
            && word.trim_end_matches('.').chars().count() <= 3
            && word.chars().next().is_some_and(char::is_uppercase);
        let capitalised = word.chars().next().is_some_and(char::is_uppercase)
            && word.chars().all(|c| c.is_alphabetic() || matches!(c, '\'' | '’' | '-' | '.' | '^'));
        let lower_unknown = word.chars().all(|c| c.is_lowercase() || matches!(c, '\'' | '-' | '.'))
            && word.len() >= 2
            && !words.is_known_word(word)
            || words.is_dictionary_name(word)
                && !words.is_function_word(word)
                && !words.is_medical_word(word);
        let ordinary =
            words.is_function_word(word) || words.is_medical_word(word) && !words.is_dictionary_name(word);
        // A lone capital or capitals with dots is an initial ("S", "A.B."), whatever word
        // it also spells.
        let bare_initial = word.trim_end_matches('.').chars().count() == 1
            && word.chars().next().is_some_and(char::is_uppercase)
            || word.contains('.')
                && word
                    .split('.')
                    .filter(|p| !p.is_empty())
                    .all(|p| p.chars().count() == 1 && p.chars().all(char::is_uppercase));
        if title && names == 0 {
            continue;
        }
        if bare_initial || (capitalised || initial || lower_unknown) && !ordinary || particle && names > 0 {
            names += usize::from(!particle);
            end = start + piece.trim_end_matches([' ', ',']).len();
            // Keep a closing quote of a nickname inside the span.
            continue;
        }
        break;
    }
    (names > 0).then_some(end)
}

/// Tables: a header row of labels, then rows with the same separator; each cell of a
/// column whose header names a kind of identifier is one.
fn table_columns(text: &str, lines: &[(usize, &str)], words: &Words, spans: &mut Vec<PhiSpan>) {
    let mut i = 0;
    while i < lines.len() {
        let (_, line) = lines[i];
        let Some(separator) = table_separator(line) else {
            i += 1;
            continue;
        };
        let header = split_cells(line, separator);
        let kinds: Vec<(Option<FieldKind>, &str)> =
            header.iter().map(|&(s, e)| (classify_label(line[s..e].trim()), line[s..e].trim())).collect();
        let labelled = kinds.iter().filter(|(k, _)| k.is_some()).count();
        // A header is a row of short labels, not a sentence with commas.
        let header_like = header.len() >= 3
            && header.iter().all(|&(s, e)| {
                let cell = line[s..e].trim();
                cell.len() <= 32
                    && cell.split_whitespace().count() <= 4
                    && !cell.chars().any(|c| c.is_ascii_digit() && cell.len() > 12)
            });
        if labelled < 2 || !header_like {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < lines.len() {
            let (offset, row) = lines[j];
            let cells = split_cells(row, separator).len();
            let fits = if separator == ',' { cells == header.len() } else { cells * 2 >= header.len() };
            if row.trim().is_empty() || !fits {
                break;
            }
            for (column, &(s, e)) in split_cells(row, separator).iter().enumerate() {
                let Some(&(Some(kind), label)) = kinds.get(column) else { continue };
                let cell = &row[s..e];
                let lead = cell.len() - cell.trim_start().len();
                if let Some((start, end)) = value_span(row, s + lead, e, kind, words) {
                    spans.push(PhiSpan {
                        start: offset + start,
                        end: offset + end,
                        category: category_of(kind, label),
                    });
                }
            }
            j += 1;
        }
        let _ = text;
        i = j;
    }
}

/// The separator of a table row: a tab, `|` or `,` appearing at least twice.
fn table_separator(line: &str) -> Option<char> {
    ['\t', '|', ','].into_iter().find(|&c| line.matches(c).count() >= 2)
}

/// Cell byte ranges of a row; commas inside double quotes do not split.
fn split_cells(line: &str, separator: char) -> Vec<(usize, usize)> {
    let mut cells = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        if c == '"' && separator == ',' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            cells.push((start, i));
            start = i + 1;
        }
    }
    cells.push((start, line.len()));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(&str, PhiCategory)> {
        let words = Words::new();
        let mut spans = structured_spans(text, &words);
        spans.sort();
        spans.into_iter().map(|s| (&text[s.start..s.end], s.category)).collect()
    }

    #[test]
    fn labels_say_what_their_values_are() {
        assert_eq!(classify_label("patient_name"), Some(FieldKind::Name));
        assert_eq!(classify_label("Emergency contact"), Some(FieldKind::Name));
        assert_eq!(classify_label("Hospital no."), Some(FieldKind::Identifier));
        assert_eq!(classify_label("Referring hospital"), Some(FieldKind::Organisation));
        assert_eq!(classify_label("patient_address_line1"), Some(FieldKind::Address));
        assert_eq!(classify_label("Drug name"), None);
        assert_eq!(classify_label("ip_address"), None);
        assert_eq!(classify_label("Pharmacy phone"), Some(FieldKind::Phone));
        assert_eq!(classify_label("timestamp_utc"), Some(FieldKind::Date));
    }

    #[test]
    fn labelled_values_are_found_whatever_they_look_like() {
        let text = "patient_name: Quorvath, Ilsendra Bex\nemergency_contact: Tamsyn Wexley-Orr (niece) 555\n\
                    Last name: __Zembrowicz__________  First: __Oriel______  MI: _S_\n\
                    Referring hospital: Brackenmoor Memorial, discharge today\npatient_city: Marrowfield\n\
                    Provider: Cardiology\nPatient: denies chest pain";
        let found = found(text);
        for (value, category) in [
            ("Quorvath, Ilsendra Bex", PhiCategory::Name),
            ("Tamsyn Wexley-Orr", PhiCategory::Name),
            ("Zembrowicz", PhiCategory::Name),
            ("Oriel", PhiCategory::Name),
            ("S", PhiCategory::Name),
            ("Brackenmoor Memorial", PhiCategory::Hospital),
            ("Marrowfield", PhiCategory::City),
        ] {
            assert!(found.contains(&(value, category)), "{value} not found: {found:?}");
        }
        assert!(!found.iter().any(|(v, _)| v.contains("Cardiology") || v.contains("denies")), "{found:?}");
    }

    #[test]
    fn table_columns_named_by_their_header_are_found() {
        let text = "MRN|NAME|DOB|AGE|ATTENDING|DX\nSB001|QUORVATH, ILSENDRA|19310414|92|ZEMBROWICZ, L|J18.9 CAP\n\
                    SB002|ORIEL, TAMSYN|19570301|67|WEXLEY, K|N39.0 UTI\n";
        let found = found(text);
        for value in ["QUORVATH, ILSENDRA", "ZEMBROWICZ, L", "ORIEL, TAMSYN", "WEXLEY, K", "92"] {
            assert!(found.iter().any(|(v, _)| *v == value), "{value} not found: {found:?}");
        }
        assert!(!found.iter().any(|(v, _)| *v == "67" || v.contains("CAP")), "{found:?}");
    }
}
