//! Fail closed, per file: a file named like a model format whose content is
//! not one is a warning (SCN004), never a skipped info; every file's report
//! says how completely it was analysed, in JSON, SARIF and CycloneDX; and
//! `--fail-on-incomplete` gates on it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scan(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .arg("scan")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (
        o.status.code(),
        v,
        format!("{stdout}{}", String::from_utf8_lossy(&o.stderr)),
    )
}

fn file<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with(name))
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

fn rules(f: &serde_json::Value) -> Vec<&str> {
    f["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["rule"].as_str().unwrap())
        .collect()
}

/// Bytes no format claims: not UTF-8, not a protobuf (wire type 7), no magic.
const JUNK: &[u8] = &[
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xfe, 0xfd, 0x01, 0x02,
];

#[test]
fn every_model_named_file_that_does_not_parse_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "model.safetensors",
        "model.gguf",
        "model.onnx",
        "model.pt",
        "model.pth",
        "last.ckpt",
        "pytorch_model-00001-of-00002.bin",
        "training_args.bin",
        "clf.pkl",
        "clf.joblib",
        "w.npy",
        "w.npz",
        "model.h5",
        "model.keras",
        "saved_model.pb",
        "model.tflite",
    ];
    for n in names {
        std::fs::write(dir.path().join(n), JUNK).unwrap();
    }
    // not claimed: OpenVINO weights are raw tensor data named .bin
    std::fs::write(dir.path().join("openvino_model.bin"), JUNK).unwrap();
    let (code, r, out) = scan(&["--format", "json", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    for n in names {
        let f = file(&r, n);
        assert_eq!(rules(f), ["SCN004"], "{n}: {f}");
        assert_eq!(f["findings"][0]["severity"], "warning");
        assert_eq!(f["coverage"]["level"], "not_analysed", "{n}: {f}");
        assert!(
            f["coverage"]["reasons"][0]
                .as_str()
                .unwrap()
                .starts_with("SCN004"),
            "{f}"
        );
    }
    let ov = file(&r, "openvino_model.bin");
    assert_eq!(rules(ov), ["SCN001"]);
    assert_eq!(ov["coverage"]["level"], "not_analysed");
    assert_eq!(r["summary"]["incomplete"], names.len() + 1);
}

#[test]
fn absurd_header_empty_file_and_lfs_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // the header length says 2^63 bytes
    let mut st = (u64::MAX >> 1).to_le_bytes().to_vec();
    st.extend_from_slice(br#"{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#);
    std::fs::write(d.join("model.safetensors"), &st).unwrap();
    std::fs::write(d.join("empty.safetensors"), b"").unwrap();
    std::fs::write(
        d.join("pytorch_model.bin"),
        b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n",
    )
    .unwrap();
    let (code, r, out) = scan(&["--format", "json", d.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    for (name, says) in [
        ("model.safetensors", "matches no format"),
        ("empty.safetensors", "is empty"),
        ("pytorch_model.bin", "Git LFS pointer"),
    ] {
        let f = file(&r, name);
        assert!(rules(f).contains(&"SCN004"), "{name}: {f}");
        let msg = f["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["rule"] == "SCN004")
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(says), "{name}: {msg}");
        assert_eq!(f["coverage"]["level"], "not_analysed", "{name}");
    }
    // the text report says so too
    let o = Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(["scan", d.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("SCN004"), "{text}");
    assert!(text.contains("coverage: not analysed"), "{text}");
    assert!(text.contains("3 file(s) not completely analysed"), "{text}");
}

#[test]
fn a_member_that_does_not_parse_makes_its_archive_partial() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bundle.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let o = zip::write::SimpleFileOptions::default();
    w.start_file("weights/model.safetensors", o).unwrap();
    w.write_all(JUNK).unwrap();
    w.start_file("notes.txt", o).unwrap();
    w.write_all(b"hello").unwrap();
    w.finish().unwrap();
    let (code, r, out) = scan(&["--format", "json", p.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    let f = file(&r, "bundle.zip");
    let scn = f["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["rule"] == "SCN004")
        .unwrap_or_else(|| panic!("{f}"));
    assert_eq!(scn["location"]["member"], "weights/model.safetensors");
    assert_eq!(f["coverage"]["level"], "partial", "{f}");
}

fn clean_model(dir: &Path) {
    std::fs::copy(
        repo().join("fixtures/zoo/base/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
}

#[test]
fn fail_on_incomplete_gates_on_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    clean_model(d);
    std::fs::write(d.join("LICENSE"), "Apache-2.0\n").unwrap();
    // complete: the clean model and plain text (read for credentials)
    let (code, r, out) = scan(&[
        "--format",
        "json",
        "--fail-on-incomplete",
        d.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        file(&r, "model.safetensors")["coverage"]["level"],
        "complete"
    );
    assert_eq!(file(&r, "LICENSE")["format"], "text");
    assert_eq!(file(&r, "LICENSE")["coverage"]["level"], "complete");
    assert_eq!(r["summary"]["incomplete"], 0);
    // a binary blob no format claims: info only, so the scan passes ...
    std::fs::write(d.join("blob.dat"), JUNK).unwrap();
    let (code, r, out) = scan(&["--format", "json", d.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(r["summary"]["verdict"], "clean");
    assert_eq!(r["summary"]["incomplete"], 1);
    // ... unless complete coverage is required
    let (code, r, out) = scan(&[
        "--format",
        "json",
        "--fail-on-incomplete",
        d.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(r["summary"]["verdict"], "flagged");
    // a pickle cut short is partial
    let p = repo().join("fixtures/malicious/pickle/stream_truncated_after_call.pkl");
    let (_, r, _) = scan(&["--format", "json", p.to_str().unwrap()]);
    let f = file(&r, "stream_truncated_after_call.pkl");
    assert_eq!(f["coverage"]["level"], "partial", "{f}");
    assert!(
        f["coverage"]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("PKL003"),
        "{f}"
    );
    // SARIF and CycloneDX carry the coverage of each file
    let (_, sarif, _) = scan(&["--format", "sarif", d.to_str().unwrap()]);
    let arts = sarif["runs"][0]["artifacts"].as_array().unwrap();
    let blob = arts
        .iter()
        .find(|a| a["location"]["uri"].as_str().unwrap().ends_with("blob.dat"))
        .unwrap();
    assert_eq!(blob["properties"]["probity:coverage"], "not_analysed");
    let (_, bom, _) = scan(&["--format", "cyclonedx", d.to_str().unwrap()]);
    let comp = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().ends_with("blob.dat"))
        .unwrap_or_else(|| panic!("{bom}"));
    assert!(
        comp["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "probity:coverage" && p["value"] == "not_analysed"),
        "{comp}"
    );
}

/// No benign fixture or public-corpus file is a false SCN004.
#[test]
fn no_benign_file_claims_a_format_it_does_not_have() {
    let (_, r, out) = scan(&[
        "--format",
        "json",
        repo().join("fixtures/benign").to_str().unwrap(),
    ]);
    let bad: Vec<String> = r["files"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .filter(|f| rules(f).contains(&"SCN004"))
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
}
