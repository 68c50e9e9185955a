//! `cargo xtask census`: an instruction census of the built `.efi`.
//!
//! A UEFI build that silently fell back to soft-float has no scalar SSE float
//! instructions (f32 arithmetic becomes library calls), and one whose SIMD
//! kernels were not compiled for AVX2/FMA has no `vfmadd*`. Both are caught
//! here from `objdump -d` output.
//!
//! The aarch64 app (`BOOTAA64.EFI`, PE machine 0xaa64) gets its own census
//! ([`ArmCensus`], disassembled with `aarch64-linux-gnu-objdump`): NEON
//! vector `fmla`, the dot-product extension's `sdot`, the i8mm extension's
//! `smmla`, and scalar FP on `s` registers. `aarch64-unknown-uefi` is
//! hard-float already; the census keeps it so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Instruction counts from a disassembly.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    /// All decoded instructions.
    pub instructions: u64,
    /// `vfmadd*` (packed and scalar, all operand orders).
    pub vfmadd: u64,
    /// Scalar SSE `mulss`.
    pub mulss: u64,
    /// Scalar SSE `addss`.
    pub addss: u64,
    /// Instructions with a 512-bit `zmm` operand (the AVX-512 kernels).
    pub zmm: u64,
}

impl Census {
    /// Scalar SSE float instructions counted (`mulss` + `addss`).
    pub fn scalar_sse(&self) -> u64 {
        self.mulss + self.addss
    }

    /// Checks the counts; the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.instructions == 0 {
            problems.push("no instructions were disassembled (is this an x86-64 PE file?)".to_string());
        }
        if self.vfmadd == 0 {
            problems.push(
                "no vfmadd instructions: the AVX2/FMA kernels are missing or were not compiled \
                 with target_feature(enable = \"avx2,fma\")"
                    .to_string(),
            );
        }
        if self.zmm == 0 {
            problems.push(
                "no instructions on zmm registers: the AVX-512 kernels of crates/kernels are missing \
                 or were not compiled with target_feature(enable = \"avx512f,...\")"
                    .to_string(),
            );
        }
        if self.scalar_sse() == 0 {
            problems.push(
                "no scalar SSE float instructions (mulss/addss): the build looks soft-float \
                 (check the target spec features and the rustc-abi key)"
                    .to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The counts as a JSON object.
    pub fn to_json(&self, path: &Path) -> String {
        format!(
            "{{\"path\":{},\"instructions\":{},\"vfmadd\":{},\"zmm\":{},\"mulss\":{},\"addss\":{},\"scalar_sse\":{},\"ok\":{}}}",
            json_string(&path.display().to_string()),
            self.instructions,
            self.vfmadd,
            self.zmm,
            self.mulss,
            self.addss,
            self.scalar_sse(),
            self.check().is_ok()
        )
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The mnemonic of one `objdump -d` line (AT&T syntax), if it is an
/// instruction line: `  addr:\tBYTES\tMNEMONIC OPERANDS`. Prefixes such as
/// `rex.W`, `lock`, `rep`, `data16`, `notrack` or `bnd` are skipped.
pub fn mnemonic(line: &str) -> Option<&str> {
    let mut fields = line.split('\t');
    let addr = fields.next()?.trim();
    let addr = addr.strip_suffix(':')?;
    if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let _bytes = fields.next()?;
    // A continuation line (long encodings) has only address and bytes.
    let text = fields.next()?.trim();
    let mut words = text.split_whitespace();
    let mut word = words.next()?;
    while is_prefix(word) {
        word = words.next()?;
    }
    Some(word)
}

fn is_prefix(word: &str) -> bool {
    matches!(
        word,
        "lock"
            | "rep"
            | "repz"
            | "repe"
            | "repnz"
            | "repne"
            | "data16"
            | "addr32"
            | "notrack"
            | "bnd"
            | "cs"
            | "ds"
            | "es"
            | "fs"
            | "gs"
            | "ss"
    ) || word.starts_with("rex")
}

/// Counts instructions in `objdump -d` output.
pub fn count(disassembly: &str) -> Census {
    let mut c = Census::default();
    for line in disassembly.lines() {
        let Some(m) = mnemonic(line) else { continue };
        if m == "(bad)" {
            continue;
        }
        c.instructions += 1;
        if line.contains("%zmm") {
            c.zmm += 1;
        }
        if m.starts_with("vfmadd") {
            c.vfmadd += 1;
        } else if m == "mulss" {
            c.mulss += 1;
        } else if m == "addss" {
            c.addss += 1;
        }
    }
    c
}

/// Instruction counts from an aarch64 disassembly.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ArmCensus {
    /// All decoded instructions.
    pub instructions: u64,
    /// NEON vector `fmla` on four f32 lanes (`v.4s`).
    pub fmla_4s: u64,
    /// `sdot` (FEAT_DotProd) on vector registers.
    pub sdot: u64,
    /// `smmla` (FEAT_I8MM).
    pub smmla: u64,
    /// Scalar FP arithmetic on single-precision registers (`fadd`/`fmul`/`fmadd`/`fsub` on `s`).
    pub scalar_fp: u64,
}

impl ArmCensus {
    /// Checks the counts; the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.instructions == 0 {
            problems.push("no instructions were disassembled (is this an aarch64 PE file?)".to_string());
        }
        if self.fmla_4s == 0 {
            problems.push("no NEON fmla on .4s vectors: the NEON f32 kernels are missing".to_string());
        }
        if self.sdot == 0 {
            problems.push(
                "no sdot instructions: the dot-product kernels of crates/kernels were not compiled \
                 with target_feature(enable = \"dotprod\")"
                    .to_string(),
            );
        }
        if self.smmla == 0 {
            problems.push(
                "no smmla instructions: the i8mm kernels of crates/kernels were not compiled with \
                 target_feature(enable = \"i8mm\")"
                    .to_string(),
            );
        }
        if self.scalar_fp == 0 {
            problems.push("no scalar FP instructions on s registers: the build looks soft-float".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The counts as a JSON object.
    pub fn to_json(&self, path: &Path) -> String {
        format!(
            "{{\"path\":{},\"arch\":\"aarch64\",\"instructions\":{},\"fmla_4s\":{},\"sdot\":{},\"smmla\":{},\"scalar_fp\":{},\"ok\":{}}}",
            json_string(&path.display().to_string()),
            self.instructions,
            self.fmla_4s,
            self.sdot,
            self.smmla,
            self.scalar_fp,
            self.check().is_ok()
        )
    }
}

/// The operands of an `objdump -d` instruction line (the field after the mnemonic).
fn operands(line: &str) -> &str {
    let text = line.split('\t').nth(2).unwrap_or("");
    let rest = line.split('\t').nth(3).unwrap_or("");
    // x86 objdump puts mnemonic and operands in one field, aarch64 in two.
    let in_text = text.split_once(char::is_whitespace).map(|(_, r)| r.trim()).unwrap_or("");
    if rest.is_empty() {
        in_text
    } else {
        rest.trim()
    }
}

/// Counts instructions in an aarch64 `objdump -d` output.
pub fn count_arm(disassembly: &str) -> ArmCensus {
    let mut c = ArmCensus::default();
    for line in disassembly.lines() {
        let Some(m) = mnemonic(line) else { continue };
        if m.starts_with('.') || m == "(bad)" || m == "udf" {
            continue;
        }
        c.instructions += 1;
        let ops = operands(line);
        let first = ops.split(',').next().unwrap_or("").trim();
        match m {
            "fmla" if first.ends_with(".4s") => c.fmla_4s += 1,
            "sdot" if first.starts_with('v') => c.sdot += 1,
            "smmla" => c.smmla += 1,
            "fadd" | "fmul" | "fmadd" | "fsub" | "fmsub" | "fdiv"
                if first.starts_with('s') && first[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                c.scalar_fp += 1
            }
            _ => {}
        }
    }
    c
}

/// `objdump -d` (or `prog -d`) of `path`.
fn disassemble(prog: &str, path: &Path) -> Result<String, String> {
    let out = Command::new(prog).arg("-d").arg(path).output().map_err(|e| {
        format!("census: cannot run {prog} ({e}); `cargo xtask setup` installs binutils and gcc-aarch64-linux-gnu")
    })?;
    if !out.status.success() {
        return Err(format!(
            "census: {prog} -d {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo xtask census [PATH] [--json]`.
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let mut json = false;
    let mut path: Option<PathBuf> = None;
    for a in args {
        match a.as_str() {
            "--json" => json = true,
            s if s.starts_with('-') => return Err(format!("census: unknown option '{s}'")),
            s => {
                if path.is_some() {
                    return Err("census: more than one PATH given".into());
                }
                path = Some(PathBuf::from(s));
            }
        }
    }
    let path = path.unwrap_or_else(|| root.join("target/efi/BOOTX64.EFI"));
    if !path.exists() {
        return Err(format!("census: {} does not exist (run `cargo xtask build-efi` first)", path.display()));
    }
    // The PE header says which architecture (image's check of EFI apps);
    // anything else goes to the x86-64 census, which then finds nothing.
    let head = std::fs::read(&path).map_err(|e| format!("census: cannot read {}: {e}", path.display()))?;
    let (rows, check, json_text, what) = if image::efi_app_arch(&head) == Ok(image::EfiArch::Aarch64) {
        let c = count_arm(&disassemble("aarch64-linux-gnu-objdump", &path)?);
        let rows = vec![
            ("instructions", c.instructions),
            ("fmla .4s", c.fmla_4s),
            ("sdot", c.sdot),
            ("smmla", c.smmla),
            ("scalar fp (s)", c.scalar_fp),
        ];
        (rows, c.check(), c.to_json(&path), "aarch64 build with NEON, dotprod and i8mm kernels")
    } else {
        let c = count(&disassemble("objdump", &path)?);
        let rows = vec![
            ("instructions", c.instructions),
            ("vfmadd*", c.vfmadd),
            ("zmm operands", c.zmm),
            ("mulss", c.mulss),
            ("addss", c.addss),
        ];
        (rows, c.check(), c.to_json(&path), "build with AVX2/FMA and AVX-512 kernels")
    };
    if json {
        println!("{json_text}");
    } else {
        println!("census of {}", path.display());
        for (name, n) in &rows {
            println!("  {name:<13} {n}");
        }
    }
    check.map_err(|e| format!("census: {}: {e}", path.display()))?;
    if !json {
        println!("census: ok (hard-float {what})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "
target/efi/BOOTX64.EFI:     file format pei-x86-64


Disassembly of section .text:

0000000140001000 <.text>:
   140001000:\t55                   \tpush   %rbp
   140001001:\t48 89 e5             \tmov    %rsp,%rbp
   140001004:\tc4 e2 75 b8 c2       \tvfmadd231ps %ymm2,%ymm1,%ymm0
   140001009:\tc4 e2 f1 a9 c2       \tvfmadd213sd %xmm2,%xmm1,%xmm0
   14000100e:\tf3 0f 59 c1          \tmulss  %xmm1,%xmm0
   140001012:\tf3 0f 58 c1          \taddss  %xmm1,%xmm0
   140001016:\tf3 0f 58 44 24 08    \taddss  0x8(%rsp),%xmm0
   14000101c:\tc5 fa 58 c1          \tvaddss %xmm1,%xmm0,%xmm0
   140001020:\tf0 48 0f b1 0a       \tlock cmpxchg %rcx,(%rdx)
   140001025:\t48 8d 84 24 00 01 00 \tlea    0x100(%rsp),%rax
   14000102c:\t00 
   14000102d:\tc4 e2 7d 98 05 00 00 \tvfmadd132ps 0x0(%rip),%ymm0,%ymm0
   140001034:\t00 00 
   140001036:\t62 f2 75 48 b8 c2    \tvfmadd231ps %zmm2,%zmm1,%zmm0
   14000103c:\t66 2e 0f 1f 84 00 00 \tcs nopw 0x0(%rax,%rax,1)
   14000103d:\t00 00 00 
   140001040:\t5d                   \tpop    %rbp
   140001041:\tc3                   \tret
";

    #[test]
    fn mnemonic_parses_lines() {
        assert_eq!(mnemonic("   140001000:\t55                   \tpush   %rbp"), Some("push"));
        assert_eq!(mnemonic("   140001020:\tf0 48 0f b1 0a       \tlock cmpxchg %rcx,(%rdx)"), Some("cmpxchg"));
        assert_eq!(mnemonic("   14000102c:\t00 "), None);
        assert_eq!(mnemonic("0000000140001000 <.text>:"), None);
        assert_eq!(mnemonic("Disassembly of section .text:"), None);
        assert_eq!(mnemonic(""), None);
        assert_eq!(mnemonic("  1000:\t41 ff d3\trex.WB call *%r11"), Some("call"));
    }

    #[test]
    fn counts_sample() {
        let c = count(SAMPLE);
        assert_eq!(c.vfmadd, 4);
        assert_eq!(c.zmm, 1);
        assert_eq!(c.mulss, 1);
        assert_eq!(c.addss, 2);
        assert_eq!(c.instructions, 15);
        assert!(c.check().is_ok());
        let json = c.to_json(Path::new("a\\b\"c.efi"));
        assert_eq!(
            json,
            "{\"path\":\"a\\\\b\\\"c.efi\",\"instructions\":15,\"vfmadd\":4,\"zmm\":1,\"mulss\":1,\"addss\":2,\"scalar_sse\":3,\"ok\":true}"
        );
    }

    #[test]
    fn soft_float_build_fails() {
        let soft = "   140001000:\te8 00 10 00 00       \tcall   0x140002005\n\
                    140001005:\tc4 e2 75 b8 c2       \tvfmadd231ps %ymm2,%ymm1,%ymm0\n";
        let c = count(soft);
        assert_eq!(c.vfmadd, 1);
        let err = c.check().unwrap_err();
        assert!(err.contains("soft-float"), "{err}");
        assert!(!err.contains("vfmadd instructions"), "{err}");
    }

    #[test]
    fn missing_fma_fails() {
        let no_fma = "   140001000:\tf3 0f 59 c1          \tmulss  %xmm1,%xmm0\n";
        let c = count(no_fma);
        let err = c.check().unwrap_err();
        assert!(err.contains("no vfmadd"), "{err}");
        assert!(!err.contains("soft-float"), "{err}");
    }

    #[test]
    fn empty_disassembly_fails() {
        let c = count("not a disassembly\n");
        assert_eq!(c, Census::default());
        let err = c.check().unwrap_err();
        assert!(err.contains("no instructions"), "{err}");
    }
}

#[cfg(test)]
mod arm_tests {
    use super::*;

    const SAMPLE: &str = "
target/efi/BOOTAA64.EFI:     file format pei-aarch64-little

0000000140001000 <.text>:
   140001000:\t8b010009 \tadd\tx9, x0, x1
   1400216bc:\t4e39cc1a \tfmla\tv26.4s, v0.4s, v25.4s
   1400216c0:\t0f801000 \tfmla\ts0, s0, v0.s[0]
   1400216c4:\t4e829420 \tsdot\tv0.4s, v1.16b, v2.16b
   1400216c8:\t4e82a420 \tsmmla\tv0.4s, v1.16b, v2.16b
   1400216cc:\t1e222820 \tfadd\ts0, s1, s2
   1400216d0:\t1e620820 \tfmul\td0, d1, d2
   1400216d4:\t00000000 \tudf\t#0
   1400216d8:\td65f03c0 \tret
";

    #[test]
    fn counts_sample() {
        let c = count_arm(SAMPLE);
        assert_eq!(c, ArmCensus { instructions: 8, fmla_4s: 1, sdot: 1, smmla: 1, scalar_fp: 1 });
        assert!(c.check().is_ok());
        assert!(c.to_json(Path::new("x.efi")).contains("\"sdot\":1"));
    }

    #[test]
    fn missing_parts_fail() {
        let soft = "   140001000:\t94000000 \tbl\t0x140002000\n   140001004:\t4e39cc1a \tfmla\tv26.4s, v0.4s, v25.4s\n";
        let err = count_arm(soft).check().unwrap_err();
        assert!(err.contains("soft-float"), "{err}");
        assert!(err.contains("sdot"), "{err}");
        assert!(err.contains("smmla"), "{err}");
        assert!(!err.contains("fmla"), "{err}");
    }
}

#[cfg(test)]
mod avx512_tests {
    use super::*;

    #[test]
    fn missing_avx512_fails() {
        let only_avx2 = "   140001000:\tf3 0f 59 c1          \tmulss  %xmm1,%xmm0\n\
                         140001005:\tc4 e2 75 b8 c2       \tvfmadd231ps %ymm2,%ymm1,%ymm0\n";
        let err = count(only_avx2).check().unwrap_err();
        assert!(err.contains("zmm"), "{err}");
    }
}
