//! llama2.c checkpoints: v0 (legacy 7 x int32 header), v1 (`ak42`, f32) and
//! v2 (`ak42`, int8 groups with one f32 scale per group). v2 matrices whose
//! groups are whole 32-blocks within rows become Q8_0 and run through the
//! integer kernels; others are dequantized to f32.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use kernels::quant::{BlockQ8_0, QK8_0};

use crate::format::{ModelFormat, ModelSummary};
use crate::model::{Arch, Blob, Config, DType, FfnKind, Layer, Model, Norm, NormKind, Tensor, Weights};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// `ak42` as a little-endian u32.
pub const MAGIC: u32 = 0x616b_3432;

/// A parsed checkpoint header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 0 (legacy), 1 (f32) or 2 (int8 groups).
    pub version: u32,
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    /// The classifier is the token embedding.
    pub shared_classifier: bool,
    /// Values per scale (v2 only).
    pub group_size: usize,
    /// Bytes before the first weight.
    pub header_len: usize,
}

fn i32_at(b: &[u8], off: usize, what: &str) -> Result<i32> {
    b.get(off..off + 4).map(|s| i32::from_le_bytes([s[0], s[1], s[2], s[3]])).ok_or_else(|| {
        Error::truncated(format!("llama2.c header field {what}"), off as u64, 4, b.len().saturating_sub(off) as u64)
    })
}

fn positive(v: i32, what: &str) -> Result<usize> {
    if v <= 0 || v > (1 << 24) {
        return Err(Error::invalid(format!("llama2.c header field {what}"), format!("{v}")));
    }
    Ok(v as usize)
}

impl Header {
    /// Parses the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Self> {
        // Every format's header is longer than this (GGUF's, llm.c's, llama2.c's).
        if b.len() < 28 {
            return Err(Error::truncated("a file too short to be a model", 0, 28, b.len() as u64));
        }
        let first = i32_at(b, 0, "magic/dim")? as u32;
        let (version, p) = if first == MAGIC {
            let v = i32_at(b, 4, "version")?;
            if v != 1 && v != 2 {
                return Err(Error::UnsupportedVersion { format: "llama2.c", version: v as u32 });
            }
            (v as u32, 8)
        } else {
            (0, 0)
        };
        let names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
        let mut f = [0i32; 7];
        for (i, n) in names.iter().enumerate() {
            f[i] = i32_at(b, p + 4 * i, n)?;
        }
        let (shared, vocab) = if version == 0 {
            // Negative: the classifier is not shared. i32::MIN has no absolute value.
            let v = f[5]
                .checked_abs()
                .ok_or_else(|| Error::invalid("llama2.c header field vocab_size", format!("{}", f[5])))?;
            (f[5] > 0, v)
        } else {
            let flag = *b.get(p + 28).ok_or_else(|| Error::truncated("llama2.c header flags", 36, 1, 0))?;
            (flag != 0, f[5])
        };
        let group_size = if version == 2 { positive(i32_at(b, p + 29, "group_size")?, "group_size")? } else { 0 };
        let h = Header {
            version,
            dim: positive(f[0], "dim")?,
            hidden_dim: positive(f[1], "hidden_dim")?,
            n_layers: positive(f[2], "n_layers")?,
            n_heads: positive(f[3], "n_heads")?,
            n_kv_heads: positive(f[4], "n_kv_heads")?,
            vocab_size: positive(vocab, "vocab_size")?,
            seq_len: positive(f[6], "seq_len")?,
            shared_classifier: shared,
            group_size,
            header_len: if version == 0 { 28 } else { 256 },
        };
        if b.len() < h.header_len {
            return Err(Error::truncated("llama2.c header", 0, h.header_len as u64, b.len() as u64));
        }
        if !h.dim.is_multiple_of(h.n_heads) {
            return Err(Error::invalid(
                "llama2.c header",
                format!("dim {} is not a multiple of n_heads {}", h.dim, h.n_heads),
            ));
        }
        Ok(h)
    }

    /// The model configuration this header describes.
    pub fn config(&self) -> Config {
        let head_dim = self.dim / self.n_heads;
        Config {
            arch: Arch::Llama,
            dim: self.dim,
            hidden_dim: self.hidden_dim,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim,
            vocab_size: self.vocab_size,
            max_ctx: self.seq_len,
            norm: NormKind::Rms,
            norm_eps: 1e-5,
            ffn: FfnKind::SwiGlu,
            n_rot: head_dim,
            rope_base: 10000.0,
            rope_neox: false,
            sliding_window: None,
            parallel_residual: false,
            embed_scale: None,
        }
    }

    /// Format name for menus.
    pub fn format_name(&self) -> &'static str {
        match self.version {
            0 => "llama2c-v0",
            1 => "llama2c-v1",
            _ => "llama2c-v2",
        }
    }

    /// The tensors in file order: (name, rows, cols, count) — `count` stacked
    /// copies (one per layer) of a `[rows, cols]` matrix.
    fn layout(&self) -> Vec<(&'static str, usize, usize, usize)> {
        let c = self.config();
        let (d, h, l, v) = (c.dim, c.hidden_dim, c.n_layers, c.vocab_size);
        let (q, kv) = (c.q_dim(), c.kv_dim());
        let mats = [
            ("wq", q, d, l),
            ("wk", kv, d, l),
            ("wv", kv, d, l),
            ("wo", d, q, l),
            ("w1", h, d, l),
            ("w2", d, h, l),
            ("w3", h, d, l),
        ];
        let mut out = Vec::new();
        match self.version {
            0 => {
                out.push(("token_embedding", v, d, 1));
                out.push(("rms_att", 1, d, l));
                out.extend_from_slice(&mats[..4]);
                out.push(("rms_ffn", 1, d, l));
                out.extend_from_slice(&mats[4..]);
                out.push(("rms_final", 1, d, 1));
                out.push(("freq_cis", 1, self.seq_len * c.head_dim / 2, 2));
            }
            _ => {
                out.push(("rms_att", 1, d, l));
                out.push(("rms_ffn", 1, d, l));
                out.push(("rms_final", 1, d, 1));
                out.push(("token_embedding", v, d, 1));
                out.extend_from_slice(&mats);
            }
        }
        if !self.shared_classifier {
            out.push(("wcls", v, d, 1));
        }
        out
    }

    /// Total file size the header implies.
    pub fn expected_len(&self) -> Result<u64> {
        let mut off = self.header_len as u64;
        for (name, rows, cols, count) in self.layout() {
            off = off
                .checked_add(self.stored_bytes(name, rows, cols, count)?)
                .ok_or_else(|| Error::overflow("llama2.c size"))?;
        }
        Ok(off)
    }

    fn stored_bytes(&self, name: &str, rows: usize, cols: usize, count: usize) -> Result<u64> {
        let n = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|v| v.checked_mul(count as u64))
            .ok_or_else(|| Error::overflow(format!("llama2.c tensor {name}")))?;
        let quantized = self.version == 2 && !name.starts_with("rms");
        // v2 stores n int8 values and n / group_size f32 scales (per layer, same total).
        Ok(if quantized { n + n / self.group_size as u64 * 4 } else { n * 4 })
    }
}

/// Reads tensors one after another.
struct Cursor<'a> {
    file: &'a [u8],
    off: usize,
    h: Header,
}

impl Cursor<'_> {
    /// The next `count` stacked `[rows, cols]` matrices.
    fn take(&mut self, name: &str, rows: usize, cols: usize, count: usize) -> Result<Vec<Tensor>> {
        let n = rows * cols;
        let quantized = self.h.version == 2 && !name.starts_with("rms");
        let mut out = Vec::with_capacity(count);
        if !quantized {
            for i in 0..count {
                let t =
                    Tensor::in_file(&tensor_name(name, i, count), DType::F32, rows, cols, self.off as u64, self.file)?;
                self.off += n * 4;
                out.push(t);
            }
            return Ok(out);
        }
        // v2: per tensor (each layer's separately), all int8 values then all
        // f32 scales; groups run over the flattened tensor, not per row.
        let gs = self.h.group_size;
        if !n.is_multiple_of(gs) {
            return Err(Error::invalid(
                format!("llama2.c tensor {name}"),
                format!("{n} values are not a multiple of group size {gs}"),
            ));
        }
        let slen = n / gs * 4;
        for i in 0..count {
            let tname = tensor_name(name, i, count);
            let end =
                self.off.checked_add(n + slen).filter(|&e| e <= self.file.len()).ok_or(Error::TensorOutOfBounds {
                    name: tname.clone(),
                    offset: self.off as u64,
                    size: (n + slen) as u64,
                    file_len: self.file.len() as u64,
                })?;
            let q = &self.file[self.off..self.off + n];
            let s = &self.file[self.off + n..end];
            self.off = end;
            let scale = |sc: &[u8]| f32::from_le_bytes([sc[0], sc[1], sc[2], sc[3]]);
            if cols.is_multiple_of(gs) && gs.is_multiple_of(QK8_0) {
                // Groups lie within rows and are whole Q8_0 blocks: the int8
                // values stay, each block takes its group's scale (as f16, the
                // Q8_0 scale type), and the model runs the integer kernels.
                let mut b = Vec::new();
                let nb = n / QK8_0;
                b.try_reserve_exact(nb)
                    .map_err(|_| Error::OutOfMemory { what: format!("converting {tname}"), bytes: nb as u64 * 34 })?;
                for (qs, sc) in q.chunks_exact(gs).zip(s.chunks_exact(4)) {
                    let d = kernels::half::f32_to_f16(scale(sc));
                    for c in qs.chunks_exact(QK8_0) {
                        b.push(BlockQ8_0 { d, qs: core::array::from_fn(|i| c[i] as i8) });
                    }
                }
                out.push(Tensor::owned_q8_0(&tname, rows, cols, b));
                continue;
            }
            // Otherwise (groups straddle rows) the weights are dequantized.
            let mut w = Vec::new();
            w.try_reserve_exact(n)
                .map_err(|_| Error::OutOfMemory { what: format!("dequantizing {tname}"), bytes: n as u64 * 4 })?;
            for (qs, sc) in q.chunks_exact(gs).zip(s.chunks_exact(4)) {
                let scale = scale(sc);
                w.extend(qs.iter().map(|&v| f32::from(v as i8) * scale));
            }
            out.push(Tensor::owned(&tname, rows, cols, w));
        }
        Ok(out)
    }
}

fn tensor_name(name: &str, i: usize, count: usize) -> alloc::string::String {
    if count > 1 {
        format!("{name}[{i}]")
    } else {
        name.into()
    }
}

/// Loads a checkpoint into a runnable model
/// (clamped to the checkpoint's seq_len).
pub fn load(blob: Blob) -> Result<Model> {
    let file: &[u8] = blob.bytes();
    let h = Header::parse(file)?;
    let cfg = h.config();
    cfg.validate()?;
    let expected = h.expected_len()?;
    if (file.len() as u64) < expected {
        // Find which tensor is cut, for the message.
        let mut off = h.header_len as u64;
        for (name, rows, cols, count) in h.layout() {
            let size = h.stored_bytes(name, rows, cols, count)?;
            if off + size > file.len() as u64 {
                return Err(Error::TensorOutOfBounds {
                    name: name.into(),
                    offset: off,
                    size,
                    file_len: file.len() as u64,
                });
            }
            off += size;
        }
    }
    check_no_trailing(h.format_name(), expected, file.len() as u64)?;
    let mut cur = Cursor { file, off: h.header_len, h };
    let mut parts: Vec<(&str, Vec<Tensor>)> = Vec::new();
    for (name, rows, cols, count) in h.layout() {
        if name == "freq_cis" {
            cur.off += 2 * rows * cols * 4; // precomputed RoPE tables: we compute our own
            continue;
        }
        let t = cur.take(name, rows, cols, count)?;
        parts.push((name, t));
    }
    let mut get = |n: &str| -> Result<Vec<Tensor>> {
        let i = parts.iter().position(|(p, _)| *p == n).ok_or_else(|| Error::MissingTensor(n.into()))?;
        Ok(parts.swap_remove(i).1)
    };
    let to_norms = |ts: Vec<Tensor>| -> Result<Vec<Norm>> {
        ts.iter().map(|t| Ok(Norm { w: t.to_f32(file)?, b: None })).collect()
    };
    let att_norms = to_norms(get("rms_att")?)?;
    let ffn_norms = to_norms(get("rms_ffn")?)?;
    let final_norm = to_norms(get("rms_final")?)?.pop().ok_or_else(|| Error::MissingTensor("rms_final".into()))?;
    let token_embd = get("token_embedding")?.pop().ok_or_else(|| Error::MissingTensor("token_embedding".into()))?;
    let output = if h.shared_classifier { None } else { get("wcls")?.pop() };
    let (wq, wk, wv, wo) = (get("wq")?, get("wk")?, get("wv")?, get("wo")?);
    let (w1, w2, w3) = (get("w1")?, get("w2")?, get("w3")?);
    let mut layers = Vec::with_capacity(h.n_layers);
    let zipped = att_norms.into_iter().zip(ffn_norms).zip(wq).zip(wk).zip(wv).zip(wo).zip(w1).zip(w2).zip(w3);
    for ((((((((an, fnorm), q), k), v), o), g), d), u) in zipped {
        layers.push(Layer {
            attn_norm: an,
            wq: q,
            wk: k,
            wv: v,
            bq: None,
            bk: None,
            bv: None,
            wo: o,
            bo: None,
            ffn_norm: Some(fnorm),
            w_gate: Some(g),
            w_up: u,
            b_up: None,
            w_down: d,
            b_down: None,
        });
    }
    let weights = Weights { token_embd, pos_embd: None, layers, output_norm: final_norm, output, output_bias: None };
    // v2 weights were converted: the file bytes are no longer needed.
    let blob = if h.version == 2 { Box::new(vec![0u8; 0]) as Blob } else { blob };
    Model::new(cfg, weights, blob, h.format_name())
}

/// Parameter count of a Llama-shaped model.
fn count_params(c: &Config, untied: bool) -> u64 {
    let (d, h, q, kv) = (c.dim as u64, c.hidden_dim as u64, c.q_dim() as u64, c.kv_dim() as u64);
    let per_layer = 2 * d + d * q + 2 * d * kv + q * d + 3 * d * h;
    let v = c.vocab_size as u64 * d;
    v * if untied { 2 } else { 1 } + d + c.n_layers as u64 * per_layer
}

/// llama2.c checkpoints as a [`ModelFormat`]. Legacy v0 files have no magic,
/// so any file may be one: this format is the fallback when no other
/// recognises a file. They need a separate `tokenizer.bin`.
pub struct Llama2cFormat;

impl ModelFormat for Llama2cFormat {
    fn sniff(&self, _prefix: &[u8]) -> bool {
        true
    }

    fn probe(&self, prefix: &[u8], file_len: u64) -> Result<ModelSummary> {
        if file_len == 0 {
            return Err(Error::truncated("model file", 0, 28, 0));
        }
        let h = Header::parse(prefix)?;
        let cfg = h.config();
        cfg.validate()?;
        let expected = h.expected_len()?;
        if file_len < expected {
            return Err(Error::truncated(
                format!("{} weights", h.format_name()),
                h.header_len as u64,
                expected - h.header_len as u64,
                file_len.saturating_sub(h.header_len as u64),
            ));
        }
        check_no_trailing(h.format_name(), expected, file_len)?;
        let n_params = count_params(&cfg, !h.shared_classifier);
        let weights_in_memory = if h.version == 2 { n_params * 4 } else { file_len };
        Ok(ModelSummary {
            n_params,
            tensor_type: (if h.version == 2 { "Q8_0" } else { "F32" }).into(),
            file_size: file_len,
            needs_tokenizer: true,
            ..ModelSummary::of_config(&cfg, h.format_name(), "llama".into(), weights_in_memory)
        })
    }

    fn load_model(&self, file: Blob) -> Result<Model> {
        load(file)
    }

    fn load(&self, file: Blob, tokenizer: Option<&[u8]>) -> Result<(Model, Tokenizer)> {
        let Some(t) = tokenizer else {
            return Err(Error::Usage("a llama2.c checkpoint needs a tokenizer file (tokenizer.bin)".into()));
        };
        let h = Header::parse(file.bytes())?;
        let tok = Tokenizer::from_llama2c(t, h.vocab_size)?;
        Ok((load(file)?, tok))
    }
}

/// A checkpoint longer than its header says: the header's dimensions do not
/// describe the weights (reading them would give garbage), so it is refused.
pub(crate) fn check_no_trailing(format: &str, expected: u64, file_len: u64) -> Result<()> {
    if file_len > expected {
        return Err(Error::invalid(
            format!("{format} checkpoint"),
            format!(
                "{} bytes after the weights its header describes ({expected} bytes expected, the file has {file_len}): \
                 the header's dimensions do not match the file",
                file_len - expected
            ),
        ));
    }
    Ok(())
}
