//! Registry authentication: the `WWW-Authenticate` challenge, credentials from the
//! environment, and the Ollama hub's scheme, where the client proves who it is by signing
//! the token request with its ed25519 key (`~/.ollama/id_ed25519`, OpenSSH format).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest as _, Sha256};

use super::OllamaError;
use super::store::hex;

/// Environment variable holding a registry user name (basic auth or token requests).
pub const USERNAME_ENV: &str = "MEDLLM_REGISTRY_USERNAME";
/// Environment variable holding that user's password.
pub const PASSWORD_ENV: &str = "MEDLLM_REGISTRY_PASSWORD";
/// Environment variable holding a bearer token to send as it is.
pub const TOKEN_ENV: &str = "MEDLLM_REGISTRY_TOKEN";

/// What a registry asks for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`: a user name and password on every request.
    Basic,
    /// `Bearer realm="…",service="…",scope="…"`: fetch a token from the realm.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The registry's service name.
        service: String,
        /// What the token must allow (`repository:ns/model:pull,push`).
        scope: String,
    },
}

impl Challenge {
    /// Parses a `WWW-Authenticate` header value.
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => {
                let params = parse_params(rest);
                let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
                Some(Challenge::Bearer {
                    realm: get("realm")?,
                    service: get("service").unwrap_or_default(),
                    scope: get("scope").unwrap_or_default(),
                })
            }
            _ => None,
        }
    }
}

/// `key="value",key=value` pairs; values in quotes may hold commas.
fn parse_params(text: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (quoted[..end].to_string(), quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

/// How this client may answer a challenge.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// User name and password (basic auth, or to fetch a bearer token).
    pub basic: Option<(String, String)>,
    /// A bearer token to send as it is.
    pub token: Option<String>,
    /// The ed25519 key that signs Ollama hub token requests, when the file exists.
    pub ollama_key: Option<PathBuf>,
}

impl Credentials {
    /// Credentials from `MEDLLM_REGISTRY_*` and the Ollama key at `key_path` (if present).
    pub fn from_environment(key_path: Option<PathBuf>) -> Credentials {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Credentials {
            basic: var(USERNAME_ENV).map(|user| (user, var(PASSWORD_ENV).unwrap_or_default())),
            token: var(TOKEN_ENV),
            ollama_key: key_path.filter(|p| p.exists()),
        }
    }

    /// The `Authorization` value for basic auth, if a user name is set.
    pub fn basic_header(&self) -> Option<String> {
        self.basic
            .as_ref()
            .map(|(user, password)| format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))))
    }
}

/// `~/.ollama/id_ed25519`, where Ollama keeps the key the hub knows this machine by.
pub fn default_ollama_key() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".ollama").join("id_ed25519"))
}

/// An ed25519 key read from an OpenSSH private key file.
pub struct OllamaKey {
    signing: SigningKey,
}

impl OllamaKey {
    /// Reads an unencrypted OpenSSH ed25519 private key.
    pub fn load(path: &Path) -> Result<OllamaKey, OllamaError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| OllamaError::Io { path: path.to_path_buf(), source })?;
        OllamaKey::from_openssh(&text)
            .map_err(|reason| OllamaError::BadKey { path: path.to_path_buf(), reason })
    }

    /// Parses the OpenSSH private key format (`openssh-key-v1`).
    pub fn from_openssh(text: &str) -> Result<OllamaKey, String> {
        let body: String = text
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN OPENSSH PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END OPENSSH PRIVATE KEY-----")
            .collect();
        if body.is_empty() {
            return Err("not an OpenSSH private key (no BEGIN OPENSSH PRIVATE KEY block)".into());
        }
        let bytes = STANDARD.decode(body).map_err(|e| format!("the key is not valid base64: {e}"))?;
        let mut wire = SshWire { bytes: &bytes };
        if wire.take(15)? != b"openssh-key-v1\0" {
            return Err("not an openssh-key-v1 key".into());
        }
        let cipher = wire.string()?;
        let _kdf = wire.string()?;
        let _kdf_options = wire.string()?;
        if cipher != b"none" {
            return Err("the key is protected by a passphrase; medllm reads only unencrypted keys, as Ollama writes them".into());
        }
        if wire.u32()? != 1 {
            return Err("the file holds more than one key".into());
        }
        let _public = wire.string()?;
        let mut private = SshWire { bytes: wire.string()? };
        if private.u32()? != private.u32()? {
            return Err("the key's check numbers differ: the file is corrupt".into());
        }
        let kind = private.string()?;
        if kind != b"ssh-ed25519" {
            return Err(format!("the key is {}, not ssh-ed25519", String::from_utf8_lossy(kind)));
        }
        let public = private.string()?;
        let secret = private.string()?;
        if public.len() != 32 || secret.len() != 64 {
            return Err("the ed25519 key has the wrong length".into());
        }
        let seed: [u8; 32] = secret[..32].try_into().expect("checked length");
        let signing = SigningKey::from_bytes(&seed);
        if signing.verifying_key().as_bytes() != public {
            return Err("the private and public halves of the key do not match".into());
        }
        Ok(OllamaKey { signing })
    }

    /// A key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> OllamaKey {
        OllamaKey { signing: SigningKey::from_bytes(&seed) }
    }

    /// The public key in SSH wire format (`string "ssh-ed25519", string key`).
    pub fn public_blob(&self) -> Vec<u8> {
        let mut blob = Vec::new();
        put_ssh_string(&mut blob, b"ssh-ed25519");
        put_ssh_string(&mut blob, self.signing.verifying_key().as_bytes());
        blob
    }

    /// The public key as a line of `authorized_keys` (what the hub's settings page takes).
    pub fn public_key_line(&self) -> String {
        format!("ssh-ed25519 {}", STANDARD.encode(self.public_blob()))
    }

    /// `<base64 public key blob>:<base64 signature>`: the `Authorization` value the hub's
    /// token endpoint checks.
    pub fn sign(&self, data: &[u8]) -> String {
        let signature = self.signing.sign(data);
        format!("{}:{}", STANDARD.encode(self.public_blob()), STANDARD.encode(signature.to_bytes()))
    }

    /// The verifying half, for tests and diagnostics.
    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.signing.verifying_key()
    }
}

/// A signed token request for the Ollama hub: the URL to GET and its `Authorization` value.
/// The signed text is `GET,<url>,<base64 of the hex sha256 of the empty body>`, and the URL
/// carries the challenge's service and scopes, a timestamp and a random nonce.
pub fn signed_token_request(
    key: &OllamaKey,
    realm: &str,
    service: &str,
    scope: &str,
    unix_time: u64,
    nonce: &[u8; 16],
) -> (String, String) {
    let mut pairs: Vec<(&str, String)> = vec![
        ("nonce", URL_SAFE_NO_PAD.encode(nonce)),
        ("service", service.to_string()),
        ("ts", unix_time.to_string()),
    ];
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        pairs.push(("scope", s.to_string()));
    }
    // Sorted by key, as Go's url.Values encodes them; scopes keep their order.
    pairs.sort_by_key(|(k, _)| *k);
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", query_escape(v))).collect();
    let separator = if realm.contains('?') { '&' } else { '?' };
    let url = format!("{realm}{separator}{}", query.join("&"));
    let empty_body_digest = hex(&Sha256::digest(b""));
    let signed = format!("GET,{url},{}", STANDARD.encode(empty_body_digest));
    let authorization = key.sign(signed.as_bytes());
    (url, authorization)
}

/// The token request of a Docker-style token service (user name and password, or anonymous).
pub fn token_request_url(realm: &str, service: &str, scope: &str) -> String {
    let mut query = Vec::new();
    if !service.is_empty() {
        query.push(format!("service={}", query_escape(service)));
    }
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        query.push(format!("scope={}", query_escape(s)));
    }
    if query.is_empty() {
        return realm.to_string();
    }
    let separator = if realm.contains('?') { '&' } else { '?' };
    format!("{realm}{separator}{}", query.join("&"))
}

/// Form encoding of a query value: unreserved characters stay, space becomes `+`.
fn query_escape(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Sixteen random bytes for a nonce.
pub fn random_nonce() -> Result<[u8; 16], OllamaError> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce)
        .map_err(|e| OllamaError::Transfer { what: "nonce".into(), reason: e.to_string() })?;
    Ok(nonce)
}

fn put_ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads SSH wire-format integers and length-prefixed strings.
struct SshWire<'a> {
    bytes: &'a [u8],
}

impl<'a> SshWire<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("the key file ends early".into());
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    fn string(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Verifier as _;

    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(Challenge::parse("Basic realm=\"Registry Realm\""), Some(Challenge::Basic));
        assert_eq!(
            Challenge::parse(
                "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:clinic/tiny:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: "registry.example".into(),
                scope: "repository:clinic/tiny:pull,push".into(),
            })
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse("Bearer service=\"x\""), None, "a bearer challenge needs a realm");
    }

    /// A key made by ssh-keygen, so the parser is checked against the real format.
    #[test]
    fn reads_a_key_ssh_keygen_wrote_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen (openssh-client) is installed by scripts/setup.sh");
        assert!(status.success());
        let key = OllamaKey::load(&path).unwrap();
        let public_line = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        assert!(public_line.starts_with(&key.public_key_line()), "{public_line}");

        let (url, authorization) = signed_token_request(
            &key,
            "https://hub.example/token",
            "hub.example",
            "repository:clinic/tiny:pull,push",
            1_700_000_000,
            &[7u8; 16],
        );
        assert_eq!(
            url,
            "https://hub.example/token?nonce=BwcHBwcHBwcHBwcHBwcHBw&scope=repository%3Aclinic%2Ftiny%3Apull%2Cpush&service=hub.example&ts=1700000000"
        );
        let (public_b64, signature_b64) = authorization.split_once(':').unwrap();
        assert_eq!(STANDARD.decode(public_b64).unwrap(), key.public_blob());
        let signature =
            ed25519_dalek::Signature::from_slice(&STANDARD.decode(signature_b64).unwrap()).unwrap();
        // sha256 of nothing, in hex, then base64: what the hub recomputes for a GET.
        let signed = format!(
            "GET,{url},{}",
            STANDARD.encode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        key.verifying_key().verify(signed.as_bytes(), &signature).unwrap();
        assert!(key.verifying_key().verify(b"GET,other", &signature).is_err());
    }

    #[test]
    fn encrypted_and_foreign_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_locked");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secret phrase", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let err = OllamaKey::load(&path).err().unwrap().to_string();
        assert!(err.contains("passphrase"), "{err}");
        let err = OllamaKey::from_openssh("-----BEGIN RSA PRIVATE KEY-----\nabc\n").err().unwrap();
        assert!(err.contains("not an OpenSSH private key"), "{err}");
    }

    #[test]
    fn token_urls_carry_service_and_scope() {
        assert_eq!(
            token_request_url("http://127.0.0.1:9/token", "local", "repository:a/b:pull"),
            "http://127.0.0.1:9/token?service=local&scope=repository%3Aa%2Fb%3Apull"
        );
    }
}
