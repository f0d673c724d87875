//! docs/ stays true to the binary: each page's `--help` block is what `--help` prints.

use std::path::Path;

use medllm::cli::dev::{DOCUMENTED_COMMANDS, doc_page, replace_help_block};

use crate::medllm;

#[test]
fn docs_help_blocks_match_the_binary() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for command in DOCUMENTED_COMMANDS {
        let page_path = docs.join(doc_page(command));
        let page = std::fs::read_to_string(&page_path).unwrap();
        let output = medllm().args(command.split(' ')).arg("--help").env("COLUMNS", "100").output().unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        let expected = replace_help_block(&page, &help).expect("page has help markers");
        assert!(
            expected == page,
            "{} is out of date with `medllm {command} --help`; run `medllm dev sync-docs`",
            page_path.display()
        );
    }
}
