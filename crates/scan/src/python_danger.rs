//! The one table of dangerous Python callables, in families that each state
//! why they are dangerous. Every analyzer that meets Python names reads it:
//! the pickle machine (imports by serialised data), TorchScript code, Keras
//! configs, Jinja chat templates and Python source shipped with a model.
//! Each analyzer applies its own reading of the same knowledge:
//!
//! - serialised data (pickles, Keras objects) has no business importing
//!   anything listed here, so [`judge_import`] matches every entry, at a
//!   dotted boundary;
//! - code (TorchScript, Python source) names modules and calls functions, so
//!   [`module_named`] and [`source_call`] match whole modules and the
//!   callables that act when called with ordinary arguments;
//! - templates reach attributes by name, so [`action_named`] matches the
//!   last name of each callable.
//!
//! Adding a dangerous callable is one line in its family's `calls` (what a
//! call does) or `imports` (what importing it from serialised data means).

/// Why a family of callables is dangerous.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub why: &'static str,
    /// Whether the family acts on the machine by itself. Decoders do not:
    /// they reveal hidden payloads, which something else must then run.
    pub acts: bool,
    /// Whether a call of the family in shipped Python source is reported on
    /// its own. File access is judged by its arguments instead, and
    /// reflection and imports are everyday Python.
    pub in_source: bool,
    /// Dotted prefixes (a module, a class, a callable) whose import by
    /// serialised data belongs to the family. A plain module name covers
    /// everything in it.
    pub imports: &'static [&'static str],
    /// Callables that act when called: exact dotted names, or `prefix*`.
    pub calls: &'static [&'static str],
}

/// The family whose string/bytes arguments are themselves deserialised.
pub const DESERIALISER_FAMILY: &str = "nested deserialisation";

pub static FAMILIES: &[Family] = &[
    Family {
        name: "process execution",
        why: "starts programs or shell commands, replaces or ends the interpreter process",
        acts: true,
        in_source: true,
        imports: &[
            "os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "commands", "popen2",
            "multiprocessing", "concurrent", "platform", "webbrowser", "antigravity",
            "builtins.exit", "mailcap", "builtins.quit", "_winapi", "msvcrt", "signal",
            "_aix_support", "_osx_support", "asyncio",
        ],
        calls: &[
            "os.system", "os.popen", "os.exec*", "os.spawn*", "os.posix_spawn*", "os.fork",
            "os.forkpty", "os.kill", "os.killpg", "posix.system", "nt.system",
            "subprocess.Popen", "subprocess.call", "subprocess.check_call",
            "subprocess.check_output", "subprocess.run", "subprocess.getoutput",
            "subprocess.getstatusoutput", "pty.spawn", "commands.*", "popen2.*",
            "asyncio.create_subprocess_*", "webbrowser.open", "webbrowser.open_new",
            "webbrowser.open_new_tab", "multiprocessing.Process", "platform.popen",
        ],
    },
    Family {
        name: "code evaluation",
        why: "compiles or evaluates source text, code objects or generated code",
        acts: true,
        in_source: true,
        imports: &[
            "builtins.eval", "builtins.exec", "builtins.execfile", "builtins.compile",
            "builtins.__build_class__", "code", "codeop", "types", "marshal", "dill", "cloudpickle",
            "lib2to3", "numpy.f2py", "numpy.testing", "numpy.distutils", "torch._inductor",
            "torch._dynamo", "torch.fx", "torch.jit", "torch._C._jit", "torch.package",
            "torch.utils.cpp_extension", "torch.testing", "jinja2", "mako", "sympy.parsing",
            "pandas.eval", "torch.compile", "transformers.dynamic_module_utils",
            "tensorflow.python.ops.script_ops", "tensorflow.py_function",
            "tensorflow.numpy_function", "numexpr",
            // call Python from a graph: a model config must not reach them
            "tensorflow.py_func", "tensorflow.compat.v1.py_func",
            "tensorflow.python.ops.script_ops.eager_py_func",
        ],
        calls: &[
            "builtins.eval", "builtins.exec", "builtins.execfile", "builtins.compile",
            "builtins.__import__", "marshal.loads", "marshal.load", "types.CodeType",
            "types.FunctionType", "ctypes.CDLL", "ctypes.cdll.LoadLibrary", "ctypes.PyDLL",
            "ctypes.WinDLL", "runpy.run_path", "runpy.run_module", "code.interact",
            "code.InteractiveInterpreter", "code.InteractiveConsole",
            // switches Keras' safe_mode off for the rest of a load, so a
            // later Lambda runs (CVE-2025-9906)
            "keras.config.enable_unsafe_deserialization",
        ],
    },
    Family {
        name: "import machinery",
        why: "imports modules or resolves dotted names at load time, reaching any callable in the interpreter",
        acts: true,
        in_source: false,
        imports: &[
            "builtins.__import__", "importlib", "imp", "zipimport", "pkgutil", "pydoc", "sys",
            "site", "runpy", "torch.hub", "torch._ops", "torch.ops", "torch.classes",
            "torch.library", "torch.utils._config_module",
        ],
        calls: &[
            "importlib.import_module", "importlib.__import__", "imp.load_module",
            "imp.load_source", "pkgutil.resolve_name", "pydoc.locate",
        ],
    },
    Family {
        name: "attribute indirection",
        why: "fetches attributes, methods or namespaces by name when called, so any callable can be reached from an allowed object",
        acts: true,
        in_source: false,
        imports: &[
            "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.globals",
            "builtins.locals", "builtins.vars", "builtins.apply", "operator.attrgetter",
            "operator.methodcaller", "operator.call", "operator.setitem", "operator.delitem",
            "inspect", "gc", "ctypes", "numpy.ctypeslib", "_ctypes", "cffi",
            "copyreg.add_extension", "copyreg.dispatch_table", "copyreg._extension_registry",
        ],
        calls: &[
            "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.globals",
            "builtins.locals", "builtins.vars",
        ],
    },
    Family {
        name: "file system access",
        why: "reads, writes, moves or deletes files, or opens file handles and log files",
        acts: true,
        in_source: false,
        imports: &[
            "builtins.open", "io", "fileinput", "pathlib.Path", "shutil", "tempfile", "glob",
            "linecache", "filecmp", "zipfile", "tarfile", "gzip", "bz2", "lzma", "shelve",
            "dbm", "sqlite3", "logging.FileHandler", "logging.handlers", "logging.config",
            "distutils.file_util", "distutils.dir_util", "codecs.open", "numpy.fromfile",
            "numpy.memmap", "numpy.save", "numpy.savez", "numpy.savez_compressed",
            "numpy.savetxt", "numpy.loadtxt", "numpy.genfromtxt", "pandas.io",
            "pandas.read_csv", "pandas.read_json", "pandas.read_html", "pandas.read_sql",
            "pandas.read_parquet", "pandas.read_excel", "pandas.read_table", "pandas.read_hdf",
            "pandas.read_feather", "pandas.read_xml", "scipy.io", "tensorflow.io", "mmap",
            "tensorflow.io.read_file", "tensorflow.io.write_file",
        ],
        calls: &[
            "builtins.open", "io.open", "codecs.open", "io.IOBase.read", "io.IOBase.write",
            "os.remove", "os.unlink", "os.rmdir", "os.chmod", "os.listdir", "os.read",
            "os.write", "shutil.rmtree", "shutil.move", "shutil.copy", "pathlib.Path.write_text",
            "pathlib.Path.write_bytes",
        ],
    },
    Family {
        name: "network access",
        why: "opens sockets or sends requests, so a model load can exfiltrate data or fetch a payload",
        acts: true,
        in_source: true,
        imports: &[
            "socket", "ssl", "select", "selectors", "socketserver", "http", "urllib", "urllib3",
            "requests", "aiohttp", "httpx", "ftplib", "smtplib", "smtpd", "telnetlib",
            "imaplib", "poplib", "nntplib", "xmlrpc", "websocket", "websockets", "paramiko",
            "torch.distributed", "torch.utils.model_zoo", "huggingface_hub", "boto3", "botocore",
            // downloads a URL to a chosen path and can extract archives (the
            // safe_mode bypass of CVE-2025-8747)
            "keras.utils.get_file", "tensorflow.keras.utils.get_file",
        ],
        calls: &[
            "socket.socket", "socket.create_connection", "socket.socket.connect",
            "ssl.get_server_certificate", "urllib.request.urlopen",
            "urllib.request.urlretrieve", "urllib.request.Request", "urllib.urlopen",
            "urllib2.urlopen", "requests.*", "httpx.*", "urllib3.*",
            "http.client.HTTPConnection", "http.client.HTTPSConnection", "ftplib.FTP",
            "smtplib.SMTP", "paramiko.*", "aiohttp.*",
        ],
    },
    Family {
        name: "interpreters and runners",
        why: "debuggers, profilers, REPLs, pagers, test and timing harnesses that run the code or command they are given",
        acts: true,
        in_source: false,
        imports: &[
            "pdb", "bdb", "trace", "profile", "cProfile", "timeit", "doctest", "unittest", "test",
            "idlelib", "_pyrepl", "rlcompleter", "code.InteractiveInterpreter",
            "code.InteractiveConsole", "builtins.breakpoint", "builtins.input", "builtins.help",
            "torch.utils.bottleneck", "torch.utils.collect_env", "torch.utils.benchmark",
            "torch.utils.data.datapipes", "tkinter", "turtle", "atexit", "threading", "_thread",
            "sched",
        ],
        calls: &[
            "builtins.breakpoint", "builtins.input", "pdb.set_trace", "pdb.run", "timeit.timeit",
            "cProfile.run", "profile.run",
        ],
    },
    Family {
        name: "package installation",
        why: "installs packages or builds environments, which runs arbitrary setup code",
        acts: true,
        in_source: false,
        imports: &[
            "pip", "ensurepip", "venv", "virtualenv", "distutils", "setuptools", "pkg_resources",
            "conda",
        ],
        calls: &["pip.main", "pip._internal.main", "ensurepip.bootstrap", "venv.create"],
    },
    Family {
        name: DESERIALISER_FAMILY,
        why: "starts a second, unrestricted deserialiser on data inside the file (pickle, marshal, YAML, torch.load), which defeats any check of the outer layer",
        acts: true,
        in_source: true,
        imports: &[
            "pickle", "cPickle", "_pickle", "jsonpickle", "yaml", "torch.load",
            "torch.serialization.load", "torch.serialization._load", "numpy.load",
            "joblib.load", "joblib.numpy_pickle.load", "pandas.read_pickle",
            "pandas.io.pickle.read_pickle", "keras.models.load_model",
            // load another file, which Keras' safe_mode does not cover
            "keras.saving.load_model", "keras.Model.load_weights",
        ],
        calls: &[
            "pickle.loads", "pickle.load", "_pickle.loads", "_pickle.load", "cPickle.loads",
            "dill.loads", "dill.load", "cloudpickle.loads", "cloudpickle.load",
            "jsonpickle.decode",
        ],
    },
    Family {
        name: "environment access",
        why: "reads or changes environment variables, where credentials and tokens live",
        acts: true,
        in_source: false,
        imports: &["os.environ", "os.getenv", "os.putenv"],
        calls: &["os.environ", "os.getenv", "os.putenv", "os.unsetenv"],
    },
    Family {
        name: "payload decoding",
        why: "turns text into bytes (base64, hex, compressed data): harmless alone, but a payload hidden this way is decoded before it is run or loaded",
        acts: false,
        in_source: false,
        imports: &["base64", "binascii"],
        calls: &[
            "base64.b64decode", "base64.b32decode", "base64.b16decode", "base64.a85decode",
            "base64.decodebytes", "codecs.decode", "zlib.decompress", "bz2.decompress",
            "lzma.decompress", "gzip.decompress", "bytes.fromhex", "binascii.unhexlify",
            "binascii.a2b_base64", "marshal.loads",
        ],
    },
];

/// Attributes and globals that lead from an ordinary object to the
/// interpreter's internals (class hierarchy, function globals, builtins).
/// Serialised code and templates have no reason to name them.
pub static INTROSPECTION: &[&str] = &[
    "__builtins__",
    "__globals__",
    "__subclasses__",
    "__code__",
    "__import__",
];

/// Module names that are also ordinary variable names in code (`code`,
/// `test`, `select`, `signal`, …): in source, a dotted use of one of these
/// is usually a local variable, so only an import statement ties it to the
/// module.
pub static IDENTIFIER_LIKE: &[&str] = &[
    "code",
    "test",
    "trace",
    "profile",
    "select",
    "signal",
    "types",
    "glob",
    "platform",
    "sched",
    "gc",
    "site",
    "inspect",
    "timeit",
    "concurrent",
    "imp",
    "dbm",
    "shelve",
    "turtle",
    "selectors",
    "commands",
    "http",
    "io",
];

/// Framework namespaces whose objects model configs reference routinely
/// (Keras configs name `keras.layers.Dense`); inside them only the listed
/// functions are dangerous.
pub static FRAMEWORKS: &[&str] = &["keras", "tf_keras", "tensorflow", "numpy", "jax"];

/// Whether `full` is `prefix` or lies under it at a dotted boundary
/// (`prefix*` matches any continuation).
fn under(full: &str, prefix: &str) -> bool {
    if let Some(p) = prefix.strip_suffix('*') {
        return full.starts_with(p);
    }
    full == prefix
        || (full.len() > prefix.len()
            && full.starts_with(prefix)
            && full.as_bytes()[prefix.len()] == b'.')
}

/// What matched an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub family: &'static Family,
    /// The table entry that matched.
    pub entry: &'static str,
}

impl PartialEq for Family {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Family {}

/// The family of a dotted name imported by serialised data (a pickle
/// global, a Keras object): every `imports` entry of the acting families
/// first, in table order, then their `calls`.
pub fn judge_import(full: &str) -> Option<Hit> {
    let acting = || FAMILIES.iter().filter(|f| f.acts);
    for family in acting() {
        for entry in family.imports {
            if under(full, entry) {
                return Some(Hit { family, entry });
            }
        }
    }
    for family in acting() {
        for entry in family.calls {
            if under(full, entry) {
                return Some(Hit { family, entry });
            }
        }
    }
    None
}

/// Whether a module path is denied as a whole, or contains a denied module:
/// such a module cannot be allowed by a policy's module entries.
pub fn module_holds_denied(module: &str) -> bool {
    FAMILIES.iter().filter(|f| f.acts).any(|fam| {
        fam.imports.iter().chain(fam.calls).any(|d| {
            let d = d.trim_end_matches('*');
            d == module
                || d.starts_with(&format!("{module}."))
                || module.starts_with(&format!("{d}."))
        })
    })
}

/// The family of a top-level module named in code (`os`, `subprocess`,
/// `base64`): modules listed whole in a family's `imports`, and `builtins`.
pub fn module_named(name: &str) -> Option<&'static Family> {
    if name == "builtins" || name == "__builtins__" {
        return FAMILIES.iter().find(|f| f.name == "code evaluation");
    }
    FAMILIES.iter().find(|f| f.imports.contains(&name))
}

/// The family of a builtin function named in code (`eval`, `open`), from
/// the `builtins.*` entries.
pub fn builtin_named(name: &str) -> Option<&'static Family> {
    let full = format!("builtins.{name}");
    FAMILIES
        .iter()
        .filter(|f| f.acts)
        .find(|f| f.imports.iter().chain(f.calls).any(|e| *e == full))
}

/// The family of an attribute reached by name (a template's `.popen`): the
/// last name of a callable in any family, `prefix*` entries matching by
/// prefix (`.execve` for `os.exec*`).
pub fn action_named(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| {
        f.calls.iter().any(|c| {
            let last = c.rsplit('.').next().unwrap_or(c);
            match last.strip_suffix('*') {
                Some("") => false,
                Some(p) => name.starts_with(p),
                None => last == name,
            }
        })
    })
}

/// The family of a function called in shipped Python source, by its name
/// resolved through the file's imports (a bare `eval` is the builtin).
pub fn source_call(q: &str) -> Option<&'static Family> {
    let builtin = (!q.contains('.')).then(|| format!("builtins.{q}"));
    FAMILIES.iter().filter(|f| f.in_source).find(|f| {
        f.calls
            .iter()
            .any(|c| matches_call(q, c) || builtin.as_deref().is_some_and(|b| matches_call(b, c)))
    })
}

fn matches_call(q: &str, entry: &str) -> bool {
    match entry.strip_suffix('*') {
        Some(p) => q.starts_with(p),
        None => q == entry,
    }
}

/// Whether a call decodes a payload (base64, hex, compressed data).
pub fn is_decoder(q: &str) -> bool {
    FAMILIES
        .iter()
        .filter(|f| !f.acts)
        .any(|f| f.calls.iter().any(|c| matches_call(q, c)))
}

/// The functions inside framework namespaces that a model config must
/// never reach, by name (Keras resolves `keras.src.utils.file_utils.get_file`
/// and `keras.utils.get_file` alike): the last names of acting entries
/// under [`FRAMEWORKS`].
pub fn framework_function(name: &str) -> Option<&'static Family> {
    FAMILIES.iter().filter(|f| f.acts).find(|f| {
        f.imports.iter().chain(f.calls).any(|e| {
            let top = e.split('.').next().unwrap_or("");
            FRAMEWORKS.contains(&top) && e.contains('.') && e.rsplit('.').next() == Some(name)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_match_at_dotted_boundaries() {
        assert_eq!(
            judge_import("os.system").unwrap().family.name,
            "process execution"
        );
        assert_eq!(judge_import("os.system").unwrap().entry, "os");
        assert!(judge_import("osmosis.run").is_none());
        assert_eq!(
            judge_import("builtins.eval").unwrap().family.name,
            "code evaluation"
        );
        assert_eq!(
            judge_import("pickle.loads").unwrap().family.name,
            DESERIALISER_FAMILY
        );
        // decoders alone do not act
        assert!(judge_import("base64.b64decode").is_none());
    }

    #[test]
    fn code_sees_modules_builtins_and_calls() {
        assert!(module_named("subprocess").is_some());
        assert!(module_named("webbrowser").is_some());
        assert!(module_named("torch").is_none());
        assert!(builtin_named("eval").is_some());
        assert!(builtin_named("print").is_none());
        assert_eq!(source_call("os.system").unwrap().name, "process execution");
        assert_eq!(source_call("eval").unwrap().name, "code evaluation");
        assert_eq!(source_call("requests.get").unwrap().name, "network access");
        assert!(source_call("os.path.join").is_none());
        assert!(
            source_call("open").is_none(),
            "files are judged by their arguments"
        );
        assert!(source_call("importlib.import_module").is_none());
        assert!(is_decoder("base64.b64decode"));
    }

    #[test]
    fn templates_see_last_names() {
        for n in [
            "system",
            "popen",
            "execve",
            "spawnlp",
            "check_output",
            "urlopen",
            "b64decode",
            "open",
            "read",
        ] {
            assert!(action_named(n).is_some(), "{n}");
        }
        assert!(action_named("items").is_none());
        assert!(action_named("role").is_none());
    }

    #[test]
    fn framework_functions_by_name() {
        for n in [
            "get_file",
            "enable_unsafe_deserialization",
            "load_model",
            "load_weights",
            "py_function",
            "read_file",
            "write_file",
            "fromfile",
            "load",
        ] {
            assert!(framework_function(n).is_some(), "{n}");
        }
        assert!(framework_function("Dense").is_none());
    }

    #[test]
    fn every_entry_is_well_formed() {
        for f in FAMILIES {
            for e in f.imports.iter().chain(f.calls) {
                let core = e.strip_suffix('*').unwrap_or(e);
                assert!(
                    !core.is_empty() && !core.contains('*') && !core.contains(' '),
                    "{e}"
                );
            }
        }
    }
}
