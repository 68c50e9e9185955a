//! Chat templates: how a conversation is written out for a chat model, and
//! how that text becomes token ids.
//!
//! Each [`Template`] renders a conversation to the same text as Hugging Face
//! transformers' `apply_chat_template` with the model's published Jinja
//! template (rendered with `trim_blocks`/`lstrip_blocks`). There is no Jinja
//! interpreter here: the handful of templates real small chat models use are
//! written out by hand, and [`Template::detect`] recognises a GGUF
//! `tokenizer.chat_template` by its markers.
//!
//! Token ids: transformers tokenizes the rendered text with special-token
//! parsing, so `</s>` or `<|im_end|>` written by the template become single
//! ids. It would do the same to a user who types `</s>`; here that never
//! happens. Rendering records which spans the template wrote as special
//! tokens (BOS, EOS, markers such as `<|im_start|>`); only those become
//! special ids, and only if the vocabulary has them as control/user-defined
//! tokens (otherwise they are ordinary text, as in transformers). Everything
//! else, template text and message content alike, is tokenized as plain text
//! in runs between special ids, with SentencePiece's dummy-prefix space only
//! at the very start of the text (transformers' `legacy=false`).
//!
//! For a REPL that keeps the conversation in the KV cache, a conversation is
//! cut into pieces that concatenate to the full rendering:
//!
//! ```text
//! render_turn(system, first=true, u1) + render_reply(r1) + after_reply()
//!   + render_turn(None, first=false, u2) + render_reply(r2) + after_reply()
//!   + render_turn(None, first=false, u3)          == render(all, true)
//! ```
//!
//! [`ChatEncoder`] gives the same pieces as token ids.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use crate::tokenizer::{bpe, spm, Tokenizer};
use crate::{Error, Result};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// `"system"`, `"user"` or `"assistant"`.
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// The role called `s` (exact, lower case), as in a messages JSON file.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub role: Role,
    pub content: &'a str,
}

impl<'a> Message<'a> {
    pub fn system(content: &'a str) -> Self {
        Message { role: Role::System, content }
    }
    pub fn user(content: &'a str) -> Self {
        Message { role: Role::User, content }
    }
    pub fn assistant(content: &'a str) -> Self {
        Message { role: Role::Assistant, content }
    }
}

/// The chat formats lbm knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Template {
    /// No template: the text of the messages one after the other (a system
    /// prompt gets a newline). For base models, which continue text.
    None,
    /// Zephyr / TinyLlama-1.1B-Chat: `<|user|>\n...</s>\n<|assistant|>\n`.
    Zephyr,
    /// Llama-2-chat: `<s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s>`.
    Llama2,
    /// ChatML (Qwen, many fine-tunes): `<|im_start|>user\n...<|im_end|>\n`.
    ChatMl,
    /// Gemma instruct: `<bos><start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n`.
    /// Gemma 1/2 refuse a system message; like Gemma 3 it is put in front of
    /// the first user message, followed by a blank line.
    Gemma,
    /// Phi-3 / Phi-3.5 mini instruct: `<|user|>\n...<|end|>\n<|assistant|>\n`.
    Phi3,
    /// Phi-2 has no chat template; its model card's QA format
    /// `Instruct: ...\nOutput:` is used (lbm's own rendering, not Hugging Face's).
    Phi2,
    /// Llama 3 instruct: `<|start_header_id|>user<|end_header_id|>\n\n...<|eot_id|>`.
    Llama3,
}

/// A span of rendered text the template wrote as a special token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The tokenizer's BOS token: always its id.
    Bos,
    /// The tokenizer's EOS token: always its id.
    Eos,
    /// A marker such as `<|im_start|>`: its id if the vocabulary has it as a
    /// special token, else ordinary text.
    Marker,
}

/// Rendered text plus where the template put special tokens.
#[derive(Debug, Default, Clone)]
struct Sink {
    text: String,
    marks: Vec<(Range<usize>, Kind)>,
}

impl Sink {
    fn text(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    fn special(&mut self, s: &str, kind: Kind) -> &mut Self {
        let start = self.text.len();
        self.text.push_str(s);
        self.marks.push((start..self.text.len(), kind));
        self
    }
    fn marker(&mut self, s: &str) -> &mut Self {
        self.special(s, Kind::Marker)
    }
    fn bos(&mut self, s: &str) -> &mut Self {
        self.special(s, Kind::Bos)
    }
    fn eos(&mut self, s: &str) -> &mut Self {
        self.special(s, Kind::Eos)
    }
}

/// Python's `str.strip()` (Jinja's `trim` filter and `.strip()`): Unicode
/// whitespace, plus the ASCII separators U+001C..U+001F that Python also
/// counts as space.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

impl Template {
    /// Every template, [`Template::None`] first.
    pub const ALL: [Template; 8] = [
        Template::None,
        Template::Zephyr,
        Template::Llama2,
        Template::ChatMl,
        Template::Gemma,
        Template::Phi3,
        Template::Phi2,
        Template::Llama3,
    ];

    /// The name used by `--template` and in output: `none`, `zephyr`,
    /// `llama-2`, `chatml`, `gemma`, `phi-3`, `phi-2`, `llama-3`.
    pub fn name(self) -> &'static str {
        match self {
            Template::None => "none",
            Template::Zephyr => "zephyr",
            Template::Llama2 => "llama-2",
            Template::ChatMl => "chatml",
            Template::Gemma => "gemma",
            Template::Phi3 => "phi-3",
            Template::Phi2 => "phi-2",
            Template::Llama3 => "llama-3",
        }
    }

    /// The template called `s`: a [`name`](Self::name) or a common alias
    /// (`tinyllama`, `llama2`, `qwen`, `phi3`, `phi2`, `llama3`, `plain`),
    /// ignoring case and surrounding spaces.
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let t = match s.as_str() {
            "none" | "plain" | "raw" => Template::None,
            "zephyr" | "tinyllama" => Template::Zephyr,
            "llama-2" | "llama2" => Template::Llama2,
            "chatml" | "qwen" | "qwen2" => Template::ChatMl,
            "gemma" => Template::Gemma,
            "phi-3" | "phi3" => Template::Phi3,
            "phi-2" | "phi2" => Template::Phi2,
            "llama-3" | "llama3" => Template::Llama3,
            _ => return None,
        };
        Some(t)
    }

    /// Recognises a GGUF `tokenizer.chat_template` (Jinja source) as one of
    /// the known formats by the markers it writes; `None` if it is none of
    /// them. Whitespace and Jinja layout do not matter. A `[INST]` template
    /// without `<<SYS>>` (Mistral's) is not Llama-2's and is not recognised.
    /// [`Template::Phi2`] and [`Template::None`] are never returned.
    pub fn detect(jinja: &str) -> Option<Self> {
        let has = |m: &str| jinja.contains(m);
        if has("<|start_header_id|>") && has("<|end_header_id|>") && has("<|eot_id|>") {
            Some(Template::Llama3)
        } else if has("<start_of_turn>") && has("<end_of_turn>") {
            Some(Template::Gemma)
        } else if has("<|im_start|>") && has("<|im_end|>") {
            Some(Template::ChatMl)
        } else if has("<|user|>") && has("<|assistant|>") && has("<|end|>") {
            Some(Template::Phi3)
        } else if has("<|user|>") && has("<|assistant|>") && has("eos_token") {
            Some(Template::Zephyr)
        } else if has("[INST]") && has("[/INST]") && has("<<SYS>>") {
            Some(Template::Llama2)
        } else {
            None
        }
    }

    /// A guess from GGUF `general.architecture` for files without a chat
    /// template: `gemma*` → Gemma, `phi3` → Phi-3, `phi2` → Phi-2,
    /// `qwen*` → ChatML. Llama-architecture files are base models as often as
    /// chat models, so `llama` gives `None`.
    pub fn from_arch(arch: &str) -> Option<Self> {
        match arch {
            a if a.starts_with("gemma") => Some(Template::Gemma),
            "phi3" => Some(Template::Phi3),
            "phi2" => Some(Template::Phi2),
            a if a.starts_with("qwen") => Some(Template::ChatMl),
            _ => None,
        }
    }

    /// Whether the template writes BOS into the text itself (Llama-2, Gemma,
    /// Llama-3). If not, the tokenizer's own `add_bos` setting decides
    /// whether ids start with BOS (Zephyr/TinyLlama rely on it). Never both:
    /// that would give two BOS.
    pub fn writes_bos(self) -> bool {
        matches!(self, Template::Llama2 | Template::Gemma | Template::Llama3)
    }

    /// Whether whitespace right after a special marker is dropped when
    /// tokenizing. Phi-3's added tokens are `rstrip=True` in transformers (and
    /// llama.cpp sets the same attribute for phi-3), so `<|end|>\n` is one id.
    pub fn strips_after_markers(self) -> bool {
        self == Template::Phi3
    }

    /// Whether the template can express `messages` faithfully. Llama-2 and
    /// Gemma have no system turn: they put a system message inside the first
    /// user turn, so a system message anywhere but first (a second one, or
    /// one after a user turn) and a system message with no turn after it
    /// would vanish from the text; those conversations are refused, with the
    /// same rule for both, rather than rendered without them. The other
    /// templates express any order.
    pub fn check(self, messages: &[Message]) -> crate::Result<()> {
        if !matches!(self, Template::Llama2 | Template::Gemma) {
            return Ok(());
        }
        if let Some(i) = messages.iter().skip(1).position(|m| m.role == Role::System) {
            return Err(crate::Error::Usage(alloc::format!(
                "message {}: the {} template can only take a system message first (it goes inside the first user turn)",
                i + 1,
                self.name()
            )));
        }
        if messages.len() == 1 && messages[0].role == Role::System {
            return Err(crate::Error::Usage(alloc::format!(
                "the {} template needs a message after the system message (the system prompt goes inside it)",
                self.name()
            )));
        }
        Ok(())
    }

    /// Renders a conversation to the text `apply_chat_template` gives, with
    /// or without the generation prompt (the header of the assistant reply
    /// to come). `bos`/`eos` are the tokenizer's BOS/EOS token strings
    /// (`"<s>"`, `"</s>"`). Messages are rendered as the Jinja does even if
    /// roles do not alternate; the templates that raise an exception in
    /// Python for such input render it anyway.
    pub fn render(self, messages: &[Message], add_generation_prompt: bool, bos: &str, eos: &str) -> String {
        let mut s = Sink::default();
        self.render_into(&mut s, messages, add_generation_prompt, bos, eos);
        s.text
    }

    /// The text one user turn adds after the previous turns, each closed by
    /// [`after_reply`](Self::after_reply), so that the pieces concatenate to
    /// [`render`](Self::render) of the whole conversation with the
    /// generation prompt:
    ///
    /// - `first`: this is the first turn of the conversation. It carries
    ///   `system` (ignored when not `first`) and, for templates that
    ///   [write BOS](Self::writes_bos), the BOS.
    /// - The text ends with the generation prompt.
    ///
    /// Equivalently, `render(prev ++ [user], true) == render(prev, false) +
    /// render_turn(None, false, user)` when `prev` ends with an assistant
    /// reply, for every template but Phi-3, whose `render(.., false)` ends
    /// with an extra EOS.
    pub fn render_turn(self, system: Option<&str>, first: bool, user: &str, bos: &str, eos: &str) -> String {
        let mut s = Sink::default();
        self.turn_into(&mut s, system, first, user, bos, eos);
        s.text
    }

    /// How an assistant reply with text `content` appears between the
    /// generation prompt and [`after_reply`](Self::after_reply): `content`
    /// itself, stripped for Llama-2/Gemma/Llama-3 (whose templates strip
    /// it), with a leading space for Llama-2 and Phi-2.
    pub fn render_reply(self, content: &str) -> String {
        let mut s = Sink::default();
        self.reply_into(&mut s, content);
        s.text
    }

    /// What closes an assistant reply in the conversation: it starts with
    /// the end-of-turn token the model stops at (which the generation loop
    /// does not feed back) and includes what the template writes after it
    /// up to the next turn: `eos + "\n"` (Zephyr), `" " + eos` (Llama-2),
    /// `"<|im_end|>\n"`, `"<end_of_turn>\n"`, `"<|end|>\n"`, `"<|eot_id|>"`,
    /// `"\n"` (Phi-2), `""` (None).
    pub fn after_reply(self, eos: &str) -> String {
        let mut s = Sink::default();
        self.after_reply_into(&mut s, eos);
        s.text
    }

    /// Token strings that end an assistant reply, besides the tokenizer's
    /// EOS. Each is a stop token when the vocabulary has it as one special
    /// token, and a stop string (matched in the generated text) otherwise.
    /// Nothing of a stop token or string is shown to the user.
    pub fn stop_pieces(self) -> &'static [&'static str] {
        match self {
            Template::None => &[],
            Template::Zephyr => &["</s>", "<|user|>", "<|system|>"],
            Template::Llama2 => &["</s>", "[INST]"],
            Template::ChatMl => &["<|im_end|>", "<|im_start|>", "<|endoftext|>"],
            Template::Gemma => &["<end_of_turn>", "<start_of_turn>", "<eos>"],
            Template::Phi3 => &["<|end|>", "<|endoftext|>", "<|user|>", "<|assistant|>"],
            Template::Phi2 => &["<|endoftext|>", "\nInstruct:", "\nUser:"],
            Template::Llama3 => &["<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>"],
        }
    }

    /// One message, outside of any context (Llama-2's system prompt and
    /// Gemma's system prefix are handled by the callers).
    fn msg_into(self, s: &mut Sink, role: Role, content: &str, bos: &str, eos: &str) {
        match self {
            Template::None => {
                s.text(content);
                if role == Role::System {
                    s.text("\n");
                }
            }
            // {{ '<|role|>\n' + content + eos_token }} then a newline kept by trim_blocks.
            Template::Zephyr => {
                s.marker(zephyr_marker(role)).text("\n").text(content).eos(eos).text("\n");
            }
            // A system message outside the first position renders nothing.
            Template::Llama2 => match role {
                Role::User => llama2_user_into(s, content, bos),
                Role::Assistant => {
                    s.text(" ").text(py_strip(content)).text(" ").eos(eos);
                }
                Role::System => {}
            },
            Template::ChatMl => {
                s.marker("<|im_start|>").text(role.name()).text("\n").text(content).marker("<|im_end|>").text("\n");
            }
            Template::Gemma => gemma_msg_into(s, role, None, content),
            Template::Phi3 => {
                s.marker(zephyr_marker(role)).text("\n").text(content).marker("<|end|>").text("\n");
            }
            Template::Phi2 => match role {
                Role::System => {
                    s.text(content).text("\n");
                }
                Role::User => {
                    s.text("Instruct: ").text(content).text("\n");
                }
                Role::Assistant => {
                    s.text("Output:");
                    self.reply_into(s, content);
                    self.after_reply_into(s, eos);
                }
            },
            Template::Llama3 => {
                s.marker("<|start_header_id|>")
                    .text(role.name())
                    .marker("<|end_header_id|>")
                    .text("\n\n")
                    .text(py_strip(content))
                    .marker("<|eot_id|>");
            }
        }
    }

    fn generation_prompt_into(self, s: &mut Sink) {
        match self {
            Template::None => {}
            Template::Zephyr | Template::Phi3 => {
                s.marker("<|assistant|>").text("\n");
            }
            Template::Llama2 => {}
            Template::ChatMl => {
                s.marker("<|im_start|>").text("assistant\n");
            }
            Template::Gemma => {
                s.marker("<start_of_turn>").text("model\n");
            }
            Template::Phi2 => {
                s.text("Output:");
            }
            Template::Llama3 => {
                s.marker("<|start_header_id|>").text("assistant").marker("<|end_header_id|>").text("\n\n");
            }
        }
    }

    fn render_into(self, s: &mut Sink, messages: &[Message], add_gen: bool, bos: &str, eos: &str) {
        match self {
            Template::Llama2 => {
                // The first message, if it is the system prompt, goes inside
                // the first remaining message; later system messages vanish.
                let (system, rest) = match messages.split_first() {
                    Some((m, rest)) if m.role == Role::System => (Some(m.content), rest),
                    _ => (None, messages),
                };
                for (i, m) in rest.iter().enumerate() {
                    match system {
                        Some(sys) if i == 0 => self.msg_into(s, m.role, &llama2_with_system(sys, m.content), bos, eos),
                        _ => self.msg_into(s, m.role, m.content, bos, eos),
                    }
                }
                // The template has no generation prompt: " [/INST]" ends the user turn.
            }
            Template::Gemma => {
                s.bos(bos);
                let (prefix, rest) = match messages.split_first() {
                    Some((m, rest)) if m.role == Role::System => (Some(m.content), rest),
                    _ => (None, messages),
                };
                for (i, m) in rest.iter().enumerate() {
                    gemma_msg_into(s, m.role, prefix.filter(|_| i == 0), m.content);
                }
                if add_gen {
                    self.generation_prompt_into(s);
                }
            }
            Template::Zephyr => {
                // The generation prompt is inside the loop (`loop.last`): an
                // empty conversation renders nothing.
                for m in messages {
                    self.msg_into(s, m.role, m.content, bos, eos);
                }
                if add_gen && !messages.is_empty() {
                    self.generation_prompt_into(s);
                }
            }
            Template::Llama3 => {
                for (i, m) in messages.iter().enumerate() {
                    if i == 0 {
                        s.bos(bos);
                    }
                    self.msg_into(s, m.role, m.content, bos, eos);
                }
                if add_gen {
                    self.generation_prompt_into(s);
                }
            }
            Template::None | Template::ChatMl | Template::Phi3 | Template::Phi2 => {
                for m in messages {
                    self.msg_into(s, m.role, m.content, bos, eos);
                }
                if add_gen {
                    self.generation_prompt_into(s);
                } else if self == Template::Phi3 {
                    s.eos(eos);
                }
            }
        }
    }

    fn turn_into(self, s: &mut Sink, system: Option<&str>, first: bool, user: &str, bos: &str, eos: &str) {
        let system = system.filter(|_| first);
        match self {
            Template::Llama2 => {
                let content = match system {
                    Some(sys) => llama2_with_system(sys, user),
                    None => user.to_string(),
                };
                llama2_user_into(s, &content, bos);
            }
            Template::Gemma => {
                if first {
                    s.bos(bos);
                }
                gemma_msg_into(s, Role::User, system, user);
                self.generation_prompt_into(s);
            }
            _ => {
                if first && self == Template::Llama3 {
                    s.bos(bos);
                }
                if let Some(sys) = system {
                    self.msg_into(s, Role::System, sys, bos, eos);
                }
                self.msg_into(s, Role::User, user, bos, eos);
                self.generation_prompt_into(s);
            }
        }
    }

    fn reply_into(self, s: &mut Sink, content: &str) {
        match self {
            Template::Llama2 => {
                s.text(" ").text(py_strip(content));
            }
            Template::Gemma | Template::Llama3 => {
                s.text(py_strip(content));
            }
            Template::Phi2 => {
                s.text(" ").text(content);
            }
            Template::None | Template::Zephyr | Template::ChatMl | Template::Phi3 => {
                s.text(content);
            }
        }
    }

    fn after_reply_into(self, s: &mut Sink, eos: &str) {
        match self {
            Template::None => {}
            Template::Zephyr => {
                s.eos(eos).text("\n");
            }
            Template::Llama2 => {
                s.text(" ").eos(eos);
            }
            Template::ChatMl => {
                s.marker("<|im_end|>").text("\n");
            }
            Template::Gemma => {
                s.marker("<end_of_turn>").text("\n");
            }
            Template::Phi3 => {
                s.marker("<|end|>").text("\n");
            }
            Template::Phi2 => {
                s.text("\n");
            }
            Template::Llama3 => {
                s.marker("<|eot_id|>");
            }
        }
    }
}

fn zephyr_marker(role: Role) -> &'static str {
    match role {
        Role::System => "<|system|>",
        Role::User => "<|user|>",
        Role::Assistant => "<|assistant|>",
    }
}

/// `'<start_of_turn>' + role + '\n' + prefix + content | trim + '<end_of_turn>\n'`
/// with role `model` for the assistant; `prefix` is the system prompt and a
/// blank line, on the first message only (Gemma 3's way).
fn gemma_msg_into(s: &mut Sink, role: Role, system: Option<&str>, content: &str) {
    let r = if role == Role::Assistant { "model" } else { role.name() };
    s.marker("<start_of_turn>").text(r).text("\n");
    if let Some(p) = system {
        s.text(p).text("\n\n");
    }
    s.text(py_strip(content)).marker("<end_of_turn>").text("\n");
}

fn llama2_with_system(system: &str, content: &str) -> String {
    format!("<<SYS>>\n{system}\n<</SYS>>\n\n{content}")
}

/// `bos_token + '[INST] ' + content.strip() + ' [/INST]'`.
fn llama2_user_into(s: &mut Sink, content: &str, bos: &str) {
    s.bos(bos).text("[INST] ").text(py_strip(content)).text(" [/INST]");
}

/// The template to use for a model: `override_name` if given (an unknown
/// name is an [`Error::Usage`]), else what [`Template::detect`] finds in the
/// GGUF `tokenizer.chat_template`, else a guess from the architecture
/// ([`Template::from_arch`]), else [`Template::None`].
///
/// The second value is a warning to show the user when the choice is a
/// guess: the file's template is not one lbm knows (then the architecture's
/// guess or `None`), or the file has no template and the architecture
/// suggests one. A file without a template whose architecture suggests
/// nothing (a base model) gets `None` without a warning, as does Phi-2,
/// which never has one.
pub fn choose(
    chat_template: Option<&str>,
    arch: &str,
    override_name: Option<&str>,
) -> Result<(Template, Option<String>)> {
    let known = || Template::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
    if let Some(name) = override_name {
        return match Template::from_name(name) {
            Some(t) => Ok((t, None)),
            None => Err(Error::Usage(format!("unknown chat template '{name}' (known: {})", known()))),
        };
    }
    let guess = Template::from_arch(arch);
    match chat_template.map(str::trim).filter(|j| !j.is_empty()) {
        Some(j) => match Template::detect(j) {
            Some(Template::Llama3) if j.contains("Cutting Knowledge Date") => Ok((
                Template::Llama3,
                Some("the model's chat template is Llama 3.1 style; using the Llama 3 format without its date/tools system header".into()),
            )),
            Some(t) => Ok((t, None)),
            None => {
                let t = guess.unwrap_or(Template::None);
                let what = match t {
                    Template::None => "chatting without a template (the model continues the text)".to_string(),
                    t => format!("using the {} format of the '{arch}' architecture", t.name()),
                };
                Ok((t, Some(format!("the model's chat template is not one lbm knows; {what}; pick one with --template ({})", known()))))
            }
        },
        None => match guess {
            Some(Template::Phi2) => Ok((Template::Phi2, None)),
            Some(t) => Ok((t, Some(format!("the model has no chat template; assuming the {} format from its '{arch}' architecture", t.name())))),
            None => Ok((Template::None, None)),
        },
    }
}

/// The system prompt a chat template writes when the conversation has none
/// (SmolLM2's "You are a helpful AI assistant named SmolLM...", Qwen2's
/// "You are a helpful assistant."): a constant system turn in the template
/// source, `<|im_start|>system` + newline + text + `<|im_end|>`, whose text
/// is a plain literal (no expression or quote inside it).
pub fn default_system_prompt(chat_template: &str) -> Option<String> {
    const OPEN: &str = "<|im_start|>system";
    let mut rest = chat_template;
    while let Some(i) = rest.find(OPEN) {
        let after = &rest[i + OPEN.len()..];
        // The newline may be literal or written as an escape.
        let body = after.strip_prefix('\n').or_else(|| after.strip_prefix("\\n"));
        if let Some(body) = body {
            if let Some(end) = body.find("<|im_end|>") {
                let text = &body[..end];
                let literal = !text.is_empty() && !text.contains(['\'', '"', '{', '}', '+']);
                if literal {
                    return Some(text.replace("\\n", "\n"));
                }
            }
        }
        rest = after;
    }
    None
}

/// Token ids of `messages` rendered with `template`, as the model is fed
/// them: see [`ChatEncoder::conversation`].
pub fn tokenize_conversation(
    tok: &Tokenizer,
    template: Template,
    messages: &[Message],
    add_generation_prompt: bool,
) -> Vec<u32> {
    ChatEncoder::new(tok, template).conversation(tok, messages, add_generation_prompt)
}

/// What ends a reply: ids the generation loop stops at, and strings to stop
/// at in the decoded text (pieces the vocabulary does not have as one token).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stops {
    /// Always includes the tokenizer's EOS.
    pub ids: Vec<u32>,
    pub strings: Vec<String>,
}

impl Stops {
    /// Whether `id` ends the reply.
    pub fn is_stop_id(&self, id: u32) -> bool {
        self.ids.contains(&id)
    }

    /// Where the earliest stop string starts in `text`, if one occurs.
    pub fn find(&self, text: &str) -> Option<usize> {
        self.strings.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
    }

    /// How much of `text` (with no stop string in it) can be shown now: all
    /// of it but a tail that could be the beginning of a stop string.
    pub fn safe_len(&self, text: &str) -> usize {
        let mut keep = text.len();
        for s in &self.strings {
            // Longest proper prefix of `s` that `text` ends with.
            for (i, _) in s.char_indices().skip(1) {
                if text.ends_with(&s[..i]) {
                    keep = keep.min(text.len() - i);
                }
            }
        }
        keep
    }
}

/// Turns template renderings into token ids for one tokenizer.
///
/// Made once per loaded model (for a SentencePiece tokenizer with the
/// dummy prefix it keeps a copy of the vocabulary with the prefix off, for
/// text that follows a special token); every method takes the same
/// tokenizer it was made from.
#[derive(Debug, Clone)]
pub struct ChatEncoder {
    template: Template,
    /// `Some`: the tokenizer without the dummy-prefix space, for text that
    /// does not start the conversation.
    no_prefix: Option<Tokenizer>,
    bos: String,
    eos: String,
}

impl ChatEncoder {
    pub fn new(tok: &Tokenizer, template: Template) -> Self {
        let no_prefix = match tok {
            Tokenizer::Spm(t) if t.add_space_prefix() => {
                let mut t = t.clone();
                t.set_add_space_prefix(false);
                Some(Tokenizer::Spm(t))
            }
            _ => None,
        };
        let piece = |id| tok.piece(id).unwrap_or("").to_string();
        ChatEncoder { template, no_prefix, bos: piece(tok.bos()), eos: piece(tok.eos()) }
    }

    pub fn template(&self) -> Template {
        self.template
    }

    /// The tokenizer's BOS/EOS token strings, as passed to the `render*` functions.
    pub fn bos_eos(&self) -> (&str, &str) {
        (&self.bos, &self.eos)
    }

    /// Whether ids of a whole conversation (and of its first turn) start
    /// with a BOS the tokenizer adds: it asks for one and the template does
    /// not write it.
    pub fn adds_bos(&self, tok: &Tokenizer) -> bool {
        tok.add_bos() && !self.template.writes_bos()
    }

    /// Ids of [`Template::render`]: what transformers feeds the model for
    /// `apply_chat_template` followed by tokenization with special tokens
    /// (BOS added by the tokenizer per [`adds_bos`](Self::adds_bos)), except
    /// that special-token text inside message content stays plain text.
    pub fn conversation(&self, tok: &Tokenizer, messages: &[Message], add_generation_prompt: bool) -> Vec<u32> {
        let mut s = Sink::default();
        self.template.render_into(&mut s, messages, add_generation_prompt, &self.bos, &self.eos);
        self.encode(tok, &s, true, self.adds_bos(tok))
    }

    /// Ids of [`Template::render_turn`]: the prompt for one user turn. The
    /// first turn starts with the tokenizer's BOS when [`adds_bos`](Self::adds_bos).
    pub fn turn(&self, tok: &Tokenizer, system: Option<&str>, first: bool, user: &str) -> Vec<u32> {
        let mut s = Sink::default();
        self.template.turn_into(&mut s, system, first, user, &self.bos, &self.eos);
        self.encode(tok, &s, first, first && self.adds_bos(tok))
    }

    /// Ids of [`Template::render_reply`] inside a conversation: what the
    /// model should have generated for a reply with this text (for
    /// rebuilding a context from stored text).
    pub fn reply(&self, tok: &Tokenizer, content: &str) -> Vec<u32> {
        let mut s = Sink::default();
        self.template.reply_into(&mut s, content);
        self.encode(tok, &s, false, false)
    }

    /// Ids of [`Template::after_reply`]: to feed after a reply (before the
    /// next turn's ids) to close it in the KV cache.
    pub fn after_reply(&self, tok: &Tokenizer) -> Vec<u32> {
        let mut s = Sink::default();
        self.template.after_reply_into(&mut s, &self.eos);
        self.encode(tok, &s, false, false)
    }

    /// The stop ids (EOS and the template's [stop pieces](Template::stop_pieces)
    /// that are special tokens of this vocabulary) and stop strings (the
    /// other stop pieces).
    pub fn stops(&self, tok: &Tokenizer) -> Stops {
        let mut st = Stops { ids: vec![tok.eos()], strings: Vec::new() };
        for &p in self.template.stop_pieces() {
            match special_id(tok, p) {
                Some(id) => {
                    if !st.ids.contains(&id) {
                        st.ids.push(id);
                    }
                }
                None => st.strings.push(p.to_string()),
            }
        }
        st
    }

    /// Tokenizes rendered text: marks that are special tokens become their
    /// ids, the text between them is encoded as plain text. `at_start`: the
    /// text begins the conversation (SentencePiece's dummy prefix applies
    /// to a leading text run).
    fn encode(&self, tok: &Tokenizer, s: &Sink, at_start: bool, add_bos: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(s.text.len() / 3 + 2);
        if add_bos {
            out.push(tok.bos());
        }
        let strip = self.template.strips_after_markers();
        let (mut run, mut after_marker) = (0, false);
        for (range, kind) in &s.marks {
            let id = match kind {
                Kind::Bos => tok.bos(),
                Kind::Eos => tok.eos(),
                Kind::Marker => match special_id(tok, &s.text[range.clone()]) {
                    Some(id) => id,
                    None => continue, // ordinary text: part of the run
                },
            };
            self.encode_run(tok, &s.text[run..range.start], at_start && run == 0, strip && after_marker, &mut out);
            out.push(id);
            run = range.end;
            after_marker = *kind == Kind::Marker;
        }
        self.encode_run(tok, &s.text[run..], at_start && run == 0, strip && after_marker, &mut out);
        out
    }

    fn encode_run(&self, tok: &Tokenizer, text: &str, at_start: bool, lstrip: bool, out: &mut Vec<u32>) {
        let text = if lstrip { text.trim_start() } else { text };
        if text.is_empty() {
            return;
        }
        let ids = match (&self.no_prefix, at_start) {
            (Some(raw), false) => raw.encode(text, false),
            _ => tok.encode(text, false),
        };
        out.extend_from_slice(&ids);
    }
}

/// The id of `piece` if the vocabulary has it as a special (control or
/// user-defined) token, which is what special-token parsing matches.
pub fn special_id(tok: &Tokenizer, piece: &str) -> Option<u32> {
    if piece.is_empty() {
        return None;
    }
    let id = tok.token_id(piece)?;
    let special = match tok {
        Tokenizer::Spm(t) => matches!(t.token_type(id), Some(spm::TokenType::Control | spm::TokenType::UserDefined)),
        Tokenizer::Bpe(t) => matches!(t.token_type(id), Some(bpe::TOKEN_CONTROL | bpe::TOKEN_USER_DEFINED)),
    };
    special.then_some(id)
}
