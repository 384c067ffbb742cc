//! Probity: tells an ML team whether a model is safe to ship.
//!
//! The static stage ([`scan`]) reads model files byte by byte — never loading
//! or executing them — and reports [`finding::Finding`]s with stable rule IDs
//! (see [`rules`]). The CLI in `src/main.rs` is a thin shell over this library.

pub mod config;
pub mod deep;
pub mod finding;
pub mod limits;
pub mod remote;
pub mod render;
pub mod rules;
pub mod scan;

use std::path::PathBuf;

use rayon::prelude::*;

use finding::FileReport;
use scan::walk::Walk;
use scan::Ctx;

/// Scans the files of a walk in parallel (on the current rayon pool); returns
/// one report per file, the walk's own reports included (unsorted; see
/// [`finding::Report::new`]). `progress` is called once per finished file.
pub fn scan_walk(
    walk: Walk,
    ctx: &Ctx,
    progress: &(dyn Fn(&FileReport) + Sync),
) -> Vec<FileReport> {
    let mut reports = walk.reports;
    let scanned: Vec<FileReport> = walk
        .targets
        .par_iter()
        .map(|t| {
            let r = scan::scan_file(&t.path, t.display.clone(), ctx);
            progress(&r);
            r
        })
        .collect();
    reports.extend(scanned);
    reports
}

/// Walks and scans files and directories.
pub fn scan_paths(paths: &[PathBuf], ctx: &Ctx) -> Vec<FileReport> {
    scan_walk(scan::walk::collect(paths), ctx, &|_| {})
}
