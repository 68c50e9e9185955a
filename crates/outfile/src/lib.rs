//! Writing an output file (`lbm quantize -o`, `convert -o`, `bench --gen-model -o`,
//! `logits -o`) so that a failed or interrupted run never leaves a
//! half-written file, and so that the output name cannot be used to make the
//! writer clobber something else:
//!
//! - an output that exists and is not a regular file (a directory, a device,
//!   a FIFO, a socket) is refused;
//! - a symbolic link is followed: its target gets the new file, the link stays;
//! - the bytes go to a temporary file in the target's folder with a random
//!   name, created with O_EXCL (so a file or link planted at a predictable
//!   name is never opened), renamed over the target when complete;
//! - a file being replaced keeps its permissions (a new one gets 0666 less
//!   the umask, as `File::create` gives);
//! - the temporary file is removed on every error path (it is dropped), and
//!   [`remove_pending`] removes those still being written, for a Ctrl-C
//!   handler that exits without unwinding.
#![forbid(unsafe_code)]

use std::fs::{File, Permissions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Temporary files being written, for [`remove_pending`].
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Symbolic links followed at most, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

/// Removes the temporary files of every [`Output`] not yet committed or
/// dropped: for a signal handler that is about to exit the process.
pub fn remove_pending() {
    let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
    for p in pending.iter() {
        let _ = std::fs::remove_file(p);
    }
}

/// An output file being written: a temporary file beside the target, which
/// [`Output::commit`] renames over it. Dropped without a commit, the
/// temporary file is removed.
pub struct Output {
    /// The path as given, for messages.
    shown: PathBuf,
    /// The file to replace: `shown` with symbolic links followed.
    target: PathBuf,
    /// The permissions of the file being replaced.
    keep: Option<Permissions>,
    /// The temporary file; taken by [`Output::commit`].
    tmp: Option<tempfile::NamedTempFile>,
}

impl Output {
    /// Checks `path` and creates the temporary file beside its target.
    pub fn create(path: &Path) -> Result<Output> {
        if path.as_os_str().is_empty() {
            bail!("no output path given");
        }
        let target = follow_links(path)?;
        let keep = match std::fs::metadata(&target) {
            Ok(m) if m.is_dir() => bail!("the output {} is a directory", path.display()),
            Ok(m) if !m.is_file() => bail!(
                "the output {} is not a regular file (a device, FIFO or socket): write to a file, then copy it",
                path.display()
            ),
            Ok(m) => Some(m.permissions()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot look at the output {}", path.display())),
        };
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!("the folder of the output, {}, does not exist", dir.display());
        }
        let name = target.file_name().with_context(|| format!("the output {} has no file name", path.display()))?;
        let mut b = tempfile::Builder::new();
        let prefix = format!(".{}.", name.to_string_lossy());
        b.prefix(&prefix).suffix(".partial");
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            Permissions::from_mode(0o666)
        };
        #[cfg(unix)]
        b.permissions(mode);
        // The registry is locked across the creation so that a signal
        // handler never misses a file that exists.
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        let tmp =
            b.tempfile_in(&dir).with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        pending.push(tmp.path().to_path_buf());
        drop(pending);
        Ok(Output { shown: path.to_path_buf(), target, keep, tmp: Some(tmp) })
    }

    /// The temporary file, to write to.
    pub fn file(&self) -> &File {
        self.tmp().as_file()
    }

    fn tmp(&self) -> &tempfile::NamedTempFile {
        self.tmp.as_ref().expect("an Output holds its temporary file until commit consumes it")
    }

    /// The temporary file's path.
    pub fn temp_path(&self) -> &Path {
        self.tmp().path()
    }

    /// The file that [`Output::commit`] replaces (the given path with
    /// symbolic links followed).
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes the temporary file to disk, gives it the replaced file's
    /// permissions and renames it over the target.
    pub fn commit(mut self) -> Result<()> {
        let shown = self.shown.display().to_string();
        let tmp = self.tmp.take().expect("an Output holds its temporary file until commit consumes it");
        let tmp_path = tmp.path().to_path_buf();
        // The temporary path leaves the registry once renamed (or removed).
        let r = (|| -> Result<()> {
            tmp.as_file().sync_all().with_context(|| format!("cannot write {shown}"))?;
            if let Some(p) = &self.keep {
                std::fs::set_permissions(&tmp_path, p.clone())
                    .with_context(|| format!("cannot give {} the permissions of {shown}", tmp_path.display()))?;
            }
            // On failure the returned file is dropped, which removes it.
            tmp.persist(&self.target)
                .map(drop)
                .map_err(|e| anyhow::anyhow!("cannot move {} to {shown}: {}", tmp_path.display(), e.error))
        })();
        unregister(&tmp_path);
        r
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(t) = &self.tmp {
            unregister(t.path());
        }
    }
}

fn unregister(p: &Path) {
    PENDING.lock().unwrap_or_else(|e| e.into_inner()).retain(|q| q != p);
}

/// `path` with symbolic links followed (the path itself when it is not a
/// link or does not exist; a dangling link gives the missing target).
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let t = std::fs::read_link(&p).with_context(|| format!("cannot read the link {}", p.display()))?;
                p = match p.parent() {
                    Some(dir) if t.is_relative() => dir.join(t),
                    _ => t,
                };
            }
            _ => return Ok(p),
        }
    }
    bail!("the output {}: too many levels of symbolic links", path.display())
}

/// Writes `path` through a buffered writer of `capacity` bytes handed to
/// `write`, via an [`Output`]: committed when `write` succeeds, removed when
/// it fails. Returns what `write` returned.
pub fn write_with<T>(
    path: &Path,
    capacity: usize,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<T>,
) -> Result<T> {
    Output::create(path)?.write_with(capacity, write)
}

impl Output {
    /// Hands `write` a buffered writer of `capacity` bytes on the temporary
    /// file, then commits when it succeeds; on failure the temporary file is
    /// removed. Returns what `write` returned.
    pub fn write_with<T>(self, capacity: usize, write: impl FnOnce(&mut BufWriter<&File>) -> Result<T>) -> Result<T> {
        let mut w = BufWriter::with_capacity(capacity, self.file());
        let v = write(&mut w)?;
        w.flush().with_context(|| format!("cannot write {}", self.shown.display()))?;
        drop(w);
        self.commit()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `remove_pending` removes every pending file of the process, those of
    /// tests running in parallel too: the tests take turns.
    static TURN: Mutex<()> = Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        TURN.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_complete_write_replaces_the_file_and_leaves_nothing_else() {
        let _turn = turn();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        let n = write_with(&p, 16, |w| {
            w.write_all(b"new contents")?;
            Ok(12)
        })
        .unwrap();
        assert_eq!(n, 12);
        assert_eq!(std::fs::read(&p).unwrap(), b"new contents");
        assert_eq!(names(d.path()), ["out.bin"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let _turn = turn();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        let r: Result<()> = write_with(&p, 16, |w| {
            w.write_all(&[7; 100])?;
            assert_eq!(PENDING.lock().unwrap().iter().filter(|q| q.starts_with(d.path())).count(), 1);
            bail!("the converter failed")
        });
        assert_eq!(r.unwrap_err().to_string(), "the converter failed");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(d.path()), ["out.bin"]);
        assert!(!PENDING.lock().unwrap().iter().any(|q| q.starts_with(d.path())));
    }

    #[test]
    fn remove_pending_removes_the_files_being_written() {
        let _turn = turn();
        let d = tempfile::tempdir().unwrap();
        let out = Output::create(&d.path().join("x.gguf")).unwrap();
        let tmp = out.temp_path().to_path_buf();
        assert!(tmp.exists() && tmp.starts_with(d.path()));
        remove_pending();
        assert!(!tmp.exists());
        drop(out);
        assert!(names(d.path()).is_empty());
    }

    #[test]
    fn directories_are_refused() {
        let _turn = turn();
        let d = tempfile::tempdir().unwrap();
        let e = Output::create(d.path()).err().unwrap().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = Output::create(&d.path().join("no/such/folder/x")).err().unwrap().to_string();
        assert!(e.contains("does not exist"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn links_are_followed_and_modes_kept() {
        let _turn = turn();
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("real.bin");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, Permissions::from_mode(0o600)).unwrap();
        // A chain of two links, one relative.
        std::os::unix::fs::symlink("real.bin", d.path().join("l1")).unwrap();
        std::os::unix::fs::symlink(d.path().join("l1"), d.path().join("l2")).unwrap();
        write_with(&d.path().join("l2"), 16, |w| Ok(w.write_all(b"new")?)).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(d.path().join("l1")).unwrap().file_type().is_symlink());
        assert!(std::fs::symlink_metadata(d.path().join("l2")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777, 0o600);
        // A dangling link gets its target created.
        std::os::unix::fs::symlink("made.bin", d.path().join("dangling")).unwrap();
        write_with(&d.path().join("dangling"), 16, |w| Ok(w.write_all(b"x")?)).unwrap();
        assert_eq!(std::fs::read(d.path().join("made.bin")).unwrap(), b"x");
        // A loop is an error, not a hang.
        std::os::unix::fs::symlink("loop2", d.path().join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", d.path().join("loop2")).unwrap();
        let e = Output::create(&d.path().join("loop1")).err().unwrap().to_string();
        assert!(e.contains("too many levels"), "{e}");
    }
}
