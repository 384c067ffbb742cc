//! Rules of the framework formats: skops, TorchServe, llamafile,
//! PaddlePaddle, CoreML, ExecuTorch and OpenVINO (`SKP`, `MAR`, `LMF`,
//! `PDL`, `CML`, `ETH`, `OVN`). The data-only formats (Flax msgpack,
//! XGBoost, LightGBM, CatBoost) have no rule of their own: their only
//! failure is a malformed structure (`SCN005`).

use probity_report::{Rule, Severity};

pub static SKP001: Rule = Rule {
    id: "SKP001",
    severity: Severity::Critical,
    title: "skops file names a dangerous type or function",
    what: "A node of a `.skops` file's `schema.json` names (in `__module__`/`__class__`, or a function node's module and name) a callable in the process, code, import, file, network or attribute-indirection families: `os.system`, `builtins.eval`, `subprocess.Popen`, `importlib.import_module`, `operator.attrgetter`, ... (the same table as pickles).",
    why: "skops rebuilds each node by importing what it names: a type node is instantiated, a function node is handed to the estimator (a `FunctionTransformer`'s `func`, a custom scorer) and called on the data at `transform`/`predict` time. A user who passes `trusted=` the listed untrusted types, as the skops docs show, runs it.",
    example: "A `FunctionTransformer` whose `func` node is `{\"__loader__\": \"FunctionNode\", \"content\": {\"module_path\": \"os\", \"function\": \"system\"}}`.",
    references: &["https://skops.readthedocs.io/en/stable/persistence.html"],
};

pub static SKP002: Rule = Rule {
    id: "SKP002",
    severity: Severity::Warning,
    title: "skops file names a type outside those skops trusts",
    what: "A node names a type or function that is neither a scikit-learn, NumPy or SciPy object nor a builtin container or scalar: `skops.io.load` refuses it unless the caller lists it in `trusted=`.",
    why: "Users are told to inspect `get_untrusted_types()` and then usually pass the whole list to `trusted=`; an unknown type is the point where the file asks for code Probity cannot vouch for.",
    example: "`{\"__module__\": \"mypkg.features\", \"__class__\": \"Tokenizer\", \"__loader__\": \"ObjectNode\"}`.",
    references: &["https://skops.readthedocs.io/en/stable/persistence.html"],
};

pub static MAR001: Rule = Rule {
    id: "MAR001",
    severity: Severity::Warning,
    title: "TorchServe archive ships Python that runs when it is served",
    what: "A TorchServe model archive (`.mar`, a zip or tar with `MAR-INF/MANIFEST.json`) names a custom handler, model file or extra Python module inside the archive, or a requirements file that TorchServe installs (`install_py_dep_per_model`). Each Python file is also judged by the Python rules (`CFG006`).",
    why: "TorchServe imports the handler and model file with the server's privileges as soon as the model is registered: the archive is code, not weights. A reviewer should read it, and the dependencies it installs.",
    example: "`MANIFEST.json` with `\"handler\": \"handler.py\"` and a `handler.py` in the archive.",
    references: &["https://pytorch.org/serve/custom_service.html"],
};

pub static MAR002: Rule = Rule {
    id: "MAR002",
    severity: Severity::Warning,
    title: "TorchServe manifest names a file the archive does not hold",
    what: "The manifest's `serializedFile`, `handler` (when it is a file name), `modelFile` or `requirementsFile` names a path that is not in the archive, is absolute or climbs out of it.",
    why: "TorchServe then resolves it elsewhere (the model store, the Python path, the server's working directory): what will run is not what was scanned.",
    example: "`\"handler\": \"../../handlers/custom.py\"`.",
    references: &[],
};

pub static LMF001: Rule = Rule {
    id: "LMF001",
    severity: Severity::Warning,
    title: "llamafile: the model is a native executable",
    what: "The file is a llamafile: an Actually Portable Executable (a DOS/ELF/shell polyglot) with a zip appended that holds GGUF weights. The weights and their chat template were scanned as GGUF; the machine code was not analysed.",
    why: "Running a llamafile runs its machine code with the user's privileges; a scan of the embedded weights says nothing about the program. Trust it only from a publisher you trust, or extract the GGUF and serve it with a runtime you installed.",
    example: "`Meta-Llama-3-8B-Instruct.Q4_0.llamafile`, starting with `MZqFpD='`.",
    references: &["https://github.com/Mozilla-Ocho/llamafile"],
};

pub static PDL001: Rule = Rule {
    id: "PDL001",
    severity: Severity::Critical,
    title: "PaddlePaddle program writes files or calls Python",
    what: "A PaddlePaddle program (`.pdmodel`, a `ProgramDesc` protobuf) contains an operator that writes files at a path stored in the program (`save`, `save_combine`, `checkpoint_notify`) or calls a Python function of the host (`py_func`).",
    why: "Inference runs every operator of the program: a `save` operator with a `file_path` attribute overwrites whatever the path names (a shell profile, an SSH key) when the model is run, and `py_func` calls into the serving process.",
    example: "An `op { type: \"save\" attrs { name: \"file_path\" s: \"/home/user/.bashrc\" } }` in block 0.",
    references: &["CWE-73"],
};

pub static PDL002: Rule = Rule {
    id: "PDL002",
    severity: Severity::Warning,
    title: "PaddlePaddle program reads files by path",
    what: "A program contains `load`/`load_combine` (or another operator with a `file_path` attribute) whose path is absolute or climbs out of the model folder.",
    why: "A model that reads files outside its own folder when run can load other weights than those shipped, or read files it should not.",
    example: "`op { type: \"load\" attrs { name: \"file_path\" s: \"/etc/shadow\" } }`.",
    references: &["CWE-22"],
};

pub static CML001: Rule = Rule {
    id: "CML001",
    severity: Severity::Warning,
    title: "CoreML model needs native code the app supplies",
    what: "A CoreML model (`.mlmodel`, or `model.mlmodel` inside an `.mlpackage`) is a `customModel` or holds a neural-network `custom` layer: the class named by `className` must be provided by the loading app.",
    why: "The model's behaviour is then defined by native code outside the file: whatever class of that name the app links runs on the inputs. The file cannot be judged alone.",
    example: "`customModel { className: \"AAPLCustomNet\" }`.",
    references: &["https://apple.github.io/coremltools/docs-guides/source/custom-operators.html"],
};

pub static CML002: Rule = Rule {
    id: "CML002",
    severity: Severity::Warning,
    title: "CoreML linked model outside the package",
    what: "A `linkedModel` names a file to load by an absolute path or a path that climbs out of the model's folder (`linkedModelFileName`, `linkedModelSearchPath`).",
    why: "CoreML then loads a model that was not shipped with (and not scanned with) this one.",
    example: "`linkedModel { linkedModelFile { linkedModelFileName { defaultValue: \"../../common/encoder.mlmodelc\" } } }`.",
    references: &["CWE-22"],
};

pub static ETH001: Rule = Rule {
    id: "ETH001",
    severity: Severity::Warning,
    title: "ExecuTorch program needs custom kernels",
    what: "An ExecuTorch program (`.pte`) calls operators outside the namespaces ExecuTorch's kernel libraries implement (`aten`, `quantized_decomposed`, `dim_order_ops`, `executorch_prim`, `llama`, `torchao`, ...): the runtime must link a kernel of that name.",
    why: "A custom kernel is native code outside the file; the program's behaviour cannot be judged from it alone.",
    example: "An operator `my_ops::exfiltrate.out`.",
    references: &["https://pytorch.org/executorch/stable/kernel-library-custom-aten-kernel.html"],
};

pub static OVN001: Rule = Rule {
    id: "OVN001",
    severity: Severity::Warning,
    title: "OpenVINO IR uses operations from an extension",
    what: "An OpenVINO IR (`.xml` with its `.bin`) has layers whose `version` is not one of OpenVINO's operation sets (`opsetN`, `internal`, `ie_internal_*`): they must come from an extension library the application loads (`core.add_extension`).",
    why: "An extension is native code; a model that needs one cannot be judged from its files, and a user told to load a library to run a model runs that library.",
    example: "`<layer id=\"3\" name=\"x\" type=\"MyOp\" version=\"custom_opset\">`.",
    references: &["https://docs.openvino.ai/2024/documentation/openvino-extensibility.html"],
};

pub static ZIP_RULES: &[&Rule] = &[&SKP001, &SKP002, &MAR001, &MAR002, &LMF001];
