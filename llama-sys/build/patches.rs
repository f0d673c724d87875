//! Applying medllm's own patches (`vendor/patches/NNNN-name.patch`) to a llama.cpp tree.
//!
//! Shared by `build.rs` and by the fixture test in `tests/patch_step.rs`, so the step that
//! every build depends on is tested on a small tree without building llama.cpp.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the patch step stopped.
#[derive(Debug)]
pub enum PatchError {
    /// The patches folder could not be listed.
    List { dir: PathBuf, reason: String },
    /// A patch file is not named `NNNN-name.patch` or does not open with a comment.
    Malformed { patch: String, reason: String },
    /// `git apply` refused the patch: the tree is not the one the patch was written for.
    DoesNotApply { patch: String, detail: String },
    /// `git` could not be run at all.
    Tool { reason: String },
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchError::List { dir, reason } => {
                write!(f, "cannot list patches in {}: {reason}", dir.display())
            }
            PatchError::Malformed { patch, reason } => write!(f, "patch {patch}: {reason}"),
            PatchError::DoesNotApply { patch, detail } => write!(
                f,
                "patch {patch} does not apply to the llama.cpp tree (was the pinned version in \
                 vendor/llama.cpp.lock changed without refreshing the patch, or does \
                 MEDLLM_LLAMA_SRC point at a tree that is already patched?):\n{detail}"
            ),
            PatchError::Tool { reason } => write!(f, "cannot run git to apply patches: {reason}"),
        }
    }
}

/// The patch files in `dir`, in the order they must be applied (by their `NNNN` prefix).
/// A missing folder means no patches.
pub fn list_patches(dir: &Path) -> Result<Vec<PathBuf>, PatchError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PatchError::List { dir: dir.to_path_buf(), reason: e.to_string() })?;
    let mut patches = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PatchError::List { dir: dir.to_path_buf(), reason: e.to_string() })?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("patch") {
            continue;
        }
        check_patch_file(&path)?;
        patches.push(path);
    }
    patches.sort();
    Ok(patches)
}

/// A patch must be named `NNNN-name.patch` and open with a comment saying why it exists:
/// free text before the first `diff`/`---` line, which `git apply` skips.
fn check_patch_file(path: &Path) -> Result<(), PatchError> {
    let name = display_name(path);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let numbered =
        stem.len() > 5 && stem.as_bytes()[..4].iter().all(u8::is_ascii_digit) && stem.as_bytes()[4] == b'-';
    if !numbered {
        return Err(PatchError::Malformed { patch: name, reason: "name must be NNNN-name.patch".into() });
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| PatchError::Malformed { patch: name.clone(), reason: e.to_string() })?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.starts_with("diff ") || first.starts_with("--- ") || first.is_empty() {
        return Err(PatchError::Malformed {
            patch: name,
            reason: "must open with a comment saying why the change is needed".into(),
        });
    }
    Ok(())
}

/// Applies `patches` to `tree` in order and returns their names. Stops at, and names, the
/// first one that does not apply; a patch that fails its check changes nothing.
pub fn apply_patches(tree: &Path, patches: &[PathBuf]) -> Result<Vec<String>, PatchError> {
    let mut applied = Vec::with_capacity(patches.len());
    for patch in patches {
        let name = display_name(patch);
        let does_not_apply = |detail| PatchError::DoesNotApply { patch: name.clone(), detail };
        git_apply(tree, patch, &["--check"])?.map_err(does_not_apply)?;
        git_apply(tree, patch, &[])?.map_err(does_not_apply)?;
        applied.push(name);
    }
    Ok(applied)
}

/// Runs `git apply` in `tree` as a plain patch tool. The outer `Result` is whether git ran,
/// the inner one whether the patch applied (with git's message when not).
fn git_apply(tree: &Path, patch: &Path, extra: &[&str]) -> Result<Result<(), String>, PatchError> {
    let patch =
        patch.canonicalize().map_err(|e| PatchError::Tool { reason: format!("{}: {e}", patch.display()) })?;
    // The tree usually sits inside medllm's own git checkout (target/); stop git from
    // discovering that repository, or it would apply paths relative to its root.
    let ceiling = tree.parent().unwrap_or(tree);
    let output = Command::new("git")
        .arg("apply")
        .args(extra)
        .arg("-p1")
        .arg("--whitespace=nowarn")
        .arg(&patch)
        .current_dir(tree)
        .env("GIT_CEILING_DIRECTORIES", ceiling)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .map_err(|e| PatchError::Tool { reason: e.to_string() })?;
    if output.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(String::from_utf8_lossy(&output.stderr).trim().to_string()))
    }
}

fn display_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}
