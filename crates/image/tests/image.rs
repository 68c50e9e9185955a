//! `image`: images read back with the `gpt` and `fatfs` crates, sizes,
//! and the errors for bad inputs.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::{build_image, parse_size, ImageOptions};
use qemu::tiny_efi::{tiny_efi_app, Finish};

const MIB: u64 = 1 << 20;

/// Deterministic pseudo-random bytes, so a misplaced cluster shows.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Inputs {
    dir: tempfile::TempDir,
    efi: PathBuf,
}

impl Inputs {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let efi = dir.path().join("BOOTX64.EFI");
        fs::write(&efi, tiny_efi_app("test\r\n", Finish::Return)).unwrap();
        Inputs { dir, efi }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self, output: &str) -> ImageOptions {
        ImageOptions { output: self.path(output), efi: vec![self.efi.clone()], ..Default::default() }
    }
}

fn build(opts: &ImageOptions) -> anyhow::Result<()> {
    build_image(opts, &mut |_, _, _| {})
}

/// The ESP's bytes, as a FAT file system in memory.
fn open_fat(image: &Path) -> fatfs::FileSystem<Cursor<Vec<u8>>> {
    let disk = gpt::GptConfig::new().writable(false).open(image).unwrap();
    let part = &disk.partitions()[&1];
    let mut f = fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(part.first_lba * 512)).unwrap();
    let mut bytes = vec![0u8; ((part.last_lba - part.first_lba + 1) * 512) as usize];
    f.read_exact(&mut bytes).unwrap();
    fatfs::FileSystem::new(Cursor::new(bytes), fatfs::FsOptions::new()).unwrap()
}

fn read_fat_file(fs: &fatfs::FileSystem<Cursor<Vec<u8>>>, path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    fs.root_dir()
        .open_file(path)
        .unwrap_or_else(|e| panic!("{path} is not on the partition: {e}"))
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn names_in(fs: &fatfs::FileSystem<Cursor<Vec<u8>>>, dir: &str) -> Vec<String> {
    let d = if dir.is_empty() { fs.root_dir() } else { fs.root_dir().open_dir(dir).unwrap() };
    let mut names: Vec<String> = d.iter().map(|e| e.unwrap().file_name()).filter(|n| n != "." && n != "..").collect();
    names.sort();
    names
}

#[test]
fn image_layout_and_contents() {
    let inp = Inputs::new();
    let model_a = noise(9 * MIB as usize + 12345, 1); // three 4 MiB copy chunks
    let model_b = noise(700_001, 2);
    let tok = noise(4097, 3);
    let cfg = b"model=models/a.gguf\n".to_vec();
    let mut opts = inp.options("lbm.img");
    opts.models = vec![inp.file("a.gguf", &model_a), inp.file("b.bin", &model_b)];
    opts.tokenizers = vec![inp.file("tokenizer.model", &tok)];
    opts.extra_files =
        vec![(inp.file("cfg", &cfg), "lbm.cfg".into()), (inp.file("notes", b"hello"), "docs\\notes.txt".into())];

    let mut calls: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    build_image(&opts, &mut |f, done, total| calls.entry(f.to_string()).or_default().push((done, total))).unwrap();

    // Progress: every file reported from 0 to its size, in order.
    let a = &calls["models/a.gguf"];
    assert_eq!(a.first(), Some(&(0, model_a.len() as u64)));
    assert_eq!(a.last(), Some(&(model_a.len() as u64, model_a.len() as u64)));
    assert_eq!(a.len(), 1 + 3, "one call per 4 MiB chunk plus the start");
    assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(calls.len(), 6);

    // Size: fitted, whole MiB, at least FAT32's minimum; no temp files left.
    let len = fs::metadata(&opts.output).unwrap().len();
    assert_eq!(len % MIB, 0);
    assert!(len >= image::FAT32_MIN_IMAGE);
    let leftovers: Vec<_> = fs::read_dir(inp.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Protective MBR.
    let raw = fs::read(&opts.output).unwrap();
    let total_lba = len / 512;
    assert_eq!(&raw[510..512], &[0x55, 0xaa]);
    assert_eq!(raw[446 + 4], 0xee, "protective partition type");
    assert_eq!(u32::from_le_bytes(raw[446 + 8..446 + 12].try_into().unwrap()), 1);
    assert_eq!(u32::from_le_bytes(raw[446 + 12..446 + 16].try_into().unwrap()) as u64, total_lba - 1);
    for rec in 1..4 {
        assert!(raw[446 + 16 * rec..446 + 16 * rec + 16].iter().all(|&b| b == 0));
    }

    // GPT: both headers valid (the crate checks signatures and CRCs), the
    // backup at the last LBA, one aligned ESP.
    let disk = gpt::GptConfig::new().writable(false).only_valid_headers(true).open(&opts.output).unwrap();
    let primary = disk.primary_header().unwrap().clone();
    let backup = disk.backup_header().unwrap().clone();
    assert_eq!(primary.current_lba, 1);
    assert_eq!(primary.backup_lba, total_lba - 1);
    assert_eq!(backup.current_lba, total_lba - 1);
    assert_eq!(backup.backup_lba, 1);
    assert_eq!(primary.part_start, 2);
    assert_eq!(backup.part_start, total_lba - 33);
    assert_eq!(primary.num_parts, 128);
    assert_eq!(primary.crc32_parts, backup.crc32_parts);
    assert_eq!((primary.first_usable, primary.last_usable), (backup.first_usable, backup.last_usable));
    assert_eq!(primary.disk_guid, backup.disk_guid);
    let primary_entries = &raw[2 * 512..34 * 512];
    let backup_entries = &raw[(backup.part_start * 512) as usize..((backup.part_start + 32) * 512) as usize];
    assert_eq!(primary_entries, backup_entries);
    assert_eq!(&raw[512..520], b"EFI PART");
    assert_eq!(&raw[(len - 512) as usize..(len - 504) as usize], b"EFI PART");

    assert_eq!(disk.partitions().len(), 1);
    let part = &disk.partitions()[&1];
    assert_eq!(part.part_type_guid.guid.to_string().to_uppercase(), image::ESP_TYPE_GUID);
    assert_eq!(part.first_lba, 2048, "partition starts at 1 MiB");
    assert_eq!((part.last_lba + 1) % 2048, 0, "partition ends on a MiB boundary");
    assert!(part.last_lba <= primary.last_usable);
    assert_eq!(part.name, "EFI System Partition");

    // FAT32 with every file byte-identical.
    let fs = open_fat(&opts.output);
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    assert_eq!(read_fat_file(&fs, "EFI/BOOT/BOOTX64.EFI"), fs::read(&inp.efi).unwrap());
    assert_eq!(read_fat_file(&fs, "models/a.gguf"), model_a);
    assert_eq!(read_fat_file(&fs, "models/b.bin"), model_b);
    assert_eq!(read_fat_file(&fs, "models/tokenizer.model"), tok);
    assert_eq!(read_fat_file(&fs, "lbm.cfg"), cfg);
    assert_eq!(read_fat_file(&fs, "docs/notes.txt"), b"hello");
    assert_eq!(names_in(&fs, ""), ["EFI", "docs", "lbm.cfg", "models"]);
    assert_eq!(names_in(&fs, "EFI"), ["BOOT"]);
    assert_eq!(names_in(&fs, "models"), ["a.gguf", "b.bin", "tokenizer.model"]);
    let status = fs.read_status_flags().unwrap();
    assert!(!status.dirty() && !status.io_error(), "file system cleanly unmounted");

    // Every subdirectory starts with "." and ".." (no long-name entries in
    // front of them, which fsck.fat and strict FAT drivers reject).
    let bpb = &raw[(part.first_lba * 512) as usize..][..512];
    let spc = u64::from(bpb[13]);
    let reserved = u64::from(u16::from_le_bytes([bpb[14], bpb[15]]));
    let fat_sectors = u64::from(u32::from_le_bytes(bpb[36..40].try_into().unwrap()));
    assert_eq!(reserved, 32);
    let data = (part.first_lba + reserved + 2 * fat_sectors) * 512;
    let dir_entry = |dir: &[u8], name: &[u8; 11]| -> Option<u32> {
        dir.chunks(32).take_while(|e| e[0] != 0).find(|e| &e[..11] == name && e[11] != 0x0f).map(|e| {
            u32::from(u16::from_le_bytes([e[26], e[27]])) | u32::from(u16::from_le_bytes([e[20], e[21]])) << 16
        })
    };
    let cluster_bytes = |c: u32| &raw[(data + (u64::from(c) - 2) * spc * 512) as usize..][..(spc * 512) as usize];
    let root = cluster_bytes(2);
    let efi = dir_entry(root, b"EFI        ").expect("EFI has a plain 8.3 entry");
    let boot = dir_entry(cluster_bytes(efi), b"BOOT       ").expect("BOOT has a plain 8.3 entry");
    for (dir, parent) in [(efi, 0), (boot, efi)] {
        let d = cluster_bytes(dir);
        assert_eq!(&d[..11], b".          ");
        assert_eq!(&d[32..43], b"..         ");
        assert_eq!(dir_entry(d, b".          "), Some(dir));
        assert_eq!(dir_entry(d, b"..         "), Some(parent));
    }
    let bootx64 = cluster_bytes(boot);
    assert_eq!(&bootx64[64..75], b"BOOTX64 EFI", "the app's entry right after . and ..");
    // FSInfo: signatures and the free cluster count fatfs agrees with.
    let info = &raw[(part.first_lba * 512 + 512) as usize..][..512];
    assert_eq!(&info[..4], b"RRaA");
    assert_eq!(&info[484..488], b"rrAa");
    let free = u32::from_le_bytes(info[488..492].try_into().unwrap());
    let total_sectors = u64::from(u32::from_le_bytes(bpb[32..36].try_into().unwrap()));
    let clusters = (total_sectors - reserved - 2 * fat_sectors) / spc;
    let fat = &raw[((part.first_lba + reserved) * 512) as usize..][..((clusters + 2) * 4) as usize];
    let zero_entries = fat.chunks(4).skip(2).filter(|e| e == &[0, 0, 0, 0]).count();
    assert_eq!(free as usize, zero_entries);
    let second_fat = &raw[((part.first_lba + reserved + fat_sectors) * 512) as usize..][..fat.len()];
    assert_eq!(fat, second_fat, "the two FATs match");

    // The boot sector records the partition offset (hidden sectors).
    let bs = (part.first_lba * 512) as usize;
    assert_eq!(u32::from_le_bytes(raw[bs + 0x1c..bs + 0x20].try_into().unwrap()), 2048);
    assert_eq!(&raw[bs + 510..bs + 512], &[0x55, 0xaa]);
}

/// `fsck.fat` (dosfstools), when installed, finds nothing to fix.
#[test]
fn fsck_fat_finds_no_errors() {
    let Some(fsck) =
        ["/usr/sbin/fsck.fat", "/sbin/fsck.fat", "/usr/bin/fsck.fat"].into_iter().find(|p| Path::new(p).exists())
    else {
        eprintln!("SKIPPING fsck_fat_finds_no_errors: fsck.fat not installed (apt-get install dosfstools)");
        return;
    };
    let inp = Inputs::new();
    let mut opts = inp.options("fsck.img");
    opts.models = vec![inp.file("a-rather-long-model-name.Q4_K_M.gguf", &noise(300_000, 7))];
    opts.tokenizers = vec![inp.file("tokenizer.json", b"{}"), inp.file("tokenizer.jsonl", b"[]")];
    opts.extra_files = vec![(inp.file("cfg", b"x=1"), "lbm.cfg".into()), (inp.file("e", b""), "empty".into())];
    build(&opts).unwrap();
    let disk = gpt::GptConfig::new().open(&opts.output).unwrap();
    let part = &disk.partitions()[&1];
    let raw = fs::read(&opts.output).unwrap();
    let volume = inp.path("volume.bin");
    fs::write(&volume, &raw[(part.first_lba * 512) as usize..((part.last_lba + 1) * 512) as usize]).unwrap();
    let out = std::process::Command::new(fsck).arg("-n").arg("-v").arg(&volume).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fsck.fat -n failed:\n{text}");
    assert!(text.contains("FAT32") || text.contains("32 bit entries"), "{text}");
}

#[test]
fn explicit_sizes() {
    let inp = Inputs::new();
    let model = noise(3 * MIB as usize, 4);
    let mut opts = inp.options("sized.img");
    opts.models = vec![inp.file("m.gguf", &model)];

    opts.size = Some(parse_size("64M").unwrap());
    build(&opts).unwrap();
    assert_eq!(fs::metadata(&opts.output).unwrap().len(), 64 * MIB);
    let fs = open_fat(&opts.output);
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    assert_eq!(read_fat_file(&fs, "models/m.gguf"), model);
    drop(fs);

    // The smallest FAT32 image; anything smaller is refused.
    opts.size = Some(image::FAT32_MIN_IMAGE);
    build(&opts).unwrap();
    let fs = open_fat(&opts.output);
    assert_eq!(fs.fat_type(), fatfs::FatType::Fat32);
    assert_eq!(read_fat_file(&fs, "models/m.gguf"), model);
    drop(fs);
    opts.size = Some(16 * MIB);
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("too small") && err.contains("35.0 MiB"), "{err}");
    // A size past FAT32's 2 TiB, up to u64::MAX, is "too large", without overflowing.
    for size in [u64::MAX, u64::MAX - 511, 3 << 40] {
        opts.size = Some(size);
        let err = format!("{:#}", build(&opts).unwrap_err());
        assert!(err.contains("larger than FAT32 allows"), "{size}: {err}");
    }

    // Big images get 32 KiB clusters (checked in the boot sector: reading
    // the whole 3 GiB partition here would be slow; the file is sparse).
    opts.size = Some(parse_size("3G").unwrap());
    build(&opts).unwrap();
    let mut boot = [0u8; 512];
    let mut f = fs::File::open(&opts.output).unwrap();
    f.seek(SeekFrom::Start(MIB)).unwrap();
    f.read_exact(&mut boot).unwrap();
    assert_eq!(u16::from_le_bytes([boot[11], boot[12]]), 512, "bytes per sector");
    assert_eq!(boot[13], 64, "sectors per cluster");
    assert_eq!(&boot[82..90], b"FAT32   ");

    // A size that is not whole sectors is rounded up to them.
    opts.size = Some(40 * MIB + 100);
    build(&opts).unwrap();
    assert_eq!(fs::metadata(&opts.output).unwrap().len(), 40 * MIB + 512);
    gpt::GptConfig::new().only_valid_headers(true).open(&opts.output).unwrap();
}

#[test]
fn size_too_small_names_the_file_and_sizes() {
    let inp = Inputs::new();
    let mut opts = inp.options("small.img");
    opts.tokenizers = vec![inp.file("tok.json", &noise(1000, 5))];
    opts.models = vec![inp.file("big.gguf", &noise(50 * MIB as usize, 6))];
    opts.size = Some(40 * MIB);
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("too small"), "{err}");
    assert!(err.contains("models/big.gguf"), "{err}");
    assert!(err.contains("50.0 MiB"), "{err}");
    assert!(err.contains("40.0 MiB"), "{err}");
    assert!(err.contains("leave the size out"), "{err}");
    assert!(!opts.output.exists(), "no half-built image is left");
    let leftovers = fs::read_dir(inp.dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("partial"));
    assert_eq!(leftovers.count(), 0);

    opts.size = Some(MIB);
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("too small"), "{err}");

    // An existing image is left untouched by a failed build.
    fs::write(&opts.output, b"previous image").unwrap();
    opts.size = Some(40 * MIB);
    assert!(build(&opts).is_err());
    assert_eq!(fs::read(&opts.output).unwrap(), b"previous image");
}

#[test]
fn missing_and_bad_inputs() {
    let inp = Inputs::new();
    let mut opts = inp.options("x.img");
    opts.models = vec![inp.path("nope.gguf")];
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("model") && err.contains("nope.gguf") && err.contains("does not exist"), "{err}");

    let mut opts = inp.options("x.img");
    opts.efi = vec![inp.path("missing.efi")];
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("EFI application") && err.contains("missing.efi"), "{err}");

    let mut opts = inp.options("x.img");
    opts.efi = vec![inp.file("linux-binary", b"\x7fELF\x02\x01\x01 not a PE file")];
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("not an x86-64 or aarch64 UEFI application"), "{err}");

    let mut opts = inp.options("x.img");
    opts.efi = vec![];
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("no UEFI application"), "{err}");

    let mut opts = inp.options("x.img");
    opts.tokenizers = vec![inp.dir.path().to_path_buf()];
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("not a regular file"), "{err}");

    // Two files for one place (FAT ignores case).
    let mut opts = inp.options("x.img");
    opts.models = vec![inp.file("m.gguf", b"1")];
    opts.extra_files = vec![(inp.file("other", b"2"), "MODELS/M.GGUF".into())];
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("same place"), "{err}");

    let mut opts = inp.options("x.img");
    opts.extra_files = vec![(inp.file("cfg", b"x"), "../escape.cfg".into())];
    assert!(build(&opts).is_err());

    // Larger than FAT allows (a sparse file: no disk used).
    let huge = inp.path("huge.gguf");
    fs::File::create(&huge).unwrap().set_len(5 << 30).unwrap();
    let mut opts = inp.options("x.img");
    opts.models = vec![huge];
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(err.contains("huge.gguf") && err.contains("4 GiB"), "{err}");

    // Output problems.
    let mut opts = inp.options("x.img");
    opts.output = inp.dir.path().to_path_buf();
    assert!(format!("{:#}", build(&opts).unwrap_err()).contains("is a directory"));
    opts.output = inp.path("no/such/dir/x.img");
    assert!(format!("{:#}", build(&opts).unwrap_err()).contains("does not exist"));
    assert!(!inp.path("x.img").exists());
}

#[test]
fn parse_sizes() {
    assert_eq!(parse_size("64M").unwrap(), 64 << 20);
    assert_eq!(parse_size("2G").unwrap(), 2 << 30);
    assert_eq!(parse_size("1.5GiB").unwrap(), 1536 << 20);
    assert_eq!(parse_size("123456").unwrap(), 123456);
    assert_eq!(parse_size("512K").unwrap(), 512 << 10);
    assert_eq!(parse_size("1T").unwrap(), 1 << 40);
    assert_eq!(parse_size("100MB").unwrap(), 100_000_000);
    assert_eq!(parse_size(" 8 MiB ").unwrap(), 8 << 20);
    assert_eq!(parse_size("0.5m").unwrap(), 512 << 10);
    assert_eq!(parse_size("10b").unwrap(), 10);
    for bad in ["", "M", "abc", "-1G", "1..5G", "1.5.2G", "12X", "0.3", "1e9", "20000000000T"] {
        assert!(parse_size(bad).is_err(), "{bad:?} should not parse");
    }
}

#[cfg(unix)]
#[test]
fn an_image_replacing_a_file_keeps_its_mode_and_follows_links() {
    use std::os::unix::fs::PermissionsExt;
    let inp = Inputs::new();
    let mut opts = inp.options("kept.img");
    opts.models = vec![inp.file("m.gguf", &noise(1024, 9))];
    fs::write(&opts.output, b"old").unwrap();
    fs::set_permissions(&opts.output, fs::Permissions::from_mode(0o600)).unwrap();
    build(&opts).unwrap();
    let m = fs::metadata(&opts.output).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    assert!(m.len() > 3);
    // Through a symbolic link: the target gets the image, the link stays a link.
    let link = inp.path("link.img");
    std::os::unix::fs::symlink(&opts.output, &link).unwrap();
    fs::write(&opts.output, b"old").unwrap();
    opts.output = link.clone();
    build(&opts).unwrap();
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(fs::metadata(inp.path("kept.img")).unwrap().len() > 3);
    // No temporary file is left beside it.
    let left: Vec<_> = fs::read_dir(inp.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(left.is_empty());
}

/// The tiny x86-64 app with its PE machine type changed to aarch64 (0xaa64):
/// enough for the image writer, which only reads the header.
fn as_aarch64(mut app: Vec<u8>) -> Vec<u8> {
    let pe = u32::from_le_bytes(app[0x3c..0x40].try_into().unwrap()) as usize;
    app[pe + 4..pe + 6].copy_from_slice(&0xaa64u16.to_le_bytes());
    app
}

#[test]
fn each_architecture_gets_its_boot_file() {
    let inp = Inputs::new();
    let arm = inp.file("arm.efi", &as_aarch64(fs::read(&inp.efi).unwrap()));
    assert_eq!(image::efi_app_arch(&fs::read(&arm).unwrap()), Ok(image::EfiArch::Aarch64));
    assert_eq!(image::efi_app_arch(&fs::read(&inp.efi).unwrap()), Ok(image::EfiArch::X86_64));

    // Both on one image: each firmware starts its own.
    let mut opts = inp.options("both.img");
    opts.efi = vec![arm.clone(), inp.efi.clone()];
    build(&opts).unwrap();
    let fs_ = open_fat(&opts.output);
    assert_eq!(names_in(&fs_, "EFI/BOOT"), ["BOOTAA64.EFI", "BOOTX64.EFI"]);
    assert_eq!(read_fat_file(&fs_, "EFI/BOOT/BOOTAA64.EFI"), fs::read(&arm).unwrap());
    assert_eq!(read_fat_file(&fs_, "EFI/BOOT/BOOTX64.EFI"), fs::read(&inp.efi).unwrap());

    // aarch64 alone.
    let mut opts = inp.options("arm.img");
    opts.efi = vec![arm.clone()];
    build(&opts).unwrap();
    assert_eq!(names_in(&open_fat(&opts.output), "EFI/BOOT"), ["BOOTAA64.EFI"]);

    // Two of one architecture are refused, naming both.
    let arm2 = inp.file("arm2.efi", &as_aarch64(fs::read(&inp.efi).unwrap()));
    let mut opts = inp.options("two.img");
    opts.efi = vec![arm.clone(), arm2];
    let err = format!("{:#}", build(&opts).unwrap_err());
    assert!(
        err.contains("two aarch64 UEFI applications") && err.contains("arm.efi") && err.contains("arm2.efi"),
        "{err}"
    );
    assert!(!opts.output.exists());
}

#[test]
fn composed_files_are_written_from_their_parts() {
    use image::{build_image_with, ComposedFile, Part};
    let i = Inputs::new();
    let src = noise(3 * MIB as usize + 17, 5);
    let src_path = i.file("big.bin", &src);
    let parts = vec![
        Part::Bytes(b"HEAD".to_vec()),
        Part::Range { path: src_path.clone(), offset: 1000, len: 2 * MIB + 3 },
        Part::Zeros(29),
        Part::Range { path: src_path.clone(), offset: 7, len: 5 },
    ];
    let mut want = b"HEAD".to_vec();
    want.extend_from_slice(&src[1000..1000 + 2 * MIB as usize + 3]);
    want.extend_from_slice(&[0; 29]);
    want.extend_from_slice(&src[7..12]);
    let opts = i.options("c.img");
    let composed = [
        ComposedFile { dest: "models/a-00001-of-00002.gguf".into(), parts },
        ComposedFile { dest: "models/a-00002-of-00002.gguf".into(), parts: vec![Part::Zeros(0)] },
    ];
    let mut seen = Vec::new();
    build_image_with(&opts, &composed, &mut |f, done, total| {
        if done == total {
            seen.push((f.to_string(), total));
        }
    })
    .unwrap();
    assert!(seen.contains(&("models/a-00001-of-00002.gguf".into(), want.len() as u64)), "{seen:?}");
    let fs = open_fat(&opts.output);
    assert_eq!(read_fat_file(&fs, "models/a-00001-of-00002.gguf"), want);
    assert_eq!(read_fat_file(&fs, "models/a-00002-of-00002.gguf"), Vec::<u8>::new());

    // A range past the end of its source fails, naming the file.
    let short = [ComposedFile {
        dest: "models/s.gguf".into(),
        parts: vec![Part::Range { path: src_path.clone(), offset: src.len() as u64 - 4, len: 10 }],
    }];
    let e = format!("{:#}", build_image_with(&i.options("s.img"), &short, &mut |_, _, _| {}).unwrap_err());
    assert!(e.contains("models/s.gguf"), "{e}");
    assert!(!i.path("s.img").exists());
    // More than a FAT file holds is refused before anything is written.
    let huge = [ComposedFile {
        dest: "models/h.gguf".into(),
        parts: vec![Part::Zeros(image::MAX_FAT_FILE_SIZE), Part::Bytes(vec![1])],
    }];
    let e = format!("{:#}", build_image_with(&i.options("h.img"), &huge, &mut |_, _, _| {}).unwrap_err());
    assert!(e.contains("more than a FAT file can hold"), "{e}");
}
