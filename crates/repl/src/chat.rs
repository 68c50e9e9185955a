//! The chat REPL shared by the UEFI app and `lbm chat`: prompt and line
//! editing, slash commands, streaming replies, and a conversation whose
//! history lives in the KV cache.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use engine::generate::{Generation, Hooks, StopReason};
use engine::model::{KvType, Model, Session};
use engine::sampler::{self, Sampler, SamplerConfig};
use engine::template::{ChatEncoder, Stops, Template};
use engine::tokenizer::Tokenizer;
use engine::{Error, Result};
use kernels::exec::Executor;

use crate::console::{Console, Key};
use crate::line::{read_line, InputHistory, LineEvent};

/// Turns kept in a conversation; the prompt shows `[Turn k/10]`.
pub const MAX_TURNS: usize = 10;

/// Settings a user can change with slash commands or the settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSettings {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub max_tokens: usize,
    pub seed: u64,
    pub system_prompt: Option<String>,
    /// File name of the model to pick without asking (settings file only).
    pub default_model: Option<String>,
    /// How the KV cache stores keys and values (settings file only).
    pub kv_type: KvType,
    /// A cap on the SIMD level (settings file only; the app applies it at
    /// start, to measure a lower level on a faster machine).
    pub simd: Option<kernels::cpu::SimdLevel>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            temperature: 0.8,
            top_p: 0.95,
            top_k: 40,
            min_p: 0.05,
            repeat_penalty: 1.0,
            max_tokens: 256,
            seed: 42,
            system_prompt: None,
            default_model: None,
            kv_type: KvType::F32,
            simd: None,
        }
    }
}

fn parse_num<T: core::str::FromStr>(what: &str, v: &str) -> Result<T> {
    v.trim().parse().map_err(|_| Error::Usage(format!("{what}: '{}' is not a valid number", v.trim())))
}

/// `v` within the engine's limit for the setting.
fn limit(l: sampler::Limit, v: f32) -> Result<f32> {
    l.check(v).map_err(|e| Error::Usage(format!("{e}")))
}

/// Checks and parses the value of a numeric setting.
fn setting(key: &str, v: &str, s: &mut ChatSettings) -> Result<()> {
    match key {
        "temperature" | "temp" => s.temperature = limit(sampler::TEMPERATURE, parse_num("temperature", v)?)?,
        "max_tokens" | "tokens" => {
            let n: usize = parse_num("max tokens", v)?;
            if !(1..=4096).contains(&n) {
                return Err(Error::Usage(format!("max tokens must be between 1 and 4096 (got {n})")));
            }
            s.max_tokens = n;
        }
        "top_p" => s.top_p = limit(sampler::TOP_P, parse_num("top_p", v)?)?,
        "top_k" => {
            let k: usize = parse_num("top_k", v)?;
            let probe = SamplerConfig { top_k: k, ..SamplerConfig::default() };
            probe.validate().map_err(|e| Error::Usage(format!("{e}")))?;
            s.top_k = k;
        }
        "min_p" => s.min_p = limit(sampler::MIN_P, parse_num("min_p", v)?)?,
        "repeat_penalty" => s.repeat_penalty = limit(sampler::REPEAT_PENALTY, parse_num("repeat_penalty", v)?)?,
        "seed" => s.seed = parse_num("seed", v)?,
        _ => return Err(Error::Usage(format!("unknown setting '{key}'"))),
    }
    Ok(())
}

impl ChatSettings {
    /// Parses a settings file (`key = value` lines, `#` comments) on top of
    /// the defaults. Keys: model, temperature, max_tokens, top_p, top_k,
    /// min_p, repeat_penalty, seed, system, kv_type, simd.
    pub fn parse_cfg(text: &str) -> Result<Self> {
        let mut s = ChatSettings::default();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim().trim_start_matches('\u{feff}');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(Error::Usage(format!("settings line {}: expected 'key = value', got '{line}'", n + 1)));
            };
            let (k, v) = (k.trim(), v.trim());
            let r = match k {
                "model" => {
                    s.default_model = (!v.is_empty()).then(|| v.to_string());
                    Ok(())
                }
                "system" | "system_prompt" => {
                    s.system_prompt = (!v.is_empty()).then(|| v.to_string());
                    Ok(())
                }
                "simd" => match kernels::cpu::SimdLevel::from_name(v) {
                    Some(l) => {
                        s.simd = Some(l);
                        Ok(())
                    }
                    None => Err(Error::Usage(format!("simd must be scalar, avx2, avx512 or avx512vnni (got '{v}')"))),
                },
                "kv_type" => match KvType::from_name(v) {
                    Some(t) => {
                        s.kv_type = t;
                        Ok(())
                    }
                    None => Err(Error::Usage(format!("kv_type must be f32 or f16 (got '{v}')"))),
                },
                _ => setting(k, v, &mut s),
            };
            r.map_err(|e| Error::Usage(format!("settings line {}: {e}", n + 1)))?;
        }
        Ok(s)
    }

    /// Checks settings given outside the file and the slash commands (the
    /// command line's flags) against the same limits.
    pub fn validate(&self) -> Result<()> {
        if !(1..=4096).contains(&self.max_tokens) {
            return Err(Error::Usage(format!("max tokens must be between 1 and 4096 (got {})", self.max_tokens)));
        }
        self.sampler_config().validate()
    }

    fn sampler_config(&self) -> SamplerConfig {
        SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
        }
    }
}

/// How the REPL ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplExit {
    /// `/exit` or end of input.
    Exit,
    /// `/model`: go back to the model menu.
    ChangeModel,
}

/// One exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub user: String,
    /// The reply as shown (stop tokens and strings removed).
    pub reply: String,
    /// The reply's token ids as generated (the stop token excluded).
    pub reply_ids: Vec<u32>,
}

/// Counters for `/stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub tokens_generated: u64,
    pub last_prompt_tok_s: f64,
    pub last_decode_tok_s: f64,
}

/// The commands, for `/help` and Tab completion.
const COMMANDS: &[(&str, &str)] = &[
    ("/help", "show this help"),
    ("/clear", "forget the conversation (history and KV cache)"),
    ("/history", "show the last turns"),
    ("/stats", "show context, speed, settings and memory"),
    ("/temp", "<0.0-2.0> set the temperature (0 = greedy)"),
    ("/tokens", "<1-4096> set the maximum reply length"),
    ("/top_p", "<p> set nucleus sampling (1 = off)"),
    ("/top_k", "<k> set top-k sampling (0 = off)"),
    ("/seed", "<n> restart the random generator with a seed"),
    ("/system", "<text> set the system prompt (no text: show it)"),
    ("/template", "[name] show or set the chat template"),
    ("/bench", "[n] measure decode speed over n tokens (default 32) on all cores"),
    ("/model", "go back to the model menu"),
    ("/exit", "leave (shuts the machine down on bare metal)"),
];

/// A conversation over one loaded model: the turns and settings here, the
/// KV cache and the evaluated tokens in [`Session`].
pub struct Chat {
    pub model: Model,
    pub session: Session,
    pub tokenizer: Tokenizer,
    pub settings: ChatSettings,
    pub name: String,
    pub turns: Vec<Turn>,
    pub stats: Stats,
    /// How turns are rendered for the model.
    pub template: Template,
    /// Said once when the chat starts (e.g. an unknown template).
    pub template_note: Option<String>,
    /// The system prompt the model's chat template writes when none is set.
    pub default_system: Option<String>,
    enc: ChatEncoder,
    stops: Stops,
    sampler: Sampler,
    inputs: InputHistory,
}

struct ConsoleHooks<'a> {
    con: &'a mut dyn Console,
    stops: &'a Stops,
    /// The reply so far, and how much of it has been shown.
    text: String,
    shown: usize,
    /// Where a stop string began, if one was generated.
    stop_at: Option<usize>,
}

impl ConsoleHooks<'_> {
    /// Shows the rest of the reply (after generation ended).
    fn flush(&mut self) {
        let end = self.stop_at.unwrap_or(self.text.len());
        if end > self.shown {
            self.con.write_str(&self.text[self.shown..end]);
            self.shown = end;
        }
    }
}

impl Hooks for ConsoleHooks<'_> {
    fn now_us(&mut self) -> u64 {
        self.con.now_us()
    }
    fn on_text(&mut self, text: &str) -> bool {
        self.text.push_str(text);
        if let Some(at) = self.stops.find(&self.text) {
            self.stop_at = Some(at);
            self.flush();
            return false;
        }
        let safe = self.stops.safe_len(&self.text);
        if safe > self.shown {
            self.con.write_str(&self.text[self.shown..safe]);
            self.shown = safe;
        }
        !matches!(self.con.poll_key(), Some(Key::Esc | Key::CtrlC))
    }
    fn is_stop(&self, id: u32) -> bool {
        self.stops.is_stop_id(id)
    }
}

impl Chat {
    /// A new conversation with a context of `n_ctx` tokens (clamped to the
    /// model's). `name` is shown in the greeting and `/stats`. Fails when the
    /// KV cache cannot be reserved.
    pub fn new(model: Model, tokenizer: Tokenizer, settings: ChatSettings, name: String, n_ctx: usize) -> Result<Self> {
        let session = Session::with_kv_type(&model, n_ctx, settings.kv_type)?;
        let sampler = Sampler::new(settings.sampler_config(), model.config.vocab_size);
        let (template, template_note) =
            match engine::template::choose(model.chat_template.as_deref(), model.config.arch.name(), None) {
                Ok(t) => t,
                Err(e) => (Template::None, Some(e.to_string())),
            };
        let enc = ChatEncoder::new(&tokenizer, template);
        let stops = enc.stops(&tokenizer);
        let default_system = match template {
            Template::ChatMl => model.chat_template.as_deref().and_then(engine::template::default_system_prompt),
            _ => None,
        };
        Ok(Chat {
            default_system,
            model,
            session,
            tokenizer,
            settings,
            name,
            turns: Vec::new(),
            stats: Stats::default(),
            template,
            template_note,
            enc,
            stops,
            sampler,
            inputs: InputHistory::default(),
        })
    }

    /// Tokens in the KV cache.
    pub fn context_len(&self) -> usize {
        self.session.pos()
    }

    /// Switches the chat template; the conversation is evaluated again with it.
    pub fn set_template(&mut self, t: Template) {
        self.template = t;
        self.enc = ChatEncoder::new(&self.tokenizer, t);
        self.stops = self.enc.stops(&self.tokenizer);
        self.session.clear();
    }

    /// The prompt tokens of a user turn. The first turn of a conversation
    /// carries BOS and the system prompt.
    fn turn_prompt(&self, first: bool, user: &str) -> Vec<u32> {
        let system = self.system_prompt().filter(|_| first);
        match self.template {
            Template::None => {
                // Plain continuation: BOS and the system prompt as text, then the user's text.
                let mut ids = Vec::new();
                if first {
                    if self.tokenizer.add_bos() {
                        ids.push(self.tokenizer.bos());
                    }
                    if let Some(sys) = system {
                        ids.extend(self.tokenizer.encode(&format!("{sys}\n"), false));
                    }
                }
                ids.extend(self.tokenizer.encode(user, false));
                ids
            }
            _ => self.enc.turn(&self.tokenizer, system, first, user),
        }
    }

    /// The system prompt in use: the user's, else the template's default.
    pub fn system_prompt(&self) -> Option<&str> {
        self.settings.system_prompt.as_deref().or(self.default_system.as_deref())
    }

    /// Tokens that close a reply before the next turn (e.g. `</s>` and a newline).
    fn closing(&self) -> Vec<u32> {
        match self.template {
            Template::None => Vec::new(),
            _ => self.enc.after_reply(&self.tokenizer),
        }
    }

    /// Every token of the kept turns, as a fresh evaluation would see them.
    pub fn history_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for (i, t) in self.turns.iter().enumerate() {
            if i > 0 {
                ids.extend(self.closing());
            }
            ids.extend(self.turn_prompt(i == 0, &t.user));
            ids.extend_from_slice(&t.reply_ids);
        }
        ids
    }

    /// Forgets the conversation.
    pub fn clear(&mut self) {
        self.turns.clear();
        self.session.clear();
    }

    /// Runs one turn: `user` is what the user typed. The reply streams to
    /// `con`. Returns the generation's figures.
    pub fn turn(&mut self, con: &mut dyn Console, exec: &dyn Executor, user: &str) -> Result<Generation> {
        let n_ctx = self.session.n_ctx();
        if user.is_empty() {
            return Err(Error::Usage("nothing to say".into()));
        }
        // The new turn alone, as the first of a conversation, must fit.
        let alone = self.turn_prompt(true, user).len();
        if alone + 1 > n_ctx {
            return Err(Error::Usage(format!(
                "that message takes {alone} tokens with the template and system prompt; the context holds {n_ctx}"
            )));
        }
        let reserve = self.settings.max_tokens.min(n_ctx - alone);
        let needed = |chat: &Chat| {
            if chat.turns.is_empty() {
                alone
            } else {
                chat.history_ids().len() + chat.closing().len() + chat.turn_prompt(false, user).len() + 1
            }
        };
        let mut dropped = 0;
        let mut rebuild = self.session.pos() == 0 && !self.turns.is_empty();
        while !self.turns.is_empty() && (self.turns.len() >= MAX_TURNS || needed(self) + reserve > n_ctx) {
            self.turns.remove(0);
            dropped += 1;
            rebuild = true;
        }
        if dropped > 0 {
            con.write_str(&format!(
                "(dropped the {} oldest turn{} to make room; the system prompt is kept)\n",
                dropped,
                if dropped == 1 { "" } else { "s" }
            ));
        }
        let first = self.turns.is_empty();
        let prompt = if rebuild || first {
            // Evaluate what is kept from scratch, then the new turn.
            let mut p = self.history_ids();
            if !first {
                p.extend(self.closing());
            }
            p.extend(self.turn_prompt(first, user));
            self.session.clear();
            p
        } else {
            // The previous reply's pending last token (if any) goes first;
            // the session puts it there.
            let mut p = self.closing();
            p.extend(self.turn_prompt(false, user));
            p
        };
        let n_past = self.session.pos() + usize::from(self.session.pending().is_some());
        let max_new = self.settings.max_tokens.min(n_ctx.saturating_sub(n_past + prompt.len()));
        let mut hooks = ConsoleHooks { con, stops: &self.stops, text: String::new(), shown: 0, stop_at: None };
        let mut gen = self.session.generate(
            &self.model,
            Some(&self.tokenizer),
            &mut self.sampler,
            exec,
            &prompt,
            max_new.max(1),
            &mut hooks,
        )?;
        hooks.flush();
        let stop_string = hooks.stop_at.is_some();
        let reply = match hooks.stop_at {
            Some(at) => hooks.text[..at].to_string(),
            None => hooks.text.clone(),
        };
        if stop_string {
            gen.stop = StopReason::Eos;
        }
        self.turns.push(Turn { user: user.into(), reply, reply_ids: gen.ids.clone() });
        self.stats.tokens_generated += gen.ids.len() as u64;
        self.stats.last_prompt_tok_s = gen.prompt_tok_s();
        self.stats.last_decode_tok_s = gen.decode_tok_s();
        Ok(gen)
    }

    /// Runs the REPL until `/exit`, `/model` or end of input.
    pub fn run(&mut self, con: &mut dyn Console, exec: &dyn Executor) -> ReplExit {
        let c = &self.model.config;
        con.write_str(&format!(
            "\nChatting with {} ({}, {} layers, dim {}, {}). Type /help for commands.\n",
            self.name,
            c.arch.name(),
            c.n_layers,
            c.dim,
            self.model.tensor_type()
        ));
        con.write_str(&format!("Template: {}.\n", self.template.name()));
        if let Some(note) = self.template_note.take() {
            con.write_str(&format!("warning: {note}\n"));
        }
        let complete = |text: &str| -> Vec<&'static str> {
            if !text.starts_with('/') || text.contains(' ') {
                return Vec::new();
            }
            COMMANDS.iter().map(|(c, _)| *c).filter(|c| c.starts_with(text)).collect()
        };
        loop {
            let prompt = format!("\n[Turn {}/{}] You: ", (self.turns.len() + 1).min(MAX_TURNS), MAX_TURNS);
            let line = match read_line(con, &prompt, &self.inputs, &complete) {
                LineEvent::Line(l) => l,
                LineEvent::Cancelled => continue,
                LineEvent::Eof => return ReplExit::Exit,
            };
            self.inputs.push(&line);
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            if text.starts_with('/') {
                match self.command(con, exec, text) {
                    Some(exit) => return exit,
                    None => continue,
                }
            }
            con.write_str("AI: ");
            match self.turn(con, exec, text) {
                Ok(g) => {
                    let why = match g.stop {
                        StopReason::Eos => "",
                        StopReason::Limit => ", token limit",
                        StopReason::Context => ", context full",
                        StopReason::Interrupted => ", stopped",
                    };
                    con.write_str(&format!(
                        "\n[{} tokens{}; prompt {:.1} tok/s, decode {:.1} tok/s]\n",
                        g.ids.len(),
                        why,
                        g.prompt_tok_s(),
                        g.decode_tok_s()
                    ));
                }
                Err(e) => con.write_str(&format!("\nerror: {e}\n")),
            }
        }
    }

    /// Handles a slash command; `Some` ends the REPL.
    fn command(&mut self, con: &mut dyn Console, exec: &dyn Executor, text: &str) -> Option<ReplExit> {
        let (cmd, arg) = match text.split_once(char::is_whitespace) {
            Some((c, a)) => (c, a.trim()),
            None => (text, ""),
        };
        let set = |key: &str, this: &mut Chat| -> Result<()> {
            if arg.is_empty() {
                return Err(Error::Usage(format!("{cmd} needs a value; see /help")));
            }
            let mut s = this.settings.clone();
            setting(key, arg, &mut s)?;
            this.settings = s;
            let seed_changed = key == "seed";
            this.sampler.config = this.settings.sampler_config();
            if seed_changed {
                this.sampler.reseed(this.settings.seed);
            }
            Ok(())
        };
        let r: Result<()> = match cmd {
            "/help" => {
                con.write_str("Commands:\n");
                for (c, h) in COMMANDS {
                    con.write_str(&format!("  {c:<9} {h}\n"));
                }
                con.write_str("Esc or Ctrl-C stops a reply. Up/Down recall earlier inputs; Tab completes commands.\n");
                Ok(())
            }
            "/clear" => {
                self.clear();
                con.write_str("Conversation cleared.\n");
                Ok(())
            }
            "/history" => {
                if self.turns.is_empty() {
                    con.write_str("No turns yet.\n");
                }
                for (i, t) in self.turns.iter().enumerate() {
                    con.write_str(&format!("{}. You: {}\n   AI: {}\n", i + 1, t.user, t.reply.trim()));
                }
                Ok(())
            }
            "/stats" => {
                self.print_stats(con, exec);
                Ok(())
            }
            "/temp" => set("temperature", self)
                .map(|_| con.write_str(&format!("temperature = {:.2}\n", self.settings.temperature))),
            "/tokens" => {
                set("max_tokens", self).map(|_| con.write_str(&format!("max tokens = {}\n", self.settings.max_tokens)))
            }
            "/top_p" => set("top_p", self).map(|_| con.write_str(&format!("top_p = {:.2}\n", self.settings.top_p))),
            "/top_k" => set("top_k", self).map(|_| con.write_str(&format!("top_k = {}\n", self.settings.top_k))),
            "/seed" => set("seed", self).map(|_| con.write_str(&format!("seed = {}\n", self.settings.seed))),
            "/system" => {
                if arg.is_empty() {
                    match self.system_prompt() {
                        Some(s) => con.write_str(&format!("System prompt: {s}\n")),
                        None => con.write_str("No system prompt. Set one with /system <text>.\n"),
                    }
                } else {
                    self.settings.system_prompt = Some(arg.to_string());
                    // The prefix changed: the next turn re-evaluates the context.
                    self.session.clear();
                    con.write_str("System prompt set.\n");
                }
                Ok(())
            }
            "/template" => {
                if arg.is_empty() {
                    let names: Vec<&str> = Template::ALL.iter().map(|t| t.name()).collect();
                    con.write_str(&format!("Template: {} (available: {})\n", self.template.name(), names.join(", ")));
                    Ok(())
                } else {
                    match Template::from_name(arg) {
                        Some(t) => {
                            self.set_template(t);
                            con.write_str(&format!("Template: {}.\n", t.name()));
                            Ok(())
                        }
                        None => Err(Error::Usage(format!("unknown template '{arg}'; /template lists them"))),
                    }
                }
            }
            "/bench" => self.bench(con, exec, arg),
            "/model" => return Some(ReplExit::ChangeModel),
            "/exit" | "/quit" => return Some(ReplExit::Exit),
            _ => Err(Error::Usage(format!("unknown command {cmd}; type /help"))),
        };
        if let Err(e) = r {
            con.write_str(&format!("error: {e}\n"));
        }
        None
    }

    /// `/bench [n]`: decodes `n` tokens after the conversation (in the unused
    /// part of the KV cache, which the next turn overwrites) and reports tok/s.
    fn bench(&mut self, con: &mut dyn Console, exec: &dyn Executor, arg: &str) -> Result<()> {
        let n: usize = if arg.is_empty() { 32 } else { parse_num("/bench", arg)? };
        let start = self.session.pos();
        let room = self.session.n_ctx().saturating_sub(start);
        if n == 0 || n > room {
            return Err(Error::Usage(format!("/bench takes 1 to {room} tokens (the free part of the context)")));
        }
        con.write_str(&format!("Decoding {n} tokens on {} core(s)...\n", exec.n_threads()));
        let mut tok = self.tokenizer.bos();
        let t0 = con.now_us();
        let pending = self.session.pending();
        let mut run = || -> Result<()> {
            for _ in 0..n {
                let l = self.session.eval(&self.model, &[tok], exec)?;
                tok = engine::sampler::argmax(l);
            }
            Ok(())
        };
        let r = run();
        // The conversation's KV cache is as it was; the bench's tokens are
        // overwritten by the next turn.
        self.session.truncate(start);
        self.session.set_pending(pending);
        r?;
        let us = con.now_us().saturating_sub(t0).max(1);
        con.write_str(&format!(
            "decode: {:.2} tok/s ({n} tokens in {:.2} s, {} SIMD, {} core(s))\n",
            n as f64 * 1e6 / us as f64,
            us as f64 / 1e6,
            kernels::cpu::level().name(),
            exec.n_threads()
        ));
        Ok(())
    }

    fn print_stats(&self, con: &mut dyn Console, exec: &dyn Executor) {
        let p = con.platform();
        let s = &self.settings;
        let mem = if p.mem_used > 0 { p.mem_used } else { self.model.weight_bytes() + self.session.memory_bytes() };
        con.write_str(&format!(
            "model:       {} ({})\nturns:       {}/{}\ncontext:     {}/{} tokens\ngenerated:   {} tokens\nspeed:       prompt {:.1} tok/s, decode {:.1} tok/s (last reply)\nsampling:    temperature {:.2}, top_p {:.2}, top_k {}, max tokens {}, seed {}\nsystem:      {}\ncpu:         {} SIMD, {} core{}\nmemory:      {:.1} MiB in use\n",
            self.name,
            self.model.tensor_type(),
            self.turns.len(),
            MAX_TURNS,
            self.context_len(),
            self.session.n_ctx(),
            self.stats.tokens_generated,
            self.stats.last_prompt_tok_s,
            self.stats.last_decode_tok_s,
            s.temperature,
            s.top_p,
            s.top_k,
            s.max_tokens,
            s.seed,
            self.system_prompt().unwrap_or("(none)"),
            if p.simd.is_empty() { kernels::cpu::level().name() } else { &p.simd },
            exec.n_threads(),
            if exec.n_threads() == 1 { "" } else { "s" },
            mem as f64 / (1024.0 * 1024.0),
        ));
    }
}
