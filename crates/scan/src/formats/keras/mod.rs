//! Keras model configs (`config.json` of a `.keras` v3 archive, or any JSON
//! holding a Keras model or layer config): the objects that make loading run
//! or import Python code.
//!
//! - A `Lambda` layer stores its function as base64-encoded marshalled
//!   bytecode (`{"class_name": "__lambda__", "config": {"code": …}}`, or
//!   Keras 2's `["<base64>", defaults, closure]`), which `load_model` runs
//!   once `safe_mode` is off or bypassed (CVE-2024-3660, CVE-2025-1550).
//!   The bytecode is not executed: the names its code object holds are
//!   listed, which shows what it calls.
//! - Every serialised object names the module its class or function is
//!   imported from; a module of process, code, file or network facilities
//!   (`os`, `subprocess`, `builtins.eval`, …) is critical, any module outside
//!   the Keras, TensorFlow, NumPy and JAX namespaces is a custom object that
//!   loading imports (warning).

pub mod hdf5;
pub mod rules;

use crate::python_danger;
use base64::Engine;

use crate::limits;
use crate::Sink;
use probity_report::Finding;

/// Whether a name in a Lambda's marshalled code shows what it reaches: a
/// dangerous module or builtin, or an action's name (`system`, `urlopen`,
/// `b64decode`), from [`python_danger`].
fn telling(name: &str) -> bool {
    python_danger::module_named(name).is_some()
        || python_danger::builtin_named(name).is_some()
        || python_danger::action_named(name).is_some()
}

/// Whether a JSON value looks like a Keras model or layer config.
pub fn looks_like_keras(v: &serde_json::Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    let class = o.get("class_name").and_then(|c| c.as_str()).is_some();
    let module = o
        .get("module")
        .and_then(|m| m.as_str())
        .is_some_and(|m| m.starts_with("keras") || m.starts_with("tf_keras"));
    (class && o.contains_key("config")) || module || o.contains_key("keras_version")
}

/// Identifiers held by a marshalled code object (strings of the marshal
/// stream: short ASCII, ASCII, interned and Unicode), in order, deduplicated.
pub fn marshal_names(raw: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let t = raw[i] & 0x7f;
        let (len, start) = match t {
            b'z' | b'Z' if i + 1 < raw.len() => (raw[i + 1] as usize, i + 2),
            b'a' | b'A' | b'u' | b't' if i + 4 < raw.len() => (
                u32::from_le_bytes([raw[i + 1], raw[i + 2], raw[i + 3], raw[i + 4]]) as usize,
                i + 5,
            ),
            _ => {
                i += 1;
                continue;
            }
        };
        if len > 0 && len <= 256 && start + len <= raw.len() {
            let s = &raw[start..start + len];
            let ident = (s[0].is_ascii_alphabetic() || s[0] == b'_')
                && s.iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.');
            if ident {
                let name = String::from_utf8_lossy(s).into_owned();
                if !out.contains(&name) {
                    out.push(name);
                }
                i = start + len;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn describe_code(b64: &str) -> String {
    let cleaned: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    // Keras 3 replaces `\` by `/` in the dump on Windows; both decode
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(cleaned.as_bytes()) else {
        return "its code is not valid base64".into();
    };
    let names = marshal_names(&raw);
    let telling: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| telling(n) || n.split('.').any(telling))
        .collect();
    if !telling.is_empty() {
        format!("its code names {}", telling.join(", "))
    } else if names.is_empty() {
        format!("{} bytes of marshalled code", raw.len())
    } else {
        format!(
            "its code names {}",
            names
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Checks a Keras config for code and imports; `path` is the JSON path.
pub fn check(v: &serde_json::Value, member: &str, sink: &mut Sink) {
    walk(v, "$", 0, member, sink);
}

fn walk(v: &serde_json::Value, path: &str, depth: usize, member: &str, sink: &mut Sink) {
    if depth > limits::MAX_JSON_DEPTH {
        return;
    }
    match v {
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{path}[{i}]"), depth + 1, member, sink);
            }
        }
        serde_json::Value::Object(o) => {
            let class = o.get("class_name").and_then(|c| c.as_str()).unwrap_or("");
            let name = o
                .get("config")
                .and_then(|c| c.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or("");
            if class == "__lambda__" {
                let code = o
                    .get("config")
                    .and_then(|c| c.get("code"))
                    .and_then(|c| c.as_str())
                    .unwrap_or("");
                sink.findings.push(
                    Finding::new(
                        &rules::KRS001,
                        format!("Lambda function at {path} is marshalled Python bytecode"),
                    )
                    .at(Some(member), None)
                    .evidence(describe_code(code)),
                );
            }
            if class == "Lambda" {
                // Keras 2: "function": ["<base64>", defaults, closure] or a
                // source string, with "function_type": "lambda"
                let mut f = o.get("config").and_then(|c| c.get("function"));
                // Keras 2.13+ wraps the list as {"class_name": "__tuple__", "config": {"value": [...]}}
                if let Some(v) = f
                    .filter(|x| x.get("class_name").and_then(|c| c.as_str()) == Some("__tuple__"))
                    .and_then(|x| x.get("config"))
                    .and_then(|c| c.get("value"))
                {
                    f = Some(v);
                }
                let code = match f {
                    Some(serde_json::Value::Array(a)) => a.first().and_then(|x| x.as_str()),
                    Some(serde_json::Value::String(s)) => Some(s.as_str()),
                    _ => None,
                };
                if let Some(code) = code {
                    let ev = if code.contains("lambda") || code.contains('(') {
                        format!("source: {}", code.chars().take(120).collect::<String>())
                    } else {
                        describe_code(code)
                    };
                    sink.findings.push(
                        Finding::new(
                            &rules::KRS001,
                            format!("Lambda layer '{name}' at {path} carries Python code"),
                        )
                        .at(Some(member), None)
                        .evidence(ev),
                    );
                }
            }
            // A Lambda layer's own config: `module` is where its function
            // lives. For `function_type: "function"` Keras 2 resolves the
            // function by name in that module's namespace (an import); for
            // "lambda" the bytecode is judged above.
            let function_type = o.get("function_type").and_then(|t| t.as_str());
            let lambda_module = match function_type {
                Some("function") => o.get("function").and_then(|f| f.as_str()),
                Some(_) => None,
                None => Some(class),
            };
            if let (Some(module), Some(class)) =
                (o.get("module").and_then(|m| m.as_str()), lambda_module)
            {
                let top = module.split('.').next().unwrap_or("");
                let target = o.get("config").and_then(|c| c.as_str()).unwrap_or(class);
                let framework = python_danger::FRAMEWORKS.contains(&top);
                let denied = if framework {
                    python_danger::framework_function(target).is_some()
                } else if top == "builtins" {
                    python_danger::builtin_named(target).is_some()
                } else {
                    python_danger::judge_import(&format!("{module}.{target}")).is_some()
                };
                if denied {
                    sink.findings.push(
                        Finding::new(
                            &rules::KRS002,
                            format!(
                                "object at {path} imports `{module}.{target}` when the model loads"
                            ),
                        )
                        .at(Some(member), None)
                        .evidence(format!("{module}.{target}")),
                    );
                } else if !top.is_empty() && top != "builtins" && !framework {
                    sink.findings.push(
                        Finding::new(
                            &rules::KRS003,
                            format!("custom object `{module}.{class}` at {path} is imported when the model loads"),
                        )
                        .at(Some(member), None)
                        .evidence(format!("{module}.{class}")),
                    );
                }
            }
            for (k, x) in o {
                walk(x, &format!("{path}.{k}"), depth + 1, member, sink);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_a_marshalled_code_object() {
        // the string records of a tiny code object: 'os', 'system', 'id'
        let raw = b"\xe3\x00\x00\x00\xda\x02os\xda\x06system\xfa\x02id\xa9\x00";
        assert_eq!(marshal_names(raw), ["os", "system", "id"]);
        assert_eq!(
            describe_code(&base64::engine::general_purpose::STANDARD.encode(raw)),
            "its code names os, system"
        );
    }
}
