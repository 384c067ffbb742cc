//! Hugging Face model cards: a `README.md` whose YAML front matter carries the
//! model's metadata (license, base model, datasets, task, library, languages,
//! tags). Nothing in a card runs; its metadata is kept for the CycloneDX
//! bill of materials (provenance: which base model a fine-tune claims, which
//! datasets, which licence). Credentials in the card are found by the text
//! analyzer like anywhere else.

use serde_json::{json, Map, Value};

/// Largest front matter parsed.
const MAX_FRONT_MATTER: usize = 256 << 10;

/// Front-matter keys that make a Markdown file a model card.
const CARD_KEYS: &[&str] = &[
    "license",
    "base_model",
    "datasets",
    "pipeline_tag",
    "library_name",
    "language",
    "tags",
    "model-index",
    "model_name",
];

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .take(64)
            .collect(),
        _ => Vec::new(),
    }
}

/// The card metadata of a Markdown document with YAML front matter, or None
/// when the text is not a model card.
pub fn parse(text: &str) -> Option<Value> {
    let body = text.trim_start_matches('\u{feff}');
    let rest = body
        .strip_prefix("---\n")
        .or_else(|| body.strip_prefix("---\r\n"))?;
    let end = rest.match_indices("\n---").map(|(i, _)| i).find(|&i| {
        let after = &rest[i + 4..];
        after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n")
    })?;
    if end > MAX_FRONT_MATTER {
        return None;
    }
    let yaml = &rest[..end];
    let v: Value = serde_yaml_ng::from_str(yaml).ok()?;
    let obj = v.as_object()?;
    if !CARD_KEYS.iter().any(|k| obj.contains_key(*k)) {
        return None;
    }
    let mut card = Map::new();
    let mut put = |k: &str, v: Value| {
        if !(v.is_null() || v.as_array().is_some_and(|a| a.is_empty())) {
            card.insert(k.to_string(), v);
        }
    };
    put("license", json!(strings(obj.get("license")).first()));
    put("base_model", json!(strings(obj.get("base_model"))));
    put("datasets", json!(strings(obj.get("datasets"))));
    put(
        "pipeline_tag",
        json!(strings(obj.get("pipeline_tag")).first()),
    );
    put(
        "library_name",
        json!(strings(obj.get("library_name")).first()),
    );
    put("language", json!(strings(obj.get("language"))));
    put("tags", json!(strings(obj.get("tags"))));
    let name = obj
        .get("model-index")
        .and_then(|m| m.get(0))
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .or_else(|| obj.get("model_name").and_then(|n| n.as_str()));
    put("model_name", json!(name));
    // reported metrics: model-index[*].results[*].metrics[*]
    let mut metrics = Vec::new();
    for entry in obj
        .get("model-index")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
    {
        for res in entry
            .get("results")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            let dataset = res
                .get("dataset")
                .and_then(|d| d.get("name").or_else(|| d.get("type")))
                .and_then(|d| d.as_str())
                .unwrap_or("");
            for m in res
                .get("metrics")
                .and_then(|m| m.as_array())
                .into_iter()
                .flatten()
            {
                let kind = m
                    .get("type")
                    .or_else(|| m.get("name"))
                    .and_then(|t| t.as_str())
                    .unwrap_or("");
                let value = match m.get("value") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => continue,
                };
                if metrics.len() < 64 {
                    metrics.push(json!({"type": kind, "value": value, "slice": dataset}));
                }
            }
        }
    }
    put("metrics", Value::Array(metrics));
    Some(Value::Object(card))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_of_a_card() {
        let card = parse(
            "---\nlicense: apache-2.0\nbase_model: meta-llama/Llama-3.2-1B\ndatasets:\n- tatsu-lab/alpaca\npipeline_tag: text-generation\nmodel-index:\n- name: my-tune\n  results:\n  - dataset: {name: MMLU, type: mmlu}\n    metrics:\n    - {type: accuracy, value: 0.41}\n---\n# My tune\n",
        )
        .unwrap();
        assert_eq!(card["license"], "apache-2.0");
        assert_eq!(card["base_model"][0], "meta-llama/Llama-3.2-1B");
        assert_eq!(card["datasets"][0], "tatsu-lab/alpaca");
        assert_eq!(card["model_name"], "my-tune");
        assert_eq!(card["metrics"][0]["value"], "0.41");
        // ordinary Markdown, and front matter without card keys
        assert!(parse("# Title\n\ntext").is_none());
        assert!(parse("---\ntitle: post\n---\nbody").is_none());
        // an unterminated front matter
        assert!(parse("---\nlicense: mit\n").is_none());
    }
}
