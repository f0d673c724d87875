//! Protected health information: the categories medllm finds (covering the 18 HIPAA Safe
//! Harbor identifier types that occur in text) and spans of text that hold one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of identifier. Safe Harbor's "geographic subdivisions smaller than a state" are
/// split into street address, city and ZIP; "any other unique number" is `Id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PhiCategory {
    /// Names of patients, relatives, clinicians.
    Name,
    /// Dates more precise than a year (and times of day attached to them).
    Date,
    /// Ages over 89.
    Age,
    /// Telephone numbers.
    Phone,
    /// Fax numbers.
    Fax,
    /// Email addresses.
    Email,
    /// Social security numbers.
    Ssn,
    /// Medical record numbers.
    Mrn,
    /// Health plan beneficiary numbers.
    HealthPlan,
    /// Account numbers.
    Account,
    /// Certificate and licence numbers.
    License,
    /// Vehicle identifiers and plates.
    Vehicle,
    /// Device identifiers and serial numbers.
    Device,
    /// Web addresses.
    Url,
    /// IP addresses.
    Ip,
    /// Street addresses.
    Address,
    /// Cities and towns.
    City,
    /// ZIP codes.
    Zip,
    /// Hospitals and clinics named as places.
    Hospital,
    /// Any other unique identifying number.
    Id,
}

impl PhiCategory {
    /// Every category, in report order.
    pub const ALL: [PhiCategory; 20] = [
        PhiCategory::Name,
        PhiCategory::Date,
        PhiCategory::Age,
        PhiCategory::Phone,
        PhiCategory::Fax,
        PhiCategory::Email,
        PhiCategory::Ssn,
        PhiCategory::Mrn,
        PhiCategory::HealthPlan,
        PhiCategory::Account,
        PhiCategory::License,
        PhiCategory::Vehicle,
        PhiCategory::Device,
        PhiCategory::Url,
        PhiCategory::Ip,
        PhiCategory::Address,
        PhiCategory::City,
        PhiCategory::Zip,
        PhiCategory::Hospital,
        PhiCategory::Id,
    ];

    /// The name used in files and tags: `NAME`, `HEALTH_PLAN`, …
    pub fn as_str(self) -> &'static str {
        match self {
            PhiCategory::Name => "NAME",
            PhiCategory::Date => "DATE",
            PhiCategory::Age => "AGE",
            PhiCategory::Phone => "PHONE",
            PhiCategory::Fax => "FAX",
            PhiCategory::Email => "EMAIL",
            PhiCategory::Ssn => "SSN",
            PhiCategory::Mrn => "MRN",
            PhiCategory::HealthPlan => "HEALTH_PLAN",
            PhiCategory::Account => "ACCOUNT",
            PhiCategory::License => "LICENSE",
            PhiCategory::Vehicle => "VEHICLE",
            PhiCategory::Device => "DEVICE",
            PhiCategory::Url => "URL",
            PhiCategory::Ip => "IP",
            PhiCategory::Address => "ADDRESS",
            PhiCategory::City => "CITY",
            PhiCategory::Zip => "ZIP",
            PhiCategory::Hospital => "HOSPITAL",
            PhiCategory::Id => "ID",
        }
    }
}

impl fmt::Display for PhiCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PhiCategory {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        PhiCategory::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown PHI category \"{s}\""))
    }
}

/// Where an identifier is: byte offsets into the text it was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhiSpan {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// What it is.
    pub category: PhiCategory,
}

/// A span as written to files: offsets count Unicode scalar values (`char`s), as in
/// Python strings and in extraction grounding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharSpan {
    /// What it is.
    pub category: PhiCategory,
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// What replaced it in the output, if anything did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// Converts byte offsets of `text` to char offsets, for spans sorted or not.
pub fn to_char_spans(text: &str, spans: &[PhiSpan]) -> Vec<CharSpan> {
    let mut boundaries: Vec<usize> = spans.iter().flat_map(|s| [s.start, s.end]).collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    let mut char_of = std::collections::HashMap::with_capacity(boundaries.len());
    let mut next = boundaries.iter().peekable();
    let byte_starts = text.char_indices().map(|(b, _)| b).chain(std::iter::once(text.len()));
    for (chars, byte) in byte_starts.enumerate() {
        while next.peek().is_some_and(|b| **b <= byte) {
            char_of.insert(*next.next().unwrap_or(&0), chars);
        }
    }
    spans
        .iter()
        .map(|s| CharSpan {
            category: s.category,
            start: char_of.get(&s.start).copied().unwrap_or(0),
            end: char_of.get(&s.end).copied().unwrap_or(0),
            replacement: None,
        })
        .collect()
}

/// Converts char offsets back to byte offsets; `None` when a span lies outside the text.
pub fn to_byte_offsets(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    if end < start {
        return None;
    }
    let mut starts = text.char_indices().map(|(b, _)| b).chain(std::iter::once(text.len()));
    let byte_start = starts.by_ref().nth(start)?;
    let byte_end = if end == start { byte_start } else { starts.nth(end - start - 1)? };
    Some((byte_start, byte_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_offsets_round_trip_through_multibyte_text() {
        let text = "Zoë Ångström seen 3/4";
        let a = text.find("Ångström").unwrap();
        let spans = [PhiSpan { start: a, end: a + "Ångström".len(), category: PhiCategory::Name }];
        let chars = to_char_spans(text, &spans);
        assert_eq!((chars[0].start, chars[0].end), (4, 12));
        assert_eq!(to_byte_offsets(text, 4, 12), Some((spans[0].start, spans[0].end)));
        assert_eq!(to_byte_offsets(text, 4, 99), None);
    }

    #[test]
    fn categories_parse_from_their_names() {
        for category in PhiCategory::ALL {
            assert_eq!(category.as_str().parse::<PhiCategory>(), Ok(category));
        }
        assert!("PATIENT".parse::<PhiCategory>().is_err());
    }
}
