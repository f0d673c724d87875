//! Ollama's model store on disk: `blobs/sha256-<hex>` named by content, and
//! `manifests/<host>/<namespace>/<model>/<tag>`. Everything lands under its final name
//! only once complete and checked, so a failure never leaves a partial blob or manifest.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::OllamaError;
use super::manifest::Manifest;
use super::name::ModelName;
use crate::atomic_file::{AtomicWriter, write_atomically};

/// A model store: the folder Ollama calls `OLLAMA_MODELS`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The hex part of `sha256:<64 hex>`, if the digest is one.
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(hex)
}

/// `sha256:<hex>` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes what passes through it.
pub(crate) struct HashingWriter<W> {
    pub inner: W,
    pub hasher: Sha256,
    pub bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// The store at `root` (created as needed when written to).
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// `$OLLAMA_MODELS`, or `~/.ollama/models`: where a local Ollama looks.
    pub fn default_location() -> Result<PathBuf, OllamaError> {
        if let Some(dir) = std::env::var_os("OLLAMA_MODELS").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(OllamaError::NoHome)?;
        Ok(PathBuf::from(home).join(".ollama").join("models"))
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob of `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, OllamaError> {
        let hex = digest_hex(digest).ok_or_else(|| OllamaError::BadManifest {
            reason: format!("{digest:?} is not a sha256 digest"),
        })?;
        Ok(self.root.join("blobs").join(format!("sha256-{hex}")))
    }

    /// Where the manifest of `name` lives.
    pub fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.root.join("manifests").join(name.manifest_relative_path())
    }

    /// Whether the blob is present with the expected size (its name vouches for its content:
    /// nothing is stored under a digest without having been hashed).
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        self.blob_path(digest).ok().and_then(|p| fs::metadata(p).ok()).is_some_and(|m| m.len() == size)
    }

    fn blobs_dir(&self) -> Result<PathBuf, OllamaError> {
        let dir = self.root.join("blobs");
        fs::create_dir_all(&dir).map_err(|source| OllamaError::Io { path: dir.clone(), source })?;
        Ok(dir)
    }

    /// Stores a blob from bytes in memory; returns its digest.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<String, OllamaError> {
        let digest = digest_of(bytes);
        if !self.has_blob(&digest, bytes.len() as u64) {
            self.blobs_dir()?;
            let path = self.blob_path(&digest)?;
            write_atomically(&path, |f| f.write_all(bytes))
                .map_err(|source| OllamaError::Io { path, source })?;
        }
        Ok(digest)
    }

    /// Copies a file into the store, hashing it on the way; returns its digest and size.
    pub fn put_blob_file(&self, source_path: &Path) -> Result<(String, u64), OllamaError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OllamaError::Io { path, source }
        };
        let mut source = File::open(source_path).map_err(io_err(source_path))?;
        let dir = self.blobs_dir()?;
        let staging = dir.join(".incoming");
        let writer = AtomicWriter::create(&staging).map_err(io_err(&dir))?;
        let mut hashing = HashingWriter { inner: writer, hasher: Sha256::new(), bytes: 0 };
        io::copy(&mut source, &mut hashing).map_err(io_err(source_path))?;
        let digest = format!("sha256:{}", hex(&hashing.hasher.finalize()));
        let size = hashing.bytes;
        let path = self.blob_path(&digest)?;
        if self.has_blob(&digest, size) {
            return Ok((digest, size)); // the writer, dropped, leaves nothing behind
        }
        hashing.inner.commit_as(&path).map_err(io_err(&path))?;
        Ok((digest, size))
    }

    /// Stores a blob arriving from `reader`, checking it against `digest` and `size` before it
    /// gets its name. A mismatch leaves nothing in the store.
    pub fn put_blob_verified(
        &self,
        digest: &str,
        size: u64,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), OllamaError> {
        let path = self.blob_path(digest)?;
        self.blobs_dir()?;
        let io_err = |source| OllamaError::Io { path: path.clone(), source };
        let writer = AtomicWriter::create(&path).map_err(io_err)?;
        let mut hashing = HashingWriter { inner: writer, hasher: Sha256::new(), bytes: 0 };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(OllamaError::Transfer {
                        what: format!("blob {digest}"),
                        reason: e.to_string(),
                    });
                }
            };
            hashing.write_all(&buf[..n]).map_err(io_err)?;
            progress(n as u64);
            if hashing.bytes > size {
                break;
            }
        }
        let actual = format!("sha256:{}", hex(&hashing.hasher.finalize()));
        if actual != digest || hashing.bytes != size {
            return Err(OllamaError::DigestMismatch {
                what: format!("blob {digest}"),
                expected: format!("{digest} ({size} bytes)"),
                actual: format!("{actual} ({} bytes)", hashing.bytes),
            });
        }
        hashing.inner.commit().map_err(io_err)
    }

    /// Writes the manifest of `name` (atomically).
    pub fn put_manifest(&self, name: &ModelName, manifest_bytes: &[u8]) -> Result<(), OllamaError> {
        let path = self.manifest_path(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| OllamaError::Io { path: dir.to_path_buf(), source })?;
        }
        write_atomically(&path, |f| f.write_all(manifest_bytes))
            .map_err(|source| OllamaError::Io { path, source })
    }

    /// The manifest of `name`, with its exact bytes (which its digest is computed over).
    pub fn manifest(&self, name: &ModelName) -> Result<(Manifest, Vec<u8>), OllamaError> {
        let path = self.manifest_path(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OllamaError::NotInStore { name: name.to_string(), store: self.root.clone() });
            }
            Err(source) => return Err(OllamaError::Io { path, source }),
        };
        Ok((Manifest::from_json(&bytes)?, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_their_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let digest = store.put_blob_bytes(b"abc").unwrap();
        // sha256("abc"), from FIPS 180-2's examples.
        assert_eq!(digest, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let path =
            dir.path().join("blobs/sha256-ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        let file = dir.path().join("input.bin");
        fs::write(&file, b"abc").unwrap();
        assert_eq!(store.put_blob_file(&file).unwrap(), (digest.clone(), 3));
        assert_eq!(fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1, "no temp files left");
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let digest = digest_of(b"the real bytes");
        let err = store.put_blob_verified(&digest, 14, &mut &b"other bytes!!!"[..], &mut |_| {}).unwrap_err();
        assert!(matches!(err, OllamaError::DigestMismatch { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path().join("blobs")).unwrap().count(), 0);
        store.put_blob_verified(&digest, 14, &mut &b"the real bytes"[..], &mut |_| {}).unwrap();
        assert!(store.has_blob(&digest, 14));
    }
}
