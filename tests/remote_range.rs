//! Remote files read in place by HTTP range requests, against a loopback
//! server that speaks the Hugging Face Hub's listing and file endpoints from
//! folders on disk, honours `Range` (or, in one mode, ignores it) and counts
//! the bytes it sends.
//!
//! Every fixture served remotely gets the findings a local scan gets; a
//! repository of multi-GB checkpoints (sparse files: a safetensors file, a
//! PyTorch zip, a GGUF file, beside a malicious `training_args.bin`) is
//! scanned transferring under 1% of its size; a server without range
//! support still works; digests come from the listing or, verified, from the
//! bytes.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

mod common;
use common::{files_by_rel, verdict};

const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A repository: its folder on disk and the LFS digests its listing claims.
struct Repo {
    dir: PathBuf,
    lfs: BTreeMap<String, String>,
}

struct DiskHub {
    url: String,
    sent: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
}

fn files_of(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = walk(dir)
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::metadata(&p).unwrap().len())
        })
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(walk(&e.path()));
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    out
}

impl DiskHub {
    /// Serves `repos` (name → repository); with `ranges` false, every file
    /// request is answered with the whole file (HTTP 200).
    fn start(repos: BTreeMap<&'static str, Repo>, ranges: bool) -> DiskHub {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let repos = Arc::new(repos);
        let ranges = Arc::new(AtomicBool::new(ranges));
        let (s2, r2) = (sent.clone(), requests.clone());
        std::thread::spawn(move || {
            for req in server.incoming_requests() {
                let (repos, sent, requests, ranges) =
                    (repos.clone(), s2.clone(), r2.clone(), ranges.clone());
                std::thread::spawn(move || {
                    answer(
                        req,
                        &repos,
                        &sent,
                        &requests,
                        ranges.load(Ordering::Relaxed),
                    )
                });
            }
        });
        DiskHub {
            url,
            sent,
            requests,
        }
    }

    fn reset(&self) {
        self.sent.store(0, Ordering::SeqCst);
        self.requests.store(0, Ordering::SeqCst);
    }
}

fn answer(
    req: tiny_http::Request,
    repos: &BTreeMap<&'static str, Repo>,
    sent: &AtomicU64,
    requests: &AtomicU64,
    ranges: bool,
) {
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let not_found = |req: tiny_http::Request| {
        let _ = req.respond(tiny_http::Response::from_string("not found").with_status_code(404));
    };
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        let Some(repo) = repos.get(format!("{}/{}", parts[0], parts[1]).as_str()) else {
            return not_found(req);
        };
        let siblings: Vec<serde_json::Value> = files_of(&repo.dir)
            .into_iter()
            .map(|(f, size)| {
                let mut s = serde_json::json!({"rfilename": f, "size": size});
                if let Some(h) = repo.lfs.get(&f) {
                    s["lfs"] = serde_json::json!({"sha256": h, "size": size, "pointerSize": 134});
                }
                s
            })
            .collect();
        let body = serde_json::json!({"sha": COMMIT, "siblings": siblings});
        let _ = req.respond(
            tiny_http::Response::from_string(body.to_string())
                .with_header(header("Content-Type", "application/json")),
        );
        return;
    }
    // /ORG/NAME/resolve/COMMIT/FILE
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() != 5 || parts[2] != "resolve" {
        return not_found(req);
    }
    let Some(repo) = repos.get(format!("{}/{}", parts[0], parts[1]).as_str()) else {
        return not_found(req);
    };
    let rel = percent_decode(parts[4]);
    let file = repo.dir.join(&rel);
    if rel.split('/').any(|c| c == "..") || !file.is_file() {
        return not_found(req);
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let full = std::fs::metadata(&file).unwrap().len();
    let range = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.as_str().to_string())
        .filter(|_| ranges);
    let (start, end) = match range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
    {
        Some((a, b)) => {
            let a: u64 = a.parse().unwrap();
            let b: u64 = b.parse().unwrap_or(full - 1).min(full - 1);
            (a, b)
        }
        None => (0, full.saturating_sub(1)),
    };
    let len = (end + 1).saturating_sub(start);
    let mut f = std::fs::File::open(&file).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    sent.fetch_add(len, Ordering::SeqCst);
    let etag = format!(
        "\"{}\"",
        repo.lfs
            .get(&rel)
            .cloned()
            .unwrap_or_else(|| "e".repeat(40))
    );
    let mut headers = vec![
        header("ETag", &etag),
        header("X-Repo-Commit", COMMIT),
        header("Accept-Ranges", if ranges { "bytes" } else { "none" }),
    ];
    if range.is_some() {
        headers.push(header(
            "Content-Range",
            &format!("bytes {start}-{end}/{full}"),
        ));
    }
    let _ = req.respond(tiny_http::Response::new(
        tiny_http::StatusCode(if range.is_some() { 206 } else { 200 }),
        headers,
        f.take(len),
        Some(len as usize),
        None,
    ));
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn probity(hub: &str, cache: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(args)
        .env("HF_ENDPOINT", hub)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", cache.join("home"))
        .env_remove("HF_TOKEN")
        .env_remove("PROBITY_LEDGER")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn every_fixture_read_in_place_gets_the_local_findings() {
    let dir = repo_root().join("fixtures");
    let mut repos = BTreeMap::new();
    repos.insert(
        "acme/fixtures",
        Repo {
            dir: dir.clone(),
            lfs: BTreeMap::new(),
        },
    );
    let hub = DiskHub::start(repos, true);
    let cache = tempfile::tempdir().unwrap();
    let (code, local, err) = probity(
        &hub.url,
        cache.path(),
        &["scan", "--format", "json", dir.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{err}");
    let local = files_by_rel(&local, dir.to_str().unwrap());
    let (code, remote, err) = probity(
        &hub.url,
        cache.path(),
        &["scan", "--format", "json", "hf://acme/fixtures"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("read in place by range requests"), "{err}");
    let remote = files_by_rel(&remote, &format!("hf://acme/fixtures@{}", &COMMIT[..12]));
    // .gitattributes is git metadata, not fetched
    let expected: Vec<&String> = local.keys().filter(|k| *k != ".gitattributes").collect();
    assert_eq!(remote.keys().collect::<Vec<_>>(), expected);
    let mut differ = Vec::new();
    for (rel, r) in &remote {
        if verdict(r) != verdict(&local[rel]) {
            differ.push(format!(
                "{rel}:\n  local  {}\n  remote {}",
                verdict(&local[rel]),
                verdict(r)
            ));
        }
        assert!(
            r["transfer"]["requests"].as_u64().unwrap() >= 1,
            "{rel}: {r}"
        );
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // nothing partial in the cache: no snapshot was made
    assert!(!cache
        .path()
        .join("models--acme--fixtures/snapshots")
        .exists());

    // a server that ignores ranges: the same findings, each file whole
    let mut repos = BTreeMap::new();
    repos.insert(
        "acme/fixtures",
        Repo {
            dir: dir.clone(),
            lfs: BTreeMap::new(),
        },
    );
    let plain = DiskHub::start(repos, false);
    let (code, out, err) = probity(
        &plain.url,
        cache.path(),
        &["scan", "--format", "json", "hf://acme/fixtures"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the server ignores range requests"), "{err}");
    let whole = files_by_rel(&out, &format!("hf://acme/fixtures@{}", &COMMIT[..12]));
    for (rel, r) in &whole {
        assert_eq!(verdict(r), verdict(&local[rel]), "{rel}");
        assert_eq!(r["transfer"]["whole"], true, "{rel}: {r}");
    }
}

/// Writes zeros as holes: a multi-GB file costs no disk.
struct Sparse(std::fs::File);

impl Write for Sparse {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.iter().all(|&b| b == 0) {
            self.0.seek(SeekFrom::Current(buf.len() as i64))?;
            Ok(buf.len())
        } else {
            self.0.write(buf)
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Seek for Sparse {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.0.seek(to)
    }
}

impl Sparse {
    fn finish(mut self) {
        let end = self.0.stream_position().unwrap();
        self.0.set_len(end).unwrap();
    }
}

fn big_safetensors(p: &Path, bytes: u64) {
    let n = bytes / 4;
    let mut h = serde_json::json!({"model.embed.weight": {"dtype": "F32", "shape": [n], "data_offsets": [0, n * 4]}})
        .to_string()
        .into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut f = std::fs::File::create(p).unwrap();
    f.write_all(&(h.len() as u64).to_le_bytes()).unwrap();
    f.write_all(&h).unwrap();
    f.set_len(8 + h.len() as u64 + n * 4).unwrap();
}

/// A PyTorch zip checkpoint whose data.pkl is taken from a benign fixture
/// and whose storages hold `bytes` of zeros in `parts` records.
fn big_torch_zip(p: &Path, bytes: u64, parts: u64) {
    let fixture = repo_root().join("fixtures/benign/pytorch");
    let src = std::fs::read_dir(&fixture)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "pt" || e == "bin" || e == "pth")
        })
        .min()
        .unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(&src).unwrap()).unwrap();
    let prefix = z
        .file_names()
        .flatten()
        .find(|n| n.ends_with("data.pkl"))
        .unwrap()
        .trim_end_matches("data.pkl")
        .to_string();
    let mut w = zip::ZipWriter::new(Sparse(std::fs::File::create(p).unwrap()));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for i in 0..z.len() {
        let mut m = z.by_index(i).unwrap();
        let name = m.name().unwrap().to_string();
        if name.contains("/data/") {
            continue;
        }
        let mut v = Vec::new();
        m.read_to_end(&mut v).unwrap();
        w.start_file(name, stored).unwrap();
        w.write_all(&v).unwrap();
    }
    let zeros = vec![0u8; 8 << 20];
    for k in 0..parts {
        w.start_file(format!("{prefix}data/{k}"), stored).unwrap();
        let mut left = bytes / parts;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            w.write_all(&zeros[..n]).unwrap();
            left -= n as u64;
        }
    }
    w.finish().unwrap().finish();
}

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A GGUF v3 file: llama architecture, a chat template, one F32 tensor of
/// `bytes` (zeros).
fn big_gguf(p: &Path, bytes: u64) {
    let mut h = b"GGUF".to_vec();
    h.extend_from_slice(&3u32.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes()); // tensors
    h.extend_from_slice(&2u64.to_le_bytes()); // key-values
    gguf_string(&mut h, "general.architecture");
    h.extend_from_slice(&8u32.to_le_bytes());
    gguf_string(&mut h, "llama");
    gguf_string(&mut h, "tokenizer.chat_template");
    h.extend_from_slice(&8u32.to_le_bytes());
    gguf_string(
        &mut h,
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}",
    );
    gguf_string(&mut h, "token_embd.weight");
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&(bytes / 4).to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes()); // F32
    h.extend_from_slice(&0u64.to_le_bytes());
    while !h.len().is_multiple_of(32) {
        h.push(0);
    }
    let mut f = std::fs::File::create(p).unwrap();
    f.write_all(&h).unwrap();
    f.set_len(h.len() as u64 + bytes / 4 * 4).unwrap();
}

#[test]
fn a_multi_gigabyte_repository_is_scanned_transferring_under_one_percent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_safetensors(&d.join("model.safetensors"), 3 << 30);
    big_torch_zip(&d.join("pytorch_model.bin"), 2 << 30, 64);
    big_gguf(&d.join("model-Q8_0.gguf"), 1 << 30);
    std::fs::copy(
        repo_root().join("fixtures/malicious/pytorch/zip_datapkl_os_system.pt"),
        d.join("training_args.bin"),
    )
    .unwrap();
    std::fs::write(d.join("config.json"), br#"{"model_type": "llama"}"#).unwrap();
    let total: u64 = files_of(d).iter().map(|(_, s)| s).sum();
    assert!(total > 6 << 30);
    let claim = "ab".repeat(32);
    let mut repos = BTreeMap::new();
    repos.insert(
        "acme/big",
        Repo {
            dir: d.to_path_buf(),
            // as the Hub lists every file stored with Git LFS
            lfs: ["model.safetensors", "pytorch_model.bin", "model-Q8_0.gguf"]
                .iter()
                .map(|f| (f.to_string(), claim.clone()))
                .collect(),
        },
    );
    let hub = DiskHub::start(repos, true);
    let cache = tempfile::tempdir().unwrap();
    let (code, local, err) = probity(
        &hub.url,
        cache.path(),
        &["scan", "--format", "json", d.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{err}");
    let local = files_by_rel(&local, d.to_str().unwrap());
    hub.reset();
    let (code, remote, err) = probity(
        &hub.url,
        cache.path(),
        &["scan", "--format", "json", "--hash", "hf://acme/big"],
    );
    assert_eq!(code, Some(1), "{err}");
    let sent = hub.sent.load(Ordering::SeqCst);
    assert!(
        sent * 100 < total,
        "{sent} bytes of {total} sent ({} requests); {err}",
        hub.requests.load(Ordering::SeqCst)
    );
    // the report, with its transfer and digest-source fields, fits the schema
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("docs/schema/probity.scan.v1.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&remote).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let remote = files_by_rel(&remote, &format!("hf://acme/big@{}", &COMMIT[..12]));
    assert_eq!(remote.len(), 5);
    for (rel, r) in &remote {
        assert_eq!(verdict(r), verdict(&local[rel]), "{rel}");
    }
    let reported: u64 = remote
        .values()
        .map(|r| r["transfer"]["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(reported, sent, "the report counts what the server sent");
    assert!(remote["training_args.bin"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["rule"] == "PKL001"));
    assert_eq!(remote["model.safetensors"]["format"], "safetensors");
    assert_eq!(remote["pytorch_model.bin"]["format"], "pytorch-zip");
    assert_eq!(remote["model-Q8_0.gguf"]["format"], "gguf");
    // the listing's LFS digest, marked as the Hub's claim; files without
    // one are hashed from their bytes (small ones here)
    assert_eq!(remote["model.safetensors"]["sha256"], claim.as_str());
    assert_eq!(remote["model.safetensors"]["sha256_source"], "hub-listing");
    use sha2::Digest;
    let config: String = sha2::Sha256::digest(std::fs::read(d.join("config.json")).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(remote["config.json"]["sha256"], config.as_str());
    assert!(remote["config.json"]["sha256_source"].is_null());
    assert!(err.contains("read 5 remote file(s) in place"), "{err}");
    // nothing partial in the cache
    assert!(!cache.path().join("models--acme--big/snapshots").exists());
}

#[test]
fn verified_digests_download_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(
        repo_root().join("fixtures/zoo/base/model.safetensors"),
        d.join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(d.join("config.json"), br#"{"model_type": "llama"}"#).unwrap();
    let lie = "cd".repeat(32);
    let mut repos = BTreeMap::new();
    repos.insert(
        "acme/small",
        Repo {
            dir: d.to_path_buf(),
            lfs: [("model.safetensors".to_string(), lie.clone())].into(),
        },
    );
    let hub = DiskHub::start(repos, true);
    let cache = tempfile::tempdir().unwrap();
    let (code, out, err) = probity(
        &hub.url,
        cache.path(),
        &[
            "scan",
            "--format",
            "json",
            "--hash=verify",
            "hf://acme/small",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("fetched whole"), "{err}");
    let files = files_by_rel(&out, &format!("hf://acme/small@{}", &COMMIT[..12]));
    use sha2::Digest;
    let real: String = sha2::Sha256::digest(std::fs::read(d.join("model.safetensors")).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(files["model.safetensors"]["sha256"], real.as_str());
    assert!(files["model.safetensors"]["sha256_source"].is_null());
    assert!(files["model.safetensors"]["transfer"].is_null());
    // the cache now holds complete files, for the deep scan
    assert!(cache
        .path()
        .join("models--acme--small/snapshots")
        .join(COMMIT)
        .join("model.safetensors")
        .is_file());
}
