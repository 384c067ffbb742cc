//! skops (`.skops`): a zip whose `schema.json` describes the object tree
//! node by node; arrays sit beside it as `.npy` members (scanned as NumPy).
//! Every node names what `skops.io.load` imports to rebuild it:
//! `__module__` + `__class__` for objects, types and functions, and a
//! method node's owner class and method name. A name
//! in a dangerous family is critical (SKP001); a name outside scikit-learn,
//! NumPy, SciPy and the builtin containers and scalars is what skops itself
//! calls untrusted (SKP002).

use probity_report::Finding;

use super::rules;
use crate::python_danger;
use crate::Sink;

/// The most nodes reported per rule and file (the rest are counted).
const MAX_REPORTED: usize = 32;

/// Builtin types skops rebuilds without asking: containers and scalars.
const BUILTINS: &[&str] = &[
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "int",
    "float",
    "complex",
    "str",
    "bytes",
    "bytearray",
    "bool",
    "NoneType",
    "slice",
    "map",
];

/// Modules whose classes and functions are the estimators and arrays
/// themselves (a dangerous callable under them, such as `numpy.f2py` or
/// `numpy.load`'s pickle path, is caught by the danger table first).
const LIBRARIES: &[&str] = &["sklearn", "numpy", "scipy"];

/// Whether `v` (a parsed `schema.json`) is a skops schema: a node with a
/// loader, or the protocol and version keys skops writes at the top.
pub fn looks_like_schema(v: &serde_json::Value) -> bool {
    v.get("__loader__").is_some_and(|l| l.is_string())
        || (v.get("protocol").is_some() && v.get("_skops_version").is_some())
}

/// Judges every node of a parsed `schema.json`.
pub fn check(v: &serde_json::Value, member: &str, sink: &mut Sink) {
    let mut names: Vec<(String, String, Kind)> = Vec::new();
    collect(v, "$", 0, &mut names, sink, member);
    names.sort();
    names.dedup();
    let (mut critical, mut unknown) = (Vec::new(), Vec::new());
    for (name, path, kind) in names {
        if let Some(hit) = python_danger::judge_import(&name) {
            critical.push((name, path, hit));
        } else if !trusted(&name, kind) {
            unknown.push((name, path));
        }
    }
    for (name, path, hit) in critical.iter().take(MAX_REPORTED) {
        sink.findings.push(
            Finding::new(
                &rules::SKP001,
                format!(
                    "node at {path} names `{name}` ({}: {}); skops imports it to rebuild the object",
                    hit.family.name, hit.family.why
                ),
            )
            .at(Some(member), None)
            .evidence(name.clone()),
        );
    }
    if !unknown.is_empty() {
        let listed: Vec<String> = unknown
            .iter()
            .take(MAX_REPORTED)
            .map(|(n, p)| format!("`{n}` at {p}"))
            .collect();
        let more = unknown.len().saturating_sub(MAX_REPORTED);
        sink.findings.push(
            Finding::new(
                &rules::SKP002,
                format!(
                    "{} type(s) skops does not trust by default: {}{}; loading needs `trusted=` to list them",
                    unknown.len(),
                    listed.join(", "),
                    if more > 0 { format!(", and {more} more") } else { String::new() }
                ),
            )
            .at(Some(member), None)
            .evidence(
                unknown
                    .iter()
                    .take(MAX_REPORTED)
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        );
    }
}

/// What a node makes skops fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A class (instantiated) or a type (referenced).
    Object,
    /// A function, handed to the estimator and called on the data later.
    Function,
    /// A bound method: skops never trusts one by default.
    Method,
}

/// skops' own default trust (skops/io/_trusted_types.py), approximated:
/// builtin containers and scalars, scikit-learn, NumPy and SciPy classes;
/// functions only from NumPy and `scipy.special` (ufuncs); methods never.
fn trusted(name: &str, kind: Kind) -> bool {
    if let Some(b) = name.strip_prefix("builtins.") {
        return kind == Kind::Object && BUILTINS.contains(&b);
    }
    if matches!(name, "collections.OrderedDict" | "collections.defaultdict") {
        return true;
    }
    let top = name.split('.').next().unwrap_or("");
    match kind {
        Kind::Object => LIBRARIES.contains(&top),
        Kind::Function => top == "numpy" || name.starts_with("scipy.special."),
        Kind::Method => false,
    }
}

fn text(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(|x| x.as_str())
        .map(|s| s.trim().to_string())
}

/// The dotted names each node makes skops import, with the node's path.
fn collect(
    v: &serde_json::Value,
    path: &str,
    depth: usize,
    out: &mut Vec<(String, String, Kind)>,
    sink: &mut Sink,
    member: &str,
) {
    if depth > crate::limits::MAX_JSON_DEPTH {
        if depth == crate::limits::MAX_JSON_DEPTH + 1 {
            sink.findings.push(
                Finding::new(
                    &crate::rules::SCN005,
                    format!(
                        "schema nested deeper than {} levels at {path}; the rest was not judged",
                        crate::limits::MAX_JSON_DEPTH
                    ),
                )
                .at(Some(member), None),
            );
        }
        return;
    }
    match v {
        serde_json::Value::Object(m) => {
            let module = text(v, "__module__");
            let class = text(v, "__class__");
            let loader = text(v, "__loader__").unwrap_or_default();
            if let (Some(module), Some(class)) = (&module, &class) {
                let kind = match loader.as_str() {
                    "FunctionNode" => Kind::Function,
                    "MethodNode" => Kind::Method,
                    _ => Kind::Object,
                };
                if kind != Kind::Method {
                    out.push((format!("{module}.{class}"), path.to_string(), kind));
                }
            }
            // a method node: `func` is looked up on the object it is bound to
            if let (Some(func), Some(obj)) = (
                m.get("content").and_then(|c| text(c, "func")),
                m.get("content").and_then(|c| c.get("obj")),
            ) {
                if let (Some(module), Some(class)) =
                    (text(obj, "__module__"), text(obj, "__class__"))
                {
                    out.push((
                        format!("{module}.{class}.{func}"),
                        format!("{path}.content"),
                        Kind::Method,
                    ));
                }
            }
            for (k, x) in m {
                collect(x, &format!("{path}.{k}"), depth + 1, out, sink, member);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect(x, &format!("{path}[{i}]"), depth + 1, out, sink, member);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust() {
        assert!(trusted(
            "sklearn.linear_model._logistic.LogisticRegression",
            Kind::Object
        ));
        assert!(trusted("builtins.dict", Kind::Object));
        assert!(!trusted("builtins.eval", Kind::Function));
        assert!(!trusted("mypkg.Thing", Kind::Object));
        assert!(!trusted("sklearn.metrics.accuracy_score", Kind::Function));
        assert!(trusted("numpy.sqrt", Kind::Function));
        assert!(python_danger::judge_import("os.system").is_some());
    }
}
