//! Building the bootable GPT + FAT32 disk image.
//!
//! Layout (512-byte sectors), chosen to boot on real hardware once written to
//! a USB stick or disk with `dd`, and under QEMU + OVMF:
//!
//! ```text
//! LBA 0            protective MBR (one 0xEE record covering the disk)
//! LBA 1            primary GPT header
//! LBA 2..33        primary partition entry array (128 entries of 128 bytes)
//! LBA 2048 (1 MiB) EFI System Partition, type C12A7328-F81F-11D2-BA4B-00A0C93EC93B,
//!                  a whole number of MiB, holding a FAT file system:
//!                    EFI/BOOT/BOOTX64.EFI   the UEFI application (x86-64)
//!                    EFI/BOOT/BOOTAA64.EFI  and/or its aarch64 build: each
//!                                           firmware starts its own
//!                    models/...             models and their tokenizers
//!                    ...                    extra files where asked
//! last 33 sectors  backup partition entry array and backup GPT header
//! ```
//!
//! The file system is FAT32, what the UEFI specification asks of a system
//! partition on a disk; that needs a partition of 33 MiB, so images are at
//! least 35 MiB. Clusters are the largest (up to 32 KiB) that still leave
//! FAT32 its minimum cluster count, and every file is one contiguous run of
//! clusters, so big models are written and read in long sequential runs. The
//! FAT32 volume is written by the `fat` submodule (see there why not by the
//! `fatfs` crate, which the tests use to read images back).
//!
//! The image is written to a temporary file beside the output and renamed into
//! place at the end, so a failure never leaves a half-built image behind.
//!
//! The API: [`build_image`] from files ([`ImageOptions`]), or
//! [`build_image_from_bytes`] from contents in memory; [`parse_size`] and
//! [`format_size`] for sizes such as `64M`; [`efi_app_problem`] and
//! [`efi_app_arch`] check a UEFI application's header.
#![forbid(unsafe_code)]

mod fat;
mod pe;
mod pio;
mod size;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

pub use pe::{efi_app_arch, efi_app_problem, EfiArch};
pub use size::{format_size, parse_size, parse_size_floor};

/// Logical sector size of the image.
pub const SECTOR_SIZE: u64 = 512;
/// Partitions start and end on 1 MiB boundaries.
pub const ALIGNMENT: u64 = 1 << 20;
/// Byte offset of the EFI System Partition (LBA 2048).
pub const PARTITION_START: u64 = ALIGNMENT;
/// GPT partition type GUID of an EFI System Partition.
pub const ESP_TYPE_GUID: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Where the UEFI application goes: the removable-media boot path for x86-64.
pub const BOOT_FILE: &str = "EFI/BOOT/BOOTX64.EFI";
/// The removable-media boot path for aarch64.
pub const BOOT_FILE_AARCH64: &str = "EFI/BOOT/BOOTAA64.EFI";
/// Directory of the models and their tokenizers.
pub const MODELS_DIR: &str = "models";
/// Files are copied in chunks of this many bytes.
pub const COPY_CHUNK: usize = 4 << 20;
/// The largest file FAT can hold: 4 GiB - 1 byte.
pub const MAX_FAT_FILE_SIZE: u64 = u32::MAX as u64;
/// The smallest partition: FAT32 needs 65525 clusters, of 512 bytes that is 33 MiB.
pub const FAT32_MIN_PARTITION: u64 = 33 << 20;
/// The smallest image (35 MiB).
pub const FAT32_MIN_IMAGE: u64 = PARTITION_START + FAT32_MIN_PARTITION + ALIGNMENT;

/// Sectors the backup GPT needs at the end of the disk: 32 of entries, 1 header.
const GPT_BACKUP_BYTES: u64 = 33 * SECTOR_SIZE;
/// Cluster counts at or above this are FAT32 with a safe margin over the
/// 65525 minimum, whatever the FAT and reserved sectors take.
const FAT32_SAFE_CLUSTERS: u64 = FAT32_MIN_PARTITION / 512;
/// FAT label of the partition.
const VOLUME_LABEL: [u8; 11] = *b"LBM-ESP    ";

/// What to put in the image.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// The image file to write (replaced if it exists).
    pub output: PathBuf,
    /// The UEFI applications: each is installed at its architecture's
    /// removable-media path (`EFI/BOOT/BOOTX64.EFI`, `EFI/BOOT/BOOTAA64.EFI`),
    /// found from its PE header; at most one per architecture.
    pub efi: Vec<PathBuf>,
    /// Model files, copied to `models/<file name>`.
    pub models: Vec<PathBuf>,
    /// Tokenizer files, copied beside the models to `models/<file name>`.
    pub tokenizers: Vec<PathBuf>,
    /// Other files: (source, destination path on the partition such as
    /// `"lbm.cfg"` or `"models/x.gguf"`; `/` or `\` separated).
    pub extra_files: Vec<(PathBuf, String)>,
    /// Image size in bytes (rounded up to whole sectors); `None` fits the
    /// contents with some headroom (and at least FAT32's minimum).
    pub size: Option<u64>,
}

/// A file of the image put together from pieces while it is copied (a
/// shard of a model split to fit FAT32's file size limit; see
/// [`build_image_with`]): nothing is staged on disk, each piece is read
/// from its source as the file is written.
#[derive(Debug, Clone)]
pub struct ComposedFile {
    /// Destination path on the partition (`/` or `\` separated).
    pub dest: String,
    pub parts: Vec<Part>,
}

/// A piece of a [`ComposedFile`].
#[derive(Debug, Clone)]
pub enum Part {
    /// These bytes.
    Bytes(Vec<u8>),
    /// `len` bytes of the file `path` from byte `offset`.
    Range { path: PathBuf, offset: u64, len: u64 },
    /// This many zero bytes.
    Zeros(u64),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::Range { len, .. } | Part::Zeros(len) => *len,
        }
    }
}

/// Reads the parts of a [`ComposedFile`] one after the other.
struct PartsReader {
    parts: std::vec::IntoIter<Part>,
    current: Option<Box<dyn Read>>,
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::{Seek, SeekFrom};
        loop {
            if self.current.is_none() {
                self.current = Some(match self.parts.next() {
                    None => return Ok(0),
                    Some(Part::Bytes(b)) => Box::new(io::Cursor::new(b)),
                    Some(Part::Zeros(n)) => Box::new(io::repeat(0).take(n)),
                    Some(Part::Range { path, offset, len }) => {
                        let mut f = File::open(&path)
                            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))?;
                        f.seek(SeekFrom::Start(offset))?;
                        Box::new(f.take(len))
                    }
                });
            }
            let n = self.current.as_mut().map_or(Ok(0), |r| r.read(buf))?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.current = None;
        }
    }
}

/// One file to copy into the partition.
#[derive(Debug)]
struct Entry {
    src: PathBuf,
    /// For a composed file, its parts (`src` is then its first source).
    parts: Option<Vec<Part>>,
    /// Destination, `/` separated, no leading slash.
    dest: String,
    len: u64,
}

/// Checks and normalizes a destination path on the partition.
fn normalize_dest(dest: &str) -> Result<String> {
    let parts: Vec<&str> = dest.split(['/', '\\']).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        bail!("empty destination path {dest:?} for a file on the partition");
    }
    for p in &parts {
        if *p == "." || *p == ".." {
            bail!("destination path {dest:?} may not contain '.' or '..'");
        }
        if let Some(c) = p.chars().find(|c| (*c as u32) < 0x20 || "\"*:<>?|".contains(*c)) {
            bail!("destination path {dest:?} has a character FAT does not allow: {c:?}");
        }
        if p.ends_with('.') || p.ends_with(' ') {
            bail!("destination path {dest:?}: FAT names cannot end with a dot or a space");
        }
        if p.encode_utf16().count() > 255 {
            bail!("destination path {dest:?}: a FAT name is at most 255 characters");
        }
    }
    Ok(parts.join("/"))
}

fn file_len(path: &Path, what: &str) -> Result<u64> {
    let meta = fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            anyhow!("{what} {} does not exist", path.display())
        } else {
            anyhow!("cannot read {what} {}: {e}", path.display())
        }
    })?;
    if !meta.is_file() {
        bail!("{what} {} is not a regular file", path.display());
    }
    let len = meta.len();
    if len > MAX_FAT_FILE_SIZE {
        bail!(
            "{what} {} is {} ({len} bytes), but a file on a FAT file system can hold at most 4 GiB - 1 \
             byte ({MAX_FAT_FILE_SIZE} bytes); use a smaller quantization or a model split into \
             parts",
            path.display(),
            format_size(len)
        );
    }
    Ok(len)
}

fn file_name_of(path: &Path, what: &str) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{what} {} has no usable (UTF-8) file name", path.display()))
}

/// Everything to copy, checked, in copy order: the application, extra files,
/// tokenizers, then models (the big files last, small ones together).
fn collect_entries(opts: &ImageOptions, composed: &[ComposedFile]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut push = |src: &Path, dest: String, what: &str| -> Result<()> {
        let len = file_len(src, what)?;
        entries.push(Entry { src: src.to_path_buf(), parts: None, dest, len });
        Ok(())
    };
    if opts.efi.is_empty() {
        bail!("no UEFI application to install");
    }
    let mut arches: Vec<(EfiArch, &Path)> = Vec::new();
    for app in &opts.efi {
        file_len(app, "EFI application")?;
        let arch = pe::check_efi_app(app)?;
        if let Some((_, other)) = arches.iter().find(|(a, _)| *a == arch) {
            bail!(
                "two {} UEFI applications given ({} and {}); one per architecture",
                arch.name(),
                other.display(),
                app.display()
            );
        }
        arches.push((arch, app));
        push(app, arch.boot_file().to_string(), "EFI application")?;
    }
    for (src, dest) in &opts.extra_files {
        push(src, normalize_dest(dest)?, "file")?;
    }
    for t in &opts.tokenizers {
        push(t, normalize_dest(&format!("{MODELS_DIR}/{}", file_name_of(t, "tokenizer")?))?, "tokenizer")?;
    }
    for m in &opts.models {
        push(m, normalize_dest(&format!("{MODELS_DIR}/{}", file_name_of(m, "model")?))?, "model")?;
    }
    for c in composed {
        let len = c.parts.iter().try_fold(0u64, |a, p| a.checked_add(p.len())).unwrap_or(u64::MAX);
        if len > MAX_FAT_FILE_SIZE {
            bail!(
                "{} would be {} ({len} bytes), more than a FAT file can hold ({MAX_FAT_FILE_SIZE} bytes)",
                c.dest,
                format_size(len)
            );
        }
        let src = c
            .parts
            .iter()
            .find_map(|p| match p {
                Part::Range { path, .. } => Some(path.clone()),
                _ => None,
            })
            .unwrap_or_default();
        entries.push(Entry { src, parts: Some(c.parts.clone()), dest: normalize_dest(&c.dest)?, len });
    }
    // Checks the destinations against each other (FAT names ignore case).
    fat::clusters_needed(&specs(&entries), 512)?;
    Ok(entries)
}

fn specs(entries: &[Entry]) -> Vec<fat::FileSpec> {
    entries.iter().map(|e| fat::FileSpec { dest: e.dest.clone(), len: e.len }).collect()
}

/// The geometry of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    disk_size: u64,
    partition_size: u64,
    cluster: u32,
}

/// The largest cluster (512 B ..= 32 KiB) that leaves FAT32 enough clusters.
fn fat32_cluster_for(partition_size: u64) -> Option<u32> {
    [32768u32, 16384, 8192, 4096, 2048, 1024, 512]
        .into_iter()
        .find(|&c| partition_size / u64::from(c) >= FAT32_SAFE_CLUSTERS)
}

fn layout_for_partition(partition_size: u64, disk_size: u64) -> Result<Layout> {
    let cluster = fat32_cluster_for(partition_size).ok_or_else(|| {
        anyhow!(
            "an image of {} is too small for FAT32, which needs at least {}",
            format_size(disk_size),
            format_size(FAT32_MIN_IMAGE)
        )
    })?;
    fat::Geometry::new(partition_size, cluster)?;
    Ok(Layout { disk_size, partition_size, cluster })
}

/// The smallest image that holds everything, with headroom: 1% of the
/// contents, at least 8 MiB.
fn auto_layout(entries: &[Entry]) -> Result<Layout> {
    let files = specs(entries);
    let mut part = FAT32_MIN_PARTITION;
    for _ in 0..32 {
        let cluster = fat32_cluster_for(part).expect("at least FAT32's minimum");
        let (dirs, each) = fat::clusters_needed(&files, cluster)?;
        let data = (dirs + each.iter().sum::<u64>()) * u64::from(cluster);
        let headroom = (data / 100).max(8 << 20);
        let fats = 2 * (4 * (part / u64::from(cluster) + 2)).next_multiple_of(SECTOR_SIZE);
        let reserved = 64 << 10;
        let need = (data + headroom + fats + reserved).next_multiple_of(ALIGNMENT);
        if need <= part {
            return layout_for_partition(part, PARTITION_START + part + ALIGNMENT);
        }
        part = need;
    }
    Err(anyhow!(
        "could not settle on an image size for {} of contents",
        format_size(entries.iter().map(|e| e.len).sum())
    ))
}

/// The geometry of an image of `size` bytes (rounded up to whole sectors).
fn sized_layout(size: u64) -> Result<Layout> {
    // FAT32 stops at 2 TiB of sectors; anything near u64::MAX is refused here, before any arithmetic on it.
    const MAX_IMAGE: u64 = (u32::MAX as u64) * SECTOR_SIZE;
    if size > MAX_IMAGE {
        bail!("an image of {} ({size} bytes) is larger than FAT32 allows (2 TiB)", format_size(size));
    }
    let disk = size.div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
    if disk < FAT32_MIN_IMAGE {
        bail!(
            "an image of {} ({size} bytes) is too small: the GPT and a FAT32 EFI system partition \
             need at least {} ({} bytes)",
            format_size(size),
            format_size(FAT32_MIN_IMAGE),
            FAT32_MIN_IMAGE
        );
    }
    let part = (disk - PARTITION_START - GPT_BACKUP_BYTES) / ALIGNMENT * ALIGNMENT;
    if part / SECTOR_SIZE > u64::from(u32::MAX) {
        bail!("an image of {} is larger than FAT32 allows (2 TiB)", format_size(size));
    }
    layout_for_partition(part, disk)
}

/// Builds the image described by `opts`. `progress(file, done, total)` is
/// called as each file is copied: `file` is its path on the partition,
/// `done` and `total` are bytes of that file.
pub fn build_image(opts: &ImageOptions, progress: &mut dyn FnMut(&str, u64, u64)) -> Result<()> {
    build_image_with(opts, &[], progress)
}

/// [`build_image`] with files put together from pieces as well, copied
/// after the models (`lbm image` splits a model too large for one FAT32
/// file into shards this way).
pub fn build_image_with(
    opts: &ImageOptions,
    composed: &[ComposedFile],
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<()> {
    let entries = collect_entries(opts, composed)?;
    let output = &opts.output;
    check_output(output, &entries)?;

    let layout = match opts.size {
        Some(size) => sized_layout(size)?,
        None => auto_layout(&entries)?,
    };

    // A temporary file beside the output (symbolic links followed), renamed
    // over it at the end with the replaced file's permissions (the shared
    // `outfile` rules); removed on any error.
    let out = outfile::Output::create(output)?;
    write_image(out.file(), &layout, &entries, progress).with_context(|| format!("building {}", output.display()))?;
    out.commit()
}

/// Refuses an output that is a directory or a device, or one of the inputs.
fn check_output(output: &Path, entries: &[Entry]) -> Result<()> {
    if output.as_os_str().is_empty() {
        bail!("no output image path given");
    }
    match fs::metadata(output) {
        Ok(m) if m.is_dir() => bail!("output {} is a directory", output.display()),
        Ok(m) if !m.is_file() => bail!(
            "output {} is not a regular file: build the image as a file, then write it to a \
             device with dd (e.g. `sudo dd if=lbm.img of=/dev/sdX bs=4M conv=fsync status=progress`)",
            output.display()
        ),
        Ok(_) => {
            let out = fs::canonicalize(output)?;
            for e in entries {
                if fs::canonicalize(&e.src).ok().as_deref() == Some(out.as_path()) {
                    bail!("output {} is also an input file", output.display());
                }
            }
        }
        Err(_) => {}
    }
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!("the directory of the output, {}, does not exist", parent.display());
        }
    }
    Ok(())
}

fn write_image(
    file: &File,
    layout: &Layout,
    entries: &[Entry],
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<()> {
    let geometry = fat::Geometry::new(layout.partition_size, layout.cluster)?;
    let plan = match fat::plan(geometry, &specs(entries)) {
        Ok(plan) => plan,
        Err(e) => match e.downcast_ref::<fat::NoRoom>() {
            Some(no_room) => return Err(too_small(layout, entries, no_room)),
            None => return Err(e),
        },
    };
    file.set_len(layout.disk_size).context("cannot size the image file")?;
    write_gpt(file, layout)?;
    let mut open = |i: usize| -> Result<Box<dyn Read>> {
        if let Some(parts) = &entries[i].parts {
            return Ok(Box::new(PartsReader { parts: parts.clone().into_iter(), current: None }));
        }
        let src = &entries[i].src;
        Ok(Box::new(File::open(src).with_context(|| format!("cannot open {}", src.display()))?))
    };
    plan.write(file, PARTITION_START, volume_id(), &VOLUME_LABEL, &mut open, progress)
}

/// The error for contents that do not fit, naming the first file that does not.
fn too_small(layout: &Layout, entries: &[Entry], no_room: &fat::NoRoom) -> anyhow::Error {
    let cluster = u64::from(layout.cluster);
    let culprit = match no_room.file {
        Some(i) => {
            let e = &entries[i];
            format!("{} ({}, from {})", e.dest, format_size(e.len), e.src.display())
        }
        None => "the directories".to_string(),
    };
    let suggestion = auto_layout(entries)
        .map(|l| {
            format!(
                "; leave the size out to fit the contents (that makes {}), or give at least that",
                format_size(l.disk_size)
            )
        })
        .unwrap_or_default();
    anyhow!(
        "the image is too small for its contents: {culprit} does not fit. The files need {} \
         ({} clusters of {} bytes) but the {} image's FAT32 partition has {}{suggestion}",
        format_size(no_room.needed * cluster),
        no_room.needed,
        cluster,
        format_size(layout.disk_size),
        format_size(no_room.available * cluster)
    )
}

/// Protective MBR, primary and backup GPT with the one ESP.
fn write_gpt(file: &File, layout: &Layout) -> Result<()> {
    let lb = gpt::disk::LogicalBlockSize::Lb512;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .create_from_device(file, None)
        .context("cannot set up the GPT")?;
    let first_lba = PARTITION_START / SECTOR_SIZE;
    let lbas = layout.partition_size / SECTOR_SIZE;
    disk.add_partition_at("EFI System Partition", 1, first_lba, lbas, gpt::partition_types::EFI, 0).with_context(
        || {
            format!(
                "cannot place a {} partition at 1 MiB on a {} disk",
                format_size(layout.partition_size),
                format_size(layout.disk_size)
            )
        },
    )?;
    let mut device = disk.write().context("cannot write the GPT")?;
    let total_lbas = layout.disk_size / SECTOR_SIZE;
    let mbr_size = u32::try_from(total_lbas - 1).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(mbr_size)
        .overwrite_lba0(&mut device)
        .context("cannot write the protective MBR")?;
    Ok(())
}

/// A volume serial number that differs from image to image.
fn volume_id() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    h.write_u128(now.map(|d| d.as_nanos()).unwrap_or(0));
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// Builds `output` holding the UEFI application `efi` (its bytes) and
/// `files` (destination on the partition, contents), of `size` bytes or
/// fitted. The contents go through a temporary directory.
pub fn build_image_from_bytes(output: &Path, efi: &[u8], files: &[(&str, &[u8])], size: Option<u64>) -> Result<()> {
    let src =
        tempfile::Builder::new().prefix("lbm-image-src-").tempdir().context("cannot create a temporary directory")?;
    let efi_path = src.path().join("app.efi");
    fs::write(&efi_path, efi).with_context(|| format!("cannot write {}", efi_path.display()))?;
    let mut extra_files = Vec::new();
    for (i, (dest, bytes)) in files.iter().enumerate() {
        let p = src.path().join(format!("file{i}"));
        fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
        extra_files.push((p, dest.to_string()));
    }
    let opts =
        ImageOptions { output: output.to_path_buf(), efi: vec![efi_path], extra_files, size, ..Default::default() };
    build_image(&opts, &mut |_, _, _| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_paths() {
        assert_eq!(normalize_dest("/models\\a.gguf").unwrap(), "models/a.gguf");
        assert_eq!(normalize_dest("lbm.cfg").unwrap(), "lbm.cfg");
        assert!(normalize_dest("../x").is_err());
        assert!(normalize_dest("a/b?").is_err());
        assert!(normalize_dest("a.").is_err());
        assert!(normalize_dest("//").is_err());
    }

    #[test]
    fn cluster_choice() {
        assert_eq!(fat32_cluster_for(FAT32_MIN_PARTITION), Some(512));
        assert_eq!(fat32_cluster_for(FAT32_MIN_PARTITION - ALIGNMENT), None);
        assert_eq!(fat32_cluster_for(64 << 20), Some(512));
        assert_eq!(fat32_cluster_for(1 << 30), Some(8192));
        assert_eq!(fat32_cluster_for(8 << 30), Some(32768));
    }

    #[test]
    fn sized_layouts() {
        let l = sized_layout(64 << 20).unwrap();
        assert_eq!(l.disk_size, 64 << 20);
        assert_eq!(l.partition_size, 62 << 20);
        assert_eq!(l.cluster, 512);
        let l = sized_layout(FAT32_MIN_IMAGE).unwrap();
        assert_eq!(l.partition_size, FAT32_MIN_PARTITION);
        assert!(sized_layout(FAT32_MIN_IMAGE - 512).is_err());
        assert!(sized_layout(8 << 20).is_err());
    }
}
