//! ONNX (`ModelProto`): the graph's nodes, model-local functions, training
//! graphs and the external-data references of initializers, read without
//! loading tensor data.
//!
//! The messages below are the subset of `onnx/onnx.proto` (ONNX 1.17,
//! `onnx` Python package, MIT licence) that the judgement needs, declared with
//! `prost`'s derive and the field numbers of that file; fields not declared
//! here are skipped by the decoder, so tensor payloads are never allocated.
//! Initializers are streamed by [`crate::formats::protobuf::walk`].

pub mod rules;

use std::collections::BTreeSet;
use std::io::{self, Read};

use prost::Message;

use crate::format::{model, Format, Head, Label, Stream};
use crate::formats::protobuf::{self, Event, Field, Schema, Stop};
use crate::limits;
use crate::paths::escapes_folder;
use crate::{Detected, Sink};
use probity_report::Finding;

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntry {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetId {
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

/// TensorProto without its data fields.
#[derive(Clone, PartialEq, Message)]
pub struct Tensor {
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntry>,
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SparseTensor {
    #[prost(message, optional, tag = "1")]
    pub values: Option<Tensor>,
    #[prost(message, optional, tag = "2")]
    pub indices: Option<Tensor>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Attribute {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<Tensor>,
    #[prost(message, optional, tag = "6")]
    pub g: Option<Graph>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<Tensor>,
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<Graph>,
    #[prost(message, optional, tag = "22")]
    pub sparse_tensor: Option<SparseTensor>,
    #[prost(message, repeated, tag = "23")]
    pub sparse_tensors: Vec<SparseTensor>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Node {
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<Attribute>,
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
}

/// GraphProto as found inside attributes (subgraphs), decoded whole.
#[derive(Clone, PartialEq, Message)]
pub struct Graph {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<Node>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<Tensor>,
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensor>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<Node>,
    #[prost(string, optional, tag = "10")]
    pub domain: Option<String>,
}

// Streaming schema: ModelProto → graph (7), training_info (20) → graphs (1, 2);
// GraphProto → node (1, kept), initializer (5) and sparse_initializer (15)
// streamed; TensorProto → name (8), external_data (13), data_location (14).
static TENSOR: Schema = Schema {
    fields: &[(8, Field::Keep), (13, Field::Keep), (14, Field::Keep)],
};
static SPARSE: Schema = Schema {
    fields: &[(1, Field::Descend(&TENSOR)), (2, Field::Descend(&TENSOR))],
};
static GRAPH: Schema = Schema {
    fields: &[
        (1, Field::Keep),
        (5, Field::Descend(&TENSOR)),
        (15, Field::Descend(&SPARSE)),
    ],
};
static TRAINING: Schema = Schema {
    fields: &[(1, Field::Descend(&GRAPH)), (2, Field::Descend(&GRAPH))],
};
static MODEL: Schema = Schema {
    fields: &[
        (1, Field::Keep),
        (2, Field::Keep),
        (7, Field::Descend(&GRAPH)),
        (8, Field::Keep),
        (20, Field::Descend(&TRAINING)),
        (25, Field::Keep),
    ],
};

/// ModelProto field numbers, for the content sniff.
const MODEL_FIELDS: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25];

/// Whether the head looks like an ONNX ModelProto: `ir_version` first (every
/// writer emits fields in number order, and ONNX IR versions are 3 and up in
/// any exporter of the last seven years), then ModelProto fields only.
pub fn sniff(head: &[u8], len: u64) -> bool {
    head.len() >= 4
        && head[0] == 0x08
        && (3..=20).contains(&head[1])
        && protobuf::plausible(head, MODEL_FIELDS, len, 4)
}

/// Operator domains whose operators ship with ONNX or ONNX Runtime.
const KNOWN_DOMAINS: &[&str] = &[
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "ai.onnx.training",
    "ai.onnx.preview.training",
    "com.microsoft",
    "com.microsoft.nchwc",
    "com.microsoft.experimental",
    "com.microsoft.mlfeaturizers",
    "com.ms.internal.nhwc",
];

/// Operators whose semantics are "call a Python function": the runtime looks
/// the function up by an attribute and runs it in the host interpreter
/// (onnxruntime-extensions' `PyOp`, PyTorch exporter's `PythonOp` fallback for
/// autograd Functions, TensorFlow's `PyFunc` family carried over by tf2onnx).
const PYTHON_OPS: &[&str] = &[
    "PyOp",
    "PythonOp",
    "PyFunc",
    "PyFuncStateless",
    "EagerPyFunc",
];

#[derive(Default)]
struct Judge {
    nodes: usize,
    python_ops: BTreeSet<String>,
    custom_ops: BTreeSet<String>,
    bad_locations: BTreeSet<String>,
    local_functions: BTreeSet<(String, String)>,
    problems: Vec<String>,
    ir_version: Option<u64>,
    has_graph: bool,
    has_opset: bool,
}

/// The walk path of a graph: the model's (7) or a training graph (20, 1|2).
fn is_graph(p: &[u32]) -> bool {
    p == [7] || (p.len() == 2 && p[0] == 20)
}

/// The walk path of a tensor: an initializer (graph, 5) or a sparse
/// initializer's values or indices (graph, 15, 1|2).
fn is_tensor(p: &[u32]) -> bool {
    match p {
        [g @ .., 5] => is_graph(g),
        [g @ .., 15, _] => is_graph(g),
        _ => false,
    }
}

fn place_of(p: &[u32]) -> &'static str {
    if p.first() == Some(&20) {
        "training graph"
    } else {
        "graph"
    }
}

impl Judge {
    fn tensor(&mut self, t: &Tensor, place: &str) {
        if t.data_location != Some(1) && t.external_data.is_empty() {
            return;
        }
        for e in &t.external_data {
            if e.key.as_deref() == Some("location") {
                let loc = e.value.clone().unwrap_or_default();
                if escapes_folder(&loc) {
                    let name = t.name.clone().unwrap_or_default();
                    self.bad_locations
                        .insert(format!("{place} tensor '{name}' → '{loc}'"));
                }
            }
        }
    }

    fn node(&mut self, n: &Node, place: &str, depth: u32) {
        self.nodes += 1;
        if self.nodes > limits::MAX_PROTO_NODES {
            return;
        }
        let op = n.op_type.clone().unwrap_or_default();
        let domain = n.domain.clone().unwrap_or_default();
        let name = n.name.clone().unwrap_or_default();
        let label = if domain.is_empty() {
            format!("{op} (node '{name}' in {place})")
        } else {
            format!("{domain}::{op} (node '{name}' in {place})")
        };
        if PYTHON_OPS.contains(&op.as_str()) {
            let attrs: Vec<String> = n
                .attribute
                .iter()
                .filter_map(|a| {
                    let v = a.s.as_ref()?;
                    Some(format!(
                        "{}={}",
                        a.name.clone().unwrap_or_default(),
                        clip(&String::from_utf8_lossy(v), 80)
                    ))
                })
                .collect();
            if attrs.is_empty() {
                self.python_ops.insert(label.clone());
            } else {
                self.python_ops
                    .insert(format!("{label} [{}]", attrs.join(", ")));
            }
        } else if !KNOWN_DOMAINS.contains(&domain.as_str()) {
            self.custom_ops.insert(format!("{domain}::{op}"));
        }
        for a in &n.attribute {
            if let Some(t) = &a.t {
                self.tensor(t, place);
            }
            for t in &a.tensors {
                self.tensor(t, place);
            }
            let sub = format!("{place} / {}.{}", name, a.name.clone().unwrap_or_default());
            for g in a.g.iter().chain(a.graphs.iter()) {
                self.graph(g, &sub, depth + 1);
            }
        }
    }

    fn graph(&mut self, g: &Graph, place: &str, depth: u32) {
        for t in &g.initializer {
            self.tensor(t, place);
        }
        for s in &g.sparse_initializer {
            for t in s.values.iter().chain(s.indices.iter()) {
                self.tensor(t, place);
            }
        }
        for n in &g.node {
            self.node(n, place, depth);
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n).collect();
        c.push('…');
        c
    }
}

/// Scans an ONNX model read from `r`.
pub fn scan<R: Read>(r: &mut R, member: &str, sink: &mut Sink) -> io::Result<Detected> {
    let mut j = Judge::default();
    let mut functions: Vec<Function> = Vec::new();
    let mut current: Option<Tensor> = None;
    let res = protobuf::walk(r, &MODEL, &mut |e| {
        match e {
            Event::Varint { path, field, value } => {
                if path.is_empty() && field == 1 {
                    j.ir_version = Some(value);
                } else if field == 14 && is_tensor(path) {
                    if let Some(t) = current.as_mut() {
                        t.data_location = i32::try_from(value).ok();
                    }
                }
            }
            Event::Enter { path } => {
                if path == [7] {
                    j.has_graph = true;
                }
                if is_tensor(path) {
                    current = Some(Tensor::default());
                }
            }
            Event::Leave { path } => {
                if is_tensor(path) {
                    if let Some(t) = current.take() {
                        j.tensor(&t, place_of(path));
                    }
                }
            }
            Event::Bytes { path, field, data } => {
                if path.is_empty() {
                    match field {
                        8 => j.has_opset = true,
                        25 => match Function::decode(data.as_slice()) {
                            Ok(f) => functions.push(f),
                            Err(e) => j.problems.push(format!("a function does not decode: {e}")),
                        },
                        _ => {}
                    }
                } else if is_graph(path) && field == 1 {
                    match Node::decode(data.as_slice()) {
                        Ok(n) => j.node(&n, place_of(path), 0),
                        Err(e) => j.problems.push(format!("a node does not decode: {e}")),
                    }
                } else if is_tensor(path) {
                    if let Some(t) = current.as_mut() {
                        if field == 8 {
                            t.name = Some(String::from_utf8_lossy(&data).into_owned());
                        } else if field == 13 {
                            match StringStringEntry::decode(data.as_slice()) {
                                Ok(kv) => t.external_data.push(kv),
                                Err(e) => j
                                    .problems
                                    .push(format!("an external-data entry does not decode: {e}")),
                            }
                        }
                    }
                }
            }
            Event::TooLarge { len, field, .. } => j.problems.push(format!(
                "a field {field} of {len} bytes is larger than the {} MiB inspection limit; not inspected",
                limits::MAX_PROTO_KEPT >> 20
            )),
        }
        j.nodes <= limits::MAX_PROTO_NODES
    });
    let local: BTreeSet<(String, String)> = functions
        .iter()
        .map(|f| {
            (
                f.domain.clone().unwrap_or_default(),
                f.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    j.local_functions = local;
    for f in &functions {
        let place = format!(
            "function {}::{}",
            f.domain.clone().unwrap_or_default(),
            f.name.clone().unwrap_or_default()
        );
        for n in &f.node {
            j.node(n, &place, 0);
        }
    }
    match res {
        Ok(_) => {}
        Err(Stop::Io(e)) => return Err(e),
        Err(Stop::Malformed { offset, why }) => {
            j.problems.push(format!("at byte {offset}: {why}"));
        }
    }
    if j.nodes > limits::MAX_PROTO_NODES {
        j.problems.push(format!(
            "more than {} nodes; the rest were not inspected",
            limits::MAX_PROTO_NODES
        ));
    }
    report(j, member, sink);
    Ok(Detected::named("onnx"))
}

fn report(j: Judge, member: &str, sink: &mut Sink) {
    let at = |f: Finding| f.at(Some(member), None);
    if !j.bad_locations.is_empty() {
        let list: Vec<String> = j.bad_locations.iter().cloned().collect();
        sink.findings.push(at(Finding::new(
            &rules::ONX001,
            format!(
                "external tensor data is read from outside the model folder: {}",
                crate::formats::summarise(&list, 5)
            ),
        )));
    }
    if !j.python_ops.is_empty() {
        let list: Vec<String> = j.python_ops.iter().cloned().collect();
        sink.findings.push(at(Finding::new(
            &rules::ONX002,
            format!(
                "operators that call into Python: {}",
                crate::formats::summarise(&list, 5)
            ),
        )));
    }
    let custom: Vec<String> = j
        .custom_ops
        .iter()
        .filter(|op| {
            // calls of functions defined in the model itself: their bodies are judged
            let (d, n) = op.split_once("::").unwrap_or(("", op));
            !j.local_functions.contains(&(d.to_string(), n.to_string()))
        })
        .cloned()
        .collect();
    if !custom.is_empty() {
        sink.findings.push(at(Finding::new(
            &rules::ONX003,
            format!(
                "operators from domains outside ONNX and ONNX Runtime (the runtime needs a custom library to run them): {}",
                crate::formats::summarise(&custom, 8)
            ),
        )));
    }
    let mut problems = j.problems;
    if problems.is_empty() && !j.has_graph && !j.has_opset {
        problems.push("no graph and no opset imports: not a usable model".into());
    }
    if !problems.is_empty() {
        sink.findings.push(at(Finding::new(
            &rules::ONX004,
            format!(
                "ONNX model (IR version {}) could not be fully inspected: {}",
                j.ir_version.map_or("?".to_string(), |v| v.to_string()),
                crate::formats::summarise(&problems, 3)
            ),
        )));
    }
}

/// ONNX models.
pub struct Onnx;

impl Format for Onnx {
    fn name(&self) -> &'static str {
        "onnx"
    }
    fn summary(&self) -> &'static str {
        "ONNX models (operators, functions, external data paths)"
    }
    fn labels(&self) -> &'static [Label] {
        {
            const L: &[Label] = &[model("onnx")];
            L
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        sniff(head.bytes, head.len)
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
        scan(r, member, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        for bad in [
            "/etc/passwd",
            "../x.bin",
            "a/../../x",
            "..\\x",
            "C:\\w.bin",
            "~/.ssh/id_rsa",
            "file:///etc/passwd",
        ] {
            assert!(escapes_folder(bad), "{bad}");
        }
        for ok in ["weights.bin", "data/w.bin", "model.onnx.data", "a..b.bin"] {
            assert!(!escapes_folder(ok), "{ok}");
        }
    }
}
