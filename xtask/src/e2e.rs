//! `cargo xtask efi-e2e`: the UEFI app end to end under QEMU with the bundled
//! stories260K model: banner and self-tests, automatic pick of the only
//! model, a greedy reply, `/model` back to the menu, `/exit` powering off.
//! The reply must equal, byte for byte, what `lbm chat` prints on the host
//! for the same model, prompt and settings.
//!
//! `--arch aarch64` boots `BOOTAA64.EFI` on QEMU's `virt` machine with AAVMF
//! (software emulation of every instruction, so the same tiny model): the
//! banner names the NEON level and says the app runs on one core when the
//! firmware has no MP services, `/stats` names the level too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::smoke::{self, Opts, Step};

const PROMPT: &str = "Once upon a time";
const MAX_TOKENS: u32 = 40;

const HELP: &str = "\
usage: cargo xtask efi-e2e [--arch x86_64|aarch64] [--no-build] [--no-host-check] [--timeout SECS] [--log PATH]

Builds the UEFI app (unless --no-build), boots it under QEMU with
assets/stories260K in \\models\\, chats, changes model, exits, and compares the
reply with `lbm chat` on the host (unless --no-host-check).
";

/// The first reply in a transcript: the text after `AI: ` up to the line
/// that starts with `[` (the token count line). `\r` are dropped.
pub fn extract_reply(transcript: &str) -> Option<String> {
    let clean: String = transcript.chars().filter(|&c| c != '\r').collect();
    let start = clean.find("AI: ")? + 4;
    let rest = &clean[start..];
    let end = rest.find("\n[")?;
    Some(rest[..end].to_string())
}

/// `cargo xtask efi-e2e`.
pub fn run(root: &Path, args: &[String]) -> Result<(), String> {
    let mut build = true;
    let mut host_check = true;
    let mut timeout = 600u64;
    let mut log: Option<PathBuf> = None;
    let mut arch = qemu::Arch::X86_64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-build" => build = false,
            "--no-host-check" => host_check = false,
            "--timeout" => {
                let v = it.next().ok_or("efi-e2e: --timeout needs a value")?;
                timeout = v.parse().map_err(|_| format!("efi-e2e: bad --timeout '{v}'"))?;
            }
            "--log" => log = Some(PathBuf::from(it.next().ok_or("efi-e2e: --log needs a value")?)),
            "--arch" => {
                let v = it.next().ok_or("efi-e2e: --arch needs a value")?;
                arch = qemu::Arch::parse(v).map_err(|e| format!("efi-e2e: {e}"))?;
            }
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("efi-e2e: unknown argument '{other}'\n{HELP}")),
        }
    }
    let assets = root.join("assets/stories260K");
    let model = assets.join("stories260K.bin");
    let tok = assets.join("tok512.bin");
    for f in [&model, &tok] {
        if !f.exists() {
            return Err(format!("efi-e2e: {} is missing", f.display()));
        }
    }
    if build {
        let p = crate::build_efi(&["--arch".to_string(), arch.name().to_string()])?;
        eprintln!("efi-e2e: built {}", p.display());
    }

    let mut o = Opts::new(root);
    o.arch = arch;
    o.efi = root.join("target/efi").join(arch.boot_file());
    o.files.push((model.clone(), "models/stories260K.bin".into()));
    o.files.push((tok.clone(), "models/tok512.bin".into()));
    o.texts.push((
        format!("# written by cargo xtask efi-e2e\ntemperature = 0\nmax_tokens = {MAX_TOKENS}\n"),
        "lbm.cfg".into(),
    ));
    let expect = |t: &str| Step::Expect(t.to_string());
    let send = |t: &str| Step::Send(t.as_bytes().to_vec());
    // What the banner must say about the vector unit and the cores: QEMU's
    // `-cpu max` has AVX2 (no AVX-512 under TCG) and two cores through MP
    // services on x86-64; NEON with dotprod and i8mm on aarch64, where
    // AAVMF has no MP services.
    let (simd, cores, level) = match arch {
        qemu::Arch::X86_64 => ("SIMD:   avx2", "parallel-for check: 4096 tasks ran once each", "avx2"),
        qemu::Arch::Aarch64 => ("SIMD:   neon", "Cores:  1 (no MP services in this firmware)", "neon-i8mm"),
    };
    o.steps = vec![
        expect("llm-baremetal "),
        expect(simd),
        expect("check: "),
        expect("ok\n"),
        expect(cores),
        expect("Settings: \\lbm.cfg"),
        expect("  [1] models\\stories260K.bin  llama  "),
        expect("Only one model: models\\stories260K.bin"),
        expect("\nLBM-READY\n"),
        expect("You: "),
        send(&format!("{PROMPT}\r")),
        expect("tok/s]"),
        expect("You: "),
        send("/stats\r"),
        expect(&format!("cpu:         {level} SIMD")),
        expect("You: "),
        send("/model\r"),
        expect("Select a model [1-1]: "),
        send("1\r"),
        expect("\nLBM-READY\n"),
        expect("You: "),
        send("/exit\r"),
        expect("Bye."),
    ];
    o.rejects = vec!["*** llm-baremetal stopped".into(), "error:".into()];
    o.until_exit = true;
    o.timeout = Duration::from_secs(timeout);
    o.log = log;
    let out = smoke::boot(root, &o)?;
    let transcript = String::from_utf8_lossy(&out);
    let uefi_reply = extract_reply(&transcript).ok_or("efi-e2e: no reply found in the UEFI transcript")?;
    eprintln!("efi-e2e: UEFI reply: {uefi_reply:?}");

    if host_check {
        let host = host_reply(root, &model, &tok)?;
        eprintln!("efi-e2e: host reply: {host:?}");
        if host != uefi_reply {
            return Err(format!(
                "efi-e2e: the UEFI reply differs from the host's\n  uefi: {uefi_reply:?}\n  host: {host:?}"
            ));
        }
    }
    eprintln!("efi-e2e: ok");
    Ok(())
}

/// The reply of `lbm chat` on the host for the same model and settings.
fn host_reply(root: &Path, model: &Path, tok: &Path) -> Result<String, String> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root);
    cmd.args(["run", "--quiet", "-p", "lbm", "--", "chat", "--temp", "0"]);
    cmd.arg("--max-tokens").arg(MAX_TOKENS.to_string());
    cmd.arg("-m").arg(model).arg("-z").arg(tok);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| format!("efi-e2e: cannot run lbm chat: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{PROMPT}\n/exit\n").as_bytes())
            .map_err(|e| format!("efi-e2e: cannot write to lbm chat: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("efi-e2e: lbm chat: {e}"))?;
    if !out.status.success() {
        return Err(format!("efi-e2e: lbm chat failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    extract_reply(&text).ok_or_else(|| format!("efi-e2e: no reply in the output of lbm chat:\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_extraction() {
        let uefi = "LBM-READY\r\n\r\n[Turn 1/10] You: Once\r\nAI: , there was\r\na girl.\r\n[40 tokens, token limit; prompt 1.0 tok/s]\r\n";
        assert_eq!(extract_reply(uefi).as_deref(), Some(", there was\na girl."));
        let host = "[Turn 1/10] You: Once\nAI: , there was\na girl.\n[40 tokens]\n";
        assert_eq!(extract_reply(host), extract_reply(uefi));
        assert_eq!(extract_reply("no reply here"), None);
        assert_eq!(extract_reply("AI: unterminated"), None);
    }
}
