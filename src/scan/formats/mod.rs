//! One analyzer per container or file format. Each claims content by its
//! bytes (see [`crate::scan::sniff`]); the scanner core only dispatches.

pub mod compressed;
pub mod gguf;
pub mod hdf5;
pub mod keras;
pub mod modelcard;
pub mod numpy;
pub mod onnx;
pub mod protobuf;
pub mod python;
pub mod rules;
pub mod safetensors;
pub mod secrets;
pub mod sevenz;
pub mod shards;
pub mod tar;
pub mod template;
pub mod tensorflow;
pub mod text;
pub mod tflite;
pub mod torch;
pub mod zip;

use crate::finding::Finding;
use crate::limits;
use crate::scan::{rules as scan_rules, Sink};

/// Whether a path named inside a model file leaves the model's folder:
/// absolute, home-relative, a drive letter, a URL, or climbing out with `..`
/// (`\\` read as `/`). Loaders join such names to the model folder and
/// open the result.
pub fn escapes_folder(path: &str) -> bool {
    let p = path.replace('\\', "/");
    p.starts_with('/')
        || p.starts_with('~')
        || (p.len() >= 2 && p.as_bytes()[1] == b':')
        || p.contains("://")
        || p.split('/').any(|c| c == "..")
}

/// The first `n` problems joined with `; `, and how many more there are.
pub fn summarise(problems: &[String], n: usize) -> String {
    let mut m = problems[..problems.len().min(n)].join("; ");
    let more = problems.len().saturating_sub(n);
    if more > 0 {
        m.push_str(&format!("; and {more} more"));
    }
    m
}

/// The container-depth bound shared by every container analyzer: past
/// [`limits::MAX_CONTAINER_DEPTH`] the container is reported (`SCN002`) and
/// not opened. Returns true when the caller must stop.
pub fn too_deep(what: &str, member: &str, depth: u32, sink: &mut Sink) -> bool {
    if depth < limits::MAX_CONTAINER_DEPTH {
        return false;
    }
    sink.findings.push(
        Finding::new(
            &scan_rules::SCN002,
            format!(
                "{what} nested deeper than {} containers; not opened",
                limits::MAX_CONTAINER_DEPTH
            ),
        )
        .at(Some(member), None),
    );
    true
}

/// The finding for a member whose reading failed: a decompression bomb
/// (ARC006) when the bound stopped it, otherwise damage (ARC008).
pub fn member_failure(name: &str, e: &std::io::Error) -> Finding {
    match crate::scan::io::as_bomb(e) {
        Some(b) => Finding::new(&rules::ARC006, format!("member '{name}': {b}")),
        None => Finding::new(
            &rules::ARC008,
            format!("member '{name}' could not be read: {e}"),
        ),
    }
}
