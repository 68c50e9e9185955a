//! `lbm pull` against a fake hub: a small HTTP server on 127.0.0.1, in a
//! thread of this test, that speaks the hub's protocol (resolve URLs with
//! X-Repo-Commit / ETag / X-Linked-Etag / X-Linked-Size, LFS files behind
//! an absolute redirect to a "CDN" path serving byte ranges, the
//! /api/models listing, X-Error-Code on errors) and can misbehave on
//! request: cut a download short, send corrupt bytes.

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

// -------------------------------------------------------------------- tests

#[test]
fn gguf_download_reports_progress_then_hits_the_cache() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    let want = gguf_bytes();

    let mut seen = Vec::new();
    let path = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut record(&mut seen)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), want);
    assert!(path.starts_with(tmp.path()), "{}", path.display());
    assert!(
        path.ends_with(Path::new(COMMIT).join(GGUF)),
        "{}",
        path.display()
    );
    let total = want.len() as u64;
    assert_eq!(seen.first(), Some(&Seen::Start(GGUF.into(), total, 0)));
    let bytes: Vec<u64> = seen
        .iter()
        .filter_map(|s| {
            if let Seen::Bytes(d, t) = s {
                assert_eq!(*t, total);
                Some(*d)
            } else {
                None
            }
        })
        .collect();
    assert!(
        !bytes.is_empty() && bytes.windows(2).all(|w| w[0] < w[1]),
        "{bytes:?}"
    );
    assert_eq!(bytes.last(), Some(&total));
    assert_eq!(
        seen.last(),
        Some(&Seen::Done(GGUF.into(), path.clone(), false))
    );
    // A HEAD on the resolve URL; a GET of it at the commit, redirected to
    // the CDN, which sends the bytes.
    let log: Vec<(String, String, String)> = hub
        .log()
        .into_iter()
        .map(|r| (r.method, r.path, r.status))
        .collect();
    let s = |a: &str, b: String, c: &str| (a.to_string(), b, c.to_string());
    assert_eq!(
        log,
        vec![
            s("HEAD", format!("/{REPO}/resolve/main/{GGUF}"), "302 Found"),
            s(
                "GET",
                format!("/{REPO}/resolve/{COMMIT}/{GGUF}"),
                "302 Found"
            ),
            s("GET", format!("/cdn/{}", sha256_hex(&want)), "200 OK"),
        ]
    );
    assert!(parts(tmp.path()).is_empty());

    // Second call: a HEAD to learn the commit, no bytes.
    hub.clear_log();
    let mut seen = Vec::new();
    let again = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut record(&mut seen)).unwrap();
    assert_eq!(again, path);
    assert_eq!(seen, vec![Seen::Done(GGUF.into(), path.clone(), true)]);
    assert!(hub.downloads().is_empty(), "{:?}", hub.log());
    assert_eq!(hub.log().len(), 1);

    // By commit id: not even a HEAD.
    hub.clear_log();
    let by_commit = PullOptions {
        revision: COMMIT.into(),
        ..o.clone()
    };
    assert_eq!(
        pull(&spec(&format!("{REPO}:{GGUF}")), &by_commit, &mut |_| {}).unwrap(),
        path
    );
    assert!(hub.log().is_empty(), "{:?}", hub.log());

    // -o copies the file out of the cache.
    let out = tmp.path().join("out").join("model.gguf");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let with_out = PullOptions {
        output: Some(out.clone()),
        ..o.clone()
    };
    assert_eq!(
        pull(&spec(&format!("{REPO}:{GGUF}")), &with_out, &mut |_| {}).unwrap(),
        out
    );
    assert_eq!(std::fs::read(&out).unwrap(), want);
    assert!(!out.is_symlink());
    // -o with a folder keeps the file's name.
    let dir_out = PullOptions {
        output: Some(tmp.path().join("out")),
        ..o.clone()
    };
    let p = pull(&spec(&format!("{REPO}:{GGUF}")), &dir_out, &mut |_| {}).unwrap();
    assert_eq!(p, tmp.path().join("out").join(GGUF));
    assert_eq!(std::fs::read(&p).unwrap(), want);
}

#[test]
fn small_git_files_are_checked_against_their_blob_id() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    let p = pull(&spec(&format!("{REPO}:README.md")), &o, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"# Tiny\n");
    // A non-LFS file is served by the resolve URL itself.
    let gets: Vec<String> = hub.downloads().into_iter().map(|r| r.path).collect();
    assert_eq!(gets, vec![format!("/{REPO}/resolve/{COMMIT}/README.md")]);

    // Corrupt bytes under a git blob id are caught too.
    hub.state.lock().unwrap().corrupt.push("README.md".into());
    let tmp2 = tempfile::tempdir().unwrap();
    let err = pull_err(&format!("{REPO}:README.md"), &opts(&hub, tmp2.path()));
    assert_mentions(&err, &["checksum mismatch", "README.md", "git blob id"]);
    assert!(find_named(tmp2.path(), "README.md").is_empty());
}

#[test]
fn a_cut_download_fails_clearly_and_resumes_on_the_next_call() {
    let hub = gguf_hub();
    hub.state
        .lock()
        .unwrap()
        .cut
        .insert(GGUF.into(), (300_000, 1));
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());

    let err = pull_err(&format!("{REPO}:{GGUF}"), &o);
    assert_mentions(
        &err,
        &[
            "interrupted",
            GGUF,
            "300.0 kB",
            "run the same command again to resume",
        ],
    );
    assert!(
        find_named(tmp.path(), GGUF).is_empty(),
        "a half file has its final name"
    );
    let p = parts(tmp.path());
    assert_eq!(p.len(), 1);
    assert_eq!(std::fs::metadata(&p[0]).unwrap().len(), 300_000);
    assert_eq!(std::fs::read(&p[0]).unwrap(), gguf_bytes()[..300_000]);

    hub.clear_log();
    let mut seen = Vec::new();
    let path = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut record(&mut seen)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), gguf_bytes());
    let total = gguf_bytes().len() as u64;
    assert_eq!(seen[0], Seen::Start(GGUF.into(), total, 300_000));
    let gets = hub.downloads();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some("bytes=300000-"));
    assert!(parts(tmp.path()).is_empty());
}

#[test]
fn retries_resume_within_one_call() {
    let hub = gguf_hub();
    hub.state
        .lock()
        .unwrap()
        .cut
        .insert(GGUF.into(), (250_000, 2));
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions {
        retries: 2,
        ..opts(&hub, tmp.path())
    };
    let mut seen = Vec::new();
    let path = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut record(&mut seen)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), gguf_bytes());
    let logs: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Log(m) if m.contains("retry")))
        .collect();
    assert_eq!(logs.len(), 2, "{seen:?}");
    let ranges: Vec<Option<String>> = hub.downloads().into_iter().map(|r| r.range).collect();
    assert_eq!(
        ranges,
        vec![
            None,
            Some("bytes=250000-".into()),
            Some("bytes=250000-".into())
        ]
    );

    // Out of retries: the call fails, the part stays.
    hub.state
        .lock()
        .unwrap()
        .cut
        .insert("tiny.Q8_0.gguf".into(), (500, 3));
    let err = pull_err(&format!("{REPO}:tiny.Q8_0.gguf"), &o);
    assert_mentions(&err, &["interrupted", "tiny.Q8_0.gguf"]);
    assert_eq!(parts(tmp.path()).len(), 1);
}

#[test]
fn a_busy_server_is_tried_again() {
    let hub = gguf_hub();
    hub.state.lock().unwrap().unavailable.insert(GGUF.into(), 2);
    let tmp = tempfile::tempdir().unwrap();
    // No retry: the 503 is reported, as something to try again.
    let err = pull_err(&format!("{REPO}:{GGUF}"), &opts(&hub, tmp.path()));
    assert_mentions(
        &err,
        &[
            "interrupted before its first byte",
            "HTTP 503",
            "Run the same command again to retry",
        ],
    );
    // One retry gets past the second 503.
    let o = PullOptions {
        retries: 1,
        ..opts(&hub, tmp.path())
    };
    let p = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), gguf_bytes());
    // A 404 is not retried.
    hub.clear_log();
    let err = pull_err(&format!("{REPO}:nothing.gguf"), &o);
    assert_mentions(&err, &["not found"]);
    assert_eq!(hub.log().iter().filter(|r| r.method == "HEAD").count(), 1);
}

#[test]
fn a_checksum_mismatch_is_caught_and_the_download_deleted() {
    let hub = gguf_hub();
    hub.state.lock().unwrap().corrupt.push(GGUF.into());
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    let err = pull_err(&format!("{REPO}:{GGUF}"), &o);
    assert_mentions(
        &err,
        &[
            "checksum mismatch",
            GGUF,
            "sha256",
            &sha256_hex(&gguf_bytes()),
        ],
    );
    assert!(find_named(tmp.path(), GGUF).is_empty());
    assert!(parts(tmp.path()).is_empty(), "the corrupt part must go");

    // A corrupt partial file is not trusted either: resuming onto it fails
    // the check, and the next call starts afresh.
    hub.state.lock().unwrap().corrupt.clear();
    let sha = sha256_hex(&gguf_bytes());
    let blobs = tmp
        .path()
        .join("hub")
        .join(format!("models--{}", REPO.replace('/', "--")))
        .join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(format!("{sha}.part")), vec![0u8; 1000]).unwrap();
    let err = pull_err(&format!("{REPO}:{GGUF}"), &o);
    assert_mentions(&err, &["checksum mismatch"]);
    hub.clear_log();
    let p = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), gguf_bytes());
    assert_eq!(hub.downloads()[0].range, None);
}

#[test]
fn missing_repositories_revisions_and_files_are_named() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());

    let err = pull_err("nobody/nothing:x.gguf", &o);
    assert_mentions(
        &err,
        &[
            "repository 'nobody/nothing' not found",
            &hub.url,
            "HF_TOKEN",
            "404",
        ],
    );
    let err = pull_err("nobody/nothing", &o);
    assert_mentions(&err, &["repository 'nobody/nothing' not found"]);

    let err = pull_err(&format!("{REPO}:tiny.Q5.gguf"), &o);
    assert_mentions(
        &err,
        &[
            "file 'tiny.Q5.gguf' not found",
            REPO,
            "the repository has",
            GGUF,
            "tiny.Q8_0.gguf",
        ],
    );
    assert!(
        !err.contains("README.md"),
        "only files like the one asked for: {err}"
    );

    let bad_rev = PullOptions {
        revision: "v9".into(),
        ..o.clone()
    };
    let err = pull_err(&format!("{REPO}:{GGUF}"), &bad_rev);
    assert_mentions(&err, &["revision 'v9' not found", REPO]);

    // A GGUF repository pulled as a checkpoint says what to do instead.
    let err = pull_err(REPO, &o);
    assert_mentions(
        &err,
        &["no config.json", &format!("{REPO}:tiny.Q4_K_M.gguf")],
    );

    // Nothing was left in the cache.
    assert!(find_named(tmp.path(), GGUF).is_empty());
    assert!(parts(tmp.path()).is_empty());
}

#[test]
fn malformed_specs_and_revisions_are_refused() {
    for (s, why) in [
        ("", "empty"),
        (":model.gguf", "empty"),
        ("a/b/c:x.gguf", "3 parts"),
        ("owner/:x.gguf", "empty part"),
        ("own er/name", "' ' is not allowed"),
        ("owner/na--me", "'--'"),
        ("owner/name:", "file after ':' is empty"),
        ("owner/name:../x.gguf", "'..'"),
        ("owner/name:/abs.gguf", "inside the repository"),
        ("owner/name:a//b.gguf", "empty"),
    ] {
        let e = format!("{:#}", PullSpec::parse(s).unwrap_err());
        assert_mentions(&e, &["is not a model to pull", why, "REPO[:FILE]"]);
    }
    let s = spec("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf");
    assert_eq!(s.repo, "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF");
    assert_eq!(
        s.file.as_deref(),
        Some("tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf")
    );
    assert_eq!(
        s.to_string(),
        "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"
    );
    assert_eq!(spec("gpt2").file, None);
    assert_eq!(
        spec("o/n:sub/dir/f.gguf").file.as_deref(),
        Some("sub/dir/f.gguf")
    );

    // Refused before any request.
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    for rev in ["", "../x", "a b", "/main"] {
        let o = PullOptions {
            revision: rev.into(),
            ..opts(&hub, tmp.path())
        };
        assert_mentions(
            &pull_err(&format!("{REPO}:{GGUF}"), &o),
            &["is not a revision"],
        );
    }
    assert!(hub.log().is_empty());
}

/// A writer that accepts `room` bytes in all, then fails like a full disk.
fn full_disk(room: u64) -> WriterFactory {
    let left = Arc::new(Mutex::new(room));
    Arc::new(move |p: &Path| {
        struct W(std::fs::File, Arc<Mutex<u64>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let mut left = self.1.lock().unwrap();
                if *left == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::StorageFull,
                        "No space left on device",
                    ));
                }
                let n = (b.len() as u64).min(*left) as usize;
                let n = self.0.write(&b[..n])?;
                *left -= n as u64;
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.0.flush()
            }
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        Ok(Box::new(W(f, left.clone())) as Box<dyn Write>)
    })
}

#[test]
fn a_full_disk_is_reported_and_the_download_resumes_afterwards() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions {
        writer: Some(full_disk(200_000)),
        retries: 2,
        ..opts(&hub, tmp.path())
    };
    let err = pull_err(&format!("{REPO}:{GGUF}"), &o);
    assert_mentions(
        &err,
        &[
            "no space left",
            "200.0 kB",
            "run the same command again to resume",
        ],
    );
    assert_eq!(hub.downloads().len(), 1, "a write error is not retried");
    assert!(find_named(tmp.path(), GGUF).is_empty());
    let p = parts(tmp.path());
    assert_eq!(p.len(), 1);
    assert_eq!(std::fs::metadata(&p[0]).unwrap().len(), 200_000);

    let mut seen = Vec::new();
    let path = pull(
        &spec(&format!("{REPO}:{GGUF}")),
        &opts(&hub, tmp.path()),
        &mut record(&mut seen),
    )
    .unwrap();
    assert_eq!(
        seen[0],
        Seen::Start(GGUF.into(), gguf_bytes().len() as u64, 200_000)
    );
    assert_eq!(std::fs::read(path).unwrap(), gguf_bytes());
}

#[test]
fn a_download_in_progress_elsewhere_is_not_joined() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    let blobs = tmp
        .path()
        .join("hub")
        .join(format!("models--{}", REPO.replace('/', "--")))
        .join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let lock = blobs.join(format!("{}.lock", sha256_hex(&gguf_bytes())));

    // Held by a live process (this one): refused, after a short wait.
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let err = pull_err(&format!("{REPO}:{GGUF}"), &o);
    assert_mentions(
        &err,
        &[
            "being downloaded by another lbm",
            &format!("process {}", std::process::id()),
        ],
    );
    assert!(hub.downloads().is_empty());
    assert!(lock.exists());

    // Left by a process that has exited: taken over, and released.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(&lock, dead.to_string()).unwrap();
    let p = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), gguf_bytes());
    assert!(!lock.exists());
}

#[test]
fn the_cache_answers_when_the_hub_is_gone() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    let path = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut |_| {}).unwrap();
    drop(hub);

    let mut seen = Vec::new();
    assert_eq!(
        pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut record(&mut seen)).unwrap(),
        path
    );
    assert!(
        seen.iter().any(
            |s| matches!(s, Seen::Log(m) if m.contains("cannot reach") && m.contains("cached copy"))
        ),
        "{seen:?}"
    );
    let offline = PullOptions {
        offline: true,
        ..o.clone()
    };
    assert_eq!(
        pull(&spec(&format!("{REPO}:{GGUF}")), &offline, &mut |_| {}).unwrap(),
        path
    );

    // What was never downloaded is an error that says why.
    let err = pull_err(&format!("{REPO}:tiny.Q8_0.gguf"), &o);
    assert_mentions(&err, &["cannot reach"]);
    let err = pull_err(&format!("{REPO}:tiny.Q8_0.gguf"), &offline);
    assert_mentions(&err, &["not in the cache", "HF_HUB_OFFLINE"]);
}

#[test]
fn renamed_repositories_and_tokens() {
    let hub = gguf_hub();
    hub.state
        .lock()
        .unwrap()
        .renamed
        .insert("Old/Tiny".into(), REPO.into());
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions {
        token: Some("hf_secret".into()),
        ..opts(&hub, tmp.path())
    };
    let p = pull(&spec(&format!("Old/Tiny:{GGUF}")), &o, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), gguf_bytes());
    let log = hub.log();
    assert_eq!(log[0].path, format!("/Old/Tiny/resolve/main/{GGUF}"));
    assert_eq!(log[1].path, format!("/{REPO}/resolve/main/{GGUF}"));
    assert!(
        log.iter()
            .all(|r| r.auth.as_deref() == Some("Bearer hf_secret")),
        "{log:?}"
    );
}

#[test]
fn resolve_model_arg_keeps_local_paths_and_pulls_repo_file() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    // An existing file wins, even with a ':' in its name.
    let local = tmp.path().join("odd:name.gguf");
    std::fs::write(&local, b"GGUF").unwrap();
    let arg = local.to_str().unwrap();
    assert_eq!(resolve_model_arg(arg, &o, &mut |_| {}).unwrap(), local);
    // Without ':' it is a path, existing or not (the caller reports it).
    assert_eq!(
        resolve_model_arg("models/x.gguf", &o, &mut |_| {}).unwrap(),
        PathBuf::from("models/x.gguf")
    );
    assert!(hub.log().is_empty());
    // REPO:FILE is pulled.
    let p = resolve_model_arg(&format!("{REPO}:{GGUF}"), &o, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), gguf_bytes());
    // Neither a file nor a spec.
    let e = format!(
        "{:#}",
        resolve_model_arg("/no/such:dir/x.gguf", &o, &mut |_| {}).unwrap_err()
    );
    assert_mentions(
        &e,
        &[
            "there is no file /no/such:dir/x.gguf",
            "is not a model to pull",
        ],
    );
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

#[test]
fn a_safetensors_checkpoint_is_pulled_and_converted() {
    let hub = golden_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions {
        ty: OutType::F32,
        ..opts(&hub, tmp.path())
    };
    let mut seen = Vec::new();
    let gguf = pull(&spec("golden/llama-gqa"), &o, &mut record(&mut seen)).unwrap();
    assert_eq!(gguf.file_name().unwrap(), "llama-gqa-f32.gguf");
    assert!(gguf.starts_with(tmp.path()));
    let err = max_logit_error(&gguf);
    assert!(err <= 1e-4, "max logit error {err}");
    let m = load_model(
        Box::new(std::fs::read(&gguf).unwrap()),
    )
    .unwrap();
    assert_eq!(m.name, "llama-gqa");
    assert!(seen
        .iter()
        .any(|s| matches!(s, Seen::Log(m) if m.contains("converting golden/llama-gqa"))));

    // Only what the conversion needs was downloaded.
    let mut got: Vec<String> = hub
        .log()
        .into_iter()
        .filter(|r| r.method == "HEAD")
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["config.json", "generation_config.json", "model.safetensors"]
    );
    let listing: Vec<Req> = hub
        .log()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .collect();
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].path, "/api/models/golden/llama-gqa");

    // Again: the converted file is reused, no file is asked for.
    hub.clear_log();
    let mut seen = Vec::new();
    assert_eq!(
        pull(&spec("golden/llama-gqa"), &o, &mut record(&mut seen)).unwrap(),
        gguf
    );
    assert_eq!(
        seen,
        vec![Seen::Done("llama-gqa-f32.gguf".into(), gguf.clone(), true)]
    );
    assert!(
        hub.log().iter().all(|r| r.path.starts_with("/api/")),
        "{:?}",
        hub.log()
    );

    // -o converts to the given file (F16 this time), from the cached files.
    hub.clear_log();
    let out = tmp.path().join("m.gguf");
    let o16 = PullOptions {
        output: Some(out.clone()),
        ty: OutType::F16,
        ..o.clone()
    };
    assert_eq!(
        pull(&spec("golden/llama-gqa"), &o16, &mut |_| {}).unwrap(),
        out
    );
    assert!(hub.downloads().is_empty(), "{:?}", hub.log());
    let err16 = max_logit_error(&out);
    assert!(err16 > 0.0 && err16 <= 2e-2, "F16 logit error {err16}");
    assert!(std::fs::metadata(&out).unwrap().len() < std::fs::metadata(&gguf).unwrap().len());
}

#[test]
fn a_sharded_checkpoint_follows_its_index() {
    let hub = golden_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions {
        ty: OutType::F32,
        ..opts(&hub, tmp.path())
    };
    let gguf = pull(&spec("golden/llama-gqa-sharded"), &o, &mut |_| {}).unwrap();
    let err = max_logit_error(&gguf);
    assert!(err <= 1e-4, "max logit error {err}");
    assert!(hub
        .log()
        .iter()
        .any(|r| r.method == "HEAD" && r.path.ends_with("/model-00001-of-00001.safetensors")));

    // A shard the index names but the repository lacks: named in the error.
    let tmp2 = tempfile::tempdir().unwrap();
    hub.state
        .lock()
        .unwrap()
        .repos
        .get_mut("golden/llama-gqa-sharded")
        .unwrap()
        .files
        .remove("model-00001-of-00001.safetensors");
    let err = pull_err("golden/llama-gqa-sharded", &opts(&hub, tmp2.path()));
    assert_mentions(&err, &["file 'model-00001-of-00001.safetensors' not found"]);
    assert!(find_named(tmp2.path(), "llama-gqa-sharded-f16.gguf").is_empty());
}

// ------------------------------------------------------------- the binary

fn lbm_pull(args: &[&str], endpoint: &str) -> (i32, String, String) {
    lbm_pull_env(args, endpoint, &[])
}

/// `lbm pull ARGS` with HF_ENDPOINT, no token and online, unless `env` says
/// otherwise.
fn lbm_pull_env(args: &[&str], endpoint: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lbm"))
        .arg("pull")
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("LBM_CACHE")
        .env("HF_TOKEN_PATH", "/nonexistent/token")
        .envs(env.iter().copied())
        .output()
        .expect("run lbm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn lbm_pull_prints_the_path_with_hf_endpoint() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let c = cache.to_str().unwrap();

    let (code, out, err) = lbm_pull(&[&format!("{REPO}:{GGUF}"), "--cache", c], &hub.url);
    assert_eq!(code, 0, "{err}");
    let path = PathBuf::from(out.trim());
    assert!(path.starts_with(&cache), "{out}");
    assert_eq!(std::fs::read(&path).unwrap(), gguf_bytes());
    assert_mentions(&err, &[GGUF, "MB/s", "downloaded in"]);
    assert!(hub.log().iter().all(|r| r.auth.is_none()));

    let (code, out2, err) = lbm_pull(&[&format!("{REPO}:{GGUF}"), "--cache", c], &hub.url);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out2, out);
    assert_mentions(&err, &["in the cache"]);

    let o = tmp.path().join("copy.gguf");
    let (code, out3, err) = lbm_pull(
        &[
            &format!("{REPO}:{GGUF}"),
            "--cache",
            c,
            "--revision",
            COMMIT,
            "-o",
            o.to_str().unwrap(),
        ],
        &hub.url,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out3.trim(), o.to_str().unwrap());
    assert_eq!(std::fs::read(&o).unwrap(), gguf_bytes());

    let (code, out, err) = lbm_pull(&["nobody/nothing:x.gguf", "--cache", c], &hub.url);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_mentions(&err, &["error:", "repository 'nobody/nothing' not found"]);

    let (code, _, err) = lbm_pull(&["a/b/c", "--cache", c], &hub.url);
    assert_eq!(code, 1);
    assert_mentions(&err, &["is not a model to pull"]);
}

#[test]
fn lbm_pull_converts_a_checkpoint() {
    let hub = golden_hub();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("llama.gguf");
    let (code, stdout, err) = lbm_pull(
        &[
            "golden/llama-gqa",
            "--cache",
            tmp.path().join("c").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--type",
            "f32",
        ],
        &hub.url,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout.trim(), out.to_str().unwrap());
    assert!(max_logit_error(&out) <= 1e-4);
    assert_mentions(&err, &["converting golden/llama-gqa", "model.safetensors"]);
}

#[test]
fn lbm_pull_reads_hf_token_lbm_cache_and_hf_hub_offline() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("env-cache");
    let c = cache.to_str().unwrap();
    let file = format!("{REPO}:README.md");

    let (code, out, err) = lbm_pull_env(
        &[&file],
        &hub.url,
        &[("HF_TOKEN", "hf_from_env"), ("LBM_CACHE", c)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(Path::new(out.trim()).starts_with(&cache), "{out}");
    assert!(
        hub.log()
            .iter()
            .all(|r| r.auth.as_deref() == Some("Bearer hf_from_env")),
        "{:?}",
        hub.log()
    );

    // The token file `huggingface-cli login` writes.
    hub.clear_log();
    let token = tmp.path().join("token");
    std::fs::write(&token, "hf_from_file\n").unwrap();
    let other = tmp.path().join("other-cache");
    let (code, _, err) = lbm_pull_env(
        &[&file, "--cache", other.to_str().unwrap()],
        &hub.url,
        &[("HF_TOKEN_PATH", token.to_str().unwrap())],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(hub.log()[0].auth.as_deref(), Some("Bearer hf_from_file"));

    // Offline: the cached file is there without a request; another is not.
    hub.clear_log();
    let (code, out2, err) = lbm_pull_env(
        &[&file],
        &hub.url,
        &[("LBM_CACHE", c), ("HF_HUB_OFFLINE", "1")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out2, out);
    let (code, _, err) = lbm_pull_env(
        &[&format!("{REPO}:{GGUF}")],
        &hub.url,
        &[("LBM_CACHE", c), ("HF_HUB_OFFLINE", "1")],
    );
    assert_eq!(code, 1);
    assert_mentions(&err, &["not in the cache", "HF_HUB_OFFLINE"]);
    assert!(hub.log().is_empty(), "{:?}", hub.log());
}
