//! Tokenizer metadata: a SentencePiece `tokenizer.model`, or a byte-level
//! BPE vocabulary (`vocab.json` + `merges.txt`, or `tokenizer.json`), turned
//! into the `tokenizer.ggml.*` keys llama.cpp reads.
//!
//! Special-token ids are resolved as llama.cpp's `SpecialVocab` does: first
//! the `{bos,eos,unk,pad}_token` strings of tokenizer_config.json looked up
//! among the added tokens (then the vocabulary), then `*_token_id` in
//! config.json; for SentencePiece, finally the ids in the model's trainer spec.

use super::arch::Arch;
use super::config::JsonFile;
use crate::spm_model::{PieceType, SpmModel};
use anyhow::{bail, ensure, Context, Result};
use engine::gguf::Value;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::Path;

/// GGUF token types (same numbering as SentencePiece's piece types).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// An entry of `added_tokens` (tokenizer.json), `added_tokens_decoder`
/// (tokenizer_config.json) or added_tokens.json.
#[derive(Debug, Clone)]
struct Added {
    id: u64,
    content: String,
    special: bool,
}

/// The files a tokenizer may come from.
struct Files {
    tokenizer_config: Option<JsonFile>,
    tokenizer_json: Option<Json>,
    added: Vec<Added>,
}

/// Tokens that llama.cpp treats as control tokens even when a tokenizer
/// does not mark them special (its `does_token_look_special`).
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.is_file() {
        return Ok(None);
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{name} is not valid JSON"))?))
}

fn id_of(v: &Json, what: &str) -> Result<u64> {
    v.as_u64()
        .filter(|&i| i < u64::from(u32::MAX))
        .ok_or_else(|| anyhow::anyhow!("{what}: id must be a token id, found {v}"))
}

impl Files {
    fn load(dir: &Path) -> Result<Files> {
        let tokenizer_config = JsonFile::load_optional(&dir.join("tokenizer_config.json"))?;
        let tokenizer_json = read_json(&dir.join("tokenizer.json"))?;
        let mut added = Vec::new();
        if let Some(tj) = &tokenizer_json {
            if let Some(list) = tj.get("added_tokens") {
                let Some(list) = list.as_array() else { bail!("tokenizer.json: 'added_tokens' must be a list") };
                for (i, a) in list.iter().enumerate() {
                    let what = format!("tokenizer.json added_tokens[{i}]");
                    let id = id_of(a.get("id").unwrap_or(&Json::Null), &what)?;
                    let Some(content) = a.get("content").and_then(|c| c.as_str()) else {
                        bail!("{what}: missing 'content'");
                    };
                    let special = a.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
                    added.push(Added { id, content: content.to_string(), special });
                }
            }
        }
        if let Some(Json::Object(m)) = read_json(&dir.join("added_tokens.json"))? {
            for (content, id) in m {
                let id = id_of(&id, &format!("added_tokens.json '{content}'"))?;
                added.push(Added { id, content, special: false });
            }
        }
        if let Some(tc) = &tokenizer_config {
            if let Some(dec) = tc.get("added_tokens_decoder") {
                let Some(dec) = dec.as_object() else {
                    bail!("tokenizer_config.json: 'added_tokens_decoder' must be an object");
                };
                for (k, a) in dec {
                    let what = format!("tokenizer_config.json added_tokens_decoder '{k}'");
                    let id: u64 = k
                        .parse()
                        .ok()
                        .filter(|&i| i < u64::from(u32::MAX))
                        .with_context(|| format!("{what}: key is not a token id"))?;
                    let Some(content) = a.get("content").and_then(|c| c.as_str()) else {
                        bail!("{what}: missing 'content'");
                    };
                    let special = a.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
                    added.push(Added { id, content: content.to_string(), special });
                }
            }
        }
        Ok(Files { tokenizer_config, tokenizer_json, added })
    }

    fn tc_bool(&self, key: &str) -> Result<Option<bool>> {
        match &self.tokenizer_config {
            Some(tc) => tc.bool(&[key]),
            None => Ok(None),
        }
    }

    /// `{typ}_token` of tokenizer_config.json: a string or `{content: ...}`.
    fn tc_token(&self, typ: &str) -> Option<&str> {
        let v = self.tokenizer_config.as_ref()?.get(&format!("{typ}_token"))?;
        v.as_str().or_else(|| v.get("content")?.as_str())
    }
}

/// The special-token keys llama.cpp reads, with their HF names.
const SPECIALS: &[(&str, &str)] = &[
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
];

fn special_ids(
    files: &Files,
    config: &JsonFile,
    tokens: &[String],
    fallback: &dyn Fn(&str) -> Option<u32>,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<(String, Value)>> {
    let n = tokens.len() as u64;
    let mut out = Vec::new();
    for &(typ, key) in SPECIALS {
        let from_tc = files.tc_token(typ).and_then(|content| {
            files
                .added
                .iter()
                .find(|a| a.content == content)
                .map(|a| a.id)
                .or_else(|| tokens.iter().position(|t| t == content).map(|i| i as u64))
        });
        let id = match from_tc {
            Some(id) => Some(id),
            None => match config.token_id(&format!("{typ}_token_id"))? {
                Some(id) => Some(id),
                None => fallback(typ).map(u64::from),
            },
        };
        if let Some(id) = id {
            if id < n {
                out.push((key.to_string(), Value::U32(id as u32)));
            } else {
                log(&format!("warning: {typ} token id {id} is outside the vocabulary ({n} tokens); not recorded"));
            }
        }
    }
    Ok(out)
}

fn chat_template(dir: &Path, files: &Files) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    let from_tc = files.tokenizer_config.as_ref().and_then(|tc| tc.get("chat_template").cloned());
    let v = match from_tc {
        Some(v) => Some(v),
        None => {
            let jinja = dir.join("chat_template.jinja");
            if jinja.is_file() {
                let s = std::fs::read_to_string(&jinja).with_context(|| format!("cannot read {}", jinja.display()))?;
                Some(Json::String(s))
            } else {
                read_json(&dir.join("chat_template.json"))?.and_then(|j| j.get("chat_template").cloned())
            }
        }
    };
    match v {
        None => {}
        Some(Json::String(s)) => out.push(("tokenizer.chat_template".to_string(), Value::String(s))),
        // A list of named templates: "default" is the main one, the others
        // go to tokenizer.chat_template.NAME (as llama.cpp's writer does).
        Some(Json::Array(list)) => {
            for t in list {
                let (Some(name), Some(tpl)) =
                    (t.get("name").and_then(|n| n.as_str()), t.get("template").and_then(|n| n.as_str()))
                else {
                    bail!("chat_template: each entry of the list needs 'name' and 'template'");
                };
                let key = if name == "default" {
                    "tokenizer.chat_template".to_string()
                } else {
                    ensure!(
                        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
                        "chat_template: bad template name '{name}'"
                    );
                    format!("tokenizer.chat_template.{name}")
                };
                out.push((key, Value::String(tpl.to_string())));
            }
        }
        Some(other) => bail!("chat_template must be a string or a list, found {}", kind(&other)),
    }
    Ok(out)
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(v.into_iter().map(Value::String).collect())
}

/// Builds the tokenizer metadata for the model in `dir`, or `None` when the
/// folder has no tokenizer files. `n_vocab` is the number of embedding rows.
pub fn load(
    dir: &Path,
    arch: &Arch,
    n_vocab: u64,
    config: &JsonFile,
    log: &mut dyn FnMut(&str),
) -> Result<Option<Vec<(String, Value)>>> {
    let spm = dir.join("tokenizer.model");
    if spm.is_file() {
        return spm_vocab(dir, &spm, arch, n_vocab, config, log).map(Some);
    }
    if dir.join("vocab.json").is_file() || dir.join("tokenizer.json").is_file() {
        return bpe_vocab(dir, arch, n_vocab, config, log).map(Some);
    }
    log("no tokenizer files (tokenizer.model, vocab.json, tokenizer.json): writing no tokenizer metadata");
    Ok(None)
}

fn spm_vocab(
    dir: &Path,
    path: &Path,
    arch: &Arch,
    n_vocab: u64,
    config: &JsonFile,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<(String, Value)>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let model = SpmModel::parse(&bytes).context("tokenizer.model")?;
    let n = n_vocab as usize;
    ensure!(
        model.pieces.len() <= n,
        "tokenizer.model has {} pieces but the model's token embedding has only {n_vocab} rows",
        model.pieces.len()
    );
    // Rows the tokenizer does not cover are padding, as llama.cpp writes them.
    let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10000.0f32; n];
    let mut types = vec![UNUSED; n];
    for (i, p) in model.pieces.iter().enumerate() {
        tokens[i] = p.piece.clone();
        scores[i] = p.score;
        // The piece types map one to one (GGUF uses SentencePiece's numbering).
        types[i] = p.kind as i32;
    }
    let files = Files::load(dir)?;
    // Added tokens override the proto, as in llama.cpp, except that a piece
    // the proto already defines with the same text keeps its score and its
    // unknown/control/byte type (llama.cpp would turn `<unk>` into a control
    // token and reset scores to -1000).
    for a in &files.added {
        if a.id >= n_vocab {
            log(&format!(
                "warning: added token {:?} has id {} beyond the vocabulary ({n_vocab}); ignored",
                a.content, a.id
            ));
            continue;
        }
        let i = a.id as usize;
        let control = a.special || looks_special(&a.content);
        let same = i < model.pieces.len() && model.pieces[i].piece == a.content;
        if same {
            if matches!(model.pieces[i].kind, PieceType::Normal | PieceType::Unused | PieceType::UserDefined) {
                types[i] = if control { CONTROL } else { USER_DEFINED };
            }
            continue;
        }
        types[i] = if control { CONTROL } else { USER_DEFINED };
        tokens[i] = if control { a.content.clone() } else { a.content.replace('\u{2581}', " ") };
        scores[i] = -1000.0;
    }
    let trainer = &model.trainer;
    let fallback = |typ: &str| match typ {
        "bos" => model.special_id(trainer.bos_id),
        "eos" => model.special_id(trainer.eos_id),
        "unk" => model.special_id(trainer.unk_id),
        "pad" => model.special_id(trainer.pad_id),
        _ => None,
    };
    let specials = special_ids(&files, config, &tokens, &fallback, log)?;
    let add_space_prefix = match files.tc_bool("add_prefix_space")? {
        Some(b) => b,
        // llama.cpp's GemmaModel always writes add_space_prefix = false.
        None if arch.spec.arch == engine::model::Arch::Gemma => false,
        None => model.normalizer.add_dummy_prefix,
    };
    log(&format!("tokenizer: SentencePiece, {} pieces, {n_vocab} tokens", model.pieces.len()));

    let mut kv = vec![
        ("tokenizer.ggml.model".to_string(), Value::String("llama".into())),
        ("tokenizer.ggml.pre".to_string(), Value::String("default".into())),
        ("tokenizer.ggml.tokens".to_string(), strings(tokens)),
        ("tokenizer.ggml.scores".to_string(), Value::Array(scores.into_iter().map(Value::F32).collect())),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types.into_iter().map(Value::I32).collect())),
    ];
    kv.extend(specials);
    kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos(&files, arch, true)?)));
    kv.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(files.tc_bool("add_eos_token")?.unwrap_or(false))));
    kv.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(add_space_prefix)));
    kv.extend(chat_template(dir, &files)?);
    Ok(kv)
}

fn add_bos(files: &Files, arch: &Arch, default: bool) -> Result<bool> {
    // llama.cpp's Phi2Model always writes add_bos_token = false.
    if arch.spec.arch == engine::model::Arch::Phi2 {
        return Ok(false);
    }
    Ok(files.tc_bool("add_bos_token")?.unwrap_or(default))
}

/// Merges from tokenizer.json (`"a b"` strings, or `["a", "b"]` pairs whose
/// spaces are written as U+0120 as llama.cpp does), else from merges.txt.
fn merges(dir: &Path, files: &Files) -> Result<Vec<String>> {
    if let Some(list) = files.tokenizer_json.as_ref().and_then(|t| t.get("model")?.get("merges")) {
        let Some(list) = list.as_array() else { bail!("tokenizer.json: 'model.merges' must be a list") };
        if !list.is_empty() {
            let mut out = Vec::with_capacity(list.len());
            for (i, m) in list.iter().enumerate() {
                match m {
                    Json::String(s) => out.push(s.clone()),
                    Json::Array(p) if p.len() == 2 && p.iter().all(|x| x.is_string()) => {
                        let enc = |x: &Json| x.as_str().unwrap_or_default().replace(' ', "\u{0120}");
                        out.push(format!("{} {}", enc(&p[0]), enc(&p[1])));
                    }
                    other => {
                        bail!("tokenizer.json: model.merges[{i}] must be \"a b\" or [\"a\", \"b\"], found {other}")
                    }
                }
            }
            return Ok(out);
        }
    }
    let path = dir.join("merges.txt");
    if !path.is_file() {
        bail!("BPE tokenizer without merges (no merges.txt and no model.merges in tokenizer.json)");
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.starts_with('#')) {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        ensure!(parts.len() == 2, "merges.txt line {}: expected two symbols, found {:?}", i + 1, line);
        out.push(format!("{} {}", parts[0], parts[1]));
    }
    ensure!(!out.is_empty(), "merges.txt has no merges");
    Ok(out)
}

fn bpe_vocab(
    dir: &Path,
    arch: &Arch,
    n_vocab: u64,
    config: &JsonFile,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<(String, Value)>> {
    ensure!(
        !arch.bpe_pre.is_empty(),
        "a byte-level BPE tokenizer is not supported for architecture '{}'",
        arch.spec.name
    );
    let files = Files::load(dir)?;
    // The base vocabulary: vocab.json, or tokenizer.json's model.vocab.
    let (source, vocab) = match read_json(&dir.join("vocab.json"))? {
        Some(v) => ("vocab.json", v),
        None => {
            let tj = files.tokenizer_json.as_ref().context("no vocab.json and no tokenizer.json")?;
            let model = tj.get("model").context("tokenizer.json: missing 'model'")?;
            let ty = model.get("type").and_then(|t| t.as_str()).unwrap_or("BPE");
            ensure!(
                ty == "BPE",
                "tokenizer.json: unsupported tokenizer type '{ty}' (only BPE, or a SentencePiece tokenizer.model)"
            );
            (
                "tokenizer.json model.vocab",
                model.get("vocab").cloned().context("tokenizer.json: missing 'model.vocab'")?,
            )
        }
    };
    let Json::Object(vocab) = vocab else { bail!("{source} must map token strings to ids") };
    let mut by_id: BTreeMap<u64, (String, bool)> = BTreeMap::new();
    for (tok, id) in vocab {
        let id = id_of(&id, &format!("{source} '{tok}'"))?;
        if let Some((prev, _)) = by_id.insert(id, (tok.clone(), false)) {
            bail!("{source}: id {id} is given to both {prev:?} and {tok:?}");
        }
    }
    let mut added_ids = BTreeMap::new();
    for a in &files.added {
        // An added token may restate a vocabulary entry; a different text for
        // the same id is a contradiction between the tokenizer files.
        if let Some((t, _)) = by_id.get(&a.id) {
            ensure!(*t == a.content, "added token {:?} has id {} which the vocabulary gives to {t:?}", a.content, a.id);
        }
        let special = a.special || looks_special(&a.content);
        let e = added_ids.entry(a.id).or_insert(special);
        *e |= special;
        by_id.insert(a.id, (a.content.clone(), true));
    }
    if let Some((&max, (t, _))) = by_id.last_key_value() {
        ensure!(
            max < n_vocab,
            "tokenizer token {t:?} has id {max}, but the model's token embedding has only {n_vocab} rows"
        );
    }
    let n = n_vocab as usize;
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for i in 0..n_vocab {
        match by_id.get(&i) {
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(UNUSED);
            }
            Some((t, added)) => {
                tokens.push(t.clone());
                types.push(if !*added {
                    NORMAL
                } else if added_ids.get(&i).copied().unwrap_or(false) {
                    CONTROL
                } else {
                    USER_DEFINED
                });
            }
        }
    }
    let merges = merges(dir, &files)?;
    let vocab_lookup = |_: &str| None;
    let specials = special_ids(&files, config, &tokens, &vocab_lookup, log)?;
    log(&format!("tokenizer: byte-level BPE ({}), {} tokens, {} merges", arch.bpe_pre, tokens.len(), merges.len()));
    let mut kv = vec![
        ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), Value::String(arch.bpe_pre.into())),
        ("tokenizer.ggml.tokens".to_string(), strings(tokens)),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.merges".to_string(), strings(merges)),
    ];
    kv.extend(specials);
    kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos(&files, arch, false)?)));
    if let Some(b) = files.tc_bool("add_eos_token")? {
        kv.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(b)));
    }
    kv.extend(chat_template(dir, &files)?);
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_looking_tokens() {
        for t in ["<|endoftext|>", "<|im_start|>", "<pad>", "<unused12>", "<\u{ff5c}begin\u{ff5c}>"] {
            assert!(looks_special(t), "{t}");
        }
        for t in ["<s>", "hello", "<|", "|>", "<unk>"] {
            assert!(!looks_special(t), "{t}");
        }
    }
}
