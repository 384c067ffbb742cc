//! Fail closed, per file: what a file's name claims, and how completely its
//! content was analysed.
//!
//! Formats are detected by content, never by name. But a file named
//! `model.safetensors` whose bytes no format claims (a corrupted header, an
//! absurd header length, a Git LFS pointer checked out without LFS) is not
//! "not a model": the loader will try to read it as one, and a loader that
//! reads more leniently than the scanner is how malicious files slip past
//! scanners. Such a file is a warning (`SCN004`), never a skipped info.
//!
//! Every scanned file then gets a coverage level: `complete`, `partial`
//! (a rule that means "not fully inspected" fired: a limit, an encrypted
//! member, a malformed structure the analyzer stopped at) or `not_analysed`
//! (unknown content, unreadable, a link not followed), with the reasons.

use probity_report::{Coverage, FileReport, Finding, MODEL_SIGNATURE_FORMAT};

use crate::rules;
use crate::Sink;

/// The model format a file name claims, by its extension (and, for `.bin`,
/// its stem: PyTorch's conventional names; other `.bin` files are often raw
/// tensor data, such as OpenVINO IR weights or ONNX external data).
pub fn claimed(name: &str) -> Option<&'static str> {
    let base = name.rsplit(['/', '!']).next().unwrap_or(name);
    let lower = base.to_ascii_lowercase();
    let (stem, ext) = lower.rsplit_once('.')?;
    Some(match ext {
        "safetensors" => "safetensors",
        "gguf" => "GGUF",
        "onnx" => "ONNX",
        "pt" | "pth" | "ckpt" => "PyTorch",
        "bin" if PYTORCH_BIN_STEMS.iter().any(|s| stem.starts_with(s)) => "PyTorch",
        "pkl" | "pickle" | "dill" | "pdparams" => "pickle",
        "joblib" => "joblib",
        "npy" => "NumPy",
        "npz" => "NumPy archive",
        "h5" | "hdf5" => "HDF5",
        "keras" => "Keras",
        "pb" => "TensorFlow protobuf",
        "tflite" => "TFLite",
        "skops" => "skops",
        "mar" => "TorchServe archive",
        "llamafile" => "llamafile",
        "nemo" => "NeMo archive",
        "pdmodel" => "PaddlePaddle program",
        "mlmodel" => "CoreML",
        "pte" => "ExecuTorch",
        "msgpack" => "Flax msgpack",
        "ubj" => "XGBoost UBJSON",
        "cbm" => "CatBoost",
        _ => return None,
    })
}

/// Stems of `.bin` files that PyTorch and transformers write with
/// `torch.save`.
const PYTORCH_BIN_STEMS: &[&str] = &[
    "pytorch_model",
    "training_args",
    "optimizer",
    "scheduler",
    "rng_state",
    "adapter_model",
    "scaler",
];

/// Detected formats that satisfy a claim although they are not models
/// themselves: containers, whose content is analysed in turn.
const CONTAINERS: &[&str] = &[
    "zip", "tar", "7z", "gzip", "bzip2", "xz", "lz4", "zlib", "lzma",
];

/// Reports (SCN004) a file or member whose name claims a model format but
/// whose content Probity detected as something that is not one.
pub fn check_claim(name: &str, detected: &str, head: &[u8], member: Option<&str>, sink: &mut Sink) {
    let Some(kind) = claimed(name) else {
        return;
    };
    let base = detected.split('+').next().unwrap_or(detected);
    if crate::registry::is_model(detected) || CONTAINERS.contains(&base) {
        return;
    }
    let what = if head.starts_with(b"version https://git-lfs.github.com/spec/") {
        "is a Git LFS pointer, not the file itself (fetch it with `git lfs pull`)".to_string()
    } else {
        match detected {
            "empty" => "is empty".to_string(),
            "unknown" => "matches no format Probity reads (a corrupted or altered header, or another format under a model's name)".to_string(),
            other => format!("is {other}, not a model format"),
        }
    };
    sink.findings.push(
        Finding::new(
            &rules::SCN004,
            format!("the name claims a {kind} file but the content {what}; a loader may still read it as {kind}: not analysed as one"),
        )
        .at(member, None),
    );
}

/// Rules whose finding means part of the file was not inspected.
const PARTIAL: &[&str] = &[
    "SCN002", // a scan limit
    "SCN004", // content does not match the claimed format
    "SCN005", // a model structure that breaks its format part-way
    "PKL003", // a pickle stream that does not parse
    "GGF001", // a GGUF header out of bounds
    "NPY001", // a malformed NumPy header
    "SFT001", // a malformed safetensors header
    "ONX004", // an ONNX model not fully inspected
    "TF004",  // a TensorFlow model not fully inspected
    "KRS004", // an HDF5 file not fully inspected
    "ARC004", // an encrypted or unreadable archive member
    "ARC006", // a decompression bomb, stopped
    "CFG003", // a template that does not parse
];

/// Sets the coverage of every file report that has none (signature
/// results, which check models rather than files, get none).
pub fn assess(files: &mut [FileReport]) {
    for f in files.iter_mut() {
        if f.coverage.is_none() && f.format != MODEL_SIGNATURE_FORMAT {
            f.coverage = Some(of(f));
        }
    }
}

fn of(f: &FileReport) -> Coverage {
    if let Some(e) = &f.error {
        return Coverage::not_analysed(vec![e.clone()]);
    }
    let claim: Vec<String> = f
        .findings
        .iter()
        .filter(|x| x.rule == rules::SCN004.id && x.location.member.is_none())
        .map(|x| format!("{}: {}", x.rule, x.message))
        .collect();
    if !claim.is_empty() && matches!(f.format.as_str(), "unknown" | "empty" | "text") {
        return Coverage::not_analysed(claim);
    }
    match f.format.as_str() {
        "unknown" => {
            return Coverage::not_analysed(vec![
                "the content matches no format Probity reads".into()
            ])
        }
        "empty" => return Coverage::not_analysed(vec!["empty file".into()]),
        "symlink" => return Coverage::not_analysed(vec!["symbolic link not followed".into()]),
        "special" => {
            return Coverage::not_analysed(vec![
                "special file (FIFO, socket or device) not opened".into()
            ])
        }
        _ => {}
    }
    let mut reasons: Vec<String> = f
        .findings
        .iter()
        .filter(|x| PARTIAL.contains(&x.rule.as_str()))
        .map(|x| match &x.location.member {
            Some(m) => format!("{} in {m}: {}", x.rule, x.message),
            None => format!("{}: {}", x.rule, x.message),
        })
        .collect();
    reasons.sort();
    reasons.dedup();
    if reasons.is_empty() {
        Coverage::complete()
    } else {
        Coverage::partial(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims() {
        assert_eq!(claimed("model.safetensors"), Some("safetensors"));
        assert_eq!(
            claimed("dir/PYTORCH_MODEL-00001-of-00002.bin"),
            Some("PyTorch")
        );
        assert_eq!(claimed("a.zip!inner/model.pt"), Some("PyTorch"));
        assert_eq!(claimed("openvino_model.bin"), None);
        assert_eq!(claimed("config.json"), None);
        assert_eq!(claimed("README"), None);
        assert_eq!(claimed("weights.h5"), Some("HDF5"));
    }
}
