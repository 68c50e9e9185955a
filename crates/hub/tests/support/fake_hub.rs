// The fake hub and the helpers the `pull` tests share: `include!`d by
// crates/hub/tests/pull.rs (the library) and crates/cli/tests/pull.rs
// (`lbm pull`), so both run against the same server.

use engine::load::load_model;
use kernels::exec::Serial;
use convert::OutType;
use hub::{pull, resolve_model_arg, Event, PullOptions, PullSpec, WriterFactory};
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ------------------------------------------------------------ the fake hub

#[derive(Clone)]
struct FakeFile {
    bytes: Vec<u8>,
    /// Stored with LFS: served through a redirect, sha256 ETag.
    lfs: bool,
}

struct FakeRepo {
    commit: String,
    files: BTreeMap<String, FakeFile>,
}

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    range: Option<String>,
    auth: Option<String>,
    /// The status line sent back, e.g. "206 Partial Content".
    status: String,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, FakeRepo>,
    /// Old repository name → new one (answered with a relative redirect).
    renamed: BTreeMap<String, String>,
    log: Vec<Req>,
    /// File → (stop after this byte of the file, how many more times).
    cut: BTreeMap<String, (u64, usize)>,
    /// Files served with one byte changed.
    corrupt: Vec<String>,
    /// File → how many more of its downloads get "503 Service Unavailable".
    unavailable: BTreeMap<String, usize>,
}

struct FakeHub {
    url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn sha256_hex(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn git_blob_id(b: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

/// Deterministic bytes that are not all alike.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

struct Answer {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many bytes of the body, then close.
    cut_at: Option<usize>,
}

fn answer(status: &'static str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: Vec::new(),
        cut_at: None,
    }
}

fn error(status: &'static str, code: &str, msg: &str) -> Answer {
    let mut a = answer(status);
    a.headers.push(("X-Error-Code".into(), code.into()));
    a.headers.push(("X-Error-Message".into(), msg.into()));
    a.body = msg.as_bytes().to_vec();
    a
}

impl FakeHub {
    fn start() -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, base) = (state.clone(), stop.clone(), url.clone());
        let thread = std::thread::spawn(move || {
            // Bounded in time whatever the test does.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !sp.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (st, base) = (st.clone(), base.clone());
                        std::thread::spawn(move || serve(s, &st, &base));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeHub {
            url,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn add_repo(&self, repo: &str, commit: &str, files: &[(&str, Vec<u8>, bool)]) {
        let files = files
            .iter()
            .map(|(n, b, lfs)| {
                (
                    n.to_string(),
                    FakeFile {
                        bytes: b.clone(),
                        lfs: *lfs,
                    },
                )
            })
            .collect();
        self.state.lock().unwrap().repos.insert(
            repo.into(),
            FakeRepo {
                commit: commit.into(),
                files,
            },
        );
    }

    fn log(&self) -> Vec<Req> {
        self.state.lock().unwrap().log.clone()
    }

    fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// Requests that were sent file bytes (GETs of a CDN URL, or of the
    /// resolve URL of a file kept in git).
    fn downloads(&self) -> Vec<Req> {
        self.log()
            .into_iter()
            .filter(|r| {
                r.method == "GET" && !r.path.starts_with("/api/") && r.status.starts_with("20")
            })
            .collect()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut s: TcpStream, state: &Mutex<State>, base: &str) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut req = Req {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        auth: headers.get("authorization").cloned(),
        status: String::new(),
    };
    let a = {
        let mut st = state.lock().unwrap();
        let a = route(&mut st, &req, base);
        req.status = a.status.into();
        st.log.push(req);
        a
    };
    let mut head = format!(
        "HTTP/1.1 {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        a.status,
        a.body.len()
    );
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    if method != "HEAD" {
        let n = a.cut_at.unwrap_or(a.body.len());
        let _ = s.write_all(&a.body[..n]);
    }
    let _ = s.flush();
    let _ = s.shutdown(std::net::Shutdown::Both);
}

fn route(st: &mut State, req: &Req, base: &str) -> Answer {
    let path = req.path.split('?').next().unwrap();
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let (repo, rev) = match rest.split_once("/revision/") {
            Some((r, v)) => (unescape(r), unescape(v)),
            None => (unescape(rest), "main".into()),
        };
        let Some(r) = st.repos.get(&repo) else {
            return error("404 Not Found", "RepoNotFound", "Repository not found");
        };
        if rev != "main" && rev != r.commit {
            return error("404 Not Found", "RevisionNotFound", "Invalid rev id");
        }
        let siblings: Vec<serde_json::Value> = r
            .files
            .keys()
            .map(|f| serde_json::json!({ "rfilename": f }))
            .collect();
        let mut a = answer("200 OK");
        a.headers
            .push(("Content-Type".into(), "application/json".into()));
        a.body = serde_json::json!({ "id": repo, "sha": r.commit, "siblings": siblings })
            .to_string()
            .into_bytes();
        return a;
    }
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let found = st
            .repos
            .values()
            .flat_map(|r| r.files.iter())
            .find(|(_, f)| sha256_hex(&f.bytes) == sha);
        let Some((name, f)) = found.map(|(n, f)| (n.clone(), f.clone())) else {
            return answer("404 Not Found");
        };
        return bytes_answer(st, &name, &f.bytes, req);
    }
    let Some((repo, tail)) = path.split_once("/resolve/") else {
        return answer("404 Not Found");
    };
    let repo = unescape(repo.trim_start_matches('/'));
    if let Some(new) = st.renamed.get(&repo) {
        let mut a = answer("307 Temporary Redirect");
        a.headers
            .push(("Location".into(), format!("/{new}/resolve/{tail}")));
        return a;
    }
    let Some((rev, file)) = tail.split_once('/') else {
        return answer("404 Not Found");
    };
    let (rev, file) = (unescape(rev), unescape(file));
    let Some(r) = st.repos.get(&repo) else {
        return error("404 Not Found", "RepoNotFound", "Repository not found");
    };
    if rev != "main" && rev != r.commit {
        return error("404 Not Found", "RevisionNotFound", "Invalid rev id");
    }
    let Some(f) = r.files.get(&file).cloned() else {
        return error("404 Not Found", "EntryNotFound", "Entry not found");
    };
    let commit = r.commit.clone();
    if f.lfs {
        let sha = sha256_hex(&f.bytes);
        let mut a = answer("302 Found");
        a.headers
            .push(("Location".into(), format!("{base}/cdn/{sha}")));
        a.headers.push(("X-Repo-Commit".into(), commit));
        a.headers
            .push(("X-Linked-Etag".into(), format!("\"{sha}\"")));
        a.headers
            .push(("X-Linked-Size".into(), f.bytes.len().to_string()));
        a.headers.push(("ETag".into(), format!("\"{sha}\"")));
        a
    } else {
        let mut a = bytes_answer(st, &file, &f.bytes, req);
        a.headers.push(("X-Repo-Commit".into(), commit));
        a.headers
            .push(("ETag".into(), format!("\"{}\"", git_blob_id(&f.bytes))));
        a
    }
}

/// A file's bytes, whole or from the `Range` asked for, with the faults
/// the test asked for.
fn bytes_answer(st: &mut State, name: &str, bytes: &[u8], req: &Req) -> Answer {
    if req.method == "GET" {
        if let Some(n) = st.unavailable.get_mut(name).filter(|n| **n > 0) {
            *n -= 1;
            return answer("503 Service Unavailable");
        }
    }
    let mut data = bytes.to_vec();
    if st.corrupt.iter().any(|c| c == name) {
        let mid = data.len() / 2;
        data[mid] ^= 0x55;
    }
    let from: usize = req
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .map_or(0, |n| n.parse().unwrap());
    let mut a = if req.range.is_some() {
        let mut a = answer("206 Partial Content");
        a.headers.push((
            "Content-Range".into(),
            format!("bytes {from}-{}/{}", data.len() - 1, data.len()),
        ));
        a
    } else {
        answer("200 OK")
    };
    a.body = data[from..].to_vec();
    if req.method == "GET" {
        if let Some((at, times)) = st.cut.get_mut(name) {
            if *times > 0 {
                *times -= 1;
                a.cut_at = Some((*at as usize).saturating_sub(from).min(a.body.len()));
            }
        }
    }
    a
}

// ------------------------------------------------------------------ helpers

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "TheBloke/Tiny-GGUF";
const GGUF: &str = "tiny.Q4_K_M.gguf";

fn gguf_bytes() -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(noise(700_000, 7));
    b
}

fn gguf_hub() -> FakeHub {
    let hub = FakeHub::start();
    hub.add_repo(
        REPO,
        COMMIT,
        &[
            (GGUF, gguf_bytes(), true),
            ("tiny.Q8_0.gguf", noise(1000, 3), true),
            ("README.md", b"# Tiny\n".to_vec(), false),
        ],
    );
    hub
}

fn opts(hub: &FakeHub, cache: &Path) -> PullOptions {
    let mut o = PullOptions::new(&hub.url, cache);
    o.retries = 0;
    o
}

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Start(String, u64, u64),
    Bytes(u64, u64),
    Done(String, PathBuf, bool),
    Log(String),
}

fn record(seen: &mut Vec<Seen>) -> impl FnMut(&Event) + '_ {
    move |e: &Event| {
        seen.push(match *e {
            Event::Start {
                file,
                total,
                resumed,
            } => Seen::Start(file.into(), total, resumed),
            Event::Bytes { done, total, .. } => Seen::Bytes(done, total),
            Event::Done { file, path, cached } => Seen::Done(file.into(), path.into(), cached),
            Event::Log(m) => Seen::Log(m.into()),
        })
    }
}

fn spec(s: &str) -> PullSpec {
    PullSpec::parse(s).unwrap()
}

fn pull_err(s: &str, o: &PullOptions) -> String {
    format!("{:#}", pull(&spec(s), o, &mut |_| {}).unwrap_err())
}

fn assert_mentions(msg: &str, words: &[&str]) {
    for w in words {
        assert!(msg.contains(w), "'{w}' is not in: {msg}");
    }
}

/// Every file under `dir` whose name is `name` (complete files only:
/// `.part` files have another name).
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(find_named(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}

fn parts(cache: &Path) -> Vec<PathBuf> {
    let blobs = cache
        .join("hub")
        .join(format!("models--{}", REPO.replace('/', "--")))
        .join("blobs");
    std::fs::read_dir(blobs)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "part"))
                .collect()
        })
        .unwrap_or_default()
}

fn golden_hub() -> FakeHub {
    let g = testdata::path("golden/llama-gqa");
    let read = |f: &str| std::fs::read(g.join(f)).unwrap();
    let hub = FakeHub::start();
    let files = vec![
        ("config.json", read("config.json"), false),
        (
            "generation_config.json",
            read("generation_config.json"),
            false,
        ),
        ("model.safetensors", read("model.safetensors"), true),
        ("logits.f32", read("logits.f32"), true),
        ("tokens.json", read("tokens.json"), false),
        ("README.md", b"# llama-gqa\n".to_vec(), false),
    ];
    hub.add_repo("golden/llama-gqa", COMMIT, &files);
    // The same weights as a one-shard index.
    let header_len =
        u64::from_le_bytes(read("model.safetensors")[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(&read("model.safetensors")[8..8 + header_len]).unwrap();
    let shard = "model-00001-of-00001.safetensors";
    let map: serde_json::Map<String, serde_json::Value> = header
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .map(|k| (k.clone(), shard.into()))
        .collect();
    let index = serde_json::json!({ "metadata": {}, "weight_map": map })
        .to_string()
        .into_bytes();
    hub.add_repo(
        "golden/llama-gqa-sharded",
        "89abcdef0123456789abcdef0123456789abcdef",
        &[
            ("config.json", read("config.json"), false),
            ("model.safetensors.index.json", index, false),
            (shard, read("model.safetensors"), true),
        ],
    );
    hub
}

/// Runs the converted model over the reference tokens and returns the
/// largest difference from the logits transformers computed.
fn max_logit_error(gguf: &Path) -> f32 {
    let g = testdata::path("golden/llama-gqa");
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(g.join("tokens.json")).unwrap()).unwrap();
    let ids: Vec<u32> = t["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let raw = std::fs::read(g.join("logits.f32")).unwrap();
    let want: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let m = load_model(
        Box::new(std::fs::read(gguf).unwrap()),
    )
    .expect("load");
    let mut sess = engine::model::Session::new(&m, 4096).unwrap();
    let vocab = m.config.vocab_size;
    assert_eq!(vocab, 512);
    assert_eq!(m.config.n_layers, 2);
    assert_eq!(m.config.n_kv_heads, 2);
    let mut max = 0.0f32;
    for (pos, &id) in ids.iter().enumerate() {
        let got = sess.eval(&m, &[id], &Serial).unwrap();
        let w = &want[pos * vocab..(pos + 1) * vocab];
        max = got
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(max, f32::max);
    }
    max
}
