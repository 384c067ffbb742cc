//! I/O helpers for the scanner: peeking at a stream's head, reading a byte
//! range of a seekable source, and bounding decompression.

use std::cell::Cell;
use std::io::{self, BufRead, Read, Seek, SeekFrom};
use std::rc::Rc;

use crate::limits;

/// Anything readable and seekable.
pub trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// A buffered reader that can look ahead at least `n` bytes.
pub struct Peekable<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: Read> Peekable<R> {
    pub fn new(inner: R) -> Self {
        Peekable {
            inner,
            buf: Vec::with_capacity(64 << 10),
            pos: 0,
            eof: false,
        }
    }

    /// Returns up to `n` bytes ahead without consuming them (fewer only at EOF).
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.pos > 0 && self.buf.len() - self.pos < n {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        while self.buf.len() - self.pos < n && !self.eof {
            let want = (n - (self.buf.len() - self.pos)).max(64 << 10);
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let got = loop {
                match self.inner.read(&mut self.buf[old..]) {
                    Ok(g) => break g,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + got);
            if got == 0 {
                self.eof = true;
            }
        }
        let end = (self.pos + n).min(self.buf.len());
        Ok(&self.buf[self.pos..end])
    }
}

impl<R: Read> Read for Peekable<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Peekable<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if !self.eof {
                self.peek(64 << 10)?;
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }
}

/// A window `[start, start+len)` of a seekable source, itself seekable.
pub struct Window<'a> {
    inner: &'a mut dyn ReadSeek,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Window<'a> {
    pub fn new(inner: &'a mut dyn ReadSeek, start: u64, len: u64) -> io::Result<Self> {
        inner.seek(SeekFrom::Start(start))?;
        Ok(Window {
            inner,
            start,
            len,
            pos: 0,
        })
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target: i128 = match to {
            SeekFrom::Start(o) => o as i128,
            SeekFrom::End(d) => self.len as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before start",
            ));
        }
        let t = target as u64;
        self.inner
            .seek(SeekFrom::Start(self.start + t.min(self.len)))?;
        self.pos = t.min(self.len);
        Ok(self.pos)
    }
}

/// Error raised inside a bounded decompressor when its output passes the limits.
#[derive(Debug)]
pub struct BombError {
    pub produced: u64,
    pub consumed: u64,
    pub reason: String,
}

impl std::fmt::Display for BombError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "decompression stopped after {} bytes out of {} bytes in: {}",
            self.produced, self.consumed, self.reason
        )
    }
}
impl std::error::Error for BombError {}

/// Returns the bomb error carried by an I/O error, if any.
pub fn as_bomb(e: &io::Error) -> Option<&BombError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<BombError>())
}

/// Counts bytes read through it (the compressed side).
pub struct CountIn<R> {
    pub inner: R,
    pub count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountIn<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CountIn<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.count.set(self.count.get() + amt as u64);
        self.inner.consume(amt)
    }
}

/// Bounds the output of a decompressor: fails with a [`BombError`] when the
/// output exceeds the file's remaining decompression budget or when it passes
/// [`limits::BOMB_RATIO_FLOOR`] with a ratio above
/// [`limits::MAX_COMPRESSION_RATIO`].
pub struct Bounded<R> {
    inner: R,
    produced: u64,
    consumed: Rc<Cell<u64>>,
    /// Compressed size when known up front (zip members); else the live count.
    compressed_hint: Option<u64>,
    budget: Rc<Cell<u64>>,
}

impl<R: Read> Bounded<R> {
    pub fn new(
        inner: R,
        consumed: Rc<Cell<u64>>,
        compressed_hint: Option<u64>,
        budget: Rc<Cell<u64>>,
    ) -> Self {
        Bounded {
            inner,
            produced: 0,
            consumed,
            compressed_hint,
            budget,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        let left = self.budget.get();
        if n as u64 > left {
            return Err(io::Error::other(BombError {
                produced: self.produced,
                consumed: self.consumed.get(),
                reason: format!(
                    "more than {} bytes decompressed from one file",
                    limits::MAX_DECOMPRESSED_TOTAL
                ),
            }));
        }
        self.budget.set(left - n as u64);
        if self.produced > limits::BOMB_RATIO_FLOOR {
            let input = self
                .compressed_hint
                .unwrap_or_else(|| self.consumed.get())
                .max(1);
            if self.produced / input > limits::MAX_COMPRESSION_RATIO {
                return Err(io::Error::other(BombError {
                    produced: self.produced,
                    consumed: input,
                    reason: format!(
                        "compression ratio above {}:1",
                        limits::MAX_COMPRESSION_RATIO
                    ),
                }));
            }
        }
        Ok(n)
    }
}

/// Reads the whole of a (small) source up to `max` bytes; `None` if longer.
pub fn read_bounded(r: &mut dyn Read, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut v = Vec::new();
    r.take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        Ok(None)
    } else {
        Ok(Some(v))
    }
}
