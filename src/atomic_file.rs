//! Files written atomically: a temporary file in the same folder, flushed and synced, then
//! renamed over the final name. A crash or Ctrl-C never leaves a half-written file there.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Writes `path` through `fill`; the file appears under its name only once complete.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let mut writer = AtomicWriter::create(path)?;
    fill(&mut writer.writer)?;
    writer.commit()
}

/// Has `fill` write a file by path (for writers outside Rust, such as llama.cpp's
/// quantizer) under a temporary name in the same folder, then syncs it and renames it to
/// `path`. On an error from `fill` the temporary file is removed and `path` is untouched.
pub fn write_through_temp_path<T, E: From<io::Error>>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let temp = temp_file_beside(path)?;
    let (file, temp_path) = temp.into_parts();
    // While `fill` writes, a helper starts writing its pages back to disk every so often,
    // so the sync below has little left to wait for.
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let helper = std::thread::spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(std::time::Duration::from_millis(100))
        {
            let _ = file.sync_data();
        }
    });
    let value = fill(&temp_path);
    drop(stop);
    let _ = helper.join();
    let value = value?;
    File::open(&temp_path)?.sync_all()?;
    make_readable(&temp_path)?;
    temp_path.persist(path).map_err(|e| e.error)?;
    sync_parent(path);
    Ok(value)
}

fn temp_file_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".partial").tempfile_in(dir)
}

/// Makes a rename into `path`'s folder durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// Whether two paths name the same file, including through links, or would once the
/// second is created (its folder resolved, the same name).
pub fn same_path(a: &Path, b: &Path) -> bool {
    let Ok(a) = std::fs::canonicalize(a) else { return a == b };
    if let Ok(b) = std::fs::canonicalize(b) {
        return a == b;
    }
    let parent = match b.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(parent), b.file_name()) {
        (Ok(parent), Some(name)) => parent.join(name) == a,
        _ => false,
    }
}

/// A file written bit by bit (e.g. records as they finish) that appears under its name
/// only on [`AtomicWriter::commit`]; dropped uncommitted, it leaves nothing behind.
pub struct AtomicWriter {
    writer: BufWriter<File>,
    temp_path: tempfile::TempPath,
    path: std::path::PathBuf,
    writeback: EarlyWriteback,
}

/// Bytes written between requests to start writing back to disk.
const WRITEBACK_EVERY: u64 = 32 << 20;

/// Starts writing a large file's pages back to disk while it is still being written (a
/// helper thread syncs a second handle), so the sync at commit has little left to wait
/// for. Files under [`WRITEBACK_EVERY`] never start the helper.
#[derive(Default)]
struct EarlyWriteback {
    unsynced: u64,
    helper: Option<(std::sync::mpsc::SyncSender<()>, std::thread::JoinHandle<()>)>,
}

impl EarlyWriteback {
    fn wrote(&mut self, n: usize, file: &File) {
        self.unsynced += n as u64;
        if self.unsynced < WRITEBACK_EVERY {
            return;
        }
        self.unsynced = 0;
        if self.helper.is_none()
            && let Ok(handle) = file.try_clone()
        {
            let (request, requests) = std::sync::mpsc::sync_channel::<()>(1);
            let worker = std::thread::spawn(move || {
                for () in requests {
                    let _ = handle.sync_data();
                }
            });
            self.helper = Some((request, worker));
        }
        if let Some((request, _)) = &self.helper {
            // A request already waiting covers this one too.
            let _ = request.try_send(());
        }
    }

    fn finish(&mut self) {
        if let Some((request, worker)) = self.helper.take() {
            drop(request);
            let _ = worker.join();
        }
    }
}

impl AtomicWriter {
    /// Starts writing what will become `path`.
    pub fn create(path: &Path) -> io::Result<AtomicWriter> {
        let (file, temp_path) = temp_file_beside(path)?.into_parts();
        Ok(AtomicWriter {
            writer: BufWriter::with_capacity(1 << 16, file),
            temp_path,
            path: path.to_path_buf(),
            writeback: EarlyWriteback::default(),
        })
    }

    /// Commits under another name in the same folder: for files named by their content,
    /// whose name is known only once written (store blobs named by their digest).
    pub fn commit_as(mut self, path: &Path) -> io::Result<()> {
        self.path = path.to_path_buf();
        self.commit()
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.writeback.finish();
        let file = self.writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        make_readable(&self.temp_path)?;
        self.temp_path.persist(&self.path).map_err(|e| e.error)?;
        sync_parent(&self.path);
        Ok(())
    }
}

impl Write for AtomicWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.writer.write(buf)?;
        self.writeback.wrote(n, self.writer.get_ref());
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Temporary files are private (0600); the finished file gets the usual 0644, so that
/// services running as other users (a model server) can read it.
fn make_readable(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_fill_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let result = write_atomically(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(result.is_err());
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temp file removed");
        write_atomically(&path, |f| f.write_all(b"whole")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
    }

    #[test]
    fn file_written_by_path_appears_only_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        let failed: io::Result<()> = write_through_temp_path(&path, |temp| {
            std::fs::write(temp, b"half")?;
            Err(io::Error::other("quantizer failed"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left behind");
        let size = write_through_temp_path(&path, |temp| {
            assert_eq!(temp.parent(), Some(dir.path()), "same folder, so the rename is atomic");
            std::fs::write(temp, b"whole").map(|_| 5)
        })
        .unwrap();
        assert_eq!((size, std::fs::read(&path).unwrap()), (5, b"whole".to_vec()));
    }

    #[test]
    fn streamed_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let mut writer = AtomicWriter::create(&path).unwrap();
        writer.write_all(b"one\n").unwrap();
        assert!(!path.exists());
        drop(writer);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left when dropped");
        let mut writer = AtomicWriter::create(&path).unwrap();
        writer.write_all(b"one\ntwo\n").unwrap();
        writer.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn large_files_are_whole_with_early_writeback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let mut writer = AtomicWriter::create(&path).unwrap();
        let piece: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        for _ in 0..(WRITEBACK_EVERY >> 20) * 2 + 3 {
            writer.write_all(&piece).unwrap();
        }
        assert!(writer.writeback.helper.is_some(), "the helper starts past the threshold");
        writer.commit().unwrap();
        let written = std::fs::read(&path).unwrap();
        assert_eq!(written.len() as u64, WRITEBACK_EVERY * 2 + (3 << 20));
        assert!(written.chunks(1 << 20).all(|c| c == piece.as_slice()));
    }

    #[test]
    fn same_path_sees_through_links_and_dots() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"x").unwrap();
        let link = dir.path().join("link.gguf");
        std::os::unix::fs::symlink(&model, &link).unwrap();
        assert!(same_path(&model, &link));
        assert!(same_path(&model, &dir.path().join(".").join("m.gguf")));
        assert!(!same_path(&model, &dir.path().join("other.gguf")));
    }
}
