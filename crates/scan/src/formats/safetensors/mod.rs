//! safetensors: an 8-byte little-endian header length, a JSON header
//! (`__metadata__` and one entry per tensor: dtype, shape, data offsets),
//! then the tensor bytes, which the scan never reads.
//!
//! The header is checked the way a strict loader checks it, so that a file
//! one reader refuses and another accepts is flagged: known dtypes, sizes
//! that match shapes, offsets inside the data and neither overlapping nor
//! leaving gaps or trailing bytes (where a second payload can hide).
//! `__metadata__` strings are read for code, shell commands, scripts and
//! templates, and URLs are listed.

pub mod rules;
pub mod shards;

use std::io::{self, Read};

use crate::format::{model, Format, Head, Label, Stream};
use crate::formats::config::text::judge_into;
use crate::limits;
use crate::{Detected, Sink};
use probity_report::Finding;

/// Whether a head looks like a safetensors file: a plausible header length
/// followed by a JSON object.
pub fn sniff(head: &[u8]) -> bool {
    if head.len() < 10 || head[8] != b'{' {
        return false;
    }
    let n = u64::from_le_bytes(head[..8].try_into().unwrap_or([0; 8]));
    (2..=limits::MAX_SAFETENSORS_HEADER).contains(&n)
        && matches!(head[9], b'"' | b'}' | b' ' | b'\n' | b'\r' | b'\t')
}

fn dtype_size(d: &str) -> Option<u64> {
    Some(match d {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" | "C64" => 8,
        // sub-byte types are sized in bits; counted as a half byte each
        "F4" | "F6_E2M3" | "F6_E3M2" => return Some(0),
        _ => return None,
    })
}

/// Words in metadata that mean code, shell commands or scripts.
const CODE_MARKERS: &[&str] = &[
    "import os",
    "import subprocess",
    "os.system",
    "os.popen",
    "subprocess.",
    "__import__",
    "eval(",
    "exec(",
    "b64decode(",
    "marshal.loads",
    "pickle.loads",
    "rm -rf",
    "curl ",
    "wget ",
    "chmod ",
    "/bin/sh",
    "/bin/bash",
    "bash -c",
    "powershell",
    "<script",
    "javascript:",
];

fn urls(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for scheme in ["http://", "https://", "ftp://"] {
        let mut rest = s;
        while let Some(i) = rest.find(scheme) {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>'))
                .unwrap_or(tail.len());
            out.push(&tail[..end]);
            rest = &tail[end..];
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn flag(sink: &mut Sink, member: &str, offset: Option<u64>, msg: String) {
    sink.findings
        .push(Finding::new(&rules::SFT001, msg).at(Some(member), offset));
}

/// Scans a safetensors stream of `len` bytes (read to the end when unknown;
/// the tensor bytes are skipped, not parsed).
pub fn scan<R: Read>(
    r: &mut R,
    len_hint: Option<u64>,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let det = Detected::named("safetensors");
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)?;
    let n = u64::from_le_bytes(pre);
    let mut header = Vec::new();
    r.take(n).read_to_end(&mut header)?;
    if (header.len() as u64) < n {
        flag(
            sink,
            member,
            Some(8),
            format!(
                "header announces {n} bytes but the file ends after {}",
                header.len()
            ),
        );
        return Ok(det);
    }
    let data_len = match len_hint {
        Some(l) => l.saturating_sub(8 + n),
        None => io::copy(r, &mut io::sink())?,
    };
    let v: serde_json::Value = match serde_json::from_slice(&header) {
        Ok(v) => v,
        Err(e) => {
            flag(
                sink,
                member,
                Some(8),
                format!("header is not valid JSON: {e}"),
            );
            return Ok(det);
        }
    };
    let Some(obj) = v.as_object() else {
        flag(sink, member, Some(8), "header is not a JSON object".into());
        return Ok(det);
    };
    let mut spans: Vec<(u64, u64, &str)> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            metadata(t, member, sink, &mut problems);
            continue;
        }
        let dtype = t.get("dtype").and_then(|d| d.as_str());
        let shape: Option<Vec<u64>> = t
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64()).collect());
        let offs: Option<Vec<u64>> = t
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|x| x.as_u64()).collect());
        let (Some(dtype), Some(shape), Some(offs)) = (dtype, shape, offs) else {
            problems.push(format!(
                "tensor '{name}' lacks a dtype, an integer shape or data offsets"
            ));
            continue;
        };
        if offs.len() != 2 || offs[0] > offs[1] {
            problems.push(format!("tensor '{name}' has invalid data offsets {offs:?}"));
            continue;
        }
        let Some(size) = dtype_size(dtype) else {
            problems.push(format!("tensor '{name}' has unknown dtype '{dtype}'"));
            continue;
        };
        let count = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        match count {
            None => problems.push(format!("tensor '{name}' shape {shape:?} overflows")),
            Some(c) if size > 0 && c.checked_mul(size) != Some(offs[1] - offs[0]) => {
                problems.push(format!(
                    "tensor '{name}': {dtype} {shape:?} needs {} bytes but its offsets span {}",
                    c.saturating_mul(size),
                    offs[1] - offs[0]
                ))
            }
            _ => {}
        }
        if offs[1] > data_len {
            problems.push(format!(
                "tensor '{name}' ends at {} past the {data_len} data bytes",
                offs[1]
            ));
        }
        spans.push((offs[0], offs[1], name));
    }
    spans.sort_unstable();
    let mut covered = 0u64;
    for (b, e, name) in &spans {
        if *b < covered {
            problems.push(format!("tensor '{name}' overlaps the tensor before it"));
        } else if *b > covered {
            problems.push(format!(
                "{} unexplained bytes before tensor '{name}' (data offset {covered})",
                b - covered
            ));
        }
        covered = covered.max(*e);
    }
    if covered < data_len {
        problems.push(format!(
            "{} bytes after the last tensor are not described by the header",
            data_len - covered
        ));
    }
    // one finding, the first few reasons
    if !problems.is_empty() {
        flag(
            sink,
            member,
            Some(8),
            crate::formats::summarise(&problems, 5),
        );
    }
    Ok(det)
}

fn metadata(v: &serde_json::Value, member: &str, sink: &mut Sink, problems: &mut Vec<String>) {
    let Some(m) = v.as_object() else {
        problems.push("__metadata__ is not a map of strings".into());
        return;
    };
    let mut found_urls: Vec<String> = Vec::new();
    for (k, val) in m {
        let Some(s) = val.as_str() else {
            problems.push(format!("__metadata__ value '{k}' is not a string"));
            continue;
        };
        let lower = s.to_ascii_lowercase();
        let hits: Vec<&str> = CODE_MARKERS
            .iter()
            .copied()
            .filter(|c| lower.contains(&c.to_ascii_lowercase()))
            .collect();
        if !hits.is_empty() {
            sink.findings.push(
                Finding::new(
                    &rules::SFT002,
                    format!("__metadata__ '{k}' holds code, shell or script text"),
                )
                .at(Some(member), None)
                .evidence(hits.join(", ")),
            );
        }
        crate::formats::secrets::scan_text(s, Some(&format!("__metadata__.{k}")), member, sink);
        if crate::formats::config::template::has_jinja(s) {
            judge_into(s, Some(&format!("__metadata__.{k}")), member, sink);
        }
        found_urls.extend(urls(s).into_iter().map(str::to_string));
    }
    found_urls.sort();
    found_urls.dedup();
    if !found_urls.is_empty() {
        sink.findings.push(
            Finding::new(&rules::NET001, "__metadata__ names network addresses")
                .at(Some(member), None)
                .evidence(found_urls.into_iter().take(5).collect::<Vec<_>>().join(" ")),
        );
    }
}

/// safetensors files.
pub struct Safetensors;

impl Format for Safetensors {
    fn name(&self) -> &'static str {
        "safetensors"
    }
    fn summary(&self) -> &'static str {
        "safetensors (header and metadata; tensor bytes are never read) and sharded checkpoints' index files"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[model("safetensors")];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
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
        scan(r, len_hint, member, sink)
    }
}
