//! llm.c GPT-2 checkpoints (`gpt2_124M.bin`): a 256 x int32 header (magic
//! 20240326; version 3 = f32, 5 = bf16), then every parameter in a fixed order.

use alloc::format;
use alloc::vec::Vec;

use crate::format::{ModelFormat, ModelSummary};
use crate::model::{Arch, Blob, Config, DType, FfnKind, Layer, Model, Norm, NormKind, Tensor, Weights};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The header's first word.
pub const MAGIC: u32 = 20_240_326;
const HEADER: usize = 256 * 4;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub dtype: DType,
    pub max_seq_len: usize,
    pub vocab_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub channels: usize,
    pub padded_vocab_size: usize,
}

impl Header {
    /// Parses the 1 KiB header.
    pub fn parse(b: &[u8]) -> Result<Self> {
        if b.len() < HEADER {
            return Err(Error::truncated("llm.c header", 0, HEADER as u64, b.len() as u64));
        }
        let w = |i: usize| i32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        if w(0) as u32 != MAGIC {
            return Err(Error::BadMagic { format: "llm.c", found: w(0) as u32 });
        }
        let dtype = match w(1) {
            3 => DType::F32,
            5 => DType::BF16,
            v => return Err(Error::UnsupportedVersion { format: "llm.c", version: v as u32 }),
        };
        let pos = |i: usize, what: &str| -> Result<usize> {
            let v = w(i);
            if v <= 0 || v > (1 << 24) {
                return Err(Error::invalid(format!("llm.c header field {what}"), format!("{v}")));
            }
            Ok(v as usize)
        };
        let h = Header {
            dtype,
            max_seq_len: pos(2, "max_seq_len")?,
            vocab_size: pos(3, "vocab_size")?,
            n_layers: pos(4, "num_layers")?,
            n_heads: pos(5, "num_heads")?,
            channels: pos(6, "channels")?,
            padded_vocab_size: pos(7, "padded_vocab_size")?,
        };
        if h.padded_vocab_size < h.vocab_size {
            return Err(Error::invalid(
                "llm.c header",
                format!("padded_vocab_size {} is smaller than vocab_size {}", h.padded_vocab_size, h.vocab_size),
            ));
        }
        if !h.channels.is_multiple_of(h.n_heads) {
            return Err(Error::invalid(
                "llm.c header",
                format!("channels {} is not a multiple of num_heads {}", h.channels, h.n_heads),
            ));
        }
        Ok(h)
    }

    /// The model configuration.
    pub fn config(&self) -> Config {
        Config {
            arch: Arch::Gpt2,
            dim: self.channels,
            hidden_dim: 4 * self.channels,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_heads,
            head_dim: self.channels / self.n_heads,
            vocab_size: self.vocab_size,
            max_ctx: self.max_seq_len,
            norm: NormKind::Layer,
            norm_eps: 1e-5,
            ffn: FfnKind::Gelu,
            n_rot: 0,
            rope_base: 10000.0,
            rope_neox: false,
            sliding_window: None,
            parallel_residual: false,
            embed_scale: None,
        }
    }

    /// The parameters in file order: (name, rows, cols, count).
    fn layout(&self) -> [(&'static str, usize, usize, usize); 16] {
        let (c, l) = (self.channels, self.n_layers);
        [
            ("wte", self.padded_vocab_size, c, 1),
            ("wpe", self.max_seq_len, c, 1),
            ("ln1w", 1, c, l),
            ("ln1b", 1, c, l),
            ("qkvw", 3 * c, c, l),
            ("qkvb", 1, 3 * c, l),
            ("attprojw", c, c, l),
            ("attprojb", 1, c, l),
            ("ln2w", 1, c, l),
            ("ln2b", 1, c, l),
            ("fcw", 4 * c, c, l),
            ("fcb", 1, 4 * c, l),
            ("fcprojw", c, 4 * c, l),
            ("fcprojb", 1, c, l),
            ("lnfw", 1, c, 1),
            ("lnfb", 1, c, 1),
        ]
    }

    /// Total file size the header implies.
    pub fn expected_len(&self) -> Result<u64> {
        let es = if self.dtype == DType::F32 { 4u64 } else { 2 };
        self.layout().iter().try_fold(HEADER as u64, |acc, (n, r, c, k)| {
            (*r as u64)
                .checked_mul(*c as u64)
                .and_then(|v| v.checked_mul(*k as u64))
                .and_then(|v| v.checked_mul(es))
                .and_then(|v| v.checked_add(acc))
                .ok_or_else(|| Error::overflow(format!("llm.c tensor {n}")))
        })
    }

    /// Number of parameters (with the padded vocabulary rows).
    pub fn n_params(&self) -> u64 {
        self.layout().iter().map(|(_, r, c, k)| (*r * *c * *k) as u64).sum()
    }
}

/// Loads an llm.c checkpoint.
pub fn load(blob: Blob) -> Result<Model> {
    let file: &[u8] = blob.bytes();
    let h = Header::parse(file)?;
    let cfg = h.config();
    cfg.validate()?;
    let expected = h.expected_len()?;
    if (file.len() as u64) < expected {
        return Err(Error::truncated(
            "llm.c parameters",
            HEADER as u64,
            expected - HEADER as u64,
            file.len() as u64 - HEADER as u64,
        ));
    }
    crate::llama2c::check_no_trailing("llm.c", expected, file.len() as u64)?;
    let es = if h.dtype == DType::F32 { 4 } else { 2 };
    let mut off = HEADER;
    let mut parts: Vec<Vec<Tensor>> = Vec::new();
    for (name, rows, cols, count) in h.layout() {
        let mut v = Vec::with_capacity(count);
        for i in 0..count {
            let t = Tensor::in_file(&format!("{name}[{i}]"), h.dtype, rows, cols, off as u64, file)?;
            off += rows * cols * es;
            v.push(t);
        }
        parts.push(v);
    }
    let vec_of = |t: &Tensor| t.to_f32(file);
    let mut it = parts.into_iter();
    let mut next = || it.next().ok_or_else(|| Error::MissingTensor("llm.c parameter".into()));
    let mut wte = next()?.remove(0);
    // Only the first vocab_size rows of the padded table are real tokens.
    wte.truncate_rows(h.vocab_size);
    let wpe = next()?.remove(0);
    let (ln1w, ln1b, qkvw, qkvb) = (next()?, next()?, next()?, next()?);
    let (projw, projb, ln2w, ln2b) = (next()?, next()?, next()?, next()?);
    let (fcw, fcb, fcprojw, fcprojb) = (next()?, next()?, next()?, next()?);
    let (lnfw, lnfb) = (next()?.remove(0), next()?.remove(0));
    let c = h.channels;
    let mut layers = Vec::with_capacity(h.n_layers);
    for l in 0..h.n_layers {
        let [wq, wk, wv] = crate::gguf_model::split_rows(&qkvw[l], [c, c, c])?;
        let b = vec_of(&qkvb[l])?;
        layers.push(Layer {
            attn_norm: Norm { w: vec_of(&ln1w[l])?, b: Some(vec_of(&ln1b[l])?) },
            wq,
            wk,
            wv,
            bq: Some(b[..c].to_vec()),
            bk: Some(b[c..2 * c].to_vec()),
            bv: Some(b[2 * c..].to_vec()),
            wo: projw[l].clone(),
            bo: Some(vec_of(&projb[l])?),
            ffn_norm: Some(Norm { w: vec_of(&ln2w[l])?, b: Some(vec_of(&ln2b[l])?) }),
            w_gate: None,
            w_up: fcw[l].clone(),
            b_up: Some(vec_of(&fcb[l])?),
            w_down: fcprojw[l].clone(),
            b_down: Some(vec_of(&fcprojb[l])?),
        });
    }
    let weights = Weights {
        token_embd: wte,
        pos_embd: Some(wpe),
        layers,
        output_norm: Norm { w: vec_of(&lnfw)?, b: Some(vec_of(&lnfb)?) },
        output: None,
        output_bias: None,
    };
    Model::new(cfg, weights, blob, "llm.c")
}

/// llm.c checkpoints as a [`ModelFormat`]. They carry no tokenizer: load
/// them with [`ModelFormat::load_model`] and a GPT-2 tokenizer.
pub struct LlmcFormat;

impl ModelFormat for LlmcFormat {
    fn sniff(&self, prefix: &[u8]) -> bool {
        prefix.starts_with(&MAGIC.to_le_bytes())
    }

    fn probe(&self, prefix: &[u8], file_len: u64) -> Result<ModelSummary> {
        let h = Header::parse(prefix)?;
        let cfg = h.config();
        cfg.validate()?;
        let expected = h.expected_len()?;
        if file_len < expected {
            return Err(Error::truncated(
                "llm.c parameters",
                HEADER as u64,
                expected - HEADER as u64,
                file_len.saturating_sub(HEADER as u64),
            ));
        }
        crate::llama2c::check_no_trailing("llm.c", expected, file_len)?;
        Ok(ModelSummary {
            n_params: h.n_params(),
            tensor_type: h.dtype.name().into(),
            file_size: file_len,
            needs_tokenizer: true,
            ..ModelSummary::of_config(&cfg, "llm.c", "gpt2".into(), file_len)
        })
    }

    fn load_model(&self, file: Blob) -> Result<Model> {
        load(file)
    }

    fn load(&self, _file: Blob, _tokenizer: Option<&[u8]>) -> Result<(Model, Tokenizer)> {
        Err(Error::Usage(
            "an llm.c checkpoint has no tokenizer: use load_model and a GPT-2 tokenizer (encoder.json + vocab.bpe)"
                .into(),
        ))
    }
}
