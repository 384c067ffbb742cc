//! The analyzer interface. Every format the scanner reads implements
//! [`Format`] in its own module and is listed once in [`crate::registry`];
//! the scanner core sniffs and dispatches through that list and never names
//! a format itself.

use std::io::{self, Read};

use probity_report::Rule;

use crate::io::{Peekable, ReadSeek};
use crate::{Detected, Sink};

/// A forward-only source: a decompressed stream, a tar member, or a seekable
/// source read front to back. The scanner can peek at its head.
pub type Stream<'a> = Peekable<Box<dyn Read + 'a>>;

/// The first bytes of some content, as a sniff sees them.
pub struct Head<'a> {
    /// At most [`crate::limits::PICKLE_PROBE_WINDOW`] bytes.
    pub bytes: &'a [u8],
    /// Whether `bytes` is the entire content.
    pub whole: bool,
    /// The content's length, or `u64::MAX` when unknown.
    pub len: u64,
}

/// One value an analyzer may report as a file's `format`, and whether it is
/// a model (the CycloneDX output types such files `machine-learning-model`).
#[derive(Debug, Clone, Copy)]
pub struct Label {
    pub name: &'static str,
    pub model: bool,
}

/// Labels with `model` set.
pub const fn model(name: &'static str) -> Label {
    Label { name, model: true }
}

/// Labels with `model` unset (containers, documents).
pub const fn other(name: &'static str) -> Label {
    Label { name, model: false }
}

/// A format the static scanner reads: how it is recognised from content and
/// how it is analysed. Implementations never execute or deserialise what
/// they read into live objects.
pub trait Format: Sync {
    /// The name in reports when nothing more specific is found (`"zip"`).
    fn name(&self) -> &'static str;

    /// One line for `probity scan --help` and the docs: what is read.
    fn summary(&self) -> &'static str;

    /// Every value this analyzer may report as a file's `format`.
    fn labels(&self) -> &'static [Label];

    /// The rules this analyzer's checks report (shared families are listed
    /// by each member; the catalogue removes duplicates).
    fn rules(&self) -> Vec<&'static Rule> {
        Vec::new()
    }

    /// Whether content starting with `head` is this format.
    fn sniff(&self, head: &Head) -> bool;

    /// A second chance for a seekable source that no head sniff claimed
    /// (a zip with data prepended is found from its end record).
    fn sniff_seekable(&self, _r: &mut dyn ReadSeek, _len: u64) -> io::Result<bool> {
        Ok(false)
    }

    /// Whether the analyzer needs random access; a forward-only source is
    /// then spooled (memory, then a temporary file) before it is read.
    fn needs_seek(&self) -> bool {
        false
    }

    /// Reads a forward-only source (formats that do not need seeking).
    fn scan_stream(
        &self,
        _r: &mut Stream<'_>,
        _len_hint: Option<u64>,
        _member: &str,
        _depth: u32,
        _sink: &mut Sink,
    ) -> io::Result<Detected> {
        Err(io::Error::other(format!(
            "{} needs a seekable source",
            self.name()
        )))
    }

    /// Reads a seekable source of `len` bytes (formats that need seeking).
    fn scan_seekable(
        &self,
        _r: &mut dyn ReadSeek,
        _len: u64,
        _member: &str,
        _depth: u32,
        _sink: &mut Sink,
    ) -> io::Result<Detected> {
        Err(io::Error::other(format!(
            "{} is read as a stream",
            self.name()
        )))
    }
}
