//! The download cache, laid out like the Hugging Face hub cache:
//!
//! ```text
//! CACHE/hub/models--OWNER--NAME/
//!     blobs/ETAG              complete, verified files, named by ETag
//!     blobs/ETAG.part         a download in progress (resumed from its length)
//!     blobs/ETAG.lock         held while a process downloads ETAG
//!     snapshots/COMMIT/FILE   relative symlink to ../../blobs/ETAG
//!     refs/REVISION           the commit REVISION pointed to last time
//! CACHE/converted/OWNER--NAME/COMMIT/NAME/          safetensors folder to convert
//! CACHE/converted/OWNER--NAME/COMMIT/NAME-TYPE.gguf its conversion
//! ```
//!
//! A file appears under `snapshots/` (and a blob without `.part`) only once
//! it is complete and its checksum verified.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub(crate) struct RepoCache {
    dir: PathBuf,
}

/// `owner/name` → `owner--name` (a repository name has no `/` otherwise).
pub(crate) fn flat_name(repo: &str) -> String {
    repo.replace('/', "--")
}

impl RepoCache {
    pub fn new(cache: &Path, repo: &str) -> RepoCache {
        RepoCache { dir: cache.join("hub").join(format!("models--{}", flat_name(repo))) }
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    pub fn part(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.part"))
    }

    pub fn lock_path(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.lock"))
    }

    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    pub fn pointer(&self, commit: &str, file: &str) -> PathBuf {
        self.snapshot(commit).join(file)
    }

    fn ref_path(&self, revision: &str) -> PathBuf {
        self.dir.join("refs").join(revision)
    }

    /// The commit `revision` resolved to when last online.
    pub fn read_ref(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let s = std::fs::read_to_string(self.ref_path(revision)).ok()?;
        let s = s.trim();
        is_commit(s).then(|| s.to_string())
    }

    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let p = self.ref_path(revision);
        if std::fs::read_to_string(&p).is_ok_and(|s| s.trim() == commit) {
            return Ok(());
        }
        create_parent(&p)?;
        write_atomic(&p, commit.as_bytes())
    }

    /// Makes `snapshots/COMMIT/FILE` point to the blob.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        let pointer = self.pointer(commit, file);
        create_parent(&pointer)?;
        let blob = self.blob(etag);
        let tmp =
            pointer.with_file_name(format!(".{}.lbm-tmp", pointer.file_name().unwrap_or_default().to_string_lossy()));
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        {
            // snapshots/COMMIT/a/b/FILE -> ../../../../blobs/ETAG
            let depth = Path::new(file).components().count() + 1;
            let mut target = PathBuf::new();
            for _ in 0..depth {
                target.push("..");
            }
            target.push("blobs");
            target.push(etag);
            std::os::unix::fs::symlink(&target, &tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        }
        #[cfg(not(unix))]
        std::fs::copy(&blob, &tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        std::fs::rename(&tmp, &pointer).with_context(|| format!("cannot create {}", pointer.display()))?;
        if !pointer.is_file() {
            bail!("{} does not lead to {}", pointer.display(), blob.display());
        }
        Ok(pointer)
    }
}

/// A full commit id (40 lowercase hex digits).
pub(crate) fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn create_parent(p: &Path) -> Result<()> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok(())
}

/// Writes a small file through a temporary name.
pub(crate) fn write_atomic(p: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = p.with_extension("lbm-tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, p).with_context(|| format!("cannot write {}", p.display()))
}

/// Copies a file through a temporary name next to `dst`, so that `dst`
/// appears only complete.
pub(crate) fn copy_atomic(src: &Path, dst: &Path) -> Result<()> {
    let name = dst.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dst.with_file_name(format!(".{name}.lbm-tmp"));
    let r = std::fs::copy(src, &tmp)
        .with_context(|| format!("cannot copy {} to {}", src.display(), tmp.display()))
        .and_then(|_| std::fs::rename(&tmp, dst).with_context(|| format!("cannot write {}", dst.display())));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// A lock file held while this process downloads a blob: two `lbm pull`s
/// of the same file would otherwise append to the same `.part`. It holds
/// the owner's process id; a lock whose process is gone is taken over.
pub(crate) struct Lock {
    path: PathBuf,
}

/// Whether process `pid` runs (a zombie does not).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    match std::fs::read_to_string(proc.join("stat")) {
        // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| !matches!(state, "Z" | "X" | "x")),
        Err(_) => proc.exists(),
    }
}

/// What one try at the lock found.
enum Try {
    Got(Lock),
    /// Held by a live process: why, in words.
    Busy(String),
}

impl Lock {
    pub fn acquire(path: &Path, what: &str) -> Result<Lock> {
        create_parent(path)?;
        // A process that was just stopped may not be gone yet: wait a little.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match Self::try_acquire(path, what)? {
                Try::Got(l) => return Ok(l),
                Try::Busy(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                Try::Busy(why) => bail!("{why}"),
            }
        }
    }

    /// Creates the lock file, or finds it there (`None`).
    fn create(path: &Path) -> Result<Option<Lock>> {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                use std::io::Write;
                f.write_all(std::process::id().to_string().as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(Some(Lock { path: path.to_path_buf() }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }

    fn try_acquire(path: &Path, what: &str) -> Result<Try> {
        let busy = |who: String| {
            Try::Busy(format!(
                "{what} is being downloaded by another lbm{who}; wait for it, or delete {} if \
                 there is none",
                path.display()
            ))
        };
        if let Some(l) = Self::create(path)? {
            return Ok(Try::Got(l));
        }
        let owner: Option<u32> = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok());
        // An empty lock may be one being written right now.
        let fresh = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 10));
        match owner {
            None if fresh => return Ok(busy(String::new())),
            Some(pid) if process_alive(pid) => return Ok(busy(format!(" (process {pid})"))),
            _ => {}
        }
        // Left by a process that is gone: take it over (unless another
        // process just did).
        let _ = std::fs::remove_file(path);
        Ok(match Self::create(path)? {
            Some(l) => Try::Got(l),
            None => busy(String::new()),
        })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
