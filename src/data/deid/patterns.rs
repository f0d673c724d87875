//! The regular expressions of PHI with a shape or a cue: dates, ages, contact details,
//! numbers after their cue words, addresses, places, and the context rules for names.

use regex::Regex;

use super::calendar::{
    AMBIGUOUS_FOREIGN_MONTHS, FOREIGN_MONTH_NAMES, FOREIGN_WEEKDAY_NAMES, MONTH_NAMES as MONTHS_FULL,
    ORDINAL_WORDS, UNIT_WORDS, WEEKDAY_NAMES,
};
use crate::data::lexicon::lexicon;
use crate::data::phi::PhiCategory;

/// A regular expression whose capture group `group` (0 for all of it) is PHI of `category`,
/// when `keep` (if any) accepts the match in its text.
pub(crate) struct Pattern {
    pub(crate) regex: Regex,
    pub(crate) group: usize,
    pub(crate) category: PhiCategory,
    pub(crate) keep: Option<fn(&str, usize, usize) -> bool>,
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

/// Ages from ninety to one hundred and nineteen in words: "ninety", "ninety-one", "one
/// hundred", "a hundred and two", "one hundred ten".
fn age_word_alternation() -> String {
    let units = UNIT_WORDS[..9].join("|");
    let teens = UNIT_WORDS.join("|");
    format!(r"ninety(?:[- ](?:{units}))?|(?:one|a)[- ]hundred(?:(?:[- ]and)?[- ](?:{teens}))?")
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
    Pattern { regex, group, category, keep: None }
}

fn checked(
    source: &str,
    group: usize,
    category: PhiCategory,
    keep: fn(&str, usize, usize) -> bool,
) -> Pattern {
    Pattern { keep: Some(keep), ..pattern(source, group, category) }
}

/// Capitals of the Latin scripts (with Latin-1, Extended-A and the Vietnamese range): a
/// small class keeps the automata small, where Unicode's \p{Lu} makes them rebuild often.
pub(crate) const UPPER: &str = "[A-ZÀ-ÖØ-ÞĀ-ſḀ-ỿ]";
/// Letters of the same scripts, for use inside a character class.
pub(crate) const LETTER: &str = "A-Za-zÀ-ÖØ-öø-ɏḀ-ỿ";

/// The identifier value after a cue: letters and digits with inner separators, holding a digit.
const ID_VALUE: &str = r"(?:(?:[A-Za-z0-9]+[-./#])*[A-Za-z0-9]*[0-9][A-Za-z0-9]*(?:[-./#][A-Za-z0-9]+)*)";

fn cued(cue: &str, category: PhiCategory) -> Pattern {
    checked_cued(cue, category)
}

fn checked_cued(cue: &str, category: PhiCategory) -> Pattern {
    checked(
        &format!(
            r"(?i:(?-u:\b)(?:{cue})(?:\s+(?:number|no\.?|num|#|id))?\s*(?:[:#]|is|of)?\s*)((?-i:(?:[A-Z]{{1,6}}[ -]){{0,2}}){ID_VALUE}(?:[ ][0-9]{{1,6}}(?-u:\b))*)"
        ),
        1,
        category,
        identifier_shaped,
    )
}

pub(crate) fn build_patterns() -> Vec<Pattern> {
    use PhiCategory::*;
    let month = month_alternation();
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
    let state_abbrevs = lexicon().states.iter().map(|(_, a)| regex::escape(a)).collect::<Vec<_>>().join("|");
    let month_not_may = MONTHS_FULL
        .iter()
        .filter(|m| **m != "May")
        .flat_map(|m| [m.to_string(), m.to_uppercase()])
        .collect::<Vec<_>>()
        .join("|");
    let weekdays = WEEKDAY_NAMES
        .iter()
        .flat_map(|d| [d.to_string(), d[..3].to_string()])
        .chain(["Tues", "Weds", "Thur", "Thurs"].map(String::from))
        .collect::<Vec<_>>()
        .join("|");
    let foreign_month = FOREIGN_MONTH_NAMES.join("|");
    let foreign_month_alone = FOREIGN_MONTH_NAMES
        .iter()
        .filter(|m| !AMBIGUOUS_FOREIGN_MONTHS.contains(m))
        .copied()
        .collect::<Vec<_>>()
        .join("|");
    let foreign_weekday = FOREIGN_WEEKDAY_NAMES.join("|");
    // Words of other languages may end in a letter outside ASCII ("lunedì"), where an
    // ASCII word boundary does not hold: the letters around are matched and left out.
    let not_letter_before = format!("(?:^|[^{LETTER}0-9])");
    let not_letter_after = format!("(?:[^{LETTER}0-9]|$)");
    let age_words = age_word_alternation();
    let state_names = {
        let mut names: Vec<String> = lexicon().states.iter().map(|(n, _)| regex::escape(n)).collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        names.join("|")
    };
    let street_suffix = r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Drive|Dr|Lane|Ln|Way|Court|Ct|Place|Pl|Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Trail|Trl|Square|Sq|Loop|Pike|Row|Alley|Crescent|Plaza|Grove|Close|Gardens|Mews|Walk|Rise|Green|View|Park|Wynd|Gate|Vale|Heights|Meadows?|Ridge|Run|Bend|Point|Path|Pass|Crossing|Commons|Landing|Hollow|Glen|Knoll|Cove|Chase|Esplanade|Quay|Parade|Broadway|Hill|Hills|Creek|Square|Expressway|Expy|Freeway|Fwy|Turnpike|Tpke)";
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
            r"(?i:(?-u:\b)(?:since|in|during|until|till|by|last|early|late|mid|this|next|started|start|began|begun|stopped|around|before|after|from|through|thru|of|each|every|on)[\s-]+)((?i:january|february|march|april|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)|May|MAY)\.?(?-u:\b)",
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
        pattern(r"(?i:(?-u:\b)(?:pager|beeper|pgr|bleep|page)\s*#?:?\s*)([0-9]{3,10})(?-u:\b)", 1, Phone),
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
            r"member|policy|insurance|subscriber|health\s+plan|plan\s+(?:id|#|no\.?|number)|medicaid|medicare|beneficiary|group",
            HealthPlan,
        ),
        cued(r"vin|vehicle(?:\s+identification)?|licen[cs]e\s+plate|plate", Vehicle),
        cued(r"licen[cs]e|lic\.?|dea|npi|certificate|cert\.?|registration", License),
        cued(r"serial|s/n|sn|device|udi|implant|pacemaker\s+serial|model|lot", Device),
        pattern(r"(?-u:\b)[A-HJ-NPR-Z0-9]{17}(?-u:\b)", 0, Vehicle),
        // Transcription marks: initials then user names ("XGT:holmes", "GPP/church/olinger").
        pattern(r"(?m)^[ \t]*[A-Z]{2,4}[:/]([a-z]{3,12})(?:/[a-z]{3,12})?[ \t]*$", 1, Name),
        pattern(r"(?m)^[ \t]*[A-Z]{2,4}/[a-z]{3,12}/([a-z]{3,12})[ \t]*$", 1, Name),
        pattern(r"(?m)^[ \t]*([A-Z][A-Z'-]+,[A-Z][A-Z'-]+)(?:[ \t]|$)", 1, Name),
        cued(r"study\s+(?:code|id)|subject\s+id|participant\s+id|voiceprint(?:\s+template)?", Id),
        // Any value after "ID", "badge", "accession" … that is shaped like an identifier.
        Pattern {
            ..cued(
                r"id|identifier|badge|employee|case|accession|specimen|requisition|ticket|docket|confirmation|tracking|kit|randomi[sz]ation|screening",
                Id,
            )
        },
        // Places.
        pattern(
            &format!(
                r"(?-u:\b)[0-9]{{1,6}}(?:-[0-9]{{1,5}})?[A-Z]?\s+(?:[NSEW]\.?\s+)?(?:(?:[A-Z0-9][{LETTER}0-9'’.-]*|de|del|la|las|los|van|von|di|du|da|el)\s+){{1,5}}{street_suffix}(?-u:\b)\.?(?:\s+(?:NE|NW|SE|SW|N|S|E|W)(?-u:\b))?(?:,?\s+(?:Apt|Apartment|Unit|Suite|Ste|Flat|Lot|#)\.?\s*[A-Za-z0-9-]+)?"
            ),
            0,
            Address,
        ),
        pattern(r"(?i:(?-u:\b)P\.?\s?O\.?\s+Box\s+[0-9]+)", 0, Address),
        // Military post: "PSC 6293, Box 8158", "Unit 0822 Box 8858", a ship, "APO AE 09012".
        pattern(r"(?i:(?-u:\b)(?:PSC|CMR|Unit)\s+[0-9]{3,5},?\s+Box\s+[0-9]{1,5})(?-u:\b)", 0, Address),
        pattern(
            &format!(r"(?-u:\b)(?:USNS|USS|USCGC|HMS|HMCS|HMAS|HMNZS)\s+{UPPER}[{LETTER}'’-]+"),
            0,
            Address,
        ),
        pattern(r"(?-u:\b)(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+([0-9]{5})(?-u:\b)", 1, Zip),
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
        // A street named without its number ("off Magazine St", "Queen Elizabeth Road",
        // "Alhaji Lamidi Close"): capitalised words before a street word that only streets
        // carry, unless it starts another name ("St Mary's").
        checked(
            &format!(
                r"((?:{UPPER}[{LETTER}'’-]+\s+(?:(?:of|the|de|la|del)\s+)?){{1,3}}(?:Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln|Close|Crescent|Cres|Parkway|Pkwy|Highway|Hwy|Terrace|Esplanade|Way)\.?)(?-u:\b)"
            ),
            1,
            Address,
            street_without_number,
        ),
        // The house number before the street's kind, in French, Spanish, Portuguese and
        // Italian ("4550, rue Saint-Denis", "1010, avenue du Mont-Royal Est").
        pattern(
            &format!(
                r"(?-u:\b)([0-9]{{1,5}}[A-Z]?,?\s+(?i:rue|avenue|av\.|boulevard|boul\.|bd|chemin|ch\.|route|rang|place|allée|impasse|calle|avenida|carrera|rua|travessa|via|viale|piazza|corso)\s+(?:(?:de|du|des|la|le|del|da|do|dos|di|della)\s+)?{UPPER}[{LETTER}'’.-]*(?:\s+(?:(?:de|du|des|la|le|del|da|do|dos|di|della)\s+)?{UPPER}[{LETTER}'’.-]*){{0,4}})"
            ),
            1,
            Address,
        ),
        // Districts named after their kind: a Mexican colonia, a Philippine barangay, an
        // Irish county ("Col. Anáhuac", "Brgy. Pinyahan", "Co. Kerry").
        pattern(
            &format!(
                r"(?-u:\b)((?:Col|Colonia|Brgy|Barangay|Bgy|Co|Fracc|Fraccionamiento|Barrio)\.?\s+{UPPER}[{LETTER}'’-]+(?:\s+{UPPER}[{LETTER}'’-]+){{0,2}})"
            ),
            1,
            City,
        ),
        // Apartment and suite numbers, European street names with their house number.
        pattern(
            r"(?-u:\b)(?:Apt|Apartment|Suite|Ste|Unit|Flat|Lot|Space|Trlr|Trailer)\.?\s*#?\s*(?:[0-9]{1,5}[A-Z]?|[A-Z])(?-u:\b)",
            0,
            Address,
        ),
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
        // Partial dates: a full month name alone ("seen in clinic March", "MARCH"), May
        // only with a cue (above); "Jan '22"; "March of 2021"; a day after "on the";
        // a weekday with its day ("Tuesday the 9th").
        pattern(&format!(r"(?-u:\b)(?:{month_not_may})(?-u:\b)"), 0, Date),
        pattern(&format!(r"(?-u:\b){month}\s*'[0-9]{{2}}(?-u:\b)"), 0, Date),
        pattern(&format!(r"(?-u:\b){month}\s+of\s+{year}(?-u:\b)"), 0, Date),
        pattern(
            r"(?i:(?-u:\b)(?:on|since|by|until|till|before|after|from|of|through|thru)\s+)(the\s+(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th))(?-u:\b)",
            1,
            Date,
        ),
        checked(
            &format!(
                r"(?i:(?-u:\b)(?:{weekdays})\.?,?\s+(?:the\s+)?(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?)(?-u:\b)"
            ),
            0,
            Date,
            no_unit_follows,
        ),
        // Dates in French, Spanish, Portuguese, Italian, German and Dutch: "28 mars", "7 de
        // febrero de 2024", "mercredi 3 avril", "15. März", "maio de 2023", "en enero".
        pattern(
            &format!(
                r"(?i){not_letter_before}((?:(?:{foreign_weekday}),?\s+)?{day}\.?\s+(?:de\s+)?(?:{foreign_month})\.?(?:,?\s+(?:de\s+)?{year})?){not_letter_after}"
            ),
            1,
            Date,
        ),
        pattern(
            &format!(
                r"(?i){not_letter_before}((?:{foreign_month})\.?,?\s+(?:de\s+)?{year}){not_letter_after}"
            ),
            1,
            Date,
        ),
        pattern(&format!(r"(?i){not_letter_before}((?:{foreign_month_alone})){not_letter_after}"), 1, Date),
        pattern(
            &format!(
                r"(?i){not_letter_before}((?:{foreign_weekday})(?:,?\s+{day}(?-u:\b))?){not_letter_after}"
            ),
            1,
            Date,
        ),
        // Day and month without a year: "17-Sep", "28-MAR", and day/month where the day
        // cannot be a month ("28/05", "20/9").
        pattern(&format!(r"(?-u:\b)[0-3]?[0-9]-(?:{month_short}|Sept|SEPT)(?-u:\b)"), 0, Date),
        checked(
            r"(?-u:\b)(?:1[3-9]|2[0-9]|3[01])/(?:0?[1-9]|1[0-2])(?-u:\b)",
            0,
            Date,
            day_month_reads_as_date,
        ),
        // Month/day anywhere ("4/12"), unless it reads as a score or a fraction: "5/5
        // strength", "2/6 murmur", "7/10 pain", "1/2 tab", "3/4 nodes".
        checked(
            r"(?-u:\b)(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12][0-9]|3[01])(?-u:\b)",
            0,
            Date,
            month_day_reads_as_date,
        ),
        // Ages over 89 in words ("ninety-one-year-old", "aged one hundred and two").
        pattern(
            &format!(
                r"(?i:(?-u:\b)({age_words})(?:[- ]+(?:years?|yrs?)(?:[- ]+old|[- ]+of[- ]+age)?|[- ]+y/?o)(?-u:\b))"
            ),
            1,
            Age,
        ),
        pattern(
            &format!(r"(?i:(?-u:\b)(?:aged|age:?|turned|turns|is\s+now)\s+)((?i:{age_words}))(?-u:\b)"),
            1,
            Age,
        ),
        // "ninety" and "ninety-three" anywhere ("a ninety three yr old", "at ninety she"),
        // unless a unit follows ("ninety minutes", "ninety percent").
        checked(
            r"(?i:(?-u:\b)(ninety(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?)(?-u:\b))",
            1,
            Age,
            not_a_measurement,
        ),
        pattern(r"(?i:(?-u:\b)(?:turned|turns|is\s+now)\s+)(9[0-9]|1[01][0-9])(?-u:\b)", 1, Age),
        // An age over 89 in context: "lived to 101", "she's 91", "died aged 91", "At 91 she",
        // "(91)", "(95 ans)", "(ninety, frail".
        checked(
            r"(?i:(?-u:\b)(?:lived\s+to|living\s+to|she's|he's|she\s+is|he\s+is|died\s+at|died\s+aged|at\s+age|at)\s+)(9[0-9]|1[01][0-9])(?-u:\b)",
            1,
            Age,
            not_a_measurement,
        ),
        pattern(
            &format!(
                r"(?i:\((9[0-9]|1[01][0-9]|{age_words})(?:\s*(?:y|yo|y/o|yrs?|years?|ans|años|jahre|jaar))?[,)])"
            ),
            1,
            Age,
        ),
        // Irish Eircodes ("V92 X4T7") and Indian PIN codes after a town ("Chennai – 600 020").
        pattern(r"(?-u:\b)[ACDEFHKNPRTVWXY][0-9]{2}\s?[0-9ACDEFHKNPRTVWXY]{4}(?-u:\b)", 0, Zip),
        pattern(&format!(r"{UPPER}[{LETTER}]+\s*[–-]\s*([1-9][0-9]{{2}}\s?[0-9]{{3}})(?-u:\b)"), 1, Zip),
        // Words that place an age above 89 ("a nonagenarian of 94", "in her late nineties").
        pattern(
            r"(?i:(?-u:\b)(?:super)?(?:nonagenarian|centenarian)s?(?:\s+(?:of|aged)\s+(?:9[0-9]|1[01][0-9]))?)(?-u:\b)",
            0,
            Age,
        ),
        pattern(
            r"(?i:(?-u:\b)in\s+(?:her|his|their|the)\s+(?:(?:late|early|mid)[\s-]+)?(nineties|90'?s|hundreds))(?-u:\b)",
            1,
            Age,
        ),
        pattern(r"(?-u:\b)(9[0-9]|1[01][0-9])\s*(?:y|Y)(?:\.|(?-u:\b))", 1, Age),
        // IPv6, full and compressed ("fe80::1ff:fe23:4567:890a", "2001:db8::7").
        pattern(
            r"(?i:(?:^|[^0-9a-f:])((?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){2,7}:|::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4}))",
            1,
            Ip,
        ),
        // Rural routes and numbered roads; lower-case street addresses.
        pattern(
            r"(?-u:\b)(?:(?i:Rural\s+Route|Star\s+Route)\s*#?\s*[0-9]+(?:,?\s+(?i:Box)\s+[0-9]+[A-Z]?)?|(?:RR|R\.R\.|HC)\s*#?\s*[0-9]+,?\s+(?i:Box)\s+[0-9]+[A-Z]?)(?-u:\b)",
            0,
            Address,
        ),
        pattern(
            r"(?-u:\b)[0-9]{1,6}\s+(?:[NSEW]\.?\s+)?(?:County\s+Road|State\s+Route|Route|Highway|Hwy|US|SR|CR|Rte|Farm\s+Road|FM)\s+[0-9]{1,4}[A-Z]?(?-u:\b)",
            0,
            Address,
        ),
        pattern(
            r"(?-u:\b)[0-9]{1,6}\s+(?:[nsew]\.?\s+)?(?:[a-z][a-z'.-]*\s+){1,3}(?:street|avenue|ave|road|rd|drive|lane|ln|boulevard|blvd|court|way|place|terrace|circle|parkway|pkwy|highway|hwy|trail)(?-u:\b)\.?",
            0,
            Address,
        ),
        // "Springfield IL 62704" (no comma), UK and Canadian postcodes.
        pattern(
            &format!(
                r"((?:{UPPER}[{LETTER}'’.-]+\s){{0,2}}{UPPER}[{LETTER}'’-]+)\s+(?:{state_abbrevs})\s+[0-9]{{5}}(?:-[0-9]{{4}})?(?-u:\b)"
            ),
            1,
            City,
        ),
        pattern(r"(?-u:\b)[A-Z]{1,2}[0-9][A-Z0-9]?\s?[0-9][ABD-HJLNP-UW-Z]{2}(?-u:\b)", 0, Zip),
        pattern(r"(?-u:\b)[ABCEGHJ-NPRSTVXY][0-9][A-Z]\s?[0-9][A-Z][0-9](?-u:\b)", 0, Zip),
        // Month names in any case before a day ("jan 9", "DEC 12"), unless a unit follows.
        checked(
            &format!(
                r"(?i:(?-u:\b)(?:january|february|march|april|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?\s+(?:[12][0-9]|3[01]|0?[1-9])(?:st|nd|rd|th)?(?-u:\b)(?:,?\s+{year})?)"
            ),
            0,
            Date,
            no_unit_follows,
        ),
        // "the 6th day of May, 2024"; year-month "2021-03"; a date spread over form blanks
        // ("11 / 22 / 1975").
        pattern(&format!(r"(?i:(?-u:\b){day}\s+day\s+of\s+){month}(?:,?\s+{year})?(?-u:\b)"), 0, Date),
        pattern(
            &format!(r"(?i:(?-u:\b)(?:{day}|{ordinal_word})\s+day\s+of\s+{month}(?:,?\s+{year})?)(?-u:\b)"),
            0,
            Date,
        ),
        checked(r"(?-u:\b)(?:19|20)[0-9]{2}-(?:0[1-9]|1[0-2])(?-u:\b)", 0, Date, not_followed_by_day),
        pattern(
            r"(?-u:\b)(?:0?[1-9]|1[0-2]|[12][0-9]|3[01])[ \t]{0,4}/[ \t]{0,4}(?:0?[1-9]|[12][0-9]|3[01])[ \t]{0,4}/[ \t]{0,4}(?:19|20)[0-9]{2}(?-u:\b)",
            0,
            Date,
        ),
        // Dates in words with the year spoken ("April seventeenth, two thousand twenty-four").
        pattern(
            &format!(
                r"(?i:(?-u:\b){month}\s+(?:the\s+)?(?:{ordinal_word}|{day}),?\s+(?:two\s+thousand(?:\s+and)?(?:[\s-]+[a-z]+){{0,2}}|nineteen(?:[\s-]+[a-z]+){{1,2}}))(?-u:\b)"
            ),
            0,
            Date,
        ),
        // Digits read out one by one ("four seven seven zero one nine three"): an
        // identifier or a number whatever the cue.
        pattern(
            r"(?i:(?-u:\b)(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|niner)(?:[\s,.;-]+(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|niner)){4,}(?-u:\b))",
            0,
            Id,
        ),
        // A name spelled out letter by letter ("T-E-M-P-E-R-A-N-C-E").
        pattern(r"(?-u:\b)[A-Z](?:-[A-Z]){2,}(?-u:\b)", 0, Name),
        // "Our Lady of the Lanterns", "Hospital of Saint X" are places.
        pattern(
            &format!(
                r"(?-u:\b)Our\s+Lady\s+of\s+(?:the\s+)?{UPPER}[{LETTER}'’-]+(?:\s+{UPPER}[{LETTER}'’-]+){{0,3}}"
            ),
            0,
            Hospital,
        ),
        // Australian state and postcode ("WA 6050").
        pattern(r"(?-u:\b)(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT)\s+([0-9]{4})(?-u:\b)", 1, Zip),
        // Floors, buildings and doors of an address ("3rd Floor", "Bldg C", "Door 3").
        pattern(
            r"(?-u:\b)(?:[0-9]{1,2}(?:st|nd|rd|th)\s+(?:Floor|Fl)|(?:Floor|Fl|Bldg|Building|Door|Dock|Wing|Pod|Tower)\.?\s*#?\s*[0-9A-Z]{1,4})(?-u:\b)",
            0,
            Address,
        ),
        // Holidays name a date.
        pattern(
            r"(?-u:\b)(?:Thanksgiving|Christmas(?:\s+(?:Eve|Day))?|New\s+Year'?s(?:\s+(?:Eve|Day))?|Easter(?:\s+Sunday)?|Good\s+Friday|Halloween|Independence\s+Day|Memorial\s+Day|Labou?r\s+Day|Veterans\s+Day|Valentine'?s\s+Day|Mother'?s\s+Day|Father'?s\s+Day|Hanukkah|Chanukah|Ramadan|Eid(?:\s+al-(?:Fitr|Adha))?|Diwali|Passover|Yom\s+Kippur|Rosh\s+Hashanah|Lunar\s+New\s+Year|Boxing\s+Day|Canada\s+Day|Australia\s+Day|Anzac\s+Day|Martin\s+Luther\s+King\s+(?:Jr\.?\s+)?Day|Presidents'?\s+Day|Juneteenth|Cinco\s+de\s+Mayo|St\.?\s+Patrick'?s\s+Day)(?-u:\b)",
            0,
            Date,
        ),
        // An age over 89 beside a name: "Ophelia Whitfield, 91, who", "Ann Lee (93)".
        pattern(&format!(r"{UPPER}[{LETTER}'’-]+,\s+(9[0-9]|1[01][0-9]),(?:\s|$)"), 1, Age),
        pattern(&format!(r"(?i:{UPPER}[{LETTER}'’-]+\s+\((9[0-9]|1[01][0-9]|{age_words})\))"), 1, Age),
        // An extension alone ("ext. 6620").
        pattern(r"(?i:(?-u:\b)(?:ext|extension)\.?\s*#?\s*([0-9]{2,6}))(?-u:\b)", 1, Phone),
        // A ZIP code ending an address line after the town ("Ewa Beach 96706").
        pattern(
            &format!(
                r"(?m){UPPER}[a-z{LETTER}'’.-]+,?[ \t]+([0-9]{{5}}(?:-[0-9]{{4}})?)[ \t]*(?:$|[,;|·•]|\s{{2}})"
            ),
            1,
            Zip,
        ),
        // A town before a UK or Canadian postcode, on its line or the line above.
        pattern(
            &format!(
                r"((?:{UPPER}[{LETTER}'’-]+[ -]){{0,2}}{UPPER}[{LETTER}'’-]+),?\s+(?:[A-Z]{{1,2}}[0-9][A-Z0-9]?\s?[0-9][ABD-HJLNP-UW-Z]{{2}}|[ABCEGHJ-NPRSTVXY][0-9][A-Z]\s?[0-9][A-Z][0-9])(?-u:\b)"
            ),
            1,
            City,
        ),
        // Places named with a place word after "in", "from" … ("Grove City", "East
        // Lansing Heights").
        pattern(
            &format!(
                r"(?-u:\b)(?:in|from|to|near|of|outside|at)\s+((?:{UPPER}[{LETTER}'’-]+\s+){{1,2}}(?:City|Town|Township|Springs|Falls|Heights|Beach|Harbou?r|Village|Junction|Creek|Valley|Hills|Lake|Ridge|Grove|Point|Bay|Mills|Crossing|Landing|Station|Corners|Estates|Acres|Park|Woods|Forest|Glen|Haven|Port|Ford|Bluff|Gap|Hollow|Shores|Pines|Oaks|Meadows))(?-u:\b)"
            ),
            1,
            City,
        ),
        // Transcription marks: "D: TNA/T: kls", "NP/bl", "… 13:02 /ab".
        pattern(
            r"(?m)^[ \t]*(?:[A-Z]{1,2}:[ \t]*)?([A-Za-z]{2,4})[ \t]*/[ \t]*(?:[A-Z]{1,2}:[ \t]*)?[a-z]{2,4}(?:[ \t]+(?:job|doc|dd|dt|d|t)(?-u:\b).*)?[ \t]*$",
            1,
            Name,
        ),
        pattern(
            r"(?m)^[ \t]*(?:[A-Z]{1,2}:[ \t]*)?[A-Za-z]{2,4}[ \t]*/[ \t]*(?:[A-Z]{1,2}:[ \t]*)?([a-z]{2,4})(?:[ \t]+(?:job|doc|dd|dt|d|t)(?-u:\b).*)?[ \t]*$",
            1,
            Name,
        ),
        pattern(r"(?m)[0-9][ \t]+/([a-z]{2,4})[ \t]*$", 1, Name),
    ]
}

/// Three digits, or two with letters, and not a decimal: "A12", "7712", not "1.2".
fn identifier_shaped(text: &str, start: usize, end: usize) -> bool {
    let value = &text[start..end];
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let letters = value.bytes().filter(u8::is_ascii_alphabetic).count();
    // A measurement, not "036.118274" (a licence with a leading zero).
    let decimal = value.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && value.contains('.')
        && (value.starts_with("0.") || !value.starts_with('0'))
        && digits <= 7;
    // A year alone ("Vehicle 2016 pickup") is no identifier.
    let year = value.len() == 4 && (value.starts_with("19") || value.starts_with("20")) && letters == 0;
    !decimal && !year && (digits >= 3 || digits >= 2 && letters >= 1)
}

/// No unit after a "date" ("Mar 5 mg" is no date; "May 5" in "may 5 days" is not either).
/// A number not followed by a unit, a percent sign, a fraction or a decimal ("92 bpm",
/// "95%", "90/60", "91.5" are measurements).
fn not_a_measurement(text: &str, start: usize, end: usize) -> bool {
    let rest = &text[end..];
    if rest.starts_with(['%', '/'])
        || rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        return false;
    }
    let next: String =
        rest.trim_start().chars().take_while(|c| c.is_alphabetic()).collect::<String>().to_lowercase();
    const MEASUREMENT_UNITS: &[&str] = &[
        "bpm",
        "beats",
        "mmhg",
        "percent",
        "kg",
        "kgs",
        "lb",
        "lbs",
        "pounds",
        "cm",
        "mm",
        "ml",
        "mg",
        "mcg",
        "g",
        "units",
        "u",
        "min",
        "minutes",
        "sec",
        "seconds",
        "hours",
        "hrs",
        "h",
        "days",
        "weeks",
        "months",
        "degrees",
        "f",
        "c",
        "mmol",
        "meq",
        "breaths",
        "rpm",
        "km",
        "miles",
        "m",
        "times",
        "points",
        "milligrams",
        "micrograms",
        "grams",
        "millilitres",
        "milliliters",
        "cc",
        "mins",
        "secs",
        "feet",
        "ft",
        "metres",
        "meters",
        "yards",
        "steps",
        "mph",
        "dollars",
        "cents",
        "calories",
        "kcal",
        "millimeters",
        "millimetres",
        "centimeters",
        "centimetres",
        "pills",
        "tablets",
        "doses",
    ];
    no_unit_follows(text, start, end) && !MEASUREMENT_UNITS.contains(&next.as_str())
}

fn no_unit_follows(text: &str, _start: usize, end: usize) -> bool {
    if text[end..].starts_with('.') && text[end + 1..].starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let next: String = text[end..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_lowercase();
    !matches!(
        next.as_str(),
        "mg" | "mcg"
            | "g"
            | "ml"
            | "units"
            | "u"
            | "days"
            | "day"
            | "times"
            | "tabs"
            | "tablets"
            | "hours"
            | "hrs"
            | "weeks"
            | "wks"
            | "minutes"
            | "min"
            | "mm"
            | "cm"
            | "kg"
            | "lb"
            | "lbs"
            | "percent"
    )
}

/// "2021-03" is a month unless a day follows ("2021-03-14" is matched whole elsewhere).
fn not_followed_by_day(text: &str, _start: usize, end: usize) -> bool {
    let digit_next = |at: usize| text[at..].starts_with(|c: char| c.is_ascii_digit());
    !(digit_next(end) || text[end..].starts_with(['-', '/']) && digit_next(end + 1))
}

/// A street name without a number: not "St Mary's" (a saint before a name), not "No Way",
/// and not a phrase whose words are all ordinary ones before "Way" or "Close".
fn street_without_number(text: &str, start: usize, end: usize) -> bool {
    let phrase = &text[start..end];
    let mut words: Vec<&str> = phrase.split_whitespace().collect();
    let Some(suffix) = words.pop() else { return false };
    let suffix = suffix.trim_end_matches('.');
    let next_capitalised =
        text[end..].strip_prefix(' ').is_some_and(|rest| rest.chars().next().is_some_and(char::is_uppercase));
    if suffix == "St" && next_capitalised {
        return false;
    }
    let vocabulary = super::words::Words::shared();
    let ordinary = |w: &str| vocabulary.is_known_word(w) && !vocabulary.is_dictionary_name(w);
    // "Way", "Close" and "Lane" end everyday phrases too ("the Right Way", "Memory Lane").
    if matches!(suffix, "Way" | "Close" | "Lane" | "Ln") && words.iter().all(|w| ordinary(w)) {
        return false;
    }
    !words.iter().all(|w| {
        matches!(
            w.to_lowercase().as_str(),
            "the" | "on" | "in" | "at" | "of" | "off" | "to" | "from" | "near"
        )
    })
}

/// Whether a day/month match ("28/05") is a date: as month/day below, and not "24/7"
/// (round the clock).
fn day_month_reads_as_date(text: &str, start: usize, end: usize) -> bool {
    &text[start..end] != "24/7" && month_day_reads_as_date(text, start, end)
}

/// Whether a month/day match ("4/12") is a date rather than a score, a fraction or a count
/// out of a total, judged by its numbers and the words around it.
fn month_day_reads_as_date(text: &str, start: usize, end: usize) -> bool {
    let value = &text[start..end];
    // Part of a longer date or number ("4/12/2023", "4/12.5") is handled elsewhere.
    if text[end..].starts_with(['/', '.', '-']) && text[end + 1..].starts_with(|c: char| c.is_ascii_digit())
        || text[..start].ends_with(['/', '.', '-', ':'])
    {
        return false;
    }
    let mut numbers = value.split('/').filter_map(|n| n.parse::<u32>().ok());
    let (Some(top), Some(bottom)) = (numbers.next(), numbers.next()) else { return false };
    let before = text[..start].to_ascii_lowercase();
    let before = before.trim_end();
    let cue_before = [
        "strength",
        "power",
        "motor",
        "murmur",
        "grade",
        "pain",
        "score",
        "scale",
        "ratio",
        "reflexes",
        "dtr",
        "dtrs",
        "bp",
        "pressure",
        "apgar",
        "apgars",
        "x",
        "positive",
        "rated",
        "gcs",
        "mmse",
        "moca",
        "phq",
        "gad",
        "vision",
        "acuity",
        "va",
        "=",
        "tab",
        "tabs",
        "rue",
        "lue",
        "rle",
        "lle",
        "ue",
        "le",
        "grip",
        "deltoid",
        "deltoids",
        "biceps",
        "triceps",
        "quads",
        "quadriceps",
        "hamstrings",
        "hip",
        "knee",
        "ankle",
        "wrist",
        "dorsiflexion",
        "plantarflexion",
        "abduction",
        "adduction",
        "flexion",
        "extension",
        "nodes",
        "gleason",
        "apgar",
        "bilaterally",
        "ef",
        "ratio",
        "i:e",
        "fio2",
        "peep",
    ];
    let last_word = before.rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '=').next().unwrap_or("");
    if cue_before.contains(&last_word) {
        return false;
    }
    let after = text[end..].trim_start().to_ascii_lowercase();
    let next_word: String = after.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let cue_after = [
        "strength",
        "power",
        "murmur",
        "pain",
        "nodes",
        "node",
        "lymph",
        "cores",
        "core",
        "positive",
        "negative",
        "tab",
        "tabs",
        "tablet",
        "tablets",
        "pill",
        "pills",
        "cap",
        "caps",
        "strip",
        "bilaterally",
        "bilateral",
        "throughout",
        "reflexes",
        "dtr",
        "dtrs",
        "ns",
        "normal",
        "saline",
        "strength",
        "systolic",
        "holosystolic",
        "diastolic",
        "sem",
        "vision",
        "lue",
        "rue",
        "lle",
        "rle",
        "ue",
        "le",
        "proximal",
        "distal",
        "grip",
        "mm",
        "cm",
        "ml",
        "mg",
        "units",
        "times",
    ];
    if cue_after.contains(&next_word.as_str()) || after.starts_with(['+', '%']) {
        return false;
    }
    // A score out of its usual total with its measure named on the line: pain out of 10,
    // strength out of 5, a murmur out of 6.
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let line = text[line_start..line_end].to_ascii_lowercase();
    let measured = |words: &[&str]| words.iter().any(|w| line.contains(w));
    let score = top <= bottom
        && match bottom {
            10 => measured(&[
                "pain", "score", "scale", "rated", "severity", "anxiety", "distress", "mood", "energy",
                "craving", "nausea", "itch", "fatigue", "vas", "nrs",
            ]),
            5 => measured(&[
                "strength",
                "motor",
                "power",
                "muscle",
                "reflex",
                "grip",
                "flexion",
                "extension",
                "weakness",
                "ehl",
                "dorsiflex",
                "plantarflex",
                "abduct",
                "adduct",
                "mrc",
            ]),
            6 => {
                measured(&["murmur", "systolic", "diastolic", "crescendo", "ejection", "holosystolic", "rub"])
            }
            2 | 3 | 4 | 8 => {
                measured(&["tab", "tablet", "pill", "cup", "tsp", "teaspoon", "dose", "strength"])
            }
            _ => false,
        };
    // Ventilator settings ("pressure support 10/5", "PEEP") and course counters ("day
    // 7/14") are no dates either.
    let ventilator = measured(&[
        "peep",
        "pressure support",
        "pressure-support",
        "cpap",
        "bipap",
        "ipap",
        "epap",
        "vent setting",
        "ps/peep",
    ]);
    let counter = matches!(
        last_word,
        "day" | "dose" | "cycle" | "week" | "wk" | "session" | "visit" | "vial" | "#" | "no" | "of"
    ) || after.starts_with('"') && matches!(bottom, 2 | 4 | 8 | 16 | 32 | 64)
        || next_word == "inch"
        || next_word == "in" && after.starts_with("in ");
    !score && !ventilator && !counter
}

/// Name patterns whose group 1 is a run of name words, each with whether its context is
/// weak (a credential after a word: "Triage RN" names no one), so ordinary words are
/// trimmed from the run too.
pub(crate) fn build_name_patterns() -> Vec<(Regex, bool)> {
    let word = format!(r"(?:{UPPER}[{LETTER}'’-]+|{UPPER}\.)");
    let particle =
        r"(?:(?i:de|del|de la|de los|da|dos|van|van der|van den|von|bin|al|el|le|la|di|du|ap|ó|St\.)[ \t]+)?";
    // A name may wrap onto the next line ("Dr. Helga\nVoss"); a word that follows on the
    // next line and is no name ("PCP: Gilbert Perez\nAttending: …") is trimmed off.
    let name_run = format!(r"({particle}{word}(?:(?: |\n){particle}{word}){{0,3}})");
    // After a cue the name may come surname first: "for Kapaona, Boubacar".
    let cued_run = format!(
        r"({particle}{word}, {word}(?: {word})?|{particle}{word}(?:(?: |\n){particle}{word}){{0,3}})"
    );
    let sources = [
        format!(
            r"(?-u:\b)(?:(?i:Dr|Mr|Mrs|Ms)|Miss|Mx|Prof|Sra|Sr|Rev|Fr|Sister|Nurse|Mme|Mlle|Herr|Frau|Officer|Trooper|Deputy|Sgt|Sergeant|Det|Detective|Lt|Capt|Cpl|Agent|Judge|Hon|Justice|Pastor|Father|Chaplain|Rabbi|Imam|Coach|Principal|Professor|Midwife|Sheriff|Constable|PC|DS|DI)(?:\.\s*|[ \t]){name_run}"
        ),
        // A credential before a name, with one space ("RN Imogen Farrow"; "RN. Fall risk" is not).
        format!(r"(?-u:\b)(?:RN|LPN|LVN|CNA|NP|PA|CRNA|RT|PT|OT)[ ]{name_run}"),
        format!(
            r#"(?i:(?-u:\b)(?:patient(?:\s+name)?|name|pt(?:\s+name)?|seen\s+by|signed\s+by|electronically\s+signed(?:\s+by)?|dictated\s+by|transcribed\s+by|reviewed\s+by|attending(?:\s+physician)?|resident|fellow|pcp|primary\s+care(?:\s+(?:physician|provider))?|referr(?:ed|ing)(?:\s+(?:by|physician|provider))?|provider|nurse|emergency\s+contact|contact|guardian|spouse|husband|wife|son|daughter|mother|father|brother|sister|partner|accompanied\s+by|interpreter|caregiver|friend|niece|nephew|grandson|granddaughter|(?:summary|note|report|letter|record)\s+for|(?:my\s+)?name\s+is|named|call\s+me|says|said|performed\s+by|ordered\s+by|interpreted\s+by|read\s+by|verified\s+by|collected\s+by|reported\s+by|approved\s+by|authenticated\s+by|witness(?:ed\s+by)?|surgeon|assistant|assisted\s+by|anesthesi(?:a|ologist)|anaesthetist|radiologist|pathologist|technologist|sonographer|therapist|pharmacist|dietitian|chaplain|case\s+manager|social\s+worker|care\s+coordinator|(?:health\s*care\s+)?proxy|poa|hcp|next\s+of\s+kin|nok|legal\s+guardian|parent|stepfather|stepmother|grandmother|grandfather|aunt|uncle|cousin|fianc[ée]e?|girlfriend|boyfriend|roommate|neighbou?r|dear|hi|hello|spoke\s+(?:with|to)|discussed\s+with|message\s+(?:from|for)|left\s+(?:a\s+)?message\s+(?:for|with)|informed|notified|by\s+dr\.?|with\s+dr\.?|cc|c\.c\.|author|signed|cosigned\s+by|co-signed\s+by|addended\s+by|entered\s+by|scribe|scribed\s+by|requested\s+by|sent\s+by|received\s+by|completed\s+by|prepared\s+by|decedent|deceased|defendant|petitioner|respondent|plaintiff|claimant|client|driver|victim|baby|infant|newborn|pronounced|goes\s+by|known\s+as|a\.?k\.?a\.?|nicknamed?|prefers(?:\s+to\s+be\s+called)?|preferred(?:\s+name)?|signature|report\s+given\s+to|handed\s+off\s+to|sponsor|coordinator|investigator|counsel|attorney|lawyer|prosecutor|officer|examiner|historian|informant|parent|guardian\s+ad\s+litem)(?:[ \t]*[:,\-][ \t]*\n?[ \t]*|[ \t]+)(?:["(][ \t]*)?){cued_run}"#
        ),
        // Header fields that need their colon: "To:", "From:", "Attn:", "Re:".
        format!(
            r"(?i:(?-u:\b)(?:to|from|attn|attention|re|subject|recipient|sender|client|member|insured|subscriber|employee|student|resident\s+name|guarantor|responsible\s+party)\s*:\s*){cued_run}"
        ),
        // A sign-off, then the name on the next line.
        format!(
            r"(?i:(?-u:\b)(?:sincerely|regards|best\s+regards|kind\s+regards|warm\s+regards|thank\s+you|thanks|respectfully|cordially|yours\s+truly|best|cheers),?[ \t]*\r?\n[ \t]*){name_run}"
        ),
        format!(
            r"{name_run},?\s+(?:(?:MD|DO|RN|NP|PA-C|PA|PhD|DDS|DMD|PharmD|MSW|LCSW|LICSW|LMFT|LPC|CNM|FNP|APRN|CRNA|CRNP|CNP|DPM|OD|FNP-BC|MBBS|MBChB|LPN|LVN|CNA|RDH|IBCLC|CCRC|CCRP|DPT|OTR|SLP|RRT|EMT|NRP|MSN|BSN|CNS|DNP|MPH|FACS|FACP|FRCP|FRCS|MRCP|PsyD|RD|RPh|CRC|PGY-?[0-9]|FY[12]|ST[0-9]|CT[12]|SHO|SpR)(?-u:\b)|M\.D\.|R\.N\.)"
        ),
        format!(r"(?i:(?-u:\b)(?:patient|name|pt)\s*:\s*)({UPPER}[{LETTER}'’-]+,\s*{word}(?:\s+{word})?)"),
    ];
    const CREDENTIAL: usize = 5;
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (Regex::new(s).unwrap_or_else(|e| panic!("built-in name pattern: {e}")), i == CREDENTIAL)
        })
        .collect()
}
