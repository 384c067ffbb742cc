//! GGUF (llama.cpp's format, versions 2 and 3): the header, every metadata
//! key/value and every tensor description are parsed with a bound on each
//! count and length; tensor data is never read. Chat templates
//! (`tokenizer.chat_template` and its named variants
//! `tokenizer.chat_template.NAME`) are judged like any other template.

pub mod rules;

use std::io::{self, Read};

use crate::format::{model, Format, Head, Label, Stream};
use crate::formats::config::text::judge_into;
use crate::limits;
use crate::{Detected, Sink};
use probity_report::Finding;

/// Why a GGUF header could not be read to the end.
enum Stop {
    Malformed(String),
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Stop::Malformed("the file ends inside its header".into())
        } else {
            Stop::Io(e)
        }
    }
}

struct Reader<'a, R> {
    r: &'a mut R,
    /// Bytes consumed so far.
    pos: u64,
    /// File length, when known.
    len: Option<u64>,
}

impl<R: Read> Reader<'_, R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b)?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.bytes::<4>()?))
    }
    fn u64(&mut self) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.bytes::<8>()?))
    }
    /// A length-prefixed string: kept (lossy UTF-8) when `keep`, else
    /// skipped; lengths past the end of the file or over the bound stop.
    fn string(&mut self, keep: bool, what: &str) -> Result<Option<String>, Stop> {
        let n = self.u64()?;
        if let Some(len) = self.len {
            if n > len.saturating_sub(self.pos) {
                return Err(Stop::Malformed(format!(
                    "{what}: string of {n} bytes runs past the end of the file"
                )));
            }
        }
        if n > limits::MAX_GGUF_STRING {
            return Err(Stop::Malformed(format!(
                "{what}: string of {n} bytes is longer than the {} MiB limit",
                limits::MAX_GGUF_STRING >> 20
            )));
        }
        let mut buf = Vec::new();
        let got = if keep {
            self.r.by_ref().take(n).read_to_end(&mut buf)? as u64
        } else {
            io::copy(&mut self.r.by_ref().take(n), &mut io::sink())?
        };
        self.pos += got;
        if got < n {
            return Err(Stop::Malformed(format!(
                "{what}: the file ends inside a string"
            )));
        }
        Ok(keep.then(|| String::from_utf8_lossy(&buf).into_owned()))
    }
    fn skip(&mut self, n: u64) -> Result<(), Stop> {
        let got = io::copy(&mut self.r.by_ref().take(n), &mut io::sink())?;
        self.pos += got;
        if got < n {
            return Err(Stop::Malformed("the file ends inside its header".into()));
        }
        Ok(())
    }
}

/// Width in bytes of a fixed-size GGUF value type.
fn width(t: u32) -> Option<u64> {
    Some(match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => return None,
    })
}

fn is_template_key(k: &str) -> bool {
    k == "tokenizer.chat_template" || k.starts_with("tokenizer.chat_template.")
}

/// A value; strings of template keys are returned, others skipped.
fn value<R: Read>(
    rd: &mut Reader<'_, R>,
    t: u32,
    key: &str,
    depth: u32,
) -> Result<Option<String>, Stop> {
    match t {
        8 => rd.string(is_template_key(key), key),
        9 => {
            if depth > 0 {
                return Err(Stop::Malformed(format!("{key}: nested arrays")));
            }
            let et = rd.u32()?;
            let n = rd.u64()?;
            if n > limits::MAX_GGUF_ARRAY {
                return Err(Stop::Malformed(format!(
                    "{key}: array of {n} elements is over the limit of {}",
                    limits::MAX_GGUF_ARRAY
                )));
            }
            if let Some(w) = width(et) {
                let bytes = n
                    .checked_mul(w)
                    .ok_or_else(|| Stop::Malformed(format!("{key}: array size overflows")))?;
                if let Some(len) = rd.len {
                    if bytes > len.saturating_sub(rd.pos) {
                        return Err(Stop::Malformed(format!(
                            "{key}: array of {n} elements runs past the end of the file"
                        )));
                    }
                }
                rd.skip(bytes)?;
            } else if et == 8 {
                for _ in 0..n {
                    rd.string(false, key)?;
                }
            } else {
                return Err(Stop::Malformed(format!(
                    "{key}: array of unknown value type {et}"
                )));
            }
            Ok(None)
        }
        _ => match width(t) {
            Some(w) => {
                rd.skip(w)?;
                Ok(None)
            }
            None => Err(Stop::Malformed(format!("{key}: unknown value type {t}"))),
        },
    }
}

/// What the header holds that the checks need.
struct Header {
    templates: Vec<(String, String)>,
    alignment: u64,
    tensors: Vec<(String, u64)>,
}

/// Parses into `h`, so that what was read before a problem is kept.
fn parse<R: Read>(rd: &mut Reader<'_, R>, h: &mut Header) -> Result<(), Stop> {
    let magic = rd.bytes::<4>()?;
    if &magic != b"GGUF" {
        return Err(Stop::Malformed("bad magic".into()));
    }
    let version = rd.u32()?;
    if !(2..=3).contains(&version) {
        return Err(Stop::Malformed(format!(
            "unsupported version {version} (2 and 3 are read)"
        )));
    }
    let n_tensors = rd.u64()?;
    let n_kv = rd.u64()?;
    if n_tensors > limits::MAX_GGUF_TENSORS || n_kv > limits::MAX_GGUF_KV {
        return Err(Stop::Malformed(format!(
            "{n_tensors} tensors and {n_kv} metadata entries are over the limits ({} and {})",
            limits::MAX_GGUF_TENSORS,
            limits::MAX_GGUF_KV
        )));
    }
    for i in 0..n_kv {
        let key = rd
            .string(true, &format!("metadata key #{i}"))?
            .unwrap_or_default();
        let t = rd.u32()?;
        if key == "general.alignment" && t == 4 {
            let a = rd.u32()? as u64;
            if a == 0 || !a.is_power_of_two() {
                return Err(Stop::Malformed(format!(
                    "general.alignment {a} is not a power of two"
                )));
            }
            h.alignment = a;
            continue;
        }
        if let Some(s) = value(rd, t, &key, 0)? {
            h.templates.push((key, s));
        }
    }
    for i in 0..n_tensors {
        let name = rd
            .string(true, &format!("tensor #{i} name"))?
            .unwrap_or_default();
        let dims = rd.u32()?;
        if dims == 0 || dims > 4 {
            return Err(Stop::Malformed(format!(
                "tensor '{name}' has {dims} dimensions (1 to 4 allowed)"
            )));
        }
        for _ in 0..dims {
            rd.u64()?;
        }
        let _ggml_type = rd.u32()?;
        let offset = rd.u64()?;
        h.tensors.push((name, offset));
    }
    Ok(())
}

/// Scans a GGUF stream.
pub fn scan<R: Read>(
    r: &mut R,
    len_hint: Option<u64>,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let det = Detected::named("gguf");
    let mut rd = Reader {
        r,
        pos: 0,
        len: len_hint,
    };
    let flag = |sink: &mut Sink, msg: String| {
        sink.findings
            .push(Finding::new(&rules::GGF001, msg).at(Some(member), None));
    };
    let mut h = Header {
        templates: Vec::new(),
        alignment: 32,
        tensors: Vec::new(),
    };
    let parsed = parse(&mut rd, &mut h);
    // templates read before any problem are judged either way
    for (k, t) in &h.templates {
        judge_into(t, Some(k), member, sink);
    }
    match parsed {
        Err(Stop::Io(e)) => Err(e),
        Err(Stop::Malformed(m)) => {
            flag(sink, format!("GGUF header: {m}"));
            Ok(det)
        }
        Ok(()) => {
            let data_start = rd.pos.div_ceil(h.alignment) * h.alignment;
            let mut bad = Vec::new();
            for (name, off) in &h.tensors {
                if off % h.alignment != 0 {
                    bad.push(format!(
                        "tensor '{name}' offset {off} is not a multiple of the alignment {}",
                        h.alignment
                    ));
                }
                if let Some(len) = len_hint {
                    if data_start.saturating_add(*off) > len {
                        bad.push(format!(
                            "tensor '{name}' starts at {off}, past the end of the file"
                        ));
                    }
                }
            }
            if !bad.is_empty() {
                flag(
                    sink,
                    format!("GGUF tensor table: {}", crate::formats::summarise(&bad, 3)),
                );
            }
            Ok(det)
        }
    }
}

/// GGUF files.
pub struct Gguf;

impl Format for Gguf {
    fn name(&self) -> &'static str {
        "gguf"
    }
    fn summary(&self) -> &'static str {
        "GGUF (header, metadata, chat templates)"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[model("gguf")];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        head.bytes.starts_with(b"GGUF")
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
