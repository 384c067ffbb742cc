//! A streaming walk over protobuf messages (ONNX and TensorFlow files).
//!
//! Model protobufs are mostly tensor bytes: an ONNX file keeps its weights in
//! `GraphProto.initializer`, a frozen TensorFlow graph in `Const` nodes. The
//! walk reads the wire format field by field from a forward-only reader and,
//! following a static [`Schema`], descends into the messages that matter,
//! hands over the small ones whole (to be decoded with `prost`), and skips
//! everything else without buffering it. Memory stays bounded by
//! [`limits::MAX_PROTO_KEPT`] whatever the file size; depth is bounded by the
//! schema, which is static.

use std::io::{self, Read};

use crate::limits;

/// What to do with one field of a message.
#[derive(Clone, Copy)]
pub enum Field {
    /// Walk into the message field by field.
    Descend(&'static Schema),
    /// Hand the field's bytes (or varint) over whole.
    Keep,
}

/// The fields of one message type that the walk does not skip.
pub struct Schema {
    pub fields: &'static [(u32, Field)],
}

impl Schema {
    fn get(&self, n: u32) -> Option<Field> {
        self.fields.iter().find(|(k, _)| *k == n).map(|(_, f)| *f)
    }
}

/// What the walk reports, in file order. `path` holds the field numbers of the
/// enclosing descended messages, outermost first.
pub enum Event<'a> {
    Enter {
        path: &'a [u32],
    },
    Leave {
        path: &'a [u32],
    },
    Varint {
        path: &'a [u32],
        field: u32,
        value: u64,
    },
    Bytes {
        path: &'a [u32],
        field: u32,
        data: Vec<u8>,
    },
    /// A kept field longer than [`limits::MAX_PROTO_KEPT`]: skipped, not read.
    TooLarge {
        path: &'a [u32],
        field: u32,
        len: u64,
    },
}

/// Why the walk stopped early.
pub enum Stop {
    Malformed { offset: u64, why: String },
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Io(e)
    }
}

struct Walker<'r, R> {
    r: &'r mut R,
    pos: u64,
}

impl<R: Read> Walker<'_, R> {
    fn byte(&mut self) -> Result<Option<u8>, Stop> {
        let mut b = [0u8; 1];
        loop {
            match self.r.read(&mut b) {
                Ok(0) => return Ok(None),
                Ok(_) => {
                    self.pos += 1;
                    return Ok(Some(b[0]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn malformed<T>(&self, why: impl Into<String>) -> Result<T, Stop> {
        Err(Stop::Malformed {
            offset: self.pos,
            why: why.into(),
        })
    }

    /// A varint; `Ok(None)` only at a clean end of input before its first byte.
    fn varint(&mut self) -> Result<Option<u64>, Stop> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(b) = self.byte()? else {
                if i == 0 {
                    return Ok(None);
                }
                return self.malformed("the data ends inside a varint");
            };
            if i == 9 && b > 1 {
                return self.malformed("a varint longer than 64 bits");
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(Some(v));
            }
        }
        self.malformed("a varint longer than 10 bytes")
    }

    fn skip(&mut self, n: u64) -> Result<(), Stop> {
        let got = io::copy(&mut self.r.by_ref().take(n), &mut io::sink())?;
        self.pos += got;
        if got < n {
            return self.malformed(format!("a field of {n} bytes runs past the end"));
        }
        Ok(())
    }

    fn take(&mut self, n: u64) -> Result<Vec<u8>, Stop> {
        let mut buf = Vec::with_capacity(n.min(1 << 20) as usize);
        let got = self.r.by_ref().take(n).read_to_end(&mut buf)? as u64;
        self.pos += got;
        if got < n {
            return self.malformed(format!("a field of {n} bytes runs past the end"));
        }
        Ok(buf)
    }

    /// Walks one message of `len` bytes (`None`: to the end of input).
    fn message(
        &mut self,
        schema: &Schema,
        len: Option<u64>,
        path: &mut Vec<u32>,
        on: &mut dyn FnMut(Event) -> bool,
    ) -> Result<bool, Stop> {
        let end = len.map(|l| self.pos + l);
        loop {
            if let Some(end) = end {
                if self.pos == end {
                    return Ok(true);
                }
                if self.pos > end {
                    return self.malformed("a field runs past the end of its message");
                }
            }
            let Some(key) = self.varint()? else {
                if end.is_some() {
                    return self.malformed("the data ends inside a message");
                }
                return Ok(true);
            };
            let field = key >> 3;
            if field == 0 || field > 0x1fff_ffff {
                return self.malformed(format!("field number {field} is out of range"));
            }
            let field = field as u32;
            match key & 7 {
                0 => {
                    let Some(v) = self.varint()? else {
                        return self.malformed("the data ends inside a varint");
                    };
                    if matches!(schema.get(field), Some(Field::Keep))
                        && !on(Event::Varint {
                            path,
                            field,
                            value: v,
                        })
                    {
                        return Ok(false);
                    }
                }
                1 => self.skip(8)?,
                5 => self.skip(4)?,
                2 => {
                    let Some(n) = self.varint()? else {
                        return self.malformed("the data ends inside a length");
                    };
                    if let Some(end) = end {
                        if n > end - self.pos {
                            return self.malformed(format!(
                                "field {field} of {n} bytes runs past the end of its message"
                            ));
                        }
                    }
                    match schema.get(field) {
                        None => self.skip(n)?,
                        Some(Field::Keep) if n > limits::MAX_PROTO_KEPT => {
                            if !on(Event::TooLarge {
                                path,
                                field,
                                len: n,
                            }) {
                                return Ok(false);
                            }
                            self.skip(n)?;
                        }
                        Some(Field::Keep) => {
                            let data = self.take(n)?;
                            if !on(Event::Bytes { path, field, data }) {
                                return Ok(false);
                            }
                        }
                        Some(Field::Descend(sub)) => {
                            path.push(field);
                            if !on(Event::Enter { path }) {
                                return Ok(false);
                            }
                            if !self.message(sub, Some(n), path, on)? {
                                return Ok(false);
                            }
                            if !on(Event::Leave { path }) {
                                return Ok(false);
                            }
                            path.pop();
                        }
                    }
                }
                w => {
                    return self.malformed(format!(
                        "field {field} has wire type {w}, which no current protobuf writer emits"
                    ))
                }
            }
        }
    }
}

/// Walks a whole input as one message of type `schema`. The callback returns
/// false to stop early. Returns the bytes consumed.
pub fn walk<R: Read>(
    r: &mut R,
    schema: &Schema,
    on: &mut dyn FnMut(Event) -> bool,
) -> Result<u64, Stop> {
    let mut w = Walker { r, pos: 0 };
    let mut path = Vec::new();
    w.message(schema, None, &mut path, on)?;
    Ok(w.pos)
}

/// A varint at `head[*i..]` (for sniffing a head of bytes), advancing `i`;
/// `None` when it runs past the head or past ten bytes.
pub fn head_varint(head: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for k in 0..10 {
        let b = *head.get(*i)?;
        *i += 1;
        v |= u64::from(b & 0x7f) << (7 * k);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Whether `head` starts like a protobuf message: the first few fields have
/// valid keys with field numbers in `numbers`, and lengths that fit `len`.
pub fn plausible(head: &[u8], numbers: &[u32], len: u64, fields: usize) -> bool {
    let mut i = 0usize;
    let mut seen = 0;
    let varint = |i: &mut usize| head_varint(head, i);
    while seen < fields {
        if i >= head.len() {
            return seen > 0 && i as u64 == len;
        }
        let Some(key) = varint(&mut i) else {
            return false;
        };
        let (field, wire) = ((key >> 3) as u32, key & 7);
        if !numbers.contains(&field) {
            return false;
        }
        match wire {
            0 => {
                if varint(&mut i).is_none() {
                    return false;
                }
            }
            2 => {
                let Some(n) = varint(&mut i) else {
                    return false;
                };
                if n > len.saturating_sub(i as u64) {
                    // runs past the end: a truncated file, if what came
                    // before was already the message's
                    return seen > 0;
                }
                // a long field (a graph, tensor data) may run past the head:
                // what fitted is enough evidence
                if i as u64 + n > head.len() as u64 {
                    return seen > 0 || n >= 16;
                }
                i += n as usize;
            }
            1 => i += 8,
            5 => i += 4,
            _ => return false,
        }
        seen += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    static INNER: Schema = Schema {
        fields: &[(1, Field::Keep)],
    };
    static OUTER: Schema = Schema {
        fields: &[(1, Field::Keep), (2, Field::Descend(&INNER))],
    };

    fn events(data: &[u8]) -> (Vec<String>, Option<String>) {
        let mut out = Vec::new();
        let mut r = data;
        let res = walk(&mut r, &OUTER, &mut |e| {
            out.push(match e {
                Event::Enter { path } => format!("enter {path:?}"),
                Event::Leave { path } => format!("leave {path:?}"),
                Event::Varint { path, field, value } => format!("{path:?}.{field}={value}"),
                Event::Bytes { path, field, data } => format!("{path:?}.{field}={data:?}"),
                Event::TooLarge { field, len, .. } => format!("large {field} {len}"),
            });
            true
        });
        let err = match res {
            Ok(_) => None,
            Err(Stop::Malformed { why, .. }) => Some(why),
            Err(Stop::Io(e)) => Some(e.to_string()),
        };
        (out, err)
    }

    #[test]
    fn walks_descends_and_skips() {
        // 1: varint 150; 3: skipped string; 2: { 1: "ab", 9: fixed32 }
        let data = [
            0x08, 0x96, 0x01, 0x1a, 0x02, b'x', b'y', 0x12, 0x09, 0x0a, 0x02, b'a', b'b', 0x4d, 1,
            2, 3, 4,
        ];
        let (ev, err) = events(&data);
        assert_eq!(err, None);
        assert_eq!(
            ev,
            vec!["[].1=150", "enter [2]", "[2].1=[97, 98]", "leave [2]"]
        );
    }

    #[test]
    fn lying_lengths_and_truncation_are_malformed() {
        // inner field claims 5 bytes inside a 3-byte message
        let (_, err) = events(&[0x12, 0x03, 0x0a, 0x05, b'a']);
        assert!(err.unwrap().contains("past the end"));
        // truncated varint
        let (_, err) = events(&[0x08, 0x96]);
        assert!(err.unwrap().contains("inside a varint"));
        // deprecated group wire type
        let (_, err) = events(&[0x0b]);
        assert!(err.unwrap().contains("wire type 3"));
        // a kept field of a huge announced length fails without allocating it
        let (_, err) = events(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(err.is_some());
    }

    #[test]
    fn plausibility() {
        assert!(plausible(&[0x08, 0x07, 0x12, 0x01, b'x'], &[1, 2], 5, 4));
        assert!(!plausible(b"hello world", &[1, 2], 11, 4));
        assert!(!plausible(&[0x08, 0x07, 0x62, 0x01, b'x'], &[1, 2], 5, 4));
    }
}
