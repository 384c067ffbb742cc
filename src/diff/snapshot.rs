//! A model snapshot: what `probity diff` compares. It is built from a local
//! folder (or a remote input fetched into the cache), but holds only data
//! (file manifest, tensor tables, security-relevant settings, signature
//! state, origin and authors), so that a snapshot recorded earlier (a
//! ledger record) can stand in for one side of a diff.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::headers;
use probity_provenance::manifest::{self, IgnorePath};

/// Where a snapshot came from, as its source resolved it (the diff's
/// view of [`crate::remote::Origin`], serialised in `probity.diff/v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// A local file or folder.
    #[default]
    Local,
    /// A Hugging Face Hub repository at a revision (a branch, tag or
    /// commit) that resolved to `commit`.
    Hf {
        repo: String,
        revision: String,
        commit: String,
    },
    /// An MLflow model version, alias or run.
    Mlflow {
        uri: String,
        /// The registered model's name (not for runs).
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The alias the URI named (`models:/NAME@ALIAS`).
        #[serde(skip_serializing_if = "Option::is_none")]
        alias: Option<String>,
        /// The model version the URI resolved to.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        /// The version's `user_id` (who registered it), when the server says.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
}

impl Origin {
    /// The diff's view of what a remote source said about `input`.
    fn of(input: &str, o: Option<&crate::remote::Origin>) -> Origin {
        match o {
            None => Origin::Local,
            Some(crate::remote::Origin::Hf {
                repo,
                revision,
                commit,
            }) => Origin::Hf {
                repo: repo.clone(),
                revision: revision.clone(),
                commit: commit.clone(),
            },
            Some(crate::remote::Origin::Mlflow { details, .. }) => {
                let text = |k: &str| {
                    details
                        .get(k)
                        .and_then(|v| v.as_str())
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                };
                Origin::Mlflow {
                    uri: input.to_string(),
                    name: text("name"),
                    alias: text("alias"),
                    version: text("version"),
                    user_id: text("user_id"),
                }
            }
        }
    }
}

/// The sidecar signature looked for at the top of a model folder.
pub const SIDECAR: &str = "model.sig";

/// One file and its SHA-256 (model signing's manifest entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
}

/// One tensor of the model, from its file's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub file: String,
    pub dtype: String,
    pub shape: Vec<u64>,
}

/// Whether the model carries a valid sidecar signature (`model.sig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Signature {
    /// No `model.sig`.
    None,
    /// The signed statement lists exactly these files, and its signature
    /// verifies with the `--key` given.
    Verified { signer: String, root_digest: String },
    /// The signed statement lists exactly these files; no key was given, so
    /// who signed is not checked.
    Unverified { root_digest: String },
    /// Unreadable, altered, wrong key, or the files differ from the signed
    /// ones.
    Invalid { reason: String },
    /// A ledger record of a scan that did not check the signature.
    NotChecked,
}

impl Signature {
    /// A valid signature (verified, or matching the files when no key was given).
    pub fn is_valid(&self) -> bool {
        matches!(
            self,
            Signature::Verified { .. } | Signature::Unverified { .. }
        )
    }

    pub fn describe(&self) -> String {
        match self {
            Signature::None => "unsigned (no model.sig)".into(),
            Signature::Verified { signer, .. } => format!("signed, verified: {signer}"),
            Signature::Unverified { .. } => {
                "signed, files match (signer not checked: no --key)".into()
            }
            Signature::Invalid { reason } => format!("signature invalid: {reason}"),
            Signature::NotChecked => "signature not checked when recorded".into(),
        }
    }
}

/// Everything a diff needs to know about one model version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The input as given (a path or a URI).
    pub input: String,
    pub origin: Origin,
    /// In model signing's canonical order; the sidecar signature and git
    /// metadata are left out, as `probity sign` leaves them out.
    pub files: Vec<FileEntry>,
    /// Model signing's root digest over `files`.
    pub root_digest: String,
    /// By tensor name (`FILE:NAME` when a name occurs in several files).
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Security-relevant settings, `FILE:KEY` → value (JSON text; strings bare).
    pub settings: BTreeMap<String, String>,
    /// `model_type` of config.json, else the GGUF `general.architecture`.
    pub architecture: Option<String>,
    pub signature: Signature,
    /// Who published this version (Hub commit authors, MLflow `user_id`);
    /// `None` when the source does not say.
    pub authors: Option<Vec<String>>,
    /// Why `authors` is unknown, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authors_unknown: Option<String>,
    /// What was not read, and why.
    pub notes: Vec<String>,
    /// The local folder or file (for the ΔW analysis); not part of a record.
    #[serde(skip)]
    #[cfg_attr(not(feature = "deep"), allow(dead_code))]
    pub root: Option<PathBuf>,
}

/// An input that cannot be diffed: the path to name and why.
#[derive(Debug)]
pub struct BadInput {
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> BadInput {
    BadInput {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Shows a JSON value: strings bare, anything else as compact JSON.
fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, BadInput> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| bad(path, format!("not JSON: {e}")))
}

fn read_text(path: &Path) -> Result<String, BadInput> {
    let len = std::fs::metadata(path)
        .map_err(|e| bad(path, e.to_string()))?
        .len();
    if len > probity_scan::limits::MAX_TEXT_DOCUMENT {
        return Err(bad(
            path,
            format!(
                "{len} bytes is over the {} MiB limit for a text document",
                probity_scan::limits::MAX_TEXT_DOCUMENT >> 20
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(path, e.to_string()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The special tokens of an `added_tokens_decoder` (object by ID) or a
/// tokenizer.json `added_tokens` (array with `id`).
fn added_tokens(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    let mut put = |id: String, t: &serde_json::Value| {
        let content = t.get("content").map(show).unwrap_or_default();
        let special = t.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
        out.insert(
            format!("{prefix}[{id}]"),
            format!("{content}{}", if special { " (special)" } else { "" }),
        );
    };
    match v {
        serde_json::Value::Object(m) => m.iter().for_each(|(id, t)| put(id.clone(), t)),
        serde_json::Value::Array(a) => a
            .iter()
            .for_each(|t| put(t.get("id").map(|i| i.to_string()).unwrap_or_default(), t)),
        _ => {}
    }
}

const TOKEN_KEYS: &[&str] = &[
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "sep_token",
    "cls_token",
    "mask_token",
    "additional_special_tokens",
];

/// The `base_model` of a model card's YAML front matter.
fn card_base_model(text: &str) -> Option<String> {
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    let end = rest.find("\n---")?;
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&rest[..end]).ok()?;
    let b = v.get("base_model")?;
    let j: serde_json::Value = serde_json::to_value(b).ok()?;
    Some(show(&j))
}

/// Reads the security-relevant settings of one file (by its base name).
fn settings_of(
    name: &str,
    path: &Path,
    snap: &mut Snapshot,
    gguf_arch: &mut Option<String>,
) -> Result<(), BadInput> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let out = &mut snap.settings;
    let key = |k: &str| format!("{name}:{k}");
    match base {
        "config.json" => {
            let v = read_json(path)?;
            for k in [
                "auto_map",
                "trust_remote_code",
                "architectures",
                "model_type",
                "_name_or_path",
            ] {
                if let Some(x) = v.get(k) {
                    out.insert(key(k), show(x));
                }
            }
            if name == "config.json" {
                snap.architecture = v
                    .get("model_type")
                    .and_then(|m| m.as_str())
                    .map(str::to_string);
            }
        }
        "tokenizer_config.json" => {
            let v = read_json(path)?;
            for k in ["chat_template", "auto_map"].iter().chain(TOKEN_KEYS) {
                if let Some(x) = v.get(*k) {
                    out.insert(key(k), show(x));
                }
            }
            if let Some(a) = v.get("added_tokens_decoder") {
                added_tokens(a, &key("added_tokens_decoder"), out);
            }
        }
        "special_tokens_map.json" => {
            let v = read_json(path)?;
            if let Some(m) = v.as_object() {
                for (k, x) in m {
                    out.insert(key(k), show(x));
                }
            }
        }
        "tokenizer.json" => {
            let v = read_json(path)?;
            if let Some(a) = v.get("added_tokens") {
                added_tokens(a, &key("added_tokens"), out);
            }
        }
        "chat_template.json" => {
            let v = read_json(path)?;
            if let Some(x) = v.get("chat_template") {
                out.insert(key("chat_template"), show(x));
            }
        }
        "adapter_config.json" => {
            let v = read_json(path)?;
            for k in ["base_model_name_or_path", "auto_mapping"] {
                if let Some(x) = v.get(k) {
                    out.insert(key(k), show(x));
                }
            }
        }
        "README.md" => {
            if let Some(b) = card_base_model(&read_text(path)?) {
                out.insert(key("base_model"), b);
            }
        }
        _ if base.ends_with(".jinja") => {
            out.insert(name.to_string(), read_text(path)?);
        }
        _ if base.ends_with(".gguf") => {
            let h = headers::gguf(path).map_err(|r| bad(path, r))?;
            for (k, v) in &h.metadata {
                if k == "general.architecture" && gguf_arch.is_none() {
                    *gguf_arch = Some(v.clone());
                }
                out.insert(key(k), v.clone());
            }
        }
        _ => {}
    }
    Ok(())
}

/// Reads the tensor table of a weight file, if it is one.
fn tensors_of(name: &str, path: &Path) -> Result<Option<Vec<headers::Tensor>>, BadInput> {
    if name.ends_with(".safetensors") {
        headers::safetensors(path)
            .map(|h| Some(h.tensors))
            .map_err(|r| bad(path, r))
    } else if name.ends_with(".gguf") {
        headers::gguf(path)
            .map(|h| Some(h.tensors))
            .map_err(|r| bad(path, r))
    } else {
        Ok(None)
    }
}

/// Builds the snapshot of a local model folder (or single file) `root`.
/// `key`: a public key to verify the sidecar signature with.
pub fn build(
    input: &str,
    root: &Path,
    origin: Origin,
    key: Option<&probity_provenance::PublicKey>,
) -> Result<Snapshot, BadInput> {
    let mut ignore: Vec<IgnorePath> = manifest::GIT_PATHS
        .iter()
        .filter_map(|p| IgnorePath::parse(p))
        .collect();
    ignore.extend(IgnorePath::parse(SIDECAR));
    // links are followed (a Hugging Face cache snapshot is made of them);
    // only regular files are read
    let listed = manifest::list_files(root, &ignore, true).map_err(|e| bad(root, e.to_string()))?;
    let single_name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into());
    let mut snap = Snapshot {
        input: input.to_string(),
        origin,
        files: Vec::new(),
        root_digest: String::new(),
        tensors: BTreeMap::new(),
        settings: BTreeMap::new(),
        architecture: None,
        signature: Signature::None,
        authors: None,
        authors_unknown: None,
        notes: Vec::new(),
        root: Some(root.to_path_buf()),
    };
    let mut gguf_arch = None;
    let mut all_tensors: Vec<(String, headers::Tensor)> = Vec::new();
    for (name, path) in &listed {
        let shown = if name == "." { &single_name } else { name };
        settings_of(shown, path, &mut snap, &mut gguf_arch)?;
        if let Some(ts) = tensors_of(shown, path)? {
            all_tensors.extend(ts.into_iter().map(|t| (shown.clone(), t)));
        }
    }
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, t) in &all_tensors {
        *count.entry(t.name.as_str()).or_default() += 1;
    }
    let mut tensors = BTreeMap::new();
    for (file, t) in &all_tensors {
        let k = if count[t.name.as_str()] > 1 {
            format!("{file}:{}", t.name)
        } else {
            t.name.clone()
        };
        tensors.insert(
            k,
            TensorInfo {
                file: file.clone(),
                dtype: t.dtype.clone(),
                shape: t.shape.clone(),
            },
        );
    }
    snap.tensors = tensors;
    if snap.architecture.is_none() {
        snap.architecture = gguf_arch;
    }
    let m = manifest::hash_files(listed).map_err(|e| bad(root, e.to_string()))?;
    snap.root_digest = manifest::Manifest::root_digest(&m.entries);
    snap.files = m
        .entries
        .iter()
        .map(|e| FileEntry {
            name: e.name.clone(),
            sha256: e.sha256.clone(),
        })
        .collect();
    let sidecar = root.join(SIDECAR);
    if root.is_dir() && sidecar.exists() {
        snap.signature = signature_state(&sidecar, &m, key);
    }
    Ok(snap)
}

/// Checks the sidecar signature against the manifest already hashed.
fn signature_state(
    sidecar: &Path,
    found: &manifest::Manifest,
    key: Option<&probity_provenance::PublicKey>,
) -> Signature {
    let (parsed, signer) = match probity_provenance::read_signed_statement(sidecar, key) {
        Ok(p) => p,
        Err(e) => {
            return Signature::Invalid {
                reason: e.lines().join("; "),
            }
        }
    };
    let ignored: Vec<IgnorePath> = parsed
        .serialization
        .ignore_paths
        .iter()
        .filter_map(|p| IgnorePath::parse(p))
        .collect();
    let kept = manifest::Manifest::new(
        found
            .entries
            .iter()
            .filter(|e| !ignored.iter().any(|i| i.covers(&e.name)))
            .cloned()
            .collect(),
    );
    let problems = manifest::diff(&parsed.resources, &kept, &[]);
    if let Some(p) = problems.first() {
        let more = problems.len() - 1;
        return Signature::Invalid {
            reason: if more > 0 {
                format!("{p}; and {more} more")
            } else {
                p.to_string()
            },
        };
    }
    match signer {
        Some(signer) => Signature::Verified {
            signer,
            root_digest: parsed.root_digest,
        },
        None => Signature::Unverified {
            root_digest: parsed.root_digest,
        },
    }
}

/// The local folder for an input, fetching a remote one; with its origin.
pub fn locate(input: &str, offline: bool) -> Result<(PathBuf, Origin, Option<String>), BadInput> {
    match crate::remote::fetch(input, offline, false) {
        None => {
            let p = PathBuf::from(input);
            if !p.exists() {
                return Err(bad(&p, "no such file or folder"));
            }
            Ok((p, Origin::Local, None))
        }
        // the source's message names the input already
        Some(Err(e)) => Err(BadInput {
            path: String::new(),
            reason: e.to_string(),
        }),
        Some(Ok(f)) => Ok((f.root, Origin::of(input, f.origin.as_ref()), Some(f.note))),
    }
}

/// Fills in who published the snapshot, when its source says.
pub fn find_authors(snap: &mut Snapshot, offline: bool) {
    match &snap.origin {
        Origin::Local => {
            snap.authors_unknown = Some("a local folder records no author".into());
        }
        Origin::Hf { repo, commit, .. } if !offline => {
            match crate::remote::hf::commit_authors(repo, commit) {
                Ok(a) => snap.authors = Some(a),
                Err(e) => snap.authors_unknown = Some(e),
            }
        }
        Origin::Hf { .. } => {
            snap.authors_unknown = Some("--offline: the Hub was not asked".into());
        }
        Origin::Mlflow { user_id, .. } => match user_id {
            Some(u) => snap.authors = Some(vec![u.clone()]),
            None => {
                snap.authors_unknown =
                    Some("the tracking server names no user_id for this version".into())
            }
        },
    }
}

/// `ledger:SEQ`: a record of the ledger as one side of a diff.
pub fn ledger_seq(input: &str) -> Option<&str> {
    input
        .strip_prefix("ledger:")
        .map(|s| s.trim_start_matches('#'))
}

/// A snapshot from ledger record `seq` (`ledger:SEQ`): the files and root
/// digest, the origin, the signature status and the upstream authors the
/// record holds. Tensors and settings are not recorded, so they are not
/// compared (a note says so). The ledger's hash chain must be intact.
pub fn from_ledger(input: &str, ledger: Option<&Path>, seq: &str) -> Result<Snapshot, BadInput> {
    let Some(path) = ledger else {
        return Err(BadInput {
            path: input.to_string(),
            reason: "no ledger: give --ledger FILE, PROBITY_LEDGER, or `ledger` in [provenance]"
                .into(),
        });
    };
    let seq: i64 = seq
        .parse()
        .map_err(|_| bad(Path::new(input), "not a ledger record number (ledger:SEQ)"))?;
    let l = probity_provenance::ledger::Ledger::open_read(path).map_err(|e| bad(path, &e))?;
    let rows = l.rows().map_err(|e| bad(path, &e))?;
    let check = probity_provenance::ledger::check(&rows, None);
    if let Some((at, why)) = check.broken {
        let at = at.map(|s| format!(" at record #{s}")).unwrap_or_default();
        return Err(bad(
            path,
            format!("the hash chain is broken{at}: {why} (see probity log --verify)"),
        ));
    }
    let row = rows
        .iter()
        .find(|r| r.seq == seq)
        .ok_or_else(|| bad(path, format!("no record #{seq}")))?;
    let b: serde_json::Value =
        serde_json::from_str(&row.body).map_err(|e| bad(path, format!("record #{seq}: {e}")))?;
    let text = |v: &serde_json::Value, k: &str| -> Option<String> {
        v.get(k).and_then(|x| x.as_str()).map(str::to_string)
    };
    let model = b.get("model").cloned().unwrap_or_default();
    if let Some(e) = text(&model, "manifest_error") {
        return Err(bad(
            path,
            format!("record #{seq} holds no file manifest: {e}"),
        ));
    }
    let mut files: Vec<FileEntry> = model
        .get("files")
        .and_then(|f| f.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|f| {
                    Some(FileEntry {
                        name: text(f, "name")?,
                        sha256: text(f, "sha256")?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort_by(|a, b| manifest::canonical_order(&a.name, &b.name));
    let source = text(&model, "source").unwrap_or_default();
    let up = b.get("upstream").cloned().unwrap_or_default();
    let origin = match text(&model, "kind").as_deref() {
        Some("hf") => Origin::Hf {
            repo: text(&model, "key")
                .unwrap_or_default()
                .trim_start_matches("hf://")
                .to_string(),
            revision: text(&model, "revision").unwrap_or_default(),
            commit: text(&model, "commit").unwrap_or_default(),
        },
        Some("mlflow") => Origin::Mlflow {
            uri: source.clone(),
            name: text(&up, "name"),
            alias: text(&up, "alias"),
            version: text(&up, "version"),
            user_id: text(&up, "user_id"),
        },
        _ => Origin::Local,
    };
    let sig = b.get("signature").cloned().unwrap_or_default();
    let signature = match text(&sig, "status").as_deref() {
        Some("verified") => Signature::Verified {
            signer: text(&sig, "signer").unwrap_or_default(),
            root_digest: text(&sig, "signed_root_digest")
                .or_else(|| text(&model, "root_digest"))
                .unwrap_or_default(),
        },
        Some("failed") => Signature::Invalid {
            reason: sig
                .get("reasons")
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default(),
        },
        Some("missing") => Signature::None,
        _ => Signature::NotChecked,
    };
    let (authors, authors_unknown) = match &origin {
        Origin::Hf { .. } if text(&up, "status").as_deref() == Some("fetched") => {
            let mut a: Vec<String> = up
                .get("commits")
                .and_then(|c| c.as_array())
                .map(|c| {
                    c.iter()
                        .flat_map(|c| {
                            c.get("authors")
                                .and_then(|a| a.as_array())
                                .cloned()
                                .unwrap_or_default()
                        })
                        .filter_map(|a| a.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            a.sort();
            a.dedup();
            if a.is_empty() {
                (
                    None,
                    Some("the recorded commits name no Hub user".to_string()),
                )
            } else {
                (Some(a), None)
            }
        }
        Origin::Hf { .. } => (
            None,
            Some(format!(
                "the record holds no new commits ({})",
                text(&up, "reason")
                    .or_else(|| text(&up, "status"))
                    .unwrap_or_default()
            )),
        ),
        Origin::Mlflow {
            user_id: Some(u), ..
        } => (Some(vec![u.clone()]), None),
        Origin::Mlflow { .. } => (None, Some("the record names no MLflow user_id".to_string())),
        Origin::Local => (None, Some("a local folder records no author".to_string())),
    };
    let by = b
        .get("actor")
        .map(|a| {
            let user = text(a, "user").unwrap_or_default();
            match text(a, "host") {
                Some(h) => format!("{user}@{h}"),
                None => user,
            }
        })
        .unwrap_or_default();
    Ok(Snapshot {
        input: format!("{input} ({source})"),
        origin,
        root_digest: text(&model, "root_digest").unwrap_or_default(),
        files,
        tensors: BTreeMap::new(),
        settings: BTreeMap::new(),
        architecture: None,
        signature,
        authors,
        authors_unknown,
        notes: vec![format!(
            "{input}: record of `probity {}` by {by} at {}: files, signature and authors only; tensors and settings are not recorded in the ledger, so they are not compared",
            text(&b, "command").unwrap_or_default(),
            text(&b, "time").unwrap_or_default()
        )],
        root: None,
    })
}
