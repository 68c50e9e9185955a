//! `lbm template`: render a conversation with a model's chat template and
//! show the exact token ids the model would be fed.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use engine::template::{choose, ChatEncoder, Message, Role};
use engine::tokenizer::Tokenizer;

use crate::host;

/// Arguments of `lbm template`.
#[derive(clap::Args, Debug)]
pub struct TemplateArgs {
    /// A model file (or vocabulary-only GGUF), or a llama2.c tokenizer.bin.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Tokenizer for llama2.c checkpoints.
    #[arg(short = 'z', long)]
    pub tokenizer: Option<PathBuf>,
    /// Template to use instead of the model's: none, zephyr, llama-2, chatml,
    /// gemma, phi-3, phi-2, llama-3.
    #[arg(long)]
    pub template: Option<String>,
    /// A file holding the conversation, a JSON list of
    /// {"role": "system"|"user"|"assistant", "content": "..."}; `-` reads it
    /// from standard input.
    #[arg(long)]
    pub messages: PathBuf,
    /// Do not end with the header of the assistant's reply.
    #[arg(long)]
    pub no_generation_prompt: bool,
}

/// A parsed messages file: roles and contents, in order.
pub fn parse_messages(bytes: &[u8]) -> Result<Vec<(Role, String)>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("the messages file is not valid JSON")?;
    let list = v.as_array().context("the messages file must be a JSON list of {\"role\": ..., \"content\": ...}")?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let obj = m.as_object().with_context(|| format!("message {i} is not an object"))?;
            let role = obj
                .get("role")
                .and_then(|r| r.as_str())
                .with_context(|| format!("message {i} has no \"role\" string"))?;
            let role = Role::from_name(role)
                .with_context(|| format!("message {i}: unknown role '{role}' (use system, user or assistant)"))?;
            let content = obj
                .get("content")
                .and_then(|c| c.as_str())
                .with_context(|| format!("message {i} has no \"content\" string"))?;
            Ok((role, content.to_string()))
        })
        .collect()
}

/// The tokenizer, plus the GGUF `tokenizer.chat_template` and
/// `general.architecture` when the file is a GGUF model that has them.
/// Other inputs go through [`host::load_tokenizer`].
fn load(path: &Path, tokenizer: Option<&Path>) -> Result<(Tokenizer, Option<String>, String)> {
    let is_gguf = path.is_file() && {
        let mut head = [0u8; 4];
        let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        f.read_exact(&mut head).is_ok() && &head == b"GGUF"
    };
    if !is_gguf {
        return Ok((host::load_tokenizer(path, tokenizer)?, None, String::new()));
    }
    // Only the header: the metadata is at the start of the file.
    let (g, _, _) = host::read_header(path, engine::gguf::Gguf::parse)?;
    let template = g.get("tokenizer.chat_template").and_then(|v| v.as_str()).map(str::to_string);
    let arch = g.get("general.architecture").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let tok = engine::gguf_model::tokenizer_from(&g)
        .with_context(|| format!("loading the tokenizer of {}", path.display()))?;
    Ok((tok, template, arch))
}

/// Renders and tokenizes; returns `{"template", "text", "ids"}` and a
/// warning about the template choice, if any.
pub fn render(a: &TemplateArgs) -> Result<(serde_json::Value, Option<String>)> {
    // A bad template name or messages file fails before a model is read.
    if a.template.is_some() {
        choose(None, "", a.template.as_deref())?;
    }
    let bytes = if a.messages.as_os_str() == "-" {
        let mut b = Vec::new();
        // At most 64 MiB of conversation from a pipe.
        std::io::Read::read_to_end(&mut std::io::Read::take(std::io::stdin(), host::MAX_MESSAGES), &mut b)
            .context("reading the messages from standard input")?;
        b
    } else {
        host::read_file(&a.messages, host::MAX_MESSAGES)?
    };
    let messages = parse_messages(&bytes).with_context(|| format!("reading {}", a.messages.display()))?;
    let (tok, chat_template, arch) = load(&a.model, a.tokenizer.as_deref())?;
    let (template, warning) = choose(chat_template.as_deref(), &arch, a.template.as_deref())?;
    let enc = ChatEncoder::new(&tok, template);
    let mut msgs: Vec<Message> = messages.iter().map(|(role, content)| Message { role: *role, content }).collect();
    // The system prompt the file's template writes when the conversation has none.
    let default_system = match template {
        engine::template::Template::ChatMl => {
            chat_template.as_deref().and_then(engine::template::default_system_prompt)
        }
        _ => None,
    };
    if let Some(sys) = &default_system {
        if msgs.first().is_none_or(|m| m.role != Role::System) {
            msgs.insert(0, Message::system(sys));
        }
    }
    template.check(&msgs)?;
    let add_gen = !a.no_generation_prompt;
    let (bos, eos) = enc.bos_eos();
    let text = template.render(&msgs, add_gen, bos, eos);
    let ids = enc.conversation(&tok, &msgs, add_gen);
    Ok((serde_json::json!({"template": template.name(), "text": text, "ids": ids}), warning))
}

/// `lbm template`: prints the JSON object on one line; warnings go to stderr.
pub fn run(a: &TemplateArgs) -> Result<()> {
    let (v, warning) = render(a)?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    println!("{v}");
    Ok(())
}
