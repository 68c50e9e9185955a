//! `lbm quantize`: a GGUF file to Q8_0, Q4_0, Q4_1, Q5_1, Q4_K_M, Q6_K, F16 or F32, with
//! llama.cpp's choice of type per tensor (see `engine::quantize`).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use engine::quantize::{quantize_gguf_with, summarize, QuantType, TensorPlan};

/// Quantizes `input` into `output` with all cores.
pub fn quantize(input: &Path, output: &Path, ty: QuantType) -> Result<()> {
    let threads = crate::threads::cores();
    quantize_with(input, output, ty, threads, &mut |_| {})
}

/// [`quantize`] on `threads` threads, calling `log` with a line per tensor and
/// a summary. The file is written to a temporary name next to `output` and
/// renamed when complete, so `output` is never left half-written.
pub fn quantize_with(
    input: &Path,
    output: &Path,
    ty: QuantType,
    threads: usize,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let file = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let pool = crate::threads::pool(threads)?;
    let mut plans: Vec<TensorPlan> = Vec::new();
    let writer = quantize_gguf_with(&file, ty, &pool, &mut |p| {
        log(&format!("{:<32} {:>16} {:>5} -> {}", p.name, format!("{:?}", p.dims), p.from.name(), p.to.name()));
        plans.push(p.clone());
    })
    .with_context(|| format!("quantizing {} to {}", input.display(), ty.name()))?;
    drop(file);
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = output.file_name().context("the output path has no file name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> Result<u64> {
        let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
        let mut written = 0u64;
        writer.write(&mut |b: &[u8]| {
            written += b.len() as u64;
            out.write_all(b).map_err(|e| engine::Error::Io(e.to_string()))
        })?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(written)
    })();
    match result {
        Ok(bytes) => {
            std::fs::rename(&tmp, output)
                .with_context(|| format!("renaming {} to {}", tmp.display(), output.display()))?;
            log(&format!("wrote {} ({} bytes): {}", output.display(), bytes, summarize(&plans)));
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!("writing {}", output.display())))
        }
    }
}
