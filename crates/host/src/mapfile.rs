//! A model file mapped into memory copy-on-write (`mmap` with `MAP_PRIVATE`,
//! readable and writable), so that loading does not copy the file: the
//! engine reads the weights straight from the page cache, and the matrices
//! it repacks in place (row octets) are copied page by page on their first
//! write, into memory private to this process. The file itself is never
//! written.
//!
//! What the mapping cannot promise, and what llama.cpp's `--mmap` default
//! does not promise either:
//!
//! - **The file must not change while it is mapped.** Pages not yet written
//!   to are the page cache's: on Linux, a later write to the file (by
//!   another program) shows through them, so the weights would change under
//!   a running model. Pages this process wrote (the repacked matrices) are
//!   its own copies and do not change.
//! - **The file must not be truncated while it is mapped.** Reading a page
//!   past the new end raises `SIGBUS`, which kills the process. A file that
//!   is already shorter than its header says is an ordinary error: the
//!   mapping is exactly the file's length when it was opened, and the
//!   loader checks every tensor against that length.
//! - **The pages are 4 KiB pages** of the page cache (and of anonymous
//!   memory for the copied pages), not transparent huge pages: decoding,
//!   which streams every weight once per token, walks more TLB entries than
//!   with [`crate::hugebuf::HugeBuf`] (docs/PERFORMANCE.md measures both).
//!
//! Replacing the file by renaming a new one over it (as `lbm` and most tools
//! write their outputs) is safe: the mapping keeps the old file's pages.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// A whole file, mapped private and writable: writes stay in this process.
pub struct MappedFile {
    /// The mapping's start (dangling, never unmapped, when `len` is 0).
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: MappedFile owns its mapping exclusively (like Vec<u8> owns its
// buffer): shared references only read it and `&mut` access is unique.
unsafe impl Send for MappedFile {}
// SAFETY: as above: `&MappedFile` gives only read access.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps the first `len` bytes of `file` (its length: give the length
    /// from `file.metadata()`), private and writable, and asks the kernel to
    /// read them ahead. `len` larger than the file is refused (the pages
    /// past its end would raise SIGBUS when read).
    pub fn map(file: &File, len: u64) -> io::Result<MappedFile> {
        let on_disk = file.metadata()?.len();
        if len > on_disk {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the file is {on_disk} bytes, shorter than the {len} to map"),
            ));
        }
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "the file is larger than the address space"))?;
        if len == 0 {
            // mmap refuses an empty length; there is nothing to map.
            return Ok(MappedFile { ptr: NonNull::dangling(), len: 0 });
        }
        let fd = file.as_raw_fd();
        // SAFETY: a new mapping chosen by the kernel (address NULL), so no
        // existing memory is affected; `fd` is an open file for this call's
        // duration (the mapping keeps its own reference to the file).
        let p = unsafe {
            libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE, fd, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        // Read-ahead: the whole file will be read (parsed, repacked, then
        // streamed per token). WILLNEED starts reading it in the background
        // (asynchronous, returns at once); the file is read front to back,
        // so sequential read-ahead on the descriptor doubles the window.
        // MADV_SEQUENTIAL is *not* used: it lets the kernel drop pages soon
        // after they are read, and every page is read again for every token.
        // Both are advice: a failure changes nothing but speed.
        #[cfg(target_os = "linux")]
        // SAFETY: posix_fadvise only changes the kernel's read-ahead for fd.
        unsafe {
            libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
        // SAFETY: [ptr, ptr + len) is the mapping made above, page-aligned;
        // MADV_WILLNEED only schedules reads of the file's pages.
        unsafe {
            libc::madvise(p, len, libc::MADV_WILLNEED);
        }
        Ok(MappedFile { ptr, len })
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: [ptr, ptr + len) is our readable mapping of `len` bytes of
        // the file (or an empty slice at a dangling, aligned pointer), alive
        // until drop. See the module documentation for the file changing.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsMut<[u8]> for MappedFile {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; the mapping is writable (MAP_PRIVATE: a write
        // copies the page, the file is not changed) and `&mut self` makes
        // this the only access.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

// SAFETY: the mapping stays at one address with one length until `drop`
// unmaps it (moving a MappedFile moves only the pointer), and `&self` only
// reads. Nothing in this process writes to it without `&mut`. The bytes
// are the file's as long as the file is not written to or truncated by
// another program while mapped (see the module documentation: the same
// condition llama.cpp's default mmap loading documents); pages this process
// has written are private copies and cannot change.
unsafe impl kernels::store::StableBytes for MappedFile {
    fn bytes(&self) -> &[u8] {
        self.as_ref()
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `map` with exactly this address and
            // length, unmapped once; no reference to it outlives `self`.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            }
        }
    }
}

impl core::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "MappedFile({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::MappedFile;
    use std::io::Write;

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("host-mapfile-{}-{name}", std::process::id()));
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn maps_the_file_and_writes_stay_private() {
        let data: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i * 7) as u8).collect();
        let p = temp("cow", &data);
        let f = std::fs::File::open(&p).unwrap();
        let mut m = MappedFile::map(&f, data.len() as u64).unwrap();
        drop(f); // the mapping outlives the descriptor
        assert_eq!(m.as_ref(), &data[..]);
        m.as_mut()[5000..5100].fill(0xAB);
        assert!(m.as_ref()[5000..5100].iter().all(|&v| v == 0xAB));
        assert_eq!(&m.as_ref()[..5000], &data[..5000]);
        drop(m);
        assert_eq!(std::fs::read(&p).unwrap(), data, "a private mapping wrote through to the file");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn empty_and_over_long_mappings() {
        let p = temp("short", b"abc");
        let f = std::fs::File::open(&p).unwrap();
        let e = MappedFile::map(&f, 0).unwrap();
        assert!(e.as_ref().is_empty());
        assert_eq!(MappedFile::map(&f, 2).unwrap().as_ref(), b"ab");
        assert_eq!(MappedFile::map(&f, 4).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(&p).unwrap();
    }
}
