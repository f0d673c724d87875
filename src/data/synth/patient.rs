//! A synthetic patient: identity, contact details and identifiers, all invented.

use super::writer::{DocWriter, Style, add_days, pattern_id, phone};
use crate::data::lexicon::{City, lexicon};
use crate::data::phi::PhiCategory;
use crate::data::rng::SeededRng;

/// Sex as the schemas name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
}

/// A person's name: given name and surname.
#[derive(Debug, Clone)]
pub struct PersonName {
    pub given: &'static str,
    pub surname: &'static str,
}

/// An invented patient.
#[derive(Debug, Clone)]
pub struct Patient {
    pub id: String,
    pub name: PersonName,
    pub sex: Sex,
    pub age: u32,
    pub birth: (i64, u32, u32),
    pub mrn: String,
    pub phone: String,
    pub email: String,
    pub street: String,
    pub city: &'static City,
    pub zip: String,
    pub ssn: String,
    pub plan: String,
    pub account: String,
    pub hospital: String,
    pub relative: (&'static str, PersonName),
    /// Day of the first encounter; later documents of the patient come after it.
    pub first_visit: (i64, u32, u32),
    /// Followed with repeated lab work (the same panel each time), as chronic patients are.
    pub lab_follow_up: bool,
    /// Which panel this patient's lab reports show (an index into the lexicon's panels).
    pub lab_panel: usize,
}

/// A name from the dictionaries the de-identifier knows, or (one time in six) from the
/// held-out lists it does not, so that context rules are measured too.
pub fn person_name(rng: &mut SeededRng, sex: Option<Sex>) -> PersonName {
    let lexicon = lexicon();
    let heldout = rng.chance(1.0 / 6.0);
    let pool = if heldout { &lexicon.heldout_given_names } else { &lexicon.given_names };
    let wanted = match sex {
        Some(Sex::Male) => 'M',
        Some(Sex::Female) => 'F',
        None => 'U',
    };
    let mut given = rng.pick(pool);
    for _ in 0..20 {
        if wanted == 'U' || given.sex == wanted || given.sex == 'U' {
            break;
        }
        given = rng.pick(pool);
    }
    let surnames = if rng.chance(1.0 / 6.0) { &lexicon.heldout_surnames } else { &lexicon.surnames };
    PersonName { given: given.name, surname: surnames[rng.below(surnames.len())] }
}

pub fn new_patient(index: usize, rng: &mut SeededRng) -> Patient {
    let lexicon = lexicon();
    let sex = if rng.chance(0.5) { Sex::Female } else { Sex::Male };
    // Mostly adults, some children, and about one in twelve over 89 (PHI by itself).
    let age = match rng.below(12) {
        0 => rng.range(90, 104) as u32,
        1 => rng.range(1, 17) as u32,
        _ => rng.range(18, 89) as u32,
    };
    let first_visit = (rng.range(2016, 2025), rng.range(1, 12) as u32, rng.range(1, 28) as u32);
    let birth = add_days(first_visit, -(i64::from(age) * 365 + rng.range(1, 360)));
    let name = person_name(rng, Some(sex));
    let city = rng.pick(&lexicon.cities);
    let suffixes =
        ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Drive", "Lane", "Court", "Boulevard", "Way"];
    let street = format!("{} {} {}", rng.range(2, 9899), rng.pick(&lexicon.streets), rng.pick(&suffixes));
    let zip = format!("{}{}", city.zip3, pattern_id("##", rng));
    let hospital =
        format!("{} {}", rng.pick(&lexicon.hospital_prefixes), rng.pick(&lexicon.hospital_suffixes));
    let relations = ["daughter", "son", "wife", "husband", "sister", "brother", "niece", "partner"];
    let relative = (*rng.pick(&relations), person_name(rng, None));
    let email_user = format!(
        "{}.{}{}",
        name.given.to_lowercase(),
        name.surname.to_lowercase().replace(|c: char| !c.is_ascii_alphabetic(), ""),
        rng.range(1, 99)
    );
    let domains = ["mail.example", "example.net", "inbox.example.org", "webmail.example.com"];
    Patient {
        id: format!("P{index:06}"),
        email: format!("{email_user}@{}", rng.pick(&domains)),
        mrn: pattern_id(["########", "MR-#######", "00######", "@@######"][rng.below(4)], rng),
        phone: phone(rng),
        ssn: pattern_id("###-##-####", rng),
        plan: pattern_id(["@@@#########", "W#########", "#########-01"][rng.below(3)], rng),
        account: pattern_id(["##########", "A-#######", "ENC########"][rng.below(3)], rng),
        name,
        sex,
        age,
        birth,
        street,
        city,
        zip,
        hospital,
        relative,
        first_visit,
        lab_follow_up: rng.chance(0.2),
        lab_panel: rng.below(1000),
    }
}

impl Patient {
    /// "Maria Garcia", "GARCIA, Maria" or "Garcia, Maria", as a name span.
    pub fn write_full_name(&self, w: &mut DocWriter) {
        let n = &self.name;
        let text = match (w.style, w.rng.below(3)) {
            (Style::Terse, 0) => format!("{}, {}", n.surname.to_uppercase(), n.given),
            (_, 0) => format!("{}, {}", n.surname, n.given),
            _ => format!("{} {}", n.given, n.surname),
        };
        w.phi(PhiCategory::Name, &text);
    }

    /// The patient's age as written, with the age itself a span when over 89.
    pub fn write_age(&self, w: &mut DocWriter) {
        let age = self.age.to_string();
        let after = match (w.style, w.rng.below(3)) {
            (Style::Terse, 0) => "yo",
            (Style::Terse, 1) => " y/o",
            (Style::Terse, _) => "yo",
            (_, 0) => "-year-old",
            (_, 1) => " year old",
            _ => "-year-old",
        };
        if self.age > 89 {
            w.phi(PhiCategory::Age, &age);
        } else {
            w.put(&age);
        }
        w.put(after);
    }

    /// "man"/"woman" in prose, "M"/"F" in shorthand.
    pub fn sex_word(&self, style: Style) -> &'static str {
        match (style, self.sex, self.age < 18) {
            (Style::Terse, Sex::Male, _) => "M",
            (Style::Terse, Sex::Female, _) => "F",
            (_, Sex::Male, true) => "boy",
            (_, Sex::Female, true) => "girl",
            (_, Sex::Male, false) => "man",
            (_, Sex::Female, false) => "woman",
        }
    }

    /// The registration block of a sectioned note: identifiers, address, contact.
    pub fn write_registration(&self, w: &mut DocWriter, visit: (i64, u32, u32)) {
        w.put("Patient: ");
        self.write_full_name(w);
        w.put("    MRN: ").phi(PhiCategory::Mrn, &self.mrn.clone()).newline();
        w.put("DOB: ").date(self.birth).put("    Sex: ").put(if self.sex == Sex::Male { "M" } else { "F" });
        w.put("    Visit date: ").date(visit).newline();
        if w.rng.chance(0.7) {
            w.put("Address: ").phi(PhiCategory::Address, &self.street.clone()).put(", ");
            w.phi(PhiCategory::City, self.city.name).put(", ").put(self.city.state).put(" ");
            w.phi(PhiCategory::Zip, &self.zip.clone()).newline();
        }
        if w.rng.chance(0.6) {
            w.put("Phone: ").phi(PhiCategory::Phone, &self.phone.clone());
            if w.rng.chance(0.4) {
                w.put("   Email: ").phi(PhiCategory::Email, &self.email.clone());
            }
            w.newline();
        }
        if w.rng.chance(0.5) {
            w.put("Insurance Member ID: ").phi(PhiCategory::HealthPlan, &self.plan.clone());
            w.put("   Acct #: ").phi(PhiCategory::Account, &self.account.clone()).newline();
        }
        if w.rng.chance(0.15) {
            w.put("SSN: ").phi(PhiCategory::Ssn, &self.ssn.clone()).newline();
        }
    }

    /// A one-line contact for the family member.
    pub fn write_relative(&self, w: &mut DocWriter) {
        let (relation, name) = &self.relative;
        w.put("Emergency contact: ");
        w.phi(PhiCategory::Name, &format!("{} {}", name.given, name.surname));
        let number = phone(&mut w.rng);
        w.put(&format!(" ({relation}), ")).phi(PhiCategory::Phone, &number).newline();
    }
}

/// A clinician, written "Dr. Given Surname" or "Given Surname, MD" (name as a span).
pub fn write_clinician(w: &mut DocWriter, name: &PersonName) {
    match w.rng.below(4) {
        0 => {
            w.put("Dr. ").phi(PhiCategory::Name, &format!("{} {}", name.given, name.surname));
        }
        1 => {
            w.put("Dr. ").phi(PhiCategory::Name, name.surname);
        }
        2 => {
            w.phi(PhiCategory::Name, &format!("{} {}", name.given, name.surname)).put(", MD");
        }
        _ => {
            let initial = name.given.chars().next().unwrap_or('A');
            w.phi(PhiCategory::Name, &format!("{initial}. {}", name.surname)).put(", DO");
        }
    }
}
