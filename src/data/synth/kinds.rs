//! The five kinds of synthetic document, each written with its gold extraction for the
//! schemas in `grammars/`. Every gold string is written into the text verbatim, so it can
//! be grounded.

use serde_json::{Value, json};

use super::patient::{Patient, person_name, write_clinician};
use super::writer::{DocWriter, Style, add_days, pattern_id};
use crate::data::lexicon::{Diagnosis, Drug, LabTest, lexicon};
use crate::data::phi::PhiCategory;

/// Gold extractions of one document: (schema name, data).
pub type Gold = Vec<(&'static str, Value)>;

const PROCEDURES: [&str; 16] = [
    "cardiac catheterization",
    "percutaneous coronary intervention",
    "upper endoscopy",
    "colonoscopy",
    "laparoscopic cholecystectomy",
    "appendectomy",
    "thoracentesis",
    "paracentesis",
    "lumbar puncture",
    "central line placement",
    "bronchoscopy",
    "transthoracic echocardiogram",
    "open reduction internal fixation of the hip",
    "hemodialysis catheter placement",
    "incision and drainage",
    "blood transfusion",
];

const ALLERGENS: [(&str, &str); 10] = [
    ("penicillin", "rash"),
    ("sulfa drugs", "hives"),
    ("codeine", "nausea"),
    ("latex", "contact dermatitis"),
    ("iodinated contrast", "hives"),
    ("peanuts", "anaphylaxis"),
    ("shellfish", "throat swelling"),
    ("amoxicillin", "rash"),
    ("morphine", "itching"),
    ("aspirin", "wheezing"),
];

const DISPOSITIONS: [(&str, &str); 6] = [
    ("home", "Discharged home in stable condition."),
    ("home_with_services", "Discharged home with home health services."),
    ("skilled_nursing_facility", "Discharged to a skilled nursing facility."),
    ("rehabilitation", "Discharged to inpatient rehabilitation."),
    ("hospice", "Discharged to home hospice."),
    ("against_medical_advice", "Patient left against medical advice."),
];

fn pick_distinct<'a, T>(w: &mut DocWriter, items: &'a [T], n: usize) -> Vec<&'a T> {
    let mut chosen: Vec<usize> = Vec::new();
    for _ in 0..n * 4 {
        if chosen.len() == n {
            break;
        }
        let i = w.rng.below(items.len());
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.into_iter().map(|i| &items[i]).collect()
}

/// A header line: capitals in sectioned notes, clipped in terse ones.
fn header(w: &mut DocWriter, sectioned: &str, terse: &str) {
    match w.style {
        Style::Sectioned => {
            w.newline().put(&sectioned.to_uppercase()).put(":").newline();
        }
        Style::Terse => {
            w.newline().put(terse).put(": ");
        }
        Style::Narrative => {
            w.newline().put(sectioned).put(": ");
        }
    }
}

fn write_opening(w: &mut DocWriter, p: &Patient, title: &str, visit: (i64, u32, u32)) {
    match w.style {
        Style::Sectioned => {
            w.put(title).newline();
            p.write_registration(w, visit);
        }
        Style::Terse => {
            w.put("Pt: ");
            p.write_full_name(w);
            w.put("  MRN ").phi(PhiCategory::Mrn, &p.mrn).put("  DOS ").date(visit).newline();
        }
        Style::Narrative => {
            w.put(title).put(" for ");
            p.write_full_name(w);
            w.put(" (MRN ")
                .phi(PhiCategory::Mrn, &p.mrn)
                .put("), seen at ")
                .phi(PhiCategory::Hospital, &p.hospital);
            w.put(" on ").date(visit).put(".").newline();
        }
    }
}

fn write_signature(w: &mut DocWriter) {
    let clinician = person_name(&mut w.rng, None);
    w.newline();
    match w.rng.below(3) {
        0 => {
            w.put("Electronically signed by: ");
        }
        1 => {
            w.put("Dictated by: ");
        }
        _ => {
            w.put("Attending: ");
        }
    }
    write_clinician(w, &clinician);
    if w.rng.chance(0.3) {
        let signed = (w.rng.range(2016, 2025), w.rng.range(1, 12) as u32, w.rng.range(1, 28) as u32);
        w.put(" on ").date(signed);
    }
    if w.rng.chance(0.2) {
        let npi = pattern_id("##########", &mut w.rng);
        w.put("  NPI: ").phi(PhiCategory::License, &npi);
    }
    w.newline();
}

/// A medication line, returning its gold entry (name, dose, route, frequency).
fn write_medication(w: &mut DocWriter, drug: &Drug) -> Value {
    // The schemas bound dose and frequency to 40 characters; longer options stay out.
    let doses: Vec<&str> = drug.doses.iter().copied().filter(|d| d.len() <= 40).collect();
    let frequencies: Vec<&str> = drug.frequencies.iter().copied().filter(|f| f.len() <= 40).collect();
    let dose = doses.first().map_or("1 tablet", |_| *w.rng.pick(&doses));
    let frequency = frequencies.first().map_or("daily", |_| *w.rng.pick(&frequencies));
    w.put(drug.name).put(" ").put(dose).put(" ").put(drug.route).put(" ").put(frequency);
    json!({"name": drug.name, "dose": dose, "route": drug.route, "frequency": frequency})
}

fn write_age_sex(w: &mut DocWriter, p: &Patient) {
    p.write_age(w);
    let word = p.sex_word(w.style);
    w.put(" ").put(word);
}

fn diagnoses_of(w: &mut DocWriter, n: usize) -> Vec<&'static Diagnosis> {
    pick_distinct(w, &lexicon().diagnoses, n)
}

/// The eponyms and near-misses that must not be taken for PHI.
fn write_near_misses(w: &mut DocWriter) {
    let eponyms = &lexicon().eponyms;
    if !eponyms.is_empty() && w.rng.chance(0.6) {
        let eponym = *w.rng.pick(eponyms);
        w.filler(" Also noted: history of ").put(eponym).put(".");
    }
}

pub fn discharge_summary(w: &mut DocWriter, p: &Patient, visit: (i64, u32, u32)) -> Gold {
    let lexicon = lexicon();
    write_opening(w, p, "DISCHARGE SUMMARY", visit);
    let discharge = add_days(visit, w.rng.range(1, 9));
    if w.style != Style::Narrative {
        w.put("Admission date: ").date(visit).put("   Discharge date: ").date(discharge).newline();
    }
    let n = 2 + w.rng.below(3);
    let dx = diagnoses_of(w, n);
    let primary = dx[0];
    let secondary: Vec<&Diagnosis> = dx[1..].to_vec();
    let reasons = [
        "chest pain",
        "shortness of breath",
        "fever and confusion",
        "abdominal pain",
        "a fall at home",
        "weakness",
    ];
    let reason = *w.rng.pick(&reasons);

    header(w, "History of present illness", "HPI");
    if w.style == Style::Terse {
        write_age_sex(w, p);
        w.filler(" adm w/ ").put(reason).filler(". hx ");
    } else {
        p.write_full_name(w);
        w.put(" is a ");
        write_age_sex(w, p);
        w.filler(" who was admitted with ")
            .put(reason)
            .filler(" to ")
            .phi(PhiCategory::Hospital, &p.hospital);
        w.filler(". Past history includes ");
    }
    let history: Vec<&str> = secondary.iter().map(|d| d.name).collect();
    w.put(&if history.is_empty() { "no chronic illness".to_string() } else { history.join(", ") }).put(".");
    write_near_misses(w);

    header(w, "Discharge diagnoses", "Dx");
    w.put("Primary: ").put(primary.name).put(&format!(" ({})", primary.icd10));
    if !secondary.is_empty() {
        w.put(". Secondary: ").put(&history.join("; ")).put(".");
    }

    let procedures: Vec<&str> = if w.rng.chance(0.6) {
        let n = 1 + w.rng.below(2);
        pick_distinct(w, &PROCEDURES, n).into_iter().copied().collect()
    } else {
        Vec::new()
    };
    header(w, "Procedures", "Procs");
    w.put(&if procedures.is_empty() { "None.".to_string() } else { format!("{}.", procedures.join(", ")) });

    header(w, "Hospital course", "Course");
    w.filler("Treated and monitored; symptoms improved. ");
    if w.rng.chance(0.4) {
        w.filler("Discussed plan with the patient's ").put(p.relative.0).put(" ");
        w.phi(PhiCategory::Name, p.relative.1.given).put(".");
    }

    let n = 1 + w.rng.below(4);
    let drugs = pick_distinct(w, &lexicon.drugs, n);
    header(w, "Discharge medications", "D/C meds");
    let mut medications = Vec::new();
    let mut medication_list = Vec::new();
    for (i, drug) in drugs.iter().enumerate() {
        if w.style == Style::Sectioned {
            w.newline().put(&format!("{}. ", i + 1));
        } else if i > 0 {
            w.put("; ");
        }
        let statuses = [("", "active"), ("START ", "new"), ("CONTINUE ", "active")];
        let (verb, status) = *w.rng.pick(&statuses);
        w.put(verb);
        let entry = write_medication(w, drug);
        // The medication schema bounds indications to 60 characters.
        let indication = (drug.indication.len() <= 60).then_some(drug.indication);
        if let Some(indication) = indication {
            w.put(" for ").put(indication);
        }
        medication_list.push(json!({
            "name": entry["name"], "dose": entry["dose"], "route": entry["route"],
            "frequency": entry["frequency"], "indication": indication, "status": status,
        }));
        medications.push(entry);
    }

    let n = if w.rng.chance(0.5) { 1 + w.rng.below(2) } else { 0 };
    let allergies = pick_distinct(w, &ALLERGENS, n);
    header(w, "Allergies", "All");
    if allergies.is_empty() {
        w.put("NKDA");
    } else {
        let text: Vec<String> = allergies.iter().map(|(s, r)| format!("{s} ({r})")).collect();
        w.put(&text.join(", "));
    }

    let (disposition, sentence) = *w.rng.pick(&DISPOSITIONS);
    header(w, "Disposition", "Dispo");
    w.put(sentence);
    let weeks = w.rng.range(1, 4);
    let pcp = person_name(&mut w.rng, None);
    header(w, "Follow-up", "F/u");
    let follow_start = w.text.len();
    w.put("Follow up with Dr. ").phi(PhiCategory::Name, &format!("{} {}", pcp.given, pcp.surname));
    w.put(&format!(" in {weeks} week{}", if weeks == 1 { "" } else { "s" }));
    let follow_up = w.text[follow_start..].to_string();
    w.put(".");
    if w.rng.chance(0.3) {
        let fax = super::writer::phone(&mut w.rng);
        w.filler(" Clinic fax ").phi(PhiCategory::Fax, &fax).put(".");
    }
    write_signature(w);

    vec![
        (
            "discharge_summary",
            json!({
                "patient_age": p.age, "sex": p.sex.as_str(), "admission_reason": reason,
                "primary_diagnosis": primary.name, "secondary_diagnoses": history,
                "procedures": procedures, "medications": medications,
                "allergies": allergies.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                "discharge_disposition": disposition, "follow_up": follow_up,
            }),
        ),
        (
            "medication_list",
            json!({
                "medications": medication_list,
                "allergies": allergies.iter().map(|(s, r)| json!({"substance": s, "reaction": r})).collect::<Vec<_>>(),
            }),
        ),
    ]
}

/// A clinic visit or an emergency department note: complaint, vitals, assessment, plan.
pub fn visit_note(w: &mut DocWriter, p: &Patient, visit: (i64, u32, u32), emergency: bool) -> Gold {
    let lexicon = lexicon();
    let title = if emergency { "EMERGENCY DEPARTMENT NOTE" } else { "CLINIC NOTE" };
    write_opening(w, p, title, visit);
    let complaints =
        ["cough", "chest pain", "headache", "back pain", "dizziness", "abdominal pain", "rash", "fatigue"];
    let complaint = *w.rng.pick(&complaints);
    header(w, "Chief complaint", "CC");
    w.put(complaint);
    header(w, "History of present illness", "HPI");
    if w.style == Style::Terse {
        write_age_sex(w, p);
        let days = w.rng.range(1, 10);
        w.filler(" c/o ").put(complaint).filler(" x ").put(&format!("{days} days."));
    } else {
        p.write_full_name(w);
        w.put(" is a ");
        write_age_sex(w, p);
        w.filler(" presenting with ").put(complaint).filler(" for several days.");
    }
    if emergency && w.rng.chance(0.3) {
        let plate = pattern_id("#@@@###", &mut w.rng);
        w.filler(" Involved in a motor vehicle collision; vehicle plate ")
            .phi(PhiCategory::Vehicle, &plate)
            .put(".");
    }
    let smoking = [
        ("current", "Current smoker, 1 ppd."),
        ("former", "Former smoker."),
        ("never", "Never smoker."),
        ("unknown", ""),
    ];
    let (smoking_status, smoking_text) = *w.rng.pick(&smoking);
    if !smoking_text.is_empty() {
        header(w, "Social history", "SH");
        w.put(smoking_text);
        if w.rng.chance(0.3) {
            w.filler(" Lives with ").put(p.relative.0).put(" ");
            w.phi(PhiCategory::Name, &format!("{} {}", p.relative.1.given, p.relative.1.surname));
            w.filler(" in ").phi(PhiCategory::City, p.city.name).put(".");
        }
    }
    write_near_misses(w);

    let systolic = w.rng.range(98, 178);
    let diastolic = w.rng.range(58, 104);
    let heart_rate = w.rng.range(52, 128);
    let temperature = 36.0 + w.rng.range(0, 30) as f64 / 10.0;
    let respiratory = w.rng.range(12, 26);
    let saturation = w.rng.range(88, 100);
    header(w, "Vital signs", "VS");
    let bp = format!("{systolic}/{diastolic}");
    w.put("BP ")
        .put(&bp)
        .put(&format!(", HR {heart_rate}, T {temperature:.1} C, RR {respiratory}, SpO2 {saturation}%"));

    let n = w.rng.below(4);
    let drugs = pick_distinct(w, &lexicon.drugs, n);
    let mut medication_list = Vec::new();
    if !drugs.is_empty() {
        header(w, "Medications", "Meds");
        for (i, drug) in drugs.iter().enumerate() {
            if i > 0 {
                w.put(", ");
            }
            let entry = write_medication(w, drug);
            medication_list.push(json!({
                "name": entry["name"], "dose": entry["dose"], "route": entry["route"],
                "frequency": entry["frequency"], "indication": null, "status": "active",
            }));
        }
    }

    let n = 1 + w.rng.below(2);
    let dx = diagnoses_of(w, n);
    header(w, "Assessment", "A");
    let assessment: Vec<&str> = dx.iter().map(|d| d.name).collect();
    w.put(&assessment.join("; ")).put(".");
    let plan_options = [
        "obtain chest x-ray".to_string(),
        "check basic metabolic panel".to_string(),
        "follow up in 2 weeks".to_string(),
        "return precautions reviewed".to_string(),
        "refer to physical therapy".to_string(),
        "smoking cessation counseling".to_string(),
    ];
    let n = 1 + w.rng.below(3);
    let mut plan: Vec<String> = pick_distinct(w, &plan_options, n).into_iter().cloned().collect();
    if let Some(drug) = drugs.first() {
        plan.push(format!("continue {}", drug.name));
    }
    header(w, "Plan", "P");
    w.put(&plan.join("; ")).put(".");
    if w.rng.chance(0.25) {
        let url = format!("https://portal.example.org/{}", pattern_id("@@####", &mut w.rng));
        w.filler(" Patient portal: ").phi(PhiCategory::Url, &url);
        if w.rng.chance(0.5) {
            let ip = format!("10.{}.{}.{}", w.rng.range(0, 255), w.rng.range(0, 255), w.rng.range(1, 254));
            w.filler(" (video visit from IP ").phi(PhiCategory::Ip, &ip).put(")");
        }
        w.put(".");
    }
    if w.rng.chance(0.3) {
        w.newline();
        p.write_relative(w);
    }
    write_signature(w);

    vec![
        (
            "clinic_note",
            json!({
                "patient_age": p.age, "sex": p.sex.as_str(), "chief_complaint": complaint,
                "vital_signs": {
                    "blood_pressure": bp, "heart_rate": heart_rate,
                    "temperature_c": (temperature * 10.0).round() / 10.0,
                    "respiratory_rate": respiratory, "oxygen_saturation": saturation,
                },
                "assessment": assessment, "plan": plan, "smoking_status": smoking_status,
            }),
        ),
        ("medication_list", json!({"medications": medication_list, "allergies": []})),
    ]
}

pub fn radiology_report(w: &mut DocWriter, p: &Patient, visit: (i64, u32, u32)) -> Gold {
    let imaging = &lexicon().imaging;
    let first = w.rng.pick(imaging).clone();
    let same_study: Vec<_> = imaging
        .iter()
        .filter(|f| f.modality == first.modality && f.region == first.region)
        .cloned()
        .collect();
    let n = 1 + w.rng.below(2.min(same_study.len()));
    let findings = pick_distinct(w, &same_study, n);
    let modality_words = [
        ("xray", "X-ray"),
        ("ct", "CT"),
        ("mri", "MRI"),
        ("ultrasound", "Ultrasound"),
        ("nuclear_medicine", "Nuclear medicine scan"),
        ("pet", "PET"),
        ("mammography", "Mammogram"),
        ("fluoroscopy", "Fluoroscopy"),
    ];
    let modality_word =
        modality_words.iter().find(|(k, _)| *k == first.modality).map_or("Study", |(_, v)| *v);
    let contrast: Option<bool> = match (first.modality, w.rng.below(3)) {
        ("ct" | "mri", 0) => Some(true),
        ("ct" | "mri", 1) => Some(false),
        _ => None,
    };
    let title = format!("{modality_word} {}", first.region);
    write_opening(w, p, "RADIOLOGY REPORT", visit);
    header(w, "Exam", "Exam");
    w.put(&title);
    match contrast {
        Some(true) => w.put(" with contrast"),
        Some(false) => w.put(" without contrast"),
        None => w.put(""),
    };
    let indications = [
        "shortness of breath",
        "trauma",
        "persistent pain",
        "abnormal laboratory values",
        "follow-up of known lesion",
    ];
    let indication = *w.rng.pick(&indications);
    header(w, "Indication", "Ind");
    w.put(indication);
    header(w, "Comparison", "Comp");
    let comparison = if w.rng.chance(0.5) {
        let start = w.text.len();
        w.put("Prior study of ");
        let prior = add_days(visit, -w.rng.range(30, 900));
        w.date(prior);
        Some(w.text[start..].to_string())
    } else {
        w.put("None.");
        None
    };
    header(w, "Findings", "Findings");
    let mut gold_findings = Vec::new();
    let mut critical = false;
    for (i, finding) in findings.iter().enumerate() {
        if i > 0 {
            w.put(" ");
        }
        let size = if finding.finding.contains("{size}") {
            Some(format!("{}.{} cm", w.rng.range(0, 6), w.rng.range(1, 9)))
        } else {
            None
        };
        let observation = finding.finding.replace("{size}", size.as_deref().unwrap_or(""));
        w.put(&observation).put(" in the ").put(finding.location).put(".");
        critical |= finding.critical;
        gold_findings.push(json!({"observation": observation, "location": finding.location, "size": size}));
    }
    header(w, "Impression", "Impression");
    let impression: Vec<String> =
        findings.iter().map(|f| f.finding.replace(" {size}", "").replace("{size}", "")).collect();
    for (i, line) in impression.iter().enumerate() {
        if i > 0 {
            w.put(" ");
        }
        w.put(&format!("{}. ", i + 1)).put(line).put(".");
    }
    let mut recommendations = Vec::new();
    if critical {
        w.put(" Critical result communicated to ");
        let clinician = person_name(&mut w.rng, None);
        write_clinician(w, &clinician);
        w.put(" by telephone.");
        let recommendation = "urgent clinical correlation";
        w.put(" Recommend ").put(recommendation).put(".");
        recommendations.push(recommendation);
    } else if w.rng.chance(0.3) {
        let recommendation = "follow-up imaging in 6 months";
        w.put(" Recommend ").put(recommendation).put(".");
        recommendations.push(recommendation);
    }
    if first.modality == "mri" && w.rng.chance(0.3) {
        let serial = pattern_id("@@#####-##", &mut w.rng);
        w.filler(" Pacemaker serial number ").phi(PhiCategory::Device, &serial);
        w.filler(" confirmed MR-conditional.");
    }
    write_signature(w);
    vec![(
        "radiology_report",
        json!({
            "modality": first.modality, "body_region": first.region, "contrast": contrast,
            "indication": indication, "comparison": comparison, "findings": gold_findings,
            "impression": impression, "critical_result": critical, "recommendations": recommendations,
        }),
    )]
}

/// The value of a lab test, mostly normal, sometimes out of range; and its flag.
fn lab_value(w: &mut DocWriter, test: &LabTest) -> (String, &'static str) {
    let span = test.high - test.low;
    let roll = w.rng.unit();
    let value = if roll < 0.15 {
        test.high + span * (0.05 + w.rng.unit() * 0.5)
    } else if roll < 0.25 {
        (test.low - span * (0.05 + w.rng.unit() * 0.3)).max(0.0)
    } else {
        test.low + span * (0.05 + w.rng.unit() * 0.9)
    };
    let text = format!("{value:.*}", test.decimals);
    let written: f64 = text.parse().unwrap_or(value);
    let flag = if written > test.high {
        "high"
    } else if written < test.low {
        "low"
    } else {
        "normal"
    };
    (text, flag)
}

pub fn lab_report(w: &mut DocWriter, p: &Patient, visit: (i64, u32, u32)) -> Gold {
    let labs = &lexicon().labs;
    let mut panels: Vec<&str> = labs.iter().map(|t| t.panel).collect();
    panels.sort_unstable();
    panels.dedup();
    // One panel per patient, so that follow-up reports can be compared.
    let panel = panels[p.lab_panel % panels.len()];
    let mut tests: Vec<&LabTest> = labs.iter().filter(|t| t.panel == panel).collect();
    tests.truncate(12);
    let specimen = tests.first().map_or("blood", |t| t.specimen);
    write_opening(w, p, "LABORATORY REPORT", visit);
    w.newline().put("Collected: ");
    let start = w.text.len();
    w.date(visit);
    let collection_date = w.text[start..].trim_start_matches("the ").to_string();
    w.put("   Specimen: ").put(specimen).put(&format!("   Panel: {panel}")).newline();
    let mut results = Vec::new();
    for test in tests {
        let (value, flag) = lab_value(w, test);
        let name = if w.style == Style::Terse { test.abbrev } else { test.name };
        let range = format!("{}-{}", trim_number(test.low), trim_number(test.high));
        let flag_mark = match flag {
            "high" => " H",
            "low" => " L",
            _ => "",
        };
        let unit = (!test.unit.is_empty() && test.unit != "-").then_some(test.unit);
        let separator = if w.style == Style::Terse { " " } else { ":  " };
        w.put(name).put(separator).put(&value);
        if let Some(unit) = unit {
            w.put(" ").put(unit);
        }
        w.put("   (").put(&range).put(")").put(flag_mark).newline();
        results.push(
            json!({"test": name, "value": value, "unit": unit, "reference_range": range, "flag": flag}),
        );
    }
    if w.rng.chance(0.3) {
        w.put("Results called to ");
        let clinician = person_name(&mut w.rng, None);
        write_clinician(w, &clinician);
        let number = super::writer::phone(&mut w.rng);
        w.put(" at ").phi(PhiCategory::Phone, &number).put(".").newline();
    }
    write_signature(w);
    vec![(
        "lab_report",
        json!({"collection_date": collection_date, "specimen": specimen, "results": results}),
    )]
}

/// `12.0` → `12`, `0.45` → `0.45`: reference limits as labs print them.
fn trim_number(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
