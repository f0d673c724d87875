//! Rules about what the repository may contain.

use std::path::Path;
use std::process::Command;

/// The llama.cpp tree is materialised at build time and never committed: under vendor/
/// git tracks only the lock file, our own patches, the pin manifest and the README.
#[test]
fn vendor_tracks_only_lock_patches_pin_and_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("git")
        .args(["ls-files", "vendor"])
        .current_dir(root)
        .output()
        .expect("git must be installed to check the repository");
    assert!(output.status.success(), "git ls-files failed: {}", String::from_utf8_lossy(&output.stderr));
    let files = String::from_utf8(output.stdout).unwrap();
    assert!(files.contains("vendor/llama.cpp.lock"), "vendor/llama.cpp.lock is not tracked:\n{files}");
    for file in files.lines() {
        let allowed = file == "vendor/README.md"
            || file == "vendor/llama.cpp.lock"
            || file == "vendor/source/Cargo.toml"
            || (file.starts_with("vendor/patches/") && file.ends_with(".patch") && !file[15..].contains('/'));
        assert!(
            allowed,
            "git tracks {file} under vendor/; only the lock, patches, pin manifest and README belong there"
        );
    }
}

/// No llama.cpp or ggml source anywhere in the repository.
#[test]
fn no_llama_cpp_sources_are_tracked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("git").args(["ls-files"]).current_dir(root).output().unwrap();
    let files = String::from_utf8(output.stdout).unwrap();
    let foreign: Vec<&str> = files
        .lines()
        .filter(|f| !f.starts_with("vendor/patches/"))
        .filter(|f| {
            let name = f.rsplit('/').next().unwrap_or(f);
            name == "llama.h"
                || name == "ggml.h"
                || name == "gguf.h"
                || (name.starts_with("ggml") && (name.ends_with(".c") || name.ends_with(".cpp")))
                || (name.starts_with("llama-") && (name.ends_with(".cpp") || name.ends_with(".h")))
        })
        .collect();
    assert!(foreign.is_empty(), "llama.cpp sources are tracked: {foreign:?}");
}
