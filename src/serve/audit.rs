//! The audit log: one JSON line per request with its time, endpoint, status and an
//! HMAC-SHA256 of its body under a per-installation secret, never the body. A plain hash
//! of a short body (an SSN, a date of birth) could be reversed by trying every value; the
//! keyed hash can only be checked by whoever holds the key file.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::ServeError;

/// Bytes of the secret.
const KEY_BYTES: usize = 32;

/// SHA-256 works on blocks of 64 bytes; HMAC pads its key to one block.
const BLOCK_BYTES: usize = 64;

/// HMAC-SHA256 of `message` under `key` (RFC 2104): sha256((K ^ opad) ‖ sha256((K ^ ipad) ‖ m)),
/// with a key longer than a block replaced by its sha256.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK_BYTES];
    if key.len() > BLOCK_BYTES {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(&outer_pad).chain_update(inner).finalize().into()
}

/// Where the audit key lives unless `--audit-key-file` says otherwise:
/// `$XDG_CONFIG_HOME/medllm/audit.key`, else `~/.config/medllm/audit.key`.
pub fn default_audit_key_path() -> Option<PathBuf> {
    let config =
        std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("medllm").join("audit.key"))
}

/// The secret in `path`, made (32 random bytes, hex, mode 0600) when the file does not
/// exist. A file others may read or write, or one that does not hold a key, is refused.
pub(crate) fn load_or_create_key(path: &Path) -> Result<[u8; KEY_BYTES], ServeError> {
    let fail = |reason: String| ServeError::AuditKey { path: path.to_path_buf(), reason };
    match std::fs::symlink_metadata(path) {
        Ok(_) => read_key(path).map_err(fail),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_key(path).map_err(|e| fail(e.to_string()))
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

fn read_key(path: &Path) -> Result<[u8; KEY_BYTES], String> {
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("it is not a regular file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(format!("other users may read or change it (run chmod 600 {})", path.display()));
        }
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    parse_key(text.trim())
        .ok_or_else(|| format!("it does not hold an audit key ({} hex digits)", KEY_BYTES * 2))
}

fn parse_key(hex: &str) -> Option<[u8; KEY_BYTES]> {
    if hex.len() != KEY_BYTES * 2 || !hex.is_ascii() {
        return None;
    }
    let mut key = [0u8; KEY_BYTES];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

fn create_key(path: &Path) -> std::io::Result<[u8; KEY_BYTES]> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir)?;
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    // Written under a temporary name (tempfile makes it 0600) and linked into place only
    // if nothing is there yet: a server starting at the same moment reads the same key.
    let mut temp = tempfile::Builder::new().prefix(".audit.key.").suffix(".partial").tempfile_in(&dir)?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    writeln!(temp, "{hex}")?;
    temp.as_file().sync_all()?;
    match temp.persist_noclobber(path) {
        Ok(_) => Ok(key),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            read_key(path).map_err(std::io::Error::other)
        }
        Err(e) => Err(e.error),
    }
}

/// An open audit log and its key.
pub(crate) struct AuditLog {
    file: Mutex<std::fs::File>,
    key: [u8; KEY_BYTES],
    key_id: String,
}

impl AuditLog {
    /// Opens `log` for appending, with the key from `key_file`.
    pub fn open(log: &Path, key_file: &Path) -> Result<AuditLog, ServeError> {
        let key = load_or_create_key(key_file)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| ServeError::AuditLog { path: log.to_path_buf(), reason: e.to_string() })?;
        // Names the key (so that a reader knows which key file checks a line) and reveals
        // nothing of it.
        let key_id = format!(
            "{:x}",
            Sha256::new().chain_update(b"medllm audit key id\0").chain_update(key).finalize()
        )[..16]
            .to_string();
        Ok(AuditLog { file: Mutex::new(file), key, key_id })
    }

    /// The keyed hash of a request body, as the log writes it.
    pub fn body_hmac(&self, body: &[u8]) -> String {
        hmac_sha256(&self.key, body).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Appends a line: time, endpoint, status and the body's keyed hash (`null` when the
    /// body was not read, as when the request was refused on its headers).
    pub fn record(&self, endpoint: &str, status: u16, body_hmac: Option<&str>) {
        let line = serde_json::json!({
            "time": super::http::rfc3339(SystemTime::now()),
            "endpoint": endpoint,
            "status": status,
            "input_hmac_sha256": body_hmac,
            "key_id": self.key_id,
        });
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(file, "{line}");
        let _ = file.flush();
    }
}
