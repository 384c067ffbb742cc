//! Helpers shared by the deep-scan test files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Tensor;

/// The public mini model zoo (../shared/zoo-public/models or PROBITY_ZOO); the
/// tests fail when it is missing.
pub fn zoo() -> PathBuf {
    let p = std::env::var_os("PROBITY_ZOO")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/zoo-public/models")
        });
    assert!(
        p.join("base/config.json").is_file(),
        "the public zoo is required at {} (set PROBITY_ZOO)",
        p.display()
    );
    p
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Copies the files of a model folder (flat) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}
