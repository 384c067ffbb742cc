//! The provenance ledger: records appended by `scan` and `verify`, their
//! content (identity, manifest and root digest, actor, lineage, upstream
//! Hub commits from a local server), `probity log` history and what changed,
//! and `log --verify` against an edited, deleted, reordered or truncated
//! chain; concurrent writers; an unwritable ledger.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::Digest;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `probity` in `cwd`, with no ledger, CI or Hub settings inherited.
fn cmd(cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_probity"));
    c.current_dir(cwd);
    for k in [
        "PROBITY_LEDGER",
        "GITHUB_ACTIONS",
        "GITLAB_CI",
        "JENKINS_URL",
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HF_HOME",
        "HF_HUB_CACHE",
    ] {
        c.env_remove(k);
    }
    c.env("USER", "tester").env("NO_COLOR", "1");
    c
}

fn run(cwd: &Path, args: &[&str]) -> Output {
    cmd(cwd).args(args).output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}{}", out(o), err(o));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A small model folder with a model card and a config claiming a lineage.
fn model(dir: &Path) -> PathBuf {
    let m = dir.join("tiny-model");
    std::fs::create_dir_all(m.join(".git")).unwrap();
    std::fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    std::fs::write(
        m.join("config.json"),
        br#"{"_name_or_path": "acme/base-7b", "model_type": "llama"}"#,
    )
    .unwrap();
    std::fs::write(
        m.join("README.md"),
        b"---\nlicense: mit\nbase_model: acme/base-7b\ndatasets:\n- acme/chat\n- acme/code\n---\n# tiny\n",
    )
    .unwrap();
    std::fs::copy(
        root().join("fixtures/zoo/base/model.safetensors"),
        m.join("model.safetensors"),
    )
    .unwrap();
    m
}

/// The root digest model signing gives a folder: SHA-256 over the files'
/// SHA-256 in path order (no git files).
fn root_digest(m: &Path) -> String {
    let mut names = vec!["README.md", "config.json", "model.safetensors"];
    names.sort();
    let mut h = sha2::Sha256::new();
    for n in names {
        h.update(sha2::Sha256::digest(std::fs::read(m.join(n)).unwrap()));
    }
    hex(&h.finalize())
}

fn log_json(cwd: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["log", "--format", "json"];
    a.extend_from_slice(args);
    let o = run(cwd, &a);
    ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn scans_are_recorded_and_log_shows_what_changed() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let ledger = d.path().join("ledger.db");
    let l = ledger.to_str().unwrap();
    let ms = m.to_str().unwrap();
    for _ in 0..2 {
        ok(&run(d.path(), &["scan", ms, "--ledger", l]));
    }
    // the signing root digest
    let sig = d.path().join("tiny.sig");
    let key = root().join("crates/provenance/src/testdata/signer.pem");
    let o = run(
        d.path(),
        &[
            "sign",
            ms,
            "--key",
            key.to_str().unwrap(),
            "--signature",
            sig.to_str().unwrap(),
        ],
    );
    ok(&o);
    let digest = root_digest(&m);
    assert!(
        out(&o).contains(&format!("root digest sha256:{digest}")),
        "{}",
        out(&o)
    );

    let v = log_json(d.path(), &[ms, "--ledger", l]);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    let canon = m.canonicalize().unwrap().display().to_string();
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], i as i64 + 1);
        let rec = &r["record"];
        assert_eq!(rec["schema"], "probity.ledger.record/v1");
        assert_eq!(rec["seq"], i as i64 + 1);
        assert_eq!(rec["command"], "scan");
        assert_eq!(rec["probity_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(rec["model"]["source"], ms);
        assert_eq!(rec["model"]["kind"], "local");
        assert_eq!(rec["model"]["key"], canon.as_str());
        assert_eq!(rec["model"]["root_digest"], digest.as_str());
        let names: Vec<&str> = rec["model"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["README.md", "config.json", "model.safetensors"]);
        assert_eq!(
            rec["lineage"],
            serde_json::json!({
                "base_model": ["acme/base-7b"],
                "datasets": ["acme/chat", "acme/code"],
                "config_name_or_path": "acme/base-7b",
            })
        );
        assert_eq!(rec["actor"]["kind"], "local");
        assert_eq!(rec["actor"]["user"], "tester");
        assert_eq!(rec["actor"]["authenticated"], false);
        assert_eq!(rec["verdict"]["result"], "clean");
        assert_eq!(rec["verdict"]["exit_code"], 0);
        assert_eq!(
            rec["verdict"]["findings"],
            serde_json::json!({"critical": 0, "warning": 0, "info": 0})
        );
        // .git/HEAD is scanned (plain text), though not in the manifest
        assert_eq!(rec["verdict"]["rules"], serde_json::json!({}));
        assert_eq!(rec["signature"]["status"], "not checked");
        assert_eq!(rec["upstream"]["status"], "not applicable");
        assert!(rec["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(recs[0]["prev"], "0".repeat(64));
    assert_eq!(recs[1]["prev"], recs[0]["digest"]);
    assert_eq!(recs[0]["changes"], serde_json::json!({"first": true}));
    assert_eq!(recs[1]["changes"]["changed"], serde_json::json!([]));

    // a changed, an added and a removed file
    std::fs::write(m.join("config.json"), br#"{"model_type": "llama"}"#).unwrap();
    std::fs::write(m.join("extra.txt"), b"hello").unwrap();
    std::fs::remove_file(m.join("README.md")).unwrap();
    ok(&run(d.path(), &["scan", ms, "--ledger", l]));
    let v = log_json(d.path(), &[ms, "--ledger", l]);
    let last = &v["records"][2];
    assert_eq!(
        last["changes"],
        serde_json::json!({
            "since": 2,
            "root_digest_changed": true,
            "added": ["extra.txt"],
            "removed": ["README.md"],
            "changed": ["config.json"],
        })
    );
    let o = run(d.path(), &["log", ms, "--ledger", l]);
    ok(&o);
    let t = out(&o);
    assert!(t.contains("#1  "), "{t}");
    assert!(
        t.contains("changed    since #2: 1 added (extra.txt), 1 removed (README.md), 1 changed (config.json)"),
        "{t}"
    );
    assert!(t.contains("changed    no file changed since #1"), "{t}");
    assert!(t.contains("scanned by tester@"), "{t}");
    assert!(
        t.contains("verdict    clean: 0 critical, 0 warning, 0 info (exit 0)"),
        "{t}"
    );
    assert!(
        t.contains("lineage    base model acme/base-7b; datasets acme/chat, acme/code; config _name_or_path acme/base-7b"),
        "{t}"
    );
    // by root digest prefix: the first two records only
    let v = log_json(d.path(), &[&digest[..16], "--ledger", l]);
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    // another model: nothing
    let v = log_json(d.path(), &["/nonexistent/model", "--ledger", l]);
    assert_eq!(v["records"].as_array().unwrap().len(), 0);
}

#[test]
fn verify_records_signature_status_and_keeps_exit_code() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let ms = m.to_str().unwrap();
    let td = root().join("crates/provenance/src/testdata");
    let sig = m.join("model.sig");
    let o = run(
        d.path(),
        &[
            "sign",
            ms,
            "--key",
            td.join("signer.pem").to_str().unwrap(),
            "--certificate",
            td.join("signer.crt").to_str().unwrap(),
            "--signature",
            sig.to_str().unwrap(),
        ],
    );
    ok(&o);
    // the ledger from the environment
    let ledger = d.path().join("env-ledger.db");
    let verify = |c: &mut Command| {
        c.args([
            "verify",
            ms,
            "--signature",
            sig.to_str().unwrap(),
            "--certificate-chain",
            td.join("ca.crt").to_str().unwrap(),
        ])
        .env("PROBITY_LEDGER", &ledger)
        .output()
        .unwrap()
    };
    ok(&verify(&mut cmd(d.path())));
    std::fs::write(m.join("config.json"), b"{}").unwrap();
    let o = verify(&mut cmd(d.path()));
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("file changed: config.json"), "{}", err(&o));
    let v = log_json(d.path(), &["--ledger", ledger.to_str().unwrap()]);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    let (a, b) = (&recs[0]["record"], &recs[1]["record"]);
    assert_eq!(a["command"], "verify");
    assert_eq!(a["signature"]["status"], "verified");
    assert!(a["signature"]["signer"]
        .as_str()
        .unwrap()
        .starts_with("certificate "));
    // the signature file inside the model is left out, as signing does
    assert_eq!(
        a["model"]["root_digest"],
        a["signature"]["signed_root_digest"]
    );
    assert_eq!(
        a["verdict"],
        serde_json::json!({"result": "verified", "exit_code": 0})
    );
    assert_eq!(b["signature"]["status"], "failed");
    assert!(b["signature"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("file changed: config.json"));
    assert_eq!(b["verdict"]["exit_code"], 1);
    assert_eq!(
        recs[1]["changes"]["changed"],
        serde_json::json!(["config.json"])
    );
}

/// A ledger of `n` scan records and its head digest.
fn ledger_of(d: &Path, n: usize) -> (PathBuf, String) {
    let m = model(d);
    let ledger = d.join("ledger.db");
    for _ in 0..n {
        ok(&run(
            d,
            &[
                "scan",
                m.to_str().unwrap(),
                "--ledger",
                ledger.to_str().unwrap(),
            ],
        ));
    }
    let o = run(
        d,
        &["log", "--verify", "--ledger", ledger.to_str().unwrap()],
    );
    ok(&o);
    let t = out(&o);
    assert!(
        t.contains(&format!("{n} record(s), chain intact, head #{n} sha256:")),
        "{t}"
    );
    let head = t.trim().rsplit("sha256:").next().unwrap().to_string();
    assert_eq!(head.len(), 64);
    (ledger, head)
}

/// A copy of the ledger altered by `sql`, and `log --verify` on it.
fn tampered(d: &Path, ledger: &Path, name: &str, sql: &str, extra: &[&str]) -> Output {
    let copy = d.join(name);
    std::fs::copy(ledger, &copy).unwrap();
    let c = rusqlite::Connection::open(&copy).unwrap();
    c.execute_batch(sql).unwrap();
    drop(c);
    let mut args = vec!["log", "--verify", "--ledger", copy.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(d, &args)
}

#[test]
fn log_verify_detects_edit_delete_reorder_and_truncation() {
    let d = tempfile::tempdir().unwrap();
    let (ledger, head) = ledger_of(d.path(), 4);
    let one_line = |o: &Output| {
        assert_eq!(o.status.code(), Some(1), "{}{}", out(o), err(o));
        let e = err(o);
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    };
    // an edited body (the verdict rewritten)
    let o = tampered(
        d.path(),
        &ledger,
        "edited.db",
        r#"UPDATE records SET body = replace(body, '"result":"clean"', '"result":"CLEAN"') WHERE seq = 2;"#,
        &[],
    );
    let e = one_line(&o);
    assert!(
        e.contains("chain broken at record #2: the body or digest was edited"),
        "{e}"
    );
    // a deleted middle record
    let o = tampered(
        d.path(),
        &ledger,
        "deleted.db",
        "DELETE FROM records WHERE seq = 2;",
        &[],
    );
    let e = one_line(&o);
    assert!(
        e.contains("chain broken at record #3: record 2 is missing (deleted)"),
        "{e}"
    );
    // reordered: two bodies swapped
    let o = tampered(
        d.path(),
        &ledger,
        "swapped.db",
        "CREATE TEMP TABLE t AS SELECT seq, body FROM records WHERE seq IN (2, 3);
         UPDATE records SET body = (SELECT body FROM t WHERE t.seq = 5 - records.seq) WHERE seq IN (2, 3);",
        &[],
    );
    let e = one_line(&o);
    assert!(
        e.contains("chain broken at record #2: the body of record 3 is stored at 2 (reordered)"),
        "{e}"
    );
    // reordered: whole rows swapped with their seq renumbered
    let o = tampered(
        d.path(),
        &ledger,
        "moved.db",
        "UPDATE records SET seq = -seq WHERE seq IN (2, 3); UPDATE records SET seq = 5 + seq WHERE seq < 0;",
        &[],
    );
    let e = one_line(&o);
    assert!(
        e.contains("chain broken at record #2") && e.contains("reordered"),
        "{e}"
    );
    // the last record deleted: only the pinned head shows it
    let o = tampered(
        d.path(),
        &ledger,
        "cut.db",
        "DELETE FROM records WHERE seq = 4;",
        &[],
    );
    ok(&o);
    assert!(out(&o).contains("3 record(s), chain intact"), "{}", out(&o));
    let pin = format!("sha256:{head}");
    let o = tampered(
        d.path(),
        &ledger,
        "cut2.db",
        "DELETE FROM records WHERE seq = 4;",
        &["--expect-head", &pin],
    );
    let e = one_line(&o);
    assert!(
        e.contains(&format!(
            "the pinned head sha256:{head} is not in the ledger"
        )),
        "{e}"
    );
    // the intact ledger with its pin, and JSON
    let o = run(
        d.path(),
        &[
            "log",
            "--ledger",
            ledger.to_str().unwrap(),
            "--expect-head",
            &pin,
        ],
    );
    ok(&o);
    assert!(
        out(&o).contains("the pinned head is record #4"),
        "{}",
        out(&o)
    );
    let o = tampered(
        d.path(),
        &ledger,
        "edited2.db",
        "UPDATE records SET digest = prev WHERE seq = 4;",
        &["--format", "json"],
    );
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(v["records"], 4);
    assert_eq!(v["broken"]["seq"], 4);
    // not a ledger: exit 2, one line
    let junk = d.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let o = run(
        d.path(),
        &["log", "--verify", "--ledger", junk.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        err(&o),
        format!(
            "probity: {}: not a Probity ledger (not an SQLite database)\n",
            junk.display()
        )
    );
}

#[test]
fn parallel_writers_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let mut inputs = Vec::new();
    for i in 0..5 {
        let p = d.path().join(format!("m{i}"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("config.json"), format!("{{\"n\": {i}}}")).unwrap();
        inputs.push(p.display().to_string());
    }
    let ledger = d.path().join("shared.db");
    let children: Vec<_> = (0..8)
        .map(|_| {
            cmd(d.path())
                .arg("scan")
                .args(&inputs)
                .args(["--ledger", ledger.to_str().unwrap(), "--jobs", "1"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    }
    let o = run(
        d.path(),
        &["log", "--verify", "--ledger", ledger.to_str().unwrap()],
    );
    ok(&o);
    assert!(
        out(&o).contains("40 record(s), chain intact, head #40 sha256:"),
        "{}",
        out(&o)
    );
    let v = log_json(d.path(), &["--ledger", ledger.to_str().unwrap()]);
    let recs = v["records"].as_array().unwrap();
    let seqs: Vec<i64> = recs.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
    for i in &inputs {
        let n = recs
            .iter()
            .filter(|r| r["record"]["model"]["source"] == i.as_str())
            .count();
        assert_eq!(n, 8, "{i}");
    }
}

#[test]
fn ci_identity_from_github_actions() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let ledger = d.path().join("ci.db");
    let o = cmd(d.path())
        .args([
            "scan",
            m.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
        ])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_ACTOR", "octocat")
        .env("GITHUB_REPOSITORY", "acme/models")
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_SERVER_URL", "https://github.example")
        .env("GITHUB_WORKFLOW", "release")
        .output()
        .unwrap();
    ok(&o);
    let v = log_json(d.path(), &["--ledger", ledger.to_str().unwrap()]);
    let a = &v["records"][0]["record"]["actor"];
    assert_eq!(a["kind"], "github-actions");
    assert_eq!(a["user"], "octocat");
    assert_eq!(a["repository"], "acme/models");
    assert_eq!(a["workflow"], "release");
    assert_eq!(a["run_id"], "4242");
    assert_eq!(
        a["run_url"],
        "https://github.example/acme/models/actions/runs/4242"
    );
    assert_eq!(a["authenticated"], false);
    let o = run(d.path(), &["log", "--ledger", ledger.to_str().unwrap()]);
    assert!(
        out(&o).contains("scanned by github-actions: octocat, repository acme/models, workflow release, https://github.example/acme/models/actions/runs/4242"),
        "{}",
        out(&o)
    );
}

#[test]
fn ci_identity_from_gitlab_ci_and_jenkins() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let ledger = d.path().join("ci.db");
    let l = ledger.to_str().unwrap();
    let scan = |env: &[(&str, &str)]| {
        let mut c = cmd(d.path());
        c.args(["scan", m.to_str().unwrap(), "--ledger", l]);
        for (k, v) in env {
            c.env(k, v);
        }
        ok(&c.output().unwrap());
    };
    scan(&[
        ("GITLAB_CI", "true"),
        ("GITLAB_USER_LOGIN", "gl-user"),
        ("CI_PROJECT_PATH", "acme/models"),
        ("CI_JOB_URL", "https://gitlab.example/acme/models/-/jobs/7"),
    ]);
    scan(&[
        ("JENKINS_URL", "https://ci.example/"),
        ("BUILD_USER_ID", "jk-user"),
        ("JOB_NAME", "release-models"),
        ("BUILD_URL", "https://ci.example/job/release-models/12/"),
    ]);
    let v = log_json(d.path(), &["--ledger", l]);
    let g = &v["records"][0]["record"]["actor"];
    assert_eq!(g["kind"], "gitlab-ci");
    assert_eq!(g["user"], "gl-user");
    assert_eq!(g["repository"], "acme/models");
    assert_eq!(g["run_url"], "https://gitlab.example/acme/models/-/jobs/7");
    let j = &v["records"][1]["record"]["actor"];
    assert_eq!(j["kind"], "jenkins");
    assert_eq!(j["user"], "jk-user");
    assert_eq!(j["job"], "release-models");
    assert_eq!(j["run_url"], "https://ci.example/job/release-models/12/");
    assert_eq!(j["authenticated"], false);
}

#[test]
fn unwritable_ledger_is_one_line_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    let bad = d.path().join("no-such-dir/ledger.db");
    let o = run(
        d.path(),
        &[
            "scan",
            m.to_str().unwrap(),
            "--ledger",
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with(&format!("probity: {}: ", bad.display())),
        "{e}"
    );
    // a file that is not a ledger is not overwritten
    let junk = d.path().join("notes.txt");
    std::fs::write(&junk, vec![b'n'; 2000]).unwrap();
    let o = run(
        d.path(),
        &[
            "scan",
            m.to_str().unwrap(),
            "--ledger",
            junk.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        err(&o),
        format!(
            "probity: {}: not a Probity ledger (not an SQLite database)\n",
            junk.display()
        )
    );
    assert_eq!(std::fs::read(&junk).unwrap(), vec![b'n'; 2000]);
    // log without any ledger configured
    let o = run(d.path(), &["log"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(err(&o).lines().count(), 1);
    assert!(err(&o).starts_with("probity: no ledger"), "{}", err(&o));
}

#[test]
fn ledger_from_probity_toml() {
    let d = tempfile::tempdir().unwrap();
    let m = model(d.path());
    std::fs::write(
        d.path().join("probity.toml"),
        "[provenance]\nledger = \"records/prov.db\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.path().join("records")).unwrap();
    ok(&run(d.path(), &["scan", m.to_str().unwrap()]));
    assert!(d.path().join("records/prov.db").is_file());
    let v = log_json(d.path(), &[]);
    assert_eq!(v["records"].as_array().unwrap().len(), 1);
    // a scan with findings keeps exit 1 and is recorded
    let evil = d.path().join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::copy(
        root().join("fixtures/malicious/pytorch/zip_datapkl_os_system.pt"),
        evil.join("pytorch_model.bin"),
    )
    .unwrap();
    let o = run(d.path(), &["scan", evil.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let v = log_json(d.path(), &[evil.to_str().unwrap()]);
    let verdict = &v["records"][0]["record"]["verdict"];
    assert_eq!(verdict["result"], "flagged");
    assert_eq!(verdict["exit_code"], 1);
    assert!(verdict["findings"]["critical"].as_u64().unwrap() >= 1);
    // an unknown key in [provenance] is refused
    std::fs::write(
        d.path().join("probity.toml"),
        "[provenance]\nledgr = \"x\"\n",
    )
    .unwrap();
    let o = run(d.path(), &["scan", m.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("ledgr"), "{}", err(&o));
}

#[test]
fn help_names_the_ledger() {
    let d = tempfile::tempdir().unwrap();
    for sub in ["scan", "verify"] {
        let o = run(d.path(), &[sub, "--help"]);
        assert!(out(&o).contains("--ledger <FILE>"), "{sub}");
        assert!(out(&o).contains("PROBITY_LEDGER"), "{sub}");
    }
    let o = run(d.path(), &["log", "--help"]);
    ok(&o);
    let t = out(&o);
    for s in ["--verify", "--expect-head", "--format", "pin it"] {
        assert!(t.contains(s), "{s}: {t}");
    }
}

// ------------------------------------------------------------ Hub commits

const C0: &str = "0000000000000000000000000000000000000aaa";
const C1: &str = "1111111111111111111111111111111111111bbb";
const C2: &str = "2222222222222222222222222222222222222ccc";

/// A commit: (id, files, title, author, date).
type Commit = (
    &'static str,
    Vec<(&'static str, Vec<u8>)>,
    &'static str,
    &'static str,
    &'static str,
);

/// The repository's commits, oldest first.
fn history() -> Vec<Commit> {
    let card = b"---\nbase_model: acme/base\n---\n".to_vec();
    vec![
        (
            C0,
            vec![("config.json", b"{}".to_vec())],
            "Initial commit",
            "alice",
            "2025-01-01T10:00:00.000Z",
        ),
        (
            C1,
            vec![
                ("config.json", b"{\"v\": 1}".to_vec()),
                ("README.md", card.clone()),
            ],
            "Add model card",
            "alice",
            "2025-02-01T10:00:00.000Z",
        ),
        (
            C2,
            vec![("config.json", b"{\"v\": 2}".to_vec()), ("README.md", card)],
            "Update config",
            "mallory",
            "2025-03-01T10:00:00.000Z",
        ),
    ]
}

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
}

fn hub_answer(req: &tiny_http::Request) -> tiny_http::Response<Cursor<Vec<u8>>> {
    let h = history();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let json = |v: serde_json::Value| {
        tiny_http::Response::from_string(v.to_string())
            .with_header(header("Content-Type", "application/json"))
    };
    let at = |rev: &str| -> Option<usize> {
        match rev {
            "v0" => Some(0),
            "v1" => Some(1),
            "v2" | "main" => Some(2),
            c => h.iter().position(|x| x.0 == c),
        }
    };
    if let Some(rest) = path.strip_prefix("/api/models/acme/tiny/") {
        let (kind, rev) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(i) = at(rev) else {
            return tiny_http::Response::from_string("no such revision").with_status_code(404);
        };
        if kind == "revision" {
            let siblings: Vec<_> = h[i]
                .1
                .iter()
                .map(|(n, d)| serde_json::json!({"rfilename": n, "size": d.len()}))
                .collect();
            return json(
                serde_json::json!({"id": "acme/tiny", "sha": h[i].0, "siblings": siblings}),
            );
        }
        if kind == "commits" {
            let list: Vec<_> = h[..=i]
                .iter()
                .rev()
                .map(|(c, _, title, who, date)| {
                    serde_json::json!({"id": c, "title": title, "message": "", "authors": [{"user": who}], "date": date})
                })
                .collect();
            return json(serde_json::Value::Array(list));
        }
    }
    // /acme/tiny/resolve/REV/FILE
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() == 5 && parts[2] == "resolve" {
        let Some(i) = at(parts[3]) else {
            return tiny_http::Response::from_string("no").with_status_code(404);
        };
        let Some((_, data)) = h[i].1.iter().find(|(n, _)| *n == parts[4]).cloned() else {
            return tiny_http::Response::from_string("Entry not found").with_status_code(404);
        };
        let etag = hex(&sha2::Sha256::digest(&data));
        let range = req
            .headers()
            .iter()
            .find(|x| x.field.equiv("Range"))
            .map(|x| x.value.as_str().to_string());
        let start: usize = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let probe = range.as_deref() == Some("bytes=0-0");
        let full = data.len();
        let body = if probe {
            data[..1.min(full)].to_vec()
        } else {
            data[start.min(full)..].to_vec()
        };
        let end = if probe { 0 } else { full.saturating_sub(1) };
        let n = body.len();
        return tiny_http::Response::new(
            tiny_http::StatusCode(if range.is_some() { 206 } else { 200 }),
            vec![
                header("ETag", &format!("\"{etag}\"")),
                header("X-Repo-Commit", h[i].0),
                header("Content-Range", &format!("bytes {start}-{end}/{full}")),
                header("Connection", "close"),
            ],
            Cursor::new(body),
            Some(n),
            None,
        );
    }
    tiny_http::Response::from_string("unknown endpoint").with_status_code(404)
}

#[test]
fn hub_commits_since_the_last_recorded_revision() {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let r = hub_answer(&req);
            let _ = req.respond(r);
        }
    });
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("hf-cache");
    let ledger = d.path().join("hub.db");
    let l = ledger.to_str().unwrap();
    let scan = |uri: &str, offline: bool| {
        let mut c = cmd(d.path());
        c.args(["scan", uri, "--ledger", l])
            .env("HF_ENDPOINT", &url)
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HOME", d.path().join("hf-home"));
        if offline {
            c.arg("--offline");
        }
        let o = c.output().unwrap();
        ok(&o);
    };
    scan("hf://acme/tiny@v1", false);
    scan("hf://acme/tiny@v2", false);
    scan("hf://acme/tiny@v2", true);
    scan("hf://acme/tiny@v2", false);
    let v = log_json(d.path(), &["hf://acme/tiny", "--ledger", l]);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 4);
    let r0 = &recs[0]["record"];
    assert_eq!(r0["model"]["kind"], "hf");
    assert_eq!(r0["model"]["key"], "hf://acme/tiny");
    assert_eq!(r0["model"]["revision"], "v1");
    assert_eq!(r0["model"]["commit"], C1);
    assert_eq!(
        r0["lineage"]["base_model"],
        serde_json::json!(["acme/base"])
    );
    // the first record: the whole history up to v1
    assert_eq!(
        r0["upstream"],
        serde_json::json!({
            "source": "hf",
            "status": "fetched",
            "since": null,
            "truncated": false,
            "commits": [
                {"id": C1, "title": "Add model card", "authors": ["alice"], "date": "2025-02-01T10:00:00.000Z"},
                {"id": C0, "title": "Initial commit", "authors": ["alice"], "date": "2025-01-01T10:00:00.000Z"},
            ],
        })
    );
    // the second: only what came after the recorded v1
    let r1 = &recs[1]["record"];
    assert_eq!(r1["model"]["commit"], C2);
    assert_eq!(
        r1["upstream"],
        serde_json::json!({
            "source": "hf",
            "status": "fetched",
            "since": C1,
            "truncated": false,
            "commits": [
                {"id": C2, "title": "Update config", "authors": ["mallory"], "date": "2025-03-01T10:00:00.000Z"},
            ],
        })
    );
    assert_eq!(
        recs[1]["changes"]["changed"],
        serde_json::json!(["config.json"])
    );
    // offline: not asked
    let r2 = &recs[2]["record"];
    assert_eq!(r2["upstream"]["status"], "unchanged");
    let r3 = &recs[3]["record"];
    assert_eq!(r3["upstream"]["status"], "unchanged");
    // the root digest is that of the fetched files
    let mut h = sha2::Sha256::new();
    for (n, data) in [
        ("README.md", &history()[2].1[1].1),
        ("config.json", &history()[2].1[0].1),
    ] {
        let _ = n;
        h.update(sha2::Sha256::digest(data));
    }
    assert_eq!(r1["model"]["root_digest"], hex(&h.finalize()).as_str());
    let o = run(d.path(), &["log", "hf://acme/tiny@v2", "--ledger", l]);
    ok(&o);
    let t = out(&o);
    assert!(
        t.contains("upstream   1 commit(s) since 111111111111"),
        "{t}"
    );
    assert!(
        t.contains("222222222222 2025-03-01T10:00:00.000Z mallory \"Update config\""),
        "{t}"
    );
    assert!(t.contains("revision v2 (commit 222222222222)"), "{t}");
}

#[test]
fn hub_unreachable_is_recorded_not_fatal() {
    // a cached snapshot scanned offline, then the Hub gone: the scan
    // succeeds and the record says why there is no history
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}", server.server_addr().to_ip().unwrap());
    let handle = std::thread::spawn(move || {
        for _ in 0..20 {
            match server.recv_timeout(std::time::Duration::from_secs(5)) {
                Ok(Some(req)) => {
                    let r = hub_answer(&req);
                    let _ = req.respond(r);
                }
                _ => break,
            }
        }
    });
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("hf-cache");
    let l = d.path().join("off.db");
    let o = cmd(d.path())
        .args([
            "scan",
            "hf://acme/tiny@v1",
            "--offline",
            "--ledger",
            l.to_str().unwrap(),
        ])
        .env("HF_ENDPOINT", &url)
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    // not cached yet: the scan itself fails, and nothing is recorded
    assert_eq!(o.status.code(), Some(2));
    assert!(
        !l.exists()
            || log_json(d.path(), &["--ledger", l.to_str().unwrap()])["records"]
                == serde_json::json!([])
    );
    // fetch once online whole into the cache (without a ledger, a scan
    // reads in place and caches nothing), then offline with one
    let o = cmd(d.path())
        .args(["scan", "--download", "hf://acme/tiny@v1"])
        .env("HF_ENDPOINT", &url)
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    ok(&o);
    let o = cmd(d.path())
        .args([
            "scan",
            "hf://acme/tiny@v1",
            "--offline",
            "--ledger",
            l.to_str().unwrap(),
        ])
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    ok(&o);
    let v = log_json(d.path(), &["--ledger", l.to_str().unwrap()]);
    let up = &v["records"][0]["record"]["upstream"];
    assert_eq!(up["status"], "not fetched");
    assert_eq!(up["reason"], "--offline: the Hub was not asked");
    assert_eq!(v["records"][0]["record"]["model"]["commit"], C1);
    drop(handle);
}
