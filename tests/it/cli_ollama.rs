//! `medllm ollama` against a real registry: Docker Distribution (`docker-registry`, which
//! scripts/setup.sh installs), started here on a loopback port with its own storage folder.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use medllm::gguf::{TinyModelSpec, write_tiny_model};
use medllm::ollama::{Manifest, PullReport, PushReport, digest_of};
use sha2::{Digest as _, Sha256};

use crate::{medllm, stderr_of, tiny_model, write_lora_adapter};

/// A `docker-registry` process serving a temporary folder on 127.0.0.1.
struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: medllm-test-secret\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = htpasswd {
            let hash =
                bcrypt::hash_with_result(password, 4).unwrap().format_for_version(bcrypt::Version::TwoY);
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: medllm-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry must be installed: scripts/setup.sh installs it");
        let mut registry = Registry { child, port, dir };
        registry.wait_until_listening();
        registry
    }

    fn wait_until_listening(&mut self) {
        for _ in 0..400 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited at start: {status}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not start listening on port {}", self.port);
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps a blob's bytes.
    fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback TCP proxy in front of the registry that can cut a push off: it drops the
/// connection when the client starts its Nth `PATCH` (before the registry sees any of it),
/// and can then refuse every connection until told to let traffic through again.
struct CuttingProxy {
    port: u16,
    cut_mid_body: Arc<AtomicBool>,
    cut_at_patch: Arc<AtomicUsize>,
    refuse_after_cut: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(upstream: u16, cut_at_patch: usize, refuse_after_cut: bool) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = CuttingProxy {
            port: listener.local_addr().unwrap().port(),
            cut_mid_body: Arc::new(AtomicBool::new(false)),
            cut_at_patch: Arc::new(AtomicUsize::new(cut_at_patch)),
            refuse_after_cut: Arc::new(AtomicBool::new(refuse_after_cut)),
            refusing: Arc::new(AtomicBool::new(false)),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let patches_seen = Arc::new(AtomicUsize::new(0));
        let (cut_mid_body, cut_at, refuse_after, refusing, stopped) = (
            proxy.cut_mid_body.clone(),
            proxy.cut_at_patch.clone(),
            proxy.refuse_after_cut.clone(),
            proxy.refusing.clone(),
            proxy.stopped.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let cut = Cut {
                    at_patch: cut_at.clone(),
                    mid_body: cut_mid_body.clone(),
                    refuse_after: refuse_after.clone(),
                    refusing: refusing.clone(),
                    patches_seen: patches_seen.clone(),
                };
                std::thread::spawn(move || forward_requests(client, server, &cut));
            }
        });
        proxy
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Lets every request through from now on.
    fn pass(&self) {
        self.cut_mid_body.store(false, Ordering::SeqCst);
        self.cut_at_patch.store(0, Ordering::SeqCst);
        self.refuse_after_cut.store(false, Ordering::SeqCst);
        self.refusing.store(false, Ordering::SeqCst);
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

/// Where a proxy connection cuts the push off.
struct Cut {
    /// The PATCH (counted from 1 over all connections) to cut; 0: none.
    at_patch: Arc<AtomicUsize>,
    /// Whether half of that PATCH's body reaches the registry first.
    mid_body: Arc<AtomicBool>,
    /// Whether to refuse connections after the cut.
    refuse_after: Arc<AtomicBool>,
    refusing: Arc<AtomicBool>,
    patches_seen: Arc<AtomicUsize>,
}

/// Copies requests from client to server one at a time (by their Content-Length), answers
/// back as they come, and cuts the connection at the chosen PATCH.
fn forward_requests(mut client: TcpStream, mut server: TcpStream, cut: &Cut) {
    let (mut server_reader, mut client_writer) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_reader, &mut client_writer);
        let _ = client_writer.shutdown(Shutdown::Both);
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let Some(header_end) = pending.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) else {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..header_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while pending.len() < header_end + body_len {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        if head.starts_with("patch ") {
            let n = cut.patches_seen.fetch_add(1, Ordering::SeqCst) + 1;
            if n == cut.at_patch.load(Ordering::SeqCst) {
                if cut.refuse_after.load(Ordering::SeqCst) {
                    cut.refusing.store(true, Ordering::SeqCst);
                }
                if cut.mid_body.load(Ordering::SeqCst) {
                    let _ = server.write_all(&pending[..header_end + body_len / 2]);
                    let _ = server.flush();
                }
                break;
            }
        }
        if server.write_all(&pending[..header_end + body_len]).is_err() {
            break;
        }
        pending.drain(..header_end + body_len);
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// A packaged tiny model (with an adapter layer) in a store of its own.
struct Packaged {
    dir: tempfile::TempDir,
    manifest: Manifest,
}

impl Packaged {
    fn store(&self) -> PathBuf {
        self.dir.path().join("pkg")
    }
}

fn package_tiny(name: &str) -> Packaged {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter.gguf");
    write_lora_adapter(&adapter, "llama", 64);
    let license = dir.path().join("LICENSE");
    std::fs::write(&license, "Apache-2.0\n").unwrap();
    let output = medllm()
        .args(["ollama", "package"])
        .arg(tiny_model())
        .args(["--name", name, "--system", "You summarise discharge letters.", "--param", "temperature=0.2"])
        .arg("--adapter")
        .arg(&adapter)
        .arg("--license")
        .arg(&license)
        .args(["--message", "user:What does BID mean?", "--json", "-o"])
        .arg(dir.path().join("pkg"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest: Manifest = serde_json::from_value(report["manifest"].clone()).unwrap();
    Packaged { dir, manifest }
}

/// `medllm ollama push|pull` with the test's own upload cache and no credentials from
/// the environment unless given.
fn transfer(
    verb: &str,
    name: &str,
    store: &Path,
    registry: &str,
    cache: &Path,
    extra: &[&str],
) -> assert_cmd::Command {
    let mut cmd = medllm();
    cmd.args(["ollama", verb, name, "--insecure", "--json", "--registry", registry, "--store"])
        .arg(store)
        .args(extra)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("MEDLLM_REGISTRY_USERNAME")
        .env_remove("MEDLLM_REGISTRY_PASSWORD")
        .env_remove("MEDLLM_REGISTRY_TOKEN");
    cmd
}

/// Every file under `dir`, by relative path, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn push_report(output: &std::process::Output) -> PushReport {
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn ollama_push_then_pull_round_trips_byte_identically_and_a_second_push_uploads_nothing() {
    let registry = Registry::start(None);
    let packaged = package_tiny("clinic/tiny:q1");
    let cache = tempfile::tempdir().unwrap();
    let blobs: Vec<String> = packaged.manifest.blobs().map(|b| b.digest.clone()).collect();
    assert_eq!(blobs.len(), 1 + 7, "config + model, adapter, template, system, params, license, messages");

    let output = transfer(
        "push",
        "clinic/tiny:q1",
        &packaged.store(),
        &registry.host(),
        cache.path(),
        &["--chunk-size", "64K"],
    )
    .output()
    .unwrap();
    let first = push_report(&output);
    assert_eq!(first.uploaded, blobs);
    assert!(first.skipped.is_empty());
    assert_eq!(first.bytes_sent, packaged.manifest.blobs().map(|b| b.size).sum::<u64>());
    for digest in &blobs {
        let stored = std::fs::read(registry.blob_data(digest)).unwrap();
        assert_eq!(&digest_of(&stored), digest, "the registry holds exactly the blob");
    }

    let output = transfer("push", "clinic/tiny:q1", &packaged.store(), &registry.host(), cache.path(), &[])
        .output()
        .unwrap();
    let second = push_report(&output);
    assert!(second.uploaded.is_empty(), "{second:?}");
    assert_eq!(second.skipped, blobs);
    assert_eq!(second.bytes_sent, 0);
    assert_eq!(second.manifest_digest, first.manifest_digest);

    let pulled = tempfile::tempdir().unwrap();
    let output = transfer("pull", "clinic/tiny:q1", pulled.path(), &registry.host(), cache.path(), &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report: PullReport = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.downloaded, blobs);
    assert_eq!(report.manifest_digest, first.manifest_digest);

    let original = files_under(&packaged.store());
    let copy = files_under(pulled.path());
    let original_store: BTreeMap<_, _> =
        original.into_iter().filter(|(p, _)| !p.ends_with("Modelfile")).collect();
    assert_eq!(original_store.keys().collect::<Vec<_>>(), copy.keys().collect::<Vec<_>>());
    for (path, bytes) in &copy {
        assert!(original_store[path] == *bytes, "{} differs after the round trip", path.display());
        if let Some(hex) = path.file_name().unwrap().to_str().unwrap().strip_prefix("sha256-") {
            assert_eq!(
                format!("{:x}", Sha256::digest(bytes)),
                hex,
                "{} is named by its digest",
                path.display()
            );
        }
    }
    assert!(copy.contains_key(Path::new("manifests/registry.ollama.ai/clinic/tiny/q1")));
}

#[test]
fn ollama_push_to_a_password_protected_registry_needs_the_credentials() {
    let registry = Registry::start(Some(("clinician", "correct horse")));
    let packaged = package_tiny("clinic/tiny:secure");
    let cache = tempfile::tempdir().unwrap();
    let push =
        || transfer("push", "clinic/tiny:secure", &packaged.store(), &registry.host(), cache.path(), &[]);

    let output = push().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("refused access") && stderr.contains("MEDLLM_REGISTRY_USERNAME"), "{stderr}");

    let output = push()
        .env("MEDLLM_REGISTRY_USERNAME", "clinician")
        .env("MEDLLM_REGISTRY_PASSWORD", "wrong horse")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("refused access"), "{}", stderr_of(&output));
    assert!(!registry.blob_data(&packaged.manifest.config.digest).exists(), "nothing was accepted");

    let output = push()
        .env("MEDLLM_REGISTRY_USERNAME", "clinician")
        .env("MEDLLM_REGISTRY_PASSWORD", "correct horse")
        .output()
        .unwrap();
    let report = push_report(&output);
    assert_eq!(report.uploaded.len(), 8);

    let pulled = tempfile::tempdir().unwrap();
    let pull = || transfer("pull", "clinic/tiny:secure", pulled.path(), &registry.host(), cache.path(), &[]);
    assert_eq!(pull().output().unwrap().status.code(), Some(2), "no credentials, no pull");
    let output = pull()
        .env("MEDLLM_REGISTRY_USERNAME", "clinician")
        .env("MEDLLM_REGISTRY_PASSWORD", "correct horse")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
}

#[test]
fn ollama_push_cut_off_mid_blob_resumes_where_the_registry_stood() {
    let registry = Registry::start(None);
    let packaged = package_tiny("clinic/tiny:resume");
    let cache = tempfile::tempdir().unwrap();
    let chunk = 64 * 1024;
    let model = packaged.manifest.layers[0].clone();
    assert!(model.size > 6 * chunk, "the model spans several chunks");
    // PATCH 1 is the config blob, 2..4 the model's first three chunks; the 5th is cut.
    let proxy = CuttingProxy::start(registry.port, 5, true);
    let push = || {
        transfer(
            "push",
            "clinic/tiny:resume",
            &packaged.store(),
            &proxy.host(),
            cache.path(),
            &["--chunk-size", "64K", "--retries", "0"],
        )
    };
    let output = push().output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("unreachable"), "{}", stderr_of(&output));

    proxy.pass();
    let report = push_report(&push().output().unwrap());
    assert_eq!(report.skipped, std::slice::from_ref(&packaged.manifest.config.digest));
    assert_eq!(report.resumed, [(model.digest.clone(), 3 * chunk)]);
    let all: u64 = packaged.manifest.layers.iter().map(|l| l.size).sum();
    assert_eq!(report.bytes_sent, all - 3 * chunk, "the three acknowledged chunks are not sent again");

    let pulled = tempfile::tempdir().unwrap();
    let output = transfer("pull", "clinic/tiny:resume", pulled.path(), &registry.host(), cache.path(), &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let hex = model.digest.strip_prefix("sha256:").unwrap();
    let name = format!("blobs/sha256-{hex}");
    assert_eq!(
        std::fs::read(pulled.path().join(&name)).unwrap(),
        std::fs::read(packaged.store().join(&name)).unwrap()
    );
}

#[test]
fn ollama_push_retries_a_broken_connection_within_one_run() {
    let registry = Registry::start(None);
    let packaged = package_tiny("clinic/tiny:retry");
    let cache = tempfile::tempdir().unwrap();
    let proxy = CuttingProxy::start(registry.port, 3, false);
    let output = transfer(
        "push",
        "clinic/tiny:retry",
        &packaged.store(),
        &proxy.host(),
        cache.path(),
        &["--chunk-size", "64K", "--retries", "2"],
    )
    .output()
    .unwrap();
    let report = push_report(&output);
    let model = &packaged.manifest.layers[0];
    assert_eq!(report.resumed, [(model.digest.clone(), 64 * 1024)]);
    assert_eq!(report.uploaded.len(), 8);
    let stored = std::fs::read(registry.blob_data(&model.digest)).unwrap();
    assert_eq!(digest_of(&stored), model.digest);
}

#[test]
fn ollama_pull_refuses_a_blob_that_does_not_match_its_digest_and_stores_nothing() {
    let registry = Registry::start(None);
    let packaged = package_tiny("clinic/tiny:tamper");
    let cache = tempfile::tempdir().unwrap();
    push_report(
        &transfer("push", "clinic/tiny:tamper", &packaged.store(), &registry.host(), cache.path(), &[])
            .output()
            .unwrap(),
    );
    // Flip one byte of the model as the registry stores it: same size, other content.
    let model = &packaged.manifest.layers[0];
    let data = registry.blob_data(&model.digest);
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let pulled = tempfile::tempdir().unwrap();
    let output = transfer(
        "pull",
        "clinic/tiny:tamper",
        pulled.path(),
        &registry.host(),
        cache.path(),
        &["--retries", "0"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("digest mismatch") && stderr.contains(&model.digest), "{stderr}");
    assert!(!pulled.path().join("manifests").exists(), "no manifest for a model that failed");
    let stored: Vec<String> = files_under(pulled.path()).keys().map(|p| p.display().to_string()).collect();
    let hex = model.digest.strip_prefix("sha256:").unwrap();
    assert!(stored.iter().all(|p| !p.contains(hex) && !p.contains(".partial")), "{stored:?}");
}

#[test]
fn ollama_push_to_a_registry_that_is_down_exits_2() {
    let packaged = package_tiny("clinic/tiny:down");
    let cache = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{}", free_port());
    let output =
        transfer("push", "clinic/tiny:down", &packaged.store(), &host, cache.path(), &["--retries", "0"])
            .output()
            .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains(&format!("registry http://{host} is unreachable")),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn ollama_package_errors_exit_2_and_leave_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pkg");
    let other_arch = dir.path().join("qwen.gguf");
    write_lora_adapter(&other_arch, "qwen2", 64);
    let wrong_shape = dir.path().join("wide.gguf");
    write_lora_adapter(&wrong_shape, "llama", 48);
    let full_model = dir.path().join("full.gguf");
    write_tiny_model(&full_model, &TinyModelSpec { seed: 7, ..Default::default() }).unwrap();
    let adapter_case = |adapter: &Path| -> Vec<std::ffi::OsString> {
        vec![tiny_model().into(), "--name".into(), "clinic/tiny".into(), "--adapter".into(), adapter.into()]
    };
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec![tiny_model().into(), "--name".into(), "Clinic/Tiny".into()], "bad model name"),
        (
            vec![dir.path().join("missing.gguf").into(), "--name".into(), "clinic/tiny".into()],
            "does not exist",
        ),
        (adapter_case(&other_arch), "is for the qwen2 architecture but the model is llama"),
        // A full model given as ADAPTER, and an adapter of another model's shapes (issue 16).
        (adapter_case(&full_model), "it is not a LoRA adapter"),
        (adapter_case(&wrong_shape), "lora_b [2, 48] do not fit the base's [64, 64]"),
        (
            vec![
                tiny_model().into(),
                "--name".into(),
                "clinic/tiny".into(),
                "--param".into(),
                "temprature=1".into(),
            ],
            "no such parameter",
        ),
    ];
    for (args, expected) in cases {
        let output = medllm().args(["ollama", "package"]).args(&args).arg("-o").arg(&out).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stderr_of(&output).contains(expected), "{args:?}: {}", stderr_of(&output));
        assert!(!out.join("manifests").exists() && !out.join("Modelfile").exists(), "{args:?}");
    }
}

#[test]
fn ollama_create_from_the_packaged_modelfile_and_install_build_the_same_model() {
    let packaged = package_tiny("clinic/tiny:same");
    let models = tempfile::tempdir().unwrap();
    let output = medllm()
        .args(["ollama", "create", "--name", "clinic/tiny:same", "--json", "-f"])
        .arg(packaged.store().join("Modelfile"))
        .env("OLLAMA_MODELS", models.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let manifest: Manifest = serde_json::from_value(report["manifest"].clone()).unwrap();
    assert_eq!(manifest, packaged.manifest);
    let installed = models.path().join("manifests/registry.ollama.ai/clinic/tiny/same");
    assert_eq!(std::fs::read(installed).unwrap(), manifest_bytes(&packaged));

    let output = medllm()
        .args(["ollama", "install"])
        .arg(tiny_model())
        .args(["--name", "clinic/plain"])
        .env("OLLAMA_MODELS", models.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let manifest =
        std::fs::read(models.path().join("manifests/registry.ollama.ai/clinic/plain/latest")).unwrap();
    let manifest = Manifest::from_json(&manifest).unwrap();
    assert_eq!(manifest.layers[0], packaged.manifest.layers[0], "the same weights blob");
}

fn manifest_bytes(packaged: &Packaged) -> Vec<u8> {
    std::fs::read(packaged.store().join("manifests/registry.ollama.ai/clinic/tiny/same")).unwrap()
}

/// How the token service in front of the registry decides whom to give a token.
#[derive(Clone)]
enum TokenPolicy {
    /// The Ollama hub's way: the request is signed by this ed25519 key.
    SignedBy(ed25519_dalek::VerifyingKey),
    /// A Docker-style token service: basic credentials.
    Password(&'static str, &'static str),
}

/// A bearer-token gateway in front of the registry: requests without the token get a 401
/// challenge naming its `/token` realm; `/token` hands out the token by `TokenPolicy`; the
/// rest go through to the registry. It counts the tokens it granted and refused.
struct TokenGateway {
    port: u16,
    granted: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

const GRANTED_TOKEN: &str = "medllm-test-token";

impl TokenGateway {
    fn start(upstream: u16, policy: TokenPolicy) -> TokenGateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gateway = TokenGateway {
            port,
            granted: Arc::new(AtomicUsize::new(0)),
            refused: Arc::new(AtomicUsize::new(0)),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        let (granted, refused, stopped) =
            (gateway.granted.clone(), gateway.refused.clone(), gateway.stopped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (policy, granted, refused) = (policy.clone(), granted.clone(), refused.clone());
                std::thread::spawn(move || {
                    serve_gateway(client, upstream, port, &policy, &granted, &refused)
                });
            }
        });
        gateway
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TokenGateway {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_gateway(
    mut client: TcpStream,
    upstream: u16,
    port: u16,
    policy: &TokenPolicy,
    granted: &AtomicUsize,
    refused: &AtomicUsize,
) {
    let mut server: Option<TcpStream> = None;
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let Some(header_end) = pending.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) else {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..header_end]).into_owned();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let body_len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
        while pending.len() < header_end + body_len {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        let request: Vec<u8> = pending.drain(..header_end + body_len).collect();
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        let authorization = header("authorization").unwrap_or_default();
        // The client waits for each answer before its next request, so answering here
        // cannot overtake an answer still coming back from the registry.
        let local_answer = if target.starts_with("/token") {
            let url = format!("http://127.0.0.1:{port}{target}");
            if token_request_is_allowed(policy, &url, &authorization) {
                granted.fetch_add(1, Ordering::SeqCst);
                Some(("200 OK", "", format!("{{\"token\":\"{GRANTED_TOKEN}\"}}")))
            } else {
                refused.fetch_add(1, Ordering::SeqCst);
                Some(("401 Unauthorized", "", String::new()))
            }
        } else if authorization != format!("Bearer {GRANTED_TOKEN}") {
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"medllm-test\",scope=\"repository:clinic/tiny:pull,push\"\r\n"
            );
            Some(("401 Unauthorized", "challenge", challenge))
        } else {
            None
        };
        match local_answer {
            Some((status, "challenge", challenge)) => {
                let answer = format!("HTTP/1.1 {status}\r\n{challenge}Content-Length: 0\r\n\r\n");
                if client.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            Some((status, _, body)) => {
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if client.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            None => {
                if server.is_none() {
                    let upstream_stream = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                    let (mut from_server, mut to_client) =
                        (upstream_stream.try_clone().unwrap(), client.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from_server, &mut to_client);
                        let _ = to_client.shutdown(Shutdown::Both);
                    });
                    server = Some(upstream_stream);
                }
                if server.as_mut().unwrap().write_all(&request).is_err() {
                    return;
                }
            }
        }
    }
}

fn token_request_is_allowed(policy: &TokenPolicy, url: &str, authorization: &str) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    match policy {
        TokenPolicy::Password(user, password) => {
            authorization == format!("Basic {}", b64.encode(format!("{user}:{password}")))
                && url.contains("service=medllm-test")
                && url.contains("scope=repository%3Aclinic%2Ftiny%3Apull%2Cpush")
        }
        TokenPolicy::SignedBy(expected) => {
            use ed25519_dalek::Verifier as _;
            let Some((public_b64, signature_b64)) = authorization.split_once(':') else { return false };
            let (Ok(public), Ok(signature)) = (b64.decode(public_b64), b64.decode(signature_b64)) else {
                return false;
            };
            // SSH wire format: string "ssh-ed25519", string key.
            let mut blob = Vec::new();
            blob.extend_from_slice(&11u32.to_be_bytes());
            blob.extend_from_slice(b"ssh-ed25519");
            blob.extend_from_slice(&32u32.to_be_bytes());
            blob.extend_from_slice(expected.as_bytes());
            let Ok(signature) = ed25519_dalek::Signature::from_slice(&signature) else { return false };
            let empty_body = format!("{:x}", Sha256::digest(b""));
            let signed = format!("GET,{url},{}", b64.encode(empty_body));
            public == blob
                && expected.verify(signed.as_bytes(), &signature).is_ok()
                && url.contains("nonce=")
                && url.contains("ts=")
                && url.contains("service=medllm-test")
        }
    }
}

fn ssh_keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed by scripts/setup.sh");
    assert!(status.success());
}

#[test]
fn ollama_push_signs_the_token_request_with_the_ollama_key_as_the_hub_expects() {
    let registry = Registry::start(None);
    let packaged = package_tiny("clinic/tiny:hub");
    let cache = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (known, stranger) = (keys.path().join("id_ed25519"), keys.path().join("other_ed25519"));
    ssh_keygen(&known);
    ssh_keygen(&stranger);
    let known_key = medllm::ollama::auth::OllamaKey::load(&known).unwrap().verifying_key();
    let gateway = TokenGateway::start(registry.port, TokenPolicy::SignedBy(known_key));
    let push = |key: &Path| {
        let mut cmd =
            transfer("push", "clinic/tiny:hub", &packaged.store(), &gateway.host(), cache.path(), &[]);
        cmd.arg("--key").arg(key);
        cmd
    };

    let output = push(&stranger).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("refused access"), "{stderr}");
    assert!(stderr.contains(&format!("{}.pub", stranger.display())), "names the key to register: {stderr}");
    assert_eq!(gateway.granted.load(Ordering::SeqCst), 0);
    assert!(gateway.refused.load(Ordering::SeqCst) >= 1);

    let report = push_report(&push(&known).output().unwrap());
    assert_eq!(report.uploaded.len(), 8);
    assert!(gateway.granted.load(Ordering::SeqCst) >= 1);
    let stored = std::fs::read(registry.blob_data(&packaged.manifest.layers[0].digest)).unwrap();
    assert_eq!(digest_of(&stored), packaged.manifest.layers[0].digest);
}

#[test]
fn ollama_pull_fetches_a_bearer_token_with_basic_credentials() {
    let registry = Registry::start(None);
    let packaged = package_tiny("clinic/tiny:token");
    let cache = tempfile::tempdir().unwrap();
    push_report(
        &transfer("push", "clinic/tiny:token", &packaged.store(), &registry.host(), cache.path(), &[])
            .output()
            .unwrap(),
    );
    let gateway = TokenGateway::start(registry.port, TokenPolicy::Password("clinician", "correct horse"));
    let pulled = tempfile::tempdir().unwrap();
    let pull = || transfer("pull", "clinic/tiny:token", pulled.path(), &gateway.host(), cache.path(), &[]);
    let output = pull().output().unwrap();
    assert_eq!(output.status.code(), Some(2), "anonymous token requests are refused");
    let stderr = stderr_of(&output);
    assert!(stderr.contains("refused access") && stderr.contains("no credentials were given"), "{stderr}");
    let output = pull()
        .env("MEDLLM_REGISTRY_USERNAME", "clinician")
        .env("MEDLLM_REGISTRY_PASSWORD", "correct horse")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(gateway.granted.load(Ordering::SeqCst), 1, "one token serves the whole pull");
    assert!(pulled.path().join("manifests/registry.ollama.ai/clinic/tiny/token").exists());
}

/// Docker Distribution keeps the half of a chunk that reached it and then refuses to resume
/// the upload at the place it last acknowledged; the push notices, starts that blob over and
/// still finishes with the right bytes.
#[test]
fn ollama_push_cut_off_in_the_middle_of_a_chunk_starts_the_blob_over_and_finishes() {
    let registry = Registry::start(None);
    let packaged = package_tiny("clinic/tiny:midchunk");
    let cache = tempfile::tempdir().unwrap();
    let proxy = CuttingProxy::start(registry.port, 4, false);
    proxy.cut_mid_body.store(true, Ordering::SeqCst);
    let output = transfer(
        "push",
        "clinic/tiny:midchunk",
        &packaged.store(),
        &proxy.host(),
        cache.path(),
        &["--chunk-size", "64K", "--retries", "3"],
    )
    .output()
    .unwrap();
    let report = push_report(&output);
    assert_eq!(report.uploaded.len(), 8);
    let model = &packaged.manifest.layers[0];
    let all: u64 = packaged.manifest.blobs().map(|b| b.size).sum();
    assert!(report.bytes_sent > all, "part of the model went twice: {report:?}");
    let stored = std::fs::read(registry.blob_data(&model.digest)).unwrap();
    assert_eq!(digest_of(&stored), model.digest);
}
