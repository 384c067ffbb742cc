//! TensorFlow graphs: `saved_model.pb` (SavedModel) and frozen `GraphDef`
//! files. Every node of every meta graph and of every function in the graph's
//! function library is judged by its op: ops that call back into Python,
//! ops that read, write or list files, and the checkpoint ops when a constant
//! path sends them outside the model.
//!
//! The messages are the subset of TensorFlow's `saved_model.proto`,
//! `meta_graph.proto`, `graph.proto`, `node_def.proto`, `function.proto`,
//! `attr_value.proto` and `tensor.proto` (tensorflow/core/protobuf and
//! tensorflow/core/framework, Apache-2.0) that the judgement needs, declared
//! with `prost`'s derive and those files' field numbers. Tensor contents are
//! not declared, so the decoder skips them.

pub mod rules;
pub mod tflite;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

use prost::Message;

use crate::format::{model, Format, Head, Label, Stream};
use crate::formats::protobuf::{self, Event, Field, Schema, Stop};
use crate::limits;
use crate::paths::escapes_folder as escapes;
use crate::{Detected, Sink};
use probity_report::Finding;

/// TensorProto: only its strings (`string_val`).
#[derive(Clone, PartialEq, Message)]
pub struct TfTensor {
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ListValue {
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub s: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttrValue {
    #[prost(message, optional, tag = "1")]
    pub list: Option<ListValue>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TfTensor>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub op: String,
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    #[prost(btree_map = "string, message", tag = "5")]
    pub attr: BTreeMap<String, AttrValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OpDef {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct FunctionDef {
    #[prost(message, optional, tag = "1")]
    pub signature: Option<OpDef>,
    #[prost(message, repeated, tag = "3")]
    pub node_def: Vec<NodeDef>,
}

#[derive(Clone, PartialEq, Message)]
pub struct FunctionDefLibrary {
    #[prost(message, repeated, tag = "1")]
    pub function: Vec<FunctionDef>,
}

// SavedModel → meta_graphs (2) → graph_def (2) → node (1, kept), library (2, kept).
static GRAPH_DEF: Schema = Schema {
    fields: &[(1, Field::Keep), (2, Field::Keep)],
};
static META_GRAPH: Schema = Schema {
    fields: &[(2, Field::Descend(&GRAPH_DEF))],
};
static SAVED_MODEL: Schema = Schema {
    fields: &[(2, Field::Descend(&META_GRAPH))],
};

/// Which top-level message a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    SavedModel,
    GraphDef,
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for k in 0..10 {
        let c = *b.get(*i)?;
        *i += 1;
        v |= u64::from(c & 0x7f) << (7 * k);
        if c & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn identifier(b: &[u8]) -> bool {
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_-./:>".contains(c))
}

/// Whether the head holds a SavedModel (optional `saved_model_schema_version`
/// 1, then a MetaGraphDef) or a frozen GraphDef (a first NodeDef with an
/// identifier name and op).
pub fn sniff(head: &[u8], len: u64) -> Option<Flavor> {
    let mut i = 0;
    if head.starts_with(&[0x08, 0x01]) {
        i = 2;
    }
    if head.get(i) == Some(&0x12) {
        let mut j = i + 1;
        // the announced length is not checked against the file's: a
        // truncated SavedModel is still one (and reported as cut short)
        let n = varint(head, &mut j)?;
        if n == 0 || len == 0 {
            return None;
        }
        // a MetaGraphDef starts with one of its fields 1..=7, length-delimited
        let k = *head.get(j)?;
        if (1..=7).contains(&(k >> 3)) && k & 7 == 2 {
            return Some(Flavor::SavedModel);
        }
        return None;
    }
    if i == 0 && head.first() == Some(&0x0a) {
        let mut j = 1;
        varint(head, &mut j)?;
        // NodeDef: 1 name, 2 op
        if head.get(j) != Some(&0x0a) {
            return None;
        }
        j += 1;
        let ln = varint(head, &mut j)? as usize;
        let name = head.get(j..j + ln)?;
        j += ln;
        if head.get(j) != Some(&0x12) {
            return None;
        }
        j += 1;
        let lo = varint(head, &mut j)? as usize;
        let op = head.get(j..j + lo)?;
        if identifier(name) && identifier(op) && op[0].is_ascii_uppercase() {
            return Some(Flavor::GraphDef);
        }
    }
    None
}

/// Ops that run a Python function registered in the loading process: the
/// graph names it by a token, and whatever the process registered under that
/// token runs (`tf.py_function`, `tf.numpy_function`).
const PYTHON_OPS: &[&str] = &["PyFunc", "PyFuncStateless", "EagerPyFunc"];

/// Ops that read, list, map or write files, or talk to the network. Inference
/// graphs have no use for them; data-loading graphs do, which is why they are
/// warnings.
const FILE_OPS: &[&str] = &[
    "ReadFile",
    "WriteFile",
    "MatchingFiles",
    "ImmutableConst",
    "WholeFileReader",
    "WholeFileReaderV2",
    "TextLineReader",
    "TextLineReaderV2",
    "TFRecordReader",
    "TFRecordReaderV2",
    "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2",
    "LMDBReader",
    "TextLineDataset",
    "TextLineDatasetV2",
    "TFRecordDataset",
    "TFRecordDatasetV2",
    "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2",
    "CSVDataset",
    "CSVDatasetV2",
    "ExperimentalCSVDataset",
    "LMDBDataset",
    "ExperimentalLMDBDataset",
    "SqlDataset",
    "ExperimentalSqlDataset",
    "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord",
    "SaveDataset",
    "SaveDatasetV2",
    "LoadDataset",
    "SnapshotDataset",
    "SnapshotDatasetV2",
    "CreateSummaryFileWriter",
    "WriteSummary",
    "RpcClient",
    "RpcServer",
    "RpcCall",
    "RpcServerStart",
    "RpcServerRegister",
    "Rpc",
    "TryRpc",
];

/// Ops that write to a path given as an input.
const WRITE_OPS: &[&str] = &[
    "WriteFile",
    "Save",
    "SaveV2",
    "SaveSlices",
    "MergeV2Checkpoints",
    "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord",
    "SaveDataset",
    "SaveDatasetV2",
    "CreateSummaryFileWriter",
];

/// Checkpoint ops every SavedModel's saver has: ordinary, unless a constant
/// path sends them outside the model.
const CHECKPOINT_OPS: &[&str] = &[
    "Save",
    "SaveV2",
    "SaveSlices",
    "Restore",
    "RestoreV2",
    "RestoreSlice",
    "MergeV2Checkpoints",
];

/// Whether a TensorFlow op calls back into Python (also used for TFLite's
/// `Flex` operators).
pub fn is_python_op(op: &str) -> bool {
    PYTHON_OPS.contains(&op)
}

/// Whether a TensorFlow op reads, lists or writes files or reaches the network.
pub fn is_file_op(op: &str) -> bool {
    FILE_OPS.contains(&op) || WRITE_OPS.contains(&op)
}

#[derive(Default)]
struct Judge {
    nodes: usize,
    python: BTreeSet<String>,
    files: BTreeSet<String>,
    escaping_writes: BTreeSet<String>,
    problems: Vec<String>,
}

/// The producing node's name of an input: `^ctrl`, `name:0`, and in function
/// bodies `name:output:0`.
fn source(input: &str) -> &str {
    let s = input.trim_start_matches('^');
    s.split(':').next().unwrap_or(s)
}

impl Judge {
    fn graph(&mut self, nodes: &[NodeDef], place: &str) {
        // constant strings by node name, to show paths handed to file ops
        let consts: BTreeMap<&str, Vec<String>> = nodes
            .iter()
            .filter(|n| n.op == "Const")
            .filter_map(|n| {
                let t = n.attr.get("value")?.tensor.as_ref()?;
                if t.string_val.is_empty() {
                    return None;
                }
                let v = t
                    .string_val
                    .iter()
                    .take(4)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                Some((n.name.as_str(), v))
            })
            .collect();
        for n in nodes {
            self.nodes += 1;
            if self.nodes > limits::MAX_PROTO_NODES {
                return;
            }
            let op = n.op.as_str();
            let label = format!("{op} (node '{}' in {place})", n.name);
            let paths: Vec<&String> = n
                .input
                .iter()
                .filter_map(|i| consts.get(source(i)))
                .flatten()
                .collect();
            if PYTHON_OPS.contains(&op) {
                let token = n
                    .attr
                    .get("token")
                    .and_then(|a| a.s.as_ref())
                    .map(|t| format!(" token '{}'", String::from_utf8_lossy(t)))
                    .unwrap_or_default();
                self.python.insert(format!("{label}{token}"));
                continue;
            }
            let escaping: Vec<&String> = paths.iter().copied().filter(|p| escapes(p)).collect();
            if WRITE_OPS.contains(&op) && !escaping.is_empty() {
                self.escaping_writes
                    .insert(format!("{label} → {}", quoted(&escaping)));
                continue;
            }
            if CHECKPOINT_OPS.contains(&op) {
                if !escaping.is_empty() {
                    self.files
                        .insert(format!("{label} → {}", quoted(&escaping)));
                }
                continue;
            }
            let to_file = op == "PrintV2"
                && n.attr
                    .get("output_stream")
                    .and_then(|a| a.s.as_ref())
                    .is_some_and(|s| s.starts_with(b"file://"));
            let debug_url = op.starts_with("DebugIdentity")
                && n.attr
                    .get("debug_urls")
                    .and_then(|a| a.list.as_ref())
                    .is_some_and(|l| !l.s.is_empty());
            if FILE_OPS.contains(&op) || to_file || debug_url {
                if paths.is_empty() {
                    self.files.insert(label);
                } else {
                    self.files.insert(format!("{label} → {}", quoted(&paths)));
                }
            }
        }
    }
}

fn quoted(v: &[&String]) -> String {
    v.iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Scans a SavedModel or frozen GraphDef read from `r`.
pub fn scan<R: Read>(
    flavor: Flavor,
    r: &mut R,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut j = Judge::default();
    // nodes are judged per graph (constants feed the file ops of their graph)
    let mut graph: Vec<NodeDef> = Vec::new();
    let mut meta = 0usize;
    let schema = match flavor {
        Flavor::SavedModel => &SAVED_MODEL,
        Flavor::GraphDef => &GRAPH_DEF,
    };
    let graph_path: &[u32] = match flavor {
        Flavor::SavedModel => &[2, 2],
        Flavor::GraphDef => &[],
    };
    let res = protobuf::walk(r, schema, &mut |e| {
        match e {
            Event::Enter { path } if path == [2] => meta += 1,
            Event::Leave { path } if path == graph_path => {
                let place = format!("meta graph {meta}");
                j.graph(&std::mem::take(&mut graph), &place);
            }
            Event::Bytes { path, field, data } if path == graph_path => match field {
                1 => match NodeDef::decode(data.as_slice()) {
                    Ok(n) => graph.push(n),
                    Err(e) => j.problems.push(format!("a node does not decode: {e}")),
                },
                2 => match FunctionDefLibrary::decode(data.as_slice()) {
                    Ok(lib) => {
                        for f in &lib.function {
                            let name = f.signature.as_ref().map_or("", |s| s.name.as_str());
                            j.graph(&f.node_def, &format!("function '{name}'"));
                        }
                    }
                    Err(e) => j
                        .problems
                        .push(format!("the function library does not decode: {e}")),
                },
                _ => {}
            },
            Event::TooLarge { len, .. } => j.problems.push(format!(
                "a node or function library of {len} bytes is larger than the {} MiB inspection limit; not inspected",
                limits::MAX_PROTO_KEPT >> 20
            )),
            _ => {}
        }
        j.nodes <= limits::MAX_PROTO_NODES && graph.len() <= limits::MAX_PROTO_NODES
    });
    if !graph.is_empty() {
        j.graph(
            &graph,
            if flavor == Flavor::GraphDef {
                "graph"
            } else {
                "meta graph"
            },
        );
    }
    match res {
        Ok(_) => {}
        Err(Stop::Io(e)) => return Err(e),
        Err(Stop::Malformed { offset, why }) => j.problems.push(format!("at byte {offset}: {why}")),
    }
    if j.nodes > limits::MAX_PROTO_NODES || graph.len() > limits::MAX_PROTO_NODES {
        j.problems.push(format!(
            "more than {} nodes; the rest were not inspected",
            limits::MAX_PROTO_NODES
        ));
    }
    report(j, member, sink);
    Ok(Detected::named(match flavor {
        Flavor::SavedModel => "tf-savedmodel",
        Flavor::GraphDef => "tf-graphdef",
    }))
}

fn report(j: Judge, member: &str, sink: &mut Sink) {
    let mut push = |rule, msg: String| {
        sink.findings
            .push(Finding::new(rule, msg).at(Some(member), None));
    };
    let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    if !j.python.is_empty() {
        push(
            &rules::TF001,
            format!(
                "ops that call a Python function of the loading process: {}",
                crate::formats::summarise(&list(&j.python), 5)
            ),
        );
    }
    if !j.escaping_writes.is_empty() {
        push(
            &rules::TF003,
            format!(
                "ops that write to fixed paths outside the model: {}",
                crate::formats::summarise(&list(&j.escaping_writes), 5)
            ),
        );
    }
    if !j.files.is_empty() {
        push(
            &rules::TF002,
            format!(
                "ops that read, list or write files or reach the network: {}",
                crate::formats::summarise(&list(&j.files), 5)
            ),
        );
    }
    if !j.problems.is_empty() {
        push(
            &rules::TF004,
            format!(
                "TensorFlow graph could not be fully inspected: {}",
                crate::formats::summarise(&j.problems, 3)
            ),
        );
    }
}

/// TensorFlow protobufs: a SavedModel (`saved_model.pb`) or a frozen
/// GraphDef, one registry entry each.
pub struct TensorFlow(pub Flavor);

impl Format for TensorFlow {
    fn name(&self) -> &'static str {
        match self.0 {
            Flavor::SavedModel => "tf-savedmodel",
            Flavor::GraphDef => "tf-graphdef",
        }
    }
    fn summary(&self) -> &'static str {
        match self.0 {
            Flavor::SavedModel => "TensorFlow SavedModels (saved_model.pb)",
            Flavor::GraphDef => "TensorFlow frozen GraphDefs",
        }
    }
    fn labels(&self) -> &'static [Label] {
        match self.0 {
            Flavor::SavedModel => {
                const L: &[Label] = &[model("tf-savedmodel")];
                L
            }
            Flavor::GraphDef => {
                const L: &[Label] = &[model("tf-graphdef")];
                L
            }
        }
    }
    fn rules(&self) -> Vec<&'static probity_report::Rule> {
        rules::RULES.to_vec()
    }
    fn sniff(&self, head: &Head) -> bool {
        sniff(head.bytes, head.len) == Some(self.0)
    }
    fn scan_stream(
        &self,
        r: &mut Stream<'_>,
        _len_hint: Option<u64>,
        member: &str,
        _depth: u32,
        sink: &mut Sink,
    ) -> io::Result<Detected> {
        scan(self.0, r, member, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs() {
        // the two SavedModel shapes: with and without schema version
        assert_eq!(
            sniff(&[0x08, 0x01, 0x12, 0x02, 0x12, 0x00], 6),
            Some(Flavor::SavedModel)
        );
        assert_eq!(
            sniff(&[0x12, 0x02, 0x12, 0x00], 4),
            Some(Flavor::SavedModel)
        );
        let mut g = vec![0x0a, 0x0c, 0x0a, 0x03];
        g.extend_from_slice(b"abc");
        g.extend_from_slice(&[0x12, 0x05]);
        g.extend_from_slice(b"Const");
        assert_eq!(sniff(&g, g.len() as u64), Some(Flavor::GraphDef));
        assert_eq!(sniff(b"\x0a\x0chello world!", 14), None);
        assert_eq!(sniff(&[0x12, 0x7f, 0x08, 0x01], 4), None);
    }

    #[test]
    fn inputs_name_their_source() {
        assert_eq!(source("^init"), "init");
        assert_eq!(source("path:0"), "path");
        assert_eq!(source("Const:output:0"), "Const");
    }
}
