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
//!                    EFI/BOOT/BOOTX64.EFI   the UEFI application
//!                    models/...             models and their tokenizers
//!                    ...                    extra files where asked
//! last 33 sectors  backup partition entry array and backup GPT header
//! ```
//!
//! The file system is FAT32 (what the UEFI specification asks of a system
//! partition) whenever the partition can hold it: 33 MiB and up, so every
//! image of at least 35 MiB. Only an explicitly smaller `size` gets FAT16 or
//! FAT12, which OVMF also boots. Clusters are the largest (up to 32 KiB) that
//! still leave FAT32 its minimum cluster count, so big models are written and
//! read in long contiguous runs.
//!
//! The image is written to a temporary file beside the output and renamed into
//! place at the end, so a failure never leaves a half-built image behind.

mod pe;
mod size;
mod window;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

pub use pe::efi_app_problem;
pub use size::{format_size, parse_size};

use window::Window;

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
/// Directory of the models and their tokenizers.
pub const MODELS_DIR: &str = "models";
/// Files are copied in chunks of this many bytes.
pub const COPY_CHUNK: usize = 4 << 20;
/// The largest file FAT can hold: 4 GiB - 1 byte.
pub const MAX_FAT_FILE_SIZE: u64 = u32::MAX as u64;
/// The smallest partition that gets FAT32 (65525 clusters of 512 bytes need 33 MiB).
pub const FAT32_MIN_PARTITION: u64 = 33 << 20;
/// The smallest image that gets FAT32.
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
    /// The UEFI application to install as `EFI/BOOT/BOOTX64.EFI`.
    pub efi: PathBuf,
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

/// One file to copy into the partition.
#[derive(Debug)]
struct Entry {
    src: PathBuf,
    /// Destination, `/` separated, no leading slash.
    dest: String,
    len: u64,
}

/// Directories of the partition, keyed by their upper-cased path ("" is the
/// root): FAT names compare without regard to case.
#[derive(Debug, Default)]
struct Tree {
    /// Upper-cased directory path -> (upper-cased child name -> child name).
    dirs: BTreeMap<String, BTreeMap<String, String>>,
    /// Upper-cased file paths -> the destination as given.
    files: BTreeMap<String, String>,
}

impl Tree {
    fn new() -> Self {
        let mut t = Tree::default();
        t.dirs.insert(String::new(), BTreeMap::new());
        t
    }

    fn add_file(&mut self, dest: &str) -> Result<()> {
        let upper = dest.to_uppercase();
        if let Some(prev) = self.files.get(&upper) {
            bail!(
                "two files would be written to the same place on the partition: {prev:?} and \
                 {dest:?} (FAT names ignore case)"
            );
        }
        if self.dirs.contains_key(&upper) {
            bail!("{dest:?} is needed as a directory on the partition and cannot also be a file");
        }
        let parts: Vec<&str> = dest.split('/').collect();
        let mut parent = String::new();
        for (i, name) in parts.iter().enumerate() {
            let path = if parent.is_empty() {
                name.to_string()
            } else {
                format!("{parent}/{name}")
            };
            let upper_path = path.to_uppercase();
            let is_last = i + 1 == parts.len();
            if !is_last && self.files.contains_key(&upper_path) {
                bail!("{path:?} is a file on the partition and cannot also be a directory for {dest:?}");
            }
            self.dirs
                .get_mut(&parent.to_uppercase())
                .expect("parent directory recorded first")
                .entry(name.to_uppercase())
                .or_insert_with(|| name.to_string());
            if !is_last {
                self.dirs.entry(upper_path).or_default();
            }
            parent = path;
        }
        self.files.insert(upper, dest.to_string());
        Ok(())
    }

    /// Directories other than the root, parents before children, in the
    /// spelling of their first use.
    fn subdirs(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk("", "", &mut out);
        out
    }

    fn walk(&self, upper: &str, path: &str, out: &mut Vec<String>) {
        if let Some(children) = self.dirs.get(upper) {
            for (child_upper, child) in children {
                let cu = if upper.is_empty() {
                    child_upper.clone()
                } else {
                    format!("{upper}/{child_upper}")
                };
                if self.dirs.contains_key(&cu) {
                    let cp = if path.is_empty() {
                        child.clone()
                    } else {
                        format!("{path}/{child}")
                    };
                    out.push(cp.clone());
                    self.walk(&cu, &cp, out);
                }
            }
        }
    }

    /// 32-byte directory entries a directory needs: a short entry plus
    /// long-name entries (13 UTF-16 units each) per child, plus "." and "..".
    fn dir_entries(&self, upper: &str) -> u64 {
        let children = &self.dirs[upper];
        let own = if upper.is_empty() { 0 } else { 2 };
        own + children
            .values()
            .map(|name| 1 + (name.encode_utf16().count() as u64).div_ceil(13))
            .sum::<u64>()
    }

    /// Clusters all the directories take. `root` says how to count the root
    /// directory's: all of them (planning a FAT32 volume), all but the first
    /// (a formatted FAT32 volume has it), or none (FAT12/16 keep the root in a
    /// fixed region).
    fn dir_clusters(&self, cluster: u64, root: RootDir) -> u64 {
        self.dirs
            .keys()
            .map(|d| {
                let n = (self.dir_entries(d) * 32).div_ceil(cluster).max(1);
                match (d.is_empty(), root) {
                    (false, _) | (true, RootDir::Planned) => n,
                    (true, RootDir::Allocated) => n - 1,
                    (true, RootDir::Fixed) => 0,
                }
            })
            .sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RootDir {
    Planned,
    Allocated,
    Fixed,
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
        if let Some(c) = p
            .chars()
            .find(|c| (*c as u32) < 0x20 || "\"*:<>?|".contains(*c))
        {
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
/// tokenizers, then models (largest last, so small files sit together).
fn collect_entries(opts: &ImageOptions) -> Result<(Vec<Entry>, Tree)> {
    let mut entries = Vec::new();
    let mut tree = Tree::new();
    let mut push = |src: &Path, dest: String, what: &str| -> Result<()> {
        let len = file_len(src, what)?;
        tree.add_file(&dest)?;
        entries.push(Entry {
            src: src.to_path_buf(),
            dest,
            len,
        });
        Ok(())
    };

    push(&opts.efi, BOOT_FILE.to_string(), "EFI application")?;
    for (src, dest) in &opts.extra_files {
        push(src, normalize_dest(dest)?, "file")?;
    }
    for t in &opts.tokenizers {
        push(
            t,
            normalize_dest(&format!("{MODELS_DIR}/{}", file_name_of(t, "tokenizer")?))?,
            "tokenizer",
        )?;
    }
    for m in &opts.models {
        push(
            m,
            normalize_dest(&format!("{MODELS_DIR}/{}", file_name_of(m, "model")?))?,
            "model",
        )?;
    }
    pe::check_efi_app(&opts.efi)?;
    Ok((entries, tree))
}

/// The geometry of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    disk_size: u64,
    partition_size: u64,
    /// FAT32 with this cluster size, or `None` to let the formatter pick
    /// FAT16/FAT12 for a partition too small for FAT32.
    fat32_cluster: Option<u32>,
}

/// The largest cluster (512 B ..= 32 KiB) that leaves FAT32 enough clusters.
fn fat32_cluster_for(partition_size: u64) -> Option<u32> {
    [32768u32, 16384, 8192, 4096, 2048, 1024, 512]
        .into_iter()
        .find(|&c| partition_size / u64::from(c) >= FAT32_SAFE_CLUSTERS)
}

fn layout_for_partition(partition_size: u64, disk_size: u64) -> Layout {
    Layout {
        disk_size,
        partition_size,
        fat32_cluster: fat32_cluster_for(partition_size),
    }
}

fn clusters_of(entries: &[Entry], cluster: u64) -> u64 {
    entries.iter().map(|e| e.len.div_ceil(cluster)).sum()
}

/// The smallest FAT32 image that holds everything, with headroom.
fn auto_layout(entries: &[Entry], tree: &Tree) -> Result<Layout> {
    let mut part = FAT32_MIN_PARTITION;
    for _ in 0..32 {
        let cluster = u64::from(fat32_cluster_for(part).expect("at least FAT32's minimum"));
        let data = (clusters_of(entries, cluster) + tree.dir_clusters(cluster, RootDir::Planned))
            * cluster;
        let headroom = (data / 100).max(8 << 20);
        let fats = 2 * (4 * (part / cluster + 2)).next_multiple_of(SECTOR_SIZE);
        let reserved = 64 << 10;
        let need = (data + headroom + fats + reserved).next_multiple_of(ALIGNMENT);
        if need <= part {
            let disk = PARTITION_START + part + ALIGNMENT;
            check_fat32_limit(part)?;
            return Ok(layout_for_partition(part, disk));
        }
        part = need;
    }
    Err(anyhow!(
        "could not settle on an image size for {} of contents",
        format_size(entries.iter().map(|e| e.len).sum())
    ))
}

fn check_fat32_limit(partition_size: u64) -> Result<()> {
    if partition_size / SECTOR_SIZE > u64::from(u32::MAX) {
        bail!(
            "a {} partition is larger than FAT32 allows (2 TiB)",
            format_size(partition_size)
        );
    }
    Ok(())
}

/// The geometry of an image of `size` bytes (rounded up to whole sectors).
fn sized_layout(size: u64) -> Result<Layout> {
    let disk = size.div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
    let min = PARTITION_START + ALIGNMENT + GPT_BACKUP_BYTES;
    if disk < min {
        bail!(
            "an image of {} ({size} bytes) is too small: the GPT structures and a 1 MiB-aligned \
             partition need at least {} ({min} bytes); FAT32 needs {}",
            format_size(size),
            format_size(min),
            format_size(FAT32_MIN_IMAGE)
        );
    }
    let part = (disk - PARTITION_START - GPT_BACKUP_BYTES) / ALIGNMENT * ALIGNMENT;
    check_fat32_limit(part)?;
    Ok(layout_for_partition(part, disk))
}

/// Builds the image described by `opts`. `progress(file, done, total)` is
/// called as each file is copied: `file` is its path on the partition,
/// `done` and `total` are bytes of that file.
pub fn build_image(opts: &ImageOptions, progress: &mut dyn FnMut(&str, u64, u64)) -> Result<()> {
    let (entries, tree) = collect_entries(opts)?;
    let output = &opts.output;
    check_output(output, &entries)?;

    let layout = match opts.size {
        Some(size) => sized_layout(size)?,
        None => auto_layout(&entries, &tree)?,
    };

    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = output
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("image");
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{base}."))
        .suffix(".partial")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;

    write_image(tmp.as_file(), &layout, &entries, &tree, progress)
        .with_context(|| format!("building {}", output.display()))?;

    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot flush {} to disk", tmp.path().display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set the permissions of {}", tmp.path().display()))?;
    }
    tmp.persist(output).map_err(|e| {
        anyhow!(
            "cannot move the finished image to {}: {}",
            output.display(),
            e.error
        )
    })?;
    Ok(())
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
            bail!(
                "the directory of the output, {}, does not exist",
                parent.display()
            );
        }
    }
    Ok(())
}

fn write_image(
    file: &File,
    layout: &Layout,
    entries: &[Entry],
    tree: &Tree,
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<()> {
    file.set_len(layout.disk_size)
        .context("cannot size the image file")?;
    write_gpt(file, layout)?;

    let part = Window::new(file, PARTITION_START, layout.partition_size);
    let mut fmt = fatfs::FormatVolumeOptions::new()
        .volume_label(VOLUME_LABEL)
        .volume_id(volume_id());
    if let Some(cluster) = layout.fat32_cluster {
        fmt = fmt
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(cluster);
    }
    fatfs::format_volume(part, fmt).with_context(|| {
        format!(
            "cannot format a FAT file system on a {} partition",
            format_size(layout.partition_size)
        )
    })?;

    let fs = fatfs::FileSystem::new(
        Window::new(file, PARTITION_START, layout.partition_size),
        fatfs::FsOptions::new(),
    )
    .context("cannot open the freshly formatted FAT file system")?;
    let fat32 = fs.fat_type() == fatfs::FatType::Fat32;
    if layout.fat32_cluster.is_some() && !fat32 {
        bail!(
            "internal error: expected FAT32, the formatter made {:?}",
            fs.fat_type()
        );
    }
    check_fits(&fs, layout, entries, tree)?;

    let root = fs.root_dir();
    for d in tree.subdirs() {
        root.create_dir(&d)
            .with_context(|| format!("cannot create directory {d} on the partition"))?;
    }
    let mut buf = vec![0u8; COPY_CHUNK];
    for e in entries {
        let mut out = root
            .create_file(&e.dest)
            .with_context(|| format!("cannot create {} on the partition", e.dest))?;
        copy_file(e, &mut out, &mut buf, progress)?;
        out.flush()
            .with_context(|| format!("cannot finish writing {}", e.dest))?;
    }
    drop(root);
    fs.unmount().context("cannot finish the FAT file system")?;
    set_hidden_sectors(file, fat32)?;
    Ok(())
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
    disk.add_partition_at(
        "EFI System Partition",
        1,
        first_lba,
        lbas,
        gpt::partition_types::EFI,
        0,
    )
    .with_context(|| {
        format!(
            "cannot place a {} partition at 1 MiB on a {} disk",
            format_size(layout.partition_size),
            format_size(layout.disk_size)
        )
    })?;
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

/// Checks the files fit in the free clusters, naming the first one that does not.
fn check_fits<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    layout: &Layout,
    entries: &[Entry],
    tree: &Tree,
) -> Result<()> {
    let stats = fs
        .stats()
        .context("cannot read the free space of the new file system")?;
    let cluster = u64::from(stats.cluster_size());
    let free = u64::from(stats.free_clusters());
    let fat = fat_name(fs.fat_type());
    if fs.fat_type() != fatfs::FatType::Fat32 {
        // FAT12/16 keep the root directory in a fixed region of 512 entries.
        let root_entries = tree.dir_entries("");
        if root_entries > 512 {
            bail!("too many files in the root directory for a {fat} file system ({root_entries} entries of 512)");
        }
    }
    let root = if fs.fat_type() == fatfs::FatType::Fat32 {
        RootDir::Allocated
    } else {
        RootDir::Fixed
    };
    let dirs = tree.dir_clusters(cluster, root);
    let total = clusters_of(entries, cluster) + dirs;
    if total <= free {
        return Ok(());
    }
    let mut used = dirs;
    let culprit = entries
        .iter()
        .find(|e| {
            used += e.len.div_ceil(cluster);
            used > free
        })
        .map(|e| {
            format!(
                "{} ({}, from {})",
                e.dest,
                format_size(e.len),
                e.src.display()
            )
        })
        .unwrap_or_else(|| "the directories".to_string());
    let suggestion = auto_layout(entries, tree)
        .ok()
        .map(|l| {
            format!(
                "; leave the size out to fit the contents (that makes {}), or give at least that",
                format_size(l.disk_size)
            )
        })
        .unwrap_or_default();
    bail!(
        "the image is too small for its contents: {culprit} does not fit. The files need {} \
         ({} clusters of {} bytes) but the {} image's {fat} partition has {} free{suggestion}",
        format_size(total * cluster),
        total,
        cluster,
        format_size(layout.disk_size),
        format_size(free * cluster)
    )
}

fn fat_name(t: fatfs::FatType) -> &'static str {
    match t {
        fatfs::FatType::Fat12 => "FAT12",
        fatfs::FatType::Fat16 => "FAT16",
        fatfs::FatType::Fat32 => "FAT32",
    }
}

fn copy_file<W: Write>(
    e: &Entry,
    out: &mut W,
    buf: &mut [u8],
    progress: &mut dyn FnMut(&str, u64, u64),
) -> Result<()> {
    let mut src = File::open(&e.src).with_context(|| format!("cannot open {}", e.src.display()))?;
    let mut done = 0u64;
    progress(&e.dest, 0, e.len);
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match src.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot read {}", e.src.display()))
                }
            }
        }
        if filled == 0 {
            break;
        }
        if done + filled as u64 > e.len {
            bail!(
                "{} grew while it was being copied (expected {} bytes)",
                e.src.display(),
                e.len
            );
        }
        out.write_all(&buf[..filled])
            .with_context(|| format!("cannot write {} into the image", e.dest))?;
        done += filled as u64;
        progress(&e.dest, done, e.len);
    }
    if done != e.len {
        bail!(
            "{} shrank while it was being copied ({done} of {} bytes)",
            e.src.display(),
            e.len
        );
    }
    Ok(())
}

/// Records the partition's start LBA in the FAT boot sector (and its FAT32
/// backup), as `mkfs.fat` does: firmware ignores the field, some systems
/// check it.
fn set_hidden_sectors(file: &File, fat32: bool) -> Result<()> {
    let value = ((PARTITION_START / SECTOR_SIZE) as u32).to_le_bytes();
    let mut sectors = vec![0u64];
    if fat32 {
        sectors.push(6);
    }
    for s in sectors {
        let mut w = Window::new(file, PARTITION_START + s * SECTOR_SIZE, SECTOR_SIZE);
        io::Seek::seek(&mut w, io::SeekFrom::Start(0x1c))?;
        w.write_all(&value)
            .context("cannot update the FAT boot sector")?;
    }
    Ok(())
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
    fn tree_conflicts() {
        let mut t = Tree::new();
        t.add_file("EFI/BOOT/BOOTX64.EFI").unwrap();
        t.add_file("models/a.gguf").unwrap();
        assert!(t.add_file("Models/A.GGUF").is_err());
        assert!(t.add_file("models").is_err());
        assert!(t.add_file("models/a.gguf/x").is_err());
        t.add_file("Models/b.bin").unwrap();
        assert_eq!(t.subdirs(), vec!["EFI", "EFI/BOOT", "models"]);
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
        assert_eq!(l.fat32_cluster, Some(512));
        let l = sized_layout(8 << 20).unwrap();
        assert_eq!(l.partition_size, 6 << 20);
        assert_eq!(l.fat32_cluster, None);
        assert!(sized_layout(1 << 20).is_err());
    }
}
