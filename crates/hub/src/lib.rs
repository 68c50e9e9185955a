//! `lbm pull REPO[:FILE]`: models from the Hugging Face hub.
//!
//! * `REPO:FILE` downloads one file, e.g.
//!   `TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf`.
//! * `REPO` alone downloads a transformers checkpoint (config.json, the
//!   safetensors weights or the shards its index lists, and the tokenizer
//!   files it has) and converts it to GGUF with the `convert` crate.
//!
//! Downloads go through `.part` files that a later call resumes (HTTP
//! `Range`), are checked against the hub's checksum (the sha256 of LFS
//! files, the git blob id of small ones) and are kept in a cache laid out
//! like the hub's own (`hub/models--OWNER--NAME/{blobs,snapshots,refs}`):
//! a second pull of the same file costs one `HEAD` request, or none for a
//! commit id or offline. A file reaches its final path only complete and
//! verified.
//!
//! `HF_ENDPOINT` (another hub or a mirror), `HF_TOKEN` (private and gated
//! repositories; also the token file `huggingface-cli login` writes) and
//! `HF_HUB_OFFLINE` are honoured by [`PullOptions::from_env`]; `LBM_CACHE`
//! moves the cache (default `$XDG_CACHE_HOME/lbm`, i.e. `~/.cache/lbm`).
//!
//! The API: [`pull`] a [`PullSpec`] with [`PullOptions`], reporting
//! [`Event`]s ([`StderrProgress`] draws them); [`resolve_model_arg`] for a
//! command-line model argument that may be `REPO:FILE`.
#![forbid(unsafe_code)]

mod cache;
mod download;
mod hub;
mod progress;

use anyhow::{anyhow, bail, ensure, Context, Result};
use cache::{copy_atomic, create_parent, flat_name, is_commit, Lock, RepoCache};
use convert::{convert, ConvertOptions, OutType};
use hub::{Hub, HubError, Kind, Target};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use progress::StderrProgress;

/// The hub to use when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// What to pull: a repository, and one file of it or (`None`) its
/// safetensors checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// `owner/name` (or a bare `name`, for the hub's oldest models).
    pub repo: String,
    /// A path inside the repository.
    pub file: Option<String>,
}

const SPEC_FORM: &str = "expected REPO[:FILE], e.g. \
    TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf";

fn check_repo(repo: &str) -> std::result::Result<(), String> {
    if repo.is_empty() {
        return Err("the repository is empty".into());
    }
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 {
        return Err(format!("'{repo}' has {} parts; a repository is OWNER/NAME", parts.len()));
    }
    for p in parts {
        if p.is_empty() {
            return Err(format!("'{repo}' has an empty part; a repository is OWNER/NAME"));
        }
        if let Some(c) = p.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c))) {
            return Err(format!("'{c}' is not allowed in a repository name ('{repo}')"));
        }
        if p.starts_with(['-', '.']) || p.ends_with(['-', '.']) || p.contains("--") || p.contains("..") {
            return Err(format!("'{p}' is not a repository name: no '-' or '.' at the ends, no '--' or '..'"));
        }
        if p.len() > 96 {
            return Err(format!("'{p}' is longer than 96 characters"));
        }
    }
    Ok(())
}

fn check_file(file: &str) -> std::result::Result<(), String> {
    if file.is_empty() {
        return Err("the file after ':' is empty".into());
    }
    if file.starts_with('/') || file.contains('\\') {
        return Err(format!("'{file}' must be a path inside the repository, with '/' separators"));
    }
    if file.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("'{file}' has an empty, '.' or '..' component"));
    }
    if file.chars().any(char::is_control) {
        return Err(format!("{file:?} has control characters"));
    }
    Ok(())
}

impl PullSpec {
    /// Parses `REPO` or `REPO:FILE`.
    pub fn parse(s: &str) -> Result<PullSpec> {
        let (repo, file) = match s.split_once(':') {
            Some((r, f)) => (r, Some(f)),
            None => (s, None),
        };
        let checked = check_repo(repo).and_then(|()| file.map_or(Ok(()), check_file));
        if let Err(why) = checked {
            bail!("'{s}' is not a model to pull: {why} ({SPEC_FORM})");
        }
        Ok(PullSpec { repo: repo.to_string(), file: file.map(str::to_string) })
    }
}

impl std::str::FromStr for PullSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<PullSpec> {
        PullSpec::parse(s)
    }
}

impl fmt::Display for PullSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{file}", self.repo),
            None => f.write_str(&self.repo),
        }
    }
}

/// Opens a `.part` file for appending. The default appends to the file;
/// tests put a failing writer here (a full disk).
pub type WriterFactory = Arc<dyn Fn(&Path) -> std::io::Result<Box<dyn Write>> + Send + Sync>;

/// How to pull.
#[derive(Clone)]
pub struct PullOptions {
    /// Branch, tag or commit id (`main`).
    pub revision: String,
    /// The cache folder: `hub/` laid out like the hub's cache, `converted/`
    /// for converted checkpoints.
    pub cache: PathBuf,
    /// Where to put the result as well (a file, or an existing folder to put
    /// it in). A checkpoint is converted straight to it.
    pub output: Option<PathBuf>,
    /// The hub, e.g. `https://huggingface.co`.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer` to the endpoint (not to its CDN).
    pub token: Option<String>,
    /// Use the cache only, never the network.
    pub offline: bool,
    /// The matrices' type when a checkpoint is converted.
    pub ty: OutType,
    /// How many times a dropped download is resumed within one call.
    pub retries: u32,
    /// Opens `.part` files for writing (`None`: the filesystem).
    pub writer: Option<WriterFactory>,
}

impl fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullOptions")
            .field("revision", &self.revision)
            .field("cache", &self.cache)
            .field("output", &self.output)
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("ty", &self.ty)
            .field("retries", &self.retries)
            .field("writer", &self.writer.as_ref().map(|_| "<custom>"))
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn home_cache() -> Option<PathBuf> {
    env("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| env("HOME").map(|h| Path::new(&h).join(".cache")))
}

impl PullOptions {
    /// Options with nothing taken from the environment: revision `main`,
    /// no token, F16 conversion, 3 retries.
    pub fn new(endpoint: &str, cache: &Path) -> PullOptions {
        PullOptions {
            revision: "main".into(),
            cache: cache.to_path_buf(),
            output: None,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            offline: false,
            ty: OutType::F16,
            retries: 3,
            writer: None,
        }
    }

    /// The default cache: `$LBM_CACHE`, else `$XDG_CACHE_HOME/lbm`, else
    /// `~/.cache/lbm`.
    pub fn default_cache() -> PathBuf {
        env("LBM_CACHE")
            .map(PathBuf::from)
            .or_else(|| home_cache().map(|c| c.join("lbm")))
            .unwrap_or_else(|| std::env::temp_dir().join("lbm-cache"))
    }

    /// `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`), else the token file that
    /// `huggingface-cli login` writes (`$HF_TOKEN_PATH`, `$HF_HOME/token`,
    /// `~/.cache/huggingface/token`).
    pub fn token_from_env() -> Option<String> {
        if let Some(t) = env("HF_TOKEN").or_else(|| env("HUGGING_FACE_HUB_TOKEN")) {
            return Some(t.trim().to_string());
        }
        let path = env("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
            env("HF_HOME")
                .map(PathBuf::from)
                .or_else(|| home_cache().map(|c| c.join("huggingface")))
                .map(|h| h.join("token"))
        })?;
        let t = std::fs::read_to_string(path).ok()?;
        let t = t.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    /// Options from the environment: `HF_ENDPOINT`, `HF_TOKEN`,
    /// `HF_HUB_OFFLINE`, `LBM_CACHE`.
    pub fn from_env() -> PullOptions {
        let endpoint = env("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into());
        let mut o = PullOptions::new(endpoint.trim(), &Self::default_cache());
        o.token = Self::token_from_env();
        o.offline = env("HF_HUB_OFFLINE")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        o
    }
}

/// What [`pull`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Bytes of `file` start coming (from byte `resumed`).
    Start { file: &'a str, total: u64, resumed: u64 },
    /// `done` of `total` bytes of `file` are on disk.
    Bytes { file: &'a str, done: u64, total: u64 },
    /// `file` is complete at `path`; `cached`: no byte had to be downloaded.
    Done { file: &'a str, path: &'a Path, cached: bool },
    /// A message for the user (conversion steps, retries).
    Log(&'a str),
}

/// Sizes as the progress bar shows them (decimal units, like MB/s).
pub(crate) fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} GB", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

fn check_revision(r: &str) -> Result<()> {
    let ok = !r.is_empty()
        && !r.starts_with('/')
        && !r.ends_with('/')
        && !r.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        && !r.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\');
    ensure!(ok, "'{r}' is not a revision (a branch, tag or commit id)");
    Ok(())
}

/// The name a blob gets in the cache: the ETag, when it is a plain name.
fn blob_name(etag: &str) -> String {
    let plain = !etag.starts_with('.')
        && etag.len() <= 128
        && etag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if plain {
        etag.to_string()
    } else {
        use sha2::Digest;
        sha2::Sha256::digest(etag.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One file in the cache.
struct Fetched {
    path: PathBuf,
}

/// A few files of the repository like `file` (same extension), for a
/// "not found" message.
fn suggest(hub: &Hub, repo: &str, revision: &str, file: &str) -> String {
    let Ok(info) = hub.repo_info(&Target { repo, revision, file: None }) else {
        return String::new();
    };
    let ext = Path::new(file).extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    let same: Vec<&String> = info
        .files
        .iter()
        .filter(|f| Path::new(f).extension().map(|e| e.to_string_lossy().to_ascii_lowercase()) == ext)
        .collect();
    let list = if same.is_empty() { info.files.iter().collect() } else { same };
    if list.is_empty() {
        return String::new();
    }
    let more = if list.len() > 12 { format!(", and {} more", list.len() - 12) } else { String::new() };
    let names: Vec<&str> = list.iter().take(12).map(|s| s.as_str()).collect();
    format!("; the repository has: {}{more}", names.join(", "))
}

/// Brings `file` of `repo` at `revision` into the cache.
fn fetch(
    hub: &Hub,
    repo: &str,
    revision: &str,
    file: &str,
    opts: &PullOptions,
    on: &mut dyn FnMut(&Event),
) -> Result<Fetched> {
    let rc = RepoCache::new(&opts.cache, repo);
    let cached = || {
        let commit = rc.read_ref(revision)?;
        let p = rc.pointer(&commit, file);
        p.is_file().then_some(Fetched { path: p })
    };
    let hit = |f: Fetched, on: &mut dyn FnMut(&Event)| {
        on(&Event::Done { file, path: &f.path, cached: true });
        Ok(f)
    };
    if opts.offline {
        return match cached() {
            Some(f) => hit(f, on),
            None => bail!(
                "'{file}' of {repo} (revision {revision}) is not in the cache {}, and \
                 HF_HUB_OFFLINE is set",
                opts.cache.display()
            ),
        };
    }
    // A commit never changes: no need to ask.
    if is_commit(revision) {
        if let Some(f) = cached() {
            return hit(f, on);
        }
    }
    let target = Target { repo, revision, file: Some(file) };
    let meta = match hub.file_meta(&target) {
        Ok(m) => m,
        Err(e @ HubError { kind: Kind::Unreachable, .. }) => match cached() {
            Some(f) => {
                on(&Event::Log(&format!("{e}; using the cached copy of '{file}'")));
                return hit(f, on);
            }
            None => return Err(e.into()),
        },
        Err(e @ HubError { kind: Kind::EntryNotFound, .. }) => {
            bail!("{e}{}", suggest(hub, repo, revision, file))
        }
        Err(e) => return Err(e.into()),
    };
    ensure!(
        is_commit(&meta.commit),
        "{} answered with a commit id '{}' that is not 40 hex digits",
        hub.endpoint(),
        meta.commit
    );
    let pointer = rc.pointer(&meta.commit, file);
    if pointer.is_file() {
        rc.write_ref(revision, &meta.commit)?;
        return hit(Fetched { path: pointer }, on);
    }
    let etag = blob_name(&meta.etag);
    let blob = rc.blob(&etag);
    let downloaded = !blob.is_file();
    if downloaded {
        let _lock = Lock::acquire(&rc.lock_path(&etag), file)?;
        // Another process may have finished it while we waited.
        if !blob.is_file() {
            let part = rc.part(&etag);
            create_parent(&part)?;
            let job = download::Job {
                hub,
                target: Target { repo, revision: &meta.commit, file: Some(file) },
                meta: &meta,
                part: &part,
                writer: opts.writer.as_ref(),
                retries: opts.retries,
            };
            download::download(&job, on)?;
            std::fs::rename(&part, &blob)
                .with_context(|| format!("cannot rename {} to {}", part.display(), blob.display()))?;
        }
    }
    let path = rc.link(&meta.commit, file, &etag)?;
    rc.write_ref(revision, &meta.commit)?;
    on(&Event::Done { file, path: &path, cached: !downloaded });
    Ok(Fetched { path })
}

/// Where `-o OUT` puts a file called `name`: OUT, or OUT/name for a folder.
fn output_path(out: &Path, name: &str) -> PathBuf {
    if out.is_dir() {
        out.join(name)
    } else {
        out.to_path_buf()
    }
}

/// The files of a checkpoint besides the weights, taken when present.
pub const CHECKPOINT_EXTRAS: &[&str] = &[
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "chat_template.json",
    "generation_config.json",
];

const INDEX: &str = "model.safetensors.index.json";

/// The shard names an index lists (plain file names, each once).
fn shards_of(index: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(index).with_context(|| format!("cannot read {}", index.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{INDEX} is not valid JSON"))?;
    let map =
        v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| anyhow!("{INDEX} has no 'weight_map' object"))?;
    let mut shards: Vec<String> = Vec::new();
    for (tensor, shard) in map {
        let s = shard.as_str().ok_or_else(|| anyhow!("{INDEX}: the shard of '{tensor}' is not a file name"))?;
        ensure!(
            !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != "..",
            "{INDEX}: shard '{s}' is not a plain file name"
        );
        if !shards.iter().any(|x| x == s) {
            shards.push(s.to_string());
        }
    }
    ensure!(!shards.is_empty(), "{INDEX}: 'weight_map' is empty");
    Ok(shards)
}

fn type_name(ty: OutType) -> &'static str {
    match ty {
        OutType::F32 => "f32",
        OutType::F16 => "f16",
    }
}

/// Pulls a transformers checkpoint and converts it.
fn pull_checkpoint(hub: &Hub, repo: &str, opts: &PullOptions, on: &mut dyn FnMut(&Event)) -> Result<PathBuf> {
    let rc = RepoCache::new(&opts.cache, repo);
    let revision = opts.revision.as_str();
    let info = if opts.offline {
        None
    } else {
        match hub.repo_info(&Target { repo, revision, file: None }) {
            Ok(i) => Some(i),
            Err(e @ HubError { kind: Kind::Unreachable, .. }) if rc.read_ref(revision).is_some() => {
                on(&Event::Log(&format!("{e}; looking in the cache")));
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    let commit = match &info {
        Some(i) => i.commit.clone(),
        None => rc
            .read_ref(revision)
            .ok_or_else(|| anyhow!("{repo} (revision {revision}) is not in the cache {}", opts.cache.display()))?,
    };
    ensure!(is_commit(&commit), "{} listed {repo} at a commit id '{commit}' that is not 40 hex digits", hub.endpoint());
    let name = repo.rsplit('/').next().unwrap_or(repo);
    let work = opts.cache.join("converted").join(flat_name(repo)).join(&commit);
    let gguf_name = format!("{name}-{}.gguf", type_name(opts.ty));
    let cached_gguf = work.join(&gguf_name);
    let out = match &opts.output {
        Some(o) => output_path(o, &gguf_name),
        None => cached_gguf.clone(),
    };
    if opts.output.is_none() && cached_gguf.is_file() {
        rc.write_ref(revision, &commit)?;
        on(&Event::Done { file: &gguf_name, path: &cached_gguf, cached: true });
        return Ok(cached_gguf);
    }
    let Some(info) = info else {
        bail!(
            "{repo} (revision {revision}) has no converted copy in the cache {}, and the hub \
             cannot be asked for its files",
            opts.cache.display()
        );
    };
    let has = |f: &str| info.files.iter().any(|x| x == f);
    if !has("config.json") {
        let ggufs: Vec<&str> =
            info.files.iter().filter(|f| f.to_ascii_lowercase().ends_with(".gguf")).map(|s| s.as_str()).collect();
        let hint = match ggufs.first() {
            Some(first) => format!(
                "; it has GGUF files ({}): pull one with {repo}:{first}",
                ggufs.iter().take(8).copied().collect::<Vec<_>>().join(", ")
            ),
            None => String::new(),
        };
        bail!("{repo} has no config.json at revision {revision}: it is not a transformers checkpoint to convert{hint}");
    }
    let mut files = vec!["config.json".to_string()];
    if has(INDEX) {
        files.push(INDEX.into());
    } else if has("model.safetensors") {
        files.push("model.safetensors".into());
    } else {
        let torch = info.files.iter().any(|f| f.ends_with(".bin") || f.ends_with(".pth"));
        bail!(
            "{repo} has no model.safetensors or {INDEX} at revision {revision}{}",
            if torch { " (only PyTorch weights, which lbm does not convert)" } else { "" }
        );
    }
    files.extend(CHECKPOINT_EXTRAS.iter().filter(|f| has(f)).map(|f| f.to_string()));

    let mut got: Vec<(String, PathBuf)> = Vec::new();
    for f in &files {
        let r = fetch(hub, repo, &commit, f, opts, on)?;
        got.push((f.clone(), r.path));
    }
    if let Some((_, index)) = got.iter().find(|(f, _)| f == INDEX) {
        for s in shards_of(index)? {
            let r = fetch(hub, repo, &commit, &s, opts, on)?;
            got.push((s, r.path));
        }
    }
    rc.write_ref(revision, &commit)?;

    // The converter names the model after its folder: give it one named
    // after the repository, holding links to the snapshot's files.
    let folder = work.join(name);
    if folder.exists() {
        std::fs::remove_dir_all(&folder).with_context(|| format!("cannot clear {}", folder.display()))?;
    }
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    for (f, path) in &got {
        let src = path.canonicalize().with_context(|| format!("cannot resolve {}", path.display()))?;
        let dst = folder.join(f);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&src, &dst).with_context(|| format!("cannot create {}", dst.display()))?;
        #[cfg(not(unix))]
        std::fs::copy(&src, &dst).with_context(|| format!("cannot create {}", dst.display()))?;
    }
    create_parent(&out)?;
    on(&Event::Log(&format!("converting {repo} to {} ({})", out.display(), type_name(opts.ty))));
    let copts = ConvertOptions { input: folder, output: out.clone(), ty: opts.ty };
    convert(&copts, &mut |m| on(&Event::Log(m))).with_context(|| format!("converting {repo}"))?;
    on(&Event::Done { file: &gguf_name, path: &out, cached: false });
    Ok(out)
}

/// Pulls `spec` and returns the path of the result: the downloaded file,
/// or the GGUF file a checkpoint was converted to (in the cache, or at
/// `opts.output`). Progress and messages go to `on`.
///
/// Errors say what went wrong in words: a repository, revision or file
/// that does not exist, a refused token, an interrupted download (whose
/// `.part` the next call resumes), a checksum mismatch (the download is
/// deleted), a failed write (a full disk).
pub fn pull(spec: &PullSpec, opts: &PullOptions, on: &mut dyn FnMut(&Event)) -> Result<PathBuf> {
    check_repo(&spec.repo).map_err(|e| anyhow!("{e}"))?;
    check_revision(&opts.revision)?;
    let hub = Hub::new(&opts.endpoint, opts.token.as_deref());
    let Some(file) = &spec.file else {
        return pull_checkpoint(&hub, &spec.repo, opts, on);
    };
    check_file(file).map_err(|e| anyhow!("{e}"))?;
    let got = fetch(&hub, &spec.repo, &opts.revision, file, opts, on)?;
    match &opts.output {
        None => Ok(got.path),
        Some(o) => {
            let base = Path::new(file).file_name().map_or(file.as_str(), |n| n.to_str().unwrap_or(file));
            let out = output_path(o, base);
            create_parent(&out)?;
            copy_atomic(&got.path, &out)?;
            Ok(out)
        }
    }
}

/// Turns a `--model` argument into a local file: a path that exists is
/// returned as it is (even with a `:` in it), as is anything without a
/// `:`; `REPO:FILE` is pulled and its cached path returned.
pub fn resolve_model_arg(arg: &str, opts: &PullOptions, on: &mut dyn FnMut(&Event)) -> Result<PathBuf> {
    let p = Path::new(arg);
    if p.exists() || !arg.contains(':') {
        return Ok(p.to_path_buf());
    }
    let spec = PullSpec::parse(arg).with_context(|| format!("there is no file {arg}"))?;
    let opts = PullOptions { output: None, ..opts.clone() };
    pull(&spec, &opts, on)
}
