//! HL7 version 2 messages: the fields of a segment that hold PHI, by their position and
//! data type. A message says what its fields are, so a field of a patient's name, address,
//! phone, identifier or date is PHI whatever its value looks like ("NAKASHIMA^ÉLODIE",
//! "RR 2^^North Glengarry^ON^K0C 1A0"); free-text fields (NTE, OBX values) are left to the
//! detector's other rules, which run over the whole text as well.

use crate::data::phi::{PhiCategory, PhiSpan};

/// The HL7 data types whose components are PHI.
#[derive(Clone, Copy)]
enum FieldType {
    /// Extended person name: family, given, middle.
    Name,
    /// Extended composite id and name of a person (a clinician): id, family, given, middle.
    PersonWithId,
    /// Extended address: street, other designation, city, (state), postcode.
    Address,
    /// Telephone: the number, the email, the country/area/local/extension parts.
    Telecom,
    /// Extended composite id: the id and its assigning authority.
    Identifier(PhiCategory),
    /// Time stamp.
    Date,
    /// Extended organisation name, or a hierarchic designator (a facility).
    Organisation,
    /// Person location: point of care, room, bed, facility.
    Location,
    /// A place name (a birthplace).
    Place,
}

/// The PHI fields of the segments that carry them: segment, field number, type.
const PHI_FIELDS: &[(&str, &[(usize, FieldType)])] = {
    use FieldType::*;
    use PhiCategory::{Account, HealthPlan, Id, License, Mrn, Ssn};
    &[
        ("MSH", &[(4, Organisation), (6, Organisation), (7, Date), (10, Identifier(Id))]),
        ("EVN", &[(2, Date), (5, PersonWithId), (6, Date)]),
        (
            "PID",
            &[
                (2, Identifier(Mrn)),
                (3, Identifier(Mrn)),
                (4, Identifier(Mrn)),
                (5, Name),
                (6, Name),
                (7, Date),
                (9, Name),
                (11, Address),
                (13, Telecom),
                (14, Telecom),
                (18, Identifier(Account)),
                (19, Identifier(Ssn)),
                (20, Identifier(License)),
                (21, Identifier(Mrn)),
                (23, Place),
                (29, Date),
            ],
        ),
        ("PD1", &[(3, Organisation), (4, PersonWithId)]),
        (
            "NK1",
            &[
                (2, Name),
                (4, Address),
                (5, Telecom),
                (6, Telecom),
                (8, Date),
                (13, Organisation),
                (16, Date),
                (30, Name),
                (31, Telecom),
                (32, Address),
                (33, Identifier(Id)),
                (37, Identifier(Ssn)),
            ],
        ),
        (
            "PV1",
            &[
                (3, Location),
                (6, Location),
                (7, PersonWithId),
                (8, PersonWithId),
                (9, PersonWithId),
                (17, PersonWithId),
                (19, Identifier(Account)),
                (44, Date),
                (45, Date),
                (50, Identifier(Account)),
                (52, PersonWithId),
            ],
        ),
        ("PV2", &[(8, Date), (9, Date)]),
        (
            "IN1",
            &[
                (8, Identifier(HealthPlan)),
                (11, Organisation),
                (12, Date),
                (13, Date),
                (16, Name),
                (18, Date),
                (19, Address),
                (36, Identifier(HealthPlan)),
                (49, Identifier(HealthPlan)),
            ],
        ),
        (
            "GT1",
            &[
                (2, Identifier(Account)),
                (3, Name),
                (5, Address),
                (6, Telecom),
                (7, Telecom),
                (8, Date),
                (12, Identifier(Ssn)),
                (16, Organisation),
                (17, Address),
                (18, Telecom),
            ],
        ),
        (
            "ORC",
            &[
                (2, Identifier(Id)),
                (3, Identifier(Id)),
                (4, Identifier(Id)),
                (9, Date),
                (10, PersonWithId),
                (11, PersonWithId),
                (12, PersonWithId),
                (15, Date),
                (21, Organisation),
                (22, Address),
                (23, Telecom),
                (24, Address),
            ],
        ),
        (
            "OBR",
            &[
                (2, Identifier(Id)),
                (3, Identifier(Id)),
                (6, Date),
                (7, Date),
                (8, Date),
                (14, Date),
                (16, PersonWithId),
                (22, Date),
                (28, PersonWithId),
                (32, PersonWithId),
                (34, PersonWithId),
            ],
        ),
        (
            "OBX",
            &[
                (14, Date),
                (16, PersonWithId),
                (19, Date),
                (23, Organisation),
                (24, Address),
                (25, PersonWithId),
            ],
        ),
        ("SPM", &[(2, Identifier(Id)), (3, Identifier(Id)), (17, Date), (18, Date)]),
        (
            "MRG",
            &[
                (1, Identifier(Mrn)),
                (2, Identifier(Mrn)),
                (3, Identifier(Account)),
                (5, Identifier(Account)),
                (7, Name),
            ],
        ),
        ("DG1", &[(5, Date), (16, PersonWithId)]),
        ("PR1", &[(5, Date), (11, PersonWithId), (12, PersonWithId)]),
        ("ROL", &[(4, PersonWithId)]),
        (
            "TXA",
            &[(4, Date), (5, PersonWithId), (6, Date), (7, Date), (9, PersonWithId), (12, Identifier(Id))],
        ),
    ]
};

/// The separators a message declares in its MSH segment.
struct Separators {
    field: char,
    component: char,
    repetition: char,
    subcomponent: char,
}

/// PHI spans of the HL7 v2 segments in `text` (none when it holds no MSH segment), and the
/// names they give, to be searched for elsewhere in the text (a note's "Dr Strzelecki").
pub(crate) fn hl7_spans(text: &str) -> (Vec<PhiSpan>, Vec<String>) {
    let mut spans = Vec::new();
    let mut names = Vec::new();
    let mut separators: Option<Separators> = None;
    let mut offset = 0;
    for line in text.split_inclusive(['\n', '\r']) {
        let segment = line.trim_end_matches(['\n', '\r']);
        let line_offset = offset;
        offset += line.len();
        if let Some(declared) = segment.strip_prefix("MSH") {
            let mut chars = declared.chars();
            let field = chars.next().filter(|c| !c.is_alphanumeric());
            let encoding: Vec<char> = chars.take(4).collect();
            separators = field.filter(|_| encoding.len() >= 3).map(|field| Separators {
                field,
                component: encoding[0],
                repetition: encoding[1],
                subcomponent: encoding.get(3).copied().unwrap_or('&'),
            });
        }
        let Some(sep) = &separators else { continue };
        let id = segment.get(..3).unwrap_or("");
        if !segment[id.len()..].starts_with(sep.field)
            || !id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            continue;
        }
        let Some((_, fields)) = PHI_FIELDS.iter().find(|(name, _)| *name == id) else { continue };
        // MSH-1 is the field separator itself, so MSH's fields count one further.
        let shift = usize::from(id == "MSH");
        let mut at = 0;
        for (index, value) in segment.split(sep.field).enumerate() {
            let value_start = at;
            at += value.len() + sep.field.len_utf8();
            let number = index + shift;
            let Some(&(_, field_type)) = fields.iter().find(|(n, _)| *n == number) else { continue };
            let mut rep_at = value_start;
            for repetition in value.split(sep.repetition) {
                let rep_start = rep_at;
                rep_at += repetition.len() + sep.repetition.len_utf8();
                for (start, end, category) in field_spans(repetition, field_type, sep) {
                    let (start, end) = (line_offset + rep_start + start, line_offset + rep_start + end);
                    if category == PhiCategory::Name {
                        names.extend(
                            text[start..end]
                                .split(|c: char| c == sep.component || c.is_whitespace())
                                .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 3)
                                .map(str::to_string),
                        );
                    }
                    spans.push(PhiSpan { start, end, category });
                }
            }
        }
    }
    (spans, names)
}

/// The PHI parts of one repetition of a field: byte ranges within it and their category.
fn field_spans(value: &str, field_type: FieldType, sep: &Separators) -> Vec<(usize, usize, PhiCategory)> {
    use PhiCategory::*;
    // Components with their byte ranges, numbered from 1; a subcomponent after the first
    // is a code of the component ("QHCH&2.16.840&ISO").
    let mut components: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for component in value.split(sep.component) {
        let first = component.split(sep.subcomponent).next().unwrap_or("");
        components.push((at, at + first.len()));
        at += component.len() + sep.component.len_utf8();
    }
    let mut found = Vec::new();
    // Runs of neighbouring non-empty components among `range` become one span each
    // ("STRZELECKI^ANDRZEJ^P", "613^555^0142"), with `keep` judging each component.
    let mut runs =
        |range: std::ops::RangeInclusive<usize>, category: PhiCategory, keep: &dyn Fn(&str) -> bool| {
            let mut open: Option<(usize, usize)> = None;
            for number in range {
                let part = components.get(number - 1).filter(|&&(s, e)| s < e && keep(&value[s..e]));
                match (part, open) {
                    (Some(&(s, e)), None) => open = Some((s, e)),
                    (Some(&(_, e)), Some((s, _))) => open = Some((s, e)),
                    (None, Some(run)) => {
                        found.push((run.0, run.1, category));
                        open = None;
                    }
                    (None, None) => {}
                }
            }
            if let Some((s, e)) = open {
                found.push((s, e, category));
            }
        };
    let any = |_: &str| true;
    let has_digit = |v: &str| v.bytes().any(|b| b.is_ascii_digit());
    // A code of three letters or more names an institution; "ON", "MR" are codes of a
    // province and a kind of number.
    let institution = |v: &str| v.chars().filter(|c| c.is_alphanumeric()).count() >= 3;
    match field_type {
        FieldType::Name => runs(1..=3, Name, &any),
        FieldType::PersonWithId => {
            // The id of a person may be a user name ("rmacisaac^MACISAAC^RHONA").
            runs(1..=1, Id, &any);
            runs(2..=4, Name, &any);
        }
        FieldType::Address => {
            runs(1..=2, Address, &any);
            runs(3..=3, City, &any);
            runs(5..=5, Zip, &any);
        }
        FieldType::Telecom => {
            runs(1..=1, Phone, &has_digit);
            runs(4..=4, Email, &|v: &str| v.contains('@'));
            runs(6..=12, Phone, &has_digit);
        }
        FieldType::Identifier(category) => {
            runs(1..=1, category, &has_digit);
            runs(4..=4, Hospital, &institution);
        }
        FieldType::Date => runs(1..=1, Date, &has_digit),
        FieldType::Organisation => runs(1..=1, Hospital, &institution),
        FieldType::Location => runs(4..=4, Hospital, &institution),
        FieldType::Place => runs(1..=1, City, &any),
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phi_fields_of_a_message_are_found_by_position() {
        let message = "MSH|^~\\&|ADTSYS|QHCH|CDR|OLHIN|20240517221405||ADT^A01^ADT_A01|Q24051722|P|2.5\r\
PID|1||H0771203^^^QHCH^MR~5584-112-907-KT^^^ON^JHN||ZORBLY-QUAX^ÉLODIE^MIYU^^^^L||19870323|F|||302-77 Lisgar St^^Ottawa^ON^K2P 0C4^CAN^H||^PRN^PH^^1^613^555^0142~^NET^Internet^e.zq@mail.example|||||V2405170\r\
PV1|1|I|4W^412^B^QHCH||||102938^STRZELECKI^ANDRZEJ^P^^^DR\r\
OBX|1|NM|11881-0^Fundal height^LN||22|cm|||||F\n";
        let (spans, names) = hl7_spans(message);
        let found: Vec<(&str, PhiCategory)> =
            spans.iter().map(|s| (&message[s.start..s.end], s.category)).collect();
        for expected in [
            ("QHCH", PhiCategory::Hospital),
            ("OLHIN", PhiCategory::Hospital),
            ("20240517221405", PhiCategory::Date),
            ("Q24051722", PhiCategory::Id),
            ("H0771203", PhiCategory::Mrn),
            ("5584-112-907-KT", PhiCategory::Mrn),
            ("ZORBLY-QUAX^ÉLODIE^MIYU", PhiCategory::Name),
            ("19870323", PhiCategory::Date),
            ("302-77 Lisgar St", PhiCategory::Address),
            ("Ottawa", PhiCategory::City),
            ("K2P 0C4", PhiCategory::Zip),
            ("613^555^0142", PhiCategory::Phone),
            ("e.zq@mail.example", PhiCategory::Email),
            ("102938", PhiCategory::Id),
            ("STRZELECKI^ANDRZEJ^P", PhiCategory::Name),
        ] {
            assert!(found.contains(&expected), "{expected:?} not in {found:?}");
        }
        // Codes of a province, a sex, a unit and a result stay.
        for kept in ["ON", "F", "cm", "22", "Fundal height", "ADT^A01^ADT_A01"] {
            assert!(!found.iter().any(|(t, _)| *t == kept), "{kept} found: {found:?}");
        }
        assert!(names.contains(&"STRZELECKI".to_string()) && names.contains(&"ZORBLY-QUAX".to_string()));
    }

    #[test]
    fn text_without_a_header_segment_is_no_message() {
        let (spans, _) = hl7_spans("PID|1||123^^^X^MR||DOE^JANE\n");
        assert!(spans.is_empty());
    }
}
