//! Shared pieces of Probity's fuzz targets: scanning bytes as a file,
//! structure-aware generators (pickles from an opcode grammar, zips with
//! several local headers per entry, GGUF headers with nested arrays) that
//! know what they planted, and the oracle the pickle target checks the
//! scanner against.
//!
//! The oracle is written apart from the scanner's policy code on purpose:
//! the generator records every global its stream imports, and [`SAFE`] is a
//! short list of callables known to be harmless, chosen here by reading what
//! they do. A stream the scanner calls clean must import nothing else.

use std::io::Cursor;

use probity_report::{FileReport, Severity};
use probity_scan::{scan_reader, Ctx};

/// Scans `data` as a file named `name` (no siblings).
pub fn scan_bytes(name: &str, data: &[u8]) -> FileReport {
    let mut c = Cursor::new(data);
    let none = |_: &str| None;
    scan_reader(&mut c, data.len() as u64, name.to_string(), &Ctx::default(), &none)
}

/// Whether a report has nothing at warning or above and no error.
pub fn clean(r: &FileReport) -> bool {
    r.error.is_none() && r.findings.iter().all(|f| f.severity < Severity::Warning)
}

/// Reads fuzz input as a stream of choices.
pub struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data, pos: 0 }
    }
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.byte() as usize % n
        }
    }
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

// ------------------------------------------------------------------ pickles

/// Callables whose call or instantiation from a pickle does nothing beyond
/// building plain data: containers, NumPy/PyTorch array reconstruction.
/// Independent of the scanner's allowlist on purpose (a subset of it).
pub const SAFE: &[&str] = &[
    "collections.OrderedDict",
    // encodes a string to bytes; the codec is looked up by name inside the
    // `encodings` package only (Python 2 pickles of bytes use it)
    "_codecs.encode",
    "builtins.set",
    "builtins.frozenset",
    "builtins.complex",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.FloatStorage",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
];

/// Globals the grammar draws from: the safe ones, dangerous ones, and
/// spellings that have fooled scanners.
pub const POOL: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "dtype"),
    ("os", "system"),
    ("posix", "system"),
    ("builtins", "eval"),
    ("__builtin__", "eval"),
    ("builtins", "getattr"),
    ("subprocess", "Popen"),
    ("operator", "attrgetter"),
    ("runpy", "_run_code"),
    ("pickle", "loads"),
    ("_codecs", "encode"),
    ("numpy.testing._private.utils", "runstring"),
    ("torch", "load"),
    ("builtins", "__import__"),
    ("mypkg.sub", "Thing"),
    ("os.path", "join"),
];

/// A generated pickle and what it imports, with the byte offset of each
/// import opcode (a cut before it removes the import).
pub struct Generated {
    pub bytes: Vec<u8>,
    pub imports: Vec<(String, usize)>,
    /// Whether an opcode the loader resolves through a registry the file
    /// does not carry (EXT1/2/4) was emitted: never clean.
    pub extension: bool,
}

struct Gen<'c, 'a> {
    c: &'c mut Choices<'a>,
    out: Vec<u8>,
    imports: Vec<(String, usize)>,
    memo: u32,
    strings_memo: Vec<(u32, String)>,
    extension: bool,
    depth: u32,
}

impl Gen<'_, '_> {
    fn str_op(&mut self, s: &str) {
        let b = s.as_bytes();
        if b.len() < 256 && self.c.below(2) == 0 {
            self.out.push(0x8c); // SHORT_BINUNICODE
            self.out.push(b.len() as u8);
        } else {
            self.out.push(b'X'); // BINUNICODE
            self.out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        }
        self.out.extend_from_slice(b);
    }

    /// Pushes a string, possibly memoised and fetched back (memo indirection).
    fn string(&mut self, s: &str) {
        match self.c.below(3) {
            0 => {
                self.str_op(s);
                self.out.push(0x94); // MEMOIZE
                let id = self.memo;
                self.memo += 1;
                self.strings_memo.push((id, s.to_string()));
                self.out.push(b'0'); // POP
                self.get(id);
            }
            _ => self.str_op(s),
        }
    }

    fn get(&mut self, id: u32) {
        if id < 256 {
            self.out.push(b'h'); // BINGET
            self.out.push(id as u8);
        } else {
            self.out.push(b'j'); // LONG_BINGET
            self.out.extend_from_slice(&id.to_le_bytes());
        }
    }

    /// Pushes one global. The import is recorded at the offset of the
    /// opcode that makes it (GLOBAL, or STACK_GLOBAL after its two strings):
    /// a cut or flip before that offset may remove it.
    fn global(&mut self) {
        let (m, n) = POOL[self.c.below(POOL.len())];
        let at;
        match self.c.below(3) {
            0 => {
                at = self.out.len();
                self.out.push(b'c'); // GLOBAL
                self.out.extend_from_slice(format!("{m}\n{n}\n").as_bytes());
            }
            1 => {
                // a memoised global fetched back: one import, used again
                at = self.out.len();
                self.out.push(b'c');
                self.out.extend_from_slice(format!("{m}\n{n}\n").as_bytes());
                self.out.push(0x94);
                let id = self.memo;
                self.memo += 1;
                self.out.push(b'0');
                self.get(id);
            }
            _ => {
                // STACK_GLOBAL with names that may come from the memo
                self.string(m);
                self.string(n);
                at = self.out.len();
                self.out.push(0x93);
            }
        }
        self.imports.push((format!("{m}.{n}"), at));
    }

    /// Pushes exactly one value.
    fn value(&mut self) {
        self.depth += 1;
        let deep = self.depth > 6;
        let pick = if deep { self.c.below(5) } else { self.c.below(16) };
        match pick {
            0 => self.out.push(b'N'),
            1 => {
                self.out.push(b'K');
                let b = self.c.byte();
                self.out.push(b);
            }
            2 => {
                let s = format!("s{}", self.c.byte());
                self.string(&s);
            }
            3 => {
                self.out.push(b'G');
                self.out.extend_from_slice(&1.5f64.to_be_bytes());
            }
            4 => {
                let n = self.c.below(8);
                let b = self.c.bytes(n);
                self.out.push(b'C'); // SHORT_BINBYTES
                self.out.push(n as u8);
                self.out.extend_from_slice(&b);
            }
            5 | 6 => {
                // tuple of a few values
                self.out.push(b'(');
                for _ in 0..self.c.below(4) {
                    self.value();
                }
                self.out.push(b't');
            }
            7 => {
                self.out.push(b'}');
                self.out.push(b'(');
                for _ in 0..self.c.below(3) {
                    self.string("k");
                    self.value();
                }
                self.out.push(b'u'); // SETITEMS
            }
            8 => {
                // call: global(args) through REDUCE
                self.global();
                self.out.push(b'(');
                for _ in 0..self.c.below(3) {
                    self.value();
                }
                self.out.push(b't');
                self.out.push(b'R');
            }
            9 => {
                // NEWOBJ: cls.__new__(cls, *args)
                self.global();
                self.out.push(b')');
                self.out.push(0x81);
            }
            10 => {
                // BUILD on a made object
                self.global();
                self.out.push(b')');
                self.out.push(b'R');
                self.out.push(b'}');
                self.out.push(b'b');
            }
            11 => {
                // INST: MARK args INST module\nname\n
                let (m, n) = POOL[self.c.below(POOL.len())];
                self.out.push(b'(');
                for _ in 0..self.c.below(2) {
                    self.value();
                }
                let at = self.out.len();
                self.out.push(b'i');
                self.out.extend_from_slice(format!("{m}\n{n}\n").as_bytes());
                self.imports.push((format!("{m}.{n}"), at));
            }
            12 => {
                // OBJ: MARK cls args OBJ
                self.out.push(b'(');
                self.global();
                for _ in 0..self.c.below(2) {
                    self.value();
                }
                self.out.push(b'o');
            }
            13 => {
                // EXT1: a callable from the copyreg extension registry
                self.out.push(0x82);
                let b = self.c.byte();
                self.out.push(b);
                self.extension = true;
            }
            14 => {
                // a persistent id (PyTorch storages): BINPERSID on a tuple
                self.out.push(b'(');
                self.string("storage");
                self.value();
                self.out.push(b't');
                self.out.push(b'Q');
            }
            _ => {
                // a memoised string fetched back
                if let Some((id, _)) = self.strings_memo.first().cloned() {
                    self.get(id);
                } else {
                    self.out.push(b'N');
                }
            }
        }
        self.depth -= 1;
    }
}

/// A well-formed pickle stream drawn from the grammar: a list of values.
pub fn gen_pickle(c: &mut Choices) -> Generated {
    let proto = 2 + c.below(4) as u8;
    let mut g = Gen {
        c,
        out: vec![0x80, proto],
        imports: Vec::new(),
        memo: 0,
        strings_memo: Vec::new(),
        extension: false,
        depth: 0,
    };
    if proto >= 4 && g.c.below(2) == 0 {
        // a FRAME covering nothing in particular: loaders ignore its size
        g.out.push(0x95);
        g.out.extend_from_slice(&0u64.to_le_bytes());
    }
    g.out.push(b']');
    let n = 1 + g.c.below(6);
    for _ in 0..n {
        g.value();
        g.out.push(b'a');
        if g.c.done() {
            break;
        }
    }
    g.out.push(b'.');
    Generated {
        bytes: g.out,
        imports: g.imports,
        extension: g.extension,
    }
}

// --------------------------------------------------------------------- zips

/// A malicious pickle: `os.system("id")`.
pub const EVIL_PICKLE: &[u8] = b"\x80\x02cposix\nsystem\nq\0X\x02\0\0\0idq\x01\x85q\x02Rq\x03.";
/// A benign pickle: `{"a": 1}`.
pub const GOOD_PICKLE: &[u8] = b"\x80\x02}q\0X\x01\0\0\0aq\x01K\x01s.";

fn crc(data: &[u8]) -> u32 {
    // CRC-32 (IEEE), bitwise: the fuzz crate keeps no extra dependency
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
    }
    !c
}

/// A zip built from choices: entries with benign, malicious or random
/// content; names that differ between the local header and the central
/// directory, duplicates, local headers the directory does not list, data
/// descriptors, prefix data. Returns the bytes and whether a malicious
/// pickle is the content of some local header (what a streaming loader
/// reads) or of a central-directory entry.
pub fn gen_zip(c: &mut Choices) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    if c.below(4) == 0 {
        out.extend_from_slice(b"MZ prefix data of a self-extracting archive\n");
    }
    let mut central = Vec::new();
    let mut entries = 0u16;
    let mut planted = false;
    for i in 0..1 + c.below(4) {
        let content: Vec<u8> = match c.below(4) {
            0 => {
                planted = true;
                EVIL_PICKLE.to_vec()
            }
            1 => GOOD_PICKLE.to_vec(),
            2 => {
                let n = c.below(32);
                c.bytes(n)
            }
            _ => b"{\"a\": 1}".to_vec(),
        };
        let name = match c.below(3) {
            0 => "archive/data.pkl".to_string(),
            1 => format!("m{i}.pkl"),
            _ => "archive/data.pkl".to_string(),
        };
        let local_name = if c.below(4) == 0 {
            format!("other{i}.pkl")
        } else {
            name.clone()
        };
        let descriptor = c.below(5) == 0;
        let flags: u16 = if descriptor { 0x08 } else { 0 };
        let offset = out.len() as u32;
        let sum = crc(&content);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&[0; 4]); // time, date
        let (lcrc, lsize) = if descriptor { (0, 0) } else { (sum, content.len() as u32) };
        out.extend_from_slice(&lcrc.to_le_bytes());
        out.extend_from_slice(&lsize.to_le_bytes());
        out.extend_from_slice(&lsize.to_le_bytes());
        out.extend_from_slice(&(local_name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(local_name.as_bytes());
        out.extend_from_slice(&content);
        if descriptor {
            out.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
            out.extend_from_slice(&sum.to_le_bytes());
            out.extend_from_slice(&(content.len() as u32).to_le_bytes());
            out.extend_from_slice(&(content.len() as u32).to_le_bytes());
        }
        // some local headers are left out of the central directory
        if c.below(5) != 0 {
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes());
            central.extend_from_slice(&flags.to_le_bytes());
            central.extend_from_slice(&0u16.to_le_bytes());
            central.extend_from_slice(&[0; 4]);
            central.extend_from_slice(&sum.to_le_bytes());
            central.extend_from_slice(&(content.len() as u32).to_le_bytes());
            central.extend_from_slice(&(content.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]); // extra, comment, disk, attrs
            central.extend_from_slice(&0u32.to_le_bytes()); // external attrs
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
            entries += 1;
        }
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    (out, planted)
}

// --------------------------------------------------------------------- GGUF

/// A GGUF header with key/value pairs of every type, arrays nested up to a
/// few levels, and (when chosen) a chat template that reaches `os.popen`.
/// Returns the bytes and whether that template was planted.
pub fn gen_gguf(c: &mut Choices) -> (Vec<u8>, bool) {
    fn s(out: &mut Vec<u8>, x: &str) {
        out.extend_from_slice(&(x.len() as u64).to_le_bytes());
        out.extend_from_slice(x.as_bytes());
    }
    fn value(c: &mut Choices, out: &mut Vec<u8>, ty: u32, depth: u32) {
        match ty {
            0 | 1 | 7 => out.push(c.byte()),
            2 | 3 => out.extend_from_slice(&c.bytes(2)),
            4..=6 => out.extend_from_slice(&c.bytes(4)),
            10..=12 => out.extend_from_slice(&c.bytes(8)),
            8 => {
                let n = c.below(6);
                s(out, &"x".repeat(n))
            }
            _ => {
                // array: element type, count, elements (arrays of arrays too)
                let inner = if depth < 3 { [0, 4, 8, 9][c.below(4)] } else { 4 };
                out.extend_from_slice(&(inner as u32).to_le_bytes());
                let n = c.below(4);
                out.extend_from_slice(&(n as u64).to_le_bytes());
                for _ in 0..n {
                    value(c, out, inner, depth + 1);
                }
            }
        }
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let n = 1 + c.below(6);
    out.extend_from_slice(&(n as u64 + 1).to_le_bytes());
    s(&mut out, "general.architecture");
    out.extend_from_slice(&8u32.to_le_bytes());
    s(&mut out, "llama");
    let mut planted = false;
    for i in 0..n {
        if c.below(4) == 0 {
            s(&mut out, "tokenizer.chat_template");
            out.extend_from_slice(&8u32.to_le_bytes());
            if c.below(2) == 0 {
                planted = true;
                s(&mut out, "{{ cycler.__init__.__globals__.os.popen('id').read() }}");
            } else {
                s(&mut out, "{% for m in messages %}{{ m['content'] }}{% endfor %}");
            }
            continue;
        }
        s(&mut out, &format!("k{i}"));
        let ty = [0u32, 4, 6, 7, 8, 9, 10, 12][c.below(8)];
        out.extend_from_slice(&ty.to_le_bytes());
        value(c, &mut out, ty, 0);
    }
    (out, planted)
}
