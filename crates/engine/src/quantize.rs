//! Quantizing GGUF files the way `llama-quantize` does (without an
//! importance matrix): the same choice of type for every tensor, the same
//! reference quantizers, the same tensor order and metadata.
//!
//! Which tensors change (llama.cpp's `llama_model_quantize_impl`): only
//! tensors whose name ends in "weight", with two or more dimensions, that are
//! not norms, position embeddings, token types or MoE gates. The others are
//! copied as they are (1-D tensors stay F32).
//!
//! Which type a quantized file type gives each tensor: llama.cpp's
//! `llama_tensor_get_type` (c392e50), rule for rule, for the file types
//! offered here, without an importance matrix. In short:
//! - `output.weight`, or `token_embd.weight` when there is no separate
//!   output: Q6_K, or Q8_0 when its rows are not whole blocks of the file
//!   type's main type, or for Falcon (a Q8_0 file keeps Q8_0).
//! - The K-quant mixes raise some tensors: `attn_v.weight` (by the share of
//!   query heads per KV head, `n_gqa`, and its running count), `ffn_down`
//!   (by layer: `use_more_bits` picks the first and last eighth and every
//!   third layer in between), `attn_output.weight`, fused `attn_qkv.weight`;
//!   mixture-of-experts models with 8 experts, 70B models and Falcon have
//!   their own rules. IQ4_NL and IQ4_XS give `attn_v` Q5_K when n_gqa >= 4
//!   and the first eighth of `ffn_down` Q5_K.
//! - A row length that is not a multiple of the chosen type's block falls
//!   back: Q2_K, Q3_K and IQ4_XS to IQ4_NL, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K
//!   to Q8_0, and then to F16 if even that does not fit. Q8_0, Q4_0, Q4_1,
//!   Q5_0, Q5_1 and IQ4_NL rows that are not whole blocks are an error, as in
//!   llama.cpp.
//!
//! Tensors are written in llama.cpp's order (non-layer tensors, then layer by
//! layer, by name within each group), `general.quantization_version` = 2 and
//! `general.file_type` are (re)written at the end of the metadata.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use kernels::exec::{Executor, Serial};
use kernels::half::{bf16_to_f32, f16_to_f32};
use kernels::ops::par_chunks_mut;

use crate::gguf::{GgmlType, Gguf, GgufWriter, TensorInfo, Value};
use crate::{Error, Result};

/// The file types `quantize_gguf` makes (llama.cpp's `LLAMA_FTYPE_*`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantType {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
}

/// One row per file type: (type, llama.cpp's name, `general.file_type`
/// (llama.cpp's `llama_ftype`), the type most matrices get). Adding a
/// single-type file type is a row here (its weight type's quantizer comes
/// from the kernels' table, `kernels::types`).
const FILE_TYPES: [(QuantType, &str, u32, GgmlType); 18] = [
    (QuantType::F32, "F32", 0, GgmlType::F32),
    (QuantType::F16, "F16", 1, GgmlType::F16),
    (QuantType::Q8_0, "Q8_0", 7, GgmlType::Q8_0),
    (QuantType::Q4_0, "Q4_0", 2, GgmlType::Q4_0),
    (QuantType::Q4_1, "Q4_1", 3, GgmlType::Q4_1),
    (QuantType::Q5_0, "Q5_0", 8, GgmlType::Q5_0),
    (QuantType::Q5_1, "Q5_1", 9, GgmlType::Q5_1),
    (QuantType::Q2_K, "Q2_K", 10, GgmlType::Q2_K),
    (QuantType::Q3_K_S, "Q3_K_S", 11, GgmlType::Q3_K),
    (QuantType::Q3_K_M, "Q3_K_M", 12, GgmlType::Q3_K),
    (QuantType::Q3_K_L, "Q3_K_L", 13, GgmlType::Q3_K),
    (QuantType::Q4_K_S, "Q4_K_S", 14, GgmlType::Q4_K),
    (QuantType::Q4_K_M, "Q4_K_M", 15, GgmlType::Q4_K),
    (QuantType::Q5_K_S, "Q5_K_S", 16, GgmlType::Q5_K),
    (QuantType::Q5_K_M, "Q5_K_M", 17, GgmlType::Q5_K),
    (QuantType::Q6_K, "Q6_K", 18, GgmlType::Q6_K),
    (QuantType::IQ4_NL, "IQ4_NL", 25, GgmlType::IQ4_NL),
    (QuantType::IQ4_XS, "IQ4_XS", 30, GgmlType::IQ4_XS),
];

impl QuantType {
    /// Every type, for help texts.
    pub const ALL: [QuantType; FILE_TYPES.len()] = {
        let mut all = [QuantType::F32; FILE_TYPES.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = FILE_TYPES[i].0;
            i += 1;
        }
        all
    };

    /// Parses a name such as "q4_k_m" or "Q8_0" (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }

    fn row(self) -> &'static (QuantType, &'static str, u32, GgmlType) {
        FILE_TYPES.iter().find(|r| r.0 == self).expect("every file type has a row")
    }

    /// The name llama.cpp uses.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The `general.file_type` value (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        self.row().2
    }

    /// The type most matrices get.
    fn default_type(self) -> GgmlType {
        self.row().3
    }

    fn is_quantized(self) -> bool {
        !matches!(self, QuantType::F32 | QuantType::F16)
    }
}

/// What happens to one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    /// GGUF `ne` order.
    pub dims: Vec<u64>,
    /// The type in the input file.
    pub from: GgmlType,
    /// The type written.
    pub to: GgmlType,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and
/// every third layer in between.
pub fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

/// The layer of a "blk.N." tensor, -1 for the others: llama.cpp's
/// `sscanf(name, "blk.%d.", ...)`, which takes the number whatever follows it.
fn layer_of(name: &str) -> i64 {
    let Some(rest) = name.strip_prefix("blk.") else { return -1 };
    let rest = rest.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let signed = rest.starts_with(['-', '+']);
    let end =
        rest[usize::from(signed)..].find(|c: char| !c.is_ascii_digit()).map_or(rest.len(), |i| i + usize::from(signed));
    if end == usize::from(signed) {
        return -1;
    }
    rest[..end].parse().unwrap_or(-1)
}

/// The llama.cpp name of a `general.file_type` value (`llama_ftype`).
pub fn file_type_name(ft: u64) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        25 => "IQ4_NL",
        30 => "IQ4_XS",
        32 => "BF16",
        _ => return None,
    })
}

/// A tensor as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct TensorSpec<'a> {
    pub name: &'a str,
    /// GGUF `ne` order.
    pub dims: &'a [u64],
    /// The type it has now.
    pub ty: GgmlType,
}

/// Whether llama.cpp would quantize this tensor at all.
fn is_quantizable(t: &TensorSpec<'_>) -> bool {
    let n = t.name;
    n.ends_with("weight")
        && n_dims(t.dims) >= 2
        && !n.contains("_norm.weight")
        && !n.contains("ffn_gate_inp.weight")
        && n != "position_embd.weight"
        && n != "token_types.weight"
        && !n.contains("ssm_conv1d.weight")
        && !n.contains("attn_rel_b.weight")
        && ![
            "time_mix_first.weight",
            "time_mix_w1.weight",
            "time_mix_w2.weight",
            "time_mix_decay_w1.weight",
            "time_mix_decay_w2.weight",
            "time_mix_lerp_fused.weight",
        ]
        .iter()
        .any(|s| n.contains(s))
}

/// ggml's `ggml_n_dims`: trailing dimensions of 1 do not count.
fn n_dims(dims: &[u64]) -> usize {
    let mut n = dims.len();
    while n > 1 && dims[n - 1] == 1 {
        n -= 1;
    }
    n
}

/// What llama.cpp's rules look at besides the tensors: the architecture and
/// the hyper-parameters it reads from the GGUF metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelParams<'a> {
    /// `general.architecture`.
    pub arch: &'a str,
    /// `{arch}.block_count`.
    pub n_layer: i64,
    /// `{arch}.attention.head_count` (of the first layer).
    pub n_head: u64,
    /// `{arch}.attention.head_count_kv` (of the first layer; head_count when absent).
    pub n_head_kv: u64,
    /// `{arch}.expert_count` (0 when absent).
    pub n_expert: u64,
}

impl<'a> ModelParams<'a> {
    /// A model of `n_layer` layers of `arch` with `n_head` query and
    /// `n_head_kv` key/value heads, without experts.
    pub fn new(arch: &'a str, n_layer: i64, n_head: u64, n_head_kv: u64) -> Self {
        ModelParams { arch, n_layer, n_head, n_head_kv, n_expert: 0 }
    }

    /// The parameters of a GGUF model, read as llama.cpp reads them.
    pub fn of(g: &'a Gguf) -> Result<Self> {
        let arch = g.architecture()?;
        // A per-layer array counts by its first layer (llama.cpp's n_gqa() asks layer 0).
        let first = |key: &str| -> Option<u64> {
            match g.get(&format!("{arch}.{key}"))? {
                Value::Array(a) => a.first().and_then(Value::as_u64),
                v => v.as_u64(),
            }
        };
        let n_layer = match first("block_count") {
            Some(n) => n as i64,
            None => g.tensors.iter().map(|t| layer_of(&t.name) + 1).max().unwrap_or(0),
        };
        let n_head = first("attention.head_count").unwrap_or(0);
        let n_head_kv = first("attention.head_count_kv").unwrap_or(n_head);
        let n_expert = first("expert_count").unwrap_or(0);
        Ok(ModelParams { arch, n_layer, n_head, n_head_kv, n_expert })
    }

    /// llama.cpp's `n_gqa()`: query heads per key/value head, 0 without
    /// key/value heads.
    pub fn n_gqa(&self) -> u64 {
        self.n_head.checked_div(self.n_head_kv).unwrap_or(0)
    }

    /// Whether llama.cpp classes the model as a 70B (80 layers of the
    /// architectures that have that size; for Llama, with grouped KV heads).
    fn is_70b(&self) -> bool {
        self.n_layer == 80
            && match self.arch {
                "llama" => self.n_expert != 8 && self.n_head != self.n_head_kv,
                "deci" | "qwen2" | "minicpm" | "olmo" => true,
                _ => false,
            }
    }
}

/// The state llama.cpp carries while choosing types.
struct Chooser<'a> {
    ty: QuantType,
    model: ModelParams<'a>,
    has_output: bool,
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
}

impl Chooser<'_> {
    /// The layer a per-layer rule counts with: the running count of such
    /// tensors, or, in mixture-of-experts models (whose expert tensors are not
    /// in layer order), the layer in the name.
    fn layer(&self, counter: i64, name: &str) -> Result<i64> {
        if self.model.n_expert <= 1 {
            return Ok(counter);
        }
        let i = layer_of(name);
        if i < 0 || i >= self.model.n_layer {
            return Err(Error::invalid(
                format!("tensor '{name}'"),
                format!("no layer in 0..{} in the name", self.model.n_layer),
            ));
        }
        Ok(i)
    }

    /// `llama_tensor_get_type` for the file types offered here (no
    /// importance matrix, no type overrides).
    fn choose(&mut self, name: &str, nx: u64) -> Result<GgmlType> {
        use GgmlType as G;
        use QuantType as F;
        let ft = self.ty;
        let mut t = ft.default_type();
        let falcon = self.model.arch == "falcon";
        let (n_gqa, n_expert) = (self.model.n_gqa(), self.model.n_expert);
        if name == "output.weight" || (!self.has_output && name == "token_embd.weight") {
            // Shared embeddings get the output's type.
            if falcon || !nx.is_multiple_of(t.block_size()) {
                t = G::Q8_0;
            } else if t != G::Q8_0 {
                t = G::Q6_K;
            }
        } else if name == "token_embd.weight" {
            // No rule for these file types.
        } else if name.contains("attn_v.weight") {
            let (i, n) = (self.i_attention_wv, self.n_attention_wv);
            t = match ft {
                F::Q2_K if n_gqa >= 4 => G::Q4_K,
                F::Q2_K => G::Q3_K,
                F::Q3_K_M if i < 2 => G::Q5_K,
                F::Q3_K_M => G::Q4_K,
                F::Q3_K_L => G::Q5_K,
                F::IQ4_NL | F::IQ4_XS if n_gqa >= 4 => G::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => G::Q6_K,
                F::Q4_K_S if i < 4 => G::Q5_K,
                _ => t,
            };
            // A 70B's V matrix is 8 times smaller than Q's: more bits cost little.
            if self.model.is_70b() && matches!(t, G::Q3_K | G::Q4_K) {
                t = G::Q5_K;
            }
            if n_expert == 8 {
                t = G::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if name.contains("attn_k.weight") {
            if n_expert == 8 {
                t = G::Q8_0;
            }
        } else if name.contains("attn_q.weight") {
            // No rule for these file types.
        } else if name.contains("ffn_down") {
            let (i, n) = (self.layer(self.i_ffn_down, name)?, self.model.n_layer);
            t = match ft {
                F::Q2_K => G::Q3_K,
                F::Q3_K_M if i < n / 16 => G::Q5_K,
                F::Q3_K_M if !falcon || use_more_bits(i, n) => G::Q4_K,
                F::Q3_K_M => G::Q3_K,
                F::Q3_K_L if falcon => G::Q4_K,
                F::Q3_K_L => G::Q5_K,
                F::Q4_K_M if falcon && i < n / 16 => G::Q6_K,
                F::Q4_K_M if falcon && use_more_bits(i, n) => G::Q5_K,
                F::Q4_K_M if falcon => G::Q4_K,
                F::Q4_K_M if use_more_bits(i, n) => G::Q6_K,
                F::IQ4_NL | F::IQ4_XS if i < n / 8 => G::Q5_K,
                F::Q5_K_M if use_more_bits(i, n) => G::Q6_K,
                F::Q4_K_S if !falcon && i < n / 8 => G::Q5_K,
                _ => t,
            };
            self.i_ffn_down += 1;
        } else if name.contains("attn_output.weight") {
            t = match ft {
                _ if falcon => {
                    if ft == F::Q3_K_L {
                        G::Q4_K
                    } else {
                        t
                    }
                }
                F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::IQ4_NL | F::Q4_K_S | F::Q4_K_M | F::IQ4_XS if n_expert == 8 => {
                    G::Q5_K
                }
                _ if n_expert == 8 => t,
                F::Q2_K => G::Q3_K,
                F::Q3_K_M => G::Q4_K,
                F::Q3_K_L => G::Q5_K,
                _ => t,
            };
        } else if name.contains("attn_qkv.weight") {
            t = match ft {
                F::Q3_K_M | F::Q3_K_L => G::Q4_K,
                F::Q4_K_M => G::Q5_K,
                F::Q5_K_M => G::Q6_K,
                _ => t,
            };
        }
        if !nx.is_multiple_of(t.block_size()) {
            // Rows that are not whole blocks: a nearby type with smaller blocks.
            t = match t {
                G::Q2_K | G::Q3_K | G::IQ4_XS => G::IQ4_NL,
                G::Q4_K => G::Q5_0,
                G::Q5_K => G::Q5_1,
                G::Q6_K => G::Q8_0,
                other => {
                    return Err(Error::invalid(
                        format!("tensor '{name}'"),
                        format!(
                            "rows of {nx} are not a whole number of {} blocks of {}",
                            other.name(),
                            other.block_size()
                        ),
                    ))
                }
            };
            if !nx.is_multiple_of(t.block_size()) {
                t = G::F16;
            }
        }
        Ok(t)
    }
}

/// The type every tensor of `g` gets for `ty`, in the order they are written.
pub fn plan(g: &Gguf, ty: QuantType) -> Result<Vec<TensorPlan>> {
    let model = ModelParams::of(g)?;
    let specs: Vec<TensorSpec<'_>> =
        g.tensors.iter().map(|t: &TensorInfo| TensorSpec { name: &t.name, dims: &t.dims, ty: t.ty }).collect();
    plan_tensors(&specs, &model, ty)
}

/// [`plan`] for a `model` described by its tensors (in any order): the plans
/// come in llama.cpp's order (non-layer tensors first, then layer by layer,
/// by name within each group).
pub fn plan_tensors(tensors: &[TensorSpec<'_>], model: &ModelParams<'_>, ty: QuantType) -> Result<Vec<TensorPlan>> {
    let is_wv =
        |n: &str| n.contains("attn_v.weight") || n.contains("attn_qkv.weight") || n.contains("attn_kv_b.weight");
    let mut c = Chooser {
        ty,
        model: *model,
        has_output: tensors.iter().any(|t| t.name == "output.weight"),
        n_attention_wv: tensors.iter().filter(|t| is_wv(t.name)).count() as i64,
        i_attention_wv: 0,
        i_ffn_down: 0,
    };
    let mut ordered: Vec<&TensorSpec<'_>> = tensors.iter().collect();
    ordered.sort_by(|a, b| (layer_of(a.name), a.name).cmp(&(layer_of(b.name), b.name)));
    let mut out = Vec::with_capacity(tensors.len());
    for t in ordered {
        let mut to = t.ty;
        if is_quantizable(t) {
            to = if ty.is_quantized() { c.choose(t.name, t.dims[0])? } else { ty.default_type() };
        }
        out.push(TensorPlan { name: t.name.to_string(), dims: t.dims.to_vec(), from: t.ty, to });
    }
    Ok(out)
}

/// The tensor's data as f32 (from F32, F16 or BF16).
fn to_f32(t: &TensorInfo, data: &[u8]) -> Result<Vec<f32>> {
    let conv: fn(&[u8]) -> f32 = match t.ty {
        GgmlType::F32 => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
        GgmlType::BF16 => |b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])),
        other => {
            return Err(Error::invalid(
                format!("tensor '{}'", t.name),
                format!("requantizing from {} is not supported: start from an F32, F16 or BF16 file", other.name()),
            ))
        }
    };
    let size = if t.ty == GgmlType::F32 { 4 } else { 2 };
    let mut v = Vec::new();
    v.try_reserve_exact(data.len() / size)
        .map_err(|_| Error::OutOfMemory { what: format!("tensor '{}'", t.name), bytes: data.len() as u64 * 2 })?;
    v.extend(data.chunks_exact(size).map(conv));
    Ok(v)
}

/// `x` as the bytes of a tensor of type `to`, with the reference quantizer
/// of the kernels' table of types, in parallel pieces of whole blocks.
pub fn encode(exec: &dyn Executor, x: &[f32], to: GgmlType) -> Result<Vec<u8>> {
    let unsupported = || Error::invalid("quantization type", format!("{} is not supported", to.name()));
    let info = to.weight_type().ok_or_else(unsupported)?.info();
    let quantize = info.quantize.ok_or_else(unsupported)?;
    let (bs, bb) = (info.block_size, info.block_bytes);
    if !x.len().is_multiple_of(bs) {
        return Err(Error::invalid("quantization", format!("{} values are not whole {} blocks", x.len(), info.name)));
    }
    let n = x.len() / bs * bb;
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| Error::OutOfMemory { what: format!("{} tensor", info.name), bytes: n as u64 })?;
    v.resize(n, 0u8);
    // Pieces of about 64K values keep every thread busy without much overhead.
    let per = (65536 / bs).max(1);
    par_chunks_mut(exec, &mut v, per * bb, &|i, piece| {
        let start = i * per * bs;
        quantize(&x[start..start + piece.len() / bb * bs], piece)
    });
    Ok(v)
}

/// Quantizes a GGUF model file (single-threaded); see the module docs.
pub fn quantize_gguf(file: &[u8], ty: QuantType) -> Result<GgufWriter> {
    quantize_gguf_with(file, ty, &Serial, &mut |_| {})
}

/// [`quantize_gguf`] spreading the work over `exec`, calling `progress`
/// before each tensor.
pub fn quantize_gguf_with(
    file: &[u8],
    ty: QuantType,
    exec: &dyn Executor,
    progress: &mut dyn FnMut(&TensorPlan),
) -> Result<GgufWriter> {
    let g = Gguf::parse(file, file.len() as u64)?;
    let plan = plan(&g, ty)?;
    let mut w = GgufWriter::new();
    for (k, v) in &g.metadata {
        if k != "general.quantization_version" && k != "general.file_type" {
            w.add_kv(k, v.clone());
        }
    }
    w.add_kv("general.quantization_version", Value::U32(2));
    w.add_kv("general.file_type", Value::U32(ty.file_type()));
    for p in &plan {
        progress(p);
        let t = g.tensor(&p.name)?;
        let data = g.tensor_data(file, &p.name)?;
        let bytes = if p.to == p.from {
            data.to_vec()
        } else {
            let x = to_f32(t, data)?;
            encode(exec, &x, p.to)?
        };
        w.add_tensor(&p.name, &p.dims, p.to, bytes)?;
    }
    Ok(w)
}

/// A short description of a plan: "Q4_K x 155, Q6_K x 46, F32 x 45".
pub fn summarize(plan: &[TensorPlan]) -> String {
    let mut counts: Vec<(GgmlType, usize)> = Vec::new();
    for p in plan {
        match counts.iter_mut().find(|(t, _)| *t == p.to) {
            Some((_, n)) => *n += 1,
            None => counts.push((p.to, 1)),
        }
    }
    counts.iter().map(|(t, n)| format!("{} x {n}", t.name())).collect::<Vec<_>>().join(", ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_numbers_parse_like_sscanf() {
        assert_eq!(layer_of("blk.12.ffn_down.weight"), 12);
        assert_eq!(layer_of("blk.0.attn_q.weight"), 0);
        assert_eq!(layer_of("output.weight"), -1);
        assert_eq!(layer_of("blk.x.y"), -1);
        assert_eq!(layer_of("blk.7"), 7);
        assert_eq!(layer_of("blk.-"), -1);
    }

    #[test]
    fn use_more_bits_matches_llama_cpp_for_32_layers() {
        // For 32 layers: 0..4, 28..32 and every third from 4 (4 + 2, 4 + 5, ...).
        let picked: Vec<i64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(picked, [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
        let picked: Vec<i64> = (0..22).filter(|&i| use_more_bits(i, 22)).collect();
        assert_eq!(picked, [0, 1, 4, 7, 10, 13, 16, 19, 20, 21]);
    }

    #[test]
    fn q5_k_falls_back_to_q5_1_like_llama_cpp() {
        // Fused QKV gets Q5_K in Q4_K_M; rows of 96 are not whole super-blocks.
        let dims = [96u64, 288];
        let t = [TensorSpec { name: "blk.0.attn_qkv.weight", dims: &dims, ty: GgmlType::F32 }];
        let m = ModelParams::new("llama", 1, 4, 4);
        let p = plan_tensors(&t, &m, QuantType::Q4_K_M).unwrap();
        assert_eq!(p[0].to, GgmlType::Q5_1);
        // Rows that are not whole 32-blocks either go to F16.
        let dims = [80u64, 240];
        let t = [TensorSpec { name: "blk.0.attn_qkv.weight", dims: &dims, ty: GgmlType::F32 }];
        assert_eq!(plan_tensors(&t, &m, QuantType::Q4_K_M).unwrap()[0].to, GgmlType::F16);
    }

    #[test]
    fn type_names_parse() {
        assert_eq!(QuantType::parse("q4_k_m"), Some(QuantType::Q4_K_M));
        assert_eq!(QuantType::parse("Q8_0"), Some(QuantType::Q8_0));
        assert_eq!(QuantType::parse("q4_1"), Some(QuantType::Q4_1));
        assert_eq!(QuantType::parse("Q5_1").map(QuantType::file_type), Some(9));
        assert_eq!(QuantType::parse("q3_k"), None);
        assert_eq!(QuantType::parse("iq4_xs").map(QuantType::file_type), Some(30));
        // Every file type's id names it back.
        for t in QuantType::ALL {
            assert_eq!(file_type_name(u64::from(t.file_type())), Some(t.name()));
        }
    }
}
