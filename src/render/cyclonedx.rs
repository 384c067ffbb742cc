//! CycloneDX 1.6 (JSON) bill of materials of a scan: one component per
//! scanned file, typed `machine-learning-model` for weight and model formats
//! and `file` for the rest, with its SHA-256, its format and Probity's
//! verdict on it as properties. Deterministic: no serial number and no
//! timestamp (both optional in the standard), components sorted by path.
//!
//! A model card (`README.md` with Hugging Face front matter) describes the
//! model files in its folder and below: they get its `modelCard` (task,
//! datasets, reported metrics, languages, tags), its licence and, as
//! `pedigree.ancestors`, the base models the card claims.
//!
//! The cyclonedx-bom crate stops at spec 1.5, so the document is built with
//! serde_json against the 1.6 schema (validated in the tests).

use serde_json::{json, Value};

use probity_report::{FileReport, Report, Severity};

/// Whether a file's format is a model (weights or a model definition), as
/// the analyzer that reads it declares in the scanner's registry.
fn is_model(format: &str) -> bool {
    probity_scan::registry::is_model(format)
}

fn prop(name: &str, value: impl ToString) -> Value {
    json!({"name": name, "value": value.to_string()})
}

/// The CycloneDX fields a model card gives a model component.
fn card_fields(c: &mut Value, card: &Value) {
    let strs = |k: &str| -> Vec<String> {
        card.get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut params = serde_json::Map::new();
    if let Some(t) = card.get("pipeline_tag").and_then(|t| t.as_str()) {
        params.insert("task".into(), json!(t));
    }
    let datasets = strs("datasets");
    if !datasets.is_empty() {
        params.insert(
            "datasets".into(),
            json!(datasets
                .iter()
                .map(|d| json!({"type": "dataset", "name": d}))
                .collect::<Vec<_>>()),
        );
    }
    let mut mc = json!({});
    if !params.is_empty() {
        mc["modelParameters"] = Value::Object(params);
    }
    if let Some(m) = card.get("metrics").and_then(|m| m.as_array()) {
        if !m.is_empty() {
            mc["quantitativeAnalysis"] = json!({"performanceMetrics": m});
        }
    }
    let mut props = Vec::new();
    for k in ["library_name", "model_name"] {
        if let Some(v) = card.get(k).and_then(|v| v.as_str()) {
            props.push(prop(&format!("huggingface:{k}"), v));
        }
    }
    for k in ["language", "tags", "base_model"] {
        let v = strs(k);
        if !v.is_empty() {
            props.push(prop(&format!("huggingface:{k}"), v.join(",")));
        }
    }
    if !props.is_empty() {
        mc["properties"] = json!(props);
    }
    c["modelCard"] = mc;
    if let Some(l) = card.get("license").and_then(|l| l.as_str()) {
        c["licenses"] = json!([{"license": {"name": l}}]);
    }
    let bases = strs("base_model");
    if !bases.is_empty() {
        c["pedigree"] = json!({"ancestors": bases
            .iter()
            .map(|b| json!({"type": "machine-learning-model", "name": b}))
            .collect::<Vec<_>>()});
    }
}

/// The model card that describes `path`: the one in its folder or the
/// nearest folder above it.
fn card_for<'a>(path: &str, cards: &'a [(String, &'a Value)]) -> Option<&'a Value> {
    std::path::Path::new(path)
        .ancestors()
        .skip(1)
        .find_map(|d| {
            let d = d.to_string_lossy();
            cards.iter().find(|(cd, _)| *cd == d).map(|(_, c)| *c)
        })
}

fn component(f: &FileReport, cards: &[(String, &Value)]) -> Value {
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
    if let Some(c) = &f.coverage {
        properties.push(prop("probity:coverage", c.label()));
        for r in &c.reasons {
            properties.push(prop("probity:coverage_reason", r));
        }
    }
    if let Some(src) = &f.sha256_source {
        // the digest is the source's claim (the Hub's LFS listing), not
        // computed from the bytes
        properties.push(prop("probity:sha256_source", src));
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

    if is_model(&f.format) {
        if let Some(card) = card_for(&f.path, cards) {
            card_fields(&mut c, card);
        }
    }
    c
}

/// The report as a CycloneDX 1.6 JSON document, pretty-printed.
pub fn render(report: &Report) -> String {
    let cards: Vec<(String, &Value)> = report
        .files
        .iter()
        .filter_map(|f| {
            let card = f.model_card.as_ref()?;
            let dir = std::path::Path::new(&f.path)
                .parent()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((dir, card))
        })
        .collect();
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
        "components": report
            .files
            .iter()
            .map(|f| component(f, &cards))
            .collect::<Vec<_>>(),
    });
    let mut s =
        serde_json::to_string_pretty(&bom).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}
