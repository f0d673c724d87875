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

/// A file written bit by bit (e.g. records as they finish) that appears under its name
/// only on [`AtomicWriter::commit`]; dropped uncommitted, it leaves nothing behind.
pub struct AtomicWriter {
    writer: BufWriter<File>,
    temp_path: tempfile::TempPath,
    path: std::path::PathBuf,
}

impl AtomicWriter {
    /// Starts writing what will become `path`.
    pub fn create(path: &Path) -> io::Result<AtomicWriter> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp =
            tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".partial").tempfile_in(dir)?;
        let (file, temp_path) = temp.into_parts();
        Ok(AtomicWriter {
            writer: BufWriter::with_capacity(1 << 16, file),
            temp_path,
            path: path.to_path_buf(),
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
        let file = self.writer.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        self.temp_path.persist(&self.path).map_err(|e| e.error)?;
        // Make the rename itself durable.
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Write for AtomicWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
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
    }
}
