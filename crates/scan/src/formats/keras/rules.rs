//! Rules of Keras configs and HDF5 files (`KRS`).

use probity_report::{Rule, Severity};

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

pub static RULES: &[&Rule] = &[&KRS001, &KRS002, &KRS003, &KRS004];
