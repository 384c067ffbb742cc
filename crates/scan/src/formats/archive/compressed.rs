//! Single-stream compression (gzip, bzip2, xz, lzma, zlib, lz4 frames): the
//! layers joblib and others wrap around pickles. Decompression is streamed and
//! bounded (see [`crate::io::Bounded`]); the output is scanned like any
//! file, never held whole in memory.

use std::io::{self, BufRead, Read};
use std::rc::Rc;

use super::rules;
use probity_report::Finding;

use crate::format::{other, Format, Head, Label, Stream};
use crate::io::{as_bomb, Bounded, CountIn, Peekable};
use crate::{scan_stream, Detected, Sink};

pub fn scan<R: Read>(
    kind: Codec,
    r: &mut Peekable<R>,
    len_hint: Option<u64>,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut detected = Detected {
        format: kind.label().to_string(),
        joblib: false,
        ..Default::default()
    };
    if crate::formats::too_deep(&format!("{} stream", kind.label()), member, depth, sink) {
        return Ok(detected);
    }
    let counter = Rc::new(std::cell::Cell::new(0u64));
    let input = CountIn {
        inner: &mut *r as &mut dyn BufRead,
        count: counter.clone(),
    };
    let dec: Box<dyn Read + '_> = match kind {
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Codec::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(input)),
        Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Codec::Xz => Box::new(lzma_rust2::XzReader::new(input, true)),
        Codec::LzmaAlone => match lzma_rust2::LzmaReader::new_mem_limit(input, u32::MAX, None) {
            Ok(d) => Box::new(d),
            Err(e) => {
                sink.findings.push(
                    Finding::new(
                        &rules::ARC008,
                        format!("lzma stream header cannot be read: {e}"),
                    )
                    .at(Some(member), None),
                );
                return Ok(detected);
            }
        },
        Codec::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
    };
    let _ = len_hint;
    let bounded: Box<dyn Read + '_> =
        Box::new(Bounded::new(dec, counter, None, sink.state.budget.clone()));
    let mut p = Peekable::new(bounded);
    match scan_stream(&mut p, None, member, depth + 1, sink) {
        Ok(inner) => {
            if inner.joblib || inner.format == "joblib" {
                detected.joblib = true;
                detected.format = "joblib".into();
            } else if inner.format != "unknown" && inner.format != "empty" {
                detected.format = format!("{}+{}", inner.format, kind.label());
            } else {
                detected.format = format!("unknown+{}", kind.label());
            }
        }
        Err(e) => {
            if let Some(b) = as_bomb(&e) {
                sink.findings.push(
                    Finding::new(&rules::ARC006, format!("{} stream: {b}", kind.label()))
                        .at(Some(member), None),
                );
            } else {
                sink.findings.push(
                    Finding::new(
                        &rules::ARC008,
                        format!("{} stream cannot be decompressed: {e}", kind.label()),
                    )
                    .at(Some(member), None),
                );
            }
        }
    }
    Ok(detected)
}

/// A single-stream compression format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Bzip2,
    Xz,
    Lz4,
    Zlib,
    LzmaAlone,
}

impl Codec {
    pub fn label(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::Lz4 => "lz4",
            Codec::Zlib => "zlib",
            Codec::LzmaAlone => "lzma",
        }
    }
}

/// A compressed stream: decompressed (bounded) and its content scanned.
pub struct Compressed(pub Codec);

impl Format for Compressed {
    fn name(&self) -> &'static str {
        self.0.label()
    }
    fn summary(&self) -> &'static str {
        match self.0 {
            Codec::Gzip => "gzip streams (joblib, .tar.gz, .pkl.gz, …)",
            Codec::Bzip2 => "bzip2 streams",
            Codec::Xz => "xz streams",
            Codec::Lz4 => "lz4 frames",
            Codec::Zlib => "zlib streams (joblib's default compression)",
            Codec::LzmaAlone => "lzma (.lzma) streams",
        }
    }
    fn labels(&self) -> &'static [Label] {
        match self.0 {
            Codec::Gzip => {
                const L: &[Label] = &[other("gzip")];
                L
            }
            Codec::Bzip2 => {
                const L: &[Label] = &[other("bzip2")];
                L
            }
            Codec::Xz => {
                const L: &[Label] = &[other("xz")];
                L
            }
            Codec::Lz4 => {
                const L: &[Label] = &[other("lz4")];
                L
            }
            Codec::Zlib => {
                const L: &[Label] = &[other("zlib")];
                L
            }
            Codec::LzmaAlone => {
                const L: &[Label] = &[other("lzma")];
                L
            }
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        let h = head.bytes;
        match self.0 {
            Codec::Gzip => h.starts_with(&[0x1f, 0x8b]),
            Codec::Bzip2 => h.len() >= 4 && h.starts_with(b"BZh") && (b'1'..=b'9').contains(&h[3]),
            Codec::Xz => h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]),
            Codec::Lz4 => h.starts_with(&[0x04, 0x22, 0x4d, 0x18]),
            Codec::Zlib => {
                h.len() >= 2 && h[0] == 0x78 && (u16::from(h[0]) << 8 | u16::from(h[1])) % 31 == 0
            }
            // LZMA "alone" (.lzma): properties byte 0x5d (lc=3, lp=0, pb=2), a
            // power-of-two dictionary size, then an uncompressed size (often
            // unknown: all 0xff).
            Codec::LzmaAlone => {
                h.len() >= 13 && h[0] == 0x5d && {
                    let dict = u32::from_le_bytes([h[1], h[2], h[3], h[4]]);
                    dict.is_power_of_two() && dict >= 4096
                }
            }
        }
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        len_hint: Option<u64>,
        member: &str,
        depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        scan(self.0, r, len_hint, member, depth, sink)
    }
}
