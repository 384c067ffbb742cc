//! Model-loading libraries pinned at vulnerable versions beside the weights
//! (DEP001 for exact pins in requirements files, DEP002 for the release a
//! model was saved with), each naming its CVEs in JSON, SARIF and text.

use std::process::Command;

fn scan(dir: &std::path::Path, format: &str) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(["scan", "--format", format])
        .arg(dir)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn findings(report: &str) -> Vec<(String, String, Vec<String>)> {
    let j: serde_json::Value = serde_json::from_str(report).unwrap();
    let mut out = Vec::new();
    for f in j["files"].as_array().unwrap() {
        let name = f["path"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        for x in f["findings"].as_array().unwrap() {
            let cves = x["cves"]
                .as_array()
                .map(|a| a.iter().map(|c| c.as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            out.push((name.clone(), x["rule"].as_str().unwrap().to_string(), cves));
        }
    }
    out.sort();
    out
}

#[test]
fn vulnerable_pins_and_saved_with_versions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("requirements.txt"),
        "# serving\ntorch==2.5.1+cu121\ntransformers[torch]==4.37.2 ; python_version >= \"3.9\"\nllama_cpp_python==0.2.60\nnumpy==1.26.4\nkeras>=3.0\nonnx==1.16.0\n",
    )
    .unwrap();
    std::fs::write(
        d.join("config.json"),
        r#"{"model_type": "llama", "transformers_version": "4.30.2"}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("generation_config.json"),
        r#"{"transformers_version": "4.48.0"}"#,
    )
    .unwrap();
    let (code, out) = scan(d, "json");
    assert_eq!(code, Some(1), "{out}");
    let got = findings(&out);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            (
                "config.json".into(),
                "DEP002".into(),
                s(&[
                    "CVE-2023-6730",
                    "CVE-2023-7018",
                    "CVE-2024-11392",
                    "CVE-2024-11393",
                    "CVE-2024-11394",
                    "CVE-2024-3568"
                ])
            ),
            (
                "requirements.txt".into(),
                "DEP001".into(),
                s(&[
                    "CVE-2024-11392",
                    "CVE-2024-11393",
                    "CVE-2024-11394",
                    "CVE-2024-3568"
                ])
            ),
            (
                "requirements.txt".into(),
                "DEP001".into(),
                s(&["CVE-2024-34359"])
            ),
            (
                "requirements.txt".into(),
                "DEP001".into(),
                s(&["CVE-2025-32434"])
            ),
        ],
        "{out}"
    );
    // SARIF tags each result with its CVEs; the text report lists them
    let (_, sarif) = scan(d, "sarif");
    let j: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    let tagged = j["runs"][0]["results"].as_array().unwrap().iter().any(|r| {
        r["properties"]["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == "CVE-2025-32434"))
    });
    assert!(tagged, "{sarif}");
    let (_, text) = scan(d, "text");
    assert!(text.contains("CVE-2025-32434"), "{text}");
    // fixed releases are quiet
    std::fs::write(
        d.join("requirements.txt"),
        "torch==2.6.0\ntransformers==4.48.0\n",
    )
    .unwrap();
    std::fs::write(
        d.join("config.json"),
        r#"{"transformers_version": "4.57.1"}"#,
    )
    .unwrap();
    let (code, out) = scan(d, "json");
    assert_eq!(code, Some(0), "{out}");
    assert!(findings(&out).is_empty(), "{out}");
}

#[test]
fn the_catalogue_lists_the_cves() {
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(["rules", "--format", "json"])
        .output()
        .unwrap();
    let rules: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cves = |id: &str| -> Vec<String> {
        rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["cves"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        cves("KRS002"),
        ["CVE-2025-1550", "CVE-2025-8747", "CVE-2025-9906"]
    );
    assert!(cves("DEP001").contains(&"CVE-2025-32434".to_string()));
    assert!(cves("PKL001").is_empty());
}
