//! Symbolic values of the pickle machine. Only what analysis needs is kept:
//! strings and bytes (bounded), tuples, the first items of lists/dicts, the
//! imported globals and the objects produced by calls. Nothing is ever built
//! as a real Python object.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

/// Containers keep at most this many items (the rest is only counted).
pub const KEEP_ITEMS: usize = 64;

/// A string or bytes payload, possibly truncated.
#[derive(Debug)]
pub struct Blob {
    /// The kept bytes (all of them unless `full_len > data.len()`).
    pub data: Vec<u8>,
    /// The real length in the stream.
    pub full_len: u64,
    /// Offset of the opcode that produced it (stream-relative).
    pub offset: u64,
}

impl Blob {
    pub fn complete(&self) -> bool {
        self.full_len == self.data.len() as u64
    }
    pub fn as_str(&self) -> Option<&str> {
        if self.complete() {
            std::str::from_utf8(&self.data).ok()
        } else {
            None
        }
    }
}

/// An imported global (GLOBAL, INST, STACK_GLOBAL).
#[derive(Debug)]
pub struct GlobalRef {
    pub module: String,
    pub name: String,
    /// Index into the machine's list of imports.
    pub index: usize,
}

impl GlobalRef {
    pub fn full(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

/// The result of a call made by the unpickler (REDUCE, NEWOBJ, OBJ, INST, ...).
#[derive(Debug)]
pub struct CallObj {
    pub callee: Value,
    pub args: Value,
    /// State applied by BUILD, if any (used for NumPy dtypes and joblib wrappers).
    pub state: RefCell<Option<Value>>,
}

#[derive(Debug, Default)]
pub struct Items {
    pub items: Vec<Value>,
    pub count: u64,
}

impl Items {
    pub fn push(&mut self, v: Value) {
        self.count += 1;
        if self.items.len() < KEEP_ITEMS {
            self.items.push(v);
        }
    }
}

#[derive(Clone, Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too big for i64 (LONG, LONG1, LONG4); holds its byte length.
    BigInt(u64),
    Float(f64),
    Str(Rc<Blob>),
    Bytes(Rc<Blob>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Items>>),
    /// Dict entries are kept as flat key, value pairs.
    Dict(Rc<RefCell<Items>>),
    Set(Rc<RefCell<Items>>),
    Global(Rc<GlobalRef>),
    Call(Rc<CallObj>),
    Persistent(Rc<Value>),
    /// Anything the machine cannot know (out-of-band buffers, missing memo entries, ...).
    Unknown(&'static str),
}

/// Values nest without bound (a million TUPLE1 opcodes make a million
/// nested tuples), and the compiler's drop would recurse once per level and
/// overflow the stack. A value that holds the last reference to its
/// children moves them onto a heap stack instead, so dropping is a loop.
impl Drop for Value {
    fn drop(&mut self) {
        let mut pending: Vec<Value> = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            take_children(&mut v, &mut pending);
        }
    }
}

/// Moves out the children of `v` when `v` holds the last reference to them.
fn take_children(v: &mut Value, out: &mut Vec<Value>) {
    match v {
        Value::Tuple(rc) => {
            if let Some(items) = Rc::get_mut(rc) {
                out.append(items);
            }
        }
        Value::List(rc) | Value::Dict(rc) | Value::Set(rc) => {
            if let Some(cell) = Rc::get_mut(rc) {
                out.append(&mut cell.get_mut().items);
            }
        }
        Value::Call(rc) => {
            if let Some(obj) = Rc::get_mut(rc) {
                out.push(std::mem::replace(&mut obj.callee, Value::None));
                out.push(std::mem::replace(&mut obj.args, Value::None));
                if let Some(state) = obj.state.get_mut().take() {
                    out.push(state);
                }
            }
        }
        Value::Persistent(rc) => {
            if let Some(inner) = Rc::get_mut(rc) {
                out.push(std::mem::replace(inner, Value::None));
            }
        }
        _ => {}
    }
}

impl Value {
    pub fn str(&self) -> Option<&str> {
        match self {
            Value::Str(b) => b.as_str(),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "global",
            Value::Call(_) => "object",
            Value::Persistent(_) => "persistent",
            Value::Unknown(_) => "unknown",
        }
    }

    /// Looks a string key up in a dict value.
    pub fn dict_get(&self, key: &str) -> Option<Value> {
        if let Value::Dict(d) = self {
            let d = d.borrow();
            for pair in d.items.chunks(2) {
                if pair.len() == 2 && pair[0].str() == Some(key) {
                    return Some(pair[1].clone());
                }
            }
        }
        None
    }

    /// A short, bounded, Python-like rendering for evidence.
    pub fn repr(&self, max: usize) -> String {
        let mut s = String::new();
        self.repr_into(&mut s, 0, max);
        if s.len() > max {
            let mut cut = max;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    }

    fn repr_into(&self, s: &mut String, depth: usize, max: usize) {
        if s.len() > max {
            return;
        }
        if depth > 6 {
            s.push('…');
            return;
        }
        match self {
            Value::None => s.push_str("None"),
            Value::Bool(b) => s.push_str(if *b { "True" } else { "False" }),
            Value::Int(i) => {
                let _ = write!(s, "{i}");
            }
            Value::BigInt(n) => {
                let _ = write!(s, "<int of {n} bytes>");
            }
            Value::Float(f) => {
                let _ = write!(s, "{f}");
            }
            Value::Str(b) => {
                let text = String::from_utf8_lossy(&b.data[..b.data.len().min(max)]);
                let _ = write!(s, "{:?}", text.as_ref());
                if !b.complete() || b.data.len() > max {
                    let _ = write!(s, "…({} chars)", b.full_len);
                }
            }
            Value::Bytes(b) => {
                s.push_str("b\"");
                for &c in b.data.iter().take(max / 2) {
                    if c.is_ascii_graphic() || c == b' ' {
                        if c == b'"' || c == b'\\' {
                            s.push('\\');
                        }
                        s.push(c as char);
                    } else {
                        let _ = write!(s, "\\x{c:02x}");
                    }
                }
                s.push('"');
                if b.full_len as usize > max / 2 {
                    let _ = write!(s, "…({} bytes)", b.full_len);
                }
            }
            Value::Tuple(items) => {
                s.push('(');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    if s.len() > max {
                        break;
                    }
                    v.repr_into(s, depth + 1, max);
                }
                if items.len() == 1 {
                    s.push(',');
                }
                s.push(')');
            }
            Value::List(l) => {
                let l = l.borrow();
                s.push('[');
                for (i, v) in l.items.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    if s.len() > max {
                        break;
                    }
                    v.repr_into(s, depth + 1, max);
                }
                if l.count as usize > l.items.len() {
                    s.push_str(", …");
                }
                s.push(']');
            }
            Value::Dict(d) => {
                let d = d.borrow();
                s.push('{');
                for (i, pair) in d.items.chunks(2).enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    if s.len() > max {
                        break;
                    }
                    pair[0].repr_into(s, depth + 1, max);
                    s.push_str(": ");
                    if let Some(v) = pair.get(1) {
                        v.repr_into(s, depth + 1, max);
                    }
                }
                if d.count as usize > d.items.len() {
                    s.push_str(", …");
                }
                s.push('}');
            }
            Value::Set(d) => {
                let d = d.borrow();
                s.push('{');
                for (i, v) in d.items.iter().enumerate() {
                    if i > 0 {
                        s.push_str(", ");
                    }
                    v.repr_into(s, depth + 1, max);
                }
                s.push('}');
            }
            Value::Global(g) => s.push_str(&g.full()),
            Value::Call(c) => {
                c.callee.repr_into(s, depth + 1, max);
                c.args.repr_into(s, depth + 1, max);
            }
            Value::Persistent(p) => {
                s.push_str("persistent_load(");
                p.repr_into(s, depth + 1, max);
                s.push(')');
            }
            Value::Unknown(why) => {
                let _ = write!(s, "<{why}>");
            }
        }
    }
}
