//! The patch step of the build, on a small fixture tree (no llama.cpp build needed).
#![allow(missing_docs)]

#[path = "../build/patches.rs"]
mod patches;

use std::path::{Path, PathBuf};

use patches::{PatchError, apply_patches, list_patches};

fn fixture_tree(root: &Path) -> PathBuf {
    let tree = root.join("llama.cpp");
    std::fs::create_dir_all(tree.join("src")).unwrap();
    std::fs::write(tree.join("src/context.cpp"), "int a = 1;\nint b = 2;\nint c = 3;\n").unwrap();
    tree
}

fn write_patch(dir: &Path, name: &str, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

const CHANGE_B: &str = "Why: b must be 20 for the test.\n\n\
--- a/src/context.cpp\n+++ b/src/context.cpp\n@@ -1,3 +1,3 @@\n int a = 1;\n-int b = 2;\n+int b = 20;\n int c = 3;\n";
const CHANGE_C: &str = "Why: c must be 30, after b changed.\n\n\
--- a/src/context.cpp\n+++ b/src/context.cpp\n@@ -1,3 +1,3 @@\n int a = 1;\n int b = 20;\n-int c = 3;\n+int c = 30;\n";

#[test]
fn patches_apply_in_order() {
    let root = tempfile::tempdir().unwrap();
    let tree = fixture_tree(root.path());
    let dir = root.path().join("patches");
    // Written out of order on purpose: the NNNN prefix decides.
    write_patch(&dir, "0002-change-c.patch", CHANGE_C);
    write_patch(&dir, "0001-change-b.patch", CHANGE_B);
    std::fs::write(dir.join("README.txt"), "not a patch").unwrap();
    let list = list_patches(&dir).unwrap();
    assert_eq!(list.len(), 2);
    let applied = apply_patches(&tree, &list).unwrap();
    assert_eq!(applied, vec!["0001-change-b.patch", "0002-change-c.patch"]);
    let text = std::fs::read_to_string(tree.join("src/context.cpp")).unwrap();
    assert_eq!(text, "int a = 1;\nint b = 20;\nint c = 30;\n");

    // Applying the series to a tree that already carries it fails on the first patch,
    // and changes nothing.
    let err = apply_patches(&tree, &list).unwrap_err();
    assert!(err.to_string().contains("0001-change-b.patch"), "{err}");
    assert_eq!(std::fs::read_to_string(tree.join("src/context.cpp")).unwrap(), text);
}

#[test]
fn a_patch_that_does_not_apply_is_named() {
    let root = tempfile::tempdir().unwrap();
    let tree = fixture_tree(root.path());
    let dir = root.path().join("patches");
    // CHANGE_C alone does not apply: it expects b = 20.
    let list = vec![write_patch(&dir, "0001-change-c.patch", CHANGE_C)];
    let err = apply_patches(&tree, &list).unwrap_err();
    assert!(matches!(err, PatchError::DoesNotApply { .. }));
    assert!(err.to_string().contains("0001-change-c.patch"), "{err}");
    // Nothing was changed.
    assert_eq!(
        std::fs::read_to_string(tree.join("src/context.cpp")).unwrap(),
        "int a = 1;\nint b = 2;\nint c = 3;\n"
    );
}

#[test]
fn patches_need_a_number_and_a_reason() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("patches");
    write_patch(&dir, "change-b.patch", CHANGE_B);
    assert!(matches!(list_patches(&dir), Err(PatchError::Malformed { .. })));

    let dir = root.path().join("patches2");
    let no_reason = CHANGE_B.split_once("\n\n").unwrap().1;
    write_patch(&dir, "0001-change-b.patch", no_reason);
    let err = list_patches(&dir).unwrap_err();
    assert!(err.to_string().contains("comment"), "{err}");

    assert!(list_patches(&root.path().join("none")).unwrap().is_empty());
}
