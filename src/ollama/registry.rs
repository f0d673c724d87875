//! Push and pull over the Docker Registry HTTP API v2, the protocol Ollama's registry speaks.
//!
//! Push: `HEAD` each blob and skip those present; otherwise `POST` an upload, `PATCH` it in
//! chunks with `Content-Range`, and `PUT ?digest=` to finish; then `PUT` the manifest. The
//! upload's place is saved after every chunk the registry acknowledged, so a push cut off
//! mid-blob resumes there the next time. Pull: the manifest, then every blob, each checked
//! against its digest before it gets its name in the store; the manifest comes last.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ureq::http::{self, Response};

use super::OllamaError;
use super::auth::{self, Challenge, Credentials, OllamaKey};
use super::manifest::{Layer, MANIFEST_MEDIA_TYPE, Manifest};
use super::name::ModelName;
use super::store::{Store, digest_of};

/// How to reach a registry and how hard to try.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `host[:port]` of the registry.
    pub host: String,
    /// Plain HTTP instead of HTTPS (a registry on this machine or a trusted network).
    pub insecure: bool,
    /// Bytes per `PATCH` request.
    pub chunk_size: u64,
    /// Further attempts after a broken connection or a 5xx answer.
    pub retries: u32,
    /// Wait before the first retry; it doubles with each one.
    pub first_backoff: Duration,
    /// What to answer an authentication challenge with.
    pub credentials: Credentials,
    /// Where the places of unfinished uploads are kept between runs.
    pub upload_state_dir: Option<PathBuf>,
}

/// One thing that happened during a transfer, for progress displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// A blob starts, or starts again after a failure; `done` bytes of it are already there.
    Start {
        /// The blob.
        digest: String,
        /// Its size.
        size: u64,
        /// Bytes already transferred earlier (a resumed upload) or present.
        done: u64,
    },
    /// More bytes of the current blob went over the wire.
    Progress {
        /// The blob.
        digest: String,
        /// New bytes.
        bytes: u64,
    },
    /// A blob is done.
    Finish {
        /// The blob.
        digest: String,
        /// Whether it was already there and nothing was sent.
        skipped: bool,
    },
}

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushReport {
    /// The name pushed, with the registry it went to.
    pub name: String,
    /// Digest of the manifest.
    pub manifest_digest: String,
    /// Blobs uploaded.
    pub uploaded: Vec<String>,
    /// Blobs the registry already had.
    pub skipped: Vec<String>,
    /// Blob bytes sent in this run.
    pub bytes_sent: u64,
    /// Uploads continued from an earlier run: (digest, bytes the registry already had).
    pub resumed: Vec<(String, u64)>,
}

/// What a pull did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReport {
    /// The name pulled.
    pub name: String,
    /// Digest of the manifest.
    pub manifest_digest: String,
    /// Blobs downloaded and checked.
    pub downloaded: Vec<String>,
    /// Blobs the store already had.
    pub skipped: Vec<String>,
    /// Blob bytes received.
    pub bytes_received: u64,
}

/// Pushes the model `local` from `store` to the registry as `remote`.
pub fn push(
    store: &Store,
    local: &ModelName,
    remote: &ModelName,
    options: &RegistryOptions,
    progress: &mut dyn FnMut(TransferEvent),
) -> Result<PushReport, OllamaError> {
    let (manifest, manifest_bytes) = store.manifest(local)?;
    for blob in manifest.blobs() {
        if !store.has_blob(&blob.digest, blob.size) {
            return Err(OllamaError::MissingBlob {
                digest: blob.digest.clone(),
                store: store.root().to_path_buf(),
            });
        }
    }
    let mut client = RegistryClient::new(options, &remote.repository())?;
    let mut report = PushReport {
        name: remote.to_string(),
        manifest_digest: digest_of(&manifest_bytes),
        ..PushReport::default()
    };
    for blob in manifest.blobs() {
        if client.has_blob(blob)? {
            progress(TransferEvent::Start { digest: blob.digest.clone(), size: blob.size, done: blob.size });
            progress(TransferEvent::Finish { digest: blob.digest.clone(), skipped: true });
            report.skipped.push(blob.digest.clone());
            continue;
        }
        let path = store.blob_path(&blob.digest)?;
        client.upload_blob(blob, &path, &mut report, progress)?;
        progress(TransferEvent::Finish { digest: blob.digest.clone(), skipped: false });
        report.uploaded.push(blob.digest.clone());
    }
    client.put_manifest(&remote.tag, &manifest_bytes)?;
    Ok(report)
}

/// Pulls `remote` from the registry into `store` as `local`, checking every digest.
pub fn pull(
    store: &Store,
    remote: &ModelName,
    local: &ModelName,
    options: &RegistryOptions,
    progress: &mut dyn FnMut(TransferEvent),
) -> Result<PullReport, OllamaError> {
    let mut client = RegistryClient::new(options, &remote.repository())?;
    let manifest_bytes = client.get_manifest(&remote.tag)?;
    let manifest = Manifest::from_json(&manifest_bytes)?;
    let mut report = PullReport {
        name: local.to_string(),
        manifest_digest: digest_of(&manifest_bytes),
        ..PullReport::default()
    };
    for blob in manifest.blobs() {
        if store.has_blob(&blob.digest, blob.size) {
            progress(TransferEvent::Start { digest: blob.digest.clone(), size: blob.size, done: blob.size });
            progress(TransferEvent::Finish { digest: blob.digest.clone(), skipped: true });
            report.skipped.push(blob.digest.clone());
            continue;
        }
        client.download_blob(store, blob, progress)?;
        progress(TransferEvent::Finish { digest: blob.digest.clone(), skipped: false });
        report.downloaded.push(blob.digest.clone());
        report.bytes_received += blob.size;
    }
    store.put_manifest(local, &manifest_bytes)?;
    Ok(report)
}

/// Where an unfinished upload stands, saved between chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadState {
    location: String,
    offset: u64,
}

/// Why one attempt at something failed.
enum AttemptError {
    /// Worth another try: a broken connection or a 5xx answer.
    Transient(String),
    /// Not worth another try.
    Fatal(OllamaError),
}

impl From<OllamaError> for AttemptError {
    fn from(e: OllamaError) -> Self {
        AttemptError::Fatal(e)
    }
}

struct RegistryClient<'a> {
    agent: ureq::Agent,
    options: &'a RegistryOptions,
    /// `http(s)://host`.
    origin: String,
    repository: String,
    /// The `Authorization` value earned from the last challenge.
    authorization: Option<String>,
}

/// A finished request: status, headers, body.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: ureq::Body,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's error text, for messages.
    fn error_text(mut self) -> String {
        let text = self.body.with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {}: {text}", self.status)
        }
    }
}

impl<'a> RegistryClient<'a> {
    fn new(options: &'a RegistryOptions, repository: &str) -> Result<RegistryClient<'a>, OllamaError> {
        super::name::check_registry_host(&options.host)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("medllm/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .timeout_recv_body(None)
            .build()
            .new_agent();
        let scheme = if options.insecure { "http" } else { "https" };
        Ok(RegistryClient {
            agent,
            options,
            origin: format!("{scheme}://{}", options.host),
            repository: repository.to_string(),
            authorization: options.credentials.token.as_ref().map(|t| format!("Bearer {t}")),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.origin, self.repository)
    }

    /// An absolute URL for a `Location` the registry answered with.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{location}", self.origin)
        } else {
            format!("{}/{location}", self.origin)
        }
    }

    fn unreachable(&self, reason: impl Into<String>) -> OllamaError {
        OllamaError::RegistryUnreachable { registry: self.origin.clone(), reason: reason.into() }
    }

    /// One request, answering an authentication challenge once. Transport failures and 5xx
    /// answers come back as transient errors for the caller's retry loop.
    fn request_once(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer, AttemptError> {
        let mut answered_challenge = false;
        loop {
            let mut builder = http::Request::builder().method(method).uri(url);
            for (name, value) in headers {
                builder = builder.header(*name, value);
            }
            // Credentials go only to the registry itself, never to storage it redirects to.
            if let Some(authorization) = &self.authorization
                && url.starts_with(&self.origin)
            {
                builder = builder.header("Authorization", authorization);
            }
            let bad_request = |e: http::Error| {
                AttemptError::Fatal(OllamaError::Transfer { what: url.into(), reason: e.to_string() })
            };
            // GET and HEAD go without a body at all, not with an empty one.
            let sent = if body.is_empty() && (method == "GET" || method == "HEAD") {
                self.agent.run(builder.body(()).map_err(bad_request)?)
            } else {
                self.agent.run(builder.body(body).map_err(bad_request)?)
            };
            let response: Response<ureq::Body> = match sent {
                Ok(response) => response,
                Err(e) => return Err(AttemptError::Transient(e.to_string())),
            };
            let (parts, body) = response.into_parts();
            let answer = Answer { status: parts.status.as_u16(), headers: parts.headers, body };
            if answer.status == 401 && !answered_challenge {
                let challenge = answer.header("WWW-Authenticate").map(str::to_string);
                self.authenticate(challenge.as_deref())?;
                answered_challenge = true;
                continue;
            }
            if answer.status == 401 || answer.status == 403 {
                return Err(AttemptError::Fatal(OllamaError::AuthRefused {
                    registry: self.origin.clone(),
                    reason: answer.error_text(),
                }));
            }
            if answer.status >= 500 {
                return Err(AttemptError::Transient(answer.error_text()));
            }
            return Ok(answer);
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    fn with_retries<T>(
        &mut self,
        what: &str,
        mut attempt: impl FnMut(&mut Self) -> Result<T, AttemptError>,
    ) -> Result<T, OllamaError> {
        let mut backoff = self.options.first_backoff;
        let mut tries = 0;
        loop {
            match attempt(self) {
                Ok(value) => return Ok(value),
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Transient(reason)) => {
                    if tries >= self.options.retries {
                        return Err(self.unreachable(format!("{what}: {reason}")));
                    }
                    tracing::warn!("{what} failed ({reason}); trying again in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    tries += 1;
                }
            }
        }
    }

    fn request(
        &mut self,
        what: &str,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer, OllamaError> {
        self.with_retries(what, |client| client.request_once(method, url, headers, body))
    }

    /// Earns an `Authorization` value for the registry's challenge.
    fn authenticate(&mut self, header: Option<&str>) -> Result<(), AttemptError> {
        let refused = |reason: String| {
            AttemptError::Fatal(OllamaError::AuthRefused { registry: self.origin.clone(), reason })
        };
        let credentials = &self.options.credentials;
        let challenge = header.and_then(Challenge::parse).ok_or_else(|| {
            refused(format!(
                "the registry answered 401 with an authentication scheme medllm does not speak: {header:?}"
            ))
        })?;
        match challenge {
            Challenge::Basic => {
                let header = credentials.basic_header().ok_or_else(|| {
                    refused(format!(
                        "the registry asks for a user name and password; set {} and {}",
                        auth::USERNAME_ENV,
                        auth::PASSWORD_ENV
                    ))
                })?;
                self.authorization = Some(header);
            }
            Challenge::Bearer { realm, service, scope } => {
                // What to tell the user if the token service says no.
                let advice = if credentials.basic.is_some() {
                    format!("check {} and {}", auth::USERNAME_ENV, auth::PASSWORD_ENV)
                } else if let Some(key_path) = &credentials.ollama_key {
                    format!(
                        "the request was signed with {}; is its public half, {}.pub, among your account's keys?",
                        key_path.display(),
                        key_path.display()
                    )
                } else {
                    format!(
                        "no credentials were given: set {} and {}, or for the Ollama hub add ~/.ollama/id_ed25519.pub to your account's keys",
                        auth::USERNAME_ENV,
                        auth::PASSWORD_ENV
                    )
                };
                let (url, authorization) = if let Some(basic) = credentials.basic_header() {
                    (auth::token_request_url(&realm, &service, &scope), Some(basic))
                } else if let Some(key_path) = &credentials.ollama_key {
                    let key = OllamaKey::load(key_path)?;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    let (url, signature) = auth::signed_token_request(
                        &key,
                        &realm,
                        &service,
                        &scope,
                        now,
                        &auth::random_nonce()?,
                    );
                    (url, Some(signature))
                } else {
                    (auth::token_request_url(&realm, &service, &scope), None)
                };
                let mut request = http::Request::builder().method("GET").uri(&url);
                if let Some(authorization) = authorization {
                    request = request.header("Authorization", authorization);
                }
                let request = request.body(()).map_err(|e| refused(e.to_string()))?;
                let response = self.agent.run(request).map_err(|e| AttemptError::Transient(e.to_string()))?;
                let status = response.status().as_u16();
                let mut body = response.into_body();
                let text = body.with_config().limit(1 << 20).read_to_string().unwrap_or_default();
                if status != 200 {
                    let text = text.trim();
                    let answer = if text.is_empty() { String::new() } else { format!(" ({text})") };
                    return Err(refused(format!(
                        "the token service at {realm} answered HTTP {status}{answer}; {advice}"
                    )));
                }
                #[derive(Deserialize)]
                struct TokenAnswer {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let answer: TokenAnswer = serde_json::from_str(&text)
                    .map_err(|e| refused(format!("the token service's answer is not JSON: {e}")))?;
                let token = answer
                    .token
                    .or(answer.access_token)
                    .ok_or_else(|| refused("the token service's answer holds no token".into()))?;
                self.authorization = Some(format!("Bearer {token}"));
            }
        }
        Ok(())
    }

    fn has_blob(&mut self, blob: &Layer) -> Result<bool, OllamaError> {
        let url = self.url(&format!("blobs/{}", blob.digest));
        let answer = self.request(&format!("checking blob {}", blob.digest), "HEAD", &url, &[], b"")?;
        match answer.status {
            // A registry that keeps blobs in other storage redirects to where the blob is.
            200 | 301 | 302 | 303 | 307 | 308 => Ok(true),
            404 => Ok(false),
            _ => Err(OllamaError::Registry { what: format!("HEAD {url}"), reason: answer.error_text() }),
        }
    }

    fn state_path(&self, digest: &str) -> Option<PathBuf> {
        let key = digest_of(format!("{}\n{}\n{digest}", self.origin, self.repository).as_bytes());
        let dir = self.options.upload_state_dir.as_ref()?;
        Some(dir.join(format!("{}.json", &key["sha256:".len()..])))
    }

    fn load_state(&self, digest: &str) -> Option<UploadState> {
        let text = std::fs::read_to_string(self.state_path(digest)?).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn save_state(&self, digest: &str, state: &UploadState) {
        let Some(path) = self.state_path(digest) else { return };
        let saved = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
            crate::atomic_file::write_atomically(&path, |f| {
                serde_json::to_writer(f, state).map_err(std::io::Error::other)
            })
        });
        if let Err(e) = saved {
            tracing::warn!(
                "cannot save the upload's place in {}: {e}; an interrupted push will start over",
                path.display()
            );
        }
    }

    fn forget_state(&self, digest: &str) {
        if let Some(path) = self.state_path(digest) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Uploads one blob, resuming a saved upload when the registry still has it.
    fn upload_blob(
        &mut self,
        blob: &Layer,
        path: &std::path::Path,
        report: &mut PushReport,
        progress: &mut dyn FnMut(TransferEvent),
    ) -> Result<(), OllamaError> {
        let mut file =
            File::open(path).map_err(|source| OllamaError::Io { path: path.to_path_buf(), source })?;
        let mut attempts = 0;
        let what = format!("uploading blob {}", blob.digest);
        self.with_retries(&what, |client| {
            attempts += 1;
            // A connection that broke after the registry took the last request may have
            // finished the blob: then there is nothing left to send.
            if attempts > 1 {
                let url = client.url(&format!("blobs/{}", blob.digest));
                if client.request_once("HEAD", &url, &[], b"")?.status == 200 {
                    client.forget_state(&blob.digest);
                    return Ok(());
                }
            }
            let (mut location, mut offset) = client.upload_start(blob, report)?;
            progress(TransferEvent::Start { digest: blob.digest.clone(), size: blob.size, done: offset });
            let chunk_size = client.options.chunk_size.max(1);
            let mut chunk = Vec::new();
            while offset < blob.size {
                let len = chunk_size.min(blob.size - offset);
                chunk.resize(len as usize, 0);
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read_exact(&mut chunk))
                    .map_err(|source| OllamaError::Io { path: path.to_path_buf(), source })?;
                let headers = [
                    ("Content-Type", "application/octet-stream".to_string()),
                    ("Content-Range", format!("{offset}-{}", offset + len - 1)),
                ];
                let answer = client.request_once("PATCH", &location, &headers, &chunk)?;
                match answer.status {
                    202 | 204 => {
                        if let Some(next) =
                            answer.header("Location").or(answer.header("Docker-Upload-Location"))
                        {
                            location = client.absolute(next);
                        }
                        // The registry says how much it holds; trust that over our count.
                        offset = match answer.header("Range").and_then(range_end) {
                            Some(end) => end + 1,
                            None => offset + len,
                        };
                    }
                    301 | 302 | 303 | 307 | 308 => {
                        // Registries that keep blobs elsewhere send the chunk on to storage.
                        let target = answer
                            .header("Location")
                            .map(|l| client.absolute(l))
                            .ok_or_else(|| AttemptError::Transient("a redirect without a Location".into()))?;
                        let stored = client.request_once("PUT", &target, &headers[..1], &chunk)?;
                        if !(200..300).contains(&stored.status) {
                            return Err(AttemptError::Transient(stored.error_text()));
                        }
                        offset += len;
                    }
                    416 | 404 | 400 => {
                        // The upload is gone or out of step: start it over on the next try.
                        client.forget_state(&blob.digest);
                        return Err(AttemptError::Transient(format!(
                            "the registry dropped the upload ({})",
                            answer.error_text()
                        )));
                    }
                    _ => {
                        return Err(AttemptError::Fatal(OllamaError::Registry {
                            what: format!("PATCH {}", blob.digest),
                            reason: answer.error_text(),
                        }));
                    }
                }
                report.bytes_sent += len;
                progress(TransferEvent::Progress { digest: blob.digest.clone(), bytes: len });
                client.save_state(&blob.digest, &UploadState { location: location.clone(), offset });
            }
            let separator = if location.contains('?') { '&' } else { '?' };
            let finish = format!("{location}{separator}digest={}", blob.digest);
            let answer = client.request_once("PUT", &finish, &[("Content-Length", "0".into())], b"")?;
            match answer.status {
                201 | 204 | 200 => {
                    client.forget_state(&blob.digest);
                    Ok(())
                }
                400 if answer.header("Content-Type").is_some_and(|t| t.contains("json")) => {
                    let text = answer.error_text();
                    client.forget_state(&blob.digest);
                    if text.contains("DIGEST_INVALID") {
                        Err(AttemptError::Fatal(OllamaError::DigestMismatch {
                            what: format!("upload of {}", blob.digest),
                            expected: blob.digest.clone(),
                            actual: format!("what the registry received ({text})"),
                        }))
                    } else {
                        Err(AttemptError::Transient(text))
                    }
                }
                _ => {
                    client.forget_state(&blob.digest);
                    Err(AttemptError::Transient(answer.error_text()))
                }
            }
        })
    }

    /// Where to upload next: a saved upload the registry confirms, or a new one.
    fn upload_start(&mut self, blob: &Layer, report: &mut PushReport) -> Result<(String, u64), AttemptError> {
        if let Some(state) = self.load_state(&blob.digest) {
            let answer = self.request_once("GET", &state.location, &[], b"")?;
            let held = answer.header("Range").and_then(range_end).map(|end| end + 1).unwrap_or(0);
            if answer.status == 204 && held == state.offset {
                let location = answer.header("Location").map(|l| self.absolute(l)).unwrap_or(state.location);
                if !report.resumed.iter().any(|(d, _)| d == &blob.digest) {
                    report.resumed.push((blob.digest.clone(), held));
                }
                return Ok((location, held));
            }
            tracing::info!("the saved upload of {} is gone; starting it over", blob.digest);
            self.forget_state(&blob.digest);
        }
        let url = self.url("blobs/uploads/");
        let answer = self.request_once("POST", &url, &[("Content-Length", "0".into())], b"")?;
        if answer.status != 202 {
            return Err(AttemptError::Fatal(OllamaError::Registry {
                what: format!("starting the upload of {}", blob.digest),
                reason: answer.error_text(),
            }));
        }
        let location = answer
            .header("Docker-Upload-Location")
            .or(answer.header("Location"))
            .map(|l| self.absolute(l))
            .ok_or_else(|| {
                AttemptError::Transient("the registry started an upload but gave no Location".into())
            })?;
        self.save_state(&blob.digest, &UploadState { location: location.clone(), offset: 0 });
        Ok((location, 0))
    }

    fn put_manifest(&mut self, tag: &str, bytes: &[u8]) -> Result<(), OllamaError> {
        let url = self.url(&format!("manifests/{tag}"));
        let headers = [("Content-Type", MANIFEST_MEDIA_TYPE.to_string())];
        let answer = self.request("publishing the manifest", "PUT", &url, &headers, bytes)?;
        if !(200..300).contains(&answer.status) {
            return Err(OllamaError::Registry { what: format!("PUT {url}"), reason: answer.error_text() });
        }
        Ok(())
    }

    fn get_manifest(&mut self, tag: &str) -> Result<Vec<u8>, OllamaError> {
        let url = self.url(&format!("manifests/{tag}"));
        let headers = [("Accept", MANIFEST_MEDIA_TYPE.to_string())];
        let mut answer = self.request("fetching the manifest", "GET", &url, &headers, b"")?;
        match answer.status {
            200 => {}
            404 => {
                return Err(OllamaError::NotOnRegistry {
                    name: format!("{}:{tag}", self.repository),
                    registry: self.origin.clone(),
                });
            }
            _ => {
                return Err(OllamaError::Registry {
                    what: format!("GET {url}"),
                    reason: answer.error_text(),
                });
            }
        }
        let announced = answer.header("Docker-Content-Digest").map(str::to_string);
        let bytes = answer
            .body
            .with_config()
            .limit(4 << 20)
            .read_to_vec()
            .map_err(|e| self.unreachable(format!("reading the manifest: {e}")))?;
        if let Some(announced) = announced
            && announced != digest_of(&bytes)
        {
            return Err(OllamaError::DigestMismatch {
                what: "the manifest".into(),
                expected: announced,
                actual: digest_of(&bytes),
            });
        }
        Ok(bytes)
    }

    /// Downloads one blob into the store, following redirects to storage (without our
    /// credentials) or reading it straight from a registry that answers 200.
    fn download_blob(
        &mut self,
        store: &Store,
        blob: &Layer,
        progress: &mut dyn FnMut(TransferEvent),
    ) -> Result<(), OllamaError> {
        progress(TransferEvent::Start { digest: blob.digest.clone(), size: blob.size, done: 0 });
        let what = format!("downloading blob {}", blob.digest);
        self.with_retries(&what, |client| {
            let mut url = client.url(&format!("blobs/{}", blob.digest));
            let mut answer = client.request_once("GET", &url, &[], b"")?;
            for _ in 0..5 {
                if !matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
                    break;
                }
                let next = answer
                    .header("Location")
                    .map(|l| client.absolute(l))
                    .ok_or_else(|| AttemptError::Transient("a redirect without a Location".into()))?;
                url = next;
                answer = client.request_once("GET", &url, &[], b"")?;
            }
            if answer.status != 200 {
                return Err(AttemptError::Fatal(OllamaError::Registry {
                    what: format!("GET {url}"),
                    reason: answer.error_text(),
                }));
            }
            let mut reader = answer.body.into_reader();
            let mut on_bytes =
                |n: u64| progress(TransferEvent::Progress { digest: blob.digest.clone(), bytes: n });
            match store.put_blob_verified(&blob.digest, blob.size, &mut reader, &mut on_bytes) {
                Ok(()) => Ok(()),
                Err(OllamaError::Transfer { reason, .. }) => Err(AttemptError::Transient(reason)),
                Err(other) => Err(AttemptError::Fatal(other)),
            }
        })
    }
}

/// The last byte of a `Range: 0-<end>` header (`0-0` with nothing held is read as none).
fn range_end(range: &str) -> Option<u64> {
    let range = range.trim().trim_start_matches("bytes=");
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start == 0 && end > 0).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_registries_write_them() {
        assert_eq!(range_end("0-1023"), Some(1023));
        assert_eq!(range_end("bytes=0-99"), Some(99));
        assert_eq!(range_end("0-0"), None, "an empty upload reports 0-0");
        assert_eq!(range_end("junk"), None);
    }
}
