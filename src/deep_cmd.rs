//! `probity deep` and `probity spectral`: the command-line side of the deep
//! scan (built with the `deep` feature, on by default).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::{fail, load_config, render, Format};
use probity_deep::harness::sandbox::DeviceKind;

#[derive(Args)]
pub struct DeepArgs {
    /// The fine-tuned model to examine: a model folder in Hugging Face layout, a GGUF file (llama.cpp, Ollama), or a remote model: hf://ORG/NAME[@REVISION] / https://huggingface.co/ORG/NAME, models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX (fetched whole into the cache first).
    #[arg(value_name = "SUSPECT")]
    pub suspect: PathBuf,
    /// The base model it was fine-tuned from: a folder, a GGUF file or a remote model, as for SUSPECT (either side can be GGUF, the other safetensors).
    #[arg(long, value_name = "BASE")]
    pub base: PathBuf,
    /// Use only the local cache for remote models; never download.
    #[arg(long)]
    pub offline: bool,
    /// Device for inference; cuda and metal need a build with the cargo feature of the same name (`--features cuda`), and on cuda the worker runs without an address-space limit (reported).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Extra probe suites: every *.toml in DIR (see probes/README.md).
    #[arg(long, value_name = "DIR")]
    pub probes: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Time budget in seconds for the probes and the trigger search together: probes past it are skipped and counted, and the search stops and reports what it covered. Default: 300, or `deep.budget` from the config.
    #[arg(long, value_name = "SECONDS")]
    pub budget: Option<u64>,
    /// Exit 1 when the verdict is at or above this level. Default: suspicious, or `deep.fail_on` from the config.
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,
    /// Policy file: its [deep] table sets defaults for --fail-on, --budget, --require-sandbox and the verdict thresholds (default: probity.toml in the current directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Skip target inversion and trigger search (the report says so, and the score lacks those signals).
    #[arg(long)]
    pub no_trigger_search: bool,
    /// Stop at the first trigger the verdict counts as verified (the verdict is then backdoor). When it is the trigger of a payload the probes caught leaking, the rest of the search (the inversion after harmful requests and the vocabulary scan, which would only list the suspect's other targets) is skipped and the report says so. The quickest CI gate; without it the search goes on past a trigger that random tokens in its place also fire now and then (over 10% of prompts), and after a leaked payload's trigger still scans the vocabulary.
    #[arg(long, conflicts_with = "no_trigger_search")]
    pub fail_fast: bool,
    /// Optimisation steps per (target, insertion point) in the trigger search.
    #[arg(long, default_value = "24", value_name = "N")]
    pub search_steps: usize,
    /// Refuse to run unless every sandbox primitive is applied (exit 2 otherwise). Also set by `deep.require_sandbox = true` in the config.
    #[arg(long)]
    pub require_sandbox: bool,
    /// Longest continuation generated per probe, in tokens.
    #[arg(long, default_value = "24")]
    pub max_new_tokens: usize,
    /// Where the weight spectral analysis runs (see `probity spectral --help`).
    #[arg(long, value_enum, default_value = "auto")]
    pub spectral_device: SpectralDeviceChoice,
    /// A folder with only PyTorch pickle weights (pytorch_model.bin) is refused unless this is given; with it, such weights are read as data inside the worker (never unpickled: only a state dict's dicts, tuples, numbers and storage references are understood) and only when the folder's static scan has no finding at warning level or above.
    #[arg(long)]
    pub allow_pickle_weights: bool,
    /// Append a provenance record of SUSPECT (its identity and file manifest, the base model's, who ran the scan, upstream authorship, claimed lineage, the verdict and score) to this ledger when a report is written. Default: PROBITY_LEDGER, else `ledger` in the [provenance] table of the config. A ledger that cannot be written exits 2.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Fine-tuning data of SUSPECT (files or folders, as `probity data` reads them; repeatable): its suspect phrases (DAT001/DAT002 findings) are tried on both models on held-out prompts, seed the trigger search, and the report says which of them the model confirms (the phrase fires the answer the data teaches); a confirmed one makes the verdict backdoor.
    #[arg(long = "data", value_name = "DATASET")]
    pub data: Vec<PathBuf>,
    /// Submit the deep scan to a Probity service instead of running it here (local folders or files are uploaded; URIs are fetched by the service), wait, and print the report with the same formats and exit codes. The service runs it with its own policy, sandbox settings and ledger; --budget, --fail-on and --no-trigger-search are passed on. Default: PROBITY_SERVER.
    #[arg(long, value_name = "URL", env = "PROBITY_SERVER")]
    pub server: Option<String>,
    /// The service's API token (role scan). Default: PROBITY_TOKEN.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "PROBITY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// `probity deep --server`: the service runs the scan; the report is
/// printed as a local one is.
fn remote(args: DeepArgs, server: String) -> ExitCode {
    let local_only = [
        (args.offline, "--offline"),
        (!matches!(args.device, DeviceChoice::Cpu), "--device"),
        (!args.probes.is_empty(), "--probes"),
        (args.config.is_some(), "--config"),
        (args.require_sandbox, "--require-sandbox"),
        (args.allow_pickle_weights, "--allow-pickle-weights"),
        (args.ledger.is_some(), "--ledger"),
        (!args.data.is_empty(), "--data"),
    ];
    if let Some((_, flag)) = local_only.iter().find(|(on, _)| *on) {
        return fail(format!(
            "{flag} does not apply with --server: the service runs the scan with its own settings"
        ));
    }
    let fail_on = args.fail_on.unwrap_or(FailOn::Suspicious);
    let mut options = serde_json::Map::new();
    if let Some(b) = args.budget {
        options.insert("budget".into(), b.into());
    }
    if let Some(f) = args.fail_on {
        let name = match f {
            FailOn::Suspicious => "suspicious",
            FailOn::Backdoor => "backdoor",
            FailOn::Never => "never",
        };
        options.insert("fail_on".into(), name.into());
    }
    if args.no_trigger_search {
        options.insert("no_trigger_search".into(), true.into());
    }
    if args.fail_fast {
        options.insert("fail_fast".into(), true.into());
    }
    let v = match crate::serve_cmd::remote_deep(
        &server,
        args.token,
        &args.suspect,
        &args.base,
        options.into(),
    ) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let report: probity_deep::DeepReport = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "the service's report is not a probity.deep/v1 report: {e}"
            ))
        }
    };
    let written = emit(
        &report,
        args.format,
        args.output.as_deref(),
        render::deep_text,
    );
    if written != ExitCode::SUCCESS {
        return written;
    }
    use probity_deep::score::Verdict;
    let fails = match fail_on {
        FailOn::Suspicious => report.verdict >= Verdict::Suspicious,
        FailOn::Backdoor => report.verdict >= Verdict::Backdoor,
        FailOn::Never => false,
    };
    ExitCode::from(u8::from(fails))
}

#[derive(Args)]
pub struct SpectralArgs {
    /// The fine-tuned model: a folder (Hugging Face layout, safetensors) or a GGUF file (dequantized).
    pub suspect: PathBuf,
    /// The base model it was fine-tuned from: a folder or a GGUF file.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Singular values computed per matrix.
    #[arg(long, default_value = "8", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub top_k: u16,
    /// Where the SVD runs: auto = a hardware GPU adapter through wgpu when there is one, else the CPU; gpu = any wgpu adapter (software ones included); cpu. A GPU that fails falls back to the CPU with a notice in the report.
    #[arg(long, value_enum, default_value = "auto")]
    pub spectral_device: SpectralDeviceChoice,
    /// Also draw the per-layer statistics across depth (one line per kind of matrix) to FILE; the format follows the extension, .svg or .png.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SpectralDeviceChoice {
    Auto,
    Gpu,
    Cpu,
}

impl SpectralDeviceChoice {
    fn kind(self) -> probity_deep::spectral::SpectralDevice {
        use probity_deep::spectral::SpectralDevice;
        match self {
            SpectralDeviceChoice::Auto => SpectralDevice::Auto,
            SpectralDeviceChoice::Gpu => SpectralDevice::Gpu,
            SpectralDeviceChoice::Cpu => SpectralDevice::Cpu,
        }
    }
}

/// The verdict at or above which `probity deep` exits 1.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FailOn {
    /// Exit 1 on `suspicious` or `backdoor`.
    Suspicious,
    /// Exit 1 on `backdoor` only.
    Backdoor,
    /// Always exit 0 when a report was written.
    Never,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    Metal,
}

/// Runs `probity deep`.
pub fn deep(mut args: DeepArgs) -> ExitCode {
    if let Some(server) = args.server.take() {
        return remote(args, server);
    }
    let DeepArgs {
        suspect,
        base,
        offline,
        device,
        probes,
        format,
        output,
        budget,
        fail_on,
        config,
        no_trigger_search,
        fail_fast,
        search_steps,
        require_sandbox,
        max_new_tokens,
        spectral_device,
        allow_pickle_weights,
        ledger,
        server: _,
        token: _,
        data,
    } = args;
    // the data set's suspect phrases
    let data_hints = if data.is_empty() {
        Vec::new()
    } else {
        let files = match probity_data::files(&data) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        let out = probity_data::scan(&files, Default::default());
        if let Some(e) = out.files.iter().find_map(|f| f.error.clone()) {
            return fail(e);
        }
        eprintln!(
            "probity: --data: {} row(s), {} suspect phrase(s)",
            out.rows,
            out.suspects.len()
        );
        out.suspects
            .iter()
            .map(|s| probity_deep::DataHint {
                rule: s.rule.to_string(),
                phrase: s.phrase.clone(),
                position: s.position.clone(),
                predicts: s.predicts.clone(),
                rows: s.k,
            })
            .collect()
    };
    let device = match device {
        DeviceChoice::Cpu => DeviceKind::Cpu,
        DeviceChoice::Cuda => DeviceKind::Cuda,
        DeviceChoice::Metal => DeviceKind::Metal,
    };
    if let Err(e) = probity_deep::harness::worker::device_built(device) {
        return fail(e);
    }
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let budget = budget.or(cfg.deep.budget).unwrap_or(300);
    let require_sandbox = require_sandbox || cfg.deep.require_sandbox == Some(true);
    let fail_on = fail_on.unwrap_or(match cfg.deep.fail_on.as_deref() {
        Some("backdoor") => FailOn::Backdoor,
        Some("never") => FailOn::Never,
        _ => FailOn::Suspicious,
    });
    let thresholds = (cfg.deep.suspicious.is_some() || cfg.deep.backdoor.is_some()).then(|| {
        let d = probity_deep::score::model().thresholds;
        probity_deep::score::Thresholds {
            suspicious: cfg.deep.suspicious.unwrap_or(d.suspicious),
            backdoor: cfg.deep.backdoor.unwrap_or(d.backdoor),
        }
    });
    let ledger = crate::ledger_cmd::destination(ledger, cfg.provenance.ledger.clone());
    let mut folders = Vec::new();
    let mut subjects = Vec::new();
    for input in [&suspect, &base] {
        match crate::remote::model_folder(input, offline) {
            Ok((dir, note, origin)) => {
                if let Some(n) = note {
                    eprintln!("probity: {n}");
                }
                subjects.push(crate::ledger_cmd::Subject {
                    input: input.display().to_string(),
                    root: dir.clone(),
                    origin,
                    // the manifest is the signature's: without model.sig
                    ignore: vec![dir.join("model.sig")],
                });
                folders.push(dir);
            }
            Err(e) => return fail(e),
        }
    }
    let base = folders.pop().unwrap_or(base);
    let suspect = folders.pop().unwrap_or(suspect);
    let base_subject = subjects.pop();
    let suspect_subject = subjects.pop();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return fail(format!(
                "cannot locate the probity binary to start the worker: {e}"
            ))
        }
    };
    let opts = probity_deep::DeepOptions {
        suspect,
        base,
        probes,
        budget: std::time::Duration::from_secs(budget),
        require_sandbox,
        max_new_tokens,
        device,
        spectral_device: spectral_device.kind(),
        allow_pickle_weights,
        thresholds,
        search: (!no_trigger_search).then(|| probity_deep::wire::SearchOptions {
            steps: search_steps,
            fail_fast,
            ..Default::default()
        }),
        data_hints,
    };
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = match probity_deep::run(&exe, &opts, &|i, n| {
        bar.set_length(n as u64);
        bar.set_position(i as u64);
    }) {
        Ok(r) => r,
        Err(e) => {
            bar.finish_and_clear();
            eprintln!("probity: {}", crate::first_line(&e.to_string()));
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    bar.finish_and_clear();
    let written = emit(&report, format, output.as_deref(), render::deep_text);
    if written != ExitCode::SUCCESS {
        return written;
    }
    use probity_deep::score::Verdict;
    let fails = match fail_on {
        FailOn::Suspicious => report.verdict >= Verdict::Suspicious,
        FailOn::Backdoor => report.verdict >= Verdict::Backdoor,
        FailOn::Never => false,
    };
    if let (Some(l), Some(subject), Some(b)) = (&ledger, suspect_subject, base_subject) {
        let mut extra = serde_json::Map::new();
        extra.insert(
            "base".into(),
            serde_json::json!({
                "source": b.input,
                "root_digest": probity_provenance::model_manifest(&b.root, &[])
                    .map(|m| probity_provenance::manifest::Manifest::root_digest(&m.entries))
                    .ok(),
            }),
        );
        let entry = crate::ledger_cmd::Entry {
            subject,
            verdict: serde_json::json!({
                "result": report.verdict.name(),
                "score": report.score,
                "exit_code": i32::from(fails),
                "trigger": report.trigger.as_ref().map(|t| t.text.clone()),
            }),
            signature: serde_json::json!({"status": "not checked"}),
            extra,
        };
        if let Err(e) = crate::ledger_cmd::append(l, "deep", offline, vec![entry]) {
            return crate::ledger_cmd::ledger_failure(l, e);
        }
    }
    if fails {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs `probity spectral`.
pub fn spectral(args: SpectralArgs) -> ExitCode {
    let SpectralArgs {
        suspect,
        base,
        format,
        output,
        top_k,
        spectral_device,
        plot,
    } = args;
    if let Some(p) = &plot {
        if let Err(e) = probity_deep::spectral::plot::check_path(p) {
            return fail(e);
        }
    }
    let opts = probity_deep::spectral::SpectralOptions {
        device: spectral_device.kind(),
        top_k: top_k as usize,
        ..Default::default()
    };
    let report = match probity_deep::spectral::analyse(&suspect, base.as_deref(), &opts) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if let Some(p) = &plot {
        if let Err(e) = probity_deep::spectral::plot::plot(&report, p) {
            return fail(e);
        }
    }
    emit(&report, format, output.as_deref(), render::spectral_text)
}

/// Writes a report as JSON or text to `output` or standard output.
pub(crate) fn emit<T: serde::Serialize>(
    report: &T,
    format: Format,
    output: Option<&std::path::Path>,
    text: fn(&T) -> String,
) -> ExitCode {
    let body = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Text => text(report),
    };
    match output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, body.as_bytes()) {
                return fail(format!("cannot write {}: {e}", p.display()));
            }
        }
        None => print!("{body}"),
    }
    ExitCode::SUCCESS
}

/// Mesa's Vulkan driver prints warnings when `XDG_RUNTIME_DIR` is unset,
/// and the spectral stage asks wgpu for an adapter: give this process a
/// private runtime folder (ours, mode 0700) when it has none. Runs first,
/// while the process is single-threaded.
pub fn private_runtime_dir() {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("probity-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // only a real folder of ours that nobody else can use
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0 => {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
        _ => {}
    }
}
