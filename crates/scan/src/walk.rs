//! Turns the paths given on the command line into the list of files to scan.
//! Directories are walked recursively in name order; symbolic links inside a
//! walked tree are followed only when they point to a regular file inside the
//! same tree; special files (FIFOs, sockets, devices) are never opened.

use std::path::{Path, PathBuf};

use crate::rules;
use probity_report::{FileReport, Finding};

/// A regular file to scan, with the path shown in the report.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub display: String,
}

#[derive(Debug, Default)]
pub struct Walk {
    pub targets: Vec<Target>,
    /// Reports decided without scanning: missing paths, unreadable
    /// directories, links not followed, special files.
    pub reports: Vec<FileReport>,
}

fn note(display: String, format: &str, finding: Finding) -> FileReport {
    let mut r = FileReport::new(display);
    r.format = format.into();
    r.findings.push(finding);
    r
}

fn error(display: String, msg: String) -> FileReport {
    let mut r = FileReport::new(display);
    r.error = Some(msg);
    r
}

/// The `blobs/` folder of the Hugging Face cache repository whose snapshot
/// contains `dir`, if `dir` is inside one.
pub fn hf_cache_blobs(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find_map(|a| {
        let snapshots = a.parent()?;
        let repo = snapshots.parent()?;
        let name = repo.file_name()?.to_string_lossy();
        let kind = ["models--", "datasets--", "spaces--"];
        (snapshots.file_name()? == "snapshots" && kind.iter().any(|k| name.starts_with(k)))
            .then(|| repo.join("blobs"))
            .and_then(|b| std::fs::canonicalize(b).ok())
    })
}

pub fn collect(inputs: &[PathBuf]) -> Walk {
    let mut w = Walk::default();
    for input in inputs {
        let display = input.display().to_string();
        let meta = match std::fs::metadata(input) {
            Ok(m) => m,
            Err(e) => {
                w.reports.push(error(
                    display.clone(),
                    format!("cannot read {display}: {e}"),
                ));
                continue;
            }
        };
        if meta.is_file() {
            w.targets.push(Target {
                path: input.clone(),
                display,
            });
        } else if meta.is_dir() {
            walk_dir(input, &mut w);
        } else {
            w.reports.push(error(
                display.clone(),
                format!("cannot scan {display}: not a regular file or directory"),
            ));
        }
    }
    w
}

fn walk_dir(root: &Path, w: &mut Walk) {
    let canon_root = match std::fs::canonicalize(root) {
        Ok(c) => c,
        Err(e) => {
            w.reports.push(error(
                root.display().to_string(),
                format!("cannot read {}: {e}", root.display()),
            ));
            return;
        }
    };
    // In a Hugging Face cache snapshot (models--ORG--NAME/snapshots/COMMIT),
    // files are links to the repository's own blobs/ folder: links there
    // are followed too.
    let blobs = hf_cache_blobs(&canon_root);
    let it = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    for entry in it {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let p = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| root.display().to_string());
                let why = e
                    .io_error()
                    .map(|io| io.to_string())
                    .unwrap_or_else(|| e.to_string());
                w.reports
                    .push(error(p.clone(), format!("cannot read {p}: {why}")));
                continue;
            }
        };
        let ft = entry.file_type();
        let display = entry.path().display().to_string();
        if ft.is_dir() {
            continue;
        }
        if ft.is_file() {
            w.targets.push(Target {
                path: entry.path().to_path_buf(),
                display,
            });
            continue;
        }
        if ft.is_symlink() {
            match std::fs::canonicalize(entry.path()) {
                Ok(target)
                    if target.starts_with(&canon_root)
                        || blobs.as_ref().is_some_and(|b| target.starts_with(b)) =>
                {
                    match std::fs::metadata(&target) {
                        Ok(m) if m.is_file() => w.targets.push(Target {
                            path: entry.path().to_path_buf(),
                            display,
                        }),
                        Ok(_) => w.reports.push(note(
                            display,
                            "symlink",
                            Finding::new(
                                &rules::SCN003,
                                format!(
                                    "link to {} (not a regular file) not followed",
                                    target.display()
                                ),
                            ),
                        )),
                        Err(e) => w.reports.push(note(
                            display,
                            "symlink",
                            Finding::new(
                                &rules::SCN003,
                                format!("link target cannot be read: {e}"),
                            ),
                        )),
                    }
                }
                Ok(target) => w.reports.push(note(
                    display,
                    "symlink",
                    Finding::new(
                        &rules::SCN003,
                        format!(
                            "link points outside the scanned tree, to {}; not followed",
                            target.display()
                        ),
                    ),
                )),
                Err(e) => w.reports.push(note(
                    display,
                    "symlink",
                    Finding::new(
                        &rules::SCN003,
                        format!("link cannot be resolved ({e}); not followed"),
                    ),
                )),
            }
            continue;
        }
        w.reports.push(note(
            display,
            "special",
            Finding::new(
                &rules::SCN001,
                "special file (FIFO, socket or device); not opened",
            ),
        ));
    }
}
