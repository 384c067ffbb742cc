//! The job runner: takes queued scans from the database and runs each as a
//! child process of the `probity` binary, which writes the report (JSON) to
//! its standard output and a ledger record to `DATA/ledger.db`.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::store::Job;
use crate::Ctx;

/// The most of a child's standard output kept (the report).
const MAX_REPORT_BYTES: u64 = 256 << 20;
/// The most of its standard error kept (for the failure reason).
const MAX_STDERR_BYTES: u64 = 64 << 10;

/// The longest deep-scan budget a caller may ask for (a day).
pub const MAX_BUDGET_S: u64 = 86_400;

/// Options a caller may set; each maps to one CLI flag, nothing else
/// reaches the child's command line.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Lowest severity (static: info, warning, critical) or verdict (deep:
    /// suspicious, backdoor, never) that makes the verdict fail (exit code 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on: Option<String>,
    /// Static: add each file's SHA-256.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hash: bool,
    /// Static: require a valid model signature by a signer of the server's policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signature: bool,
    /// Deep: the time budget in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// Deep: skip target inversion and trigger search.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_trigger_search: bool,
    /// Deep: stop at the first verified trigger (`probity deep --fail-fast`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_fast: bool,
}

impl Options {
    /// Checks the options against the scan kind.
    pub fn check(&self, kind: &str) -> Result<(), String> {
        if let Some(f) = &self.fail_on {
            let ok: &[&str] = if kind == "deep" {
                &["suspicious", "backdoor", "never"]
            } else {
                &["info", "warning", "critical"]
            };
            if !ok.contains(&f.as_str()) {
                return Err(format!(
                    "options.fail_on: '{f}' is not one of {} for a {kind} scan",
                    ok.join(", ")
                ));
            }
        }
        if kind == "deep" && (self.hash || self.require_signature) {
            return Err("options.hash and options.require_signature apply to static scans".into());
        }
        if kind != "deep" && (self.budget.is_some() || self.no_trigger_search || self.fail_fast) {
            return Err(
                "options.budget, options.no_trigger_search and options.fail_fast apply to deep scans"
                    .into(),
            );
        }
        if self.no_trigger_search && self.fail_fast {
            return Err(
                "options.fail_fast needs the trigger search (not with options.no_trigger_search)"
                    .into(),
            );
        }
        if self.budget == Some(0) || self.budget.is_some_and(|b| b > MAX_BUDGET_S) {
            return Err(format!(
                "options.budget: between 1 and {MAX_BUDGET_S} seconds"
            ));
        }
        Ok(())
    }
}

/// Where a source lives for the child: its working directory and the
/// argument naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub cwd: PathBuf,
    pub arg: String,
}

impl Located {
    /// The argument as seen from any working folder: an upload's name is
    /// joined to its folder; URIs and canonical paths are kept.
    pub fn absolute(&self) -> String {
        if Path::new(&self.arg).is_absolute() || self.arg.contains(":/") {
            self.arg.clone()
        } else {
            self.cwd.join(&self.arg).display().to_string()
        }
    }
}

/// Resolves a submitted source: `upload:ID`, a remote URI, or a local path
/// inside an allowed root (canonicalised, so `..` and symlinks cannot leave
/// it). The error is a reason for the caller; `Err((403, …))` for a path
/// outside the roots.
pub fn locate(ctx: &Ctx, source: &str) -> Result<Located, (u16, String)> {
    let work = ctx.settings.data.join("work");
    if source.is_empty() || source.len() > 4096 || source.contains('\0') {
        return Err((400, "source: empty, too long, or holds a NUL byte".into()));
    }
    if let Some(id) = source.strip_prefix("upload:") {
        if !id.starts_with("upload_") || !id[7..].chars().all(|c| c.is_ascii_hexdigit()) {
            return Err((400, format!("source: '{source}' is not an upload id")));
        }
        let name = ctx
            .store
            .upload(id)
            .map_err(|e| (500, e))?
            .ok_or_else(|| (404, format!("source: no upload {id}")))?;
        return Ok(Located {
            cwd: ctx.settings.data.join("uploads").join(id),
            arg: name,
        });
    }
    if ctx.sources.is_remote(source) {
        return Ok(Located {
            cwd: work,
            arg: source.to_string(),
        });
    }
    if source.contains("://") || source.starts_with("models:/") || source.starts_with("runs:/") {
        return Err((400, format!("source: '{source}' is not a supported URI")));
    }
    let p = Path::new(source);
    if !p.is_absolute() {
        return Err((
            400,
            format!("source: '{source}' must be an absolute path under an allowed root, a URI, or upload:ID"),
        ));
    }
    if ctx.settings.allow_roots.is_empty() {
        return Err((
            403,
            "source: local paths are not allowed on this server (no --allow-root)".into(),
        ));
    }
    // refuse `..` outright, then canonicalise (resolving every symlink) and
    // check the result: both a lexical and a real escape are caught
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err((
            403,
            format!("source: '{source}' is outside the allowed roots"),
        ));
    }
    let real = p.canonicalize().map_err(|_| {
        (
            403,
            format!("source: '{source}' is outside the allowed roots or does not exist"),
        )
    })?;
    if !ctx.settings.allow_roots.iter().any(|r| real.starts_with(r)) {
        return Err((
            403,
            format!("source: '{source}' is outside the allowed roots"),
        ));
    }
    Ok(Located {
        cwd: work,
        arg: real.display().to_string(),
    })
}

/// The child's command line for a job.
fn argv(
    ctx: &Ctx,
    job: &Job,
    opts: &Options,
    src: &Located,
    base: Option<&Located>,
) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let ledger = ctx.settings.ledger().display().to_string();
    if job.kind == "deep" {
        a.extend(["deep", "--format", "json", "--ledger", &ledger].map(String::from));
        let budget = opts.budget.unwrap_or(ctx.settings.deep_budget_s);
        a.extend(["--budget".into(), budget.to_string()]);
        if opts.no_trigger_search {
            a.push("--no-trigger-search".into());
        }
        if opts.fail_fast {
            a.push("--fail-fast".into());
        }
        if let Some(b) = base {
            a.extend(["--base".into(), b.absolute()]);
        }
    } else {
        a.extend(
            [
                "scan", "--format", "json", "--ledger", &ledger, "--color", "never",
            ]
            .map(String::from),
        );
        if opts.hash {
            a.push("--hash".into());
        }
        if opts.require_signature {
            a.push("--require-signature".into());
        }
    }
    if let Some(f) = &opts.fail_on {
        a.extend(["--fail-on".into(), f.clone()]);
    }
    // always a policy file: without one, the child would read a
    // probity.toml in its working folder (an upload could bring its own)
    let policy = ctx
        .settings
        .policy
        .clone()
        .unwrap_or_else(|| ctx.settings.data.join("default-policy.toml"));
    a.extend(["--config".into(), policy.display().to_string()]);
    // after `--` the source is never read as a flag
    a.push("--".into());
    a.push(src.arg.clone());
    a
}

/// The report's verdict (`summary.verdict` of a scan, `verdict` of a deep report).
pub fn verdict_of(report: &Value) -> Option<String> {
    report
        .pointer("/summary/verdict")
        .or_else(|| report.get("verdict"))
        .or_else(|| report.pointer("/score/verdict"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Runs one job to its end and stores the outcome.
pub async fn run(ctx: &Arc<Ctx>, job: &Job) {
    let result = execute(ctx, job).await;
    let (c, id) = (ctx.clone(), job.id.clone());
    let store_result = tokio::task::spawn_blocking(move || {
        // a busy or full disk gets three tries; then the job stays
        // `running` and a restart queues it again
        let mut last = Ok(());
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            last = match &result {
                Ok((code, report)) => {
                    let v: Value = serde_json::from_str(report).unwrap_or(Value::Null);
                    c.store
                        .finish(&id, *code, verdict_of(&v).as_deref(), report)
                }
                Err(why) => c.store.fail(&id, why),
            };
            if last.is_ok() {
                break;
            }
        }
        last
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    if let Err(e) = store_result {
        eprintln!(
            "probity serve: scan {}: cannot store the outcome: {e}",
            job.id
        );
        return;
    }
    if job.watch_id.is_some() {
        if let Ok(Some(done)) = ctx.store.job(&job.id) {
            crate::watch::evaluate(ctx, &done).await;
        }
    }
}

async fn execute(ctx: &Arc<Ctx>, job: &Job) -> Result<(i64, String), String> {
    let opts: Options =
        serde_json::from_value(job.options.clone()).map_err(|e| format!("options: {e}"))?;
    let src = locate(ctx, &job.source).map_err(|(_, e)| e)?;
    let base = match &job.base {
        Some(b) => Some(locate(ctx, b).map_err(|(_, e)| format!("base {e}"))?),
        None => None,
    };
    if job.kind == "deep" && base.is_none() {
        return Err("a deep scan needs a base".into());
    }
    let args = argv(ctx, job, &opts, &src, base.as_ref());
    let timeout = if job.kind == "deep" {
        opts.budget
            .unwrap_or(ctx.settings.deep_budget_s)
            .saturating_add(900)
    } else {
        ctx.settings.static_timeout_s
    };
    let mut cmd = tokio::process::Command::new(&ctx.settings.exe);
    cmd.args(&args)
        .current_dir(&src.cwd)
        .env_remove("PROBITY_LEDGER")
        .env(
            "PROBITY_SERVICE_ROOTS",
            std::env::join_paths(&ctx.settings.allow_roots).unwrap_or_default(),
        )
        .env("PROBITY_SERVICE_JOB", &job.id)
        .env(
            "PROBITY_SERVICE_CALLER",
            match (&job.submitted_by, &job.watch_id) {
                (Some(t), _) => format!("token {t}"),
                (None, Some(w)) => format!("watch {w}"),
                (None, None) => "probity serve".to_string(),
            },
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it only sets this child's
    // parent-death signal, so a scan never outlives a killed server (the
    // restarted server runs it again).
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", ctx.settings.exe.display()))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut err = child.stderr.take().ok_or("no stderr")?;
    let read_out = async {
        let mut b = Vec::new();
        let r = (&mut out)
            .take(MAX_REPORT_BYTES + 1)
            .read_to_end(&mut b)
            .await;
        // drain whatever is left so the child never blocks on a full pipe
        let _ = tokio::io::copy(&mut out, &mut tokio::io::sink()).await;
        r.map(|_| b)
    };
    let read_err = async {
        let mut b = Vec::new();
        let r = (&mut err).take(MAX_STDERR_BYTES).read_to_end(&mut b).await;
        let _ = tokio::io::copy(&mut err, &mut tokio::io::sink()).await;
        r.map(|_| b)
    };
    let all = async {
        let (o, e, s) = tokio::join!(read_out, read_err, child.wait());
        (o, e, s)
    };
    let (o, e, status) = match tokio::time::timeout(Duration::from_secs(timeout), all).await {
        Ok(x) => x,
        Err(_) => {
            return Err(format!(
                "stopped after {timeout} s (the server's limit for a {} scan)",
                job.kind
            ))
        }
    };
    let stdout = o.map_err(|e| format!("reading the report: {e}"))?;
    let stderr = e.unwrap_or_default();
    let status = status.map_err(|e| format!("waiting for the scan: {e}"))?;
    let reason = || {
        String::from_utf8_lossy(&stderr)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().trim_start_matches("probity: ").to_string())
            .unwrap_or_else(|| format!("the scan ended with {status}"))
    };
    if stdout.len() as u64 > MAX_REPORT_BYTES {
        return Err(format!(
            "the report is larger than {MAX_REPORT_BYTES} bytes"
        ));
    }
    match status.code() {
        Some(c @ (0 | 1)) => {
            let text =
                String::from_utf8(stdout).map_err(|_| "the report is not UTF-8".to_string())?;
            if serde_json::from_str::<Value>(&text).is_err() {
                return Err(format!("the scan wrote no report: {}", reason()));
            }
            Ok((c as i64, text))
        }
        _ => Err(reason()),
    }
}

/// Takes queued jobs of one kind and runs up to `slots` at once.
pub async fn runner(ctx: Arc<Ctx>, kind: &'static str, slots: usize) {
    let sem = Arc::new(tokio::sync::Semaphore::new(slots));
    loop {
        let Ok(permit) = sem.clone().acquire_owned().await else {
            return;
        };
        let c = ctx.clone();
        let claimed = tokio::task::spawn_blocking(move || c.store.claim(kind)).await;
        match claimed {
            Ok(Ok(Some(job))) => {
                let c = ctx.clone();
                tokio::spawn(async move {
                    run(&c, &job).await;
                    drop(permit);
                    c.wake.notify_waiters();
                });
            }
            Ok(Ok(None)) => {
                drop(permit);
                tokio::select! {
                    _ = ctx.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Ok(Err(e)) => {
                eprintln!("probity serve: job queue: {e}");
                drop(permit);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                eprintln!("probity serve: job queue: {e}");
                drop(permit);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs every queued job to its end, then returns (for `watch --once`).
pub async fn drain(ctx: &Arc<Ctx>) -> Result<Vec<Job>, String> {
    let mut done = Vec::new();
    loop {
        let mut any = false;
        for kind in ["static", "deep"] {
            if let Some(job) = ctx.store.claim(kind)? {
                any = true;
                run(ctx, &job).await;
                if let Some(j) = ctx.store.job(&job.id)? {
                    done.push(j);
                }
            }
        }
        if !any {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deep options are refused on static scans, and `fail_fast` needs the
    /// trigger search it would end.
    #[test]
    fn deep_options_are_checked_against_the_kind() {
        let o = |budget, no_trigger_search, fail_fast| Options {
            budget,
            no_trigger_search,
            fail_fast,
            ..Options::default()
        };
        assert!(o(Some(60), false, true).check("deep").is_ok());
        assert!(o(None, false, true).check("static").is_err());
        assert!(o(None, true, false).check("static").is_err());
        let e = o(None, true, true).check("deep").unwrap_err();
        assert!(e.contains("fail_fast"), "{e}");
        assert!(o(Some(0), false, false).check("deep").is_err());
    }
}
