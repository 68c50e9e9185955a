//! `lbm`: chat, generate, inspect, convert and boot models from a terminal.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;

use ::host::pool::ThreadPool;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use engine::generate::Hooks;
use engine::model::{KvType, Session};
use engine::sampler::{Sampler, SamplerConfig};
use kernels::exec::Executor;
use lbm::host;
use repl::{Chat, ChatSettings, PlatformInfo};

#[derive(Parser)]
#[command(name = "lbm", version, about = "llm-baremetal: run language models in a terminal or on bare metal")]
struct Cli {
    /// Cap the SIMD level the kernels use: scalar, avx2, avx512, avx512vnni (x86-64), neon,
    /// neon-dotprod, neon-i8mm (aarch64); never above what the CPU has, and a level of the other
    /// architecture caps to scalar. Also the LBM_SIMD environment variable.
    /// To measure the lower levels on a faster machine.
    #[arg(long, global = true, value_parser = parse_simd)]
    simd: Option<kernels::cpu::SimdLevel>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// A context length: a whole number of tokens, at least 1.
fn parse_ctx(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("a context holds at least 1 token".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a number of tokens")),
    }
}

fn parse_simd(s: &str) -> Result<kernels::cpu::SimdLevel, String> {
    kernels::cpu::SimdLevel::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = kernels::cpu::SimdLevel::ALL.iter().map(|l| l.name()).collect();
        format!("unknown SIMD level '{s}' (known: {})", names.join(", "))
    })
}

/// Applies `--simd` or, failing that, `LBM_SIMD`.
fn cap_simd(flag: Option<kernels::cpu::SimdLevel>) -> Result<()> {
    let level = match (flag, std::env::var("LBM_SIMD")) {
        (Some(l), _) => l,
        (None, Ok(v)) if !v.trim().is_empty() => parse_simd(&v).map_err(|e| anyhow::anyhow!("LBM_SIMD: {e}"))?,
        _ => return Ok(()),
    };
    let got = kernels::cpu::force_level(level);
    if got < level {
        eprintln!("note: this CPU runs at most the {} level (asked for {})", got.name(), level.name());
    }
    Ok(())
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt.
    Generate(GenerateArgs),
    /// Chat with a model in the terminal (the same REPL as the UEFI app).
    Chat(ChatArgs),
    /// Write the logits of a token sequence to a file.
    Logits(LogitsArgs),
    /// Perplexity of a text file, computed as llama.cpp's llama-perplexity does
    /// (chunks of -c tokens, the second half of each scored): compare quantizations.
    Perplexity(PerplexityArgs),
    /// Turn text into token ids.
    Tokenize(TokenizeArgs),
    /// Turn token ids into text.
    Detokenize(DetokenizeArgs),
    /// Describe a model file.
    Info(InfoArgs),
    /// Convert a Hugging Face model folder (config.json + safetensors) to GGUF.
    #[cfg(feature = "convert")]
    Convert(ConvertArgs),
    /// Download a model from the Hugging Face hub: REPO:FILE (e.g. a .gguf),
    /// or REPO, a safetensors checkpoint converted to GGUF. Prints its path.
    #[cfg(feature = "hub")]
    Pull(PullArgs),
    /// Render a conversation with a chat template and show the token ids the model is fed.
    Template(lbm::template_cmd::TemplateArgs),
    /// Build a bootable disk image (GPT + FAT32 EFI system partition) with models.
    #[cfg(feature = "image")]
    Image(ImageArgs),
    /// Boot a disk image in QEMU with OVMF, the serial console on this terminal.
    #[cfg(feature = "qemu")]
    Qemu(QemuArgs),
    /// Quantize a GGUF file (llama.cpp's types per tensor).
    Quantize(QuantizeArgs),
    /// Split a GGUF into shards as llama.cpp's llama-gguf-split does (PREFIX-00001-of-0000N.gguf ...),
    /// or merge a split set back into one file (--merge).
    #[cfg(feature = "image")]
    Split(SplitArgs),
    /// Measure prompt and decode speed (like llama-bench), or write a random-weight model to measure.
    Bench(lbm::bench::BenchArgs),
}

#[cfg(feature = "image")]
#[derive(Args)]
struct SplitArgs {
    /// The GGUF to split; with --merge, the first shard of a split set (NAME-00001-of-0000N.gguf).
    input: PathBuf,
    /// The shards' prefix: writes PREFIX-00001-of-0000N.gguf ...; with --merge, the file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// At most this much tensor data per shard (the header adds a little), e.g. 3.9G or 500M
    /// (K, M, G, T and KiB ... are powers of 1024; KB, MB, GB, TB powers of 1000).
    #[arg(long, conflicts_with_all = ["max_tensors", "merge"])]
    max_size: Option<String>,
    /// At most this many tensors per shard (llama-gguf-split's --split-max-tensors).
    #[arg(long, conflicts_with = "merge")]
    max_tensors: Option<usize>,
    /// Merge the split set whose first shard is INPUT into one file, as llama-gguf-split --merge.
    #[arg(long)]
    merge: bool,
}

#[cfg(feature = "image")]
fn cmd_split(a: SplitArgs) -> Result<()> {
    use engine::gguf::split::SplitBy;
    host::remove_outputs_on_interrupt();
    if a.merge {
        let len = host::write_merged(&a.input, &a.output)?;
        println!("wrote {} ({len} bytes)", a.output.display());
        return Ok(());
    }
    let by = match (a.max_size, a.max_tensors) {
        (Some(s), None) => {
            let max = image::parse_size_floor(&s).with_context(|| format!("--max-size {s}"))?;
            if max == 0 {
                bail!("--max-size must be more than 0 bytes");
            }
            SplitBy::Bytes(max)
        }
        (None, Some(0)) => bail!("--max-tensors must be at least 1"),
        (None, Some(n)) => SplitBy::Tensors(n),
        _ => bail!("say where shards end: --max-size SIZE or --max-tensors N"),
    };
    for (path, len) in host::write_split(&a.input, &a.output, by)? {
        println!("wrote {} ({len} bytes)", path.display());
    }
    Ok(())
}

#[cfg(feature = "image")]
#[derive(Args)]
struct ImageArgs {
    /// The image file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Model files to put in \models\ (repeatable); REPO:FILE pulls from the Hugging Face hub.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Tokenizer files to put beside them (repeatable).
    #[arg(long = "tokenizer")]
    tokenizers: Vec<PathBuf>,
    /// A settings file to install as \lbm.cfg.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Image size, e.g. 64M or 2G (default: fit the contents).
    #[arg(long)]
    size: Option<String>,
    /// A GGUF model larger than this is split into shards (as llama.cpp's gguf-split names them,
    /// models/NAME-00001-of-0000N.gguf ...) that the app loads as one model. Default and most:
    /// 4 GiB - 1 byte, the largest file FAT32 holds.
    #[arg(long)]
    max_file_size: Option<String>,
    /// A UEFI application to install (repeatable: one x86-64 and one aarch64 build go to
    /// EFI/BOOT/BOOTX64.EFI and EFI/BOOT/BOOTAA64.EFI; the firmware starts its own).
    /// Default: $LBM_EFI, else the builds of `cargo xtask build-efi [--arch aarch64]` in target/efi/.
    #[arg(long)]
    efi: Vec<PathBuf>,
    /// Which built apps to install when --efi is not given: x86_64, aarch64 or all (every one found).
    #[arg(long, default_value = "all")]
    arch: String,
}

#[cfg(feature = "qemu")]
#[derive(Args)]
struct QemuArgs {
    /// The disk image.
    image: PathBuf,
    /// Guest memory.
    #[arg(long, default_value = "4G")]
    memory: String,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 2)]
    cores: usize,
    /// The machine: x86_64 (q35 with OVMF) or aarch64 (virt with AAVMF; QEMU's software emulation).
    #[arg(long, default_value = "x86_64")]
    arch: String,
    /// Forward 127.0.0.1:HOST to the guest's TCP port GUEST (repeatable), with QEMU's user-mode network.
    #[arg(long = "forward", value_name = "HOST:GUEST")]
    forwards: Vec<String>,
}

#[cfg(feature = "hub")]
#[derive(Args)]
struct PullArgs {
    /// REPO:FILE, e.g. TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf,
    /// or REPO for a safetensors checkpoint.
    spec: String,
    /// Branch, tag or commit id.
    #[arg(long, default_value = "main")]
    revision: String,
    /// Cache folder (default: $LBM_CACHE, else ~/.cache/lbm).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Also put the result here (a file, or a folder to put it in).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Storage type for the matrices when a checkpoint is converted: f32 or f16.
    #[arg(long, default_value = "f16", value_parser = parse_quant_type)]
    r#type: engine::quantize::QuantType,
}

#[derive(Args)]
struct QuantizeArgs {
    /// The GGUF file to read (F32, F16 or BF16 matrices).
    input: PathBuf,
    /// The GGUF file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Target, as llama-quantize names them: q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s, q3_k_m,
    /// q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs, f16 or f32.
    #[arg(long, value_parser = parse_quant_type)]
    r#type: engine::quantize::QuantType,
    /// Threads (default: all cores).
    #[arg(short, long)]
    threads: Option<usize>,
}

#[cfg(feature = "convert")]
#[derive(Args)]
struct ConvertArgs {
    /// The Hugging Face model folder.
    input: PathBuf,
    /// The GGUF file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Storage type for the matrices: f32, f16, or a `lbm quantize` type.
    #[arg(long, default_value = "f32", value_parser = parse_quant_type)]
    r#type: engine::quantize::QuantType,
}

/// A file type of `lbm quantize` (and `convert`, `pull`) by name, any case.
fn parse_quant_type(s: &str) -> std::result::Result<engine::quantize::QuantType, String> {
    use engine::quantize::QuantType;
    QuantType::parse(s).ok_or_else(|| {
        let names: Vec<String> = QuantType::ALL.iter().map(|t| t.name().to_ascii_lowercase()).collect();
        format!("unknown type '{s}' (one of {})", names.join(", "))
    })
}

#[derive(Args)]
struct ModelArgs {
    /// Model file (.gguf, or a llama2.c .bin).
    #[arg(short, long)]
    model: PathBuf,
    /// Tokenizer: needed for llama2.c checkpoints (default: found next to the
    /// model) and llm.c files (a folder with encoder.json + vocab.bpe); for a
    /// GGUF file it replaces the file's own (or gives one to a file that has none).
    #[arg(short = 'z', long)]
    tokenizer: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// Context length to allocate (default: the model's, at most 4096).
    #[arg(short = 'c', long, default_value_t = 4096, value_parser = parse_ctx)]
    ctx: usize,
    /// KV cache type: f32 (exact) or f16 (half the memory, computed as
    /// llama.cpp's default cache is).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    kv_type: String,
    /// Read the model into memory on huge pages instead of mapping the file
    /// (see `lbm bench --help`): slower to start, can decode faster.
    #[arg(long)]
    no_mmap: bool,
}

impl ModelArgs {
    fn kv_type(&self) -> KvType {
        KvType::from_name(&self.kv_type).unwrap_or_default()
    }
    fn load_mode(&self) -> host::LoadMode {
        host::LoadMode::from_no_mmap(self.no_mmap)
    }
}

#[derive(Args)]
struct SamplingArgs {
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl SamplingArgs {
    fn config(&self) -> Result<SamplerConfig> {
        let c = SamplerConfig {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
        };
        c.validate()?;
        Ok(c)
    }
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The prompt.
    #[arg(short, long, conflicts_with = "ids", required_unless_present = "ids")]
    prompt: Option<String>,
    /// The prompt as token ids, e.g. 1,403,407. Works on models without a
    /// tokenizer; `text` in the JSON is then empty and no EOS stops the run.
    #[arg(long, value_delimiter = ',')]
    ids: Option<Vec<u32>>,
    /// Tokens to generate at most.
    #[arg(short = 'n', long, default_value_t = 256)]
    n: usize,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Temperature (0 = greedy).
    #[arg(long)]
    temp: Option<f32>,
    /// Maximum reply length.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Top-p.
    #[arg(long)]
    top_p: Option<f32>,
    /// Top-k.
    #[arg(long)]
    top_k: Option<usize>,
    /// RNG seed.
    #[arg(long)]
    seed: Option<u64>,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Settings file (same format as lbm.cfg on the boot disk).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct LogitsArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Token ids, e.g. 1,403,407.
    #[arg(long, value_delimiter = ',', required = true)]
    ids: Vec<u32>,
    /// Output file: little-endian f32, row-major [n_ids, vocab].
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Args)]
struct PerplexityArgs {
    /// Model file.
    #[arg(short, long)]
    model: PathBuf,
    /// Tokenizer (see `generate --help`).
    #[arg(short = 'z', long)]
    tokenizer: Option<PathBuf>,
    /// The text file to score.
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long, default_value_t = 512, value_parser = parse_ctx)]
    ctx: usize,
    /// Chunks to score at most (default: all that fit).
    #[arg(long)]
    chunks: Option<usize>,
    /// Tokens evaluated together.
    #[arg(short = 'b', long, default_value_t = 512)]
    batch: usize,
    /// Threads (default: all cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// KV cache type (see `generate --help`).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"])]
    kv_type: String,
    /// Print one JSON object {"ppl", "ppl_err", "chunks"} instead of the running estimate.
    #[arg(long)]
    json: bool,
    /// Read the model into memory on huge pages instead of mapping the file.
    #[arg(long)]
    no_mmap: bool,
}

#[derive(Args)]
struct TokenizeArgs {
    /// A model file, a llama2.c tokenizer.bin, or a folder with encoder.json + vocab.bpe.
    #[arg(short, long)]
    model: PathBuf,
    /// Tokenizer for llama2.c checkpoints.
    #[arg(short = 'z', long)]
    tokenizer: Option<PathBuf>,
    /// Do not add BOS even if the tokenizer asks for it.
    #[arg(long)]
    no_bos: bool,
    /// Parse special tokens (like </s>) in the text.
    #[arg(long)]
    special: bool,
    /// Print {"ids": [...], "pieces": [...]}.
    #[arg(long)]
    json: bool,
    /// The text.
    text: String,
}

#[derive(Args)]
struct DetokenizeArgs {
    /// A model file, a llama2.c tokenizer.bin, or a folder with encoder.json + vocab.bpe.
    #[arg(short, long)]
    model: PathBuf,
    /// Tokenizer for llama2.c checkpoints.
    #[arg(short = 'z', long)]
    tokenizer: Option<PathBuf>,
    /// Token ids (space- or comma-separated).
    #[arg(required = true, value_delimiter = ',')]
    ids: Vec<String>,
}

#[derive(Args)]
struct InfoArgs {
    /// Model file.
    model: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn pool(threads: Option<usize>) -> Result<ThreadPool> {
    lbm::threads::pool(lbm::threads::count(threads))
}

fn platform(exec: &dyn Executor) -> PlatformInfo {
    PlatformInfo { simd: kernels::cpu::level().name().into(), cores: exec.n_threads(), mem_used: 0, mem_free: 0 }
}

struct StdoutHooks {
    start: std::time::Instant,
    stream: bool,
    stops: Vec<u32>,
}

impl Hooks for StdoutHooks {
    fn now_us(&mut self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
    fn on_text(&mut self, text: &str) -> bool {
        if self.stream {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(text.as_bytes());
            let _ = o.flush();
        }
        true
    }
    fn is_stop(&self, id: u32) -> bool {
        self.stops.contains(&id)
    }
}

fn cmd_generate(a: GenerateArgs) -> Result<()> {
    let exec = pool(a.model.threads)?;
    let loaded = host::load_any(&a.model.model, a.model.tokenizer.as_deref(), a.model.load_mode())?;
    let prompt_ids = match (&a.prompt, &a.ids) {
        (Some(p), _) => {
            let tok = loaded.need_tokenizer()?;
            tok.encode(p, tok.add_bos())
        }
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give -p PROMPT or --ids"),
    };
    let model = &loaded.model;
    let tok = loaded.tokenizer.as_ref().ok();
    let mut session = Session::with_kv_type(model, a.model.ctx, a.model.kv_type())?;
    if prompt_ids.is_empty() {
        bail!("the prompt is empty (and the tokenizer adds no BOS): give some text or --ids");
    }
    let mut sampler = Sampler::new(a.sampling.config()?, model.config.vocab_size);
    let stops = tok.map(|t| vec![t.eos()]).unwrap_or_default();
    let mut hooks = StdoutHooks { start: std::time::Instant::now(), stream: !a.json, stops };
    if !a.json {
        if let Some(p) = &a.prompt {
            print!("{p}");
        }
    }
    let g = session.generate(model, tok, &mut sampler, &exec, &prompt_ids, a.n, &mut hooks)?;
    if a.json {
        let v = serde_json::json!({"prompt_ids": prompt_ids, "ids": g.ids, "text": g.text, "stop": g.stop.name()});
        println!("{v}");
    } else {
        println!();
    }
    eprintln!(
        "[{} prompt tokens, {:.1} tok/s | {} generated, {:.1} tok/s | stop: {} | {} threads, {}]",
        g.prompt_tokens,
        g.prompt_tok_s(),
        g.ids.len(),
        g.decode_tok_s(),
        g.stop.name(),
        exec.n_threads(),
        kernels::cpu::level().name()
    );
    Ok(())
}

fn cmd_chat(a: ChatArgs) -> Result<()> {
    let exec = pool(a.model.threads)?;
    let mut settings = match &a.config {
        Some(p) => ChatSettings::parse_cfg(&String::from_utf8_lossy(&host::read_file(p, host::MAX_SETTINGS)?))?,
        None => ChatSettings::default(),
    };
    if let Some(t) = a.temp {
        settings.temperature = t;
    }
    if let Some(n) = a.max_tokens {
        settings.max_tokens = n;
    }
    if let Some(p) = a.top_p {
        settings.top_p = p;
    }
    if let Some(k) = a.top_k {
        settings.top_k = k;
    }
    if let Some(s) = a.seed {
        settings.seed = s;
    }
    if a.system.is_some() {
        settings.system_prompt = a.system.clone();
    }
    if a.model.kv_type != "f32" {
        settings.kv_type = a.model.kv_type();
    }
    settings.validate()?;
    let interrupt = host::install_interrupt_flag();
    let mut con = host::StdConsole::new(interrupt, platform(&exec));
    loop {
        let (model, tok) = host::load(&a.model.model, a.model.tokenizer.as_deref(), a.model.load_mode())?;
        let name = model.name.clone();
        let mut chat = Chat::new(model, tok, settings.clone(), name, a.model.ctx)?;
        match chat.run(&mut con, &exec) {
            repl::ReplExit::Exit => {
                println!("Bye.");
                return Ok(());
            }
            // There is no menu on the host: reload the same model.
            repl::ReplExit::ChangeModel => {
                settings = chat.settings.clone();
                println!("(lbm chat has one model; reloading {})", a.model.model.display());
            }
        }
    }
}

fn cmd_logits(a: LogitsArgs) -> Result<()> {
    host::remove_outputs_on_interrupt();
    // Checked and created first: a bad output fails before the work.
    let output = outfile::Output::create(&a.output)?;
    let exec = pool(a.model.threads)?;
    let model = host::load_any(&a.model.model, a.model.tokenizer.as_deref(), a.model.load_mode())?.model;
    let mut session = Session::with_kv_type(&model, a.model.ctx, a.model.kv_type())?;
    let mut logits = vec![0.0f32; a.ids.len() * model.config.vocab_size];
    session.eval_all(&model, &a.ids, &exec, &mut logits)?;
    output
        .write_with(1 << 20, |w| {
            for v in logits {
                w.write_all(&v.to_le_bytes())?;
            }
            Ok(())
        })
        .with_context(|| format!("writing {}", a.output.display()))?;
    eprintln!("wrote {} x {} logits to {}", a.ids.len(), model.config.vocab_size, a.output.display());
    Ok(())
}

fn cmd_tokenize(a: TokenizeArgs) -> Result<()> {
    let tok = host::load_tokenizer(&a.model, a.tokenizer.as_deref())?;
    let bos = tok.add_bos() && !a.no_bos;
    let ids = if a.special { tok.encode_with_special(&a.text, bos) } else { tok.encode(&a.text, bos) };
    if a.json {
        let pieces: Vec<&str> = ids.iter().map(|&i| tok.piece(i).unwrap_or("")).collect();
        println!("{}", serde_json::json!({"ids": ids, "pieces": pieces}));
    } else {
        println!("{}", ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    }
    Ok(())
}

fn cmd_detokenize(a: DetokenizeArgs) -> Result<()> {
    let tok = host::load_tokenizer(&a.model, a.tokenizer.as_deref())?;
    let mut ids = Vec::new();
    for s in a.ids.iter().flat_map(|s| s.split_whitespace()) {
        let id: u32 = s.parse().with_context(|| format!("'{s}' is not a token id"))?;
        if id as usize >= tok.vocab_size() {
            bail!("token id {id} is outside the vocabulary (size {})", tok.vocab_size());
        }
        ids.push(id);
    }
    println!("{}", tok.decode(&ids));
    Ok(())
}

fn cmd_info(a: InfoArgs) -> Result<()> {
    // Only the header: GGUF metadata and tensor infos are at the start.
    // The first shard of a split set describes the whole set, merged.
    let set = host::find_split_set(&a.model)?;
    let (s, bytes, len) = match &set {
        Some(set) => {
            let (header, len) = (set.plan.header().to_vec(), set.plan.merged_len());
            let s = engine::load::probe(&header, len).with_context(|| format!("reading {}", a.model.display()))?;
            (s, header, len)
        }
        None => host::read_header(&a.model, engine::load::probe)?,
    };
    let shards: Vec<String> = set.iter().flat_map(|s| s.paths.iter().map(|p| p.display().to_string())).collect();
    let mut types: std::collections::BTreeMap<String, usize> = Default::default();
    let mut tokenizer = String::from("none (needs tokenizer.bin)");
    if bytes.starts_with(b"GGUF") {
        let g = engine::gguf::Gguf::parse(&bytes, len).with_context(|| format!("reading {}", a.model.display()))?;
        for t in &g.tensors {
            *types.entry(t.ty.name().to_string()).or_default() += 1;
        }
        if let Ok(m) = g.get_str("tokenizer.ggml.model") {
            tokenizer = format!("{m}, {} tokens", g.get_array("tokenizer.ggml.tokens").map_or(0, |a| a.len()));
        }
    } else {
        types.insert(s.tensor_type.clone(), 0);
        if let Some(t) = host::find_tokenizer(&a.model) {
            tokenizer = format!("llama2.c {}", t.display());
        }
    }
    if a.json {
        let v = serde_json::json!({
            "format": s.format, "arch": s.arch, "n_params": s.n_params, "tensor_type": s.tensor_type,
            "tensor_types": types, "file_size": s.file_size, "mem_needed": s.mem_needed,
            "dim": s.dim, "n_layers": s.n_layers, "n_heads": s.n_heads, "n_kv_heads": s.n_kv_heads,
            "vocab_size": s.vocab_size, "n_ctx": s.n_ctx, "tokenizer": tokenizer, "shards": shards,
        });
        println!("{v}");
        return Ok(());
    }
    println!("file:         {} ({})", a.model.display(), repl::format_size(s.file_size));
    if let Some(set) = &set {
        println!(
            "split:        {} shards, {} on disk, merged {}",
            shards.len(),
            repl::format_size(set.file_lens.iter().sum()),
            repl::format_size(set.plan.merged_len())
        );
        for p in &shards {
            println!("              {p}");
        }
    }
    println!("format:       {}", s.format);
    println!("architecture: {}", s.arch);
    println!("parameters:   {} ({:.1}M)", s.n_params, s.n_params as f64 / 1e6);
    println!(
        "dimensions:   dim {}, {} layers, {} heads, {} kv heads, vocab {}, context {}",
        s.dim, s.n_layers, s.n_heads, s.n_kv_heads, s.vocab_size, s.n_ctx
    );
    let tt: Vec<String> = types.iter().map(|(k, v)| if *v > 0 { format!("{k} x{v}") } else { k.clone() }).collect();
    println!("tensor types: {} (main {})", tt.join(", "), s.tensor_type);
    println!("tokenizer:    {tokenizer}");
    println!("memory:       {} to run with a {}-token context", repl::format_size(s.mem_needed), s.n_ctx.min(4096));
    Ok(())
}

#[cfg(feature = "image")]
/// The UEFI apps to install: every --efi; else $LBM_EFI; else the builds in
/// target/efi/ (under the current directory, or beside this executable's
/// target directory) for `arch` (`x86_64`, `aarch64`, or `all` found).
fn find_efi(args: Vec<PathBuf>, arch: &str) -> Result<Vec<PathBuf>> {
    if !args.is_empty() {
        return Ok(args);
    }
    if let Some(p) = std::env::var_os("LBM_EFI") {
        return Ok(vec![PathBuf::from(p)]);
    }
    let wanted: Vec<image::EfiArch> =
        match arch {
            "all" => vec![image::EfiArch::X86_64, image::EfiArch::Aarch64],
            a => vec![image::EfiArch::parse(a)
                .with_context(|| format!("unknown --arch '{a}': use x86_64, aarch64 or all"))?],
        };
    let mut dirs = vec![PathBuf::from("target/efi")];
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/lbm -> target/efi/
        if let Some(t) = exe.parent().and_then(|p| p.parent()) {
            dirs.push(t.join("efi"));
        }
    }
    let mut found = Vec::new();
    for a in &wanted {
        match dirs.iter().map(|d| d.join(a.file_name())).find(|p| p.is_file()) {
            Some(p) => found.push(p),
            None if arch == "all" => {}
            None => bail!(
                "no {} UEFI application found: build it with `cargo xtask build-efi --arch {}` (writes \
                 target/efi/{}) or pass --efi",
                a.name(),
                a.cargo_name(),
                a.file_name()
            ),
        }
    }
    if found.is_empty() {
        bail!(
            "no UEFI application found: build it with `cargo xtask build-efi` (writes target/efi/BOOTX64.EFI; \
             with --arch aarch64, target/efi/BOOTAA64.EFI) or pass --efi"
        );
    }
    Ok(found)
}

/// The model files `args` name, pulling `REPO:FILE` ones from the hub.
#[cfg(all(feature = "image", feature = "hub"))]
fn model_files(args: &[String]) -> Result<Vec<PathBuf>> {
    if args.iter().any(|m| !std::path::Path::new(m).exists() && m.contains(':')) {
        let popts = hub::PullOptions::from_env();
        let mut bar = hub::StderrProgress::new();
        args.iter().map(|m| hub::resolve_model_arg(m, &popts, &mut |e| bar.event(e))).collect()
    } else {
        Ok(args.iter().map(PathBuf::from).collect())
    }
}

/// The model files `args` name (a build without the hub client).
#[cfg(all(feature = "image", not(feature = "hub")))]
fn model_files(args: &[String]) -> Result<Vec<PathBuf>> {
    Ok(args.iter().map(PathBuf::from).collect())
}

/// The models to copy: the first shard of a split set brings its other
/// shards; a GGUF larger than `limit` is split into shards that each fit
/// (streamed from the model as the image is written).
#[cfg(feature = "image")]
fn models_for_fat(models: Vec<PathBuf>, limit: u64) -> Result<(Vec<PathBuf>, Vec<image::ComposedFile>)> {
    use engine::gguf::split::{max_shard_header, plan_split, shard_file_name, SplitBy, SPLIT_ALIGNMENT};
    let mut files = Vec::new();
    let mut composed = Vec::new();
    for m in models {
        let Ok(meta) = std::fs::metadata(&m) else {
            files.push(m); // the image's own checks say what is wrong
            continue;
        };
        if !meta.is_file() {
            files.push(m);
            continue;
        }
        if let Some(set) = host::find_split_set(&m)? {
            files.extend(set.paths);
            continue;
        }
        let mut magic = [0u8; 4];
        let gguf = std::fs::File::open(&m).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
            && &magic == b"GGUF";
        if meta.len() <= limit || !gguf {
            files.push(m);
            continue;
        }
        let (g, _, _) = host::read_header(&m, engine::gguf::Gguf::parse)?;
        let header = max_shard_header(&g).with_context(|| format!("splitting {}", m.display()))?;
        let data = limit.checked_sub(header).filter(|&d| d >= SPLIT_ALIGNMENT).with_context(|| {
            format!("{}: its header alone ({header} bytes) leaves no room in a {limit}-byte file", m.display())
        })?;
        let plans = plan_split(&g, SplitBy::Bytes(data))
            .with_context(|| format!("splitting {} into files of at most {limit} bytes", m.display()))?;
        let name =
            m.file_name().and_then(|n| n.to_str()).with_context(|| format!("{} has no UTF-8 name", m.display()))?;
        let stem = name.strip_suffix(".gguf").or_else(|| name.strip_suffix(".GGUF")).unwrap_or(name);
        let n = plans.len() as u16;
        eprintln!("{} is {} bytes: split into {n} shards of at most {limit} bytes", m.display(), meta.len());
        for (i, p) in plans.into_iter().enumerate() {
            let mut parts = vec![image::Part::Bytes(p.header)];
            for (offset, len) in p.tensors {
                parts.push(image::Part::Range { path: m.clone(), offset, len });
                parts.push(image::Part::Zeros(len.next_multiple_of(SPLIT_ALIGNMENT) - len));
            }
            let dest = format!("{}/{}", image::MODELS_DIR, shard_file_name(stem, i as u16, n));
            composed.push(image::ComposedFile { dest, parts });
        }
    }
    Ok((files, composed))
}

#[cfg(feature = "image")]
fn cmd_image(a: ImageArgs) -> Result<()> {
    host::remove_outputs_on_interrupt();
    let mut extra = Vec::new();
    if let Some(c) = a.config {
        // The app reads it with the same parser: refuse a file it would reject.
        let text = host::read_file(&c, host::MAX_SETTINGS)?;
        let text = std::str::from_utf8(&text).map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", c.display()))?;
        ChatSettings::parse_cfg(text).with_context(|| format!("{} is not a valid lbm.cfg", c.display()))?;
        extra.push((c, "lbm.cfg".to_string()));
    }
    let efi = find_efi(a.efi, &a.arch)?;
    let size = a.size.as_deref().map(image::parse_size).transpose()?;
    let limit = match a.max_file_size.as_deref() {
        Some(t) => image::parse_size(t).with_context(|| format!("--max-file-size {t}"))?,
        None => image::MAX_FAT_FILE_SIZE,
    };
    if limit > image::MAX_FAT_FILE_SIZE {
        bail!("--max-file-size: a FAT32 file holds at most {} bytes", image::MAX_FAT_FILE_SIZE);
    }
    let (models, composed) = models_for_fat(model_files(&a.models)?, limit)?;
    let opts = image::ImageOptions {
        output: a.output.clone(),
        efi,
        models,
        tokenizers: a.tokenizers,
        extra_files: extra,
        size,
    };
    let start = std::time::Instant::now();
    let mut last = String::new();
    let mut open_line = false;
    let built = image::build_image_with(&opts, &composed, &mut |file, done, total| {
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        let line = format!("\r{file}: {:.1}/{:.1} MB ({:.0} MB/s)", mb(done), mb(total), mb(done) / secs);
        if line != last {
            eprint!("{line}");
            last = line;
            open_line = true;
        }
        if done == total {
            eprintln!();
            open_line = false;
        }
    });
    if built.is_err() && open_line {
        // End the progress line so the error starts on its own.
        eprintln!();
    }
    built?;
    println!("wrote {}", a.output.display());
    Ok(())
}

fn cmd_perplexity(a: PerplexityArgs) -> Result<()> {
    let exec = pool(a.threads)?;
    let text = host::read_file(&a.file, host::MAX_TEXT)?;
    let text = String::from_utf8(text).with_context(|| format!("{} is not UTF-8 text", a.file.display()))?;
    let (model, tok) = host::load(&a.model, a.tokenizer.as_deref(), host::LoadMode::from_no_mmap(a.no_mmap))?;
    let tokens = tok.encode(&text, tok.add_bos());
    let bos = tok.add_bos().then(|| tok.bos());
    let mut session = Session::with_kv_type(&model, a.ctx, KvType::from_name(&a.kv_type).unwrap_or_default())?;
    let opts = engine::perplexity::PplOptions { n_ctx: a.ctx, n_chunks: a.chunks, n_batch: a.batch.min(a.ctx) };
    let n_chunks = a.chunks.map_or(tokens.len() / a.ctx.max(1), |c| c.min(tokens.len() / a.ctx.max(1)));
    if !a.json {
        eprintln!("{} tokens; {n_chunks} chunks of {} tokens, the second half of each scored", tokens.len(), a.ctx);
    }
    let t0 = std::time::Instant::now();
    let json = a.json;
    let r = engine::perplexity::perplexity(&model, &mut session, &tokens, bos, &opts, &exec, &mut |p| {
        if !json {
            print!("[{}]{:.4},", p.chunks, p.ppl);
            let _ = std::io::stdout().flush();
        }
    })?;
    if a.json {
        println!("{}", serde_json::json!({"ppl": r.ppl, "ppl_err": r.ppl_err, "chunks": r.chunks}));
    } else {
        println!();
        println!("Final estimate: PPL = {:.4} +/- {:.5}", r.ppl, r.ppl_err);
        eprintln!(
            "[{} tokens scored in {:.1} s, {} threads, {}]",
            r.count,
            t0.elapsed().as_secs_f64(),
            exec.n_threads(),
            kernels::cpu::level().name()
        );
    }
    Ok(())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    cap_simd(cli.simd)?;
    match cli.cmd {
        Cmd::Generate(a) => cmd_generate(a),
        Cmd::Chat(a) => cmd_chat(a),
        Cmd::Logits(a) => cmd_logits(a),
        Cmd::Perplexity(a) => cmd_perplexity(a),
        Cmd::Tokenize(a) => cmd_tokenize(a),
        Cmd::Detokenize(a) => cmd_detokenize(a),
        Cmd::Info(a) => cmd_info(a),
        Cmd::Template(a) => lbm::template_cmd::run(&a),
        #[cfg(feature = "image")]
        Cmd::Image(a) => cmd_image(a),
        #[cfg(feature = "qemu")]
        Cmd::Qemu(a) => {
            let arch = qemu::Arch::parse(&a.arch)?;
            let mut extra_args = Vec::new();
            if !a.forwards.is_empty() {
                extra_args = qemu::user_net_args(arch, &qemu::parse_forwards(&a.forwards)?);
            }
            let config = qemu::VmConfig {
                memory: a.memory,
                cores: a.cores,
                readonly: false,
                arch,
                extra_args,
                ..Default::default()
            };
            let exit = qemu::run_on_terminal(&qemu::Disk::Image(a.image), &config)?;
            match exit.code() {
                Some(code) => std::process::exit(code),
                None => bail!("QEMU was ended by a signal"),
            }
        }
        #[cfg(feature = "convert")]
        Cmd::Convert(a) => {
            use engine::quantize::QuantType;
            host::remove_outputs_on_interrupt();
            let (ty, quant) = match a.r#type {
                QuantType::F32 => (convert::OutType::F32, None),
                QuantType::F16 => (convert::OutType::F16, None),
                q => (convert::OutType::F32, Some(q)),
            };
            match quant {
                None => {
                    let opts = convert::ConvertOptions { input: a.input, output: a.output, ty };
                    convert::convert(&opts, &mut |m| eprintln!("{m}"))
                }
                Some(q) => {
                    // Convert to F32 in a temporary file beside the output (a
                    // random name, removed when dropped, never committed),
                    // then quantize it.
                    let scratch = outfile::Output::create(&a.output)?;
                    let tmp = scratch.temp_path().to_path_buf();
                    let opts = convert::ConvertOptions { input: a.input, output: tmp.clone(), ty };
                    convert::convert(&opts, &mut |m| eprintln!("{m}"))?;
                    lbm::quantize::quantize(&tmp, &a.output, q)
                }
            }
        }
        Cmd::Bench(a) => {
            if a.gen_model.is_some() {
                host::remove_outputs_on_interrupt();
            }
            lbm::bench::run(&a)
        }
        #[cfg(feature = "hub")]
        Cmd::Pull(a) => {
            // A conversion it runs writes through outfile: an interrupted pull leaves no temporary file.
            host::remove_outputs_on_interrupt();
            let spec = hub::PullSpec::parse(&a.spec)?;
            let mut opts = hub::PullOptions::from_env();
            opts.revision = a.revision;
            opts.output = a.output;
            if let Some(c) = a.cache {
                opts.cache = c;
            }
            opts.ty = match a.r#type {
                engine::quantize::QuantType::F32 => convert::OutType::F32,
                engine::quantize::QuantType::F16 => convert::OutType::F16,
                _ => bail!("lbm pull converts checkpoints to f32 or f16; quantize the result with `lbm quantize`"),
            };
            let mut bar = hub::StderrProgress::new();
            let path = hub::pull(&spec, &opts, &mut |e| bar.event(e))?;
            println!("{}", path.display());
            Ok(())
        }
        #[cfg(feature = "image")]
        Cmd::Split(a) => cmd_split(a),
        Cmd::Quantize(a) => {
            host::remove_outputs_on_interrupt();
            let threads = lbm::threads::count(a.threads);
            lbm::quantize::quantize_with(&a.input, &a.output, a.r#type, threads, &mut |m| eprintln!("{m}"))
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {}", terminal_safe(&format!("{e:#}")));
        std::process::exit(1);
    }
}

/// An error message as the terminal gets it: whatever a file put into it
/// (a tensor name, a config value) cannot drive the terminal (control
/// characters other than newline and tab, and bidi overrides, are escaped)
/// nor flood it (cut after 4,000 chars, saying how much was left out).
fn terminal_safe(msg: &str) -> String {
    engine::error::Excerpt { text: msg, max_chars: 4000, keep_lines: true }.to_string()
}
