//! The callable policy: what an import in a pickle means.
//!
//! 1. **Allowlist** — exact `module.qualname` strings that real ML pickles use
//!    (PyTorch rebuild functions and storage types, NumPy reconstructors,
//!    scikit-learn estimators, plain containers). Exact match only: a module
//!    prefix never allows anything.
//! 2. **Denylist** — the families of [`crate::python_danger`], dangerous *by
//!    what they do*, each with its reason, so that a callable not listed
//!    there but of the same kind is recognised by the same reasoning (see
//!    [`NAME_TOKENS`] and [`REEXPORTED`]). Matching is by dotted prefix at a
//!    name boundary: `os` covers `os.system` and `os.path.join`.
//! 3. **Unknown** — everything else: a warning, never clean.
//!
//! Python 2 names are mapped to their Python 3 modules first, as
//! `pickle`'s `_compat_pickle` does when loading protocol 0–2 pickles.

use std::collections::HashSet;
use std::sync::OnceLock;

pub use crate::python_danger::DESERIALISER_FAMILY;
use crate::python_danger::{judge_import, Hit};

/// Modules that, when they appear *inside* another dotted path, mean the path
/// reaches a dangerous module re-exported by an innocent-looking one (for
/// example `torch._utils.builtins.eval` or `pkg.helpers.os.system`).
pub static REEXPORTED: &[&str] = &[
    "os",
    "posix",
    "nt",
    "subprocess",
    "builtins",
    "sys",
    "importlib",
    "ctypes",
    "pty",
    "runpy",
    "marshal",
    "pickle",
    "_pickle",
    "shutil",
    "socket",
];

/// Name segments that say what an unknown callable does. An import outside
/// the allowlist whose module or qualified name contains one of these as a
/// whole `.`/`_`-separated word is treated as dangerous: it runs commands,
/// evaluates code, loads nested data or opens a pager or browser.
pub static NAME_TOKENS: &[&str] = &[
    "exec",
    "execfile",
    "execv",
    "execve",
    "eval",
    "system",
    "popen",
    "spawn",
    "subprocess",
    "shell",
    "command",
    "cmd",
    "run",
    "runcode",
    "runsource",
    "runctx",
    "runcall",
    "runstring",
    "runcommand",
    "load",
    "loads",
    "unpickle",
    "getattr",
    "setattr",
    "attrgetter",
    "methodcaller",
    "urlopen",
    "pager",
    "pipepager",
    "webbrowser",
    "dlopen",
    "loadlibrary",
    "breakpoint",
    "__import__",
    "import",
    "importer",
    "open",
    "pretrained",
];

/// Exact `module.qualname` strings that real ML pickles use.
pub static ALLOWED: &[&str] = &[
    // Python containers and value types
    "builtins.set",
    "builtins.frozenset",
    "builtins.list",
    "builtins.dict",
    "builtins.tuple",
    "builtins.slice",
    "builtins.range",
    "builtins.complex",
    "builtins.bytearray",
    "builtins.bytes",
    "builtins.str",
    "builtins.int",
    "builtins.float",
    "builtins.bool",
    "builtins.object",
    "builtins.NotImplemented",
    "builtins.Ellipsis",
    "copyreg._reconstructor",
    "copyreg.__newobj__",
    "copyreg.__newobj_ex__",
    "_codecs.encode",
    "codecs.encode",
    "collections.OrderedDict",
    "collections.defaultdict",
    "collections.deque",
    "collections.Counter",
    "datetime.datetime",
    "datetime.date",
    "datetime.time",
    "datetime.timedelta",
    "datetime.timezone",
    "decimal.Decimal",
    "fractions.Fraction",
    "uuid.UUID",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath",
    "re._compile",
    "types.SimpleNamespace",
    "io.BytesIO",
    "argparse.Namespace",
    "_io.BytesIO",
    // PyTorch tensors, storages, parameters, dtypes
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_sparse_csr_tensor",
    "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._utils._rebuild_wrapper_subclass",
    "torch._utils._rebuild_xla_tensor",
    "torch._utils._rebuild_mps_tensor",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._tensor._rebuild_from_type",
    "torch._tensor._rebuild_from_type_v2",
    "torch.nn.parameter.Parameter",
    "torch.nn.parameter.Buffer",
    "torch.nn.parameter.UninitializedParameter",
    "torch.Tensor",
    "torch.Size",
    "torch.device",
    "torch.dtype",
    "torch.layout",
    "torch.memory_format",
    "torch.storage.UntypedStorage",
    "torch.storage.TypedStorage",
    "torch.UntypedStorage",
    "torch.TypedStorage",
    "torch.storage._load_from_bytes",
    "torch.DoubleStorage",
    "torch.FloatStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.ComplexFloatStorage",
    "torch.ComplexDoubleStorage",
    "torch.QUInt8Storage",
    "torch.QInt8Storage",
    "torch.QInt32Storage",
    "torch.QUInt4x2Storage",
    "torch.QUInt2x4Storage",
    "torch.float32",
    "torch.float",
    "torch.float64",
    "torch.double",
    "torch.float16",
    "torch.half",
    "torch.bfloat16",
    "torch.int64",
    "torch.long",
    "torch.int32",
    "torch.int",
    "torch.int16",
    "torch.short",
    "torch.int8",
    "torch.uint8",
    "torch.bool",
    "torch.complex64",
    "torch.complex128",
    "torch.cfloat",
    "torch.cdouble",
    "torch.float8_e4m3fn",
    "torch.float8_e5m2",
    "torch.uint16",
    "torch.uint32",
    "torch.uint64",
    "torch.qint8",
    "torch.quint8",
    "torch.qint32",
    "torch.strided",
    "torch.sparse_coo",
    "torch.sparse_csr",
    "torch.contiguous_format",
    "torch.channels_last",
    "torch.preserve_format",
    "torch.per_tensor_affine",
    "torch.per_channel_affine",
    "torch.FloatTensor",
    "torch.DoubleTensor",
    "torch.HalfTensor",
    "torch.BFloat16Tensor",
    "torch.LongTensor",
    "torch.IntTensor",
    "torch.ShortTensor",
    "torch.CharTensor",
    "torch.ByteTensor",
    "torch.BoolTensor",
    // TorchScript's own pickler (typed containers and tensor references)
    "torch.jit._pickle.build_tensor_from_id",
    "torch.jit._pickle.build_intlist",
    "torch.jit._pickle.build_tensorlist",
    "torch.jit._pickle.build_doublelist",
    "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_complexlist",
    "torch.jit._pickle.restore_type_tag",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.container.ModuleList",
    "torch.nn.modules.container.ModuleDict",
    "torch.nn.modules.container.ParameterList",
    "torch.nn.modules.container.ParameterDict",
    "torch.nn.modules.linear.Linear",
    "torch.nn.modules.linear.Identity",
    "torch.nn.modules.linear.Bilinear",
    "torch.nn.modules.conv.Conv1d",
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.conv.Conv3d",
    "torch.nn.modules.conv.ConvTranspose1d",
    "torch.nn.modules.conv.ConvTranspose2d",
    "torch.nn.modules.batchnorm.BatchNorm1d",
    "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.batchnorm.BatchNorm3d",
    "torch.nn.modules.normalization.LayerNorm",
    "torch.nn.modules.normalization.GroupNorm",
    "torch.nn.modules.normalization.RMSNorm",
    "torch.nn.modules.sparse.Embedding",
    "torch.nn.modules.sparse.EmbeddingBag",
    "torch.nn.modules.dropout.Dropout",
    "torch.nn.modules.dropout.Dropout2d",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.activation.GELU",
    "torch.nn.modules.activation.SiLU",
    "torch.nn.modules.activation.Tanh",
    "torch.nn.modules.activation.Sigmoid",
    "torch.nn.modules.activation.Softmax",
    "torch.nn.modules.activation.LeakyReLU",
    "torch.nn.modules.activation.MultiheadAttention",
    "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.pooling.AvgPool2d",
    "torch.nn.modules.pooling.AdaptiveAvgPool2d",
    "torch.nn.modules.flatten.Flatten",
    "torch.nn.modules.rnn.LSTM",
    "torch.nn.modules.rnn.GRU",
    "torch.nn.modules.rnn.RNN",
    "torch.optim.adam.Adam",
    "torch.optim.adamw.AdamW",
    "torch.optim.sgd.SGD",
    "torch.amp.grad_scaler.GradScaler",
    "torch.cuda.amp.grad_scaler.GradScaler",
    // NumPy
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
    "numpy.ma.core._mareconstruct",
    "numpy.ma.core.MaskedArray",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor_v2",
    "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
    "numpy.random._pcg64.PCG64",
    "numpy.random._mt19937.MT19937",
    "numpy.dtypes.Float64DType",
    "numpy.dtypes.Float32DType",
    "numpy.dtypes.Float16DType",
    "numpy.dtypes.Int64DType",
    "numpy.dtypes.Int32DType",
    "numpy.dtypes.Int16DType",
    "numpy.dtypes.Int8DType",
    "numpy.dtypes.UInt8DType",
    "numpy.dtypes.UInt16DType",
    "numpy.dtypes.UInt32DType",
    "numpy.dtypes.UInt64DType",
    "numpy.dtypes.BoolDType",
    "numpy.dtypes.ObjectDType",
    "numpy.dtypes.StrDType",
    "numpy.dtypes.BytesDType",
    "numpy.dtypes.Complex64DType",
    "numpy.dtypes.Complex128DType",
    "numpy.dtypes.VoidDType",
    "numpy.bool_",
    "numpy.int64",
    "numpy.int32",
    "numpy.float64",
    "numpy.float32",
    // joblib containers
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "joblib.numpy_pickle.NDArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    // scikit-learn estimators, transformers, pipelines and their internals
    "sklearn.pipeline.Pipeline",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.compose._column_transformer._RemainderColsList",
    "sklearn.compose._target.TransformedTargetRegressor",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.preprocessing._data.MaxAbsScaler",
    "sklearn.preprocessing._data.Normalizer",
    "sklearn.preprocessing._data.QuantileTransformer",
    "sklearn.preprocessing._data.PowerTransformer",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.preprocessing._polynomial.PolynomialFeatures",
    "sklearn.preprocessing._discretization.KBinsDiscretizer",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.decomposition._pca.PCA",
    "sklearn.decomposition._truncated_svd.TruncatedSVD",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.feature_extraction.text.CountVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.HashingVectorizer",
    "sklearn.feature_extraction._dict_vectorizer.DictVectorizer",
    "sklearn.feature_selection._univariate_selection.SelectKBest",
    "sklearn.feature_selection._univariate_selection.f_classif",
    "sklearn.feature_selection._variance_threshold.VarianceThreshold",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._base.LinearRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.linear_model._ridge.RidgeClassifier",
    "sklearn.linear_model._coordinate_descent.Lasso",
    "sklearn.linear_model._coordinate_descent.ElasticNet",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
    "sklearn.linear_model._perceptron.Perceptron",
    "sklearn.svm._classes.SVC",
    "sklearn.svm._classes.SVR",
    "sklearn.svm._classes.LinearSVC",
    "sklearn.svm._classes.LinearSVR",
    "sklearn.naive_bayes.GaussianNB",
    "sklearn.naive_bayes.MultinomialNB",
    "sklearn.naive_bayes.BernoulliNB",
    "sklearn.neighbors._classification.KNeighborsClassifier",
    "sklearn.neighbors._regression.KNeighborsRegressor",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neighbors._kd_tree.KDTree64",
    "sklearn.neighbors._ball_tree.BallTree64",
    "sklearn.cluster._kmeans.KMeans",
    "sklearn.cluster._kmeans.MiniBatchKMeans",
    "sklearn.cluster._dbscan.DBSCAN",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeClassifier",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._gb.GradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._weight_boosting.AdaBoostClassifier",
    "sklearn.ensemble._voting.VotingClassifier",
    "sklearn.ensemble._bagging.BaggingClassifier",
    "sklearn.dummy.DummyClassifier",
    "sklearn.dummy.DummyRegressor",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.model_selection._search.GridSearchCV",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.link.Interval",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn.ensemble._gb_losses.BinomialDeviance",
    "sklearn.ensemble._gb_losses.LeastSquaresError",
    "sklearn.ensemble._gb_losses.MultinomialDeviance",
    "sklearn.dummy.DummyRegressor",
    "sklearn.utils._bunch.Bunch",
    "sklearn.metrics._scorer._PassthroughScorer",
];

static ALLOWED_SET: OnceLock<HashSet<&'static str>> = OnceLock::new();

fn allowed_set() -> &'static HashSet<&'static str> {
    ALLOWED_SET.get_or_init(|| ALLOWED.iter().copied().collect())
}

/// Python 2 module names as Python 3's unpickler maps them, plus C accelerator
/// modules that are aliases of their Python counterpart.
fn normalise_module(m: &str) -> &str {
    match m {
        "__builtin__" | "exceptions" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "_pickle" => "pickle",
        "httplib" => "http.client",
        "urllib2" => "urllib.request",
        "cStringIO" | "StringIO" | "_io" => "io",
        "Queue" => "queue",
        "SocketServer" => "socketserver",
        "xmlrpclib" => "xmlrpc.client",
        "thread" => "_thread",
        "_operator" => "operator",
        "_socket" => "socket",
        "_functools" => "functools",
        "_collections" => "collections",
        "UserDict" | "UserList" => "collections",
        "__main__" => "__main__",
        other => other,
    }
}

/// Python 2 builtins renamed in Python 3, as `_compat_pickle.NAME_MAPPING` maps them.
fn normalise_name<'a>(module: &str, name: &'a str) -> &'a str {
    if module != "builtins" {
        return name;
    }
    match name {
        "xrange" => "range",
        "unicode" | "basestring" => "str",
        "long" => "int",
        "unichr" => "chr",
        "raw_input" => "input",
        other => other,
    }
}

/// The verdict on one import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Dangerous: the family name, its reason, and what matched.
    Dangerous {
        family: &'static str,
        why: &'static str,
        matched: String,
    },
    Unknown,
}

/// Whether a module (or one of its parents or children) is on the denylist:
/// such a module cannot be allowed as a whole.
pub fn module_is_denied(module: &str) -> bool {
    let m = normalise_module(module);
    crate::python_danger::module_holds_denied(m) || m == "builtins" || m == "__builtin__"
}

fn dangerous(hit: Hit, matched: String) -> Verdict {
    Verdict::Dangerous {
        family: hit.family.name,
        why: hit.family.why,
        matched,
    }
}

/// Judges `module.name` (both as read from the stream). `extra_allowed` holds
/// the user's exact allowlist entries from `probity.toml`; they can make an
/// unknown callable allowed but never override the denylist.
pub fn judge(module: &str, name: &str, extra_allowed: &HashSet<String>) -> Verdict {
    let raw_full = format!("{module}.{name}");
    let m = normalise_module(module);
    let full = format!("{}.{}", m, normalise_name(m, name));
    if allowed_set().contains(full.as_str()) || allowed_set().contains(raw_full.as_str()) {
        return Verdict::Allowed;
    }
    if let Some(hit) = judge_import(&full).or_else(|| judge_import(&raw_full)) {
        return dangerous(hit.clone(), hit.entry.to_string());
    }
    // A dangerous module reached through another module's namespace.
    let segs: Vec<&str> = full.split('.').collect();
    for i in 1..segs.len().saturating_sub(1) {
        let seg = normalise_module(segs[i]);
        if REEXPORTED.contains(&seg) {
            let rest = format!("{}.{}", seg, segs[i + 1..].join("."));
            if let Some(hit) = judge_import(&rest) {
                return dangerous(hit, format!("{} (re-exported as {})", rest, full));
            }
        }
    }
    if extra_allowed.contains(&full)
        || extra_allowed.contains(&raw_full)
        || extra_allowed.iter().any(|a| {
            a.strip_suffix('*')
                .is_some_and(|m| full.starts_with(m) || raw_full.starts_with(m))
        })
    {
        return Verdict::Allowed;
    }
    // Unknown: judge by what its name says it does.
    for seg in full.split('.') {
        let lower = seg.to_ascii_lowercase();
        let words: Vec<&str> = lower.split('_').filter(|w| !w.is_empty()).collect();
        for tok in NAME_TOKENS {
            let hit = lower.trim_start_matches('_') == *tok || words.contains(tok) || lower == *tok;
            if hit {
                return Verdict::Dangerous {
                    family: "named for execution",
                    why: "an unknown callable whose name says it runs commands, evaluates code, imports or loads nested data",
                    matched: format!("'{seg}' in {full}"),
                };
            }
        }
    }
    Verdict::Unknown
}

/// Callables whose string/bytes argument is itself deserialised: their
/// arguments are scanned as nested pickles, and (for the allowed ones) an
/// embedded pickle there is expected rather than suspicious.
pub fn is_allowed_loader(full: &str) -> bool {
    full == "torch.storage._load_from_bytes"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(m: &str, n: &str) -> Verdict {
        judge(m, n, &HashSet::new())
    }

    fn dangerous(m: &str, n: &str) -> bool {
        matches!(v(m, n), Verdict::Dangerous { .. })
    }

    #[test]
    fn exact_allowlist_only() {
        assert_eq!(v("torch._utils", "_rebuild_tensor_v2"), Verdict::Allowed);
        assert_eq!(v("collections", "OrderedDict"), Verdict::Allowed);
        assert_eq!(v("__builtin__", "set"), Verdict::Allowed);
        assert_eq!(v("__builtin__", "xrange"), Verdict::Allowed);
        assert!(dangerous("__builtin__", "raw_input"));
        // a prefix of an allowed name is not allowed
        assert_eq!(
            v("torch._utils", "_rebuild_tensor_v2.__globals__"),
            Verdict::Unknown
        );
        assert_eq!(v("collections", "OrderedDict.fromkeys"), Verdict::Unknown);
        assert_eq!(v("torch", "_utils"), Verdict::Unknown);
    }

    #[test]
    fn families_by_prefix() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("__builtin__", "eval"),
            ("builtins", "exec"),
            ("_operator", "attrgetter"),
            ("subprocess", "Popen"),
            ("runpy", "_run_code"),
            ("bdb", "Bdb.run"),
            ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
            ("torch._inductor.codecache", "compile_file"),
            ("_io", "FileIO"),
            ("logging", "FileHandler"),
            ("httplib", "HTTPSConnection"),
            ("requests.api", "get"),
            ("torch.serialization", "load"),
            ("numpy.testing._private.utils", "runstring"),
            ("venv", "create"),
            ("pip", "main"),
            ("ctypes", "CDLL"),
            ("types", "CodeType"),
            ("pkgutil", "resolve_name"),
            ("pydoc", "locate"),
        ] {
            assert!(dangerous(m, n), "{m}.{n} should be dangerous");
        }
    }

    #[test]
    fn reexported_and_named() {
        assert!(dangerous("torch._utils", "builtins.eval"));
        assert!(dangerous("mypkg.helpers", "os.system"));
        // unknown callables judged by their name
        assert!(dangerous("uuid", "_get_command_stdout"));
        assert!(dangerous("torch.utils.collect_env", "run_and_read_all"));
        assert!(dangerous("lib", "Grammar.loads"));
        assert!(dangerous("somepkg.tools", "run"));
        assert!(dangerous("PIL.Image", "open"));
        assert!(dangerous("transformers.AutoModel", "from_pretrained"));
        assert!(dangerous("operator", "call"));
        assert!(dangerous("numpy", "fromfile"));
        // but ordinary unknown names stay unknown
        assert_eq!(v("__main__", "AGPLNeuralNetwork"), Verdict::Unknown);
        assert_eq!(
            v(
                "sklearn.preprocessing._function_transformer",
                "FunctionTransformer"
            ),
            Verdict::Unknown
        );
        assert_eq!(v("mypkg.io_utils", "Reader"), Verdict::Unknown);
        assert_eq!(v("builtins", "print"), Verdict::Unknown);
    }

    #[test]
    fn user_allowlist_cannot_override_denylist() {
        let mut extra = HashSet::new();
        extra.insert("os.system".to_string());
        extra.insert("mypkg.Net".to_string());
        assert!(matches!(
            judge("os", "system", &extra),
            Verdict::Dangerous { .. }
        ));
        assert_eq!(judge("mypkg", "Net", &extra), Verdict::Allowed);
    }
}
