//! The Hugging Face side of each architecture: which checkpoint tensor
//! becomes which GGUF tensor (by its engine `Role`, whose GGUF name the
//! engine's table gives), what it must look like, and which config keys
//! give the hyper-parameters. What the GGUF file says about the
//! architecture (its name, norm, RoPE kind) comes from the engine's table
//! (`engine::model::ARCHS`), which the GGUF loader reads too. Adding an
//! architecture means a row there and one `Arch` here.
//!
//! The names and rules follow llama.cpp's `convert_hf_to_gguf.py` and its
//! loader (`llama-model.cpp`) at commit c392e509 (the version the test data
//! in shared/testdata refers to); deviations are noted where they are made.

use super::config::JsonFile;
use anyhow::{bail, ensure, Result};
pub use engine::model::Role;
use engine::model::{ArchSpec, NormKind, RopeKind};

/// Where `output.weight` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputRule {
    /// From `lm_head.weight` when the checkpoint has one; else the model is
    /// tied and llama.cpp reuses `token_embd.weight`.
    LmHeadIfPresent,
    /// Never written: llama.cpp's gemma loader always uses the embedding,
    /// and its converter drops any `lm_head.weight`.
    Never,
    /// Always written as a copy of the token embedding: llama.cpp's gpt2
    /// loader (c392e509) requires `output.weight`, and its converter
    /// duplicates `wte` for it.
    CopyOfEmbedding,
}

/// Whether a `.bias` goes with a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    No,
    Optional,
    Required,
}

/// One mapping row: `hf` (without `.weight`/`.bias`) → the GGUF tensor of
/// `role` (its name is the engine's, `Role::gguf`).
#[derive(Debug, Clone, Copy)]
pub struct Map {
    pub hf: &'static str,
    pub role: Role,
    pub bias: Bias,
    /// The weight may be absent (an untied output head).
    pub optional: bool,
}

const fn m(hf: &'static str, role: Role, bias: Bias) -> Map {
    Map { hf, role, bias, optional: false }
}

const fn opt(hf: &'static str, role: Role, bias: Bias) -> Map {
    Map { hf, role, bias, optional: true }
}

/// An architecture's conversion recipe.
pub struct Arch {
    /// Hugging Face `architectures[0]` names.
    pub hf_names: &'static [&'static str],
    /// `model_type` values, used only when `architectures` is missing.
    pub model_types: &'static [&'static str],
    /// What the engine knows of it: GGUF name, norm, RoPE, tensor names.
    pub spec: &'static ArchSpec,
    /// RoPE covers the first `partial_rotary_factor` of each head (Phi).
    pub partial_rotary: bool,
    /// Store norm weights as `1 + w` (Gemma). llama.cpp's GemmaModel adds 1
    /// to every tensor whose name ends in `norm.weight`, because Gemma's
    /// RMSNorm multiplies by `(1 + w)` while ggml's multiplies by `w`.
    pub norm_plus_one: bool,
    /// Block matrices are GPT-2 `Conv1D` weights stored `[in, out]`.
    pub conv1d: bool,
    pub output: OutputRule,
    /// A prefix that some checkpoints put before every name (`transformer.`).
    pub strip_prefix: &'static str,
    /// Tensors before and after the blocks.
    pub globals: &'static [Map],
    /// Per-block prefix (followed by the block number and a dot).
    pub block_prefix: &'static str,
    pub block: &'static [Map],
    /// Name endings of buffers that are not weights and are dropped.
    pub ignore: &'static [&'static str],
    /// `tokenizer.ggml.pre` for a byte-level BPE vocabulary.
    pub bpe_pre: &'static str,
    /// Record `{arch}.attention.sliding_window` from `sliding_window`.
    pub sliding_window: bool,
}

use Bias::{No, Optional, Required};
use Role::*;

const LLAMA_BLOCK: &[Map] = &[
    m("input_layernorm", AttnNorm, No),
    m("self_attn.q_proj", AttnQ, Optional),
    m("self_attn.k_proj", AttnK, Optional),
    m("self_attn.v_proj", AttnV, Optional),
    m("self_attn.o_proj", AttnOut, Optional),
    m("post_attention_layernorm", FfnNorm, No),
    m("mlp.gate_proj", FfnGate, Optional),
    m("mlp.up_proj", FfnUp, Optional),
    m("mlp.down_proj", FfnDown, Optional),
];

const QWEN2_BLOCK: &[Map] = &[
    m("input_layernorm", AttnNorm, No),
    m("self_attn.q_proj", AttnQ, Required),
    m("self_attn.k_proj", AttnK, Required),
    m("self_attn.v_proj", AttnV, Required),
    m("self_attn.o_proj", AttnOut, No),
    m("post_attention_layernorm", FfnNorm, No),
    m("mlp.gate_proj", FfnGate, No),
    m("mlp.up_proj", FfnUp, No),
    m("mlp.down_proj", FfnDown, No),
];

const GEMMA_BLOCK: &[Map] = &[
    m("input_layernorm", AttnNorm, No),
    m("self_attn.q_proj", AttnQ, No),
    m("self_attn.k_proj", AttnK, No),
    m("self_attn.v_proj", AttnV, No),
    m("self_attn.o_proj", AttnOut, No),
    m("post_attention_layernorm", FfnNorm, No),
    m("mlp.gate_proj", FfnGate, No),
    m("mlp.up_proj", FfnUp, No),
    m("mlp.down_proj", FfnDown, No),
];

/// Llama, Mistral, Qwen2 and Gemma share these.
const LLAMA_GLOBALS: &[Map] =
    &[m("model.embed_tokens", TokenEmbd, No), m("model.norm", OutputNorm, No), opt("lm_head", Output, No)];

/// Phi (phi-1, phi-1.5, phi-2): parallel attention and MLP share one
/// LayerNorm, so there is no `ffn_norm`. llama.cpp's phi2 loader accepts
/// either a fused `attn_qkv` or separate `attn_q/k/v`; its converter keeps
/// Hugging Face's separate projections, and so do we.
const PHI_BLOCK: &[Map] = &[
    m("input_layernorm", AttnNorm, Required),
    m("self_attn.q_proj", AttnQ, Required),
    m("self_attn.k_proj", AttnK, Required),
    m("self_attn.v_proj", AttnV, Required),
    m("self_attn.dense", AttnOut, Required),
    m("mlp.fc1", FfnUp, Required),
    m("mlp.fc2", FfnDown, Required),
];

const PHI_GLOBALS: &[Map] = &[
    m("model.embed_tokens", TokenEmbd, No),
    m("model.final_layernorm", OutputNorm, Required),
    // llama.cpp's phi2 loader requires output.weight and output.bias.
    m("lm_head", Output, Required),
];

const GPT2_BLOCK: &[Map] = &[
    m("ln_1", AttnNorm, Required),
    m("attn.c_attn", AttnQkv, Required),
    m("attn.c_proj", AttnOut, Required),
    m("ln_2", FfnNorm, Required),
    m("mlp.c_fc", FfnUp, Required),
    m("mlp.c_proj", FfnDown, Required),
];

const GPT2_GLOBALS: &[Map] = &[
    m("wte", TokenEmbd, No),
    m("wpe", PosEmbd, No),
    m("ln_f", OutputNorm, Required),
    // GPT-2 ties its head to wte; a checkpoint that stores lm_head anyway is
    // accepted and its copy is checked for shape but not written twice.
    opt("lm_head", Output, No),
];

/// Checkpoint buffers that are not parameters.
const COMMON_IGNORE: &[&str] = &["rotary_emb.inv_freq"];
const GPT2_IGNORE: &[&str] = &[".attn.bias", ".attn.masked_bias"];

pub static ARCHS: &[Arch] = &[
    Arch {
        hf_names: &["LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM"],
        model_types: &["llama", "mistral"],
        spec: &engine::model::LLAMA,
        partial_rotary: false,
        norm_plus_one: false,
        conv1d: false,
        output: OutputRule::LmHeadIfPresent,
        strip_prefix: "",
        globals: LLAMA_GLOBALS,
        block_prefix: "model.layers.",
        block: LLAMA_BLOCK,
        ignore: COMMON_IGNORE,
        bpe_pre: "llama-bpe",
        sliding_window: true,
    },
    Arch {
        hf_names: &["Qwen2ForCausalLM"],
        model_types: &["qwen2"],
        spec: &engine::model::QWEN2,
        partial_rotary: false,
        norm_plus_one: false,
        conv1d: false,
        output: OutputRule::LmHeadIfPresent,
        strip_prefix: "",
        globals: LLAMA_GLOBALS,
        block_prefix: "model.layers.",
        block: QWEN2_BLOCK,
        ignore: COMMON_IGNORE,
        bpe_pre: "qwen2",
        sliding_window: false,
    },
    Arch {
        hf_names: &["GemmaForCausalLM"],
        model_types: &["gemma"],
        spec: &engine::model::GEMMA,
        partial_rotary: false,
        norm_plus_one: true,
        conv1d: false,
        output: OutputRule::Never,
        strip_prefix: "",
        globals: LLAMA_GLOBALS,
        block_prefix: "model.layers.",
        block: GEMMA_BLOCK,
        ignore: COMMON_IGNORE,
        bpe_pre: "",
        sliding_window: false,
    },
    Arch {
        hf_names: &["PhiForCausalLM"],
        model_types: &["phi"],
        spec: &engine::model::PHI2,
        partial_rotary: true,
        norm_plus_one: false,
        conv1d: false,
        output: OutputRule::LmHeadIfPresent,
        strip_prefix: "",
        globals: PHI_GLOBALS,
        block_prefix: "model.layers.",
        block: PHI_BLOCK,
        ignore: COMMON_IGNORE,
        bpe_pre: "phi-2",
        sliding_window: false,
    },
    Arch {
        hf_names: &["GPT2LMHeadModel"],
        model_types: &["gpt2"],
        spec: &engine::model::GPT2,
        partial_rotary: false,
        norm_plus_one: false,
        conv1d: true,
        output: OutputRule::CopyOfEmbedding,
        strip_prefix: "transformer.",
        globals: GPT2_GLOBALS,
        block_prefix: "h.",
        block: GPT2_BLOCK,
        ignore: GPT2_IGNORE,
        bpe_pre: "gpt-2",
        sliding_window: false,
    },
];

impl Arch {
    /// Permute q/k rows from Hugging Face's rotate-half layout to GGML's
    /// adjacent-pair ("normal") RoPE, as llama.cpp's LlamaModel does: for
    /// the architectures the engine runs with normal RoPE.
    pub fn permute_qk(&self) -> bool {
        self.spec.rope == RopeKind::Normal
    }
}

/// Picks the recipe named by `architectures[0]` (or, if that key is
/// missing, by `model_type`).
pub fn select(cfg: &JsonFile) -> Result<&'static Arch> {
    if let Some(v) = cfg.get("architectures") {
        let Some(first) = v.as_array().and_then(|a| a.first()).and_then(|x| x.as_str()) else {
            bail!("{}: 'architectures' must be a non-empty list of names, found {v}", cfg.name);
        };
        return ARCHS
            .iter()
            .find(|a| a.hf_names.contains(&first))
            .ok_or_else(|| anyhow::anyhow!("unsupported architecture '{first}' (supported: {})", supported()));
    }
    let Some(mt) = cfg.str(&["model_type"])? else {
        bail!("{}: missing 'architectures' (and no 'model_type')", cfg.name);
    };
    ARCHS
        .iter()
        .find(|a| a.model_types.contains(&mt))
        .ok_or_else(|| anyhow::anyhow!("unsupported architecture (model_type '{mt}'; supported: {})", supported()))
}

fn supported() -> String {
    ARCHS.iter().flat_map(|a| a.hf_names.iter().copied()).collect::<Vec<_>>().join(", ")
}

/// Limits for "absurd" configuration values. They are generous (no real
/// model comes near) but keep every size computation far from overflow.
const MAX_DIM: u64 = 1 << 20;
const MAX_VOCAB: u64 = 1 << 24;
const MAX_LAYERS: u64 = 4096;
const MAX_HEADS: u64 = 1 << 14;
const MAX_CTX: u64 = 1 << 26;

/// RoPE frequency scaling recorded in the GGUF.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    Linear { factor: f64 },
}

/// The hyper-parameters, validated and resolved for one architecture.
#[derive(Debug, Clone)]
pub struct HParams {
    /// `vocab_size` from config.json, if given (checked against the embedding).
    pub vocab_size: Option<u64>,
    pub n_embd: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub head_dim: u64,
    /// `head_dim` was given in config.json (then key/value_length are written).
    pub head_dim_explicit: bool,
    pub n_ff: u64,
    pub n_ctx: u64,
    pub rope_theta: Option<f64>,
    pub rope_dim: Option<u64>,
    pub rope_scaling: Option<RopeScaling>,
    pub norm_eps: f64,
    pub sliding_window: Option<u64>,
    /// `tie_word_embeddings` when config.json states it.
    pub tie_word_embeddings: Option<bool>,
}

impl HParams {
    pub fn q_dim(&self) -> u64 {
        self.n_head * self.head_dim
    }
    pub fn kv_dim(&self) -> u64 {
        self.n_head_kv * self.head_dim
    }

    /// Reads and validates the hyper-parameters `arch` needs.
    pub fn read(arch: &Arch, c: &JsonFile) -> Result<HParams> {
        let n_embd = c.req_uint(&["hidden_size", "n_embd"], MAX_DIM)?;
        let n_layer = c.req_uint(&["num_hidden_layers", "n_layer"], MAX_LAYERS)?;
        let n_head = c.req_uint(&["num_attention_heads", "n_head"], MAX_HEADS)?;
        // llama.cpp's phi2 converter writes n_head here; HF Phi honours
        // num_key_value_heads, so we do too (the shapes are checked against it).
        let n_head_kv = c.uint(&["num_key_value_heads"], MAX_HEADS)?.unwrap_or(n_head);
        ensure!(
            n_head % n_head_kv == 0,
            "{}: num_attention_heads ({n_head}) is not a multiple of num_key_value_heads ({n_head_kv})",
            c.name
        );
        let explicit = c.uint(&["head_dim"], MAX_DIM)?;
        let head_dim = match explicit {
            Some(d) => d,
            None => {
                ensure!(
                    n_embd % n_head == 0,
                    "{}: hidden_size ({n_embd}) is not a multiple of num_attention_heads ({n_head}) and no head_dim is given",
                    c.name
                );
                n_embd / n_head
            }
        };
        ensure!(n_head * head_dim <= MAX_DIM * 4, "{}: num_attention_heads x head_dim is absurdly large", c.name);

        // Deviation from llama.cpp's converter, which writes 4 x n_embd for
        // phi2 and gpt2 whatever the config says: its loader sizes ffn_up by
        // this key, so it must be the real width (phi golden: 192 = 3 x 64).
        let n_ff = match (arch.spec.name, c.uint(&["intermediate_size", "n_inner"], MAX_DIM * 4)?) {
            (_, Some(f)) => f,
            // GPT-2's n_inner = null means 4 x n_embd.
            ("gpt2", None) => 4 * n_embd,
            (_, None) => return Err(c.missing(&["intermediate_size"])),
        };
        // GPT-2 configs from recent transformers have n_positions only.
        let n_ctx = c.req_uint(&["max_position_embeddings", "n_positions", "n_ctx"], MAX_CTX)?;
        let vocab_size = c.uint(&["vocab_size"], MAX_VOCAB)?;

        let eps_keys: &[&str] = match arch.spec.norm {
            NormKind::Rms => &["rms_norm_eps"],
            NormKind::Layer => &["layer_norm_eps", "layer_norm_epsilon"],
        };
        let norm_eps = c.float(eps_keys)?.ok_or_else(|| c.missing(eps_keys))?;
        ensure!(
            norm_eps > 0.0 && norm_eps < 1.0,
            "{}: '{}' = {norm_eps} is not a sensible epsilon",
            c.name,
            eps_keys[0]
        );

        let (mut rope_theta, mut rope_dim, mut rope_scaling) = (None, None, None);
        if arch.spec.rope != RopeKind::Learned {
            // transformers 5 writes rope_parameters.rope_theta; older files a top-level rope_theta.
            let theta = c.float(&["rope_theta", "rope_parameters.rope_theta"])?.unwrap_or(10000.0);
            ensure!(theta > 0.0, "{}: 'rope_theta' must be positive, found {theta}", c.name);
            rope_theta = Some(theta);
            let dim = match arch.partial_rotary {
                true => {
                    let keys = ["partial_rotary_factor", "rope_parameters.partial_rotary_factor"];
                    let f = c.float(&keys)?.ok_or_else(|| c.missing(&keys))?;
                    ensure!(f > 0.0 && f <= 1.0, "{}: 'partial_rotary_factor' = {f} must be in (0, 1]", c.name);
                    // llama.cpp: int(partial_rotary_factor * n_embd) // n_head.
                    ((f * n_embd as f64) as u64) / n_head
                }
                false => head_dim,
            };
            ensure!(
                dim >= 2 && dim % 2 == 0 && dim <= head_dim,
                "{}: the rotary dimension {dim} must be even and between 2 and head_dim ({head_dim})",
                c.name
            );
            rope_dim = Some(dim);
            rope_scaling = read_rope_scaling(c)?;
        }
        if arch.permute_qk() {
            ensure!(head_dim % 2 == 0, "{}: head_dim {head_dim} must be even for RoPE", c.name);
        }
        let sliding_window = if arch.sliding_window { c.uint(&["sliding_window"], MAX_CTX)? } else { None };
        Ok(HParams {
            vocab_size,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_explicit: explicit.is_some(),
            n_ff,
            n_ctx,
            rope_theta,
            rope_dim,
            rope_scaling,
            norm_eps,
            sliding_window,
            tie_word_embeddings: c.bool(&["tie_word_embeddings"])?,
        })
    }
}

/// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5).
/// Types that change the model but that we cannot express are refused
/// rather than converted into a model that silently computes something else.
fn read_rope_scaling(c: &JsonFile) -> Result<Option<RopeScaling>> {
    for base in ["rope_scaling", "rope_parameters"] {
        let Some(obj) = c.get(base) else { continue };
        ensure!(obj.is_object(), "{}: '{base}' must be an object, found {obj}", c.name);
        let ty = c.str(&[&format!("{base}.rope_type"), &format!("{base}.type")])?.unwrap_or("default");
        match ty {
            "default" => {}
            "linear" => {
                let key = format!("{base}.factor");
                let f = c.float(&[&key])?.ok_or_else(|| c.missing(&[&key]))?;
                ensure!(f > 0.0, "{}: '{key}' = {f} must be positive", c.name);
                return Ok(Some(RopeScaling::Linear { factor: f }));
            }
            other => bail!("{}: unsupported RoPE scaling type '{other}' in '{base}'", c.name),
        }
    }
    Ok(None)
}

/// The shape a tensor of `role` must have, in Hugging Face (PyTorch
/// `nn.Linear`) order: `[out, in]` for matrices, `[n]` for vectors. GPT-2
/// Conv1D weights are stored transposed; the caller reverses for those.
pub fn expected_shape(role: Role, hp: &HParams, n_vocab: u64) -> Vec<u64> {
    let (e, q, kv, ff) = (hp.n_embd, hp.q_dim(), hp.kv_dim(), hp.n_ff);
    match role {
        TokenEmbd | Output => vec![n_vocab, e],
        PosEmbd => vec![hp.n_ctx, e],
        OutputNorm | AttnNorm | FfnNorm => vec![e],
        AttnQ => vec![q, e],
        AttnK | AttnV => vec![kv, e],
        AttnOut => vec![e, q],
        AttnQkv => vec![q + 2 * kv, e],
        FfnGate | FfnUp => vec![ff, e],
        FfnDown => vec![e, ff],
    }
}
