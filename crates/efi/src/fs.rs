//! The EFI system partition: the volume the app was loaded from.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use uefi::boot::{self, ScopedProtocol};
use uefi::proto::media::file::{Directory, File, FileAttribute, FileInfo, FileMode, RegularFile};
use uefi::proto::media::fs::SimpleFileSystem;
use uefi::CString16;

use crate::mem::Pages;

/// Bytes read per firmware call when loading a whole file.
pub const CHUNK: usize = 16 << 20;

/// A file or directory in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub size: u64,
    pub is_dir: bool,
}

/// The volume the app was loaded from.
pub struct Esp {
    root: Directory,
    _fs: ScopedProtocol<SimpleFileSystem>,
}

fn status_text(e: &uefi::Error<impl core::fmt::Debug>) -> String {
    format!("{:?}", e.status())
}

/// A UEFI path from a `\`-separated string.
fn cpath(path: &str) -> Result<CString16, String> {
    CString16::try_from(path).map_err(|_| format!("{path}: the name cannot be written in UCS-2"))
}

impl Esp {
    /// Opens the file system of the device this image was loaded from.
    pub fn open() -> Result<Self, String> {
        let mut fs = boot::get_image_file_system(boot::image_handle())
            .map_err(|e| format!("cannot open the boot volume's file system: {}", status_text(&e)))?;
        let root = fs
            .open_volume()
            .map_err(|e| format!("cannot open the boot volume's root directory: {}", status_text(&e)))?;
        Ok(Esp { root, _fs: fs })
    }

    fn open_file(&mut self, path: &str) -> Result<RegularFile, String> {
        let p = cpath(path)?;
        let handle = self
            .root
            .open(&p, FileMode::Read, FileAttribute::empty())
            .map_err(|e| format!("cannot open {path}: {}", status_text(&e)))?;
        handle.into_regular_file().ok_or_else(|| format!("{path} is a directory"))
    }

    /// Whether `path` exists (as a file or directory).
    pub fn exists(&mut self, path: &str) -> bool {
        match cpath(path) {
            Ok(p) => self.root.open(&p, FileMode::Read, FileAttribute::empty()).is_ok(),
            Err(_) => false,
        }
    }

    /// Lists a directory (`\` for the root), without `.` and `..`.
    /// A missing directory is an empty listing.
    pub fn list(&mut self, dir: &str) -> Result<Vec<DirEntry>, String> {
        let mut d: Directory = if dir == "\\" || dir.is_empty() {
            self.root
                .open(&cpath("\\")?, FileMode::Read, FileAttribute::empty())
                .map_err(|e| format!("cannot open {dir}: {}", status_text(&e)))?
                .into_directory()
                .ok_or_else(|| format!("{dir} is not a directory"))?
        } else {
            let p = cpath(dir)?;
            match self.root.open(&p, FileMode::Read, FileAttribute::empty()) {
                Ok(h) => match h.into_directory() {
                    Some(d) => d,
                    None => return Ok(Vec::new()),
                },
                Err(e) if e.status() == uefi::Status::NOT_FOUND => return Ok(Vec::new()),
                Err(e) => return Err(format!("cannot open {dir}: {}", status_text(&e))),
            }
        };
        let mut out = Vec::new();
        loop {
            let info: Option<Box<FileInfo>> =
                d.read_entry_boxed().map_err(|e| format!("cannot list {dir}: {}", status_text(&e)))?;
            let Some(info) = info else { break };
            let name = info.file_name().to_string();
            if name == "." || name == ".." {
                continue;
            }
            out.push(DirEntry { name, size: info.file_size(), is_dir: info.is_directory() });
        }
        Ok(out)
    }

    /// Reads up to `n` bytes from the start of a file; returns them and the
    /// file's full size.
    pub fn read_prefix(&mut self, path: &str, n: usize) -> Result<(Vec<u8>, u64), String> {
        let mut f = self.open_file(path)?;
        let size = size_of_open(&mut f, path)?;
        let want = (n as u64).min(size) as usize;
        let mut buf = vec![0u8; want];
        read_exact(&mut f, &mut buf, path)?;
        Ok((buf, size))
    }

    /// Reads a whole (small) file into a `Vec`, refusing files over `max` bytes.
    pub fn read_small(&mut self, path: &str, max: u64) -> Result<Vec<u8>, String> {
        let mut f = self.open_file(path)?;
        let size = size_of_open(&mut f, path)?;
        if size > max {
            return Err(format!("{path} is {} bytes, more than the {} expected", size, max));
        }
        let mut buf = vec![0u8; size as usize];
        read_exact(&mut f, &mut buf, path)?;
        Ok(buf)
    }

    /// Reads a whole file into fresh pages, [`CHUNK`] bytes per call, calling
    /// `progress(done, total)` before the first and after each chunk.
    pub fn read_to_pages(&mut self, path: &str, progress: &mut dyn FnMut(u64, u64)) -> Result<Pages, String> {
        let mut f = self.open_file(path)?;
        let size = size_of_open(&mut f, path)?;
        let len = usize::try_from(size).map_err(|_| format!("{path} is too large"))?;
        let mut pages = Pages::alloc(len).map_err(|e| format!("{path}: {e}"))?;
        progress(0, size);
        let mut done = 0usize;
        while done < len {
            let end = (done + CHUNK).min(len);
            // Touch the chunk first: reads into untouched pages are slow.
            pages.touch(done, end);
            read_exact(&mut f, &mut pages.as_mut_slice()[done..end], path)?;
            done = end;
            progress(done as u64, size);
        }
        Ok(pages)
    }
}

impl Esp {
    /// Reads a split GGUF set (its shards' paths, in order, and the merge
    /// plan made from their headers) into fresh pages as the one merged
    /// file: the merged header, then each tensor's data read from its shard
    /// straight into place, [`CHUNK`] bytes per call at most. `progress(done,
    /// total)` counts bytes of the merged file, before the first and after
    /// each read.
    pub fn read_split_to_pages(
        &mut self,
        paths: &[String],
        plan: &engine::gguf::split::MergePlan,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Pages, String> {
        let total = plan.merged_len();
        let len = usize::try_from(total).map_err(|_| format!("{} is too large", paths[0]))?;
        let mut pages = Pages::alloc(len).map_err(|e| format!("{}: {e}", paths[0]))?;
        progress(0, total);
        // Touched once, before anything is written: touching writes a byte
        // at the start of every page, which would clobber the end of the
        // piece before in a shared page.
        pages.touch(0, len);
        plan.place_header(pages.as_mut_slice()).map_err(|e| format!("{e}"))?;
        let mut done = plan.header().len() as u64;
        let mut open: Option<(usize, RegularFile)> = None;
        for p in plan.pieces() {
            let path = paths.get(p.shard).ok_or("split set: a piece of an unknown shard")?;
            if open.as_ref().map(|(i, _)| *i) != Some(p.shard) {
                open = Some((p.shard, self.open_file(path)?));
            }
            let Some((_, f)) = open.as_mut() else { return Err("split set: no open shard".into()) };
            f.set_position(p.src).map_err(|e| format!("cannot seek {path} to byte {}: {}", p.src, status_text(&e)))?;
            // The plan keeps every piece inside `total`, which is `len`.
            let (start, end) = (p.dst as usize, (p.dst + p.len) as usize);
            let mut at = start;
            while at < end {
                let stop = (at + CHUNK).min(end);
                read_exact(f, &mut pages.as_mut_slice()[at..stop], path)?;
                done += (stop - at) as u64;
                at = stop;
                progress(done, total);
            }
            done += p.pad;
        }
        progress(total, total);
        Ok(pages)
    }
}

fn size_of_open(f: &mut RegularFile, path: &str) -> Result<u64, String> {
    let info: Box<FileInfo> = f.get_boxed_info().map_err(|e| format!("cannot stat {path}: {}", status_text(&e)))?;
    Ok(info.file_size())
}

/// Fills `buf` from the file's current position.
fn read_exact(f: &mut RegularFile, buf: &mut [u8], path: &str) -> Result<(), String> {
    let mut at = 0;
    while at < buf.len() {
        let n = f.read(&mut buf[at..]).map_err(|e| format!("cannot read {path} at byte {at}: {}", status_text(&e)))?;
        if n == 0 {
            return Err(format!("{path} ended after {at} of {} bytes", buf.len()));
        }
        at += n;
    }
    Ok(())
}
