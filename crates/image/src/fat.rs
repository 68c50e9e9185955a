//! A FAT32 writer for a file system whose whole contents are known up front.
//!
//! Everything is laid out contiguously: the root directory at cluster 2, the
//! other directories after it (parents first), then each file in one run of
//! clusters. The result follows Microsoft's FAT specification the way
//! `mkfs.fat` + `mcopy` do: 32 reserved sectors with the boot sector and
//! FSInfo (and their backups at sectors 6 and 7), two FATs, `.` and `..` as
//! the first two entries of every subdirectory, plain 8.3 entries for names
//! that are already upper-case 8.3 (`EFI`, `BOOT`, `BOOTX64.EFI`), and
//! long-name entries (with a matching `~N` or case-folded short name) for the
//! others.
//!
//! The `fatfs` crate was the first choice, but its 0.3 release writes
//! long-name entries in front of `.` and `..`, which `fsck.fat` reports as
//! corruption; firmware FAT drivers other than OVMF's may be as strict.

use std::fs::File;
use std::io::{self, Read};

use anyhow::{bail, Context, Result};

use super::pio::write_all_at;

pub const SECTOR: u64 = 512;
/// Reserved sectors before the first FAT (as Microsoft's format uses).
const RESERVED_SECTORS: u32 = 32;
const FSINFO_SECTOR: u32 = 1;
const BACKUP_BOOT_SECTOR: u32 = 6;
const NUM_FATS: u32 = 2;
/// Fewest clusters a FAT32 volume may have (fewer make it FAT16).
pub const FAT32_MIN_CLUSTERS: u32 = 65525;
/// Most clusters a FAT32 volume may have.
const FAT32_MAX_CLUSTERS: u32 = 0x0FFF_FFF5 - 2;
const END_OF_CHAIN: u32 = 0x0FFF_FFFF;
const ATTR_READ_ONLY_ARCHIVE: u8 = 0x20;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_LONG_NAME: u8 = 0x0F;
/// Entries a directory may hold (the specification's limit: 2 MiB of them).
const MAX_DIR_ENTRIES: u64 = 65536;

/// Sizes of a FAT32 volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub total_sectors: u32,
    pub cluster_size: u32,
    pub fat_sectors: u32,
    /// Data clusters (numbered from 2).
    pub clusters: u32,
}

impl Geometry {
    /// The geometry of a FAT32 volume of `bytes` with `cluster_size`-byte
    /// clusters, or an error if that would not be a valid FAT32 volume.
    pub fn new(bytes: u64, cluster_size: u32) -> Result<Geometry> {
        let total = bytes / SECTOR;
        if total > u64::from(u32::MAX) {
            bail!("a FAT32 volume can have at most 2^32 - 1 sectors (2 TiB)");
        }
        let total = total as u32;
        let spc = cluster_size / SECTOR as u32;
        if spc == 0 || !spc.is_power_of_two() || spc > 128 {
            bail!("bad FAT32 cluster size {cluster_size}");
        }
        let overhead = |fat: u32| RESERVED_SECTORS + NUM_FATS * fat;
        let mut fat = 1u32;
        loop {
            if overhead(fat) >= total {
                bail!("a {}-byte volume is too small for FAT32", bytes);
            }
            let clusters = (total - overhead(fat)) / spc;
            let need = ((u64::from(clusters) + 2) * 4).div_ceil(SECTOR) as u32;
            if need <= fat {
                break;
            }
            fat = need;
        }
        let clusters = (total - overhead(fat)) / spc;
        if clusters < FAT32_MIN_CLUSTERS {
            bail!(
                "a {}-byte volume with {cluster_size}-byte clusters has {clusters} clusters, \
                 fewer than FAT32's minimum of {FAT32_MIN_CLUSTERS}",
                bytes
            );
        }
        if clusters > FAT32_MAX_CLUSTERS {
            bail!("too many clusters for FAT32 ({clusters})");
        }
        Ok(Geometry { total_sectors: total, cluster_size, fat_sectors: fat, clusters })
    }

    fn data_start(&self) -> u64 {
        u64::from(RESERVED_SECTORS + NUM_FATS * self.fat_sectors) * SECTOR
    }

    /// Byte offset, in the volume, of cluster `c`.
    fn cluster_offset(&self, c: u32) -> u64 {
        self.data_start() + u64::from(c - 2) * u64::from(self.cluster_size)
    }
}

/// A file to store: where on the volume (`/`-separated) and how big.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub dest: String,
    pub len: u64,
}

#[derive(Debug)]
enum Kind {
    Dir(usize),
    File(usize),
}

#[derive(Debug)]
struct Child {
    name: String,
    short: [u8; 11],
    long: bool,
    kind: Kind,
}

#[derive(Debug, Default)]
struct Dir {
    parent: usize,
    children: Vec<Child>,
    first_cluster: u32,
    clusters: u32,
}

/// Where everything goes.
#[derive(Debug)]
pub struct Plan {
    pub geometry: Geometry,
    dirs: Vec<Dir>,
    /// First cluster of each file (0 for an empty file), in `files` order.
    file_clusters: Vec<u32>,
    files: Vec<FileSpec>,
    /// First unused cluster.
    next_free: u32,
}

/// Clusters the files and directories need on a volume with `cluster_size`:
/// (directories, each file).
pub fn clusters_needed(files: &[FileSpec], cluster_size: u32) -> Result<(u64, Vec<u64>)> {
    let dirs = build_tree(files)?;
    let cs = u64::from(cluster_size);
    let dir_total = dirs.iter().enumerate().map(|(i, d)| dir_clusters(d, i == 0, cs)).sum::<u64>();
    Ok((dir_total, files.iter().map(|f| f.len.div_ceil(cs)).collect()))
}

fn dir_entries(dir: &Dir, is_root: bool) -> u64 {
    let own = if is_root { 1 } else { 2 }; // volume label, or "." and ".."
    own + dir.children.iter().map(|c| 1 + if c.long { lfn_entries(&c.name) as u64 } else { 0 }).sum::<u64>()
}

fn dir_clusters(dir: &Dir, is_root: bool, cluster_size: u64) -> u64 {
    (dir_entries(dir, is_root) * 32).div_ceil(cluster_size).max(1)
}

/// Lays out `files` (destinations already checked for conflicts and FAT
/// validity) on a volume of `geometry`; fails if they do not fit, naming the
/// first file that does not.
pub fn plan(geometry: Geometry, files: &[FileSpec]) -> Result<Plan> {
    let mut dirs = build_tree(files)?;
    let cs = u64::from(geometry.cluster_size);
    let limit = u64::from(geometry.clusters) + 2;
    let mut next: u64 = 2;
    for (i, d) in dirs.iter_mut().enumerate() {
        let n = dir_clusters(d, i == 0, cs);
        if dir_entries(d, i == 0) > MAX_DIR_ENTRIES {
            bail!("a directory holds too many files for FAT");
        }
        d.first_cluster = next as u32;
        d.clusters = n as u32;
        next += n;
    }
    if next > limit {
        bail!(NoRoom { file: None, needed: next - 2, available: u64::from(geometry.clusters) });
    }
    let mut file_clusters = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let n = f.len.div_ceil(cs);
        if n == 0 {
            file_clusters.push(0);
            continue;
        }
        if next + n > limit {
            let needed = next - 2 + files[i..].iter().map(|f| f.len.div_ceil(cs)).sum::<u64>();
            bail!(NoRoom { file: Some(i), needed, available: u64::from(geometry.clusters) });
        }
        file_clusters.push(next as u32);
        next += n;
    }
    Ok(Plan { geometry, dirs, file_clusters, files: files.to_vec(), next_free: next as u32 })
}

/// The files do not fit: `file` (index) is the first that does not, or
/// `None` if even the directories do not; sizes in clusters.
#[derive(Debug, Clone, Copy)]
pub struct NoRoom {
    pub file: Option<usize>,
    pub needed: u64,
    pub available: u64,
}

impl std::fmt::Display for NoRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} clusters needed, {} available", self.needed, self.available)
    }
}

impl std::error::Error for NoRoom {}

fn build_tree(files: &[FileSpec]) -> Result<Vec<Dir>> {
    let mut dirs = vec![Dir::default()];
    for (fi, f) in files.iter().enumerate() {
        let parts: Vec<&str> = f.dest.split('/').collect();
        let mut cur = 0usize;
        for (pi, part) in parts.iter().enumerate() {
            let last = pi + 1 == parts.len();
            let existing = dirs[cur].children.iter().position(|c| c.name.to_uppercase() == part.to_uppercase());
            match (existing, last) {
                (Some(ci), false) => match dirs[cur].children[ci].kind {
                    Kind::Dir(d) => cur = d,
                    Kind::File(_) => {
                        bail!("{part:?} is a file on the partition and cannot also be a directory for {:?}", f.dest)
                    }
                },
                (Some(ci), true) => bail!(
                    "two files would be written to the same place on the partition, {:?}{}",
                    f.dest,
                    if dirs[cur].children[ci].name == *part { "" } else { " (FAT names ignore case)" }
                ),
                (None, _) => {
                    let kind = if last {
                        Kind::File(fi)
                    } else {
                        dirs.push(Dir { parent: cur, ..Dir::default() });
                        Kind::Dir(dirs.len() - 1)
                    };
                    let taken: Vec<[u8; 11]> = dirs[cur].children.iter().map(|c| c.short).collect();
                    let (short, long) = short_name(part, &taken);
                    let next_cur = match kind {
                        Kind::Dir(d) => Some(d),
                        Kind::File(_) => None,
                    };
                    dirs[cur].children.push(Child { name: part.to_string(), short, long, kind });
                    if let Some(d) = next_cur {
                        cur = d;
                    }
                }
            }
        }
    }
    Ok(dirs)
}

fn is_short_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'()-@^_`{}~".contains(&b)
}

/// The 8.3 form of `name` if it has one as it is written upper-cased.
fn as_83(name: &str) -> Option<[u8; 11]> {
    let upper = name.to_ascii_uppercase();
    let (base, ext) = match upper.rsplit_once('.') {
        Some((b, e)) => (b, e),
        None => (upper.as_str(), ""),
    };
    if base.is_empty() || base.len() > 8 || ext.len() > 3 || (upper.contains('.') && ext.is_empty()) {
        return None;
    }
    if !base.bytes().chain(ext.bytes()).all(is_short_char) {
        return None;
    }
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(out)
}

/// The short name for `name` in a directory whose children already use
/// `taken`, and whether `name` needs long-name entries.
fn short_name(name: &str, taken: &[[u8; 11]]) -> ([u8; 11], bool) {
    if let Some(s) = as_83(name) {
        if !taken.contains(&s) {
            return (s, name != name.to_ascii_uppercase() || !name.is_ascii());
        }
    }
    // A "BASIS~N.EXT" name, as Windows makes them.
    let clean = |s: &str| -> Vec<u8> {
        s.chars()
            .filter(|c| *c != ' ' && *c != '.')
            .map(|c| {
                let u = c.to_ascii_uppercase();
                if u.is_ascii() && is_short_char(u as u8) {
                    u as u8
                } else {
                    b'_'
                }
            })
            .collect()
    };
    let trimmed = name.trim_start_matches('.');
    let (base, ext) = match trimmed.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (clean(b), clean(e)),
        _ => (clean(trimmed), Vec::new()),
    };
    let base = if base.is_empty() { b"_".to_vec() } else { base };
    let ext: Vec<u8> = ext.into_iter().take(3).collect();
    for n in 1u32.. {
        let tail = format!("~{n}");
        let keep = (8 - tail.len()).min(base.len());
        let mut s = [b' '; 11];
        s[..keep].copy_from_slice(&base[..keep]);
        s[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
        s[8..8 + ext.len()].copy_from_slice(&ext);
        if !taken.contains(&s) {
            return (s, true);
        }
    }
    unreachable!("some numeric tail is free")
}

fn lfn_entries(name: &str) -> usize {
    name.encode_utf16().count().div_ceil(13)
}

fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short.iter().fold(0u8, |sum, &b| (sum >> 1 | (sum & 1) << 7).wrapping_add(b))
}

/// DOS date and time of now (UTC).
fn dos_now() -> (u16, u16) {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = year.clamp(1980, 2107);
    let date = ((year - 1980) as u16) << 9 | (month as u16) << 5 | day as u16;
    let time = ((rem / 3600) as u16) << 11 | ((rem / 60 % 60) as u16) << 5 | (rem % 60 / 2) as u16;
    (date, time)
}

fn short_entry(name: &[u8; 11], attr: u8, cluster: u32, size: u32, stamp: (u16, u16)) -> [u8; 32] {
    let (date, time) = stamp;
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(name);
    e[11] = attr;
    e[14..16].copy_from_slice(&time.to_le_bytes());
    e[16..18].copy_from_slice(&date.to_le_bytes());
    e[18..20].copy_from_slice(&date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&time.to_le_bytes());
    e[24..26].copy_from_slice(&date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// Long-name entries for `name`, in on-disk order (last piece first).
fn long_entries(name: &str, short: &[u8; 11]) -> Vec<[u8; 32]> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let n = units.len().div_ceil(13);
    let sum = lfn_checksum(short);
    let mut out = Vec::with_capacity(n);
    for i in (0..n).rev() {
        let mut chars = [0xFFFFu16; 13];
        for (j, slot) in chars.iter_mut().enumerate() {
            let k = i * 13 + j;
            if k < units.len() {
                *slot = units[k];
            } else if k == units.len() {
                *slot = 0;
            }
        }
        let mut e = [0u8; 32];
        e[0] = (i as u8 + 1) | if i == n - 1 { 0x40 } else { 0 };
        e[11] = ATTR_LONG_NAME;
        e[13] = sum;
        let spots = (1..11).step_by(2).chain((14..26).step_by(2)).chain((28..32).step_by(2));
        for (c, at) in chars.iter().zip(spots) {
            e[at..at + 2].copy_from_slice(&c.to_le_bytes());
        }
        out.push(e);
    }
    out
}

fn boot_sector(g: &Geometry, volume_id: u32, label: &[u8; 11], hidden_sectors: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    b[3..11].copy_from_slice(b"MSWIN4.1");
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = (g.cluster_size / SECTOR as u32) as u8;
    b[14..16].copy_from_slice(&(RESERVED_SECTORS as u16).to_le_bytes());
    b[16] = NUM_FATS as u8;
    b[21] = 0xF8; // fixed disk
    b[24..26].copy_from_slice(&63u16.to_le_bytes()); // sectors per track
    b[26..28].copy_from_slice(&255u16.to_le_bytes()); // heads
    b[28..32].copy_from_slice(&hidden_sectors.to_le_bytes());
    b[32..36].copy_from_slice(&g.total_sectors.to_le_bytes());
    b[36..40].copy_from_slice(&g.fat_sectors.to_le_bytes());
    b[44..48].copy_from_slice(&2u32.to_le_bytes()); // root directory cluster
    b[48..50].copy_from_slice(&(FSINFO_SECTOR as u16).to_le_bytes());
    b[50..52].copy_from_slice(&(BACKUP_BOOT_SECTOR as u16).to_le_bytes());
    b[64] = 0x80; // drive number
    b[66] = 0x29; // extended boot signature
    b[67..71].copy_from_slice(&volume_id.to_le_bytes());
    b[71..82].copy_from_slice(label);
    b[82..90].copy_from_slice(b"FAT32   ");
    b[90..94].copy_from_slice(&[0xFA, 0xF4, 0xEB, 0xFD]); // not bootable by BIOS: cli; hlt; jmp hlt
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

fn fsinfo_sector(free: u32, next_free: u32) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    s[488..492].copy_from_slice(&free.to_le_bytes());
    s[492..496].copy_from_slice(&next_free.to_le_bytes());
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    s
}

impl Plan {
    fn dir_bytes(&self, i: usize, label: &[u8; 11], stamp: (u16, u16)) -> Vec<u8> {
        let d = &self.dirs[i];
        let mut out = Vec::with_capacity(d.clusters as usize * self.geometry.cluster_size as usize);
        if i == 0 {
            out.extend(short_entry(label, ATTR_VOLUME_ID, 0, 0, stamp));
        } else {
            let parent = if d.parent == 0 { 0 } else { self.dirs[d.parent].first_cluster };
            out.extend(short_entry(b".          ", ATTR_DIRECTORY, d.first_cluster, 0, stamp));
            out.extend(short_entry(b"..         ", ATTR_DIRECTORY, parent, 0, stamp));
        }
        for c in &d.children {
            if c.long {
                for e in long_entries(&c.name, &c.short) {
                    out.extend(e);
                }
            }
            let e = match c.kind {
                Kind::Dir(sub) => short_entry(&c.short, ATTR_DIRECTORY, self.dirs[sub].first_cluster, 0, stamp),
                Kind::File(f) => short_entry(
                    &c.short,
                    ATTR_READ_ONLY_ARCHIVE,
                    self.file_clusters[f],
                    self.files[f].len as u32,
                    stamp,
                ),
            };
            out.extend(e);
        }
        out.resize(d.clusters as usize * self.geometry.cluster_size as usize, 0);
        out
    }

    fn fat(&self) -> Vec<u32> {
        let mut fat = vec![0u32; self.next_free as usize];
        fat[0] = 0x0FFF_FF00 | 0xF8;
        fat[1] = END_OF_CHAIN;
        let cs = u64::from(self.geometry.cluster_size);
        let chains = self
            .dirs
            .iter()
            .map(|d| (d.first_cluster, d.clusters))
            .chain(self.files.iter().zip(&self.file_clusters).map(|(f, &c)| (c, f.len.div_ceil(cs) as u32)));
        for (start, n) in chains.filter(|&(_, n)| n > 0) {
            for c in start..start + n - 1 {
                fat[c as usize] = c + 1;
            }
            fat[(start + n - 1) as usize] = END_OF_CHAIN;
        }
        fat
    }

    /// Writes the volume into `file` at byte `offset` (the region must read
    /// as zeros: a freshly sized file). Sources are opened by the caller:
    /// `open(i)` gives a reader for file `i`.
    pub fn write(
        &self,
        file: &File,
        offset: u64,
        volume_id: u32,
        label: &[u8; 11],
        open: &mut dyn FnMut(usize) -> Result<Box<dyn Read>>,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<()> {
        let g = &self.geometry;
        let hidden = (offset / SECTOR) as u32;
        let boot = boot_sector(g, volume_id, label, hidden);
        let free = g.clusters - (self.next_free - 2);
        let info = fsinfo_sector(free, self.next_free);
        for (sector, bytes) in
            [(0, &boot), (FSINFO_SECTOR, &info), (BACKUP_BOOT_SECTOR, &boot), (BACKUP_BOOT_SECTOR + 1, &info)]
        {
            write_all_at(file, bytes, offset + u64::from(sector) * SECTOR)?;
        }
        let fat: Vec<u8> = self.fat().iter().flat_map(|e| e.to_le_bytes()).collect();
        for copy in 0..NUM_FATS {
            let at = u64::from(RESERVED_SECTORS + copy * g.fat_sectors) * SECTOR;
            write_all_at(file, &fat, offset + at).context("cannot write the FAT")?;
        }
        let stamp = dos_now();
        for (i, d) in self.dirs.iter().enumerate() {
            let bytes = self.dir_bytes(i, label, stamp);
            write_all_at(file, &bytes, offset + g.cluster_offset(d.first_cluster))
                .context("cannot write a directory")?;
        }
        let mut buf = vec![0u8; super::COPY_CHUNK];
        for (i, f) in self.files.iter().enumerate() {
            let mut src = open(i)?;
            let mut at = if f.len == 0 { 0 } else { offset + g.cluster_offset(self.file_clusters[i]) };
            let mut done = 0u64;
            progress(&f.dest, 0, f.len);
            while done < f.len {
                let want = (f.len - done).min(buf.len() as u64) as usize;
                read_full(&mut src, &mut buf[..want]).with_context(|| format!("reading the source of {}", f.dest))?;
                write_all_at(file, &buf[..want], at)
                    .with_context(|| format!("cannot write {} into the image", f.dest))?;
                done += want as u64;
                at += want as u64;
                progress(&f.dest, done, f.len);
            }
            let mut probe = [0u8; 1];
            if src.read(&mut probe)? != 0 {
                bail!("the source of {} grew while it was being copied (expected {} bytes)", f.dest, f.len);
            }
        }
        Ok(())
    }
}

fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => bail!("the file shrank while it was being copied"),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        let g = Geometry::new(33 << 20, 512).unwrap();
        assert!(g.clusters >= FAT32_MIN_CLUSTERS);
        assert!((u64::from(g.clusters) + 2) * 4 <= u64::from(g.fat_sectors) * SECTOR);
        assert!(g.data_start() + u64::from(g.clusters) * 512 <= 33 << 20);
        assert!(Geometry::new(32 << 20, 512).is_err());
        let g = Geometry::new(3 << 30, 32768).unwrap();
        assert_eq!(g.cluster_size, 32768);
    }

    #[test]
    fn short_names() {
        assert_eq!(short_name("BOOTX64.EFI", &[]), (*b"BOOTX64 EFI", false));
        assert_eq!(short_name("EFI", &[]), (*b"EFI        ", false));
        assert_eq!(short_name("lbm.cfg", &[]), (*b"LBM     CFG", true));
        assert_eq!(short_name("tokenizer.json", &[]), (*b"TOKENI~1JSO", true));
        let taken = [*b"TOKENI~1JSO"];
        assert_eq!(short_name("tokenizer.jsonl", &taken), (*b"TOKENI~2JSO", true));
        assert_eq!(short_name("Models", &[]), (*b"MODELS     ", true));
        assert_eq!(short_name("a b.c.d", &[]), (*b"ABC~1   D  ", true));
        assert_eq!(short_name(".hidden", &[]), (*b"HIDDEN~1   ", true));
    }

    #[test]
    fn long_name_entries() {
        let short = *b"TOKENI~1JSO";
        let e = long_entries("tokenizer.json", &short);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][0], 0x42);
        assert_eq!(e[1][0], 0x01);
        assert_eq!(e[1][1], b't');
        // "tokenizer.json" is 14 units: the second piece holds "n", NUL, then 0xFFFF.
        assert_eq!(&e[0][1..7], &[b'n', 0, 0, 0, 0xFF, 0xFF]);
        assert!(e.iter().all(|x| x[11] == ATTR_LONG_NAME && x[13] == lfn_checksum(&short)));
    }
}
