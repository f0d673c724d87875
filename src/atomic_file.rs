//! Files written atomically: a temporary file in the same folder, flushed and synced, then
//! renamed over the final name. A crash or Ctrl-C never leaves a half-written file there,
//! and an interrupted run leaves no temporary file behind either (see [`crate::interrupt`]).
//! Only regular files (and new names) are replaced: a FIFO, `/dev/null` or a terminal is
//! written in place, and a link is followed to the file it names.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
/// When `path` is a FIFO or a device, the finished file is copied into it instead (writers
/// by path may seek, which a pipe cannot).
pub fn write_through_temp_path<T, E: From<io::Error>>(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let target = OutputTarget::of(path)?;
    let (temp, file) = match &target {
        OutputTarget::Replace(final_path) => Unfinished::create_beside(final_path)?,
        // Nothing is renamed into a stream's folder (`/dev` is not writable), so the
        // temporary file goes where temporary files go.
        OutputTarget::Stream(stream) => Unfinished::create_in(&std::env::temp_dir(), stream)?,
    };
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
    let temp_path = temp.path().to_path_buf();
    let value = fill(&temp_path);
    drop(stop);
    let _ = helper.join();
    let value = value?;
    match &target {
        OutputTarget::Replace(final_path) => {
            File::open(&temp_path)?.sync_all()?;
            make_readable(&temp_path)?;
            temp.persist(final_path)?;
            sync_parent(final_path);
        }
        OutputTarget::Stream(stream) => {
            let mut out = std::fs::OpenOptions::new().write(true).open(stream)?;
            io::copy(&mut File::open(&temp_path)?, &mut out)?;
            out.flush()?;
        }
    }
    Ok(value)
}

/// What writing to a path means: replacing a regular file (or creating one), or writing
/// into something that is not a file (a FIFO, a character device such as `/dev/null` or a
/// terminal, a socket), which must stay what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OutputTarget {
    /// Written beside this path (a link already followed) and renamed over it.
    Replace(PathBuf),
    /// Opened and written in place; nothing is renamed or synced.
    Stream(PathBuf),
}

impl OutputTarget {
    fn of(path: &Path) -> io::Result<OutputTarget> {
        match std::fs::metadata(path) {
            // Through links: the file the link names is replaced, the link stays.
            Ok(meta) if meta.is_file() => Ok(OutputTarget::Replace(std::fs::canonicalize(path)?)),
            Ok(meta) if meta.is_dir() => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a folder, not a file", path.display()),
            )),
            Ok(_) => Ok(OutputTarget::Stream(path.to_path_buf())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(OutputTarget::Replace(path.to_path_buf())),
            Err(e) => Err(e),
        }
    }
}

/// Temporary files of outputs not yet complete, by registration number: removed when the
/// process is interrupted (it then exits without running destructors). A file is created
/// and registered under this lock, and the interrupt holds it until the process is gone, so
/// no temporary file can appear unregistered or after the clean-up.
static UNFINISHED: Mutex<BTreeMap<u64, PathBuf>> = Mutex::new(BTreeMap::new());
static NEXT_UNFINISHED: AtomicU64 = AtomicU64::new(0);

/// Removes the temporary file of every output still being written, then ends the process
/// through `exit` with `code`, without releasing the registry (see [`UNFINISHED`]). Called by the interrupt handler,
/// on its own thread (not in signal context): the thread that was writing may still be
/// running, and at worst loses a rename to a file already removed.
pub(crate) fn remove_unfinished_then_exit(exit: fn(i32) -> !, code: i32) -> ! {
    let unfinished = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner());
    for path in unfinished.values() {
        let _ = std::fs::remove_file(path);
    }
    exit(code)
}

/// What [`remove_unfinished_then_exit`] removes, kept to the paths `matches` accepts and
/// without exiting: for tests, whose process other tests share.
#[cfg(test)]
fn remove_unfinished_matching(matches: impl Fn(&Path) -> bool) {
    let unfinished = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner());
    for path in unfinished.values().filter(|p| matches(p)) {
        let _ = std::fs::remove_file(path);
    }
}

/// A temporary file beside an output, known to the interrupt handler until it is renamed
/// into place or dropped (which removes it). A stream output has none.
struct Unfinished {
    // Declared first, so that on drop the file is removed before it is forgotten: an
    // interrupt in between then finds nothing, rather than missing a file that stays.
    temp_path: Option<tempfile::TempPath>,
    registration: Option<u64>,
}

impl Unfinished {
    /// A temporary file in `path`'s folder (so that the rename is atomic), open for writing.
    fn create_beside(path: &Path) -> io::Result<(Unfinished, File)> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Unfinished::create_in(dir, path)
    }

    /// A temporary file in `dir` named after `path`, open for writing.
    fn create_in(dir: &Path, path: &Path) -> io::Result<(Unfinished, File)> {
        crate::interrupt::watch();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // Created under the lock: an interrupt now either comes first (and the process ends
        // before the file exists) or finds it registered.
        let mut unfinished = UNFINISHED.lock().unwrap_or_else(|e| e.into_inner());
        let (file, temp_path) = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)?
            .into_parts();
        let registration = NEXT_UNFINISHED.fetch_add(1, Ordering::Relaxed);
        unfinished.insert(registration, temp_path.to_path_buf());
        drop(unfinished);
        Ok((Unfinished { temp_path: Some(temp_path), registration: Some(registration) }, file))
    }

    fn path(&self) -> &Path {
        self.temp_path.as_deref().unwrap_or(Path::new(""))
    }

    /// Renames the temporary file to `path`.
    fn persist(mut self, path: &Path) -> io::Result<()> {
        let temp_path = self.temp_path.take().expect("a temporary file is persisted once");
        temp_path.persist(path).map_err(|e| e.error)
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        drop(self.temp_path.take());
        if let Some(registration) = self.registration.take() {
            UNFINISHED.lock().unwrap_or_else(|e| e.into_inner()).remove(&registration);
        }
    }
}

/// Makes a rename into `path`'s folder durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
}

/// Whether two paths name the same file, including through links, or would once created
/// (each resolved through its nearest existing folder): two outputs of one run given as
/// `out.jsonl` and `./out.jsonl` are one file even before either exists.
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (where_it_will_be(a), where_it_will_be(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// Writing an output would replace one of the command's inputs.
#[derive(Debug, thiserror::Error)]
pub enum OutputIsInput {
    /// The output is an input file (by any name: a link, a hard link, `..`).
    #[error("the output {} is the input {}; write to another path", output.display(), input.display())]
    SameFile {
        /// The output as given.
        output: PathBuf,
        /// The input as given.
        input: PathBuf,
    },
    /// The output lies in a folder whose files are read as inputs.
    #[error(
        "the output {} is inside the input folder {}, whose files are read; write it outside",
        output.display(),
        folder.display()
    )]
    InsideInputFolder {
        /// The output as given.
        output: PathBuf,
        /// The input folder as given.
        folder: PathBuf,
    },
}

/// A command's inputs, resolved once, to check its outputs against (see
/// [`refuse_output_among_inputs`]). `-` stands for stdin, which is checked as the file it
/// was redirected from, if any.
#[derive(Debug, Default)]
pub struct InputFiles {
    /// (device, inode) of each regular input file, and the path it was given as.
    files: BTreeMap<(u64, u64), PathBuf>,
    /// Canonical paths of input folders, and the path each was given as.
    folders: Vec<(PathBuf, PathBuf)>,
    canonical_files: HashSet<PathBuf>,
}

impl InputFiles {
    /// Resolves `inputs`: files, folders (read recursively), `-` for stdin. Inputs that do
    /// not exist or are not files (a pipe) replace nothing and are left out.
    pub fn new<'a>(inputs: impl IntoIterator<Item = &'a Path>) -> InputFiles {
        use std::os::unix::fs::MetadataExt;
        let mut set = InputFiles::default();
        for input in inputs {
            let resolved = if input.as_os_str() == "-" { Path::new("/dev/stdin") } else { input };
            let Ok(meta) = std::fs::metadata(resolved) else { continue };
            if meta.is_file() {
                set.files.entry((meta.dev(), meta.ino())).or_insert_with(|| input.to_path_buf());
                if let Ok(canonical) = std::fs::canonicalize(resolved) {
                    set.canonical_files.insert(canonical);
                }
            } else if meta.is_dir()
                && let Ok(canonical) = std::fs::canonicalize(resolved)
            {
                set.folders.push((canonical, input.to_path_buf()));
            }
        }
        set
    }

    /// Refuses `output` when writing it would replace one of the inputs or put a file
    /// among an input folder's. An output that is not a regular file (a FIFO, `/dev/null`)
    /// replaces nothing and passes.
    pub fn check(&self, output: &Path) -> Result<(), OutputIsInput> {
        use std::os::unix::fs::MetadataExt;
        let canonical = match std::fs::metadata(output) {
            Ok(meta) if meta.is_file() => {
                if let Some(input) = self.files.get(&(meta.dev(), meta.ino())) {
                    return Err(OutputIsInput::SameFile { output: output.into(), input: input.clone() });
                }
                std::fs::canonicalize(output).ok()
            }
            Ok(meta) if meta.is_dir() => std::fs::canonicalize(output).ok(),
            Ok(_) => return Ok(()),
            Err(_) => where_it_will_be(output),
        };
        let Some(canonical) = canonical else { return Ok(()) };
        if self.canonical_files.contains(&canonical) {
            let input = self
                .files
                .values()
                .find(|given| std::fs::canonicalize(given).is_ok_and(|c| c == canonical))
                .cloned()
                .unwrap_or_else(|| canonical.clone());
            return Err(OutputIsInput::SameFile { output: output.into(), input });
        }
        if let Some((_, folder)) = self.folders.iter().find(|(dir, _)| canonical.starts_with(dir)) {
            return Err(OutputIsInput::InsideInputFolder { output: output.into(), folder: folder.clone() });
        }
        Ok(())
    }
}

/// The canonical path a file not there yet will have: its nearest existing folder resolved
/// (links and all), the rest of the path joined on.
fn where_it_will_be(path: &Path) -> Option<PathBuf> {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(resolved) = std::fs::canonicalize(existing) {
            return Some(missing.iter().rev().fold(resolved, |p, name| p.join(name)));
        }
        missing.push(existing.file_name()?);
        existing = match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
    }
}

/// Refuses to write `output` when it is one of `inputs`: the same file under any name
/// (a link, a hard link, stdin redirected from it), or a path inside an input folder. Every
/// command that writes an output checks it this way before it reads anything.
pub fn refuse_output_among_inputs<'a>(
    output: &Path,
    inputs: impl IntoIterator<Item = &'a Path>,
) -> Result<(), OutputIsInput> {
    InputFiles::new(inputs).check(output)
}

/// A file written bit by bit (e.g. records as they finish) that appears under its name
/// only on [`AtomicWriter::commit`]; dropped uncommitted, it leaves nothing behind. A FIFO
/// or device as the path is written in place as the bytes come.
pub struct AtomicWriter {
    writer: BufWriter<File>,
    temp: Unfinished,
    target: OutputTarget,
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
        let target = OutputTarget::of(path)?;
        let (temp, file) = match &target {
            OutputTarget::Replace(final_path) => Unfinished::create_beside(final_path)?,
            OutputTarget::Stream(stream) => (
                Unfinished { temp_path: None, registration: None },
                std::fs::OpenOptions::new().write(true).open(stream)?,
            ),
        };
        Ok(AtomicWriter {
            writer: BufWriter::with_capacity(1 << 16, file),
            temp,
            target,
            writeback: EarlyWriteback::default(),
        })
    }

    /// Commits under another name in the same folder: for files named by their content,
    /// whose name is known only once written (store blobs named by their digest).
    pub fn commit_as(mut self, path: &Path) -> io::Result<()> {
        if matches!(self.target, OutputTarget::Stream(_)) {
            return Err(io::Error::other("a stream output cannot be renamed"));
        }
        self.target = OutputTarget::Replace(path.to_path_buf());
        self.commit()
    }

    /// Flushes, syncs and renames the file into place (a stream output is only flushed).
    pub fn commit(mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.writeback.finish();
        let file = self.writer.into_inner().map_err(|e| e.into_error())?;
        let OutputTarget::Replace(path) = &self.target else { return Ok(()) };
        file.sync_all()?;
        make_readable(self.temp.path())?;
        self.temp.persist(path)?;
        sync_parent(path);
        Ok(())
    }

    /// Whether the output goes straight into a FIFO or device rather than a file.
    pub fn is_stream(&self) -> bool {
        matches!(self.target, OutputTarget::Stream(_))
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

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success(), "mkfifo");
    }

    fn is_fifo(path: &Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(path).unwrap().file_type().is_fifo()
    }

    fn is_char_device(path: &Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).unwrap().file_type().is_char_device()
    }

    /// Reads a FIFO to its end on another thread (a writer's open blocks until a reader's).
    fn drain(fifo: &Path) -> std::thread::JoinHandle<Vec<u8>> {
        let fifo = fifo.to_path_buf();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    }

    #[test]
    fn a_fifo_is_written_in_place_and_stays_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.fifo");
        mkfifo(&fifo);
        let reader = drain(&fifo);
        write_atomically(&fifo, |f| f.write_all(b"line one\nline two\n")).unwrap();
        assert_eq!(reader.join().unwrap(), b"line one\nline two\n");
        assert!(is_fifo(&fifo), "not replaced by a regular file");
        // A writer by path (llama.cpp's) fills a temporary file, copied into the FIFO.
        let reader = drain(&fifo);
        let value: io::Result<u8> = write_through_temp_path(&fifo, |temp| {
            assert_ne!(temp, fifo.as_path());
            std::fs::write(temp, b"GGUF and more").map(|_| 7)
        });
        assert_eq!(value.unwrap(), 7);
        assert_eq!(reader.join().unwrap(), b"GGUF and more");
        assert!(is_fifo(&fifo));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing beside it");
    }

    #[test]
    fn a_link_to_a_character_device_stays_a_link_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("null.jsonl");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert!(is_char_device(Path::new("/dev/null")));
        write_atomically(&link, |f| f.write_all(b"{}\n")).unwrap();
        let mut writer = AtomicWriter::create(&link).unwrap();
        assert!(writer.is_stream());
        writer.write_all(b"{}\n").unwrap();
        writer.commit().unwrap();
        let _: io::Result<()> = write_through_temp_path(&link, |temp| std::fs::write(temp, b"x"));
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("/dev/null"), "the link is kept");
        assert!(is_char_device(Path::new("/dev/null")), "/dev/null is still a device");
        assert!(is_char_device(&link));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing beside it");
    }

    #[test]
    fn a_link_to_a_file_is_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("runs")).unwrap();
        let real = dir.path().join("runs/v3.jsonl");
        std::fs::write(&real, b"old\n").unwrap();
        let link = dir.path().join("latest.jsonl");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomically(&link, |f| f.write_all(b"new\n")).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), real);
        assert_eq!(std::fs::read(&real).unwrap(), b"new\n");
    }

    #[test]
    fn interrupt_cleanup_knows_every_unfinished_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.jsonl");
        let registered = |writer: &AtomicWriter| {
            let temp = writer.temp.path().to_path_buf();
            let known = UNFINISHED.lock().unwrap().values().any(|p| *p == temp);
            (temp, known)
        };
        let writer = AtomicWriter::create(&path).unwrap();
        let (temp, known) = registered(&writer);
        assert!(known && temp.exists());
        drop(writer);
        assert!(!UNFINISHED.lock().unwrap().values().any(|p| *p == temp), "forgotten once dropped");
        let mut writer = AtomicWriter::create(&path).unwrap();
        writer.write_all(b"one\n").unwrap();
        let (temp, _) = registered(&writer);
        writer.commit().unwrap();
        assert!(!UNFINISHED.lock().unwrap().values().any(|p| *p == temp), "forgotten once committed");
        // What the signal handler does before exiting (no destructor runs after it), kept to
        // this test's folder: other tests of this process may be writing theirs.
        let writer = AtomicWriter::create(&dir.path().join("other.jsonl")).unwrap();
        let (temp, _) = registered(&writer);
        remove_unfinished_matching(|p| p.starts_with(dir.path()));
        assert!(!temp.exists());
        std::mem::forget(writer);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["records.jsonl"]);
    }

    #[test]
    fn outputs_that_are_inputs_are_refused_by_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let docs = dir.path().join("docs.jsonl");
        std::fs::write(&docs, b"{}\n").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&docs, &link).unwrap();
        let hard = dir.path().join("hard.jsonl");
        std::fs::hard_link(&docs, &hard).unwrap();
        let folder = dir.path().join("notes");
        std::fs::create_dir(&folder).unwrap();
        let inputs = [docs.as_path(), folder.as_path()];
        for output in [&docs, &link, &hard, &dir.path().join(".").join("docs.jsonl")] {
            let err = refuse_output_among_inputs(output, inputs).unwrap_err();
            assert!(matches!(err, OutputIsInput::SameFile { .. }), "{}: {err}", output.display());
        }
        for inside in [folder.join("results.jsonl"), folder.join("new/deeper/results.jsonl")] {
            let err = refuse_output_among_inputs(&inside, inputs).unwrap_err();
            assert!(err.to_string().contains("inside the input folder"), "{err}");
        }
        refuse_output_among_inputs(&dir.path().join("results.jsonl"), inputs).unwrap();
        refuse_output_among_inputs(Path::new("/dev/null"), [Path::new("/dev/null")]).unwrap();
        // Inputs that are not there replace nothing.
        refuse_output_among_inputs(&docs, [dir.path().join("missing").as_path()]).unwrap();
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
        // Neither there yet: the same name in the same folder, however it is reached.
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("alias")).unwrap();
        let fresh = dir.path().join("real/new.jsonl");
        assert!(same_path(&fresh, &dir.path().join("alias/new.jsonl")));
        assert!(same_path(&fresh, &dir.path().join("./real/new.jsonl")));
        assert!(!same_path(&fresh, &dir.path().join("real/new2.jsonl")));
    }
}
