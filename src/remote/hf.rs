//! Hugging Face Hub repositories: `hf://ORG/NAME[@REVISION]` and
//! `https://huggingface.co/ORG/NAME[/tree/REVISION]`.
//!
//! Built on the `hf-hub` crate (0.5, blocking `ureq` client): the revision
//! is resolved to a commit by the Hub API (`/api/models/ORG/NAME/revision/REV`,
//! with file sizes), and every file is fetched into the standard Hugging Face
//! cache (`blobs/` named by ETag, `snapshots/COMMIT/` pointing at them,
//! `refs/`). A file already in the cache for that commit is not downloaded
//! again, so re-scanning an unchanged model costs one listing request.
//! Downloads go to a temporary file renamed into place only when complete,
//! and each file's size is checked against the listing: an interrupted
//! download leaves no cache entry.
//!
//! Environment: `HF_ENDPOINT` (a mirror or a test server), `HF_TOKEN` (or the
//! token file of `HF_HOME`), `HF_HUB_CACHE` / `HF_HOME` (cache location).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};

use super::range::{InPlaceFile, Located, RemoteFile};
use super::{safe_relative as safe_name, Fetched, RemoteError};

/// A model repository at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfRef {
    pub repo: String,
    pub revision: String,
}

/// Files no scan needs: media and git metadata.
const SKIPPED_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "svg", "bmp", "ico", "mp4", "mov", "webm", "mp3", "wav",
    "flac", "pdf",
];

fn valid_repo(repo: &str) -> bool {
    let repo = repo.strip_prefix("datasets/").unwrap_or(repo);
    let parts: Vec<&str> = repo.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// Parses `hf://ORG/NAME[@REV]` and `https://huggingface.co/ORG/NAME[/tree/REV]`;
/// `None` when `s` is neither; `Some(Err)` when it is one but malformed.
pub fn parse(s: &str) -> Option<Result<HfRef, RemoteError>> {
    let bad = |why: &str| Some(Err(RemoteError::Usage(format!("{s}: {why}"))));
    if let Some(rest) = s.strip_prefix("hf://") {
        let (repo, rev) = match rest.split_once('@') {
            Some((r, v)) => (r, v),
            None => (rest, "main"),
        };
        let repo = repo.trim_end_matches('/');
        if !valid_repo(repo) {
            return bad("expected hf://ORG/NAME[@REVISION] or hf://datasets/ORG/NAME[@REVISION]");
        }
        if rev.is_empty() || rev.contains("..") {
            return bad("empty or invalid revision");
        }
        return Some(Ok(HfRef {
            repo: repo.into(),
            revision: rev.into(),
        }));
    }
    let rest = s
        .strip_prefix("https://huggingface.co/")
        .or_else(|| s.strip_prefix("http://huggingface.co/"))?;
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if parts.len() < 2 || !valid_repo(&format!("{}/{}", parts[0], parts[1])) {
        return bad("expected https://huggingface.co/ORG/NAME[/tree/REVISION]");
    }
    let revision = match parts.get(2) {
        None => "main".to_string(),
        Some(&"tree") if parts.len() >= 4 => parts[3..].join("/"),
        _ => return bad("expected https://huggingface.co/ORG/NAME[/tree/REVISION]"),
    };
    if revision.contains("..") {
        return bad("invalid revision");
    }
    Some(Ok(HfRef {
        repo: format!("{}/{}", parts[0], parts[1]),
        revision,
    }))
}

/// The Hub's repository type and id of a repo string: `datasets/ORG/NAME`
/// is a data set, anything else a model.
fn kind(repo: &str) -> (RepoType, &str) {
    match repo.strip_prefix("datasets/") {
        Some(id) => (RepoType::Dataset, id),
        None => (RepoType::Model, repo),
    }
}

fn at(repo: &str, revision: String) -> Repo {
    let (t, id) = kind(repo);
    Repo::with_revision(id.to_string(), t, revision)
}

/// The repository's folder in the Hugging Face cache.
fn cache_folder(repo: &str) -> String {
    match kind(repo) {
        (RepoType::Dataset, id) => format!("datasets--{}", id.replace('/', "--")),
        (_, id) => format!("models--{}", id.replace('/', "--")),
    }
}

fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string()
}

fn cache() -> Cache {
    match std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        Some(p) => Cache::new(PathBuf::from(p)),
        None => Cache::from_env(),
    }
}

fn token(cache: &Cache) -> Option<String> {
    std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| cache.token())
}

/// One line for a failed request.
fn explain(r: &HfRef, what: &str, e: ApiError, has_token: bool) -> RemoteError {
    let status = match &e {
        ApiError::RequestError(b) => match b.as_ref() {
            ureq::Error::StatusCode(c) => Some(*c),
            _ => None,
        },
        _ => None,
    };
    let repo = &r.repo;
    let msg = match status {
        Some(401) | Some(403) if !has_token => format!(
            "hf://{repo}: {what}: access denied (HTTP {}): the repository is gated or private; set HF_TOKEN",
            status.unwrap_or(401)
        ),
        Some(401) | Some(403) => format!(
            "hf://{repo}: {what}: access denied (HTTP {}) with the given HF_TOKEN",
            status.unwrap_or(403)
        ),
        Some(404) => format!(
            "hf://{repo}@{}: {what}: not found (HTTP 404): no such repository, revision or file",
            r.revision
        ),
        Some(c) => format!("hf://{repo}: {what}: the Hub answered HTTP {c}"),
        None => format!("hf://{repo}: {what}: {e}"),
    };
    RemoteError::Fetch(msg)
}

/// What the listing says about one file.
struct Listed {
    name: String,
    size: Option<u64>,
    /// The LFS object's SHA-256 (files stored with Git LFS).
    lfs_sha256: Option<String>,
}

fn list(
    r: &HfRef,
    api: &hf_hub::api::sync::Api,
    has_token: bool,
) -> Result<(String, Vec<Listed>), RemoteError> {
    let repo = api.repo(at(&r.repo, r.revision.clone()));
    let mut resp = repo
        .info_request()
        .query("blobs", "true")
        .call()
        .map_err(|e| {
            explain(
                r,
                "listing files",
                ApiError::RequestError(Box::new(e)),
                has_token,
            )
        })?;
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| RemoteError::Fetch(format!("hf://{}: listing files: {e}", r.repo)))?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
        RemoteError::Fetch(format!(
            "hf://{}: the file listing is not JSON: {e}",
            r.repo
        ))
    })?;
    let sha = v
        .get("sha")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
        .ok_or_else(|| {
            RemoteError::Fetch(format!(
                "hf://{}: the file listing has no commit (sha)",
                r.repo
            ))
        })?
        .to_string();
    let files = v
        .get("siblings")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|f| {
                    Some(Listed {
                        name: f.get("rfilename")?.as_str()?.to_string(),
                        size: f.get("size").and_then(|s| s.as_u64()),
                        lfs_sha256: f
                            .pointer("/lfs/sha256")
                            .and_then(|s| s.as_str())
                            .filter(|s| {
                                s.len() == 64
                                    && s.bytes()
                                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                            })
                            .map(str::to_string),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((sha, files))
}

fn skipped(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base == ".gitattributes"
        || base
            .rsplit_once('.')
            .is_some_and(|(_, ext)| SKIPPED_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// Download progress: a bar on a terminal, and the stall watchdog always.
struct Bar(Option<indicatif::ProgressBar>, super::watchdog::Watchdog);

impl Progress for Bar {
    fn init(&mut self, size: usize, filename: &str) {
        if let Some(b) = &self.0 {
            b.set_length(size as u64);
            b.set_message(filename.to_string());
        }
        self.1.tick();
    }
    fn update(&mut self, size: usize) {
        if let Some(b) = &self.0 {
            b.inc(size as u64);
        }
        self.1.tick();
    }
    fn finish(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn files_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            Some((rel, e.path().to_path_buf()))
        })
        .collect();
    v.sort();
    v
}

/// The commit a repository's revision names now, with one listing request
/// (for watches).
pub fn head(r: &HfRef) -> Result<String, RemoteError> {
    let cache = cache();
    let tok = token(&cache);
    let has_token = tok.is_some();
    let api = ApiBuilder::from_cache(cache)
        .with_endpoint(endpoint())
        .with_token(tok)
        .with_progress(false)
        .with_retries(0)
        .build()
        .map_err(|e| RemoteError::Fetch(format!("hf://{}: {e}", r.repo)))?;
    let _dog = super::watchdog::Watchdog::start(format!("hf://{}: listing files", r.repo));
    list(r, &api, has_token).map(|(commit, _)| commit)
}

/// A file's path in a URL: every byte outside the unreserved set and `/`
/// percent-encoded.
fn url_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Fetches a repository's files into the cache (or, offline, finds them
/// there); with `in_place`, lists them to be read in place instead (files
/// already in the cache are read there; files the listing gives no size for
/// are downloaded).
pub fn fetch_as(
    r: &HfRef,
    offline: bool,
    progress: bool,
    in_place: bool,
) -> Result<Fetched, RemoteError> {
    let cache = cache();
    let display = |commit: &str, name: &str| {
        format!("hf://{}@{}/{name}", r.repo, &commit[..commit.len().min(12)])
    };
    if offline {
        let refs = cache.path().join(cache_folder(&r.repo));
        let commit = std::fs::read_to_string(refs.join("refs").join(&r.revision))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| r.revision.clone());
        let snap = refs.join("snapshots").join(&commit);
        if !snap.is_dir() {
            return Err(RemoteError::Fetch(format!(
                "hf://{}@{}: not in the cache ({}) and --offline forbids downloading",
                r.repo,
                r.revision,
                cache.path().display()
            )));
        }
        let files = files_in(&snap)
            .into_iter()
            .map(|(rel, p)| (p, display(&commit, &rel)))
            .collect();
        return Ok(Fetched {
            files,
            in_place: Vec::new(),
            root: snap,
            origin: Some(super::Origin::Hf {
                repo: r.repo.clone(),
                revision: r.revision.clone(),
                commit: commit.clone(),
            }),
            note: format!(
                "hf://{}@{} from the cache (offline), commit {commit}",
                r.repo, r.revision
            ),
        });
    }
    let tok = token(&cache);
    let has_token = tok.is_some();
    let api = ApiBuilder::from_cache(cache.clone())
        .with_endpoint(endpoint())
        .with_token(tok)
        .with_progress(false)
        .with_retries(0)
        .build()
        .map_err(|e| RemoteError::Fetch(format!("hf://{}: {e}", r.repo)))?;
    let (commit, listed) = {
        let _dog = super::watchdog::Watchdog::start(format!("hf://{}: listing files", r.repo));
        list(r, &api, has_token)?
    };
    // pinned to the commit the listing returned: a branch that moves during
    // the scan cannot mix two commits
    let pinned = at(&r.repo, commit.clone());
    let repo = api.repo(pinned.clone());
    let cached = cache.repo(pinned.clone());
    let mut files = Vec::new();
    let mut in_place_files = Vec::new();
    let mut downloaded = 0usize;
    let mut from_cache = 0usize;
    let mut skipped_names = Vec::new();
    let auth = token(&cache).map(|t| format!("Bearer {t}"));
    for f in &listed {
        if !safe_name(&f.name) {
            return Err(RemoteError::Fetch(format!(
                "hf://{}: the listing names an unsafe path '{}'",
                r.repo, f.name
            )));
        }
        if skipped(&f.name) {
            skipped_names.push(f.name.clone());
            continue;
        }
        let shown = display(&commit, &f.name);
        if in_place {
            let at = match (cached.get(&f.name), f.size) {
                (Some(p), _) => {
                    from_cache += 1;
                    Located::Local(p)
                }
                (None, Some(size)) => Located::Remote(RemoteFile {
                    display: shown.clone(),
                    url: format!(
                        "{}/{}/resolve/{commit}/{}",
                        endpoint(),
                        r.repo,
                        url_path(&f.name)
                    ),
                    size,
                    auth: auth.clone(),
                    sha256_claim: f.lfs_sha256.clone(),
                    store: None,
                }),
                (None, None) => {
                    downloaded += 1;
                    Located::Local(download_whole(r, &repo, f, progress, has_token)?)
                }
            };
            in_place_files.push(InPlaceFile {
                rel: f.name.clone(),
                display: shown,
                at,
            });
            continue;
        }
        let path = match cached.get(&f.name) {
            Some(p) => p,
            None => {
                downloaded += 1;
                download_whole(r, &repo, f, progress, has_token)?
            }
        };
        files.push((path, shown));
    }
    if in_place {
        let remote = in_place_files
            .iter()
            .filter(|f| matches!(f.at, Located::Remote(_)))
            .count();
        let mut note = format!(
            "hf://{}@{}: commit {commit}, {} file(s): {remote} read in place by range requests, {from_cache} from the cache, {downloaded} downloaded",
            r.repo,
            r.revision,
            in_place_files.len()
        );
        if !skipped_names.is_empty() {
            note.push_str(&format!(
                "; not read (media, git metadata): {}",
                skipped_names.join(", ")
            ));
        }
        return Ok(Fetched {
            files: Vec::new(),
            in_place: in_place_files,
            note,
            root: cache
                .path()
                .join(cache_folder(&r.repo))
                .join("snapshots")
                .join(&commit),
            origin: Some(super::Origin::Hf {
                repo: r.repo.clone(),
                revision: r.revision.clone(),
                commit,
            }),
        });
    }
    // the user's revision now names this commit in the cache (for --offline)
    cache
        .repo(at(&r.repo, r.revision.clone()))
        .create_ref(&commit)
        .map_err(|e| RemoteError::Fetch(format!("hf://{}: cannot write the cache: {e}", r.repo)))?;
    let mut note = format!(
        "hf://{}@{}: commit {commit}, {} file(s), {downloaded} downloaded",
        r.repo,
        r.revision,
        files.len()
    );
    if !skipped_names.is_empty() {
        note.push_str(&format!(
            "; not fetched (media, git metadata): {}",
            skipped_names.join(", ")
        ));
    }
    let root = cache
        .path()
        .join(cache_folder(&r.repo))
        .join("snapshots")
        .join(&commit);
    Ok(Fetched {
        files,
        in_place: Vec::new(),
        note,
        root,
        origin: Some(super::Origin::Hf {
            repo: r.repo.clone(),
            revision: r.revision.clone(),
            commit,
        }),
    })
}

/// Downloads one listed file into the cache (a temporary file renamed into
/// place when complete) and checks its size against the listing.
fn download_whole(
    r: &HfRef,
    repo: &hf_hub::api::sync::ApiRepo,
    f: &Listed,
    progress: bool,
    has_token: bool,
) -> Result<PathBuf, RemoteError> {
    let bar = progress.then(|| {
        indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} {bytes}/{total_bytes} {wide_bar} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    });
    let dog = super::watchdog::Watchdog::start(format!("hf://{}: downloading {}", r.repo, f.name));
    let path = repo
        .download_with_progress(&f.name, Bar(bar, dog))
        .map_err(|e| explain(r, &format!("downloading {}", f.name), e, has_token))?;
    if let Some(want) = f.size {
        let got = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if got != want {
            // an interrupted or altered download: drop it from the cache
            let blob = std::fs::canonicalize(&path).ok();
            let _ = std::fs::remove_file(&path);
            if let Some(b) = blob {
                let _ = std::fs::remove_file(b);
            }
            return Err(RemoteError::Fetch(format!(
                "hf://{}: {}: received {got} of {want} bytes (interrupted download); nothing was cached",
                r.repo, f.name
            )));
        }
    }
    Ok(path)
}

/// The commit history of `repo` from `commit` back, newest first, as the
/// Hub's commits API lists it (`/api/models/ORG/NAME/commits/COMMIT`,
/// following `Link: rel="next"` pages): each `{id, title, date, authors}`.
/// Stops at `since` (not included), after `cap` commits, or at the first
/// commit. The second value says whether the list was cut at `cap`.
pub fn commits(
    repo: &str,
    commit: &str,
    since: Option<&str>,
    cap: usize,
) -> Result<(Vec<serde_json::Value>, bool), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let tok = token(&cache());
    let (t, id) = kind(repo);
    let api = if matches!(t, RepoType::Dataset) {
        "datasets"
    } else {
        "models"
    };
    let mut url = format!("{}/api/{api}/{id}/commits/{commit}", endpoint());
    let mut out = Vec::new();
    for _page in 0..20 {
        let mut req = agent.get(&url);
        if let Some(t) = &tok {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .call()
            .map_err(|e| format!("cannot reach the Hub: {e}"))?;
        let code = resp.status().as_u16();
        if code != 200 {
            return Err(format!(
                "the Hub answered HTTP {code} for the commit history"
            ));
        }
        let next = resp
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| format!("reading the commit history: {e}"))?;
        let list: Vec<serde_json::Value> = serde_json::from_str(&body)
            .map_err(|e| format!("the commit history is not a JSON list: {e}"))?;
        for c in list {
            let id = c.get("id").and_then(|i| i.as_str()).unwrap_or_default();
            if since.is_some_and(|s| s == id) {
                return Ok((out, false));
            }
            if out.len() == cap {
                return Ok((out, true));
            }
            let authors: Vec<serde_json::Value> = c
                .get("authors")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.get("user").and_then(|u| u.as_str()))
                        .map(|u| u.into())
                        .collect()
                })
                .unwrap_or_default();
            out.push(serde_json::json!({
                "id": id,
                "title": c.get("title").and_then(|t| t.as_str()).unwrap_or_default(),
                "date": c.get("date").and_then(|t| t.as_str()).unwrap_or_default(),
                "authors": authors,
            }));
        }
        match next {
            Some(n) => url = n,
            None => break,
        }
    }
    Ok((out, false))
}

/// The Hub users who authored `commit` of `repo` (the first entry of its
/// commit history). `Err` with one line when the Hub does not say.
pub fn commit_authors(repo: &str, commit: &str) -> Result<Vec<String>, String> {
    let (list, _) = commits(repo, commit, None, 1).map_err(|e| format!("commit history: {e}"))?;
    let first = list.first().ok_or("commit history is empty")?;
    if first.get("id").and_then(|i| i.as_str()) != Some(commit) {
        return Err(format!("commit history does not start at commit {commit}"));
    }
    let mut authors: Vec<String> = first
        .get("authors")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    authors.sort();
    authors.dedup();
    if authors.is_empty() {
        return Err("the commit names no Hub user as author".into());
    }
    Ok(authors)
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(h: &str) -> Option<String> {
    h.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let ok = |s: &str, repo: &str, rev: &str| {
            assert_eq!(
                parse(s).unwrap().unwrap(),
                HfRef {
                    repo: repo.into(),
                    revision: rev.into()
                },
                "{s}"
            )
        };
        ok("hf://acme/tiny", "acme/tiny", "main");
        ok("hf://acme/tiny@v1.0", "acme/tiny", "v1.0");
        ok("https://huggingface.co/acme/tiny", "acme/tiny", "main");
        ok(
            "https://huggingface.co/acme/tiny/tree/dev",
            "acme/tiny",
            "dev",
        );
        ok(
            "https://huggingface.co/acme/tiny/tree/refs/pr/1",
            "acme/tiny",
            "refs/pr/1",
        );
        assert!(parse("./model").is_none());
        assert!(parse("hf://acme").unwrap().is_err());
        assert!(parse("hf://../etc@main").unwrap().is_err());
        assert!(parse("hf://acme/tiny@").unwrap().is_err());
        assert!(parse("https://huggingface.co/acme/tiny/blob/main/x")
            .unwrap()
            .is_err());
        assert!(safe_name("sub/model.safetensors"));
        assert!(!safe_name("../x") && !safe_name("/x") && !safe_name("a//b"));
        assert!(skipped("images/logo.PNG") && skipped(".gitattributes"));
        assert!(!skipped("model.safetensors"));
        assert_eq!(
            next_link("<https://h/api/models/a/b/commits/main?p=1>; rel=\"next\"").as_deref(),
            Some("https://h/api/models/a/b/commits/main?p=1")
        );
        assert_eq!(next_link("<https://h/x>; rel=\"prev\""), None);
    }
}
