//! Remote sources against a local server that speaks the Hugging Face Hub's
//! API (the listing endpoint and file resolution, as hf-hub uses them):
//! benign and malicious repositories, re-scans from the cache, gated
//! repositories, missing ones, interrupted downloads and offline mode.
//! No external network.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// name → (files, gated, lie: a file served shorter than announced)
type Repos = BTreeMap<&'static str, (Vec<(&'static str, Vec<u8>)>, bool, Option<&'static str>)>;

fn repos() -> Repos {
    let read = |p: &str| std::fs::read(repo_root().join(p)).unwrap();
    let mut m: Repos = BTreeMap::new();
    let benign = vec![
        ("config.json", br#"{"model_type": "llama"}"#.to_vec()),
        (
            "model.safetensors",
            read("fixtures/zoo/base/model.safetensors"),
        ),
        ("README.md", b"---\nlicense: mit\n---\n# benign\n".to_vec()),
        ("images/logo.png", b"\x89PNG\r\n\x1a\nnot really".to_vec()),
    ];
    m.insert("acme/benign", (benign.clone(), false, None));
    m.insert("acme/gated", (benign.clone(), true, None));
    m.insert(
        "acme/evil",
        (
            vec![
                ("config.json", br#"{"model_type": "llama"}"#.to_vec()),
                (
                    "pytorch_model.bin",
                    read("fixtures/malicious/pytorch/zip_datapkl_os_system.pt"),
                ),
            ],
            false,
            None,
        ),
    );
    m.insert("acme/cut", (benign, false, Some("model.safetensors")));
    // two models of the fixture zoo, for the deep scan
    for (name, dir) in [
        ("acme/zoo-base", "base"),
        ("acme/zoo-tune", "clean-instruct"),
    ] {
        let files = std::fs::read_dir(repo_root().join("fixtures/zoo").join(dir))
            .unwrap()
            .flatten()
            .map(|e| {
                let n: &'static str = Box::leak(
                    e.file_name()
                        .to_string_lossy()
                        .into_owned()
                        .into_boxed_str(),
                );
                (n, std::fs::read(e.path()).unwrap())
            })
            .collect();
        m.insert(name, (files, false, None));
    }
    m
}

struct Hub {
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    fn start() -> Hub {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        let repos = repos();
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                let reply = answer(&repos, &req);
                l2.lock()
                    .unwrap()
                    .push(format!("{} {}", req.method(), req.url()));
                let _ = req.respond(reply);
            }
        });
        Hub { url, log }
    }

    fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
}

fn answer(repos: &Repos, req: &tiny_http::Request) -> tiny_http::Response<Cursor<Vec<u8>>> {
    let status = |code: u16, body: &str| {
        tiny_http::Response::from_string(body.to_string()).with_status_code(code)
    };
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("");
    let auth = req
        .headers()
        .iter()
        .any(|h| h.field.equiv("Authorization") && h.value.as_str() == "Bearer sesame");
    // listing: /api/models/ORG/NAME/revision/REV
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        if parts.len() < 4 || parts[2] != "revision" {
            return status(400, "bad listing request");
        }
        let name = format!("{}/{}", parts[0], parts[1]);
        let Some((files, gated, lie)) = repos.get(name.as_str()) else {
            return status(404, r#"{"error": "Repository not found"}"#);
        };
        if *gated && !auth {
            return status(401, r#"{"error": "Access to this model is restricted"}"#);
        }
        let siblings: Vec<serde_json::Value> = files
            .iter()
            .map(|(f, d)| {
                let size = d.len() + if Some(*f) == *lie { 1000 } else { 0 };
                serde_json::json!({"rfilename": f, "size": size})
            })
            .collect();
        let body = serde_json::json!({"id": name, "sha": COMMIT, "siblings": siblings});
        return tiny_http::Response::from_string(body.to_string())
            .with_header(header("Content-Type", "application/json"));
    }
    // file: /ORG/NAME/resolve/REV/FILE
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() == 5 && parts[2] == "resolve" {
        let name = format!("{}/{}", parts[0], parts[1]);
        let Some((files, gated, lie)) = repos.get(name.as_str()) else {
            return status(404, "Repository not found");
        };
        if *gated && !auth {
            return status(401, "restricted");
        }
        let Some((_, data)) = files.iter().find(|(f, _)| *f == parts[4]) else {
            return status(404, "Entry not found");
        };
        use sha2::Digest;
        let etag: String = sha2::Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let full = data.len() + if Some(parts[4]) == *lie { 1000 } else { 0 };
        let range = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("Range"))
            .map(|h| h.value.as_str().to_string());
        // `bytes=FIRST-LAST` (LAST optional), as hf-hub's probe and
        // Probity's range reads send it
        let (start, last) = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .map(|(a, b)| (a.parse().unwrap_or(0), b.parse().ok()))
            .unwrap_or((0usize, None));
        let end = last.unwrap_or(usize::MAX).min(full.saturating_sub(1));
        let body = data[start.min(data.len())..(end + 1).min(data.len())].to_vec();
        let announced = end + 1 - start.min(end + 1);
        let resp = tiny_http::Response::new(
            tiny_http::StatusCode(if range.is_some() { 206 } else { 200 }),
            vec![
                header("ETag", &format!("\"{etag}\"")),
                header("X-Repo-Commit", COMMIT),
                header("Content-Range", &format!("bytes {start}-{end}/{full}")),
                header("Connection", "close"),
            ],
            Cursor::new(body),
            Some(announced),
            None,
        );
        return resp;
    }
    status(404, "unknown endpoint")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn probity(hub: &str, cache: &Path, token: Option<&str>, args: &[&str]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_probity"));
    c.args(args)
        .env("HF_ENDPOINT", hub)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", cache.join("home"))
        .env_remove("HF_TOKEN");
    if let Some(t) = token {
        c.env("HF_TOKEN", t);
    }
    let o = c.output().unwrap();
    Run {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn hub_benign_malicious_and_cache() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    // benign, downloaded whole: clean, every file scanned under its hf://
    // name, media not fetched
    let r = probity(
        &hub.url,
        cache.path(),
        None,
        &["scan", "--download", "--format", "json", "hf://acme/benign"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let paths: Vec<&str> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "hf://acme/benign@0123456789ab/README.md",
            "hf://acme/benign@0123456789ab/config.json",
            "hf://acme/benign@0123456789ab/model.safetensors",
        ]
    );
    assert!(r.stderr.contains("3 downloaded"), "{}", r.stderr);
    assert!(r.stderr.contains("images/logo.png"), "{}", r.stderr);
    assert_eq!(hub.count("/resolve/"), 6, "probe + download per file");
    // the same model again, in place: one listing, every file read from the
    // cache, nothing requested
    let r = probity(
        &hub.url,
        cache.path(),
        None,
        &["scan", "https://huggingface.co/acme/benign"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("0 read in place by range requests, 3 from the cache, 0 downloaded"),
        "{}",
        r.stderr
    );
    assert_eq!(hub.count("/resolve/"), 6);
    assert_eq!(hub.count("/api/models/acme/benign/revision/main"), 2);
    // offline: no request at all
    let before = hub.log.lock().unwrap().len();
    let r = probity(
        &hub.url,
        cache.path(),
        None,
        &["scan", "--offline", "hf://acme/benign"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains("3 file(s) scanned"), "{}", r.stdout);
    assert_eq!(hub.log.lock().unwrap().len(), before);
    let r = probity(
        &hub.url,
        cache.path(),
        None,
        &["scan", "--offline", "hf://acme/evil"],
    );
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.contains("not in the cache"), "{}", r.stderr);
    // malicious: the pickle is flagged under its remote name
    let r = probity(
        &hub.url,
        cache.path(),
        None,
        &["scan", "--download", "hf://acme/evil@main"],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("hf://acme/evil@0123456789ab/pytorch_model.bin"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("PKL001"), "{}", r.stdout);
    // the cache snapshot itself can be scanned: its files are links into the
    // repository's blobs/, which are followed (and nothing outside it)
    let snap = cache
        .path()
        .join("models--acme--evil/snapshots")
        .join(COMMIT);
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(["scan", "--format", "json"])
        .arg(&snap)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules: Vec<&str> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["findings"].as_array().unwrap().iter())
        .map(|x| x["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"PKL001") && !rules.contains(&"SCN003"),
        "{rules:?}"
    );
}

#[test]
fn hub_errors_are_one_line_and_leave_no_cache_entry() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let one_line = |r: &Run| {
        assert_eq!(r.code, Some(2), "{} {}", r.stdout, r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    };
    let r = probity(&hub.url, cache.path(), None, &["scan", "hf://acme/nothing"]);
    one_line(&r);
    assert!(r.stderr.contains("not found (HTTP 404)"), "{}", r.stderr);
    let r = probity(&hub.url, cache.path(), None, &["scan", "hf://acme/gated"]);
    one_line(&r);
    assert!(r.stderr.contains("set HF_TOKEN"), "{}", r.stderr);
    let r = probity(
        &hub.url,
        cache.path(),
        Some("wrong"),
        &["scan", "hf://acme/gated"],
    );
    one_line(&r);
    assert!(r.stderr.contains("with the given HF_TOKEN"), "{}", r.stderr);
    let r = probity(
        &hub.url,
        cache.path(),
        Some("sesame"),
        &["scan", "hf://acme/gated"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // a download cut short: error, and the file is not in the cache
    let r = probity(
        &hub.url,
        cache.path(),
        None,
        &["scan", "--download", "hf://acme/cut"],
    );
    one_line(&r);
    assert!(r.stderr.contains("model.safetensors"), "{}", r.stderr);
    let snap = cache
        .path()
        .join("models--acme--cut/snapshots")
        .join(COMMIT)
        .join("model.safetensors");
    assert!(
        !snap.exists(),
        "half-written cache entry at {}",
        snap.display()
    );
    let blobs = cache.path().join("models--acme--cut/blobs");
    let complete: Vec<_> = std::fs::read_dir(&blobs)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().contains("part"))
                .filter(|e| e.metadata().map(|m| m.len() > 10_000).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    assert!(complete.is_empty(), "{complete:?}");
    // read in place, the same file is as long as the server says, and its
    // header does not describe its last 1000 bytes
    let r = probity(&hub.url, cache.path(), None, &["scan", "hf://acme/cut"]);
    assert_eq!(r.code, Some(1), "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("SFT001"), "{}", r.stdout);
    assert!(!snap.exists());
    // no server at all
    let r = probity(
        "http://127.0.0.1:9",
        cache.path(),
        None,
        &["scan", "hf://acme/benign"],
    );
    one_line(&r);
    assert!(r.stderr.contains("hf://acme/benign"), "{}", r.stderr);
    // malformed URIs
    let r = probity(&hub.url, cache.path(), None, &["scan", "hf://acme"]);
    one_line(&r);
}

/// `probity deep` takes Hugging Face URIs for both models: they are fetched,
/// pass the static gate from the cache snapshot (links into blobs/), and load
/// in the sandboxed worker, which may read the repository's blobs.
#[cfg(feature = "deep")]
#[test]
fn deep_scan_of_hub_models() {
    let hub = Hub::start();
    let cache = tempfile::tempdir().unwrap();
    let r = probity(
        &hub.url,
        cache.path(),
        None,
        &[
            "deep",
            "hf://acme/zoo-tune",
            "--base",
            "hf://acme/zoo-base@main",
            "--format",
            "json",
            "--no-trigger-search",
            "--max-new-tokens",
            "8",
        ],
    );
    assert!(
        matches!(r.code, Some(0) | Some(1)),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(j["verdict"].is_string(), "{j}");
    assert!(
        j["suspect"]["path"]
            .as_str()
            .unwrap_or("")
            .contains("models--acme--zoo-tune/snapshots"),
        "{}",
        j["suspect"]
    );
    assert!(
        r.stderr.contains("hf://acme/zoo-base@main: commit"),
        "{}",
        r.stderr
    );
}

/// MLflow failure modes a real server does not produce on demand, against a
/// mock of the two REST endpoints and the artifact proxy: a registry that
/// wants credentials, and an artifact download cut short.
#[test]
fn mlflow_denied_and_interrupted() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let u = req.url().to_string();
            let authed = req
                .headers()
                .iter()
                .any(|h| h.field.equiv("Authorization") && h.value.as_str() == "Bearer tok");
            let json = |s: &str| {
                tiny_http::Response::from_string(s.to_string())
                    .with_header(header("Content-Type", "application/json"))
            };
            let reply = if u.contains("model-versions/get?name=secret") && !authed {
                json(r#"{"error_code": "UNAUTHENTICATED", "message": "no"}"#).with_status_code(401)
            } else if u.contains("model-versions/get") {
                json(r#"{"model_version": {"source": "mlflow-artifacts:/0/r1/artifacts/model"}}"#)
            } else if u.starts_with("/api/2.0/mlflow-artifacts/artifacts?") {
                json(
                    r#"{"files": [{"path": "model.safetensors", "is_dir": false, "file_size": 5000}]}"#,
                )
            } else if u.starts_with("/api/2.0/mlflow-artifacts/artifacts/0/r1/artifacts/model/") {
                // 5000 bytes announced, 2000 sent, then the connection closes
                tiny_http::Response::new(
                    tiny_http::StatusCode(200),
                    vec![header("Connection", "close")],
                    Cursor::new(vec![7u8; 2000]),
                    Some(5000),
                    None,
                )
            } else {
                json(r#"{"error_code": "RESOURCE_DOES_NOT_EXIST"}"#).with_status_code(404)
            };
            let _ = req.respond(reply);
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let run = |uri: &str, token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_probity"));
        c.args(["scan", uri])
            .env("PROBITY_STALL_SECS", "2")
            .env("MLFLOW_TRACKING_URI", &url)
            .env("PROBITY_CACHE_DIR", cache.path())
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .env_remove("MLFLOW_TRACKING_USERNAME");
        if let Some(t) = token {
            c.env("MLFLOW_TRACKING_TOKEN", t);
        }
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run("models:/secret/1", None);
    assert_eq!(code, Some(2));
    assert!(err.contains("MLFLOW_TRACKING_TOKEN"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, err) = run("models:/secret/1", Some("wrong"));
    assert_eq!(code, Some(2));
    assert!(err.contains("with the given credentials"), "{err}");
    // the server stops sending and keeps the connection open: the stall
    // watchdog ends the scan
    let (code, err) = run("models:/secret/1", Some("tok"));
    assert_eq!(code, Some(2), "the download stalls: {err}");
    assert!(err.contains("stalled download"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // nothing complete was left in the cache
    let left: Vec<_> = walkdir::WalkDir::new(cache.path())
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
