//! Hydra / OmegaConf configs: `_target_` names a callable that
//! `hydra.utils.instantiate` imports and calls with the node's other keys as
//! arguments. NeMo restores a `.nemo` model (a tar) by instantiating its
//! `model_config.yaml`, so a config beside the weights is code: a target in
//! the process, code-evaluation, file or network families (the same table
//! as pickles and Keras objects) is critical (HYD001); a target outside the
//! libraries model configs instantiate is a warning (HYD002).

use probity_report::Finding;

use super::rules;
use crate::python_danger;
use crate::Sink;

/// Top-level packages whose classes model configs instantiate.
const KNOWN: &[&str] = &[
    "nemo",
    "torch",
    "torchaudio",
    "torchvision",
    "pytorch_lightning",
    "lightning",
    "transformers",
    "megatron",
    "apex",
    "torchmetrics",
    "omegaconf",
    "hydra",
    "sentencepiece",
    "tokenizers",
    "timm",
    "peft",
];

/// The most `_target_` nodes reported per document.
const MAX_TARGETS: usize = 64;

/// Whether a text document may be a Hydra config (cheap pre-check).
pub fn mentions_target(text: &str) -> bool {
    text.contains("_target_")
}

/// Parses `text` as YAML (JSON is YAML) and judges its `_target_` nodes.
pub fn check_text(text: &str, member: &str, sink: &mut Sink) -> bool {
    let Ok(v) = serde_yaml_ng::from_str::<serde_json::Value>(text) else {
        return false;
    };
    check(&v, member, sink)
}

/// Judges the `_target_` nodes of a parsed config; whether it had any.
pub fn check(v: &serde_json::Value, member: &str, sink: &mut Sink) -> bool {
    let mut targets = Vec::new();
    collect(v, "$", 0, &mut targets);
    for (path, target) in targets.iter().take(MAX_TARGETS) {
        judge(target, path, member, sink);
    }
    !targets.is_empty()
}

fn collect(v: &serde_json::Value, path: &str, depth: usize, out: &mut Vec<(String, String)>) {
    if depth > 64 || out.len() > MAX_TARGETS {
        return;
    }
    match v {
        serde_json::Value::Object(m) => {
            if let Some(t) = m.get("_target_").and_then(|t| t.as_str()) {
                out.push((path.to_string(), t.trim().to_string()));
            }
            for (k, x) in m {
                collect(x, &format!("{path}.{k}"), depth + 1, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect(x, &format!("{path}[{i}]"), depth + 1, out);
            }
        }
        _ => {}
    }
}

fn judge(target: &str, path: &str, member: &str, sink: &mut Sink) {
    // a bare name is looked up among the builtins
    let full = if target.contains('.') {
        target.to_string()
    } else {
        format!("builtins.{target}")
    };
    if let Some(hit) = python_danger::judge_import(&full) {
        sink.findings.push(
            Finding::new(
                &rules::HYD001,
                format!(
                    "`_target_: {target}` at {path} ({}: {}): instantiating this config calls it",
                    hit.family.name, hit.family.why
                ),
            )
            .at(Some(member), None)
            .evidence(target.to_string()),
        );
        return;
    }
    let top = full.split('.').next().unwrap_or("");
    if !KNOWN.contains(&top) {
        sink.findings.push(
            Finding::new(
                &rules::HYD002,
                format!("`_target_: {target}` at {path} names a callable outside the libraries model configs instantiate (NeMo, PyTorch, Lightning, transformers, …); instantiating this config imports and calls it"),
            )
            .at(Some(member), None)
            .evidence(target.to_string()),
        );
    }
}
