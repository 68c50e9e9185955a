//! `lbm pull` against a fake hub: a small HTTP server on 127.0.0.1, in a
//! thread of this test, that speaks the hub's protocol (resolve URLs with
//! X-Repo-Commit / ETag / X-Linked-Etag / X-Linked-Size, LFS files behind
//! an absolute redirect to a "CDN" path serving byte ranges, the
//! /api/models listing, X-Error-Code on errors) and can misbehave on
//! request: cut a download short, send corrupt bytes.
//! The server is crates/hub/tests/support/fake_hub.rs, shared with the hub
//! crate's own tests; this file drives the binary.
// Not every helper of the shared fake hub is used here.
#![allow(dead_code, unused_imports)]

include!("../../hub/tests/support/fake_hub.rs");

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
    let (code, out3, err) =
        lbm_pull(&[&format!("{REPO}:{GGUF}"), "--cache", c, "--revision", COMMIT, "-o", o.to_str().unwrap()], &hub.url);
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

    let (code, out, err) = lbm_pull_env(&[&file], &hub.url, &[("HF_TOKEN", "hf_from_env"), ("LBM_CACHE", c)]);
    assert_eq!(code, 0, "{err}");
    assert!(Path::new(out.trim()).starts_with(&cache), "{out}");
    assert!(hub.log().iter().all(|r| r.auth.as_deref() == Some("Bearer hf_from_env")), "{:?}", hub.log());

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
    let (code, out2, err) = lbm_pull_env(&[&file], &hub.url, &[("LBM_CACHE", c), ("HF_HUB_OFFLINE", "1")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out2, out);
    let (code, _, err) =
        lbm_pull_env(&[&format!("{REPO}:{GGUF}")], &hub.url, &[("LBM_CACHE", c), ("HF_HUB_OFFLINE", "1")]);
    assert_eq!(code, 1);
    assert_mentions(&err, &["not in the cache", "HF_HUB_OFFLINE"]);
    assert!(hub.log().is_empty(), "{:?}", hub.log());
}
