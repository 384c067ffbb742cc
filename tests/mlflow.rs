//! MLflow URIs against a real MLflow tracking server (`mlflow server` on
//! 127.0.0.1 with a temporary SQLite store and proxied artifacts), with a
//! benign and a malicious model registered by the MLflow Python client.
//!
//! Needs MLflow: `.ci/run` installs it (`.ci/requirements-mlflow.txt`) into
//! `.ci/venv` and exports PROBITY_MLFLOW_BIN (the venv's bin folder). The test
//! fails without it, unless PROBITY_SKIP_MLFLOW=1 says so explicitly.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mlflow_bin() -> Option<PathBuf> {
    let dir = std::env::var_os("PROBITY_MLFLOW_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".ci/venv/bin"));
    dir.join("mlflow").is_file().then_some(dir)
}

struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        // the server forks workers (uvicorn, the job runner, huey
        // consumers): end its whole process group, not just the launcher
        // SAFETY: kill(2) on a process group this test created
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(bin: &Path, dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("server.log");
        let child = Command::new(bin.join("mlflow"))
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
                "--backend-store-uri",
                &format!("sqlite:///{}", dir.join("db.sqlite").display()),
                "--artifacts-destination",
                &dir.join("artifacts").display().to_string(),
            ])
            .current_dir(dir)
            .process_group(0)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("server.err")).unwrap())
            .spawn()
            .expect("mlflow server starts");
        let url = format!("http://127.0.0.1:{port}");
        let s = Server { child, url, log };
        let t0 = Instant::now();
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "mlflow server did not start: {}",
                std::fs::read_to_string(dir.join("server.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        s
    }

    /// Artifact downloads the server has answered so far.
    fn downloads(&self) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(self.log.with_file_name("server.err")).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("GET /api/2.0/mlflow-artifacts/artifacts/"))
            .count()
    }
}

fn probity(server: &str, cache: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(args)
        .env("MLFLOW_TRACKING_URI", server)
        .env("PROBITY_CACHE_DIR", cache)
        .env_remove("MLFLOW_TRACKING_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn mlflow_registry_models_and_runs() {
    let Some(bin) = mlflow_bin() else {
        if std::env::var_os("PROBITY_SKIP_MLFLOW").is_some() {
            eprintln!("PROBITY_SKIP_MLFLOW set: MLflow test skipped");
            return;
        }
        panic!("MLflow is needed: python3 -m venv .ci/venv && .ci/venv/bin/pip install -r .ci/requirements-mlflow.txt (or set PROBITY_MLFLOW_BIN, or PROBITY_SKIP_MLFLOW=1 to skip)");
    };
    let dir = tempfile::tempdir().unwrap();
    // the two models' files
    let benign = dir.path().join("benign");
    let evil = dir.path().join("evil");
    std::fs::create_dir_all(&benign).unwrap();
    std::fs::create_dir_all(&evil).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(root().join("fixtures/zoo/base").join(f), benign.join(f)).unwrap();
    }
    std::fs::copy(
        root().join("fixtures/malicious/pytorch/zip_datapkl_os_system.pt"),
        evil.join("model.pkl"),
    )
    .unwrap();
    let server = Server::start(&bin, dir.path());
    let reg = Command::new(bin.join("python"))
        .arg(root().join("tests/mlflow/register.py"))
        .arg(&server.url)
        .arg(&benign)
        .arg(&evil)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        reg.status.success(),
        "{}",
        String::from_utf8_lossy(&reg.stderr)
    );
    let out = String::from_utf8_lossy(&reg.stdout);
    let ids: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let cache = dir.path().join("cache");

    // a registered version: clean, its files under their MLflow names
    let (code, stdout, stderr) = probity(
        &server.url,
        &cache,
        &["scan", "--format", "json", "models:/benign/1"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let paths: Vec<&str> = j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "models:/benign/1/config.json",
            "models:/benign/1/model.safetensors"
        ]
    );
    // read in place through the artifact proxy, which honours ranges: of
    // the weights only the safetensors header travelled
    assert!(
        stderr.contains("2 read in place by range requests"),
        "{stderr}"
    );
    let weights = &j["files"][1];
    assert_eq!(weights["transfer"]["whole"], false, "{weights}");
    assert!(
        weights["transfer"]["bytes"].as_u64().unwrap() < weights["size"].as_u64().unwrap() / 4,
        "{weights}"
    );
    assert!(
        !cache.join("mlflow/index").exists(),
        "nothing recorded for --offline"
    );
    // downloaded whole into the cache
    let in_place = server.downloads();
    let (code, _, stderr) = probity(
        &server.url,
        &cache,
        &["scan", "--download", "models:/benign/1"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("2 downloaded"), "{stderr}");
    let after_first = server.downloads();
    assert_eq!(after_first, in_place + 2, "{stderr}");
    // again, in place: every file from the cache, nothing requested
    let (code, _, stderr) = probity(&server.url, &cache, &["scan", "models:/benign/1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("0 read in place by range requests, 2 from the cache"),
        "{stderr}"
    );
    assert_eq!(server.downloads(), after_first);
    // offline: from the cache, without a request
    let before = server.downloads();
    let (code, stdout, stderr) = probity(
        &server.url,
        &cache,
        &["scan", "--offline", "models:/benign/1"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("2 file(s) scanned"), "{stdout}");
    assert_eq!(server.downloads(), before);
    let (code, _, stderr) = probity(
        &server.url,
        &cache,
        &["scan", "--offline", "models:/evil/1"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not in the cache"), "{stderr}");
    // the malicious model by alias, and by its run
    let (code, stdout, stderr) = probity(&server.url, &cache, &["scan", "models:/evil@champion"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stdout.contains("models:/evil@champion/model.pkl"),
        "{stdout}"
    );
    assert!(stdout.contains("PKL001"), "{stdout}");
    let run = format!("runs:/{}/model", ids["evil"]["run_id"].as_str().unwrap());
    let (code, stdout, _) = probity(&server.url, &cache, &["scan", &run]);
    assert_eq!(code, Some(1));
    assert!(stdout.contains("PKL001"), "{stdout}");
    // errors: one line, exit 2
    for (args, needle) in [
        (vec!["scan", "models:/nothing/1"], "not found"),
        (vec!["scan", "models:/benign/99"], "not found"),
        (vec!["scan", "models:/benign/Production"], "version number"),
    ] {
        let (code, _, stderr) = probity(&server.url, &cache, &args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = probity("http://127.0.0.1:9", &cache, &["scan", "models:/benign/1"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("cannot reach MLflow"), "{stderr}");
    // the ledger records who made each version, as the real server says
    let ledger = dir.path().join("l.db");
    let l = ledger.to_str().unwrap();
    for m in ["models:/benign/1", "models:/evil@champion"] {
        let (code, _, stderr) = probity(&server.url, &cache, &["scan", m, "--ledger", l]);
        assert!(matches!(code, Some(0 | 1)), "{m}: {stderr}");
    }
    let (code, stdout, stderr) = probity(
        &server.url,
        &cache,
        &["log", "models:/evil", "--ledger", l, "--format", "json"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    let r = &recs[0]["record"];
    assert_eq!(r["model"]["kind"], "mlflow", "{r}");
    assert_eq!(r["model"]["key"], "models:/evil", "{r}");
    let up = &r["upstream"];
    assert_eq!(up["status"], "fetched", "{up}");
    assert_eq!(up["alias"], "champion", "{up}");
    assert_eq!(up["version"], ids["evil"]["version"], "{up}");
    assert_eq!(up["run_id"], ids["evil"]["run_id"], "{up}");
    assert!(
        up["created"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{up}"
    );
    assert!(
        up["run_user_id"].as_str().is_some_and(|u| !u.is_empty()),
        "{up}"
    );
    assert_eq!(r["verdict"]["exit_code"], 1, "{r}");
    // and a diff between two registered models, through the same server
    let (code, stdout, stderr) = probity(
        &server.url,
        &cache,
        &[
            "diff",
            "models:/benign/1",
            "models:/evil@champion",
            "--format",
            "json",
            "--no-spectral",
        ],
    );
    assert!(matches!(code, Some(0 | 1)), "{stderr}");
    let d: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names = |k: &str| -> Vec<String> {
        d["files"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("added"), ["model.pkl"], "{d}");
    assert_eq!(
        names("removed"),
        ["config.json", "model.safetensors"],
        "{d}"
    );
    assert_eq!(d["new"]["origin"]["alias"], "champion", "{d}");
    assert_eq!(d["new"]["origin"]["version"], ids["evil"]["version"], "{d}");

    // watches (`probity watch --once`, as cron runs it): an alias and the
    // newest version of a registered model
    let state = dir.path().join("state");
    let once = |extra: &[&str]| {
        let mut args = vec!["watch", "--once", "--format", "json", "--data"];
        args.push(state.to_str().unwrap());
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = probity(&server.url, &cache, &args);
        let v: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stdout} {stderr}"));
        (code, v, stderr)
    };
    let (code, v, stderr) = once(&["models:/benign@champion", "models:/benign"]);
    assert_eq!(code, Some(0), "{v} {stderr}");
    assert_eq!(v["changed"], 2, "{v}");
    let sources: Vec<&str> = v["scans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["source"].as_str().unwrap())
        .collect();
    // each scans the version it polled, exactly
    assert_eq!(sources, ["models:/benign/1", "models:/benign/1"], "{v}");
    assert!(
        v["scans"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["verdict"] == "clean"),
        "{v}"
    );
    // unchanged: one request per watch, no scan
    let (code, v, _) = once(&[]);
    assert_eq!((code, v["changed"].as_i64()), (Some(0), Some(0)), "{v}");
    // a new version, from the malicious folder, becomes the champion
    let py = "import mlflow, sys\nfrom mlflow import MlflowClient\nmlflow.set_tracking_uri(sys.argv[1])\nc = MlflowClient()\nwith mlflow.start_run() as r:\n    mlflow.log_artifacts(sys.argv[2], artifact_path='model')\nmv = c.create_model_version('benign', source=r.info.artifact_uri + '/model', run_id=r.info.run_id)\nc.set_registered_model_alias('benign', 'champion', mv.version)\nprint(mv.version)";
    let o = Command::new(bin.join("python"))
        .args(["-c", py, &server.url])
        .arg(&evil)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (code, v, stderr) = once(&[]);
    assert_eq!(code, Some(1), "{v} {stderr}");
    assert_eq!(v["changed"], 2, "{v}");
    assert_eq!(v["alerts"], 2, "{v}");
    let store = probity_server::open(&state).unwrap();
    let alerts = store.alerts(10).unwrap();
    let text = serde_json::to_string(&alerts).unwrap();
    assert!(text.contains("verdict-worse"), "{text}");
    assert!(text.contains("models:/benign@champion"), "{text}");
}
