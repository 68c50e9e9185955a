//! Finding models on the ESP, listing them and letting the user pick one.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use engine::gguf::split::{self, MergePlan, Shard};
use engine::gguf::Gguf;
use engine::load::ModelSummary;
use repl::{format_params, format_size};

use crate::fs::{DirEntry, Esp};

/// Directories scanned for models, in order.
pub const MODEL_DIRS: [&str; 2] = ["\\", "\\models"];
/// First read when probing a header.
const PROBE_FIRST: usize = 64 << 10;
/// Most header bytes read when probing (GGUF vocabularies can be large).
const PROBE_MAX: u64 = 64 << 20;

/// What a file on the ESP is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gguf,
    /// A llama2.c checkpoint (needs a tokenizer file).
    Llama2c,
    /// A llama2.c tokenizer (`tok*.bin`, `*.tok.bin`).
    Tokenizer,
    Other,
}

/// Classifies a file name (case-insensitive, as FAT is).
pub fn classify(name: &str) -> Kind {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".gguf") {
        Kind::Gguf
    } else if lower.ends_with(".bin") {
        if lower.starts_with("tok") || lower.ends_with(".tok.bin") {
            Kind::Tokenizer
        } else {
            Kind::Llama2c
        }
    } else {
        Kind::Other
    }
}

/// The file name without its last extension.
pub fn stem(name: &str) -> &str {
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

/// The tokenizer for a llama2.c model among the files of its directory:
/// `NAME.tok.bin`, else `tokenizer.bin`, else the first `tok*.bin` by name.
pub fn find_tokenizer<'a>(model: &str, names: &[&'a str]) -> Option<&'a str> {
    let own = format!("{}.tok.bin", stem(model)).to_ascii_lowercase();
    if let Some(n) = names.iter().find(|n| n.to_ascii_lowercase() == own) {
        return Some(n);
    }
    if let Some(n) = names.iter().find(|n| n.eq_ignore_ascii_case("tokenizer.bin")) {
        return Some(n);
    }
    let mut toks: Vec<&'a str> = names
        .iter()
        .copied()
        .filter(|n| {
            let l = n.to_ascii_lowercase();
            l.starts_with("tok") && l.ends_with(".bin")
        })
        .collect();
    toks.sort_by_key(|n| n.to_ascii_lowercase());
    toks.first().copied()
}

/// Parses a menu choice ("1".."n").
pub fn parse_choice(text: &str, n: usize) -> Option<usize> {
    let v: usize = text.trim().parse().ok()?;
    (1..=n).contains(&v).then_some(v)
}

/// A model file found on the ESP.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path on the ESP, e.g. `\models\stories15M.bin`.
    pub path: String,
    /// Shown name: the path without the leading `\`.
    pub name: String,
    /// Tokenizer path for llama2.c models.
    pub tokenizer: Option<String>,
    /// Header summary, or why the file cannot be used.
    pub summary: Result<ModelSummary, String>,
    /// For a split GGUF set: its shards' paths, in order, and how they
    /// merge; `None` for a single file.
    pub split: Option<SplitSet>,
}

/// A split GGUF set on the ESP (`NAME-00001-of-0000N.gguf` ...), listed as
/// one model.
#[derive(Debug, Clone)]
pub struct SplitSet {
    /// The shards' ESP paths, in order.
    pub paths: Vec<String>,
    /// The merged file's layout, from the shards' headers.
    pub plan: MergePlan,
}

impl Entry {
    pub fn usable(&self) -> bool {
        self.summary.is_ok()
    }

    /// The name for the chat prompt: the file name without extension.
    pub fn model_name(&self) -> String {
        let file = self.name.rsplit('\\').next().unwrap_or(&self.name);
        stem(file).to_string()
    }

    /// Whether `wanted` (from the settings file) names this entry: its file
    /// name or its path, with or without the leading `\`, any case, `/` or `\`.
    pub fn matches(&self, wanted: &str) -> bool {
        let w = wanted.trim().replace('/', "\\");
        let w = w.trim_start_matches('\\');
        let file = self.name.rsplit('\\').next().unwrap_or(&self.name);
        let first = self.path.trim_start_matches('\\');
        let first_file = first.rsplit('\\').next().unwrap_or(first);
        w.eq_ignore_ascii_case(&self.name)
            || w.eq_ignore_ascii_case(file)
            || w.eq_ignore_ascii_case(first)
            || w.eq_ignore_ascii_case(first_file)
    }
}

/// Joins a directory and a file name into an ESP path.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('\\') {
        format!("{dir}{name}")
    } else {
        format!("{dir}\\{name}")
    }
}

/// What to do after a probe that said the prefix was too short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Read this many bytes and probe again.
    Read(usize),
    /// Reading more cannot help: the file itself is too short, or the
    /// header is larger than we are willing to read.
    GiveUp,
}

/// Decides how much to re-read after `Truncated { offset, need }` for a
/// prefix of `have` bytes of a `size`-byte file. Reads at least twice as
/// much as before, so a parser that asks for a few bytes more each time
/// still needs only a few reads.
pub fn retry_after_truncated(offset: u64, need: u64, have: usize, size: u64) -> Retry {
    let more = offset.saturating_add(need);
    if more <= have as u64 || more > size || more > PROBE_MAX {
        Retry::GiveUp
    } else {
        let doubled = (have as u64).saturating_mul(2).min(size).min(PROBE_MAX);
        Retry::Read(more.max(doubled) as usize)
    }
}

/// Reads a header and parses it with `parse`, re-reading more when the
/// engine asks; gives the parsed value and the file's size.
fn read_parsed<T>(
    esp: &mut Esp,
    path: &str,
    parse: &dyn Fn(&[u8], u64) -> engine::Result<T>,
) -> Result<(T, u64), String> {
    let mut want = PROBE_FIRST;
    loop {
        let (prefix, size) = esp.read_prefix(path, want)?;
        match parse(&prefix, size) {
            Ok(s) => return Ok((s, size)),
            Err(e) => {
                if let engine::Error::Truncated { offset, need, .. } = e {
                    if let Retry::Read(n) = retry_after_truncated(offset, need, prefix.len(), size) {
                        want = n;
                        continue;
                    }
                }
                return Err(e.to_string());
            }
        }
    }
}

/// Reads a header and probes it, re-reading more when the engine asks.
fn probe_file(esp: &mut Esp, path: &str) -> Result<ModelSummary, String> {
    read_parsed(esp, path, &engine::load::probe).map(|(s, _)| s)
}

/// Reads every shard's header of the set whose first shard is `dir\first`
/// (present in `names`), checks them and probes the merged header.
fn probe_set(
    esp: &mut Esp,
    dir: &str,
    first: &split::ShardName<'_>,
    names: &[&str],
) -> (Vec<String>, Result<(ModelSummary, MergePlan), String>) {
    let n = usize::from(first.count);
    let mut paths = Vec::new();
    let mut shards = Vec::new();
    for i in 0..first.count {
        let want = first.sibling(i);
        // FAT names ignore case.
        let Some(found) = names.iter().find(|n| n.eq_ignore_ascii_case(&want)) else {
            let missing = join(dir, &want);
            return (
                paths,
                Err(format!("shard {} of {n} is missing: {}", u32::from(i) + 1, missing.trim_start_matches('\\'))),
            );
        };
        let path = join(dir, found);
        match read_parsed(esp, &path, &Gguf::parse) {
            Ok((gguf, file_len)) => shards.push(Shard { name: found.to_string(), gguf, file_len }),
            Err(e) => return (paths, Err(format!("shard {} of {n} ({found}): {e}", u32::from(i) + 1))),
        }
        paths.push(path);
    }
    let summary = MergePlan::new(&shards).map_err(|e| e.to_string()).and_then(|plan| {
        let s = engine::load::probe(plan.header(), plan.merged_len()).map_err(|e| e.to_string())?;
        Ok((s, plan))
    });
    (paths, summary)
}

/// Scans the ESP root and `\models\` for models and probes each one.
/// `note` receives lines about problems with directories.
pub fn scan(esp: &mut Esp, note: &mut dyn FnMut(&str)) -> Vec<Entry> {
    let mut out = Vec::new();
    for dir in MODEL_DIRS {
        let entries: Vec<DirEntry> = match esp.list(dir) {
            Ok(e) => e,
            Err(e) => {
                note(&format!("warning: {e}"));
                continue;
            }
        };
        let mut files: Vec<&DirEntry> = entries.iter().filter(|e| !e.is_dir).collect();
        files.sort_by_key(|e| e.name.to_ascii_lowercase());
        let names: Vec<&str> = files.iter().map(|e| e.name.as_str()).collect();
        // Split sets whose first shard is missing, listed once each.
        let mut orphans: Vec<String> = Vec::new();
        for f in &files {
            let kind = classify(&f.name);
            if !matches!(kind, Kind::Gguf | Kind::Llama2c) {
                continue;
            }
            if let Some(sn) = split::parse_shard_name(&f.name).filter(|sn| kind == Kind::Gguf && sn.count > 1) {
                let first = sn.sibling(0);
                let set_name = join(dir, &format!("{}{}", sn.prefix, sn.ext)).trim_start_matches('\\').to_string();
                if sn.no == 0 {
                    let (paths, probed) = probe_set(esp, dir, &sn, &names);
                    let (summary, split) = match probed {
                        Ok((s, plan)) => (Ok(s), Some(SplitSet { paths, plan })),
                        Err(e) => (Err(format!("split set of {}: {e}", sn.count)), None),
                    };
                    out.push(Entry { path: join(dir, &f.name), name: set_name, tokenizer: None, summary, split });
                } else if !names.iter().any(|n| n.eq_ignore_ascii_case(&first)) && !orphans.contains(&set_name) {
                    let missing = join(dir, &first);
                    out.push(Entry {
                        path: join(dir, &f.name),
                        summary: Err(format!(
                            "split set of {}: shard 1 of {} is missing: {}",
                            sn.count,
                            sn.count,
                            missing.trim_start_matches('\\')
                        )),
                        name: set_name.clone(),
                        tokenizer: None,
                        split: None,
                    });
                    orphans.push(set_name);
                }
                continue;
            }
            let path = join(dir, &f.name);
            let name = path.trim_start_matches('\\').to_string();
            let tokenizer =
                if kind == Kind::Llama2c { find_tokenizer(&f.name, &names).map(|t| join(dir, t)) } else { None };
            let mut summary = probe_file(esp, &path);
            if let Ok(s) = &summary {
                if s.needs_tokenizer && tokenizer.is_none() {
                    summary = Err(format!("no tokenizer: put {}.tok.bin or tokenizer.bin next to it", stem(&f.name)));
                }
            }
            out.push(Entry { path, name, tokenizer, summary, split: None });
        }
    }
    out
}

/// The menu line of an entry (`n` is its number among usable entries).
pub fn entry_line(e: &Entry, n: Option<usize>) -> String {
    match (&e.summary, n) {
        (Ok(s), Some(n)) => format!(
            "  [{n}] {}{}  {}  {}  {}  {}",
            e.name,
            e.split.as_ref().map(|s| format!(" ({} shards)", s.paths.len())).unwrap_or_default(),
            s.arch,
            format_params(s.n_params),
            s.tensor_type,
            format_size(s.file_size)
        ),
        (Err(msg), _) => format!("  [-] {}: error: {msg}", e.name),
        (Ok(_), None) => format!("  [-] {}", e.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        assert_eq!(classify("model.gguf"), Kind::Gguf);
        assert_eq!(classify("MODEL.GGUF"), Kind::Gguf);
        assert_eq!(classify("stories15M.bin"), Kind::Llama2c);
        assert_eq!(classify("tokenizer.bin"), Kind::Tokenizer);
        assert_eq!(classify("tok512.bin"), Kind::Tokenizer);
        assert_eq!(classify("TOK512.BIN"), Kind::Tokenizer);
        assert_eq!(classify("stories15M.tok.bin"), Kind::Tokenizer);
        assert_eq!(classify("lbm.cfg"), Kind::Other);
        assert_eq!(classify("BOOTX64.EFI"), Kind::Other);
    }

    #[test]
    fn tokenizer_choice() {
        let names = ["a.bin", "a.tok.bin", "tokenizer.bin", "tok512.bin"];
        assert_eq!(find_tokenizer("a.bin", &names), Some("a.tok.bin"));
        assert_eq!(find_tokenizer("b.bin", &names), Some("tokenizer.bin"));
        assert_eq!(find_tokenizer("b.bin", &["b.bin", "tok512.bin", "tok32000.bin"]), Some("tok32000.bin"));
        assert_eq!(find_tokenizer("B.BIN", &["B.TOK.BIN", "TOKENIZER.BIN"]), Some("B.TOK.BIN"));
        assert_eq!(find_tokenizer("b.bin", &["b.bin", "c.bin"]), None);
        assert_eq!(find_tokenizer("stories260K.bin", &["stories260K.bin", "tok512.bin"]), Some("tok512.bin"));
    }

    #[test]
    fn truncated_retry() {
        // Header larger than the first read: read exactly what is asked.
        assert_eq!(retry_after_truncated(24, 100_000, 65_536, 1 << 30), Retry::Read(131_072));
        assert_eq!(retry_after_truncated(24, 300_000, 65_536, 1 << 30), Retry::Read(300_024));
        // Small steps still double, capped by the file size.
        assert_eq!(retry_after_truncated(65_530, 8, 65_536, 100_000), Retry::Read(100_000));
        // The file is shorter than what the header describes.
        assert_eq!(retry_after_truncated(28, 2_000_000, 65_536, 1_000_000), Retry::GiveUp);
        // Already had that much: the engine's error stands.
        assert_eq!(retry_after_truncated(0, 100, 65_536, 1 << 30), Retry::GiveUp);
        // Absurd header sizes are not read.
        assert_eq!(retry_after_truncated(0, 1 << 40, 65_536, 1 << 41), Retry::GiveUp);
    }

    #[test]
    fn choices() {
        assert_eq!(parse_choice("2", 3), Some(2));
        assert_eq!(parse_choice(" 3 ", 3), Some(3));
        assert_eq!(parse_choice("0", 3), None);
        assert_eq!(parse_choice("4", 3), None);
        assert_eq!(parse_choice("x", 3), None);
        assert_eq!(parse_choice("", 3), None);
    }

    #[test]
    fn names() {
        assert_eq!(stem("a.b.bin"), "a.b");
        assert_eq!(stem(".hidden"), ".hidden");
        assert_eq!(join("\\", "a.bin"), "\\a.bin");
        assert_eq!(join("\\models", "a.bin"), "\\models\\a.bin");
        let e = Entry {
            path: "\\models\\stories15M.bin".into(),
            name: "models\\stories15M.bin".into(),
            tokenizer: None,
            summary: Err("x".into()),
            split: None,
        };
        assert_eq!(e.model_name(), "stories15M");
        assert!(e.matches("stories15M.bin"));
        assert!(e.matches("/models/STORIES15M.bin"));
        assert!(e.matches("\\models\\stories15M.bin"));
        assert!(!e.matches("stories15M"));
        assert_eq!(entry_line(&e, None), "  [-] models\\stories15M.bin: error: x");
    }
}
