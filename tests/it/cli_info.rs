use medllm::gguf::ModelSummary;

use crate::{medllm, stderr_of, tiny_model};

#[test]
fn info_json_describes_the_tiny_model() {
    let output = medllm().args(["info", "--json"]).arg(tiny_model()).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let summary: ModelSummary = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary.architecture.as_deref(), Some("llama"));
    assert_eq!(summary.context_length, Some(1024));
    assert_eq!(summary.file_type.as_deref(), Some("F32"));
    assert!(summary.chat_template);
    assert_eq!(summary.tensor_count, 21);
    let f32_usage = &summary.tensor_types["F32"];
    assert_eq!(f32_usage.tensors, 21);
    assert_eq!(f32_usage.bytes, summary.tensor_bytes);
    assert_eq!(summary.parameters * 4, summary.tensor_bytes, "all F32: 4 bytes a parameter");
    assert!(summary.vocab_size.unwrap() > 400);
}

#[test]
fn info_table_names_the_essentials() {
    let output = medllm().arg("info").arg(tiny_model()).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    for line in
        ["architecture    llama", "context length  1024", "chat template   yes", "file type       F32"]
    {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn control_characters_in_metadata_are_escaped_in_the_table_and_kept_in_json() {
    use medllm::gguf::{GgmlType, MetadataValue, TensorSpec, write_gguf};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evil.gguf");
    let name = "Evil\u{1b}[2J\u{1b}[31mred\rover\0written\u{202e}";
    let metadata = vec![
        ("general.architecture".to_string(), MetadataValue::String("llama\u{7}".into())),
        ("general.name".to_string(), MetadataValue::String(name.into())),
    ];
    let tensors =
        [TensorSpec { name: "blk.0\u{1b}]0;title\u{7}".into(), dims: vec![4], ggml_type: GgmlType::F32 }];
    let mut file = std::fs::File::create(&path).unwrap();
    write_gguf(&mut file, &metadata, &tensors, |_, out| out.write_all(&[0u8; 16])).unwrap();
    drop(file);
    let output = medllm().args(["info", "--tensors"]).arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    for raw in ['\u{1b}', '\r', '\0', '\u{7}', '\u{202e}'] {
        assert!(!text.contains(raw), "{raw:?} reached the terminal:\n{text:?}");
    }
    assert!(text.contains("Evil\\u{1b}[2J\\u{1b}[31mred\\rover\\u{0}written\\u{202e}"), "{text}");
    assert!(text.contains("blk.0\\u{1b}]0;title\\u{7}"), "{text}");
    let output = medllm().args(["info", "--json"]).arg(&path).output().unwrap();
    let summary: ModelSummary = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary.name.as_deref(), Some(name), "JSON keeps the value itself");
}

#[test]
fn missing_file_exits_2_naming_it() {
    let output = medllm().args(["info", "/nonexistent/model.gguf"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("/nonexistent/model.gguf"), "{}", stderr_of(&output));
}

#[test]
fn truncated_and_corrupt_files_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(tiny_model()).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, "Discharge summary: not a model at all").unwrap();
    for (file, expected) in [(&truncated, "truncated"), (&not_gguf, "not a GGUF file")] {
        for args in [vec!["info"], vec!["generate", "-p", "hi", "-m"]] {
            let output = medllm().args(&args).arg(file).output().unwrap();
            assert_eq!(output.status.code(), Some(2), "{args:?} {}", stderr_of(&output));
            assert!(stderr_of(&output).contains(expected), "{args:?}: {}", stderr_of(&output));
        }
    }
}

#[test]
fn help_is_stable() {
    let output = medllm().arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    insta::assert_snapshot!("help", String::from_utf8(output.stdout).unwrap());
    let output = medllm().args(["info", "--help"]).output().unwrap();
    insta::assert_snapshot!("info_help", String::from_utf8(output.stdout).unwrap());
}

#[test]
fn usage_errors_exit_2() {
    let output = medllm().args(["info"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = medllm().args(["no-such-command"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
