//! The Hugging Face hub's HTTP protocol, as far as downloading needs it.
//!
//! * `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` describes a file
//!   without sending it. The answer carries `X-Repo-Commit` (the commit the
//!   revision points to) and an ETag. For a file stored with Git LFS the hub
//!   answers with a redirect to its CDN and `X-Linked-Etag` / `X-Linked-Size`
//!   give the file's sha256 and size; for a small file kept in git the ETag
//!   is the git blob id (a sha1) and `Content-Length` the size. Redirects to
//!   the same host (a renamed repository) are followed; one to another host
//!   is where the bytes live.
//! * `GET` on the same URL, redirects followed, with `Range: bytes=N-` to
//!   resume, sends the bytes.
//! * `GET {endpoint}/api/models/{repo}[/revision/{revision}]` lists a
//!   repository: `sha` (the commit) and `siblings[].rfilename`.
//! * Errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`,
//!   `EntryNotFound`, `GatedRepo`, ...) and `X-Error-Message`.
//!
//! The token (`Authorization: Bearer`) goes only to the endpoint's own
//! origin, never to the CDN a download is redirected to.

use std::fmt;
use std::time::Duration;

use ureq::http::{Response, StatusCode};
use ureq::Body;

/// What went wrong talking to the hub, classified so that callers can
/// react (fall back to the cache, list the files a repository does have).
#[derive(Debug)]
pub(crate) struct HubError {
    pub kind: Kind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No answer at all: DNS, connection, TLS, timeout.
    Unreachable,
    RepoNotFound,
    RevisionNotFound,
    EntryNotFound,
    /// 401/403: private, gated, or a refused token.
    Denied,
    /// 5xx, 429: worth trying again.
    Busy,
    Other,
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HubError {}

/// Which repository, revision and file a request was about (for messages).
pub(crate) struct Target<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub file: Option<&'a str>,
}

/// What a `HEAD` on a file says about it.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    /// The commit the revision resolved to.
    pub commit: String,
    /// The ETag without quotes: a sha256 (LFS) or a git blob sha1.
    pub etag: String,
    pub size: u64,
}

/// A repository listing.
pub(crate) struct RepoInfo {
    pub commit: String,
    pub files: Vec<String>,
}

pub(crate) struct Hub {
    agent: ureq::Agent,
    endpoint: String,
    token: Option<String>,
}

/// Bytes of a URL that must be percent-encoded in a path segment.
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let plain = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if plain || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://authority` of an absolute URL.
fn origin(url: &str) -> &str {
    let Some(i) = url.find("://") else { return url };
    let rest = &url[i + 3..];
    let end = rest.find(['/', '?', '#']).map_or(url.len(), |j| i + 3 + j);
    &url[..end]
}

/// The absolute URL a `Location` header points to, seen from `base`.
fn join(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let path_end = base.find(['?', '#']).unwrap_or(base.len());
        let dir_end = base[..path_end].rfind('/').map_or(base.len(), |i| i + 1);
        format!("{}{location}", &base[..dir_end])
    }
}

fn header<'r>(r: &'r Response<Body>, name: &str) -> Option<&'r str> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// An ETag without `W/` and quotes.
fn clean_etag(e: &str) -> String {
    e.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

fn is_loopback(endpoint: &str) -> bool {
    let host = origin(endpoint).split("://").nth(1).unwrap_or("");
    host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")
}

impl Hub {
    pub fn new(endpoint: &str, token: Option<&str>) -> Hub {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        // A proxy from the environment cannot reach a hub on this machine.
        let proxy = if is_loopback(&endpoint) { None } else { ureq::Proxy::try_from_env() };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .user_agent(format!("lbm/{}", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .build();
        Hub { agent: config.into(), endpoint, token: token.filter(|t| !t.is_empty()).map(str::to_string) }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The resolve URL of a file.
    pub fn file_url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!("{}/{}/resolve/{}/{}", self.endpoint, encode(repo, true), encode(revision, false), encode(file, true))
    }

    fn api_url(&self, repo: &str, revision: &str) -> String {
        if revision == "main" {
            format!("{}/api/models/{}", self.endpoint, encode(repo, true))
        } else {
            format!("{}/api/models/{}/revision/{}", self.endpoint, encode(repo, true), encode(revision, false))
        }
    }

    /// One request, no redirect followed.
    fn send(&self, head: bool, url: &str, from: u64) -> Result<Response<Body>, HubError> {
        let mut req = if head { self.agent.head(url) } else { self.agent.get(url) };
        if from > 0 {
            req = req.header("Range", format!("bytes={from}-"));
        }
        if let Some(t) = &self.token {
            if origin(url) == origin(&self.endpoint) {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
        }
        req.call()
            .map_err(|e| HubError { kind: Kind::Unreachable, message: format!("cannot reach {}: {e}", origin(url)) })
    }

    /// A request that follows redirects: all of them, or (`relative_only`)
    /// only relative ones (a renamed repository), returning a redirect to
    /// an absolute URL (where an LFS file's bytes are) as it is.
    fn request(
        &self,
        head: bool,
        url: &str,
        from: u64,
        relative_only: bool,
    ) -> Result<(Response<Body>, String), HubError> {
        let mut url = url.to_string();
        for _ in 0..10 {
            let resp = self.send(head, &url, from)?;
            if !resp.status().is_redirection() {
                return Ok((resp, url));
            }
            let Some(loc) = header(&resp, "location") else {
                return Ok((resp, url));
            };
            if relative_only && (loc.contains("://") || loc.starts_with("//")) {
                return Ok((resp, url));
            }
            url = join(&url, loc);
        }
        Err(HubError { kind: Kind::Other, message: format!("too many redirects from {url}") })
    }

    /// Describes a file (`HEAD` on its resolve URL).
    pub fn file_meta(&self, t: &Target) -> Result<FileMeta, HubError> {
        let file = t.file.unwrap_or_default();
        let (resp, url) = self.request(true, &self.file_url(t.repo, t.revision, file), 0, true)?;
        let status = resp.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(self.status_error(&resp, &url, t));
        }
        let not_a_hub = |what: &str| HubError {
            kind: Kind::Other,
            message: format!("{} did not answer like a Hugging Face hub: no {what} header for {url}", self.endpoint),
        };
        let commit = header(&resp, "x-repo-commit").ok_or_else(|| not_a_hub("X-Repo-Commit"))?;
        let etag = header(&resp, "x-linked-etag")
            .or_else(|| header(&resp, "etag"))
            .map(clean_etag)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| not_a_hub("ETag"))?;
        let size = header(&resp, "x-linked-size")
            .or_else(|| header(&resp, "content-length"))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| not_a_hub("X-Linked-Size or Content-Length"))?;
        Ok(FileMeta { commit: commit.to_string(), etag, size })
    }

    /// Starts downloading a file from byte `from` (redirects followed).
    pub fn get_file(&self, t: &Target, from: u64) -> Result<Response<Body>, HubError> {
        let url = self.file_url(t.repo, t.revision, t.file.unwrap_or_default());
        let (resp, url) = self.request(false, &url, from, false)?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            Ok(resp)
        } else {
            Err(self.status_error(&resp, &url, t))
        }
    }

    /// Lists a repository at a revision.
    pub fn repo_info(&self, t: &Target) -> Result<RepoInfo, HubError> {
        let (mut resp, url) = self.request(false, &self.api_url(t.repo, t.revision), 0, false)?;
        if !resp.status().is_success() {
            return Err(self.status_error(&resp, &url, t));
        }
        let bad = |why: String| HubError { kind: Kind::Other, message: format!("unexpected answer from {url}: {why}") };
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| HubError { kind: Kind::Unreachable, message: format!("reading {url}: {e}") })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
        let commit = v.get("sha").and_then(|s| s.as_str()).ok_or_else(|| bad("no 'sha'".into()))?.to_string();
        let siblings = v.get("siblings").and_then(|s| s.as_array()).ok_or_else(|| bad("no 'siblings' list".into()))?;
        let files =
            siblings.iter().filter_map(|s| s.get("rfilename").and_then(|n| n.as_str()).map(str::to_string)).collect();
        Ok(RepoInfo { commit, files })
    }

    fn status_error(&self, resp: &Response<Body>, url: &str, t: &Target) -> HubError {
        let status = resp.status().as_u16();
        let code = header(resp, "x-error-code").unwrap_or("");
        let said =
            header(resp, "x-error-message").filter(|m| !m.is_empty()).map(|m| format!(": {m}")).unwrap_or_default();
        let (repo, rev) = (t.repo, t.revision);
        let private_hint = if self.token.is_some() {
            "(HF_TOKEN is set: does it give access to it?)"
        } else {
            "(if it is private or gated, set HF_TOKEN)"
        };
        let kind = match (code, status) {
            ("RepoNotFound", _) => Kind::RepoNotFound,
            ("RevisionNotFound", _) => Kind::RevisionNotFound,
            ("EntryNotFound", _) => Kind::EntryNotFound,
            ("GatedRepo", _) | (_, 401 | 403) => Kind::Denied,
            (_, 404) if t.file.is_some() => Kind::EntryNotFound,
            (_, 404) => Kind::RepoNotFound,
            (_, 429 | 500..) => Kind::Busy,
            _ => Kind::Other,
        };
        let message = match kind {
            Kind::RepoNotFound => {
                format!("repository '{repo}' not found on {} {private_hint} (HTTP {status})", self.endpoint)
            }
            Kind::RevisionNotFound => {
                format!("revision '{rev}' not found in repository '{repo}' (HTTP {status})")
            }
            Kind::EntryNotFound => format!(
                "file '{}' not found in repository '{repo}' at revision '{rev}' (HTTP {status})",
                t.file.unwrap_or_default()
            ),
            Kind::Denied if code == "GatedRepo" => format!(
                "repository '{repo}' is gated: accept its conditions on its page on the hub, \
                 then set HF_TOKEN (HTTP {status}{said})"
            ),
            Kind::Denied => {
                format!("access to '{repo}' refused {private_hint} (HTTP {status}{said})")
            }
            Kind::Unreachable | Kind::Busy | Kind::Other => {
                format!("HTTP {status} from {url}{said}")
            }
        };
        HubError { kind, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(encode("a b/c%.gguf", true), "a%20b/c%25.gguf");
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(origin("http://127.0.0.1:80/x/y?z"), "http://127.0.0.1:80");
        assert_eq!(origin("https://h"), "https://h");
        assert_eq!(join("https://a/b/c", "/d"), "https://a/d");
        assert_eq!(join("https://a/b/c", "https://e/f"), "https://e/f");
        assert_eq!(join("https://a/b/c", "//e/f"), "https://e/f");
        assert_eq!(join("https://a/b/c?q", "d"), "https://a/b/d");
        assert_eq!(clean_etag("W/\"abc\""), "abc");
        assert!(is_loopback("http://127.0.0.1:5/"));
        assert!(!is_loopback("https://huggingface.co"));
    }
}
