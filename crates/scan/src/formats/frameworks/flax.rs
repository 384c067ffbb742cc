//! Flax/JAX msgpack checkpoints (`flax.serialization.to_bytes`): a msgpack
//! map of nested maps whose leaves are scalars and extension values: arrays
//! (type 1: a msgpack `[shape, dtype name, raw bytes]`), complex numbers
//! (type 2) and NumPy scalars (type 3). The format carries data only; Flax
//! restores it without pickle. The walk reads every value with the `rmp`
//! crate's marker table, streams over byte payloads without buffering them,
//! checks each array's header, and reports a structure that breaks the
//! encoding or that Flax would not restore (SCN005).

use std::io::{self, Read};

use rmp::Marker;

use crate::{limits, Detected, Sink};

/// The deepest nesting read (Flax trees are a few levels deep).
const MAX_DEPTH: u32 = 64;

/// dtype names Flax writes for arrays (`dtype.name`).
const DTYPES: &[&str] = &[
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "bfloat16",
    "complex64",
    "complex128",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3b11fnuz",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "int4",
    "uint4",
];

/// Whether `head` starts like a Flax checkpoint: a map whose first key is a
/// short printable string.
pub fn sniff(head: &[u8]) -> bool {
    let Some(&m) = head.first() else {
        return false;
    };
    let mut i = match m {
        0x81..=0x8f => 1,
        0xde => 3,
        0xdf => 5,
        _ => return false,
    };
    let Some(&k) = head.get(i) else {
        return false;
    };
    let (start, n) = match k {
        0xa1..=0xbf => (i + 1, (k & 0x1f) as usize),
        0xd9 => match head.get(i + 1) {
            Some(&n) => (i + 2, n as usize),
            None => return false,
        },
        _ => return false,
    };
    let Some(key) = head.get(start..start + n) else {
        return false;
    };
    if !key.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return false;
    }
    i = start + n;
    // the first value: a map, an extension or a scalar
    matches!(head.get(i), Some(0x80..=0x8f | 0xde | 0xdf | 0xc7..=0xc9 | 0xd4..=0xd8 | 0x00..=0x7f | 0xca | 0xcb | 0xc2 | 0xc3 | 0xc0) | None)
}

struct Walk<'a> {
    r: &'a mut dyn Read,
    values: usize,
    arrays: usize,
    problems: Vec<String>,
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x))
}

impl Walk<'_> {
    fn bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; n];
        self.r
            .read_exact(&mut b)
            .map_err(|_| "the data ends inside a value".to_string())?;
        Ok(b)
    }

    fn len(&mut self, n: usize) -> Result<u64, String> {
        Ok(be(&self.bytes(n)?))
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let got = io::copy(&mut (&mut *self.r).take(n), &mut io::sink())
            .map_err(|e| format!("read error: {e}"))?;
        if got != n {
            return Err(format!("a payload of {n} bytes is cut off after {got}"));
        }
        Ok(())
    }

    fn string(&mut self, n: u64) -> Result<String, String> {
        if n > 4096 {
            self.skip(n)?;
            return Ok(String::new());
        }
        let b = self.bytes(n as usize)?;
        String::from_utf8(b).map_err(|_| "a string is not UTF-8".to_string())
    }

    /// One value; returns the string it held, if it was one (map keys,
    /// dtype names).
    fn value(&mut self, depth: u32) -> Result<Option<String>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        self.values += 1;
        if self.values > limits::MAX_PROTO_NODES {
            return Err(format!("more than {} values", limits::MAX_PROTO_NODES));
        }
        let m = self.bytes(1)?[0];
        match Marker::from_u8(m) {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
            }
            Marker::U8 | Marker::I8 => self.skip(1)?,
            Marker::U16 | Marker::I16 => self.skip(2)?,
            Marker::U32 | Marker::I32 | Marker::F32 => self.skip(4)?,
            Marker::U64 | Marker::I64 | Marker::F64 => self.skip(8)?,
            Marker::FixStr(n) => return self.string(u64::from(n)).map(Some),
            Marker::Str8 => {
                let n = self.len(1)?;
                return self.string(n).map(Some);
            }
            Marker::Str16 => {
                let n = self.len(2)?;
                return self.string(n).map(Some);
            }
            Marker::Str32 => {
                let n = self.len(4)?;
                return self.string(n).map(Some);
            }
            Marker::Bin8 => {
                let n = self.len(1)?;
                self.skip(n)?
            }
            Marker::Bin16 => {
                let n = self.len(2)?;
                self.skip(n)?
            }
            Marker::Bin32 => {
                let n = self.len(4)?;
                self.skip(n)?
            }
            Marker::FixArray(n) => self.items(u64::from(n), depth)?,
            Marker::Array16 => {
                let n = self.len(2)?;
                self.items(n, depth)?
            }
            Marker::Array32 => {
                let n = self.len(4)?;
                self.items(n, depth)?
            }
            Marker::FixMap(n) => self.entries(u64::from(n), depth)?,
            Marker::Map16 => {
                let n = self.len(2)?;
                self.entries(n, depth)?
            }
            Marker::Map32 => {
                let n = self.len(4)?;
                self.entries(n, depth)?
            }
            Marker::FixExt1 => self.ext(1, depth)?,
            Marker::FixExt2 => self.ext(2, depth)?,
            Marker::FixExt4 => self.ext(4, depth)?,
            Marker::FixExt8 => self.ext(8, depth)?,
            Marker::FixExt16 => self.ext(16, depth)?,
            Marker::Ext8 => {
                let n = self.len(1)?;
                self.ext(n, depth)?
            }
            Marker::Ext16 => {
                let n = self.len(2)?;
                self.ext(n, depth)?
            }
            Marker::Ext32 => {
                let n = self.len(4)?;
                self.ext(n, depth)?
            }
            Marker::Reserved => return Err(format!("byte 0x{m:02x} is not a msgpack marker")),
        }
        Ok(None)
    }

    fn items(&mut self, n: u64, depth: u32) -> Result<(), String> {
        for _ in 0..n {
            self.value(depth + 1)?;
        }
        Ok(())
    }

    fn entries(&mut self, n: u64, depth: u32) -> Result<(), String> {
        for _ in 0..n {
            if self.value(depth + 1)?.is_none() && self.problems.len() < 8 {
                self.problems
                    .push("a map key is not a string (Flax writes string keys)".into());
            }
            self.value(depth + 1)?;
        }
        Ok(())
    }

    /// An extension value of `n` payload bytes.
    fn ext(&mut self, n: u64, depth: u32) -> Result<(), String> {
        let code = self.bytes(1)?[0] as i8;
        match code {
            // ndarray and NumPy scalar: msgpack [shape, dtype, bytes]
            1 | 3 => {
                let mut inner = (&mut *self.r).take(n);
                let mut w = Walk {
                    r: &mut inner,
                    values: 0,
                    arrays: 0,
                    problems: Vec::new(),
                };
                let head = w.bytes(1)?[0];
                if head != 0x93 {
                    return Err(format!(
                        "an array extension does not hold [shape, dtype, data] (marker 0x{head:02x})"
                    ));
                }
                w.value(depth + 1)?;
                let dtype = w.value(depth + 1)?.unwrap_or_default();
                w.value(depth + 1)?;
                let rest = io::copy(&mut inner, &mut io::sink()).map_err(|e| e.to_string())?;
                if rest > 0 {
                    return Err(format!("{rest} bytes follow an array inside its extension"));
                }
                if !DTYPES.contains(&dtype.as_str()) && self.problems.len() < 8 {
                    self.problems.push(format!(
                        "an array has dtype `{dtype}`, which Flax does not write"
                    ));
                }
                self.arrays += 1;
                self.values += 1;
            }
            2 => self.skip(n)?,
            other => {
                self.skip(n)?;
                if self.problems.len() < 8 {
                    self.problems.push(format!(
                        "extension type {other}, which Flax does not write (it restores it as raw bytes)"
                    ));
                }
            }
        }
        Ok(())
    }
}

pub fn scan(
    r: &mut dyn Read,
    _len_hint: Option<u64>,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut w = Walk {
        r,
        values: 0,
        arrays: 0,
        problems: Vec::new(),
    };
    match w.value(0) {
        Ok(_) => {
            let mut one = [0u8; 1];
            if w.r.read(&mut one)? > 0 {
                w.problems
                    .push("bytes follow the checkpoint's top-level map".into());
            }
        }
        Err(e) => w.problems.insert(0, e),
    }
    let what = format!("Flax msgpack checkpoint ({} arrays read)", w.arrays);
    super::incomplete(sink, member, &what, &w.problems);
    Ok(Detected::named("flax-msgpack"))
}

stream_format!(
    Flax,
    "flax-msgpack",
    "Flax/JAX msgpack checkpoints: every value and array header, for a structure Flax would not restore",
    [&crate::rules::SCN005],
    sniff,
    scan
);
