//! CycloneDX 1.6 (JSON) bill of materials of a scan: one component per
//! scanned file, typed `machine-learning-model` for weight and model formats
//! and `file` for the rest, with its SHA-256, its format and Probity's
//! verdict on it as properties. Deterministic: no serial number and no
//! timestamp (both optional in the standard), components sorted by path.
//!
//! The cyclonedx-bom crate stops at spec 1.5, so the document is built with
//! serde_json against the 1.6 schema (validated in the tests).

use serde_json::{json, Value};

use crate::finding::{FileReport, Report, Severity};

/// Formats whose files are models (weights or model definitions).
const MODEL_FORMATS: &[&str] = &[
    "pickle",
    "joblib",
    "pytorch-zip",
    "pytorch-legacy",
    "pytorch-legacy-tar",
    "torchscript",
    "numpy",
    "npz",
    "safetensors",
    "gguf",
    "keras-config",
];

fn is_model(format: &str) -> bool {
    MODEL_FORMATS
        .iter()
        .any(|m| format == *m || format.starts_with(&format!("{m}+")))
}

fn prop(name: &str, value: impl ToString) -> Value {
    json!({"name": name, "value": value.to_string()})
}

fn component(f: &FileReport) -> Value {
    let count = |s: Severity| f.findings.iter().filter(|x| x.severity == s).count();
    let mut rules: Vec<&str> = f.findings.iter().map(|x| x.rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let name = std::path::Path::new(&f.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| f.path.clone());
    let mut properties = vec![
        prop("probity:path", &f.path),
        prop("probity:format", &f.format),
        prop("probity:size", f.size),
        prop("probity:findings:critical", count(Severity::Critical)),
        prop("probity:findings:warning", count(Severity::Warning)),
        prop("probity:findings:info", count(Severity::Info)),
    ];
    if !rules.is_empty() {
        properties.push(prop("probity:rules", rules.join(",")));
    }
    if let Some(e) = &f.error {
        properties.push(prop("probity:error", e));
    }
    let mut c = json!({
        "type": if is_model(&f.format) { "machine-learning-model" } else { "file" },
        "bom-ref": format!("file:{}", f.path),
        "name": name,
        "properties": properties,
    });
    if let Some(h) = &f.sha256 {
        c["hashes"] = json!([{"alg": "SHA-256", "content": h}]);
    }
    c
}

/// The report as a CycloneDX 1.6 JSON document, pretty-printed.
pub fn render(report: &Report) -> String {
    let bom = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "metadata": {
            "tools": {"components": [{
                "type": "application",
                "name": report.tool.name,
                "version": report.tool.version,
            }]},
            "properties": [
                prop("probity:verdict", format!("{:?}", report.summary.verdict).to_lowercase()),
                prop("probity:files", report.files.len()),
            ],
        },
        "components": report.files.iter().map(component).collect::<Vec<_>>(),
    });
    let mut s =
        serde_json::to_string_pretty(&bom).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}
