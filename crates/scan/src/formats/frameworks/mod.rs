//! Framework formats that ride on other containers or encodings: skops and
//! TorchServe archives and llamafiles (zips, recognised by their members),
//! PaddlePaddle programs and CoreML models (protobufs), ExecuTorch programs
//! and CatBoost models (flatbuffers), OpenVINO IR (XML), Flax checkpoints
//! (msgpack), XGBoost (JSON, UBJSON) and LightGBM (text) models, and OCI
//! images (`docker save` tars and OCI layout folders).

/// Implements [`crate::format::Format`] for a format read as a stream whose
/// only label is its name: `$scan` is
/// `fn(&mut dyn Read, Option<u64>, &str, &mut Sink) -> io::Result<Detected>`.
macro_rules! stream_format {
    ($ty:ident, $name:literal, $summary:literal, [$($rule:expr),*], $sniff:path, $scan:path) => {
        pub struct $ty;

        impl crate::format::Format for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn summary(&self) -> &'static str {
                $summary
            }
            fn labels(&self) -> &'static [crate::format::Label] {
                const L: &[crate::format::Label] = &[crate::format::model($name)];
                L
            }
            fn rules(&self) -> Vec<&'static probity_report::Rule> {
                vec![$($rule),*]
            }
            fn sniff(&self, head: &crate::format::Head) -> bool {
                $sniff(head.bytes)
            }
            fn scan_stream(
                &self,
                r: &mut crate::format::Stream<'_>,
                len_hint: Option<u64>,
                member: &str,
                _depth: u32,
                sink: &mut crate::Sink,
            ) -> std::io::Result<crate::Detected> {
                $scan(r, len_hint, member, sink)
            }
        }
    };
}

pub mod coreml;
pub mod executorch;
pub mod flax;
pub mod oci;
pub mod openvino;
pub mod paddle;
pub mod rules;
pub mod skops;
pub mod torchserve;
pub mod trees;

use probity_report::{Finding, Rule};

use crate::Sink;

/// Reports `SCN005` for `what` (a format's name) with the first problems.
pub(crate) fn incomplete(sink: &mut Sink, member: &str, what: &str, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    sink.findings.push(
        Finding::new(
            &crate::rules::SCN005,
            format!(
                "{what} not fully inspected: {}",
                crate::formats::summarise(problems, 3)
            ),
        )
        .at(Some(member), None),
    );
}

/// Reports one finding of `rule` for a list of items (the first eight
/// shown, the rest counted), which are also its evidence.
pub(crate) fn flag(
    sink: &mut Sink,
    rule: &'static Rule,
    member: &str,
    lead: &str,
    items: &[String],
) {
    if items.is_empty() {
        return;
    }
    let listed = crate::formats::summarise(items, 8);
    sink.findings.push(
        Finding::new(rule, format!("{lead}: {listed}"))
            .at(Some(member), None)
            .evidence(listed),
    );
}

/// A zip that is really a framework's archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZipKind {
    Skops,
    TorchServe,
    Llamafile,
}

impl ZipKind {
    /// The `format` reported for the archive.
    pub fn label(self) -> &'static str {
        match self {
            ZipKind::Skops => "skops",
            ZipKind::TorchServe => "torchserve-mar",
            ZipKind::Llamafile => "llamafile",
        }
    }

    /// The member the archive's own check reads, if any.
    pub fn document(self) -> Option<&'static str> {
        match self {
            ZipKind::Skops => Some("schema.json"),
            ZipKind::TorchServe => Some(torchserve::MANIFEST),
            ZipKind::Llamafile => None,
        }
    }
}

/// What kind of framework archive a zip with these member names (and these
/// first bytes of the file) is.
pub fn zip_kind(names: &[&str], head: &[u8]) -> Option<ZipKind> {
    if names.contains(&torchserve::MANIFEST) {
        return Some(ZipKind::TorchServe);
    }
    if names.contains(&"schema.json") {
        return Some(ZipKind::Skops);
    }
    // An Actually Portable Executable (a DOS stub that is also a shell
    // script, or an ELF) with GGUF weights in its zip
    let executable =
        head.starts_with(b"MZqFpD") || head.starts_with(b"\x7fELF") || head.starts_with(b"MZ");
    if executable
        && names
            .iter()
            .any(|n| n.to_ascii_lowercase().ends_with(".gguf"))
    {
        return Some(ZipKind::Llamafile);
    }
    None
}

/// The archive-level check of a framework zip, once its members were
/// scanned. `doc` is the member [`ZipKind::document`] names: absent, read,
/// or too large / undecodable (its name). Returns whether the archive is
/// that framework's after all (a zip that merely holds a `schema.json` of
/// another kind is not a skops file).
pub fn check_archive(
    kind: ZipKind,
    doc: Option<Result<Vec<u8>, &str>>,
    names: &[&str],
    member: &str,
    sink: &mut Sink,
) -> bool {
    let parsed = |sink: &mut Sink| -> Option<serde_json::Value> {
        let what = kind.document()?;
        let at = crate::child_member(member, what);
        let bytes = match &doc {
            Some(Ok(b)) => b,
            Some(Err(_)) | None => {
                sink.findings.push(
                    Finding::new(
                        &crate::rules::SCN005,
                        format!("`{what}` could not be read (too large, or compressed in a way Probity does not decode); the {} archive was not judged", kind.label()),
                    )
                    .at(Some(&at), None),
                );
                return None;
            }
        };
        match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                sink.findings.push(
                    Finding::new(
                        &crate::rules::SCN005,
                        format!(
                            "`{what}` is not valid JSON ({e}); the {} archive was not judged",
                            kind.label()
                        ),
                    )
                    .at(Some(&at), None),
                );
                None
            }
        }
    };
    match kind {
        ZipKind::Skops => {
            // a schema.json that is not JSON at all is judged as a broken
            // skops file only when nothing else explains the zip
            match doc.as_ref() {
                Some(Ok(b)) => match serde_json::from_slice::<serde_json::Value>(b) {
                    Ok(v) if skops::looks_like_schema(&v) => {
                        skops::check(&v, &crate::child_member(member, "schema.json"), sink)
                    }
                    Ok(_) => return false,
                    Err(_) => {
                        parsed(sink);
                    }
                },
                _ => {
                    parsed(sink);
                }
            }
        }
        ZipKind::TorchServe => {
            if let Some(v) = parsed(sink) {
                torchserve::check(&v, names, member, sink);
            }
        }
        ZipKind::Llamafile => {
            let weights: Vec<&&str> = names
                .iter()
                .filter(|n| n.to_ascii_lowercase().ends_with(".gguf"))
                .collect();
            sink.findings.push(
                Finding::new(
                    &rules::LMF001,
                    format!(
                        "a llamafile: a native executable with GGUF weights ({}) in an appended zip; the weights were scanned, the machine code was not",
                        weights.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")
                    ),
                )
                .at(Some(member), None),
            );
        }
    }
    true
}
