//! `lbm convert HF_DIR -o OUT.gguf [--type f32|f16]`: a Hugging Face
//! checkpoint folder (config.json + safetensors, optionally a tokenizer)
//! to a GGUF file that llama.cpp and this project's engine load.
//!
//! The recipe for each architecture is a table in [`arch`]; this file runs
//! it: read and validate the hyper-parameters, map and check every tensor
//! before converting any, then transform (Q/K RoPE permutation, Conv1D
//! transposition, Gemma's `1 + w` norms), encode (F32 or F16) and write.
//!
//! The API: [`convert`] with [`ConvertOptions`]; [`spm_model`] reads
//! SentencePiece `tokenizer.model` files.
#![forbid(unsafe_code)]

mod arch;
mod config;
mod source;
pub mod spm_model;
mod vocab;

use anyhow::{bail, ensure, Context, Result};
use arch::{Arch, Bias, HParams, OutputRule, Role, RopeScaling};
use config::JsonFile;
use engine::gguf::{GgmlType, GgufWriter, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use source::{f16_to_f32, f32_to_f16};

/// The element type of the converted matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
}

impl OutType {
    /// Parses the `--type` argument.
    pub fn parse(s: &str) -> Result<OutType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(OutType::F32),
            "f16" => Ok(OutType::F16),
            _ => bail!("unknown output type '{s}' (expected f32 or f16)"),
        }
    }

    /// `general.file_type` (llama.cpp's LLAMA_FTYPE_ALL_F32 / MOSTLY_F16).
    pub fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
        }
    }
}

/// What to convert, and where to.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The Hugging Face model folder.
    pub input: PathBuf,
    /// The GGUF file to write (replaced atomically when conversion succeeds).
    pub output: PathBuf,
    pub ty: OutType,
}

/// One checkpoint tensor, matched to its GGUF name and checked.
struct Planned<'a> {
    hf: String,
    gguf: String,
    role: Role,
    bias: bool,
    /// Sorting key: tensors before the blocks, blocks in order, then after.
    order: (u8, u64, usize, bool),
    src: source::Tensor<'a>,
}

/// Matches checkpoint names against the architecture's table.
fn plan<'a>(
    arch: &Arch,
    hp: &HParams,
    tensors: &BTreeMap<String, source::Tensor<'a>>,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<Planned<'a>>> {
    let mut out: Vec<Planned<'a>> = Vec::new();
    for (name, t) in tensors {
        let n = if arch.strip_prefix.is_empty() {
            name.as_str()
        } else {
            name.strip_prefix(arch.strip_prefix).unwrap_or(name)
        };
        if arch.ignore.iter().any(|s| n.ends_with(s)) {
            log(&format!("skipping buffer '{name}'"));
            continue;
        }
        let (base, bias) = if let Some(b) = n.strip_suffix(".weight") {
            (b, false)
        } else if let Some(b) = n.strip_suffix(".bias") {
            (b, true)
        } else {
            bail!("tensor '{name}' is not a weight or bias of a {} model", arch.spec.name);
        };
        let unknown = || anyhow::anyhow!("tensor '{name}' has no place in a {} model (unknown name)", arch.spec.name);
        let (m, block, order) = if let Some(rest) = base.strip_prefix(arch.block_prefix) {
            let (num, sub) = rest.split_once('.').ok_or_else(unknown)?;
            ensure!(!num.is_empty() && num.bytes().all(|c| c.is_ascii_digit()), unknown());
            let b: u64 = num.parse().map_err(|_| unknown())?;
            let (i, m) = arch.block.iter().enumerate().find(|(_, m)| m.hf == sub).ok_or_else(unknown)?;
            ensure!(
                b < hp.n_layer,
                "tensor '{name}' belongs to block {b}, but config.json has only {} layers",
                hp.n_layer
            );
            (m, Some(b), (1u8, b, i, bias))
        } else {
            let (i, m) = arch.globals.iter().enumerate().find(|(_, m)| m.hf == base).ok_or_else(unknown)?;
            let section = if matches!(m.role, Role::TokenEmbd | Role::PosEmbd) { 0 } else { 2 };
            (m, None, (section, 0, i, bias))
        };
        if bias && m.bias == Bias::No {
            bail!("tensor '{name}': a {} model has no bias for {}", arch.spec.name, m.role.gguf());
        }
        let gguf = match block {
            Some(b) => m.role.name(Some(b as usize), bias),
            None => m.role.name(None, bias),
        };
        out.push(Planned { hf: name.clone(), gguf, role: m.role, bias, order, src: t.clone() });
    }
    out.sort_by_key(|p| p.order);
    Ok(out)
}

/// Checks that every tensor the architecture needs is present.
fn check_complete(arch: &Arch, hp: &HParams, planned: &[Planned<'_>], uses_prefix: bool) -> Result<()> {
    let have: std::collections::BTreeSet<&str> = planned.iter().map(|p| p.gguf.as_str()).collect();
    let hf_name = |base: &str, bias: bool| {
        format!("{}{base}.{}", if uses_prefix { arch.strip_prefix } else { "" }, if bias { "bias" } else { "weight" })
    };
    for m in arch.globals {
        if !m.optional && !have.contains(m.role.name(None, false).as_str()) {
            bail!("missing tensor '{}' (GGUF {})", hf_name(m.hf, false), m.role.name(None, false));
        }
        if m.bias == Bias::Required
            && have.contains(m.role.name(None, false).as_str())
            && !have.contains(m.role.name(None, true).as_str())
        {
            bail!("missing tensor '{}' (GGUF {})", hf_name(m.hf, true), m.role.name(None, true));
        }
    }
    for b in 0..hp.n_layer {
        for m in arch.block {
            let base = format!("{}{b}.{}", arch.block_prefix, m.hf);
            if !have.contains(m.role.name(Some(b as usize), false).as_str()) {
                bail!("missing tensor '{}' (GGUF {})", hf_name(&base, false), m.role.name(Some(b as usize), false));
            }
            if m.bias == Bias::Required && !have.contains(m.role.name(Some(b as usize), true).as_str()) {
                bail!("missing tensor '{}' (GGUF {})", hf_name(&base, true), m.role.name(Some(b as usize), true));
            }
        }
    }
    Ok(())
}

/// Is this a block matrix stored as GPT-2 Conv1D `[in, out]`?
fn is_conv1d(arch: &Arch, p: &Planned<'_>) -> bool {
    arch.conv1d && !p.bias && matches!(p.role, Role::AttnQkv | Role::AttnOut | Role::FfnUp | Role::FfnDown)
}

/// Checks every tensor's shape against the hyper-parameters.
fn check_shapes(arch: &Arch, hp: &HParams, n_vocab: u64, planned: &[Planned<'_>]) -> Result<()> {
    for p in planned {
        let mut want = arch::expected_shape(p.role, hp, n_vocab);
        if p.bias {
            want.truncate(1);
        } else if is_conv1d(arch, p) {
            want.reverse();
        }
        let found: Vec<u64> = p.src.shape.iter().map(|&d| d as u64).collect();
        ensure!(
            found == want,
            "tensor '{}' has shape {found:?}, expected {want:?} (from config.json{})",
            p.hf,
            if is_conv1d(arch, p) { "; GPT-2 Conv1D weights are stored [in, out]" } else { "" }
        );
    }
    Ok(())
}

/// Reorders the rows of a Q or K projection (weight or bias) from Hugging
/// Face's rotate-half layout to GGML's adjacent-pair RoPE layout, exactly
/// as llama.cpp's `LlamaModel.permute`: rows viewed as
/// `[n_head, 2, head_dim/2, cols]` become `[n_head, head_dim/2, 2, cols]`.
pub fn permute_qk(data: &[f32], n_head: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    assert_eq!(data.len(), n_head * head_dim * cols);
    assert_eq!(head_dim % 2, 0);
    let half = head_dim / 2;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let dst = h * head_dim + 2 * i + j;
                let src = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

fn encode(data: &[f32], ty: GgmlType) -> Vec<u8> {
    match ty {
        GgmlType::F16 => data.iter().flat_map(|&x| f32_to_f16(x).to_le_bytes()).collect(),
        _ => data.iter().flat_map(|&x| x.to_le_bytes()).collect(),
    }
}

/// Converts one planned tensor: decode, transform, pick the stored type.
fn convert_tensor(
    arch: &Arch,
    hp: &HParams,
    p: &Planned<'_>,
    out_ty: OutType,
) -> Result<(Vec<u64>, GgmlType, Vec<u8>)> {
    let mut data = source::to_f32(&p.hf, &p.src)?;
    let shape: Vec<usize> = p.src.shape.to_vec();
    let (rows, cols) = match shape.as_slice() {
        [n] => (*n, 1),
        [r, c] => (*r, *c),
        _ => bail!("tensor '{}' has {} dimensions", p.hf, shape.len()),
    };
    let (mut rows, mut cols) = (rows, cols);
    if is_conv1d(arch, p) {
        data = transpose(&data, rows, cols);
        std::mem::swap(&mut rows, &mut cols);
    }
    if arch.permute_qk() {
        let heads = match p.role {
            Role::AttnQ => Some(hp.n_head),
            Role::AttnK => Some(hp.n_head_kv),
            _ => None,
        };
        if let Some(h) = heads {
            data = permute_qk(&data, h as usize, hp.head_dim as usize, cols);
        }
    }
    if arch.norm_plus_one && p.role.is_norm() && !p.bias {
        // Done in f32 after decoding; llama.cpp adds in the checkpoint's own
        // dtype when that is F16 (identical for F32 and BF16 checkpoints).
        data.iter_mut().for_each(|x| *x += 1.0);
    }
    // As llama.cpp: 1-D tensors, norms, biases and learned positions stay F32.
    let keep_f32 = p.bias || shape.len() == 1 || p.role.is_norm() || p.role == Role::PosEmbd;
    let ty = match (keep_f32, out_ty) {
        (false, OutType::F16) => GgmlType::F16,
        _ => GgmlType::F32,
    };
    let dims = if shape.len() == 1 { vec![rows as u64] } else { vec![cols as u64, rows as u64] };
    Ok((dims, ty, encode(&data, ty)))
}

fn model_name(input: &Path) -> String {
    let p = input.canonicalize().unwrap_or_else(|_| input.to_path_buf());
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
}

fn hparam_kvs(arch: &Arch, hp: &HParams, n_vocab: u64) -> Result<Vec<(String, Value)>> {
    let a = arch.spec.name;
    let u = |v: u64, what: &str| -> Result<Value> {
        Ok(Value::U32(u32::try_from(v).with_context(|| format!("{what} = {v} does not fit in 32 bits"))?))
    };
    let mut kv = vec![
        (format!("{a}.vocab_size"), u(n_vocab, "vocab_size")?),
        (format!("{a}.context_length"), u(hp.n_ctx, "context_length")?),
        (format!("{a}.embedding_length"), u(hp.n_embd, "embedding_length")?),
        (format!("{a}.block_count"), u(hp.n_layer, "block_count")?),
        (format!("{a}.feed_forward_length"), u(hp.n_ff, "feed_forward_length")?),
        (format!("{a}.attention.head_count"), u(hp.n_head, "head_count")?),
        (format!("{a}.attention.head_count_kv"), u(hp.n_head_kv, "head_count_kv")?),
    ];
    let eps_key = arch.spec.norm.eps_key();
    kv.push((format!("{a}.attention.{eps_key}"), Value::F32(hp.norm_eps as f32)));
    if let Some(d) = hp.rope_dim {
        kv.push((format!("{a}.rope.dimension_count"), u(d, "rope.dimension_count")?));
    }
    if let Some(t) = hp.rope_theta {
        kv.push((format!("{a}.rope.freq_base"), Value::F32(t as f32)));
    }
    if let Some(RopeScaling::Linear { factor }) = hp.rope_scaling {
        kv.push((format!("{a}.rope.scaling.type"), Value::String("linear".into())));
        kv.push((format!("{a}.rope.scaling.factor"), Value::F32(factor as f32)));
    }
    if hp.head_dim_explicit {
        kv.push((format!("{a}.attention.key_length"), u(hp.head_dim, "key_length")?));
        kv.push((format!("{a}.attention.value_length"), u(hp.head_dim, "value_length")?));
    }
    if let Some(w) = hp.sliding_window {
        kv.push((format!("{a}.attention.sliding_window"), u(w, "sliding_window")?));
    }
    Ok(kv)
}

/// Converts `opts.input` to `opts.output`. Progress lines go to `log`.
pub fn convert(opts: &ConvertOptions, log: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    let dir = &opts.input;
    ensure!(dir.is_dir(), "{} is not a folder", dir.display());
    // Checked and created first: a bad output fails before the work.
    let out = outfile::Output::create(&opts.output)?;
    let cfg_path = dir.join("config.json");
    ensure!(cfg_path.is_file(), "no config.json in {}", dir.display());
    let cfg = JsonFile::load(&cfg_path)?;
    let arch = arch::select(&cfg)?;
    let hp = HParams::read(arch, &cfg)?;
    log(&format!(
        "architecture {}: {} layers, {} wide, {} heads ({} kv, {} each), ffn {}",
        arch.spec.name, hp.n_layer, hp.n_embd, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_ff
    ));

    let files = source::Files::open(dir)?;
    let tensors = files.tensors()?;
    let uses_prefix = !arch.strip_prefix.is_empty() && tensors.keys().any(|k| k.starts_with(arch.strip_prefix));
    let mut planned = plan(arch, &hp, &tensors, log)?;
    check_complete(arch, &hp, &planned, uses_prefix)?;

    // The vocabulary size is the embedding's row count; config.json must agree.
    let embd = planned.iter().find(|p| p.role == Role::TokenEmbd).context("no token embedding")?;
    ensure!(embd.src.shape.len() == 2, "tensor '{}' has shape {:?}, expected 2 dimensions", embd.hf, embd.src.shape);
    let n_vocab = embd.src.shape[0] as u64;
    ensure!(n_vocab >= 1, "tensor '{}' has no rows", embd.hf);
    if let Some(v) = hp.vocab_size {
        ensure!(v == n_vocab, "tensor '{}' has shape {:?}, but config.json vocab_size is {v}", embd.hf, embd.src.shape);
    }
    check_shapes(arch, &hp, n_vocab, &planned)?;

    let has_head = planned.iter().any(|p| p.role == Role::Output && !p.bias);
    if hp.tie_word_embeddings == Some(false) && !has_head && arch.output != OutputRule::Never {
        bail!("config.json has tie_word_embeddings = false, but the checkpoint has no lm_head.weight");
    }
    match arch.output {
        OutputRule::Never => {
            if has_head {
                log("dropping lm_head.weight: llama.cpp's gemma always uses the token embedding as output");
            }
            planned.retain(|p| p.role != Role::Output);
        }
        OutputRule::LmHeadIfPresent | OutputRule::CopyOfEmbedding => {}
    }

    let tokenizer = vocab::load(dir, arch, n_vocab, &cfg, log)?;

    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", Value::String(arch.spec.name.into()));
    w.add_kv("general.type", Value::String("model".into()));
    w.add_kv("general.name", Value::String(model_name(dir)));
    for (k, v) in hparam_kvs(arch, &hp, n_vocab)? {
        w.add_kv(&k, v);
    }
    w.add_kv("general.file_type", Value::U32(opts.ty.file_type()));
    for (k, v) in tokenizer.into_iter().flatten() {
        w.add_kv(&k, v);
    }

    let mut total = 0u64;
    for p in &planned {
        let (dims, ty, data) = convert_tensor(arch, &hp, p, opts.ty)?;
        total += data.len() as u64;
        log(&format!("{:<28} {:<4} {:?}  <- {}", p.gguf, ty.name(), dims, p.hf));
        if arch.output == OutputRule::CopyOfEmbedding && p.role == Role::TokenEmbd && !has_head {
            // llama.cpp's gpt2 loader requires output.weight: the tied head.
            let output = Role::Output.name(None, false);
            w.add_tensor(&output, &dims, ty, data.clone()).map_err(anyhow::Error::new)?;
            total += data.len() as u64;
            log(&format!("{:<28} {:<4} {:?}  <- {} (tied)", output, ty.name(), dims, p.hf));
        }
        w.add_tensor(&p.gguf, &dims, ty, data).map_err(anyhow::Error::new)?;
    }

    write_atomically(out, &opts.output, &w)?;
    log(&format!("wrote {} ({} tensor bytes)", opts.output.display(), total));
    Ok(())
}

/// Writes `out` through `output` (a temporary file beside it, renamed
/// into place), so a failed conversion never leaves a half-written GGUF
/// behind.
fn write_atomically(output: outfile::Output, out: &Path, w: &GgufWriter) -> Result<()> {
    output.write_with(1 << 20, |bw| {
        let mut io_err = None;
        let r = w.write(&mut |b: &[u8]| {
            bw.write_all(b).map_err(|e| {
                let msg = e.to_string();
                io_err = Some(e);
                engine::Error::Io(msg)
            })
        });
        if let Some(e) = io_err {
            return Err(anyhow::Error::new(e).context(format!("cannot write {}", out.display())));
        }
        r.map_err(anyhow::Error::new)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_matches_the_reshape_swap_definition() {
        // 2 heads of dim 6, 3 columns: element (row, col) = 100*row + col.
        let (nh, hd, cols) = (2usize, 6usize, 3usize);
        let data: Vec<f32> = (0..nh * hd * cols).map(|k| (100 * (k / cols) + k % cols) as f32).collect();
        let out = permute_qk(&data, nh, hd, cols);
        // Within a head, rotate-half rows [0 1 2 | 3 4 5] become pairs
        // (0,3) (1,4) (2,5).
        let rows: Vec<usize> = (0..nh * hd).map(|r| out[r * cols] as usize / 100).collect();
        assert_eq!(rows, vec![0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]);
        for r in 0..nh * hd {
            for c in 0..cols {
                assert_eq!(out[r * cols + c] as usize % 100, c);
            }
        }
    }

    #[test]
    fn transpose_swaps_axes() {
        let d = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 x 3
        assert_eq!(transpose(&d, 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn out_type_parses() {
        assert_eq!(OutType::parse("F16").unwrap(), OutType::F16);
        assert_eq!(OutType::parse("f32").unwrap().file_type(), 0);
        assert!(OutType::parse("q4_0").is_err());
    }
}
