//! The public labelled corpus (samples from picklescan's and ModelAudit's test
//! suites, vendored in tests/data/corpus): every file of a format Probity reads
//! (the pickle family, chat templates in JSON, YAML and standalone files,
//! configs, safetensors, Keras HDF5, TensorFlow SavedModel) is scanned;
//! malicious ones must be flagged at their expected severity or higher, benign
//! ones must stay free of warnings and criticals, unclear ones must not crash.
//!
//! Set PROBITY_CORPUS to use another copy. The test fails if the corpus is missing.

mod expected;

use std::collections::BTreeMap;
use std::path::PathBuf;

use probity_report::Severity;
use probity_scan::Ctx;

const PICKLE_FAMILY: &[&str] = &[
    "pickle",
    "pytorch-zip",
    "pytorch-legacy",
    "npy",
    "npz",
    "zip",
    "7z",
    "zip-encrypted",
    "invalid-pickle",
    "png",
    "skops",
    // documents and weights
    "json",
    "json-chat-template",
    "yaml-chat-template",
    "jinja",
    "safetensors",
    // the other model formats
    "keras-h5",
    "tf-savedmodel-pb",
];

fn corpus_dir() -> PathBuf {
    std::env::var_os("PROBITY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus"))
}

#[test]
fn public_corpus_scanned_formats() {
    let dir = corpus_dir();
    let labels_path = dir.join("labels.json");
    let text = std::fs::read_to_string(&labels_path).unwrap_or_else(|e| {
        panic!(
            "the public corpus is required at {} ({e}); set PROBITY_CORPUS",
            labels_path.display()
        )
    });
    let labels: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&text).expect("labels.json parses");
    let mut checked = 0;
    let mut failures = Vec::new();
    // the exact rules are recorded for the vendored copy only
    let mut expected = std::env::var_os("PROBITY_CORPUS").is_none().then(|| {
        expected::Expected::load(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus-rules.json"),
        )
    });
    for (rel, label) in &labels {
        let format = label["format"].as_str().unwrap_or("");
        if !PICKLE_FAMILY.contains(&format) {
            continue;
        }
        let path = dir.join(rel);
        let report = probity_scan::scan_file(&path, rel.clone(), &Ctx::default());
        if let Some(e) = expected.as_mut() {
            failures.extend(e.check(rel, &report));
        }
        checked += 1;
        let max = report.max_severity();
        let expect = label["expect"].as_str().unwrap_or("clean");
        let unclear = label["malicious"].is_null();
        // a harmless file under a model's name that is not that model (a PNG
        // named .pt) is a warning by design (SCN004: loaders pick their
        // reader by name), whatever the source's label says
        let misnamed = !report.findings.is_empty()
            && report.findings.iter().all(|f| f.rule == "SCN004")
            && label["malicious"] == false;
        // a harmless skops file that names a type skops itself does not
        // trust (a class from `__main__`) is a warning by design: unknown
        // means warning, and `skops.io.load` refuses it without `trusted=`
        let untrusted = !report.findings.is_empty()
            && report.findings.iter().all(|f| f.rule == "SKP002")
            && label["malicious"] == false;
        let ok = if report.error.is_some() {
            false
        } else if unclear || misnamed || untrusted {
            true
        } else {
            match expect {
                "critical" => max == Some(Severity::Critical),
                "warning" => max >= Some(Severity::Warning),
                _ => max <= Some(Severity::Info),
            }
        };
        if !ok {
            failures.push(format!(
                "{rel}: expected {expect}, got {:?} (error {:?}); findings {:?}",
                max,
                report.error,
                report
                    .findings
                    .iter()
                    .map(|f| (&f.rule, f.severity))
                    .collect::<Vec<_>>()
            ));
        }
    }
    if let Some(e) = expected {
        failures.extend(e.finish());
    }
    assert!(checked >= 200, "only {checked} corpus files found");
    assert!(
        failures.is_empty(),
        "{} of {checked} corpus files misjudged:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
