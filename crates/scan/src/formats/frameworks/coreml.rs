//! CoreML models (`.mlmodel`, and `Data/com.apple.CoreML/model.mlmodel`
//! inside an `.mlpackage` folder): a `Model` protobuf (coremltools'
//! mlmodel/format/Model.proto). Weights of neural networks sit inside the
//! layers and are skipped by the streaming walk. What the file cannot carry
//! is judged: a `customModel` or a `custom` layer needs a native class the
//! app supplies (CML001); a `linkedModel` that points outside the package
//! loads a model that was not shipped with it (CML002). Pipelines are
//! followed two levels deep.

use std::io::{self, Read};

use prost::Message;

use super::rules;
use crate::formats::protobuf::{self, Event, Field, Schema, Stop};
use crate::{limits, Detected, Sink};

// Model { int32 specificationVersion = 1; ModelDescription description = 2;
//   bool isUpdatable = 10; oneof Type { PipelineClassifier = 200;
//   PipelineRegressor = 201; Pipeline = 202; NeuralNetworkRegressor = 303;
//   NeuralNetworkClassifier = 403; NeuralNetwork = 500; MLProgram = 502;
//   CustomModel customModel = 555; LinkedModel linkedModel = 556; ... } }
// Pipeline { repeated Model models = 1; }  PipelineClassifier/Regressor
// { Pipeline pipeline = 1; }  NeuralNetwork* { repeated NeuralNetworkLayer
// layers = 1; }  NeuralNetworkLayer { string name = 1; ...;
// CustomLayerParams custom = 500; }
const CUSTOM_MODEL: u32 = 555;
const LINKED_MODEL: u32 = 556;
const CUSTOM_LAYER: u32 = 500;

static LAYER: Schema = Schema {
    fields: &[(1, Field::Keep), (CUSTOM_LAYER, Field::Keep)],
};
static NETWORK: Schema = Schema {
    fields: &[(1, Field::Descend(&LAYER))],
};

macro_rules! model_schema {
    ($model:ident, $pipeline:ident, $wrapped:ident, $inner:expr) => {
        static $pipeline: Schema = Schema {
            fields: &[(1, Field::Descend($inner))],
        };
        static $wrapped: Schema = Schema {
            fields: &[(1, Field::Descend(&$pipeline))],
        };
        static $model: Schema = Schema {
            fields: &[
                (200, Field::Descend(&$wrapped)),
                (201, Field::Descend(&$wrapped)),
                (202, Field::Descend(&$pipeline)),
                (303, Field::Descend(&NETWORK)),
                (403, Field::Descend(&NETWORK)),
                (500, Field::Descend(&NETWORK)),
                (CUSTOM_MODEL, Field::Keep),
                (LINKED_MODEL, Field::Keep),
            ],
        };
    };
}

static LEAF: Schema = Schema {
    fields: &[
        (303, Field::Descend(&NETWORK)),
        (403, Field::Descend(&NETWORK)),
        (500, Field::Descend(&NETWORK)),
        (CUSTOM_MODEL, Field::Keep),
        (LINKED_MODEL, Field::Keep),
    ],
};
model_schema!(MODEL2, PIPE2, WRAP2, &LEAF);
model_schema!(MODEL1, PIPE1, WRAP1, &MODEL2);
model_schema!(MODEL, PIPE0, WRAP0, &MODEL1);

#[derive(Clone, PartialEq, Message)]
struct Custom {
    #[prost(string, tag = "10")]
    class_name: String,
}

#[derive(Clone, PartialEq, Message)]
struct StringParameter {
    #[prost(string, tag = "1")]
    default_value: String,
}

#[derive(Clone, PartialEq, Message)]
struct LinkedModelFile {
    #[prost(message, optional, tag = "1")]
    file_name: Option<StringParameter>,
    #[prost(message, optional, tag = "2")]
    search_path: Option<StringParameter>,
}

#[derive(Clone, PartialEq, Message)]
struct LinkedModel {
    #[prost(message, optional, tag = "1")]
    file: Option<LinkedModelFile>,
}

/// Whether `head` starts like a CoreML `Model`: a small specification
/// version, a description, then a field only `Model` has (`isUpdatable` or
/// a model type, numbered 200 and up). ONNX also starts with a small
/// varint, but its next fields are numbered below 26.
pub fn sniff(head: &[u8]) -> bool {
    if head.len() < 4 || head[0] != 0x08 || !(1..=12).contains(&head[1]) || head[2] != 0x12 {
        return false;
    }
    let mut i = 3usize;
    let varint = |i: &mut usize| protobuf::head_varint(head, i);
    let Some(len) = varint(&mut i) else {
        return false;
    };
    let Some(next) = i.checked_add(len as usize) else {
        return false;
    };
    if next >= head.len() {
        return false;
    }
    i = next;
    let Some(key) = varint(&mut i) else {
        return false;
    };
    let field = key >> 3;
    (field == 10 && key & 7 == 0) || ((200..4000).contains(&field) && key & 7 == 2)
}

fn escapes(p: &str) -> bool {
    p.starts_with('/')
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
    let mut custom: Vec<String> = Vec::new();
    let mut linked: Vec<String> = Vec::new();
    let mut layer_name = String::new();
    let mut nodes = 0usize;
    let res = protobuf::walk(&mut &mut *r, &MODEL, &mut |e| {
        match e {
            Event::Bytes { field, data, path } => {
                nodes += 1;
                let in_layer = path.len() >= 2 && path[path.len() - 1] == 1;
                match field {
                    1 if in_layer => layer_name = String::from_utf8_lossy(&data).into_owned(),
                    CUSTOM_LAYER if in_layer => match Custom::decode(data.as_slice()) {
                        Ok(c) => custom.push(format!(
                            "custom layer `{layer_name}` (class `{}`)",
                            c.class_name
                        )),
                        Err(e) => problems.push(format!("a custom layer does not decode: {e}")),
                    },
                    CUSTOM_MODEL => match Custom::decode(data.as_slice()) {
                        Ok(c) => custom.push(format!("custom model (class `{}`)", c.class_name)),
                        Err(e) => problems.push(format!("a custom model does not decode: {e}")),
                    },
                    LINKED_MODEL => match LinkedModel::decode(data.as_slice()) {
                        Ok(l) => {
                            let f = l.file.unwrap_or_default();
                            let name = f.file_name.map(|s| s.default_value).unwrap_or_default();
                            let search = f.search_path.map(|s| s.default_value).unwrap_or_default();
                            for p in [&name, &search] {
                                if escapes(p) {
                                    linked.push(format!("`{p}`"));
                                }
                            }
                        }
                        Err(e) => problems.push(format!("a linked model does not decode: {e}")),
                    },
                    _ => {}
                }
            }
            Event::TooLarge { len, .. } => problems.push(format!(
                "a layer field of {len} bytes is larger than the {} MiB inspection limit",
                limits::MAX_PROTO_KEPT >> 20
            )),
            _ => {}
        }
        nodes <= limits::MAX_PROTO_NODES
    });
    match res {
        Ok(_) => {}
        Err(Stop::Io(e)) => return Err(e),
        Err(Stop::Malformed { offset, why }) => problems.push(format!("at byte {offset}: {why}")),
    }
    super::flag(
        sink,
        &rules::CML001,
        member,
        "the model needs native classes the app must supply",
        &custom,
    );
    super::flag(
        sink,
        &rules::CML002,
        member,
        "linked models are loaded from outside the package",
        &linked,
    );
    super::incomplete(sink, member, "CoreML model", &problems);
    Ok(Detected::named("coreml"))
}

stream_format!(
    CoreMl,
    "coreml",
    "CoreML models (.mlmodel, model.mlmodel in .mlpackage folders): custom models and layers, linked models, pipelines",
    [&rules::CML001, &rules::CML002, &crate::rules::SCN005],
    sniff,
    scan
);
