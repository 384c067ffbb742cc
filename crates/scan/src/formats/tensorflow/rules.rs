//! Rules of TensorFlow and TensorFlow Lite (`TF`).

use probity_report::{Rule, Severity};

pub static TF001: Rule = Rule {
    id: "TF001",
    severity: Severity::Critical,
    title: "TensorFlow graph calls a Python function",
    what: "A node of a SavedModel, a frozen graph, a function of its library, or a TensorFlow Lite `Flex` operator uses `PyFunc`, `PyFuncStateless` or `EagerPyFunc`: ops that call a Python function registered in the loading process under the node's `token`.",
    why: "These ops are how `tf.py_function` and `tf.numpy_function` embed Python in a graph; the function itself is not in the file, so what runs depends on the process that loads the model, and such a model cannot be reviewed from the file alone.",
    example: "`node { name: \"bad\" op: \"PyFunc\" attr { key: \"token\" value { s: \"pyfunc_0\" } } }` in `saved_model.pb`.",
    references: &["CWE-94", "CWE-829"],
};

pub static TF002: Rule = Rule {
    id: "TF002",
    severity: Severity::Warning,
    title: "TensorFlow graph reads, lists or writes files or reaches the network",
    what: "A node uses an op that reads, maps, lists or writes files (`ReadFile`, `WriteFile`, `MatchingFiles`, `ImmutableConst`, file readers and file datasets, summary writers, `PrintV2` to a `file://` stream, debug ops with URLs), an RPC op, or a checkpoint op (`SaveV2`, `RestoreV2`, ...) whose constant path leaves the model. Constant paths fed to the op are shown.",
    why: "Inference graphs compute on their inputs; a graph that opens files when it runs can read secrets into its outputs or plant files. Data-loading graphs do this legitimately, so a person should look.",
    example: "`ReadFile` fed by a `Const` holding `/etc/passwd`.",
    references: &["CWE-73", "CWE-552"],
};

pub static TF003: Rule = Rule {
    id: "TF003",
    severity: Severity::Critical,
    title: "TensorFlow graph writes to a fixed path outside the model",
    what: "An op that writes files (`WriteFile`, `Save`/`SaveV2`, `MergeV2Checkpoints`, dataset and summary writers) is fed a constant path that is absolute, starts at a home directory or climbs out with `..`.",
    why: "Running the graph writes attacker-chosen bytes to a chosen place: a shell profile, an SSH `authorized_keys`, a Python path entry — code execution at the next login or import.",
    example: "`WriteFile` fed by `Const` `/home/user/.bashrc`.",
    references: &["CWE-22", "CWE-73"],
};

pub static TF004: Rule = Rule {
    id: "TF004",
    severity: Severity::Warning,
    title: "TensorFlow or TFLite model is malformed or not fully inspected",
    what: "The SavedModel or GraphDef protobuf cannot be read to its end, a node or function library does not decode or is larger than Probity's inspection bound, a TensorFlow Lite flatbuffer fails verification, or operators name operator codes the model lacks. What was read before is still judged.",
    why: "A model a scanner cannot finish is not clean: TensorFlow's parser may read what the scanner could not.",
    example: "A `saved_model.pb` truncated inside its graph.",
    references: &["CWE-20"],
};

pub static TF005: Rule = Rule {
    id: "TF005",
    severity: Severity::Warning,
    title: "TensorFlow Lite model needs custom operators",
    what: "A TensorFlow Lite model uses operator codes of type CUSTOM other than the ones bundled with the runtime (`TFLite_Detection_PostProcess`, `AudioSpectrogram`, `Mfcc`) and the Select-TF `Flex` operators.",
    why: "The application must register native kernels under these names; those kernels, not the model, decide what runs, so they are a dependency to review.",
    example: "An operator code with `builtin_code: CUSTOM` and `custom_code: \"MyPythonOp\"`.",
    references: &["CWE-829"],
};

pub static RULES: &[&Rule] = &[&TF001, &TF002, &TF003, &TF004, &TF005];
