//! HDF5 files, read with the pure-Rust `hdf5-reader` crate (no libhdf5, no
//! external files or links followed). Legacy Keras models (`model.h5`,
//! Keras 2 and `tf.keras`) keep their architecture as JSON in the root
//! group's `model_config` attribute and their compile settings in
//! `training_config`: both are judged like a `.keras` config (Lambda
//! bytecode, dangerous and custom modules). Datasets (weights) are never read.

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};

use hdf5_reader::{Hdf5File, OpenOptions};

use super::rules;
use crate::format::{model, Format, Head, Label, Stream};
use crate::limits;
use crate::{Detected, Sink};
use probity_report::Finding;

const MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// Whether the head is an HDF5 file: the signature at offset 0 or after a
/// user block (512, 1024, 2048, … bytes).
pub fn sniff(head: &[u8]) -> bool {
    let mut at = 0usize;
    while at + 8 <= head.len() {
        if &head[at..at + 8] == MAGIC {
            return true;
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
    false
}

/// Root attributes that hold Keras JSON.
const KERAS_ATTRS: &[&str] = &["model_config", "training_config"];

struct Read5 {
    keras_version: Option<String>,
    configs: Vec<(String, String)>,
    problems: Vec<String>,
}

fn read_root(data: Vec<u8>) -> Result<Read5, String> {
    let opts = OpenOptions::default()
        .with_max_read_bytes(limits::MAX_TEXT_DOCUMENT as usize)
        .with_max_object_header_bytes(limits::MAX_TEXT_DOCUMENT as usize)
        .with_chunk_cache_bytes(0);
    let file = Hdf5File::from_vec_with_options(data, opts).map_err(|e| e.to_string())?;
    let root = file.root_group().map_err(|e| e.to_string())?;
    let attrs = root.attributes().map_err(|e| e.to_string())?;
    let mut out = Read5 {
        keras_version: None,
        configs: Vec::new(),
        problems: Vec::new(),
    };
    let text = |a: &hdf5_reader::Attribute| -> Result<String, String> {
        match a.read_string() {
            Ok(s) => Ok(s),
            Err(first) => {
                let data = root.file_data().map_err(|e| e.to_string())?;
                a.read_vlen_string(&data, root.offset_size())
                    .map_err(|e| format!("{first}; {e}"))
            }
        }
    };
    for a in &attrs {
        let name = a.name.clone();
        if name == "keras_version" {
            out.keras_version = text(a).ok();
        } else if KERAS_ATTRS.contains(&name.as_str()) {
            match text(a) {
                Ok(s) => out.configs.push((name, s)),
                Err(e) => out
                    .problems
                    .push(format!("attribute '{name}' could not be read: {e}")),
            }
        }
    }
    Ok(out)
}

/// Scans an HDF5 file read from `r`.
pub fn scan<R: Read>(r: &mut R, member: &str, sink: &mut Sink) -> io::Result<Detected> {
    let mut data = Vec::new();
    r.by_ref()
        .take(limits::MAX_HDF5_BYTES + 1)
        .read_to_end(&mut data)?;
    let at = |f: Finding| f.at(Some(member), None);
    if data.len() as u64 > limits::MAX_HDF5_BYTES {
        sink.findings.push(at(Finding::new(
            &rules::KRS004,
            format!(
                "HDF5 file larger than the {} MiB inspection limit; its model config was not read",
                limits::MAX_HDF5_BYTES >> 20
            ),
        )));
        return Ok(Detected::named("hdf5"));
    }
    // the reader is a dependency parsing hostile bytes: a panic in it is a
    // finding, not a crash
    let res = catch_unwind(AssertUnwindSafe(|| read_root(data)))
        .unwrap_or_else(|_| Err("the HDF5 reader failed on this file".to_string()));
    let r5 = match res {
        Ok(r5) => r5,
        Err(e) => {
            sink.findings.push(at(Finding::new(
                &rules::KRS004,
                format!("HDF5 file could not be read: {e}"),
            )));
            return Ok(Detected::named("hdf5"));
        }
    };
    let keras = !r5.configs.is_empty() || r5.keras_version.is_some();
    for (name, text) in &r5.configs {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => {
                let place = crate::child_member(member, &format!("@{name}"));
                crate::formats::keras::check(&v, &place, sink);
            }
            Err(e) => sink.findings.push(at(Finding::new(
                &rules::KRS004,
                format!("attribute '{name}' is not valid JSON: {e}"),
            ))),
        }
    }
    if !r5.problems.is_empty() {
        sink.findings.push(at(Finding::new(
            &rules::KRS004,
            format!(
                "HDF5 file not fully inspected: {}",
                crate::formats::summarise(&r5.problems, 3)
            ),
        )));
    }
    Ok(Detected::named(if keras { "keras-h5" } else { "hdf5" }))
}

/// HDF5 files (legacy Keras `.h5`).
pub struct Hdf5;

impl Format for Hdf5 {
    fn name(&self) -> &'static str {
        "hdf5"
    }
    fn summary(&self) -> &'static str {
        "HDF5 files (legacy Keras .h5 models and their configs)"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[model("hdf5"), model("keras-h5")];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        super::rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        sniff(head.bytes)
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        len_hint: Option<u64>,
        member: &str,
        depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        let _ = (len_hint, depth);
        scan(r, member, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_signature_and_user_block() {
        assert!(sniff(b"\x89HDF\r\n\x1a\n\0\0"));
        let mut h = vec![0u8; 1024];
        h.extend_from_slice(MAGIC);
        assert!(sniff(&h));
        assert!(!sniff(b"\x89PNG\r\n\x1a\n"));
    }
}
