//! The static scanner: walks inputs, detects each file's format from its
//! content, dispatches to the analyzer that claims it, and bounds resources.
//!
//! Nothing read here is ever executed or deserialised into live objects.

pub mod formats;
pub mod io;
pub mod pickle;
pub mod rules;
pub mod walk;

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use sha2::Digest;

use crate::finding::{FileReport, Finding};
use crate::limits;
use io::{Peekable, ReadSeek};

/// Policy and options shared by every file of a scan.
#[derive(Debug, Default, Clone)]
pub struct Ctx {
    /// Exact `module.qualname` entries the user allows (from `probity.toml`).
    pub extra_allowed: HashSet<String>,
    /// Rule IDs the user silences (from `probity.toml`).
    pub ignored_rules: HashSet<String>,
    /// Add each file's SHA-256 to the report.
    pub hash: bool,
    /// Set while scanning the pickles of a TorchScript archive: `__torch__.*`
    /// globals there name classes compiled from the archive's own code members
    /// (checked by TRC001), not Python imports.
    pub torchscript: bool,
}

/// Per top-level file state: the remaining decompression budget.
pub struct FileState {
    pub budget: Rc<Cell<u64>>,
}

impl FileState {
    pub fn new() -> Self {
        FileState {
            budget: Rc::new(Cell::new(limits::MAX_DECOMPRESSED_TOTAL)),
        }
    }
}

impl Default for FileState {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the analyzers write.
pub struct Sink<'a> {
    pub ctx: Ctx,
    pub state: &'a FileState,
    pub findings: Vec<Finding>,
}

/// What a content sniff found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Zip,
    SevenZ,
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Lz4,
    Zlib,
    LzmaAlone,
    Npy,
    Safetensors,
    Gguf,
    Hdf5,
    Onnx,
    TfSavedModel,
    TfGraphDef,
    Tflite,
    Pickle,
    /// UTF-8 text: JSON, YAML, templates.
    Text,
    Unknown,
    Empty,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Zip => "zip",
            Kind::SevenZ => "7z",
            Kind::Tar => "tar",
            Kind::Gzip => "gzip",
            Kind::Bzip2 => "bzip2",
            Kind::Xz => "xz",
            Kind::Lz4 => "lz4",
            Kind::Zlib => "zlib",
            Kind::LzmaAlone => "lzma",
            Kind::Npy => "numpy",
            Kind::Safetensors => "safetensors",
            Kind::Gguf => "gguf",
            Kind::Hdf5 => "hdf5",
            Kind::Onnx => "onnx",
            Kind::TfSavedModel => "tf-savedmodel",
            Kind::TfGraphDef => "tf-graphdef",
            Kind::Tflite => "tflite",
            Kind::Pickle => "pickle",
            Kind::Text => "text",
            Kind::Unknown => "unknown",
            Kind::Empty => "empty",
        }
    }
}

/// Detects a format from the first bytes (`head`, at most
/// [`limits::PICKLE_PROBE_WINDOW`] of them). `whole` says whether `head` is
/// the entire content.
pub fn sniff(head: &[u8], whole: bool) -> Kind {
    sniff_len(
        head,
        whole,
        if whole { head.len() as u64 } else { u64::MAX },
    )
}

/// [`sniff`] knowing the content's length (protobuf sniffs check that the
/// first fields fit).
pub fn sniff_len(head: &[u8], whole: bool, len: u64) -> Kind {
    if head.is_empty() {
        return Kind::Empty;
    }
    if head.starts_with(b"PK\x03\x04")
        || head.starts_with(b"PK\x05\x06")
        || head.starts_with(b"PK\x07\x08")
    {
        return Kind::Zip;
    }
    if head.starts_with(b"7z\xbc\xaf\x27\x1c") {
        return Kind::SevenZ;
    }
    if head.starts_with(b"\x93NUMPY") {
        return Kind::Npy;
    }
    if formats::safetensors::sniff(head) {
        return Kind::Safetensors;
    }
    if head.starts_with(b"GGUF") {
        return Kind::Gguf;
    }
    if formats::hdf5::sniff(head) {
        return Kind::Hdf5;
    }
    if formats::tflite::sniff(head) {
        return Kind::Tflite;
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Kind::Tar;
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Kind::Gzip;
    }
    if head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3]) {
        return Kind::Bzip2;
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return Kind::Xz;
    }
    if head.starts_with(&[0x04, 0x22, 0x4d, 0x18]) {
        return Kind::Lz4;
    }
    if pickle::probe(head, whole) {
        return Kind::Pickle;
    }
    if head.len() >= 2
        && head[0] == 0x78
        && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0
    {
        return Kind::Zlib;
    }
    // LZMA "alone" (.lzma): properties byte 0x5d (lc=3, lp=0, pb=2), a power-of-two
    // dictionary size, then an uncompressed size (often unknown: all 0xff).
    if head.len() >= 13 && head[0] == 0x5d {
        let dict = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if dict.is_power_of_two() && dict >= 4096 {
            return Kind::LzmaAlone;
        }
    }
    // Old GNU tar headers have no "ustar" magic: check the header checksum.
    if head.len() >= 512 && tar_checksum_ok(&head[..512]) {
        return Kind::Tar;
    }
    // protobufs have no magic: their first fields must parse as the message
    // (and control bytes in those fields can pass for text)
    if formats::onnx::sniff(head, len) {
        return Kind::Onnx;
    }
    match formats::tensorflow::sniff(head, len) {
        Some(formats::tensorflow::Flavor::SavedModel) => return Kind::TfSavedModel,
        Some(formats::tensorflow::Flavor::GraphDef) => return Kind::TfGraphDef,
        None => {}
    }
    if formats::text::looks_like_text(head, whole) {
        return Kind::Text;
    }
    Kind::Unknown
}

fn tar_checksum_ok(h: &[u8]) -> bool {
    let field = &h[148..156];
    let s: String = field
        .iter()
        .take_while(|&&c| c != 0 && c != b' ')
        .map(|&c| c as char)
        .collect();
    let Ok(want) = u32::from_str_radix(s.trim(), 8) else {
        return false;
    };
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                b' ' as u32
            } else {
                c as u32
            }
        })
        .sum();
    sum == want && h[0] != 0
}

/// Joins a member name onto the path of its container.
pub fn child_member(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}!{name}")
    }
}

/// What an analyzer reports back about the content it read.
#[derive(Clone, Debug, Default)]
pub struct Detected {
    pub format: String,
    pub joblib: bool,
    /// Model-card metadata (front matter of a Hugging Face `README.md`).
    pub model_card: Option<serde_json::Value>,
}

impl Detected {
    /// What an analyzer reports for a format it read.
    pub fn named(format: &str) -> Self {
        Detected {
            format: format.to_string(),
            ..Default::default()
        }
    }

    fn of(kind: Kind) -> Self {
        Detected {
            format: kind.label().to_string(),
            ..Default::default()
        }
    }
}

/// Scans a seekable source of `len` bytes (a file, a stored zip member, a spool).
pub fn scan_seekable(
    r: &mut dyn ReadSeek,
    len: u64,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> std::io::Result<Detected> {
    r.seek(SeekFrom::Start(0))?;
    let mut head = vec![0u8; (limits::PICKLE_PROBE_WINDOW as u64).min(len) as usize];
    r.read_exact(&mut head)?;
    r.seek(SeekFrom::Start(0))?;
    let whole = head.len() as u64 == len;
    let mut kind = sniff_len(&head, whole, len);
    if kind == Kind::Unknown && formats::zip::has_eocd(r, len)? {
        kind = Kind::Zip;
    }
    r.seek(SeekFrom::Start(0))?;
    match kind {
        Kind::Zip => formats::zip::scan(r, len, member, depth, sink),
        Kind::SevenZ => formats::sevenz::scan(r, len, member, depth, sink),
        _ => {
            let mut p = Peekable::new(BufReader::with_capacity(64 << 10, r));
            scan_kind(kind, &mut p, Some(len), member, depth, sink)
        }
    }
}

/// Scans a forward-only source. Formats that need random access are spooled
/// (memory, then a temporary file), within the decompression budget.
pub fn scan_stream(
    r: &mut Peekable<Box<dyn Read + '_>>,
    len_hint: Option<u64>,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> std::io::Result<Detected> {
    let head = r.peek(limits::PICKLE_PROBE_WINDOW)?.to_vec();
    let whole = head.len() < limits::PICKLE_PROBE_WINDOW;
    let kind = sniff_len(
        &head,
        whole,
        if whole {
            head.len() as u64
        } else {
            len_hint.unwrap_or(u64::MAX)
        },
    );
    match kind {
        Kind::Zip | Kind::SevenZ => {
            let mut spool = tempfile::SpooledTempFile::new(limits::SPOOL_IN_MEMORY);
            let n = std::io::copy(r, &mut spool)?;
            scan_seekable(&mut spool, n, member, depth, sink)
        }
        _ => scan_kind(kind, r, len_hint, member, depth, sink),
    }
}

fn scan_kind<R: Read>(
    kind: Kind,
    r: &mut Peekable<R>,
    len_hint: Option<u64>,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> std::io::Result<Detected> {
    match kind {
        Kind::Tar => formats::tar::scan(r, member, depth, sink),
        Kind::Gzip | Kind::Bzip2 | Kind::Xz | Kind::Lz4 | Kind::Zlib | Kind::LzmaAlone => {
            formats::compressed::scan(kind, r, len_hint, member, depth, sink)
        }
        Kind::Npy => formats::numpy::scan_npy(r, member, depth, sink),
        Kind::Text => formats::text::scan(r, member, sink),
        Kind::Safetensors => formats::safetensors::scan(r, len_hint, member, sink),
        Kind::Gguf => formats::gguf::scan(r, len_hint, member, sink),
        Kind::Hdf5 => formats::hdf5::scan(r, member, sink),
        Kind::Onnx => formats::onnx::scan(r, member, sink),
        Kind::TfSavedModel => {
            formats::tensorflow::scan(formats::tensorflow::Flavor::SavedModel, r, member, sink)
        }
        Kind::TfGraphDef => {
            formats::tensorflow::scan(formats::tensorflow::Flavor::GraphDef, r, member, sink)
        }
        Kind::Tflite => formats::tflite::scan(r, member, sink),
        Kind::Pickle => {
            // torch.save's legacy format starts with a pickled magic number (LONG1 0x1950a86a20f9469cfc6c)
            let legacy = r
                .peek(14)?
                .starts_with(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19");
            let out = pickle::scan_streams(r, 0, member, &sink.ctx, 0, &mut sink.findings);
            let mut d = Detected::of(Kind::Pickle);
            if legacy {
                d.format = "pytorch-legacy".into();
            }
            if out.joblib {
                d.joblib = true;
                d.format = "joblib".into();
            }
            Ok(d)
        }
        Kind::Zip | Kind::SevenZ => unreachable_kind(kind),
        Kind::Unknown | Kind::Empty => Ok(Detected::of(kind)),
    }
}

fn unreachable_kind(kind: Kind) -> std::io::Result<Detected> {
    Err(std::io::Error::other(format!(
        "{} needs a seekable source",
        kind.label()
    )))
}

/// Scans one file on disk.
pub fn scan_file(path: &Path, display: String, ctx: &Ctx) -> FileReport {
    let mut report = FileReport::new(display);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            report.error = Some(format!("cannot read {}: {}", path.display(), e));
            return report;
        }
    };
    if !meta.is_file() {
        report.error = Some(format!(
            "cannot scan {}: not a regular file",
            path.display()
        ));
        return report;
    }
    report.size = meta.len();
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            report.error = Some(format!("cannot open {}: {}", path.display(), e));
            return report;
        }
    };
    let state = FileState::new();
    let mut sink = Sink {
        ctx: ctx.clone(),
        state: &state,
        findings: Vec::new(),
    };
    match scan_seekable(&mut file, meta.len(), "", 0, &mut sink) {
        Ok(d) => {
            if d.format == "shard-index" {
                // the shards beside an index on disk are compared with it
                formats::shards::check_folder(path, &mut sink);
            }
            let unread = d.format_is_unread();
            report.format = d.format;
            report.model_card = d.model_card;
            if unread {
                sink.findings.push(Finding::new(
                    &rules::SCN001,
                    if meta.len() == 0 {
                        "empty file; nothing to scan".to_string()
                    } else {
                        "content matches no model format Probity reads; skipped".to_string()
                    },
                ));
            }
        }
        Err(e) => {
            report.error = Some(format!("cannot read {}: {}", path.display(), e));
        }
    }
    if ctx.hash && report.error.is_none() {
        match sha256_file(&mut file) {
            Ok(h) => report.sha256 = Some(h),
            Err(e) => report.error = Some(format!("cannot hash {}: {}", path.display(), e)),
        }
    }
    report.findings = sink
        .findings
        .into_iter()
        .filter(|f| !ctx.ignored_rules.contains(&f.rule))
        .collect();
    report
}

impl Detected {
    fn format_is_unread(&self) -> bool {
        self.format == "unknown" || self.format == "empty"
    }
}

/// SHA-256 of a whole file, streamed. A reader thread fills 4 MiB buffers
/// while this thread hashes (the `sha2` crate uses SHA-NI where the CPU has
/// it), so reading and hashing overlap; three buffers are recycled, so memory
/// stays at 12 MiB whatever the file size.
pub fn sha256_file(f: &mut File) -> std::io::Result<String> {
    use std::sync::mpsc;
    const CHUNK: usize = 4 << 20;
    f.seek(SeekFrom::Start(0))?;
    let mut reader = f.try_clone()?;
    let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(2);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(3);
    for _ in 0..3 {
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    let handle = std::thread::spawn(move || {
        while let Ok(mut buf) = empty_rx.recv() {
            let mut n = 0;
            let res = loop {
                match reader.read(&mut buf[n..]) {
                    Ok(0) => break Ok(()),
                    Ok(k) => {
                        n += k;
                        if n == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let done = n < buf.len();
            let msg = res.map(|_| (buf, n));
            let failed = msg.is_err();
            if full_tx.send(msg).is_err() || done || failed {
                return;
            }
        }
    });
    let mut h = sha2::Sha256::new();
    let mut result = Ok(());
    for msg in full_rx.iter() {
        match msg {
            Ok((buf, n)) => {
                h.update(&buf[..n]);
                if n < buf.len() {
                    break;
                }
                let _ = empty_tx.send(buf);
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    drop(empty_tx);
    drop(full_rx);
    let _ = handle.join();
    result?;
    let out = h.finalize();
    let mut s = String::with_capacity(64);
    for b in out.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}
