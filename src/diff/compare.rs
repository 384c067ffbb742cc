//! Comparing two snapshots, and the definition of an unexpected update
//! (docs/provenance-diff.md), shared with future alerts.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::snapshot::Origin;
use super::snapshot::{FileEntry, Signature, Snapshot};

/// Schema identifier of `probity diff --format json`.
pub const SCHEMA: &str = "probity.diff/v1";

/// Longest setting value kept in a report (chat templates are a few KiB).
const MAX_SHOWN_VALUE: usize = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub name: String,
    pub old_sha256: String,
    pub new_sha256: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Files {
    pub added: Vec<FileEntry>,
    pub removed: Vec<FileEntry>,
    pub changed: Vec<FileChange>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TensorEntry {
    pub name: String,
    pub file: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reshaped {
    pub name: String,
    pub old_shape: Vec<u64>,
    pub new_shape: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Retyped {
    pub name: String,
    pub old_dtype: String,
    pub new_dtype: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Tensors {
    pub added: Vec<TensorEntry>,
    pub removed: Vec<TensorEntry>,
    pub reshaped: Vec<Reshaped>,
    pub retyped: Vec<Retyped>,
}

/// A security-relevant setting added, removed or changed.
#[derive(Debug, Clone, Serialize)]
pub struct SettingChange {
    /// `FILE:KEY` (a whole template file: its name).
    pub key: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One reason why NEW is an unexpected update of OLD.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Reason {
    /// Stable code: `weights-changed-under-same-tag`, `new-remote-code`,
    /// `chat-template-changed`, `new-unsigned-version`, `untrusted-author`.
    pub code: &'static str,
    pub message: String,
}

/// What changed between two snapshots.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Changes {
    pub files: Files,
    pub tensors: Tensors,
    pub settings: Vec<SettingChange>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.files.added.is_empty()
            && self.files.removed.is_empty()
            && self.files.changed.is_empty()
            && self.tensors.added.is_empty()
            && self.tensors.removed.is_empty()
            && self.tensors.reshaped.is_empty()
            && self.tensors.retyped.is_empty()
            && self.settings.is_empty()
    }
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_SHOWN_VALUE {
        return s.to_string();
    }
    let mut end = MAX_SHOWN_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

/// Compares OLD with NEW.
pub fn compare(old: &Snapshot, new: &Snapshot) -> Changes {
    let mut c = Changes::default();
    let of: BTreeMap<&str, &FileEntry> = old.files.iter().map(|f| (f.name.as_str(), f)).collect();
    let nf: BTreeMap<&str, &FileEntry> = new.files.iter().map(|f| (f.name.as_str(), f)).collect();
    for (name, o) in &of {
        match nf.get(name) {
            None => c.files.removed.push((*o).clone()),
            Some(n) if n.sha256 != o.sha256 => c.files.changed.push(FileChange {
                name: name.to_string(),
                old_sha256: o.sha256.clone(),
                new_sha256: n.sha256.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, n) in &nf {
        if !of.contains_key(name) {
            c.files.added.push((*n).clone());
        }
    }
    for (name, o) in &old.tensors {
        match new.tensors.get(name) {
            None => c.tensors.removed.push(TensorEntry {
                name: name.clone(),
                file: o.file.clone(),
                dtype: o.dtype.clone(),
                shape: o.shape.clone(),
            }),
            Some(n) => {
                if n.shape != o.shape {
                    c.tensors.reshaped.push(Reshaped {
                        name: name.clone(),
                        old_shape: o.shape.clone(),
                        new_shape: n.shape.clone(),
                    });
                }
                if n.dtype != o.dtype {
                    c.tensors.retyped.push(Retyped {
                        name: name.clone(),
                        old_dtype: o.dtype.clone(),
                        new_dtype: n.dtype.clone(),
                    });
                }
            }
        }
    }
    for (name, n) in &new.tensors {
        if !old.tensors.contains_key(name) {
            c.tensors.added.push(TensorEntry {
                name: name.clone(),
                file: n.file.clone(),
                dtype: n.dtype.clone(),
                shape: n.shape.clone(),
            });
        }
    }
    let keys: BTreeSet<&String> = old.settings.keys().chain(new.settings.keys()).collect();
    for k in keys {
        let (o, n) = (old.settings.get(k), new.settings.get(k));
        let change = match (o, n) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if a != b => "changed",
            _ => continue,
        };
        c.settings.push(SettingChange {
            key: k.clone(),
            change,
            old: o.map(|s| clip(s)),
            new: n.map(|s| clip(s)),
        });
    }
    c
}

pub use probity_report::is_weight_file;

fn is_python(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".py")
}

/// The part of a setting key after the file (`FILE:KEY` → `KEY`).
fn setting_name(key: &str) -> &str {
    key.rsplit_once(':').map(|(_, k)| k).unwrap_or(key)
}

fn is_chat_template(key: &str) -> bool {
    let k = setting_name(key);
    k.contains("chat_template") || key.ends_with(".jinja")
}

/// The tag both inputs name, when they name the same movable one: the same
/// Hub repository and revision label, or the same MLflow model and alias.
fn same_tag(old: &Origin, new: &Origin) -> Option<String> {
    match (old, new) {
        (
            Origin::Hf {
                repo: r1,
                revision: v1,
                commit: c1,
            },
            Origin::Hf {
                repo: r2,
                revision: v2,
                commit: c2,
            },
        ) if r1 == r2 && v1 == v2 => Some(format!(
            "hf://{r1}@{v1} (commit {} then {})",
            short(c1),
            short(c2)
        )),
        (
            Origin::Mlflow {
                name: Some(n1),
                alias: Some(a1),
                version: v1,
                ..
            },
            Origin::Mlflow {
                name: Some(n2),
                alias: Some(a2),
                version: v2,
                ..
            },
        ) if n1 == n2 && a1 == a2 => Some(format!(
            "models:/{n1}@{a1} (version {} then {})",
            v1.as_deref().unwrap_or("?"),
            v2.as_deref().unwrap_or("?")
        )),
        _ => None,
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

/// An unexpected update: the reasons why NEW should not have replaced OLD
/// without review. Each reason is one of:
///
/// * `weights-changed-under-same-tag`: both name the same Hub repository and
///   revision label (e.g. `@main`), or the same MLflow model and alias, and
///   a weight file was added, removed or changed;
/// * `new-remote-code`: a `.py` file added or changed, an `auto_map` /
///   `auto_mapping` added or changed, or `trust_remote_code` turned on;
/// * `chat-template-changed`: a chat template added, removed or changed
///   (tokenizer_config.json, chat_template.json, a `.jinja` file, GGUF
///   `tokenizer.chat_template*`);
/// * `new-unsigned-version`: OLD had a valid sidecar signature and NEW has
///   none or an invalid one (a ledger record whose scan did not check the
///   signature says neither);
/// * `untrusted-author`: `trusted_authors` is set, NEW's authors are known,
///   and one of them is not in the list.
///
/// Sorted by code, then message.
pub fn unexpected_update(
    old: &Snapshot,
    new: &Snapshot,
    c: &Changes,
    trusted_authors: &[String],
) -> Vec<Reason> {
    let mut out = Vec::new();
    if let Some(tag) = same_tag(&old.origin, &new.origin) {
        let mut weights: Vec<&str> = c
            .files
            .added
            .iter()
            .chain(&c.files.removed)
            .map(|f| f.name.as_str())
            .chain(c.files.changed.iter().map(|f| f.name.as_str()))
            .filter(|n| is_weight_file(n))
            .collect();
        weights.sort();
        if !weights.is_empty() {
            out.push(Reason {
                code: "weights-changed-under-same-tag",
                message: format!("{tag}: weights changed: {}", weights.join(", ")),
            });
        }
    }
    let mut code: Vec<String> = c
        .files
        .added
        .iter()
        .filter(|f| is_python(&f.name))
        .map(|f| format!("{} added", f.name))
        .chain(
            c.files
                .changed
                .iter()
                .filter(|f| is_python(&f.name))
                .map(|f| format!("{} changed", f.name)),
        )
        .collect();
    for s in &c.settings {
        let k = setting_name(&s.key);
        if (k == "auto_map" || k == "auto_mapping") && s.change != "removed" {
            code.push(format!("{} {}", s.key, s.change));
        }
        if k == "trust_remote_code" && s.new.as_deref() == Some("true") {
            code.push(format!("{} turned on", s.key));
        }
    }
    code.sort();
    if !code.is_empty() {
        out.push(Reason {
            code: "new-remote-code",
            message: code.join("; "),
        });
    }
    let templates: Vec<String> = c
        .settings
        .iter()
        .filter(|s| is_chat_template(&s.key))
        .map(|s| format!("{} {}", s.key, s.change))
        .collect();
    if !templates.is_empty() {
        out.push(Reason {
            code: "chat-template-changed",
            message: templates.join("; "),
        });
    }
    if old.signature.is_valid()
        && !new.signature.is_valid()
        && new.signature != super::snapshot::Signature::NotChecked
    {
        let now = match &new.signature {
            Signature::None => "NEW has no model.sig".to_string(),
            other => format!("NEW's {}", other.describe()),
        };
        out.push(Reason {
            code: "new-unsigned-version",
            message: format!("OLD was signed; {now}"),
        });
    }
    if !trusted_authors.is_empty() {
        if let Some(authors) = &new.authors {
            let outside: Vec<&str> = authors
                .iter()
                .filter(|a| !trusted_authors.contains(a))
                .map(String::as_str)
                .collect();
            if !outside.is_empty() {
                out.push(Reason {
                    code: "untrusted-author",
                    message: format!(
                        "NEW was published by {}, not in [provenance] trusted_authors",
                        outside.join(", ")
                    ),
                });
            }
        }
    }
    out.sort();
    out
}
