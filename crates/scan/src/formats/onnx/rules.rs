//! Rules of ONNX (`ONX`).

use probity_report::{Rule, Severity};

pub static ONX001: Rule = Rule {
    id: "ONX001",
    severity: Severity::Critical,
    title: "ONNX external data points outside the model folder",
    what: "An ONNX tensor stored as external data names a `location` that is absolute, climbs out with `..`, starts at a home directory or drive letter, or is a URL.",
    why: "ONNX Runtime and `onnx.load` open the named file and read it as tensor bytes: a model can make the loading process read any file it can reach (keys, credentials) into its weights, where outputs or a re-saved copy disclose it.",
    example: "An initializer with `data_location: EXTERNAL` and `external_data { key: \"location\" value: \"../../../home/user/.aws/credentials\" }`.",
    references: &["CVE-2022-25882", "CVE-2024-27318", "CWE-22"],
};

pub static ONX002: Rule = Rule {
    id: "ONX002",
    severity: Severity::Critical,
    title: "ONNX graph calls a Python function",
    what: "A node (in the main graph, a subgraph, a training graph or a model-local function) uses an operator whose job is to run a Python function of the host process: onnxruntime-extensions' `PyOp`, the PyTorch exporter's `PythonOp` fallback, or TensorFlow's `PyFunc` family carried over by tf2onnx.",
    why: "Such a model runs only where Python code registered under the node's name is present; whatever the process has registered under that name runs with the model's inputs. A shipped model has no reason to depend on it, and the name decides what runs.",
    example: "`node { op_type: \"PyOp\" domain: \"ai.onnx.contrib\" attribute { name: \"module\" s: \"os\" } }` inside an `If` node's `then_branch`.",
    references: &["CWE-94", "CWE-829"],
};

pub static ONX003: Rule = Rule {
    id: "ONX003",
    severity: Severity::Warning,
    title: "ONNX operator from a non-standard domain",
    what: "A node uses an operator from a domain other than ONNX's own (`ai.onnx`, `ai.onnx.ml`, training) and ONNX Runtime's (`com.microsoft` and its sub-domains), and the model defines no function of that name.",
    why: "Running the model requires loading a custom operator library (native code) that provides the operator; that library, not the model, decides what the node does, so it needs a review.",
    example: "`node { op_type: \"Mystery\" domain: \"com.example.custom\" }`.",
    references: &["CWE-829"],
};

pub static ONX004: Rule = Rule {
    id: "ONX004",
    severity: Severity::Warning,
    title: "ONNX model is malformed or not fully inspected",
    what: "The protobuf cannot be read to its end (bad field keys, lengths past the end, truncation), a node or function does not decode, a node or function is larger than Probity's inspection bound, or the node count passes its bound. What was read before is still judged.",
    why: "A model a scanner cannot finish is not clean: ONNX Runtime's parser may read what the scanner could not.",
    example: "A `model.onnx` whose graph field announces 2 GB in a 10 KB file.",
    references: &["CWE-20"],
};

pub static RULES: &[&Rule] = &[&ONX001, &ONX002, &ONX003, &ONX004];
