//! Remote sources: models are scanned where pipelines pull them from.
//! A remote input is fetched into a local cache first; the scan then reads
//! the cached files like any others, under display names that say where they
//! came from (`hf://org/name@commit/file`).

pub mod hf;
pub mod mlflow;
pub mod watchdog;

use std::path::PathBuf;

use probity_scan::walk::Target;

/// Why a remote input could not be fetched (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The input is malformed.
    #[error("{0}")]
    Usage(String),
    /// The source refused or failed.
    #[error("{0}")]
    Fetch(String),
}

/// The local files of one fetched remote input.
#[derive(Debug, Default)]
pub struct Fetched {
    /// (local path, display name)
    pub files: Vec<(PathBuf, String)>,
    /// One line describing what was fetched.
    pub note: String,
    /// The local folder holding the files in the repository's layout (a
    /// Hugging Face cache snapshot), for loaders that take a folder.
    #[cfg_attr(not(feature = "deep"), allow(dead_code))]
    pub root: PathBuf,
    /// What the input resolved to (commit, model version), for `probity diff`.
    pub origin: Origin,
}

/// Where a fetched model came from, as its source resolved it.
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

/// Whether a path a server lists is safe to join to a cache folder: relative,
/// no empty, `.` or `..` components, no backslashes.
pub fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Fetches one remote input; `None` when `input` is a local path.
/// `offline`: only the local cache.
pub fn fetch(input: &str, offline: bool, progress: bool) -> Option<Result<Fetched, RemoteError>> {
    if let Some(r) = hf::parse(input) {
        return Some(r.and_then(|r| hf::fetch(&r, offline, progress)));
    }
    mlflow::parse(input).map(|r| r.and_then(|r| mlflow::fetch(&r, offline, progress)))
}

/// A model folder for the deep scan: a local path as is, or a remote
/// repository fetched into the cache (its snapshot folder).
#[cfg(feature = "deep")]
pub fn model_folder(
    input: &std::path::Path,
    offline: bool,
) -> Result<(PathBuf, Option<String>), RemoteError> {
    match fetch(&input.to_string_lossy(), offline, false) {
        None => Ok((input.to_path_buf(), None)),
        Some(f) => {
            let f = f?;
            Ok((f.root, Some(f.note)))
        }
    }
}

/// Local paths, fetched remote files (as scan targets), and one note per
/// remote input.
pub type Resolved = (Vec<PathBuf>, Vec<Target>, Vec<String>);

/// Splits inputs into local paths and fetched remote files (as scan
/// targets), with one note per remote input.
pub fn resolve(inputs: &[PathBuf], offline: bool, progress: bool) -> Result<Resolved, RemoteError> {
    let mut local = Vec::new();
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    for input in inputs {
        let s = input.to_string_lossy();
        match fetch(&s, offline, progress) {
            None => local.push(input.clone()),
            Some(f) => {
                let f = f?;
                notes.push(f.note);
                targets.extend(
                    f.files
                        .into_iter()
                        .map(|(path, display)| Target { path, display }),
                );
            }
        }
    }
    Ok((local, targets, notes))
}
