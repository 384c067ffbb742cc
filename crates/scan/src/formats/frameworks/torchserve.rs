//! TorchServe model archives (`.mar`): a zip (or tar) whose
//! `MAR-INF/MANIFEST.json` names the serialized weights, the handler, an
//! optional model definition file and a requirements file. TorchServe
//! imports the handler and model file when the model is registered, so the
//! archive ships code: MAR001 names it (the Python members are judged by
//! the Python rules as they are scanned), MAR002 flags manifest paths that
//! resolve outside the archive.

use probity_report::Finding;

use super::rules;
use crate::Sink;

/// TorchServe's own handlers, named without a file.
const BUILTIN_HANDLERS: &[&str] = &[
    "image_classifier",
    "image_segmenter",
    "object_detector",
    "text_classifier",
    "text_classification",
    "dense_retrieval",
];

/// The manifest's member path.
pub const MANIFEST: &str = "MAR-INF/MANIFEST.json";

/// Judges a parsed manifest against the archive's member names.
pub fn check(manifest: &serde_json::Value, names: &[&str], member: &str, sink: &mut Sink) {
    let model = manifest.get("model").unwrap_or(manifest);
    let field = |k: &str| {
        model
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let has = |p: &str| {
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == p.trim_start_matches("./"))
    };
    let mut code: Vec<String> = Vec::new();
    let mut outside: Vec<String> = Vec::new();
    let consider =
        |what: &str, p: &str, is_code: bool, code: &mut Vec<String>, outside: &mut Vec<String>| {
            if escapes(p) || !has(p) {
                outside.push(format!("{what} `{p}`"));
            } else if is_code {
                code.push(format!("{what} `{p}`"));
            }
        };
    if let Some(h) = field("handler") {
        // `handler.py` or `handler.py:entry_point`; a bare name is built in
        let file = h.split(':').next().unwrap_or(h);
        if file.ends_with(".py") || file.contains('/') {
            consider("handler", file, true, &mut code, &mut outside);
        } else if !BUILTIN_HANDLERS.contains(&file) {
            // a module name: TorchServe imports `<name>.py` from the archive
            // or, failing that, from the server's Python path
            let py = format!("{file}.py");
            if has(&py) {
                code.push(format!("handler `{py}`"));
            } else {
                outside.push(format!(
                    "handler module `{file}` (imported from the server's Python path)"
                ));
            }
        }
    }
    if let Some(m) = field("modelFile") {
        consider("model file", m, true, &mut code, &mut outside);
    }
    if let Some(s) = field("serializedFile") {
        consider("serialized file", s, false, &mut code, &mut outside);
    }
    if let Some(r) = field("requirementsFile") {
        consider("requirements file", r, true, &mut code, &mut outside);
    }
    // other Python modules shipped with `--extra-files`
    let extra: Vec<&&str> = names
        .iter()
        .filter(|n| n.ends_with(".py") && !code.iter().any(|c| c.contains(&format!("`{n}`"))))
        .collect();
    for n in extra {
        code.push(format!("extra module `{n}`"));
    }
    if !code.is_empty() {
        sink.findings.push(
            Finding::new(
                &rules::MAR001,
                format!(
                    "TorchServe imports or installs what this archive ships when the model is registered: {}",
                    code.join(", ")
                ),
            )
            .at(Some(member), None)
            .evidence(code.join(", ")),
        );
    }
    if !outside.is_empty() {
        sink.findings.push(
            Finding::new(
                &rules::MAR002,
                format!(
                    "the manifest names what the archive does not hold: {}",
                    outside.join(", ")
                ),
            )
            .at(Some(member), None)
            .evidence(outside.join(", ")),
        );
    }
}

fn escapes(p: &str) -> bool {
    p.starts_with('/')
        || p.starts_with('\\')
        || p.split(['/', '\\']).any(|s| s == "..")
        || p.contains(':')
}
