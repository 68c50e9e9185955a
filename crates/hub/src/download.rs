//! One file from the hub into a `.part` file: resumed from the length it
//! already has (`Range: bytes=N-`), retried when the connection drops, and
//! verified against the hub's checksum before the caller may give it its
//! final name.

use super::hub::{FileMeta, Hub, HubError, Kind, Target};
use super::{human, Event, WriterFactory};
use anyhow::{anyhow, bail, Context, Result};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// How a file can be checked, from its ETag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checksum {
    /// LFS files: the ETag (`X-Linked-Etag`) is the sha256 of the content.
    Sha256(String),
    /// Files kept in git: the ETag is the git blob id,
    /// sha1("blob {size}\0" + content).
    GitSha1(String),
    /// Anything else (another server): the size is all that is checked.
    None,
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Checksum {
    pub fn from_etag(etag: &str) -> Checksum {
        if is_hex(etag, 64) {
            Checksum::Sha256(etag.to_ascii_lowercase())
        } else if is_hex(etag, 40) {
            Checksum::GitSha1(etag.to_ascii_lowercase())
        } else {
            Checksum::None
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `path` through and returns its length and checksum (as `c` names it).
fn digest_file(path: &Path, c: &Checksum, size: u64) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut sha256 = sha2::Sha256::new();
    let mut sha1 = sha1::Sha1::new();
    sha1.update(format!("blob {size}\0").as_bytes());
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        len += n as u64;
        match c {
            Checksum::Sha256(_) => sha256.update(&buf[..n]),
            Checksum::GitSha1(_) => sha1.update(&buf[..n]),
            Checksum::None => {}
        }
    }
    let d = match c {
        Checksum::Sha256(_) => hex(&sha256.finalize()),
        Checksum::GitSha1(_) => hex(&sha1.finalize()),
        Checksum::None => String::new(),
    };
    Ok((len, d))
}

/// The default writer: append to the `.part` file.
fn open_append(p: &Path) -> std::io::Result<Box<dyn Write>> {
    let f = std::fs::OpenOptions::new().create(true).append(true).open(p)?;
    Ok(Box::new(std::io::BufWriter::with_capacity(1 << 20, f)))
}

pub(crate) struct Job<'a> {
    pub hub: &'a Hub,
    /// Repository, revision (the commit, so that every byte comes from the
    /// version `meta` describes) and file.
    pub target: Target<'a>,
    pub meta: &'a FileMeta,
    pub part: &'a Path,
    pub writer: Option<&'a WriterFactory>,
    /// Further attempts after a dropped connection.
    pub retries: u32,
}

/// Why one attempt stopped.
enum Stop {
    /// The connection dropped (or never came, or the server was busy):
    /// worth resuming.
    Cut(String),
    /// Anything else: report as it is.
    Fatal(anyhow::Error),
}

fn part_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn remove(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot delete {}", p.display())),
    }
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` → (FIRST, TOTAL if given).
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let v = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = v.split_once('/')?;
    let (first, _) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, total.trim().parse().ok()))
}

fn attempt(job: &Job, on: &mut dyn FnMut(&Event)) -> Result<(), Stop> {
    let file = job.target.file.unwrap_or_default();
    let size = job.meta.size;
    let mut start = part_len(job.part);
    if start > size {
        remove(job.part).map_err(Stop::Fatal)?;
        start = 0;
    }
    if start == size {
        return Ok(());
    }
    let mut resp = match job.hub.get_file(&job.target, start) {
        Ok(r) => r,
        Err(HubError { kind: Kind::Unreachable | Kind::Busy, message }) => return Err(Stop::Cut(message)),
        Err(e) => return Err(Stop::Fatal(e.into())),
    };
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let length = header("content-length").and_then(|s| s.trim().parse::<u64>().ok());
    match resp.status().as_u16() {
        206 => {
            let cr = header("content-range").unwrap_or_default();
            match content_range(&cr) {
                Some((first, total)) if first == start && total.is_none_or(|t| t == size) => {}
                _ => {
                    return Err(Stop::Fatal(anyhow!(
                        "the server answered a request for bytes {start}- of {file} ({size} bytes) \
                         with Content-Range '{cr}'"
                    )))
                }
            }
        }
        200 => {
            if start > 0 {
                on(&Event::Log(&format!("{file}: the server cannot resume; starting over")));
                remove(job.part).map_err(Stop::Fatal)?;
                start = 0;
            }
        }
        416 => {
            remove(job.part).map_err(Stop::Fatal)?;
            return Err(Stop::Cut(format!(
                "the server refused to resume at byte {start} (HTTP 416); the partial file was deleted"
            )));
        }
        s => return Err(Stop::Fatal(anyhow!("unexpected HTTP {s} downloading {file}"))),
    }
    if let Some(n) = length {
        if n != size - start {
            return Err(Stop::Fatal(anyhow!(
                "the server sends {n} bytes of {file} from byte {start}, but announced a size of {size}"
            )));
        }
    }

    let open = |p: &Path| match job.writer {
        Some(f) => f(p),
        None => open_append(p),
    };
    let mut out = open(job.part).map_err(|e| Stop::Fatal(write_error(e, job.part, start, size)))?;
    on(&Event::Start { file, total: size, resumed: start });
    let mut body = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 256 << 10];
    let mut done = start;
    let cut = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e.to_string()),
        };
        if done + n as u64 > size {
            drop(out);
            remove(job.part).map_err(Stop::Fatal)?;
            return Err(Stop::Fatal(anyhow!(
                "the server sent more than the announced {size} bytes of {file}; the download was deleted"
            )));
        }
        if let Err(e) = out.write_all(&buf[..n]) {
            let _ = out.flush();
            drop(out);
            return Err(Stop::Fatal(write_error(e, job.part, part_len(job.part), size)));
        }
        done += n as u64;
        on(&Event::Bytes { file, done, total: size });
    };
    if let Err(e) = out.flush() {
        drop(out);
        return Err(Stop::Fatal(write_error(e, job.part, part_len(job.part), size)));
    }
    drop(out);
    match cut {
        Some(e) => Err(Stop::Cut(e)),
        None if done < size => {
            Err(Stop::Cut(format!("the server closed the connection after {} of {}", human(done), human(size))))
        }
        None => Ok(()),
    }
}

/// A failed write; `done`: the bytes the part file holds.
fn write_error(e: std::io::Error, part: &Path, done: u64, size: u64) -> anyhow::Error {
    let at = format!("{} of {} downloaded", human(done), human(size));
    if e.kind() == std::io::ErrorKind::StorageFull {
        anyhow!(
            "no space left on the device writing {} ({at}): free {} and run the same command \
             again to resume",
            part.display(),
            human(size.saturating_sub(done))
        )
    } else {
        anyhow!("cannot write {} ({at}): {e}; run the same command again to resume", part.display())
    }
}

/// Downloads `job` into its `.part` file and verifies it: on success the
/// part holds exactly the file. A dropped connection leaves the part for
/// the next call to resume; a checksum mismatch deletes it.
pub(crate) fn download(job: &Job, on: &mut dyn FnMut(&Event)) -> Result<()> {
    let file = job.target.file.unwrap_or_default();
    let size = job.meta.size;
    let mut tries = 0;
    loop {
        let before = part_len(job.part);
        match attempt(job, on) {
            Ok(()) => break,
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Cut(why)) => {
                let have = part_len(job.part);
                // Resume at once after progress, back off after none.
                if tries < job.retries {
                    tries += 1;
                    on(&Event::Log(&format!(
                        "{file}: {why}; resuming from {} (retry {tries} of {})",
                        human(have),
                        job.retries
                    )));
                    let wait = if have > before { 1 } else { tries as u64 };
                    std::thread::sleep(Duration::from_millis(500 * wait));
                    continue;
                }
                if have == 0 {
                    bail!(
                        "download of '{file}' ({}) interrupted before its first byte: {why}. \
                         Run the same command again to retry",
                        human(size)
                    );
                }
                bail!(
                    "download of '{file}' interrupted at {} of {}: {why}. The partial download is \
                     kept in {}: run the same command again to resume",
                    human(have),
                    human(size),
                    job.part.display()
                );
            }
        }
    }
    verify(job.part, &job.meta.etag, size, file)
}

/// Checks the part's size and checksum; deletes it when they are wrong.
fn verify(part: &Path, etag: &str, size: u64, file: &str) -> Result<()> {
    let c = Checksum::from_etag(etag);
    let (len, got) = digest_file(part, &c, size)?;
    let wrong = if len != size {
        Some(format!("it has {len} bytes, the hub announced {size}"))
    } else {
        match &c {
            Checksum::Sha256(want) if *want != got => Some(format!("sha256 {got}, the hub announced {want}")),
            Checksum::GitSha1(want) if *want != got => Some(format!("git blob id {got}, the hub announced {want}")),
            _ => None,
        }
    };
    if let Some(why) = wrong {
        remove(part)?;
        bail!(
            "checksum mismatch for '{file}': {why}. The corrupt download was deleted: run the \
             same command again to download it afresh"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_ranges() {
        let sha = "a".repeat(64);
        assert_eq!(Checksum::from_etag(&sha), Checksum::Sha256(sha.clone()));
        assert_eq!(Checksum::from_etag(&"B".repeat(40)), Checksum::GitSha1("b".repeat(40)));
        assert_eq!(Checksum::from_etag("xyz"), Checksum::None);
        assert_eq!(content_range("bytes 10-99/100"), Some((10, Some(100))));
        assert_eq!(content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(content_range("10-99/100"), None);
    }

    #[test]
    fn git_blob_id() {
        // `git hash-object` of a file holding "hello\n".
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "hello\n").unwrap();
        let want = "ce013625030ba8dba906f756967f9e9ca394464a";
        let c = Checksum::GitSha1(want.into());
        assert_eq!(digest_file(&p, &c, 6).unwrap(), (6, want.to_string()));
        verify(&p, want, 6, "f").unwrap();
        let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        verify(&p, sha, 6, "f").unwrap();
        let err = verify(&p, &"0".repeat(64), 6, "f").unwrap_err().to_string();
        assert!(err.contains("checksum mismatch") && !p.exists(), "{err}");
    }
}
