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
