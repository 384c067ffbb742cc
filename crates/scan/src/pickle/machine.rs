//! A symbolic pickle machine for protocols 0–5, written for analysis, not
//! deserialisation.
//!
//! It executes the opcode stream over [`Value`]s: the stack, the mark stack,
//! the memo and frames behave as in CPython's unpickler, but imports are only
//! *recorded* (module and qualified name, resolved through the memo and any
//! other indirection the stream uses) and calls only produce symbolic
//! objects. Every callable that loading would invoke is recorded with its
//! opcode offset: REDUCE, BUILD (`__setstate__`), INST, OBJ, NEWOBJ,
//! NEWOBJ_EX and the copyreg extension codes EXT1/2/4.
//!
//! The machine never trusts a length: payloads are read in bounded pieces and
//! only a prefix is kept (see [`crate::limits`]). On malformed input it
//! records the error and stops the stream; everything seen before the error
//! is kept, so a payload followed by garbage is still reported.

use std::cell::RefCell;
use std::io::{self, BufRead};
use std::rc::Rc;

use super::value::{Blob, CallObj, GlobalRef, Items, Value};
use crate::limits;

/// How a callable gets invoked by the unpickler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Reduce,
    Build,
    Inst,
    Obj,
    NewObj,
    NewObjEx,
}

impl CallKind {
    pub fn opcode(self) -> &'static str {
        match self {
            CallKind::Reduce => "REDUCE",
            CallKind::Build => "BUILD",
            CallKind::Inst => "INST",
            CallKind::Obj => "OBJ",
            CallKind::NewObj => "NEWOBJ",
            CallKind::NewObjEx => "NEWOBJ_EX",
        }
    }
}

/// One import made by the stream.
#[derive(Debug, Clone)]
pub struct Import {
    pub module: String,
    pub name: String,
    /// Offset and opcode of the first import of this name.
    pub offset: u64,
    pub opcode: &'static str,
    /// How many times the stream imports it.
    pub count: u64,
    /// How many calls were made through it (only the first few are in `calls`).
    pub calls: u64,
}

impl Import {
    pub fn full(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

/// What was called.
#[derive(Debug, Clone)]
pub enum Callee {
    /// An imported global (index into [`StreamResult::imports`]).
    Import(usize),
    /// `__setstate__` of an object built from an import (index of that import).
    ObjectOf(usize),
    /// Something the machine cannot name: the result of another call, a value
    /// from an out-of-band buffer, a string, ...
    Dynamic(String),
}

#[derive(Debug, Clone)]
pub struct CallSite {
    pub kind: CallKind,
    pub offset: u64,
    pub callee: Callee,
    /// The arguments (rendered only when a finding needs them).
    pub args: Value,
    /// String/bytes arguments passed directly (for nested-pickle checks).
    pub arg_blobs: Vec<Rc<Blob>>,
}

/// A BUILD whose target is an imported module or class itself (not an
/// instance): loading sets attributes on live interpreter objects.
#[derive(Debug, Clone)]
pub struct GlobalMutation {
    pub import: usize,
    pub offset: u64,
    pub state: String,
}

/// A problem that stopped or degraded the parse.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub offset: u64,
    pub message: String,
    /// The stream ended before STOP.
    pub truncated: bool,
}

/// Every mutable container (list, dict, set, object) the machine created.
/// A hostile stream can make them reference themselves (a list appended to
/// itself through the memo, an object whose BUILD state holds it), and
/// reference-counted cycles are never freed: a long-running service would
/// leak a little with every such file. Dropping the result empties each
/// container, which breaks every cycle.
#[derive(Debug, Default)]
pub struct Containers(pub(crate) Vec<Value>);

impl Drop for Containers {
    fn drop(&mut self) {
        for v in self.0.drain(..) {
            match &v {
                Value::List(c) | Value::Dict(c) | Value::Set(c) => {
                    if let Ok(mut items) = c.try_borrow_mut() {
                        items.items.clear();
                    }
                }
                Value::Call(o) => {
                    if let Ok(mut state) = o.state.try_borrow_mut() {
                        state.take();
                    }
                }
                _ => {}
            }
        }
    }
}

/// Everything learnt from one pickle stream.
#[derive(Debug, Default)]
pub struct StreamResult {
    /// The containers to empty when the result is dropped.
    pub containers: Containers,
    /// Offset of the stream's first byte (in the enclosing member or file).
    pub start: u64,
    pub imports: Vec<Import>,
    pub calls: Vec<CallSite>,
    pub mutations: Vec<GlobalMutation>,
    /// String and bytes values that may be pickles themselves.
    pub blobs: Vec<Rc<Blob>>,
    /// First error, if any. Semantic errors (stack underflow, missing memo)
    /// are recorded and the machine goes on with an unknown value.
    pub error: Option<ParseError>,
    /// Offset just past STOP, when reached.
    pub stop: Option<u64>,
    /// The value STOP returned, when it is a plain integer (legacy PyTorch
    /// record counts are pickled ints).
    pub result_int: Option<i64>,
    pub ops: u64,
    pub protocol: Option<u8>,
    pub first_op_proto: bool,
    /// A resource limit that cut the analysis short.
    pub limit: Option<String>,
    /// joblib arrays whose raw bytes were skipped inline.
    pub joblib_arrays: u64,
    /// Pickle streams embedded inline (joblib object arrays).
    pub inline: Vec<StreamResult>,
    /// EXT1/2/4 codes used (copyreg extension registry).
    pub ext_codes: Vec<(u64, i64)>,
    /// Text values that may hold a credential (checked by the caller).
    pub secret_candidates: Vec<Rc<Blob>>,
}

impl StreamResult {
    /// Whether the bytes read so far look like a pickle at all (used to tell
    /// a pickle from other data, including data after a previous STOP).
    pub fn looks_like_pickle(&self, window_exhausted: bool) -> bool {
        // a STOP reached past a structural error is text that happens to
        // hold opcode bytes ("torch==2.5.1": TUPLE without a MARK, then
        // `.`), unless it imported something on the way (below)
        if self.stop.is_some() && self.ops >= 2 && self.error.is_none() {
            return true;
        }
        if !self.imports.is_empty() {
            return true;
        }
        match &self.error {
            None => self.ops >= 2,
            Some(e) if e.truncated && window_exhausted => self.first_op_proto || self.ops >= 4,
            Some(e) if e.truncated => self.first_op_proto && self.ops >= 2,
            Some(_) => self.ops >= 16,
        }
    }
}

/// Bytes read, with the stream offset tracked.
struct Reader<'a> {
    inner: &'a mut dyn BufRead,
    pos: u64,
}

#[derive(Debug)]
enum Stop {
    /// End of stream before STOP.
    Eof,
    Io(io::Error),
    Invalid(String),
    Limit(String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Stop::Eof
        } else {
            Stop::Io(e)
        }
    }
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Stop> {
        let buf = self.inner.fill_buf()?;
        if buf.is_empty() {
            return Err(Stop::Eof);
        }
        let b = buf[0];
        self.inner.consume(1);
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut a = [0u8; N];
        self.inner.read_exact(&mut a)?;
        self.pos += N as u64;
        Ok(a)
    }

    /// Reads `len` bytes keeping at most `keep` of them.
    fn take(&mut self, len: u64, keep: usize) -> Result<Vec<u8>, Stop> {
        let keep_n = (len.min(keep as u64)) as usize;
        let mut v = Vec::with_capacity(keep_n.min(1 << 16));
        let mut remaining = len;
        while remaining > 0 {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Err(Stop::Eof);
            }
            let n = (buf.len() as u64).min(remaining) as usize;
            if v.len() < keep_n {
                let k = n.min(keep_n - v.len());
                v.extend_from_slice(&buf[..k]);
            }
            self.inner.consume(n);
            self.pos += n as u64;
            remaining -= n as u64;
        }
        Ok(v)
    }

    /// Reads up to and including `\n`; returns the line without it.
    fn line(&mut self) -> Result<Vec<u8>, Stop> {
        let mut v = Vec::new();
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Err(Stop::Eof);
            }
            if let Some(i) = buf.iter().position(|&c| c == b'\n') {
                v.extend_from_slice(&buf[..i]);
                self.inner.consume(i + 1);
                self.pos += i as u64 + 1;
                if v.len() > limits::MAX_PICKLE_LINE {
                    return Err(Stop::Limit(format!(
                        "text line longer than {} bytes",
                        limits::MAX_PICKLE_LINE
                    )));
                }
                return Ok(v);
            }
            let n = buf.len();
            v.extend_from_slice(buf);
            self.inner.consume(n);
            self.pos += n as u64;
            if v.len() > limits::MAX_PICKLE_LINE {
                return Err(Stop::Limit(format!(
                    "text line longer than {} bytes",
                    limits::MAX_PICKLE_LINE
                )));
            }
        }
    }
}

/// Options for one run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Stop after this many opcodes (used for format probing).
    pub max_ops: u64,
    /// Keep no blobs for nested analysis (probing).
    pub probe: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_ops: limits::MAX_PICKLE_OPS,
            probe: false,
        }
    }
}

/// Runs one pickle stream from the reader's current position. `start` is the
/// offset of that position in the enclosing member, used for every offset
/// reported.
pub fn run_stream(reader: &mut dyn BufRead, start: u64, opts: Options) -> StreamResult {
    let mut kept_total = 0usize;
    let mut r = Reader {
        inner: reader,
        pos: start,
    };
    run_with(&mut r, opts, &mut kept_total)
}

fn run_with(r: &mut Reader<'_>, opts: Options, kept_total: &mut usize) -> StreamResult {
    let mut m = Machine {
        interned: std::collections::HashMap::new(),
        stack: Vec::new(),
        metastack: Vec::new(),
        memo: std::collections::HashMap::new(),
        res: StreamResult {
            start: r.pos,
            ..Default::default()
        },
        opts,
        kept_total,
    };
    let outcome = m.run(r);
    let mut res = m.res;
    match outcome {
        Ok(()) => {}
        Err(Stop::Eof) => {
            res.error.get_or_insert(ParseError {
                offset: r.pos,
                message: "stream ends before STOP (truncated)".into(),
                truncated: true,
            });
        }
        Err(Stop::Io(e)) => {
            res.error.get_or_insert(ParseError {
                offset: r.pos,
                message: format!("read error: {e}"),
                truncated: true,
            });
        }
        Err(Stop::Invalid(msg)) => {
            res.error.get_or_insert(ParseError {
                offset: r.pos,
                message: msg,
                truncated: false,
            });
        }
        Err(Stop::Limit(msg)) => {
            res.limit = Some(msg);
        }
    }
    res
}

struct Machine<'k> {
    interned: std::collections::HashMap<(String, String), Value>,
    stack: Vec<Value>,
    metastack: Vec<Vec<Value>>,
    memo: std::collections::HashMap<u64, Value>,
    res: StreamResult,
    opts: Options,
    kept_total: &'k mut usize,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// A dotted Python name: identifiers separated by dots.
pub fn is_dotted_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.split('.').all(is_identifier)
}

/// Whether a byte prefix may start a pickle (raw), judged on its first bytes.
pub fn raw_prefix_suggests_pickle(d: &[u8]) -> bool {
    match d {
        [0x80, p, ..] if *p <= 5 => true,
        [b'c', ..] | [b'(', ..] | [b'}', ..] | [b']', ..] | [b'i', ..] => {
            d.len() >= 4 && d.last() == Some(&b'.')
        }
        _ => false,
    }
}

/// Whether a text prefix may be a base64- or hex-encoded pickle.
pub fn text_prefix_suggests_pickle(d: &[u8]) -> bool {
    // base64 of 0x80 0x0N starts with "gA"; hex starts with "80 0N".
    d.starts_with(b"gA")
        || (d.len() >= 4
            && d[..2].eq_ignore_ascii_case(b"80")
            && d[2] == b'0'
            && (b'0'..=b'5').contains(&d[3]))
        || raw_prefix_suggests_pickle(d)
}

const JOBLIB_WRAPPERS: &[&str] = &[
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
];

impl Machine<'_> {
    fn push(&mut self, v: Value) -> Result<(), Stop> {
        if self.stack.len() + self.metastack.len() >= limits::MAX_PICKLE_STACK {
            return Err(Stop::Limit(format!(
                "stack deeper than {} entries",
                limits::MAX_PICKLE_STACK
            )));
        }
        self.stack.push(v);
        Ok(())
    }

    /// Records a semantic error (CPython would raise) and continues.
    fn soft_error(&mut self, offset: u64, msg: impl Into<String>) {
        if self.res.error.is_none() {
            self.res.error = Some(ParseError {
                offset,
                message: msg.into(),
                truncated: false,
            });
        }
    }

    fn pop(&mut self, at: u64, op: &str) -> Value {
        match self.stack.pop() {
            Some(v) => v,
            None => {
                self.soft_error(at, format!("{op} on an empty stack"));
                Value::Unknown("stack underflow")
            }
        }
    }

    fn top(&mut self, at: u64, op: &str) -> Value {
        match self.stack.last() {
            Some(v) => v.clone(),
            None => {
                self.soft_error(at, format!("{op} on an empty stack"));
                Value::Unknown("stack underflow")
            }
        }
    }

    fn pop_mark(&mut self, at: u64, op: &str) -> Vec<Value> {
        match self.metastack.pop() {
            Some(prev) => std::mem::replace(&mut self.stack, prev),
            None => {
                self.soft_error(at, format!("{op} without a MARK"));
                std::mem::take(&mut self.stack)
            }
        }
    }

    fn blob(
        &mut self,
        r: &mut Reader<'_>,
        len: u64,
        offset: u64,
        is_text: bool,
    ) -> Result<Rc<Blob>, Stop> {
        // Decide how much to keep from the first bytes.
        let head_len = len.min(16) as usize;
        let head = r.take(head_len as u64, head_len)?;
        let suggests = if is_text {
            text_prefix_suggests_pickle(&head)
        } else {
            raw_prefix_suggests_pickle(&head) || (head.len() >= 2 && head[0] == 0x80)
        };
        let mut keep = if suggests {
            limits::MAX_NESTED_VALUE
        } else {
            limits::MAX_KEPT_VALUE
        };
        if self.opts.probe {
            keep = 4096;
        }
        let budget = limits::MAX_KEPT_TOTAL.saturating_sub(*self.kept_total);
        keep = keep.min(budget.max(256));
        let rest = len - head_len as u64;
        let mut data = head;
        let tail = r.take(rest, keep.saturating_sub(data.len()))?;
        data.extend_from_slice(&tail);
        *self.kept_total += data.len();
        let b = Rc::new(Blob {
            data,
            full_len: len,
            offset,
        });
        if !self.opts.probe && suggests {
            self.res.blobs.push(b.clone());
        }
        if is_text {
            self.note_secret(&b);
        }
        Ok(b)
    }

    /// Keeps a text value for the credential check when it contains a
    /// token prefix (bounded per stream).
    fn note_secret(&mut self, b: &Rc<Blob>) {
        if !self.opts.probe
            && self.res.secret_candidates.len() < limits::MAX_SECRET_CANDIDATES
            && crate::formats::secrets::may_hold_secret(&b.data)
        {
            self.res.secret_candidates.push(b.clone());
        }
    }

    /// Records an import; repeated imports of the same name share one entry
    /// (memory grows with distinct names, not with the stream).
    fn import(&mut self, module: String, name: String, offset: u64, opcode: &'static str) -> Value {
        if let Some(v) = self.interned.get(&(module.clone(), name.clone())) {
            if let Value::Global(g) = v {
                self.res.imports[g.index].count += 1;
            }
            return v.clone();
        }
        let index = self.res.imports.len();
        self.res.imports.push(Import {
            module: module.clone(),
            name: name.clone(),
            offset,
            opcode,
            count: 1,
            calls: 0,
        });
        let v = Value::Global(Rc::new(GlobalRef {
            module: module.clone(),
            name: name.clone(),
            index,
        }));
        if self.interned.len() < limits::MAX_DISTINCT_IMPORTS {
            self.interned.insert((module, name), v.clone());
        }
        v
    }

    fn describe_callee(v: &Value) -> Callee {
        match v {
            Value::Global(g) => Callee::Import(g.index),
            other => Callee::Dynamic(format!("{} value {}", other.kind(), other.repr(80))),
        }
    }

    fn call(&mut self, kind: CallKind, offset: u64, callee: Value, args: Value) -> Value {
        // Record the first few call sites of each import only (they are the
        // evidence); the rest are counted.
        let keep = match &callee {
            Value::Global(g) => {
                let imp = &mut self.res.imports[g.index];
                imp.calls += 1;
                imp.calls <= 4
            }
            _ => self.res.calls.len() < limits::MAX_RECORDED_CALLS,
        };
        let arg_blobs = match &args {
            Value::Tuple(items) => items
                .iter()
                .filter_map(|v| match v {
                    Value::Str(b) | Value::Bytes(b) => Some(b.clone()),
                    _ => None,
                })
                .collect(),
            Value::Str(b) | Value::Bytes(b) => vec![b.clone()],
            _ => Vec::new(),
        };
        if keep {
            self.res.calls.push(CallSite {
                kind,
                offset,
                callee: Self::describe_callee(&callee),
                args: args.clone(),
                arg_blobs,
            });
        }
        self.track(Value::Call(Rc::new(CallObj {
            callee,
            args,
            state: RefCell::new(None),
        })))
    }

    /// Records a mutable container so that dropping the result breaks any
    /// reference cycle through it (see [`Containers`]).
    fn track(&mut self, v: Value) -> Value {
        self.res.containers.0.push(v.clone());
        v
    }

    fn read_line_str(&mut self, r: &mut Reader<'_>, what: &str) -> Result<String, Stop> {
        let line = r.line()?;
        String::from_utf8(line).map_err(|_| Stop::Invalid(format!("{what} is not valid UTF-8")))
    }

    fn run(&mut self, r: &mut Reader<'_>) -> Result<(), Stop> {
        loop {
            if self.res.ops >= self.opts.max_ops {
                if self.opts.probe {
                    return Ok(());
                }
                return Err(Stop::Limit(format!(
                    "more than {} opcodes",
                    self.opts.max_ops
                )));
            }
            let at = r.pos;
            let op = r.byte()?;
            self.res.ops += 1;
            if self.res.ops == 1 && op == 0x80 {
                self.res.first_op_proto = true;
            }
            match op {
                b'(' => {
                    // MARK
                    if self.metastack.len() + self.stack.len() >= limits::MAX_PICKLE_STACK {
                        return Err(Stop::Limit("too many marks".into()));
                    }
                    let prev = std::mem::take(&mut self.stack);
                    self.metastack.push(prev);
                }
                b'.' => {
                    // STOP
                    self.res.stop = Some(r.pos);
                    if let Some(Value::Int(i)) = self.stack.last() {
                        self.res.result_int = Some(*i);
                    }
                    if self.stack.is_empty() {
                        self.soft_error(at, "STOP on an empty stack");
                    }
                    return Ok(());
                }
                b'0' => {
                    // POP: pops the mark when the stack is empty (as CPython).
                    if self.stack.pop().is_none() {
                        if self.metastack.is_empty() {
                            self.soft_error(at, "POP on an empty stack");
                        } else {
                            self.pop_mark(at, "POP");
                        }
                    }
                }
                b'1' => {
                    self.pop_mark(at, "POP_MARK");
                }
                b'2' => {
                    let v = self.top(at, "DUP");
                    self.push(v)?;
                }
                b'F' => {
                    let s = self.read_line_str(r, "FLOAT")?;
                    let f = s.trim().parse::<f64>().map_err(|_| {
                        Stop::Invalid(format!("FLOAT with bad literal {:?}", clip(&s)))
                    })?;
                    self.push(Value::Float(f))?;
                }
                b'I' => {
                    let s = self.read_line_str(r, "INT")?;
                    let t = s.trim();
                    let v = match t {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        _ => match t.parse::<i64>() {
                            Ok(i) => Value::Int(i),
                            Err(_)
                                if !t.is_empty()
                                    && t.trim_start_matches('-')
                                        .bytes()
                                        .all(|c| c.is_ascii_digit()) =>
                            {
                                Value::BigInt(t.len() as u64)
                            }
                            Err(_) => {
                                return Err(Stop::Invalid(format!(
                                    "INT with bad literal {:?}",
                                    clip(t)
                                )))
                            }
                        },
                    };
                    self.push(v)?;
                }
                b'J' => {
                    let a = r.array::<4>()?;
                    self.push(Value::Int(i32::from_le_bytes(a) as i64))?;
                }
                b'K' => {
                    let b = r.byte()?;
                    self.push(Value::Int(b as i64))?;
                }
                b'M' => {
                    let a = r.array::<2>()?;
                    self.push(Value::Int(u16::from_le_bytes(a) as i64))?;
                }
                b'L' => {
                    let s = self.read_line_str(r, "LONG")?;
                    let t = s.trim().trim_end_matches('L');
                    let digits = t.trim_start_matches('-');
                    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                        return Err(Stop::Invalid(format!(
                            "LONG with bad literal {:?}",
                            clip(&s)
                        )));
                    }
                    let v = t
                        .parse::<i64>()
                        .map(Value::Int)
                        .unwrap_or(Value::BigInt(t.len() as u64));
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'G' => {
                    let a = r.array::<8>()?;
                    self.push(Value::Float(f64::from_be_bytes(a)))?;
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4
                    let n = if op == 0x8a {
                        r.byte()? as u64
                    } else {
                        let n = i32::from_le_bytes(r.array::<4>()?);
                        if n < 0 {
                            return Err(Stop::Invalid("LONG4 with negative length".into()));
                        }
                        n as u64
                    };
                    let bytes = r.take(n, 16)?;
                    let v = if n <= 8 {
                        let mut buf = [0u8; 8];
                        buf[..bytes.len()].copy_from_slice(&bytes);
                        if n > 0 && bytes[bytes.len() - 1] & 0x80 != 0 {
                            for b in buf.iter_mut().skip(bytes.len()) {
                                *b = 0xff;
                            }
                        }
                        Value::Int(i64::from_le_bytes(buf))
                    } else {
                        Value::BigInt(n)
                    };
                    self.push(v)?;
                }
                b'S' => {
                    // STRING: a quoted Python 2 str literal.
                    let line = r.line()?;
                    let t = trim_ascii(&line);
                    let ok =
                        t.len() >= 2 && (t[0] == b'\'' || t[0] == b'"') && t[t.len() - 1] == t[0];
                    if !ok {
                        return Err(Stop::Invalid(
                            "STRING opcode argument must be quoted".into(),
                        ));
                    }
                    let inner = unescape_py(&t[1..t.len() - 1]);
                    let b = self.text_blob(inner, at);
                    self.push(Value::Str(b))?;
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    // BINSTRING, SHORT_BINSTRING (str in Python 2 → str/bytes),
                    // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8.
                    let len = match op {
                        b'T' => {
                            let n = i32::from_le_bytes(r.array::<4>()?);
                            if n < 0 {
                                return Err(Stop::Invalid("BINSTRING with negative length".into()));
                            }
                            n as u64
                        }
                        b'B' => u32::from_le_bytes(r.array::<4>()?) as u64,
                        b'U' | b'C' => r.byte()? as u64,
                        _ => u64::from_le_bytes(r.array::<8>()?),
                    };
                    let is_text = matches!(op, b'T' | b'U');
                    let b = self.blob(r, len, at, is_text)?;
                    self.push(if is_text {
                        Value::Str(b)
                    } else {
                        Value::Bytes(b)
                    })?;
                }
                b'V' => {
                    let line = r.line()?;
                    let b = self.text_blob(unescape_raw_unicode(&line), at);
                    self.push(Value::Str(b))?;
                }
                b'X' | 0x8c | 0x8d => {
                    let len = match op {
                        b'X' => u32::from_le_bytes(r.array::<4>()?) as u64,
                        0x8c => r.byte()? as u64,
                        _ => u64::from_le_bytes(r.array::<8>()?),
                    };
                    let b = self.blob(r, len, at, true)?;
                    if b.complete() && std::str::from_utf8(&b.data).is_err() {
                        self.soft_error(at, "unicode string is not valid UTF-8");
                    }
                    self.push(Value::Str(b))?;
                }
                b')' => self.push(Value::Tuple(Rc::new(Vec::new())))?,
                b't' => {
                    let items = self.pop_mark(at, "TUPLE");
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop(at, "TUPLEn"));
                    }
                    items.reverse();
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                b']' => {
                    let v = self.track(Value::List(Rc::new(RefCell::new(Items::default()))));
                    self.push(v)?
                }
                b'l' => {
                    let items = self.pop_mark(at, "LIST");
                    let mut it = Items::default();
                    for v in items {
                        it.push(v);
                    }
                    {
                        let v = self.track(Value::List(Rc::new(RefCell::new(it))));
                        self.push(v)?
                    };
                }
                b'}' => {
                    let v = self.track(Value::Dict(Rc::new(RefCell::new(Items::default()))));
                    self.push(v)?
                }
                b'd' => {
                    let items = self.pop_mark(at, "DICT");
                    if !items.len().is_multiple_of(2) {
                        self.soft_error(at, "DICT with an odd number of items");
                    }
                    let mut it = Items::default();
                    for v in items {
                        it.push(v);
                    }
                    {
                        let v = self.track(Value::Dict(Rc::new(RefCell::new(it))));
                        self.push(v)?
                    };
                }
                0x8f => {
                    let v = self.track(Value::Set(Rc::new(RefCell::new(Items::default()))));
                    self.push(v)?
                }
                0x91 => {
                    let items = self.pop_mark(at, "FROZENSET");
                    let mut it = Items::default();
                    for v in items {
                        it.push(v);
                    }
                    {
                        let v = self.track(Value::Set(Rc::new(RefCell::new(it))));
                        self.push(v)?
                    };
                }
                b'a' => {
                    let v = self.pop(at, "APPEND");
                    let target = self.top(at, "APPEND");
                    self.mutate(at, &target, vec![v], "APPEND");
                }
                b'e' => {
                    let items = self.pop_mark(at, "APPENDS");
                    let target = self.top(at, "APPENDS");
                    self.mutate(at, &target, items, "APPENDS");
                }
                0x90 => {
                    let items = self.pop_mark(at, "ADDITEMS");
                    let target = self.top(at, "ADDITEMS");
                    self.mutate(at, &target, items, "ADDITEMS");
                }
                b's' => {
                    let v = self.pop(at, "SETITEM");
                    let k = self.pop(at, "SETITEM");
                    let target = self.top(at, "SETITEM");
                    self.mutate(at, &target, vec![k, v], "SETITEM");
                }
                b'u' => {
                    let items = self.pop_mark(at, "SETITEMS");
                    if !items.len().is_multiple_of(2) {
                        self.soft_error(at, "SETITEMS with an odd number of items");
                    }
                    let target = self.top(at, "SETITEMS");
                    self.mutate(at, &target, items, "SETITEMS");
                }
                b'c' => {
                    let module = self.read_line_str(r, "GLOBAL module")?;
                    let name = self.read_line_str(r, "GLOBAL name")?;
                    if !is_dotted_name(&module) || !is_dotted_name(&name) {
                        return Err(Stop::Invalid(format!(
                            "GLOBAL with invalid names {:?} {:?}",
                            clip(&module),
                            clip(&name)
                        )));
                    }
                    let g = self.import(module, name, at, "GLOBAL");
                    self.push(g)?;
                }
                0x93 => {
                    let name = self.pop(at, "STACK_GLOBAL");
                    let module = self.pop(at, "STACK_GLOBAL");
                    match (module.str(), name.str()) {
                        (Some(m), Some(n)) if is_dotted_name(m) && is_dotted_name(n) => {
                            let g = self.import(m.to_string(), n.to_string(), at, "STACK_GLOBAL");
                            self.push(g)?;
                        }
                        _ => {
                            self.soft_error(
                                at,
                                "STACK_GLOBAL needs two strings naming a module and an attribute",
                            );
                            let desc = format!(
                                "STACK_GLOBAL of {} and {}",
                                module.repr(60),
                                name.repr(60)
                            );
                            self.res.calls.push(CallSite {
                                kind: CallKind::Reduce,
                                offset: at,
                                callee: Callee::Dynamic(desc),
                                args: Value::None,
                                arg_blobs: Vec::new(),
                            });
                            self.push(Value::Unknown("unresolvable global"))?;
                        }
                    }
                }
                b'i' => {
                    let module = self.read_line_str(r, "INST module")?;
                    let name = self.read_line_str(r, "INST name")?;
                    if !is_dotted_name(&module) || !is_dotted_name(&name) {
                        return Err(Stop::Invalid(format!(
                            "INST with invalid names {module:?} {name:?}"
                        )));
                    }
                    let items = self.pop_mark(at, "INST");
                    let g = self.import(module, name, at, "INST");
                    let obj = self.call(CallKind::Inst, at, g, Value::Tuple(Rc::new(items)));
                    self.push(obj)?;
                }
                b'o' => {
                    let mut items = self.pop_mark(at, "OBJ");
                    if items.is_empty() {
                        self.soft_error(at, "OBJ without a class");
                        self.push(Value::Unknown("bad OBJ"))?;
                    } else {
                        let cls = items.remove(0);
                        let obj = self.call(CallKind::Obj, at, cls, Value::Tuple(Rc::new(items)));
                        self.push(obj)?;
                    }
                }
                0x81 => {
                    let args = self.pop(at, "NEWOBJ");
                    let cls = self.pop(at, "NEWOBJ");
                    let obj = self.call(CallKind::NewObj, at, cls, args);
                    self.push(obj)?;
                }
                0x92 => {
                    let kwargs = self.pop(at, "NEWOBJ_EX");
                    let args = self.pop(at, "NEWOBJ_EX");
                    let cls = self.pop(at, "NEWOBJ_EX");
                    let obj = self.call(
                        CallKind::NewObjEx,
                        at,
                        cls,
                        Value::Tuple(Rc::new(vec![args, kwargs])),
                    );
                    self.push(obj)?;
                }
                b'R' => {
                    let args = self.pop(at, "REDUCE");
                    let callable = self.pop(at, "REDUCE");
                    let obj = self.call(CallKind::Reduce, at, callable, args);
                    self.push(obj)?;
                }
                b'b' => {
                    let state = self.pop(at, "BUILD");
                    let target = self.top(at, "BUILD");
                    self.build(r, at, target, state)?;
                }
                0x82..=0x84 => {
                    let code = match op {
                        0x82 => r.byte()? as i64,
                        0x83 => u16::from_le_bytes(r.array::<2>()?) as i64,
                        _ => i32::from_le_bytes(r.array::<4>()?) as i64,
                    };
                    self.res.ext_codes.push((at, code));
                    self.res.calls.push(CallSite {
                        kind: CallKind::Reduce,
                        offset: at,
                        callee: Callee::Dynamic(format!("copyreg extension code {code}")),
                        args: Value::None,
                        arg_blobs: Vec::new(),
                    });
                    self.push(Value::Unknown("extension registry object"))?;
                }
                b'P' => {
                    let line = r.line()?;
                    let pid = self.text_blob(line, at);
                    self.push(Value::Persistent(Rc::new(Value::Str(pid))))?;
                }
                b'Q' => {
                    let pid = self.pop(at, "BINPERSID");
                    self.push(Value::Persistent(Rc::new(pid)))?;
                }
                b'g' => {
                    let s = self.read_line_str(r, "GET")?;
                    let idx = s
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| Stop::Invalid(format!("GET with bad index {:?}", clip(&s))))?;
                    self.get(at, idx)?;
                }
                b'h' => {
                    let idx = r.byte()? as u64;
                    self.get(at, idx)?;
                }
                b'j' => {
                    let idx = u32::from_le_bytes(r.array::<4>()?) as u64;
                    self.get(at, idx)?;
                }
                b'p' => {
                    let s = self.read_line_str(r, "PUT")?;
                    let idx = s
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| Stop::Invalid(format!("PUT with bad index {:?}", clip(&s))))?;
                    self.put(at, idx);
                }
                b'q' => {
                    let idx = r.byte()? as u64;
                    self.put(at, idx);
                }
                b'r' => {
                    let idx = u32::from_le_bytes(r.array::<4>()?) as u64;
                    self.put(at, idx);
                }
                0x94 => {
                    let idx = self.memo.len() as u64;
                    self.put(at, idx);
                }
                0x80 => {
                    let p = r.byte()?;
                    if p > 5 {
                        return Err(Stop::Invalid(format!("unsupported pickle protocol {p}")));
                    }
                    self.res.protocol.get_or_insert(p);
                }
                0x95 => {
                    // FRAME: an 8-byte length; frames only batch reads.
                    let _len = u64::from_le_bytes(r.array::<8>()?);
                }
                0x97 => {
                    // NEXT_BUFFER: out-of-band buffer supplied by the caller.
                    self.push(Value::Unknown("out-of-band buffer"))?;
                }
                0x98 => {
                    // READONLY_BUFFER: no effect on analysis.
                    let _ = self.top(at, "READONLY_BUFFER");
                }
                other => {
                    return Err(Stop::Invalid(format!("unknown opcode 0x{other:02x}")));
                }
            }
        }
    }

    fn text_blob(&mut self, data: Vec<u8>, offset: u64) -> Rc<Blob> {
        let len = data.len() as u64;
        let suggests = text_prefix_suggests_pickle(&data);
        let keep = if suggests {
            limits::MAX_NESTED_VALUE
        } else {
            limits::MAX_KEPT_VALUE
        };
        let mut data = data;
        data.truncate(keep);
        *self.kept_total += data.len();
        let b = Rc::new(Blob {
            data,
            full_len: len,
            offset,
        });
        if !self.opts.probe && suggests {
            self.res.blobs.push(b.clone());
        }
        self.note_secret(&b);
        b
    }

    /// APPEND(S), ADDITEMS, SETITEM(S): containers grow; an imported module or
    /// class being mutated is recorded; objects built by calls use their own
    /// class's methods (that class was judged at its import).
    fn mutate(&mut self, at: u64, target: &Value, items: Vec<Value>, op: &str) {
        match target {
            Value::List(c) | Value::Dict(c) | Value::Set(c) => {
                let mut c = c.borrow_mut();
                for v in items {
                    c.push(v);
                }
            }
            Value::Global(g) => {
                let shown = Value::Tuple(Rc::new(items)).repr(240);
                self.res.mutations.push(GlobalMutation {
                    import: g.index,
                    offset: at,
                    state: format!("{op} {shown}"),
                });
            }
            Value::Call(_) | Value::Persistent(_) | Value::Unknown(_) => {}
            other => {
                self.res.calls.push(CallSite {
                    kind: CallKind::Reduce,
                    offset: at,
                    callee: Callee::Dynamic(format!("{op} on a {} value", other.kind())),
                    args: Value::None,
                    arg_blobs: Vec::new(),
                });
            }
        }
    }

    fn get(&mut self, at: u64, idx: u64) -> Result<(), Stop> {
        let v = match self.memo.get(&idx) {
            Some(v) => v.clone(),
            None => {
                self.soft_error(at, format!("memo key {idx} was never stored"));
                Value::Unknown("missing memo entry")
            }
        };
        self.push(v)
    }

    fn put(&mut self, at: u64, idx: u64) {
        let v = self.top(at, "PUT");
        if self.memo.len() >= limits::MAX_PICKLE_MEMO && !self.memo.contains_key(&idx) {
            if self.res.limit.is_none() {
                self.res.limit = Some(format!(
                    "more than {} memo entries; later entries not tracked",
                    limits::MAX_PICKLE_MEMO
                ));
            }
            return;
        }
        self.memo.insert(idx, v);
    }

    fn build(
        &mut self,
        r: &mut Reader<'_>,
        at: u64,
        target: Value,
        state: Value,
    ) -> Result<(), Stop> {
        match &target {
            Value::Global(g) => {
                self.res.mutations.push(GlobalMutation {
                    import: g.index,
                    offset: at,
                    state: state.repr(240),
                });
            }
            Value::Call(obj) => {
                if let Value::Global(g) = &obj.callee {
                    self.res.calls.push(CallSite {
                        kind: CallKind::Build,
                        offset: at,
                        callee: Callee::ObjectOf(g.index),
                        args: state.clone(),
                        arg_blobs: Vec::new(),
                    });
                    *obj.state.borrow_mut() = Some(state.clone());
                    if JOBLIB_WRAPPERS.contains(&g.full().as_str()) && !self.opts.probe {
                        self.joblib_array(r, at, &state)?;
                    }
                } else {
                    *obj.state.borrow_mut() = Some(state.clone());
                }
            }
            Value::Persistent(_)
            | Value::Dict(_)
            | Value::List(_)
            | Value::Set(_)
            | Value::Unknown(_) => {}
            other => {
                // BUILD on a plain value calls its __setstate__ or sets attributes:
                // CPython fails for most of these; record it as a dynamic call.
                self.res.calls.push(CallSite {
                    kind: CallKind::Build,
                    offset: at,
                    callee: Callee::Dynamic(format!("{} value {}", other.kind(), other.repr(60))),
                    args: state.clone(),
                    arg_blobs: Vec::new(),
                });
            }
        }
        Ok(())
    }

    /// joblib writes the bytes of each NumPy array right after the BUILD of its
    /// `NumpyArrayWrapper`, outside the pickle opcodes: numeric arrays as raw
    /// bytes (after one padding-length byte and that many padding bytes when
    /// the wrapper asks for alignment), object arrays as a complete inline
    /// pickle stream. Skip the former, analyse the latter.
    fn joblib_array(&mut self, r: &mut Reader<'_>, at: u64, state: &Value) -> Result<(), Stop> {
        let Some(dtype) = state.dict_get("dtype") else {
            self.soft_error(at, "joblib array wrapper without a dtype");
            return Ok(());
        };
        let shape = state.dict_get("shape");
        let aligned = matches!(state.dict_get("numpy_array_alignment_bytes"), Some(Value::Int(n)) if n > 0)
            && !matches!(state.dict_get("allow_mmap"), Some(Value::Bool(false)));
        match dtype_itemsize(&dtype) {
            Some(ItemSize::Object) => {
                let mut sub = run_with(r, Options::default(), self.kept_total);
                sub.start = sub.start.min(r.pos);
                let failed = sub.error.is_some() || sub.limit.is_some();
                self.res.inline.push(sub);
                self.res.joblib_arrays += 1;
                if failed {
                    return Err(Stop::Invalid(
                        "inline joblib object array could not be parsed".into(),
                    ));
                }
            }
            Some(ItemSize::Bytes(size)) => {
                let count = match shape_count(shape.as_ref()) {
                    Some(c) => c,
                    None => {
                        self.soft_error(at, "joblib array wrapper with an unreadable shape");
                        return Ok(());
                    }
                };
                let nbytes = count
                    .checked_mul(size)
                    .ok_or_else(|| Stop::Invalid("joblib array size overflows".into()))?;
                if aligned {
                    let pad = r.byte()? as u64;
                    r.take(pad, 0)?;
                }
                r.take(nbytes, 0)?;
                self.res.joblib_arrays += 1;
            }
            None => {
                self.soft_error(
                    at,
                    format!(
                        "joblib array with a dtype Probity cannot size: {}",
                        dtype.repr(80)
                    ),
                );
                return Err(Stop::Invalid(
                    "cannot skip joblib array bytes of unknown dtype".into(),
                ));
            }
        }
        Ok(())
    }
}

enum ItemSize {
    Object,
    Bytes(u64),
}

/// Item size of a `numpy.dtype(...)` object reconstructed by the stream.
fn dtype_itemsize(v: &Value) -> Option<ItemSize> {
    let Value::Call(c) = v else { return None };
    let Value::Global(g) = &c.callee else {
        return None;
    };
    if !matches!(g.name.as_str(), "dtype") {
        return None;
    }
    let code = match &c.args {
        Value::Tuple(t) => t.first().and_then(|x| x.str()).map(str::to_string),
        _ => None,
    }?;
    // BUILD state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
    let elsize = match &*c.state.borrow() {
        Some(Value::Tuple(t)) if t.len() >= 6 => match (&t[2], &t[3], &t[5]) {
            (Value::None, Value::None, Value::Int(n)) if *n > 0 => Some(*n as u64),
            (_, _, Value::Int(n)) if *n > 0 => {
                // structured or subarray dtype: object fields make it an object array
                return Some(
                    if t.len() >= 8 && matches!(t[7], Value::Int(f) if f & 1 != 0) {
                        ItemSize::Object
                    } else {
                        ItemSize::Bytes(*n as u64)
                    },
                );
            }
            _ => None,
        },
        _ => None,
    };
    let kind = code.chars().next()?;
    let digits: String = code
        .chars()
        .skip(1)
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let n = digits.parse::<u64>().ok();
    match kind {
        'O' => Some(ItemSize::Object),
        'U' => elsize.or(n.map(|x| x * 4)).map(ItemSize::Bytes),
        'S' | 'V' | 'a' => elsize.or(n).map(ItemSize::Bytes),
        'b' | 'i' | 'u' | 'f' | 'c' | 'M' | 'm' => n.or(elsize).map(ItemSize::Bytes),
        '?' => Some(ItemSize::Bytes(1)),
        _ => None,
    }
}

fn shape_count(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Tuple(t) => {
            let mut n: u64 = 1;
            for x in t.iter() {
                match x {
                    Value::Int(i) if *i >= 0 => n = n.checked_mul(*i as u64)?,
                    _ => return None,
                }
            }
            Some(n)
        }
        Value::Int(i) if *i >= 0 => Some(*i as u64),
        _ => None,
    }
}

/// At most 80 characters of a string, for messages.
fn clip(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(80).collect();
        c.push('…');
        c
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

/// Decodes the escapes of a Python 2 string literal (enough for analysis).
fn unescape_py(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'\\' && i + 1 < s.len() {
            let n = s[i + 1];
            i += 2;
            match n {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'\\' => out.push(b'\\'),
                b'\'' => out.push(b'\''),
                b'"' => out.push(b'"'),
                b'x' if i + 2 <= s.len() => {
                    match std::str::from_utf8(&s[i..i + 2])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.extend_from_slice(b"\\x"),
                    }
                }
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Decodes `\uXXXX` / `\UXXXXXXXX` escapes of raw-unicode-escape (UNICODE opcode).
fn unescape_raw_unicode(s: &[u8]) -> Vec<u8> {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() && (s[i + 1] == b'u' || s[i + 1] == b'U') {
            let n = if s[i + 1] == b'u' { 4 } else { 8 };
            if i + 2 + n <= s.len() {
                if let Some(ch) = std::str::from_utf8(&s[i + 2..i + 2 + n])
                    .ok()
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
                {
                    out.push(ch);
                    i += 2 + n;
                    continue;
                }
            }
        }
        // raw-unicode-escape maps other bytes to code points 0..=255.
        out.push(s[i] as char);
        i += 1;
    }
    out.into_bytes()
}
