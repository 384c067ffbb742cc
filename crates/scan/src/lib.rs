//! The static scanner: walks inputs, detects each file's format from its
//! content, dispatches to the analyzer that claims it, and bounds resources.
//!
//! Nothing read here is ever executed or deserialised into live objects.

pub mod catalogue;
pub mod coverage;
pub mod cves;
pub mod format;
pub mod formats;
pub mod io;
pub mod limits;
pub mod paths;
pub mod pickle;
pub mod python_danger;
pub mod registry;
pub mod rules;
pub mod walk;

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::Digest;

use format::{Head, Stream};
use io::{Peekable, ReadSeek};
use probity_report::{FileReport, Finding};
use registry::Sniffed;

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
    /// The name of the top-level file being scanned (its report path), for
    /// checks that depend on it (`requirements.txt`).
    pub file: String,
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
}

/// Detects a format from the first bytes (`head`, at most
/// [`limits::PICKLE_PROBE_WINDOW`] of them). `whole` says whether `head` is
/// the entire content.
pub fn sniff(head: &[u8], whole: bool) -> Sniffed {
    registry::sniff(&Head {
        bytes: head,
        whole,
        len: if whole { head.len() as u64 } else { u64::MAX },
    })
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
    let mut found = registry::sniff(&Head {
        bytes: &head,
        whole,
        len,
    });
    if matches!(found, Sniffed::Unknown) {
        for f in registry::FORMATS {
            if f.sniff_seekable(r, len)? {
                found = Sniffed::Format(*f);
                break;
            }
        }
    }
    r.seek(SeekFrom::Start(0))?;
    let d = match found {
        Sniffed::Format(f) if f.needs_seek() => f.scan_seekable(r, len, member, depth, sink)?,
        Sniffed::Format(f) => {
            let inner: Box<dyn Read + '_> = Box::new(BufReader::with_capacity(64 << 10, r));
            let mut p = Peekable::new(inner);
            f.scan_stream(&mut p, Some(len), member, depth, sink)?
        }
        other => Detected::named(other.label()),
    };
    if !member.is_empty() {
        coverage::check_claim(member, &d.format, &head, Some(member), sink);
    }
    Ok(d)
}

/// Scans a forward-only source. Formats that need random access are spooled
/// (memory, then a temporary file), within the decompression budget.
pub fn scan_stream(
    r: &mut Stream<'_>,
    len_hint: Option<u64>,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> std::io::Result<Detected> {
    let head = r.peek(limits::PICKLE_PROBE_WINDOW)?.to_vec();
    let whole = head.len() < limits::PICKLE_PROBE_WINDOW;
    let found = registry::sniff(&Head {
        bytes: &head,
        whole,
        len: if whole {
            head.len() as u64
        } else {
            len_hint.unwrap_or(u64::MAX)
        },
    });
    match found {
        Sniffed::Format(f) if f.needs_seek() => {
            let mut spool = tempfile::SpooledTempFile::new(limits::SPOOL_IN_MEMORY);
            let n = std::io::copy(r, &mut spool)?;
            // scan_seekable checks the member's name against its content
            scan_seekable(&mut spool, n, member, depth, sink)
        }
        Sniffed::Format(f) => {
            let d = f.scan_stream(r, len_hint, member, depth, sink)?;
            if !member.is_empty() {
                coverage::check_claim(member, &d.format, &head, Some(member), sink);
            }
            Ok(d)
        }
        other => {
            if !member.is_empty() {
                coverage::check_claim(member, other.label(), &head, Some(member), sink);
            }
            Ok(Detected::named(other.label()))
        }
    }
}

/// Opens a file beside the one being scanned, by its path relative to that
/// file's folder (`/`-separated): `None` when there is no such file.
pub type Sibling<'a> = &'a dyn Fn(&str) -> Option<std::io::Result<Box<dyn ReadSeek + 'a>>>;

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
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            report.error = Some(format!("cannot open {}: {}", path.display(), e));
            return report;
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let beside = |name: &str| -> Option<std::io::Result<Box<dyn ReadSeek>>> {
        let p = dir.join(name);
        p.is_file()
            .then(|| File::open(&p).map(|f| Box::new(f) as Box<dyn ReadSeek>))
    };
    let mut report = scan_reader(&mut file, meta.len(), report.path, ctx, &beside);
    if let Some(e) = &mut report.error {
        *e = format!("cannot read {}: {e}", path.display());
    }
    if ctx.hash && report.error.is_none() {
        match sha256_file(&mut file) {
            Ok(h) => report.sha256 = Some(h),
            Err(e) => report.error = Some(format!("cannot hash {}: {}", path.display(), e)),
        }
    }
    report
}

/// Scans one file through a seekable reader of `len` bytes (a file on disk,
/// a remote file read by ranges). Files beside it (the shards of an index)
/// are opened with `beside`. A read that fails sets the report's `error` to
/// the I/O error alone (the caller names the file).
pub fn scan_reader(
    r: &mut dyn ReadSeek,
    len: u64,
    display: String,
    ctx: &Ctx,
    beside: Sibling,
) -> FileReport {
    let mut report = FileReport::new(display);
    report.size = len;
    let state = FileState::new();
    let mut sink = Sink {
        ctx: ctx.clone(),
        state: &state,
        findings: Vec::new(),
        file: report.path.clone(),
    };
    let failed = match scan_seekable(r, len, "", 0, &mut sink) {
        Ok(d) => {
            if d.format == "shard-index" {
                // the shards beside an index are compared with it
                formats::safetensors::shards::check_beside(r, beside, &mut sink);
            }
            let unread = d.format_is_unread();
            let mut head = [0u8; 64];
            let n = r
                .seek(SeekFrom::Start(0))
                .and_then(|_| r.read(&mut head))
                .unwrap_or(0);
            let name = report.path.clone();
            coverage::check_claim(&name, &d.format, &head[..n], None, &mut sink);
            let claimed = coverage::claimed(&name).is_some();
            report.format = d.format;
            report.model_card = d.model_card;
            if unread && !claimed {
                sink.findings.push(Finding::new(
                    &rules::SCN001,
                    if len == 0 {
                        "empty file; nothing to scan".to_string()
                    } else {
                        "content matches no model format Probity reads; skipped".to_string()
                    },
                ));
            }
            None
        }
        Err(e) => Some(e),
    };
    cves::tag(&mut sink.findings);
    report.findings = sink
        .findings
        .into_iter()
        .filter(|f| !ctx.ignored_rules.contains(&f.rule))
        .collect();
    report.error = failed.map(|e| e.to_string());
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

use rayon::prelude::*;

use walk::Walk;

/// Scans the files of a walk in parallel (on the current rayon pool); returns
/// one report per file, the walk's own reports included (unsorted; see
/// [`finding::Report::new`]). `progress` is called once per finished file.
pub fn scan_walk(
    walk: Walk,
    ctx: &Ctx,
    progress: &(dyn Fn(&FileReport) + Sync),
) -> Vec<FileReport> {
    let mut reports = walk.reports;
    let scanned: Vec<FileReport> = walk
        .targets
        .par_iter()
        .map(|t| {
            let r = scan_file(&t.path, t.display.clone(), ctx);
            progress(&r);
            r
        })
        .collect();
    reports.extend(scanned);
    coverage::assess(&mut reports);
    reports
}

/// Walks and scans files and directories.
pub fn scan_paths(paths: &[PathBuf], ctx: &Ctx) -> Vec<FileReport> {
    scan_walk(walk::collect(paths), ctx, &|_| {})
}
