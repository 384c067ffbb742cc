//! Remote files read in place: a seekable reader over HTTP `Range` requests,
//! so the static scan fetches only the bytes its analyzers read (headers,
//! zip directories, pickles), not the weights.
//!
//! Reads go through a small cache of fetched spans. A miss fetches from the
//! read position: at least [`MIN_FETCH`] bytes after a jump, twice the last
//! fetch while reading forward (up to [`MAX_FETCH`]), so a whole-file read
//! costs few requests; a fetch stops where an already cached span starts
//! (nothing is received twice while it is cached). A server that answers a
//! range request with the whole file (HTTP 200) is read to its end into an
//! unnamed temporary file, and the report says so.
//!
//! A stalled request ends the process through the download watchdog, like
//! every other download.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use probity_report::Transfer;

/// The least a fetch after a jump asks for.
pub const MIN_FETCH: u64 = 16 << 10;
/// The most one fetch asks for.
pub const MAX_FETCH: u64 = 8 << 20;
/// The fetched bytes kept per open file.
const CACHE_BYTES: u64 = 32 << 20;

/// A remote file to scan in place.
#[derive(Clone, Debug)]
pub struct RemoteFile {
    /// The name shown in the report.
    pub display: String,
    /// Where its bytes are.
    pub url: String,
    /// Its size, as the listing says.
    pub size: u64,
    /// An `Authorization` header value for the server.
    pub auth: Option<String>,
    /// The SHA-256 the listing claims for it (the Hub's LFS digest).
    pub sha256_claim: Option<String>,
    /// For an object store: the client and the object's path (then `url`
    /// is only its name).
    pub store: Option<(
        std::sync::Arc<dyn object_store::ObjectStore>,
        object_store::path::Path,
    )>,
}

/// What the reads of one file transferred.
#[derive(Debug, Default)]
pub struct Stats {
    bytes: AtomicU64,
    requests: AtomicU64,
    ignored_range: AtomicBool,
}

impl Stats {
    /// The report's view of these counts for a file of `size` bytes.
    pub fn transfer(&self, size: u64) -> Transfer {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let ignored = self.ignored_range.load(Ordering::Relaxed);
        Transfer {
            bytes,
            requests: self.requests.load(Ordering::Relaxed),
            whole: ignored || (size > 0 && bytes >= size),
            reason: ignored.then(|| "the server ignores range requests".to_string()),
        }
    }
}

/// One HTTP agent for every remote read of a command (connections are kept
/// and reused).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .build()
        .into()
}

struct Span {
    start: u64,
    data: Vec<u8>,
    used: u64,
}

/// A remote file as a `Read + Seek` source.
pub struct RangeReader {
    agent: ureq::Agent,
    file: RemoteFile,
    pos: u64,
    spans: Vec<Span>,
    cached: u64,
    clock: u64,
    /// Where the last fetch ended, and how much it asked for.
    last_end: u64,
    last_want: u64,
    /// The whole file, when the server sent all of it.
    whole: Option<std::fs::File>,
    stats: Arc<Stats>,
}

impl RangeReader {
    pub fn new(agent: ureq::Agent, file: RemoteFile, stats: Arc<Stats>) -> RangeReader {
        RangeReader {
            agent,
            file,
            pos: 0,
            spans: Vec::new(),
            cached: 0,
            clock: 0,
            last_end: u64::MAX,
            last_want: 0,
            whole: None,
            stats,
        }
    }

    fn err(&self, why: impl std::fmt::Display) -> io::Error {
        io::Error::other(why.to_string())
    }

    /// Fetches `[start, end)` into the cache (or the whole file, when the
    /// server ignores the range).
    fn fetch(&mut self, start: u64, end: u64) -> io::Result<()> {
        if let Some((store, path)) = self.file.store.clone() {
            return self.fetch_object(&store, &path, start, end);
        }
        let dog = super::watchdog::Watchdog::start(format!(
            "{}: reading bytes {start}-{}",
            self.file.display,
            end - 1
        ));
        let mut last = None;
        for _attempt in 0..2 {
            let mut req = self
                .agent
                .get(&self.file.url)
                .header("Range", &format!("bytes={start}-{}", end - 1));
            if let Some(a) = &self.file.auth {
                req = req.header("Authorization", a);
            }
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let mut resp = match req.call() {
                Ok(r) => r,
                Err(e) => {
                    last = Some(self.err(format!("cannot reach the server: {e}")));
                    continue;
                }
            };
            let code = resp.status().as_u16();
            match code {
                206 => {
                    let range = resp
                        .headers()
                        .get("content-range")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if let Some(cr) = &range {
                        let (first, total) = parse_content_range(cr)
                            .ok_or_else(|| self.err(format!("malformed Content-Range '{cr}'")))?;
                        if first != start {
                            return Err(self.err(format!(
                                "asked for bytes from {start}, the server sent them from {first}"
                            )));
                        }
                        if total.is_some_and(|t| t != self.file.size) {
                            return Err(self.err(format!(
                                "the server says the file has {} bytes, the listing {}: it changed while being scanned",
                                total.unwrap_or(0),
                                self.file.size
                            )));
                        }
                    }
                    // a server may send more than asked: the rest is dropped
                    // with the connection
                    let want = end - start;
                    let mut data = Vec::with_capacity(want as usize);
                    let mut body = resp
                        .body_mut()
                        .with_config()
                        .limit(u64::MAX)
                        .reader()
                        .take(want);
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let k = match body.read(&mut buf) {
                            Ok(k) => k,
                            Err(e) => return Err(self.err(format!("transfer interrupted: {e}"))),
                        };
                        if k == 0 {
                            break;
                        }
                        data.extend_from_slice(&buf[..k]);
                        self.stats.bytes.fetch_add(k as u64, Ordering::Relaxed);
                        dog.tick();
                    }
                    if data.len() as u64 != want {
                        return Err(self.err(format!(
                            "asked for {want} bytes from offset {start}, received {}",
                            data.len()
                        )));
                    }
                    self.insert(start, data);
                    return Ok(());
                }
                200 => return self.take_whole(resp, &dog),
                401 | 403 => {
                    return Err(self.err(format!("access denied (HTTP {code})")));
                }
                404 => return Err(self.err("not found (HTTP 404)")),
                416 => {
                    return Err(self.err(format!(
                        "the server refused bytes {start}-{} (HTTP 416): the file is shorter than the listing says",
                        end - 1
                    )))
                }
                _ => {
                    last = Some(self.err(format!("the server answered HTTP {code}")));
                    if code < 500 {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| self.err("no answer")))
    }

    /// Fetches `[start, end)` of an object with a ranged GET.
    fn fetch_object(
        &mut self,
        store: &std::sync::Arc<dyn object_store::ObjectStore>,
        path: &object_store::path::Path,
        start: u64,
        end: u64,
    ) -> io::Result<()> {
        use object_store::ObjectStoreExt;
        let _dog = super::watchdog::Watchdog::start(format!(
            "{}: reading bytes {start}-{}",
            self.file.display,
            end - 1
        ));
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let got = super::objstore::block_on(store.get_range(path, start..end))
            .map_err(|e| self.err(e))?
            .map_err(|e| self.err(super::objstore::one_line(&e)))?;
        self.stats
            .bytes
            .fetch_add(got.len() as u64, Ordering::Relaxed);
        if got.len() as u64 != end - start {
            return Err(self.err(format!(
                "asked for {} bytes from offset {start}, received {}",
                end - start,
                got.len()
            )));
        }
        self.insert(start, got.to_vec());
        Ok(())
    }

    /// The server sent the whole file: keep it in an unnamed temporary file.
    fn take_whole(
        &mut self,
        mut resp: ureq::http::Response<ureq::Body>,
        dog: &super::watchdog::Watchdog,
    ) -> io::Result<()> {
        self.stats.ignored_range.store(true, Ordering::Relaxed);
        let mut tmp = tempfile::tempfile().map_err(|e| self.err(format!("temporary file: {e}")))?;
        let mut body = resp
            .body_mut()
            .with_config()
            .limit(self.file.size.saturating_add(1))
            .reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = match body.read(&mut buf) {
                Ok(k) => k,
                Err(e) => return Err(self.err(format!("download interrupted: {e}"))),
            };
            if k == 0 {
                break;
            }
            tmp.write_all(&buf[..k])?;
            n += k as u64;
            self.stats.bytes.fetch_add(k as u64, Ordering::Relaxed);
            dog.tick();
        }
        if n != self.file.size {
            return Err(self.err(format!(
                "received {n} of {} bytes (interrupted download)",
                self.file.size
            )));
        }
        self.spans.clear();
        self.cached = 0;
        self.whole = Some(tmp);
        Ok(())
    }

    fn insert(&mut self, start: u64, data: Vec<u8>) {
        self.cached += data.len() as u64;
        self.clock += 1;
        self.spans.push(Span {
            start,
            data,
            used: self.clock,
        });
        while self.cached > CACHE_BYTES && self.spans.len() > 1 {
            let (i, _) = self
                .spans
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.used)
                .unwrap_or((0, &self.spans[0]));
            let s = self.spans.swap_remove(i);
            self.cached -= s.data.len() as u64;
        }
    }

    /// The cached span holding `pos`, if any.
    fn span_at(&self, pos: u64) -> Option<usize> {
        self.spans
            .iter()
            .position(|s| s.start <= pos && pos < s.start + s.data.len() as u64)
    }
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`): (FIRST, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    if last < first {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, total))
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.file.size;
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        if let Some(f) = &mut self.whole {
            f.seek(SeekFrom::Start(self.pos))?;
            let n = f.read(buf)?;
            self.pos += n as u64;
            return Ok(n);
        }
        let i = match self.span_at(self.pos) {
            Some(i) => i,
            None => {
                let forward = self.pos == self.last_end;
                let ahead = if forward {
                    (self.last_want * 2).clamp(MIN_FETCH, MAX_FETCH)
                } else {
                    MIN_FETCH
                };
                let want = ahead
                    .max(buf.len() as u64)
                    .min(MAX_FETCH.max(buf.len() as u64));
                let mut end = self.pos.saturating_add(want).min(size);
                // stop where a cached span starts: nothing is fetched twice
                if let Some(next) = self
                    .spans
                    .iter()
                    .map(|s| s.start)
                    .filter(|&s| s > self.pos)
                    .min()
                {
                    end = end.min(next);
                }
                let start = self.pos;
                self.fetch(start, end)?;
                self.last_end = end;
                self.last_want = end - start;
                if self.whole.is_some() {
                    return self.read(buf);
                }
                match self.span_at(start) {
                    Some(i) => i,
                    None => return Err(self.err("fetched span missing")),
                }
            }
        };
        self.clock += 1;
        let s = &mut self.spans[i];
        s.used = self.clock;
        let off = (self.pos - s.start) as usize;
        let n = buf.len().min(s.data.len() - off);
        buf[..n].copy_from_slice(&s.data[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target: i128 = match to {
            SeekFrom::Start(o) => o as i128,
            SeekFrom::End(d) => self.file.size as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before start",
            ));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}

/// Where one file of a remote input is, for a scan in place.
#[derive(Clone, Debug)]
pub enum Located {
    /// Already complete in the local cache.
    Local(std::path::PathBuf),
    /// Read by range requests.
    Remote(RemoteFile),
}

/// One file of a remote input scanned in place.
#[derive(Clone, Debug)]
pub struct InPlaceFile {
    /// Its path in the repository or artifact folder (`/`-separated).
    pub rel: String,
    /// The name shown in the report.
    pub display: String,
    pub at: Located,
}

/// Joins `name` (relative, `/`-separated) onto the folder of `rel`.
fn beside_path(rel: &str, name: &str) -> String {
    match rel.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{name}"),
        None => name.to_string(),
    }
}

fn open(
    agent: &ureq::Agent,
    at: &Located,
    stats: &Arc<Stats>,
) -> io::Result<(Box<dyn probity_scan::io::ReadSeek>, u64)> {
    Ok(match at {
        Located::Local(p) => {
            let f = std::fs::File::open(p)?;
            let n = f.metadata()?.len();
            (Box::new(f), n)
        }
        Located::Remote(r) => (
            Box::new(RangeReader::new(agent.clone(), r.clone(), stats.clone())),
            r.size,
        ),
    })
}

/// Scans one file of `group` in place; its shards (for an index) are
/// opened among the group's files.
fn scan_one(
    agent: &ureq::Agent,
    group: &[InPlaceFile],
    f: &InPlaceFile,
    ctx: &probity_scan::Ctx,
) -> probity_report::FileReport {
    let stats = Arc::new(Stats::default());
    let mut report = probity_report::FileReport::new(f.display.clone());
    let (mut r, len) = match open(agent, &f.at, &stats) {
        Ok(x) => x,
        Err(e) => {
            report.error = Some(format!("cannot open {}: {e}", f.display));
            return report;
        }
    };
    let beside = |name: &str| -> Option<io::Result<Box<dyn probity_scan::io::ReadSeek>>> {
        let want = beside_path(&f.rel, name);
        let other = group.iter().find(|g| g.rel == want)?;
        Some(open(agent, &other.at, &stats).map(|(r, _)| r))
    };
    let mut report = probity_scan::scan_reader(&mut *r, len, f.display.clone(), ctx, &beside);
    if let Some(e) = &mut report.error {
        *e = format!("cannot read {}: {e}", f.display);
    }
    if ctx.hash && report.error.is_none() {
        match &f.at {
            Located::Remote(RemoteFile {
                sha256_claim: Some(h),
                ..
            }) => {
                report.sha256 = Some(h.clone());
                report.sha256_source = Some("hub-listing".into());
            }
            _ => match sha256_of(&mut *r) {
                Ok(h) => report.sha256 = Some(h),
                Err(e) => report.error = Some(format!("cannot hash {}: {e}", f.display)),
            },
        }
    }
    if let Located::Remote(rf) = &f.at {
        report.transfer = Some(stats.transfer(rf.size));
    }
    report
}

/// SHA-256 of a whole source, streamed.
fn sha256_of(r: &mut dyn probity_scan::io::ReadSeek) -> io::Result<String> {
    use sha2::Digest;
    r.seek(SeekFrom::Start(0))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Scans the files of remote inputs in place (in parallel, on the current
/// rayon pool); `progress` is called once per finished file.
pub fn scan_in_place(
    groups: &[Vec<InPlaceFile>],
    ctx: &probity_scan::Ctx,
    progress: &(dyn Fn() + Sync),
) -> Vec<probity_report::FileReport> {
    use rayon::prelude::*;
    let agent = agent();
    let all: Vec<(&[InPlaceFile], &InPlaceFile)> = groups
        .iter()
        .flat_map(|g| g.iter().map(move |f| (g.as_slice(), f)))
        .collect();
    all.par_iter()
        .map(|(g, f)| {
            let r = scan_one(&agent, g, f, ctx);
            progress();
            r
        })
        .collect()
}

/// One line on what the in-place reads of `reports` transferred.
pub fn summary(reports: &[probity_report::FileReport]) -> Option<String> {
    let read: Vec<&probity_report::FileReport> =
        reports.iter().filter(|r| r.transfer.is_some()).collect();
    if read.is_empty() {
        return None;
    }
    let size: u64 = read.iter().map(|r| r.size).sum();
    let t: Vec<&Transfer> = read.iter().filter_map(|r| r.transfer.as_ref()).collect();
    let bytes: u64 = t.iter().map(|t| t.bytes).sum();
    let requests: u64 = t.iter().map(|t| t.requests).sum();
    let whole: Vec<String> = read
        .iter()
        .filter_map(|r| {
            let t = r.transfer.as_ref()?;
            match &t.reason {
                Some(why) => Some(format!("{} ({why})", r.path)),
                None => (t.whole && r.size > MIN_FETCH).then(|| r.path.clone()),
            }
        })
        .collect();
    let mut line =
        format!(
        "read {} remote file(s) in place: {} of {} transferred ({:.3}%) in {requests} request(s)",
        read.len(),
        crate::render::text::human(bytes),
        crate::render::text::human(size),
        if size == 0 { 0.0 } else { bytes as f64 * 100.0 / size as f64 }
    );
    if !whole.is_empty() {
        line.push_str(&format!("; read whole: {}", whole.join(", ")));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_beside() {
        assert_eq!(
            beside_path("a/b/index.json", "x.safetensors"),
            "a/b/x.safetensors"
        );
        assert_eq!(beside_path("index.json", "x.safetensors"), "x.safetensors");
    }

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some((0, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
