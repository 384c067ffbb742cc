//! The published vulnerabilities a finding matches, named by CVE ID in the
//! report (JSON `cves`, SARIF result tags, the text report).
//!
//! A finding carries a CVE only when the file exploits that vulnerability
//! in a loader (or, for the archive rules, in the scanners the CVE was
//! filed against). A rule's `references` may list more (for example the
//! scanner bypasses a pickle rule was written against); those are not
//! claims about each file.

use probity_report::Finding;

/// Rules whose every finding matches the listed CVEs.
const BY_RULE: &[(&str, &[&str])] = &[
    // Keras Lambda layers run their bytecode on load (Keras < 2.13)
    ("KRS001", &["CVE-2024-3660"]),
    // ONNX external data outside the model folder (onnx < 1.16)
    ("ONX001", &["CVE-2022-25882", "CVE-2024-27318"]),
    // chat templates that reach Python internals: llama-cpp-python renders
    // GGUF templates without a sandbox (< 0.2.72)
    ("CFG001", &["CVE-2024-34359"]),
    ("CFG002", &["CVE-2024-34359"]),
    // zip tricks filed against picklescan
    ("ARC001", &["CVE-2025-1944"]),
    ("ARC003", &["CVE-2025-10156"]),
    ("ARC005", &["CVE-2025-1945"]),
];

/// Sets `cves` on the findings that match published vulnerabilities (those
/// that already name theirs, such as DEP001, are left as they are).
pub fn tag(findings: &mut [Finding]) {
    for f in findings.iter_mut() {
        if !f.cves.is_empty() {
            continue;
        }
        if f.rule == "KRS002" {
            // which safe_mode bypass the config uses
            let text = format!("{} {}", f.message, f.evidence.as_deref().unwrap_or(""));
            let mut ids = Vec::new();
            if text.contains("get_file") {
                ids.push("CVE-2025-8747");
            }
            if text.contains("enable_unsafe_deserialization") {
                ids.push("CVE-2025-9906");
            }
            if ids.is_empty() {
                ids.push("CVE-2025-1550");
            }
            f.cves = ids.into_iter().map(str::to_string).collect();
            continue;
        }
        if let Some((_, ids)) = BY_RULE.iter().find(|(r, _)| *r == f.rule) {
            f.cves = ids.iter().map(|s| s.to_string()).collect();
        }
    }
}

/// Every CVE a rule's findings can carry (for the catalogue).
pub fn for_rule(rule: &str) -> Vec<&'static str> {
    match rule {
        "KRS002" => vec!["CVE-2025-1550", "CVE-2025-8747", "CVE-2025-9906"],
        "DEP001" | "DEP002" => {
            let mut v: Vec<&'static str> = crate::formats::config::advisories::ADVISORIES
                .iter()
                .flat_map(|a| a.cves.iter().copied())
                .collect();
            v.sort();
            v.dedup();
            v
        }
        _ => BY_RULE
            .iter()
            .find(|(r, _)| *r == rule)
            .map(|(_, ids)| ids.to_vec())
            .unwrap_or_default(),
    }
}
