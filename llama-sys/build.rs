//! Builds medllm's own llama.cpp: materialise the pinned source, apply `vendor/patches`,
//! build libllama + ggml (CPU, OpenMP, static) with cmake, generate bindings with bindgen.
//!
//! Inputs: `vendor/llama.cpp.lock`, `vendor/source/Cargo.toml`, `vendor/patches/*.patch`,
//! and the environment variables `MEDLLM_LLAMA_SRC` (an unpatched llama.cpp tree to use
//! instead of fetching) and `MEDLLM_PORTABLE=1` (no native CPU flags).

#[path = "build/patches.rs"]
mod patches;
#[path = "build/source.rs"]
mod source;

use std::env;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() {
    if let Err(message) = run() {
        eprintln!("error: llama-sys build failed: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let vendor = manifest_dir.join("../vendor");
    let lock_path = vendor.join("llama.cpp.lock");
    let pin_manifest = vendor.join("source/Cargo.toml");
    let patches_dir = vendor.join("patches");

    for input in ["build.rs", "build"] {
        println!("cargo:rerun-if-changed={}", manifest_dir.join(input).display());
    }
    for input in [&lock_path, &pin_manifest, &patches_dir] {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    println!("cargo:rerun-if-env-changed=MEDLLM_LLAMA_SRC");
    println!("cargo:rerun-if-env-changed=MEDLLM_PORTABLE");

    let lock = source::read_lock(&lock_path)?;
    let pristine = match env::var_os("MEDLLM_LLAMA_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let cargo = PathBuf::from(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            source::fetch_package_tree(&lock, &pin_manifest, &out_dir.join("pin"), &cargo)?
        }
    };
    source::check_tree(&pristine)?;

    let patch_files = patches::list_patches(&patches_dir).map_err(|e| e.to_string())?;
    let portable = env::var("MEDLLM_PORTABLE").is_ok_and(|v| v == "1" || v == "true");
    let stamp = source_stamp(&pristine, &lock, &patch_files, portable)?;
    // One llama.cpp build per source, patches and flags, shared by every cargo profile
    // (build, test, bench) instead of one per OUT_DIR: it is the slow part of the build.
    let cache = shared_build_root(&out_dir).join(&stamp[..16]);
    let tree = cache.join("llama.cpp");
    materialise(&pristine, &tree, &stamp, &patch_files)?;

    let build_dir = build_llama(&tree, &cache.join("cmake"), portable)?;
    link(&build_dir);
    generate_bindings(&tree, &out_dir)?;
    Ok(())
}

/// `target/<profile>/build/llama-sys-<hash>/out` → `target/medllm-llama`.
fn shared_build_root(out_dir: &Path) -> PathBuf {
    match out_dir.ancestors().nth(4) {
        Some(target) => target.join("medllm-llama"),
        None => out_dir.join("medllm-llama"),
    }
}

/// A digest of everything the built library depends on.
fn source_stamp(
    pristine: &Path,
    lock: &source::SourceLock,
    patch_files: &[PathBuf],
    portable: bool,
) -> Result<String, String> {
    let mut stamp = Sha256::new();
    stamp.update(format!(
        "{}|{}|{}|{}|portable={portable}\n",
        lock.package,
        lock.version,
        lock.sha256,
        pristine.display()
    ));
    for patch in patch_files {
        stamp.update(std::fs::read(patch).map_err(|e| format!("{}: {e}", patch.display()))?);
    }
    Ok(source::hex(&stamp.finalize()))
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set (is this run by cargo?)"))
}

/// Copies the pristine tree into OUT_DIR and patches it, unless the copy there already
/// matches this source and these patches (a stamp file records which).
fn materialise(pristine: &Path, tree: &Path, stamp: &str, patch_files: &[PathBuf]) -> Result<(), String> {
    let stamp_file = tree.with_extension("stamp");
    if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp) && tree.is_dir() {
        return Ok(());
    }
    if tree.exists() {
        std::fs::remove_dir_all(tree).map_err(|e| format!("{}: {e}", tree.display()))?;
    }
    source::copy_tree(pristine, tree)?;
    patches::apply_patches(tree, patch_files).map_err(|e| e.to_string())?;
    std::fs::write(&stamp_file, stamp).map_err(|e| e.to_string())
}

/// libllama + ggml (CPU backend) only, static, always optimised.
fn build_llama(tree: &Path, build_root: &Path, portable: bool) -> Result<PathBuf, String> {
    let mut config = cmake::Config::new(tree);
    config
        .out_dir(build_root)
        .profile("Release")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("LLAMA_BUILD_COMMON", "OFF")
        .define("LLAMA_BUILD_TESTS", "OFF")
        .define("LLAMA_BUILD_TOOLS", "OFF")
        .define("LLAMA_BUILD_EXAMPLES", "OFF")
        .define("LLAMA_BUILD_SERVER", "OFF")
        .define("LLAMA_BUILD_APP", "OFF")
        .define("LLAMA_CURL", "OFF")
        .define("LLAMA_OPENSSL", "OFF")
        .define("GGML_OPENMP", "ON")
        .define("GGML_NATIVE", if portable { "OFF" } else { "ON" })
        .define("GGML_BACKEND_DL", "OFF")
        .define("GGML_CCACHE", "OFF")
        .build_target("llama");
    let dst = config.build();
    Ok(dst.join("build"))
}

fn link(build_dir: &Path) {
    println!("cargo:rustc-link-search=native={}", build_dir.join("src").display());
    println!("cargo:rustc-link-search=native={}", build_dir.join("ggml/src").display());
    // Order matters for static archives: users before what they use.
    for lib in ["llama", "ggml", "ggml-cpu", "ggml-base"] {
        println!("cargo:rustc-link-lib=static={lib}");
    }
    println!("cargo:rustc-link-lib=dylib=stdc++");
    println!("cargo:rustc-link-lib=dylib=gomp");
}

fn generate_bindings(tree: &Path, out_dir: &Path) -> Result<(), String> {
    let include = tree.join("include");
    let ggml_include = tree.join("ggml/include");
    let header = ["llama.h", "ggml.h", "ggml-opt.h", "ggml-backend.h", "gguf.h"]
        .iter()
        .map(|h| format!("#include \"{h}\"\n"))
        .collect::<String>();
    let bindings = bindgen::Builder::default()
        .header_contents("medllm_llama_sys.h", &header)
        .clang_arg(format!("-I{}", include.display()))
        .clang_arg(format!("-I{}", ggml_include.display()))
        .allowlist_function("(llama|ggml|gguf)_.*")
        .allowlist_type("(llama|ggml|gguf)_.*")
        .allowlist_var("(LLAMA|GGML|GGUF)_.*")
        .prepend_enum_name(false)
        .layout_tests(false)
        .derive_default(true)
        .rust_edition(bindgen::RustEdition::Edition2024)
        .generate()
        .map_err(|e| format!("bindgen failed: {e}"))?;
    bindings.write_to_file(out_dir.join("bindings.rs")).map_err(|e| format!("cannot write bindings: {e}"))
}
