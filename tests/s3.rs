//! Object-store sources against a real local S3-compatible server: moto in
//! server mode (pinned in .ci/requirements-s3.txt, installed by .ci/run into
//! .ci/venv-s3). Every fixture uploaded to a bucket gets the findings a local
//! scan gets, read in place by ranged GETs, as `s3://` and as `gs://` (Google
//! Cloud Storage's XML API, which object_store's GCS client speaks, is
//! S3-compatible for listing and ranged GETs, so moto serves it too; no GCS
//! emulator installable here speaks that API); whole downloads are cached by
//! ETag for `--offline`; errors are one line.

mod common;
use common::{files_by_rel, verdict};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> Option<PathBuf> {
    let bin = std::env::var_os("PROBITY_S3_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".ci/venv-s3/bin"));
    bin.join("moto_server").is_file().then_some(bin)
}

struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start(bin: &Path) -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin.join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let m = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(60), "moto did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        m
    }
}

/// Uploads every file under `dir` to `bucket` under `prefix` with boto3.
fn upload(bin: &Path, url: &str, bucket: &str, prefix: &str, dir: &Path) {
    let script = r#"
import os, sys, boto3
url, bucket, prefix, root = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
for base, _, files in os.walk(root):
    for f in files:
        p = os.path.join(base, f)
        if os.path.islink(p):
            continue
        key = prefix + "/" + os.path.relpath(p, root).replace(os.sep, "/")
        s3.upload_file(p, bucket, key)
"#;
    let o = Command::new(bin.join("python"))
        .args(["-c", script, url, bucket, prefix])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn probity(url: &str, cache: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", url)
        .env("GOOGLE_BASE_URL", url)
        .env("GOOGLE_BEARER_TOKEN", "test")
        .env("PROBITY_CACHE_DIR", cache)
        .env_remove("AWS_PROFILE")
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
fn s3_and_gcs_sources() {
    let Some(bin) = venv() else {
        if std::env::var_os("PROBITY_SKIP_S3").is_some() {
            eprintln!("PROBITY_SKIP_S3 set: object-store test skipped");
            return;
        }
        panic!("moto is needed: python3 -m venv .ci/venv-s3 && .ci/venv-s3/bin/pip install -r .ci/requirements-s3.txt (or set PROBITY_S3_BIN, or PROBITY_SKIP_S3=1 to skip)");
    };
    let moto = Moto::start(&bin);
    let fixtures = repo().join("fixtures");
    upload(&bin, &moto.url, "models", "fixtures", &fixtures);
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();

    // every fixture, read in place, gets the local findings
    let (code, local, err) = probity(
        &moto.url,
        c,
        &["scan", "--format", "json", fixtures.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{err}");
    let local: BTreeMap<String, serde_json::Value> =
        files_by_rel(&local, fixtures.to_str().unwrap())
            .into_iter()
            .map(|(k, v)| (k, verdict(&v)))
            .collect();
    for uri in ["s3://models/fixtures", "gs://models/fixtures"] {
        let (code, out, err) = probity(&moto.url, c, &["scan", "--format", "json", uri]);
        assert_eq!(code, Some(1), "{uri}: {err}");
        assert!(err.contains("read in place by range requests"), "{err}");
        let remote: BTreeMap<String, serde_json::Value> = files_by_rel(&out, uri)
            .into_iter()
            .map(|(k, v)| (k, verdict(&v)))
            .collect();
        assert_eq!(
            remote.keys().collect::<Vec<_>>(),
            local.keys().collect::<Vec<_>>(),
            "{uri}"
        );
        let differ: Vec<&String> = remote
            .iter()
            .filter(|(k, v)| local[*k] != **v)
            .map(|(k, _)| k)
            .collect();
        assert!(differ.is_empty(), "{uri}: {differ:?}");
        let j: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(j["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["transfer"]["requests"].as_u64().unwrap_or(0) >= 1));
    }

    // whole downloads are cached under their ETags; then read from there,
    // online and offline
    let evil = "s3://models/fixtures/malicious/pytorch";
    let (code, _, err) = probity(&moto.url, c, &["scan", "--download", evil]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("downloaded"), "{err}");
    assert!(!err.contains(", 0 downloaded"), "{err}");
    let (code, _, err) = probity(&moto.url, c, &["scan", evil]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(": 0 read in place by range requests"), "{err}");
    let (code, out, err) = probity(
        "http://127.0.0.1:9",
        c,
        &["scan", "--offline", "--format", "json", evil],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("PKL001"), "{out}");

    // errors: one line, exit 2
    for (uri, says) in [
        ("s3://nosuchbucket/x", "NoSuchBucket"),
        ("s3://models/nothing-here", "not found"),
        ("s3://Bad_Bucket/x", "valid bucket name"),
    ] {
        let (code, _, err) = probity(&moto.url, c, &["scan", uri]);
        assert_eq!(code, Some(2), "{uri}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{uri}: {err}");
    }
    let (code, _, err) = probity("http://127.0.0.1:9", c, &["scan", "s3://models/fixtures"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
