//! `lbm quantize`: a GGUF file to any of llama-quantize's file types listed in
//! `engine::quantize::QuantType` (Q8_0 ... Q2_K, the K-quant mixes, IQ4_NL,
//! IQ4_XS, F16, F32), with llama.cpp's choice of type per tensor, byte for
//! byte (see `engine::quantize`).

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
/// a summary. The file is written through [`outfile::Output`] (a temporary
/// file beside `output`, renamed when complete), so `output` is never left
/// half-written.
pub fn quantize_with(
    input: &Path,
    output: &Path,
    ty: QuantType,
    threads: usize,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    // Checked and created first: a bad output fails before the work.
    let out = outfile::Output::create(output)?;
    let file = crate::host::read_model_bytes(input)?;
    let pool = crate::threads::pool(threads)?;
    let mut plans: Vec<TensorPlan> = Vec::new();
    let writer = quantize_gguf_with(&file, ty, &pool, &mut |p| {
        log(&format!("{:<32} {:>16} {:>5} -> {}", p.name, format!("{:?}", p.dims), p.from.name(), p.to.name()));
        plans.push(p.clone());
    })
    .with_context(|| format!("quantizing {} to {}", input.display(), ty.name()))?;
    drop(file);
    let bytes = out
        .write_with(1 << 20, |w| {
            let mut written = 0u64;
            writer.write(&mut |b: &[u8]| {
                written += b.len() as u64;
                w.write_all(b).map_err(|e| engine::Error::Io(e.to_string()))
            })?;
            Ok(written)
        })
        .with_context(|| format!("writing {}", output.display()))?;
    log(&format!("wrote {} ({} bytes): {}", output.display(), bytes, summarize(&plans)));
    Ok(())
}
