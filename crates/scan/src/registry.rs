//! The one list of formats the static scanner reads, in sniffing order: the
//! first entry whose sniff claims some content reads it. Adding a format is
//! one module implementing [`Format`] and one line here.
//!
//! Order matters where signatures overlap: magic numbers first; the pickle
//! probe before zlib and lzma (a pickle can start with their bytes); tar
//! headers recognised by checksum late; protobufs, which have no magic,
//! after every format that has one; text last.

use crate::format::{Format, Head, Label};
use crate::formats::{archive, config, gguf, keras, numpy, onnx, safetensors, tensorflow};
use crate::pickle;

use archive::compressed::{Codec, Compressed};
use tensorflow::Flavor;

pub static FORMATS: &[&dyn Format] = &[
    &archive::zip::Zip,
    &archive::sevenz::SevenZ,
    &numpy::Npy,
    &safetensors::Safetensors,
    &gguf::Gguf,
    &keras::hdf5::Hdf5,
    &tensorflow::tflite::Tflite,
    &archive::tar::Tar { by_checksum: false },
    &Compressed(Codec::Gzip),
    &Compressed(Codec::Bzip2),
    &Compressed(Codec::Xz),
    &Compressed(Codec::Lz4),
    &pickle::Pickle,
    &Compressed(Codec::Zlib),
    &Compressed(Codec::LzmaAlone),
    &archive::tar::Tar { by_checksum: true },
    &onnx::Onnx,
    &tensorflow::TensorFlow(Flavor::SavedModel),
    &tensorflow::TensorFlow(Flavor::GraphDef),
    &config::text::Text,
];

/// What a sniff found: a format, or nothing readable.
#[derive(Clone, Copy)]
pub enum Sniffed {
    Format(&'static dyn Format),
    /// Bytes no format claims.
    Unknown,
    /// No bytes at all.
    Empty,
}

impl Sniffed {
    /// The name in reports: the format's, `unknown` or `empty`.
    pub fn label(self) -> &'static str {
        match self {
            Sniffed::Format(f) => f.name(),
            Sniffed::Unknown => "unknown",
            Sniffed::Empty => "empty",
        }
    }
}

/// Detects a format from the first bytes of some content.
pub fn sniff(head: &Head) -> Sniffed {
    if head.bytes.is_empty() {
        return Sniffed::Empty;
    }
    FORMATS
        .iter()
        .find(|f| f.sniff(head))
        .map_or(Sniffed::Unknown, |f| Sniffed::Format(*f))
}

/// Every `format` value a report can carry, with whether it is a model.
pub fn labels() -> impl Iterator<Item = &'static Label> {
    FORMATS.iter().flat_map(|f| f.labels().iter())
}

/// Whether a reported `format` is a model (a compressed model, such as
/// `pickle+gzip`, is one too).
pub fn is_model(format: &str) -> bool {
    let inner = format.split('+').next().unwrap_or(format);
    labels().any(|l| l.model && l.name == inner)
}

/// One line per format for help texts and the docs, in registry order
/// without repeats.
pub fn summaries() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for f in FORMATS {
        let s = f.summary();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(b: &[u8]) -> Head<'_> {
        Head {
            bytes: b,
            whole: true,
            len: b.len() as u64,
        }
    }

    #[test]
    fn every_format_has_a_distinct_entry_and_labels() {
        for f in FORMATS {
            assert!(!f.labels().is_empty(), "{} has no labels", f.name());
            assert!(
                f.labels().iter().any(|l| l.name == f.name()),
                "{}'s own name is not among its labels",
                f.name()
            );
        }
    }

    #[test]
    fn sniff_order_resolves_overlaps() {
        assert_eq!(sniff(&head(b"")).label(), "empty");
        assert_eq!(sniff(&head(b"PK\x03\x04rest")).label(), "zip");
        assert_eq!(sniff(&head(b"GGUF\x03\0\0\0")).label(), "gguf");
        assert_eq!(sniff(&head(b"\x80\x02}q\0.")).label(), "pickle");
        assert_eq!(sniff(&head(b"{\"a\": 1}")).label(), "text");
        assert_eq!(sniff(&head(&[0xff, 0xfe, 0x00, 0x01])).label(), "unknown");
    }

    #[test]
    fn model_labels() {
        assert!(is_model("pytorch-zip"));
        assert!(is_model("pickle+gzip"));
        assert!(is_model("keras-config"));
        assert!(!is_model("zip"));
        assert!(!is_model("json"));
        assert!(!is_model("unknown+gzip"));
    }
}
