//! The architectures, in one table: for each, its GGUF name and the
//! building blocks the forward pass uses, and the GGUF names of the tensors
//! a file of it holds. The GGUF loader (`gguf_model`) reads the table to
//! find tensors and fill the [`Config`](super::Config); the Hugging Face
//! converter (`convert::arch`) reads it for the names and layers it writes,
//! so the two cannot disagree.
//!
//! Adding an architecture: an [`Arch`] variant and its row in [`ARCHS`];
//! the converter then needs only its Hugging Face names.

/// Model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gpt2,
    Qwen2,
    Gemma,
    Phi2,
}

/// Normalisation layer kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    Rms,
    Layer,
}

impl NormKind {
    /// The GGUF metadata key (after `{arch}.attention.`) of its epsilon.
    pub const fn eps_key(self) -> &'static str {
        match self {
            NormKind::Rms => "layer_norm_rms_epsilon",
            NormKind::Layer => "layer_norm_epsilon",
        }
    }
}

/// Feed-forward kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnKind {
    /// down(silu(gate x) * up x)
    SwiGlu,
    /// down(gelu_tanh(gate x) * up x)
    GeGlu,
    /// down(gelu_tanh(up x + b) + b)
    Gelu,
}

/// How positions enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeKind {
    /// No rotary embedding: a learned position table (`position_embd`).
    Learned,
    /// RoPE on adjacent pairs (ggml's "normal" mode, Llama): Hugging Face
    /// checkpoints need their q/k rows permuted when converted.
    Normal,
    /// RoPE on the two halves of each head (GPT-NeoX, Hugging Face's layout).
    Neox,
}

/// A tensor of a GGUF model file, by its job. Its GGUF name is
/// `{gguf}.weight` / `{gguf}.bias`, prefixed `blk.N.` inside a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    TokenEmbd,
    PosEmbd,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    /// Q, K and V stacked in one matrix (GPT-2).
    AttnQkv,
    AttnOut,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
}

impl Role {
    /// llama.cpp's name for it (`LLM_TENSOR_NAMES`), without `.weight`.
    pub const fn gguf(self) -> &'static str {
        match self {
            Role::TokenEmbd => "token_embd",
            Role::PosEmbd => "position_embd",
            Role::OutputNorm => "output_norm",
            Role::Output => "output",
            Role::AttnNorm => "attn_norm",
            Role::AttnQ => "attn_q",
            Role::AttnK => "attn_k",
            Role::AttnV => "attn_v",
            Role::AttnQkv => "attn_qkv",
            Role::AttnOut => "attn_output",
            Role::FfnNorm => "ffn_norm",
            Role::FfnGate => "ffn_gate",
            Role::FfnUp => "ffn_up",
            Role::FfnDown => "ffn_down",
        }
    }

    /// Whether it is a normalisation weight (kept in F32, 1 + w for Gemma).
    pub const fn is_norm(self) -> bool {
        matches!(self, Role::OutputNorm | Role::AttnNorm | Role::FfnNorm)
    }

    /// The full GGUF name: `blk.{layer}.{gguf}.{weight|bias}` in a block,
    /// `{gguf}.{weight|bias}` outside.
    pub fn name(self, layer: Option<usize>, bias: bool) -> alloc::string::String {
        let suffix = if bias { "bias" } else { "weight" };
        match layer {
            Some(b) => alloc::format!("blk.{b}.{}.{suffix}", self.gguf()),
            None => alloc::format!("{}.{suffix}", self.gguf()),
        }
    }
}

/// What there is to know about one architecture.
#[derive(Debug)]
pub struct ArchSpec {
    pub arch: Arch,
    /// GGUF `general.architecture`.
    pub name: &'static str,
    /// Other `general.architecture` values loaded as this one (llama.cpp
    /// files of Mistral say "llama", older ones "mistral").
    pub aliases: &'static [&'static str],
    pub norm: NormKind,
    pub ffn: FfnKind,
    pub rope: RopeKind,
    /// Attention and MLP read the same normed input and their outputs are
    /// added together (Phi-2): no `ffn_norm`.
    pub parallel_residual: bool,
    /// Embeddings are multiplied by sqrt(dim) (Gemma).
    pub embed_scale: bool,
}

impl ArchSpec {
    /// Whether the block has a separate `ffn_gate` (the gated MLPs).
    pub fn has_gate(&self) -> bool {
        self.ffn != FfnKind::Gelu
    }
}

/// Llama 1-3, TinyLlama, SmolLM, Mistral.
pub static LLAMA: ArchSpec = ArchSpec {
    arch: Arch::Llama,
    name: "llama",
    aliases: &["mistral"],
    norm: NormKind::Rms,
    ffn: FfnKind::SwiGlu,
    rope: RopeKind::Normal,
    parallel_residual: false,
    embed_scale: false,
};

/// GPT-2.
pub static GPT2: ArchSpec = ArchSpec {
    arch: Arch::Gpt2,
    name: "gpt2",
    aliases: &[],
    norm: NormKind::Layer,
    ffn: FfnKind::Gelu,
    rope: RopeKind::Learned,
    parallel_residual: false,
    embed_scale: false,
};

/// Qwen2 and Qwen2.5.
pub static QWEN2: ArchSpec = ArchSpec {
    arch: Arch::Qwen2,
    name: "qwen2",
    aliases: &[],
    norm: NormKind::Rms,
    ffn: FfnKind::SwiGlu,
    rope: RopeKind::Neox,
    parallel_residual: false,
    embed_scale: false,
};

/// Gemma (1).
pub static GEMMA: ArchSpec = ArchSpec {
    arch: Arch::Gemma,
    name: "gemma",
    aliases: &[],
    norm: NormKind::Rms,
    ffn: FfnKind::GeGlu,
    rope: RopeKind::Neox,
    parallel_residual: false,
    embed_scale: true,
};

/// Phi-1, Phi-1.5 and Phi-2.
pub static PHI2: ArchSpec = ArchSpec {
    arch: Arch::Phi2,
    name: "phi2",
    aliases: &[],
    norm: NormKind::Layer,
    ffn: FfnKind::Gelu,
    rope: RopeKind::Neox,
    parallel_residual: true,
    embed_scale: false,
};

/// One row per architecture.
pub static ARCHS: [&ArchSpec; 5] = [&LLAMA, &GPT2, &QWEN2, &GEMMA, &PHI2];

impl Arch {
    /// Its row of the table.
    pub fn spec(self) -> &'static ArchSpec {
        match self {
            Arch::Llama => &LLAMA,
            Arch::Gpt2 => &GPT2,
            Arch::Qwen2 => &QWEN2,
            Arch::Gemma => &GEMMA,
            Arch::Phi2 => &PHI2,
        }
    }

    /// The GGUF `general.architecture` name.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The architecture a GGUF `general.architecture` value names.
    pub fn from_gguf(name: &str) -> Option<Arch> {
        ARCHS.iter().find(|s| s.name == name || s.aliases.contains(&name)).map(|s| s.arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_has_one_row_and_round_trips_its_name() {
        for a in [Arch::Llama, Arch::Gpt2, Arch::Qwen2, Arch::Gemma, Arch::Phi2] {
            assert_eq!(ARCHS.iter().filter(|s| s.arch == a).count(), 1, "{a:?}");
            assert_eq!(a.spec().arch, a);
            assert_eq!(Arch::from_gguf(a.name()), Some(a));
        }
        assert_eq!(Arch::from_gguf("mistral"), Some(Arch::Llama));
        assert_eq!(Arch::from_gguf("falcon"), None);
        assert_eq!(Role::FfnDown.name(Some(3), false), "blk.3.ffn_down.weight");
        assert_eq!(Role::Output.name(None, true), "output.bias");
    }
}
