//! Single-stream compression (gzip, bzip2, xz, lzma, zlib, lz4 frames): the
//! layers joblib and others wrap around pickles. Decompression is streamed and
//! bounded (see [`crate::scan::io::Bounded`]); the output is scanned like any
//! file, never held whole in memory.

use std::io::{self, BufRead, Read};
use std::rc::Rc;

use super::rules;
use crate::finding::Finding;

use crate::scan::io::{as_bomb, Bounded, CountIn, Peekable};
use crate::scan::{scan_stream, Detected, Kind, Sink};

pub fn scan<R: Read>(
    kind: Kind,
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
    if super::too_deep(&format!("{} stream", kind.label()), member, depth, sink) {
        return Ok(detected);
    }
    let counter = Rc::new(std::cell::Cell::new(0u64));
    let input = CountIn {
        inner: &mut *r as &mut dyn BufRead,
        count: counter.clone(),
    };
    let dec: Box<dyn Read + '_> = match kind {
        Kind::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Kind::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(input)),
        Kind::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Kind::Xz => Box::new(lzma_rust2::XzReader::new(input, true)),
        Kind::LzmaAlone => match lzma_rust2::LzmaReader::new_mem_limit(input, u32::MAX, None) {
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
        Kind::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
        _ => return Ok(detected),
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
