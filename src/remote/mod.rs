//! Remote sources: models are scanned where pipelines pull them from.
//! The static scan reads a remote file in place with HTTP range requests
//! (only the bytes its analyzers read are transferred; [`range`]); the deep
//! scan, the diff, signatures and the ledger, which need whole files, fetch
//! them into a local cache first. Either way each file is reported under a
//! display name that says where it came from (`hf://org/name@commit/file`).

pub mod hf;
pub mod mlflow;
pub mod objstore;
pub mod range;
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
    /// The files to scan in place (when fetched for a scan in place; then
    /// `files` is empty).
    pub in_place: Vec<range::InPlaceFile>,
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

/// Fetches one remote input whole into the cache; `None` when `input` is a
/// local path.
pub fn fetch(input: &str, offline: bool, progress: bool) -> Option<Result<Fetched, RemoteError>> {
    fetch_as(input, offline, progress, false)
}

/// Fetches one remote input; with `in_place` (and not `offline`), only
/// lists its files, to be read in place (files already in the cache are
/// read there).
fn fetch_as(
    input: &str,
    offline: bool,
    progress: bool,
    in_place: bool,
) -> Option<Result<Fetched, RemoteError>> {
    if let Some(r) = hf::parse(input) {
        return Some(r.and_then(|r| hf::fetch_as(&r, offline, progress, in_place)));
    }
    if let Some(r) = objstore::parse(input) {
        return Some(r.and_then(|r| objstore::fetch_as(&r, offline, in_place)));
    }
    mlflow::parse(input).map(|r| r.and_then(|r| mlflow::fetch_as(&r, offline, progress, in_place)))
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

/// The inputs of a scan, split by where their files are.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Local paths, as given.
    pub local: Vec<PathBuf>,
    /// Remote files fetched whole into the cache, as scan targets.
    pub targets: Vec<Target>,
    /// Remote files to read in place, one group per input.
    pub in_place: Vec<Vec<range::InPlaceFile>>,
    /// One line per remote input.
    pub notes: Vec<String>,
    /// Every input with where its files are.
    pub sources: Vec<Source>,
}

/// Splits inputs into local paths and remote files: fetched whole into the
/// cache, or (with `in_place`) listed to be read in place.
pub fn resolve(
    inputs: &[PathBuf],
    offline: bool,
    progress: bool,
    in_place: bool,
) -> Result<Resolved, RemoteError> {
    let mut out = Resolved::default();
    for input in inputs {
        let s = input.to_string_lossy();
        match fetch_as(&s, offline, progress, in_place) {
            None => {
                out.local.push(input.clone());
                out.sources.push(Source {
                    input: s.into_owned(),
                    root: input.clone(),
                    origin: None,
                    displays: Vec::new(),
                });
            }
            Some(f) => {
                let f = f?;
                out.notes.push(f.note);
                let mut displays: Vec<String> = f.files.iter().map(|(_, d)| d.clone()).collect();
                displays.extend(f.in_place.iter().map(|x| x.display.clone()));
                out.sources.push(Source {
                    input: s.into_owned(),
                    root: f.root.clone(),
                    origin: f.origin.clone(),
                    displays,
                });
                out.targets.extend(
                    f.files
                        .into_iter()
                        .map(|(path, display)| Target { path, display }),
                );
                if !f.in_place.is_empty() {
                    out.in_place.push(f.in_place);
                }
            }
        }
    }
    Ok(out)
}
