//! Models and tokenizers from GGUF files, with llama.cpp's tensor names and
//! metadata keys.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::format::{ModelFormat, ModelSummary};
use crate::gguf::{Gguf, TensorInfo};
use crate::model::{Arch, Blob, Config, DType, Layer, Model, Norm, NormKind, Role, RopeKind, Tensor, Weights};
use crate::tokenizer::{bpe, spm, Tokenizer};
use crate::{Error, Result};

fn arch_of(g: &Gguf) -> Result<Arch> {
    let name = g.architecture()?;
    Arch::from_gguf(name).ok_or_else(|| Error::UnsupportedArchitecture(name.to_string()))
}

fn usize_key(g: &Gguf, key: &str) -> Result<usize> {
    usize::try_from(g.get_u64(key)?).map_err(|_| Error::overflow(key.to_string()))
}

fn opt_usize(g: &Gguf, key: &str) -> Result<Option<usize>> {
    if g.get(key).is_none() {
        return Ok(None);
    }
    usize_key(g, key).map(Some)
}

fn opt_f32(g: &Gguf, key: &str) -> Result<Option<f32>> {
    if g.get(key).is_none() {
        return Ok(None);
    }
    g.get_f32(key).map(Some)
}

/// The model configuration from GGUF metadata.
pub fn config(g: &Gguf) -> Result<Config> {
    if g.tensors.is_empty() {
        return Err(Error::invalid(
            "model file",
            "the GGUF has no tensors: it holds only a vocabulary (like llama.cpp's ggml-vocab-*.gguf), not a model",
        ));
    }
    let arch = arch_of(g)?;
    let spec = arch.spec();
    let a = g.architecture()?;
    let k = |s: &str| format!("{a}.{s}");
    let dim = usize_key(g, &k("embedding_length"))?;
    let n_heads = usize_key(g, &k("attention.head_count"))?;
    if n_heads == 0 {
        return Err(Error::invalid(k("attention.head_count"), "0"));
    }
    let n_kv_heads = opt_usize(g, &k("attention.head_count_kv"))?.unwrap_or(n_heads);
    let head_dim = opt_usize(g, &k("attention.key_length"))?.unwrap_or(dim / n_heads);
    let vocab_size = match g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
        Some(t) => t.len(),
        None => g.tensor(&Role::TokenEmbd.name(None, false))?.dims.get(1).copied().unwrap_or(0) as usize,
    };
    let eps_key = k(&format!("attention.{}", spec.norm.eps_key()));
    let eps = match spec.norm {
        NormKind::Layer => g.get_f32(&eps_key)?,
        NormKind::Rms => opt_f32(g, &eps_key)?.unwrap_or(1e-5),
    };
    let n_rot = match spec.rope {
        RopeKind::Learned => 0,
        _ => opt_usize(g, &k("rope.dimension_count"))?.unwrap_or(head_dim),
    };
    let cfg = Config {
        arch,
        dim,
        hidden_dim: usize_key(g, &k("feed_forward_length"))?,
        n_layers: usize_key(g, &k("block_count"))?,
        n_heads,
        n_kv_heads,
        head_dim,
        vocab_size,
        max_ctx: usize_key(g, &k("context_length"))?,
        norm: spec.norm,
        norm_eps: eps,
        ffn: spec.ffn,
        n_rot,
        rope_base: opt_f32(g, &k("rope.freq_base"))?.unwrap_or(10000.0),
        rope_neox: spec.rope == RopeKind::Neox,
        sliding_window: opt_usize(g, &k("attention.sliding_window"))?.filter(|&w| w > 0),
        parallel_residual: spec.parallel_residual,
        embed_scale: spec.embed_scale.then(|| kernels::ops::libm_sqrt(dim as f32)),
    };
    cfg.validate()?;
    Ok(cfg)
}

fn dtype(t: &TensorInfo) -> Result<DType> {
    DType::from_gguf_id(t.ty.id())
        .ok_or_else(|| Error::UnsupportedTensorType { name: t.name.clone(), ty: t.ty.name().to_string() })
}

/// Header-only summary for menus.
pub fn probe(prefix: &[u8], file_len: u64) -> Result<ModelSummary> {
    let g = Gguf::parse(prefix, file_len)?;
    let cfg = config(&g)?;
    let n_params = g.tensors.iter().map(TensorInfo::n_elements).sum();
    let main =
        g.tensor(&Role::AttnQ.name(Some(0), false)).or_else(|_| g.tensor(&Role::AttnQkv.name(Some(0), false)))?;
    Ok(ModelSummary {
        n_params,
        // The K-quant mixes ("Q4_K_M") say more than their first matrix's type.
        tensor_type: g
            .get("general.file_type")
            .and_then(crate::gguf::Value::as_u64)
            .and_then(crate::quantize::file_type_name)
            .filter(|n| n.ends_with("_S") || n.ends_with("_M") || n.ends_with("_L"))
            .unwrap_or(main.ty.name())
            .to_string(),
        file_size: file_len,
        needs_tokenizer: g.get("tokenizer.ggml.tokens").is_none(),
        ..ModelSummary::of_config(&cfg, "gguf", g.architecture()?.to_string(), file_len)
    })
}

struct Ctx<'a> {
    g: &'a Gguf,
    file: &'a [u8],
}

impl Ctx<'_> {
    /// A `[rows, cols]` matrix; the GGUF dims are `[cols, rows]`.
    fn mat(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor> {
        let t = self.g.tensor(name)?;
        let want = [cols as u64, rows as u64];
        if t.dims.as_slice() != want {
            return Err(Error::TensorShape { name: name.into(), expected: want.to_vec(), found: t.dims.clone() });
        }
        Tensor::in_file(name, dtype(t)?, rows, cols, t.offset, self.file)
    }
    fn opt_mat(&self, name: &str, rows: usize, cols: usize) -> Result<Option<Tensor>> {
        if self.g.tensor(name).is_err() {
            return Ok(None);
        }
        self.mat(name, rows, cols).map(Some)
    }
    /// A 1-D tensor as f32.
    fn vec(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.g.tensor(name)?;
        if t.dims.as_slice() != [len as u64] {
            return Err(Error::TensorShape {
                name: name.into(),
                expected: alloc::vec![len as u64],
                found: t.dims.clone(),
            });
        }
        Tensor::in_file(name, dtype(t)?, 1, len, t.offset, self.file)?.to_f32(self.file)
    }
    fn opt_vec(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.g.tensor(name).is_err() {
            return Ok(None);
        }
        self.vec(name, len).map(Some)
    }
    fn norm(&self, role: Role, layer: Option<usize>, len: usize) -> Result<Norm> {
        Ok(Norm { w: self.vec(&role.name(layer, false), len)?, b: self.opt_vec(&role.name(layer, true), len)? })
    }
}

/// Splits a fused `[q_dim + 2 kv_dim, dim]` QKV matrix into three row ranges.
pub(crate) fn split_rows(t: &Tensor, parts: [usize; 3]) -> Result<[Tensor; 3]> {
    let crate::model::Tensor { name, dtype, cols, .. } = t;
    let row_bytes = dtype.bytes(*cols).ok_or_else(|| Error::invalid(format!("tensor '{name}'"), "row length"))?;
    let base = match t.data {
        crate::model::tensor_data::File { offset, .. } => offset,
        _ => return Err(Error::invalid(format!("tensor '{name}'"), "fused QKV must come from the file")),
    };
    let mut start = 0;
    let mk = |rows: usize, start: usize, suffix: &str| Tensor {
        name: format!("{name}[{suffix}]"),
        dtype: *dtype,
        rows,
        cols: *cols,
        data: crate::model::tensor_data::File { offset: base + start * row_bytes, len: rows * row_bytes },
    };
    let q = mk(parts[0], start, "q");
    start += parts[0];
    let k = mk(parts[1], start, "k");
    start += parts[1];
    let v = mk(parts[2], start, "v");
    Ok([q, k, v])
}

/// Loads a runnable model from a GGUF file.
pub fn load(blob: Blob) -> Result<Model> {
    let file: &[u8] = blob.bytes();
    let g = Gguf::parse(file, file.len() as u64)?;
    load_parsed(&g, blob)
}

/// Loads a runnable model from a GGUF file already parsed into `g`.
fn load_parsed(g: &Gguf, blob: Blob) -> Result<Model> {
    let file: &[u8] = blob.bytes();
    let c = config(g)?;
    let x = Ctx { g, file };
    let spec = c.arch.spec();
    let (d, h, q, kv) = (c.dim, c.hidden_dim, c.q_dim(), c.kv_dim());
    let token_embd = x.mat(&Role::TokenEmbd.name(None, false), c.vocab_size, d)?;
    let pos_embd = match spec.rope {
        RopeKind::Learned => Some(x.mat(&Role::PosEmbd.name(None, false), c.max_ctx, d)?),
        _ => None,
    };
    let mut layers = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let w = |r: Role| r.name(Some(i), false);
        let b = |r: Role| r.name(Some(i), true);
        let (wq, wk, wv, bq, bk, bv) = match x.opt_mat(&w(Role::AttnQkv), q + 2 * kv, d)? {
            Some(fused) => {
                let [wq, wk, wv] = split_rows(&fused, [q, kv, kv])?;
                let (bq, bk, bv) = match x.opt_vec(&b(Role::AttnQkv), q + 2 * kv)? {
                    Some(b) => (Some(b[..q].to_vec()), Some(b[q..q + kv].to_vec()), Some(b[q + kv..].to_vec())),
                    None => (None, None, None),
                };
                (wq, wk, wv, bq, bk, bv)
            }
            None => (
                x.mat(&w(Role::AttnQ), q, d)?,
                x.mat(&w(Role::AttnK), kv, d)?,
                x.mat(&w(Role::AttnV), kv, d)?,
                x.opt_vec(&b(Role::AttnQ), q)?,
                x.opt_vec(&b(Role::AttnK), kv)?,
                x.opt_vec(&b(Role::AttnV), kv)?,
            ),
        };
        layers.push(Layer {
            attn_norm: x.norm(Role::AttnNorm, Some(i), d)?,
            wq,
            wk,
            wv,
            bq,
            bk,
            bv,
            wo: x.mat(&w(Role::AttnOut), d, q)?,
            bo: x.opt_vec(&b(Role::AttnOut), d)?,
            ffn_norm: if spec.parallel_residual { None } else { Some(x.norm(Role::FfnNorm, Some(i), d)?) },
            w_gate: if spec.has_gate() { Some(x.mat(&w(Role::FfnGate), h, d)?) } else { None },
            w_up: x.mat(&w(Role::FfnUp), h, d)?,
            b_up: x.opt_vec(&b(Role::FfnUp), h)?,
            w_down: x.mat(&w(Role::FfnDown), d, h)?,
            b_down: x.opt_vec(&b(Role::FfnDown), d)?,
        });
    }
    let weights = Weights {
        token_embd,
        pos_embd,
        layers,
        output_norm: x.norm(Role::OutputNorm, None, d)?,
        output: x.opt_mat(&Role::Output.name(None, false), c.vocab_size, d)?,
        output_bias: x.opt_vec(&Role::Output.name(None, true), c.vocab_size)?,
    };
    let name = g.get("general.name").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let chat_template = g.get("tokenizer.chat_template").and_then(|v| v.as_str()).map(str::to_string);
    let mut m = Model::new(c, weights, blob, "gguf")?;
    m.name = name;
    m.chat_template = chat_template;
    Ok(m)
}

/// The tokenizer stored in a GGUF file's metadata.
pub fn tokenizer(file: &[u8]) -> Result<Tokenizer> {
    let g = Gguf::parse(file, file.len() as u64)?;
    tokenizer_from(&g)
}

/// The tokenizer from parsed GGUF metadata.
pub fn tokenizer_from(g: &Gguf) -> Result<Tokenizer> {
    let model = g
        .get_str("tokenizer.ggml.model")
        .map_err(|_| Error::MissingKey("tokenizer.ggml.model (the file has no tokenizer)".into()))?;
    match model {
        "llama" => {
            let pieces: Vec<String> = g.get_str_array("tokenizer.ggml.tokens")?.into_iter().map(String::from).collect();
            let n = pieces.len();
            let scores = if g.get("tokenizer.ggml.scores").is_some() {
                g.get_f32_array("tokenizer.ggml.scores")?
            } else {
                alloc::vec![0.0; n]
            };
            let types = if g.get("tokenizer.ggml.token_type").is_some() {
                g.get_i32_array("tokenizer.ggml.token_type")?.into_iter().map(spm::TokenType::from_gguf).collect()
            } else {
                alloc::vec![spm::TokenType::Normal; n]
            };
            let id = |k: &str, d: u32| -> Result<u32> {
                if g.get(k).is_some() {
                    g.get_u32(k)
                } else {
                    Ok(d)
                }
            };
            let mut t = spm::SpmTokenizer::new(
                pieces,
                scores,
                types,
                id("tokenizer.ggml.bos_token_id", 1)?,
                id("tokenizer.ggml.eos_token_id", 2)?,
                id("tokenizer.ggml.unknown_token_id", 0)?,
            )?;
            if g.get("tokenizer.ggml.add_bos_token").is_some() {
                t.set_add_bos(g.get_bool("tokenizer.ggml.add_bos_token")?);
            }
            if g.get("tokenizer.ggml.add_space_prefix").is_some() {
                t.set_add_space_prefix(g.get_bool("tokenizer.ggml.add_space_prefix")?);
            }
            Ok(Tokenizer::Spm(t))
        }
        "gpt2" => Ok(Tokenizer::Bpe(bpe::BpeTokenizer::from_gguf(g)?)),
        other => Err(Error::invalid("tokenizer.ggml.model", format!("'{other}' is not supported"))),
    }
}

/// GGUF files as a [`ModelFormat`]: the tokenizer is in the metadata, and
/// [`ModelFormat::load`] parses the file once for both.
pub struct GgufFormat;

impl ModelFormat for GgufFormat {
    fn sniff(&self, prefix: &[u8]) -> bool {
        prefix.starts_with(b"GGUF")
    }

    fn probe(&self, prefix: &[u8], file_len: u64) -> Result<ModelSummary> {
        probe(prefix, file_len)
    }

    fn load_model(&self, file: Blob) -> Result<Model> {
        load(file)
    }

    fn load(&self, file: Blob, _tokenizer: Option<&[u8]>) -> Result<(Model, Tokenizer)> {
        let bytes: &[u8] = file.bytes();
        let g = Gguf::parse(bytes, bytes.len() as u64)?;
        let tok = tokenizer_from(&g)?;
        Ok((load_parsed(&g, file)?, tok))
    }
}
