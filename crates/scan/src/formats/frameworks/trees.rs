//! Gradient-boosted tree models in their native formats: XGBoost JSON and
//! UBJSON (`save_model`), LightGBM text models and CatBoost `.cbm` files.
//! These formats hold numbers and names only and their loaders build no
//! Python objects (the danger with tree models is the pickle or joblib
//! wrapper, read by the pickle machine). They are recognised by content so
//! they are not "unknown", walked to their end, and a structure that breaks
//! the format is SCN005.
//!
//! No UBJSON crate on crates.io reads XGBoost's files: `serde_ubj` 0.2 has
//! no `deserialize_any` and no optimized containers (`$`/`#`), which
//! XGBoost writes for every array; `ubjson` 0.1 has no containers at all.
//! The walk below is hand-written and streams over typed arrays.

use std::io::{self, BufRead, Read};

use flatbuffers::{ForwardsUOffset, Table, Vector, VerifierOptions};

use crate::format::{model, Format, Head, Label, Stream};
use crate::{limits, Detected, Sink};

// ------------------------------------------------------------ XGBoost JSON

/// Whether text starts like an XGBoost JSON model (`{"learner": …`; keys
/// are written sorted, so `learner` comes first).
pub fn sniff_xgboost_json(head: &[u8]) -> bool {
    let t = head.trim_ascii_start();
    let Some(rest) = t.strip_prefix(b"{") else {
        return false;
    };
    rest.trim_ascii_start().starts_with(b"\"learner\"")
}

#[derive(serde::Deserialize)]
struct XgbModel {
    learner: XgbLearner,
    version: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct XgbLearner {
    gradient_booster: XgbNamed,
    objective: XgbNamed,
    #[allow(dead_code)]
    learner_model_param: serde::de::IgnoredAny,
}

#[derive(serde::Deserialize)]
struct XgbNamed {
    name: String,
}

const BOOSTERS: &[&str] = &["gbtree", "gblinear", "dart"];

fn scan_xgboost_json<R: Read>(r: &mut R, member: &str, sink: &mut Sink) -> io::Result<Detected> {
    let mut problems = Vec::new();
    let reader = io::BufReader::new(r);
    match serde_json::from_reader::<_, XgbModel>(reader) {
        Ok(m) => {
            if !BOOSTERS.contains(&m.learner.gradient_booster.name.as_str()) {
                problems.push(format!(
                    "unknown booster `{}`",
                    m.learner.gradient_booster.name
                ));
            }
            if m.version.len() != 3 {
                problems.push("`version` is not [major, minor, patch]".into());
            }
            let _ = m.learner.objective.name;
        }
        Err(e) => problems.push(format!("not an XGBoost model document: {e}")),
    }
    super::incomplete(sink, member, "XGBoost JSON model", &problems);
    Ok(Detected::named("xgboost"))
}

/// XGBoost JSON models.
pub struct XgboostJson;

impl Format for XgboostJson {
    fn name(&self) -> &'static str {
        "xgboost"
    }
    fn summary(&self) -> &'static str {
        "XGBoost models (JSON and UBJSON from save_model): walked to their end"
    }
    fn labels(&self) -> &'static [Label] {
        const L: &[Label] = &[model("xgboost")];
        L
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        vec![&crate::rules::SCN005]
    }
    fn sniff(&self, head: &Head) -> bool {
        sniff_xgboost_json(head.bytes) || sniff_xgboost_ubj(head.bytes)
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        _len_hint: Option<u64>,
        member: &str,
        _depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        let head = r.peek(32)?.to_vec();
        if sniff_xgboost_ubj(&head) {
            scan_xgboost_ubj(r, member, sink)
        } else {
            scan_xgboost_json(r, member, sink)
        }
    }
}

// --------------------------------------------------------- XGBoost UBJSON

/// Whether bytes start like an XGBoost UBJSON model or memory snapshot:
/// `{`, then the first key with XGBoost's int64 length prefix.
pub fn sniff_xgboost_ubj(head: &[u8]) -> bool {
    head.starts_with(b"{L\0\0\0\0\0\0\0\x07learner")
        || head.starts_with(b"{L\0\0\0\0\0\0\0\x06Config")
}

struct Ubj<'a, R> {
    r: &'a mut R,
    values: usize,
}

impl<R: Read> Ubj<'_, R> {
    fn byte(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.r
            .read_exact(&mut b)
            .map_err(|_| "the data ends inside a value".to_string())?;
        Ok(b[0])
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let got =
            io::copy(&mut self.r.by_ref().take(n), &mut io::sink()).map_err(|e| e.to_string())?;
        if got != n {
            return Err(format!("a value of {n} bytes is cut off after {got}"));
        }
        Ok(())
    }

    fn int(&mut self, marker: u8) -> Result<i64, String> {
        let n = match marker {
            b'i' | b'U' => 1,
            b'I' => 2,
            b'l' => 4,
            b'L' => 8,
            m => return Err(format!("a length has marker 0x{m:02x}, not an integer")),
        };
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 8) | u64::from(self.byte()?);
        }
        Ok(match marker {
            b'i' => v as u8 as i8 as i64,
            b'I' => v as u16 as i16 as i64,
            b'l' => v as u32 as i32 as i64,
            _ => v as i64,
        })
    }

    fn count(&mut self) -> Result<u64, String> {
        let m = self.byte()?;
        let n = self.int(m)?;
        u64::try_from(n).map_err(|_| format!("a negative length {n}"))
    }

    fn size_of(marker: u8) -> Option<u64> {
        Some(match marker {
            b'i' | b'U' | b'C' => 1,
            b'I' => 2,
            b'l' | b'd' => 4,
            b'L' | b'D' => 8,
            b'Z' | b'N' | b'T' | b'F' => 0,
            _ => return None,
        })
    }

    /// One value whose marker is `m`; returns the keys of an object.
    fn value(&mut self, m: u8, depth: u32) -> Result<Vec<String>, String> {
        if depth > 64 {
            return Err("nested deeper than 64 levels".into());
        }
        self.values += 1;
        if self.values > limits::MAX_PROTO_NODES {
            return Err(format!("more than {} values", limits::MAX_PROTO_NODES));
        }
        match m {
            b'Z' | b'N' | b'T' | b'F' => {}
            b'i' | b'U' | b'C' | b'I' | b'l' | b'd' | b'L' | b'D' => {
                self.skip(Self::size_of(m).unwrap_or(0))?
            }
            b'S' | b'H' => {
                let n = self.count()?;
                self.skip(n)?
            }
            b'[' => {
                self.container(false, depth)?;
            }
            b'{' => return self.container(true, depth),
            other => return Err(format!("byte 0x{other:02x} is not a UBJSON marker")),
        }
        Ok(Vec::new())
    }

    fn key(&mut self, first: u8) -> Result<String, String> {
        let n = self.int(first)?;
        if !(0..=4096).contains(&n) {
            return Err(format!("a key of {n} bytes"));
        }
        let mut b = vec![0u8; n as usize];
        self.r
            .read_exact(&mut b)
            .map_err(|_| "the data ends inside a key".to_string())?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn container(&mut self, object: bool, depth: u32) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut first = self.byte()?;
        let mut typed = None;
        let mut count = None;
        if first == b'$' {
            typed = Some(self.byte()?);
            first = self.byte()?;
            if first != b'#' {
                return Err("a typed container without a count".into());
            }
        }
        if first == b'#' {
            count = Some(self.count()?);
        }
        match (typed, count) {
            (Some(t), Some(n)) => {
                if let (Some(sz), false) = (Self::size_of(t), object) {
                    // a typed array of fixed-size numbers: stream over it
                    return self
                        .skip(n.checked_mul(sz).ok_or("an array size overflows")?)
                        .map(|_| keys);
                }
                for _ in 0..n {
                    if object {
                        let k = self.byte()?;
                        keys.push(self.key(k)?);
                    }
                    self.value(t, depth + 1)?;
                }
            }
            (None, Some(n)) => {
                for _ in 0..n {
                    if object {
                        let k = self.byte()?;
                        keys.push(self.key(k)?);
                    }
                    let m = self.byte()?;
                    self.value(m, depth + 1)?;
                }
            }
            _ => {
                let mut m = first;
                loop {
                    if m == if object { b'}' } else { b']' } {
                        break;
                    }
                    if object {
                        keys.push(self.key(m)?);
                        m = self.byte()?;
                    }
                    self.value(m, depth + 1)?;
                    m = self.byte()?;
                }
            }
        }
        Ok(keys)
    }
}

fn scan_xgboost_ubj<R: Read>(r: &mut R, member: &str, sink: &mut Sink) -> io::Result<Detected> {
    let mut problems = Vec::new();
    let mut u = Ubj { r, values: 0 };
    let top = u.byte().and_then(|m| u.value(m, 0));
    match top {
        Ok(keys) => {
            let has = |k: &str| keys.iter().any(|x| x == k);
            let model = has("learner") && has("version");
            let snapshot = has("Config") && has("Model");
            if !model && !snapshot {
                problems.push(format!(
                    "the top-level keys are {keys:?}, not XGBoost's `learner` and `version`"
                ));
            }
            let mut one = [0u8; 1];
            if u.r.read(&mut one)? > 0 {
                problems.push("bytes follow the model's top-level object".into());
            }
        }
        Err(e) => problems.push(e),
    }
    super::incomplete(sink, member, "XGBoost UBJSON model", &problems);
    Ok(Detected::named("xgboost"))
}

// ---------------------------------------------------------------- LightGBM

/// Whether text starts like a LightGBM model file.
pub fn sniff_lightgbm(head: &[u8]) -> bool {
    head.starts_with(b"tree\nversion=v") || head.starts_with(b"tree\r\nversion=v")
}

/// The longest line read whole; longer lines (a tree's arrays) are skipped.
const MAX_LINE: u64 = 1 << 20;

fn scan_lightgbm(
    r: &mut dyn Read,
    _len_hint: Option<u64>,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut problems = Vec::new();
    let mut br = io::BufReader::new(r);
    let mut line = Vec::new();
    let mut trees = 0u64;
    let mut declared: Option<u64> = None;
    let mut ended = false;
    loop {
        line.clear();
        let n = br.by_ref().take(MAX_LINE).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            // a long line: skip to its end
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let k = br.by_ref().take(MAX_LINE).read_until(b'\n', &mut rest)?;
                if k == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        let l = String::from_utf8_lossy(&line);
        let l = l.trim_end();
        if l.starts_with("Tree=") {
            trees += 1;
        } else if let Some(s) = l.strip_prefix("tree_sizes=") {
            declared = Some(s.split_whitespace().count() as u64);
        } else if l == "end of trees" {
            ended = true;
        }
    }
    if !ended {
        problems.push(format!(
            "no `end of trees` line after {trees} trees (a truncated model)"
        ));
    }
    if let Some(d) = declared {
        if d != trees {
            problems.push(format!(
                "`tree_sizes` lists {d} trees, the file holds {trees}"
            ));
        }
    }
    super::incomplete(sink, member, "LightGBM model", &problems);
    Ok(Detected::named("lightgbm"))
}

stream_format!(
    LightGbm,
    "lightgbm",
    "LightGBM text models: trees counted against the header, read to `end of trees`",
    [&crate::rules::SCN005],
    sniff_lightgbm,
    scan_lightgbm
);

// ---------------------------------------------------------------- CatBoost

/// The most bytes of a CatBoost model core read.
const MAX_CATBOOST_CORE: u64 = 1 << 30;

fn scan_catboost(
    r: &mut dyn Read,
    len_hint: Option<u64>,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut problems = Vec::new();
    let mut head = [0u8; 8];
    let got = r.read(&mut head)?;
    let mut core_len = if got == 8 {
        u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]))
    } else {
        problems.push("the file ends inside its header".into());
        0
    };
    let mut header = 8u64;
    if core_len == 0xFFFF_FFFF {
        let mut b = [0u8; 8];
        r.read_exact(&mut b)?;
        core_len = u64::from_le_bytes(b);
        header += 8;
    }
    if let Some(total) = len_hint {
        if header.saturating_add(core_len) > total {
            problems.push(format!(
                "the model core of {core_len} bytes runs past the end of the file"
            ));
        }
    }
    if problems.is_empty() {
        if core_len > MAX_CATBOOST_CORE {
            problems.push(format!(
                "a model core of {core_len} bytes is larger than the {} MiB inspection limit",
                MAX_CATBOOST_CORE >> 20
            ));
        } else {
            let mut buf = Vec::new();
            (&mut *r).take(core_len).read_to_end(&mut buf)?;
            if (buf.len() as u64) < core_len {
                problems.push("the model core is cut off".into());
            } else if let Some(why) = catboost_core(&buf) {
                problems.push(why);
            }
        }
    }
    super::incomplete(sink, member, "CatBoost model", &problems);
    Ok(Detected::named("catboost"))
}

/// Checks a `TModelCore` flatbuffer: a verified root table whose
/// `FormatVersion` (slot 4) is CatBoost's.
fn catboost_core(buf: &[u8]) -> Option<String> {
    let opts = VerifierOptions {
        max_tables: 4_000_000,
        ..Default::default()
    };
    let mut v = flatbuffers::Verifier::new(&opts, buf);
    let root = match v.get_uoffset(0) {
        Ok(o) => o as usize,
        Err(e) => return Some(format!("the flatbuffer does not verify: {e}")),
    };
    let checked = v.visit_table(root).and_then(|t| {
        t.visit_field::<ForwardsUOffset<&str>>("FormatVersion", 4, false)?
            .visit_field::<ForwardsUOffset<Vector<ForwardsUOffset<&str>>>>(
                "ModelPartIds",
                10,
                false,
            )?
            .finish();
        Ok(())
    });
    if let Err(e) = checked {
        return Some(format!("the flatbuffer does not verify: {e}"));
    }
    // SAFETY: the root table and its FormatVersion field were verified above.
    let version = unsafe {
        let t = Table::new(buf, root);
        t.get::<ForwardsUOffset<&str>>(4, None)
    };
    match version {
        Some("FlabuffersModel_v1") => None,
        Some(other) => Some(format!("format version `{other}` is not CatBoost's")),
        None => Some("the model core has no format version".into()),
    }
}

fn sniff_catboost(head: &[u8]) -> bool {
    head.starts_with(b"CBM1")
}

stream_format!(
    CatBoost,
    "catboost",
    "CatBoost binary models (.cbm): header, size and the model core's flatbuffer",
    [&crate::rules::SCN005],
    sniff_catboost,
    scan_catboost
);
