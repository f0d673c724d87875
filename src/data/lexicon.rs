//! The project's own word lists (`src/data/lexicon/*.txt`, written for medllm): names,
//! places, hospitals, and the clinical vocabulary of the synthetic corpus. Compiled into the
//! binary and parsed once.

use std::sync::OnceLock;

/// A given name with the sex it is usually given to (`F`, `M` or `U`) and its origin.
#[derive(Debug, Clone)]
pub struct GivenName {
    /// The name as written.
    pub name: &'static str,
    /// `F`, `M` or `U`.
    pub sex: char,
}

/// A US city with its state abbreviation and a plausible 3-digit ZIP prefix.
#[derive(Debug, Clone)]
pub struct City {
    /// City name.
    pub name: &'static str,
    /// Two-letter state abbreviation.
    pub state: &'static str,
    /// First three digits of its ZIP codes.
    pub zip3: &'static str,
}

/// A diagnosis with its ICD-10-CM code and lay synonyms.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    /// Clinical name.
    pub name: &'static str,
    /// ICD-10-CM code.
    pub icd10: &'static str,
    /// Specialty it belongs to.
    pub specialty: &'static str,
}

/// A drug with the doses, route and frequencies it is prescribed with.
#[derive(Debug, Clone)]
pub struct Drug {
    /// Generic name.
    pub name: &'static str,
    /// Dose options, e.g. `500 mg`.
    pub doses: Vec<&'static str>,
    /// Route, e.g. `PO`.
    pub route: &'static str,
    /// Frequency options, e.g. `b.i.d.`.
    pub frequencies: Vec<&'static str>,
    /// What it is usually given for.
    pub indication: &'static str,
}

/// A laboratory test with its unit and adult reference range.
#[derive(Debug, Clone)]
pub struct LabTest {
    /// Test name.
    pub name: &'static str,
    /// Usual abbreviation.
    pub abbrev: &'static str,
    /// Unit of the value.
    pub unit: &'static str,
    /// Lower reference limit.
    pub low: f64,
    /// Upper reference limit.
    pub high: f64,
    /// Specimen, e.g. `serum`.
    pub specimen: &'static str,
    /// Digits after the decimal point when reported.
    pub decimals: usize,
    /// Panel it belongs to, e.g. `CBC`.
    pub panel: &'static str,
}

/// An imaging finding that a study of a modality and body region can report.
#[derive(Debug, Clone)]
pub struct ImagingFinding {
    /// Modality key as in the radiology schema (`ct`, `mri`, …).
    pub modality: &'static str,
    /// Body region.
    pub region: &'static str,
    /// The observation; `{size}` marks where a size goes.
    pub finding: &'static str,
    /// Its location.
    pub location: &'static str,
    /// Whether it is an urgent finding.
    pub critical: bool,
}

/// Every list, parsed.
#[derive(Debug)]
pub struct Lexicon {
    /// Given names the de-identifier knows.
    pub given_names: Vec<GivenName>,
    /// Surnames the de-identifier knows.
    pub surnames: Vec<&'static str>,
    /// More given names only the de-identifier uses (the generator keeps to the first list).
    pub detector_given_names: Vec<&'static str>,
    /// More surnames only the de-identifier uses.
    pub detector_surnames: Vec<&'static str>,
    /// Towns and cities of many countries for the detector only (synth never writes them).
    pub detector_places: Vec<&'static str>,
    /// Everyday English words, lower case.
    pub common_words: Vec<&'static str>,
    /// Medical words and phrases (anatomy, diseases, drugs generic and brand, tests,
    /// organisms, devices, specialties, abbreviations), lower case.
    pub medical_words: Vec<&'static str>,
    /// Given names only the synthetic generator uses (unknown to the de-identifier).
    pub heldout_given_names: Vec<GivenName>,
    /// Surnames only the synthetic generator uses.
    pub heldout_surnames: Vec<&'static str>,
    /// US cities.
    pub cities: Vec<City>,
    /// US states: (name, abbreviation).
    pub states: Vec<(&'static str, &'static str)>,
    /// Street names without number or suffix.
    pub streets: Vec<&'static str>,
    /// Words that end hospital names ("Medical Center").
    pub hospital_suffixes: Vec<&'static str>,
    /// Words that start hospital names ("Mercy").
    pub hospital_prefixes: Vec<&'static str>,
    /// Diagnoses.
    pub diagnoses: Vec<Diagnosis>,
    /// Synonyms of diagnoses: (lay phrase, clinical name).
    pub diagnosis_synonyms: Vec<(&'static str, &'static str)>,
    /// Drugs.
    pub drugs: Vec<Drug>,
    /// Laboratory tests.
    pub labs: Vec<LabTest>,
    /// Imaging findings.
    pub imaging: Vec<ImagingFinding>,
    /// Medical terms named after people, which are not patient data.
    pub eponyms: Vec<&'static str>,
    /// Terminology normalisation: (phrase, canonical term).
    pub synonyms: Vec<(&'static str, &'static str)>,
    /// Section headers: (header as written, canonical section key).
    pub sections: Vec<(&'static str, &'static str)>,
}

/// The lexicon, parsed on first use.
pub fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(Lexicon::parse)
}

macro_rules! list {
    ($file:literal) => {
        include_str!(concat!("lexicon/", $file))
    };
}

/// The non-comment, non-blank lines of a list, split on `|` into exactly `n` fields; a line
/// with another count is a bug in the list and fails the build's tests, not the user.
fn rows(text: &'static str, n: usize) -> impl Iterator<Item = Vec<&'static str>> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(move |line| {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        (fields.len() == n).then_some(fields)
    })
}

fn given(text: &'static str) -> Vec<GivenName> {
    rows(text, 3).map(|f| GivenName { name: f[0], sex: f[1].chars().next().unwrap_or('U') }).collect()
}

fn options(field: &'static str) -> Vec<&'static str> {
    field.split(';').map(str::trim).filter(|s| !s.is_empty()).collect()
}

impl Lexicon {
    fn parse() -> Lexicon {
        let diagnosis_rows: Vec<Vec<&str>> = rows(list!("diagnoses.txt"), 4).collect();
        let mut diagnosis_synonyms = Vec::new();
        for row in &diagnosis_rows {
            for synonym in options(row[3]) {
                diagnosis_synonyms.push((synonym, row[0]));
            }
        }
        let hospital_words: Vec<Vec<&str>> = rows(list!("hospital_words.txt"), 2).collect();
        Lexicon {
            given_names: given(list!("given_names.txt")),
            surnames: rows(list!("surnames.txt"), 2).map(|f| f[0]).collect(),
            detector_given_names: rows(list!("detector_given_names.txt"), 1).map(|f| f[0]).collect(),
            detector_surnames: rows(list!("detector_surnames.txt"), 1).map(|f| f[0]).collect(),
            detector_places: rows(list!("detector_places.txt"), 1).map(|f| f[0]).collect(),
            common_words: rows(list!("common_words.txt"), 1).map(|f| f[0]).collect(),
            medical_words: rows(list!("medical_words.txt"), 1).map(|f| f[0]).collect(),
            heldout_given_names: given(list!("heldout_given_names.txt")),
            heldout_surnames: rows(list!("heldout_surnames.txt"), 2).map(|f| f[0]).collect(),
            cities: rows(list!("cities.txt"), 3)
                .map(|f| City { name: f[0], state: f[1], zip3: f[2] })
                .collect(),
            states: rows(list!("states.txt"), 2).map(|f| (f[0], f[1])).collect(),
            streets: rows(list!("streets.txt"), 1).map(|f| f[0]).collect(),
            hospital_suffixes: hospital_words.iter().filter(|f| f[1] == "suffix").map(|f| f[0]).collect(),
            hospital_prefixes: hospital_words.iter().filter(|f| f[1] == "prefix").map(|f| f[0]).collect(),
            diagnoses: diagnosis_rows
                .iter()
                .map(|f| Diagnosis { name: f[0], icd10: f[1], specialty: f[2] })
                .collect(),
            diagnosis_synonyms,
            drugs: rows(list!("drugs.txt"), 6)
                .map(|f| Drug {
                    name: f[0],
                    doses: options(f[2]),
                    route: f[3],
                    frequencies: options(f[4]),
                    indication: f[5],
                })
                .filter(|d| !d.doses.is_empty() && !d.frequencies.is_empty())
                .collect(),
            labs: rows(list!("labs.txt"), 8)
                .filter_map(|f| {
                    Some(LabTest {
                        name: f[0],
                        abbrev: f[1],
                        unit: f[2],
                        low: f[3].parse().ok()?,
                        high: f[4].parse().ok()?,
                        specimen: f[5],
                        decimals: f[6].parse().ok()?,
                        panel: f[7],
                    })
                })
                .collect(),
            imaging: rows(list!("imaging.txt"), 5)
                .map(|f| ImagingFinding {
                    modality: f[0],
                    region: f[1],
                    finding: f[2],
                    location: f[3],
                    critical: f[4] == "yes",
                })
                .collect(),
            eponyms: rows(list!("eponyms.txt"), 1).map(|f| f[0]).collect(),
            synonyms: rows(list!("synonyms.txt"), 2).map(|f| (f[0], f[1])).collect(),
            sections: rows(list!("sections.txt"), 2).map(|f| (f[0], f[1])).collect(),
        }
    }
}

/// Lines of a list that do not have the expected number of fields (for the tests).
#[cfg(test)]
fn malformed_lines() -> Vec<String> {
    let files: [(&str, &str, usize); 20] = [
        ("given_names", list!("given_names.txt"), 3),
        ("detector_given_names", list!("detector_given_names.txt"), 1),
        ("detector_surnames", list!("detector_surnames.txt"), 1),
        ("detector_places", list!("detector_places.txt"), 1),
        ("common_words", list!("common_words.txt"), 1),
        ("medical_words", list!("medical_words.txt"), 1),
        ("surnames", list!("surnames.txt"), 2),
        ("heldout_given_names", list!("heldout_given_names.txt"), 3),
        ("heldout_surnames", list!("heldout_surnames.txt"), 2),
        ("cities", list!("cities.txt"), 3),
        ("states", list!("states.txt"), 2),
        ("streets", list!("streets.txt"), 1),
        ("hospital_words", list!("hospital_words.txt"), 2),
        ("diagnoses", list!("diagnoses.txt"), 4),
        ("drugs", list!("drugs.txt"), 6),
        ("labs", list!("labs.txt"), 8),
        ("imaging", list!("imaging.txt"), 5),
        ("eponyms", list!("eponyms.txt"), 1),
        ("synonyms", list!("synonyms.txt"), 2),
        ("sections", list!("sections.txt"), 2),
    ];
    let mut bad = Vec::new();
    for (name, text, n) in files {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') && line.split('|').count() != n {
                bad.push(format!("{name}.txt:{}", i + 1));
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_line_has_its_fields_and_every_list_is_filled() {
        assert_eq!(malformed_lines(), Vec::<String>::new());
        let l = lexicon();
        assert!(l.detector_places.len() > 1000, "{}", l.detector_places.len());
        assert!(l.given_names.len() > 400 && l.surnames.len() > 400);
        assert!(l.heldout_given_names.len() > 100 && l.heldout_surnames.len() > 100);
        assert!(l.detector_given_names.len() > 1000 && l.detector_surnames.len() > 1000);
        assert!(l.common_words.len() > 2000 && l.medical_words.len() > 2000);
        assert!(l.cities.len() > 150 && l.states.len() == 51);
        assert!(l.diagnoses.len() > 150 && l.drugs.len() > 100 && l.labs.len() > 50);
        assert!(l.imaging.len() > 100 && l.eponyms.len() > 100 && l.synonyms.len() > 100);
        assert!(!l.hospital_prefixes.is_empty() && !l.hospital_suffixes.is_empty() && l.sections.len() > 80);
        let known: std::collections::HashSet<String> = l
            .given_names
            .iter()
            .map(|g| g.name.to_lowercase())
            .chain(l.surnames.iter().map(|s| s.to_lowercase()))
            .chain(l.detector_given_names.iter().chain(&l.detector_surnames).map(|s| s.to_lowercase()))
            .collect();
        let leaked: Vec<&str> = l
            .heldout_given_names
            .iter()
            .map(|g| g.name)
            .chain(l.heldout_surnames.iter().copied())
            .filter(|n| known.contains(&n.to_lowercase()))
            .collect();
        assert!(leaked.is_empty(), "held-out names the de-identifier knows: {leaked:?}");
    }
}
