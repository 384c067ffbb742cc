//! MLflow: `models:/NAME/VERSION`, `models:/NAME@ALIAS` and
//! `runs:/RUN_ID/PATH`, resolved against the tracking server named by
//! `MLFLOW_TRACKING_URI` through its REST API, with artifacts downloaded
//! through the server's artifact proxy (`mlflow-artifacts:` URIs, the default
//! of `mlflow server`) or read in place for `file:` artifact stores.
//!
//! Auth: `MLFLOW_TRACKING_TOKEN` (bearer), or `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (basic).
//!
//! Downloads land in Probity's cache (`PROBITY_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/probity`, else `~/.cache/probity`) under a folder named
//! by the SHA-256 of the tracking URI and artifact path; a registered model
//! version's artifacts do not change, so a file already cached with the size
//! the server lists is not downloaded again. Each file is written to a
//! temporary name and renamed when complete and of the listed size.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use sha2::Digest;

use super::range::{InPlaceFile, Located, RemoteFile};
use super::{safe_relative as safe_rel, Fetched, RemoteError};

/// What an MLflow URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlflowRef {
    Version { name: String, version: String },
    Alias { name: String, alias: String },
    Run { run_id: String, path: String },
}

impl MlflowRef {
    fn uri(&self) -> String {
        match self {
            MlflowRef::Version { name, version } => format!("models:/{name}/{version}"),
            MlflowRef::Alias { name, alias } => format!("models:/{name}@{alias}"),
            MlflowRef::Run { run_id, path } if path.is_empty() => format!("runs:/{run_id}"),
            MlflowRef::Run { run_id, path } => format!("runs:/{run_id}/{path}"),
        }
    }
}

/// Most artifact files fetched for one URI.
const MAX_FILES: usize = 100_000;
/// Deepest artifact folder listed.
const MAX_DEPTH: usize = 32;

/// Parses `models:/…` and `runs:/…`; `None` when `s` is neither.
pub fn parse(s: &str) -> Option<Result<MlflowRef, RemoteError>> {
    let bad = |why: &str| Some(Err(RemoteError::Usage(format!("{s}: {why}"))));
    if let Some(rest) = s.strip_prefix("models:/") {
        let rest = rest.trim_start_matches('/');
        if let Some((name, alias)) = rest.split_once('@') {
            if name.is_empty() || alias.is_empty() || alias.contains('/') {
                return bad("expected models:/NAME@ALIAS");
            }
            return Some(Ok(MlflowRef::Alias {
                name: name.into(),
                alias: alias.into(),
            }));
        }
        let Some((name, version)) = rest.rsplit_once('/') else {
            return bad("expected models:/NAME/VERSION or models:/NAME@ALIAS");
        };
        if name.is_empty() || version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) {
            return bad("expected models:/NAME/VERSION with a version number (stages are deprecated in MLflow; use an alias: models:/NAME@ALIAS)");
        }
        return Some(Ok(MlflowRef::Version {
            name: name.into(),
            version: version.into(),
        }));
    }
    if let Some(rest) = s.strip_prefix("runs:/") {
        let rest = rest.trim_start_matches('/');
        let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
        if run_id.is_empty()
            || !run_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return bad("expected runs:/RUN_ID/PATH");
        }
        if path.split('/').any(|c| c == "..") {
            return bad("the artifact path may not contain '..'");
        }
        return Some(Ok(MlflowRef::Run {
            run_id: run_id.into(),
            path: path.trim_matches('/').into(),
        }));
    }
    None
}

fn encode(seg: &str) -> String {
    let mut out = String::new();
    for b in seg.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn encode_path(p: &str) -> String {
    p.split('/').map(encode).collect::<Vec<_>>().join("/")
}

struct Client {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
    what: String,
}

impl Client {
    fn from_env(what: &str) -> Result<Client, RemoteError> {
        let base = std::env::var("MLFLOW_TRACKING_URI").map_err(|_| {
            RemoteError::Usage(format!(
                "{what}: set MLFLOW_TRACKING_URI to the tracking server (http://host:port)"
            ))
        })?;
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RemoteError::Usage(format!(
                "{what}: MLFLOW_TRACKING_URI={base} is not an http(s) tracking server; Probity reads MLflow through its REST API"
            )));
        }
        let auth = match (
            std::env::var("MLFLOW_TRACKING_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            std::env::var("MLFLOW_TRACKING_USERNAME").ok(),
            std::env::var("MLFLOW_TRACKING_PASSWORD").ok(),
        ) {
            (Some(t), _, _) => Some(format!("Bearer {t}")),
            (None, Some(u), Some(p)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            _ => None,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .build()
            .into();
        Ok(Client {
            base,
            agent,
            auth,
            what: what.to_string(),
        })
    }

    fn fail(&self, why: impl std::fmt::Display) -> RemoteError {
        RemoteError::Fetch(format!("{}: {why}", self.what))
    }

    fn get(&self, path_and_query: &str) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        let url = format!("{}{path_and_query}", self.base);
        let mut req = self.agent.get(&url);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let resp = req
            .call()
            .map_err(|e| self.fail(format!("cannot reach MLflow at {}: {e}", self.base)))?;
        let code = resp.status().as_u16();
        match code {
            200..=299 => Ok(resp),
            401 | 403 if self.auth.is_none() => Err(self.fail(format!(
                "access denied (HTTP {code}); set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            ))),
            401 | 403 => Err(self.fail(format!(
                "access denied (HTTP {code}) with the given credentials"
            ))),
            404 => Err(self.fail("not found (HTTP 404)")),
            _ => {
                let mut resp = resp;
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(4096)
                    .read_to_string()
                    .unwrap_or_default();
                let msg = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| {
                        let code = v.get("error_code")?.as_str()?.to_string();
                        let m = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
                        Some(format!("{code}: {m}"))
                    })
                    .unwrap_or_else(|| format!("HTTP {code}"));
                if msg.starts_with("RESOURCE_DOES_NOT_EXIST") || msg.starts_with("NOT_FOUND") {
                    Err(self.fail(format!("not found ({msg})")))
                } else {
                    Err(self.fail(format!("the tracking server answered {msg}")))
                }
            }
        }
    }

    fn json(&self, path_and_query: &str) -> Result<serde_json::Value, RemoteError> {
        let _dog = super::watchdog::Watchdog::start(format!("{}: {path_and_query}", self.what));
        let mut resp = self.get(path_and_query)?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| self.fail(format!("reading the server's answer: {e}")))?;
        serde_json::from_str(&body)
            .map_err(|e| self.fail(format!("the server's answer is not JSON: {e}")))
    }

    fn run_artifacts(&self, run_id: &str) -> Result<String, RemoteError> {
        let v = self.json(&format!(
            "/api/2.0/mlflow/runs/get?run_id={}",
            encode(run_id)
        ))?;
        v.pointer("/run/info/artifact_uri")
            .and_then(|u| u.as_str())
            .map(str::to_string)
            .ok_or_else(|| self.fail(format!("run {run_id} has no artifact URI")))
    }

    /// The artifact URI a model version's `source` points to.
    fn source_to_uri(&self, source: &str, depth: usize) -> Result<String, RemoteError> {
        if depth > 4 {
            return Err(self.fail("model source references loop"));
        }
        if let Some(rest) = source.strip_prefix("runs:/") {
            let (run, path) = rest
                .trim_start_matches('/')
                .split_once('/')
                .unwrap_or((rest, ""));
            let base = self.run_artifacts(run)?;
            return Ok(join(&base, path));
        }
        if let Some(id) = source.strip_prefix("models:/m-") {
            // MLflow 3 logged model
            let v = self.json(&format!(
                "/api/2.0/mlflow/logged-models/{}",
                encode(&format!("m-{id}"))
            ))?;
            let uri = v
                .pointer("/model/info/artifact_uri")
                .and_then(|u| u.as_str())
                .ok_or_else(|| self.fail(format!("logged model m-{id} has no artifact URI")))?;
            return self.source_to_uri(uri, depth + 1);
        }
        Ok(source.to_string())
    }
}

fn join(base: &str, path: &str) -> String {
    if path.is_empty() {
        base.to_string()
    } else if base.is_empty() {
        path.trim_start_matches('/').to_string()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

/// The proxied artifact path of an `mlflow-artifacts:` URI
/// (`mlflow-artifacts:/1/abc/artifacts` or `mlflow-artifacts://host:port/1/abc/artifacts`).
fn proxied_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path
            .split_once('/')
            .map(|(_, p)| p)
            .unwrap_or(""),
        None => rest,
    };
    Some(rest.trim_matches('/').to_string())
}

/// Probity's cache folder: `PROBITY_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/probity`, else `~/.cache/probity`.
pub(super) fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("PROBITY_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(p).join("probity");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/probity"))
        .unwrap_or_else(|| std::env::temp_dir().join("probity-cache"))
}

/// Lists the files under a proxied artifact folder: (path relative to it, size).
fn list(c: &Client, root: &str) -> Result<Vec<(String, Option<u64>)>, RemoteError> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), 0usize)];
    while let Some((rel, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(c.fail(format!("artifact folders nested deeper than {MAX_DEPTH}")));
        }
        let full = join(root, &rel);
        let v = c.json(&format!(
            "/api/2.0/mlflow-artifacts/artifacts?path={}",
            encode(&full)
        ))?;
        let files = v
            .get("files")
            .and_then(|f| f.as_array())
            .cloned()
            .unwrap_or_default();
        if files.is_empty() && rel.is_empty() {
            // a single file, or nothing
            continue;
        }
        for f in files {
            let Some(p) = f.get("path").and_then(|p| p.as_str()) else {
                continue;
            };
            // servers answer with the name relative to the listed folder
            let name = p.rsplit('/').next().unwrap_or(p);
            let child = join(&rel, name);
            if !safe_rel(&child) {
                return Err(c.fail(format!("the server lists an unsafe artifact path '{p}'")));
            }
            if f.get("is_dir").and_then(|d| d.as_bool()).unwrap_or(false) {
                stack.push((child, depth + 1));
            } else {
                let size = f
                    .get("file_size")
                    .and_then(|s| s.as_u64().or_else(|| s.as_str()?.parse().ok()));
                out.push((child, size));
                if out.len() > MAX_FILES {
                    return Err(c.fail(format!("more than {MAX_FILES} artifact files")));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn download(
    c: &Client,
    url_path: &str,
    dest: &Path,
    want: Option<u64>,
    progress: bool,
) -> Result<(), RemoteError> {
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(want.unwrap_or(0)).with_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} {bytes}/{total_bytes} {wide_bar} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(
            dest.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        b
    });
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| c.fail(format!("cannot write the cache: {e}")))?;
    }
    let tmp = dest.with_extension("probity-part");
    let dog = super::watchdog::Watchdog::start(format!("{}: {url_path}", c.what));
    dog.cleanup(tmp.clone());
    let res = (|| -> Result<u64, RemoteError> {
        let mut resp = c.get(url_path)?;
        let mut f = std::fs::File::create(&tmp)
            .map_err(|e| c.fail(format!("cannot write the cache: {e}")))?;
        let mut r = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = r
                .read(&mut buf)
                .map_err(|e| c.fail(format!("download interrupted: {e}")))?;
            if k == 0 {
                break;
            }
            f.write_all(&buf[..k])
                .map_err(|e| c.fail(format!("cannot write the cache: {e}")))?;
            n += k as u64;
            dog.tick();
            if let Some(b) = &bar {
                b.set_position(n);
            }
        }
        f.sync_all().ok();
        Ok(n)
    })();
    drop(dog);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match res {
        Ok(n) if want.is_none_or(|w| w == n) => {
            std::fs::rename(&tmp, dest).map_err(|e| c.fail(format!("cannot write the cache: {e}")))
        }
        Ok(n) => {
            let _ = std::fs::remove_file(&tmp);
            Err(c.fail(format!(
                "{}: received {n} of {} bytes (interrupted download); nothing was cached",
                dest.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                want.unwrap_or(0)
            )))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// What a watched MLflow source names now, with one request: the version
/// and the URI to scan. `models:/NAME` is the newest version (scanned as
/// `models:/NAME/VERSION`); `models:/NAME@ALIAS` the aliased version (also
/// scanned as `models:/NAME/VERSION`, the version polled).
pub fn head(source: &str) -> Result<(String, String), RemoteError> {
    if let Some(name) = source.strip_prefix("models:/") {
        let name = name.trim_start_matches('/');
        if !name.is_empty() && !name.contains(['/', '@']) {
            let c = Client::from_env(source)?;
            let v = c.json(&format!(
                "/api/2.0/mlflow/registered-models/get?name={}",
                encode(name)
            ))?;
            let newest = v
                .pointer("/registered_model/latest_versions")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
                .filter_map(|x| x.get("version")?.as_str()?.parse::<u64>().ok())
                .max()
                .ok_or_else(|| c.fail("the registered model has no version"))?;
            return Ok((newest.to_string(), format!("models:/{name}/{newest}")));
        }
    }
    match parse(source) {
        Some(Ok(MlflowRef::Alias { name, alias })) => {
            let c = Client::from_env(source)?;
            let v = c.json(&format!(
                "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
                encode(&name),
                encode(&alias)
            ))?;
            let version = v
                .pointer("/model_version/version")
                .and_then(|s| s.as_str())
                .ok_or_else(|| c.fail("the alias names no version"))?
                .to_string();
            // the version polled, exactly
            Ok((version.clone(), format!("models:/{name}/{version}")))
        }
        Some(Err(e)) => Err(e),
        _ => Err(RemoteError::Usage(format!(
            "{source}: a watch follows models:/NAME (its newest version) or models:/NAME@ALIAS"
        ))),
    }
}

/// Resolves and fetches the artifacts an MLflow URI names.
/// With `in_place`, artifacts behind the proxy are listed to be read in
/// place by range requests instead (those already cached, or listed without
/// a size, are read from the cache).
pub fn fetch_as(
    r: &MlflowRef,
    offline: bool,
    progress: bool,
    in_place: bool,
) -> Result<Fetched, RemoteError> {
    let what = r.uri();
    let c = Client::from_env(&what)?;
    // what the last fetch of this URI from this server found, for --offline
    let index = cache_root().join("mlflow").join("index").join(
        sha2::Sha256::digest(format!("{}\n{what}", c.base).as_bytes())
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    );
    if offline {
        let rec: serde_json::Value = std::fs::read_to_string(&index)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| {
                c.fail("not in the cache and --offline forbids asking the tracking server")
            })?;
        let root = PathBuf::from(rec["root"].as_str().unwrap_or_default());
        let mut files = Vec::new();
        for f in rec["files"].as_array().into_iter().flatten() {
            let rel = f.as_str().unwrap_or_default();
            let p = root.join(rel);
            if !safe_rel(rel) || !p.is_file() {
                return Err(c.fail(format!(
                    "cached file '{rel}' is missing; fetch again without --offline"
                )));
            }
            files.push((p, format!("{what}/{rel}")));
        }
        return Ok(Fetched {
            note: format!(
                "{what}: {} file(s) from the cache (offline; as resolved by the last online fetch)",
                files.len()
            ),
            files,
            in_place: Vec::new(),
            root,
            origin: Some(super::Origin::Mlflow {
                key: ledger_key(r),
                revision: None,
                details: {
                    let mut d = named_in(r);
                    d.insert("status".into(), "not fetched".into());
                    d.insert(
                        "reason".into(),
                        "--offline: the tracking server was not asked".into(),
                    );
                    serde_json::Value::Object(d)
                },
            }),
        });
    }
    let mut version_json = None;
    let artifact_uri = match r {
        MlflowRef::Run { run_id, path } => join(&c.run_artifacts(run_id)?, path),
        MlflowRef::Version { name, version } => {
            let v = c.json(&format!(
                "/api/2.0/mlflow/model-versions/get?name={}&version={}",
                encode(name),
                encode(version)
            ))?;
            let source = v
                .pointer("/model_version/source")
                .and_then(|s| s.as_str())
                .ok_or_else(|| c.fail("the model version has no source"))?
                .to_string();
            version_json = v.get("model_version").cloned();
            c.source_to_uri(&source, 0)?
        }
        MlflowRef::Alias { name, alias } => {
            let v = c.json(&format!(
                "/api/2.0/mlflow/registered-models/alias?name={}&alias={}",
                encode(name),
                encode(alias)
            ))?;
            let source = v
                .pointer("/model_version/source")
                .and_then(|s| s.as_str())
                .ok_or_else(|| c.fail("the aliased version has no source"))?
                .to_string();
            version_json = v.get("model_version").cloned();
            c.source_to_uri(&source, 0)?
        }
    };
    let origin = Some(origin_of(&c, r, version_json.as_ref()));
    if let Some(local) = artifact_uri.strip_prefix("file://").or_else(|| {
        artifact_uri
            .starts_with('/')
            .then_some(artifact_uri.as_str())
    }) {
        // a file: artifact store on this machine: read in place
        let root = PathBuf::from(local);
        // a scan the service runs may read local stores only inside the
        // service's allowed roots: a registered model version must not
        // become a way to read the server's files
        if let Some(roots) = std::env::var_os("PROBITY_SERVICE_ROOTS") {
            let real = root.canonicalize().ok();
            let inside = real.as_ref().is_some_and(|r| {
                std::env::split_paths(&roots).any(|a| !a.as_os_str().is_empty() && r.starts_with(a))
            });
            if !inside {
                return Err(c.fail(format!(
                    "artifacts are stored at {local}, outside the service's allowed roots; the service reads file: stores only under --allow-root"
                )));
            }
        }
        if !root.exists() {
            return Err(c.fail(format!(
                "artifacts are stored at {local}, which is not on this machine; run the server with artifact proxying (mlflow server --serve-artifacts)"
            )));
        }
        let files = if root.is_file() {
            vec![(root.clone(), what.clone())]
        } else {
            walkdir::WalkDir::new(&root)
                .sort_by_file_name()
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .filter_map(|e| {
                    let rel = e
                        .path()
                        .strip_prefix(&root)
                        .ok()?
                        .to_string_lossy()
                        .into_owned();
                    Some((e.path().to_path_buf(), format!("{what}/{rel}")))
                })
                .collect()
        };
        return Ok(Fetched {
            note: format!("{what}: {} file(s) read in place from {local}", files.len()),
            root: root.clone(),
            files,
            in_place: Vec::new(),
            origin,
        });
    }
    let Some(rel_root) = proxied_path(&artifact_uri) else {
        return Err(c.fail(format!(
            "artifacts live at {artifact_uri}; Probity downloads through the tracking server's artifact proxy (mlflow-artifacts:) or reads file: stores; download them with the MLflow client and scan the folder"
        )));
    };
    let key: String = sha2::Sha256::digest(format!("{}\n{rel_root}", c.base).as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let root = cache_root().join("mlflow").join(key);
    let mut listed = list(&c, &rel_root)?;
    let single = listed.is_empty();
    if single {
        // the URI names one file
        let name = rel_root
            .rsplit('/')
            .next()
            .unwrap_or("artifact")
            .to_string();
        listed.push((name, None));
    }
    let mut files = Vec::new();
    let mut in_place_files = Vec::new();
    let mut downloaded = 0;
    for (rel, size) in &listed {
        let dest = root.join(rel);
        let cached = std::fs::metadata(&dest)
            .map(|m| m.is_file() && size.is_some_and(|s| s == m.len()))
            .unwrap_or(false);
        let remote = if single {
            rel_root.clone()
        } else {
            join(&rel_root, rel)
        };
        let url_path = format!(
            "/api/2.0/mlflow-artifacts/artifacts/{}",
            encode_path(&remote)
        );
        let shown = format!("{what}/{rel}");
        if in_place {
            let at = match (cached, size) {
                (true, _) => Located::Local(dest),
                (false, Some(size)) => Located::Remote(RemoteFile {
                    display: shown.clone(),
                    url: format!("{}{url_path}", c.base),
                    size: *size,
                    auth: c.auth.clone(),
                    sha256_claim: None,
                    store: None,
                }),
                (false, None) => {
                    download(&c, &url_path, &dest, *size, progress)?;
                    downloaded += 1;
                    Located::Local(dest)
                }
            };
            in_place_files.push(InPlaceFile {
                rel: rel.clone(),
                display: shown,
                at,
            });
            continue;
        }
        if !cached {
            download(&c, &url_path, &dest, *size, progress)?;
            downloaded += 1;
        }
        files.push((dest, shown));
    }
    if in_place {
        let remote = in_place_files
            .iter()
            .filter(|f| matches!(f.at, Located::Remote(_)))
            .count();
        return Ok(Fetched {
            note: format!(
                "{what}: {artifact_uri}, {} file(s): {remote} read in place by range requests, {} from the cache, {downloaded} downloaded",
                in_place_files.len(),
                in_place_files.len() - remote - downloaded
            ),
            files: Vec::new(),
            in_place: in_place_files,
            root,
            origin,
        });
    }
    let rec = serde_json::json!({
        "root": root.display().to_string(),
        "files": listed.iter().map(|(rel, _)| rel.clone()).collect::<Vec<_>>(),
    });
    if let Some(parent) = index.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let tmp = index.with_extension("tmp");
    if std::fs::write(&tmp, rec.to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, &index);
    }
    Ok(Fetched {
        note: format!(
            "{what}: {artifact_uri}, {} file(s), {downloaded} downloaded",
            files.len()
        ),
        files,
        in_place: Vec::new(),
        root,
        origin,
    })
}

/// The name the ledger groups versions of this model under.
pub fn ledger_key(r: &MlflowRef) -> String {
    match r {
        MlflowRef::Version { name, .. } | MlflowRef::Alias { name, .. } => {
            format!("models:/{name}")
        }
        MlflowRef::Run { .. } => r.uri(),
    }
}

/// What the URI itself names: the registered model, and the alias or
/// version asked for.
fn named_in(r: &MlflowRef) -> serde_json::Map<String, serde_json::Value> {
    let mut d = serde_json::Map::new();
    match r {
        MlflowRef::Version { name, version } => {
            d.insert("name".into(), name.clone().into());
            d.insert("version".into(), version.clone().into());
        }
        MlflowRef::Alias { name, alias } => {
            d.insert("name".into(), name.clone().into());
            d.insert("alias".into(), alias.clone().into());
        }
        MlflowRef::Run { .. } => {}
    }
    d
}

/// What the tracking server says about who made this model version (or
/// run) and when: the version's creator and creation time, its source run
/// and that run's user. A failed lookup of the run is recorded, not fatal.
fn origin_of(c: &Client, r: &MlflowRef, version: Option<&serde_json::Value>) -> super::Origin {
    let s = |v: Option<&serde_json::Value>, k: &str| -> Option<String> {
        v?.get(k).and_then(|x| {
            x.as_str()
                .map(str::to_string)
                .or_else(|| x.as_i64().map(|n| n.to_string()))
        })
    };
    let mut d = named_in(r);
    d.insert("status".into(), "fetched".into());
    let mut revision = None;
    let mut run_id = match r {
        MlflowRef::Run { run_id, .. } => Some(run_id.clone()),
        _ => None,
    };
    if let Some(v) = version {
        for k in ["name", "version", "user_id", "source", "run_id"] {
            if let Some(x) = s(Some(v), k).filter(|x| !x.is_empty()) {
                d.insert(k.into(), x.into());
            }
        }
        if let Some(ms) = s(Some(v), "creation_timestamp").and_then(|t| t.parse::<i64>().ok()) {
            d.insert(
                "created".into(),
                probity_provenance::ledger::rfc3339_secs(ms.div_euclid(1000)).into(),
            );
        }
        revision = s(Some(v), "version").map(|n| format!("version {n}"));
        run_id = s(Some(v), "run_id").filter(|x| !x.is_empty());
    }
    if let MlflowRef::Run { run_id, .. } = r {
        revision = Some(format!("run {run_id}"));
    }
    if let Some(id) = run_id {
        match c.json(&format!("/api/2.0/mlflow/runs/get?run_id={}", encode(&id))) {
            Ok(run) => {
                d.insert("run_id".into(), id.into());
                if let Some(u) = s(run.pointer("/run/info"), "user_id").filter(|x| !x.is_empty()) {
                    d.insert("run_user_id".into(), u.into());
                }
                if let Some(ms) =
                    s(run.pointer("/run/info"), "start_time").and_then(|t| t.parse::<i64>().ok())
                {
                    d.insert(
                        "run_started".into(),
                        probity_provenance::ledger::rfc3339_secs(ms.div_euclid(1000)).into(),
                    );
                }
            }
            Err(e) => {
                d.insert("run_id".into(), id.into());
                d.insert("run_error".into(), e.to_string().into());
            }
        }
    }
    super::Origin::Mlflow {
        key: ledger_key(r),
        revision,
        details: serde_json::Value::Object(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let p = |s: &str| parse(s).unwrap().unwrap();
        assert_eq!(
            p("models:/fraud/3"),
            MlflowRef::Version {
                name: "fraud".into(),
                version: "3".into()
            }
        );
        assert_eq!(
            p("models:/fraud@champion"),
            MlflowRef::Alias {
                name: "fraud".into(),
                alias: "champion".into()
            }
        );
        assert_eq!(
            p("runs:/abc123/model/data"),
            MlflowRef::Run {
                run_id: "abc123".into(),
                path: "model/data".into()
            }
        );
        assert!(parse("models:/fraud/Production").unwrap().is_err());
        assert!(parse("runs:/abc/../x").unwrap().is_err());
        assert!(parse("./x").is_none());
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://h:5000/1/abc/artifacts/").unwrap(),
            "1/abc/artifacts"
        );
        assert_eq!(encode_path("a b/c%d"), "a%20b/c%25d");
    }
}
