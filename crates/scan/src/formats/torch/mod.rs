//! PyTorch specifics beyond the zip container: the code members of
//! TorchScript archives, and the record layout of the legacy tar format.

pub mod rules;

use crate::python_danger;
use std::io::{self, BufRead, Read};

use crate::io::Peekable;
use crate::{pickle, rules as scan_rules, Sink};
use probity_report::Finding;

/// Bytes per element of the legacy typed storages (`torch.<Name>Storage`).
fn storage_element_size(name: &str) -> Option<u64> {
    Some(match name.rsplit('.').next()? {
        "DoubleStorage" | "LongStorage" | "ComplexFloatStorage" => 8,
        "FloatStorage" | "IntStorage" | "QInt32Storage" => 4,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "CharStorage" | "ByteStorage" | "BoolStorage" | "QUInt8Storage" | "QInt8Storage"
        | "QUInt4x2Storage" | "QUInt2x4Storage" => 1,
        "ComplexDoubleStorage" => 16,
        _ => return None,
    })
}

/// Which member of a legacy tar checkpoint is being walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyMember {
    /// `storages`: a pickled count, then per storage a pickled
    /// `(key, location, storage_type)` followed by an 8-byte element count and
    /// the raw elements.
    Storages,
    /// `tensors`: a pickled count, then per tensor a pickled
    /// `(key, storage_id, tensor_type)` followed by ndim (4 bytes), 4 bytes of
    /// padding, ndim sizes and ndim strides (8 bytes each) and an 8-byte offset.
    Tensors,
}

/// Walks a legacy `storages`/`tensors` member record by record, so that every
/// pickle in it is scanned (a generic scan would stop at the first raw
/// block). Returns false when the member does not have the expected layout
/// (the caller then scans it generically); findings made so far are kept.
pub fn scan_legacy_records<R: Read>(
    r: &mut Peekable<R>,
    kind: LegacyMember,
    member: &str,
    sink: &mut Sink,
) -> io::Result<bool> {
    let mut pos = 0u64;
    let first = pickle::scan_one_stream(r, pos, member, &sink.ctx, &mut sink.findings);
    let (Some(end), Some(count)) = (first.stop, first.result_int) else {
        return Ok(false);
    };
    pos = end;
    if !(0..=1_000_000).contains(&count) {
        return Ok(false);
    }
    for i in 0..count {
        let rec = pickle::scan_one_stream(r, pos, member, &sink.ctx, &mut sink.findings);
        let Some(end) = rec.stop else {
            return Ok(true); // the parse error is already reported
        };
        pos = end;
        let skip = match kind {
            LegacyMember::Storages => {
                let Some(size) = rec
                    .imports
                    .iter()
                    .find_map(|imp| storage_element_size(&imp.full()))
                else {
                    sink.findings.push(
                        Finding::new(&scan_rules::SCN002, format!("legacy storage record {i} names no known storage type; the rest of the member was not walked"))
                            .at(Some(member), Some(pos)),
                    );
                    return Ok(true);
                };
                let mut n = [0u8; 8];
                r.read_exact(&mut n)?;
                pos += 8;
                u64::from_le_bytes(n).checked_mul(size)
            }
            LegacyMember::Tensors => {
                let mut n = [0u8; 8];
                r.read_exact(&mut n)?;
                pos += 8;
                let ndim = i32::from_le_bytes([n[0], n[1], n[2], n[3]]);
                if !(0..=64).contains(&ndim) {
                    return Ok(true);
                }
                Some(16 * ndim as u64 + 8)
            }
        };
        let Some(skip) = skip else { return Ok(true) };
        let copied = io::copy(&mut (&mut *r).take(skip), &mut io::sink())?;
        pos += copied;
        if copied < skip {
            return Ok(true);
        }
    }
    // anything after the announced records is scanned like any pickle data
    if !r.fill_buf()?.is_empty() {
        pickle::scan_streams(r, pos, member, &sink.ctx, 0, &mut sink.findings);
    }
    Ok(true)
}

/// Whether a name in TorchScript code refers to a Python facility that
/// compiled TorchScript never names. TorchScript serialises its modules as
/// a restricted Python dialect over `torch` ops; these names only appear
/// when someone edited the archive: an introspection attribute, or a call
/// of a builtin that evaluates, imports, opens or reflects (from
/// [`crate::python_danger`]). A builtin's name that is not called is an
/// ordinary variable (`input` is the usual name of `forward`'s argument).
fn dangerous_name(name: &str, line: &str) -> bool {
    python_danger::INTROSPECTION.contains(&name)
        || (python_danger::builtin_named(name).is_some() && called(line, name))
}

/// Whether `name` is called somewhere in `line` (`name(` or `name (`, not
/// part of a longer identifier or an attribute).
fn called(line: &str, name: &str) -> bool {
    let b = line.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
    line.match_indices(name).any(|(at, _)| {
        let before_ok = at == 0 || !ident(b[at - 1]);
        let rest = line[at + name.len()..].trim_start();
        before_ok && rest.starts_with('(')
    })
}

/// Whether the first name of a dotted token is a dangerous module: always
/// when the token is dotted, and on an import line; a module name that is
/// also an ordinary variable name (`code.x`) counts only on an import line.
fn dangerous_module(first: &str, dotted: bool, import_line: bool) -> bool {
    python_danger::module_named(first).is_some()
        && first != "__builtins__"
        && (import_line || (dotted && !python_danger::IDENTIFIER_LIKE.contains(&first)))
}

/// Checks the source of one TorchScript code member.
pub fn check_code(code: &[u8], member: &str, sink: &mut Sink) {
    let text = String::from_utf8_lossy(code);
    let mut hits: Vec<String> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line_code = line.split('#').next().unwrap_or("");
        for tok in dotted_tokens(line_code) {
            let first = tok.split('.').next().unwrap_or("");
            let last = tok.rsplit('.').next().unwrap_or("");
            let named = dangerous_name(first, line_code)
                || (tok.contains('.') && last.starts_with("__") && dangerous_name(last, line_code));
            let module = dangerous_module(first, tok.contains('.'), line_code.contains("import"));
            let import_stmt = line_code.trim_start().starts_with("import ")
                || line_code.trim_start().starts_with("from ");
            if named
                || module
                || (import_stmt
                    && !tok.starts_with("torch")
                    && !tok.starts_with("__torch__")
                    && tok != "import"
                    && tok != "from")
            {
                hits.push(format!("line {}: {}", lineno + 1, tok));
                break;
            }
        }
        if hits.len() >= 5 {
            break;
        }
    }
    if !hits.is_empty() {
        sink.findings.push(
            Finding::new(
                &rules::TRC001,
                format!(
                    "TorchScript code refers to Python internals: {}",
                    hits.join("; ")
                ),
            )
            .at(Some(member), None)
            .evidence(hits[0].clone()),
        );
    }
}

/// Identifier paths (`a.b.c`) in a line of code, outside string literals.
fn dotted_tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' || (c == '.' && !cur.is_empty()) {
            cur.push(c);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|t| t.trim_end_matches('.').to_string())
        .filter(|t| t.chars().next().is_some_and(|c| !c.is_ascii_digit()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ctx, FileState};

    fn hits(code: &str) -> usize {
        let ctx = Ctx::default();
        let st = FileState::new();
        let mut sink = Sink {
            ctx,
            state: &st,
            findings: Vec::new(),
            file: String::new(),
        };
        check_code(code.as_bytes(), "m", &mut sink);
        sink.findings.len()
    }

    fn storage_args(key: &str, storage: &str) -> Vec<u8> {
        let mut v = vec![0x80, 2, b'X'];
        v.extend_from_slice(&(key.len() as u32).to_le_bytes());
        v.extend_from_slice(key.as_bytes());
        v.extend_from_slice(b"X\x03\x00\x00\x00cpu");
        v.extend_from_slice(format!("ctorch\n{storage}\n").as_bytes());
        v.extend_from_slice(b"\x87.");
        v
    }

    #[test]
    fn legacy_storages_every_record_is_scanned() {
        // count = 2; record 0: FloatStorage of 3 elements; record 1: a payload
        let mut m = b"\x80\x02K\x02.".to_vec();
        m.extend(storage_args("0", "FloatStorage"));
        m.extend_from_slice(&3u64.to_le_bytes());
        m.extend_from_slice(&[0x80u8; 12]); // raw floats that look like PROTO opcodes
        m.extend_from_slice(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.");
        m.extend_from_slice(&0u64.to_le_bytes());
        let ctx = Ctx::default();
        let st = FileState::new();
        let mut sink = Sink {
            ctx,
            state: &st,
            findings: Vec::new(),
            file: String::new(),
        };
        let mut p = Peekable::new(std::io::Cursor::new(m));
        assert!(
            scan_legacy_records(&mut p, LegacyMember::Storages, "storages", &mut sink).unwrap()
        );
        let rules: Vec<&str> = sink.findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, ["PKL001", "SCN002"], "{:?}", sink.findings);
    }

    #[test]
    fn legacy_tensors_layout() {
        let mut m = b"\x80\x02K\x01.".to_vec();
        m.extend(storage_args("t0", "FloatTensor"));
        m.extend_from_slice(&2i32.to_le_bytes());
        m.extend_from_slice(&[0u8; 4]);
        m.extend_from_slice(&[0u8; 16 * 2 + 8]);
        let st = FileState::new();
        let mut sink = Sink {
            ctx: Ctx::default(),
            state: &st,
            findings: Vec::new(),
            file: String::new(),
        };
        let mut p = Peekable::new(std::io::Cursor::new(m));
        assert!(scan_legacy_records(&mut p, LegacyMember::Tensors, "tensors", &mut sink).unwrap());
        assert!(sink.findings.is_empty(), "{:?}", sink.findings);
    }

    #[test]
    fn torchscript_code() {
        let benign = "class Model(Module):\n  __parameters__ = [\"weight\", ]\n  def forward(self: __torch__.Model, x: Tensor) -> Tensor:\n    _0 = torch.linear(x, self.weight, self.bias)\n    return torch.relu(_0)\n";
        assert_eq!(hits(benign), 0);
        assert_eq!(
            hits("def forward(self):\n    __import__('os').system('id')\n"),
            1
        );
        assert_eq!(hits("import os\n"), 1);
        assert_eq!(hits("x = os.system(\"id\")\n"), 1);
        assert_eq!(hits("y = eval(s)\n"), 1);
        // a builtin's name used as a variable is not a call of the builtin
        let linear = "def forward(self: __torch__.Linear, input: Tensor) -> Tensor:\n    return torch.linear(input, self.weight, self.bias)\n";
        assert_eq!(hits(linear), 0);
        assert_eq!(hits("x = torch.tensor(open (\"/etc/passwd\"))\n"), 1);
        // modules the table knows, beyond the ones TorchScript listed before
        assert_eq!(hits("w = webbrowser.open(u)\n"), 1);
        // names inside string literals are not code
        assert_eq!(hits("s = \"os.system is bad\"\n"), 0);
    }
}
