//! The chat REPL shared by the UEFI app and `lbm chat`.

use alloc::string::String;
use kernels::exec::Executor;

use crate::console::Console;
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use crate::Result;

/// Settings a user can change with slash commands or the settings file.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSettings {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: usize,
    pub max_tokens: usize,
    pub seed: u64,
    pub system_prompt: Option<String>,
    /// File name of the model to pick without asking (settings file only).
    pub default_model: Option<String>,
}

impl ChatSettings {
    /// Parses a settings file (`key = value` lines, `#` comments) on top of
    /// the defaults. Keys: model, temperature, max_tokens, top_p, top_k,
    /// seed, system.
    pub fn parse_cfg(text: &str) -> Result<Self> {
        let _ = text;
        todo!("lands with the chat")
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

/// A chat session over one loaded model.
pub struct Chat {
    _private: (),
}

impl Chat {
    /// A new session. `model_name` is shown in the prompt and `/stats`.
    pub fn new(model: Model, tokenizer: Tokenizer, settings: ChatSettings, model_name: String) -> Self {
        let _ = (model, tokenizer, settings, model_name);
        todo!("lands with the chat")
    }
    /// Runs the REPL until `/exit`, `/model` or end of input.
    pub fn run(&mut self, con: &mut dyn Console, exec: &dyn Executor) -> ReplExit {
        let _ = (con, exec);
        todo!("lands with the chat")
    }
}
