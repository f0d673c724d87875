//! What the detector knows of words: dictionary names, which of them are also ordinary or
//! clinical words, the plain words that never start or extend a name, the wider everyday
//! and medical vocabularies, and guards (eponyms, drugs) inside which no name is found.

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::data::lexicon::lexicon;

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
chambers temple cross bath reading independence orange newport bend humble \
hon judge officer trooper deputy sgt det lt capt rev fr pastor chaplain prof professor mme mlle herr frau npi dea clia nhs mrn ssn dob fin csn har ein tin ncpdp hipaa irb cms ems icu hpi ros cc";

/// Words that are also given names or surnames ("Grace", "Stone"): as dictionary names they
/// need context, but after a cue ("Patient: Grace Stone") they are names.
const NAME_LIKE_WORDS: &str = "grace hope faith joy will mark bill art rose dawn summer crystal hunter pat don guy young long brown \
white black bell hill king page rice stone wood cook price case bishop child hand foot gay may june april \
august autumn winter spring sunny star ray max rich frank sterling angel lane bay miles major paris \
china lincoln ford clay hall moss love sage sky river ocean iris ivy daisy lily violet ruby pearl amber \
jade jasper early north south west east";

/// Lower-case words that join the parts of a name.
pub(crate) const NAME_PARTICLES: [&str; 24] = [
    "de", "del", "della", "da", "das", "dos", "do", "van", "von", "der", "den", "le", "la", "du", "di",
    "bin", "ibn", "al", "el", "los", "las", "ap", "ó", "mac",
];

/// The detector's vocabularies, lower case.
pub(crate) struct Words {
    given_names: HashSet<String>,
    surnames: HashSet<String>,
    /// Dictionary names that are also ordinary or clinical words ("Hope", "Bell"): they
    /// count only next to another name or after a cue.
    ambiguous_names: HashSet<String>,
    /// Capitalised words that never start or extend a name (and are no dictionary name).
    stopwords: HashSet<String>,
    /// The function and note words of [`COMMON_WORDS`] alone (without the clinical lexicon).
    function_words: HashSet<String>,
    /// Everyday English: a capitalised word here may be ordinary.
    common: HashSet<String>,
    /// Medical vocabulary, drugs and the clinical lexicon: never a name or a place.
    medical: HashSet<String>,
    /// Eponyms and drug names, matched case-insensitively as phrases.
    pub(crate) guards: AhoCorasick,
}

impl Words {
    pub(crate) fn new() -> Words {
        let lexicon = lexicon();
        let lower = |s: &str| s.to_lowercase();

        let function_words: HashSet<String> = COMMON_WORDS.split_whitespace().map(str::to_string).collect();
        let mut stopwords = function_words.clone();
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
            clinical_words.insert(l.abbrev.to_lowercase());
        }
        for f in &lexicon.imaging {
            add_words(f.finding, &mut clinical_words);
            add_words(f.location, &mut clinical_words);
            add_words(f.region, &mut clinical_words);
        }
        for (header, _) in &lexicon.sections {
            add_words(header, &mut stopwords);
        }
        // The curated medical vocabulary: the lexicon's phrases split into words hold
        // ordinary words too ("greater" of "greater trochanter").
        let common: HashSet<String> = lexicon.common_words.iter().map(|w| lower(w)).collect();
        let mut medical: HashSet<String> = lexicon.drugs.iter().map(|d| lower(d.name)).collect();
        medical.extend(lexicon.labs.iter().map(|l| lower(l.abbrev)));
        for term in &lexicon.medical_words {
            medical.insert(term.to_lowercase());
            // The words of a phrase count when they are no everyday words: "cisterna" of
            // "cisterna chyli" does, "swan" of "swan neck deformity" does not.
            let mut parts = HashSet::new();
            add_words(term, &mut parts);
            medical.extend(parts.into_iter().filter(|w| !common.contains(w)));
        }

        let given_names: HashSet<String> = lexicon
            .given_names
            .iter()
            .map(|g| lower(g.name))
            .chain(lexicon.detector_given_names.iter().map(|n| lower(n)))
            .collect();
        let surnames: HashSet<String> =
            lexicon.surnames.iter().chain(lexicon.detector_surnames.iter()).map(|s| lower(s)).collect();
        let eponym_heads: HashSet<String> =
            lexicon.eponyms.iter().filter_map(|e| e.split([' ', '-', '\'', '’']).next()).map(lower).collect();
        let name_like: HashSet<&str> = NAME_LIKE_WORDS.split_whitespace().collect();
        let ambiguous_names: HashSet<String> = given_names
            .iter()
            .chain(surnames.iter())
            .filter(|n| {
                stopwords.contains(*n)
                    || clinical_words.contains(*n)
                    || medical.contains(*n)
                    || common.contains(*n)
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

        // Literal lists go through Aho-Corasick: one pass over the text for hundreds of
        // terms, where a regex alternation of them would rebuild its automaton constantly.
        let mut guard_terms: Vec<&str> = lexicon.eponyms.clone();
        guard_terms.extend(lexicon.drugs.iter().map(|d| d.name));
        let guards = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&guard_terms)
            .expect("guard terms build an automaton");
        Words { given_names, surnames, ambiguous_names, stopwords, function_words, common, medical, guards }
    }

    /// A given name or surname of the dictionaries (a possessive "'s" aside).
    pub(crate) fn is_dictionary_name(&self, word: &str) -> bool {
        let lower = base_form(word);
        self.given_names.contains(&lower) || self.surnames.contains(&lower)
    }

    /// A given name of the dictionaries.
    pub(crate) fn is_given_name(&self, word: &str) -> bool {
        self.given_names.contains(&base_form(word))
    }

    /// A surname of the dictionaries.
    pub(crate) fn is_surname(&self, word: &str) -> bool {
        self.surnames.contains(&base_form(word))
    }

    /// One set of vocabularies for checks that have no detector at hand (a pattern's
    /// filter), built on first use.
    pub(crate) fn shared() -> &'static Words {
        static SHARED: std::sync::OnceLock<Words> = std::sync::OnceLock::new();
        SHARED.get_or_init(Words::new)
    }

    /// A dictionary name that is no ordinary or clinical word.
    pub(crate) fn is_unambiguous_name(&self, word: &str) -> bool {
        let lower = base_form(word);
        (self.given_names.contains(&lower) || self.surnames.contains(&lower))
            && !self.ambiguous_names.contains(&lower)
    }

    /// A capitalised word that is an ordinary word and not a dictionary name.
    pub(crate) fn is_plain_word(&self, word: &str) -> bool {
        let lower = base_form(word);
        self.stopwords.contains(&lower)
            && !self.given_names.contains(&lower)
            && !self.surnames.contains(&lower)
    }

    /// A word of everyday English or of medicine (it may be capitalised for other reasons
    /// than being a name).
    pub(crate) fn is_known_word(&self, word: &str) -> bool {
        let lower = base_form(word);
        in_with_inflections(&self.common, &lower)
            || in_with_inflections(&self.medical, &lower)
            || in_with_inflections(&self.stopwords, &lower)
    }

    /// A word of medicine (never a name, place or organisation word on its own).
    pub(crate) fn is_medical_word(&self, word: &str) -> bool {
        in_with_inflections(&self.medical, &base_form(word))
    }

    /// A function word or a word of notes' boilerplate ("the", "patient", "history").
    pub(crate) fn is_function_word(&self, word: &str) -> bool {
        self.function_words.contains(&base_form(word))
    }

    /// A word of everyday English.
    pub(crate) fn is_common_word(&self, word: &str) -> bool {
        in_with_inflections(&self.common, &base_form(word))
    }
}

/// Whether `lower` or its stem without a plural or verb ending is in `set` ("specimens",
/// "biopsies", "reviewed", "bleeding").
fn in_with_inflections(set: &HashSet<String>, lower: &str) -> bool {
    if set.contains(lower) {
        return true;
    }
    let stems = [
        lower.strip_suffix("ies").map(|s| format!("{s}y")),
        lower.strip_suffix("es").map(str::to_string),
        lower.strip_suffix('s').map(str::to_string),
        lower.strip_suffix("ed").map(str::to_string),
        lower.strip_suffix('d').map(str::to_string),
        lower.strip_suffix("ing").map(str::to_string),
        lower.strip_suffix("ing").map(|s| format!("{s}e")),
        lower.strip_suffix("ly").map(str::to_string),
    ];
    stems.into_iter().flatten().any(|stem| stem.len() >= 3 && set.contains(&stem))
}

/// Lower case, without a possessive "'s" ("Smith's" → "smith").
pub(crate) fn base_form(word: &str) -> String {
    let lower = word.to_lowercase();
    for suffix in ["'s", "’s"] {
        if let Some(stem) = lower.strip_suffix(suffix)
            && !stem.is_empty()
        {
            return stem.to_string();
        }
    }
    lower
}
