//! Containers: zip (and the PyTorch, NumPy and Keras layouts inside it), tar,
//! 7z and single-stream compression. Every member is scanned like a file of
//! its own, within the depth and decompression bounds.

pub mod compressed;
pub mod rules;
pub mod sevenz;
pub mod tar;
pub mod zip;

use probity_report::Finding;

/// The finding for a member whose reading failed: a decompression bomb
/// (ARC006) when the bound stopped it, otherwise damage (ARC008).
pub fn member_failure(name: &str, e: &std::io::Error) -> Finding {
    match crate::io::as_bomb(e) {
        Some(b) => Finding::new(&rules::ARC006, format!("member '{name}': {b}")),
        None => Finding::new(
            &rules::ARC008,
            format!("member '{name}' could not be read: {e}"),
        ),
    }
}
