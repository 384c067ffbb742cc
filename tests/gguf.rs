//! GGUF files in the deep scan: the tiny files of `fixtures/gguf` (written by
//! its `generate.py`, together with the logits and token ids that Hugging
//! Face transformers computes from the same files) hold every tensor type
//! Probity dequantizes, the llama (query/key rows permuted by llama.cpp's
//! convention) and qwen2 (biases, not permuted) architectures, and the
//! byte-level and SentencePiece tokenizers. Probity's logits and token ids
//! must match transformers'.
#![cfg(feature = "deep")]

use std::path::PathBuf;

use candle_core::Device;
use probity_deep::models::LoadedModel;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/gguf")
}

#[test]
fn gguf_models_match_transformers() {
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap())
            .unwrap();
    let files = reference.as_object().unwrap();
    assert!(files.len() >= 4);
    for (name, r) in files {
        let m = LoadedModel::load(&dir().join(name), &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.format, "gguf");
        assert_eq!(m.model_type, r["architecture"].as_str().unwrap(), "{name}");
        for (text, ids) in r["tokens"].as_object().unwrap() {
            let want: Vec<u32> = ids
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(m.encode(text), want, "{name}: tokens of {text:?}");
        }
        let prompt: Vec<u32> = r["prompt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let logits = m.model.forward(&prompt).unwrap();
        for (p, want) in r["positions"]
            .as_array()
            .unwrap()
            .iter()
            .zip(r["logits"].as_array().unwrap())
        {
            let got = logits
                .get(p.as_u64().unwrap() as usize)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let want: Vec<f32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(got.len(), want.len(), "{name}: vocabulary");
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 2e-3,
                "{name} position {p}: logits differ by {worst}"
            );
        }
    }
}

/// A GGUF file is found inside a folder that holds only it, and a file that
/// is not GGUF is refused with its name.
#[test]
fn gguf_paths() {
    use probity_deep::models::{model_path, ModelPath};
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("model.Q8_0.gguf");
    std::fs::copy(dir().join("qwen2-q8.gguf"), &f).unwrap();
    assert_eq!(model_path(tmp.path()).unwrap(), ModelPath::Gguf(f.clone()));
    assert_eq!(model_path(&f).unwrap(), ModelPath::Gguf(f.clone()));
    std::fs::write(tmp.path().join("second.gguf"), b"GGUF\x03\0\0\0").unwrap();
    let e = model_path(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("2 GGUF files"), "{e}");
    let not = tmp.path().join("notes.txt");
    std::fs::write(&not, b"hello").unwrap();
    let e = model_path(&not).unwrap_err().to_string();
    assert!(e.contains("not a GGUF file"), "{e}");
}

/// Runs probity with `args`, killed after `limit` (a hang guard, not a
/// timing check): (exit code, stderr).
fn probity_guarded(args: &[&std::ffi::OsStr], limit: std::time::Duration) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_probity"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.and_then(|s| s.code()), err)
}

/// Malformed GGUF files that still start with the GGUF magic (truncated at
/// every part, absurd counts and lengths) are refused by `probity deep` and
/// `probity spectral` with exit 2 and one line naming the file, never a
/// panic, a hang or unbounded memory; the static scan reads them without
/// crashing.
#[test]
fn malformed_gguf_files_are_one_line_exit_2() {
    let good = dir().join("qwen2-q8.gguf");
    let bytes = std::fs::read(&good).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [6, 20, 40, 300, 5000, bytes.len() / 2, bytes.len() - 64] {
        cases.push((format!("truncated-{cut}"), bytes[..cut].to_vec()));
    }
    let patched = |at: usize, v: u64| {
        let mut b = bytes.clone();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        b
    };
    // header: version u32 at 4, tensor count u64 at 8, metadata count u64
    // at 16, then the first key's length u64 at 24
    cases.push(("tensor-count".into(), patched(8, 1 << 60)));
    cases.push(("metadata-count".into(), patched(16, u64::MAX)));
    cases.push(("key-length".into(), patched(24, 1 << 40)));
    let mut v = bytes.clone();
    v[4..8].copy_from_slice(&99u32.to_le_bytes());
    cases.push(("version".into(), v));
    for (name, b) in &cases {
        let p = tmp.path().join(format!("{name}.gguf"));
        std::fs::write(&p, b).unwrap();
        for cmd in ["deep", "spectral"] {
            let (code, err) = probity_guarded(
                &[
                    cmd.as_ref(),
                    p.as_os_str(),
                    "--base".as_ref(),
                    good.as_os_str(),
                    "--budget".as_ref(),
                    "30".as_ref(),
                ][..if cmd == "deep" { 6 } else { 4 }],
                std::time::Duration::from_secs(300),
            );
            assert_eq!(code, Some(2), "{cmd} {name}: {err}");
            let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(lines.len(), 1, "{cmd} {name}: {err}");
            assert!(
                lines[0].starts_with("probity: ") && lines[0].contains(&format!("{name}.gguf")),
                "{cmd} {name}: {err}"
            );
            assert!(!err.contains("panicked"), "{cmd} {name}: {err}");
        }
        let (code, err) = probity_guarded(
            &["scan".as_ref(), p.as_os_str()],
            std::time::Duration::from_secs(120),
        );
        assert!(matches!(code, Some(0..=2)), "scan {name}: {code:?} {err}");
        assert!(!err.contains("panicked"), "scan {name}: {err}");
    }
}
