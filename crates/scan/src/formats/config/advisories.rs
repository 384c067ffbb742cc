//! Model-loading libraries pinned at versions with published
//! vulnerabilities, in the files shipped beside the weights: exact pins in
//! `requirements*.txt` (DEP001, the version that will load the model), and
//! the library version a model was saved with (`transformers_version` in
//! `config.json`, `keras_version` in a Keras config; DEP002, informational:
//! it says which releases the publisher used, not which one will load it).
//!
//! The advisory table is small and kept by hand: each entry names the
//! package as PyPI spells it, the first fixed version, the CVEs and the
//! advisory it comes from. Checked against the sources on 2026-12-06.

use probity_report::Finding;

use super::rules;
use crate::Sink;

/// One advisory: versions from `introduced` (when known) up to, not
/// including, `fixed` are affected.
pub struct Advisory {
    pub package: &'static str,
    pub introduced: Option<&'static str>,
    pub fixed: &'static str,
    pub cves: &'static [&'static str],
    pub summary: &'static str,
    pub source: &'static str,
}

/// The advisories (as of 2026-12-06).
pub static ADVISORIES: &[Advisory] = &[
    Advisory {
        package: "torch",
        introduced: None,
        fixed: "2.6.0",
        cves: &["CVE-2025-32434"],
        summary: "torch.load(weights_only=True) can still run code",
        source: "https://github.com/pytorch/pytorch/security/advisories/GHSA-53q9-r3pm-6pq6",
    },
    Advisory {
        package: "transformers",
        introduced: None,
        fixed: "4.36.0",
        cves: &["CVE-2023-6730", "CVE-2023-7018"],
        summary: "RagRetriever and TransfoXL unpickle files named by the model",
        source: "https://github.com/advisories/GHSA-3863-2447-669p",
    },
    Advisory {
        package: "transformers",
        introduced: None,
        fixed: "4.38.0",
        cves: &["CVE-2024-3568"],
        summary: "TFPreTrainedModel.load_repo_checkpoint unpickles checkpoint files",
        source: "https://nvd.nist.gov/vuln/detail/CVE-2024-3568",
    },
    Advisory {
        package: "transformers",
        introduced: None,
        fixed: "4.48.0",
        cves: &["CVE-2024-11392", "CVE-2024-11393", "CVE-2024-11394"],
        summary: "MobileViTV2, MaskFormer and Trax model loading deserialises untrusted data",
        source: "https://github.com/advisories/GHSA-qxrp-vhvm-j765",
    },
    Advisory {
        package: "keras",
        introduced: None,
        fixed: "2.13.1",
        cves: &["CVE-2024-3660"],
        summary: "Lambda layers run their code when a model is loaded",
        source: "https://github.com/advisories/GHSA-x4wf-678h-2pmq",
    },
    Advisory {
        package: "keras",
        introduced: Some("3.0.0"),
        fixed: "3.9.0",
        cves: &["CVE-2025-1550"],
        summary: "a .keras config can import and call any function despite safe_mode",
        source: "https://github.com/keras-team/keras/security/advisories/GHSA-48g7-3x6r-xfhp",
    },
    Advisory {
        package: "keras",
        introduced: Some("3.0.0"),
        fixed: "3.11.0",
        cves: &["CVE-2025-8747", "CVE-2025-9906"],
        summary:
            "safe_mode bypasses through keras.utils.get_file and enable_unsafe_deserialization",
        source: "https://nvd.nist.gov/vuln/detail/CVE-2025-9906",
    },
    Advisory {
        package: "onnx",
        introduced: None,
        fixed: "1.16.0",
        cves: &["CVE-2022-25882", "CVE-2024-27318"],
        summary: "external_data paths read files outside the model folder",
        source: "https://github.com/advisories/GHSA-whh8-fjgc-qp73",
    },
    Advisory {
        package: "llama-cpp-python",
        introduced: Some("0.2.30"),
        fixed: "0.2.72",
        cves: &["CVE-2024-34359"],
        summary: "GGUF chat templates are rendered without a Jinja sandbox",
        source:
            "https://github.com/abetlen/llama-cpp-python/security/advisories/GHSA-56xg-wfcc-g829",
    },
    Advisory {
        package: "skops",
        introduced: None,
        fixed: "0.12.0",
        cves: &["CVE-2025-54412"],
        summary: "untrusted operator calls hidden from the trusted-types check",
        source: "https://github.com/skops-dev/skops/security/advisories/GHSA-m7f4-hrc6-fwg3",
    },
];

/// PyPI's normalised name: lower case, runs of `-`, `_` and `.` as `-`.
fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// A release version as numbers (`2.5.1+cu121` → [2, 5, 1]); pre-release
/// and local parts are dropped, which can only make a version look older
/// (flagged), never newer.
fn numbers(v: &str) -> Option<Vec<u64>> {
    let core = v.trim().split(['+', ' ']).next()?;
    let mut out = Vec::new();
    for part in core.split('.') {
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            break;
        }
        out.push(digits.parse().ok()?);
        if digits.len() != part.len() {
            break; // 1.0rc1: a pre-release of 1.0
        }
    }
    (!out.is_empty()).then_some(out)
}

fn older(v: &[u64], than: &[u64]) -> bool {
    let n = v.len().max(than.len());
    for i in 0..n {
        let (a, b) = (
            v.get(i).copied().unwrap_or(0),
            than.get(i).copied().unwrap_or(0),
        );
        if a != b {
            return a < b;
        }
    }
    false
}

/// The advisories that affect `package` at `version`.
pub fn affecting(package: &str, version: &str) -> Vec<&'static Advisory> {
    let p = normalise(package);
    let Some(v) = numbers(version) else {
        return Vec::new();
    };
    ADVISORIES
        .iter()
        .filter(|a| {
            a.package == p
                && numbers(a.fixed).is_some_and(|f| older(&v, &f))
                && a.introduced
                    .and_then(numbers)
                    .is_none_or(|i| !older(&v, &i))
        })
        .collect()
}

fn describe(package: &str, version: &str, hits: &[&Advisory]) -> (String, Vec<String>) {
    let mut cves: Vec<String> = hits
        .iter()
        .flat_map(|a| a.cves.iter().map(|c| c.to_string()))
        .collect();
    cves.sort();
    cves.dedup();
    let parts: Vec<String> = hits
        .iter()
        .map(|a| {
            format!(
                "{} (fixed in {}: {})",
                a.cves.join(", "),
                a.fixed,
                a.summary
            )
        })
        .collect();
    (format!("{package} {version}: {}", parts.join("; ")), cves)
}

/// Whether a file name is a pip requirements file.
pub fn is_requirements(name: &str) -> bool {
    let base = name
        .rsplit(['/', '!'])
        .next()
        .unwrap_or(name)
        .to_ascii_lowercase();
    base.starts_with("requirements") && base.ends_with(".txt")
}

/// Checks the exact pins (`name==version`) of a requirements file.
pub fn check_requirements(text: &str, member: &str, sink: &mut Sink) {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let line = line.split(';').next().unwrap_or("").trim();
        let Some((name, version)) = line.split_once("==") else {
            continue;
        };
        let name = name.split('[').next().unwrap_or(name).trim();
        let version = version.trim_start_matches('=').trim();
        let hits = affecting(name, version);
        if hits.is_empty() {
            continue;
        }
        let (what, cves) = describe(name, version, &hits);
        sink.findings.push(
            Finding::new(
                &rules::DEP001,
                format!("the requirements pin a vulnerable model-loading library: {what}"),
            )
            .at(Some(member), None)
            .evidence(line.to_string())
            .cves(cves),
        );
    }
}

/// Checks the library versions a JSON config says the model was saved with.
pub fn check_saved_with(v: &serde_json::Value, member: &str, sink: &mut Sink) {
    for (key, package) in [
        ("transformers_version", "transformers"),
        ("keras_version", "keras"),
    ] {
        let Some(version) = v.get(key).and_then(|x| x.as_str()) else {
            continue;
        };
        let hits = affecting(package, version);
        if hits.is_empty() {
            continue;
        }
        let (what, cves) = describe(package, version, &hits);
        sink.findings.push(
            Finding::new(
                &rules::DEP002,
                format!("saved with a model-loading library that has published vulnerabilities ({key}): {what}; load it with a fixed release"),
            )
            .at(Some(member), None)
            .evidence(format!("{key}: {version}"))
            .cves(cves),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(numbers("2.5.1+cu121"), Some(vec![2, 5, 1]));
        assert_eq!(numbers("4.38.0.dev0"), Some(vec![4, 38, 0]));
        assert_eq!(numbers("1.0rc1"), Some(vec![1, 0]));
        assert!(older(&[2, 5, 1], &[2, 6]));
        assert!(!older(&[2, 6], &[2, 6, 0]));
        assert!(!older(&[3, 11, 0], &[3, 9, 0]));
        assert_eq!(normalise("Llama_CPP.Python"), "llama-cpp-python");
        let ids = |p: &str, v: &str| -> Vec<&str> {
            affecting(p, v)
                .iter()
                .flat_map(|a| a.cves.iter().copied())
                .collect()
        };
        assert_eq!(ids("torch", "2.5.1"), ["CVE-2025-32434"]);
        assert!(ids("torch", "2.6.0").is_empty());
        assert_eq!(ids("transformers", "4.40.0").len(), 3);
        assert!(ids("transformers", "4.48.0").is_empty());
        assert_eq!(ids("Keras", "3.10.0"), ["CVE-2025-8747", "CVE-2025-9906"]);
        assert_eq!(ids("keras", "2.12.0"), ["CVE-2024-3660"]);
        assert!(ids("llama-cpp-python", "0.2.20").is_empty());
        assert!(is_requirements("model/requirements-gpu.txt"));
        assert!(!is_requirements("model/notes.txt"));
    }
}
