//! Materialising the llama.cpp source tree: the `llama.cpp/` folder of the pinned Rust
//! registry package named in `vendor/llama.cpp.lock`, fetched by cargo itself, checked
//! against the lock's sha256, copied into OUT_DIR with file times kept (so an unchanged
//! tree does not make cmake rebuild everything).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The contents of `vendor/llama.cpp.lock`.
#[derive(Debug, Clone)]
pub struct SourceLock {
    pub package: String,
    pub version: String,
    pub sha256: String,
}

/// Reads `key = "value"` lines; `#` starts a comment.
pub fn read_lock(path: &Path) -> Result<SourceLock, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = |key: &str| -> Result<String, String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .ok_or_else(|| format!("{} has no `{key}` line", path.display()))
    };
    let lock = SourceLock {
        package: value("package")?,
        version: value("version")?,
        sha256: value("sha256")?.to_ascii_lowercase(),
    };
    if lock.sha256.len() != 64 || !lock.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{}: sha256 must be 64 hex digits", path.display()));
    }
    Ok(lock)
}

/// Has cargo fetch the pinned package (through the user's normal registry configuration)
/// and returns the `llama.cpp/` folder inside the unpacked package.
pub fn fetch_package_tree(
    lock: &SourceLock,
    pin_manifest: &Path,
    work_dir: &Path,
    cargo: &Path,
) -> Result<PathBuf, String> {
    let manifest = std::fs::read_to_string(pin_manifest)
        .map_err(|e| format!("cannot read {}: {e}", pin_manifest.display()))?;
    let pinned = format!("\"={}\"", lock.version);
    if !manifest.contains(&lock.package) || !manifest.contains(&pinned) {
        return Err(format!(
            "{} must depend on {} = {pinned}, as vendor/llama.cpp.lock says",
            pin_manifest.display(),
            lock.package
        ));
    }
    // Work on a copy so that cargo's lockfile lands in OUT_DIR, not in the source tree.
    std::fs::create_dir_all(work_dir).map_err(|e| e.to_string())?;
    let work_manifest = work_dir.join("Cargo.toml");
    std::fs::write(&work_manifest, manifest).map_err(|e| e.to_string())?;
    std::fs::write(work_dir.join("lib.rs"), "").map_err(|e| e.to_string())?;

    run_cargo(cargo, work_dir, &["fetch", "--manifest-path"], &work_manifest)?;
    let metadata = run_cargo(
        cargo,
        work_dir,
        &["metadata", "--format-version", "1", "--manifest-path"],
        &work_manifest,
    )?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)
        .map_err(|e| format!("cargo metadata printed something unreadable: {e}"))?;
    let package_manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == lock.package.as_str() && p["version"] == lock.version.as_str())
        .and_then(|p| p["manifest_path"].as_str())
        .map(PathBuf::from)
        .ok_or_else(|| format!("cargo metadata does not list {} {}", lock.package, lock.version))?;
    let package_dir = package_manifest.parent().ok_or("package manifest has no parent folder")?.to_path_buf();
    verify_checksum(lock, &package_dir, work_dir)?;
    Ok(package_dir.join("llama.cpp"))
}

fn run_cargo(cargo: &Path, dir: &Path, args: &[&str], manifest: &Path) -> Result<String, String> {
    let output = Command::new(cargo)
        .args(args)
        .arg(manifest)
        .current_dir(dir)
        // Keep the outer build's target folder and flags out of this small side job.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo {}` failed (set MEDLLM_LLAMA_SRC to a llama.cpp tree to build offline):\n{}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| e.to_string())
}

/// Checks the package against the lock's sha256: the `.crate` archive in cargo's cache
/// when it is still there, else the checksum cargo verified and recorded in the lockfile.
fn verify_checksum(lock: &SourceLock, package_dir: &Path, work_dir: &Path) -> Result<(), String> {
    let crate_file = package_dir
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .zip(package_dir.parent().and_then(Path::file_name))
        .map(|(registry, index)| {
            registry.join("cache").join(index).join(format!("{}-{}.crate", lock.package, lock.version))
        });
    let (found, what) = match crate_file.filter(|p| p.is_file()) {
        Some(path) => {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            (hex(&Sha256::digest(&bytes)), path.display().to_string())
        }
        None => (lockfile_checksum(lock, &work_dir.join("Cargo.lock"))?, "Cargo.lock".into()),
    };
    if found != lock.sha256 {
        return Err(format!(
            "sha256 of {} {} is {found} ({what}), but vendor/llama.cpp.lock says {}",
            lock.package, lock.version, lock.sha256
        ));
    }
    Ok(())
}

fn lockfile_checksum(lock: &SourceLock, lockfile: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(lockfile).map_err(|e| format!("cannot read {}: {e}", lockfile.display()))?;
    let block = text
        .split("[[package]]")
        .find(|b| {
            b.contains(&format!("name = \"{}\"", lock.package))
                && b.contains(&format!("version = \"{}\"", lock.version))
        })
        .ok_or_else(|| format!("{} does not list {}", lockfile.display(), lock.package))?;
    block
        .lines()
        .find_map(|l| l.trim().strip_prefix("checksum = "))
        .map(|v| v.trim_matches('"').to_ascii_lowercase())
        .ok_or_else(|| format!("{} has no checksum for {}", lockfile.display(), lock.package))
}

/// Fails unless `tree` looks like a llama.cpp source tree we can build.
pub fn check_tree(tree: &Path) -> Result<(), String> {
    let required = [
        "CMakeLists.txt",
        "include/llama.h",
        "src/llama.cpp",
        "ggml/CMakeLists.txt",
        "ggml/include/ggml.h",
        "ggml/include/ggml-opt.h",
        "ggml/include/ggml-backend.h",
        "ggml/include/gguf.h",
    ];
    let missing: Vec<&str> = required.iter().copied().filter(|f| !tree.join(f).is_file()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{} is not a llama.cpp source tree: missing {}", tree.display(), missing.join(", ")))
    }
}

/// Copies `from` into `to` recursively, keeping each file's modification time.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).map_err(|e| format!("{}: {e}", entry.path().display()))?;
            let modified = entry.metadata().and_then(|m| m.modified());
            if let Ok(modified) = modified {
                let file = std::fs::File::options().write(true).open(&target);
                if let Ok(file) = file {
                    let _ = file.set_modified(modified);
                }
            }
        }
    }
    Ok(())
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
