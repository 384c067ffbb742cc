//! NumPy `.npy` files (and `.npz` members): the header is parsed; object
//! arrays carry a pickle right after it, which is scanned. Numeric arrays are
//! data only and are not read.

pub mod rules;

use std::io::{self, BufRead, Read};

use crate::format::{model, Format, Head, Label, Stream};
use crate::io::Peekable;
use crate::limits;
use crate::{pickle, Detected, Sink};
use probity_report::Finding;

/// The parts of an `.npy` header that matter here.
#[derive(Debug, PartialEq, Eq)]
pub struct NpyHeader {
    pub version: (u8, u8),
    pub descr: String,
    pub object: bool,
    pub header_len: usize,
}

/// Parses the magic, version and header dict literal.
pub fn parse_header(r: &mut dyn Read) -> Result<NpyHeader, String> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|e| format!("cannot read the magic: {e}"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("bad magic".into());
    }
    let version = (pre[6], pre[7]);
    let len = match version.0 {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|e| format!("cannot read the header length: {e}"))?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|e| format!("cannot read the header length: {e}"))?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(format!("unsupported format version {v}.{}", version.1)),
    };
    if len > limits::MAX_NPY_HEADER {
        return Err(format!(
            "header of {len} bytes is larger than the limit ({})",
            limits::MAX_NPY_HEADER
        ));
    }
    let mut h = vec![0u8; len];
    r.read_exact(&mut h)
        .map_err(|e| format!("header is shorter than its announced {len} bytes: {e}"))?;
    let text = String::from_utf8_lossy(&h).into_owned();
    let descr = extract_value(&text, "descr").ok_or_else(|| "header has no 'descr'".to_string())?;
    if extract_value(&text, "shape").is_none() {
        return Err("header has no 'shape'".into());
    }
    let object = descr_has_object(&descr);
    Ok(NpyHeader {
        version,
        descr,
        object,
        header_len: len,
    })
}

/// The source text of the value of `'key':` in a Python dict literal.
fn extract_value(text: &str, key: &str) -> Option<String> {
    let pat_a = format!("'{key}'");
    let pat_b = format!("\"{key}\"");
    let start = text
        .find(&pat_a)
        .map(|i| i + pat_a.len())
        .or_else(|| text.find(&pat_b).map(|i| i + pat_b.len()))?;
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start();
    // read one value: balanced brackets, quoted strings
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut end = rest.len();
    for (i, c) in rest.char_indices() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                if depth == 0 {
                    end = i;
                    break;
                }
                depth -= 1;
            }
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    Some(rest[..end].trim().to_string())
}

/// Whether a dtype description (simple or structured) holds Python objects.
fn descr_has_object(descr: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut cur = String::new();
    for c in descr.chars() {
        match quote {
            Some(q) if c == q => {
                let t = cur.trim_start_matches(['<', '>', '|', '=']);
                if t == "O" || t.starts_with("O") && t[1..].chars().all(|d| d.is_ascii_digit()) {
                    return true;
                }
                cur.clear();
                quote = None;
            }
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {}
        }
    }
    false
}

pub fn scan_npy<R: Read>(
    r: &mut Peekable<R>,
    member: &str,
    depth: u32,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let detected = Detected {
        format: "numpy".into(),
        joblib: false,
        ..Default::default()
    };
    match parse_header(r) {
        Err(msg) => {
            sink.findings.push(
                Finding::new(
                    &rules::NPY001,
                    format!("NumPy header cannot be parsed: {msg}"),
                )
                .at(Some(member), Some(0)),
            );
        }
        Ok(h) => {
            if h.object {
                let start = (if h.version.0 == 1 { 10 } else { 12 } + h.header_len) as u64;
                let empty = r.fill_buf()?.is_empty();
                if !empty {
                    pickle::scan_streams(r, start, member, &sink.ctx, depth, &mut sink.findings);
                }
            }
        }
    }
    Ok(detected)
}

/// NumPy `.npy` files.
pub struct Npy;

impl Format for Npy {
    fn name(&self) -> &'static str {
        "numpy"
    }
    fn summary(&self) -> &'static str {
        "NumPy .npy arrays (object arrays hold pickles)"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[model("numpy")];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        head.bytes.starts_with(b"\x93NUMPY")
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
        scan_npy(r, member, depth, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(dict: &str) -> Vec<u8> {
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        v.extend_from_slice(dict.as_bytes());
        v
    }

    #[test]
    fn headers() {
        let h = parse_header(
            &mut &hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }\n")[..],
        )
        .unwrap();
        assert!(!h.object);
        assert_eq!(h.descr, "'<f4'");
        let h = parse_header(
            &mut &hdr("{'descr': '|O', 'fortran_order': False, 'shape': (3,), }\n")[..],
        )
        .unwrap();
        assert!(h.object);
        let h = parse_header(
            &mut &hdr(
                "{'descr': [('a', '<i4'), ('b', '|O')], 'fortran_order': False, 'shape': (2,), }",
            )[..],
        )
        .unwrap();
        assert!(h.object);
        let h = parse_header(&mut &hdr("{'descr': [('name', '<U10'), ('Odd', '<f8')], 'fortran_order': False, 'shape': (2,), }")[..]).unwrap();
        assert!(!h.object);
        assert!(parse_header(&mut &hdr("{'fortran_order': False}")[..]).is_err());
        let mut big = b"\x93NUMPY\x02\x00".to_vec();
        big.extend_from_slice(&(u32::MAX).to_le_bytes());
        assert!(parse_header(&mut &big[..]).unwrap_err().contains("limit"));
    }
}
