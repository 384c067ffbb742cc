//! Our own fixtures (fixtures/generate.py): benign files in every supported
//! layout must produce no warning or critical finding; malicious ones must be
//! flagged at their expected severity or higher, by exactly the rules
//! recorded in `expected-rules.json` beside the manifest.

mod expected;

use std::collections::BTreeMap;
use std::path::PathBuf;

use probity_report::Severity;
use probity_scan::Ctx;

#[test]
fn fixture_manifest() {
    check_manifest("fixtures", 50, 50);
}

/// The format fixtures (fixtures/formats/generate.py): real small ONNX, Keras
/// (.h5 and .keras), GGUF with the chat templates of six model families,
/// sharded safetensors, SavedModel and TFLite files, benign and malicious.
#[test]
fn format_fixture_manifest() {
    check_manifest("fixtures/formats", 15, 15);
}

/// The framework fixtures (fixtures/frameworks/generate.py): skops,
/// TorchServe, llamafile, PaddlePaddle, CoreML, ExecuTorch, OpenVINO, Flax,
/// XGBoost, LightGBM, CatBoost, OCI images, dill and cloudpickle, and
/// malformed files under their names. Each is also reported under the
/// format the manifest records, and every framework format has at least one
/// benign and one flagged fixture.
#[test]
fn framework_fixture_manifest() {
    check_manifest("fixtures/frameworks", 15, 25);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/frameworks");
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let manifest: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut wrong = Vec::new();
    let mut seen: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (rel, m) in &manifest {
        let report = probity_scan::scan_file(&dir.join(rel), rel.clone(), &Ctx::default());
        let want = m["format"].as_str().unwrap();
        if report.format != want {
            wrong.push(format!("{rel}: format {} (expected {want})", report.format));
        }
        let e = seen.entry(want.to_string()).or_default();
        if m["expect"] == "clean" {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for f in [
        "skops",
        "torchserve-mar",
        "paddle-program",
        "coreml",
        "executorch",
        "openvino-ir",
        "flax-msgpack",
        "xgboost",
        "lightgbm",
        "catboost",
        "oci-image",
    ] {
        let (b, m) = seen.get(f).copied().unwrap_or_default();
        assert!(b >= 1 && m >= 1, "{f}: {b} benign and {m} flagged fixtures");
    }
}

fn check_manifest(sub: &str, min_benign: usize, min_malicious: usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(sub);
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let manifest: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&text).expect("manifest parses");
    let mut failures = Vec::new();
    let mut expected = expected::Expected::load(dir.join("expected-rules.json"));
    let (mut benign, mut malicious) = (0, 0);
    for (rel, m) in &manifest {
        let report = probity_scan::scan_file(&dir.join(rel), rel.clone(), &Ctx::default());
        failures.extend(expected.check(rel, &report));
        let max = report.max_severity();
        let expect = m["expect"].as_str().unwrap_or("clean");
        let ok = report.error.is_none()
            && match expect {
                "critical" => max == Some(Severity::Critical),
                "warning" => max >= Some(Severity::Warning),
                _ => max <= Some(Severity::Info),
            };
        if expect == "clean" {
            benign += 1;
        } else {
            malicious += 1;
        }
        if !ok {
            failures.push(format!(
                "{rel}: expected {expect}, got {max:?} (error {:?}): {:?}",
                report.error,
                report
                    .findings
                    .iter()
                    .map(|f| format!("{} {}", f.rule, f.message))
                    .collect::<Vec<_>>()
            ));
        }
    }
    failures.extend(expected.finish());
    assert!(
        benign >= min_benign && malicious >= min_malicious,
        "manifest too small: {benign} benign, {malicious} malicious"
    );
    assert!(
        failures.is_empty(),
        "{} fixtures misjudged:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The joblib layout is understood, not tolerated: benign joblib files produce
/// no finding at all (not even a parse error downgraded somewhere).
#[test]
fn joblib_files_parse_completely() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/benign");
    let mut n = 0;
    for entry in walkdir::WalkDir::new(&dir).sort_by_file_name() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if !entry.file_type().is_file() || !name.contains("joblib") {
            continue;
        }
        let r = probity_scan::scan_file(entry.path(), name.clone(), &Ctx::default());
        assert!(
            r.findings
                .iter()
                .all(|f| f.rule != "PKL003" && f.rule != "PKL008"),
            "{name}: {:?}",
            r.findings
        );
        assert_eq!(r.format, "joblib", "{name}");
        n += 1;
    }
    assert!(n >= 8, "only {n} joblib fixtures");
}

/// An OCI image layout unpacked into a folder (what `skopeo copy
/// oci:DIR` or `docker save` and `tar -x` leave): the layer blobs have no
/// extension and are read by content, so a pickle inside a layer is found.
#[test]
fn oci_layout_folders_are_read_by_content() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/frameworks");
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::open(root.join("malicious/oci/pickle-layer.tar")).unwrap();
    tar::Archive::new(f).unpack(dir.path()).unwrap();
    let reports = probity_scan::scan_paths(&[dir.path().to_path_buf()], &Ctx::default());
    let layer = reports
        .iter()
        .find(|r| r.findings.iter().any(|f| f.rule == "PKL001"))
        .expect("the layer's pickle is found");
    assert!(layer.path.contains("blobs/sha256/"), "{}", layer.path);
    assert_eq!(layer.format, "tar");
    // the same folder without the malicious layer is clean
    std::fs::remove_file(
        dir.path()
            .join(&layer.path[layer.path.find("blobs").unwrap()..]),
    )
    .ok();
    let clean = probity_scan::scan_paths(&[dir.path().to_path_buf()], &Ctx::default());
    assert!(clean
        .iter()
        .all(|r| r.max_severity() <= Some(Severity::Info)));
}
