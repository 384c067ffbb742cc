//! Tensor tables and metadata from safetensors and GGUF headers, without
//! reading the weights: a bounded read of the header only, with the static
//! scanner's limits (`probity_scan::limits`).

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

use probity_scan::limits;

/// One tensor as a header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

/// What a weight file's header holds: its tensors and the metadata that
/// matters to a diff (GGUF only: architecture, chat templates, special token
/// IDs, base model).
#[derive(Debug, Default)]
pub struct Header {
    pub tensors: Vec<Tensor>,
    pub metadata: BTreeMap<String, String>,
}

fn open(path: &Path) -> Result<(BufReader<std::fs::File>, u64), String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    Ok((BufReader::new(f), len))
}

/// Reads a safetensors header: 8 bytes of length, then that much JSON.
pub fn safetensors(path: &Path) -> Result<Header, String> {
    let (mut r, len) = open(path)?;
    let bad = |m: String| format!("malformed safetensors header: {m}");
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).map_err(|_| {
        bad(format!(
            "the file has {len} bytes, fewer than the 8-byte header length"
        ))
    })?;
    let n = u64::from_le_bytes(pre);
    if n > limits::MAX_SAFETENSORS_HEADER {
        return Err(bad(format!(
            "header of {n} bytes is over the {} MiB limit",
            limits::MAX_SAFETENSORS_HEADER >> 20
        )));
    }
    if n > len - 8 {
        return Err(bad(format!(
            "header announces {n} bytes but the file ends after {}",
            len - 8
        )));
    }
    let mut buf = Vec::with_capacity(n as usize);
    r.take(n).read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&buf).map_err(|e| bad(format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object".into()))?;
    let mut tensors = Vec::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(format!("tensor '{name}' has no dtype")))?;
        let shape = t
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|s| s.iter().map(|d| d.as_u64()).collect::<Option<Vec<u64>>>())
            .ok_or_else(|| bad(format!("tensor '{name}' has no valid shape")))?;
        tensors.push(Tensor {
            name: name.clone(),
            dtype: dtype.to_string(),
            shape,
        });
    }
    Ok(Header {
        tensors,
        metadata: BTreeMap::new(),
    })
}

/// GGUF metadata keys kept (strings and integers; arrays are skipped).
fn kept(key: &str) -> bool {
    key == "general.architecture"
        || key == "general.name"
        || key.starts_with("general.base_model.")
        || key == "tokenizer.chat_template"
        || key.starts_with("tokenizer.chat_template.")
        || (key.starts_with("tokenizer.ggml.") && key.ends_with("_token_id"))
        || key == "tokenizer.ggml.model"
}

/// Name of a ggml tensor type.
fn ggml_type(t: u32) -> String {
    let n = match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        _ => return format!("type {t}"),
    };
    n.to_string()
}

struct Gguf<R> {
    r: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Gguf<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|_| "the file ends inside its header".to_string())?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes::<4>()?))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes::<8>()?))
    }
    fn skip(&mut self, n: u64) -> Result<(), String> {
        if n > self.len.saturating_sub(self.pos) {
            return Err("the file ends inside its header".into());
        }
        let got = std::io::copy(&mut self.r.by_ref().take(n), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        self.pos += got;
        if got < n {
            return Err("the file ends inside its header".into());
        }
        Ok(())
    }
    /// A length-prefixed string, kept when `keep`.
    fn string(&mut self, keep: bool, what: &str) -> Result<Option<String>, String> {
        let n = self.u64()?;
        if n > limits::MAX_GGUF_STRING {
            return Err(format!(
                "{what}: string of {n} bytes is over the {} MiB limit",
                limits::MAX_GGUF_STRING >> 20
            ));
        }
        if n > self.len.saturating_sub(self.pos) {
            return Err(format!(
                "{what}: string of {n} bytes runs past the end of the file"
            ));
        }
        if !keep {
            self.skip(n)?;
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(n as usize);
        let got = self
            .r
            .by_ref()
            .take(n)
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())? as u64;
        self.pos += got;
        if got < n {
            return Err(format!("{what}: the file ends inside a string"));
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
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

/// Reads a GGUF header (versions 2 and 3): metadata and the tensor table.
pub fn gguf(path: &Path) -> Result<Header, String> {
    let (r, len) = open(path)?;
    gguf_from(r, len).map_err(|m| format!("malformed GGUF header: {m}"))
}

fn gguf_from<R: Read>(r: R, len: u64) -> Result<Header, String> {
    let mut g = Gguf { r, pos: 0, len };
    if &g.bytes::<4>()? != b"GGUF" {
        return Err("bad magic".into());
    }
    let version = g.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!("unsupported version {version} (2 and 3 are read)"));
    }
    let n_tensors = g.u64()?;
    let n_kv = g.u64()?;
    if n_tensors > limits::MAX_GGUF_TENSORS || n_kv > limits::MAX_GGUF_KV {
        return Err(format!(
            "{n_tensors} tensors and {n_kv} metadata entries are over the limits ({} and {})",
            limits::MAX_GGUF_TENSORS,
            limits::MAX_GGUF_KV
        ));
    }
    let mut h = Header::default();
    for i in 0..n_kv {
        let key = g
            .string(true, &format!("metadata key #{i}"))?
            .unwrap_or_default();
        let t = g.u32()?;
        let keep = kept(&key);
        match t {
            8 => {
                if let Some(s) = g.string(keep, &key)? {
                    h.metadata.insert(key, s);
                }
            }
            9 => {
                let et = g.u32()?;
                let n = g.u64()?;
                if n > limits::MAX_GGUF_ARRAY {
                    return Err(format!(
                        "{key}: array of {n} elements is over the limit of {}",
                        limits::MAX_GGUF_ARRAY
                    ));
                }
                if let Some(w) = width(et) {
                    g.skip(
                        n.checked_mul(w)
                            .ok_or(format!("{key}: array size overflows"))?,
                    )?;
                } else if et == 8 {
                    for _ in 0..n {
                        g.string(false, &key)?;
                    }
                } else {
                    return Err(format!("{key}: array of unknown value type {et}"));
                }
            }
            _ => {
                let w = width(t).ok_or(format!("{key}: unknown value type {t}"))?;
                let mut b = [0u8; 8];
                for x in b.iter_mut().take(w as usize) {
                    *x = g.bytes::<1>()?[0];
                }
                if keep {
                    let v = match t {
                        0 => (b[0] as i8).to_string(),
                        1 => b[0].to_string(),
                        2 => i16::from_le_bytes([b[0], b[1]]).to_string(),
                        3 => u16::from_le_bytes([b[0], b[1]]).to_string(),
                        4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string(),
                        5 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string(),
                        6 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_string(),
                        7 => (b[0] != 0).to_string(),
                        10 => u64::from_le_bytes(b).to_string(),
                        11 => i64::from_le_bytes(b).to_string(),
                        _ => f64::from_le_bytes(b).to_string(),
                    };
                    h.metadata.insert(key, v);
                }
            }
        }
    }
    for i in 0..n_tensors {
        let name = g
            .string(true, &format!("tensor #{i} name"))?
            .unwrap_or_default();
        let dims = g.u32()?;
        if dims == 0 || dims > 4 {
            return Err(format!(
                "tensor '{name}' has {dims} dimensions (1 to 4 allowed)"
            ));
        }
        let mut shape = Vec::with_capacity(dims as usize);
        for _ in 0..dims {
            shape.push(g.u64()?);
        }
        let t = g.u32()?;
        let _offset = g.u64()?;
        h.tensors.push(Tensor {
            name,
            dtype: ggml_type(t),
            shape,
        });
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_bounds() {
        // a string length past the end of the file is refused, not allocated
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes());
        let e = gguf_from(&b[..], b.len() as u64).unwrap_err();
        assert!(e.contains("over the 16 MiB limit"), "{e}");
        let e = gguf_from(&b"GGUF\x01\0\0\0"[..], 8).unwrap_err();
        assert_eq!(e, "unsupported version 1 (2 and 3 are read)");
    }
}
