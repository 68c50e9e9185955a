//! The hub client against a fake hub: a small HTTP server on 127.0.0.1, in a
//! thread of this test, that speaks the hub's protocol (resolve URLs with
//! X-Repo-Commit / ETag / X-Linked-Etag / X-Linked-Size, LFS files behind
//! an absolute redirect to a "CDN" path serving byte ranges, the
//! /api/models listing, X-Error-Code on errors) and can misbehave on
//! request: cut a download short, send corrupt bytes.

include!("support/fake_hub.rs");

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
    assert!(path.ends_with(Path::new(COMMIT).join(GGUF)), "{}", path.display());
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
    assert!(!bytes.is_empty() && bytes.windows(2).all(|w| w[0] < w[1]), "{bytes:?}");
    assert_eq!(bytes.last(), Some(&total));
    assert_eq!(seen.last(), Some(&Seen::Done(GGUF.into(), path.clone(), false)));
    // A HEAD on the resolve URL; a GET of it at the commit, redirected to
    // the CDN, which sends the bytes.
    let log: Vec<(String, String, String)> = hub.log().into_iter().map(|r| (r.method, r.path, r.status)).collect();
    let s = |a: &str, b: String, c: &str| (a.to_string(), b, c.to_string());
    assert_eq!(
        log,
        vec![
            s("HEAD", format!("/{REPO}/resolve/main/{GGUF}"), "302 Found"),
            s("GET", format!("/{REPO}/resolve/{COMMIT}/{GGUF}"), "302 Found"),
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
    let by_commit = PullOptions { revision: COMMIT.into(), ..o.clone() };
    assert_eq!(pull(&spec(&format!("{REPO}:{GGUF}")), &by_commit, &mut |_| {}).unwrap(), path);
    assert!(hub.log().is_empty(), "{:?}", hub.log());

    // -o copies the file out of the cache.
    let out = tmp.path().join("out").join("model.gguf");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let with_out = PullOptions { output: Some(out.clone()), ..o.clone() };
    assert_eq!(pull(&spec(&format!("{REPO}:{GGUF}")), &with_out, &mut |_| {}).unwrap(), out);
    assert_eq!(std::fs::read(&out).unwrap(), want);
    assert!(!out.is_symlink());
    // -o with a folder keeps the file's name.
    let dir_out = PullOptions { output: Some(tmp.path().join("out")), ..o.clone() };
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
    hub.state.lock().unwrap().cut.insert(GGUF.into(), (300_000, 1));
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());

    let err = pull_err(&format!("{REPO}:{GGUF}"), &o);
    assert_mentions(&err, &["interrupted", GGUF, "300.0 kB", "run the same command again to resume"]);
    assert!(find_named(tmp.path(), GGUF).is_empty(), "a half file has its final name");
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
    hub.state.lock().unwrap().cut.insert(GGUF.into(), (250_000, 2));
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions { retries: 2, ..opts(&hub, tmp.path()) };
    let mut seen = Vec::new();
    let path = pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut record(&mut seen)).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), gguf_bytes());
    let logs: Vec<&Seen> = seen.iter().filter(|s| matches!(s, Seen::Log(m) if m.contains("retry"))).collect();
    assert_eq!(logs.len(), 2, "{seen:?}");
    let ranges: Vec<Option<String>> = hub.downloads().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, vec![None, Some("bytes=250000-".into()), Some("bytes=250000-".into())]);

    // Out of retries: the call fails, the part stays.
    hub.state.lock().unwrap().cut.insert("tiny.Q8_0.gguf".into(), (500, 3));
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
    assert_mentions(&err, &["interrupted before its first byte", "HTTP 503", "Run the same command again to retry"]);
    // One retry gets past the second 503.
    let o = PullOptions { retries: 1, ..opts(&hub, tmp.path()) };
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
    assert_mentions(&err, &["checksum mismatch", GGUF, "sha256", &sha256_hex(&gguf_bytes())]);
    assert!(find_named(tmp.path(), GGUF).is_empty());
    assert!(parts(tmp.path()).is_empty(), "the corrupt part must go");

    // A corrupt partial file is not trusted either: resuming onto it fails
    // the check, and the next call starts afresh.
    hub.state.lock().unwrap().corrupt.clear();
    let sha = sha256_hex(&gguf_bytes());
    let blobs = tmp.path().join("hub").join(format!("models--{}", REPO.replace('/', "--"))).join("blobs");
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
    assert_mentions(&err, &["repository 'nobody/nothing' not found", &hub.url, "HF_TOKEN", "404"]);
    let err = pull_err("nobody/nothing", &o);
    assert_mentions(&err, &["repository 'nobody/nothing' not found"]);

    let err = pull_err(&format!("{REPO}:tiny.Q5.gguf"), &o);
    assert_mentions(&err, &["file 'tiny.Q5.gguf' not found", REPO, "the repository has", GGUF, "tiny.Q8_0.gguf"]);
    assert!(!err.contains("README.md"), "only files like the one asked for: {err}");

    let bad_rev = PullOptions { revision: "v9".into(), ..o.clone() };
    let err = pull_err(&format!("{REPO}:{GGUF}"), &bad_rev);
    assert_mentions(&err, &["revision 'v9' not found", REPO]);

    // A GGUF repository pulled as a checkpoint says what to do instead.
    let err = pull_err(REPO, &o);
    assert_mentions(&err, &["no config.json", &format!("{REPO}:tiny.Q4_K_M.gguf")]);

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
    assert_eq!(s.file.as_deref(), Some("tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf"));
    assert_eq!(s.to_string(), "TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF:tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf");
    assert_eq!(spec("gpt2").file, None);
    assert_eq!(spec("o/n:sub/dir/f.gguf").file.as_deref(), Some("sub/dir/f.gguf"));

    // Refused before any request.
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    for rev in ["", "../x", "a b", "/main"] {
        let o = PullOptions { revision: rev.into(), ..opts(&hub, tmp.path()) };
        assert_mentions(&pull_err(&format!("{REPO}:{GGUF}"), &o), &["is not a revision"]);
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
                    return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device"));
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
        let f = std::fs::OpenOptions::new().create(true).append(true).open(p)?;
        Ok(Box::new(W(f, left.clone())) as Box<dyn Write>)
    })
}

#[test]
fn a_full_disk_is_reported_and_the_download_resumes_afterwards() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions { writer: Some(full_disk(200_000)), retries: 2, ..opts(&hub, tmp.path()) };
    let err = pull_err(&format!("{REPO}:{GGUF}"), &o);
    assert_mentions(&err, &["no space left", "200.0 kB", "run the same command again to resume"]);
    assert_eq!(hub.downloads().len(), 1, "a write error is not retried");
    assert!(find_named(tmp.path(), GGUF).is_empty());
    let p = parts(tmp.path());
    assert_eq!(p.len(), 1);
    assert_eq!(std::fs::metadata(&p[0]).unwrap().len(), 200_000);

    let mut seen = Vec::new();
    let path = pull(&spec(&format!("{REPO}:{GGUF}")), &opts(&hub, tmp.path()), &mut record(&mut seen)).unwrap();
    assert_eq!(seen[0], Seen::Start(GGUF.into(), gguf_bytes().len() as u64, 200_000));
    assert_eq!(std::fs::read(path).unwrap(), gguf_bytes());
}

#[test]
fn a_download_in_progress_elsewhere_is_not_joined() {
    let hub = gguf_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = opts(&hub, tmp.path());
    let blobs = tmp.path().join("hub").join(format!("models--{}", REPO.replace('/', "--"))).join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let lock = blobs.join(format!("{}.lock", sha256_hex(&gguf_bytes())));

    // Held by a live process (this one): refused, after a short wait.
    std::fs::write(&lock, std::process::id().to_string()).unwrap();
    let err = pull_err(&format!("{REPO}:{GGUF}"), &o);
    assert_mentions(&err, &["being downloaded by another lbm", &format!("process {}", std::process::id())]);
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
    assert_eq!(pull(&spec(&format!("{REPO}:{GGUF}")), &o, &mut record(&mut seen)).unwrap(), path);
    assert!(
        seen.iter().any(|s| matches!(s, Seen::Log(m) if m.contains("cannot reach") && m.contains("cached copy"))),
        "{seen:?}"
    );
    let offline = PullOptions { offline: true, ..o.clone() };
    assert_eq!(pull(&spec(&format!("{REPO}:{GGUF}")), &offline, &mut |_| {}).unwrap(), path);

    // What was never downloaded is an error that says why.
    let err = pull_err(&format!("{REPO}:tiny.Q8_0.gguf"), &o);
    assert_mentions(&err, &["cannot reach"]);
    let err = pull_err(&format!("{REPO}:tiny.Q8_0.gguf"), &offline);
    assert_mentions(&err, &["not in the cache", "HF_HUB_OFFLINE"]);
}

#[test]
fn renamed_repositories_and_tokens() {
    let hub = gguf_hub();
    hub.state.lock().unwrap().renamed.insert("Old/Tiny".into(), REPO.into());
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions { token: Some("hf_secret".into()), ..opts(&hub, tmp.path()) };
    let p = pull(&spec(&format!("Old/Tiny:{GGUF}")), &o, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(p).unwrap(), gguf_bytes());
    let log = hub.log();
    assert_eq!(log[0].path, format!("/Old/Tiny/resolve/main/{GGUF}"));
    assert_eq!(log[1].path, format!("/{REPO}/resolve/main/{GGUF}"));
    assert!(log.iter().all(|r| r.auth.as_deref() == Some("Bearer hf_secret")), "{log:?}");
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
    assert_eq!(resolve_model_arg("models/x.gguf", &o, &mut |_| {}).unwrap(), PathBuf::from("models/x.gguf"));
    assert!(hub.log().is_empty());
    // REPO:FILE is pulled.
    let p = resolve_model_arg(&format!("{REPO}:{GGUF}"), &o, &mut |_| {}).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), gguf_bytes());
    // Neither a file nor a spec.
    let e = format!("{:#}", resolve_model_arg("/no/such:dir/x.gguf", &o, &mut |_| {}).unwrap_err());
    assert_mentions(&e, &["there is no file /no/such:dir/x.gguf", "is not a model to pull"]);
}

#[test]
fn a_safetensors_checkpoint_is_pulled_and_converted() {
    let hub = golden_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions { ty: OutType::F32, ..opts(&hub, tmp.path()) };
    let mut seen = Vec::new();
    let gguf = pull(&spec("golden/llama-gqa"), &o, &mut record(&mut seen)).unwrap();
    assert_eq!(gguf.file_name().unwrap(), "llama-gqa-f32.gguf");
    assert!(gguf.starts_with(tmp.path()));
    let err = max_logit_error(&gguf);
    assert!(err <= 1e-4, "max logit error {err}");
    let m = load_model(Box::new(std::fs::read(&gguf).unwrap())).unwrap();
    assert_eq!(m.name, "llama-gqa");
    assert!(seen.iter().any(|s| matches!(s, Seen::Log(m) if m.contains("converting golden/llama-gqa"))));

    // Only what the conversion needs was downloaded.
    let mut got: Vec<String> = hub
        .log()
        .into_iter()
        .filter(|r| r.method == "HEAD")
        .map(|r| r.path.rsplit('/').next().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["config.json", "generation_config.json", "model.safetensors"]);
    let listing: Vec<Req> = hub.log().into_iter().filter(|r| r.path.starts_with("/api/")).collect();
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].path, "/api/models/golden/llama-gqa");

    // Again: the converted file is reused, no file is asked for.
    hub.clear_log();
    let mut seen = Vec::new();
    assert_eq!(pull(&spec("golden/llama-gqa"), &o, &mut record(&mut seen)).unwrap(), gguf);
    assert_eq!(seen, vec![Seen::Done("llama-gqa-f32.gguf".into(), gguf.clone(), true)]);
    assert!(hub.log().iter().all(|r| r.path.starts_with("/api/")), "{:?}", hub.log());

    // -o converts to the given file (F16 this time), from the cached files.
    hub.clear_log();
    let out = tmp.path().join("m.gguf");
    let o16 = PullOptions { output: Some(out.clone()), ty: OutType::F16, ..o.clone() };
    assert_eq!(pull(&spec("golden/llama-gqa"), &o16, &mut |_| {}).unwrap(), out);
    assert!(hub.downloads().is_empty(), "{:?}", hub.log());
    let err16 = max_logit_error(&out);
    assert!(err16 > 0.0 && err16 <= 2e-2, "F16 logit error {err16}");
    assert!(std::fs::metadata(&out).unwrap().len() < std::fs::metadata(&gguf).unwrap().len());
}

#[test]
fn a_sharded_checkpoint_follows_its_index() {
    let hub = golden_hub();
    let tmp = tempfile::tempdir().unwrap();
    let o = PullOptions { ty: OutType::F32, ..opts(&hub, tmp.path()) };
    let gguf = pull(&spec("golden/llama-gqa-sharded"), &o, &mut |_| {}).unwrap();
    let err = max_logit_error(&gguf);
    assert!(err <= 1e-4, "max logit error {err}");
    assert!(hub.log().iter().any(|r| r.method == "HEAD" && r.path.ends_with("/model-00001-of-00001.safetensors")));

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
