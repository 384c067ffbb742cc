//! PyTorch checkpoints (`pytorch_model.bin`, the zip format of
//! `torch.save`) read as data, never unpickled: a tiny pickle interpreter
//! that understands exactly what a state dict needs (dicts, tuples, strings,
//! numbers, persistent storage ids) and calls nothing but a fixed table of
//! constructors (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter`). Any other global, opcode or shape of
//! data is an error naming it. Tensor bytes come straight from the zip
//! members `*/data/<key>`.
//!
//! Only used with `--allow-pickle-weights`, after a clean static scan, and
//! only inside the restricted worker.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

/// Largest pickle (data.pkl) read, and most values it may create.
const MAX_PICKLE: u64 = 64 << 20;
const MAX_VALUES: usize = 5_000_000;
/// Deepest nesting of containers: a state dict nests a few levels (its
/// metadata dict of dicts, a tensor's size tuple); cloning, sizing and
/// dropping a value recurse once per level, so a stream nesting a million
/// lists must be refused, not overflow the stack.
const MAX_DEPTH: u8 = 32;

#[derive(Clone, Debug)]
enum V {
    None,
    Int(i64),
    /// A boolean or float (`requires_grad`, hooks' arguments): kept only
    /// as a placeholder.
    Scalar,
    Str(String),
    /// Containers carry their nesting depth (1 for one holding only
    /// scalars), kept under [`MAX_DEPTH`].
    Tuple(Vec<V>, u8),
    List(Vec<V>, u8),
    Dict(Vec<(V, V)>, u8),
    Global(String),
    Storage {
        key: String,
        dtype: DType,
    },
    Tensor(TensorRef),
    Mark,
}

#[derive(Clone, Debug)]
struct TensorRef {
    key: String,
    dtype: DType,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn storage_dtype(class: &str) -> Result<DType, String> {
    Ok(match class {
        "torch.FloatStorage" => DType::F32,
        "torch.HalfStorage" => DType::F16,
        "torch.BFloat16Storage" => DType::BF16,
        "torch.DoubleStorage" => DType::F64,
        "torch.LongStorage" => DType::I64,
        "torch.IntStorage" => DType::I32,
        "torch.ByteStorage" => DType::U8,
        other => return Err(format!("storage type {other} is not read")),
    })
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: HashMap<u32, V>,
    created: usize,
}

impl<'a> Vm<'a> {
    fn new(data: &'a [u8]) -> Self {
        Vm {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            created: 0,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or("truncated pickle")?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn le(&mut self, n: usize) -> Result<u64, String> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
    }
    fn pop(&mut self) -> Result<V, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".into())
    }
    fn push(&mut self, v: V) -> Result<(), String> {
        self.charge(1)?;
        self.stack.push(v);
        Ok(())
    }
    /// Counts `n` values made or copied against [`MAX_VALUES`], before the
    /// work is done.
    fn charge(&mut self, n: usize) -> Result<(), String> {
        self.created = self.created.saturating_add(n);
        if self.created > MAX_VALUES {
            return Err("pickle creates too many values".into());
        }
        Ok(())
    }
    fn pop_mark(&mut self) -> Result<Vec<V>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, V::Mark))
            .ok_or("no mark on the pickle stack")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn string(&mut self, n: usize) -> Result<V, String> {
        let b = self.take(n)?;
        Ok(V::Str(
            std::str::from_utf8(b)
                .map_err(|_| "a string is not UTF-8")?
                .to_string(),
        ))
    }

    fn run(mut self) -> Result<V, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.le(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'}' => self.push(V::Dict(Vec::new(), 1))?,
                b']' => self.push(V::List(Vec::new(), 1))?,
                b')' => self.push(V::Tuple(Vec::new(), 1))?,
                b'(' => self.stack.push(V::Mark),
                b'N' => self.push(V::None)?,
                0x88 => self.push(V::Scalar)?,
                0x89 => self.push(V::Scalar)?,
                b'K' => {
                    let v = self.le(1)? as i64;
                    self.push(V::Int(v))?
                }
                b'M' => {
                    let v = self.le(2)? as i64;
                    self.push(V::Int(v))?
                }
                b'J' => {
                    let v = self.le(4)? as u32 as i32 as i64;
                    self.push(V::Int(v))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err("integer too large".into());
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(V::Int(v))?
                }
                b'G' => {
                    self.take(8)?;
                    self.push(V::Scalar)?
                }
                b'X' => {
                    let n = self.le(4)? as usize;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                b'c' => {
                    let line = |vm: &mut Self| -> Result<String, String> {
                        let rest = &vm.data[vm.pos..];
                        let nl = rest.iter().position(|&c| c == b'\n').ok_or("bad GLOBAL")?;
                        let s = String::from_utf8_lossy(&rest[..nl]).to_string();
                        vm.pos += nl + 1;
                        Ok(s)
                    };
                    let module = line(&mut self)?;
                    let name = line(&mut self)?;
                    self.push(V::Global(format!("{module}.{name}")))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (V::Str(m), V::Str(n)) => self.push(V::Global(format!("{m}.{n}")))?,
                        _ => return Err("STACK_GLOBAL without strings".into()),
                    }
                }
                b'q' | b'r' | 0x94 => {
                    let idx = match op {
                        b'q' => self.le(1)? as u32,
                        b'r' => self.le(4)? as u32,
                        _ => self.memo.len() as u32,
                    };
                    let top = self.stack.last().ok_or("memo of an empty stack")?;
                    // a put copies the value too: thousands of puts of one
                    // big container must not add up to a hang (fuzzing
                    // found 4 KiB of puts that ran for seconds)
                    let n = deep_size(top);
                    self.charge(n)?;
                    let top = self.stack.last().ok_or("memo of an empty stack")?.clone();
                    self.memo.insert(idx, top);
                }
                b'h' | b'j' => {
                    let idx = if op == b'h' {
                        self.le(1)? as u32
                    } else {
                        self.le(4)? as u32
                    };
                    let v = self.memo.get(&idx).ok_or("unknown memo index")?;
                    // a fetch copies the value: count what it copies, so that
                    // fetching one big container again and again stays bounded
                    let n = deep_size(v);
                    self.charge(n)?;
                    let v = self.memo.get(&idx).ok_or("unknown memo index")?.clone();
                    self.push(v)?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let d = nest(items.iter())?;
                    self.push(V::Tuple(items, d))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let d = nest(items.iter())?;
                    self.push(V::Tuple(items, d))?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent(pid)?;
                    self.push(v)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callee = self.pop()?;
                    let v = call(callee, args)?;
                    self.push(v)?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let Some(V::Dict(d, depth)) = self.stack.last_mut() else {
                        return Err("SETITEMS on a non-dict".into());
                    };
                    *depth = nest(items.iter())?.max(*depth);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let Some(V::Dict(d, depth)) = self.stack.last_mut() else {
                        return Err("SETITEM on a non-dict".into());
                    };
                    *depth = nest([&k, &v])?.max(*depth);
                    d.push((k, v));
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let Some(V::List(l, depth)) = self.stack.last_mut() else {
                        return Err("APPENDS on a non-list".into());
                    };
                    *depth = nest(items.iter())?.max(*depth);
                    l.extend(items);
                }
                b'a' => {
                    let v = self.pop()?;
                    let Some(V::List(l, depth)) = self.stack.last_mut() else {
                        return Err("APPEND on a non-list".into());
                    };
                    *depth = nest([&v])?.max(*depth);
                    l.push(v);
                }
                b'b' => {
                    // BUILD: state for an OrderedDict (its `_metadata`) is
                    // not needed for the weights
                    self.pop()?;
                }
                other => {
                    return Err(format!(
                        "opcode 0x{other:02x} at {at} is not part of a plain state dict"
                    ))
                }
            }
        }
    }
}

/// How deeply `v` nests containers (0 for a scalar).
fn depth(v: &V) -> u8 {
    match v {
        V::Tuple(_, d) | V::List(_, d) | V::Dict(_, d) => *d,
        _ => 0,
    }
}

/// The depth of a container holding `items`, or an error past
/// [`MAX_DEPTH`].
fn nest<'v>(items: impl IntoIterator<Item = &'v V>) -> Result<u8, String> {
    let d = items.into_iter().map(depth).max().unwrap_or(0) + 1;
    if d > MAX_DEPTH {
        return Err(format!(
            "values nest deeper than {MAX_DEPTH} levels, which a plain state dict does not"
        ));
    }
    Ok(d)
}

/// How many values `v` holds, itself included.
fn deep_size(v: &V) -> usize {
    match v {
        V::Tuple(xs, _) | V::List(xs, _) => 1 + xs.iter().map(deep_size).sum::<usize>(),
        V::Dict(kv, _) => {
            1 + kv
                .iter()
                .map(|(k, v)| deep_size(k) + deep_size(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// `('storage', StorageClass, key, location, numel)`.
fn persistent(pid: V) -> Result<V, String> {
    let V::Tuple(t, _) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match t.as_slice() {
        [V::Str(tag), V::Global(class), V::Str(key), _, _] if tag == "storage" => Ok(V::Storage {
            key: key.clone(),
            dtype: storage_dtype(class)?,
        }),
        _ => Err("persistent id is not a storage reference".into()),
    }
}

fn ints(v: &V) -> Result<Vec<usize>, String> {
    match v {
        V::Tuple(t, _) => t
            .iter()
            .map(|x| match x {
                V::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => Err("tensor size/stride is not a tuple of non-negative ints".to_string()),
            })
            .collect(),
        _ => Err("tensor size/stride is not a tuple".into()),
    }
}

/// The only calls a state dict needs.
fn call(callee: V, args: V) -> Result<V, String> {
    let V::Global(name) = callee else {
        return Err("call of something that is not a global".into());
    };
    let V::Tuple(args, _) = args else {
        return Err(format!("{name}: arguments are not a tuple"));
    };
    match name.as_str() {
        "collections.OrderedDict" if args.is_empty() => Ok(V::Dict(Vec::new(), 1)),
        "torch._utils._rebuild_tensor_v2" => match args.as_slice() {
            [V::Storage { key, dtype }, V::Int(offset), size, stride, ..] if *offset >= 0 => {
                Ok(V::Tensor(TensorRef {
                    key: key.clone(),
                    dtype: *dtype,
                    offset: *offset as usize,
                    size: ints(size)?,
                    stride: ints(stride)?,
                }))
            }
            _ => Err("_rebuild_tensor_v2 with unexpected arguments".into()),
        },
        "torch._utils._rebuild_parameter" => match args.into_iter().next() {
            Some(t @ V::Tensor(_)) => Ok(t),
            _ => Err("_rebuild_parameter without a tensor".into()),
        },
        other => Err(format!(
            "the checkpoint calls {other}, which a plain state dict does not need"
        )),
    }
}

/// Interprets one `data.pkl` as a state dict and returns its tensor names,
/// without reading any storage: the entry point the fuzz target
/// `deep_state_dict` drives (it must never panic, whatever the bytes).
pub fn state_dict_keys(pkl: &[u8]) -> Result<Vec<String>, String> {
    let root = Vm::new(pkl).run()?;
    let V::Dict(entries, _) = root else {
        return Err("the checkpoint is not a state dict".into());
    };
    // non-tensor entries (step counters) are skipped, as `read` does
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| match (k, v) {
            (V::Str(k), V::Tensor(_)) => Some(k),
            _ => None,
        })
        .collect())
}

/// The tensors of one PyTorch zip checkpoint.
pub fn read(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let archive_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| format!("not a PyTorch zip checkpoint (legacy formats are not read): {e}"))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| {
            zip.name_for_index(i)
                .and_then(Result::ok)
                .map(|n| n.to_string())
        })
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or("no data.pkl in the archive")?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)
        .map_err(|e| e.to_string())?
        .take(MAX_PICKLE)
        .read_to_end(&mut pkl)
        .map_err(|e| e.to_string())?;
    let root = Vm::new(&pkl)
        .run()
        .map_err(|e| format!("{pkl_name}: {e}"))?;
    let V::Dict(entries, _) = root else {
        return Err("the checkpoint is not a state dict".into());
    };
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = HashMap::new();
    for (k, v) in entries {
        let (V::Str(name), V::Tensor(t)) = (k, v) else {
            continue; // non-tensor entries (e.g. step counters)
        };
        if !storages.contains_key(&t.key) {
            let member = format!("{prefix}data/{}", t.key);
            let mut f = zip.by_name(&member).map_err(|e| format!("{member}: {e}"))?;
            // the declared size is untrusted: never allocate from it, and
            // never read past what the tensors need
            let limit = f.size().min(archive_len.saturating_mul(4));
            let mut buf = Vec::new();
            (&mut f)
                .take(limit)
                .read_to_end(&mut buf)
                .map_err(|e| e.to_string())?;
            storages.insert(t.key.clone(), buf);
        }
        let bytes = &storages[&t.key];
        // only row-major contiguous tensors (what save_pretrained writes)
        let mut expect = 1usize;
        for (d, s) in t.size.iter().zip(&t.stride).rev() {
            if *d > 1 && *s != expect {
                return Err(format!("{name}: non-contiguous tensor"));
            }
            expect = expect.saturating_mul(*d);
        }
        let es = t.dtype.size_in_bytes();
        let n: usize = t.size.iter().product();
        let (a, b) = (t.offset * es, (t.offset + n) * es);
        if b > bytes.len() {
            return Err(format!("{name}: tensor runs past its storage"));
        }
        let tensor = Tensor::from_raw_buffer(&bytes[a..b], t.dtype, &t.size, device)
            .map_err(|e| format!("{name}: {e}"))?;
        out.insert(name, tensor);
    }
    if out.is_empty() {
        return Err("the state dict holds no tensors".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fetches_of_a_big_value_are_bounded() {
        // a list of 1,000 ints, memoised, then fetched 10,000 times
        let mut p = vec![0x80, 2, b']', b'('];
        for _ in 0..1000 {
            p.extend([b'K', 7]);
        }
        p.extend([b'e', b'q', 0]);
        for _ in 0..10_000 {
            p.extend([b'h', 0]);
        }
        p.push(b'.');
        let e = Vm::new(&p).run().unwrap_err();
        assert!(e.contains("too many values"), "{e}");
    }

    fn run(p: &[u8]) -> Result<V, String> {
        Vm::new(p).run()
    }

    /// Found by the `deep_state_dict` fuzz target: 4 KiB of memo puts of
    /// one container ran for seconds, because a put copied the value
    /// without counting the copy. Here a list of 1,000 ints put 10,000
    /// times: refused once the copies pass the bound.
    #[test]
    fn repeated_puts_of_a_big_value_are_bounded() {
        let mut p = vec![0x80, 2, b']', b'('];
        for _ in 0..1000 {
            p.extend([b'K', 7]);
        }
        p.push(b'e');
        p.extend(std::iter::repeat_n(0x94, 10_000)); // MEMOIZE
        p.push(b'.');
        let e = run(&p).unwrap_err();
        assert!(e.contains("too many values"), "{e}");
        // the same list put a few times is an ordinary stream
        let mut ok = p[..p.len() - 10_001].to_vec();
        ok.extend([0x94, 0x94, b'.']);
        assert!(matches!(run(&ok), Ok(V::List(l, 1)) if l.len() == 1000));
    }

    /// Lists, tuples and dicts nested a million levels deep are refused
    /// before cloning, sizing or dropping them could overflow the stack
    /// (each recurses once per level); 32 levels are read.
    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let n = 1_000_000;
        let mut lists = vec![0x80, 2];
        lists.extend(std::iter::repeat_n(b']', n));
        lists.extend(std::iter::repeat_n(b'a', n - 1));
        lists.push(b'.');
        let mut tuples = vec![0x80, 2, b'K', 0];
        tuples.extend(std::iter::repeat_n(0x85u8, n)); // TUPLE1
        tuples.push(b'.');
        // n dicts each followed by a key, one more dict, then n SETITEMs:
        // each dict becomes the value of the one below it
        let mut dicts = vec![0x80, 2];
        for _ in 0..n {
            dicts.extend([b'}', b'K', 1]);
        }
        dicts.push(b'}');
        dicts.extend(std::iter::repeat_n(b's', n));
        dicts.push(b'.');
        for (name, p) in [("lists", &lists), ("tuples", &tuples), ("dicts", &dicts)] {
            let e = run(p).unwrap_err();
            assert!(e.contains("nest deeper"), "{name}: {e}");
        }
        let mut ok = vec![0x80, 2, b'K', 0];
        ok.extend(std::iter::repeat_n(0x85u8, 32));
        ok.push(b'.');
        assert!(matches!(run(&ok), Ok(V::Tuple(_, 32))));
        let mut deeper = ok.clone();
        deeper.insert(deeper.len() - 1, 0x85);
        assert!(run(&deeper).is_err());
    }

    #[test]
    fn refuses_any_other_call() {
        // protocol 2: GLOBAL os.system, ('echo',), REDUCE, STOP
        let p = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.";
        let e = Vm::new(p).run().unwrap_err();
        assert!(e.contains("os.system"), "{e}");
    }
}
