//! PaddlePaddle programs (`.pdmodel`, `__model__`): a `ProgramDesc`
//! protobuf (paddle/fluid/framework/framework.proto) whose blocks hold the
//! operators inference runs. The weights (`.pdiparams`) are raw tensors and
//! `.pdparams` checkpoints are pickles, both read by their own analyzers.
//! An operator that writes a file at a path stored in the program, or calls
//! back into Python, is critical (PDL001); one that reads a file by an
//! absolute or climbing path is a warning (PDL002).

use std::io::{self, Read};

use prost::Message;

use super::rules;
use crate::formats::protobuf::{self, Event, Field, Schema, Stop};
use crate::{limits, Detected, Sink};

// ProgramDesc { repeated BlockDesc blocks = 1; Version version = 4; ... }
// BlockDesc { int32 idx = 1; int32 parent_idx = 2; repeated VarDesc vars = 3;
//             repeated OpDesc ops = 4; ... }
static BLOCK: Schema = Schema {
    fields: &[(4, Field::Keep)],
};
static PROGRAM: Schema = Schema {
    fields: &[(1, Field::Descend(&BLOCK))],
};

#[derive(Clone, PartialEq, Message)]
struct OpDesc {
    #[prost(string, tag = "3")]
    r#type: String,
    #[prost(message, repeated, tag = "4")]
    attrs: Vec<Attr>,
}

#[derive(Clone, PartialEq, Message)]
struct Attr {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, optional, tag = "5")]
    s: Option<String>,
    #[prost(string, repeated, tag = "8")]
    strings: Vec<String>,
}

/// Operators that write files at a path held in the program, or call a
/// Python function of the serving process.
const ACTING: &[&str] = &["save", "save_combine", "checkpoint_notify", "py_func"];

/// Whether `head` starts like a `ProgramDesc`: a block whose first fields are
/// its index and its parent's index (a TensorFlow `GraphDef` starts with a
/// node whose first field is a name string).
pub fn sniff(head: &[u8]) -> bool {
    let mut i = 0usize;
    let varint = |i: &mut usize| protobuf::head_varint(head, i);
    if head.first() != Some(&0x0a) {
        return false;
    }
    i += 1;
    let Some(len) = varint(&mut i) else {
        return false;
    };
    if len < 4 || head.get(i) != Some(&0x08) {
        return false;
    }
    i += 1;
    if varint(&mut i).is_none() || head.get(i) != Some(&0x10) {
        return false;
    }
    i += 1;
    if varint(&mut i).is_none() {
        return false;
    }
    matches!(head.get(i), Some(0x1a | 0x22 | 0x28) | None)
}

fn escapes(p: &str) -> bool {
    p.starts_with('/')
        || p.starts_with('\\')
        || p.starts_with('~')
        || p.split(['/', '\\']).any(|s| s == "..")
        || (p.len() > 1 && p.as_bytes()[1] == b':')
}

pub fn scan(
    r: &mut dyn Read,
    _len_hint: Option<u64>,
    member: &str,
    sink: &mut Sink,
) -> io::Result<Detected> {
    let mut problems: Vec<String> = Vec::new();
    let mut ops = 0usize;
    let mut block = 0usize;
    let mut acting: Vec<String> = Vec::new();
    let mut reading: Vec<String> = Vec::new();
    let res = protobuf::walk(&mut &mut *r, &PROGRAM, &mut |e| {
        match e {
            Event::Leave { path } if path == [1] => block += 1,
            Event::Bytes {
                path,
                field: 4,
                data,
            } if path == [1] => {
                ops += 1;
                match OpDesc::decode(data.as_slice()) {
                    Ok(op) => {
                        let paths: Vec<String> = op
                            .attrs
                            .iter()
                            .filter(|a| a.name.contains("path") || a.name == "file")
                            .flat_map(|a| a.s.iter().chain(a.strings.iter()).cloned())
                            .collect();
                        let place = format!("block {block}, operator {ops} `{}`", op.r#type);
                        if ACTING.contains(&op.r#type.as_str()) {
                            acting.push(if paths.is_empty() {
                                place
                            } else {
                                format!("{place} (path {})", paths.join(", "))
                            });
                        } else if let Some(p) = paths.iter().find(|p| escapes(p)) {
                            reading.push(format!("{place} (path {p})"));
                        }
                    }
                    Err(e) => problems.push(format!("operator {ops} does not decode: {e}")),
                }
            }
            Event::TooLarge { len, .. } => problems.push(format!(
                "an operator of {len} bytes is larger than the {} MiB inspection limit",
                limits::MAX_PROTO_KEPT >> 20
            )),
            _ => {}
        }
        ops <= limits::MAX_PROTO_NODES
    });
    match res {
        Ok(_) => {}
        Err(Stop::Io(e)) => return Err(e),
        Err(Stop::Malformed { offset, why }) => problems.push(format!("at byte {offset}: {why}")),
    }
    if ops > limits::MAX_PROTO_NODES {
        problems.push(format!(
            "more than {} operators; the rest were not inspected",
            limits::MAX_PROTO_NODES
        ));
    }
    super::flag(
        sink,
        &rules::PDL001,
        member,
        "operators that write files or call Python run with the program",
        &acting,
    );
    super::flag(
        sink,
        &rules::PDL002,
        member,
        "operators read files outside the model folder",
        &reading,
    );
    super::incomplete(sink, member, "PaddlePaddle program", &problems);
    Ok(Detected::named("paddle-program"))
}

stream_format!(
    Paddle,
    "paddle-program",
    "PaddlePaddle programs (.pdmodel, __model__): every operator of every block, for file writes, Python calls and file paths",
    [&rules::PDL001, &rules::PDL002, &crate::rules::SCN005],
    sniff,
    scan
);
