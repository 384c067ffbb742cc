//! Probity's shared vocabulary, a leaf crate: a [`Finding`] (rule ID,
//! severity, title, message, location, evidence), collected per file in a
//! [`FileReport`] and per run in a [`Report`] (`probity.scan/v1`), and the
//! [`Rule`] type that every check declares. The scanner produces these and
//! the renderers only read them.

mod finding;
mod rule;

pub use finding::*;
pub use rule::Rule;

/// File extensions of model weights: any serialisation a loader reads
/// tensors from. Used wherever "the weights changed" or "this folder is a
/// model" is decided (the diff, the service's watches, the data-set scan).
const WEIGHT_EXTENSIONS: &[&str] = &[
    "safetensors",
    "gguf",
    "bin",
    "pt",
    "pth",
    "ckpt",
    "h5",
    "keras",
    "onnx",
    "msgpack",
    "npz",
    "npy",
    "pb",
    "tflite",
    "pkl",
    "pickle",
    "joblib",
    "model",
];

/// Whether a file name is that of model weights, by its extension.
pub fn is_weight_file(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, e)| WEIGHT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}
