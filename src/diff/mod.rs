//! `probity diff OLD NEW`: what changed between two versions of a model,
//! and whether the change is an unexpected update.

pub mod compare;
pub mod headers;
pub mod snapshot;

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use compare::{Changes, Reason};
use snapshot::{Signature, Snapshot};

#[derive(clap::Args)]
pub struct DiffArgs {
    /// The earlier version: a folder (or a single model file), hf://ORG/NAME[@REVISION], an MLflow URI (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH), or ledger:SEQ (record SEQ of the ledger, as `probity log` numbers them: its files, signature status and upstream authors).
    #[arg(value_name = "OLD")]
    pub old: String,
    /// The later version, in the same forms as OLD.
    #[arg(value_name = "NEW")]
    pub new: String,
    /// Report format: text, or json (probity.diff/v1).
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Policy file with [provenance] trusted_authors (default: probity.toml in the current directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Verify each side's sidecar signature (model.sig in the folder) with this ECDSA public key (PEM); without it, a signature is only checked against the files.
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,
    /// Use only the local cache for remote inputs (authors are then unknown).
    #[arg(long)]
    pub offline: bool,
    /// Skip the spectral summary of ΔW.
    #[arg(long)]
    pub no_spectral: bool,
    /// The ledger that ledger:SEQ inputs come from. Default: PROBITY_LEDGER, else `ledger` in the [provenance] table of the config.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
}

/// One side of the diff, as reported.
#[derive(Serialize)]
struct Side<'a> {
    input: &'a str,
    origin: &'a snapshot::Origin,
    root_digest: &'a str,
    files: usize,
    tensors: usize,
    architecture: &'a Option<String>,
    signature: &'a Signature,
    authors: &'a Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authors_unknown: Option<&'a String>,
}

impl<'a> Side<'a> {
    fn of(s: &'a Snapshot) -> Side<'a> {
        Side {
            input: &s.input,
            origin: &s.origin,
            root_digest: &s.root_digest,
            files: s.files.len(),
            tensors: s.tensors.len(),
            architecture: &s.architecture,
            signature: &s.signature,
            authors: &s.authors,
            authors_unknown: s.authors_unknown.as_ref(),
        }
    }
}

#[derive(Serialize)]
struct Summary {
    identical: bool,
    files_added: usize,
    files_removed: usize,
    files_changed: usize,
    tensors_added: usize,
    tensors_removed: usize,
    tensors_reshaped: usize,
    tensors_retyped: usize,
    settings_changed: usize,
    unexpected_update: bool,
}

/// The ΔW spectral summary, or why there is none.
#[derive(Serialize, Default)]
pub struct Spectral {
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    tool: probity_report::Tool,
    old: Side<'a>,
    new: Side<'a>,
    summary: Summary,
    files: &'a compare::Files,
    tensors: &'a compare::Tensors,
    settings: &'a [compare::SettingChange],
    spectral: &'a Spectral,
    unexpected_update: &'a [Reason],
    trusted_authors: &'a [String],
    notes: Vec<String>,
}

/// The ΔW analysis of NEW against OLD, when both load as the same
/// architecture.
#[cfg(feature = "deep")]
fn spectral(old: &Snapshot, new: &Snapshot, changes: &Changes) -> Spectral {
    let not = |r: String| Spectral {
        done: false,
        reason: Some(r),
        summary: None,
    };
    let (Some(a), Some(b)) = (&old.architecture, &new.architecture) else {
        return not("the architecture of one side is unknown (no config.json model_type or GGUF general.architecture)".into());
    };
    if a != b {
        return not(format!("different architectures ({a} and {b})"));
    }
    if old.tensors.is_empty() || new.tensors.is_empty() {
        return not("one side has no safetensors or GGUF weights".into());
    }
    let weights_changed = changes
        .files
        .added
        .iter()
        .chain(&changes.files.removed)
        .map(|f| f.name.as_str())
        .chain(changes.files.changed.iter().map(|f| f.name.as_str()))
        .any(compare::is_weight_file);
    if !weights_changed {
        return not("no weight file changed".into());
    }
    let (Some(ro), Some(rn)) = (&old.root, &new.root) else {
        return not("one side is a record without files".into());
    };
    let opts = probity_deep::spectral::SpectralOptions::default();
    match probity_deep::spectral::analyse(rn, Some(ro), &opts) {
        Err(e) => not(format!("the weights could not be analysed: {e}")),
        Ok(r) => {
            let s = &r.summary;
            let tokens = |c: &[probity_deep::spectral::TokenCandidate]| -> Vec<String> {
                c.iter().take(5).map(|t| t.token.clone()).collect()
            };
            Spectral {
                done: true,
                reason: None,
                summary: Some(serde_json::json!({
                    "device": r.device.backend,
                    "layers_compared": s.layers_compared,
                    "shape_mismatches": s.shape_mismatches.len(),
                    "most_concentrated": s.most_concentrated,
                    "max_top1_energy": s.max_top1_energy,
                    "max_top1_energy_z": s.max_top1_energy_z,
                    "median_rel_delta": s.median_rel_delta,
                    "max_rel_delta_z": s.max_rel_delta_z,
                    "max_embedding_row_z": s.max_embedding_row_z,
                    "trigger_tokens": tokens(&r.candidates.trigger_tokens),
                    "target_tokens": tokens(&r.candidates.target_tokens),
                })),
            }
        }
    }
}

#[cfg(not(feature = "deep"))]
fn spectral(_: &Snapshot, _: &Snapshot, _: &Changes) -> Spectral {
    Spectral {
        done: false,
        reason: Some("this build has no deep feature (static scanner only)".into()),
        summary: None,
    }
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("probity: {msg}");
    ExitCode::from(2)
}

/// Runs `probity diff`.
pub fn run(args: DiffArgs) -> ExitCode {
    let cfg = match crate::load_config(args.config.clone()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let key = match &args.key {
        Some(k) => match probity_provenance::read_public_key(k) {
            Ok(k) => Some(k),
            Err(e) => return fail(e.lines().join("; ")),
        },
        None => None,
    };
    // two versions of a data set: rows and suspect phrases
    if std::path::Path::new(&args.old).exists()
        && probity_data::is_data_set(std::path::Path::new(&args.old))
        && probity_data::is_data_set(std::path::Path::new(&args.new))
    {
        return data_diff(&args);
    }
    let mut snaps = Vec::new();
    let mut notes = Vec::new();
    let ledger = crate::ledger_cmd::destination(args.ledger.clone(), cfg.provenance.ledger.clone());
    for input in [&args.old, &args.new] {
        if let Some(seq) = snapshot::ledger_seq(input) {
            match snapshot::from_ledger(input, ledger.as_deref(), seq) {
                Ok(s) => snaps.push(s),
                Err(e) => return fail(e),
            }
            continue;
        }
        let (root, origin, note) = match snapshot::locate(input, args.offline) {
            Ok(x) => x,
            Err(e) => return fail(e),
        };
        notes.extend(note);
        let mut s = match snapshot::build(input, &root, origin, key.as_ref()) {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        snapshot::find_authors(&mut s, args.offline);
        snaps.push(s);
    }
    let new = snaps.pop().unwrap_or_else(|| unreachable!());
    let old = snaps.pop().unwrap_or_else(|| unreachable!());
    let changes = compare::compare(&old, &new);
    let trusted = &cfg.provenance.trusted_authors;
    let reasons = compare::unexpected_update(&old, &new, &changes, trusted);
    if trusted.is_empty() {
        notes.push("no [provenance] trusted_authors: authors not checked".into());
    } else if let Some(why) = &new.authors_unknown {
        notes.push(format!("author unknown for NEW ({why}): not checked"));
    }
    let spec = if args.no_spectral {
        Spectral {
            done: false,
            reason: Some("skipped (--no-spectral)".into()),
            summary: None,
        }
    } else {
        spectral(&old, &new, &changes)
    };
    for s in [&old, &new] {
        notes.extend(s.notes.iter().cloned());
    }
    let report = Report {
        schema: compare::SCHEMA,
        tool: probity_report::Tool::default(),
        old: Side::of(&old),
        new: Side::of(&new),
        summary: Summary {
            identical: changes.is_empty(),
            files_added: changes.files.added.len(),
            files_removed: changes.files.removed.len(),
            files_changed: changes.files.changed.len(),
            tensors_added: changes.tensors.added.len(),
            tensors_removed: changes.tensors.removed.len(),
            tensors_reshaped: changes.tensors.reshaped.len(),
            tensors_retyped: changes.tensors.retyped.len(),
            settings_changed: changes.settings.len(),
            unexpected_update: !reasons.is_empty(),
        },
        files: &changes.files,
        tensors: &changes.tensors,
        settings: &changes.settings,
        spectral: &spec,
        unexpected_update: &reasons,
        trusted_authors: trusted,
        notes,
    };
    let body = match args.format {
        crate::Format::Json => {
            let mut s = serde_json::to_string_pretty(&report).unwrap_or_default();
            s.push('\n');
            s
        }
        crate::Format::Text => text(&report),
    };
    match &args.output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, body.as_bytes()) {
                return fail(format!("{}: cannot write: {e}", p.display()));
            }
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(body.as_bytes()).and_then(|_| out.flush());
        }
    }
    ExitCode::from(if reasons.is_empty() { 0 } else { 1 })
}

/// One line of a value (templates span lines): the first 100 characters.
fn line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() > 100 {
        format!("{}…", flat.chars().take(100).collect::<String>())
    } else {
        flat
    }
}

fn shape(s: &[u64]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn side_line(s: &Side<'_>) -> String {
    let origin = match s.origin {
        snapshot::Origin::Local => String::new(),
        snapshot::Origin::Hf { commit, .. } => format!(" (commit {commit})"),
        snapshot::Origin::Mlflow { version, .. } => version
            .as_ref()
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default(),
    };
    let authors = match (s.authors, s.authors_unknown) {
        (Some(a), _) => format!("authors {}", a.join(", ")),
        (None, Some(why)) => format!("author unknown ({why})"),
        (None, None) => "author unknown".into(),
    };
    format!(
        "{}{origin}: {} files, {} tensors, root digest sha256:{}, architecture {}, {}, {authors}",
        s.input,
        s.files,
        s.tensors,
        s.root_digest,
        s.architecture.as_deref().unwrap_or("unknown"),
        s.signature.describe()
    )
}

fn text(r: &Report<'_>) -> String {
    let mut o = String::new();
    let s = &r.summary;
    let verdict = if r.unexpected_update.is_empty() {
        "no unexpected update".to_string()
    } else {
        format!(
            "UNEXPECTED UPDATE ({} reason{})",
            r.unexpected_update.len(),
            if r.unexpected_update.len() == 1 {
                ""
            } else {
                "s"
            }
        )
    };
    if s.identical {
        o.push_str(&format!("probity diff: no changes; {verdict}\n"));
    } else {
        o.push_str(&format!(
            "probity diff: files {} added, {} removed, {} changed; tensors {} added, {} removed, {} reshaped, {} retyped; {} settings changed; {verdict}\n",
            s.files_added, s.files_removed, s.files_changed, s.tensors_added, s.tensors_removed,
            s.tensors_reshaped, s.tensors_retyped, s.settings_changed
        ));
    }
    o.push_str(&format!("old: {}\n", side_line(&r.old)));
    o.push_str(&format!("new: {}\n", side_line(&r.new)));
    if !r.unexpected_update.is_empty() {
        o.push_str("\nunexpected update:\n");
        for x in r.unexpected_update {
            o.push_str(&format!("  ! {}: {}\n", x.code, x.message));
        }
    }
    let f = r.files;
    if !(f.added.is_empty() && f.removed.is_empty() && f.changed.is_empty()) {
        o.push_str("\nfiles:\n");
        for x in &f.added {
            o.push_str(&format!("  + {} sha256:{}\n", x.name, x.sha256));
        }
        for x in &f.removed {
            o.push_str(&format!("  - {} sha256:{}\n", x.name, x.sha256));
        }
        for x in &f.changed {
            o.push_str(&format!(
                "  ~ {} sha256:{} -> sha256:{}\n",
                x.name, x.old_sha256, x.new_sha256
            ));
        }
    }
    let t = r.tensors;
    if !(t.added.is_empty()
        && t.removed.is_empty()
        && t.reshaped.is_empty()
        && t.retyped.is_empty())
    {
        o.push_str("\ntensors:\n");
        for x in &t.added {
            o.push_str(&format!(
                "  + {} {} {} ({})\n",
                x.name,
                x.dtype,
                shape(&x.shape),
                x.file
            ));
        }
        for x in &t.removed {
            o.push_str(&format!(
                "  - {} {} {} ({})\n",
                x.name,
                x.dtype,
                shape(&x.shape),
                x.file
            ));
        }
        for x in &t.reshaped {
            o.push_str(&format!(
                "  ~ {} shape {} -> {}\n",
                x.name,
                shape(&x.old_shape),
                shape(&x.new_shape)
            ));
        }
        for x in &t.retyped {
            o.push_str(&format!(
                "  ~ {} dtype {} -> {}\n",
                x.name, x.old_dtype, x.new_dtype
            ));
        }
    }
    if !r.settings.is_empty() {
        o.push_str("\nsecurity-relevant settings:\n");
        for x in r.settings {
            let v = |s: &Option<String>| line(s.as_deref().unwrap_or(""));
            match x.change {
                "added" => o.push_str(&format!("  + {}: {}\n", x.key, v(&x.new))),
                "removed" => o.push_str(&format!("  - {}: {}\n", x.key, v(&x.old))),
                _ => o.push_str(&format!("  ~ {}: {} -> {}\n", x.key, v(&x.old), v(&x.new))),
            }
        }
    }
    o.push_str("\nspectral ΔW: ");
    match (&r.spectral.summary, &r.spectral.reason) {
        (Some(sm), _) => o.push_str(&format!(
            "{} layers compared on {}, max top-1 energy {:.3} (z {:.2}), median relative change {:.4}, most concentrated: {}\n",
            sm["layers_compared"],
            sm["device"].as_str().unwrap_or("?"),
            sm["max_top1_energy"].as_f64().unwrap_or(0.0),
            sm["max_top1_energy_z"].as_f64().unwrap_or(0.0),
            sm["median_rel_delta"].as_f64().unwrap_or(0.0),
            sm["most_concentrated"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        )),
        (None, Some(why)) => o.push_str(&format!("not done: {why}\n")),
        (None, None) => o.push_str("not done\n"),
    }
    if !r.notes.is_empty() {
        o.push_str("\nnotes:\n");
        for n in &r.notes {
            o.push_str(&format!("  {n}\n"));
        }
    }
    o
}

/// `probity diff` of two versions of a data set.
fn data_diff(args: &DiffArgs) -> ExitCode {
    let files = |p: &str| probity_data::files(&[PathBuf::from(p)]);
    let (old, new) = match (files(&args.old), files(&args.new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let d = match probity_data::diff(&old, &new) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let reasons: Vec<serde_json::Value> = d
        .suspects_new
        .iter()
        .map(|p| {
            serde_json::json!({
                "code": "new-suspect-phrase",
                "message": format!("the new version has a suspect phrase «{p}» (probity data)"),
            })
        })
        .collect();
    let text = match args.format {
        crate::Format::Json => {
            let v = serde_json::json!({
                "schema": "probity.data-diff/v1",
                "old": args.old,
                "new": args.new,
                "rows": d,
                "unexpected_update": reasons,
            });
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
        crate::Format::Text => {
            let mut s = format!(
                "data set {} → {}\nrows     {} → {}: {} added, {} removed, {} changed (same prompt, new answer), {} unchanged\n",
                args.old, args.new, d.old_rows, d.new_rows, d.added, d.removed, d.changed, d.unchanged
            );
            for (what, ex) in [
                ("added", &d.added_examples),
                ("changed", &d.changed_examples),
            ] {
                if !ex.is_empty() {
                    let rows: Vec<String> = ex.iter().map(|(f, r)| format!("{f}:{r}")).collect();
                    s.push_str(&format!("{what:8} e.g. {}\n", rows.join(", ")));
                }
            }
            s.push_str(&format!(
                "suspect phrases: new {:?}, gone {:?}, kept {:?}\n",
                d.suspects_new, d.suspects_gone, d.suspects_kept
            ));
            s.push_str(if reasons.is_empty() {
                "verdict  no unexpected update\n"
            } else {
                "verdict  UNEXPECTED UPDATE: a new suspect phrase\n"
            });
            s
        }
    };
    match &args.output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, text) {
                return fail(format!("cannot write {}: {e}", p.display()));
            }
        }
        None => print!("{text}"),
    }
    if reasons.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
