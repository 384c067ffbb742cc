//! End-to-end tests of the `probity` binary: exit codes, the JSON report
//! (validated against docs/schema/probity.scan.v1.json), determinism, the rule
//! catalogue, the policy file, and bad inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_probity"));
    c.env_remove("NO_COLOR");
    c
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(rel: &str) -> PathBuf {
    repo().join("fixtures").join(rel)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("probity runs")
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("probity runs")
}

/// The report's files keyed by file name.
fn by_file_name(j: &serde_json::Value) -> std::collections::HashMap<String, &serde_json::Value> {
    j["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                Path::new(f["path"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string(),
                f,
            )
        })
        .collect()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally, not by a signal")
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

const CLEAN: &str = "benign/sklearn/logreg.p4.pkl";
const EVIL: &str = "malicious/pickle/process_os_system_p0.pkl";
const EVIL_TORCH: &str = "malicious/pytorch/zip_datapkl_os_system.pt";

fn evil() -> String {
    let p = fixture(EVIL);
    assert!(p.is_file(), "fixture {EVIL} missing");
    p.display().to_string()
}

/// A pickle that calls a callable outside the allowlist (`mylab.models.Net()`).
fn unknown_callable(dir: &Path) -> PathBuf {
    let p = dir.join("unknown.pkl");
    std::fs::write(
        &p,
        b"\x80\x04\x8c\x0cmylab.models\x94\x8c\x03Net\x94\x93)R.",
    )
    .unwrap();
    p
}

fn clean() -> String {
    fixture(CLEAN).display().to_string()
}

#[test]
fn exit_codes() {
    let o = run(&["scan", &clean()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let o = run(&["scan", &evil()]);
    assert_eq!(code(&o), 1);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("CRITICAL") && out.contains("PKL001") && out.contains("os.system"),
        "{out}"
    );
    // the gate moves the threshold
    let dir = tempfile::tempdir().unwrap();
    let u = unknown_callable(dir.path()).display().to_string();
    assert_eq!(code(&run(&["scan", "--fail-on", "critical", &u])), 0);
    assert_eq!(code(&run(&["scan", "--fail-on", "warning", &u])), 1);
    assert_eq!(code(&run(&["scan", "--fail-on", "critical", &evil()])), 1);
}

#[test]
fn missing_path_is_exit_2_and_others_still_scanned() {
    let o = run(&["scan", "--format", "json", "/nonexistent/model.pt", &evil()]);
    assert_eq!(code(&o), 2);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line per bad input: {stderr}");
    assert!(
        lines[0].contains("/nonexistent/model.pt") && lines[0].contains("No such file"),
        "{stderr}"
    );
    let j = json(&o);
    assert_eq!(j["summary"]["verdict"], "error");
    assert_eq!(j["summary"]["errors"], 1);
    assert!(
        j["summary"]["critical"].as_u64().unwrap() >= 1,
        "the other input was still scanned"
    );
}

#[test]
fn usage_errors_are_exit_2() {
    assert_eq!(code(&run(&["scan"])), 2);
    assert_eq!(code(&run(&["scan", "--format", "xml", "x"])), 2);
    assert_eq!(code(&run(&["frobnicate"])), 2);
    assert_eq!(code(&run(&["scan", "--jobs", "0", &clean()])), 2);
}

#[test]
fn json_report_matches_schema_and_is_deterministic() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/schema/probity.scan.v1.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let dir = fixture("malicious/zip");
    let args = [
        "scan",
        "--format",
        "json",
        "--hash",
        "--jobs",
        "2",
        &dir.display().to_string(),
        &clean(),
        &evil(),
        "/nonexistent",
    ];
    let a = run(&args);
    let b = run(&args);
    assert_eq!(a.stdout, b.stdout, "same input, same bytes");
    let j = json(&a);
    let errors: Vec<String> = validator.iter_errors(&j).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "schema violations: {errors:?}");
    assert_eq!(j["schema"], "probity.scan/v1");
    let files = j["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "files sorted by path");
    for f in files {
        if f["error"].is_null() {
            assert_eq!(
                f["sha256"].as_str().map(str::len),
                Some(64),
                "--hash adds sha256"
            );
        }
    }
    // without --hash there is no sha256 key
    let j = json(&run(&["scan", "--format", "json", &clean()]));
    assert!(j["files"][0].get("sha256").is_none());
}

#[test]
fn sha256_is_correct() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("abc.bin");
    std::fs::write(&p, b"abc").unwrap();
    let j = json(&run(&[
        "scan",
        "--format",
        "json",
        "--hash",
        &p.display().to_string(),
    ]));
    assert_eq!(
        j["files"][0]["sha256"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn output_file_and_text_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let o = run(&[
        "scan",
        "--format",
        "json",
        "--output",
        &out.display().to_string(),
        &evil(),
    ]);
    assert_eq!(code(&o), 1);
    assert!(o.stdout.is_empty());
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(j["summary"]["verdict"], "flagged");
    let o = run(&["scan", "--color", "never", &evil()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains('\x1b'), "no colour when asked");
    assert!(text.contains("FLAGGED"));
    let o = run(&["scan", "--color", "always", &evil()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains('\x1b'));
}

#[test]
fn format_is_detected_from_content_not_extension() {
    let dir = tempfile::tempdir().unwrap();
    let evil_bytes = std::fs::read(fixture(EVIL)).unwrap();
    let torch_bytes = std::fs::read(fixture(EVIL_TORCH)).unwrap();
    std::fs::write(dir.path().join("notes.txt"), &evil_bytes).unwrap();
    std::fs::write(dir.path().join("weights.safetensors"), &torch_bytes).unwrap();
    std::fs::write(
        dir.path().join("model.pkl"),
        b"just some text, not a pickle\n",
    )
    .unwrap();
    let j = json(&run(&[
        "scan",
        "--format",
        "json",
        &dir.path().display().to_string(),
    ]));
    let by = by_file_name(&j);
    assert_eq!(by["notes.txt"]["format"], "pickle");
    assert_eq!(by["weights.safetensors"]["format"], "pytorch-zip");
    // text under a pickle's name: not analysed as a pickle, and said so
    assert_eq!(by["model.pkl"]["format"], "text");
    assert_eq!(by["model.pkl"]["findings"][0]["rule"], "SCN004");
    assert_eq!(by["model.pkl"]["findings"][0]["severity"], "warning");
    assert_eq!(j["summary"]["critical"].as_u64().unwrap(), 2);
}

#[test]
fn zero_byte_and_truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pt");
    std::fs::write(&empty, b"").unwrap();
    let o = run(&["scan", "--format", "json", &empty.display().to_string()]);
    assert_eq!(
        code(&o),
        1,
        "an empty model file is a warning, neither skipped nor an error"
    );
    assert_eq!(json(&o)["files"][0]["findings"][0]["rule"], "SCN004");
    let blank = dir.path().join("empty.dat");
    std::fs::write(&blank, b"").unwrap();
    let o = run(&["scan", "--format", "json", &blank.display().to_string()]);
    assert_eq!(code(&o), 0, "an empty file is skipped, not an error");
    assert_eq!(json(&o)["files"][0]["findings"][0]["rule"], "SCN001");

    // a pickle cut in the middle: the payload before the cut is still critical
    let evil_bytes = std::fs::read(fixture(EVIL)).unwrap();
    let cut = dir.path().join("cut.pkl");
    std::fs::write(&cut, &evil_bytes[..evil_bytes.len() - 2]).unwrap();
    let o = run(&["scan", "--format", "json", &cut.display().to_string()]);
    assert_eq!(code(&o), 1);
    let rules: Vec<String> = json(&o)["files"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect();
    assert!(
        rules.contains(&"PKL001".into()) && rules.contains(&"PKL003".into()),
        "{rules:?}"
    );

    // a PyTorch zip cut before its central directory: members recovered, damage reported
    let torch_bytes = std::fs::read(fixture(EVIL_TORCH)).unwrap();
    for keep in [torch_bytes.len() - 30, torch_bytes.len() / 2, 40, 3] {
        let cut = dir.path().join(format!("cut{keep}.pt"));
        std::fs::write(&cut, &torch_bytes[..keep]).unwrap();
        let o = run(&["scan", "--format", "json", &cut.display().to_string()]);
        let c = code(&o);
        assert!(
            c == 0 || c == 1,
            "truncated zip ({keep} bytes) gives a verdict, not an error: {c}"
        );
        if keep > 40 {
            assert_eq!(c, 1, "truncated zip ({keep} bytes) is never clean");
        }
    }
}

#[test]
fn unreadable_file_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secret.pkl");
    std::fs::write(&p, b"\x80\x04K\x01.").unwrap();
    let target = if unsafe { libc::geteuid() } == 0 {
        // root reads anything: a dangling link named explicitly cannot be read either
        let link = dir.path().join("dangling.pkl");
        std::os::unix::fs::symlink(dir.path().join("gone"), &link).unwrap();
        link
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        p.clone()
    };
    let o = run(&["scan", &target.display().to_string(), &clean()]);
    assert_eq!(code(&o), 2);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&target.display().to_string()), "{stderr}");
}

#[test]
fn symlinks_loops_and_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(fixture(EVIL), root.join("evil.pkl")).unwrap();
    let outside = dir.path().join("outside.pkl");
    std::fs::copy(fixture(EVIL), &outside).unwrap();
    std::os::unix::fs::symlink(root.join("evil.pkl"), root.join("inside_link.pkl")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("outside_link.pkl")).unwrap();
    std::os::unix::fs::symlink(root.join("loop_b"), root.join("loop_a")).unwrap();
    std::os::unix::fs::symlink(root.join("loop_a"), root.join("loop_b")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("self_dir")).unwrap();
    let fifo = root.join("pipe");
    let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let o = run(&["scan", "--format", "json", &root.display().to_string()]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    let j = json(&o);
    let by = by_file_name(&j);
    assert_eq!(by["evil.pkl"]["findings"][0]["rule"], "PKL001");
    assert_eq!(
        by["inside_link.pkl"]["findings"][0]["rule"], "PKL001",
        "links inside the tree are followed"
    );
    for name in ["outside_link.pkl", "loop_a", "loop_b", "self_dir"] {
        assert_eq!(by[name]["findings"][0]["rule"], "SCN003", "{name}");
    }
    assert_eq!(by["pipe"]["findings"][0]["rule"], "SCN001");
    assert_eq!(j["summary"]["errors"], 0);
    // a loop named on the command line cannot be read: exit 2
    assert_eq!(
        code(&run(&["scan", &root.join("loop_a").display().to_string()])),
        2
    );
}

#[test]
fn directory_of_ten_thousand_files() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10_000 {
        let sub = dir.path().join(format!("d{}", i % 50));
        if i < 50 {
            std::fs::create_dir(&sub).unwrap();
        }
        std::fs::write(
            sub.join(format!("f{i}.pkl")),
            b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a.",
        )
        .unwrap();
    }
    let o = run(&[
        "scan",
        "--format",
        "json",
        "--jobs",
        "2",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let j = json(&o);
    assert_eq!(j["summary"]["files_scanned"], 10_000);
    assert_eq!(j["summary"]["warning"], 0);
}

#[test]
fn four_gigabyte_sparse_file() {
    let dir = tempfile::tempdir().unwrap();
    // sparse zeros
    let p = dir.path().join("huge.bin");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(4 << 30).unwrap();
    drop(f);
    let o = run(&["scan", "--format", "json", &p.display().to_string()]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["files"][0]["size"], 4u64 << 30);
    // a sparse file that starts as a pickle with a huge BINBYTES8: read lazily, reported truncated, never allocated
    let p = dir.path().join("huge.pkl");
    let mut head = vec![0x80, 4, 0x8e];
    head.extend_from_slice(&(8u64 << 30).to_le_bytes());
    std::fs::write(&p, &head).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(4 << 30).unwrap();
    drop(f);
    let o = run(&["scan", "--format", "json", &p.display().to_string()]);
    assert_eq!(code(&o), 1);
    let j = json(&o);
    assert_eq!(j["files"][0]["findings"][0]["rule"], "PKL003");
}

#[test]
fn rules_catalogue_and_generated_docs() {
    let o = run(&["rules"]);
    assert_eq!(code(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    for id in [
        "PKL001", "PKL002", "PKL003", "PKL004", "PKL005", "PKL006", "PKL007", "ARC001", "ARC003",
        "ARC007", "TRC001", "NPY001", "SCN001",
    ] {
        assert!(text.contains(id), "{id} missing from `probity rules`");
    }
    let md = run(&["rules", "--format", "markdown"]);
    let committed =
        std::fs::read_to_string(repo().join("docs/rules.md")).expect("docs/rules.md exists");
    assert_eq!(
        String::from_utf8_lossy(&md.stdout),
        committed,
        "docs/rules.md is stale: run `cargo run -- rules --format markdown > docs/rules.md`"
    );
    let j: serde_json::Value =
        serde_json::from_slice(&run(&["rules", "--format", "json"]).stdout).unwrap();
    for r in j.as_array().unwrap() {
        for key in ["id", "severity", "title", "what", "why", "example"] {
            assert!(
                !r[key].as_str().unwrap_or("").is_empty(),
                "rule {} lacks {key}",
                r["id"]
            );
        }
    }
}

/// `probity formats` lists the registry, `docs/formats.md` is its Markdown
/// (regenerated, never edited), and `probity scan --help` names every
/// registered format's summary: none of them can go stale.
#[test]
fn formats_catalogue_and_generated_docs() {
    let o = run(&["formats", "--format", "json"]);
    assert_eq!(code(&o), 0);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for n in [
        "zip",
        "7z",
        "numpy",
        "safetensors",
        "gguf",
        "hdf5",
        "tflite",
        "tar",
        "gzip",
        "pickle",
        "onnx",
        "tf-savedmodel",
        "tf-graphdef",
        "text",
    ] {
        assert!(names.contains(&n), "{n} missing from `probity formats`");
    }
    let help = String::from_utf8_lossy(&run(&["scan", "--help"]).stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for f in j.as_array().unwrap() {
        let summary = f["summary"].as_str().unwrap();
        let words: Vec<&str> = summary.split_whitespace().collect();
        assert!(
            help.contains(&words.join(" ")),
            "scan --help lacks the summary of {}",
            f["name"]
        );
        assert!(!f["reports"].as_array().unwrap().is_empty());
    }
    let md = run(&["formats", "--format", "markdown"]);
    let committed =
        std::fs::read_to_string(repo().join("docs/formats.md")).expect("docs/formats.md exists");
    assert_eq!(
        String::from_utf8_lossy(&md.stdout),
        committed,
        "docs/formats.md is stale: run `cargo run -- formats --format markdown > docs/formats.md`"
    );
    let text = String::from_utf8_lossy(&run(&["formats"]).stdout).to_string();
    assert!(text.contains("safetensors") && text.contains("reported as"));
}

#[test]
fn policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let unknown = unknown_callable(elsewhere.path());
    let model = dir.path().join("model.pkl");
    std::fs::copy(&unknown, &model).unwrap();
    let j = json(&run(&[
        "scan",
        "--format",
        "json",
        &model.display().to_string(),
    ]));
    let name = j["files"][0]["findings"][0]["evidence"]
        .as_str()
        .expect("an unknown callable is reported")
        .to_string();
    assert_eq!(j["files"][0]["findings"][0]["rule"], "PKL002");
    // allowing it exactly (probity.toml in the current directory) makes the file clean
    std::fs::write(
        dir.path().join("probity.toml"),
        format!("[[allow]]\ncallable = \"{name}\"\nreason = \"reviewed\"\n"),
    )
    .unwrap();
    let o = run_in(dir.path(), &["scan", "."]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    // a probity.toml inside a scanned folder (say, shipped with a downloaded
    // model) is not the policy: it cannot silence its own findings
    let o = run(&["scan", &dir.path().display().to_string()]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stdout));
    // allowing its whole module, and silencing the rule for its path only
    let module = name.rsplit_once('.').unwrap().0.to_string();
    std::fs::write(
        dir.path().join("probity.toml"),
        format!("[[allow]]\nmodule = \"{module}\"\nreason = \"our package\"\n"),
    )
    .unwrap();
    assert_eq!(code(&run_in(dir.path(), &["scan", "."])), 0);
    std::fs::write(
        dir.path().join("probity.toml"),
        "[[override]]\npaths = [\"model.*\"]\nignore = [\"PKL002\"]\nreason = \"reviewed\"\n",
    )
    .unwrap();
    assert_eq!(code(&run_in(dir.path(), &["scan", "model.pkl"])), 0);
    std::fs::copy(&model, dir.path().join("other.pkl")).unwrap();
    assert_eq!(code(&run_in(dir.path(), &["scan", "other.pkl"])), 1);
    std::fs::remove_file(dir.path().join("other.pkl")).unwrap();
    // whole dangerous modules cannot be allowed
    std::fs::write(
        dir.path().join("probity.toml"),
        "[[allow]]\nmodule = \"os\"\nreason = \"no\"\n",
    )
    .unwrap();
    let o = run_in(dir.path(), &["scan", "model.pkl"]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("allow[0].module"));
    // the allowlist never overrides the denylist
    std::fs::copy(fixture(EVIL), dir.path().join("evil.pkl")).unwrap();
    std::fs::write(
        dir.path().join("probity.toml"),
        "[[allow]]\ncallable = \"os.system\"\nreason = \"no\"\n",
    )
    .unwrap();
    assert_eq!(code(&run_in(dir.path(), &["scan", "."])), 1);
    // bad keys: exit 2, one line naming the key and the line
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "fail_on = \"warning\"\nfial_on = 1\n").unwrap();
    let o = run_in(
        dir.path(),
        &["scan", "--config", &cfg.display().to_string(), &clean()],
    );
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("fial_on") && err.contains("line 2"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // fail_on from the config
    std::fs::write(&cfg, "fail_on = \"critical\"\n").unwrap();
    let o = run(&[
        "scan",
        "--config",
        &cfg.display().to_string(),
        &unknown.display().to_string(),
    ]);
    assert_eq!(code(&o), 0);
}

#[test]
fn help_is_complete() {
    let o = run(&["--help"]);
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("scan") && t.contains("rules"));
    let o = run(&["scan", "--help"]);
    let t = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--format",
        "--output",
        "--fail-on",
        "--jobs",
        "--config",
        "--hash",
        "Exit codes",
    ] {
        assert!(t.contains(flag), "scan --help lacks {flag}");
    }
}

/// SARIF output validates against the official 2.1.0 schema (from the
/// serde-sarif crate, docs/schema/sarif-schema-2.1.0.json), is deterministic,
/// names every catalogue rule, and maps findings, members and unreadable
/// files the way GitHub code scanning reads them.
#[test]
fn sarif_output_is_valid_and_complete() {
    let mut schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/schema/sarif-schema-2.1.0.json")).unwrap(),
    )
    .unwrap();
    // the official schema's `language` patterns have a stray `]` that the
    // meta-schema's regex check rejects: use the pattern they mean (we never
    // emit `language`)
    fn fix(v: &mut serde_json::Value, n: &mut usize) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if k == "pattern" && x == "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$" {
                        *x = serde_json::json!("^[a-zA-Z]{2}(-[a-zA-Z]{2})?$");
                        *n += 1;
                    } else {
                        fix(x, n);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| fix(x, n)),
            _ => {}
        }
    }
    let mut fixed = 0;
    fix(&mut schema, &mut fixed);
    assert!(fixed >= 1);
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::json!({"chat_template": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"})
            .to_string(),
    )
    .unwrap();
    std::fs::copy(fixture(EVIL_TORCH), dir.path().join("model with space.pt")).unwrap();
    let args = ["scan", "--format", "sarif", ".", "missing.bin"];
    let a = run_in(dir.path(), &args);
    let b = run_in(dir.path(), &args);
    assert_eq!(a.stdout, b.stdout, "same input, same bytes");
    assert_eq!(a.status.code(), Some(2), "a missing path is still exit 2");
    let j: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let errors: Vec<String> = validator.iter_errors(&j).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "SARIF schema violations: {errors:?}");
    assert_eq!(j["version"], "2.1.0");
    let run = &j["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), probity_scan::catalogue::all().len());
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let results = run["results"].as_array().unwrap();
    assert!(results.len() >= 2);
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(ids[i], r["ruleId"].as_str().unwrap());
        let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert!(!uri.starts_with('/') && !uri.starts_with("./"), "{uri}");
    }
    let cfg = results
        .iter()
        .find(|r| r["ruleId"] == "CFG001")
        .expect("the template payload");
    assert_eq!(cfg["level"], "error");
    assert_eq!(
        cfg["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "tokenizer_config.json"
    );
    let pkl = results
        .iter()
        .find(|r| r["ruleId"] == "PKL001")
        .expect("the pickle payload");
    assert_eq!(
        pkl["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "model%20with%20space.pt"
    );
    // the pickle sits in a member of the zip: named as a logical location,
    // and no byte region (its offset is inside the member)
    assert_eq!(pkl["locations"][0]["logicalLocations"][0]["kind"], "member");
    assert!(pkl["locations"][0]["physicalLocation"]["region"].is_null());
    let rule = &rules[pkl["ruleIndex"].as_u64().unwrap() as usize];
    assert_eq!(rule["defaultConfiguration"]["level"], "error");
    assert_eq!(rule["properties"]["security-severity"], "9.5");
    let inv = &run["invocations"][0];
    assert_eq!(inv["executionSuccessful"], false);
    assert!(inv["toolExecutionNotifications"][0]["message"]["text"]
        .as_str()
        .unwrap()
        .contains("missing.bin"));
}

/// Resolves the CycloneDX schema's references to the SPDX and JSF schemas
/// from docs/schema/cyclonedx (no network).
struct CycloneDxSchemas;

impl jsonschema::Retrieve for CycloneDxSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or("").to_string();
        let p = repo().join("docs/schema/cyclonedx").join(name);
        Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?)
    }
}

#[test]
fn cyclonedx_bom_is_valid_and_describes_every_file() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("docs/schema/cyclonedx/bom-1.6.SNAPSHOT.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .with_retriever(CycloneDxSchemas)
        .build(&schema)
        .expect("schema compiles");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture(EVIL_TORCH), dir.path().join("model.pt")).unwrap();
    std::fs::copy(
        repo().join("fixtures/zoo/base/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        br#"{"model_type": "llama"}"#,
    )
    .unwrap();
    // a Hugging Face model card describes the models of its folder
    std::fs::write(
        dir.path().join("README.md"),
        "---\nlicense: apache-2.0\nbase_model: org/base-1b\ndatasets:\n- org/instructions\npipeline_tag: text-generation\nlanguage: [en, fr]\nmodel-index:\n- name: tuned-1b\n  results:\n  - dataset: {name: held-out, type: custom}\n    metrics:\n    - {type: accuracy, value: 0.71}\n---\n# tuned-1b\n\nA fine-tune.\n",
    )
    .unwrap();
    let args = ["scan", "--format", "cyclonedx", "."];
    let a = run_in(dir.path(), &args);
    let b = run_in(dir.path(), &args);
    assert_eq!(a.stdout, b.stdout, "same input, same bytes");
    assert_eq!(a.status.code(), Some(1), "the evil pickle still gates");
    let j: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    let errors: Vec<String> = validator.iter_errors(&j).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "CycloneDX schema violations: {errors:?}");
    // the validator does reject what the standard forbids
    let mut broken = j.clone();
    broken["components"][0]["type"] = serde_json::json!("weights");
    assert!(!validator.is_valid(&broken));
    assert_eq!(j["specVersion"], "1.6");
    let comps = j["components"].as_array().unwrap();
    assert_eq!(comps.len(), 4);
    let by: std::collections::HashMap<&str, &serde_json::Value> = comps
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c))
        .collect();
    assert_eq!(by["model.safetensors"]["type"], "machine-learning-model");
    assert_eq!(by["model.pt"]["type"], "machine-learning-model");
    assert_eq!(by["config.json"]["type"], "file");
    assert_eq!(by["README.md"]["type"], "file");
    let st = by["model.safetensors"];
    assert_eq!(
        st["modelCard"]["modelParameters"]["task"],
        "text-generation"
    );
    assert_eq!(
        st["modelCard"]["modelParameters"]["datasets"][0]["name"],
        "org/instructions"
    );
    assert_eq!(
        st["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["value"],
        "0.71"
    );
    assert_eq!(st["licenses"][0]["license"]["name"], "apache-2.0");
    assert_eq!(st["pedigree"]["ancestors"][0]["name"], "org/base-1b");
    assert!(by["config.json"].get("modelCard").is_none());
    // the SHA-256 is the file's
    use sha2::Digest;
    let want: String =
        sha2::Sha256::digest(std::fs::read(dir.path().join("model.safetensors")).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    assert_eq!(
        by["model.safetensors"]["hashes"][0]["content"],
        want.as_str()
    );
    let props = |c: &serde_json::Value| -> std::collections::HashMap<String, String> {
        c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().into(),
                    p["value"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(props(by["model.pt"])["probity:findings:critical"], "1");
    assert!(props(by["model.pt"])["probity:rules"].contains("PKL001"));
    // --sbom writes the same BOM beside a normal report
    let o = run_in(
        dir.path(),
        &[
            "scan",
            "--format",
            "json",
            "--sbom",
            "bom.json",
            "model.pt",
            "model.safetensors",
            "config.json",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let bom: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("bom.json")).unwrap())
            .unwrap();
    assert!(validator.is_valid(&bom));
    assert_eq!(bom["components"].as_array().unwrap().len(), 3);
}
