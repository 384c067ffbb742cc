//! Container images that carry models: `docker save` tars (a
//! `manifest.json` listing layer tars, in the legacy `<id>/layer.tar`
//! layout or the OCI layout Docker 25 writes) and OCI image layout tars
//! (`oci-layout`, `index.json`, `blobs/sha256/…`). Every layer is a member
//! of the tar and is scanned by content like any other (a gzip or zstd-less
//! tar of files, models included), so a model hidden in any layer is found,
//! even one a later layer deletes. This module names the image and checks
//! that every layer its manifests list is present: a listed layer the tar
//! does not hold was not scanned, and the image is not clean (SCN005).
//! TorchServe archives written as tars (`--archive-format tgz`) are
//! recognised here too.

use probity_report::Finding;

use crate::Sink;

/// Top-level documents the tar scanner keeps for these checks.
pub const KEPT_DOCUMENTS: &[&str] = &[
    "manifest.json",
    "index.json",
    "oci-layout",
    super::torchserve::MANIFEST,
];

/// The largest kept document.
pub const MAX_DOCUMENT: u64 = 4 << 20;

fn norm(n: &str) -> &str {
    n.trim_start_matches("./")
}

/// What image (or archive) a tar with these member names is.
pub fn tar_kind(names: &[String]) -> Option<&'static str> {
    let has = |p: &str| names.iter().any(|n| norm(n) == p);
    if has(super::torchserve::MANIFEST) {
        return Some("torchserve-mar");
    }
    let layered = names
        .iter()
        .any(|n| norm(n).ends_with("/layer.tar") || norm(n).starts_with("blobs/sha256/"));
    if (has("manifest.json") || has("oci-layout") || has("index.json")) && layered {
        return Some("oci-image");
    }
    None
}

/// A `sha256:<hex>` digest as the path of its blob.
fn blob(digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("blobs/sha256/{hex}"))
}

pub fn check_tar(
    kind: &str,
    names: &[String],
    docs: &[(String, Vec<u8>)],
    member: &str,
    sink: &mut Sink,
) {
    let doc = |name: &str| {
        docs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    };
    if kind == "torchserve-mar" {
        let refs: Vec<&str> = names.iter().map(|n| norm(n)).collect();
        match doc(super::torchserve::MANIFEST).map(serde_json::from_slice::<serde_json::Value>) {
            Some(Ok(v)) => super::torchserve::check(&v, &refs, member, sink),
            _ => malformed(
                member,
                sink,
                "the TorchServe manifest could not be read or parsed; the archive was not judged"
                    .into(),
            ),
        }
        return;
    }
    let has = |p: &str| names.iter().any(|n| norm(n) == p);
    let mut listed: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    if let Some(bytes) = doc("manifest.json") {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Array(images)) => {
                for img in &images {
                    for l in img
                        .get("Layers")
                        .and_then(|l| l.as_array())
                        .into_iter()
                        .flatten()
                    {
                        match l.as_str() {
                            Some(p) => listed.push(p.to_string()),
                            None => {
                                problems.push("a layer entry of manifest.json is not a path".into())
                            }
                        }
                    }
                }
            }
            Ok(_) => problems.push("manifest.json is not a list of images".into()),
            Err(e) => problems.push(format!("manifest.json does not parse: {e}")),
        }
    }
    if let Some(bytes) = doc("index.json") {
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => {
                for m in v
                    .get("manifests")
                    .and_then(|m| m.as_array())
                    .into_iter()
                    .flatten()
                {
                    match m.get("digest").and_then(|d| d.as_str()).and_then(blob) {
                        Some(p) => listed.push(p),
                        None => {
                            problems.push("a manifest of index.json has no sha256 digest".into())
                        }
                    }
                }
            }
            Err(e) => problems.push(format!("index.json does not parse: {e}")),
        }
    }
    listed.sort();
    listed.dedup();
    let missing: Vec<&String> = listed.iter().filter(|p| !has(norm(p))).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} layer(s) or manifest(s) listed but not in the tar, not scanned: {}",
            missing.len(),
            missing
                .iter()
                .take(8)
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !problems.is_empty() {
        malformed(
            member,
            sink,
            format!(
                "container image not fully inspected: {}",
                crate::formats::summarise(&problems, 3)
            ),
        );
    }
}

fn malformed(member: &str, sink: &mut Sink, why: String) {
    sink.findings
        .push(Finding::new(&crate::rules::SCN005, why).at(Some(member), None));
}
