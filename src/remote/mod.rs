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
    /// What the source said about the model, for the ledger.
    pub origin: Option<Origin>,
}

/// Where a fetched model came from, as the ledger records it.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A Hugging Face repository at a revision, resolved to a commit.
    Hf {
        repo: String,
        revision: String,
        commit: String,
    },
    /// An MLflow model version or run: `key` names the model across
    /// versions (`models:/NAME`, or the run URI), `revision` this one
    /// (`version 3`, `run ID`), `details` what the tracking server said
    /// (creator, times, source run and its user) or why it was not asked.
    Mlflow {
        key: String,
        revision: Option<String>,
        details: serde_json::Value,
    },
}

/// One scan input and where its files are, for the ledger.
#[derive(Debug, Clone)]
pub struct Source {
    /// The input as given.
    pub input: String,
    /// The local file or folder holding its files.
    pub root: PathBuf,
    pub origin: Option<Origin>,
    /// The display names of its files in the report (remote inputs).
    pub displays: Vec<String>,
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
) -> Result<(PathBuf, Option<String>, Option<Origin>), RemoteError> {
    match fetch(&input.to_string_lossy(), offline, false) {
        None => Ok((input.to_path_buf(), None, None)),
        Some(f) => {
            let f = f?;
            Ok((f.root, Some(f.note), f.origin))
        }
    }
}

/// Local paths, fetched remote files (as scan targets), one note per
/// remote input, and every input with where its files are.
pub type Resolved = (Vec<PathBuf>, Vec<Target>, Vec<String>, Vec<Source>);

/// Splits inputs into local paths and fetched remote files (as scan
/// targets), with one note per remote input.
pub fn resolve(inputs: &[PathBuf], offline: bool, progress: bool) -> Result<Resolved, RemoteError> {
    let mut local = Vec::new();
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    let mut sources = Vec::new();
    for input in inputs {
        let s = input.to_string_lossy();
        match fetch(&s, offline, progress) {
            None => {
                local.push(input.clone());
                sources.push(Source {
                    input: s.into_owned(),
                    root: input.clone(),
                    origin: None,
                    displays: Vec::new(),
                });
            }
            Some(f) => {
                let f = f?;
                notes.push(f.note);
                sources.push(Source {
                    input: s.into_owned(),
                    root: f.root.clone(),
                    origin: f.origin.clone(),
                    displays: f.files.iter().map(|(_, d)| d.clone()).collect(),
                });
                targets.extend(
                    f.files
                        .into_iter()
                        .map(|(path, display)| Target { path, display }),
                );
            }
        }
    }
    Ok((local, targets, notes, sources))
}
