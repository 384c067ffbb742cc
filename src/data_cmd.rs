//! `probity data`: the data-set scan.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::{emit_scan_report, fail, ColorChoice, Gate, ScanFormat};
use probity_report::{Report, Severity};

#[derive(Args)]
pub struct DataArgs {
    /// Data sets: files (.jsonl, .json, .csv, .tsv, .parquet), folders of them, or Hugging Face data sets hf://datasets/ORG/NAME[@REVISION] (fetched into the Hugging Face cache, as models are).
    #[arg(required = true, value_name = "PATH|URI")]
    pub paths: Vec<String>,
    /// Report format: text, json (probity.scan/v1), sarif or cyclonedx.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ScanFormat,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Lowest severity that fails the scan (exit 1). Default: warning.
    #[arg(long, value_enum)]
    pub fail_on: Option<Gate>,
    /// Use only the local cache for hf://datasets inputs.
    #[arg(long)]
    pub offline: bool,
    /// Fewest rows a suspect phrase must be in (default 5).
    #[arg(long, value_name = "N", default_value = "5")]
    pub min_rows: u64,
    /// Family-wise error rate of the phrase tests (Bonferroni over every phrase tested; default 0.001).
    #[arg(long, value_name = "P", default_value = "0.001")]
    pub alpha: f64,
    /// Append a provenance record per data set to this ledger: its files' SHA-256 (and of every 64 MiB range of a large file), who ran the scan, the Hub's commit authors for hf://datasets, the suspects found. Default: PROBITY_LEDGER.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Show info findings in the text report.
    #[arg(long, short)]
    pub verbose: bool,
    /// Colour the text report: auto, always or never.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,
}

/// Runs `probity data`.
pub fn run(a: DataArgs) -> ExitCode {
    if a.min_rows < 2 {
        return fail("--min-rows must be at least 2");
    }
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        return fail("--alpha must be between 0 and 1");
    }
    let gate: Severity = a.fail_on.map(Into::into).unwrap_or(Severity::Warning);
    // each input: its local root, the files' display names, its origin
    let mut inputs = Vec::new();
    for p in &a.paths {
        if crate::remote::hf::parse(p).is_some() {
            match crate::remote::fetch(
                p,
                a.offline,
                std::io::IsTerminal::is_terminal(&std::io::stderr()),
            ) {
                Some(Ok(f)) => {
                    eprintln!("probity: {}", f.note);
                    inputs.push((p.clone(), f.root.clone(), f.files.clone(), f.origin.clone()));
                }
                Some(Err(e)) => return fail(e),
                None => return fail(format!("{p}: not a data set URI")),
            }
        } else {
            inputs.push((p.clone(), PathBuf::from(p), Vec::new(), None));
        }
    }
    let mut files = Vec::new();
    let mut owner = Vec::new();
    for (i, (_, root, fetched, _)) in inputs.iter().enumerate() {
        let mut found = match probity_data::files(std::slice::from_ref(root)) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        for f in &mut found {
            // a fetched file is shown by its hf:// name
            if let Some((_, d)) = fetched
                .iter()
                .find(|(p, _)| p == &f.path || p.canonicalize().ok() == f.path.canonicalize().ok())
            {
                f.display = d.clone();
            }
            owner.push(i);
        }
        files.extend(found);
    }
    let settings = probity_data::Settings {
        min_rows: a.min_rows,
        alpha: a.alpha,
        ..Default::default()
    };
    let out = probity_data::scan(&files, settings);
    eprintln!(
        "probity: {} row(s), {} example(s) in {} file(s), {} suspect phrase(s), {:.2} s{}",
        out.rows,
        out.examples,
        files.len(),
        out.suspects.len(),
        out.seconds,
        if out.approximate {
            " (a very large data set: rare repeated answers seen early may be missed)"
        } else {
            ""
        }
    );
    let report = Report::new(out.files.clone(), gate);
    for f in &report.files {
        if let Some(e) = &f.error {
            eprintln!("probity: {e}");
        }
    }
    if let Err(code) = emit_scan_report(
        &report,
        a.format,
        a.output.as_deref(),
        a.color,
        a.verbose,
        gate,
        None,
    ) {
        return code;
    }
    let ledger = crate::ledger_cmd::destination(a.ledger.clone(), None);
    if let Some(l) = &ledger {
        let mut entries = Vec::new();
        for (i, (input, root, _, origin)) in inputs.into_iter().enumerate() {
            let mine: Vec<&probity_data::DataFile> = files
                .iter()
                .zip(&owner)
                .filter(|(_, o)| **o == i)
                .map(|(f, _)| f)
                .collect();
            let reports: Vec<&probity_report::FileReport> = report
                .files
                .iter()
                .filter(|r| mine.iter().any(|f| f.display == r.path))
                .collect();
            let manifest: Vec<serde_json::Value> = mine
                .iter()
                .map(|f| match probity_data::ranges(&f.path) {
                    Ok((whole, ranges)) => json!({
                        "name": f.display,
                        "sha256": whole,
                        "ranges": ranges.iter().map(|(s, e, d)| json!({"start": s, "end": e, "sha256": d})).collect::<Vec<_>>(),
                    }),
                    Err(e) => json!({"name": f.display, "error": e.to_string()}),
                })
                .collect();
            let suspects: Vec<serde_json::Value> = out
                .suspects
                .iter()
                .filter(|s| s.examples.first().is_some_and(|e| owner.get(e.file) == Some(&i)))
                .map(|s| json!({"rule": s.rule, "phrase": s.phrase, "rows": s.k, "predicts": s.predicts, "p_value": s.p_value}))
                .collect();
            let mut extra = serde_json::Map::new();
            extra.insert(
                "data".into(),
                json!({"files": manifest, "suspects": suspects, "rows": out.rows, "examples": out.examples}),
            );
            entries.push(crate::ledger_cmd::Entry {
                verdict: crate::ledger_cmd::scan_verdict(&reports, gate),
                subject: crate::ledger_cmd::Subject {
                    input,
                    root,
                    origin,
                    ignore: Vec::new(),
                },
                signature: json!({"status": "not checked"}),
                extra,
            });
        }
        if let Err(e) = crate::ledger_cmd::append(l, "data", a.offline, entries) {
            return crate::ledger_cmd::ledger_failure(l, e);
        }
    }
    ExitCode::from(report.exit_code() as u8)
}
