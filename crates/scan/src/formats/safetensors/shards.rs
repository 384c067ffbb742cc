//! Sharded checkpoints: `model.safetensors.index.json` (and the
//! `pytorch_model.bin.index.json` of pickle shards) map every tensor name to
//! the shard file that holds it. Transformers opens `folder/shard` for each
//! value, so a value that leaves the folder makes the loader open another
//! file; and an index that disagrees with its shards loads a different set of
//! weights than the one reviewed.
//!
//! The index alone is judged wherever it is found (SFT004); when it is a file
//! on disk or in a remote repository, the shards beside it are opened too
//! (their safetensors headers only) and compared with it (SFT003).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use super::rules;
use crate::limits;
use crate::paths::escapes_folder as escapes;
use crate::Sink;
use probity_report::Finding;

/// Whether a JSON document is a shard index.
pub fn looks_like_index(v: &serde_json::Value) -> bool {
    v.get("weight_map").is_some_and(|m| m.is_object())
}

/// tensor → shard, for the string entries of the index.
fn weight_map(v: &serde_json::Value) -> (BTreeMap<String, String>, Vec<String>) {
    let mut map = BTreeMap::new();
    let mut bad = Vec::new();
    if let Some(m) = v.get("weight_map").and_then(|m| m.as_object()) {
        for (k, x) in m {
            match x.as_str() {
                Some(s) => {
                    map.insert(k.clone(), s.to_string());
                }
                None => bad.push(format!("tensor '{k}' maps to a non-string ({x})")),
            }
        }
    }
    (map, bad)
}

/// Judges the index document itself.
pub fn check_content(v: &serde_json::Value, member: &str, sink: &mut Sink) {
    let (map, bad) = weight_map(v);
    let outside: BTreeSet<&str> = map
        .values()
        .map(String::as_str)
        .filter(|s| escapes(s))
        .collect();
    if !outside.is_empty() {
        let list: Vec<String> = outside.iter().map(|s| format!("'{s}'")).collect();
        sink.findings.push(
            Finding::new(
                &rules::SFT004,
                format!(
                    "the shard index sends the loader outside the model folder: {}",
                    crate::formats::summarise(&list, 5)
                ),
            )
            .at(Some(member), None),
        );
    }
    if !bad.is_empty() {
        sink.findings.push(
            Finding::new(
                &rules::SFT003,
                format!(
                    "the shard index is malformed: {}",
                    crate::formats::summarise(&bad, 3)
                ),
            )
            .at(Some(member), None),
        );
    }
}

/// The tensor names of a safetensors file's header, or why they could not
/// be read.
fn shard_tensors(f: &mut dyn Read) -> Result<BTreeSet<String>, String> {
    let mut pre = [0u8; 8];
    f.read_exact(&mut pre)
        .map_err(|_| "shorter than a safetensors header".to_string())?;
    let n = u64::from_le_bytes(pre);
    if n > limits::MAX_SAFETENSORS_HEADER {
        return Err(format!("header of {n} bytes is over the limit"));
    }
    let mut header = Vec::new();
    f.take(n)
        .read_to_end(&mut header)
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format!("header is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("header is not a JSON object")?;
    Ok(obj
        .keys()
        .filter(|k| k.as_str() != "__metadata__")
        .cloned()
        .collect())
}

/// Compares a shard index (`index`, read again from its start) with the
/// shards beside it, each opened by `open` with its name relative to the
/// index's folder (`None`: no such file).
pub fn check_beside(index: &mut dyn crate::io::ReadSeek, open: crate::Sibling, sink: &mut Sink) {
    if index.seek(std::io::SeekFrom::Start(0)).is_err() {
        return;
    }
    let mut text = String::new();
    if index
        .take(limits::MAX_TEXT_DOCUMENT + 1)
        .read_to_string(&mut text)
        .is_err()
        || text.len() as u64 > limits::MAX_TEXT_DOCUMENT
    {
        return;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    let (map, _) = weight_map(&v);
    let mut by_shard: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (t, s) in &map {
        by_shard.entry(s.as_str()).or_default().insert(t.as_str());
    }
    let mut problems = Vec::new();
    for (shard, tensors) in &by_shard {
        if escapes(shard) {
            continue; // SFT004 already; never opened
        }
        let opened = match open(shard) {
            None => {
                problems.push(format!(
                    "shard '{shard}' ({} tensors) is not beside the index",
                    tensors.len()
                ));
                continue;
            }
            Some(_) if !shard.ends_with(".safetensors") => continue,
            Some(o) => o,
        };
        match opened
            .map_err(|e| e.to_string())
            .and_then(|mut f| shard_tensors(&mut f))
        {
            Ok(have) => {
                let missing: Vec<String> = tensors
                    .iter()
                    .filter(|t| !have.contains(**t))
                    .map(|t| format!("'{t}'"))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!(
                        "shard '{shard}' lacks tensors the index assigns to it: {}",
                        crate::formats::summarise(&missing, 4)
                    ));
                }
                let extra: Vec<String> = have
                    .iter()
                    .filter(|t| map.get(t.as_str()).map(String::as_str) != Some(*shard))
                    .map(|t| match map.get(t.as_str()) {
                        Some(other) => format!("'{t}' (indexed in '{other}')"),
                        None => format!("'{t}' (not indexed)"),
                    })
                    .collect();
                if !extra.is_empty() {
                    problems.push(format!(
                        "shard '{shard}' holds tensors the index does not assign to it: {}",
                        crate::formats::summarise(&extra, 4)
                    ));
                }
            }
            Err(e) => problems.push(format!("shard '{shard}' could not be read: {e}")),
        }
    }
    if !problems.is_empty() {
        sink.findings.push(Finding::new(
            &rules::SFT003,
            format!(
                "the shard index disagrees with its shards: {}",
                crate::formats::summarise(&problems, 4)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        for bad in ["../x.safetensors", "/abs.safetensors", "a/../../b", "C:\\x"] {
            assert!(escapes(bad), "{bad}");
        }
        assert!(!escapes("model-00001-of-00002.safetensors"));
    }
}
