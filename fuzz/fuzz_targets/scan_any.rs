//! Any bytes, under a name chosen from the model extensions (so the
//! claimed-format checks run too), through the whole scanner: sniffing,
//! every analyzer, archives and compression. Must never panic; libFuzzer's
//! -timeout and -rss_limit_mb bound time and memory per input.
#![no_main]

use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "model.bin", "model.safetensors", "model.gguf", "model.onnx", "model.pt", "model.pkl",
    "model.joblib", "model.npy", "model.npz", "model.h5", "model.keras", "saved_model.pb",
    "model.tflite", "model.skops", "model.mar", "model.llamafile", "model.pdmodel",
    "model.mlmodel", "model.pte", "flax_model.msgpack", "model.ubj", "model.cbm", "model.nemo",
    "tokenizer_config.json", "config.yaml", "README.md", "modeling_x.py", "model.xml",
];

fuzz_target!(|data: &[u8]| {
    let (name, rest) = match data.split_first() {
        Some((b, rest)) => (NAMES[*b as usize % NAMES.len()], rest),
        None => ("empty", data),
    };
    let r = probity_fuzz::scan_bytes(name, rest);
    // a report is always produced, with a format
    assert!(!r.format.is_empty());
});
