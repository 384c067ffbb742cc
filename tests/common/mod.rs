//! Helpers shared by the test files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Tensor;

/// The public mini model zoo (tests/data/zoo-public/models, or PROBITY_ZOO); the
/// tests fail when it is missing.
pub fn zoo() -> PathBuf {
    let p = std::env::var_os("PROBITY_ZOO")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/zoo-public/models")
        });
    assert!(
        p.join("base/config.json").is_file(),
        "the public zoo is required at {} (set PROBITY_ZOO)",
        p.display()
    );
    p
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Scans `bytes` written to a temporary file called `name`.
pub fn scan_bytes(name: &str, bytes: &[u8]) -> probity_report::FileReport {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    probity_scan::scan_file(&p, name.into(), &probity_scan::Ctx::default())
}

/// The rule IDs of a file report's findings, in order.
pub fn rules(r: &probity_report::FileReport) -> Vec<&str> {
    r.findings.iter().map(|f| f.rule.as_str()).collect()
}

/// Copies the files of a model folder (flat) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// The JSON a command printed, after checking it exited 0 (stderr shown
/// otherwise).
pub fn json_ok(o: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("the command printed JSON")
}

/// Schema violations of `report` against `docs/schema/NAME`.
pub fn schema_errors(name: &str, report: &serde_json::Value) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/schema")
        .join(name);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).expect("schema compiles");
    v.iter_errors(report).map(|e| e.to_string()).collect()
}

/// A JSON scan report's files keyed by their path under `prefix` (a folder
/// or a remote URI), for comparing a remote scan with a local one.
pub fn files_by_rel(
    report: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    let j: serde_json::Value = serde_json::from_str(report).unwrap();
    j["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| {
            let rel = f["path"]
                .as_str()?
                .strip_prefix(prefix)?
                .trim_start_matches('/')
                .to_string();
            Some((rel, f.clone()))
        })
        .collect()
}

/// What must agree between a local and a remote scan of the same file.
pub fn verdict(f: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "format": f["format"],
        "size": f["size"],
        "error": f["error"],
        "findings": f["findings"],
    })
}
