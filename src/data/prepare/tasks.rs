//! Chat-format training examples made from one prepared record: extraction (when gold
//! labels exist), summarisation, question answering, abnormal-finding detection, and the
//! comparison of two reports of one patient.

use serde::Serialize;
use serde_json::Value;

use super::structure::{LabLine, RecordKind, Section, lab_lines, section_text};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// What it says.
    pub content: String,
}

impl Message {
    fn new(role: &str, content: impl Into<String>) -> Message {
        Message { role: role.into(), content: content.into() }
    }
}

/// The kinds of task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Report → JSON for a schema.
    Extraction,
    /// Report → its impression or assessment.
    Summarization,
    /// A question about the report → the answer from it.
    QuestionAnswering,
    /// Lab report → the results outside their reference range.
    AbnormalFindings,
    /// Two reports of one patient → what changed.
    Comparison,
}

impl TaskKind {
    /// Its name in files.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Extraction => "extraction",
            TaskKind::Summarization => "summarization",
            TaskKind::QuestionAnswering => "question_answering",
            TaskKind::AbnormalFindings => "abnormal_findings",
            TaskKind::Comparison => "comparison",
        }
    }
}

/// A training example before it is given a split.
#[derive(Debug, Clone)]
pub struct TaskExample {
    /// Which task.
    pub task: TaskKind,
    /// A suffix making the example id unique within its record (`extraction:lab_report`).
    pub name: String,
    /// The conversation.
    pub messages: Vec<Message>,
}

const SUMMARY_SYSTEM: &str = "You are a clinical documentation assistant. Answer only from the report.";

/// A prepared record, ready for tasks.
pub struct TaskInput<'a> {
    /// De-identified, normalised text.
    pub text: &'a str,
    /// Its sections.
    pub sections: &'a [Section],
    /// Its kind.
    pub kind: RecordKind,
    /// Gold extractions, de-identified: (schema name, system prompt for it, data).
    pub gold: &'a [(String, String, Value)],
}

/// Every task that applies to a record.
pub fn make_tasks(input: &TaskInput<'_>) -> Vec<TaskExample> {
    let mut out = Vec::new();
    for (schema, system, data) in input.gold {
        out.push(TaskExample {
            task: TaskKind::Extraction,
            name: format!("extraction:{schema}"),
            messages: vec![
                Message::new("system", system.clone()),
                Message::new("user", input.text),
                Message::new("assistant", serde_json::to_string(data).unwrap_or_default()),
            ],
        });
    }

    // Summarisation: the impression or assessment is the summary of the rest.
    let summary_keys = ["impression", "assessment", "assessment_plan", "diagnosis"];
    if let Some(section) = input.sections.iter().find(|s| summary_keys.contains(&s.key)) {
        let summary = input.text[section.start..section.end].trim();
        let mut rest = String::new();
        rest.push_str(input.text[..section.header_start].trim_end());
        let after = input.text[section.end..].trim();
        if !after.is_empty() {
            rest.push('\n');
            rest.push_str(after);
        }
        if summary.len() >= 12 && rest.len() >= 60 {
            let ask = match input.kind {
                RecordKind::Imaging => "Write the impression for this imaging report.",
                _ => "Summarise the assessment of this clinical note in a few lines.",
            };
            out.push(TaskExample {
                task: TaskKind::Summarization,
                name: "summarization".into(),
                messages: vec![
                    Message::new("system", SUMMARY_SYSTEM),
                    Message::new("user", format!("{ask}\n\n{rest}")),
                    Message::new("assistant", summary),
                ],
            });
        }
    }

    // Questions whose answers are a section of the report.
    let questions: [(&[&str], &str, &str); 4] = [
        (
            &["medications", "discharge_medications"],
            "qa:medications",
            "Which medications are listed, with doses and frequencies?",
        ),
        (&["allergies"], "qa:allergies", "What allergies are documented?"),
        (&["chief_complaint"], "qa:chief_complaint", "What is the chief complaint?"),
        (&["plan", "assessment_plan"], "qa:plan", "What is the plan?"),
    ];
    for (keys, name, question) in questions {
        if let Some(answer) = section_text(input.text, input.sections, keys) {
            out.push(TaskExample {
                task: TaskKind::QuestionAnswering,
                name: name.into(),
                messages: vec![
                    Message::new("system", SUMMARY_SYSTEM),
                    Message::new("user", format!("{}\n\nQuestion: {question}", input.text)),
                    Message::new("assistant", answer),
                ],
            });
        }
    }

    let labs = lab_lines(input.text);
    if labs.len() >= 2 {
        out.push(TaskExample {
            task: TaskKind::AbnormalFindings,
            name: "abnormal_findings".into(),
            messages: vec![
                Message::new("system", SUMMARY_SYSTEM),
                Message::new(
                    "user",
                    format!(
                        "List the results outside their reference range, or say that there are none.\n\n{}",
                        input.text
                    ),
                ),
                Message::new("assistant", abnormal_answer(&labs)),
            ],
        });
    }
    out
}

fn abnormal_answer(labs: &[LabLine]) -> String {
    let abnormal: Vec<String> = labs
        .iter()
        .filter(|l| l.is_abnormal())
        .map(|l| {
            let direction = if l.value > l.high { "high" } else { "low" };
            let unit = if l.unit.is_empty() { String::new() } else { format!(" {}", l.unit) };
            format!(
                "- {}: {}{unit} ({direction}; reference {}-{})",
                l.test,
                l.value_text,
                trim(l.low),
                trim(l.high)
            )
        })
        .collect();
    if abnormal.is_empty() {
        "All results are within their reference ranges.".into()
    } else {
        abnormal.join("\n")
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Two lab reports of one patient: what changed in the tests they share. `None` when they
/// share no test.
pub fn comparison_task(earlier: &str, later: &str) -> Option<TaskExample> {
    let before = lab_lines(earlier);
    let after = lab_lines(later);
    let mut changes = Vec::new();
    for now in &after {
        let Some(then) = before.iter().find(|b| b.test.eq_ignore_ascii_case(&now.test)) else { continue };
        let trend = if (now.value - then.value).abs() < f64::EPSILON {
            "unchanged".to_string()
        } else if now.value > then.value {
            "increased".to_string()
        } else {
            "decreased".to_string()
        };
        let state = match (then.is_abnormal(), now.is_abnormal()) {
            (false, true) => "; now outside the reference range",
            (true, false) => "; now back within the reference range",
            _ => "",
        };
        let unit = if now.unit.is_empty() { String::new() } else { format!(" {}", now.unit) };
        changes
            .push(format!("- {}: {} → {}{unit} ({trend}{state})", now.test, then.value_text, now.value_text));
    }
    if changes.is_empty() {
        return None;
    }
    Some(TaskExample {
        task: TaskKind::Comparison,
        name: "comparison".into(),
        messages: vec![
            Message::new("system", SUMMARY_SYSTEM),
            Message::new(
                "user",
                format!(
                    "Two lab reports of the same patient follow, the earlier first. What changed?\n\nEarlier report:\n{earlier}\n\nLater report:\n{later}"
                ),
            ),
            Message::new("assistant", changes.join("\n")),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::super::structure::{classify, sections};
    use super::*;

    #[test]
    fn a_lab_report_gets_abnormal_findings_and_a_comparison() {
        let earlier = "Hemoglobin:  13.0 g/dL   (12-17.5)\nSodium:  139 mmol/L   (135-145)\n";
        let later = "Hemoglobin:  10.2 g/dL   (12-17.5) L\nSodium:  139 mmol/L   (135-145)\n";
        let found = sections(later);
        let tasks = make_tasks(&TaskInput {
            text: later,
            sections: &found,
            kind: classify(later, &found),
            gold: &[],
        });
        let abnormal = tasks.iter().find(|t| t.task == TaskKind::AbnormalFindings).expect("abnormal task");
        assert_eq!(abnormal.messages[2].content, "- Hemoglobin: 10.2 g/dL (low; reference 12-17.5)");
        let comparison = comparison_task(earlier, later).expect("shared tests");
        let answer = &comparison.messages[2].content;
        assert!(
            answer.contains("Hemoglobin: 13.0 → 10.2 g/dL (decreased; now outside the reference range)"),
            "{answer}"
        );
        assert!(answer.contains("Sodium: 139 → 139 mmol/L (unchanged)"), "{answer}");
    }

    #[test]
    fn extraction_and_summary_tasks_come_from_gold_and_sections() {
        let text = "EXAM: CT chest without contrast\nINDICATION: cough\nFINDINGS:\nSpiculated nodule in the right upper lobe.\nIMPRESSION:\nSuspicious right upper lobe nodule.";
        let found = sections(text);
        let gold = vec![(
            "radiology_report".to_string(),
            "system".to_string(),
            serde_json::json!({"modality": "ct"}),
        )];
        let tasks = make_tasks(&TaskInput { text, sections: &found, kind: RecordKind::Imaging, gold: &gold });
        assert_eq!(tasks[0].messages[2].content, "{\"modality\":\"ct\"}");
        let summary = tasks.iter().find(|t| t.task == TaskKind::Summarization).expect("summary");
        assert_eq!(summary.messages[2].content, "Suspicious right upper lobe nodule.");
        assert!(!summary.messages[1].content.contains("Suspicious"));
    }
}
